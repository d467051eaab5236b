/*
 * server: an RPC server: services from protobuf-c descriptors (or from a
 * descriptor pool, raw), listening ports, a protocol detected per
 * connection (the RDMA hello, baidu_std, HTTP/1.x, HTTP/2 with gRPC),
 * brpc's answers and built-in pages.
 *
 * A request's way through (baidu_std; spec/brpc-wire.md 1.8):
 *
 *   loop thread   read -> detect the protocol on the first bytes -> cut
 *                 a frame -> the checks of spec 1.8 in brpc's order:
 *                   meta does not decode             -> close, no answer
 *                   first frame, auth hook refuses   -> ERPCAUTH, close
 *                   server stopping                  -> ELOGOFF
 *                   max_concurrency calls in flight  -> ELIMIT
 *                   max_inflight_bytes held          -> ELIMIT
 *                   attachment_size > data           -> EREQUEST
 *                   short service name unknown       -> ENOSERVICE
 *                   full service.method unknown      -> ENOMETHOD
 *                   the method's max_concurrency     -> ELIMIT
 *                 -> a server_call, handed to a task worker (or run
 *                    right here for methods marked SERVER_METHOD_INLINE)
 *   worker        checksum, decompress, decode (EREQUEST on failure) ->
 *                 the handler
 *   any thread    the handler (now or later, e.g. from a timer) calls
 *                 server_call_finish(): the answer is packed and queued
 *                 on the connection; the call is freed.
 *
 * HTTP/1.x (brpc's mapping, spec/brpc-wire.md section 4): POST (or any
 * method) /Service/Method or /package.Service/Method with a JSON body
 * (transcoded by the method's types in opt.descriptors) or, with
 * Content-Type application/proto, the wire bytes; the answer in the same
 * form, errors as status codes with x-bd-error-code and brpc's text.
 * One request at a time per connection: pipelined requests wait in the
 * input and are answered in order.  Every other path is a built-in page
 * (/health, /version, /status, /flags, /connections, /vars, /protobufs,
 * /metrics) or 404.
 *
 * Every error answer carries brpc's text, "[addr][E<code>]<text>" (but
 * ERPCAUTH's, plain "Fail to authenticate[: why]", as brpc's), the
 * request's correlation_id, and no body.  Frames whose header breaks
 * the protocol (bad magic, meta_size > body_size, body over
 * max_body_size, checked on the 12 header bytes before any body byte is
 * kept) close the connection with one log line saying why.
 *
 * Graceful stop (server_stop): new requests are answered ELOGOFF at once,
 * listeners close, calls in flight finish and their answers are flushed,
 * then every connection closes.  No call is lost: each gets its answer
 * or ELOGOFF.
 *
 * Overload.  Limits on calls in flight (fixed or adaptive, climit.h) for
 * the server and each method answer ELIMIT at once instead of queueing.
 * Bytes held for calls (requests read, answers queued) count against
 * max_inflight_bytes (ELIMIT past it); a connection with more than
 * SERVER_CONN_QUEUE_PAUSE bytes of answers queued is not read until they
 * drain, and one whose answers make no progress for write_timeout_ms is
 * closed.  New connections past max_connections, and any that come while
 * the process is out of file descriptors, are accepted and closed at
 * once (a reserved descriptor makes the accept possible), so the backlog
 * never holds a dead queue and a client never waits on a port that will
 * not answer; one log line says when it starts and one when it is over,
 * with the count.
 *
 * Threads: add services and listen before server_start(); finish calls
 * from any thread; stop and destroy from the owner thread (not a loop
 * or worker thread of the server's rt).
 */
#ifndef RPCGATE_NET_SERVER_H
#define RPCGATE_NET_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/fbuf.h"
#include "base/iobuf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/mem.h"
#include "base/metrics.h"
#include "base/rt.h"
#include "codec/baidu_std.h"
#include "codec/pbd.h"
#include "climit.h"

struct flags;

#define SERVER_MAX_LISTENERS 8
#define SERVER_MAX_SERVICES  64
/* Length of the "[addr]" part of error texts. */
#define SERVER_ADDR_TEXT_MAX 64

struct server;
struct server_call;
struct server_stream;
struct srv_conn;

/* A method's handler.  Must end the call with server_call_finish(),
 * exactly once, now or later, from any thread. */
typedef void server_handler_fn(struct server_call *call, void *arg);

/* Gives back what a router returned (server_set_route_release()). */
typedef void server_route_release_fn(void *arg, void *route);
/* A gateway's router (server_set_router()). */
typedef void *server_route_fn(void *arg, const char *service,
			      const char *method);
/* A gateway's streams (server_set_route_stream()). */
struct server_stream_ops;
typedef const struct server_stream_ops *
server_route_stream_fn(void *arg, void *route, const char *service,
		       const char *method, void **ops_arg);

/* The handler never blocks: run it on the loop thread that read the
 * request, saving the hand-off to a worker (brpc's in-place processing). */
#define SERVER_METHOD_INLINE 0x1u

/*
 * The authentication hook (spec 1.7): called on the loop thread with the
 * first request's authentication_data (ptr NULL when absent).  0 accepts
 * the connection; anything else refuses it: ERPCAUTH "Fail to
 * authenticate" (+ ": " + why, if the hook wrote one) and close.  Must
 * not block.
 */
struct server_peer {
	const char *addr;	 /* "ip:port" */
	const char *tls_subject; /* a verified client certificate's
				  * subject ("/CN=..."); NULL: none */
};
typedef int server_auth_fn(void *arg, const struct baidu_bytes *cred,
			   const struct server_peer *peer, char *why,
			   size_t why_size);

struct server_options {
	struct rt *rt;		 /* required: loops and workers */
	struct iobuf_pool *pool; /* required */
	const struct mem *mem;	 /* NULL: mem_default() */
	struct log *log;	 /* NULL: discard */
	size_t max_body_size;	 /* BAIDU_MAX_BODY_SIZE_DEFAULT */
	int max_concurrency;	 /* calls in flight; 0: no limit */
	bool max_concurrency_auto; /* adaptive instead (climit.h) */
	/* Connections open at once; 0: no limit (but the descriptors). */
	int max_connections;
	/* Bytes of requests read and answers queued, all calls together;
	 * 0: no limit. */
	size_t max_inflight_bytes;
	/* A connection whose queued answers make no progress this long is
	 * closed; 0: never. */
	int write_timeout_ms; /* SERVER_WRITE_TIMEOUT_MS */
	server_auth_fn *auth;	 /* NULL: authentication_data ignored */
	void *auth_arg;
	/* The "[addr]" of error texts; NULL: the accepting socket's local
	 * address, "ip:port" (brpc writes its host's IP and listen port). */
	const char *addr_text;
	bool checksum_answers; /* CRC32C on answers to requests that
				     carried one */
	/* A handshake detected on a connection's first bytes before any
	 * RPC protocol (the RDMA hello); NULL: none. */
	const struct conn_upgrade *upgrade;
	/* TLS (net/rpc/tls.h), detected on the first bytes before the
	 * upgrade above: a ClientHello starts a handshake, anything else is
	 * served plain unless tls_required (then refused: an HTTP client is
	 * answered 400, saying why).  NULL: no TLS. */
	const struct conn_upgrade *tls;
	bool tls_required;
	/* GET /metrics (Prometheus text) and /vars answer this registry,
	 * which also gets every method's calls, errors and latency; NULL:
	 * no such pages. */
	struct metrics *metrics;
	/* The types HTTP/JSON callers' bodies are read and answered with,
	 * and /protobufs lists: every typed service's types should be in
	 * it; NULL: JSON callers get 415. */
	const struct pbd_pool *descriptors;
	/* /version's text; NULL: "rpcgate". */
	const char *version;
	/* One page of the application's among the built-in ones: GET
	 * /app_page (e.g. "routes") answers what app_page_fn appends to
	 * `out` (plain text; a browser gets it in <pre>), from the loop:
	 * it must not block.  NULL: none. */
	const char *app_page;
	void (*app_page_fn)(void *arg, struct fbuf *out);
	void *app_page_arg;
	/* /flags lists these (read only under the server's lock, with
	 * set_flag); NULL: the page has none.  /flags/NAME?setvalue=V sets
	 * a flag marked runtime through set_flag (NULL: refused), which
	 * also applies it: 0, or -errno and a reason in why. */
	struct flags *flags;
	int (*set_flag)(void *arg, const char *name, const char *value,
			char *why, size_t why_size);
	void *set_flag_arg;
	/* HTTP connections: the whole head of a request within
	 * http_header_timeout_ms of its first byte (else 408 and close),
	 * no more than http_body_idle_ms between bytes of a body, and an
	 * idle keep-alive connection closed after http_idle_timeout_ms. */
	int http_header_timeout_ms; /* SERVER_HTTP_HEADER_TIMEOUT_MS */
	int http_body_idle_ms;	    /* SERVER_HTTP_BODY_IDLE_MS */
	int http_idle_timeout_ms;   /* SERVER_HTTP_IDLE_TIMEOUT_MS */
	/* HTTP answers at least this long are gzipped for callers that
	 * accept it (brpc's http_body_compress_threshold); 0: never. */
	size_t http_gzip_min;
};

/* nginx's client_header_timeout is 60 s; a slow-loris client holds a
 * connection for far less here. */
#define SERVER_HTTP_HEADER_TIMEOUT_MS 10000
#define SERVER_HTTP_BODY_IDLE_MS      30000
/* nginx's keepalive_timeout is 75 s. */
#define SERVER_HTTP_IDLE_TIMEOUT_MS 60000
/* brpc's http_body_compress_threshold. */
#define SERVER_HTTP_GZIP_MIN 512
/* nginx's send_timeout is 60 s. */
#define SERVER_WRITE_TIMEOUT_MS 30000
/* A connection stops being read while this many bytes of its answers
 * wait to be sent, and is read again once half have gone (brpc refuses
 * writes past socket_max_unwritten_bytes, 64 MiB, with EOVERCROWDED). */
#define SERVER_CONN_QUEUE_PAUSE (4u << 20)
/* After an accept failure with no reserved descriptor to shed the
 * backlog with, the listener rests this long. */
#define SERVER_ACCEPT_PAUSE_MS 20

/*
 * One call, from the request to server_call_finish().  The handler reads
 * the request side and fills the response side; everything else is the
 * server's.
 */
struct server_call {
	/* request (read-only for the handler) */
	const ProtobufCMessage *request;
	struct iobuf request_attachment; /* may be moved out */
	const char *service;		 /* full name */
	const char *method;
	uint64_t correlation_id;
	bool has_log_id;
	uint64_t log_id;
	int request_compress_type;
	const char *peer; /* "ip:port" */
	const char *peer_subject; /* mutual TLS: the client certificate's
				   * subject; NULL: none */

	/* The caller's deadline for the whole call, from the baidu_std
	 * meta or an HTTP x-bd-timeout-ms field; 0: none said. */
	int32_t timeout_ms;

	/* routed calls (server_set_router) and raw methods: the request
	 * as received, not decoded; `request` is NULL.  baidu_std calls'
	 * frame.meta has the rest (authentication_data). */
	void *route;		   /* what the router returned */
	struct iobuf request_body; /* message bytes, compressed as
				    * request_compress_type says */
	bool has_request_crc;	   /* request_crc: its checksum_value */
	uint8_t request_crc[4];

	/* response (the handler's) */
	ProtobufCMessage *response;	  /* initialised, empty */
	struct iobuf response_attachment; /* sent raw */
	int response_compress_type;	  /* default: none */
	/* routed calls: the answer's message bytes as sent (compressed per
	 * response_compress_type) and their checksum_value, if any */
	struct iobuf response_body;
	bool has_response_crc;
	uint8_t response_crc[4];

	/* private */
	struct srv_http_call *http; /* HTTP calls: what the answer needs */
	struct server_stream *h2;	    /* gRPC calls: their stream */
	struct server *srv;
	struct srv_conn *sc;
	const struct server_method *m; /* NULL: a routed (raw) call */
	struct baidu_frame frame;      /* until decoded */
	int error_code;
	char *error_text;
	bool error_plain; /* error_text sent as it is (an upstream's) */
	bool answer_checksum;
	int64_t start_ns;
	struct climit *xlimit; /* the method's or route's limit entered */
	size_t held;	       /* request bytes counted in srv->held */
	struct task task;
	void *user; /* free for the handler, e.g. a timer's context */
};

/* Fails the call: error_code `code` (non-zero) and a text (printf). */
void server_call_fail(struct server_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails the call with a text sent as it is, without the "[addr][E<code>]"
 * prefix: an upstream's error text passed on by a gateway. */
void server_call_fail_plain(struct server_call *call, int code,
			    const char *text);

/* Sends the answer and frees the call.  Once; any thread. */
void server_call_finish(struct server_call *call);

/* A loop of the server's rt, for handlers that finish later (timers). */
struct loop *server_call_loop(const struct server_call *call);

/*
 * A router's handler: counts the call against `l` (a route's limit,
 * which outlives the server's calls) until it is answered, with its
 * latency as a sample.  0, or RPC_ELIMIT with the text in why (the
 * handler fails the call with it).  Once per call.
 */
int server_call_limit(struct server_call *call, struct climit *l, char *why,
		      size_t why_size);

/*
 * Streaming methods: gRPC's server-, client- and bidirectional streaming
 * (HTTP/2 only; a baidu_std or HTTP/1 caller gets ENOMETHOD).  Requests
 * and answers are message bytes (protobuf, uncompressed).  Everything
 * runs on the stream's loop thread: the callbacks, and the handler's
 * server_stream_write()/server_stream_finish() (from a callback, or a
 * task posted to server_stream_loop()).
 *
 *   on_start    the request's headers came; the stream is open
 *   on_message  one request message (msg may be moved out)
 *   on_end      the client sent its last message (half-closed)
 *   on_writable the answers queued fell below SERVER_STREAM_LOW after a
 *               write found them past SERVER_STREAM_HIGH: write again
 *   on_close    the last callback, once: the stream ended (finished and
 *               sent, reset by the client, its connection closed, or
 *               the server stopping); st is freed when it returns.
 *               `err` 0: finished and sent; else the reason (-ECANCELED
 *               reset, -ECONNRESET connection gone, -ETIMEDOUT deadline)
 *
 * Back-pressure: the answers go as HTTP/2 flow control lets them; what
 * waits is counted by server_stream_write(), and a handler that stops
 * writing past SERVER_STREAM_HIGH until on_writable never holds more.
 * Requests come as fast as the client sends them, each handed on at
 * once, until server_stream_pause().  grpc-timeout is the stream's deadline: past it the stream is
 * finished DEADLINE_EXCEEDED and closed.
 */
struct server_stream_ops {
	void (*on_start)(struct server_stream *st, void *arg);
	void (*on_message)(struct server_stream *st, struct iobuf *msg,
			   void *arg);
	void (*on_end)(struct server_stream *st, void *arg);
	void (*on_writable)(struct server_stream *st, void *arg);
	void (*on_close)(struct server_stream *st, int err, void *arg);
};

#define SERVER_STREAM_HIGH (1u << 20)
#define SERVER_STREAM_LOW  (SERVER_STREAM_HIGH / 2)
#define SERVER_MAX_STREAM_METHODS 16

/* Queues one answer message (moved out of msg): the bytes of answers
 * waiting to go after it (compare with SERVER_STREAM_HIGH), or -EPIPE
 * (finished or closed), -ENOMEM. */
ssize_t server_stream_write(struct server_stream *st, struct iobuf *msg);
/* Ends the stream with `code` (0, brpc's or errno codes as for calls,
 * sent as a grpc-status) and `text` (NULL: none) after the answers
 * queued.  Once; later writes fail. */
void server_stream_finish(struct server_stream *st, int code,
			  const char *text);
/* Stops (true) or resumes (false) taking requests from the client: a
 * paused stream gives it no more window, so at most a stream window
 * (1 MiB) more arrives until it resumes. */
void server_stream_pause(struct server_stream *st, bool paused);
struct loop *server_stream_loop(const struct server_stream *st);
/* Free for the handler (NULL at on_start). */
void **server_stream_user(struct server_stream *st);
/* "ip:port" of the caller. */
const char *server_stream_peer(const struct server_stream *st);
/* The request's :path, "/Service/Method". */
const char *server_stream_path(const struct server_stream *st);
/* The request's metadata, "name: value\r\n" each (names lowercase, as
 * HTTP/2 has them; content-type, te and grpc-* among them): kept on a
 * server with server_set_route_stream() (a gateway's), else "". */
const char *server_stream_metadata(const struct server_stream *st);
/* The answer's metadata, in that form (NULL: unchanged): `headers` go
 * with the first answer (so set them before it), `trailers` with the
 * status (before server_stream_finish()).  Copied; at most
 * H2_HTTP_FIELDS_MAX (64) fields each. */
void server_stream_set_metadata(struct server_stream *st, const char *headers,
				const char *trailers);

/*
 * Registers service.method as a streaming method (full names; they must
 * outlive the server).  Before server_start(): 0; -EBUSY; -ENOSPC
 * (SERVER_MAX_STREAM_METHODS); -EEXIST.
 */
int server_add_stream_method(struct server *s, const char *service,
			     const char *method,
			     const struct server_stream_ops *ops, void *arg);

struct server_listener {
	int fd;
	int port;		/* 0: a Unix socket */
	char unix_path[108];	/* its file, removed at the stop; "" */
	struct loop *loop;
	struct loop_io io;
	struct server *srv;
	struct task start_task, stop_task; /* the stop may trail the start */
	/* loop thread: out of descriptors since (0: not), closed since */
	int64_t starved_ns;
	uint64_t starved_shed;
	struct loop_timer resume; /* a paused listener's */
	/* loop thread: refused for max_connections, last logged */
	uint64_t full_shed;
	int64_t full_logged_ns;
};

struct server_stats {
	uint64_t calls;	     /* answered, success or not */
	uint64_t errors;     /* answered with error_code != 0 */
	uint64_t closed_bad; /* connections closed for bad bytes */
	int64_t inflight;    /* calls between request and answer */
	int64_t connections; /* open now */
	uint64_t refused_no_fd;	   /* connections closed unserved: no fd */
	uint64_t refused_max_conn; /* ... past max_connections */
	uint64_t closed_slow;	   /* closed by write_timeout_ms */
	uint64_t limited;	   /* calls answered ELIMIT */
	int64_t held_bytes;	   /* counted against max_inflight_bytes */
	int limit;		   /* the server's max_concurrency now */
};

struct server {
	struct server_options opt;
	struct baidu_limits limits;
	struct server_service *services[SERVER_MAX_SERVICES];
	int nservices;
	struct server_listener listeners[SERVER_MAX_LISTENERS];
	int nlisteners;

	pthread_mutex_t lock; /* conns list, stop wake-ups */
	pthread_cond_t cond;
	struct srv_conn *conns; /* open connections */
	int64_t nconns;		/* allocated, not yet released (atomic) */
	int64_t inflight;	/* atomic */
	int stopping;		/* atomic */
	bool started;

	server_route_fn *route; /* server_set_router() */
	server_handler_fn *route_handler;
	server_route_release_fn *route_release;
	server_route_stream_fn *route_stream;
	void *route_arg;

	struct {
		const char *service, *method;
		const struct server_stream_ops *ops;
		void *arg;
	} stream_methods[SERVER_MAX_STREAM_METHODS];
	int nstream_methods;

	struct climit limit;	   /* the server's max_concurrency */
	struct metrics_gauge held; /* bytes against max_inflight_bytes */
	int reserve_fd;		   /* atomic: accept-and-close when out */
	struct metrics_counter refused_no_fd, refused_max_conn, closed_slow,
	    limited;
	uint64_t n_calls, n_errors, n_closed_bad; /* atomic */
	uint64_t n_http, n_http_bad;		  /* atomic */
	int listeners_open;			  /* under lock */
	pthread_mutex_t flags_lock; /* opt.flags for /flags and set_flag */
};

/* Defaults: BAIDU_MAX_BODY_SIZE_DEFAULT, no limit, no auth. */
void server_options_default(struct server_options *opt);

/* 0, or -EINVAL (no rt or pool, bad max_body_size, negative limit). */
int server_init(struct server *s, const struct server_options *opt);

/*
 * Registers a service: handlers[i] serves desc->methods[i] (NULL: the
 * method answers ENOMETHOD), called with `arg`; flags are
 * SERVER_METHOD_* for all its methods.  0; -EEXIST: a service of that
 * name is registered; -ENOSPC: SERVER_MAX_SERVICES reached; -EBUSY:
 * started; -ENOMEM.
 */
int server_add_service(struct server *s, const ProtobufCServiceDescriptor *desc,
		       server_handler_fn *const *handlers, void *arg,
		       unsigned flags);

/*
 * A service known only by its descriptor (a pool's): its methods' calls
 * are raw, as routed calls are: the handler gets request_body (wire
 * bytes, compressed as request_compress_type says) and answers with
 * response_body and response_compress_type.  Handlers run on a worker,
 * or on the loop with SERVER_METHOD_INLINE (then they must not block).
 * 0; -EEXIST, -ENOSPC, -EBUSY, -ENOMEM as server_add_service().
 */
int server_add_raw_service(struct server *s, const struct pbd_service *svc,
			   server_handler_fn *handler, void *arg,
			   unsigned flags);

/*
 * A gateway's router: for a request whose service is not registered
 * here, route(arg, service, method) (loop thread, must not block) returns
 * what the request is routed to, or NULL: not routed, ENOSERVICE.  A
 * routed call skips decoding: handler(call, arg) runs on the loop that
 * read it (HTTP calls: on the worker that transcoded the body), must not
 * block, and gets call->route, request_body, request_attachment,
 * timeout_ms and the log_id; it ends the call with response_body,
 * response_attachment and response_compress_type, or a failure, then
 * server_call_finish() from any thread.  Before server_start(): 0;
 * -EBUSY; -EINVAL.
 */
int server_set_router(struct server *s, server_route_fn *route,
		      server_handler_fn *handler, void *arg);

/*
 * Every non-NULL route the router returned is given back once through
 * release(arg, route), from any thread: when its call is freed (after
 * the call's route limit was left), or at once when the request was
 * refused before a call was made.  So a router may hand out references
 * (a gateway's routes that change live).  Before server_start(): 0 or
 * -EBUSY.
 */
int server_set_route_release(struct server *s, server_route_release_fn *fn);

/*
 * A gateway's streams: a gRPC request the router routes (over HTTP/2)
 * is offered to route_stream(arg, route, service, method, &ops_arg) at
 * its HEADERS (loop thread, must not block).  Ops: it is a stream with
 * those callbacks (server_add_stream_method()'s), forwarded message by
 * message, server_stream_route() its route until on_close has run (then
 * released); NULL: a unary call for the router's handler.  Before
 * server_start(): 0 or -EBUSY.
 */
int server_set_route_stream(struct server *s, server_route_stream_fn *fn);
/* What the router returned for a routed stream; NULL for a method's. */
void *server_stream_route(const struct server_stream *st);
/* A stream's deadline from grpc-timeout, in ms; 0: none said. */
int64_t server_stream_timeout_ms(const struct server_stream *st);

/*
 * Opens a listening TCP socket on host (NULL or "": every address) and
 * port (0: any free one; the port taken is returned).  Accepting starts
 * with server_start().  >0 the port; -EBUSY (started), -ENOSPC, or the
 * -errno of socket/bind/listen (-EADDRINUSE, -EACCES...).
 */
int server_listen(struct server *s, const char *host, int port);

/* Starts accepting on every listener.  The rt must be started.  0 or
 * -errno. */
int server_start(struct server *s);

/*
 * Graceful stop: ELOGOFF for new requests, close the listeners, wait up
 * to grace_ms (-1: no limit) for calls in flight, flush the answers,
 * close every connection and wait for them to go.  Returns the calls
 * still in flight when the grace ran out (0 normally).  Idempotent.
 */
int server_stop(struct server *s, int grace_ms);

/* Stops (no grace limit) if needed and frees everything. */
void server_destroy(struct server *s);

/*
 * A method's own limit on calls in flight, before server_start():
 * "auto", "0" or a count (climit_parse).  0; -ENOENT no such method;
 * -EINVAL (why says); -EBUSY.
 */
int server_set_method_concurrency(struct server *s, const char *service,
				  const char *method, const char *limit,
				  char *why, size_t why_size);

void server_stats(struct server *s, struct server_stats *out);

#endif
