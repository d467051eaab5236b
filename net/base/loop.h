/*
 * loop: one event loop = one thread running epoll (edge-triggered), with
 * fd watchers, timers, tasks posted from other threads and deferred tasks.
 *
 * Threads.  The "loop thread" is the thread inside loop_run(): the one
 * loop_start() spawns, or the caller of loop_run().  While no thread runs
 * the loop (before start, after join) the thread that owns the struct
 * counts as the loop thread.  loop_post(), loop_stop(), loop_on_thread()
 * and loop_stats() may be called from any thread; every other call only
 * from the loop thread.
 *
 * One iteration:
 *   1. wait in epoll_wait(); the timeout is 0 if tasks of step 6 or 7
 *      are pending, else the earliest timer deadline in ms rounded up (so the
 *      wait never ends before it), else infinite;
 *   2. refresh loop_now();
 *   3. dispatch I/O events to watchers, in batch order;
 *   4. run tasks posted with loop_post();
 *   5. fire due timers, in (deadline, start order);
 *   6. run tasks deferred with loop_defer() before step 6 began;
 *   7. run tasks queued with loop_defer_last() before step 7 began.
 *
 * Memory.  Watchers, timers and tasks live in caller storage; the loop
 * keeps pointers to them while they are registered, started or queued.
 * loop_init() allocates the epoll event array through opt->mem; nothing
 * else allocates.
 *
 * Closing from a callback.  loop_io_del() also invalidates events for that
 * watcher that are still pending in the current epoll batch, so once it
 * returns the loop never touches the watcher again and its memory may be
 * reused at once.  Objects still referenced further up the caller's own
 * stack are freed with loop_defer(): the task runs after every callback of
 * the current iteration has returned.
 */
#ifndef RPCGATE_NET_LOOP_H
#define RPCGATE_NET_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "heap.h"
#include "log.h"
#include "mem.h"
#include "task.h"

/* Events fetched per epoll_wait() by default: 256 x 12 bytes = 3 KiB. */
#define LOOP_MAX_EVENTS_DEFAULT 256
/* Bound on max_events (768 KiB of events): bigger batches add latency. */
#define LOOP_MAX_EVENTS_LIMIT 65536
/* Default thread stack: musl's 128 KiB is too small for protocol code. */
#define LOOP_STACK_SIZE_DEFAULT (1024 * 1024)
/* Smallest stack accepted: below it libc calls alone may overflow it. */
#define LOOP_STACK_SIZE_MIN (64 * 1024)
/* Thread names show in logs and in top -H; Linux keeps 15 characters. */
#define LOOP_NAME_MAX 15

struct loop_options {
	const struct mem *mem; /* NULL: mem_default() */
	struct log *log;       /* NULL: discard */
	const char *name;      /* thread name, 1..LOOP_NAME_MAX chars */
	int max_events;	       /* epoll batch, 1..LOOP_MAX_EVENTS_LIMIT */
	size_t stack_size;     /* loop_start's thread; >= LOOP_STACK_SIZE_MIN */
	/* An idle loop polls (epoll_wait without sleeping) this long before
	 * it sleeps: an answer that comes meanwhile costs no wake-up, for a
	 * CPU kept busy.  0: sleep at once. */
	int64_t spin_ns;
};

/* Cumulative counters, since loop_init; read with loop_stats(). */
struct loop_stats {
	uint64_t iterations;
	uint64_t io_events;    /* events dispatched to watchers */
	uint64_t stale_events; /* events dropped: watcher deleted in batch */
	uint64_t posted_run;   /* loop_post tasks run */
	uint64_t deferred_run; /* loop_defer(_last) tasks run */
	uint64_t timers_fired;
	uint64_t wakeups; /* eventfd writes by loop_post / loop_stop */
};

struct loop_io;
typedef void loop_io_fn(struct loop_io *io, uint32_t events);

/*
 * A watcher: set fd, events (EPOLLIN, EPOLLOUT, EPOLLRDHUP, ...; the loop
 * adds EPOLLET) and cb, then loop_io_add().  cb receives the ready events
 * restricted to the current mask plus EPOLLERR/EPOLLHUP.  Edge-triggered:
 * read or write until -EAGAIN before expecting another call.
 */
struct loop_io {
	int fd;
	uint32_t events;
	loop_io_fn *cb;
	bool active; /* private: registered with the loop */
};

/* Fills in a watcher (inactive).  Or set the fields of a zeroed one. */
static inline void loop_io_init(struct loop_io *io, int fd, uint32_t events,
				loop_io_fn *cb)
{
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->active = false;
}

struct loop_timer;
typedef void loop_timer_fn(struct loop_timer *t);

/* A timer: zero it or loop_timer_init() it once, then start/stop freely. */
struct loop_timer {
	struct heap_node node; /* private */
	int64_t deadline_ns;   /* read-only: CLOCK_MONOTONIC deadline */
	uint64_t seq;	       /* private: start order, breaks ties */
	loop_timer_fn *cb;
	bool active; /* private: use loop_timer_active() */
};

/* The deferred tasks' FIFO; private. */
struct loop_taskq {
	struct task *head;
	struct task *tail;
};

struct loop {
	struct loop_options opt;
	int epfd;
	int wakefd;		    /* eventfd: loop_post / loop_stop */
	struct epoll_event *events; /* opt.max_events, from opt.mem */
	int nevents;		    /* events in the batch being dispatched */
	int cur;		    /* index being dispatched, -1 if none */

	/*
	 * Cross-thread state, padded away from the loop thread's fields:
	 * producers write these on every post.
	 */
	char pad0[64];
	struct task *posted; /* Treiber stack, newest first */
	int wake_pending;    /* an eventfd write is in flight */
	int stop_requested;
	int running;	 /* a thread is inside loop_run */
	pthread_t owner; /* that thread; zero bytes when none */
	char pad1[64];

	pthread_t thread; /* loop_start's thread */
	bool started;
	int run_result; /* loop_run's result, for loop_join */

	/* Loop-thread state. */
	int64_t now_ns;
	struct heap timers;
	uint64_t timer_seq;
	struct loop_taskq deferred;
	struct loop_taskq last; /* loop_defer_last */
	size_t nios;
	struct loop_stats stats;
};

/* Defaults: mem_default(), no log, name "loop", 256 events, 1 MiB stack. */
void loop_options_default(struct loop_options *opt);

/* 0, or -EINVAL for a bad name, max_events or stack_size. */
int loop_options_validate(const struct loop_options *opt);

/*
 * Initialises `loop` in caller storage: the options are copied (name and
 * log must outlive the loop).  0, -EINVAL (bad options), -ENOMEM, or the
 * -errno of epoll_create1/eventfd/epoll_ctl.  On failure nothing is held.
 */
int loop_init(struct loop *loop, const struct loop_options *opt);

/*
 * Runs the loop on the calling thread until loop_stop().  Returns 0 when
 * stopped, -EBUSY if the loop is already running, or the -errno of a
 * failing epoll_wait (other than EINTR).  A loop_stop() that happened
 * before loop_run() makes it return after one iteration; the stop request
 * is consumed when loop_run returns, so the loop can be run again.
 */
int loop_run(struct loop *loop);

/*
 * Spawns the loop thread, which names itself opt.name in logs and runs
 * loop_run().  0, -EBUSY if started and not yet joined, or the -errno of
 * pthread_create.  Call from the owning thread.
 */
int loop_start(struct loop *loop);

/*
 * Asks the loop to return after its current iteration.  Any thread, any
 * time between loop_init and loop_destroy; never blocks; idempotent.
 */
void loop_stop(struct loop *loop);

/*
 * Waits for the thread of loop_start() to end (after loop_stop()).  Returns
 * that loop_run()'s result, or -EINVAL if not started, or -EDEADLK when
 * called from the loop thread.  Blocks.
 */
int loop_join(struct loop *loop);

/*
 * Releases the loop: the loop must not be running (joined, or loop_run
 * returned).  Tasks still posted or deferred are run first, on the calling
 * thread, so none is lost; loop_post() after this starts is a bug.
 * Watchers and timers still registered are forgotten (the caller's memory
 * is not touched) and logged as a warning.
 */
void loop_destroy(struct loop *loop);

/* True when the caller is the thread inside loop_run(). Any thread. */
bool loop_on_thread(const struct loop *loop);

/* Monotonic ns cached once per iteration (after epoll_wait). Loop thread. */
static inline int64_t loop_now(const struct loop *loop)
{
	return loop->now_ns;
}

/* Copies the counters.  Any thread; each field is individually current. */
void loop_stats(const struct loop *loop, struct loop_stats *out);

/* Watchers registered / timers started; for teardown checks. */
size_t loop_io_count(const struct loop *loop);
size_t loop_timer_count(const struct loop *loop);

/*
 * Registers `io` (fd, events and cb set by the caller).  0, -EINVAL (fd < 0
 * or no cb), -EEXIST (already added), or the -errno of epoll_ctl.
 * Loop thread.
 */
int loop_io_add(struct loop *loop, struct loop_io *io);

/*
 * Replaces the event mask.  0, -ENOENT (not added), or the -errno of
 * epoll_ctl.  Events of the old mask still pending in the current batch
 * are filtered by the new one.  Loop thread.
 */
int loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events);

/*
 * Unregisters `io`; call before close(fd) (a dup'ed fd would otherwise
 * stay in the epoll set).  The watcher is inactive afterwards whatever the
 * result, its pending events in the current batch are dropped, and the
 * loop keeps no pointer to it.  0 (also when not added), or the -errno of
 * epoll_ctl.  Loop thread, including from any callback.
 */
int loop_io_del(struct loop *loop, struct loop_io *io);

/*
 * Runs `t` on the loop thread after the callbacks of the current iteration
 * (or of the next one, when called outside an iteration); tasks deferred
 * from a deferred task run in the next iteration, which then does not
 * block.  Never fails.  Loop thread.
 */
void loop_defer(struct loop *loop, struct task *t);

/*
 * Like loop_defer(), but `t` runs after the deferred tasks, those that
 * they defer included: the last step of the iteration, for work that
 * gathers what the iteration made (a connection's corked writes go out
 * here).  Tasks it queues from the last step run in the next iteration.
 * Never fails.  Loop thread.
 */
void loop_defer_last(struct loop *loop, struct task *t);

/*
 * Queues `t` to run on the loop thread and wakes the loop if it is not
 * already being woken.  Tasks run in the order they were posted (so in
 * FIFO order per posting thread).  Lock-free, never blocks, never fails,
 * never allocates.  Any thread.
 */
void loop_post(struct loop *loop, struct task *t);

/* Makes a zeroed, inactive timer. */
void loop_timer_init(struct loop_timer *t);

/*
 * (Re)starts `t` to call cb once at the first iteration whose loop_now()
 * is >= deadline_ns.  Timers fire in deadline order, equal deadlines in
 * start order; restarting counts as a new start.  A timer started from a
 * timer callback with a deadline already past fires in the next
 * iteration, never in the same pass.  0, or -EINVAL if cb is NULL.
 * Loop thread.
 */
int loop_timer_start(struct loop *loop, struct loop_timer *t,
		     int64_t deadline_ns, loop_timer_fn *cb);

/* Cancels `t` if started; idempotent.  Loop thread. */
void loop_timer_stop(struct loop *loop, struct loop_timer *t);

/* Started and not yet fired or stopped.  Loop thread. */
static inline bool loop_timer_active(const struct loop_timer *t)
{
	return t->active;
}

#endif
