/*
 * test_heap: the pairing heap against a plain-array model, with a full
 * structural check after every operation in the smaller runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/heap.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"

struct item {
	struct heap_node node;
	int key;
	bool in;
};

static bool item_less(const struct heap_node *a, const struct heap_node *b)
{
	return container_of(a, struct item, node)->key <
	       container_of(b, struct item, node)->key;
}

static int key_of(const struct heap_node *n)
{
	return container_of(n, const struct item, node)->key;
}

/* Checks links and heap order below `n`; returns the number of nodes. */
static size_t check_tree(const struct heap_node *n)
{
	const struct heap_node *c, *prev = n;
	size_t count = 1;

	for (c = n->child; c; c = c->next) {
		assert_ptr_equal(c->prev, prev);
		assert_true(key_of(n) <= key_of(c));
		count += check_tree(c);
		prev = c;
	}
	return count;
}

static void check_heap(const struct heap *h)
{
	if (!h->root) {
		assert_int_equal(h->count, 0);
		return;
	}
	assert_null(h->root->prev);
	assert_null(h->root->next);
	assert_int_equal(check_tree(h->root), h->count);
}

/* The model: the least key among items marked `in`, or -1. */
static int model_min(const struct item *items, size_t n)
{
	int min = -1;
	size_t i;

	for (i = 0; i < n; i++) {
		if (items[i].in && (min < 0 || items[i].key < min))
			min = items[i].key;
	}
	return min;
}

static void run_random(unsigned seed, size_t nitems, size_t nops, int key_range,
		       bool deep_check)
{
	struct item *items = calloc(nitems, sizeof(*items));
	struct heap h;
	size_t i, op, live = 0;
	struct heap_node *n;
	struct item *it;
	int r;

	assert_non_null(items);
	srand(seed);
	heap_init(&h, item_less);
	for (op = 0; op < nops; op++) {
		i = (size_t)rand() % nitems;
		it = &items[i];
		r = rand() % 4;
		if (r < 2 && !it->in) {
			it->key = rand() % key_range;
			heap_insert(&h, &it->node);
			it->in = true;
			live++;
		} else if (r == 2 && it->in) {
			heap_remove(&h, &it->node);
			it->in = false;
			live--;
		} else if (r == 3) {
			int want = model_min(items, nitems);

			n = heap_pop(&h);
			if (want < 0) {
				assert_null(n);
			} else {
				assert_non_null(n);
				assert_int_equal(key_of(n), want);
				it = container_of(n, struct item, node);
				assert_true(it->in);
				it->in = false;
				live--;
			}
		}
		assert_int_equal(heap_count(&h), live);
		if (heap_min(&h))
			assert_int_equal(key_of(heap_min(&h)),
					 model_min(items, nitems));
		if (deep_check)
			check_heap(&h);
	}

	/* Drain: keys come out sorted. */
	r = -1;
	while ((n = heap_pop(&h))) {
		assert_true(key_of(n) >= r);
		r = key_of(n);
		container_of(n, struct item, node)->in = false;
		live--;
	}
	assert_int_equal(live, 0);
	assert_true(heap_empty(&h));
	assert_int_equal(model_min(items, nitems), -1);
	free(items);
}

static void test_heap_empty(void **state)
{
	struct heap h;

	(void)state;
	heap_init(&h, item_less);
	assert_true(heap_empty(&h));
	assert_null(heap_min(&h));
	assert_null(heap_pop(&h));
	assert_int_equal(heap_count(&h), 0);
}

static void test_heap_remove_root_and_leaves(void **state)
{
	struct item it[5];
	struct heap h;
	int i;

	(void)state;
	heap_init(&h, item_less);
	for (i = 0; i < 5; i++) {
		it[i].key = 10 - i;
		heap_insert(&h, &it[i].node);
		check_heap(&h);
	}
	heap_remove(&h, &it[4].node); /* the root (key 6) */
	check_heap(&h);
	assert_int_equal(key_of(heap_min(&h)), 7);
	heap_remove(&h, &it[0].node); /* a leaf (key 10) */
	check_heap(&h);
	heap_remove(&h, &it[2].node); /* key 8 */
	check_heap(&h);
	assert_int_equal(key_of(heap_pop(&h)), 7);
	assert_int_equal(key_of(heap_pop(&h)), 9);
	assert_true(heap_empty(&h));
}

/* Small, with ties and a structural check after each operation. */
static void test_heap_random_small(void **state)
{
	unsigned seed;

	(void)state;
	for (seed = 1; seed <= 50; seed++)
		run_random(seed, 64, 4000, 16, true);
}

/* Large: the model's linear min keeps it at a few hundred items. */
static void test_heap_random_large(void **state)
{
	(void)state;
	run_random(12345, 512, 200000, 1 << 30, false);
}

/* A root with n - 1 children, then pop: the merge must not recurse. */
static void test_heap_degenerate_wide(void **state)
{
	const int n = 1000000;
	struct item *items = calloc((size_t)n, sizeof(*items));
	struct heap_node *node;
	struct heap h;
	int i;

	(void)state;
	assert_non_null(items);
	heap_init(&h, item_less);
	items[0].key = -1;
	heap_insert(&h, &items[0].node);
	for (i = 1; i < n; i++) {
		items[i].key = n - i;
		heap_insert(&h, &items[i].node);
	}
	assert_int_equal(key_of(heap_pop(&h)), -1);
	for (i = 1; i <= 1000; i++) {
		node = heap_pop(&h);
		assert_int_equal(key_of(node), i);
	}
	/* Remove the rest from the middle of the structure. */
	for (i = 1001; i < n; i++)
		heap_remove(&h, &items[n - i].node);
	assert_true(heap_empty(&h));
	free(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_heap_empty),
	    TEST_BOUNDED(test_heap_remove_root_and_leaves),
	    TEST_BOUNDED(test_heap_random_small),
	    TEST_BOUNDED(test_heap_random_large),
	    TEST_BOUNDED(test_heap_degenerate_wide),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
