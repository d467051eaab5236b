/*
 * loop: epoll event loop (see loop.h).
 *
 * Cross-thread posting.  loop_post() pushes onto a Treiber stack (one CAS;
 * no ABA problem because the only consumer takes the whole stack with one
 * exchange, never a single node) and the loop reverses what it takes, so
 * tasks run in push order.  Wake-ups are coalesced with `wake_pending`:
 *
 *   producer                          loop thread (on the eventfd event)
 *   push task          (seq_cst)      read eventfd, emptying it
 *   if !wake_pending                  wake_pending = 0   (seq_cst)
 *     and xchg(wake_pending, 1) == 0  take the stack     (seq_cst)
 *       write eventfd                 run what was taken
 *
 * This is Dekker's pattern: in the single seq_cst order either the push
 * precedes the take (the task is taken now), or the clear precedes the
 * producer's look at the flag (it sees 0 and writes the eventfd, or sees
 * the 1 of a later producer that does).  Either way no task is stranded,
 * and while a wake-up is in flight no other producer issues a syscall.
 *
 * Epoll batch staleness.  An epoll batch holds pointers to watchers.  When
 * a callback deletes another watcher (or itself) whose event is later in
 * the same batch, loop_io_del() scans the rest of the batch and clears
 * those entries, so they are skipped (and counted in stale_events); the
 * caller may free the watcher as soon as loop_io_del() returns.  The scan
 * is O(max_events) per delete, which deletes (one per closed connection)
 * can afford; it needs no per-watcher generation numbers.
 *
 * Timers.  A pairing heap ordered by (deadline, seq).  The firing pass
 * stops at the first timer whose seq was handed out during the pass, so a
 * callback that re-arms itself in the past cannot starve the loop, and
 * fire order stays (deadline, seq) across passes.
 */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "stamp.h"
#include "util.h"

static void loop_stat_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void loop_options_default(struct loop_options *opt)
{
	opt->mem = NULL;
	opt->log = NULL;
	opt->name = "loop";
	opt->max_events = LOOP_MAX_EVENTS_DEFAULT;
	opt->stack_size = LOOP_STACK_SIZE_DEFAULT;
}

int loop_options_validate(const struct loop_options *opt)
{
	if (!opt->name || !opt->name[0] || strlen(opt->name) > LOOP_NAME_MAX)
		return -EINVAL;
	if (opt->max_events < 1 || opt->max_events > LOOP_MAX_EVENTS_LIMIT)
		return -EINVAL;
	if (opt->stack_size < LOOP_STACK_SIZE_MIN || opt->spin_ns < 0)
		return -EINVAL;
	return 0;
}

static bool loop_timer_less(const struct heap_node *a,
			    const struct heap_node *b)
{
	const struct loop_timer *ta = container_of(a, struct loop_timer, node);
	const struct loop_timer *tb = container_of(b, struct loop_timer, node);

	if (ta->deadline_ns != tb->deadline_ns)
		return ta->deadline_ns < tb->deadline_ns;
	return ta->seq < tb->seq;
}

int loop_init(struct loop *loop, const struct loop_options *opt)
{
	struct epoll_event ev;
	int err;

	err = loop_options_validate(opt);
	if (err)
		return err;

	memset(loop, 0, sizeof(*loop));
	loop->opt = *opt;
	loop->opt.mem = mem_or_default(opt->mem);
	loop->cur = -1;
	heap_init(&loop->timers, loop_timer_less);

	loop->events = mem_alloc(loop->opt.mem, (size_t)opt->max_events *
						    sizeof(*loop->events));
	if (!loop->events)
		return -ENOMEM;

	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		err = -errno;
		goto out_free_events;
	}

	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wakefd < 0) {
		err = -errno;
		goto out_close_epoll;
	}

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLET;
	ev.data.ptr = &loop->wakefd;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) {
		err = -errno;
		goto out_close_wake;
	}

	loop->now_ns = clock_mono_ns();
	return 0;

out_close_wake:
	close(loop->wakefd);
out_close_epoll:
	close(loop->epfd);
out_free_events:
	mem_free(loop->opt.mem, loop->events);
	loop->events = NULL;
	return err;
}

/* Any thread: make the loop's next (or current) epoll_wait return. */
static void loop_wake(struct loop *loop)
{
	uint64_t one = 1;
	ssize_t n;

	if (__atomic_load_n(&loop->wake_pending, __ATOMIC_SEQ_CST))
		return;
	if (__atomic_exchange_n(&loop->wake_pending, 1, __ATOMIC_SEQ_CST))
		return;
	loop_stat_add(&loop->stats.wakeups, 1);
	/* EAGAIN would need 2^64 - 2 unread wakes: the flag prevents it. */
	do {
		n = write(loop->wakefd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
}

/* Loop thread: consume the wake-up, then allow the next one. */
static void loop_clear_wake(struct loop *loop)
{
	uint64_t v;
	ssize_t n;

	do {
		n = read(loop->wakefd, &v, sizeof(v));
	} while (n < 0 && errno == EINTR);
	__atomic_store_n(&loop->wake_pending, 0, __ATOMIC_SEQ_CST);
}

void loop_post(struct loop *loop, struct task *t)
{
	struct task *old = __atomic_load_n(&loop->posted, __ATOMIC_RELAXED);

	do {
		t->next = old;
	} while (!__atomic_compare_exchange_n(
	    &loop->posted, &old, t, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
	loop_wake(loop);
}

/* Runs the posted tasks taken now, oldest first; returns how many. */
static uint64_t loop_run_posted(struct loop *loop)
{
	struct task *list, *fifo = NULL, *t;
	uint64_t n = 0;

	list = __atomic_exchange_n(&loop->posted, NULL, __ATOMIC_SEQ_CST);
	while (list) {
		t = list;
		list = t->next;
		t->next = fifo;
		fifo = t;
	}
	while (fifo) {
		t = fifo;
		fifo = t->next; /* before fn: it may free or re-post t */
		t->next = NULL;
		t->fn(t);
		n++;
	}
	loop_stat_add(&loop->stats.posted_run, n);
	return n;
}

static void taskq_push(struct loop_taskq *q, struct task *t)
{
	t->next = NULL;
	if (q->tail)
		q->tail->next = t;
	else
		q->head = t;
	q->tail = t;
}

/* Runs the tasks of `q` so far; ones they queue wait for the next call. */
static uint64_t taskq_run(struct loop_taskq *q)
{
	struct task *t = q->head, *next;
	uint64_t n = 0;

	q->head = q->tail = NULL;
	while (t) {
		next = t->next;
		t->next = NULL;
		t->fn(t);
		t = next;
		n++;
	}
	return n;
}

void loop_defer(struct loop *loop, struct task *t)
{
	taskq_push(&loop->deferred, t);
}

void loop_defer_last(struct loop *loop, struct task *t)
{
	taskq_push(&loop->last, t);
}

/* Steps 6 and 7. */
static void loop_run_deferred(struct loop *loop)
{
	uint64_t n = taskq_run(&loop->deferred);

	n += taskq_run(&loop->last);
	loop_stat_add(&loop->stats.deferred_run, n);
}

void loop_timer_init(struct loop_timer *t)
{
	memset(t, 0, sizeof(*t));
}

int loop_timer_start(struct loop *loop, struct loop_timer *t,
		     int64_t deadline_ns, loop_timer_fn *cb)
{
	if (!cb)
		return -EINVAL;
	if (t->active)
		heap_remove(&loop->timers, &t->node);
	t->deadline_ns = deadline_ns;
	t->cb = cb;
	t->seq = loop->timer_seq++;
	t->active = true;
	heap_insert(&loop->timers, &t->node);
	return 0;
}

void loop_timer_stop(struct loop *loop, struct loop_timer *t)
{
	if (!t->active)
		return;
	heap_remove(&loop->timers, &t->node);
	t->active = false;
}

static void loop_fire_timers(struct loop *loop)
{
	uint64_t first_new = loop->timer_seq; /* seqs from here: next pass */
	struct heap_node *n;
	struct loop_timer *t;
	uint64_t fired = 0;

	while ((n = heap_min(&loop->timers))) {
		t = container_of(n, struct loop_timer, node);
		if (t->deadline_ns > loop->now_ns || t->seq >= first_new)
			break;
		heap_pop(&loop->timers);
		t->active = false;
		fired++;
		t->cb(t); /* may free t, start or stop any timer */
	}
	loop_stat_add(&loop->stats.timers_fired, fired);
}

/* epoll_wait's timeout: ms until the earliest deadline, rounded up. */
static int loop_timeout_ms(struct loop *loop)
{
	struct heap_node *n;
	int64_t delta, ms;

	if (loop->deferred.head || loop->last.head ||
	    __atomic_load_n(&loop->stop_requested, __ATOMIC_RELAXED))
		return 0;
	n = heap_min(&loop->timers);
	if (!n)
		return -1;
	/* A fresh clock: callbacks since the last refresh took time. */
	delta = container_of(n, struct loop_timer, node)->deadline_ns -
		clock_mono_ns();
	if (delta <= 0)
		return 0;
	ms = (delta + CLOCK_NS_PER_MS - 1) / CLOCK_NS_PER_MS;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

size_t loop_io_count(const struct loop *loop)
{
	return loop->nios;
}

size_t loop_timer_count(const struct loop *loop)
{
	return heap_count(&loop->timers);
}

int loop_io_add(struct loop *loop, struct loop_io *io)
{
	struct epoll_event ev;

	if (io->fd < 0 || !io->cb)
		return -EINVAL;
	if (io->active)
		return -EEXIST;
	memset(&ev, 0, sizeof(ev));
	ev.events = io->events | EPOLLET;
	ev.data.ptr = io;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
		return -errno;
	io->active = true;
	loop->nios++;
	return 0;
}

int loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev;

	if (!io->active)
		return -ENOENT;
	memset(&ev, 0, sizeof(ev));
	ev.events = events | EPOLLET;
	ev.data.ptr = io;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

int loop_io_del(struct loop *loop, struct loop_io *io)
{
	struct epoll_event ev;
	int i;

	if (!io->active)
		return 0;
	/* Drop its events still ahead in the batch being dispatched. */
	for (i = loop->cur + 1; i < loop->nevents; i++) {
		if (loop->events[i].data.ptr == io)
			loop->events[i].data.ptr = NULL;
	}
	io->active = false;
	loop->nios--;
	/* ev is ignored but must be non-NULL before Linux 2.6.9. */
	memset(&ev, 0, sizeof(ev));
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, &ev) < 0)
		return -errno;
	return 0;
}

/* Dispatches one batch; returns whether the wake eventfd was in it. */
static bool loop_dispatch(struct loop *loop, int n)
{
	struct epoll_event *ev;
	struct loop_io *io;
	uint64_t nio = 0, nstale = 0;
	bool woken = false;
	uint32_t mask;

	loop->nevents = n;
	for (loop->cur = 0; loop->cur < n; loop->cur++) {
		ev = &loop->events[loop->cur];
		if (!ev->data.ptr) {
			nstale++;
			continue;
		}
		if (ev->data.ptr == &loop->wakefd) {
			woken = true;
			continue;
		}
		io = ev->data.ptr;
		mask = ev->events & (io->events | EPOLLERR | EPOLLHUP);
		if (!mask)
			continue;
		nio++;
		io->cb(io, mask); /* may delete, free or re-add any watcher */
	}
	loop->cur = -1;
	loop->nevents = 0;
	loop_stat_add(&loop->stats.io_events, nio);
	loop_stat_add(&loop->stats.stale_events, nstale);
	return woken;
}

/*
 * epoll_wait, after polling for up to opt.spin_ns (not past the next
 * timer) when there is nothing to do at once.  Its result.
 */
static int loop_wait(struct loop *loop)
{
	int timeout = loop_timeout_ms(loop), n;
	struct heap_node *next;
	int64_t end, due;

	if (loop->opt.spin_ns > 0 && timeout != 0) {
		end = clock_mono_ns() + loop->opt.spin_ns;
		next = heap_min(&loop->timers);
		due = next ? container_of(next, struct loop_timer, node)
				 ->deadline_ns
			   : end;
		if (due < end)
			end = due;
		do {
			n = epoll_wait(loop->epfd, loop->events,
				       loop->opt.max_events, 0);
			if (n != 0)
				return n;
		} while (clock_mono_ns() < end);
		timeout = loop_timeout_ms(loop);
	}
	return epoll_wait(loop->epfd, loop->events, loop->opt.max_events,
			  timeout);
}

static int loop_iterate(struct loop *loop)
{
	int n, err;

	STAMP_SLEEP();
	n = loop_wait(loop);
	if (n > 0)
		STAMP_WAKE();
	if (n < 0) {
		if (errno != EINTR) {
			err = -errno;
			log_error(loop->opt.log, "loop %s: epoll_wait: %s",
				  loop->opt.name, strerror(-err));
			return err;
		}
		n = 0;
	}
	loop->now_ns = clock_mono_ns();
	loop_stat_add(&loop->stats.iterations, 1);

	if (loop_dispatch(loop, n)) {
		loop_clear_wake(loop);
		loop_run_posted(loop);
	}
	loop_fire_timers(loop);
	loop_run_deferred(loop);
	return 0;
}

/* Marks the calling thread as the loop thread; false if one already is. */
static bool loop_enter(struct loop *loop)
{
	pthread_t self = pthread_self();
	int idle = 0;

	if (!__atomic_compare_exchange_n(&loop->running, &idle, 1, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return false;
	__atomic_store(&loop->owner, &self, __ATOMIC_RELEASE);
	return true;
}

static void loop_leave(struct loop *loop)
{
	pthread_t none;

	memset(&none, 0, sizeof(none));
	__atomic_store(&loop->owner, &none, __ATOMIC_RELEASE);
	__atomic_store_n(&loop->running, 0, __ATOMIC_RELEASE);
}

bool loop_on_thread(const struct loop *loop)
{
	pthread_t owner;

	if (!__atomic_load_n(&loop->running, __ATOMIC_ACQUIRE))
		return false;
	__atomic_load(&loop->owner, &owner, __ATOMIC_ACQUIRE);
	return pthread_equal(owner, pthread_self());
}

int loop_run(struct loop *loop)
{
	int err;

	if (!loop_enter(loop))
		return -EBUSY;
	log_debug(loop->opt.log, "loop %s: running", loop->opt.name);
	loop->now_ns = clock_mono_ns();
	do {
		err = loop_iterate(loop);
	} while (!err && !__atomic_exchange_n(&loop->stop_requested, 0,
					      __ATOMIC_ACQ_REL));
	log_debug(loop->opt.log, "loop %s: stopped (%d)", loop->opt.name, err);
	loop_leave(loop);
	return err;
}

void loop_stop(struct loop *loop)
{
	__atomic_store_n(&loop->stop_requested, 1, __ATOMIC_RELEASE);
	loop_wake(loop);
}

static void *loop_thread_main(void *arg)
{
	struct loop *loop = arg;

	log_thread_name(loop->opt.name);
	pthread_setname_np(pthread_self(), loop->opt.name); /* best effort */
	loop->run_result = loop_run(loop);
	return NULL;
}

int loop_start(struct loop *loop)
{
	pthread_attr_t attr;
	int err;

	if (loop->started)
		return -EBUSY;
	err = pthread_attr_init(&attr);
	if (err)
		return -err;
	err = pthread_attr_setstacksize(&attr, loop->opt.stack_size);
	if (!err)
		err = pthread_create(&loop->thread, &attr, loop_thread_main,
				     loop);
	pthread_attr_destroy(&attr);
	if (err) {
		log_error(loop->opt.log, "loop %s: pthread_create: %s",
			  loop->opt.name, strerror(err));
		return -err;
	}
	loop->started = true;
	return 0;
}

int loop_join(struct loop *loop)
{
	int err;

	if (!loop->started)
		return -EINVAL;
	if (pthread_equal(loop->thread, pthread_self()))
		return -EDEADLK;
	err = pthread_join(loop->thread, NULL);
	if (err)
		return -err;
	loop->started = false;
	return loop->run_result;
}

void loop_stats(const struct loop *loop, struct loop_stats *out)
{
	const struct loop_stats *s = &loop->stats;

	out->iterations = __atomic_load_n(&s->iterations, __ATOMIC_RELAXED);
	out->io_events = __atomic_load_n(&s->io_events, __ATOMIC_RELAXED);
	out->stale_events = __atomic_load_n(&s->stale_events, __ATOMIC_RELAXED);
	out->posted_run = __atomic_load_n(&s->posted_run, __ATOMIC_RELAXED);
	out->deferred_run = __atomic_load_n(&s->deferred_run, __ATOMIC_RELAXED);
	out->timers_fired = __atomic_load_n(&s->timers_fired, __ATOMIC_RELAXED);
	out->wakeups = __atomic_load_n(&s->wakeups, __ATOMIC_RELAXED);
}

void loop_destroy(struct loop *loop)
{
	if (!loop_enter(loop)) {
		/* A bug in the caller; leaking beats freeing under a thread. */
		log_error(loop->opt.log, "loop %s: destroy while running",
			  loop->opt.name);
		return;
	}
	/* Exactly once: run what is still queued, as the loop thread. */
	while (__atomic_load_n(&loop->posted, __ATOMIC_ACQUIRE) ||
	       loop->deferred.head || loop->last.head) {
		loop_run_posted(loop);
		loop_run_deferred(loop);
	}
	if (loop->nios || heap_count(&loop->timers))
		log_warn(loop->opt.log,
			 "loop %s: destroyed with %zu watchers, %zu timers",
			 loop->opt.name, loop->nios, heap_count(&loop->timers));
	loop_leave(loop);

	close(loop->wakefd);
	close(loop->epfd);
	mem_free(loop->opt.mem, loop->events);
	loop->events = NULL;
}
