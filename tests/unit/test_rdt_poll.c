/*
 * test_rdt_poll: polling mode's pollers (rdma/rdt_poll.c) without a
 * device: the endpoints' CQs are stand-ins whose poll_cq counts its calls
 * and finds nothing.  Checks that a poller with no endpoint sleeps (the
 * process uses next to no CPU), that adding one wakes it and it polls
 * that CQ, that taking the last one off puts it back to sleep, and that
 * pollers stop, asleep or not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

/* Seconds one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60
#include "testutil.h"

#include "base/clock.h"
#include "base/mem.h"
#include "rdt_int.h"

/* Long enough for a busy poller to show: two of them would use about
 * twice this in CPU time. */
#define IDLE_NS (300 * CLOCK_NS_PER_MS)
/* What two sleeping pollers may use in IDLE_NS, on a loaded machine. */
#define IDLE_CPU_MAX_NS (60 * CLOCK_NS_PER_MS)
#define POLLERS		2
#define WAIT_NS		(5 * CLOCK_NS_PER_S)

static int polls; /* atomic: stand-in poll_cq calls */

static int fake_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	(void)cq;
	(void)n;
	(void)wc;
	__atomic_add_fetch(&polls, 1, __ATOMIC_RELAXED);
	return 0;
}

static void fake_notify(struct rdt_polled *p)
{
	(void)p;
}

static int64_t cpu_ns(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts), 0);
	return ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

static void nap_ns(int64_t ns)
{
	struct timespec ts = {ns / CLOCK_NS_PER_S, ns % CLOCK_NS_PER_S};

	nanosleep(&ts, NULL);
}

/* CPU time the process used over IDLE_NS of this thread's sleep. */
static int64_t cpu_over_idle(void)
{
	int64_t start = cpu_ns();

	nap_ns(IDLE_NS);
	return cpu_ns() - start;
}

/* Waits until the stand-in CQs were polled more than `than` times. */
static bool polled_beyond(int than)
{
	int64_t end = clock_mono_ns() + WAIT_NS;

	while (__atomic_load_n(&polls, __ATOMIC_RELAXED) <= than)
		if (clock_mono_ns() > end)
			return false;
		else
			nap_ns(CLOCK_NS_PER_MS);
	return true;
}

static void pollers_idle(bool yield)
{
	struct ibv_context vctx;
	struct ibv_cq cq;
	struct ibv_wc wc[4];
	struct rdt_polled p;
	struct rdt_ctx ctx;
	char why[128];
	int64_t used;
	int seen;

	memset(&ctx, 0, sizeof(ctx));
	rdt_options_default(&ctx.opt);
	ctx.opt.mem = mem_default();
	ctx.opt.poller_num = POLLERS;
	ctx.opt.poller_yield = yield;
	assert_int_equal(rdt_pollers_start(&ctx, why, sizeof(why)), 0);

	/* No endpoint: asleep. */
	used = cpu_over_idle();
	assert_true(used < IDLE_CPU_MAX_NS);

	/* One: its poller wakes and polls it. */
	memset(&vctx, 0, sizeof(vctx));
	vctx.ops.poll_cq = fake_poll_cq;
	memset(&cq, 0, sizeof(cq));
	cq.context = &vctx;
	memset(&p, 0, sizeof(p));
	p.cq = &cq;
	p.wc = wc;
	p.mask = 3;
	p.notify = fake_notify;
	seen = __atomic_load_n(&polls, __ATOMIC_RELAXED);
	rdt_polled_add(&ctx, &p);
	assert_true(polled_beyond(seen + 100));

	/* Gone again: asleep again, and its CQ no longer polled. */
	rdt_polled_del(&p);
	seen = __atomic_load_n(&polls, __ATOMIC_RELAXED);
	used = cpu_over_idle();
	assert_true(used < IDLE_CPU_MAX_NS);
	assert_int_equal(__atomic_load_n(&polls, __ATOMIC_RELAXED), seen);

	/* Stops while asleep (a hang here ends in the test's alarm). */
	rdt_pollers_stop(&ctx);
	assert_null(ctx.pollers);
}

static void test_idle_pollers_sleep(void **state)
{
	(void)state;
	pollers_idle(false);
}

static void test_idle_pollers_sleep_yielding(void **state)
{
	(void)state;
	pollers_idle(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_idle_pollers_sleep),
	    TEST_BOUNDED(test_idle_pollers_sleep_yielding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
