/*
 * rdt: the RDMA verbs transport (spec/brpc-wire.md section 2).
 *
 * One `struct rdt_ctx` per process: the device, port and GID chosen as
 * brpc chooses them, a protection domain, the memory regions the iobuf
 * pool gets its blocks from (each registered once), and counters.  Every
 * RDMA connection is a TCP connection first: the v2 hello runs on it
 * (rdt_upgrade() plugs into net/'s server and channel), then one RC QP
 * carries the byte stream in SEND_WITH_IMM messages with credits in the
 * immediate data, and the TCP connection stays open, idle, to say when
 * the peer is gone.
 *
 * Threads.  The handshake is a non-blocking state machine run by the
 * event loop owning the connection; it never needs a task worker and has
 * a deadline (handshake_timeout_ms).  Completions are read by that loop
 * from the QP's completion channel (event mode), or, in polling mode,
 * taken by a busy poller thread and handed to that loop; either way data
 * goes to the protocol on the loop, as TCP bytes do, and handlers run on
 * task workers, never on a poller.  Writes post from whichever thread holds the connection's
 * writer role.
 */
#ifndef RPCGATE_RDMA_RDT_H
#define RPCGATE_RDMA_RDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"
#include "base/log.h"
#include "base/mem.h"
#include "rpc/conn.h"

/* brpc's queue depths (rdma_sq_size / rdma_rq_size) and their clamp. */
#define RDT_QUEUE_DEFAULT		 128
#define RDT_QUEUE_MIN			 16
#define RDT_QUEUE_MAX			 4096
#define RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT 3000
#define RDT_CREDIT_TIMEOUT_MS_DEFAULT	 10000
#define RDT_MAX_HANDSHAKES_DEFAULT	 16
#define RDT_RECV_BLOCKS_LARGE		 8
#define RDT_RECV_BLOCKS_MAX		 8

struct rdt_options {
	const char *device;   /* "" or NULL: the first with an active port */
	int port;	      /* 1 */
	int gid_index;	      /* -1: the highest with a non-zero interface id */
	int sq_size, rq_size; /* RDT_QUEUE_DEFAULT */
	/* 8 KiB blocks per receive WR, the block_size our hello offers:
	 * 1 (brpc's default, 8 KiB) or RDT_RECV_BLOCKS_LARGE (64 KiB, brpc's
	 * rdma_recv_block_type=large): fewer, larger sends per message, at
	 * rq_size x 64 KiB of posted memory per connection. */
	int recv_blocks;
	int handshake_timeout_ms;
	/* A live connection whose send window stays used up this long with
	 * no credit back from the peer is closed (a stuck or broken peer);
	 * 0: never. */
	int credit_timeout_ms;
	/* A client channel's connections in their handshake at once; the
	 * others wait their turn (channel_options.max_connecting).  0: no
	 * limit. */
	int max_handshakes;
	/* The registered memory: regions of region_mb, up to max_regions,
	 * the first preallocated. */
	size_t region_mb;
	size_t max_regions;
	/* Polling mode: poller_num busy threads take completions instead of
	 * completion events; poller_yield makes an idle pass yield the CPU. */
	bool use_polling;
	int poller_num;
	bool poller_yield;
	/* Testing: never return credits to the peer (a broken peer; the
	 * peer's sends stall once its window is used). */
	bool withhold_credits;
	struct log *log;
	const struct mem *mem;
};

/* What rdt_open() chose, for rdma-info and the start-up log line. */
struct rdt_choice {
	char device[64];
	int port;
	int gid_index;
	uint8_t gid[16];
	uint16_t lid;
	int active_mtu;
	int max_sge;
};

struct rdt_stats {
	/* handshakes by outcome, both sides */
	uint64_t hs_rdma;    /* ended on RDMA */
	uint64_t hs_tcp;     /* ended on TCP: refused, or refused us */
	uint64_t hs_failed;  /* connection closed during the handshake */
	uint64_t hs_timeout; /* of which by handshake_timeout_ms */
	int64_t qps;	     /* live QPs */
	uint64_t bytes_sent, bytes_received;
	uint64_t credit_stalls;	  /* writes that waited for credits */
	uint64_t credit_timeouts; /* connections closed by credit_timeout_ms */
	/* data sends posted; signaled completions of them taken (one covers
	 * up to local_window/4 sends); completion events read (wake-ups of
	 * the loops, event mode), and reads of the channel that found none
	 * (system calls for nothing) */
	uint64_t send_wrs, send_completions, cq_events, cq_empty_reads;
	/* a removed device found again but not set up (PD, registration) */
	uint64_t return_failures;
	bool device_gone;     /* the device is being (or was) removed */
	bool device_released; /* and we let go of it */
};

struct rdt_ctx;

void rdt_options_default(struct rdt_options *opt);

/*
 * Opens the device and sets up the protection domain.  0; -ENODEV when no
 * device (or not the named one, or its port is not active); -EINVAL for
 * bad options; another -errno from verbs.  `why` (may be NULL) gets one
 * line saying what failed, for the user.
 */
int rdt_open(struct rdt_ctx **out, const struct rdt_options *opt, char *why,
	     size_t why_size);

/* Closes; every connection must be gone. */
void rdt_close(struct rdt_ctx *ctx);

void rdt_choice(const struct rdt_ctx *ctx, struct rdt_choice *out);

/* Region hook for iobuf_pool_options: memory registered with the PD. */
void rdt_region_hook(struct rdt_ctx *ctx, struct iobuf_region_hook *out,
		     size_t *region_blocks, size_t *max_regions);

/*
 * The hello, for server_options.upgrade and channel_options.upgrade
 * (transport=rdma).  With ctx NULL (a TCP-only port, or no device) a
 * server answers a client's hello with brpc HEAD's refusal and goes on as
 * TCP, and a client sends no hello and stays TCP (spec 2.8).
 */
const struct conn_upgrade *rdt_upgrade(struct rdt_ctx *ctx);

void rdt_stats(struct rdt_ctx *ctx, struct rdt_stats *out);

struct loop;
struct metrics;

/*
 * Registers the counters above in `m` (Prometheus names rpcgate_rdma_*:
 * handshakes by outcome, timeouts, live QPs, device up, bytes, credit
 * stalls).  They leave it at rdt_close().  0 or the registry's -errno.
 */
int rdt_metrics_register(struct rdt_ctx *ctx, struct metrics *m);

/*
 * Watches for the device's removal (`rdma link delete`, the driver going,
 * a fatal device error) on `loop`, from any thread once the loop runs.
 * When it goes: one logged line; every RDMA connection is closed with
 * -ENODEV ("the RDMA device ... was removed": calls in flight fail, and
 * a channel's retries reconnect); once the last QP is gone the memory
 * regions, PD and device are released, so the removal can finish; new
 * connections go on over TCP (no hello from clients, a refusal from
 * servers).  When a device fitting the options appears again (`rdma link
 * add`), it is opened, the regions of `pool` (the pool rdt_region_hook()
 * serves) are registered with it, and new connections use RDMA again;
 * connections that went on over TCP stay on TCP.  Also logs the port's
 * state changes.  0 or -errno.
 */
int rdt_watch(struct rdt_ctx *ctx, struct loop *loop, struct iobuf_pool *pool);
/* Stops watching; only while `loop` is not running (after rt_stop). */
void rdt_unwatch(struct rdt_ctx *ctx);

#endif
