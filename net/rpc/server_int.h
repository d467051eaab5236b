/*
 * server_int: what the server's files share; private to net/rpc/.
 *
 *   server.c        options, services, listeners, connections, protocol
 *                   detection, the calls' common life (admit, free),
 *                   stopping
 *   server_baidu.c  baidu_std requests and answers
 *   server_http.c   HTTP/1.x requests, the JSON mapping, answers
 *   server_h2.c     HTTP/2 and gRPC requests and answers
 *   server_pages.c  the built-in pages (/status, /flags, /metrics, ...)
 */
#ifndef RPCGATE_NET_SERVER_INT_H
#define RPCGATE_NET_SERVER_INT_H

#include "server.h"

#include "base/metrics.h"
#include "codec/http1.h"
#include "conn.h"

/* Bytes of an unknown protocol's first bytes shown in the log. */
#define SERVER_SNIFF_SHOW 8
/* Length of a method's labels, service="..",method="..". */
#define SERVER_LABELS_MAX 320

struct server_method {
	const char *name;
	size_t name_len;
	server_handler_fn *fn;
	/* protobuf-c's types; NULL for a raw method (its calls carry wire
	 * bytes, as routed calls do) */
	const ProtobufCMessageDescriptor *input, *output;
	/* its types in the descriptor pool, for HTTP/JSON; NULL: unknown
	 * (JSON callers get 415) */
	const struct pbd_method *pbd;
	unsigned flags;
	struct server_service *svc;
	struct climit limit; /* server_set_method_concurrency() */
	char limit_what[SERVER_LABELS_MAX];
	/* /status and /metrics */
	struct metrics_counter calls, errors;
	struct metrics_latency latency;
	char labels[SERVER_LABELS_MAX];
};

struct server_service {
	const char *name; /* full */
	const char *short_name;
	size_t name_len, short_len;
	bool packaged; /* its full name has a dot (it differs from the short) */
	const ProtobufCServiceDescriptor *desc; /* NULL: a raw service */
	const struct pbd_service *pbd;		/* NULL: not in the pool */
	void *arg;
	unsigned nmethods;
	struct server_method methods[];
};

enum srv_proto {
	SRV_DETECT,  /* no protocol recognised yet */
	SRV_UPGRADE, /* the upgrade's handshake */
	SRV_TLS,     /* the TLS handshake */
	SRV_BAIDU,   /* baidu_std */
	SRV_HTTP,    /* HTTP/1.x */
	SRV_H2,	     /* HTTP/2 (gRPC) */
	SRV_REFUSED, /* answered, closing: read nothing more */
};

/* The HTTP side of a connection (loop thread, but `busy`). */
enum srv_http_state {
	SH_IDLE, /* between requests (keep-alive) */
	SH_HEAD, /* a head is coming */
	SH_BODY, /* its body is coming */
	SH_CALL, /* its answer is being made: read on once it is out */
};

struct srv_http {
	enum srv_http_state state;
	size_t scanned;		 /* the head's end searched this far */
	struct http1_req *req;	 /* the request whose body is read */
	char *head;		 /* the head's bytes, req's strings */
	struct iobuf body;	 /* what came of the body so far */
	uint64_t body_left;	 /* Content-Length bodies: to come */
	struct http1_chunked ch; /* chunked bodies */
	struct loop_timer timer; /* head deadline, body silence, idle */
	struct task resume;	 /* the answer is out: read on */
	uint64_t requests;	 /* on this connection */
	bool inited;
};

struct srv_conn {
	struct conn conn;
	struct server *srv;
	struct srv_conn *prev, *next; /* srv->conns, under srv->lock */
	bool linked;
	enum srv_proto proto; /* loop thread */
	bool authed;	      /* loop thread */
	bool upgraded;	      /* loop thread: handshake done (or refused) */
	bool tls_decided;     /* loop thread: TLS or plain is known */
	char local_text[SERVER_ADDR_TEXT_MAX];
	int64_t accepted_ns;
	struct loop_timer first_bytes; /* upgrade ports: first bytes due */
	struct srv_http http;
	struct srv_h2 *h2;	/* HTTP/2: its session (loop thread) */
	struct task h2_stop;	/* server__h2_stop() */
	struct task h2_flush;	/* server_h2.c: a flush left for later */
	bool h2_flush_posted;
};

/* ---- server.c ----------------------------------------------------------- */

struct server_service *server__find_service(struct server *s, const char *name,
					    size_t n, bool *is_short);
struct server_method *server__find_method(struct server_service *svc,
					  const char *name, size_t n);
const char *server__addr_text(const struct srv_conn *sc);
/* Gives a route back to the router (server_set_route_release); NULL: none. */
void server__route_release(struct server *s, void *route);

/*
 * A request is counted in flight before the checks that may refuse it:
 * 0 (admitted: it also counts against the server's limit) or the code
 * to refuse it with (ELOGOFF, ELIMIT), with the text in `why`.  The
 * caller ends a refused one with server__refused() once its answer is
 * queued, an admitted one with server__call_free() (a call was made) or
 * server__uncount_call().
 */
int server__admit(struct server *s, char *why, size_t why_size);
/* Who the connection's peer is, for the auth hook (strings: the conn's). */
struct server_peer server__peer(struct srv_conn *sc);
/*
 * The auth hook (if any) on a request's credential (cred->ptr NULL:
 * none): 0 accepted, or RPC_ERPCAUTH, logged, with brpc's answer text
 * ("Fail to authenticate[: why]") in text.
 */
int server__authenticate(struct srv_conn *sc, const struct baidu_bytes *cred,
			 char *text, size_t text_size);
void server__refused(struct server *s);
void server__uncount_call(struct server *s);

/* After admission, the method's own limit: 0, or RPC_ELIMIT (why says);
 * an entered one is left by server__call_free(), which a call on the
 * method must then reach (call->m set). */
int server__method_enter(struct server *s, struct server_method *m, char *why,
			 size_t why_size);

/* The call holds n request bytes more (max_inflight_bytes) until freed. */
void server__call_hold(struct server_call *call, size_t n);

/* A zeroed call on `sc`, its buffers initialised, holding a reference
 * to the connection; NULL: no memory. */
struct server_call *server__call_new(struct srv_conn *sc);
/* Counts the answer (per method too) and frees the call. */
void server__call_free(struct server_call *call);

/* The worker part of a typed call: decode `body` (uncompressed wire
 * bytes of compress type `compress`), then the handler. */
void server__call_typed(struct server_call *call, struct iobuf *body,
			int compress);
/* Runs the call's method on a worker (or here, for inline methods). */
void server__call_dispatch(struct server_call *call,
			   void (*run)(struct task *));

/* ---- server_baidu.c ----------------------------------------------------- */

void server__baidu_data(struct srv_conn *sc);
void server__baidu_finish(struct server_call *call);

/* ---- server_http.c ------------------------------------------------------ */

void server__http_data(struct srv_conn *sc);
void server__http_finish(struct server_call *call);
void server__http_close(struct srv_conn *sc);

/*
 * Queues one whole HTTP answer on sc: `status`, the fields in `extra`
 * (each ending in CRLF), Content-Type `type` (NULL: none), `body` (moved
 * out). HEAD requests (`head_only`) get the head alone.  The answer's
 * version is the request's (minor).
 */
void server__http_answer(struct srv_conn *sc, int minor, bool head_only,
			 int status, const char *extra, const char *type,
			 struct iobuf *body);

/* ---- server_h2.c -------------------------------------------------------- */

/* Do the first bytes start HTTP/2's client preface?  1 yes, 0 not enough
 * bytes yet, -1 no. */
int server__h2_detect(const struct iobuf *in);
void server__h2_data(struct srv_conn *sc);
void server__h2_finish(struct server_call *call);
void server__h2_close(struct srv_conn *sc);
/* Any thread: a stopping server's GOAWAY, sent from the conn's loop. */
void server__h2_stop(struct srv_conn *sc);
/* HTTP/1's semantics on an HTTP/2 stream, for server_http.c: the answer
 * server__http_answer() makes (any thread; its fields are HTTP/1 lines,
 * the connection's own dropped), a call bound to the stream, and the
 * call's answer made (it goes out and the call is freed on the loop). */
void server__h2_http_answer(struct server_stream *st, int status,
			    bool head_only, const char *extra,
			    const char *type, struct iobuf *body);
void server__h2_bind_call(struct server_stream *st, struct server_call *call);
/*
 * An HTTP/1.1 request asking `Upgrade: h2c` (RFC 7540 3.2; deprecated
 * by RFC 9113 but what curl --http2 sends): 0, the connection is HTTP/2
 * now (101 sent, the request served as stream 1); or -errno, nothing
 * done: serve it over HTTP/1.1 as if the upgrade were not asked.
 */
int server__h2_upgrade(struct srv_conn *sc, const struct http1_req *req);
void server__h2_http_done(struct server_call *call);

/* ---- server_http.c, for server_h2.c -------------------------------------- */

/*
 * An HTTP/2 request that is not gRPC, served as an HTTP/1.1 one (pages,
 * HTTP/JSON calls): `method`, `path`, its `fields` ("name: value\r\n",
 * n bytes, host from :authority) and its body (taken).  Loop thread; the
 * answer comes through server__h2_http_answer(), now or from the call.
 */
void server__http_h2(struct srv_conn *sc, struct server_stream *st,
		     const char *method, const char *path, const char *fields,
		     size_t n, struct iobuf *body);

/* ---- server_pages.c ----------------------------------------------------- */

/*
 * The built-in page `req` asks for, if it is one: answered (true), or
 * false (not a page: a service's path).  keep_alive is what the answer
 * says about the connection.
 */
bool server__page(struct srv_conn *sc, const struct http1_req *req,
		  bool keep_alive);

#endif
