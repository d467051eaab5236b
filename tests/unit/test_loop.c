/*
 * test_loop: the event loop: lifecycle, timers, watchers (batch staleness,
 * deferred close), cross-thread posting, allocation failures.
 *
 * Every test runs under an alarm, and ends through loop_check_teardown():
 * no watcher registered, no timer started, every allocation freed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/mem.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 120

#include "testutil.h"
/* A loop test that has not finished by then failed: its guard fires. */
#define GUARD_NS (20 * CLOCK_NS_PER_S)

struct fixture {
	struct mem_failing mf;
	struct loop loop;
	struct loop_timer guard;
	bool guard_fired;
};

static void guard_cb(struct loop_timer *t)
{
	struct fixture *fx = container_of(t, struct fixture, guard);

	fx->guard_fired = true;
	loop_stop(&fx->loop);
}

static void fx_init_spin(struct fixture *fx, int max_events, int64_t spin_ns)
{
	struct loop_options opt;

	memset(fx, 0, sizeof(*fx));
	mem_failing_init(&fx->mf, -1);
	loop_options_default(&opt);
	opt.mem = &fx->mf.mem;
	opt.name = "tloop";
	if (max_events)
		opt.max_events = max_events;
	opt.spin_ns = spin_ns;
	assert_int_equal(loop_init(&fx->loop, &opt), 0);
	loop_timer_init(&fx->guard);
}

static void fx_init(struct fixture *fx, int max_events)
{
	fx_init_spin(fx, max_events, 0);
}

/* Runs on the calling thread with the guard armed; asserts it stayed. */
static void fx_run(struct fixture *fx)
{
	assert_int_equal(loop_timer_start(&fx->loop, &fx->guard,
					  clock_mono_ns() + GUARD_NS, guard_cb),
			 0);
	assert_int_equal(loop_run(&fx->loop), 0);
	assert_false(fx->guard_fired);
	loop_timer_stop(&fx->loop, &fx->guard);
}

static void loop_check_teardown(struct fixture *fx)
{
	assert_int_equal(loop_io_count(&fx->loop), 0);
	assert_int_equal(loop_timer_count(&fx->loop), 0);
	loop_destroy(&fx->loop);
	assert_int_equal(fx->mf.live, 0);
}

/* ---- options, init, lifecycle ---- */

static void test_loop_options(void **state)
{
	struct loop_options opt;
	struct loop loop;

	(void)state;
	loop_options_default(&opt);
	assert_int_equal(loop_options_validate(&opt), 0);
	opt.name = "";
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
	opt.name = "sixteen-chars-xx";
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
	opt.name = NULL;
	assert_int_equal(loop_init(&loop, &opt), -EINVAL);
	loop_options_default(&opt);
	opt.max_events = 0;
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
	opt.max_events = LOOP_MAX_EVENTS_LIMIT + 1;
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
	loop_options_default(&opt);
	opt.stack_size = LOOP_STACK_SIZE_MIN - 1;
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
	loop_options_default(&opt);
	opt.spin_ns = -1;
	assert_int_equal(loop_options_validate(&opt), -EINVAL);
}

static void test_loop_init_alloc_failures(void **state)
{
	struct loop_options opt;
	struct mem_failing mf;
	struct loop loop;
	long k;
	int err;

	(void)state;
	loop_options_default(&opt);
	opt.mem = &mf.mem;
	for (k = 0;; k++) {
		mem_failing_init(&mf, k);
		err = loop_init(&loop, &opt);
		if (err == 0)
			break;
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(mf.live, 0);
		assert_true(k < 100);
	}
	assert_true(k >= 1); /* init allocates: k = 0 must have failed */
	loop_destroy(&loop);
	assert_int_equal(mf.live, 0);
}

/* A thread that cannot be created: start fails, nothing is held. */
static void test_loop_start_failure(void **state)
{
	struct loop_options opt;
	struct mem_failing mf;
	struct loop loop;

	(void)state;
	mem_failing_init(&mf, -1);
	loop_options_default(&opt);
	opt.mem = &mf.mem;
	opt.stack_size = (size_t)1 << 62; /* no address space has this */
	assert_int_equal(loop_init(&loop, &opt), 0);
	assert_true(loop_start(&loop) < 0);
	assert_int_equal(loop_join(&loop), -EINVAL);
	loop_destroy(&loop);
	assert_int_equal(mf.live, 0);
}

static void test_loop_stop_before_run(void **state)
{
	struct fixture fx;
	struct loop_stats st;

	(void)state;
	fx_init(&fx, 0);
	assert_false(loop_on_thread(&fx.loop));
	loop_stop(&fx.loop);
	assert_int_equal(loop_run(&fx.loop), 0);
	loop_stats(&fx.loop, &st);
	assert_int_equal(st.iterations, 1);
	assert_false(loop_on_thread(&fx.loop));
	loop_check_teardown(&fx);
}

struct probe {
	struct task task;
	struct loop *loop;
	bool ran;
	bool on_thread;
	int nested_run;
};

static void probe_fn(struct task *t)
{
	struct probe *p = container_of(t, struct probe, task);

	p->on_thread = loop_on_thread(p->loop);
	p->nested_run = loop_run(p->loop);
	__atomic_store_n(&p->ran, true, __ATOMIC_RELEASE);
	loop_stop(p->loop);
}

static void log_collect(void *ctx, const char *line, size_t len)
{
	char *buf = ctx;
	size_t used = strlen(buf);

	if (used + len + 1 < 8192) {
		memcpy(buf + used, line, len);
		buf[used + len] = '\0';
	}
}

static void test_loop_thread_lifecycle(void **state)
{
	static char lines[8192];
	struct log_options lopt;
	struct loop_options opt;
	struct mem_failing mf;
	struct probe p;
	struct log lg;
	struct loop loop;

	(void)state;
	lines[0] = '\0';
	log_options_default(&lopt);
	lopt.level = LOG_LVL_DEBUG;
	lopt.sink = log_collect;
	lopt.sink_ctx = lines;
	assert_int_equal(log_init(&lg, &lopt), 0);

	mem_failing_init(&mf, -1);
	loop_options_default(&opt);
	opt.mem = &mf.mem;
	opt.log = &lg;
	opt.name = "tloop-7";
	assert_int_equal(loop_init(&loop, &opt), 0);
	assert_int_equal(loop_join(&loop), -EINVAL);

	memset(&p, 0, sizeof(p));
	task_init(&p.task, probe_fn);
	p.loop = &loop;
	loop_post(&loop, &p.task); /* before start: must not be lost */
	assert_int_equal(loop_start(&loop), 0);
	assert_int_equal(loop_start(&loop), -EBUSY);
	assert_int_equal(loop_join(&loop), 0); /* the task stops it */
	assert_true(p.ran);
	assert_true(p.on_thread);
	assert_int_equal(p.nested_run, -EBUSY);
	assert_false(loop_on_thread(&loop));

	/* Again, stopped from this thread this time. */
	assert_int_equal(loop_start(&loop), 0);
	loop_stop(&loop);
	assert_int_equal(loop_join(&loop), 0);

	assert_int_equal(loop_io_count(&loop), 0);
	assert_int_equal(loop_timer_count(&loop), 0);
	loop_destroy(&loop);
	assert_int_equal(mf.live, 0);
	log_destroy(&lg);
	/* The loop thread named itself in its log lines. */
	assert_non_null(strstr(lines, "[tloop-7]"));
}

/* ---- timers ---- */

#define NTIMERS 2000

struct ttimer {
	struct loop_timer t;
	int idx;
	bool cancelled;
	int fired;
	struct tctx *ctx;
};

struct tctx {
	struct fixture fx;
	struct ttimer timers[NTIMERS];
	int order[NTIMERS]; /* indexes in firing order */
	int nfired;
	int expected;
	bool early;
};

static void ttimer_cb(struct loop_timer *t)
{
	struct ttimer *tt = container_of(t, struct ttimer, t);
	struct tctx *c = tt->ctx;

	if (clock_mono_ns() < t->deadline_ns ||
	    loop_now(&c->fx.loop) < t->deadline_ns)
		c->early = true;
	assert_false(loop_timer_active(t));
	tt->fired++;
	c->order[c->nfired++] = tt->idx;
	if (c->nfired == c->expected)
		loop_stop(&c->fx.loop);
}

static void test_timer_order_random(void **state)
{
	struct tctx *c = calloc(1, sizeof(*c));
	struct ttimer *a, *b;
	int64_t base;
	int i;

	(void)state;
	assert_non_null(c);
	fx_init(&c->fx, 0);
	srand(7);
	base = clock_mono_ns() + 5 * CLOCK_NS_PER_MS;
	for (i = 0; i < NTIMERS; i++) {
		c->timers[i].idx = i;
		c->timers[i].ctx = c;
		loop_timer_init(&c->timers[i].t);
		/* 30 distinct deadlines for 2000 timers: many ties. */
		assert_int_equal(
		    loop_timer_start(&c->fx.loop, &c->timers[i].t,
				     base + (rand() % 30) * CLOCK_NS_PER_MS,
				     ttimer_cb),
		    0);
		assert_true(loop_timer_active(&c->timers[i].t));
	}
	c->expected = NTIMERS;
	for (i = 0; i < NTIMERS; i += 4) {
		loop_timer_stop(&c->fx.loop, &c->timers[i].t);
		loop_timer_stop(&c->fx.loop, &c->timers[i].t); /* idempotent */
		c->timers[i].cancelled = true;
		c->expected--;
	}
	assert_int_equal(loop_timer_count(&c->fx.loop), c->expected);
	fx_run(&c->fx);

	assert_false(c->early);
	assert_int_equal(c->nfired, c->expected);
	for (i = 0; i < NTIMERS; i++)
		assert_int_equal(c->timers[i].fired,
				 c->timers[i].cancelled ? 0 : 1);
	/* Deadline order; ties in start order (= index order here). */
	for (i = 1; i < c->nfired; i++) {
		a = &c->timers[c->order[i - 1]];
		b = &c->timers[c->order[i]];
		assert_true(
		    a->t.deadline_ns < b->t.deadline_ns ||
		    (a->t.deadline_ns == b->t.deadline_ns && a->idx < b->idx));
	}
	loop_check_teardown(&c->fx);
	free(c);
}

/* Restarting counts as a new start: it goes behind its ties. */
static void test_timer_restart_tie(void **state)
{
	struct tctx *c = calloc(1, sizeof(*c));
	int64_t d;
	int i;

	(void)state;
	assert_non_null(c);
	fx_init(&c->fx, 0);
	d = clock_mono_ns() + CLOCK_NS_PER_MS;
	for (i = 0; i < 3; i++) {
		c->timers[i].idx = i;
		c->timers[i].ctx = c;
		loop_timer_start(&c->fx.loop, &c->timers[i].t, d, ttimer_cb);
	}
	loop_timer_start(&c->fx.loop, &c->timers[0].t, d, ttimer_cb);
	assert_int_equal(loop_timer_count(&c->fx.loop), 3);
	assert_int_equal(
	    loop_timer_start(&c->fx.loop, &c->timers[3].t, d, NULL), -EINVAL);
	c->expected = 3;
	fx_run(&c->fx);
	assert_int_equal(c->order[0], 1);
	assert_int_equal(c->order[1], 2);
	assert_int_equal(c->order[2], 0);
	assert_false(c->early);
	loop_check_teardown(&c->fx);
	free(c);
}

/*
 * A re-arms itself 5 times; at its 2nd firing it cancels B and moves C
 * (started far in the future) closer.  Deadlines are far apart enough
 * that a stalled machine cannot reorder them.
 */
struct rearm {
	struct fixture fx;
	struct loop_timer a, b, c;
	int a_fired, b_fired, c_fired;
	int64_t c_deadline;
};

static void rearm_done(struct rearm *r)
{
	if (r->a_fired == 5 && r->c_fired == 1)
		loop_stop(&r->fx.loop);
}

static void rearm_b_cb(struct loop_timer *t)
{
	container_of(t, struct rearm, b)->b_fired++;
}

static void rearm_c_cb(struct loop_timer *t)
{
	struct rearm *r = container_of(t, struct rearm, c);

	assert_true(clock_mono_ns() >= r->c_deadline);
	r->c_fired++;
	rearm_done(r);
}

static void rearm_a_cb(struct loop_timer *t)
{
	struct rearm *r = container_of(t, struct rearm, a);
	struct loop *loop = &r->fx.loop;

	r->a_fired++;
	if (r->a_fired == 2) {
		assert_true(loop_timer_active(&r->b));
		loop_timer_stop(loop, &r->b);
		assert_false(loop_timer_active(&r->b));
		assert_true(loop_timer_active(&r->c));
		r->c_deadline = loop_now(loop) + 20 * CLOCK_NS_PER_MS;
		loop_timer_start(loop, &r->c, r->c_deadline, rearm_c_cb);
	}
	if (r->a_fired < 5)
		loop_timer_start(loop, t, loop_now(loop) + CLOCK_NS_PER_MS,
				 rearm_a_cb);
	rearm_done(r);
}

static void test_timer_rearm_and_cancel(void **state)
{
	struct rearm r;
	int64_t now;

	(void)state;
	memset(&r, 0, sizeof(r));
	fx_init(&r.fx, 0);
	now = clock_mono_ns();
	loop_timer_start(&r.fx.loop, &r.a, now + CLOCK_NS_PER_MS, rearm_a_cb);
	/* Stopped by a's second run, ~2 ms on: far enough that no stall of
	 * the machine lets it fire first. */
	loop_timer_start(&r.fx.loop, &r.b, now + 5 * CLOCK_NS_PER_S,
			 rearm_b_cb);
	loop_timer_start(&r.fx.loop, &r.c, now + 10 * CLOCK_NS_PER_S,
			 rearm_c_cb);
	fx_run(&r.fx);
	assert_int_equal(r.b_fired, 0);
	assert_int_equal(r.c_fired, 1);
	assert_int_equal(r.a_fired, 5);
	assert_false(loop_timer_active(&r.a));
	loop_check_teardown(&r.fx);
}

/* A timer re-arming itself in the past must not starve I/O. */
#define PAST_ROUNDS 1000

struct past {
	struct fixture fx;
	struct loop_timer t;
	struct loop_io io;
	int rounds;
	int rounds_at_io;
};

static void past_io_cb(struct loop_io *io, uint32_t events)
{
	struct past *p = container_of(io, struct past, io);

	(void)events;
	p->rounds_at_io = p->rounds;
	loop_io_del(&p->fx.loop, io);
}

static void past_cb(struct loop_timer *t)
{
	struct past *p = container_of(t, struct past, t);

	if (++p->rounds == PAST_ROUNDS) {
		loop_stop(&p->fx.loop);
		return;
	}
	loop_timer_start(&p->fx.loop, t, loop_now(&p->fx.loop) - 1, past_cb);
}

static void test_timer_past_rearm_no_starvation(void **state)
{
	struct loop_stats st;
	struct past p;
	int sv[2];

	(void)state;
	memset(&p, 0, sizeof(p));
	fx_init(&p.fx, 0);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	p.rounds_at_io = -1;
	loop_timer_start(&p.fx.loop, &p.t, 0, past_cb);
	fx_run(&p.fx);
	assert_int_equal(p.rounds, PAST_ROUNDS);
	loop_stats(&p.fx.loop, &st);
	/* One firing per pass: a pass per iteration. */
	assert_true(st.iterations >= PAST_ROUNDS);

	/* And with I/O arriving midway, it is served long before the end. */
	p.rounds = 0;
	loop_timer_start(&p.fx.loop, &p.t, 0, past_cb);
	loop_io_init(&p.io, sv[0], EPOLLIN, past_io_cb);
	assert_int_equal(loop_io_add(&p.fx.loop, &p.io), 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	fx_run(&p.fx);
	assert_true(p.rounds_at_io >= 0 && p.rounds_at_io < 10);
	close(sv[0]);
	close(sv[1]);
	loop_check_teardown(&p.fx);
}

/* ---- I/O watchers ---- */

#define IO_CHUNK  100
#define IO_CHUNKS 10

struct rd {
	struct fixture fx;
	struct loop_io io;
	struct loop_timer writer;
	int sv[2];
	int chunks_sent;
	size_t received;
	int calls;
};

static void rd_writer_cb(struct loop_timer *t)
{
	struct rd *r = container_of(t, struct rd, writer);
	char buf[IO_CHUNK];

	memset(buf, 'a', sizeof(buf));
	assert_int_equal(write(r->sv[1], buf, sizeof(buf)), IO_CHUNK);
	if (++r->chunks_sent < IO_CHUNKS)
		loop_timer_start(&r->fx.loop, t,
				 loop_now(&r->fx.loop) + CLOCK_NS_PER_MS,
				 rd_writer_cb);
}

static void rd_cb(struct loop_io *io, uint32_t events)
{
	struct rd *r = container_of(io, struct rd, io);
	char buf[64];
	ssize_t n;

	assert_true(events & EPOLLIN);
	r->calls++;
	/* Edge-triggered: drain to EAGAIN. */
	while ((n = read(io->fd, buf, sizeof(buf))) > 0)
		r->received += (size_t)n;
	assert_int_equal(n, -1);
	assert_int_equal(errno, EAGAIN);
	if (r->received == IO_CHUNK * IO_CHUNKS) {
		assert_int_equal(loop_io_del(&r->fx.loop, io), 0);
		loop_stop(&r->fx.loop);
	}
}

/* ---- polling before sleeping (spin_ns) ---- */

/* Long enough that a loop polling through a timer's deadline (or past
 * bytes that came) would be seen late by far more than a stall of a
 * loaded machine (CI met 535 ms). */
#define SPIN_NS	     (5000 * CLOCK_NS_PER_MS)
#define SPIN_LATE_NS (2000 * CLOCK_NS_PER_MS)
/* CPU the polling loop has used before the writer writes. */
#define SPIN_CPU_NS (5 * CLOCK_NS_PER_MS)

struct spin {
	struct fixture fx;
	struct loop_timer t;
	struct loop_io io;
	int sv[2];
	clockid_t loop_cpu; /* the loop thread's CPU clock */
	int64_t deadline, fired, read_at, written_at;
};

static void spin_timer_cb(struct loop_timer *t)
{
	struct spin *sp = container_of(t, struct spin, t);

	sp->fired = clock_mono_ns();
	loop_stop(&sp->fx.loop);
}

/* A timer due while the loop polls fires on time: the polling ends at
 * the next deadline. */
static void test_spin_timer_on_time(void **state)
{
	struct spin sp;

	(void)state;
	memset(&sp, 0, sizeof(sp));
	fx_init_spin(&sp.fx, 0, SPIN_NS);
	loop_timer_init(&sp.t);
	sp.deadline = clock_mono_ns() + 20 * CLOCK_NS_PER_MS;
	loop_timer_start(&sp.fx.loop, &sp.t, sp.deadline, spin_timer_cb);
	fx_run(&sp.fx);
	assert_true(sp.fired >= sp.deadline);
	assert_true(sp.fired - sp.deadline < SPIN_LATE_NS);
	loop_check_teardown(&sp.fx);
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts))
		abort();
	return ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

/* Another thread: a byte once the loop has polled for SPIN_CPU_NS of its
 * CPU time (a clock a stall of the machine does not move), or after 2 s
 * if it never does (a loop that sleeps: the test then fails on its CPU). */
static void *spin_writer_main(void *arg)
{
	struct spin *sp = arg;
	int64_t cpu0 = clock_ns(sp->loop_cpu),
		give_up = clock_mono_ns() + 2 * CLOCK_NS_PER_S;
	struct timespec pause = {0, CLOCK_NS_PER_MS};

	while (clock_ns(sp->loop_cpu) - cpu0 < SPIN_CPU_NS &&
	       clock_mono_ns() < give_up)
		nanosleep(&pause, NULL);
	__atomic_store_n(&sp->written_at, clock_mono_ns(), __ATOMIC_RELEASE);
	if (write(sp->sv[1], "x", 1) != 1)
		abort();
	return NULL;
}

static void spin_read_cb(struct loop_io *io, uint32_t events)
{
	struct spin *sp = container_of(io, struct spin, io);
	char c;

	(void)events;
	assert_int_equal(read(sp->sv[0], &c, 1), 1);
	sp->read_at = clock_mono_ns();
	loop_io_del(&sp->fx.loop, io);
	loop_stop(&sp->fx.loop);
}

/* Bytes that come while the loop polls are dispatched as they come, and
 * it did poll: its thread was on a CPU while it waited (a sleeping loop
 * uses next to none in 2 s). */
static void test_spin_io(void **state)
{
	struct spin sp;
	pthread_t writer;
	int64_t cpu;

	(void)state;
	memset(&sp, 0, sizeof(sp));
	fx_init_spin(&sp.fx, 0, SPIN_NS);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp.sv), 0);
	loop_io_init(&sp.io, sp.sv[0], EPOLLIN, spin_read_cb);
	assert_int_equal(loop_io_add(&sp.fx.loop, &sp.io), 0);
	assert_int_equal(pthread_getcpuclockid(pthread_self(), &sp.loop_cpu),
			 0);
	cpu = clock_ns(sp.loop_cpu);
	assert_int_equal(pthread_create(&writer, NULL, spin_writer_main, &sp),
			 0);
	fx_run(&sp.fx);
	cpu = clock_ns(sp.loop_cpu) - cpu;
	assert_int_equal(pthread_join(writer, NULL), 0);
	assert_true(cpu >= 2 * CLOCK_NS_PER_MS);
	assert_true(sp.written_at > 0 && sp.read_at >= sp.written_at);
	assert_true(sp.read_at - sp.written_at < SPIN_LATE_NS);
	close(sp.sv[0]);
	close(sp.sv[1]);
	loop_check_teardown(&sp.fx);
}

static void test_io_readable(void **state)
{
	struct rd r;

	(void)state;
	memset(&r, 0, sizeof(r));
	fx_init(&r.fx, 0);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, r.sv), 0);
	loop_io_init(&r.io, r.sv[0], EPOLLIN, rd_cb);
	assert_int_equal(loop_io_add(&r.fx.loop, &r.io), 0);
	assert_int_equal(loop_io_add(&r.fx.loop, &r.io), -EEXIST);
	assert_int_equal(loop_io_count(&r.fx.loop), 1);
	loop_timer_start(&r.fx.loop, &r.writer, 0, rd_writer_cb);
	fx_run(&r.fx);
	assert_int_equal(r.received, IO_CHUNK * IO_CHUNKS);
	assert_true(r.calls >= 1 && r.calls <= IO_CHUNKS);
	assert_int_equal(loop_io_del(&r.fx.loop, &r.io), 0); /* idempotent */
	close(r.sv[0]);
	close(r.sv[1]);
	loop_check_teardown(&r.fx);
}

struct wr {
	struct fixture fx;
	struct loop_io io;
	int peer;
	uint32_t seen[4];
	int calls;
};

static void wr_cb(struct loop_io *io, uint32_t events)
{
	struct wr *w = container_of(io, struct wr, io);

	w->seen[w->calls++] = events;
	if (w->calls == 1) {
		/* Now only readable matters; make it so from the peer. */
		assert_int_equal(loop_io_mod(&w->fx.loop, io, EPOLLIN), 0);
		assert_int_equal(write(w->peer, "ping", 4), 4);
	} else {
		loop_io_del(&w->fx.loop, io);
		loop_stop(&w->fx.loop);
	}
}

static void test_io_mod_and_errors(void **state)
{
	struct loop_io bad;
	struct wr w;
	int sv[2];

	(void)state;
	memset(&w, 0, sizeof(w));
	fx_init(&w.fx, 0);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	loop_io_init(&bad, -1, EPOLLIN, wr_cb);
	assert_int_equal(loop_io_add(&w.fx.loop, &bad), -EINVAL);
	loop_io_init(&bad, sv[0], EPOLLIN, NULL);
	assert_int_equal(loop_io_add(&w.fx.loop, &bad), -EINVAL);
	assert_int_equal(loop_io_mod(&w.fx.loop, &bad, EPOLLOUT), -ENOENT);
	assert_int_equal(loop_io_del(&w.fx.loop, &bad), 0);

	/* sv[1]: writable at once; then readable once sv[0] writes. */
	w.peer = sv[0];
	loop_io_init(&w.io, sv[1], EPOLLOUT, wr_cb);
	assert_int_equal(loop_io_add(&w.fx.loop, &w.io), 0);
	fx_run(&w.fx);
	assert_int_equal(w.calls, 2);
	assert_int_equal(w.seen[0], EPOLLOUT);
	/* Nothing of the old mask after the mod. */
	assert_int_equal(w.seen[1], EPOLLIN);
	close(sv[0]);
	close(sv[1]);
	loop_check_teardown(&w.fx);
}

/*
 * NPAIRS readable watchers in one batch; whichever runs first deletes,
 * closes and frees all the others.  With ASan, dispatching any of their
 * stale events would be a heap-use-after-free.
 */
#define NPAIRS 8

struct conn {
	struct loop_io io;
	struct task close_task;
	struct batch *b;
	int peer;
	int calls;
	bool closing;
};

struct batch {
	struct fixture fx;
	struct conn *conns[NPAIRS];
	int calls;
	int closed;
	char order[16];
	int norder;
};

static void batch_kill_cb(struct loop_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, io);
	struct batch *b = c->b;
	int i;

	(void)events;
	b->calls++;
	for (i = 0; i < NPAIRS; i++) {
		struct conn *o = b->conns[i];

		assert_int_equal(loop_io_del(&b->fx.loop, &o->io), 0);
		close(o->io.fd);
		close(o->peer);
		if (o != c) {
			free(o);
			b->conns[i] = NULL;
		}
	}
	/* Ourselves too: freed from our own callback, before returning. */
	for (i = 0; i < NPAIRS; i++) {
		if (b->conns[i] == c)
			b->conns[i] = NULL;
	}
	free(c);
	loop_stop(&b->fx.loop);
}

static struct conn *conn_new(struct batch *b, loop_io_fn *cb)
{
	struct conn *c = calloc(1, sizeof(*c));
	int sv[2];

	assert_non_null(c);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	c->b = b;
	c->peer = sv[1];
	loop_io_init(&c->io, sv[0], EPOLLIN, cb);
	assert_int_equal(loop_io_add(&b->fx.loop, &c->io), 0);
	assert_int_equal(write(c->peer, "x", 1), 1);
	return c;
}

static void test_io_delete_in_same_batch(void **state)
{
	struct loop_stats st;
	struct batch b;
	int i;

	(void)state;
	memset(&b, 0, sizeof(b));
	fx_init(&b.fx, 0);
	for (i = 0; i < NPAIRS; i++)
		b.conns[i] = conn_new(&b, batch_kill_cb);
	assert_int_equal(loop_io_count(&b.fx.loop), NPAIRS);
	fx_run(&b.fx);
	assert_int_equal(b.calls, 1);
	loop_stats(&b.fx.loop, &st);
	assert_int_equal(st.stale_events, NPAIRS - 1);
	assert_int_equal(st.io_events, 1);
	for (i = 0; i < NPAIRS; i++)
		assert_null(b.conns[i]);
	loop_check_teardown(&b.fx);
}

/* Same, with a batch of one event: stale entries never exist. */
static void test_io_delete_small_batches(void **state)
{
	struct loop_stats st;
	struct batch b;
	int i;

	(void)state;
	memset(&b, 0, sizeof(b));
	fx_init(&b.fx, 1);
	for (i = 0; i < NPAIRS; i++)
		b.conns[i] = conn_new(&b, batch_kill_cb);
	fx_run(&b.fx);
	assert_int_equal(b.calls, 1);
	loop_stats(&b.fx.loop, &st);
	assert_int_equal(st.stale_events, 0);
	loop_check_teardown(&b.fx);
}

/* Deferred close: the object outlives the rest of the batch. */
static void dclose_fn(struct task *t)
{
	struct conn *c = container_of(t, struct conn, close_task);
	struct batch *b = c->b;

	assert_true(c->closing);
	b->order[b->norder++] = 'F';
	b->closed++;
	free(c);
	if (b->closed == 2)
		loop_stop(&b->fx.loop);
}

static void dclose_cb(struct loop_io *io, uint32_t events)
{
	struct conn *c = container_of(io, struct conn, io);
	struct batch *b = c->b;

	(void)events;
	b->order[b->norder++] = 'C';
	assert_int_equal(loop_io_del(&b->fx.loop, io), 0);
	close(io->fd);
	close(c->peer);
	task_init(&c->close_task, dclose_fn);
	loop_defer(&b->fx.loop, &c->close_task);
	/* Still ours until the batch is over: touching it is fine. */
	c->closing = true;
	c->calls++;
}

static void test_io_deferred_close(void **state)
{
	struct loop_stats st;
	struct batch b;

	(void)state;
	memset(&b, 0, sizeof(b));
	fx_init(&b.fx, 0);
	b.conns[0] = conn_new(&b, dclose_cb);
	b.conns[1] = conn_new(&b, dclose_cb);
	fx_run(&b.fx);
	/* Both callbacks of the batch ran before either close. */
	assert_string_equal(b.order, "CCFF");
	loop_stats(&b.fx.loop, &st);
	assert_int_equal(st.deferred_run, 2);
	loop_check_teardown(&b.fx);
}

/* ---- cross-thread posting ---- */

#define POST_THREADS	4
#define POST_PER_THREAD 250000

struct post_ctx;

struct ptask {
	struct task task;
	struct post_ctx *ctx;
	uint32_t thread;
	uint32_t seq;
	uint32_t runs;
};

struct post_ctx {
	struct fixture fx;
	struct ptask *tasks; /* POST_THREADS x POST_PER_THREAD */
	uint32_t next_seq[POST_THREADS];
	uint64_t total;
	bool off_thread;
	bool out_of_order;
};

struct producer {
	struct post_ctx *ctx;
	uint32_t thread;
	pthread_t tid;
};

static void ptask_fn(struct task *t)
{
	struct ptask *p = container_of(t, struct ptask, task);
	struct post_ctx *c = p->ctx;

	if (!loop_on_thread(&c->fx.loop))
		c->off_thread = true;
	if (p->seq != c->next_seq[p->thread])
		c->out_of_order = true;
	c->next_seq[p->thread] = p->seq + 1;
	p->runs++;
	if (++c->total == (uint64_t)POST_THREADS * POST_PER_THREAD)
		loop_stop(&c->fx.loop);
}

static void *producer_main(void *arg)
{
	struct producer *pr = arg;
	struct ptask *base =
	    pr->ctx->tasks + (size_t)pr->thread * POST_PER_THREAD;
	uint32_t i;

	for (i = 0; i < POST_PER_THREAD; i++)
		loop_post(&pr->ctx->fx.loop, &base[i].task);
	return NULL;
}

static void test_post_many_threads(void **state)
{
	const size_t n = (size_t)POST_THREADS * POST_PER_THREAD;
	struct producer pr[POST_THREADS];
	struct post_ctx *c = calloc(1, sizeof(*c));
	struct loop_stats st;
	uint32_t i;
	size_t k;

	(void)state;
	assert_non_null(c);
	c->tasks = calloc(n, sizeof(*c->tasks));
	assert_non_null(c->tasks);
	for (k = 0; k < n; k++) {
		task_init(&c->tasks[k].task, ptask_fn);
		c->tasks[k].ctx = c;
		c->tasks[k].thread = (uint32_t)(k / POST_PER_THREAD);
		c->tasks[k].seq = (uint32_t)(k % POST_PER_THREAD);
	}
	fx_init(&c->fx, 0);
	assert_int_equal(loop_start(&c->fx.loop), 0);
	for (i = 0; i < POST_THREADS; i++) {
		pr[i].ctx = c;
		pr[i].thread = i;
		assert_int_equal(
		    pthread_create(&pr[i].tid, NULL, producer_main, &pr[i]), 0);
	}
	for (i = 0; i < POST_THREADS; i++)
		assert_int_equal(pthread_join(pr[i].tid, NULL), 0);
	/* The last task stops the loop; the alarm bounds the wait. */
	assert_int_equal(loop_join(&c->fx.loop), 0);

	assert_int_equal(c->total, n);
	assert_false(c->off_thread);
	assert_false(c->out_of_order);
	for (k = 0; k < n; k++)
		assert_int_equal(c->tasks[k].runs, 1);
	loop_stats(&c->fx.loop, &st);
	assert_int_equal(st.posted_run, n);
	/* Coalescing: far fewer eventfd writes than posts. */
	assert_true(st.wakeups <= st.iterations + 1);
	print_message("  posted %zu tasks: %llu wake-ups, %llu iterations\n", n,
		      (unsigned long long)st.wakeups,
		      (unsigned long long)st.iterations);
	loop_check_teardown(&c->fx);
	free(c->tasks);
	free(c);
}

/* Posted and deferred tasks still queued at destroy run exactly once. */
struct pend {
	struct task task;
	struct loop *loop;
	int runs;
	bool on_thread;
	bool chain;
	struct pend *next_pend;
};

static void pend_fn(struct task *t)
{
	struct pend *p = container_of(t, struct pend, task);

	p->runs++;
	p->on_thread = loop_on_thread(p->loop);
	if (p->chain && p->next_pend) {
		task_init(&p->next_pend->task, pend_fn);
		loop_post(p->loop, &p->next_pend->task);
	}
}

static void test_destroy_runs_pending(void **state)
{
	struct fixture fx;
	struct pend p[3];
	int i;

	(void)state;
	memset(p, 0, sizeof(p));
	fx_init(&fx, 0);
	for (i = 0; i < 3; i++) {
		p[i].loop = &fx.loop;
		task_init(&p[i].task, pend_fn);
	}
	p[0].chain = true; /* posts p[2] from inside destroy's drain */
	p[0].next_pend = &p[2];
	loop_post(&fx.loop, &p[0].task);
	loop_defer(&fx.loop, &p[1].task);
	loop_check_teardown(&fx);
	for (i = 0; i < 3; i++) {
		assert_int_equal(p[i].runs, 1);
		assert_true(p[i].on_thread);
	}
}

/* A task deferred by a deferred task runs in the next iteration. */
struct dd {
	struct fixture fx;
	struct task first, second;
	uint64_t it_first, it_second;
};

static uint64_t iterations(struct loop *loop)
{
	struct loop_stats st;

	loop_stats(loop, &st);
	return st.iterations;
}

static void dd_second(struct task *t)
{
	struct dd *d = container_of(t, struct dd, second);

	d->it_second = iterations(&d->fx.loop);
	loop_stop(&d->fx.loop);
}

static void dd_first(struct task *t)
{
	struct dd *d = container_of(t, struct dd, first);

	d->it_first = iterations(&d->fx.loop);
	task_init(&d->second, dd_second);
	loop_defer(&d->fx.loop, &d->second);
}

static void test_defer_from_defer(void **state)
{
	struct dd d;

	(void)state;
	memset(&d, 0, sizeof(d));
	fx_init(&d.fx, 0);
	task_init(&d.first, dd_first);
	loop_defer(&d.fx.loop, &d.first);
	fx_run(&d.fx);
	assert_int_equal(d.it_first, 1);
	assert_int_equal(d.it_second, 2);
	loop_check_teardown(&d.fx);
}

/* loop_defer_last: after the deferred tasks, those they defer included;
 * one it queues from the last step runs in the next iteration. */
struct dl {
	struct fixture fx;
	struct task first, second, last1, last2;
	uint64_t it[4]; /* iteration of first, second, last1, last2 */
	int order[4];	/* which ran 1st, 2nd, ... */
	int nran;
};

static void dl_ran(struct dl *d, int which)
{
	d->it[which] = iterations(&d->fx.loop);
	d->order[d->nran++] = which;
}

static void dl_last2(struct task *t)
{
	struct dl *d = container_of(t, struct dl, last2);

	dl_ran(d, 3);
	loop_stop(&d->fx.loop);
}

static void dl_last1(struct task *t)
{
	struct dl *d = container_of(t, struct dl, last1);

	dl_ran(d, 2);
	task_init(&d->last2, dl_last2);
	loop_defer_last(&d->fx.loop, &d->last2);
}

static void dl_second(struct task *t)
{
	dl_ran(container_of(t, struct dl, second), 1);
}

static void dl_first(struct task *t)
{
	struct dl *d = container_of(t, struct dl, first);

	dl_ran(d, 0);
	task_init(&d->second, dl_second);
	loop_defer(&d->fx.loop, &d->second);
	task_init(&d->last1, dl_last1);
	loop_defer_last(&d->fx.loop, &d->last1);
}

static void test_defer_last(void **state)
{
	static struct dl d;

	(void)state;
	memset(&d, 0, sizeof(d));
	fx_init(&d.fx, 0);
	task_init(&d.first, dl_first);
	loop_defer(&d.fx.loop, &d.first);
	fx_run(&d.fx);
	assert_int_equal(d.nran, 4);
	/* first, then last1 in the same iteration although second was
	 * deferred before it; second and last2 in the next one. */
	assert_int_equal(d.order[0], 0);
	assert_int_equal(d.order[1], 2);
	assert_int_equal(d.order[2], 1);
	assert_int_equal(d.order[3], 3);
	assert_int_equal(d.it[0], 1);
	assert_int_equal(d.it[2], 1);
	assert_int_equal(d.it[1], 2);
	assert_int_equal(d.it[3], 2);
	loop_check_teardown(&d.fx);
}

#define T(fn) TEST_BOUNDED(fn)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_loop_options),
	    T(test_loop_init_alloc_failures),
	    T(test_loop_start_failure),
	    T(test_loop_stop_before_run),
	    T(test_loop_thread_lifecycle),
	    T(test_timer_order_random),
	    T(test_timer_restart_tie),
	    T(test_timer_rearm_and_cancel),
	    T(test_timer_past_rearm_no_starvation),
	    T(test_spin_timer_on_time),
	    T(test_spin_io),
	    T(test_io_readable),
	    T(test_io_mod_and_errors),
	    T(test_io_delete_in_same_batch),
	    T(test_io_delete_small_batches),
	    T(test_io_deferred_close),
	    T(test_post_many_threads),
	    T(test_destroy_runs_pending),
	    T(test_defer_from_defer),
	    T(test_defer_last),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
