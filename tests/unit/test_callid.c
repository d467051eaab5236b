/*
 * test_callid: the correlation id table: basics, stale ids across slot
 * reuse and version wrap, the attempt encoding, exactly-once claims under
 * four racing threads, drain against concurrent claims, unclaim (retry)
 * never losing a completion, allocation failures.
 *
 * Every test runs under an alarm and ends with the table destroyed, no
 * call in flight and every allocation freed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/callid.h"
#include "base/mem.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"

/* Racing tests: calls per run, and the small table that forces reuse. */
#define RACE_CALLS    200000
#define RACE_CAPACITY 64
#define RACE_THREADS  4
/* A claimer also retries the id this many calls back: it must be dead. */
#define RACE_STALE_LAG 100
/*
 * How far a claimer may run ahead of the slowest: keeps all four in the
 * race (left alone, on two cores one thread may take every call).
 */
#define RACE_WINDOW 16

struct call {
	uint32_t claims; /* wins: must end at exactly 1 */
	uint32_t seq;
};

struct fixture {
	struct mem_failing mf;
	struct callid_table tab;
};

static void fx_init(struct fixture *fx, uint32_t capacity)
{
	struct callid_options opt;

	memset(fx, 0, sizeof(*fx));
	mem_failing_init(&fx->mf, -1);
	callid_options_default(&opt);
	opt.capacity = capacity;
	opt.mem = &fx->mf.mem;
	assert_int_equal(callid_init(&fx->tab, &opt), 0);
}

/* Checks nothing is in flight, destroys, checks the allocations. */
static void fx_teardown(struct fixture *fx)
{
	assert_int_equal(callid_live(&fx->tab), 0);
	callid_destroy(&fx->tab);
	assert_int_equal(fx->mf.live, 0);
}

/*
 * Lets `n` threads go at once, the `round`-th time (0-based) they meet on
 * `ready`.  A futex barrier wakes sleepers one by one, tens of
 * microseconds apart: long enough for a thread to finish a race alone.
 */
static void spin_start(unsigned *ready, unsigned n, unsigned round)
{
	__atomic_add_fetch(ready, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(ready, __ATOMIC_ACQUIRE) < n * (round + 1))
		sched_yield(); /* returns at once unless the core is wanted */
}

static void test_callid_options(void **state)
{
	struct callid_options opt;

	(void)state;
	callid_options_default(&opt);
	assert_int_equal(callid_options_validate(&opt), 0);
	assert_int_equal(opt.capacity, CALLID_CAPACITY_DEFAULT);
	opt.capacity = 0;
	assert_int_equal(callid_options_validate(&opt), -EINVAL);
	opt.capacity = CALLID_CAPACITY_MAX + 1;
	assert_int_equal(callid_options_validate(&opt), -EINVAL);
	opt.capacity = CALLID_CAPACITY_MAX;
	assert_int_equal(callid_options_validate(&opt), 0);
}

static void test_callid_init_alloc_failures(void **state)
{
	struct callid_options opt;
	struct mem_failing mf;
	struct callid_table tab;
	long k;
	int err;

	(void)state;
	callid_options_default(&opt);
	opt.capacity = 100;
	opt.mem = &mf.mem;
	for (k = 0;; k++) {
		mem_failing_init(&mf, k);
		err = callid_init(&tab, &opt);
		if (err == 0)
			break;
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(mf.live, 0);
		assert_true(k < 100);
	}
	assert_int_equal(k, 1); /* exactly one allocation */
	assert_int_equal(mf.live, 1);
	assert_int_equal(callid_capacity(&tab), 128);
	callid_destroy(&tab);
	assert_int_equal(mf.live, 0);
}

static void test_callid_basics(void **state)
{
	struct fixture fx;
	struct call c = {0};
	uint64_t id;
	void *got = NULL;

	(void)state;
	fx_init(&fx, 16);
	assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
	assert_true(id != 0);
	assert_true((int64_t)id > 0);
	assert_int_equal(callid_live(&fx.tab), 1);

	/* Not held yet: neither unclaim nor release may touch it. */
	assert_int_equal(callid_unclaim(&fx.tab, id), -EINVAL);
	assert_int_equal(callid_release(&fx.tab, id), -EINVAL);

	assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
	assert_ptr_equal(got, &c);
	got = NULL;
	/* Duplicate response, timer after response: refused. */
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_null(got);
	assert_int_equal(callid_live(&fx.tab), 1);

	assert_int_equal(callid_release(&fx.tab, id), 0);
	assert_int_equal(callid_live(&fx.tab), 0);
	/* Late response after completion; double release. */
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_release(&fx.tab, id), -EINVAL);
	assert_int_equal(callid_unclaim(&fx.tab, id), -EINVAL);
	assert_null(got);
	fx_teardown(&fx);
}

/* Ids no table issued: malformed or out of range. */
static void test_callid_foreign_ids(void **state)
{
	struct fixture fx;
	struct call c = {0};
	uint64_t id;
	void *got = NULL;

	(void)state;
	fx_init(&fx, 4);
	assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
	assert_int_equal(callid_claim(&fx.tab, 0, &got), -ENOENT);
	/* Attempt field 0: brpc's base, never sent. */
	assert_int_equal(callid_claim(&fx.tab, id & ~UINT64_C(0xff), &got),
			 -ENOENT);
	/* Negative as an int64. */
	assert_int_equal(callid_claim(&fx.tab, id | UINT64_C(1) << 63, &got),
			 -ENOENT);
	/* Index beyond the table. */
	assert_int_equal(callid_claim(&fx.tab, id | UINT64_C(4) << 8, &got),
			 -ENOENT);
	assert_int_equal(callid_claim(&fx.tab, UINT64_MAX >> 1, &got), -ENOENT);
	assert_int_equal(callid_release(&fx.tab, 0), -EINVAL);
	assert_int_equal(callid_unclaim(&fx.tab, 0), -EINVAL);
	/* A free slot at its current version is not a call. */
	assert_int_equal(callid_claim(&fx.tab, id + (UINT64_C(1) << 8), &got),
			 -ENOENT);
	assert_null(got);

	assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
	assert_int_equal(callid_release(&fx.tab, id), 0);
	fx_teardown(&fx);
}

static void test_callid_full(void **state)
{
	struct fixture fx;
	struct call calls[33];
	uint64_t ids[33], id = 0;
	void *got;
	unsigned i, j;

	(void)state;
	fx_init(&fx, 20); /* rounds up to 32 */
	assert_int_equal(callid_capacity(&fx.tab), 32);
	for (i = 0; i < 32; i++) {
		assert_int_equal(callid_alloc(&fx.tab, &calls[i], &ids[i]), 0);
		for (j = 0; j < i; j++)
			assert_true(ids[i] != ids[j]);
	}
	assert_int_equal(callid_alloc(&fx.tab, &calls[32], &id), -EAGAIN);
	assert_true(id == 0); /* untouched */
	assert_int_equal(callid_live(&fx.tab), 32);

	/* Claimed but not released still counts: the slot is not free. */
	assert_int_equal(callid_claim(&fx.tab, ids[7], &got), 0);
	assert_int_equal(callid_alloc(&fx.tab, &calls[32], &id), -EAGAIN);
	assert_int_equal(callid_release(&fx.tab, ids[7]), 0);
	assert_int_equal(callid_alloc(&fx.tab, &calls[32], &ids[7]), 0);
	assert_int_equal(callid_claim(&fx.tab, ids[7], &got), 0);
	assert_ptr_equal(got, &calls[32]);
	assert_int_equal(callid_release(&fx.tab, ids[7]), 0);
	for (i = 0; i < 32; i++) {
		if (i == 7)
			continue;
		assert_int_equal(callid_claim(&fx.tab, ids[i], &got), 0);
		assert_ptr_equal(got, &calls[i]);
		assert_int_equal(callid_release(&fx.tab, ids[i]), 0);
	}
	fx_teardown(&fx);
}

/*
 * One slot reused a million times: every id is new, and an id from any
 * earlier cycle (one back, far back) never matches the live call.
 */
#define REUSE_CYCLES 1000000
#define REUSE_KEEP   4096

static void test_callid_stale_after_reuse(void **state)
{
	struct fixture fx;
	struct call c = {0};
	uint64_t *old = calloc(REUSE_KEEP, sizeof(*old));
	uint64_t id, prev = 0;
	void *got;
	unsigned i;

	(void)state;
	assert_non_null(old);
	fx_init(&fx, 1);
	for (i = 0; i < REUSE_CYCLES; i++) {
		assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
		assert_true(id != prev);
		assert_true(id != 0 && (int64_t)id > 0);
		if (i > 0) {
			/* Just released, and one from up to 4096 cycles ago. */
			assert_int_equal(callid_claim(&fx.tab, prev, &got),
					 -ENOENT);
			assert_int_equal(
			    callid_claim(&fx.tab,
					 old[(i * 2654435761u) %
					     (i < REUSE_KEEP ? i : REUSE_KEEP)],
					 &got),
			    -ENOENT);
			assert_int_equal(callid_release(&fx.tab, prev),
					 -EINVAL);
		}
		old[i % REUSE_KEEP] = id;
		assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
		assert_int_equal(callid_release(&fx.tab, id), 0);
		prev = id;
	}
	free(old);
	fx_teardown(&fx);
}

/*
 * The version field wraps: drive one slot to the last version, cycle it
 * through the wrap and check ids stay distinct, positive and non-zero.
 */
static void test_callid_version_wrap(void **state)
{
	const uint64_t vmax = (UINT64_C(1) << CALLID_VERSION_BITS) - 1;
	struct fixture fx;
	struct call c = {0};
	uint64_t ids[6];
	void *got;
	unsigned i, j;

	(void)state;
	fx_init(&fx, 1);
	/* Poke the private word: version vmax - 2, FREE (state 0). */
	fx.tab.slots[0].word = (vmax - 2) << 2;
	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		assert_int_equal(callid_alloc(&fx.tab, &c, &ids[i]), 0);
		assert_true(ids[i] != 0 && (int64_t)ids[i] > 0);
		for (j = 0; j < i; j++) {
			assert_true(ids[i] != ids[j]);
			assert_int_equal(callid_claim(&fx.tab, ids[j], &got),
					 -ENOENT);
		}
		assert_int_equal(callid_claim(&fx.tab, ids[i], &got), 0);
		assert_int_equal(callid_release(&fx.tab, ids[i]), 0);
	}
	/* Versions vmax-2, vmax-1, vmax, then 0: slot 0 at version 0 is 1. */
	assert_true(ids[2] >> 28 == vmax);
	assert_true(ids[3] == 1);
	fx_teardown(&fx);
}

static void test_callid_attempts(void **state)
{
	static const unsigned ks[] = {0, 1, 2, 3, 100, CALLID_ATTEMPT_MAX};
	struct fixture fx;
	struct call c = {0};
	uint64_t id, wire, again;
	void *got;
	unsigned i, a;

	(void)state;
	fx_init(&fx, 8);
	/* Several slots in, so index and version bits are not all zero. */
	for (i = 0; i < 5; i++) {
		assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
		assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
		assert_int_equal(callid_release(&fx.tab, id), 0);
	}
	assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
	assert_int_equal(id & 0xff, 1); /* attempt 0 is base + 1 */

	for (i = 0; i < ARRAY_SIZE(ks); i++) {
		assert_int_equal(callid_make_attempt(id, ks[i], &wire), 0);
		/* brpc's rule: base + attempt + 1. */
		assert_true(wire == (id - 1) + ks[i] + 1);
		assert_true((int64_t)wire > 0);
		/* From any attempt's id back to any other's. */
		assert_int_equal(callid_make_attempt(wire, 0, &again), 0);
		assert_true(again == id);

		a = 999;
		assert_int_equal(callid_claim_attempt(&fx.tab, wire, &got, &a),
				 0);
		assert_ptr_equal(got, &c);
		assert_int_equal(a, ks[i]);
		/* The winner hands it back to await the next attempt. */
		assert_int_equal(callid_unclaim(&fx.tab, wire), 0);
	}
	assert_int_equal(callid_make_attempt(id, CALLID_ATTEMPT_MAX + 1, &wire),
			 -ERANGE);

	/* A response to attempt 2 completes the call; attempt 5's is late. */
	assert_int_equal(callid_make_attempt(id, 2, &wire), 0);
	assert_int_equal(callid_claim_attempt(&fx.tab, wire, &got, &a), 0);
	assert_int_equal(a, 2);
	assert_int_equal(callid_make_attempt(id, 5, &again), 0);
	assert_int_equal(callid_claim_attempt(&fx.tab, again, &got, &a),
			 -ENOENT);
	/* Release through any attempt's id. */
	assert_int_equal(callid_release(&fx.tab, again), 0);
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	fx_teardown(&fx);
}

static void test_callid_unclaim(void **state)
{
	struct fixture fx;
	struct call c = {0};
	uint64_t id;
	void *got;

	(void)state;
	fx_init(&fx, 2);
	assert_int_equal(callid_alloc(&fx.tab, &c, &id), 0);
	assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
	assert_int_equal(callid_unclaim(&fx.tab, id), 0);
	assert_int_equal(callid_unclaim(&fx.tab, id), -EINVAL);

	/* A timer fires while the holder decides to retry. */
	assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_unclaim(&fx.tab, id), -EBUSY); /* still held */
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_unclaim(&fx.tab, id), -EBUSY);
	assert_int_equal(callid_unclaim(&fx.tab, id), 0);
	assert_int_equal(callid_claim(&fx.tab, id, &got), 0);
	/* Contended, then released: fine, the holder completed it. */
	assert_int_equal(callid_claim(&fx.tab, id, &got), -ENOENT);
	assert_int_equal(callid_release(&fx.tab, id), 0);
	assert_int_equal(callid_unclaim(&fx.tab, id), -EINVAL);
	fx_teardown(&fx);
}

/*
 * The race: one producer allocates RACE_CALLS calls through a 64-slot
 * table (so slots are reused ~3000 times each, while stale claims are in
 * flight) and publishes the ids; four claimers try every id, each in its
 * role: 0 a response (attempt i % 3), 1 the deadline timer (base id),
 * 2 a cancel, 3 a duplicate of the response.  Winners complete and
 * release at once.  Each claimer also retries the id RACE_STALE_LAG calls
 * back, which it already tried, so it is claimed or gone: -ENOENT always.
 */
struct race {
	struct fixture fx;
	struct call *calls;
	uint64_t *ids; /* 0 until published */
	uint32_t wins[RACE_THREADS];
	size_t progress[RACE_THREADS]; /* calls each claimer is done with */
	unsigned ready;
};

struct claimer {
	struct race *r;
	unsigned role;
	int failures; /* assertions fail on the main thread only */
};

static uint64_t wait_published(struct race *r, size_t i)
{
	uint64_t id;

	while ((id = __atomic_load_n(&r->ids[i], __ATOMIC_ACQUIRE)) == 0)
		sched_yield();
	return id;
}

static void wait_window(struct race *r, size_t i)
{
	size_t t, slowest;

	for (;;) {
		slowest = SIZE_MAX;
		for (t = 0; t < RACE_THREADS; t++) {
			size_t p =
			    __atomic_load_n(&r->progress[t], __ATOMIC_RELAXED);
			if (p < slowest)
				slowest = p;
		}
		if (i < slowest + RACE_WINDOW)
			return;
		sched_yield();
	}
}

static void *claimer_main(void *arg)
{
	struct claimer *cl = arg;
	struct race *r = cl->r;
	struct call *call;
	uint64_t id, wire;
	unsigned attempt, want;
	size_t i;
	void *got;
	int err;

	spin_start(&r->ready, RACE_THREADS + 1, 0);
	for (i = 0; i < RACE_CALLS; i++) {
		wait_window(r, i);
		id = wait_published(r, i);
		want = (cl->role == 0 || cl->role == 3) ? i % 3 : 0;
		if (callid_make_attempt(id, want, &wire) != 0)
			cl->failures++;
		err = callid_claim_attempt(&r->fx.tab, wire, &got, &attempt);
		if (err == 0) {
			/* Counted by index: a wrong pointer must not crash. */
			call = &r->calls[i];
			if (got != call || attempt != want)
				cl->failures++;
			__atomic_fetch_add(&call->claims, 1, __ATOMIC_RELAXED);
			r->wins[cl->role]++;
			if (callid_release(&r->fx.tab, wire) != 0)
				cl->failures++;
		} else if (err != -ENOENT) {
			cl->failures++;
		}
		if (i >= RACE_STALE_LAG &&
		    callid_claim(&r->fx.tab,
				 __atomic_load_n(&r->ids[i - RACE_STALE_LAG],
						 __ATOMIC_ACQUIRE),
				 &got) != -ENOENT)
			cl->failures++;
		__atomic_store_n(&r->progress[cl->role], i + 1,
				 __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_callid_race_exactly_once(void **state)
{
	struct claimer cl[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	struct race *r = calloc(1, sizeof(*r));
	uint64_t id, total = 0;
	unsigned t;
	size_t i;
	void *got;
	int err;

	(void)state;
	assert_non_null(r);
	r->calls = calloc(RACE_CALLS, sizeof(*r->calls));
	r->ids = calloc(RACE_CALLS, sizeof(*r->ids));
	assert_non_null(r->calls);
	assert_non_null(r->ids);
	fx_init(&r->fx, RACE_CAPACITY);
	for (t = 0; t < RACE_THREADS; t++) {
		cl[t] = (struct claimer){.r = r, .role = t};
		assert_int_equal(
		    pthread_create(&th[t], NULL, claimer_main, &cl[t]), 0);
	}
	spin_start(&r->ready, RACE_THREADS + 1, 0);
	for (i = 0; i < RACE_CALLS; i++) {
		r->calls[i].seq = (uint32_t)i;
		while ((err = callid_alloc(&r->fx.tab, &r->calls[i], &id)) ==
		       -EAGAIN)
			sched_yield(); /* claimers behind: all 64 in flight */
		assert_int_equal(err, 0);
		__atomic_store_n(&r->ids[i], id, __ATOMIC_RELEASE);
	}
	for (t = 0; t < RACE_THREADS; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_int_equal(cl[t].failures, 0);
		total += r->wins[t];
	}
	for (i = 0; i < RACE_CALLS; i++)
		assert_int_equal(r->calls[i].claims, 1);
	assert_int_equal(total, RACE_CALLS);
	/* How the calls split: scheduling decides, so not asserted. */
	print_message("wins: response %u, timer %u, cancel %u, duplicate %u\n",
		      r->wins[0], r->wins[1], r->wins[2], r->wins[3]);
	/* No slot lost: all 64 free and allocatable again. */
	assert_int_equal(callid_live(&r->fx.tab), 0);
	for (i = 0; i < RACE_CAPACITY; i++)
		assert_int_equal(callid_alloc(&r->fx.tab, r->calls, &r->ids[i]),
				 0);
	assert_int_equal(callid_alloc(&r->fx.tab, r->calls, &id), -EAGAIN);
	for (i = 0; i < RACE_CAPACITY; i++) {
		assert_int_equal(callid_claim(&r->fx.tab, r->ids[i], &got), 0);
		assert_int_equal(callid_release(&r->fx.tab, r->ids[i]), 0);
	}
	fx_teardown(&r->fx);
	free(r->ids);
	free(r->calls);
	free(r);
}

/*
 * Drain while claimers race: a full table of calls; two claimer threads
 * walk the ids (forward, backward) while the main thread drains.  Every
 * call is claimed exactly once, by one of the three.  Every 16th call is
 * left to the drain, and the drain, having taken call 0, waits until the
 * claimers have begun: so each round the drain is certainly mid-walk
 * while they claim, however the threads are scheduled.  The forward
 * claimer keeps within DRAIN_WINDOW calls of the drain, so that the two
 * meet on the same calls rather than one sweeping the table alone.
 */
#define DRAIN_CAPACITY 1024
#define DRAIN_ROUNDS   200
#define DRAIN_CLAIMERS 2
#define DRAIN_ONLY     16
#define DRAIN_WINDOW   4

struct drain_race {
	struct fixture fx;
	struct call calls[DRAIN_CAPACITY];
	uint64_t ids[DRAIN_CAPACITY];
	unsigned ready;	       /* spin_start() */
	pthread_barrier_t end; /* round over */
	size_t tried;	       /* claims the claimers made this round */
	size_t contested_won;  /* by the drain, this round */
	bool waited;	       /* the drain has waited this round */
	size_t drain_at;       /* the last call the drain took */
	int failures;
};

struct drain_claimer {
	struct drain_race *d;
	unsigned n;
	int failures;
};

static void complete(struct callid_table *tab, uint64_t id, void *call,
		     int *failures)
{
	struct call *c = call;

	__atomic_fetch_add(&c->claims, 1, __ATOMIC_RELAXED);
	if (callid_release(tab, id) != 0)
		(*failures)++;
}

static void drain_fn(void *arg, uint64_t id, void *call)
{
	struct drain_race *d = arg;
	struct call *c = call;

	if (c != &d->calls[c->seq] || id != d->ids[c->seq])
		d->failures++;
	if (c->seq % DRAIN_ONLY != 0)
		d->contested_won++;
	__atomic_store_n(&d->drain_at, c->seq, __ATOMIC_RELEASE);
	complete(&d->fx.tab, id, call, &d->failures);
	if (!d->waited) {
		d->waited = true;
		while (__atomic_load_n(&d->tried, __ATOMIC_ACQUIRE) == 0)
			sched_yield();
	}
}

static void *drain_claimer_main(void *arg)
{
	struct drain_claimer *dc = arg;
	struct drain_race *d = dc->d;
	unsigned round;
	size_t i, k;
	void *got;
	int err;

	for (round = 0; round < DRAIN_ROUNDS; round++) {
		spin_start(&d->ready, DRAIN_CLAIMERS + 1, round);
		for (k = 0; k < DRAIN_CAPACITY; k++) {
			i = dc->n == 0 ? k : DRAIN_CAPACITY - 1 - k;
			if (i % DRAIN_ONLY == 0)
				continue;
			/* The drain takes every 16th call: it moves on. */
			while (dc->n == 0 &&
			       i > __atomic_load_n(&d->drain_at,
						   __ATOMIC_ACQUIRE) +
				       DRAIN_WINDOW)
				sched_yield();
			err = callid_claim(&d->fx.tab, d->ids[i], &got);
			if (err == 0)
				complete(&d->fx.tab, d->ids[i], got,
					 &dc->failures);
			else if (err != -ENOENT)
				dc->failures++;
			__atomic_fetch_add(&d->tried, 1, __ATOMIC_RELEASE);
		}
		pthread_barrier_wait(&d->end);
	}
	return NULL;
}

static void test_callid_drain_races_claims(void **state)
{
	const size_t contested = DRAIN_CAPACITY - DRAIN_CAPACITY / DRAIN_ONLY;
	struct drain_claimer dc[DRAIN_CLAIMERS];
	pthread_t th[DRAIN_CLAIMERS];
	struct drain_race *d = calloc(1, sizeof(*d));
	size_t i, n, drained = 0, split_rounds = 0;
	unsigned round, t;

	(void)state;
	assert_non_null(d);
	fx_init(&d->fx, DRAIN_CAPACITY);
	assert_int_equal(
	    pthread_barrier_init(&d->end, NULL, DRAIN_CLAIMERS + 1), 0);
	for (t = 0; t < DRAIN_CLAIMERS; t++) {
		dc[t] = (struct drain_claimer){.d = d, .n = t};
		assert_int_equal(
		    pthread_create(&th[t], NULL, drain_claimer_main, &dc[t]),
		    0);
	}
	for (round = 0; round < DRAIN_ROUNDS; round++) {
		for (i = 0; i < DRAIN_CAPACITY; i++) {
			d->calls[i] = (struct call){.seq = (uint32_t)i};
			assert_int_equal(
			    callid_alloc(&d->fx.tab, &d->calls[i], &d->ids[i]),
			    0);
		}
		d->tried = 0;
		d->contested_won = 0;
		d->waited = false;
		d->drain_at = 0;
		spin_start(&d->ready, DRAIN_CLAIMERS + 1, round);
		n = callid_drain(&d->fx.tab, drain_fn, d);
		/* Past its last call: the forward claimer may finish. */
		__atomic_store_n(&d->drain_at, DRAIN_CAPACITY,
				 __ATOMIC_RELEASE);
		pthread_barrier_wait(&d->end);
		assert_true(d->waited);
		assert_int_equal(n, DRAIN_CAPACITY / DRAIN_ONLY +
					d->contested_won);
		drained += n;
		if (d->contested_won > 0 && d->contested_won < contested)
			split_rounds++;
		for (i = 0; i < DRAIN_CAPACITY; i++)
			assert_int_equal(d->calls[i].claims, 1);
		assert_int_equal(callid_live(&d->fx.tab), 0);
		/* An empty table drains nothing. */
		assert_int_equal(callid_drain(&d->fx.tab, drain_fn, d), 0);
	}
	for (t = 0; t < DRAIN_CLAIMERS; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_int_equal(dc[t].failures, 0);
	}
	assert_int_equal(d->failures, 0);
	print_message("drained %zu of %u; rounds where the drain and the "
		      "claimers split the contested calls: %zu of %u\n",
		      drained, DRAIN_ROUNDS * DRAIN_CAPACITY, split_rounds,
		      DRAIN_ROUNDS);
	pthread_barrier_destroy(&d->end);
	fx_teardown(&d->fx);
	free(d);
}

/* A drain with no one else: every live call once, claimed ones skipped. */
static void test_callid_drain_alone(void **state)
{
	struct drain_race *d = calloc(1, sizeof(*d));
	void *got;
	size_t i;

	(void)state;
	assert_non_null(d);
	fx_init(&d->fx, 64);
	d->waited = true; /* no claimers to wait for */
	for (i = 0; i < 50; i++) {
		d->calls[i] = (struct call){.seq = (uint32_t)i};
		assert_int_equal(
		    callid_alloc(&d->fx.tab, &d->calls[i], &d->ids[i]), 0);
	}
	/* Call 3 is being completed by someone else: not the drain's. */
	assert_int_equal(callid_claim(&d->fx.tab, d->ids[3], &got), 0);
	assert_int_equal(callid_drain(&d->fx.tab, drain_fn, d), 49);
	assert_int_equal(d->calls[3].claims, 0);
	/* The holder learns the drain came by: it must not retry. */
	assert_int_equal(callid_unclaim(&d->fx.tab, d->ids[3]), -EBUSY);
	assert_int_equal(callid_unclaim(&d->fx.tab, d->ids[3]), 0);
	assert_int_equal(callid_drain(&d->fx.tab, drain_fn, d), 1);
	for (i = 0; i < 50; i++)
		assert_int_equal(d->calls[i].claims, 1);
	assert_int_equal(d->failures, 0);
	fx_teardown(&d->fx);
	free(d);
}

/*
 * Retry against a timer: per call, a "response" thread claims, and half
 * the time decides to retry (unclaim) instead of completing; a "timer"
 * thread claims once.  The protocol: a holder whose unclaim gets -EBUSY
 * completes the call itself.  Whatever the interleaving, every call is
 * completed exactly once and none is left live: the timer's one claim is
 * never lost.
 */
#define RETRY_CALLS 50000

struct retry_race {
	struct fixture fx;
	struct call *calls;
	uint64_t *ids;
	unsigned ready;
	size_t progress[2];
	uint32_t retried, busy;
};

struct retry_thread {
	struct retry_race *rr;
	bool timer;
	int failures;
};

static void *retry_main(void *arg)
{
	struct retry_thread *rt = arg;
	struct retry_race *rr = rt->rr;
	size_t i;
	void *got;
	int err;

	spin_start(&rr->ready, 2, 0);
	for (i = 0; i < RETRY_CALLS; i++) {
		/* In step with the other thread, so they meet on each call. */
		while (i > __atomic_load_n(&rr->progress[!rt->timer],
					   __ATOMIC_ACQUIRE) +
			       1)
			sched_yield();
		__atomic_store_n(&rr->progress[rt->timer], i, __ATOMIC_RELEASE);
		if (callid_claim(&rr->fx.tab, rr->ids[i], &got) != 0)
			continue;
		if (!rt->timer && (i & 1)) {
			err = callid_unclaim(&rr->fx.tab, rr->ids[i]);
			if (err == 0) {
				rr->retried++;
				continue; /* the timer will get it */
			}
			if (err != -EBUSY)
				rt->failures++;
			rr->busy++;
		}
		complete(&rr->fx.tab, rr->ids[i], got, &rt->failures);
	}
	return NULL;
}

static void test_callid_unclaim_races_timer(void **state)
{
	struct retry_thread rt[2];
	pthread_t th[2];
	struct retry_race *rr = calloc(1, sizeof(*rr));
	size_t i;
	unsigned t;

	(void)state;
	assert_non_null(rr);
	rr->calls = calloc(RETRY_CALLS, sizeof(*rr->calls));
	rr->ids = calloc(RETRY_CALLS, sizeof(*rr->ids));
	assert_non_null(rr->calls);
	assert_non_null(rr->ids);
	fx_init(&rr->fx, RETRY_CALLS);
	for (i = 0; i < RETRY_CALLS; i++)
		assert_int_equal(
		    callid_alloc(&rr->fx.tab, &rr->calls[i], &rr->ids[i]), 0);
	for (t = 0; t < 2; t++) {
		rt[t] = (struct retry_thread){.rr = rr, .timer = t == 1};
		assert_int_equal(
		    pthread_create(&th[t], NULL, retry_main, &rt[t]), 0);
	}
	for (t = 0; t < 2; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_int_equal(rt[t].failures, 0);
	}
	/*
	 * No call is left live: a timer that came while the response held
	 * the call made its unclaim fail (-EBUSY), and one that came after
	 * the unclaim found the call live.
	 */
	for (i = 0; i < RETRY_CALLS; i++)
		assert_int_equal(rr->calls[i].claims, 1);
	print_message("retried %u, busy %u\n", rr->retried, rr->busy);
	fx_teardown(&rr->fx);
	free(rr->ids);
	free(rr->calls);
	free(rr);
}

#define T(fn) TEST_BOUNDED(fn)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_callid_options),
	    T(test_callid_init_alloc_failures),
	    T(test_callid_basics),
	    T(test_callid_foreign_ids),
	    T(test_callid_full),
	    T(test_callid_stale_after_reuse),
	    T(test_callid_version_wrap),
	    T(test_callid_attempts),
	    T(test_callid_unclaim),
	    T(test_callid_race_exactly_once),
	    T(test_callid_drain_races_claims),
	    T(test_callid_drain_alone),
	    T(test_callid_unclaim_races_timer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
