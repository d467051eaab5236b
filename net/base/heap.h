/*
 * heap: an intrusive min-heap (pairing heap).
 *
 * The node is embedded in the caller's object and the caller supplies the
 * order; the heap never allocates and never fails.  Costs: insert and min
 * O(1); pop and remove of any node O(log n) amortised.
 *
 * `less(a, b)` must be a strict weak order and must not change for a node
 * while it is in the heap.  Ties come out in an unspecified order: callers
 * that need a stable order break ties themselves (e.g. with a sequence
 * number, as loop timers do).
 *
 * Not thread-safe: one heap is used by one thread at a time.  A node is in
 * at most one heap at a time; removing a node that is not in the heap, or
 * inserting one that is, corrupts it (the heap does not track membership;
 * keep a flag in the owning object if you need one).
 */
#ifndef RPCGATE_NET_HEAP_H
#define RPCGATE_NET_HEAP_H

#include <stdbool.h>
#include <stddef.h>

struct heap_node {
	struct heap_node *child; /* leftmost child */
	struct heap_node *next;	 /* next sibling */
	struct heap_node *prev;	 /* previous sibling, or parent if leftmost */
};

typedef bool heap_less_fn(const struct heap_node *a, const struct heap_node *b);

struct heap {
	struct heap_node *root;
	heap_less_fn *less;
	size_t count;
};

/* An empty heap ordered by `less`. */
void heap_init(struct heap *h, heap_less_fn *less);

/* Adds `n` (not in any heap); O(1). */
void heap_insert(struct heap *h, struct heap_node *n);

/* Removes `n`, which must be in `h`; O(log n) amortised. */
void heap_remove(struct heap *h, struct heap_node *n);

/* Removes and returns the least node, or NULL if the heap is empty. */
struct heap_node *heap_pop(struct heap *h);

/* The least node without removing it, or NULL; O(1). */
static inline struct heap_node *heap_min(const struct heap *h)
{
	return h->root;
}

static inline bool heap_empty(const struct heap *h)
{
	return h->root == NULL;
}

static inline size_t heap_count(const struct heap *h)
{
	return h->count;
}

#endif
