/*
 * Tests for net/base/mem: the per-thread cached allocator (mem_cached).  The
 * default and failing allocators are exercised by every other test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define TEST_TIMEOUT_S 10
#include "testutil.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/mem.h"
#include "base/util.h"

/* Sizes across every class boundary and past the cached maximum. */
static const size_t sizes[] = {0,    1,	   15,	 16,   17,    48,
			       49,   100,  240,	 241,  500,   1000,
			       2000, 2032, 2033, 4096, 100000};

static void test_cached_sizes_and_alignment(void **state)
{
	const struct mem *m = mem_cached();
	void *p[ARRAY_SIZE(sizes)];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		p[i] = mem_alloc(m, sizes[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 16, 0);
		memset(p[i], (int)i, sizes[i]);
	}
	/* No block overlaps another: each still holds its own pattern. */
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		for (size_t j = 0; j < sizes[i]; j++)
			assert_int_equal(((unsigned char *)p[i])[j], i);
		mem_free(m, p[i]);
	}
}

static void test_cached_reuses_on_same_thread(void **state)
{
	const struct mem *m = mem_cached();
	void *a, *b, *c;

	(void)state;
	a = mem_alloc(m, 100);
	mem_free(m, a);
	b = mem_alloc(m, 90); /* same class: the cached block */
	assert_ptr_equal(a, b);
	c = mem_alloc(m, 3000); /* big: not from the cache */
	assert_ptr_not_equal(c, b);
	mem_free(m, b);
	mem_free(m, c);
}

/* More frees than the cache keeps: the rest go back to malloc (ASan's
 * leak check at exit sees none left over). */
static void test_cached_depth_cap(void **state)
{
	const struct mem *m = mem_cached();
	enum { N = MEM_CACHED_DEPTH + 100 };
	void **v = calloc(N, sizeof(*v));

	(void)state;
	assert_non_null(v);
	for (int i = 0; i < N; i++)
		assert_non_null(v[i] = mem_alloc(m, 64));
	for (int i = 0; i < N; i++)
		mem_free(m, v[i]);
	for (int i = 0; i < N; i++)
		assert_non_null(v[i] = mem_alloc(m, 64));
	for (int i = 0; i < N; i++)
		mem_free(m, v[i]);
	free(v);
}

struct xfer {
	void *blocks[64];
};

/* Frees blocks another thread allocated, keeps them, exits: its cache
 * must go back to malloc (LeakSanitizer checks at exit). */
static void *free_elsewhere(void *arg)
{
	struct xfer *x = arg;
	const struct mem *m = mem_cached();

	for (int i = 0; i < 64; i++)
		mem_free(m, x->blocks[i]);
	for (int i = 0; i < 64; i++) {
		void *p = mem_alloc(m, 200);

		assert_non_null(p);
		mem_free(m, p);
	}
	return NULL;
}

static void test_cached_cross_thread_and_exit(void **state)
{
	const struct mem *m = mem_cached();
	struct xfer x;
	pthread_t t;

	(void)state;
	for (int i = 0; i < 64; i++) {
		x.blocks[i] = mem_alloc(m, 24 + 30 * i);
		assert_non_null(x.blocks[i]);
		memset(x.blocks[i], 0xab, 24 + 30 * (size_t)i);
	}
	assert_int_equal(pthread_create(&t, NULL, free_elsewhere, &x), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_cached_sizes_and_alignment),
	    TEST_BOUNDED(test_cached_reuses_on_same_thread),
	    TEST_BOUNDED(test_cached_depth_cap),
	    TEST_BOUNDED(test_cached_cross_thread_and_exit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
