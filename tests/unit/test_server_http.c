/*
 * test_server_http: the built-in pages on the RPC port (HTTP/1.x next to
 * baidu_std, net/rpc/server.c) and their request-head parser
 * (net/codec/http_head.h):
 *
 *   - http_head_parse on good heads (curl's, bare LF, HTTP/1.0), heads cut
 *     anywhere (-EAGAIN), malformed ones (-EPROTO with the reason) and
 *     heads over the limit (-E2BIG); http_detect on method prefixes;
 *   - GET /metrics answers 200 with the registry's Prometheus text, HEAD
 *     the same head without a body, and an unknown page 404, another
 *     method 405, a bad head 400 (logged), each closing the connection;
 *     a request sent one byte at a time gets the same answer.
 */
#include "server_test.h"

#include "codec/http_head.h"
#include "base/metrics.h"

/* ---- the parser -------------------------------------------------------- */

static int parse(const char *text, struct http_head *h)
{
	return http_head_parse((const uint8_t *)text, strlen(text), h);
}

static void test_head_good(void **state)
{
	const char *curl = "GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000"
			   "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
			   "trailing bytes";
	struct http_head h;

	(void)state;
	assert_int_equal(parse(curl, &h), 0);
	assert_string_equal(h.method, "GET");
	assert_string_equal(h.target, "/metrics?x=1");
	assert_int_equal(h.minor, 1);
	assert_int_equal(h.len, strlen(curl) - strlen("trailing bytes"));
	/* Bare LF, HTTP/1.0, no fields, a tab and obs-text in a value. */
	assert_int_equal(parse("HEAD / HTTP/1.0\n\n", &h), 0);
	assert_string_equal(h.method, "HEAD");
	assert_int_equal(h.minor, 0);
	assert_int_equal(h.len, 17);
	assert_int_equal(
	    parse("GET / HTTP/1.1\r\nX-A:\t\xc3\xa9 b\r\n\r\n", &h), 0);
}

static void test_head_cut_anywhere(void **state)
{
	const char *req = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(req);
	struct http_head h;

	(void)state;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(http_head_parse((const uint8_t *)req, i, &h),
				 -EAGAIN);
	assert_int_equal(http_head_parse((const uint8_t *)req, n, &h), 0);
	assert_int_equal(h.len, n);
}

static void test_head_malformed(void **state)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"GET  / HTTP/1.1\r\n\r\n", "not a path"},
	    {" GET / HTTP/1.1\r\n\r\n", "method and one space"},
	    {"GET metrics HTTP/1.1\r\n\r\n", "not a path"},
	    {"GET / HTTP/2.0\r\n\r\n", "HTTP/1.0 or HTTP/1.1"},
	    {"GET / HTTP/1.1 \r\n\r\n", "HTTP/1.0 or HTTP/1.1"},
	    {"GET /a\x01 HTTP/1.1\r\n\r\n", "HTTP/1.0 or HTTP/1.1"},
	    {"GET / HTTP/1.1\r\n folded: x\r\n\r\n", "folding"},
	    {"GET / HTTP/1.1\r\nNo colon\r\n\r\n", "name and a colon"},
	    {"GET / HTTP/1.1\r\n: empty name\r\n\r\n", "name and a colon"},
	    {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", "control byte"},
	    {"GETTINGTOOLONGMETHOD / HTTP/1.1\r\n\r\n", "method is too long"},
	};
	struct http_head h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i].text, &h), -EPROTO);
		if (!strstr(h.why, bad[i].why))
			fail_msg("'%s': why is '%s', want '%s'", bad[i].text,
				 h.why, bad[i].why);
	}
}

static void test_head_limits(void **state)
{
	static char big[HTTP_HEAD_MAX + 64];
	struct http_head h;
	size_t n;

	(void)state;
	/* A target over HTTP_TARGET_MAX. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP_TARGET_MAX);
	strcpy(big + n + HTTP_TARGET_MAX, " HTTP/1.1\r\n\r\n");
	assert_int_equal(parse(big, &h), -EPROTO);
	assert_non_null(strstr(h.why, "target is too long"));
	/* A head that never ends within the limit. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'b', sizeof(big) - n);
	assert_int_equal(http_head_parse((const uint8_t *)big, sizeof(big), &h),
			 -E2BIG);
	assert_int_equal(
	    http_head_parse((const uint8_t *)big, HTTP_HEAD_MAX - 1, &h),
	    -EAGAIN);
}

static void test_detect(void **state)
{
	(void)state;
	assert_int_equal(http_detect((const uint8_t *)"GET /", 5), 1);
	assert_int_equal(http_detect((const uint8_t *)"OPTIONS ", 8), 1);
	assert_int_equal(http_detect((const uint8_t *)"P", 1), 0);
	assert_int_equal(http_detect((const uint8_t *)"POS", 3), 0);
	assert_int_equal(http_detect((const uint8_t *)"PRPC", 4), -1);
	assert_int_equal(http_detect((const uint8_t *)"GET\t/", 5), -1);
	assert_int_equal(http_detect((const uint8_t *)"get /", 5), -1);
}

/* ---- the pages on the server's port --------------------------------- */

/* Sends `req` (one byte per send with `bytewise`), reads to EOF. */
static char *http_get(struct fx *fx, const char *req, bool bytewise)
{
	struct cli c;
	size_t n = strlen(req);
	char *text;
	ssize_t r;

	cli_open(&c, fx);
	if (bytewise) {
		for (size_t i = 0; i < n; i++)
			assert_int_equal(cli_send(&c, req + i, 1), 0);
	} else {
		assert_int_equal(cli_send(&c, req, n), 0);
	}
	while ((r = cli_fill(&c)) > 0)
		;
	if (r < 0)
		fail_msg("no close after the answer to '%s': %s", req,
			 strerror((int)-r));
	n = iobuf_len(&c.in);
	text = malloc(n + 1);
	assert_non_null(text);
	iobuf_copy_out(&c.in, 0, text, n);
	text[n] = '\0';
	cli_close(&c);
	return text;
}

static void expect_answer(struct fx *fx, const char *req, bool bytewise,
			  const char *status, const char *body_has)
{
	char *a = http_get(fx, req, bytewise);
	const char *body = strstr(a, "\r\n\r\n");
	const char *cl = strstr(a, "Content-Length: ");

	if (strncmp(a, status, strlen(status)) != 0 || !body || !cl ||
	    !strstr(a, "Connection: close\r\n") ||
	    (body_has && !strstr(body, body_has)))
		fail_msg("'%s': answered '%s', want '%s' and '%s'", req, a,
			 status, body_has ? body_has : "");
	if (strncmp(req, "HEAD", 4) != 0)
		assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body + 4));
	else
		assert_string_equal(body, "\r\n\r\n");
	free(a);
}

static void test_pages(void **state)
{
	struct metrics m;
	struct metrics_counter hs;
	struct metrics_gauge qps;
	struct fx_cfg cfg = {.metrics = &m};
	struct fx *fx;
	struct server_stats st;

	(void)state;
	assert_int_equal(metrics_init(&m, NULL), 0);
	metrics_counter_init(&hs);
	metrics_gauge_init(&qps);
	assert_int_equal(
	    metrics_register_counter(&m, &hs, "rpcgate_rdma_handshakes_total",
				     "by outcome", "outcome=\"rdma\""),
	    0);
	assert_int_equal(
	    metrics_register_gauge(&m, &qps, "rpcgate_rdma_qps", "", NULL), 0);
	metrics_counter_add(&hs, 7);
	metrics_gauge_set(&qps, 3);
	fx = fx_up(&cfg);

	expect_answer(fx, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", false,
		      "HTTP/1.1 200 OK\r\n",
		      "rpcgate_rdma_handshakes_total{outcome=\"rdma\"} 7\n");
	expect_answer(fx, "GET /metrics HTTP/1.0\r\n\r\n", true,
		      "HTTP/1.1 200 OK\r\n", "rpcgate_rdma_qps 3\n");
	expect_answer(fx, "HEAD /metrics HTTP/1.1\r\n\r\n", false,
		      "HTTP/1.1 200 OK\r\n", NULL);
	expect_answer(fx, "GET / HTTP/1.1\r\n\r\n", false,
		      "HTTP/1.1 404 Not Found\r\n", "try /metrics");
	expect_answer(fx, "POST /metrics HTTP/1.1\r\n\r\n", false,
		      "HTTP/1.1 405 Method Not Allowed\r\n", "GET and HEAD");
	expect_answer(fx, "GET /metrics HTTP/9.9\r\n\r\n", false,
		      "HTTP/1.1 400 Bad Request\r\n", "HTTP/1.0 or HTTP/1.1");
	assert_true(log_has(fx, "HTTP request from 127.0.0.1"));
	/* Pages are not calls, and baidu_std still works after them. */
	settled_stats(fx, &st);
	assert_int_equal(st.calls, 0);
	fx_down(fx);
	metrics_destroy(&m);
}

static void test_pages_without_registry(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);

	(void)state;
	expect_answer(fx, "GET /metrics HTTP/1.1\r\n\r\n", false,
		      "HTTP/1.1 404 Not Found\r\n", "no such page");
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_head_good),
	    cmocka_unit_test(test_head_cut_anywhere),
	    cmocka_unit_test(test_head_malformed),
	    cmocka_unit_test(test_head_limits),
	    cmocka_unit_test(test_detect),
	    TEST_SERVER(test_pages),
	    TEST_SERVER(test_pages_without_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
