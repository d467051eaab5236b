/*
 * workers: task worker pool (see workers.h for the contract and the
 * choice of queue).
 *
 * Queue: `inbox` is a Treiber stack that submitters push onto with one
 * CAS.  Workers, holding `lock`, take the whole stack at once (a CAS to
 * NULL: taking everything is immune to ABA) and append it, reversed, to
 * the FIFO head/tail, from which they pop one task at a time.  Stop swaps
 * in WORKERS_CLOSED, a mark no push can get past, so "submit accepted" and
 * "stop began" are ordered by that one exchange.
 *
 * Wake-ups: a worker about to sleep publishes idle + 1 and then looks at
 * the inbox once more; a submitter pushes and then reads idle.  Both are
 * seq_cst (Dekker's pattern), so either the worker sees the task or the
 * submitter sees the sleeper.  The submitter then signals under the lock,
 * which the sleeper holds from its last look until cond_wait releases it,
 * so the signal cannot fall between the look and the wait.  `wakes`
 * counts signals sent and not yet consumed: a submitter signals only while
 * idle > wakes, so a burst of submits to a sleeping pool costs one futex
 * wake per sleeper, not one per task.
 */
#define _GNU_SOURCE
#include "workers.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Never dereferenced: its address marks a closed inbox. */
static const struct task workers_closed_mark;
#define WORKERS_CLOSED ((struct task *)&workers_closed_mark)

/* "<name>-<i>" plus NUL: Linux keeps 15 characters of a thread name. */
#define WORKERS_THREAD_NAME_LEN 16

/* Slots are cache-line sized so that completion counts do not share. */
#define WORKERS_CACHE_LINE 64

struct workers_thread {
	pthread_t tid;
	struct workers *pool;
	unsigned index;
	uint64_t completed; /* written by this worker only */
} __attribute__((aligned(WORKERS_CACHE_LINE)));

void workers_options_default(struct workers_options *opt)
{
	opt->nthreads = 2;
	opt->mem = NULL;
	opt->log = NULL;
	opt->name = "worker";
	opt->stack_size = WORKERS_STACK_SIZE_DEFAULT;
}

int workers_options_validate(const struct workers_options *opt)
{
	if (opt->nthreads < 1 || opt->nthreads > WORKERS_MAX_THREADS)
		return -EINVAL;
	if (!opt->name || !opt->name[0] || strlen(opt->name) > WORKERS_NAME_MAX)
		return -EINVAL;
	if (opt->stack_size < WORKERS_STACK_SIZE_MIN)
		return -EINVAL;
	return 0;
}

int workers_init(struct workers *pool, const struct workers_options *opt)
{
	uintptr_t p;
	unsigned i;
	int err;

	err = workers_options_validate(opt);
	if (err)
		return err;

	memset(pool, 0, sizeof(*pool));
	pool->opt = *opt;
	pool->opt.mem = mem_or_default(opt->mem);

	/* The allocator promises 16-byte alignment; align slots ourselves. */
	pool->threads_mem =
	    mem_alloc(pool->opt.mem, opt->nthreads * sizeof(*pool->threads) +
					 WORKERS_CACHE_LINE - 1);
	if (!pool->threads_mem)
		return -ENOMEM;
	p = ((uintptr_t)pool->threads_mem + WORKERS_CACHE_LINE - 1) &
	    ~(uintptr_t)(WORKERS_CACHE_LINE - 1);
	pool->threads = (struct workers_thread *)p;
	for (i = 0; i < opt->nthreads; i++) {
		memset(&pool->threads[i], 0, sizeof(pool->threads[i]));
		pool->threads[i].pool = pool;
		pool->threads[i].index = i;
	}

	err = -pthread_mutex_init(&pool->lock, NULL);
	if (err)
		goto out_free_threads;
	err = -pthread_cond_init(&pool->cond, NULL);
	if (err)
		goto out_destroy_lock;
	return 0;

out_destroy_lock:
	pthread_mutex_destroy(&pool->lock);
out_free_threads:
	mem_free(pool->opt.mem, pool->threads_mem);
	pool->threads_mem = NULL;
	pool->threads = NULL;
	return err;
}

/* Under lock: moves a task list (newest first) to the FIFO's tail. */
static void workers_append(struct workers *pool, struct task *list)
{
	struct task *fifo = NULL, *last = list, *t;

	while (list) {
		t = list;
		list = t->next;
		t->next = fifo;
		fifo = t;
	}
	if (!fifo)
		return;
	if (pool->tail)
		pool->tail->next = fifo;
	else
		pool->head = fifo;
	pool->tail = last; /* the newest, last after reversal */
}

static bool workers_inbox_empty(struct task *list)
{
	return !list || list == WORKERS_CLOSED;
}

/* Under lock: the oldest queued task, or NULL. */
static struct task *workers_pop(struct workers *pool)
{
	struct task *list, *t;

	if (!pool->head) {
		list = __atomic_load_n(&pool->inbox, __ATOMIC_ACQUIRE);
		do {
			if (workers_inbox_empty(list))
				return NULL;
		} while (!__atomic_compare_exchange_n(&pool->inbox, &list, NULL,
						      false, __ATOMIC_SEQ_CST,
						      __ATOMIC_ACQUIRE));
		workers_append(pool, list);
	}
	t = pool->head;
	pool->head = t->next;
	if (!pool->head)
		pool->tail = NULL;
	t->next = NULL;
	return t;
}

static void *workers_thread_main(void *arg)
{
	struct workers_thread *self = arg;
	struct workers *pool = self->pool;
	char name[WORKERS_THREAD_NAME_LEN];
	struct task *t;

	snprintf(name, sizeof(name), "%s-%u", pool->opt.name, self->index);
	log_thread_name(name);
	pthread_setname_np(pthread_self(), name); /* best effort */

	pthread_mutex_lock(&pool->lock);
	while (!pool->aborting) {
		t = workers_pop(pool);
		if (t) {
			pthread_mutex_unlock(&pool->lock);
			t->fn(t);
			__atomic_store_n(&self->completed, self->completed + 1,
					 __ATOMIC_RELAXED);
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		if (pool->stopping)
			break; /* closed and drained */

		/* Announce, then look once more (see the file comment). */
		__atomic_store_n(&pool->idle, pool->idle + 1, __ATOMIC_SEQ_CST);
		if (!workers_inbox_empty(
			__atomic_load_n(&pool->inbox, __ATOMIC_SEQ_CST))) {
			__atomic_store_n(&pool->idle, pool->idle - 1,
					 __ATOMIC_RELAXED);
			continue;
		}
		pthread_cond_wait(&pool->cond, &pool->lock);
		__atomic_store_n(&pool->idle, pool->idle - 1, __ATOMIC_RELAXED);
		if (pool->wakes)
			pool->wakes--;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void workers_wake(struct workers *pool)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->idle > pool->wakes) {
		pool->wakes++;
		pthread_cond_signal(&pool->cond);
	}
	pthread_mutex_unlock(&pool->lock);
}

int workers_submit(struct workers *pool, struct task *t)
{
	struct task *old = __atomic_load_n(&pool->inbox, __ATOMIC_RELAXED);

	do {
		if (old == WORKERS_CLOSED)
			return -ESHUTDOWN;
		t->next = old;
	} while (!__atomic_compare_exchange_n(
	    &pool->inbox, &old, t, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
	__atomic_fetch_add(&pool->submitted, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&pool->idle, __ATOMIC_SEQ_CST))
		workers_wake(pool);
	return 0;
}

/* Owner: asks the workers to exit and joins the first n of them. */
static void workers_join(struct workers *pool, unsigned n, bool abort)
{
	unsigned i;

	pthread_mutex_lock(&pool->lock);
	if (abort)
		pool->aborting = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < n; i++)
		pthread_join(pool->threads[i].tid, NULL);
	pool->aborting = false;
	pool->wakes = 0;
}

int workers_start(struct workers *pool)
{
	pthread_attr_t attr;
	unsigned i;
	int err;

	if (pool->stopped)
		return -EINVAL;
	if (pool->nstarted)
		return -EBUSY;

	err = -pthread_attr_init(&attr);
	if (err)
		return err;
	err = -pthread_attr_setstacksize(&attr, pool->opt.stack_size);
	if (err)
		goto out_destroy_attr;
	for (i = 0; i < pool->opt.nthreads; i++) {
		err = -pthread_create(&pool->threads[i].tid, &attr,
				      workers_thread_main, &pool->threads[i]);
		if (err)
			goto out_join_threads;
	}
	pool->nstarted = i;
	pthread_attr_destroy(&attr);
	log_debug(pool->opt.log, "workers %s: %u threads started",
		  pool->opt.name, pool->nstarted);
	return 0;

out_join_threads:
	log_error(pool->opt.log, "workers %s: thread %u: pthread_create: %s",
		  pool->opt.name, i, strerror(-err));
	workers_join(pool, i, true);
out_destroy_attr:
	pthread_attr_destroy(&attr);
	return err;
}

int workers_stop(struct workers *pool)
{
	struct task *list, *t;
	unsigned i;

	if (pool->stopped)
		return -EALREADY;
	for (i = 0; i < pool->nstarted; i++) {
		if (pthread_equal(pool->threads[i].tid, pthread_self()))
			return -EDEADLK;
	}

	/* The instant that splits accepted submits from refused ones. */
	pthread_mutex_lock(&pool->lock);
	list =
	    __atomic_exchange_n(&pool->inbox, WORKERS_CLOSED, __ATOMIC_SEQ_CST);
	workers_append(pool, list);
	pool->stopping = true;
	pthread_mutex_unlock(&pool->lock);

	workers_join(pool, pool->nstarted, false);

	/* Never started: keep the exactly-once promise on this thread. */
	if (!pool->nstarted) {
		pthread_mutex_lock(&pool->lock);
		while ((t = workers_pop(pool))) {
			pthread_mutex_unlock(&pool->lock);
			t->fn(t);
			__atomic_store_n(&pool->threads[0].completed,
					 pool->threads[0].completed + 1,
					 __ATOMIC_RELAXED);
			pthread_mutex_lock(&pool->lock);
		}
		pthread_mutex_unlock(&pool->lock);
	}
	pool->nstarted = 0;
	pool->stopped = true;
	log_debug(pool->opt.log, "workers %s: stopped", pool->opt.name);
	return 0;
}

void workers_destroy(struct workers *pool)
{
	if (!pool->stopped && workers_stop(pool) < 0) {
		log_error(pool->opt.log, "workers %s: destroy from a worker",
			  pool->opt.name);
		return;
	}
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	mem_free(pool->opt.mem, pool->threads_mem);
	pool->threads_mem = NULL;
	pool->threads = NULL;
}

void workers_stats(const struct workers *pool, struct workers_stats *out)
{
	unsigned i;

	out->submitted = __atomic_load_n(&pool->submitted, __ATOMIC_RELAXED);
	out->completed = 0;
	for (i = 0; i < pool->opt.nthreads; i++)
		out->completed += __atomic_load_n(&pool->threads[i].completed,
						  __ATOMIC_RELAXED);
}
