/*
 * conn: one connection: a socket owned by one event loop, a transport ops
 * table, a read buffer handed to the protocol layer, and a lock-free write
 * queue that any thread may append to.
 *
 * Reading (loop thread only).  The fd is watched edge-triggered.  On
 * EPOLLIN the loop reads until -EAGAIN into `in` and calls
 * handler->on_data(conn) after each read; the protocol cuts whole frames
 * off conn->in and leaves partial ones.  EOF or a read error closes.
 *
 * Writing (any thread).  conn_write() moves an iobuf into a request and
 * pushes it with one atomic exchange.  The thread whose push found the
 * queue empty becomes the writer: it writes in FIFO order until the queue
 * is empty; everyone else returns at once.  A writer that meets -EAGAIN
 * hands the rest to the loop thread, which waits for EPOLLOUT.  Requests
 * from one thread go out in the order that thread wrote them, and a
 * request's bytes are never interleaved with another's.
 *
 *   push:    req->next = PENDING; prev = xchg(head, req);
 *            prev ? req->next = prev (newest points to older) : write
 *   writer:  write req; CAS(head, req, NULL) ? done
 *            : walk head -> req reversing the links (wait for PENDING
 *              links to be filled in), continue with the oldest
 *
 * Closing.  conn_close() may be called from any thread, any number of
 * times; the first call wins.  The loop thread then stops watching the fd,
 * shuts the socket down and calls handler->on_close(conn, err) exactly
 * once.  Queued writes are dropped (their buffers released).  The fd is
 * closed and ops->release called when the last reference goes.
 *
 * Back-pressure (conn_set_limits).  Bytes queued and not yet written are
 * counted (conn_queued(), and in a shared gauge): past `read_pause` the
 * loop stops reading the connection (its requests wait in the socket)
 * until half have gone; a writer parked for longer than
 * `write_timeout_ms` without a byte going out closes it with -ETIMEDOUT
 * (write_timed_out says so to on_close).
 *
 * Lifetime.  A conn is refcounted: the loop's watch holds one reference,
 * each writer at work holds one, and users take their own with
 * conn_ref()/conn_unref().  conn_init() returns with one reference, the
 * caller's.
 */
#ifndef RPCGATE_NET_CONN_H
#define RPCGATE_NET_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/iobuf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/mem.h"
#include "base/metrics.h"
#include "base/task.h"

/*
 * Writes the loop thread queues for a connection wait (are corked) until
 * the end of the loop's iteration, or until this many bytes are queued:
 * many small answers share a system call, a big one does not wait.  The
 * answer that uses up a read does not wait either (see conn_write()).
 */
#define CONN_CORK_BYTES (16u << 10)

struct conn;

/*
 * The transport: how bytes move.  TCP, or one that takes the connection
 * over after a handshake on it (RDMA: rdma/rdt_ep.h).  `read` runs on the
 * loop thread when the fd is readable; `write` on whichever thread holds
 * the writer role.  c->tp may be switched (conn_set_transport()) only on
 * the loop thread.
 */
struct conn_transport {
	const char *name;
	/* Reads into `in`: bytes, 0 at EOF, -EAGAIN, or -errno. */
	ssize_t (*read)(struct conn *c, struct iobuf *in);
	/* A read shorter than this drained the socket: with edge-triggered
	 * epoll, bytes arriving later raise a new edge, so the read that
	 * would only say -EAGAIN can be skipped.  0: always read until
	 * -EAGAIN. */
	size_t drained_below;
	/* Writes from the front of `out`, dropping what went: bytes,
	 * -EAGAIN, or -errno.  After -EAGAIN the writer role parks on the
	 * loop thread until EPOLLOUT, or, with `own_wakeup`, until the
	 * transport calls conn_resume_writes(). */
	ssize_t (*write)(struct conn *c, struct iobuf *out);
	bool own_wakeup;
	/* Optional.  Loop thread, once, as the conn closes, before the
	 * handler's on_close: stop watching what the transport watches. */
	void (*close)(struct conn *c);
	/* Optional.  With the last reference, before the handler's
	 * release: free c->tp_ctx. */
	void (*release)(struct conn *c);
};
extern const struct conn_transport conn_tcp;

/*
 * A handshake that may move a TCP connection to another transport (the
 * RDMA hello, spec/brpc-wire.md 2.3-2.8), run by the loop thread that owns
 * the connection, never blocking.  Each step returns one of CONN_UP_* or
 * -errno (the connection must close; the upgrade has logged why).  On
 * CONN_UP_TCP and CONN_UP_DONE the bytes left in c->in belong to the RPC
 * protocol.
 */
enum {
	CONN_UP_WAIT = 0, /* needs more bytes in c->in */
	CONN_UP_TCP = 1,  /* stays (or falls back to) plain TCP */
	CONN_UP_DONE = 2, /* c->tp is the new transport */
};

struct conn_upgrade {
	const char *name;
	void *ctx;
	/* Server: do the first bytes start this handshake?  1 yes, 0 not
	 * enough bytes yet, -1 no. */
	int (*detect)(const struct iobuf *in);
	/* Server: consumes the client's bytes from c->in and answers. */
	int (*accept_step)(void *ctx, struct conn *c);
	/* Client, right after the TCP connect, before conn_start(): sends
	 * the hello, or says CONN_UP_TCP (nothing sent) when it cannot. */
	int (*connect_start)(void *ctx, struct conn *c);
	/* Client: consumes the server's answer from c->in. */
	int (*connect_step)(void *ctx, struct conn *c);
	/* Optional, client: why the handshake on c failed, for the calls
	 * that waited on it (NULL: not known); valid until c's release. */
	const char *(*why)(const struct conn *c);
	/* Server: a connection on this port must send its first bytes
	 * within first_bytes_ms (0: no limit), and the handshake's first
	 * message is first_len bytes (for the log of one that ended
	 * early). */
	int first_bytes_ms;
	size_t first_len;
	/* Client: a channel's connections in this handshake at once (0: no
	 * limit); see channel_options.max_connecting. */
	int max_connecting;
};

/* The protocol side: what bytes mean.  Both run on the loop thread. */
struct conn_handler {
	/* Optional: the loop watches the connection now (its first
	 * callback on the loop thread).  May call conn_close(). */
	void (*on_start)(struct conn *c);
	/* New bytes are at the end of c->in.  May call conn_close(). */
	void (*on_data)(struct conn *c);
	/* Exactly once, after the fd left the loop.  0 for EOF, -errno. */
	void (*on_close)(struct conn *c, int err);
	/* The last reference went: free the memory holding `c`. */
	void (*release)(struct conn *c);
};

/* One queued write; private. */
struct conn_wreq {
	struct conn_wreq *next;
	struct iobuf data;
};

struct conn {
	struct loop *loop;
	struct loop_io io;
	const struct conn_transport *tp; /* atomic: switched on the loop */
	void *tp_ctx;			 /* the transport's */
	const struct conn_handler *h;
	void *ctx; /* the handler's */
	const struct mem *mem;
	struct log *log;
	struct iobuf_pool *pool;
	struct sockaddr_storage peer;
	char peer_text[64]; /* "1.2.3.4:5678", for logs */
	struct iobuf in;    /* loop thread only */

	int refs;    /* atomic */
	int closing; /* atomic: conn_close() won */
	int close_err;
	int close_on_drain; /* atomic: conn_close_after_flush() */
	int drain_err;
	struct conn_wreq *wq_head; /* atomic: newest pushed request */
	struct conn_wreq *wq_cur;  /* writer only: being written */
	struct conn_wreq *wq_fifo; /* writer only: next ones, oldest first */
	bool want_out;		   /* loop thread: the writer role is
				     * parked here until EPOLLOUT */
	bool started;		   /* watched by the loop (loop thread) */
	struct task start_task;
	struct task write_task; /* hands the writer role to the loop */
	struct task flush_task; /* uncorks at the end of the iteration */
	bool flush_queued;	/* loop thread: flush_task is deferred */
	bool corked;		/* loop thread: the writer role waits for
				 * flush_task or CONN_CORK_BYTES */
	size_t corked_bytes;	/* loop thread: queued while corked */
	struct task close_task;
	uint64_t bytes_in, bytes_out;
	/* back-pressure (conn_set_limits) */
	int64_t queued;		    /* atomic: bytes written to, not out */
	struct metrics_gauge *acct; /* NULL, or gets queued's changes */
	int64_t read_pause;	    /* 0: never pause */
	int read_paused;	    /* atomic: loop stopped reading */
	int read_posted;	    /* atomic: read_task is queued */
	struct task read_task;	    /* resumes reading on the loop */
	int write_timeout_ms;	    /* 0: none */
	struct loop_timer wto;	    /* loop thread */
	int64_t out_progress_ns;    /* loop thread: last byte out, parked */
	bool write_timed_out;	    /* closed by write_timeout_ms */
	size_t last_read; /* loop thread: the last read's bytes (tcp) */
	bool last_batch;  /* loop thread: on_data is handling a read that
			   * drained the socket (see conn_write()) */
};

/*
 * Sets up `c` for connected socket `fd` (non-blocking is set here) on
 * `loop`.  Watching starts with conn_start().  0 or -errno.  Any thread.
 */
int conn_init(struct conn *c, int fd, struct loop *loop,
	      const struct conn_transport *tp, const struct conn_handler *h,
	      void *ctx, struct iobuf_pool *pool, const struct mem *mem,
	      struct log *log);

/* Before conn_start(): the back-pressure of the connection (see the top);
 * acct NULL, read_pause 0 and write_timeout_ms 0 each turn one off. */
void conn_set_limits(struct conn *c, struct metrics_gauge *acct,
		     size_t read_pause, int write_timeout_ms);

/* Bytes queued and not yet out (any thread; a snapshot). */
static inline int64_t conn_queued(const struct conn *c)
{
	return __atomic_load_n(&c->queued, __ATOMIC_RELAXED);
}

/* Starts watching the fd on the conn's loop (posts there; any thread). */
void conn_start(struct conn *c);

/*
 * Queues `data` (moved: `data` is empty on return, whatever happens).
 * 0; -ECONNRESET/-EPIPE or the close error once the conn is closing;
 * -ENOMEM.  Never blocks.  Any thread.  Another thread's write starts at
 * once; on the conn's loop thread it starts at the end of the loop's
 * iteration, together with every write queued behind it by then, or as
 * soon as CONN_CORK_BYTES are queued, or at once when it is queued from
 * this conn's on_data once c->in is empty after a read that drained the
 * socket (TCP: a transport with drained_below 0 never qualifies).
 */
int conn_write(struct conn *c, struct iobuf *data);

/* Starts closing with `err` (0: orderly).  Any thread, idempotent. */
void conn_close(struct conn *c, int err);

/*
 * Closes with `err` once every write queued so far has gone out (or
 * failed): a last answer before hanging up (ERPCAUTH, a server's
 * graceful stop).  Writes queued after this call may or may not go out.
 * Any thread; combines with conn_close(), first close wins.
 */
void conn_close_after_flush(struct conn *c, int err);

/*
 * Loop thread.  Switches the transport (ctx: its c->tp_ctx).  The writer
 * role, if parked, is resumed with the new transport.
 */
void conn_set_transport(struct conn *c, const struct conn_transport *tp,
			void *ctx);

/* Loop thread: a transport with own_wakeup can write again. */
void conn_resume_writes(struct conn *c);

/* Loop thread: a transport that receives by other means than `read`
 * (completions) appended n bytes to c->in: hand them to the handler. */
void conn_delivered(struct conn *c, size_t n);

void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
/*
 * Any thread: a reference, unless the last one is already gone (false:
 * the conn is being released).  For code that finds conns through a list
 * of its own which their release leaves under the same lock.
 */
bool conn_tryref(struct conn *c);

static inline bool conn_closing(const struct conn *c)
{
	return __atomic_load_n(&c->closing, __ATOMIC_ACQUIRE) != 0;
}

#endif
