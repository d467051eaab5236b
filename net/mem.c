/* mem: the allocation hook (see mem.h). */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

static void *default_alloc(const struct mem *m, size_t size)
{
	(void)m;
	return malloc(size);
}

static void default_free(const struct mem *m, void *ptr)
{
	(void)m;
	free(ptr);
}

static const struct mem mem_libc = {
	.alloc = default_alloc,
	.free = default_free,
};

const struct mem *mem_default(void)
{
	return &mem_libc;
}

void *mem_zalloc(const struct mem *m, size_t size)
{
	void *p = mem_alloc(m, size);

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
	mf->fail_at = fail_at;
	mf->calls = 0;
	mf->live = 0;
}
