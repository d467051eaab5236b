/*
 * rdma_pingpong: the event-loop floor of an RDMA round trip (issue 5).
 *
 * scripts/bench-rdma sets rpcgate's latency over RDMA against
 * ibv_rc_pingpong -e, which sleeps in a blocking read of its completion
 * channel.  An event-loop stack cannot: it sleeps in epoll_wait and then
 * reads the channel, one system call more per message and side, the
 * same step scripts/bench-echo's `pingpong --epoll` measures for TCP.
 * This program is ibv_rc_pingpong -e's loop with that wait, so the
 * bench can tell the cost of waiting in an event loop from the cost of
 * the RPC stack.  Without --epoll it waits as ibv_rc_pingpong -e does,
 * and the two should agree (the bench prints both).
 *
 *   rdma_pingpong [OPTIONS]          the server end
 *   rdma_pingpong [OPTIONS] HOST     the client end (an IPv4 address)
 *     --epoll, --port=N (18515), --device=NAME (the first device),
 *     --gid_index=N (1), --size=BYTES (64), --iters=N (2000)
 *
 * as ibv_rc_pingpong is called (the server's address last), so the
 * bench starts both with the same line.
 *
 * The ends trade their QP number, PSN and GID over TCP (port 18515 by
 * default), connect one RC QP, and then, --iters times: the client sends
 * --size bytes, the server answers the same, and each end waits for its
 * send's and its receive's completion before the next round, as
 * ibv_rc_pingpong does, with a few receives posted ahead as it has.
 * Every wait is: (epoll_wait,) ibv_get_cq_event, ibv_ack_cq_events (in
 * batches), ibv_req_notify_cq, ibv_poll_cq until empty.
 *
 * The client prints ibv_rc_pingpong's line, "N iters in S seconds = U
 * usec/iter", which the bench already reads.  Exit status 0 done, 1 a
 * verbs or network failure (with the call that failed), 2 bad arguments.
 *
 * Links the static rdma-core archives like build/rpcgate (Makefile).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WHO	 "rdma_pingpong"
#define DEF_PORT 18515
#define CQ_DEPTH 16
/* Receives kept posted: a send never meets an empty receive queue (an
 * RNR NAK would stall the round by the peer's rnr timer). */
#define RX_DEPTH 8
#define WR_SEND	 1
#define WR_RECV	 2
/* Seconds the ends wait for each other over TCP. */
#define CONNECT_TRIES 100

struct opts {
	bool server, epoll;
	const char *host, *device;
	int port, gid_index, size, iters;
};

/* What the ends trade: enough to move a QP to RTR. */
struct peer {
	uint32_t qpn, psn;
	uint8_t gid[16];
};

struct pp {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_mr *mr;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	char *buf;
	struct ibv_sge sge; /* the buffer, every send and receive */
	int epfd;
	unsigned unacked;  /* events taken, not yet acked */
	long sends, recvs; /* completions so far */
};

static void die(const char *what, int err)
{
	fprintf(stderr, WHO ": %s: %s\n", what, strerror(err));
	exit(1);
}

static void usage(const char *why)
{
	fprintf(stderr,
		WHO ": %s\nusage: " WHO " [--epoll] [--port=N] "
		    "[--device=NAME] [--gid_index=N] [--size=BYTES] "
		    "[--iters=N] [HOST]\n",
		why);
	exit(2);
}

static int int_arg(const char *v, int lo, int hi)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < lo || n > hi)
		usage("a number is out of range");
	return (int)n;
}

static void parse(struct opts *o, int argc, char **argv)
{
	*o = (struct opts){
	    .port = DEF_PORT, .gid_index = 1, .size = 64, .iters = 2000};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = strchr(a, '=');

		v = v ? v + 1 : "";
		if (a[0] != '-' && !o->host)
			o->host = a;
		else if (!strcmp(a, "--epoll"))
			o->epoll = true;
		else if (!strncmp(a, "--device=", 9))
			o->device = v;
		else if (!strncmp(a, "--port=", 7))
			o->port = int_arg(v, 1, 65535);
		else if (!strncmp(a, "--gid_index=", 12))
			o->gid_index = int_arg(v, 0, 255);
		else if (!strncmp(a, "--size=", 7))
			o->size = int_arg(v, 1, 1 << 20);
		else if (!strncmp(a, "--iters=", 8))
			o->iters = int_arg(v, 1, 100000000);
		else
			usage("unknown argument");
	}
	o->server = !o->host;
}

static void full_io(int fd, void *p, size_t n, bool out)
{
	char *c = p;

	while (n) {
		ssize_t r = out ? write(fd, c, n) : read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die(out ? "writing to the peer" : "reading the peer",
			    r ? errno : ECONNRESET);
		c += r;
		n -= (size_t)r;
	}
}

/* The TCP side channel: the server accepts one client. */
static int side_channel(const struct opts *o)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)o->port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, c;

	if (fd < 0)
		die("socket", errno);
	if (o->server) {
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
		    listen(fd, 1))
			die("listening", errno);
		c = accept(fd, NULL, NULL);
		if (c < 0)
			die("accept", errno);
		close(fd);
		return c;
	}
	if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1)
		usage("HOST must be an IPv4 address");
	for (int i = 0;; i++) {
		struct timespec nap = {0, 10 * 1000 * 1000};

		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		if (i == CONNECT_TRIES)
			die("connecting to the server", errno);
		nanosleep(&nap, NULL);
	}
}

static struct ibv_context *open_device(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	if (!list || !list[0])
		die("no RDMA device", ENODEV);
	for (int i = 0; list[i]; i++) {
		if (name && strcmp(ibv_get_device_name(list[i]), name))
			continue;
		ctx = ibv_open_device(list[i]);
		break;
	}
	ibv_free_device_list(list);
	if (!ctx)
		die("opening the device", errno ? errno : ENODEV);
	return ctx;
}

static void setup(struct pp *p, const struct opts *o)
{
	struct ibv_qp_init_attr qia = {.qp_type = IBV_QPT_RC,
				       .cap = {.max_send_wr = 1,
					       .max_recv_wr = RX_DEPTH,
					       .max_send_sge = 1,
					       .max_recv_sge = 1}};
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT,
				.port_num = 1,
				.qp_access_flags = IBV_ACCESS_LOCAL_WRITE};
	struct epoll_event ev = {.events = EPOLLIN};

	p->ctx = open_device(o->device);
	p->pd = ibv_alloc_pd(p->ctx);
	if (!p->pd)
		die("ibv_alloc_pd", errno);
	p->buf = aligned_alloc(4096, ((size_t)o->size + 4095) & ~4095ul);
	if (!p->buf)
		die("buffer", ENOMEM);
	memset(p->buf, 0x5a, (size_t)o->size);
	p->mr =
	    ibv_reg_mr(p->pd, p->buf, (size_t)o->size, IBV_ACCESS_LOCAL_WRITE);
	if (!p->mr)
		die("ibv_reg_mr", errno);
	p->sge = (struct ibv_sge){.addr = (uintptr_t)p->buf,
				  .length = (uint32_t)o->size,
				  .lkey = p->mr->lkey};
	p->ch = ibv_create_comp_channel(p->ctx);
	if (!p->ch)
		die("ibv_create_comp_channel", errno);
	p->cq = ibv_create_cq(p->ctx, CQ_DEPTH, NULL, p->ch, 0);
	if (!p->cq)
		die("ibv_create_cq", errno);
	qia.send_cq = qia.recv_cq = p->cq;
	p->qp = ibv_create_qp(p->pd, &qia);
	if (!p->qp)
		die("ibv_create_qp", errno);
	if ((errno = ibv_modify_qp(p->qp, &a,
				   IBV_QP_STATE | IBV_QP_PKEY_INDEX |
				       IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)))
		die("ibv_modify_qp to INIT", errno);
	if ((errno = ibv_req_notify_cq(p->cq, 0)))
		die("ibv_req_notify_cq", errno);
	p->epfd = -1;
	if (!o->epoll)
		return;
	/* As an event loop holds it: non-blocking, in an epoll set. */
	if (fcntl(p->ch->fd, F_SETFL, fcntl(p->ch->fd, F_GETFL) | O_NONBLOCK) <
	    0)
		die("fcntl", errno);
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->epfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->ch->fd, &ev))
		die("epoll", errno);
}

static void connect_qp(struct pp *p, const struct opts *o,
		       const struct peer *them, uint32_t my_psn)
{
	struct ibv_qp_attr a = {
	    .qp_state = IBV_QPS_RTR,
	    .path_mtu = IBV_MTU_1024,
	    .dest_qp_num = them->qpn,
	    .rq_psn = them->psn,
	    .max_dest_rd_atomic = 1,
	    .min_rnr_timer = 12,
	    .ah_attr = {
		.is_global = 1,
		.port_num = 1,
		.grh = {.hop_limit = 1, .sgid_index = (uint8_t)o->gid_index}}};

	memcpy(a.ah_attr.grh.dgid.raw, them->gid, 16);
	if ((errno = ibv_modify_qp(p->qp, &a,
				   IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
				       IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
				       IBV_QP_MAX_DEST_RD_ATOMIC |
				       IBV_QP_MIN_RNR_TIMER)))
		die("ibv_modify_qp to RTR", errno);
	a = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS,
				 .timeout = 14,
				 .retry_cnt = 7,
				 .rnr_retry = 7,
				 .sq_psn = my_psn,
				 .max_rd_atomic = 1};
	if ((errno =
		 ibv_modify_qp(p->qp, &a,
			       IBV_QP_STATE | IBV_QP_TIMEOUT |
				   IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				   IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC)))
		die("ibv_modify_qp to RTS", errno);
}

static void post_recv(struct pp *p)
{
	struct ibv_recv_wr wr = {.wr_id = WR_RECV,
				 .sg_list = &p->sge,
				 .num_sge = 1},
			   *bad;

	if ((errno = ibv_post_recv(p->qp, &wr, &bad)))
		die("ibv_post_recv", errno);
}

static void post_send(struct pp *p)
{
	struct ibv_send_wr wr = {.wr_id = WR_SEND,
				 .sg_list = &p->sge,
				 .num_sge = 1,
				 .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_SIGNALED},
			   *bad;

	if ((errno = ibv_post_send(p->qp, &wr, &bad)))
		die("ibv_post_send", errno);
}

/* Sleeps until the CQ has news, and counts its completions.  A pass may
 * also find the next round's receive: hence counts, not flags. */
static void wait_completions(struct pp *p)
{
	struct ibv_cq *cq;
	struct ibv_wc wc[CQ_DEPTH];
	void *cq_ctx;
	int n;

	if (p->epfd >= 0) {
		struct epoll_event ev;

		do
			n = epoll_wait(p->epfd, &ev, 1, -1);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			die("epoll_wait", errno);
	}
	if (ibv_get_cq_event(p->ch, &cq, &cq_ctx)) {
		/* Non-blocking: the event was taken by an earlier pass. */
		if (errno != EAGAIN)
			die("ibv_get_cq_event", errno);
	} else if (++p->unacked == 64) {
		ibv_ack_cq_events(p->cq, p->unacked);
		p->unacked = 0;
	}
	if ((errno = ibv_req_notify_cq(p->cq, 0)))
		die("ibv_req_notify_cq", errno);
	while ((n = ibv_poll_cq(p->cq, CQ_DEPTH, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS) {
				fprintf(stderr, WHO ": completion failed: %s\n",
					ibv_wc_status_str(wc[i].status));
				exit(1);
			}
			if (wc[i].wr_id == WR_SEND)
				p->sends++;
			else
				p->recvs++;
		}
	}
	if (n < 0)
		die("ibv_poll_cq", EIO);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct pp p = {0};
	struct peer me = {0}, them;
	union ibv_gid gid;
	double t0;
	char sync = 's';
	int fd;

	parse(&o, argc, argv);
	setup(&p, &o);
	for (int i = 0; i < RX_DEPTH; i++)
		post_recv(&p);
	if (ibv_query_gid(p.ctx, 1, o.gid_index, &gid))
		die("ibv_query_gid", errno);
	me.qpn = p.qp->qp_num;
	me.psn = (uint32_t)getpid() & 0xffffff;
	memcpy(me.gid, gid.raw, 16);
	fd = side_channel(&o);
	full_io(fd, &me, sizeof(me), true);
	full_io(fd, &them, sizeof(them), false);
	connect_qp(&p, &o, &them, me.psn);
	/* Both QPs are ready to receive before the first send. */
	full_io(fd, &sync, 1, true);
	full_io(fd, &sync, 1, false);

	t0 = now_s();
	for (long i = 1; i <= o.iters; i++) {
		if (o.server) {
			while (p.recvs < i)
				wait_completions(&p);
			post_recv(&p);
		}
		post_send(&p);
		while (p.sends < i || p.recvs < i)
			wait_completions(&p);
		if (!o.server)
			post_recv(&p);
	}
	if (!o.server) {
		double s = now_s() - t0;

		printf("%d iters in %.2f seconds = %.2f usec/iter\n", o.iters,
		       s, s * 1e6 / o.iters);
	}
	/* Neither end tears down while the other may still send. */
	full_io(fd, &sync, 1, true);
	full_io(fd, &sync, 1, false);
	close(fd);
	if (p.unacked)
		ibv_ack_cq_events(p.cq, p.unacked);
	ibv_destroy_qp(p.qp);
	ibv_destroy_cq(p.cq);
	ibv_destroy_comp_channel(p.ch);
	ibv_dereg_mr(p.mr);
	ibv_dealloc_pd(p.pd);
	ibv_close_device(p.ctx);
	if (p.epfd >= 0)
		close(p.epfd);
	free(p.buf);
	return 0;
}
