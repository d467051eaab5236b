/*
 * etcd: a client of etcd's v3 JSON gateway on an event loop, for naming
 * (etcd://) and self-registration (--register=etcd://).
 *
 *   etcd://HOST:PORT[,HOST:PORT...]/PREFIX
 *
 * The members are tried in turn: a failed exchange moves to the next
 * one.  Every exchange is one HTTP/1.1 request on its own connection to
 * the member (POST, JSON body), non-blocking, bounded by a timeout; a
 * watch is a request whose chunked answer streams one message per event
 * batch and lasts as long as the connection.
 *
 * etcd_watch follows the keys under PREFIX: one range request, then a
 * watch from the revision after it.  Each key is one instance (its value
 * as etcd_node_from_value reads it).  A change calls `changed` with the
 * whole list.  A compacted revision re-reads and re-watches; a broken
 * stream moves to the next member and watches on from the revision
 * known; while no member answers, the instances known stay, and the
 * time since when is logged and shown (etcd_watch_down_since).
 *
 * etcd_reg keeps one key (PREFIX + ADDR, value ADDR [TAG]) alive under a
 * lease: granted, put, kept alive every TTL/3; a lease that expired
 * meanwhile is granted and put again; etcd_reg_stop() revokes it, so the
 * key goes at once.  A process killed leaves it until the TTL ends.
 *
 * Threads: init and destroy on the owner thread; everything else runs on
 * the loop given.  Host names of members are resolved at init.
 */
#ifndef RPCGATE_NET_ETCD_H
#define RPCGATE_NET_ETCD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/fbuf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "base/mem.h"
#include "codec/http1.h"
#include "etcd_msg.h"
#include "naming.h"

#define ETCD_MEMBERS_MAX 8
/* One request's time to answer (a watch: its head).  */
#define ETCD_TIMEOUT_MS 3000
/* Retries after every member failed: from 100 ms, doubling, to this. */
#define ETCD_BACKOFF_MAX_MS 2000
/* The largest answer read: a range of 65536 instances fits. */
#define ETCD_ANSWER_MAX (64u << 20)

struct etcd_target {
	int n;
	struct sockaddr_storage addr[ETCD_MEMBERS_MAX];
	socklen_t addr_len[ETCD_MEMBERS_MAX];
	char name[ETCD_MEMBERS_MAX][NAMING_ADDR_MAX]; /* as given */
	char prefix[ETCD_KEY_MAX];
};

/* Parses "HOST:PORT[,...]/PREFIX" (what follows etcd://), resolving the
 * hosts (this may block: never on a loop).  0 or -EINVAL with `why`. */
int etcd_target_parse(const char *rest, struct etcd_target *t, char *why,
		      size_t why_size);

/* ---- one exchange ------------------------------------------------------ */

struct etcd_http;
/* A message (stream) or the whole body (else); nonzero ends the
 * exchange with that error. */
typedef int etcd_http_msg_fn(struct etcd_http *h, const char *p, size_t n);
/* The end: 0 (a whole answer, or a stream the member closed cleanly) or
 * -errno with h->why.  Not called after etcd_http_cancel(). */
typedef void etcd_http_end_fn(struct etcd_http *h, int err);

struct etcd_http {
	struct loop *loop;
	const struct mem *mem;
	int fd;
	struct loop_io io;
	struct loop_timer timer;
	struct fbuf out, in, body;
	size_t out_off, in_off;
	bool head_done, stream, busy;
	unsigned gen; /* bumped at every start and end */
	struct http1_resp resp;
	struct http1_chunked ch;
	etcd_http_msg_fn *on_msg;
	etcd_http_end_fn *on_end;
	void *arg;
	int timeout_ms;	       /* 0: ETCD_TIMEOUT_MS */
	const char *header;    /* an answer's field to keep (consul's index) */
	char header_value[64]; /* its value; "" when absent */
	char member[NAMING_ADDR_MAX];
	struct sockaddr_storage local; /* our end, once connected */
	char why[400];
};

void etcd_http_init(struct etcd_http *h, struct loop *loop,
		    const struct mem *mem);
/* Starts POST `path` with `body` (NULL: GET) to member i of t.  The
 * answer must be 200; a stream's messages go to on_msg as they come.  0,
 * or -errno with h->why (nothing is called back then).  Loop thread. */
int etcd_http_start(struct etcd_http *h, const struct etcd_target *t, int i,
		    const char *path, const struct fbuf *body, bool stream);
/* Ends an exchange under way without calling back.  Loop thread. */
void etcd_http_cancel(struct etcd_http *h);
void etcd_http_destroy(struct etcd_http *h);

/* ---- naming ------------------------------------------------------------ */

/* The instances changed: `l` is the whole set (the callee's; valid
 * during the call). */
typedef void etcd_changed_fn(void *arg, const struct naming_list *l);

struct etcd_ent {
	char *key;
	char *value; /* raw watches (etcd_watch_start_raw) only */
	int64_t mod_revision;
	struct naming_node node;
	bool valid; /* its value names an instance */
};

/* A raw watch's keys changed: all of them, sorted by key (the callee's,
 * valid during the call), at revision `rev`. */
typedef void etcd_kvs_fn(void *arg, const struct etcd_ent *ents, size_t n,
			 int64_t rev);

struct etcd_watch {
	struct etcd_target t;
	struct loop *loop;
	const struct mem *mem;
	struct log *log;
	char name[64]; /* for log lines */
	etcd_changed_fn *changed;
	etcd_kvs_fn *kvs_changed; /* raw: values kept, not read as nodes */
	void *arg;
	struct etcd_http h;
	struct loop_timer retry;
	struct task start_task, stop_task;
	int member;	  /* the one asked now */
	int fails;	  /* exchanges failed in a row */
	bool watching;	  /* the watch stream is up */
	bool stopped;
	int64_t rev;	  /* the revision the instances are at */
	int64_t down_since_ns; /* CLOCK_REALTIME; 0 while one answers */
	int64_t down_logged_ns;
	struct etcd_ent *ents; /* sorted by key */
	size_t n, cap;
	bool dirty; /* ents changed since the last `changed` */
	struct naming_list list;
	struct naming_list *first; /* the owner's, filled at start */
	struct fbuf scratch;
	/* figures, read from any thread */
	uint64_t n_events, n_resyncs, n_failovers;
	struct metrics_gauge m_down; /* down_since in Unix seconds, or 0 */
	/* the first answer, waited for at start */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool first_done, stop_done;
	int first_err;
	char first_why[400];
};

/*
 * Reads the instances once (every member in turn, each within
 * ETCD_TIMEOUT_MS) and starts watching, on `loop`; `changed` runs on the
 * loop for every later change.  The first list is in *first (the
 * caller's, filled before return).  Owner thread.  0, or -errno with
 * `why` when no member answered.
 */
int etcd_watch_start(struct etcd_watch *w, const char *rest, struct loop *loop,
		     struct log *log, const char *name, etcd_changed_fn *changed,
		     void *arg, struct naming_list *first, char *why,
		     size_t why_size);
/* The same for keys whose values are not instances (a gateway's
 * routes): kvs_changed runs on the loop with every key and value, first
 * before this returns, then at every change. */
int etcd_watch_start_raw(struct etcd_watch *w, const char *rest,
			 struct loop *loop, struct log *log, const char *name,
			 etcd_kvs_fn *kvs_changed, void *arg, char *why,
			 size_t why_size);
/* Stops watching (waits for the loop).  Owner thread. */
void etcd_watch_stop(struct etcd_watch *w);
/* The instances now (loop thread). */
const struct naming_list *etcd_watch_list(struct etcd_watch *w);
/* Unix time in seconds since no member answers, or 0.  Any thread. */
int64_t etcd_watch_down_since(const struct etcd_watch *w);

/* ---- registration ------------------------------------------------------ */

struct etcd_reg {
	struct etcd_target t;
	struct loop *loop;
	const struct mem *mem;
	struct log *log;
	int ttl_s;
	char addr[NAMING_ADDR_MAX]; /* "" until known (wildcard listen) */
	int port;		    /* with a wildcard address */
	char tag[NAMING_TAG_MAX];
	char key[ETCD_KEY_MAX];
	struct etcd_http h;
	struct loop_timer timer;
	struct task start_task, stop_task;
	int member, fails;
	int step; /* what the exchange under way does */
	int64_t lease;
	bool stopping, registered;
	bool lost; /* the keepalive found the lease gone */
	struct fbuf scratch;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool first_done, stop_done;
	int first_err;
	char first_why[400];
};

/*
 * Registers `addr` ("HOST:PORT"; a wildcard host, 0.0.0.0 or [::], is
 * replaced by the address our connection to etcd comes from) with `tag`
 * (may be "") under PREFIX of `url` ("etcd://..."), lease `ttl_s`.
 * Waits for the first put.  Owner thread.  0 or -errno with `why`.
 */
int etcd_reg_start(struct etcd_reg *r, const char *url, const char *addr,
		   const char *tag, int ttl_s, struct loop *loop,
		   struct log *log, char *why, size_t why_size);
/* Revokes the lease (at most ETCD_TIMEOUT_MS) and stops.  Owner thread. */
void etcd_reg_stop(struct etcd_reg *r);

#endif
