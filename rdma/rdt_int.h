/*
 * rdt_int: what rdt_ctx.c and rdt_ep.c share; private to rdma/.
 */
#ifndef RPCGATE_RDMA_RDT_INT_H
#define RPCGATE_RDMA_RDT_INT_H

#include <infiniband/verbs.h>
#include <pthread.h>

#include "rdt.h"

struct rdt_poller;

struct rdt_ctx {
	struct rdt_options opt;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct rdt_choice choice;
	pthread_mutex_t gid_lock; /* choice.gid*, gid_checked_ns */
	int64_t gid_checked_ns;
	struct conn_upgrade up; /* both sides */
	struct rdt_stats st;	/* atomic fields */
	size_t regions;		/* registered, under the pool's lock */
	bool exhausted_logged;
	struct rdt_poller *pollers; /* polling mode: opt.poller_num */
	int npollers;
	unsigned next_poller; /* atomic: round robin */
};

/*
 * Polling mode (rdt_poll.c): what a poller knows of an endpoint.  The
 * poller takes completions from `cq` into the ring `wc` (mask + 1 entries,
 * at least the CQ's size) and calls notify() when entries arrived and
 * `queued` was 0; the endpoint's loop then takes them in order with
 * rdt_polled_next() and rdt_polled_consumed(), and ends its turn with
 * rdt_polled_more(): false, the next completion notifies again; true, more
 * came meanwhile and the turn goes on.
 */
struct rdt_polled {
	struct rdt_polled *next, *prev; /* the poller's list */
	struct rdt_poller *poller;	/* NULL: not on one */
	struct ibv_cq *cq;
	struct ibv_wc *wc;
	uint32_t mask;
	uint32_t head; /* written by the poller */
	uint32_t tail; /* written by the loop */
	int queued;    /* atomic: notify() called, turn not ended */
	bool broken;   /* atomic: ibv_poll_cq failed */
	void (*notify)(struct rdt_polled *p); /* poller thread */
};

/* Starts opt.poller_num pollers.  0, or -errno with `why` filled. */
int rdt_pollers_start(struct rdt_ctx *ctx, char *why, size_t why_size);
/* Stops and joins them (every endpoint must be gone).  Idempotent. */
void rdt_pollers_stop(struct rdt_ctx *ctx);
/* Loop thread: puts `p` (cq, wc, mask, notify set) on a poller. */
void rdt_polled_add(struct rdt_ctx *ctx, struct rdt_polled *p);
/* Loop thread: takes it off; the poller no longer looks at it after. */
void rdt_polled_del(struct rdt_polled *p);
struct ibv_wc *rdt_polled_next(struct rdt_polled *p);
void rdt_polled_consumed(struct rdt_polled *p);
bool rdt_polled_more(struct rdt_polled *p);

/* The GID index and GID a new QP uses now: the fixed one, or brpc's rule
 * re-applied when the last look is older than a second (a fresh rxe's
 * GID table changes for a while after its link comes up). */
void rdt_ctx_gid(struct rdt_ctx *ctx, int *index, uint8_t gid[16]);

/* The same for a server answering `peer`: a GID of the peer's family
 * (IPv4-mapped or IPv6), so that both ends route alike (a fresh rxe on a
 * network with router advertisements gains IPv6 GIDs above the IPv4 one
 * while clients still send theirs). */
void rdt_ctx_gid_like(struct rdt_ctx *ctx, const uint8_t peer[16], int *index,
		      uint8_t gid[16]);

/* The next rdt_ctx_gid() looks at the table again (a GID was refused). */
void rdt_ctx_gid_stale(struct rdt_ctx *ctx);

static inline void rdt_count(uint64_t *ctr, uint64_t n)
{
	__atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

#endif
