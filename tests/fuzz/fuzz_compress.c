/*
 * fuzz_compress: compress_decode() of every type on arbitrary bytes, held
 * in an iobuf of many refs, with a small max_out.  The first input byte
 * picks the type (0..5: the four codecs, LZ4, an unknown value) and the
 * second seeds the ref lengths.  Checks:
 * - the answer is 0, -EBADMSG, -EMSGSIZE or -EPROTONOSUPPORT (never
 *   -ENOMEM: nothing fails allocation here), as the type allows;
 * - on success at most max_out bytes were appended after a prefix left in
 *   place, the output re-encodes and decodes back to itself;
 * - on failure the output holds just the prefix;
 * - the pool gets every block back and every allocation is freed.
 */
// fuzz-sources: net/codec/compress.c net/codec/snappy.c net/base/iobuf.c net/base/mem.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/compress.h"

/* Output limit: a few blocks, so bombs hit it fast. */
#define FUZZ_MAX_OUT (64u * 1024)
/* Longest ref the input is cut into. */
#define FUZZ_PIECE_MAX 97
/* Types tried: 0..4 are brpc's, 5 is not a CompressType. */
#define FUZZ_TYPES 6

static const char PREFIX[] = "pre";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_prefix(const struct iobuf *out)
{
	char p[sizeof(PREFIX)];

	if (iobuf_copy_out(out, 0, p, sizeof(PREFIX) - 1) !=
		sizeof(PREFIX) - 1 ||
	    memcmp(p, PREFIX, sizeof(PREFIX) - 1) != 0)
		abort();
}

/* Appends p[0, n) to dst as refs of 1..FUZZ_PIECE_MAX bytes from two
 * copies in turn (so they stay separate refs). */
static void chain(struct iobuf *dst, struct iobuf *a, struct iobuf *b,
		  const uint8_t *p, size_t n, unsigned seed)
{
	size_t off, k;
	int i = 0;

	if (iobuf_append(a, p, n) || iobuf_append(b, p, n))
		abort();
	for (off = 0; off < n; off += k, i++) {
		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 16) % FUZZ_PIECE_MAX;
		if (k > n - off)
			k = n - off;
		if (iobuf_share(dst, i % 2 ? b : a, off, k))
			abort();
	}
}

/* Whether x and y hold the same n bytes. */
static bool same(const struct iobuf *x, const struct iobuf *y, size_t n)
{
	uint8_t *p = malloc(n ? n : 1), *q = malloc(n ? n : 1);
	bool eq;

	if (!p || !q)
		abort();
	eq = iobuf_copy_out(x, 0, p, n) == n &&
	     iobuf_copy_out(y, 0, q, n) == n && memcmp(p, q, n) == 0;
	free(q);
	free(p);
	return eq;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iobuf_pool_options opt;
	struct iobuf in, out, a, b, enc, back;
	struct mem_failing mf;
	struct iobuf_pool pool;
	size_t made;
	int type, r;

	if (size < 2)
		return 0;
	type = data[0] % FUZZ_TYPES;
	mem_failing_init(&mf, -1);
	iobuf_pool_options_default(&opt);
	opt.mem = &mf.mem;
	if (iobuf_pool_init(&pool, &opt))
		abort();
	iobuf_init(&in, &pool);
	iobuf_init(&out, &pool);
	iobuf_init(&a, &pool);
	iobuf_init(&b, &pool);
	iobuf_init(&enc, &pool);
	iobuf_init(&back, &pool);
	chain(&in, &a, &b, data + 2, size - 2, data[1]);
	if (iobuf_append(&out, PREFIX, sizeof(PREFIX) - 1))
		abort();

	r = compress_decode(type, &in, &out, FUZZ_MAX_OUT);
	check_prefix(&out);
	if (!compress_type_supported(type)) {
		if (r != -EPROTONOSUPPORT)
			abort();
	} else if (r == 0) {
		made = iobuf_len(&out) - (sizeof(PREFIX) - 1);
		if (made > FUZZ_MAX_OUT)
			abort();
		iobuf_drop_front(&out, sizeof(PREFIX) - 1);
		if (compress_encode(type, &out, &enc) ||
		    compress_decode(type, &enc, &back, made) ||
		    iobuf_len(&back) != made)
			abort();
		if (!same(&out, &back, made))
			abort();
	} else if (r == -EBADMSG || r == -EMSGSIZE) {
		if (iobuf_len(&out) != sizeof(PREFIX) - 1)
			abort();
	} else {
		abort();
	}

	iobuf_destroy(&in);
	iobuf_destroy(&out);
	iobuf_destroy(&a);
	iobuf_destroy(&b);
	iobuf_destroy(&enc);
	iobuf_destroy(&back);
	if (iobuf_pool_destroy(&pool) || mf.live != 0)
		abort();
	return 0;
}
