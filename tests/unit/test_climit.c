/*
 * test_climit: fixed and adaptive limits on calls in flight.  The
 * adaptive one is driven with a simulated backend of K slots, each call
 * S us long (more in flight than slots: they queue, latency grows in
 * proportion): unloaded it must learn S; at four times the backend's
 * capacity it must settle where calls barely queue (mean latency within
 * 2 S) while keeping the slots busy (goodput near capacity).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/rpc_errno.h"
#include "rpc/climit.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"

static void test_parse(void **state)
{
	static const char *const bad[] = {"", "-1", "x", "12x", "100001",
					  "Auto", " 3"};
	enum climit_mode mode;
	char why[160];
	int n;

	assert_int_equal(climit_parse("auto", &mode, &n, why, sizeof(why)), 0);
	assert_int_equal(mode, CLIMIT_AUTO);
	assert_int_equal(climit_parse("0", &mode, &n, why, sizeof(why)), 0);
	assert_int_equal(mode, CLIMIT_NONE);
	assert_int_equal(climit_parse("12", &mode, &n, why, sizeof(why)), 0);
	assert_int_equal(mode, CLIMIT_FIXED);
	assert_int_equal(n, 12);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(
		    climit_parse(bad[i], &mode, &n, why, sizeof(why)), -EINVAL);
		assert_non_null(strstr(why, "not a concurrency"));
	}
}

static void test_fixed(void **state)
{
	struct climit l;
	char why[160];

	climit_init(&l, CLIMIT_FIXED, 3, "method example.EchoService.Echo");
	for (int i = 0; i < 3; i++)
		assert_int_equal(climit_enter(&l, why, sizeof(why)), 0);
	assert_int_equal(climit_enter(&l, why, sizeof(why)), RPC_ELIMIT);
	assert_string_equal(why, "Reached method example.EchoService.Echo's "
				 "max_concurrency=3");
	assert_int_equal(l.inflight, 3);
	assert_int_equal(l.refused, 1);
	climit_leave(&l, 100, true, 1);
	assert_int_equal(climit_enter(&l, why, sizeof(why)), 0);
	for (int i = 0; i < 3; i++)
		climit_leave(&l, 100, false, 1);
	assert_int_equal(l.inflight, 0);
	climit_destroy(&l);

	/* none: nothing counted, nothing refused */
	climit_init(&l, CLIMIT_NONE, 0, "server");
	for (int i = 0; i < 1000; i++)
		assert_int_equal(climit_enter(&l, why, sizeof(why)), 0);
	assert_int_equal(l.inflight, 0);
	assert_int_equal(climit_current(&l), 0);
	climit_destroy(&l);
}

/* The simulated backend: `slots` served at once, each call `serve_us`. */
struct sim {
	struct climit l;
	int64_t now_ns;
	int slots, serve_us;
	uint64_t ok, refused;
	double lat_sum;
};

/*
 * One round: `offered` calls try to enter (closed loop, as many clients
 * as offered); those admitted run together, each taking serve_us times
 * the queue they found over the slots; time moves by the longest; all
 * leave.  The refused ones cost nothing (answered at once).
 */
static double sim_round(struct sim *s, int offered)
{
	char why[160];
	int in = 0;
	double lat;

	for (int i = 0; i < offered; i++) {
		if (climit_enter(&s->l, why, sizeof(why)) == 0)
			in++;
		else
			s->refused++;
	}
	lat = (double)s->serve_us * (in > s->slots ? (double)in / s->slots : 1);
	s->now_ns += (int64_t)(lat * 1000);
	for (int i = 0; i < in; i++)
		climit_leave(&s->l, (uint64_t)lat, true, s->now_ns);
	s->ok += (uint64_t)in;
	s->lat_sum += lat * in;
	return lat;
}

static void sim_reset_counts(struct sim *s)
{
	s->ok = s->refused = 0;
	s->lat_sum = 0;
}

static void test_auto_learns_and_sheds(void **state)
{
	struct sim s = {.slots = 8, .serve_us = 1000, .now_ns = 1};
	int64_t t0;
	double secs, goodput, capacity = 8 / 1e-3; /* calls a second */

	climit_init(&s.l, CLIMIT_AUTO, 0, "server");
	assert_int_equal(climit_current(&s.l), CLIMIT_INITIAL);
	/* Unloaded for 5 s: half the slots. */
	while (s.now_ns < 5000000000LL)
		sim_round(&s, 4);
	assert_true(s.l.windows >= 4);
	assert_true(s.l.min_lat_us >= 990 && s.l.min_lat_us <= 1010);
	/* Four times what the slots take, for 20 s (less than
	 * CLIMIT_REMEASURE_MS from the first window: no remeasure yet). */
	sim_reset_counts(&s);
	t0 = s.now_ns;
	while (s.now_ns < t0 + 20000000000LL)
		sim_round(&s, 32);
	secs = (double)(s.now_ns - t0) / 1e9;
	goodput = (double)s.ok / secs;
	print_message("auto at 4x: limit %d, mean latency %.0f us, goodput "
		      "%.0f/s of %.0f, refused %llu of %llu\n",
		      climit_current(&s.l), s.lat_sum / (double)s.ok, goodput,
		      capacity, (unsigned long long)s.refused,
		      (unsigned long long)(s.refused + s.ok));
	assert_true(s.lat_sum / (double)s.ok <= 2.0 * s.serve_us);
	assert_true(goodput >= 0.8 * capacity);
	assert_true(s.refused > s.ok); /* 4x offered: most go away at once */
	assert_true(climit_current(&s.l) >= s.slots &&
		    climit_current(&s.l) <= 2 * s.slots);
	climit_destroy(&s.l);
}

/* Load grows past the initial limit: the limit follows it up, by the
 * exploration margin. */
static void test_auto_grows(void **state)
{
	struct sim s = {.slots = 200, .serve_us = 500, .now_ns = 1};

	climit_init(&s.l, CLIMIT_AUTO, 0, "server");
	while (s.now_ns < 3000000000LL)
		sim_round(&s, 4);
	/* no queue at 4 of 200 slots: nothing cut */
	assert_int_equal(climit_current(&s.l), CLIMIT_INITIAL);
	while (s.now_ns < 10000000000LL)
		sim_round(&s, 150);
	/* 150 clients fit in 200 slots: after a few windows none is
	 * refused. */
	sim_reset_counts(&s);
	for (int i = 0; i < 1000; i++)
		sim_round(&s, 150);
	assert_int_equal(s.refused, 0);
	climit_destroy(&s.l);
}

/* Every CLIMIT_REMEASURE_MS one window runs at half the limit and
 * min_lat is taken from it: a backend that became slower for good is
 * learnt, and a lasting overload does not ratchet the limit up. */
static void test_auto_remeasures(void **state)
{
	struct sim s = {.slots = 8, .serve_us = 1000, .now_ns = 1};
	int64_t t0;

	climit_init(&s.l, CLIMIT_AUTO, 0, "server");
	while (s.now_ns < 5000000000LL)
		sim_round(&s, 4);
	s.serve_us = 3000; /* the disk got slower */
	t0 = s.now_ns;
	while (s.now_ns < t0 + (CLIMIT_REMEASURE_MS + 10000) * 1000000LL)
		sim_round(&s, 32);
	assert_true(s.l.min_lat_us >= 2900);
	/* still shedding, still within twice the (new) no-load latency */
	sim_reset_counts(&s);
	t0 = s.now_ns;
	while (s.now_ns < t0 + 5000000000LL)
		sim_round(&s, 32);
	assert_true(s.lat_sum / (double)s.ok <= 2.0 * s.serve_us);
	assert_true(s.refused > 0);
	climit_destroy(&s.l);
}

/* Windows without enough successes change nothing; failures are not
 * latency samples. */
static void test_auto_ignores_failures(void **state)
{
	struct climit l;
	char why[160];
	int64_t now = 1;

	climit_init(&l, CLIMIT_AUTO, 0, "server");
	for (int i = 0; i < 100000; i++) {
		assert_int_equal(climit_enter(&l, why, sizeof(why)), 0);
		now += 1000000; /* 1 ms apart: windows of 1 s */
		climit_leave(&l, 5, i % 100 == 0, now);
	}
	assert_true(l.windows > 50);
	assert_int_equal(climit_current(&l), CLIMIT_INITIAL);
	assert_true(l.min_lat_us == 0);
	climit_destroy(&l);
}

struct race {
	struct climit *l;
	uint64_t entered;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	char why[160];

	for (int i = 0; i < 200000; i++) {
		if (climit_enter(r->l, why, sizeof(why)))
			continue;
		r->entered++;
		climit_leave(r->l, 100 + (uint64_t)(i % 50), true,
			     1 + (int64_t)i * 10000);
	}
	return NULL;
}

/* Threads entering and leaving at once: nothing left counted, the
 * limit stays within its bounds. */
static void test_threads(void **state)
{
	struct climit l;
	struct race r[4];
	pthread_t t[4];

	climit_init(&l, CLIMIT_AUTO, 0, "server");
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){.l = &l};
		assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_true(r[i].entered > 0);
	}
	assert_int_equal(l.inflight, 0);
	assert_true(climit_current(&l) >= CLIMIT_FLOOR &&
		    climit_current(&l) <= CLIMIT_CEILING);
	climit_destroy(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_parse),
	    TEST_BOUNDED(test_fixed),
	    TEST_BOUNDED(test_auto_learns_and_sheds),
	    TEST_BOUNDED(test_auto_grows),
	    TEST_BOUNDED(test_auto_remeasures),
	    TEST_BOUNDED(test_auto_ignores_failures),
	    TEST_BOUNDED(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
