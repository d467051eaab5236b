/*
 * iobuf: chains of reference-counted blocks (see iobuf.h).
 *
 * Pool: a mutex-guarded LIFO free list (the most recently freed block is
 * the warmest in cache).  A lock-free Treiber stack would need ABA
 * protection (tagged pointers, double-width CAS); not worth it while every
 * operation takes or returns a whole batch of blocks under one lock.
 * A region is obtained with the lock dropped (the RDMA hook registers it,
 * which takes milliseconds): `growing` reserves it against max_regions,
 * and a taker short of blocks while one is on its way waits on `grown`
 * for it rather than obtaining another.  With a grow hook, the pool asks for a region
 * before it runs dry, so takers on event loops rarely wait for one.
 *
 * Refcounts: a block on the free list has refcount 0; iobuf takes it with
 * 1; each ref holds one count.  The last release (acq_rel) hands the block
 * back.  Refcount 1 seen with acquire by a ref's holder means that ref is
 * the only one, so nobody else can read or share the block concurrently:
 * that is when a tail block may be written past its write position.
 *
 * Ref array: a window [start, start + nrefs) of `inl` or of the heap array.
 * Dropping from the front advances start; appending compacts when at most
 * half the slots are used and otherwise doubles, so both are amortised
 * O(1).
 */
#include "iobuf.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stamp.h"

struct iobuf_block_hdr {
	uint32_t ref;  /* atomic: refs holding the block; 0 when free */
	uint32_t wpos; /* bytes written; only the sole holder moves it */
	struct iobuf_pool *pool;
	struct iobuf_block *next; /* free list or a batch being moved */
	struct iobuf_region *region;
};

struct iobuf_block {
	union {
		struct iobuf_block_hdr h;
		unsigned char hdr_space[IOBUF_BLOCK_HDR];
	};
	unsigned char data[IOBUF_BLOCK_CAP];
};

static_assert(sizeof(struct iobuf_block_hdr) <= IOBUF_BLOCK_HDR,
	      "block header must fit in IOBUF_BLOCK_HDR bytes");
static_assert(offsetof(struct iobuf_block, data) == IOBUF_BLOCK_HDR,
	      "payload starts right after the header");
static_assert(sizeof(struct iobuf_block) == IOBUF_BLOCK_SIZE,
	      "a block is exactly IOBUF_BLOCK_SIZE bytes");
static_assert(IOBUF_BLOCK_CAP <= UINT32_MAX, "ref offsets are 32-bit");

struct iobuf_region {
	struct iobuf_region *next;
	void *base;
	size_t bytes;
	void *cookie;
	size_t nfree; /* iobuf_pool_trim's count, under the lock */
	bool gone;    /* iobuf_pool_trim took it off the pool */
};

/* --- pool ---------------------------------------------------------------- */

static void *region_from_mem(void *ctx, size_t bytes, void **cookie);

/*
 * Lock held: takes the regions whose blocks are all on the free list off
 * the pool (keeping prealloc_regions, and one at least) and returns them
 * as a list for the caller to free without the lock.
 */
static struct iobuf_region *take_free_regions(struct iobuf_pool *pool)
{
	size_t keep = pool->opt.prealloc_regions ? pool->opt.prealloc_regions
						 : 1;
	struct iobuf_region *rg, **pp, *gone = NULL;
	struct iobuf_block **bp;

	for (rg = pool->regions; rg; rg = rg->next)
		rg->nfree = 0;
	for (struct iobuf_block *b = pool->free_list; b; b = b->h.next)
		b->h.region->nfree++;
	for (pp = &pool->regions; (rg = *pp);) {
		if (rg->nfree == pool->opt.region_blocks &&
		    pool->nregions > keep) {
			*pp = rg->next;
			rg->next = gone;
			rg->gone = true;
			gone = rg;
			pool->nregions--;
			pool->blocks_total -= rg->nfree;
			pool->blocks_free -= rg->nfree;
			continue;
		}
		pp = &rg->next;
	}
	if (!gone)
		return NULL;
	for (bp = &pool->free_list; *bp;) {
		if ((*bp)->h.region->gone)
			*bp = (*bp)->h.next;
		else
			bp = &(*bp)->h.next;
	}
	return gone;
}

size_t iobuf_pool_trim(struct iobuf_pool *pool)
{
	const struct iobuf_region_hook *hook = &pool->opt.region;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	struct iobuf_region *gone, *next;
	size_t given = 0;

	if (hook->alloc != region_from_mem)
		return 0;
	pthread_mutex_lock(&pool->lock);
	gone = pool->growing ? NULL : take_free_regions(pool);
	for (struct iobuf_block *b = pool->free_list; b; b = b->h.next) {
		uintptr_t lo = ((uintptr_t)b + IOBUF_BLOCK_HDR + page - 1) &
			       ~(page - 1);
		uintptr_t hi = ((uintptr_t)b + IOBUF_BLOCK_SIZE) & ~(page - 1);

		if (hi > lo && !madvise((void *)lo, hi - lo, MADV_DONTNEED))
			given += hi - lo;
	}
	pthread_mutex_unlock(&pool->lock);
	for (; gone; gone = next) {
		next = gone->next;
		given += gone->bytes;
		hook->free(hook->ctx, gone->base, gone->bytes, gone->cookie);
		mem_free(pool->opt.mem, gone);
	}
	return given;
}

static void *region_from_mem(void *ctx, size_t bytes, void **cookie)
{
	struct iobuf_pool *pool = ctx;

	void *base = mem_alloc(pool->opt.mem, bytes);

	*cookie = NULL;
	/* Touched now: the pool's memory counts in the RSS when taken, not
	 * page by page as data first reaches each block's far end (a
	 * process that looks like it grows while its pool does not). */
	if (base)
		memset(base, 0, bytes);
	return base;
}

static void region_to_mem(void *ctx, void *base, size_t bytes, void *cookie)
{
	struct iobuf_pool *pool = ctx;

	(void)bytes;
	(void)cookie;
	mem_free(pool->opt.mem, base);
}

void iobuf_pool_options_default(struct iobuf_pool_options *opt)
{
	*opt = (struct iobuf_pool_options){
	    .mem = NULL,
	    .region_blocks = IOBUF_REGION_BLOCKS,
	};
}

int iobuf_pool_options_validate(const struct iobuf_pool_options *opt)
{
	if (opt->region_blocks == 0 ||
	    opt->region_blocks > IOBUF_REGION_BLOCKS_MAX)
		return -EINVAL;
	if (!opt->region.alloc != !opt->region.free)
		return -EINVAL;
	if (opt->max_regions && opt->prealloc_regions > opt->max_regions)
		return -EINVAL;
	return 0;
}

/* A new region from the hook, its blocks not yet on any list; NULL when
 * the hook fails.  No lock held. */
static struct iobuf_region *region_new(struct iobuf_pool *pool)
{
	const struct iobuf_region_hook *hook = &pool->opt.region;
	struct iobuf_region *rg;

	rg = mem_alloc(pool->opt.mem, sizeof(*rg));
	if (!rg)
		return NULL;
	rg->bytes = pool->opt.region_blocks * IOBUF_BLOCK_SIZE;
	rg->cookie = NULL;
	rg->nfree = 0;
	rg->gone = false;
	rg->base = hook->alloc(hook->ctx, rg->bytes, &rg->cookie);
	if (!rg->base)
		goto out_free_record;
	/* A hook breaking its alignment contract is treated as a failure. */
	if ((uintptr_t)rg->base % alignof(struct iobuf_block))
		goto out_free_region;
	return rg;

out_free_region:
	hook->free(hook->ctx, rg->base, rg->bytes, rg->cookie);
out_free_record:
	mem_free(pool->opt.mem, rg);
	return NULL;
}

/* Puts a region's blocks on the free list.  Lock held. */
static void region_insert(struct iobuf_pool *pool, struct iobuf_region *rg)
{
	size_t nblocks = pool->opt.region_blocks;

	for (size_t i = nblocks; i-- > 0;) {
		struct iobuf_block *b = (struct iobuf_block *)rg->base + i;

		b->h.ref = 0;
		b->h.wpos = 0;
		b->h.pool = pool;
		b->h.region = rg;
		b->h.next = pool->free_list;
		pool->free_list = b;
	}
	rg->next = pool->regions;
	pool->regions = rg;
	pool->nregions++;
	pool->blocks_total += nblocks;
	pool->blocks_free += nblocks;
}

/*
 * Adds one region.  Lock held on entry and on return, dropped while the
 * hook runs; the region is reserved first (`growing`), so concurrent
 * growers keep to max_regions.  0, or -ENOMEM (at the limit, or the hook
 * failed).
 */
static int pool_grow(struct iobuf_pool *pool)
{
	struct iobuf_region *rg;

	if (pool->opt.max_regions &&
	    pool->nregions + pool->growing >= pool->opt.max_regions)
		return -ENOMEM;
	pool->growing++;
	pthread_mutex_unlock(&pool->lock);
	rg = region_new(pool);
	pthread_mutex_lock(&pool->lock);
	pool->growing--;
	if (rg)
		region_insert(pool, rg);
	pthread_cond_broadcast(&pool->grown);
	return rg ? 0 : -ENOMEM;
}

/* Free blocks, counting the regions on their way.  Lock held. */
static size_t blocks_coming(const struct iobuf_pool *pool)
{
	return pool->blocks_free + pool->growing * pool->opt.region_blocks;
}

/* Lock held; only for init failure and destroy. */
static void pool_free_regions(struct iobuf_pool *pool)
{
	const struct iobuf_region_hook *hook = &pool->opt.region;
	struct iobuf_region *rg, *next;

	for (rg = pool->regions; rg; rg = next) {
		next = rg->next;
		hook->free(hook->ctx, rg->base, rg->bytes, rg->cookie);
		mem_free(pool->opt.mem, rg);
	}
	pool->regions = NULL;
	pool->free_list = NULL;
	pool->nregions = 0;
	pool->blocks_total = 0;
	pool->blocks_free = 0;
}

/* --- per-thread caches ------------------------------------------------- */

/*
 * A thread keeps up to TCACHE_MAX free blocks of one pool, so that the
 * take and give of a small call's blocks (a read, an answer's header)
 * cost no mutex: a slow take fills the cache with a batch while it holds
 * the lock, a give beyond TCACHE_MAX returns a batch.  The blocks stay
 * free blocks (refcount 0) the pool counts: it links the caches bound to
 * it (under its lock), and its stats and destroy add their `n` (written
 * only by the owner, relaxed).  A cache is bound and unbound under
 * bind_lock then the pool's lock; a thread that exits gives its blocks
 * back (a key destructor), and destroy unbinds any cache left (idle: no
 * thread uses a pool being destroyed), so a cache never names a dead pool.
 */
#define TCACHE_MAX   32
#define TCACHE_BATCH 16

struct iobuf_tcache {
	struct iobuf_pool *pool; /* atomic (destroy may clear it): bound to */
	uint64_t pool_id;	 /* its id: a pool left undestroyed at the
				    same address is not it */
	struct iobuf_block *head;
	size_t n;		   /* atomic: the pool's stats read it */
	struct iobuf_tcache *next; /* pool->caches */
	bool keyed;		   /* the exit destructor is set */
};

static __thread struct iobuf_tcache tcache;
static pthread_mutex_t bind_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static pthread_key_t tcache_key;
static bool tcache_key_ok;
static uint64_t next_pool_id = 1; /* atomic */

static void tcache_set_n(struct iobuf_tcache *tc, size_t n)
{
	__atomic_store_n(&tc->n, n, __ATOMIC_RELAXED);
}

/* Puts tc's blocks back on the pool's free list, tc staying bound.
 * The owner thread, the pool's lock held. */
static void tcache_spill(struct iobuf_pool *pool, struct iobuf_tcache *tc)
{
	struct iobuf_block *tail;

	for (tail = tc->head; tail->h.next; tail = tail->h.next)
		;
	tail->h.next = pool->free_list;
	pool->free_list = tc->head;
	pool->blocks_free += tc->n;
	tc->head = NULL;
	tcache_set_n(tc, 0);
}

/* Gives tc's blocks back and takes it off its pool.  bind_lock and the
 * pool's lock held. */
static void tcache_unbind_locked(struct iobuf_pool *pool,
				 struct iobuf_tcache *tc)
{
	struct iobuf_tcache **pp;

	if (tc->n) {
		tcache_spill(pool, tc);
		if (pool->waiters)
			pthread_cond_broadcast(&pool->grown);
	}
	for (pp = &pool->caches; *pp && *pp != tc; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = tc->next;
	tc->head = NULL;
	tc->next = NULL;
	tcache_set_n(tc, 0);
	__atomic_store_n(&tc->pool, NULL, __ATOMIC_RELAXED);
}

static void tcache_unbind(struct iobuf_tcache *tc)
{
	struct iobuf_pool *pool;

	pthread_mutex_lock(&bind_lock);
	pool = __atomic_load_n(&tc->pool, __ATOMIC_RELAXED);
	if (pool) {
		pthread_mutex_lock(&pool->lock);
		tcache_unbind_locked(pool, tc);
		pthread_mutex_unlock(&pool->lock);
	}
	pthread_mutex_unlock(&bind_lock);
}

static void tcache_exit(void *arg)
{
	tcache_unbind(arg);
}

static void tcache_key_init(void)
{
	tcache_key_ok = pthread_key_create(&tcache_key, tcache_exit) == 0;
}

/*
 * This thread's cache for `pool`, bound now if it was bound to another
 * pool (whose blocks go back) or to none; NULL if it cannot be (no key for
 * the exit destructor: the thread goes without).  No pool lock held.
 */
static __attribute__((noinline)) struct iobuf_tcache *
tcache_bind(struct iobuf_pool *pool)
{
	struct iobuf_tcache *tc = &tcache;

	if (!tc->keyed) {
		pthread_once(&tcache_once, tcache_key_init);
		if (!tcache_key_ok || pthread_setspecific(tcache_key, tc))
			return NULL;
		tc->keyed = true;
	}
	/* Another pool's blocks go back to it (a pool is destroyed only
	 * after its caches' blocks are free, and that unbinds them), except
	 * those of a pool left undestroyed where this one now lives: those
	 * are forgotten. */
	if (__atomic_load_n(&tc->pool, __ATOMIC_RELAXED) == pool)
		*tc = (struct iobuf_tcache){.keyed = true};
	tcache_unbind(tc);
	pthread_mutex_lock(&bind_lock);
	pthread_mutex_lock(&pool->lock);
	tc->next = pool->caches;
	pool->caches = tc;
	tc->pool_id = pool->id;
	__atomic_store_n(&tc->pool, pool, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&bind_lock);
	return tc;
}

/* This thread's cache for `pool`, or NULL: the test of the hot path. */
static inline struct iobuf_tcache *tcache_for(struct iobuf_pool *pool)
{
	struct iobuf_tcache *tc = &tcache;

	if (!pool->opt.thread_cache)
		return NULL;
	if (__atomic_load_n(&tc->pool, __ATOMIC_RELAXED) == pool &&
	    tc->pool_id == pool->id)
		return tc;
	return tcache_bind(pool);
}

/* Free blocks in the caches bound to pool.  Lock held. */
static size_t blocks_cached(const struct iobuf_pool *pool)
{
	const struct iobuf_tcache *tc;
	size_t n = 0;

	for (tc = pool->caches; tc; tc = tc->next)
		n += __atomic_load_n(&tc->n, __ATOMIC_RELAXED);
	return n;
}

/* Moves up to TCACHE_BATCH free blocks into tc, above the grow hook's
 * low-water mark so that caching never makes the pool grow.  Lock held. */
static void tcache_fill(struct iobuf_pool *pool, struct iobuf_tcache *tc)
{
	size_t keep = pool->opt.grow.low_blocks, k;
	struct iobuf_block *b;

	if (pool->blocks_free <= keep + 1)
		return;
	k = pool->blocks_free - keep - 1;
	if (k > TCACHE_BATCH)
		k = TCACHE_BATCH;
	if (k > TCACHE_MAX - tc->n)
		k = TCACHE_MAX - tc->n;
	while (k--) {
		b = pool->free_list;
		pool->free_list = b->h.next;
		pool->blocks_free--;
		b->h.next = tc->head;
		tc->head = b;
		tcache_set_n(tc, tc->n + 1);
	}
}

/* Takes n blocks from tc if it has them: the list, or NULL. */
static struct iobuf_block *tcache_take(struct iobuf_tcache *tc, size_t n)
{
	struct iobuf_block *first = tc->head, *b = first;

	if (tc->n < n)
		return NULL;
	for (size_t i = 1; i < n; i++)
		b = b->h.next;
	tc->head = b->h.next;
	b->h.next = NULL;
	tcache_set_n(tc, tc->n - n);
	return first;
}

int iobuf_pool_init(struct iobuf_pool *pool,
		    const struct iobuf_pool_options *opt)
{
	size_t i;
	int err;

	memset(pool, 0, sizeof(*pool));
	if (opt)
		pool->opt = *opt;
	else
		iobuf_pool_options_default(&pool->opt);
	err = iobuf_pool_options_validate(&pool->opt);
	if (err)
		return err;
	if (!pool->opt.region.alloc) {
		pool->opt.region.alloc = region_from_mem;
		pool->opt.region.free = region_to_mem;
		pool->opt.region.ctx = pool;
	}
	pool->id = __atomic_fetch_add(&next_pool_id, 1, __ATOMIC_RELAXED);
	err = -pthread_mutex_init(&pool->lock, NULL);
	if (err)
		return err;
	err = -pthread_cond_init(&pool->grown, NULL);
	if (err)
		goto out_mutex;
	pthread_mutex_lock(&pool->lock);
	for (i = 0; i < pool->opt.prealloc_regions && !err; i++)
		err = pool_grow(pool);
	if (err)
		pool_free_regions(pool);
	pthread_mutex_unlock(&pool->lock);
	if (!err)
		return 0;
	pthread_cond_destroy(&pool->grown);
out_mutex:
	pthread_mutex_destroy(&pool->lock);
	return err;
}

int iobuf_pool_destroy(struct iobuf_pool *pool)
{
	pthread_mutex_lock(&bind_lock);
	pthread_mutex_lock(&pool->lock);
	if (pool->blocks_free + blocks_cached(pool) != pool->blocks_total ||
	    pool->growing) {
		pthread_mutex_unlock(&pool->lock);
		pthread_mutex_unlock(&bind_lock);
		return -EBUSY;
	}
	while (pool->caches)
		tcache_unbind_locked(pool, pool->caches);
	pool_free_regions(pool);
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&bind_lock);
	pthread_cond_destroy(&pool->grown);
	pthread_mutex_destroy(&pool->lock);
	return 0;
}

void iobuf_pool_stats(struct iobuf_pool *pool, struct iobuf_pool_stats *st)
{
	pthread_mutex_lock(&pool->lock);
	st->regions = pool->nregions;
	st->blocks_total = pool->blocks_total;
	st->blocks_free = pool->blocks_free + blocks_cached(pool);
	st->grows_sync = pool->grows_sync;
	st->grows_ahead = pool->grows_ahead;
	st->grow_waits = pool->grow_waits;
	pthread_mutex_unlock(&pool->lock);
}

size_t iobuf_pool_grow_ahead(struct iobuf_pool *pool)
{
	size_t added = 0;

	pthread_mutex_lock(&pool->lock);
	while (blocks_coming(pool) < pool->opt.grow.low_blocks &&
	       pool_grow(pool) == 0) {
		pool->grows_ahead++;
		added++;
	}
	pool->grow_kicked = false;
	pthread_mutex_unlock(&pool->lock);
	return added;
}

int iobuf_pool_each_region(struct iobuf_pool *pool,
			   int (*fn)(void *arg, struct iobuf_region_info *ri),
			   void *arg)
{
	struct iobuf_region_info ri;
	struct iobuf_region *rg;
	int err = 0;

	pthread_mutex_lock(&pool->lock);
	while (pool->growing)
		pthread_cond_wait(&pool->grown, &pool->lock);
	for (rg = pool->regions; rg && !err; rg = rg->next) {
		ri.base = rg->base;
		ri.bytes = rg->bytes;
		ri.cookie = rg->cookie;
		err = fn(arg, &ri);
		/* Read without the lock by iobuf_block_region(). */
		__atomic_store_n(&rg->cookie, ri.cookie, __ATOMIC_RELAXED);
	}
	if (!err)
		err = fn(arg, NULL);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/*
 * Takes n blocks (refcount 1, empty) as a list linked through h.next,
 * growing the pool as needed.  With `all`, takes n or nothing.  Returns
 * the number taken.
 */
static size_t pool_take(struct iobuf_pool *pool, size_t n, bool all,
			struct iobuf_block **head)
{
	const struct iobuf_grow_hook *grow = &pool->opt.grow;
	struct iobuf_tcache *tc = tcache_for(pool);
	struct iobuf_block *b, *first;
	bool kick = false, waited = false;
	size_t i;

	first = tc ? tcache_take(tc, n) : NULL;
	if (first)
		goto took;
	pthread_mutex_lock(&pool->lock);
	/* Short for a big take: this thread's own cache first (other
	 * threads' caches, TCACHE_MAX blocks each at most, stay theirs). */
	if (tc && tc->n && pool->blocks_free < n)
		tcache_spill(pool, tc);
	while (pool->blocks_free < n) {
		/* A partial take (a read) goes on with what there is: the
		 * grow hook, kicked below, brings more. */
		if (!all && pool->blocks_free && grow->kick)
			break;
		if (pool->growing) {
			/* A region on its way, started earlier: wait for it
			 * (or for blocks given back) rather than register
			 * another. */
			pool->grow_waits += !waited;
			waited = true;
			__atomic_add_fetch(&pool->waiters, 1, __ATOMIC_RELAXED);
			pthread_cond_wait(&pool->grown, &pool->lock);
			__atomic_sub_fetch(&pool->waiters, 1, __ATOMIC_RELAXED);
		} else if (pool_grow(pool) == 0) {
			pool->grows_sync++;
		} else {
			break;
		}
	}
	if (pool->blocks_free < n) {
		if (all || pool->blocks_free == 0) {
			pthread_mutex_unlock(&pool->lock);
			*head = NULL;
			return 0;
		}
		n = pool->blocks_free;
	}
	first = pool->free_list;
	b = first;
	for (i = 1; i < n; i++)
		b = b->h.next;
	pool->free_list = b->h.next;
	b->h.next = NULL;
	pool->blocks_free -= n;
	if (blocks_coming(pool) < grow->low_blocks && grow->kick &&
	    !pool->grow_kicked &&
	    (!pool->opt.max_regions ||
	     pool->nregions + pool->growing < pool->opt.max_regions)) {
		pool->grow_kicked = true;
		kick = true;
	}
	if (tc && n < TCACHE_BATCH)
		tcache_fill(pool, tc);
	pthread_mutex_unlock(&pool->lock);

took:
	for (b = first; b; b = b->h.next) {
		b->h.ref = 1;
		b->h.wpos = 0;
	}
	*head = first;
	if (kick && grow->kick(grow->ctx) != 0) {
		pthread_mutex_lock(&pool->lock);
		pool->grow_kicked = false;
		pthread_mutex_unlock(&pool->lock);
	}
	return n;
}

/* Returns a list of n unreferenced blocks (linked by h.next) to the pool. */
static void pool_give(struct iobuf_pool *pool, struct iobuf_block *head,
		      struct iobuf_block *tail, size_t n)
{
	struct iobuf_tcache *tc = tcache_for(pool);

	/* Small gives only, and a taker waiting for blocks gets these. */
	if (tc && n <= TCACHE_BATCH &&
	    !__atomic_load_n(&pool->waiters, __ATOMIC_RELAXED)) {
		tail->h.next = tc->head;
		tc->head = head;
		tcache_set_n(tc, tc->n + n);
		if (tc->n <= TCACHE_MAX)
			return;
		/* Over: the cache keeps its warmest batch, the rest go. */
		for (head = tc->head, n = 1; n < TCACHE_BATCH; n++)
			head = head->h.next;
		tail = head;
		head = head->h.next;
		tail->h.next = NULL;
		n = tc->n - TCACHE_BATCH;
		tcache_set_n(tc, TCACHE_BATCH);
		for (tail = head; tail->h.next; tail = tail->h.next)
			;
	}
	pthread_mutex_lock(&pool->lock);
	tail->h.next = pool->free_list;
	pool->free_list = head;
	pool->blocks_free += n;
	if (pool->waiters)
		pthread_cond_broadcast(&pool->grown);
	pthread_mutex_unlock(&pool->lock);
}

/* Gathers blocks whose last ref went away, one lock per pool and batch. */
struct release {
	struct iobuf_pool *pool;
	struct iobuf_block *head, *tail;
	size_t n;
};

static void release_flush(struct release *rl)
{
	if (rl->n)
		pool_give(rl->pool, rl->head, rl->tail, rl->n);
	rl->pool = NULL;
	rl->head = NULL;
	rl->tail = NULL;
	rl->n = 0;
}

static void release_block(struct release *rl, struct iobuf_block *b)
{
	if (__atomic_sub_fetch(&b->h.ref, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (rl->n && rl->pool != b->h.pool)
		release_flush(rl);
	rl->pool = b->h.pool;
	b->h.next = rl->head;
	rl->head = b;
	if (!rl->tail)
		rl->tail = b;
	rl->n++;
}

void iobuf_block_region(const struct iobuf_block *b,
			struct iobuf_region_info *out)
{
	out->base = b->h.region->base;
	out->bytes = b->h.region->bytes;
	out->cookie = __atomic_load_n(&b->h.region->cookie, __ATOMIC_RELAXED);
}

uint32_t iobuf_block_refcount(const struct iobuf_block *b)
{
	return __atomic_load_n(&b->h.ref, __ATOMIC_ACQUIRE);
}

struct iobuf_block *iobuf_block_get(struct iobuf_pool *pool)
{
	struct iobuf_block *b;

	return pool_take(pool, 1, true, &b) == 1 ? b : NULL;
}

void *iobuf_block_data(struct iobuf_block *b)
{
	return b->data;
}

void iobuf_block_put(struct iobuf_block *b)
{
	struct release rl = {0};

	release_block(&rl, b);
	release_flush(&rl);
}

/* --- ref array ----------------------------------------------------------- */

static inline struct iobuf_ref *ref_base(const struct iobuf *buf)
{
	return buf->heap ? buf->heap : (struct iobuf_ref *)buf->inl;
}

/* Logical index i (0 = front); stable across compaction and growth. */
static inline struct iobuf_ref *ref_at(const struct iobuf *buf, size_t i)
{
	return ref_base(buf) + buf->start + i;
}

static inline struct iobuf_ref *ref_tail(const struct iobuf *buf)
{
	return buf->nrefs ? ref_at(buf, buf->nrefs - 1) : NULL;
}

/* Room for `extra` more refs at the end.  0 or -ENOMEM. */
static int refs_reserve(struct iobuf *buf, size_t extra)
{
	struct iobuf_ref *base = ref_base(buf), *heap;
	size_t cap;

	if (extra <= buf->cap - buf->start - buf->nrefs)
		return 0;
	if (extra <= buf->cap - buf->nrefs && buf->nrefs <= buf->cap / 2) {
		memmove(base, base + buf->start, buf->nrefs * sizeof(*base));
		buf->start = 0;
		return 0;
	}
	if (extra > SIZE_MAX / 2 / sizeof(*base) - buf->nrefs)
		return -ENOMEM;
	cap = buf->cap * 2;
	if (cap < buf->nrefs + extra)
		cap = buf->nrefs + extra;
	heap = mem_alloc(buf->pool->opt.mem, cap * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	memcpy(heap, base + buf->start, buf->nrefs * sizeof(*heap));
	mem_free(buf->pool->opt.mem, buf->heap);
	buf->heap = heap;
	buf->cap = cap;
	buf->start = 0;
	return 0;
}

/*
 * Appends a piece (room reserved).  With `take`, the caller's count on the
 * block moves to the chain; else one is added.  A piece that continues the
 * tail in the same block extends the tail instead.
 */
static void ref_push(struct iobuf *buf, struct iobuf_block *b, uint32_t off,
		     uint32_t len, bool take, bool merge)
{
	struct iobuf_ref *tail = ref_tail(buf);

	if (merge && tail && tail->block == b && tail->off + tail->len == off) {
		tail->len += len;
		/* Never the last count: the tail still holds one. */
		if (take)
			__atomic_sub_fetch(&b->h.ref, 1, __ATOMIC_RELAXED);
		return;
	}
	if (!take)
		__atomic_add_fetch(&b->h.ref, 1, __ATOMIC_RELAXED);
	*ref_at(buf, buf->nrefs++) = (struct iobuf_ref){b, off, len};
}

/* Logical index of the ref holding byte off (< len), and off inside it. */
static size_t ref_find(const struct iobuf *buf, size_t off, size_t *inner)
{
	size_t i;

	for (i = 0; off >= ref_at(buf, i)->len; i++)
		off -= ref_at(buf, i)->len;
	*inner = off;
	return i;
}

/* Refs spanned by n > 0 bytes starting at ref i, inner offset `inner`. */
static size_t ref_span(const struct iobuf *buf, size_t i, size_t inner,
		       size_t n)
{
	size_t k = 0;

	n += inner;
	for (; n > ref_at(buf, i)->len; i++, k++)
		n -= ref_at(buf, i)->len;
	return k + 1;
}

/* Free space of the tail block if only this chain's tail ref holds it. */
static size_t tail_room(const struct iobuf *buf, struct iobuf_block **bp)
{
	struct iobuf_ref *t = ref_tail(buf);

	*bp = NULL;
	if (!t || iobuf_block_refcount(t->block) != 1 ||
	    t->off + t->len != t->block->h.wpos)
		return 0;
	*bp = t->block;
	return IOBUF_BLOCK_CAP - t->block->h.wpos;
}

/* --- buffer -------------------------------------------------------------- */

void iobuf_init(struct iobuf *buf, struct iobuf_pool *pool)
{
	memset(buf, 0, sizeof(*buf));
	buf->pool = pool;
	buf->cap = IOBUF_INLINE_REFS;
}

/* Out of line: the empty case (most of a call's buffers, those of an
 * absent attachment say) then costs a test, not a stack frame. */
static __attribute__((noinline)) void reset_refs(struct iobuf *buf)
{
	struct release rl = {0};
	size_t i;

	for (i = 0; i < buf->nrefs; i++)
		release_block(&rl, ref_at(buf, i)->block);
	release_flush(&rl);
	mem_free(buf->pool->opt.mem, buf->heap);
	buf->heap = NULL;
	buf->cap = IOBUF_INLINE_REFS;
	buf->start = 0;
	buf->nrefs = 0;
	buf->len = 0;
}

void iobuf_reset(struct iobuf *buf)
{
	if (buf->nrefs || buf->heap) {
		reset_refs(buf);
		return;
	}
	buf->start = 0;
	buf->len = 0;
}

void iobuf_destroy(struct iobuf *buf)
{
	iobuf_reset(buf);
	buf->pool = NULL;
}

int iobuf_append_block(struct iobuf *buf, struct iobuf_block *b, size_t n)
{
	int err;

	if (n == 0 || n > IOBUF_BLOCK_CAP)
		return -EINVAL;
	err = refs_reserve(buf, 1);
	if (err)
		return err;
	b->h.wpos = (uint32_t)n;
	ref_push(buf, b, 0, (uint32_t)n, true, false);
	buf->len += n;
	return 0;
}

int iobuf_append(struct iobuf *buf, const void *data, size_t n)
{
	const unsigned char *p = data;
	struct iobuf_block *tb, *b, *next;
	size_t room, rest, nblocks, k;
	int err;

	if (n == 0)
		return 0;
	room = tail_room(buf, &tb);
	if (room > n)
		room = n;
	rest = n - room;
	nblocks = rest / IOBUF_BLOCK_CAP + (rest % IOBUF_BLOCK_CAP != 0);
	b = NULL;
	if (nblocks) {
		err = refs_reserve(buf, nblocks);
		if (err)
			return err;
		if (pool_take(buf->pool, nblocks, true, &b) != nblocks)
			return -ENOMEM;
	}
	/* Nothing can fail from here on. */
	if (room) {
		memcpy(tb->data + tb->h.wpos, p, room);
		tb->h.wpos += room;
		ref_tail(buf)->len += room;
		p += room;
	}
	for (; b; b = next) {
		next = b->h.next;
		k = rest < IOBUF_BLOCK_CAP ? rest : IOBUF_BLOCK_CAP;
		memcpy(b->data, p, k);
		b->h.wpos = k;
		ref_push(buf, b, 0, k, true, false);
		p += k;
		rest -= k;
	}
	buf->len += n;
	return 0;
}

int iobuf_append_buf(struct iobuf *dst, struct iobuf *src)
{
	struct iobuf_ref *heap, *r;
	size_t cap, i;
	int err;

	if (dst == src)
		return -EINVAL;
	if (src->nrefs == 0)
		return 0;
	if (dst->nrefs == 0 && src->heap && dst->pool == src->pool) {
		/* Swap arrays: same pool, so the same mem frees them. */
		heap = dst->heap;
		cap = dst->cap;
		dst->heap = src->heap;
		dst->cap = src->cap;
		dst->start = src->start;
		dst->nrefs = src->nrefs;
		dst->len = src->len;
		src->heap = heap;
		src->cap = cap;
		goto out_empty_src;
	}
	err = refs_reserve(dst, src->nrefs);
	if (err)
		return err;
	for (i = 0; i < src->nrefs; i++) {
		r = ref_at(src, i);
		ref_push(dst, r->block, r->off, r->len, true, true);
	}
	dst->len += src->len;
out_empty_src:
	src->start = 0;
	src->nrefs = 0;
	src->len = 0;
	return 0;
}

int iobuf_share(struct iobuf *dst, const struct iobuf *src, size_t off,
		size_t n)
{
	/*
	 * Sharing into itself must not merge: a merge would extend a ref
	 * this loop may still read.
	 */
	bool merge = dst != src;
	struct iobuf_ref r;
	size_t i, inner, k;
	int err;

	if (off > src->len || n > src->len - off)
		return -ERANGE;
	if (n == 0)
		return 0;
	i = ref_find(src, off, &inner);
	err = refs_reserve(dst, ref_span(src, i, inner, n));
	if (err)
		return err;
	/* Logical indexes in src survive dst's compaction even if dst == src */
	for (; n; i++, inner = 0) {
		r = *ref_at(src, i);
		k = r.len - inner;
		if (k > n)
			k = n;
		ref_push(dst, r.block, r.off + inner, k, false, merge);
		dst->len += k;
		n -= k;
	}
	return 0;
}

int iobuf_cut(struct iobuf *src, struct iobuf *dst, size_t n)
{
	struct iobuf_ref *r;
	int err;

	if (dst == src)
		return -EINVAL;
	if (n > src->len)
		return -ERANGE;
	if (n == 0)
		return 0;
	err = refs_reserve(dst, ref_span(src, 0, 0, n));
	if (err)
		return err;
	src->len -= n;
	dst->len += n;
	while (n) {
		r = ref_at(src, 0);
		if (r->len > n) {
			/* Split: the front piece becomes a second holder. */
			ref_push(dst, r->block, r->off, n, false, true);
			r->off += n;
			r->len -= n;
			break;
		}
		ref_push(dst, r->block, r->off, r->len, true, true);
		n -= r->len;
		src->start++;
		src->nrefs--;
	}
	if (src->nrefs == 0)
		src->start = 0;
	return 0;
}

size_t iobuf_drop_front(struct iobuf *buf, size_t n)
{
	struct release rl = {0};
	struct iobuf_ref *r;
	size_t left;

	if (n > buf->len)
		n = buf->len;
	for (left = n; left;) {
		r = ref_at(buf, 0);
		if (r->len > left) {
			r->off += left;
			r->len -= left;
			break;
		}
		left -= r->len;
		release_block(&rl, r->block);
		buf->start++;
		buf->nrefs--;
	}
	release_flush(&rl);
	if (buf->nrefs == 0)
		buf->start = 0;
	buf->len -= n;
	return n;
}

size_t iobuf_drop_back(struct iobuf *buf, size_t n)
{
	struct release rl = {0};
	struct iobuf_ref *r;
	size_t left;

	if (n > buf->len)
		n = buf->len;
	for (left = n; left;) {
		r = ref_tail(buf);
		if (r->len > left) {
			r->len -= left;
			break;
		}
		left -= r->len;
		release_block(&rl, r->block);
		buf->nrefs--;
	}
	release_flush(&rl);
	if (buf->nrefs == 0)
		buf->start = 0;
	buf->len -= n;
	return n;
}

size_t iobuf_copy_out(const struct iobuf *buf, size_t off, void *dst, size_t n)
{
	unsigned char *d = dst;
	const struct iobuf_ref *r;
	size_t i, inner, k, done;

	if (off >= buf->len)
		return 0;
	if (n > buf->len - off)
		n = buf->len - off;
	i = ref_find(buf, off, &inner);
	for (done = 0; done < n; i++, inner = 0) {
		r = ref_at(buf, i);
		k = r->len - inner;
		if (k > n - done)
			k = n - done;
		memcpy(d + done, r->block->data + r->off + inner, k);
		done += k;
	}
	return n;
}

const void *iobuf_peek(const struct iobuf *buf, size_t off, size_t n, void *tmp)
{
	const struct iobuf_ref *r;
	size_t i, inner;

	if (off > buf->len || n > buf->len - off)
		return NULL;
	if (n == 0)
		return tmp;
	i = ref_find(buf, off, &inner);
	r = ref_at(buf, i);
	if (inner + n <= r->len)
		return r->block->data + r->off + inner;
	iobuf_copy_out(buf, off, tmp, n);
	return tmp;
}

size_t iobuf_iov(const struct iobuf *buf, struct iovec *iov, size_t max_iov)
{
	const struct iobuf_ref *r;
	size_t i, n = buf->nrefs < max_iov ? buf->nrefs : max_iov;

	for (i = 0; i < n; i++) {
		r = ref_at(buf, i);
		iov[i].iov_base = r->block->data + r->off;
		iov[i].iov_len = r->len;
	}
	return n;
}

size_t iobuf_ref_count(const struct iobuf *buf)
{
	return buf->nrefs;
}

int iobuf_ref_at(const struct iobuf *buf, size_t i, const void **ptr,
		 size_t *len)
{
	const struct iobuf_ref *r;

	if (i >= buf->nrefs)
		return -ERANGE;
	r = ref_at(buf, i);
	*ptr = r->block->data + r->off;
	*len = r->len;
	return 0;
}

const struct iobuf_block *iobuf_ref_block(const struct iobuf *buf, size_t i)
{
	return i < buf->nrefs ? ref_at(buf, i)->block : NULL;
}

size_t iobuf_block_count(const struct iobuf *buf)
{
	size_t i, n = 0;

	for (i = 0; i < buf->nrefs; i++)
		if (i == 0 ||
		    ref_at(buf, i)->block != ref_at(buf, i - 1)->block)
			n++;
	return n;
}

/* --- file descriptors ---------------------------------------------------- */

static ssize_t errno_ret(void)
{
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/*
 * One read into `iov`: a single region with recv(2), which skips the
 * iovec import readv(2) pays (measured on this VM's loopback, cold after
 * a vCPU halt: 2.6-2.9 us a recv, 3.1-3.8 a one-iovec readv), falling
 * back to read(2) on an fd that is not a socket; several with readv(2).
 * EINTR retried.
 */
static ssize_t read_iov(int fd, struct iovec *iov, size_t niov)
{
	ssize_t r;

	do {
		if (niov == 1) {
			r = recv(fd, iov[0].iov_base, iov[0].iov_len, 0);
			if (r < 0 && errno == ENOTSOCK)
				r = read(fd, iov[0].iov_base, iov[0].iov_len);
		} else {
			r = readv(fd, iov, (int)niov);
		}
	} while (r < 0 && errno == EINTR);
	return r;
}

/* One read into the tail's room and up to max_blocks fresh blocks;
 * *offered: the bytes the read could take. */
static ssize_t read_once(struct iobuf *buf, int fd, size_t max,
			 size_t max_blocks, size_t *offered)
{
	struct iovec iov[1 + IOBUF_READ_MAX_BLOCKS];
	struct iobuf_block *tb, *fresh = NULL, *b, *last;
	size_t room, want, nblocks, got = 0, niov = 0, k;
	ssize_t r;

	room = tail_room(buf, &tb);
	if (room > max)
		room = max;
	if (room) {
		iov[niov].iov_base = tb->data + tb->h.wpos;
		iov[niov++].iov_len = room;
	}
	want = max - room;
	nblocks = want / IOBUF_BLOCK_CAP + (want % IOBUF_BLOCK_CAP != 0);
	if (nblocks > max_blocks)
		nblocks = max_blocks;
	/* Without fresh blocks, still read into the tail if it has room. */
	if (nblocks && refs_reserve(buf, nblocks) == 0)
		got = pool_take(buf->pool, nblocks, false, &fresh);
	if (niov == 0 && got == 0)
		return -ENOMEM;
	*offered = room;
	for (b = fresh; b; b = b->h.next, want -= k) {
		k = want < IOBUF_BLOCK_CAP ? want : IOBUF_BLOCK_CAP;
		iov[niov].iov_base = b->data;
		iov[niov++].iov_len = k;
		*offered += k;
	}

	r = read_iov(fd, iov, niov);
	if (r > 0)
		STAMP(STAMP_READ);
	if (r <= 0) {
		if (r < 0)
			r = errno_ret();
		b = fresh;
		goto out_give;
	}

	buf->len += (size_t)r;
	want = (size_t)r;
	if (room) {
		k = want < room ? want : room;
		tb->h.wpos += k;
		ref_tail(buf)->len += k;
		want -= k;
	}
	for (b = fresh; b && want; b = b->h.next) {
		k = want < IOBUF_BLOCK_CAP ? want : IOBUF_BLOCK_CAP;
		b->h.wpos = k;
		ref_push(buf, b, 0, k, true, false);
		want -= k;
		got--;
	}
	/* b: the first unused fresh block, if any. */
out_give:
	if (got) {
		for (last = b; last->h.next; last = last->h.next)
			last->h.ref = 0;
		last->h.ref = 0;
		pool_give(buf->pool, b, last, got);
	}
	return r;
}

ssize_t iobuf_read_fd(struct iobuf *buf, int fd, size_t max)
{
	return iobuf_read_fd_first(buf, fd, max, IOBUF_READ_FIRST_BLOCKS);
}

ssize_t iobuf_read_fd_first(struct iobuf *buf, int fd, size_t max,
			    size_t first_blocks)
{
	size_t offered = 0;
	ssize_t r, last;

	if (max == 0 || first_blocks == 0 ||
	    first_blocks > IOBUF_READ_MAX_BLOCKS)
		return -EINVAL;
	if (max > SSIZE_MAX)
		max = SSIZE_MAX;
	/* Small first: most reads are a few messages, and every block
	 * offered is a pool round trip under its lock. */
	r = read_once(buf, fd, max, first_blocks, &offered);
	/*
	 * While a read filled all it offered, the fd may hold more: read
	 * on.  Not just once: a take short of blocks (a pool waiting for
	 * its grow hook) offers less than asked, and a result short of max
	 * must mean the fd is empty (edge-triggered readers stop there).
	 */
	last = r;
	while (last > 0 && (size_t)last == offered && (size_t)r < max) {
		last = read_once(buf, fd, max - (size_t)r,
				 IOBUF_READ_MAX_BLOCKS, &offered);
		if (last > 0)
			r += last;
	}
	return r;
}

ssize_t iobuf_write_fd(struct iobuf *buf, int fd)
{
	struct iovec iov[IOBUF_WRITE_MAX_IOV];
	struct msghdr mh = {.msg_iov = iov};
	ssize_t r;

	if (buf->len == 0)
		return 0;
	mh.msg_iovlen = iobuf_iov(buf, iov, IOBUF_WRITE_MAX_IOV);
	STAMP(STAMP_SEND);
	/* One region: send(2), without sendmsg's msghdr and iovec import. */
	do
		r = mh.msg_iovlen == 1 ? send(fd, iov[0].iov_base,
					      iov[0].iov_len, MSG_NOSIGNAL)
				       : sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	STAMP(STAMP_SENT);
	if (r < 0 && errno == ENOTSOCK) {
		do
			r = writev(fd, iov, (int)mh.msg_iovlen);
		while (r < 0 && errno == EINTR);
	}
	if (r < 0)
		return errno_ret();
	iobuf_drop_front(buf, (size_t)r);
	return r;
}
