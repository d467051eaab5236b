/*
 * server_h2_int: what server_h2.c (the session, unary calls) and
 * server_h2_stream.c (streaming methods) share; private to net/rpc/.
 */
#ifndef RPCGATE_NET_SERVER_H2_INT_H
#define RPCGATE_NET_SERVER_H2_INT_H

#include "h2_io.h"
#include "server_int.h"

/* SETTINGS_MAX_CONCURRENT_STREAMS we advertise (brpc: unlimited;
 * nginx: 128). */
#define H2_MAX_STREAMS 128
/* Calls of one connection in flight, counting those whose stream was
 * reset: a client resetting streams cannot queue more work than this. */
#define H2_MAX_CALLS (2 * H2_MAX_STREAMS)
/* SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 6.5.2: names, values and 32
 * bytes a field); a longer list resets its stream. */
#define H2_MAX_HEADER_LIST (16u << 10)
/* SETTINGS_MAX_FRAME_SIZE: RFC 9113's least, nghttp2's too. */
#define H2_MAX_FRAME 16384
/* SETTINGS_INITIAL_WINDOW_SIZE and the connection's window: a stream
 * may send 1 MiB ahead, all streams 16 MiB (brpc: 256 KiB and 1 MiB). */
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW	 (16 << 20)
/* Control frames a second past which a connection is a flood. */
#define H2_CONTROL_PER_SEC 1000
/* Entries in one SETTINGS frame; unanswered PING and SETTINGS acks;
 * CONTINUATION frames of one header block (nghttp2's options). */
#define H2_MAX_SETTINGS	    32
#define H2_MAX_OUTBOUND_ACK 1000
#define H2_MAX_CONTINUATIONS 8
/* RST_STREAMs: a burst and a rate a second (nghttp2's defaults). */
#define H2_RST_BURST 1000
#define H2_RST_RATE  33
/* Sends one flush makes while on_writable keeps writing; the rest goes
 * on the loop's next turn. */
#define H2_FLUSH_ROUNDS 4
/* Fields of an HTTP answer (not gRPC) sent, at most. */
#define H2_HTTP_FIELDS_MAX 64
/* A path's service and method, each. */
#define H2_NAME_MAX 256
/* The health service (grpc/src/proto/grpc/health/v1/health.proto). */
#define H2_HEALTH_SERVICE "grpc.health.v1.Health"
enum { HEALTH_SERVING = 1, HEALTH_NOT_SERVING = 2 };


struct srv_h2;

/*
 * One stream: loop thread, but while `call` runs, the call's answer
 * fields (resp, status, message) are the call's.  A streaming method's
 * stream (`ops` set) is the handler's struct server_stream.
 */
struct server_stream {
	int32_t id;
	struct server *srv;
	struct srv_h2 *h2; /* NULL: its connection went */
	struct server_stream *prev, *next;
	struct server_call *call; /* in flight */
	bool closed;		  /* nghttp2 closed it */
	bool answered;		  /* submitted (or dropped) */
	bool ended;		  /* END_STREAM came */
	bool post, grpc, gzip_in, bad_encoding, accept_gzip;
	size_t header_bytes;
	int64_t timeout_ms;
	struct loop_timer deadline;
	struct iobuf body; /* the request's DATA */
	/* the answer */
	struct iobuf resp; /* DATA to send */
	bool resp_gzip;
	int status;	  /* grpc-status */
	char *message;	  /* grpc-message, encoded; NULL: none */
	int http_status;  /* not gRPC: an HTTP answer */
	char ctype[48];	  /* the request's content-type, echoed */
	char auth[256];	  /* authorization, for the auth hook */
	size_t auth_len;
	char path[2 * H2_NAME_MAX + 3];
	/* streaming methods (server_h2_stream.c) */
	const struct server_stream_ops *ops; /* NULL: unary */
	void *ops_arg, *user;
	void *route; /* a routed stream's, released at its close */
	bool finished;	   /* server_stream_finish() said its status */
	bool resp_started; /* HEADERS submitted */
	bool deferred;	   /* its DATA waits for a write */
	bool want_writable, writable_due;
	bool paused;	   /* server_stream_pause(): window held back */
	size_t unconsumed; /* DATA bytes not yet given back as window */
	bool counted; /* admitted: uncounted at its close */
	/* not gRPC: an HTTP request served as HTTP/1's are (server_http.c)
	 * from its method, path and fields ("name: value\r\n" each), and
	 * its answer's fields, lowercase, in the same form */
	char hmethod[16];
	bool path_long; /* :path did not fit in path[]: 414 */
	char *fields;
	size_t fields_len, fields_cap;
	char *answer_fields;  /* also a stream's metadata (headers) */
	char *trailer_fields; /* a stream's trailing metadata */
	bool http_ready; /* the answer is in resp */
	bool head_only;
	bool started; /* on_start ran: on_close will */
};

struct srv_h2 {
	struct h2_io io; /* first: nghttp2's user data */
	struct srv_conn *sc;
	struct server_stream *streams; /* open or in a call */
	unsigned calls;		  /* in flight */
	bool logged;		  /* the one line of a bad peer */
	char why[160];		  /* nghttp2's last error text */
	int64_t ctl_window_ns;	  /* control frames counted since */
	unsigned ctl_count;
};

/* ---- server_h2.c ------------------------------------------------------ */

/* Sends what the session has queued (not from inside nghttp2: then the
 * outer call sends); closes once the session is done. */
void h2__flush(struct srv_h2 *h2);
/* st's grpc-status and grpc-message (text percent-encoded). */
void h2__status(struct server *s, struct server_stream *st, int status,
		const char *text);
/* Submits st's unary answer, or a trailers-only error. */
void h2__answer(struct srv_h2 *h2, struct server_stream *st);
/* The auth hook on st's authorization field: server__authenticate(). */
int h2__authenticate(struct srv_h2 *h2, struct server_stream *st, char *text,
		     size_t text_size);
/* "/Service/Method" into its parts; false: not that shape. */
bool h2__split_path(const char *path, char *svc, char *method);
/* The DATA provider of every gRPC answer. */
ssize_t h2__data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
		      size_t length, uint32_t *flags, nghttp2_data_source *src,
		      void *user);
void h2__stream_free(struct server *s, struct server_stream *st);

/* ---- server_h2_stream.c ----------------------------------------------- */

/* At a request's HEADERS: true if its path is a streaming method (then
 * it is started, or answered with why not). */
bool h2s__start(struct srv_h2 *h2, struct server_stream *st);
/* A streaming stream's new DATA is in st->body: its whole messages go
 * to on_message. */
void h2s__data(struct srv_h2 *h2, struct server_stream *st);
/* END_STREAM came. */
void h2s__end(struct srv_h2 *h2, struct server_stream *st);
/* Gone (err as on_close's): on_close, then the stream is freed. */
void h2s__closed(struct srv_h2 *h2, struct server_stream *st, int err);
/* After a send: on_writable for the streams whose queue drained; true
 * if any ran (it may have written). */
bool h2s__writable(struct srv_h2 *h2);

#endif
