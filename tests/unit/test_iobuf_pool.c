/*
 * iobuf pool growth tests: a region obtained without the pool's lock, a
 * taker short of blocks waiting for the region on its way, growing ahead
 * of need through the grow hook, and iobuf_pool_each_region().  Each test
 * ends with the pool destroyed (0: every block back).  The buffer tests
 * are in test_iobuf.c.
 */
#define _GNU_SOURCE /* pipe2 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/iobuf.h"

/* A growth that never ends would hang its waiters: each test is bounded. */
#define TEST_TIMEOUT_S 10
#include "testutil.h"

/* A region hook that parks each alloc until the test opens the gate. */
struct gate_hook {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int parked; /* allocs waiting at the gate */
	int allocs, frees;
};

static void *gate_alloc(void *ctx, size_t bytes, void **cookie)
{
	struct gate_hook *g = ctx;

	pthread_mutex_lock(&g->lock);
	g->parked++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	g->parked--;
	g->allocs++;
	pthread_mutex_unlock(&g->lock);
	*cookie = NULL;
	return aligned_alloc(4096, bytes);
}

static void gate_free(void *ctx, void *base, size_t bytes, void *cookie)
{
	struct gate_hook *g = ctx;

	(void)bytes;
	(void)cookie;
	pthread_mutex_lock(&g->lock);
	g->frees++;
	pthread_mutex_unlock(&g->lock);
	free(base);
}

static void gate_set(struct gate_hook *g, bool open)
{
	pthread_mutex_lock(&g->lock);
	g->open = open;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void gate_wait_parked(struct gate_hook *g, int n)
{
	pthread_mutex_lock(&g->lock);
	while (g->parked < n)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

struct getter {
	pthread_t tid;
	struct iobuf_pool *pool;
	struct iobuf_block *got;
	bool done; /* atomic */
};

static void *getter_main(void *arg)
{
	struct getter *g = arg;

	g->got = iobuf_block_get(g->pool);
	__atomic_store_n(&g->done, true, __ATOMIC_RELEASE);
	return NULL;
}

struct visit {
	int regions, finals, fail_at;
	void *last_base;
};

static int visit_region(void *arg, struct iobuf_region_info *ri)
{
	struct visit *v = arg;

	if (!ri)
		return v->finals++, 0;
	if (v->regions++ == v->fail_at)
		return -EIO;
	assert_int_equal(ri->bytes, 4 * IOBUF_BLOCK_SIZE);
	ri->cookie = (unsigned char *)ri->base + 1; /* any distinct value */
	v->last_base = ri->base;
	return 0;
}

struct walker {
	pthread_t tid;
	struct iobuf_pool *pool;
	struct visit v;
	bool done; /* atomic */
};

static void *walker_main(void *arg)
{
	struct walker *w = arg;

	w->v.fail_at = -1;
	iobuf_pool_each_region(w->pool, visit_region, &w->v);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Polls (10 ms, 5 s at most) until *flag is set. */
static bool wait_flag(const bool *flag)
{
	struct timespec pause = {0, 10 * 1000 * 1000};

	for (int i = 0; i < 500; i++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

/* A pool of 4-block regions from the gate hook (closed): 1 at start,
 * 3 at most; its 4 first blocks taken into b[]. */
static void gated_pool(struct iobuf_pool *pool, struct gate_hook *g,
		       bool thread_cache, struct iobuf_block *b[4])
{
	struct iobuf_pool_options opt;

	iobuf_pool_options_default(&opt);
	opt.region = (struct iobuf_region_hook){gate_alloc, gate_free, g};
	opt.region_blocks = 4;
	opt.max_regions = 3;
	opt.prealloc_regions = 1;
	opt.thread_cache = thread_cache;
	assert_int_equal(iobuf_pool_init(pool, &opt), 0);
	gate_set(g, false);
	for (int i = 0; i < 4; i++)
		assert_non_null(b[i] = iobuf_block_get(pool));
}

/* Waits (5 s at most) until a taker waits for a region on its way. */
static void wait_grow_wait(struct iobuf_pool *pool)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	struct iobuf_pool_stats st;

	for (int i = 0; i < 500; i++) {
		iobuf_pool_stats(pool, &st);
		if (st.grow_waits)
			break;
		nanosleep(&pause, NULL);
	}
	assert_int_equal(st.grow_waits, 1);
}

/* A slow region (ibv_reg_mr) must not stop the other takers. */
static void test_grow_outside_lock(void **state)
{
	struct gate_hook g = {.lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER,
			      .open = true};
	struct iobuf_block *b[4];
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct getter t1 = {.pool = &pool}, t2 = {.pool = &pool};
	struct walker w = {.pool = &pool};
	struct timespec pause = {0, 10 * 1000 * 1000};

	(void)state;
	gated_pool(&pool, &g, false, b);

	/* t1 finds the pool empty and grows it: parked in the hook. */
	assert_int_equal(pthread_create(&t1.tid, NULL, getter_main, &t1), 0);
	gate_wait_parked(&g, 1);
	/* Meanwhile the pool's lock is free, and blocks come and go. */
	assert_int_equal(pthread_mutex_trylock(&pool.lock), 0);
	pthread_mutex_unlock(&pool.lock);
	iobuf_block_put(b[3]);
	assert_non_null(b[3] = iobuf_block_get(&pool));

	/* t2: empty with a region on its way: it waits for that one rather
	 * than obtaining another (max_regions would allow it). */
	assert_int_equal(pthread_create(&t2.tid, NULL, getter_main, &t2), 0);
	wait_grow_wait(&pool);
	assert_false(__atomic_load_n(&t2.done, __ATOMIC_ACQUIRE));

	/* A walk of the regions waits for the one on its way: it must not
	 * miss it (rdma/ re-registers every region so). */
	assert_int_equal(pthread_create(&w.tid, NULL, walker_main, &w), 0);
	nanosleep(&pause, NULL);
	assert_false(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));

	/* A block given back wakes t2 before the region comes. */
	iobuf_block_put(b[0]);
	b[0] = NULL;
	assert_true(wait_flag(&t2.done));
	assert_int_equal(pthread_join(t2.tid, NULL), 0);
	assert_non_null(t2.got);
	assert_false(__atomic_load_n(&t1.done, __ATOMIC_ACQUIRE));
	assert_false(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));

	gate_set(&g, true);
	assert_int_equal(pthread_join(t1.tid, NULL), 0);
	assert_int_equal(pthread_join(w.tid, NULL), 0);
	assert_non_null(t1.got);
	assert_ptr_not_equal(t1.got, t2.got);
	assert_int_equal(w.v.regions, 2);
	assert_int_equal(w.v.finals, 1);

	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 2);
	assert_int_equal(st.blocks_free, 3);
	assert_int_equal(st.grows_sync, 1);
	assert_int_equal(st.grows_ahead, 0);
	assert_int_equal(g.allocs, 2);
	iobuf_block_put(t1.got);
	iobuf_block_put(t2.got);
	for (int i = 1; i < 4; i++)
		iobuf_block_put(b[i]);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	assert_int_equal(g.frees, 2);
}

struct kicks {
	int n;
	int ret; /* what kick answers */
};

static int count_kick(void *ctx)
{
	struct kicks *k = ctx;

	k->n++;
	return k->ret;
}

static void take(struct iobuf_pool *pool, struct iobuf_block **b, int *nb,
		 int n)
{
	for (int i = 0; i < n; i++)
		assert_non_null(b[(*nb)++] = iobuf_block_get(pool));
}

static void test_grow_ahead(void **state)
{
	struct iobuf_pool_options opt;
	struct iobuf_block *b[24];
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct kicks k = {0};
	int nb = 0;

	(void)state;
	iobuf_pool_options_default(&opt);
	opt.grow = (struct iobuf_grow_hook){count_kick, &k, 3};
	opt.region_blocks = 8;
	opt.max_regions = 3;
	opt.prealloc_regions = 1;
	assert_int_equal(iobuf_pool_init(&pool, &opt), 0);

	take(&pool, b, &nb, 5); /* 3 free: not below */
	assert_int_equal(k.n, 0);
	take(&pool, b, &nb, 1); /* 2 free: kicked once */
	assert_int_equal(k.n, 1);
	take(&pool, b, &nb, 1); /* already asked */
	assert_int_equal(k.n, 1);
	assert_int_equal(iobuf_pool_grow_ahead(&pool), 1);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 2);
	assert_int_equal(st.blocks_free, 9);
	assert_int_equal(st.grows_ahead, 1);

	/* A kick that cannot queue the work is asked again next time. */
	k.ret = -1;
	take(&pool, b, &nb, 7);
	assert_int_equal(k.n, 2);
	take(&pool, b, &nb, 1);
	assert_int_equal(k.n, 3);
	k.ret = 0;
	take(&pool, b, &nb, 1);
	assert_int_equal(k.n, 4);
	assert_int_equal(iobuf_pool_grow_ahead(&pool), 1);

	/* At max_regions: no more kicks, and the last blocks still go. */
	take(&pool, b, &nb, 8);
	assert_int_equal(k.n, 4);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 3);
	assert_int_equal(st.blocks_free, 0);
	assert_int_equal(st.grows_ahead, 2);
	assert_int_equal(st.grows_sync, 0);
	assert_null(iobuf_block_get(&pool));
	assert_int_equal(iobuf_pool_grow_ahead(&pool), 0);
	while (nb)
		iobuf_block_put(b[--nb]);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

/* A read (a take that may get fewer blocks) neither waits nor grows the
 * pool while it has blocks: it takes those, and the kick brings more. */
static void test_grow_ahead_partial_read(void **state)
{
	struct iobuf_pool_options opt;
	struct iobuf_block *b[8];
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct kicks k = {0};
	static char data[4 * IOBUF_BLOCK_CAP];
	struct iobuf buf;
	int nb = 0, fds[2];

	(void)state;
	iobuf_pool_options_default(&opt);
	opt.grow = (struct iobuf_grow_hook){count_kick, &k, 4};
	opt.region_blocks = 8;
	opt.prealloc_regions = 1;
	assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
	take(&pool, b, &nb, 5); /* 3 free, the kick already asked */
	assert_int_equal(k.n, 1);
	assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(write(fds[1], data, sizeof(data)), sizeof(data));
	iobuf_init(&buf, &pool);
	/* Its first read offers 1 block, its second wants 3 more and takes
	 * the 2 there are, without growing; both filled, so it reads on:
	 * with the pool dry that take grows, as any take.  All comes in one
	 * call: a short result would tell an edge-triggered reader the fd
	 * is empty while a block's worth waits. */
	assert_int_equal(iobuf_read_fd(&buf, fds[0], sizeof(data)),
			 sizeof(data));
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.regions, 2);
	assert_int_equal(st.grows_sync, 1);
	assert_int_equal(st.grow_waits, 0);
	assert_int_equal(iobuf_read_fd(&buf, fds[0], sizeof(data)), -EAGAIN);
	iobuf_destroy(&buf);
	while (nb)
		iobuf_block_put(b[--nb]);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

static void test_each_region(void **state)
{
	struct iobuf_pool_options opt;
	struct iobuf_region_info ri;
	struct iobuf_pool pool;
	struct iobuf_block *b;
	struct visit v = {.fail_at = 1};

	(void)state;
	iobuf_pool_options_default(&opt);
	opt.region_blocks = 4;
	opt.prealloc_regions = 2;
	assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
	/* An error stops the walk, with no final call. */
	assert_int_equal(iobuf_pool_each_region(&pool, visit_region, &v), -EIO);
	assert_int_equal(v.regions, 2);
	assert_int_equal(v.finals, 0);

	v = (struct visit){.fail_at = -1};
	assert_int_equal(iobuf_pool_each_region(&pool, visit_region, &v), 0);
	assert_int_equal(v.regions, 2);
	assert_int_equal(v.finals, 1);
	/* The blocks' region now hands back the new cookie. */
	assert_non_null(b = iobuf_block_get(&pool));
	iobuf_block_region(b, &ri);
	assert_ptr_equal(ri.cookie, (unsigned char *)ri.base + 1);
	iobuf_block_put(b);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

/* Trim gives the free blocks' pages back; blocks taken again work, in
 * use ones keep their bytes; a pool on another region hook is left be. */
static void test_trim(void **state)
{
	struct iobuf_pool_options opt;
	struct iobuf_pool pool;
	struct iobuf_block *b[8];

	(void)state;
	iobuf_pool_options_default(&opt);
	opt.region_blocks = 8;
	opt.prealloc_regions = 1;
	assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
	for (int i = 0; i < 8; i++) {
		assert_non_null(b[i] = iobuf_block_get(&pool));
		memset(iobuf_block_data(b[i]), 'a' + i, IOBUF_BLOCK_CAP);
	}
	for (int i = 0; i < 4; i++)
		iobuf_block_put(b[i]);
	/* four free blocks, at least a page each past the header */
	assert_true(iobuf_pool_trim(&pool) >= 4 * 4096);
	for (int i = 4; i < 8; i++) {
		const unsigned char *d = iobuf_block_data(b[i]);

		assert_int_equal(d[0], 'a' + i);
		assert_int_equal(d[IOBUF_BLOCK_CAP - 1], 'a' + i);
	}
	for (int i = 0; i < 4; i++) {
		unsigned char *d;

		assert_non_null(b[i] = iobuf_block_get(&pool));
		d = iobuf_block_data(b[i]);
		memset(d, 'z', IOBUF_BLOCK_CAP);
		assert_int_equal(d[IOBUF_BLOCK_CAP - 1], 'z');
	}
	for (int i = 0; i < 8; i++)
		iobuf_block_put(b[i]);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);

	/* A burst grew it to three regions: once all is free, trim frees
	 * the two it grew; blocks still in use keep their region. */
	{
		struct iobuf_block *many[20];
		struct iobuf_pool_stats st;

		assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
		for (int i = 0; i < 20; i++)
			assert_non_null(many[i] = iobuf_block_get(&pool));
		iobuf_pool_stats(&pool, &st);
		assert_int_equal(st.regions, 3);
		for (int i = 1; i < 20; i++)
			iobuf_block_put(many[i]);
		iobuf_pool_trim(&pool);
		iobuf_pool_stats(&pool, &st);
		assert_true(st.regions >= 1 && st.regions <= 2);
		assert_int_equal(st.blocks_total, st.regions * 8);
		assert_int_equal(st.blocks_free, st.blocks_total - 1);
		iobuf_block_put(many[0]);
		assert_true(iobuf_pool_trim(&pool) >= 4096);
		iobuf_pool_stats(&pool, &st);
		assert_int_equal(st.regions, 1);
		assert_int_equal(st.blocks_free, 8);
		for (int i = 0; i < 20; i++) /* grows again as it should */
			assert_non_null(many[i] = iobuf_block_get(&pool));
		for (int i = 0; i < 20; i++)
			iobuf_block_put(many[i]);
		assert_int_equal(iobuf_pool_destroy(&pool), 0);
	}

	{
		struct gate_hook g = {.lock = PTHREAD_MUTEX_INITIALIZER,
				      .cond = PTHREAD_COND_INITIALIZER,
				      .open = true};

		opt.region.alloc = gate_alloc;
		opt.region.free = gate_free;
		opt.region.ctx = &g;
		assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
		assert_int_equal(iobuf_pool_trim(&pool), 0);
		assert_int_equal(iobuf_pool_destroy(&pool), 0);
	}
}

/* ---- per-thread caches (thread_cache) ---------------------------------- */

static void cache_pool(struct iobuf_pool *pool, size_t region_blocks)
{
	struct iobuf_pool_options opt;

	iobuf_pool_options_default(&opt);
	opt.region_blocks = region_blocks;
	opt.max_regions = 1;
	opt.prealloc_regions = 1;
	opt.thread_cache = true;
	assert_int_equal(iobuf_pool_init(pool, &opt), 0);
}

/* Cached blocks count as free; a taken one still keeps destroy away. */
static void test_cache_counts_as_free(void **state)
{
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct iobuf_block *b, *c;

	(void)state;
	cache_pool(&pool, 64);
	assert_non_null(b = iobuf_block_get(&pool));
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.blocks_total, 64);
	assert_int_equal(st.blocks_free, 63);
	assert_int_equal(iobuf_pool_destroy(&pool), -EBUSY);
	iobuf_block_put(b);
	/* The last one given back is the next one taken (warm). */
	assert_non_null(c = iobuf_block_get(&pool));
	assert_ptr_equal(c, b);
	iobuf_block_put(c);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.blocks_free, 64);

	/* Gives past the cache's size: small ones one by one, then a big
	 * buffer at once; every block is free again and can be had. */
	for (int round = 0; round < 2; round++) {
		struct iobuf_block *all[64];

		for (int i = 0; i < 64; i++)
			assert_non_null(all[i] = iobuf_block_get(&pool));
		assert_null(iobuf_block_get(&pool));
		for (int i = 0; i < 64; i++)
			iobuf_block_put(all[i]);
		iobuf_pool_stats(&pool, &st);
		assert_int_equal(st.blocks_free, 64);
	}
	{
		static unsigned char big[40 * IOBUF_BLOCK_CAP];
		struct iobuf buf;

		iobuf_init(&buf, &pool);
		assert_int_equal(iobuf_append(&buf, big, sizeof(big)), 0);
		iobuf_pool_stats(&pool, &st);
		assert_int_equal(st.blocks_free, 24);
		iobuf_destroy(&buf);
		iobuf_pool_stats(&pool, &st);
		assert_int_equal(st.blocks_free, 64);
	}
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

struct churner {
	struct iobuf_pool *pool;
	int rounds;
	bool ok;
};

/* Takes and gives blocks, so its cache holds some when it exits. */
static void *churner_main(void *arg)
{
	struct churner *ch = arg;
	struct iobuf_block *b[3];

	ch->ok = true;
	for (int r = 0; r < ch->rounds; r++) {
		for (int i = 0; i < 3; i++)
			if (!(b[i] = iobuf_block_get(ch->pool)))
				ch->ok = false;
		for (int i = 0; i < 3; i++)
			if (b[i])
				iobuf_block_put(b[i]);
	}
	return NULL;
}

/* A thread that ends gives its cache back: every block can be taken by
 * another thread (none is lost with the thread), and destroy finds them
 * all free. */
static void test_cache_back_at_thread_exit(void **state)
{
	enum { BLOCKS = 24 };
	struct iobuf_block *b[BLOCKS];
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct churner ch = {.pool = &pool, .rounds = 100};
	pthread_t tid;

	(void)state;
	cache_pool(&pool, BLOCKS);
	assert_int_equal(pthread_create(&tid, NULL, churner_main, &ch), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_true(ch.ok);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.blocks_free, BLOCKS);
	/* max_regions 1: only the blocks given back can be had. */
	for (int i = 0; i < BLOCKS; i++)
		assert_non_null(b[i] = iobuf_block_get(&pool));
	assert_null(iobuf_block_get(&pool));
	for (int i = 0; i < BLOCKS; i++)
		iobuf_block_put(b[i]);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

/* Blocks in one thread's cache are not lost to another thread that runs
 * dry: with every other block taken, a give while a taker waits for a
 * region goes to the taker (test_grow_outside_lock, cached). */
static void test_cache_gives_to_waiter(void **state)
{
	struct gate_hook g = {.lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER,
			      .open = true};
	struct iobuf_block *b[4];
	struct iobuf_pool_stats st;
	struct iobuf_pool pool;
	struct getter t1 = {.pool = &pool}, t2 = {.pool = &pool};

	(void)state;
	gated_pool(&pool, &g, true, b);
	/* t1 grows the pool (parked in the hook), t2 waits for that. */
	assert_int_equal(pthread_create(&t1.tid, NULL, getter_main, &t1), 0);
	gate_wait_parked(&g, 1);
	assert_int_equal(pthread_create(&t2.tid, NULL, getter_main, &t2), 0);
	wait_grow_wait(&pool);
	iobuf_block_put(b[0]);
	assert_true(wait_flag(&t2.done));
	assert_int_equal(pthread_join(t2.tid, NULL), 0);
	assert_ptr_equal(t2.got, b[0]);
	gate_set(&g, true);
	assert_int_equal(pthread_join(t1.tid, NULL), 0);
	assert_non_null(t1.got);
	iobuf_block_put(t1.got);
	iobuf_block_put(t2.got);
	for (int i = 1; i < 4; i++)
		iobuf_block_put(b[i]);
	iobuf_pool_stats(&pool, &st);
	assert_int_equal(st.blocks_free, st.blocks_total);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

/* A pool destroyed and made again at the same address: the cache of the
 * first is not taken for the second's. */
static void test_cache_new_pool_same_place(void **state)
{
	struct iobuf_region_info ri;
	struct iobuf_pool pool;
	struct iobuf_block *b;

	(void)state;
	cache_pool(&pool, 8);
	assert_non_null(b = iobuf_block_get(&pool));
	iobuf_block_put(b);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
	cache_pool(&pool, 8);
	assert_non_null(b = iobuf_block_get(&pool));
	iobuf_block_region(b, &ri);
	assert_true((unsigned char *)b >= (unsigned char *)ri.base &&
		    (unsigned char *)b < (unsigned char *)ri.base + ri.bytes);
	iobuf_block_put(b);
	assert_int_equal(iobuf_pool_destroy(&pool), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_grow_outside_lock),
	    TEST_BOUNDED(test_grow_ahead),
	    TEST_BOUNDED(test_grow_ahead_partial_read),
	    TEST_BOUNDED(test_each_region),
	    TEST_BOUNDED(test_trim),
	    TEST_BOUNDED(test_cache_counts_as_free),
	    TEST_BOUNDED(test_cache_back_at_thread_exit),
	    TEST_BOUNDED(test_cache_gives_to_waiter),
	    TEST_BOUNDED(test_cache_new_pool_same_place),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
