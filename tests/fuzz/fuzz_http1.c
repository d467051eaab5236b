/*
 * fuzz_http1: the HTTP/1.x request codec on arbitrary bytes.  Checks: no
 * crash and no read past the input (ASan); a parsed head's strings lie
 * in the input (an absolute URL with no path has the path "/"), its
 * path starts with '/', its version is 1.0 or 1.1; a
 * refusal has a status and a reason; the end of a head is found at the
 * same place whether the bytes come in one piece or two; a chunked body
 * decodes to the same bytes and verdict in one piece or cut in two, and
 * its data never passes the limit.  Detection of a prefix is 0 or the
 * answer for the whole.
 */
// fuzz-sources: net/codec/http1.c net/base/iobuf.c net/base/fbuf.c net/base/mem.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http1.h"

static struct iobuf_pool pool;
static struct http1_req req;

static bool inside(const struct http1_str *s, const uint8_t *p, size_t n)
{
	return !s->n || ((const uint8_t *)s->p >= p &&
			 (const uint8_t *)s->p + s->n <= p + n);
}

static void check_parse(const uint8_t *data, size_t size)
{
	int r = http1_parse_request((const char *)data, size, &req);

	if (r == -EBADMSG) {
		if (!req.why || req.status < 400 || req.status > 505)
			abort();
		return;
	}
	if (r != 0)
		abort();
	if (!inside(&req.method, data, size) ||
	    (!inside(&req.path, data, size) &&
	     !(req.path.n == 1 && req.path.p[0] == '/')) ||
	    !inside(&req.query, data, size) ||
	    req.path.n < 1 || req.path.p[0] != '/' ||
	    (req.minor != 0 && req.minor != 1) || req.head_len > size ||
	    (req.chunked && req.has_length))
		abort();
	for (unsigned i = 0; i < req.nfields; i++)
		if (!inside(&req.fields[i].name, data, size) ||
		    !inside(&req.fields[i].value, data, size))
			abort();
}

static void two_pieces(struct iobuf *b, const uint8_t *data, size_t size,
		       size_t cut)
{
	struct iobuf tail;

	iobuf_init(b, &pool);
	iobuf_init(&tail, &pool);
	if (iobuf_append(b, data, cut) ||
	    iobuf_append(&tail, data + cut, size - cut) ||
	    iobuf_append_buf(b, &tail))
		abort();
	iobuf_destroy(&tail);
}

static void check_head_end(const uint8_t *data, size_t size)
{
	struct iobuf one, two;
	size_t s1 = 0, s2 = 0;
	ssize_t a, b;

	two_pieces(&one, data, size, size);
	two_pieces(&two, data, size, size / 2);
	a = http1_head_end(&one, &s1);
	b = http1_head_end(&two, &s2);
	if (a != b || (a > 0 && (size_t)a > size))
		abort();
	iobuf_destroy(&one);
	iobuf_destroy(&two);
}

static int chunked(const uint8_t *data, size_t size, size_t cut,
		   struct iobuf *body)
{
	struct http1_chunked c;
	struct iobuf in;
	int r;

	http1_chunked_init(&c);
	iobuf_init(&in, &pool);
	iobuf_init(body, &pool);
	if (iobuf_append(&in, data, cut))
		abort();
	r = http1_chunked_step(&c, &in, body, 4096);
	if (r == 0) {
		if (iobuf_append(&in, data + cut, size - cut))
			abort();
		r = http1_chunked_step(&c, &in, body, 4096);
	}
	if (iobuf_len(body) > 4096)
		abort();
	iobuf_destroy(&in);
	return r;
}

static void check_chunked(const uint8_t *data, size_t size)
{
	struct iobuf a, b;
	int ra = chunked(data, size, size, &a);
	int rb = chunked(data, size, size / 2, &b);
	uint8_t x[256], y[256];
	size_t n = iobuf_len(&a) < sizeof(x) ? iobuf_len(&a) : sizeof(x);

	if (ra != 0 && ra != 1 && ra != -EBADMSG && ra != -EMSGSIZE)
		abort();
	if (ra != rb || (ra == 1 && iobuf_len(&a) != iobuf_len(&b)))
		abort();
	if (ra == 1) {
		iobuf_copy_out(&a, 0, x, n);
		iobuf_copy_out(&b, 0, y, n);
		if (memcmp(x, y, n))
			abort();
	}
	iobuf_destroy(&a);
	iobuf_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	size_t half = size / 2;
	int d = http1_detect(data, size < 8 ? size : 8);
	int dp = http1_detect(data, half < 8 ? half : 8);

	if (!ready) {
		struct iobuf_pool_options o;

		iobuf_pool_options_default(&o);
		if (iobuf_pool_init(&pool, &o))
			abort();
		ready = true;
	}
	if (dp != 0 && dp != d)
		abort();
	check_parse(data, size);
	check_head_end(data, size);
	check_chunked(data, size);
	return 0;
}
