/*
 * Tests for net/base/budget.c: the rule D + P < W (P counted only when
 * polling), strict refusal, auto raising, the default worker count and the
 * operator's messages.  Pure functions: no fixtures, no allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/budget.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct resolve_case {
	const char *what;
	struct budget_input in;
	int err;
	struct budget want; /* when err is 0 or -ERANGE */
};

#define IN(w, d, p, poll, m, cpu)                                              \
	{                                                                      \
		.worker_num = (w), .event_dispatcher_num = (d),                \
		.rdma_poller_num = (p), .rdma_use_polling = (poll),            \
		.mode = (m), .ncpu = (cpu)                                     \
	}
#define OUT(w, d, p, t, r, asked)                                              \
	{                                                                      \
		.workers = (w), .dispatchers = (d), .pollers = (p),            \
		.task_workers = (t), .raised = (r), .asked_workers = (asked)   \
	}

static const struct resolve_case cases[] = {
    /* brpc's failing case: 12 dispatchers take all 12 workers. */
    {"brpc 12/12 strict", IN(12, 12, 1, false, BUDGET_STRICT, 8), -ERANGE,
     OUT(12, 12, 0, 0, false, 12)},
    {"brpc 12/14 strict", IN(14, 12, 1, false, BUDGET_STRICT, 8), 0,
     OUT(14, 12, 0, 2, false, 14)},
    {"brpc 12/13 strict", IN(13, 12, 1, false, BUDGET_STRICT, 8), 0,
     OUT(13, 12, 0, 1, false, 13)},
    /* P counts only when polling. */
    {"polling 3+1/4", IN(4, 3, 1, true, BUDGET_STRICT, 4), -ERANGE,
     OUT(4, 3, 1, 0, false, 4)},
    {"not polling 3+1/4", IN(4, 3, 1, false, BUDGET_STRICT, 4), 0,
     OUT(4, 3, 0, 1, false, 4)},
    {"polling 3+1/5", IN(5, 3, 1, true, BUDGET_STRICT, 4), 0,
     OUT(5, 3, 1, 1, false, 5)},
    {"polling 2+4/4", IN(4, 2, 4, true, BUDGET_STRICT, 4), -ERANGE,
     OUT(4, 2, 4, -2, false, 4)},
    {"not polling 2+4/4", IN(4, 2, 4, false, BUDGET_STRICT, 4), 0,
     OUT(4, 2, 0, 2, false, 4)},
    /* Boundaries: D + P == W - 1 fits, == W does not, > W neither. */
    {"D+P == W-1", IN(8, 5, 2, true, BUDGET_STRICT, 4), 0,
     OUT(8, 5, 2, 1, false, 8)},
    {"D+P == W", IN(7, 5, 2, true, BUDGET_STRICT, 4), -ERANGE,
     OUT(7, 5, 2, 0, false, 7)},
    {"D+P == W+1", IN(6, 5, 2, true, BUDGET_STRICT, 4), -ERANGE,
     OUT(6, 5, 2, -1, false, 6)},
    {"smallest", IN(2, 1, 0, false, BUDGET_STRICT, 1), 0,
     OUT(2, 1, 0, 1, false, 2)},
    {"W 1 D 1", IN(1, 1, 0, false, BUDGET_STRICT, 1), -ERANGE,
     OUT(1, 1, 0, 0, false, 1)},
    {"largest", IN(1024, 256, 64, true, BUDGET_STRICT, 4), 0,
     OUT(1024, 256, 64, 704, false, 1024)},
    /* Out of range: -EINVAL, whatever the mode. */
    {"W 0", IN(0, 1, 1, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    {"W -1", IN(-1, 1, 1, false, BUDGET_AUTO, 4), -EINVAL, {0}},
    {"W 1025", IN(1025, 1, 1, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    {"D 0", IN(4, 0, 1, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    {"D 0 auto", IN(4, 0, 1, false, BUDGET_AUTO, 4), -EINVAL, {0}},
    {"D 257", IN(1024, 257, 1, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    {"P -1", IN(4, 1, -1, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    {"P 65", IN(100, 1, 65, true, BUDGET_STRICT, 4), -EINVAL, {0}},
    /* Checked even when not polling. */
    {"P 65 not polling", IN(100, 1, 65, false, BUDGET_STRICT, 4), -EINVAL, {0}},
    /* Auto raises W to D + P + max(2, ncpu). */
    {"auto 12/12 ncpu 1", IN(12, 12, 1, false, BUDGET_AUTO, 1), 0,
     OUT(14, 12, 0, 2, true, 12)},
    {"auto 12/12 ncpu 2", IN(12, 12, 1, false, BUDGET_AUTO, 2), 0,
     OUT(14, 12, 0, 2, true, 12)},
    {"auto 12/12 ncpu 3", IN(12, 12, 1, false, BUDGET_AUTO, 3), 0,
     OUT(15, 12, 0, 3, true, 12)},
    {"auto 12/12 ncpu 8", IN(12, 12, 1, false, BUDGET_AUTO, 8), 0,
     OUT(20, 12, 0, 8, true, 12)},
    {"auto ncpu 0", IN(4, 4, 1, false, BUDGET_AUTO, 0), 0,
     OUT(6, 4, 0, 2, true, 4)},
    {"auto polling 3+1/4", IN(4, 3, 1, true, BUDGET_AUTO, 4), 0,
     OUT(8, 3, 1, 4, true, 4)},
    {"auto D+P == W", IN(7, 5, 2, true, BUDGET_AUTO, 2), 0,
     OUT(9, 5, 2, 2, true, 7)},
    /* Auto leaves a budget that fits alone. */
    {"auto fits", IN(14, 12, 1, false, BUDGET_AUTO, 8), 0,
     OUT(14, 12, 0, 2, false, 14)},
    {"auto fits by one", IN(8, 5, 2, true, BUDGET_AUTO, 64), 0,
     OUT(8, 5, 2, 1, false, 8)},
    {"auto not polling", IN(4, 3, 1, false, BUDGET_AUTO, 64), 0,
     OUT(4, 3, 0, 1, false, 4)},
};

static void test_resolve_table(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct resolve_case *c = &cases[k];
		struct budget b;
		int r;

		memset(&b, 0x5a, sizeof(b));
		r = budget_resolve(&c->in, &b);
		if (r != c->err)
			fail_msg("%s: got %d, want %d", c->what, r, c->err);
		if (r == -EINVAL)
			continue;
		if (b.workers != c->want.workers ||
		    b.dispatchers != c->want.dispatchers ||
		    b.pollers != c->want.pollers ||
		    b.task_workers != c->want.task_workers ||
		    b.raised != c->want.raised ||
		    b.asked_workers != c->want.asked_workers)
			fail_msg("%s: got W %d D %d P %d T %d raised %d asked "
				 "%d, want W %d D %d P %d T %d raised %d "
				 "asked %d",
				 c->what, b.workers, b.dispatchers, b.pollers,
				 b.task_workers, b.raised, b.asked_workers,
				 c->want.workers, c->want.dispatchers,
				 c->want.pollers, c->want.task_workers,
				 c->want.raised, c->want.asked_workers);
		/* The invariant that holds whenever the budget is accepted. */
		if (r == 0) {
			assert_true(b.task_workers >= 1);
			assert_int_equal(b.workers, b.dispatchers + b.pollers +
							b.task_workers);
		} else {
			assert_true(b.task_workers <= 0);
		}
	}
}

/* The rule itself, over a grid: strict accepts iff D + P < W. */
static void test_resolve_rule_grid(void **state)
{
	(void)state;
	for (int w = 1; w <= 12; w++)
		for (int d = 1; d <= 12; d++)
			for (int p = 0; p <= 4; p++)
				for (int poll = 0; poll <= 1; poll++) {
					struct budget_input in =
					    IN(w, d, p, poll, BUDGET_STRICT, 4);
					struct budget b, a;
					int counted = poll ? p : 0;
					int r = budget_resolve(&in, &b);

					assert_int_equal(
					    r, d + counted < w ? 0 : -ERANGE);
					in.mode = BUDGET_AUTO;
					assert_int_equal(
					    budget_resolve(&in, &a), 0);
					assert_true(a.task_workers >= 2 ||
						    (!a.raised && r == 0));
					assert_int_equal(a.raised, r != 0);
				}
}

static void test_default_workers(void **state)
{
	static const int ncpu[] = {1, 2, 3, 4, 8, 64, 0, -1};
	static const int want[] = {4, 4, 4, 5, 9, 65, 4, 4};

	(void)state;
	for (size_t k = 0; k < sizeof(ncpu) / sizeof(ncpu[0]); k++)
		if (budget_default_workers(ncpu[k]) != want[k])
			fail_msg("ncpu %d: %d, want %d", ncpu[k],
				 budget_default_workers(ncpu[k]), want[k]);
}

/* The default budget (D 1, P 1 not polling) fits on every core count. */
static void test_default_budget_fits(void **state)
{
	(void)state;
	for (int n = 1; n <= 256; n++) {
		struct budget_input in = IN(budget_default_workers(n), 1, 1,
					    false, BUDGET_STRICT, n);
		struct budget b;

		assert_int_equal(budget_resolve(&in, &b), 0);
		in.rdma_use_polling = true;
		assert_int_equal(budget_resolve(&in, &b), 0);
	}
}

static const struct budget_sources srcs = {
    .worker_num = "command line --worker_num",
    .event_dispatcher_num = "environment RPCGATE_EVENT_DISPATCHER_NUM",
    .rdma_poller_num = "default",
};

static void test_refusal_message_brpc_case(void **state)
{
	struct budget_input in = IN(12, 12, 1, false, BUDGET_STRICT, 8);
	char buf[2048];
	int n;

	(void)state;
	n = budget_explain_refusal(&in, &srcs, buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_string_equal(
	    buf,
	    "thread budget refused: event_dispatcher_num=12 (environment "
	    "RPCGATE_EVENT_DISPATCHER_NUM) + rdma_poller_num=1 (default; "
	    "not counted because rdma_use_polling=false) leaves no task "
	    "worker out of worker_num=12 (command line --worker_num).\n"
	    "  rule: event_dispatcher_num + rdma_poller_num (when polling) "
	    "< worker_num; every event loop and poller holds a whole "
	    "thread, and handshakes and handlers need the rest.  brpc "
	    "accepts this budget and then fails with \"Fail to read Hello "
	    "Message from client ... Got EOF\".\n"
	    "  fix: --worker_num=13 or more, or fewer event dispatchers, "
	    "or --thread_budget=auto to raise worker_num to fit.");
}

static void test_refusal_message_polling(void **state)
{
	struct budget_input in = IN(4, 3, 1, true, BUDGET_STRICT, 4);
	struct budget_sources s = {
	    .worker_num = "default",
	    .event_dispatcher_num = "kernel command line "
				    "rpcgate.event_dispatcher_num "
				    "(/proc/cmdline)",
	    .rdma_poller_num = "command line --rdma_poller_num",
	};
	char buf[2048];

	(void)state;
	budget_explain_refusal(&in, &s, buf, sizeof(buf));
	assert_non_null(strstr(buf, "event_dispatcher_num=3 (kernel command "
				    "line rpcgate.event_dispatcher_num "
				    "(/proc/cmdline))"));
	assert_non_null(strstr(buf, "rdma_poller_num=1 (command line "
				    "--rdma_poller_num; counted because "
				    "rdma_use_polling=true)"));
	assert_non_null(strstr(buf, "worker_num=4 (default)"));
	assert_non_null(strstr(buf, "event_dispatcher_num + rdma_poller_num "
				    "(when polling) < worker_num"));
	assert_non_null(strstr(buf, "Fail to read Hello Message"));
	/* D + P + 1 = 5 */
	assert_non_null(strstr(buf, "fix: --worker_num=5 or more, or fewer "
				    "event dispatchers or rdma pollers, or "
				    "--thread_budget=auto"));
}

/* Not polling, P does not count towards the suggested worker_num. */
static void test_refusal_message_not_polling_suggestion(void **state)
{
	struct budget_input in = IN(6, 6, 64, false, BUDGET_STRICT, 4);
	char buf[2048];

	(void)state;
	budget_explain_refusal(&in, &srcs, buf, sizeof(buf));
	assert_non_null(
	    strstr(buf, "rdma_poller_num=64 (default; not counted"));
	assert_non_null(strstr(buf, "--worker_num=7 or more"));
	assert_null(strstr(buf, "rdma pollers,"));
}

static void test_refusal_message_truncates_safely(void **state)
{
	struct budget_input in = IN(12, 12, 1, false, BUDGET_STRICT, 8);
	char full[2048], small[40];
	int n;

	(void)state;
	n = budget_explain_refusal(&in, &srcs, full, sizeof(full));
	assert_int_equal(
	    budget_explain_refusal(&in, &srcs, small, sizeof(small)), n);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, full, sizeof(small) - 1);
	assert_int_equal(budget_explain_refusal(&in, &srcs, NULL, 0), n);
}

static void test_describe(void **state)
{
	static const struct {
		struct budget_input in;
		const char *want;
	} d[] = {
	    {IN(14, 12, 1, false, BUDGET_STRICT, 8),
	     "14 threads = 12 event dispatchers + 0 rdma pollers + 2 task "
	     "workers (thread_budget=strict)"},
	    {IN(4, 1, 1, true, BUDGET_STRICT, 8),
	     "4 threads = 1 event dispatcher + 1 rdma poller + 2 task "
	     "workers (thread_budget=strict)"},
	    {IN(3, 1, 1, true, BUDGET_STRICT, 8),
	     "3 threads = 1 event dispatcher + 1 rdma poller + 1 task "
	     "worker (thread_budget=strict)"},
	    {IN(12, 12, 1, false, BUDGET_AUTO, 2),
	     "14 threads = 12 event dispatchers + 0 rdma pollers + 2 task "
	     "workers (thread_budget=auto, worker_num raised)"},
	    {IN(20, 2, 3, true, BUDGET_AUTO, 2),
	     "20 threads = 2 event dispatchers + 3 rdma pollers + 15 task "
	     "workers (thread_budget=auto)"},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(d) / sizeof(d[0]); k++) {
		struct budget b;
		char buf[256];
		int n;

		assert_int_equal(budget_resolve(&d[k].in, &b), 0);
		n = budget_describe(&b, d[k].in.mode, buf, sizeof(buf));
		assert_string_equal(buf, d[k].want);
		assert_int_equal(n, strlen(d[k].want));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resolve_table),
	    cmocka_unit_test(test_resolve_rule_grid),
	    cmocka_unit_test(test_default_workers),
	    cmocka_unit_test(test_default_budget_fits),
	    cmocka_unit_test(test_refusal_message_brpc_case),
	    cmocka_unit_test(test_refusal_message_polling),
	    cmocka_unit_test(test_refusal_message_not_polling_suggestion),
	    cmocka_unit_test(test_refusal_message_truncates_safely),
	    cmocka_unit_test(test_describe),
	};

	return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
