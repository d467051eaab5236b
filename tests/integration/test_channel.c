/*
 * Integration tests of the client channel (net/rpc/channel.h) against the
 * real server: `rpcgate echo` child processes (TEST_RPCGATE_BIN) on
 * 127.0.0.1, driven by channels running in this process on their own
 * runtime (1 event loop, 2 task workers).
 *
 * Each test owns its processes, proxies and channels through the harness
 * H: the setup makes a runtime and a buffer pool whose allocations are
 * counted, the teardown destroys every channel, stops every proxy and
 * every echo (SIGTERM, SIGKILL after a bound) and, when the test ran to
 * its end, checks that buffer blocks and allocations balance.  Anything
 * still in flight when an assertion may fail lives on the heap, so a
 * failed test leaks it instead of leaving the channel a dangling pointer.
 *
 * Faults the echo cannot play (a connection closed mid-request, a server
 * that never answers) come from an in-test TCP proxy in front of it.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define TEST_TIMEOUT_S 60
#include "testutil.h"
#include "echo_proc.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/channel.h"
#include "codec/compress.h"
#include "rpc/conn.h"
#include "echo.pb-c.h"
#include "echo_client.h"
#include "rdt_hello.h"
#include "codec/rpc_errno.h"
#include "base/util.h"

/* The runtime of the channels: the smallest budget that still has a
 * worker for done callbacks while another decodes. */
#define RT_LOOPS    1
#define RT_WORKERS  2
#define MAX_CHANS   8
#define MAX_ECHOS   2
#define MAX_PROXIES 2
/* Bound on waiting for async calls that should end well before it. */
#define WAIT_MS 10000

/* ---- the harness ----------------------------------------------------- */

static struct {
	struct mem_failing mf; /* counts every allocation of the run */
	struct rt rt;
	struct iobuf_pool pool;
	struct channel *chans[MAX_CHANS];
	int nchans;
	struct echo_proc echos[MAX_ECHOS];
	int nechos;
	struct proxy *proxies[MAX_PROXIES];
	int nproxies;
	bool completed; /* the test reached its end */
} H;

static int h_setup(void **state)
{
	struct rt_options ro = {.dispatchers = RT_LOOPS,
				.task_workers = RT_WORKERS};
	struct iobuf_pool_options po;

	(void)state;
	alarm(TEST_TIMEOUT_S);
	memset(&H, 0, sizeof(H));
	mem_failing_init(&H.mf, -1);
	ro.mem = &H.mf.mem;
	iobuf_pool_options_default(&po);
	po.mem = &H.mf.mem;
	if (iobuf_pool_init(&H.pool, &po))
		return -1;
	if (rt_init(&H.rt, &ro))
		goto out_pool;
	if (rt_start(&H.rt))
		goto out_rt;
	return 0;

out_rt:
	rt_destroy(&H.rt);
out_pool:
	iobuf_pool_destroy(&H.pool);
	return -1;
}

static int h_teardown(void **state)
{
	int bad = 0, err;

	(void)state;
	for (int i = 0; i < H.nchans; i++) {
		channel_destroy(H.chans[i]);
		free(H.chans[i]);
	}
	for (int i = 0; i < H.nproxies; i++)
		proxy_stop(H.proxies[i]);
	for (int i = 0; i < H.nechos; i++)
		echo_proc_stop(&H.echos[i]);
	rt_destroy(&H.rt);
	err = iobuf_pool_destroy(&H.pool);
	if (H.completed && err) {
		print_error("teardown: iobuf blocks still referenced\n");
		bad = 1;
	} else if (H.completed && H.mf.live) {
		print_error("teardown: %ld allocations not freed\n", H.mf.live);
		bad = 1;
	}
	alarm(0);
	return bad ? -1 : 0;
}

/* Defaults, but a deadline past any stall of a loaded machine (the
 * default 500 ms is not): the tests of deadlines set their own. */
static void h_options(struct channel_options *o)
{
	channel_options_default(o);
	o->rt = &H.rt;
	o->pool = &H.pool;
	o->mem = &H.mf.mem;
	o->timeout_ms = 5000;
}

/* A channel the teardown destroys. */
static struct channel *h_channel(const char *addr,
				 const struct channel_options *o)
{
	struct channel *ch = malloc(sizeof(*ch));
	int err;

	assert_non_null(ch);
	assert_true(H.nchans < MAX_CHANS);
	err = channel_init(ch, addr, o);
	if (err) {
		free(ch);
		fail_msg("channel_init(%s): %s", addr, strerror(-err));
	}
	H.chans[H.nchans++] = ch;
	return ch;
}

/* An echo server the teardown stops; args NULL-terminated or NULL. */
static struct echo_proc *h_echo(const char *const *args)
{
	struct echo_proc *e;

	assert_true(H.nechos < MAX_ECHOS);
	e = &H.echos[H.nechos++];
	echo_proc_start(e, args);
	return e;
}

/* Checks an echo that has exited: status 0 and the last line
 * "rpcgate echo: stopped after N calls".  Returns N. */
static unsigned long h_echo_exited_clean(const struct echo_proc *e)
{
	char line[256];
	unsigned long n;

	if (!e->reaped || !WIFEXITED(e->wstatus) ||
	    WEXITSTATUS(e->wstatus) != 0)
		fail_msg("echo did not exit 0 (wait status 0x%x); stdout: %s",
			 e->wstatus, e->out);
	echo_proc_last_line(e, line, sizeof(line));
	if (sscanf(line, "rpcgate echo: stopped after %lu calls", &n) != 1)
		fail_msg("echo's last line: '%s'", line);
	return n;
}

static void sleep_until(int64_t t_ms)
{
	int64_t left;

	while ((left = t_ms - echo_now_ms()) > 0)
		usleep((useconds_t)(left * 1000));
}

/* ---- calls ----------------------------------------------------------- */

/* Fails with the call's code and text unless it succeeded. */
static void assert_call_ok(const struct rpc_call *c)
{
	if (c->error_code)
		fail_msg("call failed: %d %s", c->error_code, c->error_text);
	assert_string_equal(c->error_text, "");
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_conn_error(int code)
{
	return code == RPC_EEOF || code == ECONNRESET || code == ECONNREFUSED ||
	       code == EPIPE;
}

static uint8_t pattern_byte(size_t i, unsigned seed)
{
	return (uint8_t)(i * 131 + seed + (i >> 13));
}

/* Appends n pattern bytes to b. */
static void fill_pattern(struct iobuf *b, size_t n, unsigned seed)
{
	enum { CHUNK = 64 * 1024 };
	uint8_t *buf = malloc(CHUNK);

	assert_non_null(buf);
	for (size_t off = 0; off < n;) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;

		for (size_t j = 0; j < k; j++)
			buf[j] = pattern_byte(off + j, seed);
		assert_int_equal(iobuf_append(b, buf, k), 0);
		off += k;
	}
	free(buf);
}

static void assert_pattern(const struct iobuf *b, size_t n, unsigned seed)
{
	enum { CHUNK = 64 * 1024 };
	uint8_t *buf = malloc(CHUNK);

	assert_non_null(buf);
	assert_int_equal(iobuf_len(b), n);
	for (size_t off = 0; off < n;) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;

		assert_int_equal(iobuf_copy_out(b, off, buf, k), k);
		for (size_t j = 0; j < k; j++)
			if (buf[j] != pattern_byte(off + j, seed))
				fail_msg("attachment byte %zu differs",
					 off + j);
		off += k;
	}
	free(buf);
}

static void assert_iobuf_eq(const struct iobuf *b, const void *want, size_t n)
{
	char *got = malloc(n + 1);

	assert_non_null(got);
	assert_int_equal(iobuf_len(b), n);
	assert_int_equal(iobuf_copy_out(b, 0, got, n), n);
	assert_memory_equal(got, want, n);
	free(got);
}

/* A message of n letters (not all alike, so compression has work). */
static char *make_text(size_t n)
{
	char *s = malloc(n + 1);
	uint32_t x = 12345;

	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		s[i] = (char)('a' + (x >> 16) % 8);
	}
	s[n] = '\0';
	return s;
}

/* ---- async calls: a batch whose done callbacks record ---------------- */

struct acall {
	struct rpc_call c;
	struct abatch *b;
	char want[32];
	int runs; /* atomic: done runs */
	int code;
	bool msg_ok;
	int64_t done_ms;
};

struct abatch {
	int ndone; /* atomic */
	int n;
	struct acall *calls;
};

/* Runs on a task worker: records only (cmocka asserts are the main
 * thread's). */
static void acall_done(struct rpc_call *c, void *arg)
{
	struct acall *a = arg;
	const char *got = echo_resp_msg(c);

	a->code = c->error_code;
	a->msg_ok =
	    c == &a->c && c->error_code == 0 && got && !strcmp(got, a->want);
	a->done_ms = echo_now_ms();
	__atomic_fetch_add(&a->runs, 1, __ATOMIC_ACQ_REL);
	__atomic_fetch_add(&a->b->ndone, 1, __ATOMIC_ACQ_REL);
}

static struct abatch *batch_new(int n)
{
	struct abatch *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->n = n;
	b->calls = calloc((size_t)n, sizeof(*b->calls));
	assert_non_null(b->calls);
	for (int i = 0; i < n; i++) {
		rpc_call_init(&b->calls[i].c, &H.pool);
		b->calls[i].b = b;
		snprintf(b->calls[i].want, sizeof(b->calls[i].want), "msg-%d",
			 i);
	}
	return b;
}

static void batch_start(struct abatch *b, struct channel *ch, int from, int to)
{
	for (int i = from; i < to; i++)
		assert_int_equal(echo_call(ch, &b->calls[i].c, b->calls[i].want,
					   acall_done, &b->calls[i]),
				 0);
}

/* Waits (bounded) until n done callbacks have run. */
static void batch_wait(struct abatch *b, int n, int ms)
{
	int64_t end = echo_now_ms() + ms;

	while (__atomic_load_n(&b->ndone, __ATOMIC_ACQUIRE) < n) {
		if (echo_now_ms() > end)
			fail_msg("%d of %d done callbacks ran in %d ms",
				 __atomic_load_n(&b->ndone, __ATOMIC_ACQUIRE),
				 n, ms);
		usleep(1000);
	}
}

/* Every call ran its done exactly once and succeeded with its message. */
static void batch_assert_ok(struct abatch *b, int from, int to)
{
	for (int i = from; i < to; i++) {
		struct acall *a = &b->calls[i];
		int runs = __atomic_load_n(&a->runs, __ATOMIC_ACQUIRE);

		if (runs != 1)
			fail_msg("call %d: done ran %d times", i, runs);
		if (a->code)
			fail_msg("call %d failed: %d %s", i, a->code,
				 a->c.error_text);
		if (!a->msg_ok)
			fail_msg("call %d: wrong answer '%s' (want '%s')", i,
				 echo_resp_msg(&a->c) ? echo_resp_msg(&a->c)
						      : "(none)",
				 a->want);
	}
}

static void batch_free(struct abatch *b)
{
	for (int i = 0; i < b->n; i++)
		rpc_call_destroy(&b->calls[i].c);
	free(b->calls);
	free(b);
}

/* A proxy in front of up_port, stopped by the teardown. */
static struct proxy *h_proxy(int up_port, enum proxy_mode mode, int k)
{
	struct proxy *px;

	assert_true(H.nproxies < MAX_PROXIES);
	px = proxy_start(up_port, mode, k);
	H.proxies[H.nproxies++] = px;
	return px;
}

/* ---- 1. sync ---------------------------------------------------------- */

static void test_sync_call(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct rpc_call c;

	(void)state;
	h_options(&o);
	ch = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	assert_int_equal(iobuf_append(&c.request_attachment, "attached", 8), 0);
	assert_int_equal(echo_call(ch, &c, "hello", NULL, NULL), 0);
	assert_call_ok(&c);
	assert_string_equal(echo_resp_msg(&c), "hello");
	assert_iobuf_eq(&c.response_attachment, "attached", 8);
	assert_true(c.latency_us > 0);
	assert_int_equal(c.attempts, 1);
	assert_int_equal(c.response_compress_type, COMPRESS_NONE);

	rpc_call_reset(&c);
	assert_int_equal(echo_call(ch, &c, "fail", NULL, NULL), 4242);
	assert_int_equal(c.error_code, 4242);
	if (!ends_with(c.error_text, "[E4242]asked to fail"))
		fail_msg("error_text '%s'", c.error_text);
	assert_null(c.response);
	assert_int_equal(iobuf_len(&c.response_attachment), 0);
	rpc_call_destroy(&c);

	channel_stats(ch, &st);
	assert_int_equal(st.calls, 2);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.retries, 0);
	assert_int_equal(st.inflight, 0);
	echo_proc_stop(e);
	assert_int_equal(h_echo_exited_clean(e), 2);
	H.completed = true;
}

/* ---- 2. async --------------------------------------------------------- */

static void test_async_calls(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel *ch;
	struct abatch *b = batch_new(100);

	(void)state;
	h_options(&o);
	o.timeout_ms = 5000;
	ch = h_channel(e->addr, &o);
	batch_start(b, ch, 0, 100);
	batch_wait(b, 100, WAIT_MS);
	/* A second run of any done would show by now. */
	usleep(50 * 1000);
	assert_int_equal(__atomic_load_n(&b->ndone, __ATOMIC_ACQUIRE), 100);
	batch_assert_ok(b, 0, 100);
	batch_free(b);
	H.completed = true;
}

/* ---- 3. semi-sync ----------------------------------------------------- */

static void test_semi_sync(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel *ch;
	struct rpc_call *c = calloc(10, sizeof(*c));
	char want[32];

	(void)state;
	assert_non_null(c);
	h_options(&o);
	o.timeout_ms = 5000;
	ch = h_channel(e->addr, &o);
	for (int i = 0; i < 10; i++) {
		rpc_call_init(&c[i], &H.pool);
		snprintf(want, sizeof(want), "join-%d", i);
		assert_int_equal(echo_call(ch, &c[i], want, RPC_JOINABLE, NULL),
				 0);
	}
	for (int i = 0; i < 10; i++) {
		rpc_call_join(&c[i]);
		assert_call_ok(&c[i]);
		snprintf(want, sizeof(want), "join-%d", i);
		assert_string_equal(echo_resp_msg(&c[i]), want);
	}
	for (int i = 0; i < 10; i++)
		rpc_call_destroy(&c[i]);
	free(c);
	H.completed = true;
}

/* ---- 4. cancel -------------------------------------------------------- */

/* Waits until the channel has dropped `n` late answers, failing at
 * `until_ms`; its stats then in *st. */
static void wait_stale(struct channel *ch, uint64_t n, int64_t until_ms,
		       struct channel_stats *st)
{
	while (channel_stats(ch, st), st->stale_responses < n) {
		if (echo_now_ms() > until_ms)
			fail_msg("%llu of %llu late answers dropped",
				 (unsigned long long)st->stale_responses,
				 (unsigned long long)n);
		usleep(10 * 1000);
	}
}

/*
 * The server answers after CANCEL_SLEEP_MS and the deadline is far past
 * it, so a cancel that waited for either would end a second or more
 * late.  Each cancel must end within CANCEL_MAX_MS; all but one within
 * CANCEL_PROMPT_MS (a stall of the machine may hold up one of them).
 */
#define CANCEL_CALLS	 3
#define CANCEL_SLEEP_MS	 "1500"
#define CANCEL_MAX_MS	 1000
#define CANCEL_PROMPT_MS 100

static void test_cancel(void **state)
{
	static const char *const args[] = {"--sleep_ms=" CANCEL_SLEEP_MS, NULL};
	struct echo_proc *e = h_echo(args);
	struct abatch *b = batch_new(CANCEL_CALLS);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct rpc_call *pre;
	int64_t t0, t;
	int prompt = 0;

	(void)state;
	h_options(&o);
	o.timeout_ms = 10000;
	ch = h_channel(e->addr, &o);

	t0 = echo_now_ms();
	for (int i = 0; i < CANCEL_CALLS; i++) {
		struct acall *a = &b->calls[i];
		int64_t tc;

		batch_start(b, ch, i, i + 1);
		usleep(50 * 1000);
		tc = echo_now_ms();
		assert_int_equal(channel_cancel(ch, a->c.id), 0);
		batch_wait(b, i + 1, CANCEL_MAX_MS);
		assert_int_equal(a->code, ECANCELED);
		if (a->done_ms - tc > CANCEL_MAX_MS)
			fail_msg("cancelled call ended %lld ms after the "
				 "cancel",
				 (long long)(a->done_ms - tc));
		/* Its own clock agrees: it did not wait for the answer. */
		assert_true(a->c.latency_us < atoi(CANCEL_SLEEP_MS) * 1000);
		prompt += a->done_ms - tc <= CANCEL_PROMPT_MS;
		assert_int_equal(channel_cancel(ch, a->c.id), -ENOENT);
	}
	if (prompt < CANCEL_CALLS - 1)
		fail_msg("%d of %d cancels ended within %d ms", prompt,
			 CANCEL_CALLS, CANCEL_PROMPT_MS);

	/* Cancelled before it started: ends at once, never sent. */
	pre = calloc(1, sizeof(*pre));
	assert_non_null(pre);
	rpc_call_init(pre, &H.pool);
	rpc_call_cancel(pre);
	t = echo_now_ms();
	assert_int_equal(echo_call(ch, pre, "never", NULL, NULL), ECANCELED);
	assert_true(echo_now_ms() - t < CANCEL_MAX_MS);
	assert_int_equal(pre->error_code, ECANCELED);
	assert_int_equal(pre->attempts, 0);
	assert_int_equal(channel_cancel(ch, pre->id), -ENOENT);

	/* The cancelled calls' answers come and are dropped. */
	wait_stale(ch, CANCEL_CALLS, t0 + 8000, &st);
	assert_int_equal(st.inflight, 0);
	for (int i = 0; i < CANCEL_CALLS; i++)
		assert_int_equal(
		    __atomic_load_n(&b->calls[i].runs, __ATOMIC_ACQUIRE), 1);
	rpc_call_destroy(pre);
	free(pre);
	batch_free(b);
	H.completed = true;
}

/* ---- 5. timeout ------------------------------------------------------- */

/*
 * 100 ms deadlines against a server answering after TIMEOUT_SLEEP_MS:
 * every call times out, never early, and all but one within 250 ms (a
 * stall of the machine may hold up one; it would need to last well over
 * a second to let an answer win).
 */
#define TIMEOUT_CALLS	 5
#define TIMEOUT_SLEEP_MS "1500"

static void test_timeout(void **state)
{
	static const char *const args[] = {"--sleep_ms=" TIMEOUT_SLEEP_MS,
					   NULL};
	struct echo_proc *e = h_echo(args);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct rpc_call c;
	int64_t t0, t, took;
	int on_time = 0;

	(void)state;
	h_options(&o);
	o.timeout_ms = 100; /* max_retry stays 3: a timeout never retries */
	ch = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	t0 = echo_now_ms();
	for (int i = 0; i < TIMEOUT_CALLS; i++) {
		rpc_call_reset(&c);
		t = echo_now_ms();
		assert_int_equal(echo_call(ch, &c, "slow", NULL, NULL),
				 RPC_ERPCTIMEDOUT);
		took = echo_now_ms() - t;
		assert_int_equal(c.error_code, RPC_ERPCTIMEDOUT);
		if (c.latency_us < 90 * 1000 || took < 90)
			fail_msg("timed out early, after %lld us (%lld ms by "
				 "the clock)",
				 (long long)c.latency_us, (long long)took);
		on_time += c.latency_us <= 250 * 1000 && took <= 250;
		assert_int_equal(c.attempts, 1);
		assert_null(c.response);
	}
	if (on_time < TIMEOUT_CALLS - 1)
		fail_msg("%d of %d calls timed out within 250 ms", on_time,
			 TIMEOUT_CALLS);

	/* Each answer comes after its call ended, and is dropped. */
	wait_stale(ch, TIMEOUT_CALLS, t0 + 8000, &st);
	assert_int_equal(st.timeouts, TIMEOUT_CALLS);
	assert_int_equal(st.retries, 0);
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- 6. retries ------------------------------------------------------- */

static void test_retries(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct proxy *px;
	struct rpc_call c;
	char addr[32];
	int code, fd, port;

	(void)state;
	/* Two connections closed under the request, three attempts. */
	px = h_proxy(e->port, PROXY_CLOSE_FIRST_K, 2);
	proxy_addr(px, addr, sizeof(addr));
	h_options(&o);
	o.timeout_ms = 3000;
	o.max_retry = 3;
	ch = h_channel(addr, &o);
	rpc_call_init(&c, &H.pool);
	assert_int_equal(echo_call(ch, &c, "retry me", NULL, NULL), 0);
	assert_call_ok(&c);
	assert_string_equal(echo_resp_msg(&c), "retry me");
	assert_int_equal(c.attempts, 3);
	channel_stats(ch, &st);
	assert_int_equal(st.retries, 2);
	assert_int_equal(st.connects, 3);
	assert_int_equal(__atomic_load_n(&px->closed_early, __ATOMIC_ACQUIRE),
			 2);

	/* Too few retries for the same fault. */
	px = h_proxy(e->port, PROXY_CLOSE_FIRST_K, 2);
	proxy_addr(px, addr, sizeof(addr));
	o.max_retry = 1;
	ch = h_channel(addr, &o);
	rpc_call_reset(&c);
	code = echo_call(ch, &c, "retry me", NULL, NULL);
	if (code != RPC_EEOF && code != ECONNRESET)
		fail_msg("want EEOF or ECONNRESET, got %d %s", code,
			 c.error_text);
	assert_int_equal(c.attempts, 2);
	channel_stats(ch, &st);
	assert_int_equal(st.retries, 1);

	/* Nobody listens: a port bound but never listening refuses. */
	fd = tcp_bound_loopback(&port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	o.max_retry = 3;
	ch = h_channel(addr, &o);
	rpc_call_reset(&c);
	code = echo_call(ch, &c, "anyone?", NULL, NULL);
	close(fd);
	if (code != ECONNREFUSED)
		fail_msg("want ECONNREFUSED, got %d %s", code, c.error_text);
	channel_stats(ch, &st);
	if (c.attempts != o.max_retry + 1)
		fail_msg("refused call: attempts %d, want %d (stats: retries "
			 "%llu, connects %llu, connect_failures %llu)",
			 c.attempts, o.max_retry + 1,
			 (unsigned long long)st.retries,
			 (unsigned long long)st.connects,
			 (unsigned long long)st.connect_failures);
	assert_int_equal(st.retries, 3);
	assert_int_equal(st.connect_failures, 4);
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- 7. backup request ------------------------------------------------ */

static void test_backup_request(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct proxy *px;
	struct rpc_call c;
	char addr[32];

	(void)state;
	px = h_proxy(e->port, PROXY_BLACKHOLE_FIRST, 1);
	proxy_addr(px, addr, sizeof(addr));
	h_options(&o);
	o.conn_type = CHANNEL_CONN_POOLED;
	o.backup_request_ms = 50;
	/* The first link never answers: without the backup the call would
	 * end only at this deadline, far past any stall of the machine. */
	o.timeout_ms = 5000;
	ch = h_channel(addr, &o);
	rpc_call_init(&c, &H.pool);
	assert_int_equal(echo_call(ch, &c, "backup", NULL, NULL), 0);
	assert_call_ok(&c);
	assert_string_equal(echo_resp_msg(&c), "backup");
	assert_int_equal(c.attempts, 2);
	if (c.latency_us < 50 * 1000 || c.latency_us > 2500 * 1000)
		fail_msg("backup call took %lld us", (long long)c.latency_us);
	channel_stats(ch, &st);
	assert_int_equal(st.backups, 1);
	assert_int_equal(st.retries, 0);
	assert_int_equal(st.connects, 2);
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- 8. connection types ---------------------------------------------- */

struct lane_ctx {
	struct channel *ch;
	int total;
	int issued, ok, failed, lanes_done, last_error; /* atomic */
};

struct lane {
	struct rpc_call c;
	struct lane_ctx *x;
};

/* A closed loop: each answer starts the lane's next call, from the
 * worker running this done, on the same controller. */
static void lane_done(struct rpc_call *c, void *arg)
{
	struct lane *l = arg;
	struct lane_ctx *x = l->x;
	const char *got = echo_resp_msg(c);

	if (c->error_code == 0 && got && !strcmp(got, "pooled")) {
		__atomic_fetch_add(&x->ok, 1, __ATOMIC_ACQ_REL);
	} else {
		__atomic_store_n(&x->last_error, c->error_code,
				 __ATOMIC_RELEASE);
		__atomic_fetch_add(&x->failed, 1, __ATOMIC_ACQ_REL);
	}
	if (__atomic_fetch_add(&x->issued, 1, __ATOMIC_ACQ_REL) < x->total) {
		rpc_call_reset(c); /* the header's way to reuse it */
		echo_call(x->ch, c, "pooled", lane_done, l);
	} else {
		__atomic_fetch_add(&x->lanes_done, 1, __ATOMIC_ACQ_REL);
	}
}

static void sequential_calls(struct channel *ch, int n)
{
	struct rpc_call c;

	rpc_call_init(&c, &H.pool);
	for (int i = 0; i < n; i++) {
		if (echo_call(ch, &c, "seq", NULL, NULL))
			fail_msg("call %d: %d %s", i, c.error_code,
				 c.error_text);
		assert_string_equal(echo_resp_msg(&c), "seq");
	}
	rpc_call_destroy(&c);
}

static void test_connection_types(void **state)
{
	enum { LANES = 8, POOLED_CALLS = 400 };
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct lane_ctx *x;
	struct lane *lanes;
	int64_t end;

	(void)state;
	h_options(&o);
	o.timeout_ms = 5000;
	ch = h_channel(e->addr, &o);
	sequential_calls(ch, 200);
	channel_stats(ch, &st);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.calls, 200);
	assert_int_equal(st.errors, 0);

	o.conn_type = CHANNEL_CONN_SHORT;
	ch = h_channel(e->addr, &o);
	sequential_calls(ch, 200);
	channel_stats(ch, &st);
	assert_int_equal(st.connects, 200);
	assert_int_equal(st.errors, 0);
	/* Every short connection goes once its call ended. */
	end = echo_now_ms() + 2000;
	for (channel_stats(ch, &st); st.connections; channel_stats(ch, &st)) {
		if (echo_now_ms() > end)
			fail_msg("%lld short connections still open",
				 (long long)st.connections);
		usleep(1000);
	}

	/*
	 * Pooled: a lane's connection is back on the idle list before its
	 * done runs (it goes back when the answer is read), and the lane's
	 * next call starts only from that done, so at most LANES
	 * connections are ever busy at once: exactly <= LANES connects.
	 */
	o.conn_type = CHANNEL_CONN_POOLED;
	ch = h_channel(e->addr, &o);
	x = calloc(1, sizeof(*x));
	lanes = calloc(LANES, sizeof(*lanes));
	assert_non_null(x);
	assert_non_null(lanes);
	x->ch = ch;
	x->total = POOLED_CALLS;
	x->issued = LANES;
	for (int i = 0; i < LANES; i++) {
		rpc_call_init(&lanes[i].c, &H.pool);
		lanes[i].x = x;
	}
	for (int i = 0; i < LANES; i++)
		assert_int_equal(
		    echo_call(ch, &lanes[i].c, "pooled", lane_done, &lanes[i]),
		    0);
	end = echo_now_ms() + 20000;
	while (__atomic_load_n(&x->lanes_done, __ATOMIC_ACQUIRE) < LANES) {
		if (echo_now_ms() > end)
			fail_msg("pooled closed loop: %d ok, %d failed, %d "
				 "lanes done",
				 x->ok, x->failed, x->lanes_done);
		usleep(1000);
	}
	if (x->failed)
		fail_msg("pooled closed loop: %d calls failed, the last with "
			 "%d",
			 x->failed, x->last_error);
	assert_int_equal(x->ok, POOLED_CALLS);
	channel_stats(ch, &st);
	if (st.connects > LANES || st.connects < 1)
		fail_msg("pooled: %llu connects for %d lanes",
			 (unsigned long long)st.connects, LANES);
	for (int i = 0; i < LANES; i++)
		rpc_call_destroy(&lanes[i].c);
	free(lanes);
	free(x);
	H.completed = true;
}

/* ---- 9. many calls on one connection ---------------------------------- */

static void test_10k_in_flight(void **state)
{
	enum { N = 10000 };
	struct echo_proc *e = h_echo(NULL);
	struct abatch *b = batch_new(N);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;

	(void)state;
	h_options(&o);
	o.timeout_ms = 10000;
	ch = h_channel(e->addr, &o);
	batch_start(b, ch, 0, N);
	batch_wait(b, N, 40000);
	batch_assert_ok(b, 0, N);
	channel_stats(ch, &st);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.calls, N);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.inflight, 0);
	batch_free(b);
	H.completed = true;
}

/* ---- 10. compression ---------------------------------------------------- */

/* One case of the matrix: case k's bits pick the compress type (k & 3),
 * the attachment (k & 4), the message size (k & 8), the channel (k & 16:
 * the one with checksums). */
static void compress_case(struct channel *const *chans, struct rpc_call *c,
			  int k, const char *big)
{
	static const int types[] = {COMPRESS_NONE, COMPRESS_SNAPPY,
				    COMPRESS_GZIP, COMPRESS_ZLIB};
	int type = types[k & 3], chk = !!(k & 16);
	bool att = k & 4;
	const char *msg = k & 8 ? big : "z";
	const char *got;

	rpc_call_reset(c);
	c->compress_type = type;
	if (att)
		assert_int_equal(iobuf_append(&c->request_attachment, "raw", 3),
				 0);
	if (echo_call(chans[chk], c, msg, NULL, NULL))
		fail_msg("%s, attachment %d, checksum %d, %zu bytes: %d %s",
			 compress_type_name(type), att, chk, strlen(msg),
			 c->error_code, c->error_text);
	got = echo_resp_msg(c);
	assert_non_null(got);
	assert_int_equal(strlen(got), strlen(msg));
	assert_string_equal(got, msg);
	assert_int_equal(c->response_compress_type, type);
	assert_iobuf_eq(&c->response_attachment, "raw", att ? 3 : 0);
}

static void test_compression_matrix(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel *chans[2];
	struct channel_options o;
	char *big = make_text(100 * 1024);
	struct rpc_call c;

	(void)state;
	h_options(&o);
	o.timeout_ms = 5000;
	chans[0] = h_channel(e->addr, &o);
	o.checksum = true;
	chans[1] = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	for (int k = 0; k < 32; k++)
		compress_case(chans, &c, k, big);
	rpc_call_destroy(&c);
	free(big);
	H.completed = true;
}

/* ---- 11. attachments ------------------------------------------------- */

static void test_big_attachments(void **state)
{
	static const size_t sizes[] = {1u << 20, 16u << 20};
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel *ch;
	struct rpc_call c;

	(void)state;
	h_options(&o);
	o.timeout_ms = 10000;
	ch = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		rpc_call_reset(&c);
		fill_pattern(&c.request_attachment, sizes[i], (unsigned)i);
		if (echo_call(ch, &c, "carry", NULL, NULL))
			fail_msg("%zu-byte attachment: %d %s", sizes[i],
				 c.error_code, c.error_text);
		assert_string_equal(echo_resp_msg(&c), "carry");
		assert_pattern(&c.response_attachment, sizes[i], (unsigned)i);
	}
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- 12. oversize ----------------------------------------------------- */

static void test_oversize(void **state)
{
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel *ch;
	char *big = make_text(100 * 1024);
	struct rpc_call c;
	int code;

	(void)state;
	h_options(&o);
	o.timeout_ms = 10000;
	o.max_retry = 0;
	ch = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	/* One byte over the server's 64 MiB max_body_size in the
	 * attachment alone: the server closes on the header. */
	fill_pattern(&c.request_attachment, (64u << 20) + 1, 7);
	code = echo_call(ch, &c, "huge", NULL, NULL);
	if (code != RPC_EEOF && code != ECONNRESET && code != EPIPE)
		fail_msg("oversized request: want EEOF, ECONNRESET or EPIPE, "
			 "got %d %s",
			 code, c.error_text);
	print_message("    (request over the server's max_body_size: %d %s)\n",
		      code, c.error_text);
	assert_true(echo_proc_alive(e));
	rpc_call_reset(&c);
	assert_int_equal(echo_call(ch, &c, "after", NULL, NULL), 0);
	assert_string_equal(echo_resp_msg(&c), "after");

	/* The client's own limit on answers. */
	o.max_body_size = 4096;
	o.timeout_ms = 5000;
	ch = h_channel(e->addr, &o);
	rpc_call_reset(&c);
	code = echo_call(ch, &c, big, NULL, NULL);
	if (code == 0 || code == RPC_ERPCTIMEDOUT)
		fail_msg("100 KB answer over max_body_size 4096: got %d %s",
			 code, c.error_text);
	print_message("    (answer over max_body_size: %d %s)\n", code,
		      c.error_text);
	rpc_call_reset(&c);
	assert_int_equal(echo_call(ch, &c, "small", NULL, NULL), 0);
	assert_string_equal(echo_resp_msg(&c), "small");
	assert_true(echo_proc_alive(e));
	rpc_call_destroy(&c);
	free(big);
	H.completed = true;
}

/* ---- 13. graceful stop ------------------------------------------------ */

static void test_graceful_stop(void **state)
{
	static const char *const args[] = {"--sleep_ms=300", NULL};
	struct echo_proc *e = h_echo(args);
	struct abatch *b = batch_new(70);
	struct channel_options o;
	struct channel *ch;
	int late[4] = {0, 0, 0, 0};
	unsigned long n;
	int64_t t0;

	(void)state;
	h_options(&o);
	o.timeout_ms = 5000;
	ch = h_channel(e->addr, &o);
	t0 = echo_now_ms();
	batch_start(b, ch, 0, 50);
	sleep_until(t0 + 100);
	assert_int_equal(kill(e->pid, SIGTERM), 0);
	batch_start(b, ch, 50, 70);
	batch_wait(b, 70, WAIT_MS);
	usleep(50 * 1000);
	batch_assert_ok(b, 0, 50);
	for (int i = 50; i < 70; i++) {
		struct acall *a = &b->calls[i];

		late[a->code == 0	      ? 0
		     : a->code == RPC_ELOGOFF ? 1
		     : is_conn_error(a->code) ? 2
					      : 3]++;

		assert_int_equal(__atomic_load_n(&a->runs, __ATOMIC_ACQUIRE),
				 1);
		if (a->code != 0 && a->code != RPC_ELOGOFF &&
		    !is_conn_error(a->code))
			fail_msg("call %d after SIGTERM: %d %s", i, a->code,
				 a->c.error_text);
		if (a->code == 0 && !a->msg_ok)
			fail_msg("call %d after SIGTERM: wrong answer", i);
	}
	print_message("    (after SIGTERM: %d answered, %d ELOGOFF, %d "
		      "connection errors)\n",
		      late[0], late[1], late[2]);
	if (!echo_proc_wait(e, ECHO_STOP_MS))
		fail_msg("echo still running %d ms after SIGTERM",
			 ECHO_STOP_MS);
	n = h_echo_exited_clean(e);
	if (n < 50)
		fail_msg("echo stopped after %lu calls, want >= 50", n);
	batch_free(b);
	H.completed = true;
}

/* ---- 14. authentication ----------------------------------------------- */

static void test_authentication(void **state)
{
	static const char *const args[] = {"--auth_token=secret", NULL};
	static const char *const creds[] = {"wrong", NULL};
	struct echo_proc *e = h_echo(args);
	struct channel_options o;
	struct channel *ch;
	struct rpc_call c;

	(void)state;
	h_options(&o);
	o.timeout_ms = 2000;
	o.credential = "secret";
	o.credential_len = 6;
	ch = h_channel(e->addr, &o);
	rpc_call_init(&c, &H.pool);
	for (int i = 0; i < 5; i++) {
		rpc_call_reset(&c);
		if (echo_call(ch, &c, "let me in", NULL, NULL))
			fail_msg("call %d with the right credential: %d %s", i,
				 c.error_code, c.error_text);
		assert_string_equal(echo_resp_msg(&c), "let me in");
	}

	for (size_t k = 0; k < ARRAY_SIZE(creds); k++) {
		o.credential = creds[k];
		o.credential_len = creds[k] ? strlen(creds[k]) : 0;
		ch = h_channel(e->addr, &o);
		/* Twice: the second goes on a new connection, which must
		 * be checked again. */
		for (int i = 0; i < 2; i++) {
			rpc_call_reset(&c);
			if (echo_call(ch, &c, "let me in", NULL, NULL) !=
			    RPC_ERPCAUTH)
				fail_msg("credential %s, call %d: %d %s",
					 creds[k] ? creds[k] : "(none)", i,
					 c.error_code, c.error_text);
			if (!strstr(c.error_text, "Fail to authenticate"))
				fail_msg("error_text '%s'", c.error_text);
			assert_null(c.response);
		}
	}
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- regression: a connect that fails at once is an attempt ---------- */

/*
 * A connect() refused at once (TCP to the limited broadcast address:
 * Linux answers ENETUNREACH or EACCES before sending anything) is retried
 * like one refused later (ECONNREFUSED in test_retries, which counts
 * max_retry + 1 attempts), so it must be counted as an attempt as well.
 */
static void test_attempts_counted_when_connect_fails_at_once(void **state)
{
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct rpc_call c;
	int code;

	(void)state;
	h_options(&o);
	o.timeout_ms = 2000;
	o.max_retry = 3;
	ch = h_channel("255.255.255.255:9", &o);
	rpc_call_init(&c, &H.pool);
	code = echo_call(ch, &c, "anyone?", NULL, NULL);
	channel_stats(ch, &st);
	if (code == 0 || code == RPC_ERPCTIMEDOUT)
		fail_msg("want a connect error, got %d %s", code, c.error_text);
	assert_int_equal(st.retries, 3);
	if (c.attempts != o.max_retry + 1)
		fail_msg("attempts %d, want %d (stats: retries %llu, connects "
			 "%llu; the call ended %d %s)",
			 c.attempts, o.max_retry + 1,
			 (unsigned long long)st.retries,
			 (unsigned long long)st.connects, code, c.error_text);
	rpc_call_destroy(&c);
	H.completed = true;
}

/* ---- 16. connections opened a few at a time (max_connecting) ----------- */

/*
 * A client upgrade that plays RDMA's hello without a device: it sends a
 * hello, takes the answer (an echo without RDMA refuses, spec 2.8), acks
 * "TCP" and the connection goes on over TCP.  It counts the handshakes
 * under way and the most at once (the channel's loop thread writes, the
 * test reads).  A handshake ends with its answer or with its connection
 * (a call that times out closes the connection it waited for): during
 * one the connection runs over a TCP transport whose close counts.
 */
static struct {
	int now, max;		  /* atomic */
	struct conn_transport tp; /* conn_tcp, and close ends one */
} HS;

static void hs_end(void)
{
	__atomic_sub_fetch(&HS.now, 1, __ATOMIC_ACQ_REL);
}

static void hs_tp_close(struct conn *c)
{
	hs_end();
	if (conn_tcp.close)
		conn_tcp.close(c);
}

static void hs_reset(void)
{
	memset(&HS, 0, sizeof(HS));
	HS.tp = conn_tcp;
	HS.tp.name = "tcp-in-handshake";
	HS.tp.close = hs_tp_close;
}

static int hs_connect_start(void *ctx, struct conn *c)
{
	struct rdt_hello h = {.hello_ver = RDT_HELLO_VER,
			      .impl_ver = RDT_IMPL_VER,
			      .block_size = 8192,
			      .sq_size = 128,
			      .rq_size = 128};
	uint8_t out[RDT_HELLO_LEN];
	int now = __atomic_add_fetch(&HS.now, 1, __ATOMIC_ACQ_REL);

	(void)ctx;
	if (now > __atomic_load_n(&HS.max, __ATOMIC_ACQUIRE))
		__atomic_store_n(&HS.max, now, __ATOMIC_RELEASE);
	rdt_hello_pack(&h, out);
	if (write(c->io.fd, out, sizeof(out)) != (ssize_t)sizeof(out)) {
		hs_end();
		return -EIO;
	}
	conn_set_transport(c, &HS.tp, NULL);
	return CONN_UP_WAIT;
}

static int hs_connect_step(void *ctx, struct conn *c)
{
	uint8_t ack[RDT_ACK_LEN];

	(void)ctx;
	if (iobuf_len(&c->in) < RDT_HELLO_LEN)
		return CONN_UP_WAIT;
	iobuf_drop_front(&c->in, RDT_HELLO_LEN);
	conn_set_transport(c, &conn_tcp, NULL);
	hs_end();
	rdt_ack_pack(0, ack);
	if (write(c->io.fd, ack, sizeof(ack)) != (ssize_t)sizeof(ack))
		return -EIO;
	return CONN_UP_TCP;
}

/* Pooled calls all at once: no more than the upgrade's max_connecting
 * connections in their handshake at any time, every call answered. */
static void test_max_connecting(void **state)
{
	enum { CALLS = 32, AT_ONCE = 4 };
	static const struct conn_upgrade up = {
	    .name = "hello-only",
	    .connect_start = hs_connect_start,
	    .connect_step = hs_connect_step,
	    .max_connecting = AT_ONCE,
	};
	struct echo_proc *e = h_echo(NULL);
	struct channel_options o;
	struct channel_stats st;
	struct channel *ch;
	struct abatch *b;

	(void)state;
	hs_reset();
	h_options(&o);
	o.timeout_ms = 10000;
	o.conn_type = CHANNEL_CONN_POOLED;
	o.upgrade = &up;
	ch = h_channel(e->addr, &o);
	b = batch_new(CALLS);
	batch_start(b, ch, 0, CALLS);
	batch_wait(b, CALLS, WAIT_MS);
	batch_assert_ok(b, 0, CALLS);
	channel_stats(ch, &st);
	/* A call that starts after another's answer reuses its connection. */
	if (st.connects < 1 || st.connects > CALLS)
		fail_msg("%llu connects for %d calls",
			 (unsigned long long)st.connects, CALLS);
	assert_int_equal(st.connect_failures, 0);
	if (HS.max > AT_ONCE || HS.max < 1)
		fail_msg("%d handshakes at once, want 1..%d", HS.max, AT_ONCE);
	assert_int_equal(HS.now, 0);
	batch_free(b);
	H.completed = true;
}

/* A server that never answers the hello: calls queued behind the stuck
 * handshakes time out like the others, nothing is left behind, and no
 * more than max_connecting (the channel's own option here) ever started
 * at once. */
static void test_max_connecting_stuck(void **state)
{
	enum { CALLS = 6, AT_ONCE = 2 };
	static const struct conn_upgrade up = {
	    .name = "hello-only",
	    .connect_start = hs_connect_start,
	    .connect_step = hs_connect_step,
	};
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	struct channel_options o;
	struct channel *ch;
	struct abatch *b;
	char addr[32];
	int lfd;

	(void)state;
	hs_reset();
	/* Listens, never accepts: connects complete, hellos go unread. */
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 64), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	h_options(&o);
	o.timeout_ms = 300;
	o.conn_type = CHANNEL_CONN_POOLED;
	o.upgrade = &up;
	o.max_connecting = AT_ONCE;
	ch = h_channel(addr, &o);
	b = batch_new(CALLS);
	batch_start(b, ch, 0, CALLS);
	batch_wait(b, CALLS, WAIT_MS);
	for (int i = 0; i < CALLS; i++) {
		assert_int_equal(b->calls[i].runs, 1);
		if (b->calls[i].code != RPC_ERPCTIMEDOUT)
			fail_msg("call %d ended %d %s, want a timeout", i,
				 b->calls[i].code, b->calls[i].c.error_text);
	}
	if (HS.max > AT_ONCE || HS.max < 1)
		fail_msg("%d handshakes at once, want 1..%d", HS.max, AT_ONCE);
	batch_free(b);
	close(lfd);
	H.completed = true;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, h_setup, h_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_sync_call),
	    T(test_async_calls),
	    T(test_semi_sync),
	    T(test_cancel),
	    T(test_timeout),
	    T(test_retries),
	    T(test_backup_request),
	    T(test_connection_types),
	    T(test_10k_in_flight),
	    T(test_compression_matrix),
	    T(test_big_attachments),
	    T(test_oversize),
	    T(test_graceful_stop),
	    T(test_authentication),
	    T(test_attempts_counted_when_connect_fails_at_once),
	    T(test_max_connecting),
	    T(test_max_connecting_stuck),
	};

	return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}
