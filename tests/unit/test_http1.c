/*
 * test_http1: the HTTP/1.x request codec (net/codec/http1.h): where a
 * head ends, found over buffers cut anywhere and fed a byte at a time;
 * heads parsed, refused with their status, and read against a guard
 * page; chunked bodies taken apart from any cut of their bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

#include <cmocka.h>

#define TEST_TIMEOUT_S 60
#include "testutil.h"

#include "base/iobuf.h"
#include "base/util.h"
#include "codec/http1.h"

static struct iobuf_pool g_pool;

static int setup(void **state)
{
	struct iobuf_pool_options o;

	(void)state;
	iobuf_pool_options_default(&o);
	return iobuf_pool_init(&g_pool, &o);
}

static int teardown(void **state)
{
	(void)state;
	return iobuf_pool_destroy(&g_pool);
}

/* `text` into an iobuf as pieces of `piece` bytes each (separate refs). */
static void fill(struct iobuf *b, const char *text, size_t n, size_t piece)
{
	iobuf_init(b, &g_pool);
	for (size_t i = 0; i < n; i += piece) {
		struct iobuf part;

		iobuf_init(&part, &g_pool);
		assert_int_equal(iobuf_append(&part, text + i,
					      n - i < piece ? n - i : piece),
				 0);
		assert_int_equal(iobuf_append_buf(b, &part), 0);
		iobuf_destroy(&part);
	}
}

static void test_head_end(void **state)
{
	static const char *const heads[] = {
	    "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY",
	    "GET / HTTP/1.1\nHost: a\n\nBODY",
	    "GET / HTTP/1.0\r\n\r\nBODY",
	    "GET / HTTP/1.1\r\nHost: a\n\r\nBODY",
	};

	(void)state;
	for (size_t h = 0; h < ARRAY_SIZE(heads); h++) {
		size_t n = strlen(heads[h]), want = n - 4;

		for (size_t piece = 1; piece <= n; piece++) {
			struct iobuf b;
			size_t scanned = 0;

			fill(&b, heads[h], n, piece);
			assert_int_equal(http1_head_end(&b, &scanned),
					 (ssize_t)want);
			iobuf_destroy(&b);
		}
		/* a byte at a time, the search going on where it was */
		{
			struct iobuf b;
			size_t scanned = 0, i;
			ssize_t r = -EAGAIN;

			iobuf_init(&b, &g_pool);
			for (i = 0; i < n && r == -EAGAIN; i++) {
				assert_int_equal(
				    iobuf_append(&b, heads[h] + i, 1), 0);
				r = http1_head_end(&b, &scanned);
			}
			assert_int_equal(r, (ssize_t)want);
			assert_int_equal(i, want);
			iobuf_destroy(&b);
		}
	}
}

static void test_head_too_big(void **state)
{
	static char big[HTTP1_HEAD_MAX + 16];
	struct iobuf b;
	size_t scanned = 0;

	(void)state;
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'x', sizeof(big) - 19);
	fill(&b, big, HTTP1_HEAD_MAX - 1, 4096);
	assert_int_equal(http1_head_end(&b, &scanned), -EAGAIN);
	iobuf_destroy(&b);
	fill(&b, big, sizeof(big), 4096);
	scanned = 0;
	assert_int_equal(http1_head_end(&b, &scanned), -E2BIG);
	iobuf_destroy(&b);
}

static int parse(const char *text, struct http1_req *r)
{
	return http1_parse_request(text, strlen(text), r);
}

static bool str_is(const struct http1_str *s, const char *want)
{
	return s->n == strlen(want) && !memcmp(s->p, want, s->n);
}

static void test_parse_good(void **state)
{
	static struct http1_req r;
	const char *curl =
	    "POST /example.EchoService/Echo?x=1&y=2 HTTP/1.1\r\nHost: "
	    "127.0.0.1:8000\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
	    "Content-Type: application/json\r\nContent-Length:  19 \r\n\r\n";

	(void)state;
	assert_int_equal(parse(curl, &r), 0);
	assert_true(str_is(&r.method, "POST"));
	assert_true(str_is(&r.path, "/example.EchoService/Echo"));
	assert_true(str_is(&r.query, "x=1&y=2"));
	assert_int_equal(r.minor, 1);
	assert_true(r.has_length && r.content_length == 19);
	assert_true(r.keep_alive);
	assert_false(r.chunked);
	assert_int_equal(r.nfields, 5);
	assert_true(
	    str_is(http1_field(&r, "content-type"), "application/json"));
	assert_true(str_is(http1_field(&r, "CONTENT-LENGTH"), "19"));
	assert_null(http1_field(&r, "cookie"));
	/* HTTP/1.0: closes unless asked; keep-alive on request */
	assert_int_equal(parse("GET /health HTTP/1.0\r\n\r\n", &r), 0);
	assert_false(r.keep_alive);
	assert_int_equal(
	    parse("GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r),
	    0);
	assert_true(r.keep_alive);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: "
			       "TE, close\r\n\r\n",
			       &r),
			 0);
	assert_false(r.keep_alive);
	/* chunked, Expect, an absolute-form target, bare LFs */
	assert_int_equal(parse("POST http://h:1/S/M?q HTTP/1.1\nHost: h\n"
			       "Transfer-Encoding: chunked\nExpect: "
			       "100-continue\n\n",
			       &r),
			 0);
	assert_true(r.chunked && r.expect_continue);
	assert_true(str_is(&r.path, "/S/M"));
	assert_true(str_is(&r.query, "q"));
	assert_int_equal(parse("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", &r),
			 0);
	assert_true(str_is(&r.path, "/"));
	assert_int_equal(r.query.n, 0);
	/* no path: "/" with the query kept, the fragment dropped */
	assert_int_equal(parse("GET http://h?a=1#f HTTP/1.0\n\n", &r), 0);
	assert_true(str_is(&r.path, "/"));
	assert_true(str_is(&r.query, "a=1"));
	assert_int_equal(parse("GET /p#f?x HTTP/1.1\r\nHost: a\r\n\r\n", &r),
			 0);
	assert_true(str_is(&r.path, "/p"));
	assert_int_equal(r.query.n, 0);
	assert_int_equal(parse("GET /p?x#f HTTP/1.1\r\nHost: a\r\n\r\n", &r),
			 0);
	assert_true(str_is(&r.path, "/p"));
	assert_true(str_is(&r.query, "x"));
	/* Accept-Encoding lists */
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: "
			       "deflate, gzip;q=1.0\r\n\r\n",
			       &r),
			 0);
	assert_true(
	    http1_has_token(http1_field(&r, "accept-encoding"), "gzip"));
	assert_false(http1_has_token(http1_field(&r, "accept-encoding"), "br"));
}

static void test_parse_refused(void **state)
{
	static const struct {
		const char *text;
		int status;
		const char *why;
	} bad[] = {
	    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "no target"},
	    {" GET / HTTP/1.1\r\n\r\n", 400, "method and one space"},
	    {"GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400, "absolute URL"},
	    {"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"},
	    {"GET / HTTP/1.1 \r\n\r\n", 400, "HTTP/1.0 or HTTP/1.1"},
	    {"GET / HTTP/1.1\r\n\r\n", 400, "without Host"},
	    {"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n", 400, "folding"},
	    {"GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n", 400,
	     "name and a colon"},
	    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "before the colon"},
	    {"GET / HTTP/1.1\r\nHost: a\r\nA: b\x01\r\n\r\n", 400,
	     "control byte"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400,
	     "not a number"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400,
	     "not a number"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
	     "Content-Length: 2\r\n\r\n",
	     400, "two different"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
	     "Transfer-Encoding: chunked\r\n\r\n",
	     400, "smuggling"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
	     501, "other than chunked"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, "
	     "chunked\r\n\r\n",
	     501, "other than chunked"},
	    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	     "HTTP/1.0"},
	    {"POST / HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n", 417,
	     "Expect"},
	};
	static struct http1_req r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (parse(bad[i].text, &r) != -EBADMSG ||
		    r.status != bad[i].status || !strstr(r.why, bad[i].why))
			fail_msg("'%s': status %d '%s', want %d '%s'",
				 bad[i].text, r.status, r.why ? r.why : "",
				 bad[i].status, bad[i].why);
	}
}

static void test_parse_limits(void **state)
{
	static char big[HTTP1_TARGET_MAX + 64];
	static struct http1_req r;
	char *many;
	size_t n;

	(void)state;
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP1_TARGET_MAX);
	strcpy(big + n + HTTP1_TARGET_MAX, " HTTP/1.1\r\n\r\n");
	assert_int_equal(parse(big, &r), -EBADMSG);
	assert_int_equal(r.status, 414);
	/* fields: the limit is taken, one more is 431 */
	many = malloc(16 * (HTTP1_FIELDS_MAX + 2) + 64);
	assert_non_null(many);
	n = (size_t)sprintf(many, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 1; i < HTTP1_FIELDS_MAX; i++)
		n += (size_t)sprintf(many + n, "X-%d: v\r\n", i);
	strcpy(many + n, "\r\n");
	assert_int_equal(parse(many, &r), 0);
	strcpy(many + n, "X-last: v\r\n\r\n");
	assert_int_equal(parse(many, &r), -EBADMSG);
	assert_int_equal(r.status, 431);
	free(many);
}

/* Every complete head, and every cut of it, read against a guard page:
 * a read past the given bytes faults. */
static void test_parse_guard_page(void **state)
{
	const char *head =
	    "POST /S/M?a=b HTTP/1.1\r\nHost: h\r\nContent-Length:"
	    " 3\r\nConnection: close\r\n\r\n";
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = strlen(head);
	static struct http1_req r;
	char *map;

	(void)state;
	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + page, page, PROT_NONE), 0);
	for (size_t i = 0; i <= n; i++) {
		char *p = map + page - i;
		int rc;

		memcpy(p, head, i);
		rc = http1_parse_request(p, i, &r);
		assert_int_equal(rc, i == n ? 0 : -EBADMSG);
	}
	munmap(map, 2 * page);
}

static void test_detect(void **state)
{
	(void)state;
	assert_int_equal(http1_detect((const uint8_t *)"GET /", 5), 1);
	assert_int_equal(http1_detect((const uint8_t *)"OPTIONS ", 8), 1);
	assert_int_equal(http1_detect((const uint8_t *)"P", 1), 0);
	assert_int_equal(http1_detect((const uint8_t *)"POS", 3), 0);
	assert_int_equal(http1_detect((const uint8_t *)"PRPC", 4), -1);
	assert_int_equal(http1_detect((const uint8_t *)"GARBAGE ", 8), -1);
	assert_int_equal(http1_detect((const uint8_t *)"get /", 5), -1);
	assert_string_equal(http1_reason(413), "Payload Too Large");
	assert_string_equal(http1_reason(299), "Unknown");
}

/* Runs the chunked body in `text` cut into pieces of `piece` bytes. */
static int chunked(const char *text, size_t piece, size_t max,
		   struct iobuf *body, size_t *rest)
{
	struct http1_chunked c;
	struct iobuf in;
	size_t n = strlen(text);
	int r = 0;

	http1_chunked_init(&c);
	iobuf_init(&in, &g_pool);
	iobuf_init(body, &g_pool);
	for (size_t i = 0; i < n && r == 0; i += piece) {
		assert_int_equal(
		    iobuf_append(&in, text + i, n - i < piece ? n - i : piece),
		    0);
		r = http1_chunked_step(&c, &in, body, max);
	}
	*rest = iobuf_len(&in);
	iobuf_destroy(&in);
	return r;
}

static void test_chunked(void **state)
{
	const char *good = "5\r\n{\"mes\r\ne;ext=1\r\nsage\":\"hello\"}\r\n"
			   "0\r\nTrailer: x\r\n\r\nNEXT";
	static const struct {
		const char *text;
		int r;
	} bad[] = {
	    {"z\r\n", -EBADMSG},
	    {"5\r\nabcdeX\r\n", -EBADMSG},
	    {"5 junk\r\nabcde\r\n", -EBADMSG},
	    {"ffffffffffffffff\r\n", -EBADMSG},
	    {"\r\n", -EBADMSG},
	    {"40\r\n", -EMSGSIZE},
	};
	struct iobuf body;
	char got[64];
	size_t rest;

	(void)state;
	for (size_t piece = 1; piece <= strlen(good); piece++) {
		assert_int_equal(chunked(good, piece, 1024, &body, &rest), 1);
		assert_int_equal(iobuf_len(&body), 19);
		iobuf_copy_out(&body, 0, got, 19);
		assert_memory_equal(got, "{\"message\":\"hello\"}", 19);
		/* the next request's bytes stay (those that came) */
		assert_true(rest <= 4);
		iobuf_destroy(&body);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = chunked(bad[i].text, 64, 32, &body, &rest);

		if (r != bad[i].r)
			fail_msg("'%s': %d, want %d", bad[i].text, r, bad[i].r);
		iobuf_destroy(&body);
	}
	/* a body growing past max over many chunks */
	assert_int_equal(chunked("10\r\n0123456789abcdef\r\n10\r\n0123456789"
				 "abcdef\r\n10\r\n",
				 64, 40, &body, &rest),
			 -EMSGSIZE);
	iobuf_destroy(&body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_head_end),
	    TEST_BOUNDED(test_head_too_big),
	    TEST_BOUNDED(test_parse_good),
	    TEST_BOUNDED(test_parse_refused),
	    TEST_BOUNDED(test_parse_limits),
	    TEST_BOUNDED(test_parse_guard_page),
	    TEST_BOUNDED(test_detect),
	    TEST_BOUNDED(test_chunked),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
