/*
 * channel: calls to one server over baidu_std/TCP, as brpc's Channel, or
 * over gRPC (channel_options.protocol).
 *
 * A call's way (one rpc_call, the controller, in caller storage):
 *
 *   caller     encode + compress the request (its own thread) -> a call
 *              id (net/rpc/callid) -> post the call to the channel's loop
 *   loop       pick a connection (single / pooled / short; connect if
 *              needed, connect_timeout_ms) -> pack the frame with this
 *              attempt's correlation id -> write; arm the deadline
 *              (timeout_ms, over all attempts) and the backup timer
 *   loop       whichever comes first claims the call id, exactly once:
 *                a response     -> success or the server's error
 *                the deadline   -> ERPCTIMEDOUT
 *                a cancel       -> ECANCELED
 *                the connection fails -> retry (max_retry, connection
 *                  failures only, while the deadline allows) or fail
 *              the backup timer sends one more attempt; the first answer
 *              wins, the other is dropped by id.
 *   completion sync: the caller wakes (no task worker needed, so a
 *              handler may call synchronously at any budget, as long as
 *              the callee does not itself wait for a free worker of the
 *              same rt: nested blocking calls need a worker per level,
 *              or async calls; tests/unit/test_relay.c); async:
 *              done runs once on a task worker; joinable: rpc_call_join()
 *              returns.  The response is decoded there, off the loop.
 *
 * A response that arrives after its call ended finds its id stale
 * (callid) and is dropped without touching the call's memory.
 *
 * Threads: calls from any thread but a loop thread of the channel's rt
 * (a sync call there would wait on itself: -EDEADLK).  Connections and
 * timers live on one loop of the rt, chosen at init.
 */
#ifndef RPCGATE_NET_CHANNEL_H
#define RPCGATE_NET_CHANNEL_H

#include <netinet/in.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "base/iobuf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/mem.h"
#include "base/rt.h"
#include "base/task.h"
#include "codec/baidu_std.h"
#include "callid.h"

enum channel_conn_type {
	CHANNEL_CONN_SINGLE, /* one connection, calls multiplexed by id */
	CHANNEL_CONN_POOLED, /* one call at a time per connection */
	CHANNEL_CONN_SHORT,  /* a connection per call */
};

#define CHANNEL_MAX_UNWRITTEN_DEFAULT (64u << 20)

/* What a channel speaks: brpc's baidu_std, or gRPC over HTTP/2 (h2c with
 * prior knowledge; over the upgrade, if any).  gRPC carries no
 * attachment and compresses with gzip only (a request compressed
 * otherwise goes uncompressed). */
enum channel_protocol {
	CHANNEL_PROTO_BAIDU,
	CHANNEL_PROTO_GRPC,
};

struct channel_options {
	struct rt *rt;		 /* required */
	struct iobuf_pool *pool; /* required */
	const struct mem *mem;	 /* NULL: mem_default() */
	struct log *log;	 /* NULL: discard */
	int timeout_ms;		 /* 500; -1: none */
	int connect_timeout_ms;	 /* 200 */
	int max_retry;		 /* 3: extra attempts after connection
				    failures (never after a timeout) */
	int backup_request_ms;	 /* -1: off */
	enum channel_conn_type conn_type;
	int max_connection_pool_size; /* 100: idle pooled connections kept */
	/* Connections being opened (TCP connect and the upgrade's handshake)
	 * at once; those past it wait their turn, oldest first, so a burst
	 * of new connections never starves the handshakes under way.  0: the
	 * upgrade's max_connecting (RDMA: rdma_max_handshakes), or no limit
	 * without an upgrade. */
	int max_connecting;
	int idle_timeout_s;	/* 10: pooled idle ones closed after */
	bool checksum;		/* CRC32C on requests */
	const void *credential; /* sent on each connection's first
					 request (spec 1.7); NULL: none */
	size_t credential_len;
	size_t max_body_size; /* answers over it close the connection */
	/* Async done callbacks run on the loop thread that read the answer
	 * instead of a task worker: one thread hand-off less per call, for
	 * done callbacks that never block (load generators, forwarding). */
	bool done_inline;
	uint32_t max_calls; /* calls in flight; callid capacity */
	/* A connection with more than this many bytes of requests still
	 * unwritten (a server that does not read) takes no new request:
	 * the call fails at once with EOVERCROWDED, which a cluster tries
	 * elsewhere (brpc's socket_max_unwritten_bytes, the same 64 MiB);
	 * 0: no limit.  CHANNEL_MAX_UNWRITTEN_DEFAULT. */
	size_t max_unwritten;
	/* A handshake run on each new connection before its first request
	 * (the RDMA hello: transport=rdma); NULL: plain TCP. */
	const struct conn_upgrade *upgrade;
	/* The loop of the rt that runs this channel's connections, timers
	 * and done_inline callbacks; NULL: one chosen by rt_loop_for().
	 * (A cluster puts all its instances' channels on its own loop.) */
	struct loop *loop;
	enum channel_protocol protocol; /* CHANNEL_PROTO_BAIDU */
};

struct rpc_call;
typedef void rpc_done_fn(struct rpc_call *c, void *arg);

/* Semi-sync: start with done = RPC_JOINABLE, then rpc_call_join(). */
void rpc_done_joinable(struct rpc_call *c, void *arg);
#define RPC_JOINABLE (&rpc_done_joinable)

struct chan_conn;

/* A request encoded up to this size is kept in the call (see rpc_call). */
#define RPC_CALL_INLINE_BODY 160

/* One attempt of a call on a connection; private. */
struct rpc_attempt {
	struct rpc_attempt *prev, *next; /* on cc's list */
	struct chan_conn *cc;
	struct rpc_call *call;
	uint64_t id;
	bool sent;
};

/*
 * The controller.  rpc_call_init() it, set the inputs, call; read the
 * outputs once the call has ended; rpc_call_reset() to reuse it,
 * rpc_call_destroy() when done.
 */
struct rpc_call {
	/* inputs */
	int timeout_ms;	       /* RPC_CALL_CHANNEL: the channel's */
	int max_retry;	       /* RPC_CALL_CHANNEL: the channel's */
	int backup_request_ms; /* RPC_CALL_CHANNEL: the channel's */
	bool has_log_id;
	uint64_t log_id;
	int compress_type; /* request body; COMPRESS_NONE default */
	struct iobuf request_attachment;
	/* channel_call_raw(): the request as it goes on the wire, taken
	 * from the caller (a gateway forwarding a frame it did not decode):
	 * `body` holds the message bytes (compressed per compress_type) and
	 * these its CRC32C checksum_value, sent as they are. */
	bool has_request_crc;
	uint8_t request_crc[4];

	/* outputs */
	int error_code;		    /* 0: success */
	const char *error_text;	    /* "" on success; valid until reset */
	ProtobufCMessage *response; /* decoded; owned by the call */
	struct iobuf response_attachment;
	int response_compress_type;
	/* channel_call_raw(): the answer's message bytes as received (not
	 * verified, decompressed or decoded) and its checksum_value. */
	struct iobuf response_body;
	bool has_response_crc;
	uint8_t response_crc[4];
	bool error_from_server; /* error_code came in the server's answer */
	int64_t latency_us;
	int attempts; /* attempts sent (retries and backup included) */
	uint64_t id;  /* the call id, for channel_cancel() */

	/* private */
	struct channel *ch;
	const ProtobufCMessageDescriptor *resp_desc; /* NULL: a raw call */
	const char *service, *method;
	struct iobuf body; /* encoded request, kept for retries */
	/* Or, small, uncompressed and unchecked, encoded here: it is copied
	 * into each attempt's frame, with no block of its own while the
	 * frame fits in 256 bytes (baidu_pack_request_flat()). */
	uint16_t body_inline_len;
	bool body_is_inline;
	uint8_t body_inline[RPC_CALL_INLINE_BODY];
	bool has_crc;
	uint8_t crc[4];
	rpc_done_fn *done;
	void *done_arg;
	int timeout_used_ms; /* timeout_ms or the channel's */
	int64_t start_ns, deadline_ns, backup_ns;
	int next_attempt;
	int retries_left;
	int cancel_requested; /* atomic */
	int state;	      /* atomic futex word: 0 running, 1 ended */
	bool outputs_ready;
	bool started;		   /* loop thread: the start task ran */
	bool end_pending;	   /* loop thread: ended before it started */
	struct rpc_attempt att[2]; /* the first (or a retry) and a backup */
	struct loop_timer deadline_timer, backup_timer;
	struct task start_task;
	struct task task;	 /* finish (after a cancel), then done */
	int finish_code;	 /* the local error, 0: see resp */
	struct baidu_frame resp; /* the answer, until decoded */
	bool has_resp;
	char *text_buf;	      /* the server's error text, copied */
	char local_text[160]; /* a local error's text */
};

#define RPC_CALL_CHANNEL (-2)

void rpc_call_init(struct rpc_call *c, struct iobuf_pool *pool);
/* Frees the outputs and clears the inputs (attachment emptied). */
void rpc_call_reset(struct rpc_call *c);
void rpc_call_destroy(struct rpc_call *c);

/* Waits for a call started with RPC_JOINABLE to end.  Then the outputs
 * are ready: 0.  On a loop thread of the rt a wait could never end:
 * -EDEADLK at once unless the call has ended already. */
int rpc_call_join(struct rpc_call *c);

/* Cancels `c` before or during its call: it ends with ECANCELED unless it
 * ended already.  `c` must stay valid until it ended.  Any thread. */
void rpc_call_cancel(struct rpc_call *c);

struct channel_stats {
	uint64_t calls, errors, retries, backups, timeouts, stale_responses;
	uint64_t connects, connect_failures;
	int64_t connections; /* open now */
	uint32_t inflight;
};

struct channel {
	struct channel_options opt;
	struct baidu_limits limits;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[64];
	struct loop *loop;
	struct callid_table ids;

	/* loop thread only */
	struct chan_conn *single;
	struct chan_conn *idle; /* pooled: idle connections, newest first */
	int nidle;
	struct chan_conn *all; /* every open connection */
	/* max_connecting: connections waiting to connect, oldest first, and
	 * how many are connecting or handshaking now. */
	struct chan_conn *queued, *queued_tail;
	int max_connecting;
	int nopening;
	bool admitting;
	struct loop_timer idle_timer;
	bool closing;

	int nconns; /* atomic futex word: allocated, not released */
	struct task close_task;
	int close_done; /* atomic futex word */

	/* counters, atomic */
	uint64_t n_calls, n_errors, n_retries, n_backups, n_timeouts, n_stale,
	    n_connects, n_connect_failures;
};

/* brpc's defaults: 500 ms, 200 ms, 3 retries, no backup, single. */
void channel_options_default(struct channel_options *opt);

/*
 * `server` is "host:port"; a host name is resolved once, here (the first
 * IPv4/IPv6 address getaddrinfo gives).  0; -EINVAL: bad options or a
 * malformed address; -EHOSTUNREACH: the name does not resolve; -ENOMEM.
 * The rt must be started before the first call.
 */
int channel_init(struct channel *ch, const char *server,
		 const struct channel_options *opt);

/*
 * Fails every call in flight with ECANCELED ("channel closed"), closes
 * every connection and waits for them.  No call may start concurrently.
 * Not on a loop thread of the rt.
 */
void channel_destroy(struct channel *ch);

/*
 * Calls method `method_index` of service `svc` with `req`; the outputs go
 * to `c` (which must not be in another call).
 *   done NULL:          sync; returns c->error_code once the call ended.
 *   done RPC_JOINABLE:  returns 0 at once; rpc_call_join() waits.
 *   done a function:    returns 0 at once; done(c, arg) runs once, on a
 *                       task worker (the loop thread with done_inline),
 *                       when the call ended (c may be freed there).
 * A call that cannot even start (bad arguments, no memory, all call ids
 * in use, a sync call on a loop thread) still completes: its error is in
 * c->error_code (EINVAL, ENOMEM, EAGAIN, EDEADLK) and done runs.
 */
int channel_call(struct channel *ch, const ProtobufCServiceDescriptor *svc,
		 unsigned method_index, const ProtobufCMessage *req,
		 struct rpc_call *c, rpc_done_fn *done, void *arg);

/*
 * Cancels the call with id `id` if it is still in flight: 0, it ends
 * with ECANCELED; -ENOENT: it ended (or the id is unknown), or, rarely,
 * the loop held it at that instant to send a retry or a backup, and then
 * it still ends with ECANCELED.
 */
int channel_cancel(struct channel *ch, uint64_t id);

/*
 * As channel_call() for a request that is already encoded: `service`
 * and `method` as they go in the meta (they must outlive the call),
 * c->body the message bytes, compressed per c->compress_type (taken:
 * the call owns and resets them), c->request_attachment, and
 * c->has_request_crc/request_crc a checksum_value to pass on.  The
 * answer is not decoded: on success c->response stays NULL and
 * c->response_body holds its message bytes, c->response_compress_type
 * their compression, c->has_response_crc/response_crc its checksum.
 * Nothing is verified or decompressed on the way: the far ends do that.
 */
int channel_call_raw(struct channel *ch, const char *service,
		     const char *method, struct rpc_call *c, rpc_done_fn *done,
		     void *arg);

void channel_stats(struct channel *ch, struct channel_stats *out);

/*
 * Streaming calls (protocol grpc): one HTTP/2 stream carrying messages
 * both ways, gRPC's client-, server- and bidirectional streaming (a
 * unary call is a stream with one message each way).  Messages are
 * protobuf bytes, uncompressed.  Everything runs on the channel's loop
 * thread (ch->loop): open, write, end, pause and cancel from there, and
 * the callbacks run there.
 *
 *   on_message  one answer message (msg may be moved out)
 *   on_writable the requests queued fell below CHANNEL_STREAM_LOW after
 *               a write found them past CHANNEL_STREAM_HIGH
 *   on_close    the last callback, once: the server's grpc-status as
 *               brpc's code (0: OK) and its text, or the local reason
 *               (ERPCTIMEDOUT: timeout_ms passed, EFAILEDSOCKET: the
 *               connection failed, ERESPONSE: a bad answer); the stream
 *               is freed when it returns
 *
 * The stream goes on the channel's connection (single), or on one of its
 * own, closed when the stream ends (pooled, short).  Back-pressure both
 * ways: writes past CHANNEL_STREAM_HIGH should wait for on_writable (the
 * queue drains as the server's window allows), and a paused stream gives
 * the server no more window, so at most a stream window (1 MiB) more
 * arrives until it is resumed.  No retries: a stream that failed is the
 * caller's to open again.
 */
struct channel_stream;

struct channel_stream_ops {
	void (*on_message)(struct channel_stream *s, struct iobuf *msg,
			   void *arg);
	void (*on_writable)(struct channel_stream *s, void *arg);
	void (*on_close)(struct channel_stream *s, int code, const char *text,
			 void *arg);
};

#define CHANNEL_STREAM_HIGH (1u << 20)
#define CHANNEL_STREAM_LOW  (CHANNEL_STREAM_HIGH / 2)

/* Opens a stream to /service/method (copied), ending with ERPCTIMEDOUT
 * after timeout_ms (RPC_CALL_CHANNEL: the channel's; -1: never; sent as
 * grpc-timeout), with `metadata` ("name: value\r\n" each, lowercase;
 * NULL: none; copied, without the fields the channel sets itself:
 * content-type, te, host, grpc-*, connection-specific ones, and
 * authorization when it has a credential; 64 at most).  The stream, or
 * NULL with *err: -EINVAL (not protocol grpc, not on the loop thread),
 * -ENOMEM, or a connect's failure. */
struct channel_stream *channel_stream_open(struct channel *ch,
					   const char *service,
					   const char *method, int timeout_ms,
					   const char *metadata,
					   const struct channel_stream_ops *ops,
					   void *arg, int *err);
/* The server's metadata so far, in that form: its headers (from the
 * first on_message), its trailers (in on_close); grpc-status,
 * grpc-message, content-type and the like left out. */
const char *channel_stream_headers(const struct channel_stream *s);
const char *channel_stream_trailers(const struct channel_stream *s);
/* Queues one request message (moved out of msg): the bytes of requests
 * waiting to go (compare with CHANNEL_STREAM_HIGH), or -EPIPE (ended,
 * closing), -ENOMEM. */
ssize_t channel_stream_write(struct channel_stream *s, struct iobuf *msg);
/* The last request was written: half-closes after the queue. */
void channel_stream_end(struct channel_stream *s);
/* Stops (true) or resumes (false) taking answers from the server. */
void channel_stream_pause(struct channel_stream *s, bool paused);
/* Resets the stream; no callback runs after it, s is freed. */
void channel_stream_cancel(struct channel_stream *s);
/* "ip:port" of the server. */
const char *channel_stream_peer(const struct channel_stream *s);

/* "baidu_std", "grpc" <-> enum; -EINVAL for other text. */
int channel_protocol_parse(const char *s, enum channel_protocol *out);
const char *channel_protocol_name(enum channel_protocol p);

/* "single", "pooled", "short" <-> enum; -EINVAL for other text. */
int channel_conn_type_parse(const char *s, enum channel_conn_type *out);
const char *channel_conn_type_name(enum channel_conn_type t);

#endif
