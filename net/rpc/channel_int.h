/*
 * channel internals shared by its two files, and by no other:
 *
 *   channel.c       options, connections (connect, queue, handshake,
 *                   idle pool), attempts, answers and the call's state
 *                   machine: all on the channel's loop thread
 *   channel_call.c  the caller's side (preparing, launching, joining,
 *                   cancelling a call) and completion (an ended call's
 *                   outputs, handed to its consumer)
 *   channel_h2.c    protocol grpc: a connection's HTTP/2 session, an
 *                   attempt as a stream, its answer as a frame
 */
#ifndef RPCGATE_NET_CHANNEL_INT_H
#define RPCGATE_NET_CHANNEL_INT_H

#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "channel.h"
#include "conn.h"

enum cc_state {
	CC_QUEUED, /* waiting for a turn to connect (max_connecting) */
	CC_CONNECTING,
	CC_HANDSHAKE, /* connected; the upgrade's hello is under way */
	CC_READY,
	CC_CLOSED,
};

struct chan_conn {
	struct conn conn; /* set up once connected */
	struct channel *ch;
	int fd;
	enum cc_state state;
	bool has_conn; /* conn_init done: the conn owns the fd */
	bool auth_sent;
	bool idle;    /* on ch->idle */
	bool opening; /* counted in ch->nopening */
	int64_t idle_since;
	struct loop_io cio;	       /* connecting: EPOLLOUT */
	struct loop_timer ctimer;      /* connecting: connect_timeout_ms */
	struct rpc_attempt *atts;      /* attempts on this connection */
	struct chan_conn *prev, *next; /* ch->all */
	struct chan_conn *idle_prev, *idle_next; /* ch->idle */
	struct chan_conn *q_prev, *q_next;	 /* ch->queued */
	struct chan_h2 *h2; /* protocol grpc: the HTTP/2 session */
	/* streaming calls waiting for the connection, oldest first */
	struct channel_stream *pending, *pending_tail;
	bool own; /* a streaming call's own connection (pooled, short) */
	struct task flush_task; /* channel_h2.c: a flush left for later */
	bool flush_posted;
};

/* ---- channel.c: for channel_h2.c ------------------------------------ */

/* A connection for a new streaming call: the single one, or (own) one
 * of its own.  NULL with *err. */
struct chan_conn *chan_stream_conn(struct channel *ch, bool own, int *err);
/* A streaming call on cc ended: an own connection closes once idle. */
void chan_stream_conn_done(struct chan_conn *cc);

/* ---- channel.c: for channel_h2.c ------------------------------------ */

/*
 * An answer `f` (taken) for the attempt with id `id` on cc: claims the
 * call and ends it, or drops a stale one.  Loop thread.
 */
void chan_answer(struct chan_conn *cc, uint64_t id, struct baidu_frame *f);

/* ---- channel_h2.c ------------------------------------------------------ */

/* Queues attempt `a` as a gRPC request on cc (the session made on the
 * first): 0, or -errno with the call's text set. */
int chan_h2_send(struct chan_conn *cc, struct rpc_attempt *a);
/* New bytes in cc->conn.in. */
void chan_h2_data(struct chan_conn *cc);
/* cc closes: its session and streams go (attempts fail elsewhere;
 * streaming calls end here with EFAILEDSOCKET and `why`). */
void chan_h2_close(struct chan_conn *cc, const char *why);
/* cc is ready: the streaming calls waiting for it start. */
void chan_h2_start_pending(struct chan_conn *cc);
/* cc's session has streams open. */
bool chan_h2_busy(const struct chan_conn *cc);

static inline void chan_futex_wake_all(int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleeps while *addr is val (or returns at once). */
static inline void chan_futex_wait(int *addr, int val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

/* A statistics counter of the channel. */
static inline void chan_count(uint64_t *ctr)
{
	__atomic_fetch_add(ctr, 1, __ATOMIC_RELAXED);
}

/* ---- channel_call.c --------------------------------------------------- */

/* The call's own error text (c->local_text), printf-style. */
void chan_set_local_text(struct rpc_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hands the ended call to its consumer: its done (inline, or on a task
 * worker), or the thread waiting in a sync call or join.  The last touch
 * of c. */
void chan_deliver(struct rpc_call *c);

/* ---- channel.c: the loop's tasks the caller's side posts -------------- */

/* A launched call (c->start_task): its first attempt, timers. */
void chan_start_task_fn(struct task *t);
/* A cancelled call (c->task), its id claimed by the canceller. */
void chan_finish_task_fn(struct task *t);

#endif
