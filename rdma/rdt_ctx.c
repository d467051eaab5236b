/* rdt_ctx: device, port and GID choice, PD, registered memory, counters
 * (see rdt.h). */
#include "rdt_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "budget.h"
#include "clock.h"

/* GID table entries looked at: rxe and RoCE ports fill the first few. */
#define GID_SCAN       256
#define GID_RECHECK_NS 1000000000LL

void rdt_options_default(struct rdt_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->device = "";
	opt->port = 1;
	opt->gid_index = -1;
	opt->sq_size = RDT_QUEUE_DEFAULT;
	opt->rq_size = RDT_QUEUE_DEFAULT;
	opt->handshake_timeout_ms = RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT;
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

/* Opens `dev` if it fits the options: 0 (ctx->verbs set), -ENODEV (not
 * this one), or -errno. */
static int try_device(struct rdt_ctx *ctx, struct ibv_device *dev, char *why,
		      size_t why_size)
{
	const struct rdt_options *o = &ctx->opt;
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
	memset(&ctx->choice, 0, sizeof(ctx->choice));
	snprintf(ctx->choice.device, sizeof(ctx->choice.device), "%s", name);
	ctx->choice.port = o->port;
	ctx->choice.lid = pa.lid;
	ctx->choice.active_mtu = mtu_bytes(pa.active_mtu);
	ctx->choice.max_sge = da.max_sge;
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
		ctx->choice.gid_index = o->gid_index;
		memcpy(ctx->choice.gid, g.raw, 16);
	} else {
		ctx->choice.gid_index =
		    pick_gid(v, o->port, pa.gid_tbl_len, ctx->choice.gid, NULL);
		if (ctx->choice.gid_index < 0) {
			snprintf(why, why_size,
				 "RDMA device %s port %d has "
				 "no GID with an interface id (no address on "
				 "its netdev?)",
				 name, o->port);
			ibv_close_device(v);
			return -ENODEV;
		}
	}
	ctx->gid_checked_ns = clock_mono_ns();
	ctx->verbs = v;
	return 0;
}

static int open_device(struct rdt_ctx *ctx, char *why, size_t why_size)
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
		err = try_device(ctx, list[i], why, why_size);
	if (err == -ENODEV && ctx->opt.device && ctx->opt.device[0] && !why[0])
		snprintf(why, why_size, "rdma_device=%s: no such device",
			 ctx->opt.device);
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
	    opt->region_mb == 0 || opt->max_regions == 0 ||
	    (opt->use_polling &&
	     (opt->poller_num < 1 || opt->poller_num > BUDGET_MAX_POLLERS))) {
		snprintf(why, why_size,
			 "bad RDMA options (rdma_sq_size and "
			 "rdma_rq_size must be %d..%d, rdma_poller_num 1..%d)",
			 RDT_QUEUE_MIN, RDT_QUEUE_MAX, BUDGET_MAX_POLLERS);
		return -EINVAL;
	}
	ctx = mem_zalloc(mem, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->opt = *opt;
	ctx->opt.mem = mem;
	pthread_mutex_init(&ctx->gid_lock, NULL);
	err = open_device(ctx, why, why_size);
	if (err)
		goto fail;
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
	*out = ctx;
	return 0;
fail:
	pthread_mutex_destroy(&ctx->gid_lock);
	mem_free(mem, ctx);
	return err;
}

void rdt_close(struct rdt_ctx *ctx)
{
	if (!ctx)
		return;
	rdt_pollers_stop(ctx);
	ibv_dealloc_pd(ctx->pd);
	ibv_close_device(ctx->verbs);
	pthread_mutex_destroy(&ctx->gid_lock);
	mem_free(ctx->opt.mem, ctx);
}

void rdt_choice(const struct rdt_ctx *ctx, struct rdt_choice *out)
{
	*out = ctx->choice;
}

void rdt_stats(struct rdt_ctx *ctx, struct rdt_stats *out)
{
	const struct rdt_stats *s = &ctx->st;

	out->hs_rdma = __atomic_load_n(&s->hs_rdma, __ATOMIC_RELAXED);
	out->hs_tcp = __atomic_load_n(&s->hs_tcp, __ATOMIC_RELAXED);
	out->hs_failed = __atomic_load_n(&s->hs_failed, __ATOMIC_RELAXED);
	out->hs_timeout = __atomic_load_n(&s->hs_timeout, __ATOMIC_RELAXED);
	out->qps = __atomic_load_n(&s->qps, __ATOMIC_RELAXED);
	out->bytes_sent = __atomic_load_n(&s->bytes_sent, __ATOMIC_RELAXED);
	out->bytes_received =
	    __atomic_load_n(&s->bytes_received, __ATOMIC_RELAXED);
	out->credit_stalls =
	    __atomic_load_n(&s->credit_stalls, __ATOMIC_RELAXED);
}

/* ---- registered memory: the iobuf pool's regions ------------------- */

static void *region_alloc(void *arg, size_t bytes, void **cookie)
{
	struct rdt_ctx *ctx = arg;
	struct ibv_mr *mr;
	void *base;

	base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		log_error(ctx->opt.log,
			  "rdma: cannot map a %zu MiB memory "
			  "region: %s",
			  bytes >> 20, strerror(errno));
		return NULL;
	}
	mr = ibv_reg_mr(ctx->pd, base, bytes,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_RELAXED_ORDERING);
	if (!mr)
		mr = ibv_reg_mr(ctx->pd, base, bytes, IBV_ACCESS_LOCAL_WRITE);
	if (!mr) {
		log_error(ctx->opt.log,
			  "rdma: ibv_reg_mr of %zu MiB on %s "
			  "failed: %s (locked-memory limit? ulimit -l)",
			  bytes >> 20, ctx->choice.device, strerror(errno));
		munmap(base, bytes);
		return NULL;
	}
	ctx->regions++;
	log_info(ctx->opt.log,
		 "rdma: registered memory region %zu of at "
		 "most %zu (%zu MiB)",
		 ctx->regions, ctx->opt.max_regions, bytes >> 20);
	*cookie = mr;
	return base;
}

static void region_free(void *arg, void *base, size_t bytes, void *cookie)
{
	struct rdt_ctx *ctx = arg;

	ibv_dereg_mr(cookie);
	munmap(base, bytes);
	ctx->regions--;
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
