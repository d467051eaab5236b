/*
 * task: a unit of deferred work, embedded in the caller's object.
 *
 *	struct conn { ...; struct task close_task; };
 *	static void conn_close_fn(struct task *t)
 *	{
 *		struct conn *c = container_of(t, struct conn, close_task);
 *		...
 *	}
 *
 * A task is handed to a runner (loop_post, loop_defer, workers_submit),
 * which owns `next` until it calls `fn`; `fn` runs exactly once per
 * successful hand-over, and from the moment `fn` is entered the task is the
 * caller's again (it may be freed or handed over anew from inside `fn`).
 * A task must not be handed to two runners, or twice, before it has run.
 */
#ifndef RPCGATE_NET_TASK_H
#define RPCGATE_NET_TASK_H

#include <stddef.h>

struct task {
	struct task *next; /* owned by the runner while queued */
	void (*fn)(struct task *t);
};

static inline void task_init(struct task *t, void (*fn)(struct task *t))
{
	t->next = NULL;
	t->fn = fn;
}

#endif
