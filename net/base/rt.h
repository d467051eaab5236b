/*
 * rt: the runtime, the threads of the budget put to work.
 *
 * One rt owns `dispatchers` event loops (net/base/loop.h), each on its own
 * thread, and a task worker pool (net/base/workers.h) of `task_workers`
 * threads: exactly the budget's W - P threads (RDMA pollers, the P, are
 * started by rdma/ from the same budget).  Connections are spread over the
 * loops by rt_loop_for(); handlers and completions go to rt_submit().
 *
 * Lifecycle: rt_init -> rt_start -> rt_stop -> rt_destroy, all from the
 * owner thread (not a loop or worker thread).  rt_stop stops the loops
 * first (no new events), then drains the workers (every accepted task
 * runs).  rt_submit and rt_loop_for may be called from any thread between
 * init and stop.
 */
#ifndef RPCGATE_NET_RT_H
#define RPCGATE_NET_RT_H

#include <stdbool.h>

#include "budget.h"
#include "log.h"
#include "loop.h"
#include "mem.h"
#include "workers.h"

struct rt_options {
	const struct mem *mem; /* NULL: mem_default() */
	struct log *log;       /* NULL: discard */
	int dispatchers;       /* event loops: 1..BUDGET_MAX_DISPATCHERS */
	int task_workers;      /* 1..WORKERS_MAX_THREADS */
	int64_t spin_ns;       /* each loop's loop_options.spin_ns */
};

struct rt {
	struct rt_options opt;
	struct loop *loops; /* opt.dispatchers, allocated at init */
	int nloops_init;    /* loops initialised (for unwinding) */
	int nloops_started;
	struct workers workers;
	bool started;
	bool stopped;
};

/* Sizes the runtime from a resolved budget; mem and log stay NULL. */
void rt_options_from_budget(struct rt_options *opt, const struct budget *b);

/* 0, or -EINVAL naming nothing: the caller's budget code explains. */
int rt_options_validate(const struct rt_options *opt);

/* 0, -EINVAL, -ENOMEM, or a loop/workers init error; nothing held on
 * failure. */
int rt_init(struct rt *rt, const struct rt_options *opt);

/* Spawns every thread.  0 or -errno; on failure every thread spawned is
 * stopped and joined again. */
int rt_start(struct rt *rt);

/* Stops loops, drains workers, joins every thread.  Idempotent. */
void rt_stop(struct rt *rt);

/* Stops if needed and releases everything. */
void rt_destroy(struct rt *rt);

/* The loop that owns connection `key` (e.g. an fd): key % dispatchers. */
struct loop *rt_loop_for(struct rt *rt, unsigned key);

/* Queues a task for a worker: 0, or -ESHUTDOWN once stopping. */
int rt_submit(struct rt *rt, struct task *t);

#endif
