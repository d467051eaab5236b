/*
 * heap: intrusive pairing heap (see heap.h).
 *
 * Shape: every node keeps its leftmost child, its next sibling, and `prev`,
 * which is the previous sibling or, for a leftmost child, the parent.  The
 * root has no siblings and prev == NULL.  A node's parent is never greater
 * than the node (heap order).
 *
 * Pop and remove merge the orphaned children with the classic two-pass
 * scheme (pair left to right, then fold right to left), which is what gives
 * the O(log n) amortised bound.  Both passes are iterative: a degenerate
 * heap can have a root with n - 1 children, and recursion there would
 * overflow a small thread stack.
 */
#include "heap.h"

void heap_init(struct heap *h, heap_less_fn *less)
{
	h->root = NULL;
	h->less = less;
	h->count = 0;
}

/* Links two detached trees (no siblings, no parent); returns the root. */
static struct heap_node *heap_meld(const struct heap *h, struct heap_node *a,
				   struct heap_node *b)
{
	struct heap_node *t;

	if (!a)
		return b;
	if (!b)
		return a;
	if (h->less(b, a)) {
		t = a;
		a = b;
		b = t;
	}
	/* b becomes the leftmost child of a. */
	b->next = a->child;
	if (a->child)
		a->child->prev = b;
	b->prev = a;
	a->child = b;
	return a;
}

/* Merges a sibling list (first has no prev to care about) into one tree. */
static struct heap_node *heap_merge_pairs(const struct heap *h,
					  struct heap_node *first)
{
	struct heap_node *stack = NULL; /* pass-1 results, linked by next */
	struct heap_node *a, *b, *rest, *acc;

	/* Pass 1: meld pairs left to right, pushing each result on a stack. */
	while (first) {
		a = first;
		b = a->next;
		rest = b ? b->next : NULL;
		a->next = a->prev = NULL;
		if (b)
			b->next = b->prev = NULL;
		a = heap_meld(h, a, b);
		a->next = stack;
		stack = a;
		first = rest;
	}

	/* Pass 2: fold the stack, i.e. the pairs from right to left. */
	acc = NULL;
	while (stack) {
		a = stack;
		stack = a->next;
		a->next = NULL;
		acc = heap_meld(h, acc, a);
	}
	return acc;
}

void heap_insert(struct heap *h, struct heap_node *n)
{
	n->child = n->next = n->prev = NULL;
	h->root = heap_meld(h, h->root, n);
	h->count++;
}

struct heap_node *heap_pop(struct heap *h)
{
	struct heap_node *n = h->root;

	if (!n)
		return NULL;
	h->root = heap_merge_pairs(h, n->child);
	if (h->root)
		h->root->prev = NULL;
	n->child = n->next = n->prev = NULL;
	h->count--;
	return n;
}

void heap_remove(struct heap *h, struct heap_node *n)
{
	struct heap_node *sub;

	if (n == h->root) {
		heap_pop(h);
		return;
	}

	/* Unlink n from its sibling list; its subtree comes along. */
	if (n->prev->child == n)
		n->prev->child = n->next; /* n was the leftmost child */
	else
		n->prev->next = n->next;
	if (n->next)
		n->next->prev = n->prev;

	/* Its children are all >= the root: merge them and meld them back. */
	sub = heap_merge_pairs(h, n->child);
	h->root = heap_meld(h, h->root, sub);
	n->child = n->next = n->prev = NULL;
	h->count--;
}
