/*
 * fast_strlen tests: every start offset within a 64-byte stride against
 * every length up to a few hundred bytes, with NUL-free filler that has
 * the high bit set (a signed compare would stop there) and bytes after
 * the NUL; strings whose NUL is the last byte before a PROT_NONE page; a
 * long string; a NUL at each position of a four-block step.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fast_strlen.h"

/* Start offsets: every one of two 64-byte strides. */
#define OFFSETS 128
/* Lengths checked at every offset. */
#define MAX_LEN 320
/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: the same bytes on every run. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* n bytes, none of them NUL, 0x80 and 0xff among them. */
static void fill(char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)(rng_next(&s) >> 56);

		p[i] = (char)(c ? c : 0x80);
	}
}

static void test_every_offset_and_length(void **state)
{
	size_t cap = OFFSETS + MAX_LEN + 128;
	char *buf = aligned_alloc(64, cap);

	(void)state;
	assert_non_null(buf);
	alarm(TEST_TIMEOUT_S);
	for (size_t off = 0; off < OFFSETS; off++) {
		for (size_t len = 0; len <= MAX_LEN; len++) {
			fill(buf, cap, off * 1000 + len);
			buf[off + len] = '\0';
			assert_int_equal(fast_strlen(buf + off), len);
			/* A second NUL later changes nothing. */
			buf[off + len + 1 + len % 70] = '\0';
			assert_int_equal(fast_strlen(buf + off), len);
		}
	}
	alarm(0);
	free(buf);
}

/* The NUL is the page's last byte and the next page cannot be read. */
static void test_guard_page(void **state)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *end;

	(void)state;
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
	end = map + pg - 1;
	fill(map, (size_t)pg, 7);
	*end = '\0';
	for (long len = 0; len < pg; len++)
		assert_int_equal(fast_strlen(end - len), len);
	munmap(map, (size_t)pg * 2);
}

static void test_long_string(void **state)
{
	size_t n = (1u << 20) + 37;
	char *s = malloc(n + 1);

	(void)state;
	assert_non_null(s);
	fill(s, n, 3);
	s[n] = '\0';
	assert_int_equal(fast_strlen(s), n);
	assert_int_equal(fast_strlen(s + 5), n - 5);
	free(s);
}

/* A NUL at each byte of a four-block step, the step after a full one. */
static void test_nul_in_each_block(void **state)
{
	char *buf = aligned_alloc(64, 256);

	(void)state;
	assert_non_null(buf);
	for (size_t at = 64; at < 192; at++) {
		fill(buf, 256, at);
		buf[at] = '\0';
		assert_int_equal(fast_strlen(buf), at);
		assert_int_equal(fast_strlen(buf + 1), at - 1);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_offset_and_length),
	    cmocka_unit_test(test_guard_page),
	    cmocka_unit_test(test_long_string),
	    cmocka_unit_test(test_nul_in_each_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
