/*
 * channel internals shared by its two files, and by no other:
 *
 *   channel.c       options, connections (connect, queue, handshake,
 *                   idle pool), attempts, answers and the call's state
 *                   machine: all on the channel's loop thread
 *   channel_call.c  the caller's side (preparing, launching, joining,
 *                   cancelling a call) and completion (an ended call's
 *                   outputs, handed to its consumer)
 */
#ifndef RPCGATE_NET_CHANNEL_INT_H
#define RPCGATE_NET_CHANNEL_INT_H

#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "channel.h"

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
