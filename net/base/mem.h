/*
 * mem: the allocation hook.
 *
 * Every object that allocates takes a `const struct mem *` in its options
 * (NULL means mem_default(), i.e. malloc/free).  Tests pass mem_failing()
 * to make the k-th allocation fail and to check that every init unwinds
 * and that allocations balance.
 *
 * mem_alloc() returns NULL on failure; callers turn that into -ENOMEM.
 * All functions are thread-safe if the ops are (the default ones are).
 */
#ifndef RPCGATE_NET_MEM_H
#define RPCGATE_NET_MEM_H

#include <stddef.h>
#include <stdint.h>

struct mem {
	void *(*alloc)(const struct mem *m, size_t size);
	void (*free)(const struct mem *m, void *ptr);
	void *ctx;
	/* Optional: zeroed memory (calloc, which leaves fresh pages of a
	 * large block untouched); NULL: alloc and memset. */
	void *(*zalloc)(const struct mem *m, size_t size);
};

/* malloc/free. */
const struct mem *mem_default(void);

/*
 * malloc/free behind per-thread caches of small blocks, for the hot
 * path's short-lived allocations (decoded metas and messages, calls,
 * write requests): musl's allocator takes a lock and a few hundred
 * instructions per call, a cache hit about twenty.  Blocks of up to
 * MEM_CACHED_MAX bytes are kept in power-of-two classes, at most
 * MEM_CACHED_DEPTH per class and thread; a block freed on another
 * thread joins that thread's cache.  A thread's cache goes back to
 * malloc when it exits.  Costs 16 bytes of header per block.  Tests
 * keep mem_default(), where ASan sees every block.
 */
#define MEM_CACHED_MAX	 2048
#define MEM_CACHED_DEPTH 64
const struct mem *mem_cached(void);

static inline const struct mem *mem_or_default(const struct mem *m)
{
	return m ? m : mem_default();
}

static inline void *mem_alloc(const struct mem *m, size_t size)
{
	m = mem_or_default(m);
	return m->alloc(m, size);
}

/* Zeroed allocation. */
void *mem_zalloc(const struct mem *m, size_t size);

static inline void mem_free(const struct mem *m, void *ptr)
{
	if (ptr) {
		m = mem_or_default(m);
		m->free(m, ptr);
	}
}

/*
 * A counting allocator for tests: allocation number `fail_at` (0-based)
 * and every later one fail when `fail_at >= 0`; `live` counts blocks not
 * yet freed.  Not thread-safe for the counters' exactness beyond atomics.
 */
struct mem_failing {
	struct mem mem;
	long fail_at; /* -1: never fail */
	long calls;   /* allocation attempts so far */
	long live;    /* allocations not yet freed */
};

void mem_failing_init(struct mem_failing *mf, long fail_at);

#endif
