/*
 * rdt_poll: polling mode's busy pollers (rdma_use_polling=true; see
 * rdt_int.h, struct rdt_polled).
 *
 * Each poller is one thread of the budget's P.  It walks the endpoints
 * given to it, takes their work completions with ibv_poll_cq into each
 * endpoint's ring, and, when a ring gains entries and no take is queued
 * yet, calls the endpoint's notify(), which posts a task to the
 * connection's loop.  The poller never touches a connection: it parses
 * nothing and runs no handler, so a poller cannot delay a handshake or a
 * call beyond one pass over its endpoints.
 *
 * The ring is single producer (the poller) and single consumer (the loop)
 * and as large as the CQ, so it can hold everything the CQ holds: a full
 * ring only means the poller leaves that CQ alone until the loop catches
 * up.  Completions are taken in CQ order and consumed in ring order.
 *
 * Endpoints are added when they go live and removed as they close, both
 * on their loop thread, under the poller's lock; a pass holds the lock,
 * so once rdt_polled_del() returns the poller never looks at the
 * endpoint again and its CQ may be destroyed.
 *
 * A poller with no endpoint sleeps until one is added: a process with no
 * RDMA connection keeps no CPU busy (a server between clients, or one
 * whose device went).
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "rdt_int.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"

/* Completions taken per ibv_poll_cq. */
#define POLL_BATCH 32

struct rdt_poller {
	struct rdt_ctx *ctx;
	int index;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* list */
	pthread_cond_t work;  /* the list gained an endpoint, or stop */
	struct rdt_polled *list;
	int stop; /* atomic */
};

/* Entries in the ring, as the poller sees it. */
static uint32_t ring_used(const struct rdt_polled *p)
{
	return p->head - __atomic_load_n(&p->tail, __ATOMIC_ACQUIRE);
}

/* Poller thread, under the lock.  True when completions were taken. */
static bool poll_one(struct rdt_polled *p)
{
	uint32_t size = p->mask + 1, room = size - ring_used(p);
	uint32_t at = p->head & p->mask, want = size - at;
	int n;

	if (room == 0 || __atomic_load_n(&p->broken, __ATOMIC_RELAXED))
		return false;
	if (want > room)
		want = room;
	if (want > POLL_BATCH)
		want = POLL_BATCH;
	n = ibv_poll_cq(p->cq, (int)want, &p->wc[at]);
	if (n < 0) {
		/* the take task fails the connection */
		__atomic_store_n(&p->broken, true, __ATOMIC_RELAXED);
		n = 0;
	} else if (n == 0) {
		return false;
	}
	/* Sequentially consistent with rdt_polled_more(): either it sees
	 * the new head or we see its queued = 0. */
	__atomic_store_n(&p->head, p->head + (uint32_t)n, __ATOMIC_SEQ_CST);
	if (!__atomic_exchange_n(&p->queued, 1, __ATOMIC_SEQ_CST))
		p->notify(p);
	return true;
}

static void *poller_main(void *arg)
{
	struct rdt_poller *pl = arg;
	char name[16];
	bool found;

	snprintf(name, sizeof(name), "rdma-poll-%d", pl->index);
	log_thread_name(name);
	pthread_setname_np(pthread_self(), name); /* best effort */
	while (!__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE)) {
		found = false;
		pthread_mutex_lock(&pl->lock);
		while (!pl->list &&
		       !__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&pl->work, &pl->lock);
		for (struct rdt_polled *p = pl->list; p; p = p->next)
			found |= poll_one(p);
		pthread_mutex_unlock(&pl->lock);
		if (found)
			continue;
		if (pl->ctx->opt.poller_yield)
			sched_yield();
		else
			__builtin_ia32_pause();
	}
	return NULL;
}

int rdt_pollers_start(struct rdt_ctx *ctx, char *why, size_t why_size)
{
	int n = ctx->opt.poller_num, err;
	struct rdt_poller *pl;

	ctx->pollers = mem_zalloc(ctx->opt.mem, sizeof(*pl) * (size_t)n);
	if (!ctx->pollers) {
		snprintf(why, why_size, "no memory for %d RDMA pollers", n);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		pl = &ctx->pollers[i];
		pl->ctx = ctx;
		pl->index = i;
		pthread_mutex_init(&pl->lock, NULL);
		pthread_cond_init(&pl->work, NULL);
		ctx->npollers = i + 1;
		err = pthread_create(&pl->thread, NULL, poller_main, pl);
		if (err) {
			snprintf(why, why_size,
				 "cannot start RDMA poller %d "
				 "of %d: %s",
				 i + 1, n, strerror(err));
			rdt_pollers_stop(ctx);
			return -err;
		}
		pl->running = true;
	}
	return 0;
}

void rdt_pollers_stop(struct rdt_ctx *ctx)
{
	struct rdt_poller *pl;

	for (int i = 0; i < ctx->npollers; i++) {
		pl = &ctx->pollers[i];
		pthread_mutex_lock(&pl->lock);
		__atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&pl->work);
		pthread_mutex_unlock(&pl->lock);
	}
	for (int i = 0; i < ctx->npollers; i++) {
		pl = &ctx->pollers[i];
		if (pl->running)
			pthread_join(pl->thread, NULL);
		if (pl->list)
			log_warn(ctx->opt.log,
				 "rdma: poller %d stopped with "
				 "endpoints still on it",
				 i);
		pthread_mutex_destroy(&pl->lock);
		pthread_cond_destroy(&pl->work);
	}
	mem_free(ctx->opt.mem, ctx->pollers);
	ctx->pollers = NULL;
	ctx->npollers = 0;
}

void rdt_polled_add(struct rdt_ctx *ctx, struct rdt_polled *p)
{
	unsigned i = __atomic_fetch_add(&ctx->next_poller, 1, __ATOMIC_RELAXED);
	struct rdt_poller *pl = &ctx->pollers[i % (unsigned)ctx->npollers];

	p->poller = pl;
	p->prev = NULL;
	pthread_mutex_lock(&pl->lock);
	p->next = pl->list;
	if (pl->list)
		pl->list->prev = p;
	else
		pthread_cond_signal(&pl->work); /* it may be asleep */
	pl->list = p;
	pthread_mutex_unlock(&pl->lock);
}

void rdt_polled_del(struct rdt_polled *p)
{
	struct rdt_poller *pl = p->poller;

	if (!pl)
		return;
	pthread_mutex_lock(&pl->lock);
	if (p->prev)
		p->prev->next = p->next;
	else
		pl->list = p->next;
	if (p->next)
		p->next->prev = p->prev;
	pthread_mutex_unlock(&pl->lock);
	p->poller = NULL;
}

struct ibv_wc *rdt_polled_next(struct rdt_polled *p)
{
	uint32_t head = __atomic_load_n(&p->head, __ATOMIC_ACQUIRE);

	return head == p->tail ? NULL : &p->wc[p->tail & p->mask];
}

void rdt_polled_consumed(struct rdt_polled *p)
{
	__atomic_store_n(&p->tail, p->tail + 1, __ATOMIC_RELEASE);
}

bool rdt_polled_more(struct rdt_polled *p)
{
	__atomic_store_n(&p->queued, 0, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&p->head, __ATOMIC_SEQ_CST) == p->tail ||
	    __atomic_exchange_n(&p->queued, 1, __ATOMIC_SEQ_CST))
		return false;
	return true;
}
