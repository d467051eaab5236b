/* mem: the allocation hook (see mem.h). */
#include "mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *default_alloc(const struct mem *m, size_t size)
{
	(void)m;
	return malloc(size);
}

static void *default_zalloc(const struct mem *m, size_t size)
{
	(void)m;
	return calloc(1, size);
}

static void default_free(const struct mem *m, void *ptr)
{
	(void)m;
	free(ptr);
}

static const struct mem mem_libc = {
    .alloc = default_alloc,
    .free = default_free,
    .zalloc = default_zalloc,
};

const struct mem *mem_default(void)
{
	return &mem_libc;
}

/* ---- per-thread caches ---------------------------------------------- */

/* Classes: 32, 64, ..., MEM_CACHED_MAX bytes, header included. */
#define CACHE_MIN_SHIFT 5
#define CACHE_CLASSES	7
#define CACHE_HDR	16    /* keeps malloc's 16-byte alignment */
#define CACHE_BIG	0xffu /* header mark: straight from malloc */

struct cache_free {
	struct cache_free *next;
};

struct cache_class {
	struct cache_free *head;
	unsigned n;
};

static __thread struct cache_class tcache[CACHE_CLASSES];
static __thread int tcache_registered;
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;

/* Thread exit: every cached block goes back to malloc. */
static void tcache_flush(void *unused)
{
	struct cache_free *f;

	(void)unused;
	for (int k = 0; k < CACHE_CLASSES; k++) {
		while ((f = tcache[k].head)) {
			tcache[k].head = f->next;
			free((char *)f - CACHE_HDR);
		}
		tcache[k].n = 0;
	}
}

static void tcache_key_init(void)
{
	pthread_key_create(&tcache_key, tcache_flush);
}

static int size_class(size_t total)
{
	int k = 0;

	while (((size_t)1 << (k + CACHE_MIN_SHIFT)) < total)
		k++;
	return k;
}

static void *cached_alloc(const struct mem *m, size_t size)
{
	size_t total = size + CACHE_HDR;
	struct cache_free *f;
	unsigned char *p;
	int k;

	(void)m;
	if (size > MEM_CACHED_MAX - CACHE_HDR) {
		p = malloc(total);
		if (!p)
			return NULL;
		p[0] = CACHE_BIG;
		return p + CACHE_HDR;
	}
	k = size_class(total);
	f = tcache[k].head;
	if (f) {
		tcache[k].head = f->next;
		tcache[k].n--;
		return f;
	}
	p = malloc((size_t)1 << (k + CACHE_MIN_SHIFT));
	if (!p)
		return NULL;
	p[0] = (unsigned char)k;
	return p + CACHE_HDR;
}

/* Large blocks from calloc (fresh pages stay untouched), small ones
 * from the cache, cleared. */
static void *cached_zalloc(const struct mem *m, size_t size)
{
	unsigned char *p;

	if (size <= MEM_CACHED_MAX - CACHE_HDR) {
		p = cached_alloc(m, size);
		if (p)
			memset(p, 0, size);
		return p;
	}
	p = calloc(1, size + CACHE_HDR);
	if (!p)
		return NULL;
	p[0] = CACHE_BIG;
	return p + CACHE_HDR;
}

static void cached_free(const struct mem *m, void *ptr)
{
	unsigned char *p = (unsigned char *)ptr - CACHE_HDR;
	struct cache_free *f = ptr;
	unsigned k = p[0];

	(void)m;
	if (k == CACHE_BIG || tcache[k].n >= MEM_CACHED_DEPTH) {
		free(p);
		return;
	}
	if (!tcache_registered) {
		/* Only threads that keep blocks need the exit hook. */
		pthread_once(&tcache_once, tcache_key_init);
		pthread_setspecific(tcache_key, tcache);
		tcache_registered = 1;
	}
	f->next = tcache[k].head;
	tcache[k].head = f;
	tcache[k].n++;
}

static const struct mem mem_tcached = {
    .alloc = cached_alloc,
    .zalloc = cached_zalloc,
    .free = cached_free,
};

const struct mem *mem_cached(void)
{
	return &mem_tcached;
}

void *mem_zalloc(const struct mem *m, size_t size)
{
	void *p;

	m = mem_or_default(m);
	if (m->zalloc)
		return m->zalloc(m, size);
	p = m->alloc(m, size);

	if (p)
		memset(p, 0, size);
	return p;
}

static void *failing_alloc(const struct mem *m, size_t size)
{
	struct mem_failing *mf = m->ctx;
	long n = __atomic_fetch_add(&mf->calls, 1, __ATOMIC_RELAXED);
	void *p;

	if (mf->fail_at >= 0 && n >= mf->fail_at)
		return NULL;
	p = malloc(size);
	if (p)
		__atomic_fetch_add(&mf->live, 1, __ATOMIC_RELAXED);
	return p;
}

static void failing_free(const struct mem *m, void *ptr)
{
	struct mem_failing *mf = m->ctx;

	__atomic_fetch_sub(&mf->live, 1, __ATOMIC_RELAXED);
	free(ptr);
}

void mem_failing_init(struct mem_failing *mf, long fail_at)
{
	mf->mem.alloc = failing_alloc;
	mf->mem.free = failing_free;
	mf->mem.ctx = mf;
	mf->mem.zalloc = NULL; /* through alloc: every block is counted */
	mf->fail_at = fail_at;
	mf->calls = 0;
	mf->live = 0;
}
