/* rdt_ctx: device, port and GID choice, PD, registered memory, counters
 * (see rdt.h). */
#include "rdt_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/budget.h"
#include "base/clock.h"
#include "base/util.h"

/* GID table entries looked at: rxe and RoCE ports fill the first few. */
#define GID_SCAN       256
#define GID_RECHECK_NS 1000000000LL
/* Where the kernel's device nodes of verbs devices live. */
#define UVERBS_DIR "/dev/infiniband"
/* A released device: how often to look for its return; a device that is
 * back but fails to set up is looked at less and less often. */
#define RETURN_RETRY_NS	    1000000000LL
#define RETURN_RETRY_MAX_NS 32000000000LL

static int notify_open(struct rdt_ctx *ctx);
static void on_async(struct loop_io *io, uint32_t events);
static void on_return_timer(struct loop_timer *t);
static void counters_unregister(struct rdt_counters *s);

void rdt_options_default(struct rdt_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->device = "";
	opt->port = 1;
	opt->gid_index = -1;
	opt->sq_size = RDT_QUEUE_DEFAULT;
	opt->rq_size = RDT_QUEUE_DEFAULT;
	opt->recv_blocks = 1;
	opt->handshake_timeout_ms = RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT;
	opt->credit_timeout_ms = RDT_CREDIT_TIMEOUT_MS_DEFAULT;
	opt->max_handshakes = RDT_MAX_HANDSHAKES_DEFAULT;
	opt->region_mb = 64;
	opt->max_regions = 16;
	opt->poller_num = 1;
}

static bool iface_id_nonzero(const uint8_t *gid)
{
	for (int i = 8; i < 16; i++)
		if (gid[i])
			return true;
	return false;
}

static bool gid_is_v4(const uint8_t *gid)
{
	static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0,	0,
					      0, 0, 0, 0, 0xff, 0xff};

	return !memcmp(gid, v4_prefix, sizeof(v4_prefix));
}

/*
 * brpc's rule, the highest index whose interface id is not zero, taken
 * among the IPv4-mapped GIDs when there are any: IPv6 GIDs from router
 * advertisements appear seconds after the link and stay tentative (DAD)
 * for a while, and a QP aimed at one then times out in RTR.  With
 * `like`, only GIDs of its family.
 */
static int pick_gid(struct ibv_context *v, int port, int tbl_len,
		    uint8_t out[16], const uint8_t *like)
{
	union ibv_gid g;
	int best = -1, best_v4 = -1;
	uint8_t v4[16];

	for (int i = 0; i < tbl_len && i < GID_SCAN; i++) {
		if (ibv_query_gid(v, (uint8_t)port, i, &g) ||
		    !iface_id_nonzero(g.raw))
			continue;
		if (like && gid_is_v4(g.raw) != gid_is_v4(like))
			continue;
		best = i;
		memcpy(out, g.raw, 16);
		if (gid_is_v4(g.raw)) {
			best_v4 = i;
			memcpy(v4, g.raw, 16);
		}
	}
	if (best_v4 >= 0) {
		memcpy(out, v4, 16);
		return best_v4;
	}
	return best;
}

void rdt_ctx_gid(struct rdt_ctx *ctx, int *index, uint8_t gid[16])
{
	int64_t now = clock_mono_ns();
	struct ibv_port_attr pa;
	uint8_t g[16];
	int i;

	pthread_mutex_lock(&ctx->gid_lock);
	if (ctx->opt.gid_index < 0 &&
	    now - ctx->gid_checked_ns > GID_RECHECK_NS &&
	    ibv_query_port(ctx->verbs, (uint8_t)ctx->choice.port, &pa) == 0) {
		i = pick_gid(ctx->verbs, ctx->choice.port, pa.gid_tbl_len, g,
			     NULL);
		if (i >= 0 && i != ctx->choice.gid_index) {
			log_info(ctx->opt.log,
				 "rdma: GID index %d -> %d (the "
				 "port's GID table changed)",
				 ctx->choice.gid_index, i);
			ctx->choice.gid_index = i;
			memcpy(ctx->choice.gid, g, 16);
		}
		ctx->gid_checked_ns = now;
	}
	*index = ctx->choice.gid_index;
	memcpy(gid, ctx->choice.gid, 16);
	pthread_mutex_unlock(&ctx->gid_lock);
}

void rdt_ctx_gid_like(struct rdt_ctx *ctx, const uint8_t peer[16], int *index,
		      uint8_t gid[16])
{
	struct ibv_port_attr pa;
	uint8_t g[16];
	int i;

	rdt_ctx_gid(ctx, index, gid);
	if (ctx->opt.gid_index >= 0 || gid_is_v4(gid) == gid_is_v4(peer) ||
	    ibv_query_port(ctx->verbs, (uint8_t)ctx->choice.port, &pa))
		return;
	i = pick_gid(ctx->verbs, ctx->choice.port, pa.gid_tbl_len, g, peer);
	if (i >= 0) {
		*index = i;
		memcpy(gid, g, 16);
	}
}

void rdt_ctx_gid_stale(struct rdt_ctx *ctx)
{
	pthread_mutex_lock(&ctx->gid_lock);
	ctx->gid_checked_ns = 0;
	pthread_mutex_unlock(&ctx->gid_lock);
}

static int mtu_bytes(enum ibv_mtu m)
{
	return m >= IBV_MTU_256 && m <= IBV_MTU_4096 ? 128 << m : 0;
}

/* Opens `dev` if it fits the options: 0 (*out and *ch set), -ENODEV (not
 * this one), or -errno. */
static int try_device(const struct rdt_options *o, struct ibv_device *dev,
		      struct rdt_choice *ch, struct ibv_context **out,
		      char *why, size_t why_size)
{
	const char *name = ibv_get_device_name(dev);
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	union ibv_gid g;
	struct ibv_context *v;
	int err;

	if (o->device && o->device[0] && strcmp(o->device, name) != 0)
		return -ENODEV;
	v = ibv_open_device(dev);
	if (!v) {
		snprintf(why, why_size, "cannot open RDMA device %s: %s", name,
			 strerror(errno));
		return -ENODEV;
	}
	err = ibv_query_device(v, &da);
	if (!err && o->port > da.phys_port_cnt)
		err = EINVAL;
	if (!err)
		err = ibv_query_port(v, (uint8_t)o->port, &pa);
	if (err || pa.state != IBV_PORT_ACTIVE) {
		snprintf(why, why_size, "RDMA device %s port %d %s", name,
			 o->port, err ? strerror(err) : "is not active");
		ibv_close_device(v);
		return -ENODEV;
	}
	memset(ch, 0, sizeof(*ch));
	snprintf(ch->device, sizeof(ch->device), "%s", name);
	ch->port = o->port;
	ch->lid = pa.lid;
	ch->active_mtu = mtu_bytes(pa.active_mtu);
	ch->max_sge = da.max_sge;
	if (o->gid_index >= 0) {
		if (o->gid_index >= pa.gid_tbl_len ||
		    ibv_query_gid(v, (uint8_t)o->port, o->gid_index, &g)) {
			snprintf(why, why_size,
				 "rdma_gid_index=%d: device %s "
				 "port %d has no such GID",
				 o->gid_index, name, o->port);
			ibv_close_device(v);
			return -EINVAL;
		}
		ch->gid_index = o->gid_index;
		memcpy(ch->gid, g.raw, 16);
	} else {
		ch->gid_index =
		    pick_gid(v, o->port, pa.gid_tbl_len, ch->gid, NULL);
		if (ch->gid_index < 0) {
			snprintf(why, why_size,
				 "RDMA device %s port %d has "
				 "no GID with an interface id (no address on "
				 "its netdev?)",
				 name, o->port);
			ibv_close_device(v);
			return -ENODEV;
		}
	}
	*out = v;
	return 0;
}

/* The first device that fits the options: 0, -ENODEV or -errno. */
static int open_device(const struct rdt_options *o, struct rdt_choice *ch,
		       struct ibv_context **out, char *why, size_t why_size)
{
	struct ibv_device **list;
	int n = 0, err = -ENODEV;

	errno = 0;
	list = ibv_get_device_list(&n);
	if (!list || n == 0) {
		snprintf(why, why_size,
			 "no RDMA device (the kernel needs "
			 "ib_uverbs and a device, e.g. rdma_rxe with `rdma "
			 "link add rxe0 type rxe netdev eth0`)");
		if (list)
			ibv_free_device_list(list);
		return -ENODEV;
	}
	for (int i = 0; i < n && err == -ENODEV; i++)
		err = try_device(o, list[i], ch, out, why, why_size);
	if (err == -ENODEV && o->device && o->device[0] && !why[0])
		snprintf(why, why_size, "rdma_device=%s: no such device",
			 o->device);
	ibv_free_device_list(list);
	return err;
}

int rdt_open(struct rdt_ctx **out, const struct rdt_options *opt, char *why,
	     size_t why_size)
{
	char scratch[256];
	struct rdt_ctx *ctx;
	const struct mem *mem = opt->mem ? opt->mem : mem_default();
	int err;

	if (!why) {
		why = scratch;
		why_size = sizeof(scratch);
	}
	why[0] = '\0';
	*out = NULL;
	if (opt->port < 1 || opt->sq_size < RDT_QUEUE_MIN ||
	    opt->sq_size > RDT_QUEUE_MAX || opt->rq_size < RDT_QUEUE_MIN ||
	    opt->rq_size > RDT_QUEUE_MAX || opt->handshake_timeout_ms <= 0 ||
	    opt->credit_timeout_ms < 0 || opt->max_handshakes < 0 ||
	    opt->region_mb == 0 || opt->max_regions == 0 ||
	    (opt->use_polling &&
	     (opt->poller_num < 1 || opt->poller_num > BUDGET_MAX_POLLERS))) {
		snprintf(why, why_size,
			 "bad RDMA options (rdma_sq_size and "
			 "rdma_rq_size must be %d..%d, rdma_poller_num 1..%d, "
			 "the timeouts not negative)",
			 RDT_QUEUE_MIN, RDT_QUEUE_MAX, BUDGET_MAX_POLLERS);
		return -EINVAL;
	}
	ctx = mem_zalloc(mem, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->opt = *opt;
	ctx->opt.mem = mem;
	ctx->notify_fd = -1;
	rdt_counters_init(&ctx->st);
	ctx->held.next = ctx->held.prev = &ctx->held;
	ctx->mrs = mem_zalloc(mem, opt->max_regions * sizeof(*ctx->mrs));
	if (!ctx->mrs) {
		mem_free(mem, ctx);
		return -ENOMEM;
	}
	pthread_mutex_init(&ctx->gid_lock, NULL);
	pthread_mutex_init(&ctx->dev_lock, NULL);
	err = open_device(&ctx->opt, &ctx->choice, &ctx->verbs, why, why_size);
	if (err)
		goto fail;
	ctx->gid_checked_ns = clock_mono_ns();
	snprintf(ctx->dev_node, sizeof(ctx->dev_node), "%s",
		 ctx->verbs->device->dev_name);
	ctx->pd = ibv_alloc_pd(ctx->verbs);
	if (!ctx->pd) {
		err = errno ? -errno : -ENOMEM;
		snprintf(why, why_size, "ibv_alloc_pd on %s: %s",
			 ctx->choice.device, strerror(-err));
		ibv_close_device(ctx->verbs);
		goto fail;
	}
	if (opt->use_polling) {
		err = rdt_pollers_start(ctx, why, why_size);
		if (err) {
			ibv_dealloc_pd(ctx->pd);
			ibv_close_device(ctx->verbs);
			goto fail;
		}
	}
	metrics_gauge_set(&ctx->st.device_up, 1);
	*out = ctx;
	return 0;
fail:
	pthread_mutex_destroy(&ctx->gid_lock);
	pthread_mutex_destroy(&ctx->dev_lock);
	mem_free(mem, ctx->mrs);
	mem_free(mem, ctx);
	return err;
}

void rdt_close(struct rdt_ctx *ctx)
{
	if (!ctx)
		return;
	counters_unregister(&ctx->st);
	rdt_pollers_stop(ctx);
	if (ctx->notify_fd >= 0)
		close(ctx->notify_fd);
	if (!ctx->released) {
		ibv_dealloc_pd(ctx->pd);
		ibv_close_device(ctx->verbs);
	}
	pthread_mutex_destroy(&ctx->gid_lock);
	pthread_mutex_destroy(&ctx->dev_lock);
	mem_free(ctx->opt.mem, ctx->mrs);
	mem_free(ctx->opt.mem, ctx);
}

void rdt_choice(const struct rdt_ctx *ctx, struct rdt_choice *out)
{
	*out = ctx->choice;
}

void rdt_counters_init(struct rdt_counters *st)
{
	struct metrics_counter *c[] = {
	    &st->hs_rdma,	  &st->hs_tcp,	       &st->hs_failed,
	    &st->hs_timeout,	  &st->bytes_sent,     &st->bytes_received,
	    &st->credit_stalls,	  &st->send_wrs,       &st->send_completions,
	    &st->cq_events,	  &st->cq_empty_reads, &st->return_failures,
	    &st->credit_timeouts,
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		metrics_counter_init(c[i]);
	metrics_gauge_init(&st->qps);
	metrics_gauge_init(&st->device_up);
}

void rdt_stats(struct rdt_ctx *ctx, struct rdt_stats *out)
{
	const struct rdt_counters *s = &ctx->st;

	out->hs_rdma = metrics_counter_get(&s->hs_rdma);
	out->hs_tcp = metrics_counter_get(&s->hs_tcp);
	out->hs_failed = metrics_counter_get(&s->hs_failed);
	out->hs_timeout = metrics_counter_get(&s->hs_timeout);
	out->qps = metrics_gauge_get(&s->qps);
	out->bytes_sent = metrics_counter_get(&s->bytes_sent);
	out->bytes_received = metrics_counter_get(&s->bytes_received);
	out->credit_stalls = metrics_counter_get(&s->credit_stalls);
	out->credit_timeouts = metrics_counter_get(&s->credit_timeouts);
	out->send_wrs = metrics_counter_get(&s->send_wrs);
	out->send_completions = metrics_counter_get(&s->send_completions);
	out->cq_events = metrics_counter_get(&s->cq_events);
	out->cq_empty_reads = metrics_counter_get(&s->cq_empty_reads);
	out->return_failures = metrics_counter_get(&s->return_failures);
	out->device_gone = rdt_ctx_gone(ctx);
	pthread_mutex_lock(&ctx->dev_lock);
	out->device_released = ctx->released;
	pthread_mutex_unlock(&ctx->dev_lock);
}

/* The metrics' names, brpc's bvar habits in Prometheus spelling. */
int rdt_metrics_register(struct rdt_ctx *ctx, struct metrics *m)
{
	struct rdt_counters *s = &ctx->st;
	char dev[96];
	int err;

	snprintf(dev, sizeof(dev), "device=\"%s\"", ctx->choice.device);
	/* clang-format off */
	err = metrics_register_counter(m, &s->hs_rdma,
		"rpcgate_rdma_handshakes_total",
		"RDMA handshakes by outcome: rdma (the connection runs on a "
		"QP), tcp (refused either way, it runs on TCP), failed "
		"(closed during the handshake)", "outcome=\"rdma\"");
	if (!err)
		err = metrics_register_counter(m, &s->hs_tcp,
			"rpcgate_rdma_handshakes_total", "", "outcome=\"tcp\"");
	if (!err)
		err = metrics_register_counter(m, &s->hs_failed,
			"rpcgate_rdma_handshakes_total", "",
			"outcome=\"failed\"");
	if (!err)
		err = metrics_register_counter(m, &s->hs_timeout,
			"rpcgate_rdma_handshake_timeouts_total",
			"failed handshakes closed by rdma_handshake_timeout_ms",
			NULL);
	if (!err)
		err = metrics_register_gauge(m, &s->qps, "rpcgate_rdma_qps",
			"live RDMA queue pairs (one per RDMA connection)", dev);
	if (!err)
		err = metrics_register_gauge(m, &s->device_up,
			"rpcgate_rdma_device_up",
			"1 while the RDMA device is usable, 0 once it is being "
			"removed", dev);
	if (!err)
		err = metrics_register_counter(m, &s->bytes_sent,
			"rpcgate_rdma_sent_bytes_total",
			"bytes sent over RDMA", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->bytes_received,
			"rpcgate_rdma_received_bytes_total",
			"bytes received over RDMA", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->credit_stalls,
			"rpcgate_rdma_credit_stalls_total",
			"writes that waited for the peer's credits", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->credit_timeouts,
			"rpcgate_rdma_credit_timeouts_total",
			"connections closed because the peer returned no "
			"credit within rdma_credit_timeout_ms", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->send_wrs,
			"rpcgate_rdma_send_wrs_total",
			"data sends posted (SEND_WITH_IMM work requests)", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->send_completions,
			"rpcgate_rdma_send_completions_total",
			"signaled send completions taken (each covers up to "
			"a quarter of the send window)", NULL);
	if (!err)
		err = metrics_register_counter(m, &s->cq_events,
			"rpcgate_rdma_cq_events_total",
			"completion events read (loop wake-ups, event mode)",
			NULL);
	if (!err)
		err = metrics_register_counter(m, &s->cq_empty_reads,
			"rpcgate_rdma_cq_empty_reads_total",
			"reads of a completion channel that found no event",
			NULL);
	if (!err)
		err = metrics_register_counter(m, &s->return_failures,
			"rpcgate_rdma_device_return_failures_total",
			"looks at a removed device's return that found it "
			"but could not set it up (PD, memory registration)",
			NULL);
	/* clang-format on */
	return err;
}

static void counters_unregister(struct rdt_counters *s)
{
	struct metrics_node *n[] = {
	    &s->hs_rdma.node,	       &s->hs_tcp.node,
	    &s->hs_failed.node,	       &s->hs_timeout.node,
	    &s->bytes_sent.node,       &s->bytes_received.node,
	    &s->credit_stalls.node,    &s->qps.node,
	    &s->device_up.node,	       &s->send_wrs.node,
	    &s->send_completions.node, &s->cq_events.node,
	    &s->cq_empty_reads.node,   &s->return_failures.node,
	    &s->credit_timeouts.node,
	};

	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++)
		metrics_unregister(n[i]);
}

/* ---- registered memory: the iobuf pool's regions ------------------- */

/* Registers a region with `pd`: the MR, or NULL (errno set). */
static struct ibv_mr *reg_region(struct ibv_pd *pd, void *base, size_t bytes)
{
	struct ibv_mr *mr;

	mr = ibv_reg_mr(pd, base, bytes,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_RELAXED_ORDERING);
	if (!mr)
		mr = ibv_reg_mr(pd, base, bytes, IBV_ACCESS_LOCAL_WRITE);
	return mr;
}

/* A free slot of ctx->mrs for `mr`; dev_lock held.  The pool keeps to
 * max_regions, so there always is one. */
static bool mr_slot_put(struct rdt_ctx *ctx, struct ibv_mr *mr)
{
	for (size_t slot = 0; slot < ctx->opt.max_regions; slot++)
		if (!ctx->mrs[slot]) {
			ctx->mrs[slot] = mr;
			ctx->regions++;
			return true;
		}
	return false;
}

/*
 * The pool's region hook.  Called without the pool's lock, on a task
 * worker when the pool grows ahead of need (app/runtime.c), else by the
 * taker that ran dry; dev_lock keeps a registration and the device's
 * release or return apart.  While the device is released a region is
 * plain memory (cookie NULL): TCP connections still use it, and the
 * device's return registers it.
 */
static void *region_alloc(void *arg, size_t bytes, void **cookie)
{
	struct rdt_ctx *ctx = arg;
	struct ibv_mr *mr;
	size_t regions;
	void *base;
	int err;

	base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		log_error(ctx->opt.log,
			  "rdma: cannot map a %zu MiB memory "
			  "region: %s",
			  bytes >> 20, strerror(errno));
		return NULL;
	}
	*cookie = NULL;
	pthread_mutex_lock(&ctx->dev_lock);
	if (ctx->released) {
		pthread_mutex_unlock(&ctx->dev_lock);
		return base;
	}
	mr = reg_region(ctx->pd, base, bytes);
	err = errno;
	if (mr && !mr_slot_put(ctx, mr)) {
		ibv_dereg_mr(mr); /* cannot happen, see mr_slot_put */
		mr = NULL;
		err = ENOSPC;
	}
	regions = ctx->regions;
	pthread_mutex_unlock(&ctx->dev_lock);
	if (!mr) {
		log_error(ctx->opt.log,
			  "rdma: ibv_reg_mr of %zu MiB on %s "
			  "failed: %s (locked-memory limit? ulimit -l)",
			  bytes >> 20, ctx->choice.device, strerror(err));
		munmap(base, bytes);
		return NULL;
	}
	log_info(ctx->opt.log,
		 "rdma: registered memory region %zu of at "
		 "most %zu (%zu MiB)",
		 regions, ctx->opt.max_regions, bytes >> 20);
	*cookie = mr;
	return base;
}

static void region_free(void *arg, void *base, size_t bytes, void *cookie)
{
	struct rdt_ctx *ctx = arg;

	pthread_mutex_lock(&ctx->dev_lock);
	for (size_t i = 0; cookie && i < ctx->opt.max_regions; i++)
		if (ctx->mrs[i] == cookie) {
			/* Not yet deregistered by the device's release. */
			ibv_dereg_mr(cookie);
			ctx->mrs[i] = NULL;
			ctx->regions--;
		}
	pthread_mutex_unlock(&ctx->dev_lock);
	munmap(base, bytes);
}

void rdt_region_hook(struct rdt_ctx *ctx, struct iobuf_region_hook *out,
		     size_t *region_blocks, size_t *max_regions)
{
	out->alloc = region_alloc;
	out->free = region_free;
	out->ctx = ctx;
	*region_blocks = ctx->opt.region_mb * 1024 * 1024 / IOBUF_BLOCK_SIZE;
	if (*region_blocks > IOBUF_REGION_BLOCKS_MAX)
		*region_blocks = IOBUF_REGION_BLOCKS_MAX;
	*max_regions = ctx->opt.max_regions;
}

/* ---- device removal ---------------------------------------------------- */

int rdt_hold(struct rdt_ctx *ctx, struct rdt_held *h)
{
	int err = 0;

	pthread_mutex_lock(&ctx->dev_lock);
	if (rdt_ctx_gone(ctx)) {
		err = -ENODEV;
	} else {
		h->next = ctx->held.next;
		h->prev = &ctx->held;
		h->next->prev = h;
		ctx->held.next = h;
		ctx->nheld++;
	}
	pthread_mutex_unlock(&ctx->dev_lock);
	return err;
}

void rdt_unhold(struct rdt_ctx *ctx, struct rdt_held *h)
{
	bool release = false;

	pthread_mutex_lock(&ctx->dev_lock);
	if (h->next) {
		h->prev->next = h->next;
		h->next->prev = h->prev;
		h->next = h->prev = NULL;
		ctx->nheld--;
		release = ctx->nheld == 0 && rdt_ctx_gone(ctx) &&
			  !ctx->release_queued;
		ctx->release_queued |= release;
	}
	pthread_mutex_unlock(&ctx->dev_lock);
	if (release)
		loop_post(ctx->watch_loop, &ctx->release_task);
}

/*
 * iobuf_pool_each_region(): forgets each region's MR (the pool's blocks
 * must not name a deregistered one: the device's return registers them
 * afresh), then (ri NULL) marks the device released and takes its PD and
 * context, no region slipping between.  The slow part, deregistering and
 * closing, runs after the pool's lock is dropped (release_fn).
 */
struct release {
	struct rdt_ctx *ctx;
	struct ibv_pd *pd;
	struct ibv_context *verbs;
};

static int release_region(void *arg, struct iobuf_region_info *ri)
{
	struct release *rl = arg;
	struct rdt_ctx *ctx = rl->ctx;

	if (ri) {
		ri->cookie = NULL;
		return 0;
	}
	pthread_mutex_lock(&ctx->dev_lock);
	rl->pd = ctx->pd;
	rl->verbs = ctx->verbs;
	ctx->pd = NULL;
	ctx->verbs = NULL;
	ctx->released = true; /* region_alloc registers nothing now */
	pthread_mutex_unlock(&ctx->dev_lock);
	return 0;
}

/* Watch loop: nothing holds the device any more; let go of it. */
static void release_fn(struct task *t)
{
	struct rdt_ctx *ctx = container_of(t, struct rdt_ctx, release_task);
	struct release rl = {ctx, NULL, NULL};
	size_t nmr = 0;

	if (ctx->async_io.active)
		loop_io_del(ctx->watch_loop, &ctx->async_io);
	if (ctx->pool)
		iobuf_pool_each_region(ctx->pool, release_region, &rl);
	else
		release_region(&rl, NULL);
	/* Released: only this loop touches the slots now. */
	for (size_t i = 0; i < ctx->opt.max_regions; i++)
		if (ctx->mrs[i]) {
			ibv_dereg_mr(ctx->mrs[i]);
			ctx->mrs[i] = NULL;
			nmr++;
		}
	ctx->regions = 0;
	ibv_dealloc_pd(rl.pd);
	ibv_close_device(rl.verbs);
	log_info(ctx->opt.log,
		 "rdma: let go of device %s (%zu memory regions "
		 "deregistered): its removal can complete",
		 ctx->choice.device, nmr);
	ctx->return_why[0] = '\0';
	ctx->return_delay_ns = RETURN_RETRY_NS;
	if (!ctx->unwatched) /* else run by loop_destroy(), at exit */
		loop_timer_start(ctx->watch_loop, &ctx->return_timer,
				 loop_now(ctx->watch_loop) +
				     ctx->return_delay_ns,
				 on_return_timer);
}

/* ---- the device's return ----------------------------------------------- */

/*
 * Re-registration in three steps, so that the pool's lock is held only
 * briefly: a list of the regions (under the lock), their registration
 * with the new PD (no lock: registering takes long, and every taker would
 * wait), then, under the lock again, each region's cookie set, the few
 * regions added meanwhile registered there, and the device made usable
 * (iobuf_pool_each_region()'s final call), no region slipping between.
 */
struct rereg {
	struct rdt_ctx *ctx;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	struct rdt_choice choice;
	size_t n; /* regions listed, at most opt.max_regions */
	struct rereg_region {
		void *base;
		size_t bytes;
		struct ibv_mr *mr; /* NULL once handed to its region */
	} * r;
};

static int rereg_list(void *arg, struct iobuf_region_info *ri)
{
	struct rereg *rr = arg;

	if (ri && rr->n < rr->ctx->opt.max_regions)
		rr->r[rr->n++] =
		    (struct rereg_region){ri->base, ri->bytes, NULL};
	return 0;
}

/* Puts `mr` in a slot of ctx->mrs and hands it to the region. */
static int rereg_give(struct rdt_ctx *ctx, struct iobuf_region_info *ri,
		      struct ibv_mr *mr)
{
	bool put;

	pthread_mutex_lock(&ctx->dev_lock);
	put = mr_slot_put(ctx, mr);
	pthread_mutex_unlock(&ctx->dev_lock);
	if (!put)
		return -ENOSPC; /* cannot happen: the pool keeps the limit */
	ri->cookie = mr;
	return 0;
}

static int rereg_commit(void *arg, struct iobuf_region_info *ri)
{
	struct rereg *rr = arg;
	struct rdt_ctx *ctx = rr->ctx;
	struct ibv_mr *mr = NULL;
	int err;

	if (!ri) {
		pthread_mutex_lock(&ctx->dev_lock);
		pthread_mutex_lock(&ctx->gid_lock);
		ctx->verbs = rr->verbs;
		ctx->choice = rr->choice;
		ctx->gid_checked_ns = clock_mono_ns();
		pthread_mutex_unlock(&ctx->gid_lock);
		ctx->pd = rr->pd;
		ctx->released = false;
		ctx->release_queued = false;
		ctx->port_down = false;
		__atomic_store_n(&ctx->gone, false, __ATOMIC_RELEASE);
		metrics_gauge_set(&ctx->st.device_up, 1);
		pthread_mutex_unlock(&ctx->dev_lock);
		return 0;
	}
	for (size_t i = 0; i < rr->n && !mr; i++)
		if (rr->r[i].base == ri->base) {
			mr = rr->r[i].mr;
			rr->r[i].mr = NULL;
		}
	/* Added while the others were being registered: do it here. */
	if (!mr && !(mr = reg_region(rr->pd, ri->base, ri->bytes)))
		return errno ? -errno : -ENOMEM;
	err = rereg_give(ctx, ri, mr);
	if (err)
		ibv_dereg_mr(mr);
	return err;
}

/* Undoes rereg_commit()'s hand-outs after one of them failed. */
static int rereg_undo(void *arg, struct iobuf_region_info *ri)
{
	struct rdt_ctx *ctx = arg;

	if (!ri || !ri->cookie)
		return 0;
	pthread_mutex_lock(&ctx->dev_lock);
	for (size_t i = 0; i < ctx->opt.max_regions; i++)
		if (ctx->mrs[i] == ri->cookie) {
			ctx->mrs[i] = NULL;
			ctx->regions--;
		}
	pthread_mutex_unlock(&ctx->dev_lock);
	ibv_dereg_mr(ri->cookie);
	ri->cookie = NULL;
	return 0;
}

/* Registers the pool's regions with rr->pd and makes the device usable:
 * 0, or -errno with nothing left registered. */
static int rereg_pool(struct rereg *rr)
{
	struct rdt_ctx *ctx = rr->ctx;
	int err = 0;

	if (!ctx->pool)
		return rereg_commit(rr, NULL);
	rr->r = mem_zalloc(ctx->opt.mem, ctx->opt.max_regions * sizeof(*rr->r));
	if (!rr->r)
		return -ENOMEM;
	iobuf_pool_each_region(ctx->pool, rereg_list, rr);
	for (size_t i = 0; i < rr->n && !err; i++) {
		rr->r[i].mr = reg_region(rr->pd, rr->r[i].base, rr->r[i].bytes);
		if (!rr->r[i].mr)
			err = errno ? -errno : -ENOMEM;
	}
	if (!err)
		err = iobuf_pool_each_region(ctx->pool, rereg_commit, rr);
	if (err)
		iobuf_pool_each_region(ctx->pool, rereg_undo, ctx);
	for (size_t i = 0; i < rr->n; i++)
		if (rr->r[i].mr) /* not handed out */
			ibv_dereg_mr(rr->r[i].mr);
	mem_free(ctx->opt.mem, rr->r);
	return err;
}

/* Logs why the device is not back yet, once per distinct reason. */
static void return_not_yet(struct rdt_ctx *ctx, const char *why)
{
	if (!strcmp(ctx->return_why, why))
		return;
	snprintf(ctx->return_why, sizeof(ctx->return_why), "%s", why);
	log_info(ctx->opt.log, "rdma: no device to go back to yet: %s", why);
}

/*
 * Watch loop, device released: opens a device again if one fits.  true
 * when RDMA is back.  A device that is there but cannot be used (a PD, or
 * the registrations, failing) doubles the time to the next look, up to
 * RETURN_RETRY_MAX_NS.
 */
static bool try_return(struct rdt_ctx *ctx)
{
	struct rereg rr = {.ctx = ctx};
	char why[160] = "", gid[64];
	int err;

	err = open_device(&ctx->opt, &rr.choice, &rr.verbs, why, sizeof(why));
	if (err) {
		ctx->return_delay_ns = RETURN_RETRY_NS;
		return_not_yet(ctx, why);
		return false;
	}
	rr.pd = ibv_alloc_pd(rr.verbs);
	if (!rr.pd || fd_set_nonblock(rr.verbs->async_fd)) {
		snprintf(why, sizeof(why), "device %s: %s: %s",
			 rr.choice.device,
			 rr.pd ? "fcntl of its async fd" : "ibv_alloc_pd",
			 strerror(errno));
		goto fail;
	}
	err = rereg_pool(&rr);
	if (err) {
		snprintf(why, sizeof(why),
			 "device %s: registering the memory regions again: "
			 "%s (locked-memory limit? ulimit -l)",
			 rr.choice.device, strerror(-err));
		goto fail;
	}
	ctx->return_delay_ns = RETURN_RETRY_NS;
	snprintf(ctx->dev_node, sizeof(ctx->dev_node), "%s",
		 rr.verbs->device->dev_name);
	loop_io_init(&ctx->async_io, rr.verbs->async_fd, EPOLLIN, on_async);
	if (loop_io_add(ctx->watch_loop, &ctx->async_io))
		log_warn(ctx->opt.log,
			 "rdma: cannot watch device %s's async events",
			 rr.choice.device);
	inet_ntop(AF_INET6, rr.choice.gid, gid, sizeof(gid));
	log_info(ctx->opt.log,
		 "rdma: device %s is back (port %d gid[%d] %s), %zu memory "
		 "regions registered again: new connections use RDMA",
		 rr.choice.device, rr.choice.port, rr.choice.gid_index, gid,
		 rr.n);
	return true;

fail:
	rdt_count(&ctx->st.return_failures, 1);
	if (rr.pd)
		ibv_dealloc_pd(rr.pd);
	ibv_close_device(rr.verbs);
	if (ctx->return_delay_ns < RETURN_RETRY_MAX_NS)
		ctx->return_delay_ns *= 2;
	return_not_yet(ctx, why);
	return false;
}

static void on_return_timer(struct loop_timer *t)
{
	struct rdt_ctx *ctx = container_of(t, struct rdt_ctx, return_timer);

	if (!try_return(ctx))
		loop_timer_start(ctx->watch_loop, t,
				 loop_now(ctx->watch_loop) +
				     ctx->return_delay_ns,
				 on_return_timer);
}

/* Watch loop: the device is going; `why` says how we know. */
static void device_removed(struct rdt_ctx *ctx, const char *why)
{
	struct rdt_held *h;
	bool release;
	int n = 0;

	pthread_mutex_lock(&ctx->dev_lock);
	if (rdt_ctx_gone(ctx)) {
		pthread_mutex_unlock(&ctx->dev_lock);
		return;
	}
	__atomic_store_n(&ctx->gone, true, __ATOMIC_RELEASE);
	metrics_gauge_set(&ctx->st.device_up, 0);
	for (h = ctx->held.next; h != &ctx->held; h = h->next, n++)
		rdt_ep_device_gone(ctx, h);
	release = ctx->nheld == 0 && !ctx->release_queued;
	ctx->release_queued |= release;
	pthread_mutex_unlock(&ctx->dev_lock);
	log_error(ctx->opt.log,
		  "rdma: device %s is being removed (%s): closing %d RDMA "
		  "connection%s, their calls in flight fail with \"the RDMA "
		  "device %s was removed\"; new connections use TCP",
		  ctx->choice.device, why, n, n == 1 ? "" : "s",
		  ctx->choice.device);
	if (release)
		loop_defer(ctx->watch_loop, &ctx->release_task);
}

static void on_notify(struct loop_io *io, uint32_t events)
{
	struct rdt_ctx *ctx = container_of(io, struct rdt_ctx, notify_io);
	char buf[sizeof(struct inotify_event) + NAME_MAX + 1]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	char why[160];
	ssize_t n;

	(void)events;
	while ((n = read(ctx->notify_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const void *)p;

			p += sizeof(*e) + e->len;
			if ((e->mask & IN_CREATE) && ctx->released &&
			    loop_timer_active(&ctx->return_timer)) {
				/* A new node: its device may need a moment
				 * (port, GIDs); the timer goes on if so. */
				if (try_return(ctx))
					loop_timer_stop(ctx->watch_loop,
							&ctx->return_timer);
				continue;
			}
			if (!(e->mask & IN_DELETE) || !e->len ||
			    strcmp(e->name, ctx->dev_node) != 0)
				continue;
			snprintf(why, sizeof(why),
				 "its node " UVERBS_DIR "/%s was deleted: "
				 "rdma link delete, or its driver is "
				 "unloading",
				 ctx->dev_node);
			device_removed(ctx, why);
		}
	}
}

static void on_async(struct loop_io *io, uint32_t events)
{
	struct rdt_ctx *ctx = container_of(io, struct rdt_ctx, async_io);
	struct ibv_async_event e;

	(void)events;
	while (!ctx->released && ibv_get_async_event(ctx->verbs, &e) == 0) {
		enum ibv_event_type type = e.event_type;

		ibv_ack_async_event(&e);
		switch (type) {
		case IBV_EVENT_DEVICE_FATAL:
			device_removed(ctx, "it reported a fatal error");
			break;
		case IBV_EVENT_PORT_ERR:
			ctx->port_down = true;
			log_warn(ctx->opt.log,
				 "rdma: device %s port %d went down: RDMA "
				 "connections fail as their sends time out",
				 ctx->choice.device, ctx->choice.port);
			break;
		case IBV_EVENT_PORT_ACTIVE:
			/* rxe also reports it once, as the device starts. */
			log_write(ctx->opt.log,
				  ctx->port_down ? LOG_LVL_INFO : LOG_LVL_DEBUG,
				  "rdma: device %s port %d is active%s",
				  ctx->choice.device, ctx->choice.port,
				  ctx->port_down ? " again" : "");
			ctx->port_down = false;
			break;
		case IBV_EVENT_GID_CHANGE:
			rdt_ctx_gid_stale(ctx);
			break;
		default:
			log_debug(ctx->opt.log, "rdma: device %s: %s",
				  ctx->choice.device, ibv_event_type_str(type));
			break;
		}
	}
}

/* Watch loop: starts the watchers rdt_watch() set up. */
static void watch_fn(struct task *t)
{
	struct rdt_ctx *ctx = container_of(t, struct rdt_ctx, watch_task);
	int err = 0;

	if (ctx->unwatched)
		return; /* run by loop_destroy(), after rdt_unwatch() */
	if (ctx->notify_fd >= 0) {
		loop_io_init(&ctx->notify_io, ctx->notify_fd, EPOLLIN,
			     on_notify);
		err = loop_io_add(ctx->watch_loop, &ctx->notify_io);
	}
	if (!err) {
		loop_io_init(&ctx->async_io, ctx->verbs->async_fd, EPOLLIN,
			     on_async);
		err = loop_io_add(ctx->watch_loop, &ctx->async_io);
	}
	if (err)
		log_warn(ctx->opt.log,
			 "rdma: cannot watch device %s for removal: %s",
			 ctx->choice.device, strerror(-err));
}

/* rdt_watch: inotify on the device nodes' directory, or -1. */
static int notify_open(struct rdt_ctx *ctx)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd >= 0 &&
	    inotify_add_watch(fd, UVERBS_DIR, IN_DELETE | IN_CREATE) < 0) {
		/* No such directory (a device handed in another way): the
		 * async events still tell of a fatal error. */
		log_debug(ctx->opt.log, "rdma: cannot watch " UVERBS_DIR ": %s",
			  strerror(errno));
		close(fd);
		fd = -1;
	}
	return fd;
}

int rdt_watch(struct rdt_ctx *ctx, struct loop *loop, struct iobuf_pool *pool)
{
	int err = fd_set_nonblock(ctx->verbs->async_fd);

	if (err)
		return err;
	ctx->watch_loop = loop;
	ctx->pool = pool;
	ctx->notify_fd = notify_open(ctx);
	loop_timer_init(&ctx->return_timer);
	task_init(&ctx->watch_task, watch_fn);
	task_init(&ctx->release_task, release_fn);
	loop_post(loop, &ctx->watch_task);
	return 0;
}

void rdt_unwatch(struct rdt_ctx *ctx)
{
	if (!ctx || !ctx->watch_loop)
		return;
	ctx->unwatched = true;
	if (ctx->notify_io.active)
		loop_io_del(ctx->watch_loop, &ctx->notify_io);
	if (ctx->async_io.active)
		loop_io_del(ctx->watch_loop, &ctx->async_io);
	loop_timer_stop(ctx->watch_loop, &ctx->return_timer);
	if (ctx->notify_fd >= 0)
		close(ctx->notify_fd);
	ctx->notify_fd = -1;
}
