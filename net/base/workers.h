/*
 * workers: the task worker pool: N threads running submitted tasks.
 *
 * Lifecycle: workers_init -> workers_start -> workers_stop ->
 * workers_destroy.  Tasks may be submitted from the end of init until stop
 * begins, from any thread (tasks included); submitted tasks run exactly
 * once, on a worker thread, in no guaranteed order across workers (a
 * single worker would run them in submission order).
 *
 * The line stop draws: every workers_submit() that returned 0 has its task
 * run before workers_stop() returns; every workers_submit() that returns
 * -ESHUTDOWN has not queued its task and never will (the caller still owns
 * it).  The switch is one atomic instant inside workers_stop(); submits
 * racing with it land on one side or the other, never in between.  Tasks
 * that run during the drain and submit more get -ESHUTDOWN.
 *
 * Memory: init allocates the per-thread slots through opt->mem; submit
 * never allocates (tasks are intrusive, in caller storage).
 *
 * Design (why not per-worker queues): on a 2-core budget the contention
 * that matters is submitters against workers.  Submitting is one CAS onto
 * a lock-free stack plus a read of the sleeper count; the pool mutex is
 * taken only to wake a sleeping worker, and only if no wake-up is already
 * on its way to every sleeper.  Workers take the mutex to pop: the first
 * one to find the local FIFO empty moves the whole stack into it
 * (reversed, so order is kept).  Per-worker queues would need work
 * stealing to keep a busy worker's backlog from waiting behind a long
 * task, which costs more than this on two cores.
 */
#ifndef RPCGATE_NET_WORKERS_H
#define RPCGATE_NET_WORKERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "mem.h"
#include "task.h"

/* Upper bound on nthreads: far above any sane worker_num; bounds the slots
 * array allocated at init. */
#define WORKERS_MAX_THREADS 1024
/* Default thread stack: musl's 128 KiB is too small for handler code. */
#define WORKERS_STACK_SIZE_DEFAULT (1024 * 1024)
/* Smallest stack accepted: below it libc calls alone may overflow it. */
#define WORKERS_STACK_SIZE_MIN (64 * 1024)
/* Thread names are "<name>-<i>"; Linux keeps 15 characters, so 10 + "-"
 * + up to 4 digits. */
#define WORKERS_NAME_MAX 10

struct workers_options {
	unsigned nthreads;     /* 1..WORKERS_MAX_THREADS */
	const struct mem *mem; /* NULL: mem_default() */
	struct log *log;       /* NULL: discard */
	const char *name;      /* 1..WORKERS_NAME_MAX chars */
	size_t stack_size;     /* >= WORKERS_STACK_SIZE_MIN */
};

struct workers_stats {
	uint64_t submitted; /* submits that returned 0 */
	uint64_t completed; /* tasks whose fn has returned */
};

struct workers_thread; /* private: one per worker, cache-line sized */

struct workers {
	struct workers_options opt;

	/*
	 * Submitters' cache line: the CAS on `inbox` leaves the line owned
	 * by the submitter, so counting next to it costs no extra transfer.
	 */
	char pad0[64];
	struct task *inbox; /* Treiber stack, newest first; or closed */
	uint64_t submitted;
	char pad1[64];

	/* Workers' state, under `lock`. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct task *head; /* FIFO moved out of the inbox */
	struct task *tail;
	unsigned idle;	/* workers waiting on cond (read unlocked) */
	unsigned wakes; /* signals sent, not yet taken by a waiter */
	bool stopping;	/* inbox closed: drain, then exit */
	bool aborting;	/* start failed: exit without draining */

	/* Owner's state. */
	struct workers_thread *threads; /* opt.nthreads slots */
	void *threads_mem;		/* what to free (threads, aligned) */
	unsigned nstarted;
	bool stopped;
};

/* Defaults: 2 threads, mem_default(), no log, name "worker", 1 MiB stack. */
void workers_options_default(struct workers_options *opt);

/* 0, or -EINVAL for a bad nthreads, name or stack_size. */
int workers_options_validate(const struct workers_options *opt);

/*
 * Initialises `pool` in caller storage (options copied; name and log must
 * outlive it).  No thread runs yet; tasks may already be submitted.
 * 0, -EINVAL (bad options), -ENOMEM, or the -errno of pthread init calls.
 * On failure nothing is held.
 */
int workers_init(struct workers *pool, const struct workers_options *opt);

/*
 * Spawns the threads, each named "<name>-<i>" in logs.  0, -EBUSY if
 * already started, -EINVAL after stop, or the -errno of pthread_create;
 * on failure the threads already spawned finish the task they are
 * running, if any, and are joined; the pool is then unstarted again, with
 * the tasks they did not run still queued.  Owner thread.
 */
int workers_start(struct workers *pool);

/*
 * Queues `t` (t->fn set by the caller) for one worker.  0, or -ESHUTDOWN
 * once stop has begun (see above).  Lock-free unless a worker sleeps;
 * never blocks for long, never allocates.  Any thread.
 */
int workers_submit(struct workers *pool, struct task *t);

/*
 * Closes the pool to submits, waits until every accepted task has run and
 * joins the threads.  If the pool was never started, the queued tasks run
 * on the calling thread.  Blocks.  0, -EDEADLK from a worker thread, or
 * -EALREADY if already stopped.  Owner thread (not a worker).
 */
int workers_stop(struct workers *pool);

/* Stops the pool if needed, then releases it.  Owner thread. */
void workers_destroy(struct workers *pool);

/*
 * Counter snapshot.  Any thread.  Exact once the pool is quiet (after
 * stop, or when submitters and tasks have finished); while busy, each
 * counter may lag by the submits or tasks in flight.
 */
void workers_stats(const struct workers *pool, struct workers_stats *out);

#endif
