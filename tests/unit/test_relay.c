/*
 * test_relay: handlers that call other servers synchronously, at the
 * smallest legal thread budget (../shared/DESIGN.md: "A handler may make
 * a synchronous call even at the smallest legal budget without
 * deadlocking the pool").
 *
 * Every test runs ONE rt resolved from worker_num 2, event_dispatcher_num
 * 1: one event loop and one task worker.  On it run an echo server
 * (app/echo.h, inline on the loop), one or two "relay" servers serving
 * example.EchoService with a handler that forwards the message through a
 * channel (net/rpc/channel.h) with a synchronous channel_call (done NULL),
 * and the test's own client channels:
 *
 *   test thread --client--> relay --inner (sync)--> echo
 *
 *   1. relay on the worker, 8 concurrent calls: the one worker blocks in
 *      each inner call in turn and is woken by the loop, never by a
 *      worker, so all 8 succeed, serialised, in well under a second;
 *   2. relay inline (on the loop thread): its sync call fails at once
 *      with EDEADLK, the outer call gets that failure, and the server
 *      (and the loop) keep serving;
 *   3. relay -> relay -> echo: the first relay's handler holds the only
 *      worker while the second relay's request waits in the worker
 *      queue, so the inner call can only time out (ERPCTIMEDOUT after
 *      its 200 ms), never hang; once the handler gives up, the queued
 *      call runs and the pool serves again.
 *
 * Every test ends with the channels, servers, rt and pool down, every
 * block back in the pool and no live allocation in the counting
 * allocator (ASan's leak check covers the rest).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/budget.h"
#include "rpc/channel.h"
#include "echo.h"
#include "echo.pb-c.h"
#include "base/iobuf.h"
#include "base/mem.h"
#include "codec/rpc_errno.h"
#include "base/rt.h"
#include "rpc/server.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"

/* The outer calls of test 1, all in flight at once. */
#define NCALLS 8
/* Relays of one test at most (test 3 chains two). */
#define NRELAYS 2
/* The echo's delay in test 1: long enough that the other calls queue up
 * behind the worker blocked in the first inner call. */
#define ECHO_SLOW_MS 50
/* "Within a few seconds": far above the ~NCALLS * ECHO_SLOW_MS the
 * serialised calls take, far below TEST_TIMEOUT_S. */
#define WAIT_MS 5000
/* The client's timeout: anything slower is a hang, not a result. */
#define CLIENT_TIMEOUT_MS WAIT_MS
/* A relay's inner call to a server that answers. */
#define INNER_TIMEOUT_MS 2000
/* Test 3's inner call, which can only time out. */
#define NESTED_TIMEOUT_MS 200
/* How fast a call that fails without leaving the process must end: a
 * hang still ends at CLIENT_TIMEOUT_MS, twice this, with another code;
 * the margin is a stall of a loaded machine. */
#define FAST_MS 2500
#define MSG_MAX 32

struct relay {
	struct channel *next; /* where the handler calls, synchronously */
	struct iobuf_pool *pool;
	/* What the handlers saw (atomics). */
	int handled;
	int64_t active, max_active; /* handlers running at once */
	int on_loop;		    /* handlers that ran on a loop thread */
	int64_t max_inflight;	    /* the server's calls in flight */
	int last_code;		    /* the inner call's error_code */
	int64_t last_latency_us;    /* and its latency */
};

struct fx {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct rt rt;
	bool rt_up;

	struct echo_service echo;
	struct server echo_srv;
	int echo_port;
	bool echo_up;

	struct relay relay[NRELAYS];
	struct server relay_srv[NRELAYS];
	int relay_port[NRELAYS];
	struct channel inner[NRELAYS]; /* relay[i].next */
	int nrelays;

	/* The test's channels: client[i] to relay i, to_echo to echo. */
	struct channel client[NRELAYS];
	struct channel to_echo;
	bool clients_up;

	/* Test 1's async outer calls. */
	struct rpc_call calls[NCALLS];
	int ncalls_init;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	int ndone;	     /* under lock */
};

static struct fx g_fx;
static bool g_fx_up; /* set up and not yet torn down */

/* ---- time ------------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void atomic_max(int64_t *slot, int64_t v)
{
	int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);

	while (v > cur &&
	       !__atomic_compare_exchange_n(slot, &cur, v, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* ---- the relay ------------------------------------------------------- */

/*
 * example.EchoService.Echo, forwarded: a synchronous call to r->next with
 * the same message, then the answer is the inner answer's message, or the
 * inner failure.  The inner rpc_call owns the echoed string, so it is
 * destroyed only after server_call_finish() has packed the answer.
 */
static void relay_handler(struct server_call *call, void *arg)
{
	struct relay *r = arg;
	const Example__EchoRequest *req = (const void *)call->request;
	Example__EchoRequest inner = EXAMPLE__ECHO_REQUEST__INIT;
	struct server_stats st;
	struct rpc_call c;
	int64_t active;
	int code;

	__atomic_fetch_add(&r->handled, 1, __ATOMIC_RELAXED);
	active = __atomic_add_fetch(&r->active, 1, __ATOMIC_SEQ_CST);
	atomic_max(&r->max_active, active);
	if (loop_on_thread(server_call_loop(call)))
		__atomic_fetch_add(&r->on_loop, 1, __ATOMIC_RELAXED);
	server_stats(call->srv, &st);
	atomic_max(&r->max_inflight, st.inflight);

	/* The request lives until the call is finished: no copy. */
	inner.message = req->message;
	rpc_call_init(&c, r->pool);
	code = channel_call(r->next, &example__echo_service__descriptor, 0,
			    &inner.base, &c, NULL, NULL);
	__atomic_store_n(&r->last_code, code, __ATOMIC_RELAXED);
	__atomic_store_n(&r->last_latency_us, c.latency_us, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&r->active, 1, __ATOMIC_SEQ_CST);
	if (code) {
		server_call_fail(call, code, "relay: %s", c.error_text);
	} else {
		Example__EchoResponse *out = (void *)call->response;
		const Example__EchoResponse *in = (const void *)c.response;

		out->message = in->message;
	}
	server_call_finish(call);
	rpc_call_destroy(&c);
}

/* ---- fixture --------------------------------------------------------- */

struct fx_cfg {
	int nrelays;	      /* 1 or 2: relay i calls relay i+1, the last
				 calls echo */
	unsigned relay_flags; /* SERVER_METHOD_* of every relay */
	int echo_sleep_ms;
	int first_inner_timeout_ms; /* relay 0's inner channel */
};

static void pool_init_counted(struct fx *fx)
{
	struct iobuf_pool_options po;

	iobuf_pool_options_default(&po);
	po.mem = &fx->mf.mem;
	assert_int_equal(iobuf_pool_init(&fx->pool, &po), 0);
}

/* The smallest legal budget: one loop, one task worker. */
static void rt_up_smallest(struct fx *fx)
{
	struct budget_input bi = {
	    .worker_num = 2,
	    .event_dispatcher_num = 1,
	    .mode = BUDGET_STRICT,
	    .ncpu = 1,
	};
	struct rt_options ro;
	struct budget b;

	/* One thread less leaves no task worker: refused. */
	bi.worker_num = 1;
	assert_int_equal(budget_resolve(&bi, &b), -ERANGE);
	bi.worker_num = 2;
	assert_int_equal(budget_resolve(&bi, &b), 0);
	assert_int_equal(b.dispatchers, 1);
	assert_int_equal(b.task_workers, 1);
	rt_options_from_budget(&ro, &b);
	ro.mem = &fx->mf.mem;
	assert_int_equal(rt_init(&fx->rt, &ro), 0);
	assert_int_equal(rt_start(&fx->rt), 0);
	fx->rt_up = true;
}

static void server_up(struct fx *fx, struct server *s)
{
	struct server_options so;

	server_options_default(&so);
	so.rt = &fx->rt;
	so.pool = &fx->pool;
	so.mem = &fx->mf.mem;
	assert_int_equal(server_init(s, &so), 0);
}

static void channel_up(struct fx *fx, struct channel *ch, int port,
		       int timeout_ms)
{
	struct channel_options co;
	char addr[32];

	channel_options_default(&co);
	co.rt = &fx->rt;
	co.pool = &fx->pool;
	co.mem = &fx->mf.mem;
	co.timeout_ms = timeout_ms;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_int_equal(channel_init(ch, addr, &co), 0);
}

static struct fx *fx_up(const struct fx_cfg *cfg)
{
	static server_handler_fn *const handlers[] = {relay_handler};
	struct fx *fx = &g_fx;
	pthread_condattr_t ca;
	int i, port;

	memset(fx, 0, sizeof(*fx));
	g_fx_up = true;
	mem_failing_init(&fx->mf, -1);
	assert_int_equal(pthread_mutex_init(&fx->lock, NULL), 0);
	assert_int_equal(pthread_condattr_init(&ca), 0);
	assert_int_equal(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), 0);
	assert_int_equal(pthread_cond_init(&fx->cond, &ca), 0);
	pthread_condattr_destroy(&ca);
	pool_init_counted(fx);
	rt_up_smallest(fx);

	server_up(fx, &fx->echo_srv);
	fx->echo.sleep_ms = cfg->echo_sleep_ms;
	assert_int_equal(echo_service_add(&fx->echo_srv, &fx->echo), 0);
	fx->echo_port = server_listen(&fx->echo_srv, "127.0.0.1", 0);
	assert_true(fx->echo_port > 0);
	assert_int_equal(server_start(&fx->echo_srv), 0);
	fx->echo_up = true;

	/* From the end of the chain back: relay i calls relay i+1. */
	for (i = cfg->nrelays - 1; i >= 0; i--) {
		struct relay *r = &fx->relay[i];
		struct server *s = &fx->relay_srv[i];

		port = i == cfg->nrelays - 1 ? fx->echo_port
					     : fx->relay_port[i + 1];
		channel_up(fx, &fx->inner[i], port,
			   i == 0 && cfg->first_inner_timeout_ms
			       ? cfg->first_inner_timeout_ms
			       : INNER_TIMEOUT_MS);
		r->next = &fx->inner[i];
		r->pool = &fx->pool;
		server_up(fx, s);
		assert_int_equal(
		    server_add_service(s, &example__echo_service__descriptor,
				       handlers, r, cfg->relay_flags),
		    0);
		fx->relay_port[i] = server_listen(s, "127.0.0.1", 0);
		assert_true(fx->relay_port[i] > 0);
		assert_int_equal(server_start(s), 0);
		fx->nrelays++;
	}

	for (i = 0; i < cfg->nrelays; i++)
		channel_up(fx, &fx->client[i], fx->relay_port[i],
			   CLIENT_TIMEOUT_MS);
	channel_up(fx, &fx->to_echo, fx->echo_port, CLIENT_TIMEOUT_MS);
	fx->clients_up = true;
	return fx;
}

/*
 * Down in dependency order: the test's channels (no outer call left),
 * the relays (their handlers may still be in an inner call, which needs
 * echo), their inner channels, echo, the rt (which runs the last done
 * callbacks), then what the calls and the pool hold.  `check`: assert
 * that everything balanced (false after a failed test: best effort).
 */
static void fx_down(struct fx *fx, bool check)
{
	struct server_stats st;
	int i, left;

	g_fx_up = false;
	if (fx->clients_up) {
		for (i = 0; i < fx->nrelays; i++)
			channel_destroy(&fx->client[i]);
		channel_destroy(&fx->to_echo);
	}
	for (i = 0; i < fx->nrelays; i++) {
		left = server_stop(&fx->relay_srv[i], WAIT_MS);
		server_stats(&fx->relay_srv[i], &st);
		if (check) {
			assert_int_equal(left, 0);
			assert_int_equal(st.inflight, 0);
			assert_int_equal(st.connections, 0);
		}
	}
	for (i = 0; i < fx->nrelays; i++)
		channel_destroy(&fx->inner[i]);
	if (fx->echo_up) {
		left = server_stop(&fx->echo_srv, WAIT_MS);
		if (check)
			assert_int_equal(left, 0);
	}
	for (i = 0; i < fx->nrelays; i++)
		server_destroy(&fx->relay_srv[i]);
	if (fx->echo_up)
		server_destroy(&fx->echo_srv);
	if (fx->rt_up)
		rt_destroy(&fx->rt);
	for (i = 0; i < fx->ncalls_init; i++)
		rpc_call_destroy(&fx->calls[i]);
	if (check) {
		assert_int_equal(iobuf_pool_destroy(&fx->pool), 0);
		assert_int_equal(fx->mf.live, 0);
	} else {
		iobuf_pool_destroy(&fx->pool); /* -EBUSY: leaked, reported */
	}
	pthread_cond_destroy(&fx->cond);
	pthread_mutex_destroy(&fx->lock);
}

/* After a failed test: take down what is still up, then the alarm. */
static int fx_cleanup(void **state)
{
	if (g_fx_up)
		fx_down(&g_fx, false);
	return test_alarm_disarm(state);
}

#define TEST_RELAY(fn)                                                         \
	cmocka_unit_test_setup_teardown(fn, test_alarm_arm, fx_cleanup)

/* ---- client side ----------------------------------------------------- */

static void outer_done(struct rpc_call *c, void *arg)
{
	struct fx *fx = arg;

	(void)c;
	pthread_mutex_lock(&fx->lock);
	fx->ndone++;
	pthread_cond_broadcast(&fx->cond);
	pthread_mutex_unlock(&fx->lock);
}

/* Waits up to ms for n done callbacks: the number seen. */
static int wait_done(struct fx *fx, int n, int ms)
{
	struct timespec dl;
	int got;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&fx->lock);
	while (fx->ndone < n &&
	       pthread_cond_timedwait(&fx->cond, &fx->lock, &dl) != ETIMEDOUT)
		;
	got = fx->ndone;
	pthread_mutex_unlock(&fx->lock);
	return got;
}

/* A synchronous Echo(msg) through ch from the test thread: its code.
 * The caller destroys c. */
static int echo_call(struct fx *fx, struct channel *ch, const char *msg,
		     struct rpc_call *c)
{
	Example__EchoRequest q = EXAMPLE__ECHO_REQUEST__INIT;

	q.message = (char *)msg;
	rpc_call_init(c, &fx->pool);
	return channel_call(ch, &example__echo_service__descriptor, 0, &q.base,
			    c, NULL, NULL);
}

/* The call succeeded and echoed msg. */
static void expect_echoed(const struct rpc_call *c, const char *msg,
			  const char *what)
{
	const Example__EchoResponse *resp = (const void *)c->response;

	if (c->error_code)
		fail_msg("%s: error_code %d \"%s\", want success", what,
			 c->error_code, c->error_text);
	assert_non_null(resp);
	assert_string_equal(resp->message, msg);
}

/* The stats settle: the server answered `calls` calls, none in flight.
 * Answers leave before their calls are freed, so a client that has its
 * answer may still see the call counted for a moment. */
static void wait_server_calls(struct server *s, uint64_t calls)
{
	int64_t deadline = now_ms() + WAIT_MS;
	struct server_stats st;

	for (;;) {
		server_stats(s, &st);
		if (st.calls >= calls && st.inflight == 0)
			return;
		if (now_ms() > deadline)
			fail_msg("server: %" PRIu64 " calls answered, %" PRId64
				 " in flight after %d ms; want %" PRIu64
				 " and 0",
				 st.calls, st.inflight, WAIT_MS, calls);
		usleep(1000);
	}
}

/* ---- 1: sync calls from a handler at the smallest budget ------------- */

static void test_sync_call_in_handler_smallest_budget(void **state)
{
	struct fx_cfg cfg = {.nrelays = 1, .echo_sleep_ms = ECHO_SLOW_MS};
	Example__EchoRequest q[NCALLS];
	char msg[NCALLS][MSG_MAX];
	struct channel_stats cs;
	struct fx *fx = fx_up(&cfg);
	struct relay *r = &fx->relay[0];
	int64_t t0, took;
	int i, got;

	(void)state;
	assert_int_equal(fx->rt.opt.dispatchers, 1);
	assert_int_equal(fx->rt.opt.task_workers, 1);

	t0 = now_ms();
	for (i = 0; i < NCALLS; i++) {
		example__echo_request__init(&q[i]);
		snprintf(msg[i], sizeof(msg[i]), "relay-%d", i);
		q[i].message = msg[i];
		rpc_call_init(&fx->calls[i], &fx->pool);
		fx->ncalls_init++;
		assert_int_equal(
		    channel_call(&fx->client[0],
				 &example__echo_service__descriptor, 0,
				 &q[i].base, &fx->calls[i], outer_done, fx),
		    0);
	}
	got = wait_done(fx, NCALLS, WAIT_MS);
	took = now_ms() - t0;
	if (got != NCALLS)
		fail_msg("%d of %d relayed calls ended within %d ms: the pool "
			 "deadlocked (relay handled %d, inner calls in "
			 "flight %" PRId64 ")",
			 got, NCALLS, WAIT_MS, r->handled, r->active);
	for (i = 0; i < NCALLS; i++)
		expect_echoed(&fx->calls[i], msg[i], "relayed call");
	print_message("      %d relayed calls in %" PRId64 " ms, up to %" PRId64
		      " queued at the relay\n",
		      NCALLS, took, r->max_inflight);

	/* Every handler ran on the one worker, one at a time, while the
	 * other calls waited: the sync wait needed no second worker. */
	assert_int_equal(r->handled, NCALLS);
	assert_int_equal(r->on_loop, 0);
	assert_int_equal(r->max_active, 1);
	assert_true(r->max_inflight >= 2);
	channel_stats(&fx->inner[0], &cs);
	assert_int_equal(cs.calls, NCALLS);
	assert_int_equal(cs.errors, 0);
	assert_int_equal(cs.timeouts, 0);
	wait_server_calls(&fx->relay_srv[0], NCALLS);
	fx_down(fx, true);
}

/* ---- 2: a sync call on a loop thread fails at once ------------------- */

static void test_sync_call_on_loop_thread_fails_fast(void **state)
{
	struct fx_cfg cfg = {.nrelays = 1, .relay_flags = SERVER_METHOD_INLINE};
	struct fx *fx = fx_up(&cfg);
	struct relay *r = &fx->relay[0];
	struct channel_stats cs;
	struct server_stats st;
	struct rpc_call c;
	char want[64];
	int64_t t0, took;
	int code, i;

	(void)state;
	/* Several in a row: the server and the loop keep serving. */
	for (i = 0; i < 3; i++) {
		t0 = now_ms();
		code = echo_call(fx, &fx->client[0], "inline", &c);
		took = now_ms() - t0;
		if (code != EDEADLK)
			fail_msg("call %d: error_code %d \"%s\", want EDEADLK "
				 "(%d)",
				 i, code, c.error_text, EDEADLK);
		snprintf(want, sizeof(want), "[E%d]relay: ", EDEADLK);
		if (!strstr(c.error_text, want))
			fail_msg("call %d: \"%s\" is not the relay's failure",
				 i, c.error_text);
		rpc_call_destroy(&c);
		if (took >= FAST_MS)
			fail_msg("call %d: EDEADLK after %" PRId64 " ms, want "
				 "under %d",
				 i, took, FAST_MS);
		assert_int_equal(r->last_code, EDEADLK);
		/* It failed before it was posted: no wait at all. */
		assert_true(r->last_latency_us < FAST_MS * 1000);
	}
	assert_int_equal(r->handled, 3);
	assert_int_equal(r->on_loop, 3);

	/* The inner call never left the caller: no connection, no timer. */
	channel_stats(&fx->inner[0], &cs);
	assert_int_equal(cs.calls, 3);
	assert_int_equal(cs.errors, 3);
	assert_int_equal(cs.connects, 0);
	assert_int_equal(cs.timeouts, 0);
	assert_int_equal(cs.inflight, 0);

	/* The loop that ran the failing handlers still serves. */
	echo_call(fx, &fx->to_echo, "still here", &c);
	expect_echoed(&c, "still here", "echo after the EDEADLK calls");
	rpc_call_destroy(&c);
	wait_server_calls(&fx->relay_srv[0], 3);
	server_stats(&fx->relay_srv[0], &st);
	assert_int_equal(st.errors, 3);
	assert_int_equal(st.connections, 1);
	fx_down(fx, true);
}

/* ---- 3: nested sync calls need one worker per level ------------------ */

/*
 * relay 0 -> relay 1 -> echo with one task worker.  Relay 0's handler
 * holds the only worker while it waits for relay 1, whose request sits in
 * the worker queue behind it: a wait only a timeout can end.  This is
 * the honest limit of the rule, not a bug: the sync wait itself needs no
 * worker, but a nested blocking call needs the callee's handler to run,
 * so N levels of blocking calls on one rt need N task workers (or async
 * calls, or the callee inline), as in brpc with usercode_in_pthread.
 * What must hold is that nothing hangs: the inner call ends with
 * ERPCTIMEDOUT after its timeout, the outer call gets that failure, and
 * once the handler lets go of the worker the queued call runs (its late
 * answer dropped by id) and the pool serves again.
 */
static void test_nested_sync_calls_two_levels(void **state)
{
	struct fx_cfg cfg = {.nrelays = 2,
			     .first_inner_timeout_ms = NESTED_TIMEOUT_MS};
	struct fx *fx = fx_up(&cfg);
	struct channel_stats cs;
	struct rpc_call c;
	char want[64];
	int64_t t0, took, deadline;
	int code;

	(void)state;
	t0 = now_ms();
	code = echo_call(fx, &fx->client[0], "nested", &c);
	took = now_ms() - t0;
	if (code != RPC_ERPCTIMEDOUT)
		fail_msg("nested call: error_code %d \"%s\" after %" PRId64
			 " ms, want ERPCTIMEDOUT (%d) from relay 0",
			 code, c.error_text, took, RPC_ERPCTIMEDOUT);
	/* The relay's failure, not the client's own timeout. */
	snprintf(want, sizeof(want), "[E%d]relay: ", RPC_ERPCTIMEDOUT);
	if (!strstr(c.error_text, want))
		fail_msg("\"%s\" is not relay 0's failure", c.error_text);
	rpc_call_destroy(&c);
	assert_true(took < CLIENT_TIMEOUT_MS / 2);
	assert_int_equal(fx->relay[0].last_code, RPC_ERPCTIMEDOUT);
	/* Not before its timeout (timers never fire early). */
	assert_true(fx->relay[0].last_latency_us >= NESTED_TIMEOUT_MS * 1000);

	/* The worker is free: relay 1 runs the queued call, which reaches
	 * echo; its answer comes too late and is dropped by id. */
	wait_server_calls(&fx->relay_srv[1], 1);
	assert_int_equal(fx->relay[1].handled, 1);
	assert_int_equal(fx->relay[1].last_code, 0);
	deadline = now_ms() + WAIT_MS;
	for (;;) {
		channel_stats(&fx->inner[0], &cs);
		if (cs.stale_responses == 1)
			break;
		if (now_ms() > deadline)
			fail_msg("relay 1's late answer never reached relay "
				 "0's channel (stale %" PRIu64 ")",
				 cs.stale_responses);
		usleep(1000);
	}
	assert_int_equal(cs.timeouts, 1);
	assert_int_equal(cs.inflight, 0);

	/* The pool recovered: a one-level relay call succeeds. */
	echo_call(fx, &fx->client[1], "recovered", &c);
	expect_echoed(&c, "recovered", "relay 1 -> echo after the timeout");
	rpc_call_destroy(&c);
	assert_int_equal(fx->relay[1].handled, 2);
	assert_int_equal(fx->relay[0].handled, 1);
	assert_int_equal(fx->relay[0].on_loop + fx->relay[1].on_loop, 0);
	wait_server_calls(&fx->relay_srv[0], 1);
	wait_server_calls(&fx->relay_srv[1], 2);
	fx_down(fx, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_RELAY(test_sync_call_in_handler_smallest_budget),
	    TEST_RELAY(test_sync_call_on_loop_thread_fails_fast),
	    TEST_RELAY(test_nested_sync_calls_two_levels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
