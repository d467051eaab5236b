/*
 * cluster: calls to a cluster of instances, as brpc's Channel initialised
 * with a naming URL and a load balancer.
 *
 * The instances come from naming (net/cluster/naming.h: list://, file://, the
 * file re-read when it changes); each has its own channel (net/rpc/channel.h)
 * to it, and the balancer (net/cluster/lb.h) chooses one per attempt.
 *
 * A call's way (forwarding: the request is already encoded, the answer
 * is not decoded; channel_call_raw()):
 *
 *   any thread   cluster_call_start() posts the call to the cluster's loop
 *   loop         choose an instance not tried yet -> an attempt on its
 *                channel with the time left as its timeout
 *   loop         the attempt ends:
 *                  an answer (success or the upstream's error) -> done
 *                  the connection failed (refused, reset, EOF, the
 *                  upstream stopping) -> the instance is isolated; retry
 *                  on another instance while max_retry, the deadline
 *                  and the retry budget allow, else done with the error
 *                  a timeout -> done (never retried)
 *                backup_request_ms: one more attempt on another instance
 *                if the first has not answered; the first answer wins,
 *                the other is cancelled.
 *
 * Health: an isolated instance gets no calls; every
 * health_check_interval_ms the cluster tries to connect to it and, once
 * it can, the instance rejoins.  The circuit breaker (below) isolates
 * instances that answer but fail too often.
 *
 * Recovery throttling (min_working_instances, hold_seconds; rr and
 * random, as brpc's): once every instance was down, calls are let
 * through in proportion to the instances back and the rest fail with
 * EREJECT, until enough are back.
 *
 * The retry budget: each call earns retry_budget_percent/100 of a retry,
 * a retry spends one (a small reserve at start, a cap on the savings), so
 * a failing cluster sees at most about that share of extra calls.
 *
 * Threads: everything runs on one loop of the rt (the cluster's: all its
 * instances' channels are put there), so instances, the balancer and
 * calls need no lock.  Naming reloads read the file and open channels on
 * a task worker, and hand the result to the loop.  done runs on the
 * cluster's loop and must not block.  init and destroy from the owner
 * thread (not a thread of the rt).
 */
#ifndef RPCGATE_NET_CLUSTER_H
#define RPCGATE_NET_CLUSTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/iobuf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "base/rt.h"
#include "rpc/channel.h"
#include "dns.h"
#include "consul.h"
#include "etcd.h"
#include "lb.h"
#include "naming.h"

/* Instances a call tries at most (first, retries, backup). */
#define CLUSTER_TRIED_MAX 8
/* The retry budget's reserve at start and cap, in retries. */
#define CLUSTER_BUDGET_RESERVE 10
#define CLUSTER_BUDGET_CAP     100
/*
 * The circuit breaker (circuit_breaker=true): an instance whose moving
 * error rate over about CLUSTER_CB_WINDOW calls passes
 * CLUSTER_CB_ERROR_PERCENT (once it has had CLUSTER_CB_MIN_CALLS) is
 * isolated for CLUSTER_CB_MIN_ISOLATION_MS, twice as long each time it
 * trips again within CLUSTER_CB_REPEAT_MS, up to
 * CLUSTER_CB_MAX_ISOLATION_MS (brpc's bounds), then takes calls again
 * with a clean record.  Every failed call counts, the upstream's own
 * errors included, as brpc counts them.
 */
#define CLUSTER_CB_WINDOW	    100
#define CLUSTER_CB_ERROR_PERCENT    20
#define CLUSTER_CB_MIN_CALLS	    20
#define CLUSTER_CB_MIN_ISOLATION_MS 100
#define CLUSTER_CB_MAX_ISOLATION_MS 30000
#define CLUSTER_CB_REPEAT_MS	    60000

/* health_check_path: the answer's first bytes kept, and how long the
 * answer may take. */
#define CLUSTER_PROBE_ANSWER_MAX 512
#define CLUSTER_PROBE_ANSWER_MS	 2000

/* Error codes counted apart per route; the last slot counts the rest. */
#define CLUSTER_ERROR_CODES_MAX 16

/* A call's error text, the upstream's included. */
#define CLUSTER_TEXT_MAX 320

struct cluster_options {
	struct rt *rt;		 /* required */
	struct iobuf_pool *pool; /* required */
	const struct mem *mem;	 /* NULL: mem_default() */
	struct log *log;	 /* NULL: discard */
	const char *name;	 /* for logs and metrics labels; required */
	const char *naming_url;	 /* required */
	enum lb_kind lb;
	const char *tag; /* keep only instances with this tag; NULL: all */
	/* and only those `filter` keeps (brpc's ns_filter); NULL: all.  It
	 * sees every list the naming source gives, after the tag. */
	naming_filter_fn *filter;
	void *filter_arg;
	/* Each instance's channel (rt, pool, mem, log, loop, timeouts and
	 * retries are the cluster's to set): connect_timeout_ms, conn_type,
	 * pool sizes, credential, max_body_size, max_calls, upgrade. */
	struct channel_options chan;
	int timeout_ms;		      /* 500; -1: none */
	int max_retry;		      /* 3 */
	int backup_request_ms;	      /* -1: off */
	int health_check_interval_ms; /* 3000 */
	/* An isolated instance must also answer GET of this path with 200
	 * before it rejoins (brpc's health_check_path); NULL: connecting is
	 * enough. */
	const char *health_check_path;
	int retry_budget_percent; /* 10; 100: no cap */
	bool circuit_breaker;	  /* off, as brpc's default */
	/* Recovery throttling (rr, random): see cluster.c; 0: off. */
	int min_working_instances;
	int hold_seconds;
	int reload_interval_ms;	 /* file:// checked this often: 1000 */
	int dns_interval_ms;	 /* http:// re-resolved this often: 5000 */
	const char *dns_servers; /* "IP[:PORT],..."; NULL: the system's */
	struct consul_options consul; /* consul:// (agent NULL: :8500) */
	struct metrics *metrics; /* per-cluster and per-instance
					 figures; NULL: none */
};

struct cluster_call;
typedef void cluster_done_fn(struct cluster_call *c, void *arg);

struct cl_attempt;
struct cl_inst;

/*
 * One call.  cluster_call_init() it, fill the inputs, start it; the
 * outputs are set when done runs.  Reusable after done (reset the
 * inputs); cluster_call_destroy() at the end.
 */
struct cluster_call {
	/* inputs */
	const char *service, *method; /* must outlive the call */
	struct iobuf body;	      /* message bytes as sent; taken */
	struct iobuf attachment;      /* taken */
	int compress_type;
	bool has_log_id;
	uint64_t log_id;
	bool has_crc; /* crc: the request's checksum_value */
	uint8_t crc[4];
	bool has_code; /* code: consistent hashing's request code */
	uint64_t code;
	int timeout_ms; /* 0: the cluster's; -1: none */

	/* outputs */
	int error_code;		/* 0: success */
	const char *error_text; /* "" on success */
	bool error_from_server; /* the upstream answered with it */
	struct iobuf response_body, response_attachment;
	int response_compress_type;
	bool has_response_crc;
	uint8_t response_crc[4];
	int attempts, retries;
	bool backup_sent;
	int64_t latency_us;
	char instance[NAMING_ADDR_MAX]; /* the last one tried */

	/* private (the cluster's loop) */
	struct cluster *cl;
	cluster_done_fn *done;
	void *done_arg;
	struct task task;
	struct loop_timer backup_timer;
	int64_t start_ns, deadline_ns;
	struct cl_attempt *live[2];
	int nlive;
	struct cl_inst *tried[CLUSTER_TRIED_MAX];
	int ntried;
	int retries_left;
	char text[CLUSTER_TEXT_MAX];
};

struct cl_code_counter {
	int code;
	struct metrics_counter c;
	char labels[232];
};

struct cluster_stats {
	uint64_t calls, errors, retries, backups, budget_denied;
	uint64_t isolations, rejoins, reloads, breaker_trips, rejected;
	int instances, healthy;
};

struct cluster {
	struct cluster_options opt;
	char name[128];
	char url[512];
	enum naming_scheme scheme;
	const char *path; /* file:// */
	struct loop *loop;
	struct lb lb;

	/* the current set (loop thread) */
	struct cl_inst **set;
	struct lb_server **lbs;
	size_t n;
	struct naming_list names; /* of the set; read by the reload worker */

	/* file:// reloads */
	struct loop_timer reload_timer;
	struct task reload_task, apply_task;
	bool reloading; /* under lock: destroy waits for it */
	bool reload_ok;
	int64_t file_mtime_ns, file_ctime_ns;
	int64_t file_size;
	uint64_t file_ino;
	bool file_missing_logged;
	struct naming_list next_names; /* worker -> loop */
	/* http:// */
	struct dns dns;
	bool dns_up, dns_failing;
	/* etcd:// and consul:// */
	struct etcd_watch etcd;
	struct consul_watch consul;
	bool etcd_up, consul_up;
	bool etcd_pending; /* a change came while a reload ran */
	char host[256];
	int port;
	bool first_resolved; /* under lock */
	int first_err;
	char first_why[320];
	struct cl_inst **fresh; /* worker -> loop: new instances */
	size_t nfresh;

	double budget; /* retries the budget allows now */
	int usable;    /* instances taking calls (loop thread) */
	bool recovering;
	int recover_usable;
	int64_t recover_since_ns;
	uint64_t rng;
	bool closing; /* loop thread */

	/* every instance not yet freed, for destroy */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int nalive;
	struct task quiesce_task;
	bool quiesced, first_applied;

	/* figures */
	uint64_t n_calls, n_errors, n_retries, n_backups, n_budget_denied,
	    n_isolations, n_rejoins, n_reloads, n_breaker_trips,
	    n_rejected; /* atomic */
	struct metrics_counter m_calls, m_errors, m_retries, m_backups,
	    m_budget_denied, m_breaker_trips;
	struct metrics_gauge m_instances, m_healthy;
	struct metrics_latency m_latency;
	char labels[200];
	struct cl_code_counter codes[CLUSTER_ERROR_CODES_MAX]; /* loop */
	int ncodes;
};

/* brpc's defaults (see cluster_options). */
void cluster_options_default(struct cluster_options *opt);

/*
 * Reads the naming source and opens a channel per instance.  0; -EINVAL
 * (bad options or URL, no usable instance in a list://), -errno of
 * reading the file, -ENOMEM; `why` says what.  The rt must run.
 */
int cluster_init(struct cluster *cl, const struct cluster_options *opt,
		 char *why, size_t why_size);

/* Waits for the calls in flight to end (they are bounded by their
 * timeouts), then closes every channel and frees everything. */
void cluster_destroy(struct cluster *cl);

void cluster_call_init(struct cluster_call *c, struct iobuf_pool *pool);
void cluster_call_destroy(struct cluster_call *c);

/* Starts `c`; done(c, arg) runs once, on the cluster's loop, when it
 * ended (c may be freed there).  Any thread. */
void cluster_call_start(struct cluster *cl, struct cluster_call *c,
			cluster_done_fn *done, void *arg);

/*
 * A streaming call (protocol grpc; channel.h's channel_stream_open()) to
 * an instance the balancer picks (not `avoid`, an address, when another
 * is there; NULL: any), its address copied to `instance`
 * (NAMING_ADDR_MAX).  On the cluster's loop (cl->loop), as the stream's
 * callbacks are; timeout_ms 0: the cluster's.  No retry: the stream, or
 * NULL with *err (-EHOSTDOWN: no instance takes calls, -ECANCELED: the
 * cluster is closing, or the channel's).
 */
struct channel_stream *cluster_stream_open(struct cluster *cl,
					   const char *service,
					   const char *method, int timeout_ms,
					   const char *metadata, const char *avoid,
					   const struct channel_stream_ops *ops,
					   void *arg, char *instance, int *err);

void cluster_stats(struct cluster *cl, struct cluster_stats *out);

#endif
