/*
 * rdt_int: what rdt_ctx.c and rdt_ep.c share; private to rdma/.
 */
#ifndef RPCGATE_RDMA_RDT_INT_H
#define RPCGATE_RDMA_RDT_INT_H

#include <infiniband/verbs.h>
#include <pthread.h>

#include "base/loop.h"
#include "base/metrics.h"
#include "base/task.h"
#include "rdt.h"

struct rdt_poller;

/* What rdt_stats() reports and the metrics export (see rdt_metrics). */
struct rdt_counters {
	struct metrics_counter hs_rdma, hs_tcp, hs_failed, hs_timeout;
	struct metrics_counter bytes_sent, bytes_received, credit_stalls;
	struct metrics_counter credit_timeouts;
	struct metrics_counter send_wrs, send_completions, cq_events;
	struct metrics_counter cq_empty_reads, return_failures;
	struct metrics_gauge qps, device_up;
};

/*
 * An endpoint that holds verbs objects (QP, CQ, completion channel, posted
 * buffers): the device cannot go away before it lets go (rdt_hold).
 */
struct rdt_held {
	struct rdt_held *next, *prev; /* NULL: not held */
};

struct rdt_ctx {
	struct rdt_options opt;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct rdt_choice choice;
	pthread_mutex_t gid_lock; /* choice.gid*, gid_checked_ns */
	int64_t gid_checked_ns;
	struct conn_upgrade up; /* both sides */
	struct rdt_counters st;
	size_t regions;		    /* registered, under dev_lock */
	struct rdt_poller *pollers; /* polling mode: opt.poller_num */
	int npollers;
	unsigned next_poller; /* atomic: round robin */

	/*
	 * Device removal (rdt_watch).  A driver without "disassociate"
	 * (rxe) makes `rdma link delete` wait until every process lets go
	 * of the device, and tells nobody: its /dev/infiniband node goes
	 * first, and that is what we watch, besides the async events (a
	 * hardware driver reports IBV_EVENT_DEVICE_FATAL).  Once seen:
	 * `gone`, every held endpoint is closed on its loop, and when the
	 * last one has let go the watch loop releases MRs, PD and device.
	 * Then it waits for a device to come back (a new node, and a look
	 * every second), opens it as rdt_open() would, registers every
	 * region of `pool` again and clears `gone`: new connections use RDMA
	 * again.
	 */
	/* held, nheld, mrs, regions, pd, released, and the writes of gone,
	 * and of verbs once watched */
	pthread_mutex_t dev_lock;
	struct rdt_held held; /* list head */
	int nheld;
	struct ibv_mr **mrs; /* opt.max_regions slots, NULL: free */
	bool gone;	     /* atomic */
	bool released;
	bool release_queued;
	bool port_down; /* watch loop: a PORT_ERR not yet followed by ACTIVE */
	char dev_node[64]; /* "uverbs0" */
	struct loop *watch_loop;
	bool unwatched; /* rdt_unwatch() ran */
	int notify_fd;	/* inotify on /dev/infiniband, or -1 */
	struct loop_io notify_io, async_io;
	struct task watch_task, release_task;
	struct iobuf_pool *pool;	/* its regions are registered */
	struct loop_timer return_timer; /* released: look for the device */
	char return_why[160];		/* why the last look failed */
	int64_t return_delay_ns;	/* to the next look */
};

/*
 * Holds the device for `h`: 0, or -ENODEV once the device is gone (no new
 * QP then).  rdt_unhold() lets go (idempotent); the last one after the
 * removal has the device released.  Any thread.
 */
int rdt_hold(struct rdt_ctx *ctx, struct rdt_held *h);
void rdt_unhold(struct rdt_ctx *ctx, struct rdt_held *h);

static inline bool rdt_ctx_gone(const struct rdt_ctx *ctx)
{
	return __atomic_load_n(&ctx->gone, __ATOMIC_ACQUIRE);
}

/*
 * rdt_ep.c: the device is being removed; close the endpoint holding `h`
 * on its own loop, saying `why`.  Called with ctx->dev_lock held, from
 * the watch loop: must not block or call back into the ctx.
 */
void rdt_ep_device_gone(struct rdt_ctx *ctx, struct rdt_held *h);

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

static inline void rdt_count(struct metrics_counter *ctr, uint64_t n)
{
	metrics_counter_add(ctr, n);
}

void rdt_counters_init(struct rdt_counters *st);

#endif
