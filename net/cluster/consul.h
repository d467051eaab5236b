/*
 * consul: consul:// naming as brpc's guide describes it, against the
 * agent's HTTP API (no consul server is packaged for Debian: this client
 * is tested against consul's documented answers, recorded as files).
 *
 *   consul://SERVICE   GET AGENT/v1/health/service/SERVICE?stale&passing
 *                      then blocking queries: &index=N&wait=Ss, N the
 *                      X-Consul-Index of the last answer
 *
 * Each element of the answer's array is one instance: Service.Address
 * (Node.Address when empty, as consul documents) and Service.Port; the
 * first of Service.Tags is the tag.  Elements that do not name one are
 * skipped and logged; an answer whose elements are all bad is refused
 * (the instances known stay), as brpc does.  An answer with the same
 * index changed nothing.  While the agent cannot be reached, the known
 * instances stay, retried every CONSUL_RETRY_MS; with a degrade folder
 * and nothing known yet, the file DIR/SERVICE (file:// syntax) is read
 * once instead (brpc's consul_enable_degrade_to_file_naming_service).
 *
 * Threads as etcd_watch's: start and stop on the owner thread, the rest
 * on the loop.
 */
#ifndef RPCGATE_NET_CONSUL_H
#define RPCGATE_NET_CONSUL_H

#include "etcd.h"

/* Between two tries when the agent failed (brpc's consul_retry_interval_ms). */
#define CONSUL_RETRY_MS 500

struct consul_options {
	const char *agent;	 /* "http://HOST:PORT" (brpc's default :8500) */
	const char *params;	 /* "?stale&passing" */
	int wait_s;		 /* a blocking query's wait, 1..600 */
	const char *degrade_dir; /* NULL or "": no degrading to a file */
};

/*
 * Reads an answer p[0..n) into out (emptied first): 0 with *skipped the
 * elements that named no instance (the first described in why); -EBADMSG
 * (not a JSON array of objects, why says); -ENOMEM; -E2BIG.
 */
int consul_parse(const char *p, size_t n, struct naming_list *out,
		 unsigned *skipped, struct fbuf *scratch, char *why,
		 size_t why_size);

struct consul_watch {
	struct etcd_target t; /* the agent */
	char path[1024];      /* /v1/health/service/SERVICE?... */
	char name[64];
	struct consul_options opt;
	char degrade_dir[512];
	char service[256];
	struct loop *loop;
	const struct mem *mem;
	struct log *log;
	etcd_changed_fn *changed;
	void *arg;
	struct etcd_http h;
	struct loop_timer retry;
	struct task start_task, stop_task;
	char index[64]; /* X-Consul-Index of the list known; "" none */
	bool stopped, degraded, failing;
	struct naming_list list;
	struct naming_list *first;
	struct fbuf scratch;
	int64_t down_since_ns;
	struct metrics_gauge m_down;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool first_done, stop_done;
	int first_err;
	char first_why[400];
};

/* Reads the service's instances once (into *first) and goes on with
 * blocking queries on `loop`.  0, or -errno with `why`. */
int consul_watch_start(struct consul_watch *w, const char *service,
		       const struct consul_options *opt, struct loop *loop,
		       struct log *log, const char *name,
		       etcd_changed_fn *changed, void *arg,
		       struct naming_list *first, char *why, size_t why_size);
void consul_watch_stop(struct consul_watch *w);
/* The instances now (loop thread). */
const struct naming_list *consul_watch_list(struct consul_watch *w);

#endif
