/*
 * crc32c tests: RFC 3720 known answers, the slicing tables against a
 * bitwise CRC at every length and alignment, chaining at every split point,
 * iobuf ranges over many refs, and the brpc mask.  iobuf tests end with the
 * pool destroyed (every block back) and no live allocation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/crc32c.h"

/* Reflected Castagnoli polynomial (RFC 3720, B.4). */
#define POLY 0x82f63b78u
/* Lengths and alignments checked against the bitwise CRC. */
#define BITWISE_MAX_LEN 300
#define ALIGN_MAX	8
/* Buffer for the iobuf tests: a few blocks' worth. */
#define CHAIN_LEN (3 * IOBUF_BLOCK_CAP + 1234)
/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic across libcs, unlike rand(). */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static void pattern(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(rng_next(&s) >> 56);
}

/* The definition: one bit at a time. */
static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
	}
	return ~c;
}

static void test_known_answers(void **state)
{
	unsigned char buf[32];

	(void)state;
	/* RFC 3720, B.4 "CRC Examples". */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(crc32c(buf, sizeof(buf)), 0x8a9136aa);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(crc32c(buf, sizeof(buf)), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	assert_int_equal(crc32c(buf, sizeof(buf)), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	assert_int_equal(crc32c(buf, sizeof(buf)), 0x113fdb5c);
	/* The usual check value of CRC-32C. */
	assert_int_equal(crc32c("123456789", 9), 0xe3069283);
	assert_int_equal(crc32c("", 0), 0);
	assert_int_equal(crc32c_extend(0x12345678, NULL, 0), 0x12345678);
}

static void test_tables_against_bitwise(void **state)
{
	unsigned char buf[BITWISE_MAX_LEN + ALIGN_MAX];

	(void)state;
	pattern(buf, sizeof(buf), 1);
	for (size_t a = 0; a < ALIGN_MAX; a++)
		for (size_t n = 0; n <= BITWISE_MAX_LEN; n++)
			assert_int_equal(crc32c(buf + a, n),
					 crc_bitwise(buf + a, n));
}

static void test_chaining_every_split(void **state)
{
	unsigned char buf[BITWISE_MAX_LEN];
	uint32_t whole, c;

	(void)state;
	pattern(buf, sizeof(buf), 2);
	whole = crc32c(buf, sizeof(buf));
	for (size_t i = 0; i <= sizeof(buf); i++) {
		c = crc32c_extend(crc32c(buf, i), buf + i, sizeof(buf) - i);
		assert_int_equal(c, whole);
	}
	/* Three pieces, and pieces of every small size. */
	for (size_t i = 0; i <= sizeof(buf); i += 7)
		for (size_t j = i; j <= sizeof(buf); j += 13) {
			c = crc32c_extend(0, buf, i);
			c = crc32c_extend(c, buf + i, j - i);
			c = crc32c_extend(c, buf + j, sizeof(buf) - j);
			assert_int_equal(c, whole);
		}
	for (size_t step = 1; step <= 17; step++) {
		c = 0;
		for (size_t i = 0; i < sizeof(buf); i += step)
			c = crc32c_extend(
			    c, buf + i,
			    sizeof(buf) - i < step ? sizeof(buf) - i : step);
		assert_int_equal(c, whole);
	}
}

static void test_mask(void **state)
{
	uint64_t s = 3;
	uint32_t v;

	(void)state;
	assert_int_equal(crc32c_mask(0), CRC32C_MASK_DELTA);
	assert_int_equal(crc32c_unmask(CRC32C_MASK_DELTA), 0);
	/* Rotate right by 15 then add the delta, by hand. */
	assert_int_equal(crc32c_mask(0x00008000), 1u + CRC32C_MASK_DELTA);
	assert_int_equal(crc32c_mask(0x00000001),
			 (1u << 17) + CRC32C_MASK_DELTA);
	assert_int_equal(crc32c_mask(0xe3069283),
			 ((0xe3069283u >> 15) | (0xe3069283u << 17)) +
			     0xa282ead8u);
	for (int i = 0; i < 100000; i++) {
		v = (uint32_t)rng_next(&s);
		assert_int_equal(crc32c_unmask(crc32c_mask(v)), v);
		assert_int_equal(crc32c_mask(crc32c_unmask(v)), v);
	}
	/* Masking changes the value: a CRC of CRCs is not mistaken for one. */
	assert_int_not_equal(crc32c_mask(0xe3069283), 0xe3069283);
}

/* --- iobuf ranges -------------------------------------------------------- */

struct fx {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct iobuf a, b, chain;
	unsigned char flat[CHAIN_LEN];
};

static int fx_setup(void **state)
{
	struct iobuf_pool_options opt;
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	mem_failing_init(&f->mf, -1);
	iobuf_pool_options_default(&opt);
	opt.mem = &f->mf.mem;
	if (iobuf_pool_init(&f->pool, &opt)) {
		free(f);
		return -1;
	}
	iobuf_init(&f->a, &f->pool);
	iobuf_init(&f->b, &f->pool);
	iobuf_init(&f->chain, &f->pool);
	alarm(TEST_TIMEOUT_S);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	alarm(0);
	iobuf_destroy(&f->a);
	iobuf_destroy(&f->b);
	iobuf_destroy(&f->chain);
	assert_int_equal(iobuf_pool_destroy(&f->pool), 0);
	assert_int_equal(f->mf.live, 0);
	free(f);
	return 0;
}

/*
 * chain: flat's bytes as many short refs, shared with a and b (two copies
 * of flat); consecutive pieces come from different copies so they do not
 * merge into one ref.
 */
static void build_chain(struct fx *f)
{
	uint64_t s = 5;
	size_t off = 0, k;
	int i = 0;

	pattern(f->flat, sizeof(f->flat), 4);
	assert_int_equal(iobuf_append(&f->a, f->flat, sizeof(f->flat)), 0);
	assert_int_equal(iobuf_append(&f->b, f->flat, sizeof(f->flat)), 0);
	for (; off < sizeof(f->flat); off += k, i++) {
		k = 1 + rng_next(&s) % 700;
		if (k > sizeof(f->flat) - off)
			k = sizeof(f->flat) - off;
		assert_int_equal(
		    iobuf_share(&f->chain, i % 2 ? &f->b : &f->a, off, k), 0);
	}
	assert_true(iobuf_ref_count(&f->chain) > 50);
	assert_int_equal(iobuf_len(&f->chain), sizeof(f->flat));
}

static void test_iobuf_ranges(void **state)
{
	struct fx *f = *state;
	uint64_t s = 6;
	uint32_t c;
	size_t off, n;

	build_chain(f);
	c = 0;
	assert_int_equal(crc32c_iobuf(&f->chain, 0, CHAIN_LEN, &c), 0);
	assert_int_equal(c, crc32c(f->flat, CHAIN_LEN));
	for (int i = 0; i < 2000; i++) {
		off = rng_next(&s) % (CHAIN_LEN + 1);
		n = rng_next(&s) % (CHAIN_LEN - off + 1);
		c = 0;
		assert_int_equal(crc32c_iobuf(&f->chain, off, n, &c), 0);
		assert_int_equal(c, crc32c(f->flat + off, n));
		/* Extending over the rest gives the CRC of off..end. */
		assert_int_equal(
		    crc32c_iobuf(&f->chain, off + n, CHAIN_LEN - off - n, &c),
		    0);
		assert_int_equal(c, crc32c(f->flat + off, CHAIN_LEN - off));
	}
}

static void test_iobuf_range_errors(void **state)
{
	struct fx *f = *state;
	uint32_t c = 0x1234;

	build_chain(f);
	assert_int_equal(crc32c_iobuf(&f->chain, 0, CHAIN_LEN + 1, &c),
			 -ERANGE);
	assert_int_equal(crc32c_iobuf(&f->chain, CHAIN_LEN + 1, 0, &c),
			 -ERANGE);
	assert_int_equal(crc32c_iobuf(&f->chain, 10, SIZE_MAX, &c), -ERANGE);
	assert_int_equal(crc32c_iobuf(&f->chain, SIZE_MAX, 2, &c), -ERANGE);
	assert_int_equal(c, 0x1234);
	/* Empty ranges, including at the very end, leave the CRC alone. */
	assert_int_equal(crc32c_iobuf(&f->chain, CHAIN_LEN, 0, &c), 0);
	assert_int_equal(crc32c_iobuf(&f->a, 0, 0, &c), 0);
	assert_int_equal(c, 0x1234);
	iobuf_reset(&f->a);
	assert_int_equal(crc32c_iobuf(&f->a, 0, 0, &c), 0);
	assert_int_equal(crc32c_iobuf(&f->a, 0, 1, &c), -ERANGE);
	assert_int_equal(c, 0x1234);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_answers),
	    cmocka_unit_test(test_tables_against_bitwise),
	    cmocka_unit_test(test_chaining_every_split),
	    cmocka_unit_test(test_mask),
	    cmocka_unit_test_setup_teardown(test_iobuf_ranges, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_iobuf_range_errors, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
