/*
 * test_rt: the runtime runs exactly the budget's threads, spreads loops,
 * runs tasks on workers and posted tasks on loops, stops cleanly, and
 * unwinds every allocation failure of init.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/budget.h"
#include "base/mem.h"
#include "base/rt.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"

static int count_threads(void)
{
	struct dirent *e;
	DIR *d = opendir("/proc/self/task");
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/*
 * The thread count once it has come down to `want`, or after a second.
 * A joined thread can still be listed in /proc/self/task for a moment:
 * the kernel wakes the joiner when the thread clears its tid, a little
 * before the task is gone.
 */
static int count_threads_down_to(int want)
{
	struct timespec nap = {0, 1000 * 1000};
	int n = count_threads();

	for (int i = 0; i < 1000 && n > want; i++) {
		nanosleep(&nap, NULL);
		n = count_threads();
	}
	return n;
}

static void start_rt(struct rt *rt, struct mem_failing *mf, int d, int t)
{
	struct rt_options opt = {
	    .mem = &mf->mem, .dispatchers = d, .task_workers = t};

	mem_failing_init(mf, -1);
	assert_int_equal(rt_init(rt, &opt), 0);
	assert_int_equal(rt_start(rt), 0);
}

/* The process runs D loop threads + (W - D - P) task workers, no more. */
static void test_threads_match_budget(void **state)
{
	static const struct {
		int w, d, p;
		bool polling;
	} cases[] = {
	    {4, 1, 1, false},
	    {14, 12, 1, false},
	    {6, 2, 1, true},
	    {2, 1, 1, false},
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct budget_input in = {
		    .worker_num = cases[i].w,
		    .event_dispatcher_num = cases[i].d,
		    .rdma_poller_num = cases[i].p,
		    .rdma_use_polling = cases[i].polling,
		    .mode = BUDGET_STRICT,
		    .ncpu = 2,
		};
		struct rt_options opt;
		struct mem_failing mf;
		struct budget b;
		struct rt rt;
		int before = count_threads();

		assert_int_equal(budget_resolve(&in, &b), 0);
		rt_options_from_budget(&opt, &b);
		mem_failing_init(&mf, -1);
		opt.mem = &mf.mem;
		assert_int_equal(rt_init(&rt, &opt), 0);
		assert_int_equal(count_threads(), before);
		assert_int_equal(rt_start(&rt), 0);
		/* Pollers belong to rdma/, from the same budget. */
		assert_int_equal(count_threads() - before,
				 b.workers - b.pollers);
		rt_destroy(&rt);
		assert_int_equal(count_threads_down_to(before), before);
		assert_int_equal(mf.live, 0);
	}
}

struct counted {
	struct task task;
	struct loop *loop; /* where a posted task must run, or NULL */
	int *done;
	bool on_right_thread;
};

static void counted_fn(struct task *t)
{
	struct counted *c = container_of(t, struct counted, task);

	c->on_right_thread = c->loop ? loop_on_thread(c->loop) : true;
	__atomic_fetch_add(c->done, 1, __ATOMIC_RELAXED);
}

/* Tasks run on workers; tasks posted to a loop run on that loop. */
#define NTASKS 20000
static void test_tasks_and_posts_run(void **state)
{
	static struct counted tasks[NTASKS];
	struct mem_failing mf;
	struct rt rt;
	int done = 0;

	(void)state;
	start_rt(&rt, &mf, 3, 2);
	for (int i = 0; i < NTASKS; i++) {
		tasks[i].done = &done;
		tasks[i].on_right_thread = false;
		if (i % 2) {
			tasks[i].loop = rt_loop_for(&rt, (unsigned)i);
			task_init(&tasks[i].task, counted_fn);
			loop_post(tasks[i].loop, &tasks[i].task);
		} else {
			tasks[i].loop = NULL;
			task_init(&tasks[i].task, counted_fn);
			assert_int_equal(rt_submit(&rt, &tasks[i].task), 0);
		}
	}
	while (__atomic_load_n(&done, __ATOMIC_RELAXED) < NTASKS)
		usleep(1000);
	rt_stop(&rt);
	for (int i = 0; i < NTASKS; i++)
		assert_true(tasks[i].on_right_thread);
	assert_int_equal(done, NTASKS);
	rt_destroy(&rt);
	assert_int_equal(mf.live, 0);
}

/* rt_loop_for spreads keys over every loop, deterministically. */
static void test_loop_for_spreads(void **state)
{
	struct mem_failing mf;
	struct rt rt;

	(void)state;
	start_rt(&rt, &mf, 4, 1);
	for (unsigned k = 0; k < 16; k++) {
		assert_ptr_equal(rt_loop_for(&rt, k), &rt.loops[k % 4]);
		assert_ptr_equal(rt_loop_for(&rt, k), rt_loop_for(&rt, k + 4));
	}
	rt_destroy(&rt);
	assert_int_equal(mf.live, 0);
}

/* After stop: submits are refused, stop is idempotent. */
static void test_stop_refuses_and_is_idempotent(void **state)
{
	struct mem_failing mf;
	struct counted c = {0};
	struct rt rt;
	int done = 0;

	(void)state;
	start_rt(&rt, &mf, 1, 1);
	rt_stop(&rt);
	rt_stop(&rt);
	c.done = &done;
	task_init(&c.task, counted_fn);
	assert_int_equal(rt_submit(&rt, &c.task), -ESHUTDOWN);
	rt_destroy(&rt);
	assert_int_equal(done, 0);
	assert_int_equal(mf.live, 0);
}

static void test_bad_options(void **state)
{
	struct rt_options bad[] = {
	    {.dispatchers = 0, .task_workers = 1},
	    {.dispatchers = 1, .task_workers = 0},
	    {.dispatchers = BUDGET_MAX_DISPATCHERS + 1, .task_workers = 1},
	};
	struct rt rt;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(rt_init(&rt, &bad[i]), -EINVAL);
}

/* Every allocation of init may fail; each failure unwinds completely. */
static void test_init_allocation_failures(void **state)
{
	long k;

	(void)state;
	for (k = 0;; k++) {
		struct mem_failing mf;
		struct rt_options opt = {.dispatchers = 3, .task_workers = 2};
		struct rt rt;
		int err;

		mem_failing_init(&mf, k);
		opt.mem = &mf.mem;
		err = rt_init(&rt, &opt);
		if (!err) {
			assert_int_equal(rt_start(&rt), 0);
			rt_destroy(&rt);
			assert_int_equal(mf.live, 0);
			break;
		}
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(mf.live, 0);
	}
	/* rt's array, three loops' event arrays, the workers' slots */
	assert_true(k >= 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_match_budget),
	    cmocka_unit_test(test_tasks_and_posts_run),
	    cmocka_unit_test(test_loop_for_spreads),
	    cmocka_unit_test(test_stop_refuses_and_is_idempotent),
	    cmocka_unit_test(test_bad_options),
	    cmocka_unit_test(test_init_allocation_failures),
	};

	return cmocka_run_group_tests_name("rt", tests, test_alarm_arm, NULL);
}
