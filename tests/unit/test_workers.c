/*
 * test_workers: the task worker pool: exactly-once under contention, the
 * stop line (accepted tasks run, refused ones never do), wake-ups never
 * lost, allocation failures.
 *
 * Every test runs under an alarm and ends with the pool destroyed (threads
 * joined) and every allocation freed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/util.h"
#include "base/workers.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 120

#include "testutil.h"

struct wtask {
	struct task task;
	uint32_t runs;
	bool refused;
};

struct fixture {
	struct mem_failing mf;
	struct workers pool;
};

static void fx_init(struct fixture *fx, unsigned nthreads)
{
	struct workers_options opt;

	memset(fx, 0, sizeof(*fx));
	mem_failing_init(&fx->mf, -1);
	workers_options_default(&opt);
	opt.nthreads = nthreads;
	opt.mem = &fx->mf.mem;
	opt.name = "tw";
	assert_int_equal(workers_init(&fx->pool, &opt), 0);
}

/* Destroys the pool (joining its threads); checks the allocations. */
static void fx_teardown(struct fixture *fx)
{
	workers_destroy(&fx->pool);
	assert_int_equal(fx->mf.live, 0);
}

static void wtask_fn(struct task *t)
{
	struct wtask *w = container_of(t, struct wtask, task);

	__atomic_fetch_add(&w->runs, 1, __ATOMIC_RELEASE);
}

static void check_stats(struct workers *pool, uint64_t accepted)
{
	struct workers_stats st;

	workers_stats(pool, &st);
	assert_int_equal(st.submitted, accepted);
	assert_int_equal(st.completed, accepted);
}

/* ---- options and init ---- */

static void test_workers_options(void **state)
{
	struct workers_options opt;
	struct workers pool;

	(void)state;
	workers_options_default(&opt);
	assert_int_equal(workers_options_validate(&opt), 0);
	opt.nthreads = 0;
	assert_int_equal(workers_options_validate(&opt), -EINVAL);
	assert_int_equal(workers_init(&pool, &opt), -EINVAL);
	opt.nthreads = WORKERS_MAX_THREADS + 1;
	assert_int_equal(workers_options_validate(&opt), -EINVAL);
	workers_options_default(&opt);
	opt.name = "eleven-char";
	assert_int_equal(workers_options_validate(&opt), -EINVAL);
	opt.name = NULL;
	assert_int_equal(workers_options_validate(&opt), -EINVAL);
	workers_options_default(&opt);
	opt.stack_size = WORKERS_STACK_SIZE_MIN - 1;
	assert_int_equal(workers_options_validate(&opt), -EINVAL);
}

static void test_workers_init_alloc_failures(void **state)
{
	struct workers_options opt;
	struct mem_failing mf;
	struct workers pool;
	long k;
	int err;

	(void)state;
	workers_options_default(&opt);
	opt.nthreads = 3;
	opt.mem = &mf.mem;
	for (k = 0;; k++) {
		mem_failing_init(&mf, k);
		err = workers_init(&pool, &opt);
		if (err == 0)
			break;
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(mf.live, 0);
		assert_true(k < 100);
	}
	assert_true(k >= 1); /* init allocates: k = 0 must have failed */
	assert_int_equal(workers_start(&pool), 0);
	workers_destroy(&pool);
	assert_int_equal(mf.live, 0);
}

/* A thread that cannot be created: start fails, the pool stays usable. */
static void test_workers_start_failure(void **state)
{
	struct workers_options opt;
	struct mem_failing mf;
	struct workers pool;
	struct wtask t;
	int err;

	(void)state;
	mem_failing_init(&mf, -1);
	workers_options_default(&opt);
	opt.mem = &mf.mem;
	opt.stack_size = (size_t)1 << 62; /* no address space has this */
	assert_int_equal(workers_init(&pool, &opt), 0);
	memset(&t, 0, sizeof(t));
	task_init(&t.task, wtask_fn);
	assert_int_equal(workers_submit(&pool, &t.task), 0);
	err = workers_start(&pool);
	assert_true(err < 0);
	assert_int_equal(t.runs, 0);
	assert_int_equal(workers_stop(&pool), 0); /* runs it here */
	assert_int_equal(t.runs, 1);
	workers_destroy(&pool);
	assert_int_equal(mf.live, 0);
}

/* ---- exactly once under contention ---- */

#define SUB_THREADS    4
#define SUB_PER_THREAD 500000

struct submitter {
	struct workers *pool;
	struct wtask *tasks;
	size_t n;
	size_t accepted;
	pthread_t tid;
};

static void *submitter_main(void *arg)
{
	struct submitter *s = arg;
	size_t i;
	int err;

	for (i = 0; i < s->n; i++) {
		err = workers_submit(s->pool, &s->tasks[i].task);
		if (err == 0) {
			s->accepted++;
		} else {
			/* Only the stop line may refuse; then all later. */
			if (err != -ESHUTDOWN)
				abort();
			s->tasks[i].refused = true;
		}
	}
	return NULL;
}

static struct wtask *wtasks_new(size_t n)
{
	struct wtask *t = calloc(n, sizeof(*t));
	size_t i;

	assert_non_null(t);
	for (i = 0; i < n; i++)
		task_init(&t[i].task, wtask_fn);
	return t;
}

static void run_submitters(struct submitter *s, unsigned n,
			   struct workers *pool, struct wtask *tasks,
			   size_t per_thread)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		s[i].pool = pool;
		s[i].tasks = tasks + (size_t)i * per_thread;
		s[i].n = per_thread;
		s[i].accepted = 0;
		assert_int_equal(
		    pthread_create(&s[i].tid, NULL, submitter_main, &s[i]), 0);
	}
}

static void test_workers_many_submitters(void **state)
{
	const size_t n = (size_t)SUB_THREADS * SUB_PER_THREAD;
	struct submitter s[SUB_THREADS];
	struct wtask *tasks = wtasks_new(n);
	int64_t t0 = clock_mono_ns();
	struct fixture fx;
	size_t i;

	(void)state;
	fx_init(&fx, 2);
	assert_int_equal(workers_start(&fx.pool), 0);
	assert_int_equal(workers_start(&fx.pool), -EBUSY);
	run_submitters(s, SUB_THREADS, &fx.pool, tasks, SUB_PER_THREAD);
	for (i = 0; i < SUB_THREADS; i++) {
		assert_int_equal(pthread_join(s[i].tid, NULL), 0);
		assert_int_equal(s[i].accepted, SUB_PER_THREAD);
	}
	assert_int_equal(workers_stop(&fx.pool), 0);
	assert_int_equal(workers_stop(&fx.pool), -EALREADY);
	for (i = 0; i < n; i++)
		assert_int_equal(tasks[i].runs, 1);
	check_stats(&fx.pool, n);
	print_message("  %zu tasks through 2 workers in %lld ms\n", n,
		      (long long)((clock_mono_ns() - t0) / CLOCK_NS_PER_MS));
	fx_teardown(&fx);
	free(tasks);
}

/* ---- the stop line ---- */

static void test_workers_stop_drains(void **state)
{
	const size_t n = 200000;
	struct wtask *tasks = wtasks_new(n);
	struct wtask late;
	struct fixture fx;
	size_t i;

	(void)state;
	fx_init(&fx, 2);
	assert_int_equal(workers_start(&fx.pool), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(workers_submit(&fx.pool, &tasks[i].task), 0);
	assert_int_equal(workers_stop(&fx.pool), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(tasks[i].runs, 1);

	memset(&late, 0, sizeof(late));
	task_init(&late.task, wtask_fn);
	assert_int_equal(workers_submit(&fx.pool, &late.task), -ESHUTDOWN);
	assert_int_equal(workers_start(&fx.pool), -EINVAL);
	check_stats(&fx.pool, n);
	fx_teardown(&fx);
	assert_int_equal(late.runs, 0);
	free(tasks);
}

/* Stop while 4 threads submit: each task runs iff its submit said 0. */
static void test_workers_stop_races_submitters(void **state)
{
	const size_t per = 200000, n = SUB_THREADS * per;
	struct submitter s[SUB_THREADS];
	struct wtask *tasks = wtasks_new(n);
	struct workers_stats st;
	size_t i, accepted = 0;
	struct fixture fx;

	(void)state;
	fx_init(&fx, 2);
	assert_int_equal(workers_start(&fx.pool), 0);
	run_submitters(s, SUB_THREADS, &fx.pool, tasks, per);
	/* Let them get going, then cut. */
	do {
		workers_stats(&fx.pool, &st);
		sched_yield();
	} while (st.submitted < n / 10);
	assert_int_equal(workers_stop(&fx.pool), 0);
	for (i = 0; i < SUB_THREADS; i++) {
		assert_int_equal(pthread_join(s[i].tid, NULL), 0);
		accepted += s[i].accepted;
	}
	for (i = 0; i < n; i++)
		assert_int_equal(tasks[i].runs, tasks[i].refused ? 0 : 1);
	check_stats(&fx.pool, accepted);
	print_message("  accepted %zu of %zu before the stop\n", accepted, n);
	fx_teardown(&fx);
	free(tasks);
}

/* Never started: stop runs the queue on the calling thread. */
static void test_workers_stop_unstarted(void **state)
{
	struct wtask tasks[10];
	struct fixture fx;
	size_t i;

	(void)state;
	memset(tasks, 0, sizeof(tasks));
	fx_init(&fx, 2);
	for (i = 0; i < ARRAY_SIZE(tasks); i++) {
		task_init(&tasks[i].task, wtask_fn);
		assert_int_equal(workers_submit(&fx.pool, &tasks[i].task), 0);
	}
	assert_int_equal(workers_stop(&fx.pool), 0);
	for (i = 0; i < ARRAY_SIZE(tasks); i++)
		assert_int_equal(tasks[i].runs, 1);
	check_stats(&fx.pool, ARRAY_SIZE(tasks));
	fx_teardown(&fx);
}

/* destroy without stop drains too. */
static void test_workers_destroy_drains(void **state)
{
	const size_t n = 50000;
	struct wtask *tasks = wtasks_new(n);
	struct fixture fx;
	size_t i;

	(void)state;
	fx_init(&fx, 3);
	assert_int_equal(workers_start(&fx.pool), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(workers_submit(&fx.pool, &tasks[i].task), 0);
	fx_teardown(&fx);
	for (i = 0; i < n; i++)
		assert_int_equal(tasks[i].runs, 1);
	free(tasks);
}

/* ---- tasks that submit, stop from a worker, names in logs ---- */

struct chain {
	struct task task;
	struct workers *pool;
	struct log *log;
	int left;
	int runs;
	int stop_err;
	int submit_err;
	bool done;
};

static void chain_fn(struct task *t)
{
	struct chain *c = container_of(t, struct chain, task);
	int err;

	c->runs++;
	c->stop_err = workers_stop(c->pool);
	log_info(c->log, "chain %d", c->left);
	if (--c->left > 0) {
		err = workers_submit(c->pool, t);
		if (err == 0)
			return; /* c is the next run's now: hands off */
		c->submit_err = err;
	}
	__atomic_store_n(&c->done, true, __ATOMIC_RELEASE);
}

static void log_collect(void *ctx, const char *line, size_t len)
{
	char *buf = ctx;
	size_t used = strlen(buf);

	if (used + len + 1 < 16384) {
		memcpy(buf + used, line, len);
		buf[used + len] = '\0';
	}
}

static void test_workers_task_resubmits(void **state)
{
	static char lines[16384];
	struct workers_options opt;
	struct log_options lopt;
	struct mem_failing mf;
	struct workers pool;
	struct chain c;
	struct log lg;

	(void)state;
	lines[0] = '\0';
	log_options_default(&lopt);
	lopt.sink = log_collect;
	lopt.sink_ctx = lines;
	lopt.repeat_window_ms = 0;
	assert_int_equal(log_init(&lg, &lopt), 0);

	mem_failing_init(&mf, -1);
	workers_options_default(&opt);
	opt.mem = &mf.mem;
	opt.log = &lg;
	opt.name = "tw";
	assert_int_equal(workers_init(&pool, &opt), 0);
	memset(&c, 0, sizeof(c));
	task_init(&c.task, chain_fn);
	c.pool = &pool;
	c.log = &lg;
	c.left = 100;
	assert_int_equal(workers_start(&pool), 0);
	assert_int_equal(workers_submit(&pool, &c.task), 0);
	while (!__atomic_load_n(&c.done, __ATOMIC_ACQUIRE))
		sched_yield();
	assert_int_equal(c.runs, 100);
	assert_int_equal(c.stop_err, -EDEADLK);
	assert_int_equal(c.submit_err, 0);
	assert_int_equal(workers_stop(&pool), 0);
	check_stats(&pool, 100);
	workers_destroy(&pool);
	assert_int_equal(mf.live, 0);
	log_destroy(&lg);
	assert_true(strstr(lines, "[tw-0]") || strstr(lines, "[tw-1]"));
}

/*
 * Ping-pong: one task at a time, the submitter waiting for each, so the
 * workers go to sleep between tasks.  A lost wake-up hangs a round: each
 * round is bounded by ROUND_LIMIT_NS.
 */
#define PINGPONG_ROUNDS 20000
#define ROUND_LIMIT_NS	(5 * CLOCK_NS_PER_S)

static void test_workers_no_lost_wakeup(void **state)
{
	struct wtask t;
	struct fixture fx;
	int64_t start;
	int round;

	(void)state;
	fx_init(&fx, 2);
	assert_int_equal(workers_start(&fx.pool), 0);
	memset(&t, 0, sizeof(t));
	for (round = 0; round < PINGPONG_ROUNDS; round++) {
		task_init(&t.task, wtask_fn);
		assert_int_equal(workers_submit(&fx.pool, &t.task), 0);
		start = clock_mono_ns();
		while (__atomic_load_n(&t.runs, __ATOMIC_ACQUIRE) !=
		       (uint32_t)round + 1) {
			assert_true(clock_mono_ns() - start < ROUND_LIMIT_NS);
			if (round & 1)
				sched_yield(); /* let the workers fall asleep */
		}
	}
	assert_int_equal(workers_stop(&fx.pool), 0);
	check_stats(&fx.pool, PINGPONG_ROUNDS);
	fx_teardown(&fx);
}

#define T(fn) TEST_BOUNDED(fn)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_workers_options),
	    T(test_workers_init_alloc_failures),
	    T(test_workers_start_failure),
	    T(test_workers_many_submitters),
	    T(test_workers_stop_drains),
	    T(test_workers_stop_races_submitters),
	    T(test_workers_stop_unstarted),
	    T(test_workers_destroy_drains),
	    T(test_workers_task_resubmits),
	    T(test_workers_no_lost_wakeup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
