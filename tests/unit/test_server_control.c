/*
 * test_server_control: the server's controls (net/rpc/server.h), over real
 * loopback TCP: max_concurrency (ELIMIT), authentication (spec 1.7),
 * graceful stop (ELOGOFF, no call lost), CRC32C checksums, ENOSERVICE vs
 * ENOMETHOD (spec 1.8) and brpc's error texts.  The fixture is in
 * server_test.h.
 */
#include "server_test.h"

/* ---- 5: max_concurrency ---------------------------------------------- */

static void test_max_concurrency(void **state)
{
	struct fx_cfg cfg = {.max_concurrency = 1, .sleep_ms = SLOW_MS};
	struct fx *fx = fx_up(&cfg);
	struct req two[2] = {{.cid = 1, .message = "first"},
			     {.cid = 2, .message = "second"}};
	struct req r3 = {.cid = 3, .message = "third"};
	struct req r4 = {.cid = 4, .message = "fourth"};
	struct req r5 = {.cid = 5, .message = "fifth"};
	struct baidu_frame f[2], g;
	struct server_stats st;
	struct cli a, b;

	/* Two on one connection, one write: the second is over the limit
	 * and answered at once, before the first's delayed answer. */
	cli_open(&a, fx);
	cli_send_reqs(&a, fx, two, 2);
	cli_frame(&a, &f[0], "first answer");
	cli_frame(&a, &f[1], "second answer");
	expect_err(&f[0], 2, RPC_ELIMIT,
		   SRV "[E2004]Reached server's max_concurrency=1");
	expect_ok(fx, &f[1], 1, "first", NULL);
	release_all(f, 2);

	/* One in flight on connection a, one more on connection b. */
	settled_stats(fx, &st);
	cli_open(&b, fx);
	cli_send_reqs(&a, fx, &r3, 1);
	usleep(50 * 1000);
	cli_call(&b, fx, &r4, &g, "over the limit on another connection");
	expect_err(&g, 4, RPC_ELIMIT, NULL);
	baidu_frame_release(&g);
	cli_frame(&a, &g, "third");
	expect_ok(fx, &g, 3, "third", NULL);
	baidu_frame_release(&g);

	/* The slot is free again. */
	settled_stats(fx, &st);
	cli_call(&b, fx, &r5, &g, "after the limit cleared");
	expect_ok(fx, &g, 5, "fifth", NULL);
	baidu_frame_release(&g);
	settled_stats(fx, &st);
	assert_int_equal(st.errors, 2);
	cli_close(&a);
	cli_close(&b);
	fx_down(fx);
}

/* ---- 6: authentication ----------------------------------------------- */

/* Accepts only "secret"; "silent" is refused without a reason. */
static int auth_secret(void *arg, const struct baidu_bytes *cred,
		       const struct server_peer *peer, char *why,
		       size_t why_size)
{
	struct fx *fx = arg;

	__atomic_fetch_add(&fx->auth_calls, 1, __ATOMIC_RELAXED);
	if (!cred || !cred->ptr) {
		snprintf(why, why_size, "no credential");
		return -EACCES;
	}
	if (cred->len == 6 && !memcmp(cred->ptr, "silent", 6))
		return -EACCES;
	if (cred->len != 6 || memcmp(cred->ptr, "secret", 6)) {
		snprintf(why, why_size, "wrong credential");
		return -EACCES;
	}
	return 0;
}

/* error_text ends with `tail` (brpc's own text, whatever prefix). */
static void expect_auth_refused(const struct baidu_frame *f, uint64_t cid,
				const char *tail)
{
	size_t n = strlen(f->meta.error_text), t = strlen(tail);

	assert_true(f->meta.has_response);
	assert_int_equal(f->meta.correlation_id, cid);
	assert_int_equal(f->meta.error_code, RPC_ERPCAUTH);
	if (n < t || strcmp(f->meta.error_text + n - t, tail))
		fail_msg("ERPCAUTH text \"%s\" does not end with \"%s\"",
			 f->meta.error_text, tail);
	assert_int_equal(iobuf_len(&f->data), 0);
}

static void test_auth(void **state)
{
	struct fx_cfg cfg = {.auth = auth_secret};
	struct fx *fx = fx_up(&cfg);
	struct req none_then_good[2] = {
	    {.cid = 11, .message = "x"},
	    {.cid = 12, .message = "y", .auth = "secret"},
	};
	struct req wrong = {.cid = 21, .message = "x", .auth = "wrong"};
	struct req silent = {.cid = 41, .message = "x", .auth = "silent"};
	struct req good[3] = {
	    {.cid = 31, .message = "one", .auth = "secret"},
	    {.cid = 32, .message = "two"},
	    {.cid = 33, .message = "three", .auth = "wrong"},
	};
	struct baidu_frame f[FRAMES_MAX];
	struct server_stats st;
	struct cli c;
	int n;

	/* No credential on the first request: ERPCAUTH, then closed; the
	 * request behind it (with the right credential) is not served. */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, none_then_good, 2);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "no credential");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 11, "Fail to authenticate: no credential");
	release_all(f, n);
	cli_close(&c);

	/* A wrong one: the same. */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &wrong, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "wrong credential");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 21,
			    "Fail to authenticate: wrong credential");
	release_all(f, n);
	cli_close(&c);

	/* Refused without a reason: no ": ". */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &silent, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "silent refusal");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 41, "Fail to authenticate");
	release_all(f, n);
	cli_close(&c);

	/* The right one first: served, and so is everything after it on
	 * that connection, credential or not (verified once). */
	__atomic_store_n(&fx->auth_calls, 0, __ATOMIC_RELAXED);
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, good, 1);
	cli_frame(&c, &f[0], "authenticated");
	expect_ok(fx, &f[0], 31, "one", NULL);
	cli_send_reqs(&c, fx, good + 1, 2);
	cli_frame(&c, &f[1], "after authentication");
	cli_frame(&c, &f[2], "after authentication");
	expect_ok(fx, by_cid(f, 3, 32), 32, "two", NULL);
	expect_ok(fx, by_cid(f, 3, 33), 33, "three", NULL);
	release_all(f, 3);
	assert_int_equal(__atomic_load_n(&fx->auth_calls, __ATOMIC_RELAXED), 1);
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.closed_bad, 0);
	fx_down(fx);
}

/*
 * brpc writes the ERPCAUTH answer itself (VerifyRpcRequest builds the
 * RpcMeta and writes it), not through Controller::SetFailed, so its
 * error_text is bare "Fail to authenticate" [": " text], without the
 * "[addr][E1004]" prefix of other errors (spec 1.7).
 */
static void test_auth_error_text_is_brpc_s(void **state)
{
	struct fx_cfg cfg = {.auth = auth_secret};
	struct fx *fx = fx_up(&cfg);
	struct req none = {.cid = 51, .message = "x"};
	struct req silent = {.cid = 52, .message = "x", .auth = "silent"};
	struct baidu_frame f[FRAMES_MAX];
	struct cli c;
	int n;

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &none, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "no credential");
	assert_int_equal(n, 1);
	assert_int_equal(f[0].meta.error_code, RPC_ERPCAUTH);
	assert_string_equal(f[0].meta.error_text,
			    "Fail to authenticate: no credential");
	release_all(f, n);
	cli_close(&c);

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &silent, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "silent");
	assert_int_equal(n, 1);
	assert_string_equal(f[0].meta.error_text, "Fail to authenticate");
	release_all(f, n);
	cli_close(&c);
	fx_down(fx);
}

/* ---- 7: graceful stop ------------------------------------------------ */

struct stopper {
	struct server *srv;
	int delay_ms;
	int grace_ms;
	int ret;
};

static void *stopper_main(void *arg)
{
	struct stopper *st = arg;

	usleep((useconds_t)st->delay_ms * 1000);
	st->ret = server_stop(st->srv, st->grace_ms);
	return NULL;
}

/* Waits until the listener is gone (connect refused): the stop began.
 * A probe whose handshake the closing listener was still holding is
 * reset instead (CI met it once): gone too. */
static void wait_listener_closed(struct fx *fx)
{
	int64_t deadline = now_ms() + RECV_TIMEOUT_S * 1000;
	struct cli probe;
	int err;

	for (;;) {
		err = cli_try_open(&probe, fx);
		if (err == -ECONNREFUSED || err == -ECONNRESET)
			return;
		if (err)
			fail_msg("probe connect: %s", strerror(-err));
		cli_close(&probe);
		if (now_ms() > deadline)
			fail_msg("the listener still accepts %d s after "
				 "server_stop",
				 RECV_TIMEOUT_S);
		usleep(5 * 1000);
	}
}

#define STOP_CALLS 5

static void graceful_stop(bool on_workers)
{
	struct fx_cfg cfg = {.sleep_ms = SLOW_MS, .on_workers = on_workers};
	struct fx *fx = fx_up(&cfg);
	struct stopper stopper = {
	    .srv = &fx->srv, .delay_ms = 50, .grace_ms = 5000, .ret = -1};
	struct req r[STOP_CALLS + 1];
	char msgs[STOP_CALLS + 1][32];
	struct baidu_frame f[FRAMES_MAX];
	struct server_stats st;
	pthread_t th;
	struct cli c;
	int n;

	for (int i = 0; i <= STOP_CALLS; i++) {
		snprintf(msgs[i], sizeof(msgs[i]), "call-%d", i + 1);
		r[i] = (struct req){.cid = (uint64_t)i + 1, .message = msgs[i]};
	}
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, r, STOP_CALLS);
	assert_int_equal(pthread_create(&th, NULL, stopper_main, &stopper), 0);
	wait_listener_closed(fx);
	/* The 5 calls are still in their handlers (no answer yet), so the
	 * connection is open: a new request must be refused. */
	cli_expect_quiet(&c, 0, "calls in flight during the stop");
	cli_send_reqs(&c, fx, &r[STOP_CALLS], 1);

	n = cli_frames_until_close(&c, f, FRAMES_MAX, "graceful stop");
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(stopper.ret, 0);
	for (int i = 0; i < STOP_CALLS; i++)
		expect_ok(fx, by_cid(f, n, (uint64_t)i + 1), (uint64_t)i + 1,
			  msgs[i], NULL);
	/* The late one: ELOGOFF, or (allowed) the connection closed
	 * before it was read. */
	if (n == STOP_CALLS + 1)
		expect_err(by_cid(f, n, STOP_CALLS + 1), STOP_CALLS + 1,
			   RPC_ELOGOFF, SRV "[E2003]Server is stopping");
	else
		assert_int_equal(n, STOP_CALLS);
	release_all(f, n);
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.connections, 0);
	fx_down(fx);
}

static void test_graceful_stop(void **state)
{
	graceful_stop(false);
}

static void test_graceful_stop_on_workers(void **state)
{
	graceful_stop(true);
}

/* ---- 8: checksums ---------------------------------------------------- */

static void test_checksum(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req right = {.cid = 1, .message = "crc", .ck = CK_RIGHT};
	struct req wrong = {.cid = 2, .message = "crc", .ck = CK_WRONG};
	struct req gz_right = {.cid = 3,
			       .message = "gzipped crc",
			       .compress = COMPRESS_GZIP,
			       .ck = CK_RIGHT,
			       .attachment = "att"};
	struct req gz_plain = {.cid = 4,
			       .message = "gzipped crc",
			       .compress = COMPRESS_GZIP,
			       .ck = CK_OVER_PLAIN};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &right, &f, "right CRC32C");
	expect_ok(fx, &f, 1, "crc", NULL);
	/* checksum_answers is off: the answer carries none. */
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_NONE);
	baidu_frame_release(&f);

	/* "crc" encodes to 5 bytes: 0a 03 'c' 'r' 'c'. */
	cli_call(&c, fx, &wrong, &f, "wrong CRC32C");
	expect_err(&f, 2, RPC_EREQUEST,
		   SRV "[E1003]Fail to parse request=example.EchoRequest, "
		       "ContentType=pb, CompressType=none, "
		       "ChecksumType=crc32c, request_size=5");
	baidu_frame_release(&f);

	/* The CRC covers the bytes as sent, i.e. compressed. */
	cli_call(&c, fx, &gz_right, &f, "CRC32C of gzip bytes");
	expect_ok(fx, &f, 3, "gzipped crc", "att");
	baidu_frame_release(&f);
	cli_call(&c, fx, &gz_plain, &f, "CRC32C of the uncompressed bytes");
	expect_err(&f, 4, RPC_EREQUEST, NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* checksum_answers: answers to requests with a CRC carry a right one. */
static void test_checksum_answers(void **state)
{
	struct fx_cfg cfg = {.checksum_answers = true};
	struct fx *fx = fx_up(&cfg);
	struct req with = {.cid = 1,
			   .message = "sum me",
			   .ck = CK_RIGHT,
			   .compress = COMPRESS_ZLIB,
			   .attachment = "a"};
	struct req without = {.cid = 2, .message = "plain"};
	struct baidu_frame f;
	uint8_t ck[4];
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &with, &f, "request with a CRC");
	expect_ok(fx, &f, 1, "sum me", "a");
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_CRC32C);
	assert_int_equal(f.meta.checksum_value.len, 4);
	assert_int_equal(rpc_msg_checksum(&f.data, NULL, ck), 0);
	assert_memory_equal(f.meta.checksum_value.ptr, ck, 4);
	assert_int_equal(rpc_msg_verify(&f), 0);
	baidu_frame_release(&f);
	cli_call(&c, fx, &without, &f, "request without a CRC");
	expect_ok(fx, &f, 2, "plain", NULL);
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_NONE);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* ---- 9: service and method lookup ------------------------------------ */

static void test_service_lookup(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r[] = {
	    {.cid = 1, .service = "EchoService", .message = "short"},
	    {.cid = 2, .service = "NoSuch", .message = "x"},
	    {.cid = 3, .service = "example.NoSuch", .message = "x"},
	    {.cid = 4,
	     .service = "example.EchoService",
	     .method = "Nope",
	     .message = "x"},
	    {.cid = 5, .service = "example.EchoService", .message = "full"},
	    /* Names as long as the real ones, one byte off: in the first
	     * eight bytes, in the last (after two whole words), of a short
	     * name and of a method. */
	    {.cid = 6, .service = "exbmple.EchoService", .message = "x"},
	    {.cid = 7, .service = "example.EchoServicf", .message = "x"},
	    {.cid = 8, .service = "EchoServicf", .message = "x"},
	    {.cid = 9,
	     .service = "example.EchoService",
	     .method = "Echp",
	     .message = "x"},
	};
	enum { N = sizeof(r) / sizeof(r[0]) };
	/* What each of r gets: its message back, or this error. */
	static const struct {
		int code;
		const char *text;
	} want[N] = {
	    {0, NULL},
	    {RPC_ENOSERVICE, SRV "[E1001]Fail to find service=NoSuch"},
	    {RPC_ENOMETHOD,
	     SRV "[E1002]Fail to find method=example.NoSuch/Echo"},
	    {RPC_ENOMETHOD,
	     SRV "[E1002]Fail to find method=example.EchoService/Nope"},
	    {0, NULL},
	    {RPC_ENOMETHOD,
	     SRV "[E1002]Fail to find method=exbmple.EchoService/Echo"},
	    {RPC_ENOMETHOD,
	     SRV "[E1002]Fail to find method=example.EchoServicf/Echo"},
	    {RPC_ENOSERVICE, SRV "[E1001]Fail to find service=EchoServicf"},
	    {RPC_ENOMETHOD,
	     SRV "[E1002]Fail to find method=example.EchoService/Echp"},
	};
	struct baidu_frame f[N];
	struct cli c;

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, r, N);
	for (int i = 0; i < N; i++)
		cli_frame(&c, &f[i], "lookups");
	for (int i = 0; i < N; i++) {
		const struct baidu_frame *g = by_cid(f, N, r[i].cid);

		if (want[i].code)
			expect_err(g, r[i].cid, want[i].code, want[i].text);
		else
			expect_ok(fx, g, r[i].cid, r[i].message, NULL);
	}
	release_all(f, N);
	cli_close(&c);
	fx_down(fx);
}

/*
 * A known short service name with an unknown method: ENOMETHOD, and brpc
 * prints the service name as the request sent it
 * (request_meta.service_name() in ProcessRpcRequest), not the full name
 * it looked the method up with.
 */
static void test_enomethod_text_keeps_short_name(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r = {.cid = 9,
			.service = "EchoService",
			.method = "Nope",
			.message = "x"};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "short service, unknown method");
	expect_err(&f, 9, RPC_ENOMETHOD,
		   SRV "[E1002]Fail to find method=EchoService/Nope");
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_SERVER(test_max_concurrency),
	    TEST_SERVER(test_auth),
	    TEST_SERVER(test_auth_error_text_is_brpc_s),
	    TEST_SERVER(test_graceful_stop),
	    TEST_SERVER(test_graceful_stop_on_workers),
	    TEST_SERVER(test_checksum),
	    TEST_SERVER(test_checksum_answers),
	    TEST_SERVER(test_service_lookup),
	    TEST_SERVER(test_enomethod_text_keeps_short_name),
	};

	/* TEST_FILTER=test_auth* runs only the tests matching the pattern. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests_name("server_control", tests, NULL, NULL);
}
