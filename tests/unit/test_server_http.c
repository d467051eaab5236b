/*
 * test_server_http: HTTP/1.x on the server's port (net/rpc/server_http.c,
 * server_pages.c), in-process under the sanitizers, the echo service
 * compiled in and kitchen.proto's services served as echo's mirrors:
 *
 *   - brpc's recorded exchanges (../shared/vectors/http) answered byte
 *     for byte where brpc is right (its address swapped for ours), and
 *     as the HTTP and protobuf specs say where its README lists a bug;
 *   - keep-alive (a thousand requests on one connection), pipelining
 *     answered in order with the handler on workers, a request sent one
 *     byte at a time, answers gzipped for callers that take gzip;
 *   - the limits: 431, 413 before the body, 414, a chunked body over the
 *     limit, and the deadlines: a head that does not come (408), a body
 *     that stops, an idle connection closed;
 *   - the built-in pages, text and HTML, /flags setting a runtime flag,
 *     /vars filtering, HEAD, other methods refused;
 *   - a raw (mirror) service over baidu_std too.
 */
#include "server_test.h"

#include "base/flags.h"
#include "base/metrics.h"
#include "base/util.h"
#include "codec/http1.h"
#include "codec/compress.h"
#include "codec/pbd.h"

/* The recorded server's address in the vectors' error texts. */
#define BRPC_ADDR "127.0.0.1:19200"

static struct pbd_pool g_pool_desc;

static void descriptors_up(void)
{
	char why[256];
	size_t n;
	uint8_t *k = test_file_read(test_desc_path("kitchen.desc"), &n);

	pbd_pool_init(&g_pool_desc, NULL);
	assert_int_equal(pbd_pool_add_set(&g_pool_desc, echo_proto_desc,
					  echo_proto_desc_len, "echo", why,
					  sizeof(why)),
			 0);
	if (pbd_pool_add_set(&g_pool_desc, k, n, "kitchen", why, sizeof(why)))
		fail_msg("%s", why);
	free(k);
}

static struct fx *up(struct fx_cfg *cfg)
{
	descriptors_up();
	cfg->descriptors = &g_pool_desc;
	cfg->mirrors = true;
	return fx_up(cfg);
}

static void down(struct fx *fx)
{
	fx_down(fx);
	pbd_pool_destroy(&g_pool_desc);
}

/* ---- answers ------------------------------------------------------------ */

/* One whole answer cut off the front of `in`: its bytes (malloc'd, NUL
 * after them) and length, or NULL when they are not all there. */
static bool g_head_only; /* the answer is to a HEAD: no body follows */

static char *cut_answer(struct iobuf *in, size_t *len, int *status)
{
	size_t n = iobuf_len(in), head, body = 0;
	char *text, *end, *cl;

	text = malloc(n + 1);
	assert_non_null(text);
	iobuf_copy_out(in, 0, text, n);
	text[n] = '\0';
	end = strstr(text, "\r\n\r\n");
	if (!end) {
		free(text);
		return NULL;
	}
	head = (size_t)(end - text) + 4;
	*end = '\0';
	cl = strcasestr(text, "\r\nContent-Length: ");
	if (cl && !g_head_only)
		body = strtoul(cl + 18, NULL, 10);
	*end = '\r';
	if (n < head + body) {
		free(text);
		return NULL;
	}
	*status = atoi(text + 9);
	text[head + body] = '\0';
	iobuf_drop_front(in, head + body);
	*len = head + body;
	return text;
}

/* Reads one answer (NULL: the connection closed first). */
static char *read_answer(struct cli *c, size_t *len, int *status)
{
	char *a;
	ssize_t r;

	for (;;) {
		a = cut_answer(&c->in, len, status);
		if (a)
			return a;
		r = cli_fill(c);
		if (r == 0)
			return NULL;
		if (r < 0)
			fail_msg("no answer within %d s: %s", RECV_TIMEOUT_S,
				 strerror((int)-r));
	}
}

static char *call_once(struct fx *fx, const char *req, int *status)
{
	struct cli c;
	size_t len;
	char *a;

	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, req, strlen(req)), 0);
	g_head_only = !strncmp(req, "HEAD ", 5);
	a = read_answer(&c, &len, status);
	g_head_only = false;
	if (!a)
		fail_msg("'%s': closed without an answer", req);
	cli_close(&c);
	return a;
}

/* The body of an answer. */
static const char *body_of(const char *a)
{
	const char *b = strstr(a, "\r\n\r\n");

	return b ? b + 4 : "";
}

/* ---- brpc's vectors ----------------------------------------------------- */

static char *vector(const char *name, const char *ext, size_t *n)
{
	char path[256];

	snprintf(path, sizeof(path), "http/%s.%s", name, ext);
	return (char *)test_vector_read(path, n);
}

/*
 * brpc's answers with its address as ours: each answer's body gets
 * ADDR_TEXT for BRPC_ADDR and its Content-Length follows.
 */
static char *expected(const char *name)
{
	size_t n, i = 0, o = 0;
	char *s2c = vector(name, "s2c", &n);
	char *out = malloc(2 * n + 64);

	assert_non_null(out);
	while (i < n) {
		char *head_end = strstr(s2c + i, "\r\n\r\n"), *cl, *hit;
		size_t head = (size_t)(head_end - (s2c + i)) + 4, body = 0;
		char bodybuf[8192];
		size_t bl;

		assert_non_null(head_end);
		*head_end = '\0';
		cl = strstr(s2c + i, "Content-Length: ");
		if (cl)
			body = strtoul(cl + 16, NULL, 10);
		*head_end = '\r';
		assert_true(body < sizeof(bodybuf));
		memcpy(bodybuf, s2c + i + head, body);
		bodybuf[body] = '\0';
		hit = strstr(bodybuf, BRPC_ADDR);
		if (hit) {
			memmove(hit + strlen(ADDR_TEXT),
				hit + strlen(BRPC_ADDR),
				strlen(hit + strlen(BRPC_ADDR)) + 1);
			memcpy(hit, ADDR_TEXT, strlen(ADDR_TEXT));
		}
		bl = strlen(bodybuf);
		if (cl) {
			size_t before = (size_t)(cl - (s2c + i)) + 16;
			char *eol = strstr(cl, "\r\n");

			memcpy(out + o, s2c + i, before);
			o += before;
			o += (size_t)sprintf(out + o, "%zu", bl);
			memcpy(out + o, eol, (size_t)(head_end + 4 - eol));
			o += (size_t)(head_end + 4 - eol);
		} else {
			memcpy(out + o, s2c + i, head);
			o += head;
		}
		memcpy(out + o, bodybuf, bl);
		o += bl;
		i += head + body;
	}
	out[o] = '\0';
	free(s2c);
	return out;
}

/* Sends the vector's request on a fresh connection and reads `answers`
 * answers (all of them, concatenated); with *closed true, whether the
 * server closed after them. */
static char *replay(struct fx *fx, const char *name, int answers, bool *closed)
{
	size_t n, len, total = 0;
	char *c2s = vector(name, "c2s", &n), *all = malloc(1), *a;
	struct cli c;
	int status;

	all[0] = '\0';
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, c2s, n), 0);
	for (int i = 0; i < answers; i++) {
		a = read_answer(&c, &len, &status);
		if (!a)
			fail_msg("%s: closed after %d answers", name, i);
		all = realloc(all, total + len + 1);
		memcpy(all + total, a, len + 1);
		total += len;
		free(a);
	}
	/* a close is waited for only where one is due: an open keep-alive
	 * connection would hold the reader for RECV_TIMEOUT_S */
	if (closed && *closed)
		*closed = cli_fill(&c) == 0;
	cli_close(&c);
	free(c2s);
	return all;
}

/* Where brpc is right: its answer, byte for byte. */
static void test_vectors_as_brpc(void **state)
{
	static const struct {
		const char *name;
		int answers;
		bool closes;
	} cases[] = {
	    {"json_echo", 1, false},
	    {"json_full_name", 1, false},
	    {"json_fail", 1, false},
	    {"json_missing_required", 1, false},
	    {"json_wrong_type", 1, false},
	    {"json_empty_body", 1, false},
	    {"json_no_content_type", 1, false},
	    {"json_unknown_field", 1, false},
	    {"get_echo", 1, false},
	    {"get_echo_query", 1, false},
	    {"put_echo", 1, false},
	    {"no_service", 1, false},
	    {"no_method", 1, false},
	    {"unknown_page", 1, false},
	    {"proto_echo", 1, false},
	    {"proto_bad_body", 1, false},
	    {"chunked_request", 1, false},
	    {"expect_100", 2, false},
	    {"gzip_request_body", 1, false},
	    {"log_id_header", 1, false},
	    {"timeout_header", 1, false},
	    {"http10_close", 1, true},
	    {"http11_connection_close", 1, true},
	    {"builtin_health", 1, false},
	    {"builtin_protobufs", 1, false},
	    {"builtin_protobufs_echo", 1, false},
	    {"kitchen_defaults_only", 1, false},
	    {"kitchen_enum_number", 1, false},
	    {"kitchen_int64_as_string", 1, false},
	    {"kitchen_null_field", 1, false},
	    {"kitchen_bytes_bad_base64", 1, false},
	    {"kitchen_array_top", 1, false},
	};
	struct fx_cfg cfg = {0};
	struct fx *fx;

	(void)state;
	fx = up(&cfg);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool closed = cases[i].closes;
		char *want = expected(cases[i].name);
		char *got =
		    replay(fx, cases[i].name, cases[i].answers, &closed);

		if (strcmp(got, want))
			fail_msg("%s:\n--- got\n%s\n--- brpc\n%s",
				 cases[i].name, got, want);
		if (cases[i].closes && !closed)
			fail_msg("%s: the connection stayed open",
				 cases[i].name);
		free(got);
		free(want);
	}
	down(fx);
}

/* Where brpc's README lists a bug: what the specs say instead. */
static void test_vectors_fixed(void **state)
{
	struct fx_cfg cfg = {0};
	struct iobuf gz, plain;
	struct fx *fx;
	bool closed;
	char *got, body[4096];
	size_t n;

	(void)state;
	fx = up(&cfg);
	/* pipelining: both requests, answered in order */
	got = replay(fx, "pipelined_two", 2, NULL);
	assert_non_null(strstr(got, "{\"message\":\"one\"}HTTP/1.1 200 OK"));
	assert_non_null(strstr(got, "\r\n\r\n{\"message\":\"two\"}"));
	free(got);
	/* NaN and Infinity as the proto3 mapping spells them */
	got = replay(fx, "kitchen_float_special", 1, NULL);
	assert_string_equal(body_of(got), "{\"fl\":\"NaN\",\"db\":\"Infinity\","
					  "\"req\":1,\"smap\":{}}");
	free(got);
	/* a value that does not fit: 400 naming the field */
	got = replay(fx, "kitchen_int32_overflow", 1, NULL);
	assert_non_null(strstr(got, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(got, "x-bd-error-code: 1003\r\n"));
	assert_non_null(strstr(got, "Invalid value `3000000000' for field "
				    "`example.Kitchen.i32' which SHOULD be "
				    "int32"));
	free(got);
	got = replay(fx, "kitchen_enum_unknown_name", 1, NULL);
	assert_non_null(strstr(got, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(got, "`\"PURPLE\"' for field "
				    "`example.Kitchen.color'"));
	free(got);
	/* a body over the limit: 413 before any of it, then close */
	closed = true;
	got = replay(fx, "huge_content_length", 1, &closed);
	assert_non_null(strstr(got, "HTTP/1.1 413 Payload Too Large\r\n"));
	assert_true(closed);
	free(got);
	/* brpc's answer to a bad Content-Length has no reason: ours says */
	closed = true;
	got = replay(fx, "bad_content_length", 1, &closed);
	assert_non_null(strstr(got, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(got, "Content-Length is not a number"));
	assert_true(closed);
	free(got);
	/* the map in wire order (brpc's came from a hash table) */
	got = replay(fx, "kitchen_all", 1, NULL);
	assert_non_null(strstr(got, "\"req\":1,\"smap\":{\"k1\":1,\"k2\":2}}"));
	free(got);
	/* Accept-Encoding: gzip: brpc answered plain; a 2 KiB answer is
	 * worth compressing */
	got = replay(fx, "accept_gzip", 1, NULL);
	assert_non_null(strstr(got, "Content-Encoding: gzip\r\n"));
	iobuf_init(&gz, &fx->pool);
	iobuf_init(&plain, &fx->pool);
	{
		const char *cl = strstr(got, "Content-Length: ");
		size_t blen = strtoul(cl + 16, NULL, 10);

		assert_int_equal(iobuf_append(&gz, body_of(got), blen), 0);
	}
	assert_int_equal(compress_decode(COMPRESS_GZIP, &gz, &plain, 1 << 20),
			 0);
	n = iobuf_copy_out(&plain, 0, body, sizeof(body) - 1);
	body[n] = '\0';
	free(got);
	got = vector("accept_gzip", "c2s", &n);
	assert_string_equal(body, strstr(got, "\r\n\r\n") + 4);
	free(got);
	iobuf_destroy(&gz);
	iobuf_destroy(&plain);
	down(fx);
}

/* A garbage request line is not HTTP: closed without an answer, as brpc
 * does (no protocol of the port starts so). */
static void test_not_http(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx;
	size_t n;
	char *c2s;
	struct cli c;

	(void)state;
	fx = up(&cfg);
	c2s = vector("bad_request_line", "c2s", &n);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, c2s, n), 0);
	cli_expect_closed(&c, "a garbage request line");
	assert_int_equal(iobuf_len(&c.in), 0);
	cli_close(&c);
	free(c2s);
	down(fx);
}

/* ---- connections ------------------------------------------------------- */

static const char json_req[] =
    "POST /EchoService/Echo HTTP/1.1\r\nHost: h\r\nContent-Type: "
    "application/json\r\nContent-Length: 19\r\n\r\n{\"message\":\"hello\"}";
static const char json_ans[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Type: "
    "application/json\r\n\r\n{\"message\":\"hello\"}";

static void test_keep_alive_many(void **state)
{
	struct fx_cfg cfg = {0};
	struct server_stats st;
	struct fx *fx;
	struct cli c;
	size_t len;
	int status;

	(void)state;
	fx = up(&cfg);
	cli_open(&c, fx);
	for (int i = 0; i < 1000; i++) {
		char *a;

		assert_int_equal(cli_send(&c, json_req, strlen(json_req)), 0);
		a = read_answer(&c, &len, &status);
		if (!a || strcmp(a, json_ans))
			fail_msg("request %d: %s", i, a ? a : "(closed)");
		free(a);
	}
	cli_close(&c);
	settled_stats(fx, &st);
	assert_int_equal(st.calls, 1000);
	down(fx);
}

/* Ten requests in one write, the handler on the workers and slow: the
 * answers come in order. */
static void test_pipelined_in_order(void **state)
{
	struct fx_cfg cfg = {.on_workers = true, .sleep_ms = 20};
	char all[4096], *a, want[64];
	size_t o = 0, len;
	struct fx *fx;
	struct cli c;
	int status;

	(void)state;
	fx = up(&cfg);
	for (int i = 0; i < 10; i++)
		o += (size_t)snprintf(
		    all + o, sizeof(all) - o,
		    "POST /example.EchoService/Echo HTTP/1.1\r\nHost: h\r\n"
		    "Content-Length: 16\r\n\r\n{\"message\":\"m%d\"}",
		    i);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, all, o), 0);
	for (int i = 0; i < 10; i++) {
		a = read_answer(&c, &len, &status);
		assert_non_null(a);
		snprintf(want, sizeof(want), "{\"message\":\"m%d\"}", i);
		assert_string_equal(body_of(a), want);
		free(a);
	}
	cli_close(&c);
	down(fx);
}

static void test_byte_at_a_time(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx;
	struct cli c;
	size_t len;
	int status;
	char *a;

	(void)state;
	fx = up(&cfg);
	cli_open(&c, fx);
	for (size_t i = 0; i < strlen(json_req); i++)
		assert_int_equal(cli_send(&c, json_req + i, 1), 0);
	a = read_answer(&c, &len, &status);
	assert_non_null(a);
	assert_string_equal(a, json_ans);
	free(a);
	cli_close(&c);
	down(fx);
}

/* ---- limits and deadlines ------------------------------------------------ */

static void expect_refused(struct fx *fx, const char *req, size_t n,
			   int want_status, const char *why)
{
	struct cli c;
	size_t len;
	int status;
	char *a;

	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, req, n), 0);
	a = read_answer(&c, &len, &status);
	if (!a || status != want_status || !strstr(a, why))
		fail_msg("want %d '%s', got %s", want_status, why,
			 a ? a : "(closed)");
	cli_expect_closed(&c, "a refused request");
	free(a);
	cli_close(&c);
}

static void test_limits(void **state)
{
	struct fx_cfg cfg = {.max_body_size = 4096};
	size_t big = HTTP1_HEAD_MAX + 1024, n;
	char *req = malloc(big + 64);
	struct fx *fx;

	(void)state;
	fx = up(&cfg);
	/* a head over 64 KiB */
	n = (size_t)sprintf(req, "GET /health HTTP/1.1\r\nHost: h\r\nX: ");
	memset(req + n, 'x', big - n);
	memcpy(req + big, "\r\n\r\n", 4);
	expect_refused(fx, req, big + 4, 431, "over 64 KiB");
	/* a body over max_body_size, refused before it is sent */
	n = (size_t)sprintf(req, "POST /EchoService/Echo HTTP/1.1\r\nHost: "
				 "h\r\nContent-Length: 5000\r\n\r\n");
	expect_refused(fx, req, n, 413, "over max_body_size=4096");
	/* a chunked body growing over it */
	n = (size_t)sprintf(req, "POST /EchoService/Echo HTTP/1.1\r\nHost: "
				 "h\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "800\r\n");
	memset(req + n, 'a', 2048);
	n += 2048;
	n += (size_t)sprintf(req + n, "\r\n800\r\n");
	memset(req + n, 'a', 2048);
	n += 2048;
	n += (size_t)sprintf(req + n, "\r\n1\r\n");
	expect_refused(fx, req, n, 413, "chunked body is over");
	/* a target over HTTP1_TARGET_MAX */
	n = (size_t)sprintf(req, "GET /");
	memset(req + n, 'p', HTTP1_TARGET_MAX);
	n += HTTP1_TARGET_MAX;
	n += (size_t)sprintf(req + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
	expect_refused(fx, req, n, 414, "too long");
	expect_refused(fx, "GET / HTTP/2.0\r\n\r\n", 18, 505, "HTTP/1.1");
	free(req);
	assert_true(log_has(fx, "HTTP request from 127.0.0.1"));
	down(fx);
}

static void test_deadlines(void **state)
{
	struct fx_cfg cfg = {.http_header_timeout_ms = 300,
			     .http_body_idle_ms = 300,
			     .http_idle_timeout_ms = 300};
	static const char part[] = "POST /EchoService/Echo HTTP/1.1\r\nHost:";
	static const char body_part[] =
	    "POST /EchoService/Echo HTTP/1.1\r\nHost: h\r\nContent-Length: 19"
	    "\r\n\r\n{\"mess";
	struct fx *fx;
	struct cli c;
	size_t len;
	int status;
	char *a;
	int64_t t0;

	(void)state;
	fx = up(&cfg);
	/* a head that never ends (slow loris): 408, then closed */
	t0 = now_ms();
	expect_refused(fx, part, strlen(part), 408, "head did not come");
	assert_true(now_ms() - t0 >= 250);
	/* a body that stops */
	expect_refused(fx, body_part, strlen(body_part), 408,
		       "body stopped coming");
	/* an idle keep-alive connection: closed after its answer */
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, json_req, strlen(json_req)), 0);
	a = read_answer(&c, &len, &status);
	assert_non_null(a);
	free(a);
	cli_expect_closed(&c, "an idle keep-alive connection");
	cli_close(&c);
	down(fx);
}

/* ---- pages --------------------------------------------------------------- */

static int test_set_flag(void *arg, const char *name, const char *value,
			 char *why, size_t why_size)
{
	struct flags *fl = arg;
	unsigned before = flags_ndiag(fl);
	int err = flags_set(fl, name, strlen(name), value, FLAG_SRC_RUNTIME);

	if (err && flags_diag(fl, before))
		snprintf(why, why_size, "%s", flags_diag(fl, before));
	return err;
}

static const char *const levels[] = {"debug", "info", "warn", NULL};
static const struct flag_def page_flags[] = {
    {.name = "lvl",
     .type = FLAG_ENUM,
     .def = "info",
     .choices = levels,
     .help = "a level",
     .runtime = true},
    {.name = "workers",
     .type = FLAG_INT,
     .def = "4",
     .min = 1,
     .max = 64,
     .help = "fixed at start"},
};

static void test_pages(void **state)
{
	struct metrics m;
	struct metrics_counter hs;
	struct flags fl;
	struct fx_cfg cfg = {
	    .metrics = &m, .flags = &fl, .set_flag = test_set_flag};
	struct fx *fx;
	int status;
	char *a;

	(void)state;
	assert_int_equal(metrics_init(&m, NULL), 0);
	metrics_counter_init(&hs);
	assert_int_equal(
	    metrics_register_counter(&m, &hs, "rpcgate_rdma_handshakes_total",
				     "by outcome", "outcome=\"rdma\""),
	    0);
	metrics_counter_add(&hs, 7);
	assert_int_equal(
	    flags_init(&fl, page_flags, ARRAY_SIZE(page_flags), NULL), 0);
	fx = up(&cfg);
	free(call_once(fx, json_req, &status)); /* a call to count */
	a = call_once(fx, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(a, "rpcgate_rdma_handshakes_total{outcome=\""
				  "rdma\"} 7\n"));
	assert_non_null(strstr(a, "rpcgate_method_calls_total{service=\""
				  "example.EchoService\",method=\"Echo\"} 1"));
	free(a);
	a = call_once(fx, "GET /vars/rpcgate_rdma HTTP/1.1\r\nHost: x\r\n\r\n",
		      &status);
	assert_string_equal(body_of(a),
			    "rpcgate_rdma_handshakes_total{outcome=\"rdma\"} 7"
			    "\n");
	free(a);
	a = call_once(fx, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", &status);
	assert_string_equal(a, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
			       "Content-Type: text/plain\r\n\r\n");
	free(a);
	a = call_once(fx, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &status);
	assert_non_null(strstr(a, "[example.EchoService]\n\nEcho (EchoRequest) "
				  "returns (EchoResponse)\ncount: 1\n"));
	assert_non_null(strstr(a, "Mirror (Kitchen) returns (Kitchen)"));
	free(a);
	a = call_once(fx,
		      "GET /status HTTP/1.1\r\nHost: x\r\nAccept: "
		      "text/html,*/*\r\n\r\n",
		      &status);
	assert_non_null(strstr(a, "Content-Type: text/html; charset=utf-8"));
	assert_non_null(strstr(a, "<!doctype html>"));
	assert_non_null(strstr(a, "<td>count</td><td class=\"n\">1</td>"));
	assert_null(strstr(a, "<script"));
	free(a);
	a = call_once(fx, "GET /connections HTTP/1.1\r\nHost: x\r\n\r\n",
		      &status);
	assert_non_null(strstr(a, "peer | protocol | transport"));
	assert_non_null(strstr(a, "127.0.0.1:"));
	assert_non_null(strstr(a, " | http | tcp | "));
	free(a);
	a = call_once(fx,
		      "GET /protobufs/example.Kitchen HTTP/1.1\r\nHost: "
		      "x\r\n\r\n",
		      &status);
	assert_non_null(strstr(a, "  map<string, int32> smap = 19;\n"));
	free(a);
	/* /flags: every flag; a runtime one set; a fixed one refused */
	a = call_once(fx, "GET /flags HTTP/1.1\r\nHost: x\r\n\r\n", &status);
	assert_non_null(strstr(a, "lvl | info | default | info | yes\n"));
	assert_non_null(strstr(a, "workers | 4 | default | 4 | \n"));
	free(a);
	a = call_once(fx,
		      "GET /flags/lvl?setvalue=warn HTTP/1.1\r\nHost: "
		      "x\r\n\r\n",
		      &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(a, "lvl | warn | set at run time (/flags/lvl)"));
	free(a);
	assert_string_equal(flags_str(&fl, "lvl"), "warn");
	a = call_once(fx,
		      "GET /flags/workers?setvalue=8 HTTP/1.1\r\nHost: "
		      "x\r\n\r\n",
		      &status);
	assert_int_equal(status, 403);
	assert_non_null(strstr(a, "cannot change while the server runs"));
	free(a);
	a = call_once(fx,
		      "GET /flags/lvl?setvalue=loud HTTP/1.1\r\nHost: "
		      "x\r\n\r\n",
		      &status);
	assert_int_equal(status, 400);
	assert_non_null(strstr(a, "bad value 'loud' for flag lvl"));
	free(a);
	a = call_once(fx,
		      "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: "
		      "0\r\n\r\n",
		      &status);
	assert_int_equal(status, 405);
	assert_non_null(strstr(a, "Allow: GET, HEAD\r\n"));
	free(a);
	down(fx);
	flags_destroy(&fl);
	metrics_destroy(&m);
}

/* ---- a raw service over baidu_std -------------------------------------- */

static void test_mirror_over_baidu(void **state)
{
	/* Kitchen{req: 5, str: "x"} */
	static const uint8_t wire[] = {0xa8, 0x01, 0x05, 0x62, 0x01, 'x'};
	struct req r = {.service = "example.KitchenService",
			.method = "Mirror",
			.cid = 9,
			.raw = wire,
			.raw_len = sizeof(wire),
			.attachment = "att"};
	struct fx_cfg cfg = {0};
	struct baidu_frame f;
	struct fx *fx;
	struct cli c;

	(void)state;
	fx = up(&cfg);
	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "a mirror call");
	assert_int_equal(f.meta.correlation_id, 9);
	assert_int_equal(f.meta.error_code, 0);
	iobuf_equal_bytes(&f.data, wire, sizeof(wire), "the message");
	iobuf_equal_bytes(&f.attachment, "att", 3, "the attachment");
	baidu_frame_release(&f);
	/* and the method of another service of the set, by its short name */
	r.service = "KitchenService";
	r.cid = 10;
	cli_call(&c, fx, &r, &f, "by the short name");
	assert_int_equal(f.meta.error_code, 0);
	baidu_frame_release(&f);
	cli_close(&c);
	down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_SERVER(test_vectors_as_brpc),
	    TEST_SERVER(test_vectors_fixed),
	    TEST_SERVER(test_not_http),
	    TEST_SERVER(test_keep_alive_many),
	    TEST_SERVER(test_pipelined_in_order),
	    TEST_SERVER(test_byte_at_a_time),
	    TEST_SERVER(test_limits),
	    TEST_SERVER(test_deadlines),
	    TEST_SERVER(test_pages),
	    TEST_SERVER(test_mirror_over_baidu),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
