/*
 * iobuf tests.  Every test ends with the pool destroyed (0, i.e. every
 * block back) and no live allocation in its struct mem_failing.
 */
#define _GNU_SOURCE /* pipe2 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/iobuf.h"

#define CAP IOBUF_BLOCK_CAP
/* Largest buffer the model test lets grow: keeps each step's check cheap. */
#define MODEL_MAX (96 * 1024)
/* Model test: sequences x steps, fixed seeds; ~2 s under ASan. */
#define MODEL_SEQS  4000
#define MODEL_STEPS 40
/* Allocation sweep gives up past this many failure points. */
#define SWEEP_MAX 500

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic across libcs, unlike rand(). */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static size_t rng_below(uint64_t *s, size_t n)
{
	return n ? (size_t)(rng_next(s) % n) : 0;
}

static void pattern(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(rng_next(&s) >> 56);
}

static size_t blocks_for(size_t n)
{
	return (n + CAP - 1) / CAP;
}

/* Length, content and ref invariants of buf against a flat copy. */
static void check_buf(const struct iobuf *buf, const unsigned char *want,
		      size_t len)
{
	const void *p;
	size_t i, n, total = 0;

	assert_int_equal(iobuf_len(buf), len);
	for (i = 0; i < iobuf_ref_count(buf); i++) {
		assert_int_equal(iobuf_ref_at(buf, i, &p, &n), 0);
		assert_true(n > 0 && n <= CAP);
		assert_true(total + n <= len);
		assert_true(memcmp(p, want + total, n) == 0);
		total += n;
	}
	assert_int_equal(total, len);
	assert_int_equal(iobuf_ref_at(buf, i, &p, &n), -ERANGE);
	assert_null(iobuf_ref_block(buf, i));
}

static const unsigned char *ref_ptr(const struct iobuf *buf, size_t i)
{
	const void *p;
	size_t n;

	assert_int_equal(iobuf_ref_at(buf, i, &p, &n), 0);
	return p;
}

static uint32_t ref_refcount(const struct iobuf *buf, size_t i)
{
	return iobuf_block_refcount(iobuf_ref_block(buf, i));
}

static size_t pool_used(struct iobuf_pool *pool)
{
	struct iobuf_pool_stats st;

	iobuf_pool_stats(pool, &st);
	return st.blocks_total - st.blocks_free;
}

/* --- fixture: a counted allocator, a pool, three buffers ---------------- */

struct fx {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct iobuf a, b, c;
	unsigned char *ma, *mb; /* scratch models */
};

static int fx_setup_with(void **state, const struct iobuf_pool_options *o)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct iobuf_pool_options opt;

	if (!f)
		return -1;
	mem_failing_init(&f->mf, -1);
	if (o)
		opt = *o;
	else
		iobuf_pool_options_default(&opt);
	opt.mem = &f->mf.mem;
	if (iobuf_pool_init(&f->pool, &opt)) {
		free(f);
		return -1;
	}
	iobuf_init(&f->a, &f->pool);
	iobuf_init(&f->b, &f->pool);
	iobuf_init(&f->c, &f->pool);
	f->ma = malloc(4 * MODEL_MAX);
	f->mb = malloc(4 * MODEL_MAX);
	*state = f;
	return f->ma && f->mb ? 0 : -1;
}

static int fx_setup(void **state)
{
	return fx_setup_with(state, NULL);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	iobuf_destroy(&f->a);
	iobuf_destroy(&f->b);
	iobuf_destroy(&f->c);
	assert_int_equal(iobuf_pool_destroy(&f->pool), 0);
	assert_int_equal(f->mf.live, 0);
	free(f->ma);
	free(f->mb);
	free(f);
	return 0;
}

/* Appends n pattern bytes to buf and to model m (at offset *mlen). */
static void put(struct iobuf *buf, unsigned char *m, size_t *mlen, size_t n,
		uint64_t seed)
{
	pattern(m + *mlen, n, seed);
	assert_int_equal(iobuf_append(buf, m + *mlen, n), 0);
	*mlen += n;
}

static void rec_free(void *ctx, void *base, size_t bytes, void *cookie);

/* --- options, pool, layout ----------------------------------------------- */

static void test_options(void **state)
{
	struct iobuf_pool_options opt;
	struct iobuf_pool pool;
	struct iobuf_pool_stats st;

	(void)state;
	iobuf_pool_options_default(&opt);
	assert_int_equal(opt.region_blocks, IOBUF_REGION_BLOCKS);
	assert_int_equal(iobuf_pool_options_validate(&opt), 0);
	opt.region_blocks = 0;
	assert_int_equal(iobuf_pool_options_validate(&opt), -EINVAL);
	assert_int_equal(iobuf_pool_init(&pool, &opt), -EINVAL);
	opt.region_blocks = IOBUF_REGION_BLOCKS_MAX + 1;
	assert_int_equal(iobuf_pool_options_validate(&opt), -EINVAL);
	iobuf_pool_options_default(&opt);
	opt.region.free = rec_free; /* without alloc */
	assert_int_equal(iobuf_pool_options_validate(&opt), -EINVAL);
	iobuf_pool_options_default(&opt);
	opt.max_regions = 1;
	opt.prealloc_regions = 2;
	assert_int_equal(iobuf_pool_options_validate(&opt), -EINVAL);

	assert_int_equal(iobuf_pool_init(&pool, NULL), 0);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 0);
	assert_int_equal(st.blocks_total, 0);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

static void test_layout(void **state)
{
	struct fx *f = *state;
	struct iobuf_region_info ri;
	struct iobuf_pool_stats st;
	const unsigned char *p;

	assert_int_equal(CAP, 8160);
	assert_int_equal(IOBUF_BLOCK_SIZE - CAP, 32);
	assert_int_equal(iobuf_append(&f->a, "x", 1), 0);
	iobuf_pool_stats(&f->pool, &st);
	assert_int_equal(st.regions, 1);
	assert_int_equal(st.blocks_total, IOBUF_REGION_BLOCKS);
	assert_int_equal(st.blocks_free, IOBUF_REGION_BLOCKS - 1);
	iobuf_block_region(iobuf_ref_block(&f->a, 0), &ri);
	assert_int_equal(ri.bytes, IOBUF_REGION_BLOCKS * IOBUF_BLOCK_SIZE);
	assert_null(ri.cookie);
	p = ref_ptr(&f->a, 0);
	assert_true(p > (unsigned char *)ri.base);
	assert_true(p < (unsigned char *)ri.base + ri.bytes);
	assert_int_equal((p - (unsigned char *)ri.base) % IOBUF_BLOCK_SIZE,
			 IOBUF_BLOCK_HDR);
	assert_int_equal(ref_refcount(&f->a, 0), 1);
}

static void test_pool_busy(void **state)
{
	struct fx *f = *state;

	assert_int_equal(iobuf_append(&f->a, "x", 1), 0);
	assert_int_equal(iobuf_pool_destroy(&f->pool), -EBUSY);
	assert_int_equal(pool_used(&f->pool), 1);
	iobuf_reset(&f->a);
	assert_int_equal(pool_used(&f->pool), 0);
}

/* --- single operations --------------------------------------------------- */

static void test_append_small(void **state)
{
	struct fx *f = *state;

	assert_int_equal(iobuf_append(&f->a, NULL, 0), 0);
	assert_true(iobuf_empty(&f->a));
	assert_int_equal(iobuf_append(&f->a, "hello", 5), 0);
	assert_int_equal(iobuf_append(&f->a, " world", 6), 0);
	check_buf(&f->a, (const unsigned char *)"hello world", 11);
	assert_int_equal(iobuf_ref_count(&f->a), 1);
	assert_int_equal(iobuf_block_count(&f->a), 1);
	assert_int_equal(pool_used(&f->pool), 1);
}

static void test_append_boundaries(void **state)
{
	static const size_t sizes[] = {1,	    CAP - 1,	 CAP,
				       CAP + 1,	    2 * CAP - 1, 2 * CAP,
				       2 * CAP + 1, 3 * CAP + 5};
	struct fx *f = *state;
	size_t i, j, len;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* One append. */
		len = 0;
		put(&f->a, f->ma, &len, sizes[i], i);
		check_buf(&f->a, f->ma, len);
		assert_int_equal(iobuf_block_count(&f->a), blocks_for(len));
		/* Then one more byte: fills the tail or takes a block. */
		put(&f->a, f->ma, &len, 1, i + 100);
		check_buf(&f->a, f->ma, len);
		assert_int_equal(iobuf_block_count(&f->a), blocks_for(len));
		assert_int_equal(pool_used(&f->pool), blocks_for(len));
		iobuf_reset(&f->a);
		assert_int_equal(pool_used(&f->pool), 0);
	}
	/* Byte by byte across a boundary: blocks stay full. */
	len = 0;
	for (j = 0; j < CAP + 1; j++)
		put(&f->a, f->ma, &len, 1, j);
	check_buf(&f->a, f->ma, len);
	assert_int_equal(iobuf_ref_count(&f->a), 2);
}

static void test_cut(void **state)
{
	struct fx *f = *state;
	const unsigned char *blk1;
	size_t len = 0;

	put(&f->a, f->ma, &len, 20000, 1);
	assert_int_equal(iobuf_cut(&f->a, &f->b, 0), 0);
	assert_int_equal(iobuf_cut(&f->a, &f->b, 20001), -ERANGE);
	assert_int_equal(iobuf_cut(&f->a, &f->a, 1), -EINVAL);
	check_buf(&f->a, f->ma, 20000);
	assert_true(iobuf_empty(&f->b));

	/* Exactly one block: moved, not shared. */
	assert_int_equal(iobuf_cut(&f->a, &f->b, CAP), 0);
	check_buf(&f->b, f->ma, CAP);
	check_buf(&f->a, f->ma + CAP, 20000 - CAP);
	assert_int_equal(ref_refcount(&f->b, 0), 1);
	blk1 = ref_ptr(&f->a, 0);

	/* Inside a block: split, both hold it. */
	assert_int_equal(iobuf_cut(&f->a, &f->b, 100), 0);
	check_buf(&f->b, f->ma, CAP + 100);
	check_buf(&f->a, f->ma + CAP + 100, 20000 - CAP - 100);
	assert_ptr_equal(ref_ptr(&f->b, 1), blk1);
	assert_ptr_equal(ref_ptr(&f->a, 0), blk1 + 100);
	assert_int_equal(ref_refcount(&f->b, 1), 2);

	/* The rest: the two halves of block 1 merge back into one ref. */
	assert_int_equal(iobuf_cut(&f->a, &f->b, iobuf_len(&f->a)), 0);
	check_buf(&f->b, f->ma, 20000);
	assert_true(iobuf_empty(&f->a));
	assert_int_equal(iobuf_ref_count(&f->b), 3);
	assert_int_equal(ref_refcount(&f->b, 1), 1);
	assert_int_equal(pool_used(&f->pool), 3);
}

static void test_share(void **state)
{
	struct fx *f = *state;
	size_t len = 0;

	put(&f->a, f->ma, &len, 20000, 2);
	assert_int_equal(iobuf_share(&f->b, &f->a, 0, 0), 0);
	assert_int_equal(iobuf_share(&f->b, &f->a, 20000, 0), 0);
	assert_int_equal(iobuf_share(&f->b, &f->a, 20000, 1), -ERANGE);
	assert_int_equal(iobuf_share(&f->b, &f->a, 20001, 0), -ERANGE);
	assert_int_equal(iobuf_share(&f->b, &f->a, SIZE_MAX, 2), -ERANGE);
	assert_int_equal(iobuf_share(&f->b, &f->a, 1, SIZE_MAX), -ERANGE);
	assert_true(iobuf_empty(&f->b));

	/* Across a block boundary: two refs into a's blocks, no copy. */
	assert_int_equal(iobuf_share(&f->b, &f->a, CAP - 60, 400), 0);
	check_buf(&f->b, f->ma + CAP - 60, 400);
	check_buf(&f->a, f->ma, 20000);
	assert_ptr_equal(ref_ptr(&f->b, 0), ref_ptr(&f->a, 0) + CAP - 60);
	assert_ptr_equal(ref_ptr(&f->b, 1), ref_ptr(&f->a, 1));
	assert_int_equal(ref_refcount(&f->a, 0), 2);
	assert_int_equal(ref_refcount(&f->a, 1), 2);
	assert_int_equal(ref_refcount(&f->a, 2), 1);
	assert_int_equal(pool_used(&f->pool), 3);

	/* Into itself. */
	assert_int_equal(iobuf_share(&f->a, &f->a, 0, 20000), 0);
	memcpy(f->ma + 20000, f->ma, 20000);
	check_buf(&f->a, f->ma, 40000);
	assert_int_equal(ref_refcount(&f->a, 0), 3);
	iobuf_reset(&f->b);
	iobuf_drop_back(&f->a, 20000);
	assert_int_equal(ref_refcount(&f->a, 0), 1);
}

static void test_drop(void **state)
{
	struct fx *f = *state;
	size_t len = 0;

	assert_int_equal(iobuf_drop_front(&f->a, 5), 0);
	assert_int_equal(iobuf_drop_back(&f->a, 5), 0);
	put(&f->a, f->ma, &len, 3 * CAP + 10, 3);
	assert_int_equal(iobuf_drop_front(&f->a, 100), 100);
	check_buf(&f->a, f->ma + 100, len - 100);
	assert_int_equal(iobuf_drop_front(&f->a, CAP - 100), CAP - 100);
	check_buf(&f->a, f->ma + CAP, len - CAP);
	assert_int_equal(pool_used(&f->pool), 3);
	assert_int_equal(iobuf_drop_back(&f->a, 11), 11);
	check_buf(&f->a, f->ma + CAP, 2 * CAP - 1);
	assert_int_equal(pool_used(&f->pool), 2);
	assert_int_equal(iobuf_drop_back(&f->a, CAP), CAP);
	check_buf(&f->a, f->ma + CAP, CAP - 1);
	assert_int_equal(iobuf_drop_front(&f->a, SIZE_MAX), CAP - 1);
	assert_true(iobuf_empty(&f->a));
	assert_int_equal(iobuf_ref_count(&f->a), 0);
	assert_int_equal(pool_used(&f->pool), 0);
}

static void test_copy_peek_iov(void **state)
{
	struct fx *f = *state;
	unsigned char tmp[300], out[300];
	struct iovec iov[4];
	const unsigned char *p;
	size_t len = 0;

	put(&f->a, f->ma, &len, 2 * CAP + 50, 4);
	assert_int_equal(iobuf_copy_out(&f->a, 0, out, 10), 10);
	assert_memory_equal(out, f->ma, 10);
	assert_int_equal(iobuf_copy_out(&f->a, CAP - 150, out, 300), 300);
	assert_memory_equal(out, f->ma + CAP - 150, 300);
	assert_int_equal(iobuf_copy_out(&f->a, len - 7, out, 300), 7);
	assert_memory_equal(out, f->ma + len - 7, 7);
	assert_int_equal(iobuf_copy_out(&f->a, len, out, 1), 0);

	/* Within one ref: a pointer into the block. */
	p = iobuf_peek(&f->a, CAP + 5, 200, tmp);
	assert_ptr_equal(p, ref_ptr(&f->a, 1) + 5);
	p = iobuf_peek(&f->a, CAP - 200, 200, tmp);
	assert_ptr_equal(p, ref_ptr(&f->a, 0) + CAP - 200);
	/* Across refs: copied into tmp. */
	p = iobuf_peek(&f->a, CAP - 100, 300, tmp);
	assert_ptr_equal(p, tmp);
	assert_memory_equal(tmp, f->ma + CAP - 100, 300);
	assert_null(iobuf_peek(&f->a, len - 10, 11, tmp));
	assert_null(iobuf_peek(&f->a, SIZE_MAX, 2, tmp));
	assert_non_null(iobuf_peek(&f->a, len, 0, tmp));

	assert_int_equal(iobuf_iov(&f->a, iov, 4), 3);
	assert_ptr_equal(iov[2].iov_base, ref_ptr(&f->a, 2));
	assert_int_equal(iov[2].iov_len, 50);
	assert_int_equal(iobuf_iov(&f->a, iov, 2), 2);
	assert_int_equal(iov[1].iov_len, CAP);
	assert_int_equal(iobuf_iov(&f->b, iov, 4), 0);
}

static void test_append_buf(void **state)
{
	struct fx *f = *state;
	size_t la = 0, lb = 0, i, nrefs;
	uint32_t rc;

	put(&f->a, f->ma, &la, 100, 5);
	assert_int_equal(iobuf_append_buf(&f->a, &f->a), -EINVAL);
	assert_int_equal(iobuf_append_buf(&f->a, &f->b), 0);
	check_buf(&f->a, f->ma, 100);
	put(&f->b, f->mb, &lb, CAP + 1, 6);
	assert_int_equal(iobuf_append_buf(&f->a, &f->b), 0);
	memcpy(f->ma + la, f->mb, lb);
	la += lb;
	check_buf(&f->a, f->ma, la);
	assert_true(iobuf_empty(&f->b));
	assert_int_equal(iobuf_ref_count(&f->b), 0);
	assert_int_equal(iobuf_ref_count(&f->a), 3);

	/* Into an empty buffer: takes the heap ref array as it is. */
	for (i = 0; i < 10; i++)
		assert_int_equal(iobuf_share(&f->a, &f->a, 2 * i, 1), 0);
	for (i = 0; i < 10; i++)
		f->ma[la + i] = f->ma[2 * i];
	la += 10;
	assert_non_null(f->a.heap);
	assert_int_equal(iobuf_append_buf(&f->c, &f->a), 0);
	check_buf(&f->c, f->ma, la);
	assert_true(iobuf_empty(&f->a));
	assert_null(f->a.heap);

	/* Pieces that continue each other merge back. */
	nrefs = iobuf_ref_count(&f->c);
	rc = ref_refcount(&f->c, 0);
	assert_int_equal(iobuf_cut(&f->c, &f->b, 50), 0);
	assert_int_equal(ref_refcount(&f->c, 0), rc + 1);
	assert_int_equal(iobuf_append_buf(&f->b, &f->c), 0);
	check_buf(&f->b, f->ma, la);
	assert_int_equal(iobuf_ref_count(&f->b), nrefs);
	assert_int_equal(ref_refcount(&f->b, 0), rc);
}

static void test_no_copy_and_tail(void **state)
{
	struct fx *f = *state;
	const unsigned char *blk;

	/* A tail block the chain shares is never written past. */
	assert_int_equal(iobuf_append(&f->a, "abc", 3), 0);
	blk = ref_ptr(&f->a, 0);
	assert_int_equal(iobuf_share(&f->b, &f->a, 0, 3), 0);
	assert_ptr_equal(ref_ptr(&f->b, 0), blk);
	assert_int_equal(ref_refcount(&f->a, 0), 2);
	assert_int_equal(iobuf_append(&f->a, "def", 3), 0);
	assert_int_equal(iobuf_block_count(&f->a), 2);
	check_buf(&f->a, (const unsigned char *)"abcdef", 6);
	check_buf(&f->b, (const unsigned char *)"abc", 3);
	/* b's view ends at the write position but b is not the sole holder. */
	assert_int_equal(iobuf_append(&f->b, "XYZ", 3), 0);
	check_buf(&f->b, (const unsigned char *)"abcXYZ", 6);
	check_buf(&f->a, (const unsigned char *)"abcdef", 6);
	assert_int_equal(iobuf_block_count(&f->b), 2);
	iobuf_reset(&f->b);
	assert_int_equal(ref_refcount(&f->a, 0), 1);

	/* Sole holder again: a's tail block fills up in place. */
	assert_int_equal(iobuf_append(&f->a, "g", 1), 0);
	assert_int_equal(iobuf_block_count(&f->a), 2);
	check_buf(&f->a, (const unsigned char *)"abcdefg", 7);

	/* Cut moves the block: b now holds it alone and may fill it. */
	assert_int_equal(iobuf_cut(&f->a, &f->b, 3), 0);
	assert_int_equal(iobuf_cut(&f->a, &f->c, 4), 0);
	assert_int_equal(iobuf_append(&f->c, "h", 1), 0);
	assert_int_equal(iobuf_block_count(&f->c), 1);
	check_buf(&f->c, (const unsigned char *)"defgh", 5);

	/* A ref that stops short of the write position takes a new block. */
	assert_int_equal(iobuf_drop_back(&f->c, 2), 2);
	assert_int_equal(iobuf_append(&f->c, "i", 1), 0);
	assert_int_equal(iobuf_block_count(&f->c), 2);
	check_buf(&f->c, (const unsigned char *)"defi", 4);
}

static void test_ref_array(void **state)
{
	struct fx *f = *state;
	size_t len = 0, i, mlen = 0;

	put(&f->a, f->ma, &len, CAP, 7);
	/* 1000 one-byte views that cannot merge: ref array on the heap. */
	for (i = 0; i < 1000; i++) {
		assert_int_equal(iobuf_share(&f->b, &f->a, 2 * i, 1), 0);
		f->mb[mlen++] = f->ma[2 * i];
	}
	assert_int_equal(iobuf_ref_count(&f->b), 1000);
	assert_int_equal(iobuf_block_count(&f->b), 1);
	check_buf(&f->b, f->mb, mlen);
	assert_int_equal(ref_refcount(&f->a, 0), 1001);

	/* Queue pattern: the array compacts instead of growing. */
	for (i = 0; i < 20000; i++) {
		assert_int_equal(iobuf_share(&f->b, &f->a, 2 * (i % 3000), 1),
				 0);
		assert_int_equal(iobuf_drop_front(&f->b, 1), 1);
	}
	assert_int_equal(iobuf_ref_count(&f->b), 1000);
	assert_true(f->b.cap <= 4096);
	iobuf_drop_front(&f->b, 999);
	assert_int_equal(ref_refcount(&f->a, 0), 2);
}

/* --- randomized model test ----------------------------------------------- */

struct model {
	struct iobuf *buf;
	unsigned char *m;
	size_t len;
};

static size_t rand_size(uint64_t *s)
{
	switch (rng_below(s, 10)) {
	case 0:
		return CAP - 1 + rng_below(s, 3);
	case 1:
	case 2:
		return rng_below(s, 20 * 1024);
	default:
		return rng_below(s, 300);
	}
}

static void model_step(struct model *x, struct model *y, uint64_t *s,
		       unsigned char *scratch)
{
	size_t off, n;
	const unsigned char *p;

	switch (rng_below(s, 9)) {
	case 0:
	case 1:
		n = rand_size(s);
		if (n > MODEL_MAX - x->len)
			n = MODEL_MAX - x->len;
		pattern(x->m + x->len, n, rng_next(s));
		assert_int_equal(iobuf_append(x->buf, x->m + x->len, n), 0);
		x->len += n;
		break;
	case 2:
		n = rng_below(s, x->len + 2);
		if (n <= x->len && y->len + n > MODEL_MAX)
			break;
		if (n > x->len) {
			assert_int_equal(iobuf_cut(x->buf, y->buf, n), -ERANGE);
			break;
		}
		assert_int_equal(iobuf_cut(x->buf, y->buf, n), 0);
		memcpy(y->m + y->len, x->m, n);
		memmove(x->m, x->m + n, x->len - n);
		y->len += n;
		x->len -= n;
		break;
	case 3:
		if (rng_below(s, 4) == 0)
			y = x; /* share into itself */
		off = rng_below(s, x->len + 1);
		n = rng_below(s, x->len - off + 1);
		if (y->len + n > MODEL_MAX)
			n = 0;
		assert_int_equal(iobuf_share(y->buf, x->buf, off, n), 0);
		memmove(y->m + y->len, x->m + off, n);
		y->len += n;
		break;
	case 4:
		n = rng_below(s, x->len + 100);
		assert_int_equal(iobuf_drop_front(x->buf, n),
				 n < x->len ? n : x->len);
		n = n < x->len ? n : x->len;
		memmove(x->m, x->m + n, x->len - n);
		x->len -= n;
		break;
	case 5:
		n = rng_below(s, x->len + 100);
		assert_int_equal(iobuf_drop_back(x->buf, n),
				 n < x->len ? n : x->len);
		x->len -= n < x->len ? n : x->len;
		break;
	case 6:
		if (x->len + y->len > MODEL_MAX)
			break;
		assert_int_equal(iobuf_append_buf(y->buf, x->buf), 0);
		memcpy(y->m + y->len, x->m, x->len);
		y->len += x->len;
		x->len = 0;
		break;
	case 7:
		off = rng_below(s, x->len + 1);
		n = rng_below(s, x->len - off + 1);
		p = iobuf_peek(x->buf, off, n, scratch);
		assert_non_null(p);
		assert_true(memcmp(p, x->m + off, n) == 0);
		assert_int_equal(iobuf_copy_out(x->buf, off, scratch, n), n);
		assert_true(memcmp(scratch, x->m + off, n) == 0);
		break;
	default:
		if (rng_below(s, 8) == 0) {
			iobuf_reset(x->buf);
			x->len = 0;
		}
		break;
	}
}

static void test_model_random(void **state)
{
	struct fx *f = *state;
	struct model m[2] = {{&f->a, f->ma, 0}, {&f->b, f->mb, 0}};
	unsigned char *scratch = malloc(MODEL_MAX);
	uint64_t s;
	int seq, step, i;

	assert_non_null(scratch);
	for (seq = 0; seq < MODEL_SEQS; seq++) {
		s = 0x5eed0000ULL + (uint64_t)seq;
		for (step = 0; step < MODEL_STEPS; step++) {
			i = (int)rng_below(&s, 2);
			model_step(&m[i], &m[1 - i], &s, scratch);
			check_buf(&f->a, m[0].m, m[0].len);
			check_buf(&f->b, m[1].m, m[1].len);
		}
		iobuf_reset(&f->a);
		iobuf_reset(&f->b);
		m[0].len = 0;
		m[1].len = 0;
		assert_int_equal(pool_used(&f->pool), 0);
	}
	free(scratch);
}

/* --- file descriptors ---------------------------------------------------- */

static void test_fd_basic(void **state)
{
	struct fx *f = *state;
	int sv[2];

	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 100), -EAGAIN);
	assert_true(iobuf_empty(&f->a));
	assert_int_equal(pool_used(&f->pool), 0);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 0), -EINVAL);
	assert_int_equal(iobuf_write_fd(&f->a, sv[0]), 0);

	assert_int_equal(iobuf_append(&f->b, "hello", 5), 0);
	assert_int_equal(iobuf_write_fd(&f->b, sv[0]), 5);
	assert_true(iobuf_empty(&f->b));
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 3), 3);
	check_buf(&f->a, (const unsigned char *)"hel", 3);
	/* The second read lands in the tail block's free space. */
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 100), 2);
	check_buf(&f->a, (const unsigned char *)"hello", 5);
	assert_int_equal(iobuf_ref_count(&f->a), 1);
	assert_int_equal(pool_used(&f->pool), 1);

	/* EOF, then a write to the closed peer: -EPIPE, no SIGPIPE. */
	close(sv[0]);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 100), 0);
	check_buf(&f->a, (const unsigned char *)"hello", 5);
	assert_int_equal(pool_used(&f->pool), 1);
	assert_int_equal(iobuf_append(&f->b, "x", 1), 0);
	assert_int_equal(iobuf_write_fd(&f->b, sv[1]), -EPIPE);
	check_buf(&f->b, (const unsigned char *)"x", 1);
	close(sv[1]);

	assert_int_equal(iobuf_read_fd(&f->a, -1, 10), -EBADF);
	assert_int_equal(iobuf_write_fd(&f->b, -1), -EBADF);
	assert_int_equal(pool_used(&f->pool), 2);
}

/* A read offers few blocks first, more only when those filled: all that
 * is there comes in one call, and nothing offered is lost or kept. */
static void test_fd_two_phase(void **state)
{
	struct fx *f = *state;
	size_t big = 5 * CAP + 17, exact = IOBUF_READ_FIRST_BLOCKS * CAP;
	unsigned char *m = malloc(big);
	int sv[2];

	assert_non_null(m);
	for (size_t i = 0; i < big; i++)
		m[i] = (unsigned char)(i * 7 + (i >> 8));
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(write(sv[0], m, big), (ssize_t)big);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 64 * CAP), (ssize_t)big);
	check_buf(&f->a, m, big);
	assert_int_equal(pool_used(&f->pool), 6);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 64 * CAP), -EAGAIN);
	iobuf_reset(&f->a);
	/* Exactly what the first read offers: the second finds nothing. */
	assert_int_equal(write(sv[0], m, exact), (ssize_t)exact);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 64 * CAP), (ssize_t)exact);
	check_buf(&f->a, m, exact);
	assert_int_equal(pool_used(&f->pool), IOBUF_READ_FIRST_BLOCKS);
	/* A first read of two blocks takes those two in one readv. */
	iobuf_reset(&f->a);
	assert_int_equal(write(sv[0], m, 2 * CAP), (ssize_t)(2 * CAP));
	assert_int_equal(iobuf_read_fd_first(&f->a, sv[1], 64 * CAP, 2),
			 (ssize_t)(2 * CAP));
	check_buf(&f->a, m, 2 * CAP);
	assert_int_equal(pool_used(&f->pool), 2);
	assert_int_equal(iobuf_read_fd_first(&f->a, sv[1], 64 * CAP, 0),
			 -EINVAL);
	assert_int_equal(iobuf_read_fd_first(&f->a, sv[1], 64 * CAP,
					     IOBUF_READ_MAX_BLOCKS + 1),
			 -EINVAL);
	/* max bounds both reads together. */
	assert_int_equal(write(sv[0], m, big), (ssize_t)big);
	iobuf_reset(&f->a);
	assert_int_equal(iobuf_read_fd(&f->a, sv[1], 3 * CAP + 5),
			 (ssize_t)(3 * CAP + 5));
	check_buf(&f->a, m, 3 * CAP + 5);
	close(sv[0]);
	close(sv[1]);
	free(m);
}

/* Moves total bytes a -> fds[0] ... fds[1] -> b, checking both sides. */
static void transfer(struct fx *f, const int fds[2], size_t total)
{
	unsigned char *m = malloc(total);
	size_t len = 0, written = 0;
	bool saw_eagain = false;
	ssize_t r;

	assert_non_null(m);
	put(&f->a, m, &len, total, 42);
	while (iobuf_len(&f->b) < total) {
		while ((r = iobuf_write_fd(&f->a, fds[0])) > 0)
			written += (size_t)r;
		if (r == -EAGAIN) {
			saw_eagain = true;
			/* What was not written is still there, in order. */
			check_buf(&f->a, m + written, total - written);
		} else {
			assert_int_equal(r, 0);
		}
		while ((r = iobuf_read_fd(&f->b, fds[1], 1 << 20)) > 0)
			;
		assert_int_equal(r, -EAGAIN);
	}
	assert_true(saw_eagain);
	assert_true(iobuf_empty(&f->a));
	check_buf(&f->b, m, total);
	/* Reads fill the tail before taking blocks: no partial blocks. */
	assert_int_equal(iobuf_block_count(&f->b), blocks_for(total));
	assert_int_equal(pool_used(&f->pool), blocks_for(total));
	free(m);
}

static void test_fd_socket_large(void **state)
{
	int sv[2];

	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	transfer(*state, sv, 3 * 1024 * 1024 + 123);
	close(sv[0]);
	close(sv[1]);
}

static void test_fd_pipe(void **state)
{
	int p[2], fds[2];

	/* Not a socket: write_fd falls back to writev(2), read_fd to
	 * readv(2) (several regions) and read(2) (one: below). */
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	fds[0] = p[1];
	fds[1] = p[0];
	transfer(*state, fds, 300000);
	close(p[0]);
	close(p[1]);
}

/* One ref out and one region in, on a pipe: send(2) and recv(2) fail with
 * ENOTSOCK there, and their fallbacks move the bytes. */
static void test_fd_pipe_one_region(void **state)
{
	struct fx *f = *state;
	const char msg[] = "one region each way";
	char back[sizeof(msg)];
	int p[2];

	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(iobuf_append(&f->a, msg, sizeof(msg)), 0);
	assert_int_equal(iobuf_write_fd(&f->a, p[1]), (ssize_t)sizeof(msg));
	assert_true(iobuf_empty(&f->a));
	assert_int_equal(iobuf_read_fd(&f->b, p[0], 1 << 20),
			 (ssize_t)sizeof(msg));
	assert_int_equal(iobuf_copy_out(&f->b, 0, back, sizeof(back)),
			 sizeof(back));
	assert_memory_equal(back, msg, sizeof(msg));
	assert_int_equal(iobuf_read_fd(&f->b, p[0], 1 << 20), -EAGAIN);
	close(p[0]);
	close(p[1]);
}

/* --- allocation failures ------------------------------------------------- */

#define SWEEP_BUFS   3
#define SWEEP_STREAM 30000

struct sweep {
	struct iobuf b[SWEEP_BUFS];
	unsigned char *m[SWEEP_BUFS];
	size_t len[SWEEP_BUFS];
	unsigned char stream[SWEEP_STREAM];
	size_t spos; /* stream bytes read so far */
	int fd;
};

/* Step i of a fixed sequence: 0 (model updated), 1 (done) or -ENOMEM. */
static int sweep_step(struct sweep *w, int i)
{
	struct iobuf *b = w->b;
	unsigned char tmp[20000];
	ssize_t r;
	int err, x = 0, y = 0;
	size_t off = 0, n = 0;

	switch (i) {
	case 0:
	case 1:
	case 17:
		n = i == 0 ? 100 : i == 1 ? 20000 : 5000;
		pattern(tmp, n, (uint64_t)i);
		err = iobuf_append(&b[i == 17 ? 2 : 0], tmp, n);
		if (err)
			return err;
		x = i == 17 ? 2 : 0;
		memcpy(w->m[x] + w->len[x], tmp, n);
		w->len[x] += n;
		return 0;
	case 2 ... 12: /* shares: one, then ten that cannot merge */
		off = i == 2 ? 50 : 2 * (size_t)(i - 3);
		n = i == 2 ? 100 : 1;
		if (off + n > w->len[0])
			return 0; /* an earlier step failed: skip */
		err = iobuf_share(&b[1], &b[0], off, n);
		x = 0;
		y = 1;
		break;
	case 13:
		n = w->len[0] < 9000 ? w->len[0] : 9000;
		err = iobuf_cut(&b[0], &b[1], n);
		if (err)
			return err;
		memcpy(w->m[1] + w->len[1], w->m[0], n);
		w->len[1] += n;
		memmove(w->m[0], w->m[0] + n, w->len[0] - n);
		w->len[0] -= n;
		return 0;
	case 14:
	case 15:
		x = i == 14 ? 1 : 0;
		y = i == 14 ? 0 : 2;
		err = iobuf_append_buf(&b[y], &b[x]);
		off = 0;
		n = w->len[x];
		if (err)
			return err;
		memcpy(w->m[y] + w->len[y], w->m[x], n);
		w->len[y] += n;
		w->len[x] = 0;
		return 0;
	case 16:
	case 18:
		x = i == 16 ? 1 : 2;
		n = i == 16 ? SWEEP_STREAM / 3 : SWEEP_STREAM;
		if (n > SWEEP_STREAM - w->spos)
			n = SWEEP_STREAM - w->spos;
		if (n == 0)
			return 0;
		r = iobuf_read_fd(&b[x], w->fd, n);
		if (r < 0)
			return (int)r;
		assert_true(r > 0);
		memcpy(w->m[x] + w->len[x], w->stream + w->spos, (size_t)r);
		w->len[x] += (size_t)r;
		w->spos += (size_t)r;
		return 0;
	default:
		return 1;
	}
	if (err)
		return err;
	memcpy(w->m[y] + w->len[y], w->m[x] + off, n);
	w->len[y] += n;
	return 0;
}

/* One run failing allocation k onwards; true if nothing failed. */
static bool sweep_once(long k)
{
	struct iobuf_pool_options opt;
	struct iobuf_pool pool;
	struct mem_failing mf;
	struct sweep *w = calloc(1, sizeof(*w));
	bool failed = false;
	int i, j, err, sv[2];

	assert_non_null(w);
	mem_failing_init(&mf, k);
	iobuf_pool_options_default(&opt);
	opt.mem = &mf.mem;
	opt.region_blocks = 2; /* so that appends must grow the pool */
	opt.prealloc_regions = 1;
	err = iobuf_pool_init(&pool, &opt);
	if (err) {
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(mf.live, 0);
		free(w);
		return false;
	}
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	pattern(w->stream, SWEEP_STREAM, 99);
	assert_int_equal(write(sv[0], w->stream, SWEEP_STREAM), SWEEP_STREAM);
	w->fd = sv[1];
	for (j = 0; j < SWEEP_BUFS; j++) {
		iobuf_init(&w->b[j], &pool);
		w->m[j] = malloc(4 * SWEEP_STREAM);
		assert_non_null(w->m[j]);
	}
	for (i = 0; (err = sweep_step(w, i)) != 1; i++) {
		if (err) {
			assert_int_equal(err, -ENOMEM);
			failed = true;
		}
		for (j = 0; j < SWEEP_BUFS; j++)
			check_buf(&w->b[j], w->m[j], w->len[j]);
	}
	for (j = 0; j < SWEEP_BUFS; j++) {
		iobuf_destroy(&w->b[j]);
		free(w->m[j]);
	}
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	assert_int_equal(mf.live, 0);
	close(sv[0]);
	close(sv[1]);
	free(w);
	return !failed;
}

static void test_alloc_sweep(void **state)
{
	long k;

	(void)state;
	for (k = 0; k < SWEEP_MAX; k++)
		if (sweep_once(k))
			break;
	assert_true(k < SWEEP_MAX);
	/* Pool init, region growth and ref array growth each failed once. */
	assert_true(k >= 6);
}

/* --- region hook --------------------------------------------------------- */

#define REC_MAX 8

struct rec_hook {
	int allocs, frees;
	int fail_at;   /* allocation number that fails; -1: none */
	bool misalign; /* hand out base + 1 */
	void *base[REC_MAX];
	size_t bytes;
};

static void *rec_alloc(void *ctx, size_t bytes, void **cookie)
{
	struct rec_hook *h = ctx;
	unsigned char *p;

	if (h->allocs >= REC_MAX || h->allocs == h->fail_at)
		return NULL;
	p = aligned_alloc(4096, bytes + 4096);
	if (!p)
		return NULL;
	p += h->misalign;
	h->base[h->allocs] = p;
	h->bytes = bytes;
	*cookie = &h->base[h->allocs++];
	return p;
}

static void rec_free(void *ctx, void *base, size_t bytes, void *cookie)
{
	struct rec_hook *h = ctx;

	assert_ptr_equal(*(void **)cookie, base);
	assert_int_equal(bytes, h->bytes);
	h->frees++;
	free((unsigned char *)base - h->misalign);
}

static void rec_pool(struct iobuf_pool *pool, struct mem_failing *mf,
		     struct rec_hook *h, size_t max_regions)
{
	struct iobuf_pool_options opt;

	mem_failing_init(mf, -1);
	iobuf_pool_options_default(&opt);
	opt.mem = &mf->mem;
	opt.region.alloc = rec_alloc;
	opt.region.free = rec_free;
	opt.region.ctx = h;
	opt.region_blocks = 4;
	opt.max_regions = max_regions;
	assert_int_equal(iobuf_pool_init(pool, &opt), 0);
}

static void test_region_hook(void **state)
{
	struct rec_hook h = {.fail_at = -1};
	struct iobuf_region_info ri;
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct mem_failing mf;
	struct iobuf a, b;
	unsigned char *m = malloc(10 * CAP);
	size_t len = 0, i;
	const unsigned char *p;
	int sv[2];

	(void)state;
	assert_non_null(m);
	rec_pool(&pool, &mf, &h, 2);
	iobuf_init(&a, &pool);
	iobuf_init(&b, &pool);
	put(&a, m, &len, 4 * CAP, 1);
	assert_int_equal(h.allocs, 1);
	put(&a, m, &len, 4 * CAP, 2);
	assert_int_equal(h.allocs, 2);
	for (i = 0; i < 8; i++) {
		iobuf_block_region(iobuf_ref_block(&a, i), &ri);
		assert_ptr_equal(ri.base, h.base[i / 4]);
		assert_ptr_equal(ri.cookie, &h.base[i / 4]);
		assert_int_equal(ri.bytes, 4 * IOBUF_BLOCK_SIZE);
		p = ref_ptr(&a, i);
		assert_true(p >= (unsigned char *)ri.base + IOBUF_BLOCK_HDR);
		assert_true(p + CAP <= (unsigned char *)ri.base + ri.bytes);
	}

	/* max_regions reached: all-or-nothing -ENOMEM, views still work. */
	assert_int_equal(iobuf_append(&a, "z", 1), -ENOMEM);
	check_buf(&a, m, len);
	assert_int_equal(iobuf_share(&b, &a, 10, 2 * CAP), 0);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 2);
	assert_int_equal(st.blocks_total, 8);
	assert_int_equal(st.blocks_free, 0);
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(write(sv[0], m, 3 * CAP), 3 * CAP);
	assert_int_equal(iobuf_read_fd(&a, sv[1], 100), -ENOMEM);

	/* Two blocks back: a read takes what there is. */
	iobuf_reset(&b);
	assert_int_equal(iobuf_drop_back(&a, 2 * CAP), 2 * CAP);
	len -= 2 * CAP;
	assert_int_equal(iobuf_read_fd(&a, sv[1], 10 * CAP), 2 * CAP);
	memcpy(m + len, m, 2 * CAP);
	len += 2 * CAP;
	check_buf(&a, m, len);
	assert_int_equal(pool_used(&pool), 8);

	iobuf_destroy(&a);
	iobuf_destroy(&b);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	assert_int_equal(h.frees, 2);
	assert_int_equal(mf.live, 0);
	close(sv[0]);
	close(sv[1]);
	free(m);
}

static void test_region_failures(void **state)
{
	struct iobuf_pool_options opt;
	struct rec_hook h = {.fail_at = 0};
	struct iobuf_pool pool;
	struct mem_failing mf;
	struct iobuf a;
	unsigned char *data = malloc(4 * CAP);

	(void)state;
	assert_non_null(data);
	memset(data, 7, 4 * CAP);
	/* The hook fails during preallocation. */
	mem_failing_init(&mf, -1);
	iobuf_pool_options_default(&opt);
	opt.mem = &mf.mem;
	opt.region = (struct iobuf_region_hook){rec_alloc, rec_free, &h};
	opt.prealloc_regions = 1;
	assert_int_equal(iobuf_pool_init(&pool, &opt), -ENOMEM);
	assert_int_equal(mf.live, 0);

	/* The hook fails on the second region. */
	h = (struct rec_hook){.fail_at = 1};
	rec_pool(&pool, &mf, &h, 0);
	iobuf_init(&a, &pool);
	assert_int_equal(iobuf_append(&a, data, CAP), 0);
	assert_int_equal(iobuf_append(&a, data, 4 * CAP), -ENOMEM);
	assert_int_equal(iobuf_append(&a, data, 3 * CAP + 1), -ENOMEM);
	check_buf(&a, data, CAP);
	assert_int_equal(iobuf_append(&a, data, 3 * CAP), 0);
	iobuf_destroy(&a);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	assert_int_equal(h.frees, 1);
	assert_int_equal(mf.live, 0);

	/* A hook that breaks the alignment contract: treated as failure. */
	h = (struct rec_hook){.fail_at = -1, .misalign = true};
	rec_pool(&pool, &mf, &h, 0);
	iobuf_init(&a, &pool);
	assert_int_equal(iobuf_append(&a, "x", 1), -ENOMEM);
	assert_int_equal(h.frees, h.allocs);
	iobuf_destroy(&a);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	assert_int_equal(mf.live, 0);
	free(data);
}

/* --- threads ------------------------------------------------------------- */

#define WORKERS	     4
#define WORKER_STEPS 3000
#define SHARED_LEN   200000

struct worker {
	pthread_t tid;
	struct iobuf_pool *pool;
	struct iobuf in; /* a view of main's buffer, handed over */
	const unsigned char *in_model;
	uint64_t seed;
	int failures; /* cmocka asserts are not thread-safe */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char *m = malloc(2 * MODEL_MAX), *tmp = malloc(MODEL_MAX);
	struct iobuf x, y;
	size_t len = 0, n, off, in_off = 0;
	int i;

	if (!m || !tmp) {
		w->failures++;
		goto out;
	}
	iobuf_init(&x, w->pool);
	iobuf_init(&y, w->pool);
	for (i = 0; i < WORKER_STEPS; i++) {
		n = rng_below(&w->seed, 4000);
		pattern(m + len, n, w->seed);
		w->failures += iobuf_append(&x, m + len, n) != 0;
		len += n;
		off = rng_below(&w->seed, len + 1);
		n = rng_below(&w->seed, len - off + 1);
		w->failures += iobuf_share(&y, &x, off, n) != 0;
		w->failures += iobuf_copy_out(&y, 0, tmp, n) != n;
		w->failures += memcmp(tmp, m + off, n) != 0;
		iobuf_reset(&y);
		if (len > MODEL_MAX / 2) {
			w->failures += iobuf_cut(&x, &y, len / 2) != 0;
			memmove(m, m + len / 2, len - len / 2);
			len -= len / 2;
			iobuf_reset(&y);
		}
		/* Release main's blocks bit by bit. */
		n = iobuf_drop_front(&w->in, 60);
		in_off += n;
		n = iobuf_copy_out(&w->in, 0, tmp, 100);
		w->failures += memcmp(tmp, w->in_model + in_off, n) != 0;
	}
	w->failures += iobuf_copy_out(&x, 0, tmp, len) != len;
	w->failures += memcmp(tmp, m, len) != 0;
	iobuf_destroy(&x);
	iobuf_destroy(&y);
out:
	iobuf_destroy(&w->in);
	free(m);
	free(tmp);
	return NULL;
}

static void test_threads(void **state)
{
	struct fx *f = *state;
	struct worker w[WORKERS];
	unsigned char *m = malloc(SHARED_LEN + 100000);
	size_t len = 0;
	int i;

	assert_non_null(m);
	put(&f->a, m, &len, SHARED_LEN, 3);
	for (i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){.pool = &f->pool,
				       .in_model = m,
				       .seed = 1000 + (uint64_t)i};
		iobuf_init(&w[i].in, &f->pool);
		assert_int_equal(iobuf_share(&w[i].in, &f->a, 0, len), 0);
	}
	for (i = 0; i < WORKERS; i++)
		assert_int_equal(
		    pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
	/* Meanwhile: append behind the shared tail and churn the pool. */
	for (i = 0; i < 1000; i++) {
		put(&f->a, m, &len, 100, (uint64_t)i);
		assert_int_equal(iobuf_share(&f->b, &f->a, 0, len), 0);
		iobuf_reset(&f->b);
	}
	for (i = 0; i < WORKERS; i++) {
		assert_int_equal(pthread_join(w[i].tid, NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	check_buf(&f->a, m, len);
	assert_int_equal(ref_refcount(&f->a, 0), 1);
	iobuf_reset(&f->a);
	assert_int_equal(pool_used(&f->pool), 0);
	free(m);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_options),
	    FX(test_layout),
	    FX(test_pool_busy),
	    FX(test_append_small),
	    FX(test_append_boundaries),
	    FX(test_cut),
	    FX(test_share),
	    FX(test_drop),
	    FX(test_copy_peek_iov),
	    FX(test_append_buf),
	    FX(test_no_copy_and_tail),
	    FX(test_ref_array),
	    FX(test_model_random),
	    FX(test_fd_basic),
	    FX(test_fd_two_phase),
	    FX(test_fd_socket_large),
	    FX(test_fd_pipe),
	    FX(test_fd_pipe_one_region),
	    cmocka_unit_test(test_alloc_sweep),
	    cmocka_unit_test(test_region_hook),
	    cmocka_unit_test(test_region_failures),
	    FX(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
