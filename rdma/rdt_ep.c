/*
 * rdt_ep: one RDMA connection (see rdt.h): the v2 hello state machines of
 * both sides, and then the QP's credit data path (spec/brpc-wire.md
 * 2.3-2.13).
 *
 * Life of an endpoint.  It is created by the first handshake step and
 * hangs off the conn as its transport context.  While the hello runs the
 * conn's transport is `hs_tp`: TCP reads (whose EOF is logged with what
 * the handshake was waiting for) and writes held back.  It ends on
 *   RDMA     the transport becomes `live_tp`: sends are SEND_WITH_IMM
 *            posts, receives come from the completion channel, which the
 *            conn's loop watches; the TCP socket only says when the peer
 *            is gone (any byte on it is a protocol error);
 *   TCP      the endpoint is freed and the conn goes on as plain TCP;
 *   failure  the conn closes (logged once here, with the step, the bytes
 *            seen, the time since connect and the likely cause).
 *
 * Credits (spec 2.12).  The peer advertises rq_size receive buffers; we
 * may have local_window = min(our sq, its rq) - 3 data messages
 * unacknowledged.  remote_credits counts what we may still send; each
 * received immediate adds the count the peer reports.  We report ours the
 * same way: every data message received and re-posted is one credit,
 * piggybacked in the immediate of our next data message or sent alone in
 * a "pure ACK" (no payload) once more than half our window is owed.  Pure
 * ACKs use the 3 reserved slots (imm_slots).
 *
 * Send buffers.  A data message is cut from the write as it is (the
 * iobuf's blocks live in registered regions: no copy) into a ring entry
 * that holds the blocks until the send completes.  Only some sends are
 * signalled (one in local_window/4, the one that uses the last credit or
 * SQ slot, and the last of a write once half the slots are out: see
 * live_write); a signalled completion's wr_id says how many ring entries
 * it releases.
 *
 * Threads.  Handshake, completions, receives, pure ACKs: the conn's loop
 * thread.  live_write(): the thread holding the conn's writer role (one
 * at a time).  Shared between them: remote_credits, sq_free, imm_slots
 * and pending_credits (atomics) and the ring (single producer, the
 * writer; single consumer, the loop).
 */
#include "rdt_hello.h"
#include "rdt_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/util.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
/* Send WRs chained into one ibv_post_send: with rxe every post is a
 * system call (the doorbell), so a 1 MiB write of 8 KiB pieces costs 8
 * calls instead of 128. */
#define WR_CHAIN_MAX 16
/* Work completions taken per ibv_poll_cq (brpc's rdma_cqe_poll_once). */
#define CQE_BATCH 32
/* Completion events acknowledged in batches (ibv_ack_cq_events locks). */
#define ACK_EVENTS_EVERY 64
/* Every this many wakes the completion channel is read to EAGAIN. */
#define CHAN_SWEEP_EVERY 64
/* Gather entries per send; rxe offers 32, HCAs 16 to 30. */
#define SGE_MAX 16
/* Reserved SQ/RQ slots for pure ACKs (brpc's RESERVED_WR_NUM). */
#define RESERVED_WR 3
/* Received messages shorter than this are copied and their block
 * re-posted; longer ones are kept as they are (brpc's 512 B rule). */
#define ZEROCOPY_MIN 512

enum ep_state {
	EP_C_HELLO_WAIT, /* client: hello sent, the server's awaited */
	EP_S_HELLO_WAIT, /* server: the client's hello awaited */
	EP_S_ACK_WAIT,	 /* server: hello or refusal sent, ACK awaited */
	EP_LIVE,	 /* on RDMA */
};

struct rdt_ep {
	struct rdt_ctx *ctx; /* NULL: a TCP-only port's refusals */
	struct conn *c;
	enum ep_state state;
	bool server;
	bool rdma_ok; /* server: our real hello went out */
	bool failed;  /* a failure was logged */
	int64_t start_ns;
	/* The handshake's deadline; once live, the credit wait's
	 * (credit_timeout_ms). */
	struct loop_timer deadline;
	struct rdt_hello mine, peer;
	int gid_index;

	struct rdt_held held; /* while it has verbs objects */
	struct ibv_comp_channel *chan;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	struct loop_io cq_io;	  /* event mode */
	struct rdt_polled polled; /* polling mode */
	struct task drain_task;	  /* event: first drain; polling: a turn */
	unsigned unacked_events;
	/* Arms of the CQ not yet matched by a read of the channel: what
	 * a wake reads (one event per arming at most; an arming of an
	 * armed CQ adds none, so it may be high until an EAGAIN). */
	unsigned arms_unread;
	unsigned wakes; /* of cq_io: every CHAN_SWEEP_EVERY-th reads all */
	int sq_size, rq_size, max_sge;
	int recv_blocks; /* iobuf blocks per receive WR (its block_size) */
	bool withhold_credits; /* rdt_options': owe the peer nothing */
	uint32_t peer_block;
	int local_window, remote_window;
	struct iobuf_block **recv; /* rq_size posted buffers, by wr_id */

	struct iobuf *ring; /* sq_size entries */
	uint32_t ring_head; /* writer */
	uint32_t ring_tail; /* loop */
	int unsignaled;	    /* writer */
	int remote_credits, sq_free, imm_slots, pending_credits; /* atomic */
	/* Completions that brought credits (loop); its value when the
	 * credit wait began (the timer stops when they differ). */
	uint64_t credit_returns, credit_mark;
};

/* TCP-only ports (no ctx): counted, not exported. */
static struct rdt_counters refusal_stats;

static const struct conn_transport hs_tp, live_tp;

static struct rdt_counters *stats_of(struct rdt_ep *ep)
{
	return ep->ctx ? &ep->ctx->st : &refusal_stats;
}

static long long elapsed_ms(const struct rdt_ep *ep)
{
	return (clock_mono_ns() - ep->start_ns) / CLOCK_NS_PER_MS;
}

/* ---- the QP ---------------------------------------------------------- */

/* Posts receive slot `slot`: its recv_blocks blocks, scattered. */
static int post_recv(struct rdt_ep *ep, int slot)
{
	struct iobuf_region_info ri;
	struct ibv_recv_wr wr = {0}, *bad;
	struct ibv_sge sge[RDT_RECV_BLOCKS_MAX];
	struct iobuf_block *b;
	struct ibv_mr *mr;

	for (int i = 0; i < ep->recv_blocks; i++) {
		b = ep->recv[slot * ep->recv_blocks + i];
		iobuf_block_region(b, &ri);
		mr = ri.cookie;
		if (!mr)
			return -EFAULT; /* not registered memory */
		sge[i].addr = (uintptr_t)iobuf_block_data(b);
		sge[i].length = IOBUF_BLOCK_CAP;
		sge[i].lkey = mr->lkey;
	}
	wr.wr_id = (uint64_t)slot;
	wr.sg_list = sge;
	wr.num_sge = ep->recv_blocks;
	return -ibv_post_recv(ep->qp, &wr, &bad);
}

static void qp_destroy(struct rdt_ep *ep)
{
	rdt_polled_del(&ep->polled);
	if (ep->polled.wc) {
		mem_free(ep->c->mem, ep->polled.wc);
		ep->polled.wc = NULL;
	}
	if (ep->qp) {
		ibv_destroy_qp(ep->qp);
		ep->qp = NULL;
		metrics_gauge_add(&stats_of(ep)->qps, -1);
	}
	if (ep->cq) {
		if (ep->unacked_events)
			ibv_ack_cq_events(ep->cq, ep->unacked_events);
		ep->unacked_events = 0;
		ibv_destroy_cq(ep->cq);
		ep->cq = NULL;
	}
	if (ep->chan) {
		ibv_destroy_comp_channel(ep->chan);
		ep->chan = NULL;
	}
	if (ep->recv) {
		for (int i = 0; i < ep->rq_size * ep->recv_blocks; i++)
			if (ep->recv[i])
				iobuf_block_put(ep->recv[i]);
		mem_free(ep->c->mem, ep->recv);
		ep->recv = NULL;
	}
	if (ep->ring) {
		for (int i = 0; i < ep->sq_size; i++)
			iobuf_destroy(&ep->ring[i]);
		mem_free(ep->c->mem, ep->ring);
		ep->ring = NULL;
	}
	if (ep->ctx)
		rdt_unhold(ep->ctx, &ep->held);
}

/*
 * A QP in INIT with every receive buffer posted, and our hello.  0, or
 * -errno with `why` filled (and nothing held).
 */
static int qp_create(struct rdt_ep *ep, char *why, size_t why_size)
{
	struct rdt_ctx *ctx = ep->ctx;
	struct ibv_qp_init_attr ia = {0};
	struct ibv_qp_attr a = {0};
	struct iobuf_region_info ri;
	const char *step;
	int err, i;

	if (rdt_hold(ctx, &ep->held)) {
		snprintf(why, why_size, "the RDMA device %s was removed",
			 ctx->choice.device);
		return -ENODEV;
	}
	ep->sq_size = ctx->opt.sq_size;
	ep->rq_size = ctx->opt.rq_size;
	ep->recv_blocks = ctx->opt.recv_blocks;
	ep->withhold_credits = ctx->opt.withhold_credits;
	if (ep->recv_blocks > ctx->choice.max_sge)
		ep->recv_blocks =
		    ctx->choice.max_sge > 0 ? ctx->choice.max_sge : 1;
	ep->max_sge =
	    ctx->choice.max_sge < SGE_MAX ? ctx->choice.max_sge : SGE_MAX;
	if (ep->max_sge < 1)
		ep->max_sge = 1;
	if (ctx->opt.use_polling) {
		/* A ring as large as the CQ (rdt_poll.c). */
		ep->polled.mask = 1;
		while (ep->polled.mask < (uint32_t)(ep->sq_size + ep->rq_size))
			ep->polled.mask <<= 1;
		ep->polled.wc = mem_zalloc(ep->c->mem, sizeof(struct ibv_wc) *
							   ep->polled.mask);
		ep->polled.mask--;
		if (!ep->polled.wc) {
			snprintf(why, why_size,
				 "no memory for the "
				 "completion ring");
			return -ENOMEM;
		}
	} else {
		step = "ibv_create_comp_channel";
		ep->chan = ibv_create_comp_channel(ctx->verbs);
		if (!ep->chan)
			goto verbs_failed;
		if (fd_set_nonblock(ep->chan->fd))
			goto verbs_failed;
	}
	step = "ibv_create_cq";
	ep->cq = ibv_create_cq(ctx->verbs, ep->sq_size + ep->rq_size, ep,
			       ep->chan, 0);
	if (!ep->cq)
		goto verbs_failed;
	ia.send_cq = ep->cq;
	ia.recv_cq = ep->cq;
	ia.qp_type = IBV_QPT_RC;
	ia.cap.max_send_wr = (uint32_t)ep->sq_size;
	ia.cap.max_recv_wr = (uint32_t)ep->rq_size;
	ia.cap.max_send_sge = (uint32_t)ep->max_sge;
	ia.cap.max_recv_sge = (uint32_t)ep->recv_blocks;
	step = "ibv_create_qp";
	ep->qp = ibv_create_qp(ctx->pd, &ia);
	if (!ep->qp)
		goto verbs_failed;
	metrics_gauge_add(&ctx->st.qps, 1);

	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = (uint8_t)ctx->choice.port;
	a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
	err = ibv_modify_qp(ep->qp, &a,
			    IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
				IBV_QP_ACCESS_FLAGS);
	if (err) {
		errno = err;
		step = "ibv_modify_qp to INIT";
		goto verbs_failed;
	}

	err = -ENOMEM;
	ep->recv = mem_zalloc(ep->c->mem, sizeof(*ep->recv) * ep->rq_size *
					      ep->recv_blocks);
	ep->ring = mem_zalloc(ep->c->mem, sizeof(*ep->ring) * ep->sq_size);
	if (!ep->recv || !ep->ring) {
		snprintf(why, why_size, "no memory for the QP's buffers");
		goto fail;
	}
	for (i = 0; i < ep->sq_size; i++)
		iobuf_init(&ep->ring[i], ep->c->pool);
	/* Every receive buffer is posted before the peer can send. */
	for (i = 0; i < ep->rq_size * ep->recv_blocks; i++) {
		ep->recv[i] = iobuf_block_get(ep->c->pool);
		if (!ep->recv[i]) {
			snprintf(why, why_size,
				 "the RDMA memory pool is "
				 "exhausted (rdma_memory_pool_max_regions)");
			goto fail;
		}
		iobuf_block_region(ep->recv[i], &ri);
		if (!ri.cookie) {
			err = -EFAULT;
			snprintf(why, why_size,
				 "the buffer pool is not "
				 "registered memory");
			goto fail;
		}
	}
	for (i = 0; i < ep->rq_size; i++) {
		err = post_recv(ep, i);
		if (err) {
			snprintf(why, why_size, "ibv_post_recv: %s",
				 strerror(-err));
			goto fail;
		}
	}

	if (ep->server)
		rdt_ctx_gid_like(ctx, ep->peer.gid, &ep->gid_index,
				 ep->mine.gid);
	else
		rdt_ctx_gid(ctx, &ep->gid_index, ep->mine.gid);
	ep->mine.msg_len = RDT_HELLO_LEN;
	ep->mine.hello_ver = RDT_HELLO_VER;
	ep->mine.impl_ver = RDT_IMPL_VER;
	ep->mine.block_size = IOBUF_BLOCK_CAP * (uint32_t)ep->recv_blocks;
	ep->mine.sq_size = (uint16_t)ep->sq_size;
	ep->mine.rq_size = (uint16_t)ep->rq_size;
	ep->mine.lid = ctx->choice.lid;
	ep->mine.qp_num = ep->qp->qp_num;
	return 0;

verbs_failed:
	err = errno ? -errno : -EIO;
	snprintf(why, why_size, "%s on %s: %s", step, ctx->choice.device,
		 strerror(-err));
fail:
	qp_destroy(ep);
	return err;
}

/* INIT -> RTR -> RTS towards the peer of `ep->peer` (spec 2.10). */
static int qp_connect(struct rdt_ep *ep, char *why, size_t why_size)
{
	struct ibv_qp_attr a = {0};
	int err;

	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = ep->peer.qp_num;
	a.rq_psn = 0;
	a.max_dest_rd_atomic = 0;
	a.min_rnr_timer = 0;
	a.ah_attr.is_global = 1;
	memcpy(a.ah_attr.grh.dgid.raw, ep->peer.gid, 16);
	a.ah_attr.grh.sgid_index = (uint8_t)ep->gid_index;
	a.ah_attr.grh.hop_limit = 16;
	a.ah_attr.dlid = ep->peer.lid;
	a.ah_attr.port_num = (uint8_t)ep->ctx->choice.port;
	err =
	    ibv_modify_qp(ep->qp, &a,
			  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			      IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			      IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (err) {
		snprintf(why, why_size,
			 "ibv_modify_qp to RTR with GID index "
			 "%d: %s",
			 ep->gid_index, strerror(err));
		return -err;
	}
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 0;
	a.sq_psn = 0;
	a.max_rd_atomic = 0;
	err = ibv_modify_qp(ep->qp, &a,
			    IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
				IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
				IBV_QP_MAX_QP_RD_ATOMIC);
	if (err) {
		snprintf(why, why_size, "ibv_modify_qp to RTS: %s",
			 strerror(err));
		return -err;
	}
	ep->peer_block = ep->peer.block_size;
	if (ep->peer_block > IOBUF_BLOCK_CAP * (uint32_t)ep->max_sge)
		ep->peer_block = IOBUF_BLOCK_CAP * (uint32_t)ep->max_sge;
	ep->local_window = MIN(ep->sq_size, ep->peer.rq_size) - RESERVED_WR;
	ep->remote_window = MIN(ep->rq_size, ep->peer.sq_size) - RESERVED_WR;
	ep->remote_credits = ep->local_window;
	ep->sq_free = ep->local_window;
	ep->imm_slots = RESERVED_WR;
	return 0;
}

/* ---- life ------------------------------------------------------------ */

static void ep_free(struct rdt_ep *ep)
{
	qp_destroy(ep);
	mem_free(ep->c->mem, ep);
}

static void deadline_fired(struct loop_timer *t);
static void drain_task_fn(struct task *t);

static struct rdt_ep *ep_new(struct rdt_ctx *ctx, struct conn *c, bool server)
{
	struct rdt_ep *ep = mem_zalloc(c->mem, sizeof(*ep));
	int ms = ctx ? ctx->opt.handshake_timeout_ms
		     : RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT;

	if (!ep)
		return NULL;
	ep->ctx = ctx;
	ep->c = c;
	ep->server = server;
	ep->state = server ? EP_S_HELLO_WAIT : EP_C_HELLO_WAIT;
	ep->start_ns = clock_mono_ns();
	loop_timer_init(&ep->deadline);
	task_init(&ep->drain_task, drain_task_fn);
	/* From the clock, not loop_now(): an iteration that sets up many
	 * QPs is long, and its cached time would bring the deadline
	 * forward. */
	loop_timer_start(c->loop, &ep->deadline,
			 ep->start_ns + ms * CLOCK_NS_PER_MS, deadline_fired);
	conn_set_transport(c, &hs_tp, ep);
	return ep;
}

/* The handshake ended on TCP: the endpoint goes, the conn stays. */
static int fall_back(struct rdt_ep *ep)
{
	struct conn *c = ep->c;

	rdt_count(&stats_of(ep)->hs_tcp, 1);
	loop_timer_stop(c->loop, &ep->deadline);
	conn_set_transport(c, &conn_tcp, NULL);
	ep_free(ep);
	return CONN_UP_TCP;
}

static const char *step_name(const struct rdt_ep *ep, size_t *want)
{
	switch (ep->state) {
	case EP_C_HELLO_WAIT:
		*want = RDT_HELLO_LEN;
		return "waiting for the server's RDMA hello";
	case EP_S_HELLO_WAIT:
		*want = RDT_HELLO_LEN;
		return "waiting for the client's RDMA hello";
	case EP_S_ACK_WAIT:
		*want = RDT_ACK_LEN;
		return "waiting for the client's ACK after our hello";
	case EP_LIVE:
		break;
	}
	*want = 0;
	return "live";
}

/* What usually makes a handshake end this way, for the operator. */
static const char *likely_cause(const struct rdt_ep *ep, int err)
{
	if (err == -ENODEV)
		return "the RDMA device is being removed; new connections "
		       "use TCP";
	if (err == -EPROTO)
		return "the peer does not speak brpc's RDMA hello (another "
		       "version of it, or not brpc)";
	if (err == -ETIMEDOUT)
		return ep->server ? "the client stalled mid-handshake: check "
				    "its thread budget (event_dispatcher_num, "
				    "rdma_poller_num, worker_num)"
				  : "the server is overloaded or its thread "
				    "budget leaves no room for handshakes";
	switch (ep->state) {
	case EP_C_HELLO_WAIT:
		return "a server without RDMA (brpc <= 1.17 TCP-only port) "
		       "closes on the hello; or it failed, see its log";
	case EP_S_HELLO_WAIT:
		return "a client usually does this when its own call timed "
		       "out: check the client's thread budget and timeout_ms";
	case EP_S_ACK_WAIT:
		return "the client could not bring its QP up, or its call "
		       "timed out: see the client's log";
	case EP_LIVE:
		break;
	}
	return "";
}

/* Logs a failed handshake once, counts it.  Returns err. */
static int hs_failed(struct rdt_ep *ep, int err, const char *what)
{
	struct conn *c = ep->c;
	size_t want, have = iobuf_len(&c->in);
	const char *step = step_name(ep, &want);
	struct log *log = ep->ctx ? ep->ctx->opt.log : c->log;

	if (ep->failed)
		return err;
	ep->failed = true;
	rdt_count(&stats_of(ep)->hs_failed, 1);
	if (err == -ETIMEDOUT)
		rdt_count(&stats_of(ep)->hs_timeout, 1);
	log_warn(log,
		 "rdma handshake with %s %s failed: %s %lld ms after "
		 "connect, %s (%zu of %zu bytes); %s",
		 ep->server ? "client" : "server", c->peer_text, what,
		 elapsed_ms(ep), step, have < want ? have : want, want,
		 likely_cause(ep, err));
	return err;
}

static void deadline_fired(struct loop_timer *t)
{
	struct rdt_ep *ep = container_of(t, struct rdt_ep, deadline);
	char what[96];

	snprintf(what, sizeof(what),
		 "no progress within "
		 "rdma_handshake_timeout_ms=%d",
		 ep->ctx ? ep->ctx->opt.handshake_timeout_ms
			 : RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT);
	conn_close(ep->c, hs_failed(ep, -ETIMEDOUT, what));
}

/* Writes handshake bytes straight to the socket: the first bytes of a
 * fresh connection always fit its send buffer. */
static int send_raw(struct rdt_ep *ep, const void *p, size_t n)
{
	ssize_t r = send(ep->c->io.fd, p, n, MSG_NOSIGNAL);

	if (r == (ssize_t)n)
		return 0;
	return hs_failed(ep, r < 0 ? -errno : -EAGAIN,
			 r < 0 ? strerror(errno) : "short write of the hello");
}

static void ep_go_live(struct rdt_ep *ep);

/* ---- the handshake: server ------------------------------------------- */

/* Takes a whole hello from c->in.  0, -EAGAIN, or -EPROTO (logged). */
static int take_hello(struct rdt_ep *ep)
{
	struct conn *c = ep->c;
	uint8_t buf[RDT_HELLO_LEN];
	size_t n = iobuf_copy_out(&c->in, 0, buf, sizeof(buf));
	char what[96];
	int r = rdt_hello_parse(buf, n, &ep->peer);

	if (r == -EPROTO) {
		if (n >= 6 && !memcmp(buf, RDT_HELLO_MAGIC, 4))
			snprintf(what, sizeof(what),
				 "its hello says msg_len "
				 "%u (40..%d allowed)",
				 buf[4] << 8 | buf[5], RDT_HELLO_MAX);
		else
			snprintf(what, sizeof(what),
				 "it answered %02x %02x "
				 "%02x %02x, not an RDMA hello",
				 n > 0 ? buf[0] : 0, n > 1 ? buf[1] : 0,
				 n > 2 ? buf[2] : 0, n > 3 ? buf[3] : 0);
		return hs_failed(ep, -EPROTO, what);
	}
	if (r == -EAGAIN || iobuf_len(&c->in) < ep->peer.msg_len)
		return -EAGAIN;
	iobuf_drop_front(&c->in, ep->peer.msg_len);
	return 0;
}

static int server_hello(struct rdt_ep *ep)
{
	uint8_t out[RDT_HELLO_LEN];
	char why[160], desc[160];
	struct rdt_hello refusal;
	int r = take_hello(ep);

	if (r)
		return r;
	if (ep->ctx && rdt_ctx_gone(ep->ctx)) {
		/* The device went: like a port without RDMA, quietly. */
	} else if (ep->ctx && rdt_hello_negotiable(&ep->peer)) {
		r = qp_create(ep, why, sizeof(why));
		if (!r) {
			r = qp_connect(ep, why, sizeof(why));
			if (r == -EINVAL) {
				/* A fresh rxe's GID table changes for a while
				 * (vectors/rdma/README.md): look again, once;
				 * our hello is not out yet. */
				rdt_ctx_gid_stale(ep->ctx);
				rdt_ctx_gid_like(ep->ctx, ep->peer.gid,
						 &ep->gid_index, ep->mine.gid);
				r = qp_connect(ep, why, sizeof(why));
			}
			if (r)
				qp_destroy(ep);
		}
		if (!r) {
			ep->rdma_ok = true;
			rdt_hello_pack(&ep->mine, out);
		} else {
			log_warn(ep->ctx->opt.log,
				 "rdma: cannot serve %s over "
				 "RDMA (%s): answering with a refusal, the "
				 "connection goes on over TCP",
				 ep->c->peer_text, why);
		}
	} else if (ep->ctx) {
		rdt_hello_describe(&ep->peer, desc, sizeof(desc));
		log_info(ep->ctx->opt.log,
			 "rdma: client %s sent a hello we "
			 "cannot take (%s): refusing, TCP goes on",
			 ep->c->peer_text, desc);
	}
	if (!ep->rdma_ok) {
		rdt_hello_refusal(&refusal, ep->ctx == NULL);
		rdt_hello_pack(&refusal, out);
	}
	ep->state = EP_S_ACK_WAIT;
	return send_raw(ep, out, sizeof(out));
}

static int server_step(struct rdt_ep *ep)
{
	struct conn *c = ep->c;
	uint8_t ack[RDT_ACK_LEN];
	int r;

	if (ep->state == EP_S_HELLO_WAIT) {
		r = server_hello(ep);
		if (r == -EAGAIN)
			return CONN_UP_WAIT;
		if (r)
			return r;
	}
	if (iobuf_len(&c->in) < RDT_ACK_LEN)
		return CONN_UP_WAIT;
	iobuf_copy_out(&c->in, 0, ack, sizeof(ack));
	iobuf_drop_front(&c->in, sizeof(ack));
	if (!(rdt_ack_parse(ack) & RDT_ACK_RDMA))
		return fall_back(ep);
	if (!ep->rdma_ok)
		return hs_failed(ep, -EPROTO,
				 "it asked for RDMA after our "
				 "refusal");
	ep_go_live(ep);
	return CONN_UP_DONE;
}

static int detect(const struct iobuf *in)
{
	uint8_t head[4];
	size_t n = iobuf_copy_out(in, 0, head, sizeof(head));

	if (memcmp(head, RDT_HELLO_MAGIC, n) != 0)
		return -1;
	return n == sizeof(head) ? 1 : 0;
}

static int accept_step(void *arg, struct conn *c)
{
	struct rdt_ep *ep = c->tp_ctx;

	if (c->tp != &hs_tp) {
		ep = ep_new(arg, c, true);
		if (!ep)
			return -ENOMEM;
	}
	return server_step(ep);
}

/* ---- the handshake: client ------------------------------------------- */

static int connect_start(void *arg, struct conn *c)
{
	struct rdt_ctx *ctx = arg;
	uint8_t out[RDT_HELLO_LEN];
	struct rdt_ep *ep;
	char why[160];
	int r;

	if (!ctx || rdt_ctx_gone(ctx))
		return CONN_UP_TCP; /* no device: plain TCP, no hello */
	ep = ep_new(ctx, c, false);
	if (!ep)
		return -ENOMEM;
	r = qp_create(ep, why, sizeof(why));
	if (r) {
		/* Spec 2.8: a client that cannot allocate sends nothing. */
		log_warn(ctx->opt.log,
			 "rdma: cannot set up a QP for %s (%s): "
			 "using TCP",
			 c->peer_text, why);
		return fall_back(ep);
	}
	rdt_hello_pack(&ep->mine, out);
	r = send_raw(ep, out, sizeof(out));
	return r ? r : CONN_UP_WAIT;
}

static int connect_step(void *arg, struct conn *c)
{
	struct rdt_ep *ep = c->tp_ctx;
	uint8_t ack[RDT_ACK_LEN];
	char why[160], desc[160];
	int r;

	(void)arg;
	if (c->tp != &hs_tp)
		return CONN_UP_TCP;
	r = take_hello(ep);
	if (r == -EAGAIN)
		return CONN_UP_WAIT;
	if (r)
		return r;
	if (!rdt_hello_negotiable(&ep->peer)) {
		rdt_hello_describe(&ep->peer, desc, sizeof(desc));
		log_info(ep->ctx->opt.log,
			 "rdma: server %s refused RDMA (%s%s): "
			 "using TCP on the same connection",
			 c->peer_text, desc,
			 ep->peer.hello_ver == RDT_HELLO_VER_TCP_PORT
			     ? ", a TCP-only port"
			     : "");
		r = 1;
	} else {
		r = qp_connect(ep, why, sizeof(why));
		if (r)
			log_warn(ep->ctx->opt.log,
				 "rdma: cannot bring the QP "
				 "to %s up (%s): using TCP",
				 c->peer_text, why);
	}
	rdt_ack_pack(r ? 0 : RDT_ACK_RDMA, ack);
	if (send_raw(ep, ack, sizeof(ack)))
		return -EPIPE;
	if (r)
		return fall_back(ep);
	ep_go_live(ep);
	return CONN_UP_DONE;
}

/* ---- the data path --------------------------------------------------- */

static void ep_fail(struct rdt_ep *ep, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ep_fail(struct rdt_ep *ep, int err, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	if (!ep->failed) {
		ep->failed = true;
		va_start(ap, fmt);
		vsnprintf(what, sizeof(what), fmt, ap);
		va_end(ap);
		log_warn(ep->ctx->opt.log,
			 "rdma: closing the connection with "
			 "%s: %s",
			 ep->c->peer_text, what);
	}
	conn_close(ep->c, err);
}

/* A pure ACK once more than half the peer's window is owed (loop). */
static void maybe_ack(struct rdt_ep *ep)
{
	struct ibv_send_wr wr = {0}, *bad;
	int owed = __atomic_load_n(&ep->pending_credits, __ATOMIC_RELAXED);
	int err;

	if (owed <= ep->remote_window / 2)
		return;
	if (__atomic_sub_fetch(&ep->imm_slots, 1, __ATOMIC_ACQ_REL) < 0) {
		__atomic_add_fetch(&ep->imm_slots, 1, __ATOMIC_RELAXED);
		return;
	}
	owed = __atomic_exchange_n(&ep->pending_credits, 0, __ATOMIC_ACQ_REL);
	wr.wr_id = 0;
	wr.opcode = IBV_WR_SEND_WITH_IMM;
	wr.imm_data = htonl((uint32_t)owed);
	wr.send_flags = IBV_SEND_SIGNALED | IBV_SEND_SOLICITED;
	err = ibv_post_send(ep->qp, &wr, &bad);
	if (err)
		ep_fail(ep, -err, "ibv_post_send of a credit ACK: %s",
			strerror(err));
}

/* One completion.  Adds to *bytes what went to c->in; *writable when
 * credits or SQ slots came back.  false: the connection failed. */
static bool on_wc(struct rdt_ep *ep, const struct ibv_wc *wc, size_t *bytes,
		  bool *writable)
{
	struct conn *c = ep->c;
	struct iobuf_block *b, *fresh;
	uint32_t n;
	int slot, err;

	if (wc->status != IBV_WC_SUCCESS) {
		if (!conn_closing(c))
			ep_fail(ep, -EIO,
				"work completion %s (vendor error "
				"0x%x) on a %s",
				ibv_wc_status_str(wc->status), wc->vendor_err,
				wc->opcode & IBV_WC_RECV ? "receive" : "send");
		return false;
	}
	if (wc->opcode == IBV_WC_SEND) {
		n = (uint32_t)wc->wr_id;
		if (n == 0) {
			__atomic_add_fetch(&ep->imm_slots, 1, __ATOMIC_RELEASE);
			return true;
		}
		rdt_count(&ep->ctx->st.send_completions, 1);
		for (uint32_t i = 0; i < n; i++)
			iobuf_reset(
			    &ep->ring[ep->ring_tail++ % (uint32_t)ep->sq_size]);
		__atomic_add_fetch(&ep->sq_free, (int)n, __ATOMIC_RELEASE);
		*writable = true;
		return true;
	}
	if (wc->opcode != IBV_WC_RECV) {
		ep_fail(ep, -EPROTO, "unexpected completion opcode %d",
			wc->opcode);
		return false;
	}
	if ((wc->wc_flags & IBV_WC_WITH_IMM) && wc->imm_data) {
		__atomic_add_fetch(&ep->remote_credits,
				   (int)ntohl(wc->imm_data), __ATOMIC_RELEASE);
		ep->credit_returns++;
		*writable = true;
	}
	slot = (int)wc->wr_id;
	n = wc->byte_len;
	if (n > 0) {
		/* The bytes fill the slot's blocks in order. */
		for (int i = 0; n > 0 && i < ep->recv_blocks; i++) {
			struct iobuf_block **bp =
			    &ep->recv[slot * ep->recv_blocks + i];
			uint32_t k = MIN(n, (uint32_t)IOBUF_BLOCK_CAP);

			b = *bp;
			if (k >= ZEROCOPY_MIN) {
				fresh = iobuf_block_get(c->pool);
				err = fresh ? iobuf_append_block(&c->in, b, k)
					    : -ENOMEM;
				if (!err)
					*bp = fresh;
				else if (fresh)
					iobuf_block_put(fresh);
			} else {
				err = iobuf_append(&c->in, iobuf_block_data(b),
						   k);
			}
			if (err) {
				ep_fail(ep, err,
					"the RDMA memory pool is exhausted "
					"(rdma_memory_pool_max_regions)");
				return false;
			}
			*bytes += k;
			n -= k;
		}
		if (!ep->withhold_credits)
			__atomic_add_fetch(&ep->pending_credits, 1,
					   __ATOMIC_RELAXED);
	}
	err = post_recv(ep, slot);
	if (err) {
		ep_fail(ep, err, "ibv_post_recv: %s", strerror(-err));
		return false;
	}
	return true;
}

/* Takes every completion there is; true if any was taken. */
static bool poll_all(struct rdt_ep *ep, size_t *bytes, bool *writable)
{
	struct ibv_wc wc[CQE_BATCH];
	bool any = false;
	int n;

	do {
		n = ibv_poll_cq(ep->cq, CQE_BATCH, wc);
		if (n < 0) {
			ep_fail(ep, -EIO, "ibv_poll_cq failed");
			return any;
		}
		for (int i = 0; i < n; i++)
			if (!on_wc(ep, &wc[i], bytes, writable))
				return true;
		any |= n > 0;
	} while (n == CQE_BATCH && !conn_closing(ep->c));
	return any;
}

/* Loop thread, after completions were taken: bytes to the protocol,
 * writes resumed when credits or slots came back, credits owed sent. */
static void delivered(struct rdt_ep *ep, size_t bytes, bool writable)
{
	struct conn *c = ep->c;

	if (conn_closing(c))
		return;
	if (bytes) {
		rdt_count(&ep->ctx->st.bytes_received, bytes);
		conn_delivered(c, bytes);
	}
	/* Credits came: a wait for them is over (a new one starts when the
	 * window is used up again). */
	if (ep->credit_returns != ep->credit_mark &&
	    loop_timer_active(&ep->deadline))
		loop_timer_stop(c->loop, &ep->deadline);
	if (writable && !conn_closing(c))
		conn_resume_writes(c);
	if (!conn_closing(c))
		maybe_ack(ep);
}

/* Loop thread: drain, re-arm, drain again (a completion between the
 * last poll and the arming raises no event). */
static void drain(struct rdt_ep *ep)
{
	struct conn *c = ep->c;
	size_t bytes = 0;
	bool writable = false;

	while (!conn_closing(c)) {
		poll_all(ep, &bytes, &writable);
		if (conn_closing(c) || ibv_req_notify_cq(ep->cq, 0))
			break;
		ep->arms_unread++;
		if (!poll_all(ep, &bytes, &writable))
			break;
	}
	delivered(ep, bytes, writable);
}

/* Polling mode, poller thread: completions wait in the ring. */
static void polled_notify(struct rdt_polled *p)
{
	struct rdt_ep *ep = container_of(p, struct rdt_ep, polled);

	conn_ref(ep->c);
	loop_post(ep->c->loop, &ep->drain_task);
}

/* Polling mode, loop thread: one turn over what the poller took. */
static void polled_turn(struct rdt_ep *ep)
{
	struct conn *c = ep->c;
	struct ibv_wc *wc;
	size_t bytes = 0;
	bool writable = false;

	do {
		while (!conn_closing(c) &&
		       (wc = rdt_polled_next(&ep->polled))) {
			bool ok = on_wc(ep, wc, &bytes, &writable);

			rdt_polled_consumed(&ep->polled);
			if (!ok)
				return;
		}
		if (__atomic_load_n(&ep->polled.broken, __ATOMIC_RELAXED)) {
			ep_fail(ep, -EIO, "ibv_poll_cq failed");
			return;
		}
	} while (!conn_closing(c) && rdt_polled_more(&ep->polled));
	delivered(ep, bytes, writable);
}

static void on_cq_event(struct loop_io *io, uint32_t events)
{
	struct rdt_ep *ep = container_of(io, struct rdt_ep, cq_io);
	struct ibv_cq *cq;
	void *cq_ctx;
	unsigned want;

	(void)events;
	/*
	 * Read the events our arms may have raised, and at least one (an
	 * edge means one was written): one read a wake, where reading to
	 * EAGAIN took a second system call.  An EAGAIN zeroes the count,
	 * which an arming of a still armed CQ had made too high.  A race
	 * can leave an event unread (one arm fired, the next merged into
	 * a wake that read one); it costs no wake-up, since the channel
	 * signals every event, and a periodic read to EAGAIN stops such
	 * events from piling up in the kernel.
	 */
	want = ep->arms_unread ? ep->arms_unread : 1;
	if (++ep->wakes % CHAN_SWEEP_EVERY == 0)
		want = UINT_MAX;
	for (; want > 0; want--) {
		if (ibv_get_cq_event(ep->chan, &cq, &cq_ctx)) {
			rdt_count(&ep->ctx->st.cq_empty_reads, 1);
			ep->arms_unread = 0;
			break;
		}
		if (ep->arms_unread)
			ep->arms_unread--;
		ep->unacked_events++;
		rdt_count(&ep->ctx->st.cq_events, 1);
	}
	if (ep->unacked_events >= ACK_EVENTS_EVERY) {
		ibv_ack_cq_events(ep->cq, ep->unacked_events);
		ep->unacked_events = 0;
	}
	drain(ep);
}

static void drain_task_fn(struct task *t)
{
	struct rdt_ep *ep = container_of(t, struct rdt_ep, drain_task);
	struct conn *c = ep->c;

	if (!conn_closing(c)) {
		if (ep->ctx->opt.use_polling)
			polled_turn(ep);
		else
			drain(ep);
	}
	conn_unref(c);
}

static void ep_go_live(struct rdt_ep *ep)
{
	struct conn *c = ep->c;
	int err;

	loop_timer_stop(c->loop, &ep->deadline);
	ep->state = EP_LIVE;
	rdt_count(&ep->ctx->st.hs_rdma, 1);
	log_debug(ep->ctx->opt.log, "rdma handshake with %s %s done in %lld ms",
		  ep->server ? "client" : "server", c->peer_text,
		  elapsed_ms(ep));
	conn_set_transport(c, &live_tp, ep);
	if (ep->ctx->opt.use_polling) {
		/* The poller finds what landed before (turns are tasks on
		 * this loop: none runs inside the protocol's callback). */
		ep->polled.cq = ep->cq;
		ep->polled.notify = polled_notify;
		rdt_polled_add(ep->ctx, &ep->polled);
		return;
	}
	loop_io_init(&ep->cq_io, ep->chan->fd, EPOLLIN, on_cq_event);
	err = loop_io_add(c->loop, &ep->cq_io);
	if (err) {
		ep_fail(ep, err, "cannot watch the completion channel: %s",
			strerror(-err));
		return;
	}
	/* Sends may have landed before the watch: take them after the
	 * current callbacks (the protocol is inside one now). */
	conn_ref(c);
	loop_defer(c->loop, &ep->drain_task);
}

/* Posts the chained WRs wrs[0..n): one ibv_post_send, one doorbell
 * (a system call with rxe) for the lot, counted.  0 or -errno. */
static int post_chain(struct rdt_ep *ep, struct ibv_send_wr *wrs, int n)
{
	struct ibv_send_wr *bad;
	int err;

	if (!n)
		return 0;
	wrs[n - 1].next = NULL;
	err = ibv_post_send(ep->qp, wrs, &bad);
	if (!err)
		rdt_count(&ep->ctx->st.send_wrs, (uint64_t)n);
	return -err;
}

static void credit_wait_over(struct loop_timer *t);

/* Our send window is used up (the writer's thread).  Watched from the
 * loop: a writer elsewhere leaves the retry to it (conn.c), so the wait
 * is seen there too. */
static void credit_wait(struct rdt_ep *ep)
{
	struct loop *loop = ep->c->loop;
	int ms = ep->ctx->opt.credit_timeout_ms;

	if (!ms || !loop_on_thread(loop) || loop_timer_active(&ep->deadline))
		return;
	ep->credit_mark = ep->credit_returns;
	loop_timer_start(loop, &ep->deadline,
			 loop_now(loop) + (int64_t)ms * CLOCK_NS_PER_MS,
			 credit_wait_over);
}

/* Loop: credit_timeout_ms after the window was found used up. */
static void credit_wait_over(struct loop_timer *t)
{
	struct rdt_ep *ep = container_of(t, struct rdt_ep, deadline);

	/* delivered() stops the timer when credits come: none came. */
	if (conn_closing(ep->c) || ep->failed ||
	    __atomic_load_n(&ep->remote_credits, __ATOMIC_ACQUIRE) > 0)
		return;
	rdt_count(&ep->ctx->st.credit_timeouts, 1);
	ep_fail(ep, -ETIMEDOUT,
		"the peer returned no credit for %d ms while our send "
		"window (%d messages) was used up "
		"(rdma_credit_timeout_ms): a stuck or broken peer",
		ep->ctx->opt.credit_timeout_ms, ep->local_window);
}

static ssize_t live_write(struct conn *c, struct iobuf *out)
{
	struct rdt_ep *ep = c->tp_ctx;
	struct ibv_send_wr wrs[WR_CHAIN_MAX];
	struct ibv_sge sges[WR_CHAIN_MAX][SGE_MAX];
	struct iobuf_region_info ri;
	struct iobuf *e;
	const void *p;
	size_t total = 0, len, n, take, nrefs;
	int credits, sq, nsge, err, nwr = 0;
	bool last, signal, solicit;

	while (!iobuf_empty(out)) {
		struct ibv_send_wr *wr = &wrs[nwr];
		struct ibv_sge *sge = sges[nwr];

		credits =
		    __atomic_load_n(&ep->remote_credits, __ATOMIC_ACQUIRE);
		sq = __atomic_load_n(&ep->sq_free, __ATOMIC_ACQUIRE);
		if (credits <= 0) {
			rdt_count(&ep->ctx->st.credit_stalls, 1);
			credit_wait(ep);
			break;
		}
		if (sq <= 0) /* our own sends' completions free slots */
			break;
		n = 0;
		nsge = 0;
		nrefs = iobuf_ref_count(out);
		for (size_t i = 0;
		     i < nrefs && nsge < ep->max_sge && n < ep->peer_block;
		     i++) {
			iobuf_ref_at(out, i, &p, &len);
			iobuf_block_region(iobuf_ref_block(out, i), &ri);
			if (!ri.cookie) {
				/* not registered memory: what is cut goes */
				err = post_chain(ep, wrs, nwr);
				return err ? err : -EFAULT;
			}
			take = MIN(len, ep->peer_block - n);
			sge[nsge].addr = (uintptr_t)p;
			sge[nsge].length = (uint32_t)take;
			sge[nsge].lkey = ((struct ibv_mr *)ri.cookie)->lkey;
			nsge++;
			n += take;
		}
		e = &ep->ring[ep->ring_head % (uint32_t)ep->sq_size];
		err = iobuf_cut(out, e, n);
		if (err) {
			int perr = post_chain(ep, wrs, nwr);

			if (perr)
				return perr;
			return total ? (ssize_t)total : err;
		}
		ep->ring_head++;
		__atomic_sub_fetch(&ep->remote_credits, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&ep->sq_free, 1, __ATOMIC_RELAXED);
		last = iobuf_empty(out);
		ep->unsignaled++;
		/* A completion every local_window/4 WRs and when credits or
		 * slots run out, as brpc (spec 2.13); a write's last piece
		 * asks for one only once half the window's slots are out.
		 * So a small call at low load costs its sender no wake-up
		 * for the send, and under load slots come back as soon as
		 * the peer has the bytes, not up to a quarter window late.
		 * The ring keeps what was sent until a signaled WR covers
		 * it: at most local_window/4 pieces per idle connection,
		 * all given back at close.  The last piece is always
		 * solicited: peers that arm their receive CQ for solicited
		 * completions only (brpc) wake on it. */
		signal = credits == 1 || sq == 1 ||
			 ep->unsignaled >= MAX(1, ep->local_window / 4) ||
			 (last && sq <= ep->local_window / 2);
		solicit = signal || last;
		memset(wr, 0, sizeof(*wr));
		wr->wr_id = signal ? (uint64_t)ep->unsignaled : 0;
		wr->sg_list = sge;
		wr->num_sge = nsge;
		wr->opcode = IBV_WR_SEND_WITH_IMM;
		wr->imm_data = htonl((uint32_t)__atomic_exchange_n(
		    &ep->pending_credits, 0, __ATOMIC_ACQ_REL));
		wr->send_flags = (signal ? IBV_SEND_SIGNALED : 0) |
				 (solicit ? IBV_SEND_SOLICITED : 0);
		if (signal)
			ep->unsignaled = 0;
		if (nwr > 0)
			wrs[nwr - 1].next = wr;
		total += n;
		if (++nwr == WR_CHAIN_MAX) {
			err = post_chain(ep, wrs, nwr);
			if (err)
				return err;
			nwr = 0;
		}
	}
	err = post_chain(ep, wrs, nwr);
	if (err)
		return err;
	rdt_count(&ep->ctx->st.bytes_sent, total);
	return total ? (ssize_t)total : -EAGAIN;
}

/* ---- device removal -------------------------------------------------- */

struct gone_task {
	struct task t;
	struct conn *c;
	char device[64];
};

/* The conn's loop: close it if it is still ours. */
static void gone_task_fn(struct task *t)
{
	struct gone_task *g = container_of(t, struct gone_task, t);
	struct conn *c = g->c;
	struct rdt_ep *ep = c->tp_ctx;
	const struct mem *mem = c->mem;
	char what[120];

	snprintf(what, sizeof(what), "the RDMA device %s was removed",
		 g->device);
	if (!conn_closing(c) && (c->tp == &live_tp || c->tp == &hs_tp)) {
		if (ep->state == EP_LIVE)
			ep_fail(ep, -ENODEV, "%s", what);
		else
			conn_close(c, hs_failed(ep, -ENODEV, what));
	}
	conn_unref(c);
	mem_free(mem, g);
}

void rdt_ep_device_gone(struct rdt_ctx *ctx, struct rdt_held *h)
{
	struct rdt_ep *ep = container_of(h, struct rdt_ep, held);
	struct conn *c = ep->c;
	struct gone_task *g = mem_zalloc(c->mem, sizeof(*g));

	if (!g) {
		/* Its QP errors out when the device is freed; until then
		 * the removal waits for this connection to close. */
		log_error(ctx->opt.log,
			  "rdma: no memory to close the connection with %s "
			  "for the device's removal",
			  c->peer_text);
		return;
	}
	/* No unref here: the last one would release the endpoint, which
	 * takes the lock our caller holds. */
	if (!conn_tryref(c)) {
		mem_free(c->mem, g); /* being released: it lets go soon */
		return;
	}
	task_init(&g->t, gone_task_fn);
	g->c = c;
	snprintf(g->device, sizeof(g->device), "%s", ctx->choice.device);
	loop_post(c->loop, &g->t);
}

/* ---- transports ------------------------------------------------------ */

/* Handshake: TCP reads; an EOF or error is the handshake's failure. */
static ssize_t hs_read(struct conn *c, struct iobuf *in)
{
	struct rdt_ep *ep = c->tp_ctx;
	ssize_t n = conn_tcp.read(c, in);

	if (n == 0)
		hs_failed(ep, 0, "the peer closed the connection");
	else if (n < 0 && n != -EAGAIN)
		hs_failed(ep, (int)n, strerror((int)-n));
	return n;
}

/* Writes wait for the handshake's end (conn_set_transport resumes). */
static ssize_t hs_write(struct conn *c, struct iobuf *out)
{
	(void)c;
	(void)out;
	return -EAGAIN;
}

/* Live: the TCP connection only says the peer is gone. */
static ssize_t live_read(struct conn *c, struct iobuf *in)
{
	struct rdt_ep *ep = c->tp_ctx;
	char byte;
	ssize_t n = recv(c->io.fd, &byte, 1, 0);

	(void)in;
	if (n > 0) {
		ep_fail(ep, -EPROTO,
			"the peer sent bytes on the TCP "
			"connection of an RDMA connection");
		return -EPROTO;
	}
	return n == 0 ? 0 : errno == EAGAIN ? -EAGAIN : -errno;
}

static void ep_close(struct conn *c)
{
	struct rdt_ep *ep = c->tp_ctx;

	loop_timer_stop(c->loop, &ep->deadline);
	if (ep->cq_io.active)
		loop_io_del(c->loop, &ep->cq_io);
	rdt_polled_del(&ep->polled);
}

static void ep_release(struct conn *c)
{
	ep_free(c->tp_ctx);
	c->tp_ctx = NULL;
}

static const struct conn_transport hs_tp = {
    .name = "rdma-handshake",
    .read = hs_read,
    .drained_below = 0,
    .write = hs_write,
    .own_wakeup = true,
    .close = ep_close,
    .release = ep_release,
};

static const struct conn_transport live_tp = {
    .name = "rdma",
    .read = live_read,
    .drained_below = 0,
    .write = live_write,
    .own_wakeup = true,
    .close = ep_close,
    .release = ep_release,
};

/* ---- the upgrades ---------------------------------------------------- */

static const struct conn_upgrade refusing_up = {
    .name = "RDMA",
    .first_len = RDT_HELLO_LEN,
    .ctx = NULL,
    .detect = detect,
    .accept_step = accept_step,
    .connect_start = connect_start,
    .connect_step = connect_step,
};

const struct conn_upgrade *rdt_upgrade(struct rdt_ctx *ctx)
{
	if (!ctx)
		return &refusing_up;
	ctx->up = refusing_up;
	ctx->up.name = "RDMA";
	ctx->up.ctx = ctx;
	/* An RDMA port closes connections that send nothing by the
	 * handshake's deadline. */
	ctx->up.first_bytes_ms = ctx->opt.handshake_timeout_ms;
	ctx->up.max_connecting = ctx->opt.max_handshakes;
	return &ctx->up;
}
