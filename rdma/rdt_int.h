/*
 * rdt_int: what rdt_ctx.c and rdt_ep.c share; private to rdma/.
 */
#ifndef RPCGATE_RDMA_RDT_INT_H
#define RPCGATE_RDMA_RDT_INT_H

#include <infiniband/verbs.h>
#include <pthread.h>

#include "rdt.h"

struct rdt_ctx {
	struct rdt_options opt;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct rdt_choice choice;
	pthread_mutex_t gid_lock; /* choice.gid*, gid_checked_ns */
	int64_t gid_checked_ns;
	struct conn_upgrade up; /* both sides */
	struct rdt_stats st; /* atomic fields */
	size_t regions;	     /* registered, under the pool's lock */
	bool exhausted_logged;
};

/* The GID index and GID a new QP uses now: the fixed one, or brpc's rule
 * re-applied when the last look is older than a second (a fresh rxe's
 * GID table changes for a while after its link comes up). */
void rdt_ctx_gid(struct rdt_ctx *ctx, int *index, uint8_t gid[16]);

/* The same for a server answering `peer`: a GID of the peer's family
 * (IPv4-mapped or IPv6), so that both ends route alike (a fresh rxe on a
 * network with router advertisements gains IPv6 GIDs above the IPv4 one
 * while clients still send theirs). */
void rdt_ctx_gid_like(struct rdt_ctx *ctx, const uint8_t peer[16],
		      int *index, uint8_t gid[16]);

/* The next rdt_ctx_gid() looks at the table again (a GID was refused). */
void rdt_ctx_gid_stale(struct rdt_ctx *ctx);

static inline void rdt_count(uint64_t *ctr, uint64_t n)
{
	__atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

#endif
