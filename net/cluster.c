/*
 * cluster: calls over a cluster of instances (see cluster.h).
 *
 * Lifetimes.  An instance (cl_inst) is referenced by the set while it is
 * in it, and by each attempt in flight on it; when the last reference
 * goes (loop thread) a task worker closes its channel (channel_destroy
 * waits, which a loop must not) and frees it.  An attempt (cl_attempt)
 * lives from its start to its channel's done callback; when its call
 * ends without it (the other attempt of a backup pair answered first),
 * it is cancelled and orphaned (owner NULL) and frees itself when its
 * done comes.
 */
#include "cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "rpc_errno.h"
#include "util.h"

#define NS_PER_MS 1000000LL

struct cl_inst {
	struct cluster *cl;
	struct naming_node node;
	char key[NAMING_ADDR_MAX + NAMING_TAG_MAX + 2];
	struct lb_server lbs;
	struct channel ch;
	bool in_set;
	size_t idx; /* in cl->set while in_set */
	int refs;   /* loop thread */
	/* health checking while isolated */
	bool down; /* its connection failed: isolated until a probe connects */
	int64_t isolated_ns;
	int probe_fd;
	struct loop_io probe_io;
	struct loop_timer probe_timer;
	bool probe_http; /* connected: awaiting the health_check_path answer */
	bool probe_logged; /* its bad answer was logged (once per isolation) */
	char probe_buf[CLUSTER_PROBE_ANSWER_MAX];
	size_t probe_len;
	/* the circuit breaker */
	bool broken; /* isolated for cb_isolation_ms */
	double err_ema;
	uint32_t cb_samples;
	int cb_isolation_ms;
	int64_t cb_last_trip_ns;
	struct loop_timer cb_timer;
	struct task free_task;
	/* figures */
	struct metrics_counter m_calls, m_errors;
	struct metrics_gauge m_healthy;
	struct metrics_latency m_latency; /* its attempts' latency */
	char labels[480];
};

struct cl_attempt {
	struct rpc_call rc;
	struct cluster_call *owner; /* NULL: orphaned */
	struct cl_inst *inst;
	/* The service and method names, the attempt's own: an orphaned
	 * attempt may still be sent (its connection completing before its
	 * cancel lands) after the caller let go of the call's names. */
	char *method;
	char service[];
};

static void count(uint64_t *ctr)
{
	__atomic_fetch_add(ctr, 1, __ATOMIC_RELAXED);
}

static void cl_log_fmt(struct cluster *cl, enum log_level lvl, const char *fmt,
		       ...) __attribute__((format(printf, 3, 4)));

static void cl_log_fmt(struct cluster *cl, enum log_level lvl, const char *fmt,
		       ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_write(cl->opt.log, lvl, "cluster %s: %s", cl->name, buf);
}

void cluster_options_default(struct cluster_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->lb = LB_RR;
	channel_options_default(&opt->chan);
	opt->timeout_ms = 500;
	opt->max_retry = 3;
	opt->backup_request_ms = -1;
	opt->health_check_interval_ms = 3000;
	opt->retry_budget_percent = 10;
	opt->reload_interval_ms = 1000;
	opt->dns_interval_ms = 5000;
}

/* ---- instances ------------------------------------------------------ */

static void cl_log_fmt(struct cluster *cl, enum log_level lvl, const char *fmt,
		       ...);

/* Loop thread: usable instances changed.  No one usable starts the
 * recovery (min_working_instances). */
static void update_gauges(struct cluster *cl)
{
	int healthy = 0;

	for (size_t i = 0; i < cl->n; i++)
		healthy += cl->set[i]->lbs.usable;
	cl->usable = healthy;
	if (!healthy && cl->n && cl->opt.min_working_instances > 0 &&
	    !cl->recovering) {
		cl->recovering = true;
		cl->recover_usable = 0;
		cl->recover_since_ns = loop_now(cl->loop);
		cl_log_fmt(cl, LOG_LVL_WARN,
			   "no instance takes calls: until %d do (or %d s "
			   "pass without change), calls are let through in "
			   "proportion and the rest rejected (EREJECT)",
			   cl->opt.min_working_instances, cl->opt.hold_seconds);
	}
	metrics_gauge_set(&cl->m_instances, (int64_t)cl->n);
	metrics_gauge_set(&cl->m_healthy, healthy);
}

/* Worker: opens the instance's channel.  NULL with `why` set on
 * failure. */
static struct cl_inst *inst_new(struct cluster *cl,
				const struct naming_node *node, char *why,
				size_t why_size)
{
	struct channel_options co = cl->opt.chan;
	struct cl_inst *in;
	int err;

	in = mem_zalloc(cl->opt.mem, sizeof(*in));
	if (!in) {
		snprintf(why, why_size, "no memory for instance %s",
			 node->addr);
		return NULL;
	}
	in->cl = cl;
	in->node = *node;
	if (node->tag[0])
		snprintf(in->key, sizeof(in->key), "%s %s", node->addr,
			 node->tag);
	else
		snprintf(in->key, sizeof(in->key), "%s", node->addr);
	in->lbs.key = in->key;
	in->lbs.usable = true;
	in->lbs.weight = 1;
	if (cl->opt.lb == LB_WRR || cl->opt.lb == LB_WR) {
		char *end;
		long w = strtol(node->tag, &end, 10);

		in->lbs.weight =
		    (node->tag[0] && !*end && w > 0 && w <= LB_WEIGHT_MAX)
			? (uint32_t)w
			: 0;
		if (!in->lbs.weight)
			cl_log_fmt(cl, LOG_LVL_WARN,
				   "instance %s: tag \"%s\" is not a weight "
				   "(1..%d); %s will not use it",
				   node->addr, node->tag, LB_WEIGHT_MAX,
				   lb_kind_name(cl->opt.lb));
	}
	in->probe_fd = -1;
	loop_timer_init(&in->probe_timer);
	loop_timer_init(&in->cb_timer);
	co.rt = cl->opt.rt;
	co.pool = cl->opt.pool;
	co.mem = cl->opt.mem;
	co.log = cl->opt.log;
	co.loop = cl->loop;
	co.done_inline = true;
	co.max_retry = 0;	   /* the cluster retries elsewhere */
	co.backup_request_ms = -1; /* the cluster sends backups */
	err = channel_init(&in->ch, node->addr, &co);
	if (err) {
		snprintf(why, why_size, "instance %s: %s", node->addr,
			 err == -EHOSTUNREACH ? "the host name does not resolve"
					      : strerror(-err));
		mem_free(cl->opt.mem, in);
		return NULL;
	}
	if (cl->opt.metrics) {
		snprintf(in->labels, sizeof(in->labels), "%s,instance=\"%s\"",
			 cl->labels, in->key);
		metrics_register_counter(cl->opt.metrics, &in->m_calls,
					 "rpcgate_instance_calls_total",
					 "calls sent to an upstream instance",
					 in->labels);
		metrics_register_counter(cl->opt.metrics, &in->m_errors,
					 "rpcgate_instance_errors_total",
					 "calls to an upstream instance that "
					 "failed",
					 in->labels);
		metrics_latency_init(&in->m_latency);
		metrics_register_latency(cl->opt.metrics, &in->m_latency,
					 "rpcgate_instance_latency_us",
					 "latency of the attempts sent to an "
					 "upstream instance",
					 in->labels);
		metrics_register_gauge(cl->opt.metrics, &in->m_healthy,
				       "rpcgate_instance_healthy",
				       "1 while the instance takes calls, 0 "
				       "while isolated",
				       in->labels);
		metrics_gauge_set(&in->m_healthy, 1);
	}
	pthread_mutex_lock(&cl->lock);
	cl->nalive++;
	pthread_mutex_unlock(&cl->lock);
	return in;
}

/* Worker: closes and frees. */
static void inst_free_task(struct task *t)
{
	struct cl_inst *in = container_of(t, struct cl_inst, free_task);
	struct cluster *cl = in->cl;

	channel_destroy(&in->ch);
	metrics_unregister(&in->m_calls.node);
	metrics_unregister(&in->m_errors.node);
	metrics_unregister(&in->m_healthy.node);
	metrics_unregister(&in->m_latency.node);
	mem_free(cl->opt.mem, in);
	pthread_mutex_lock(&cl->lock);
	cl->nalive--;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void probe_stop(struct cl_inst *in)
{
	struct loop *loop = in->cl->loop;

	if (loop_timer_active(&in->probe_timer))
		loop_timer_stop(loop, &in->probe_timer);
	if (in->probe_fd >= 0) {
		if (in->probe_io.active)
			loop_io_del(loop, &in->probe_io);
		close(in->probe_fd);
		in->probe_fd = -1;
	}
}

static void inst_unref(struct cl_inst *in)
{
	if (--in->refs > 0)
		return;
	probe_stop(in);
	if (loop_timer_active(&in->cb_timer))
		loop_timer_stop(in->cl->loop, &in->cb_timer);
	task_init(&in->free_task, inst_free_task);
	if (rt_submit(in->cl->opt.rt, &in->free_task)) {
		/* Workers gone (the rt stopping): closing the channel here,
		 * on its own loop, would wait forever.  Left for the exit. */
		cl_log_fmt(in->cl, LOG_LVL_ERROR,
			   "instance %s: no task worker to close its channel; "
			   "left open",
			   in->key);
	}
}

/* ---- health --------------------------------------------------------- */

static void probe_due(struct loop_timer *t);

static void probe_again(struct cl_inst *in)
{
	struct cluster *cl = in->cl;

	probe_stop(in);
	if (cl->closing || !in->in_set)
		return;
	loop_timer_start(cl->loop, &in->probe_timer,
			 loop_now(cl->loop) +
			     cl->opt.health_check_interval_ms * NS_PER_MS,
			 probe_due);
}

static void rejoin(struct cl_inst *in)
{
	struct cluster *cl = in->cl;

	probe_stop(in);
	in->down = false;
	in->probe_logged = false;
	in->lbs.usable = !in->broken;
	count(&cl->n_rejoins);
	metrics_gauge_set(&in->m_healthy, in->lbs.usable);
	update_gauges(cl);
	cl_log_fmt(
	    cl, LOG_LVL_INFO,
	    "instance %s is back after %lld ms: it takes calls again", in->key,
	    (long long)((loop_now(cl->loop) - in->isolated_ns) / NS_PER_MS));
}

static void probe_io_cb(struct loop_io *io, uint32_t events);
static void probe_timeout(struct loop_timer *t);

/* The answer's status line so far: 1 a 200, 0 not yet known, -1 any
 * other status (or not HTTP). */
static int probe_status(const struct cl_inst *in)
{
	const char *p = in->probe_buf, *sp;

	if (!memchr(p, '\n', in->probe_len))
		return in->probe_len == sizeof(in->probe_buf) ? -1 : 0;
	if (strncmp(p, "HTTP/1.", 7))
		return -1;
	sp = memchr(p, ' ', in->probe_len);
	if (!sp || (size_t)(sp - p) + 5 > in->probe_len)
		return -1;
	return !strncmp(sp + 1, "200", 3) && (sp[4] == ' ' || sp[4] == '\r')
		   ? 1
		   : -1;
}

/* The health_check_path answer: 200 rejoins, anything else waits. */
static void probe_read(struct cl_inst *in)
{
	struct cluster *cl = in->cl;
	ssize_t n;
	int st;

	do
		n = read(in->probe_fd, in->probe_buf + in->probe_len,
			 sizeof(in->probe_buf) - in->probe_len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0)
		in->probe_len += (size_t)n;
	st = probe_status(in);
	if (st == 1) {
		rejoin(in);
		return;
	}
	if (st < 0 || n <= 0) {
		const char *eol = memchr(in->probe_buf, '\n', in->probe_len);
		size_t shown =
		    eol ? (size_t)(eol - in->probe_buf) : in->probe_len;

		if (shown && in->probe_buf[shown - 1] == '\r')
			shown--;
		if (!in->probe_logged)
			cl_log_fmt(cl, LOG_LVL_WARN,
				   "instance %s accepts connections but GET "
				   "%s answered %s%.*s%s: still isolated",
				   in->key, cl->opt.health_check_path,
				   shown ? "\"" : "nothing", (int)shown,
				   in->probe_buf, shown ? "\"" : "");
		in->probe_logged = true;
		probe_again(in);
	}
}

/* Connected: with health_check_path, ask for it; else rejoin. */
static void probe_connected(struct cl_inst *in)
{
	struct cluster *cl = in->cl;
	char req[CLUSTER_PROBE_ANSWER_MAX];
	int n;

	if (!cl->opt.health_check_path) {
		rejoin(in);
		return;
	}
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
		     "User-Agent: rpcgate-health-check\r\n\r\n",
		     cl->opt.health_check_path, in->node.addr);
	/* A fresh connection takes a request this small at once. */
	if (n >= (int)sizeof(req) ||
	    send(in->probe_fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		probe_again(in);
		return;
	}
	in->probe_http = true;
	in->probe_len = 0;
	memset(in->probe_buf, 0, sizeof(in->probe_buf));
	if (!in->probe_io.active) {
		loop_io_init(&in->probe_io, in->probe_fd, EPOLLIN, probe_io_cb);
		if (loop_io_add(cl->loop, &in->probe_io)) {
			probe_again(in);
			return;
		}
	} else if (loop_io_mod(cl->loop, &in->probe_io, EPOLLIN)) {
		probe_again(in);
		return;
	}
	if (loop_timer_active(&in->probe_timer))
		loop_timer_stop(cl->loop, &in->probe_timer);
	loop_timer_start(cl->loop, &in->probe_timer,
			 loop_now(cl->loop) +
			     CLUSTER_PROBE_ANSWER_MS * NS_PER_MS,
			 probe_timeout);
}

static void probe_io_cb(struct loop_io *io, uint32_t events)
{
	struct cl_inst *in = container_of(io, struct cl_inst, probe_io);
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (in->probe_http) {
		probe_read(in);
		return;
	}
	if (getsockopt(in->probe_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) ||
	    soerr || (events & (EPOLLERR | EPOLLHUP)))
		probe_again(in);
	else
		probe_connected(in);
}

/* The probe's connect took longer than connect_timeout_ms, or its
 * health_check_path answer longer than CLUSTER_PROBE_ANSWER_MS. */
static void probe_timeout(struct loop_timer *t)
{
	probe_again(container_of(t, struct cl_inst, probe_timer));
}

/* Tries to connect; rejoin once it can. */
static void probe_due(struct loop_timer *t)
{
	struct cl_inst *in = container_of(t, struct cl_inst, probe_timer);
	struct cluster *cl = in->cl;
	int fd;

	fd = socket(in->ch.addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		probe_again(in);
		return;
	}
	in->probe_fd = fd;
	in->probe_http = false;
	if (connect(fd, (struct sockaddr *)&in->ch.addr, in->ch.addrlen) == 0) {
		probe_connected(in);
		return;
	}
	if (errno != EINPROGRESS) {
		probe_again(in);
		return;
	}
	loop_io_init(&in->probe_io, fd, EPOLLOUT, probe_io_cb);
	if (loop_io_add(cl->loop, &in->probe_io)) {
		probe_again(in);
		return;
	}
	loop_timer_start(cl->loop, &in->probe_timer,
			 loop_now(cl->loop) +
			     cl->opt.chan.connect_timeout_ms * NS_PER_MS,
			 probe_timeout);
}

static void isolate(struct cl_inst *in, int code, const char *text)
{
	struct cluster *cl = in->cl;

	if (in->down)
		return;
	in->down = true;
	in->lbs.usable = false;
	in->isolated_ns = loop_now(cl->loop);
	count(&cl->n_isolations);
	metrics_gauge_set(&in->m_healthy, 0);
	update_gauges(cl);
	cl_log_fmt(cl, LOG_LVL_WARN,
		   "instance %s isolated: %s (code %d); checked every %d ms "
		   "until it accepts connections%s%s%s",
		   in->key, text, code, cl->opt.health_check_interval_ms,
		   cl->opt.health_check_path ? " and answers GET " : "",
		   cl->opt.health_check_path ? cl->opt.health_check_path : "",
		   cl->opt.health_check_path ? " with 200" : "");
	probe_again(in);
}

/* ---- the circuit breaker -------------------------------------------- */

static void cb_end(struct loop_timer *t)
{
	struct cl_inst *in = container_of(t, struct cl_inst, cb_timer);
	struct cluster *cl = in->cl;

	in->broken = false;
	/* A fresh start: it must fail often again before it trips. */
	in->err_ema = 0;
	in->cb_samples = 0;
	in->lbs.usable = !in->down;
	metrics_gauge_set(&in->m_healthy, in->lbs.usable);
	update_gauges(cl);
	cl_log_fmt(cl, LOG_LVL_INFO,
		   "circuit breaker: instance %s takes calls again after %d "
		   "ms",
		   in->key, in->cb_isolation_ms);
}

/* One call's end on instance `in`: trips the breaker when the recent
 * error rate is over CLUSTER_CB_ERROR_PERCENT. */
static void cb_feed(struct cl_inst *in, bool failed)
{
	struct cluster *cl = in->cl;
	int64_t now = loop_now(cl->loop);

	if (!cl->opt.circuit_breaker || in->broken)
		return;
	in->err_ema += (failed - in->err_ema) * 2.0 / (CLUSTER_CB_WINDOW + 1);
	if (++in->cb_samples < CLUSTER_CB_MIN_CALLS ||
	    in->err_ema * 100 <= CLUSTER_CB_ERROR_PERCENT)
		return;
	/* Trips again soon after the last: isolated twice as long. */
	if (in->cb_last_trip_ns &&
	    now - in->cb_last_trip_ns < CLUSTER_CB_REPEAT_MS * NS_PER_MS)
		in->cb_isolation_ms =
		    in->cb_isolation_ms * 2 > CLUSTER_CB_MAX_ISOLATION_MS
			? CLUSTER_CB_MAX_ISOLATION_MS
			: in->cb_isolation_ms * 2;
	else
		in->cb_isolation_ms = CLUSTER_CB_MIN_ISOLATION_MS;
	in->cb_last_trip_ns = now;
	in->broken = true;
	in->lbs.usable = false;
	count(&cl->n_breaker_trips);
	metrics_counter_add(&cl->m_breaker_trips, 1);
	metrics_gauge_set(&in->m_healthy, 0);
	update_gauges(cl);
	cl_log_fmt(cl, LOG_LVL_WARN,
		   "circuit breaker: instance %s isolated for %d ms: %.0f%% of "
		   "its recent calls failed",
		   in->key, in->cb_isolation_ms, in->err_ema * 100);
	loop_timer_start(cl->loop, &in->cb_timer,
			 now + in->cb_isolation_ms * NS_PER_MS, cb_end);
}

/* ---- the set -------------------------------------------------------- */

/* Loop thread: `set` (n instances, referenced by the caller) becomes
 * the set; instances left out are let go. */
static int set_replace(struct cluster *cl, struct cl_inst **set, size_t n)
{
	struct lb_server **lbs = NULL;
	int err;

	if (n) {
		lbs = mem_alloc(cl->opt.mem, n * sizeof(*lbs));
		if (!lbs)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		lbs[i] = &set[i]->lbs;
	err = lb_set_servers(&cl->lb, lbs, n);
	if (err) {
		mem_free(cl->opt.mem, lbs);
		return err;
	}
	for (size_t i = 0; i < cl->n; i++)
		cl->set[i]->in_set = false;
	for (size_t i = 0; i < n; i++) {
		set[i]->in_set = true;
		set[i]->idx = i;
	}
	for (size_t i = 0; i < cl->n; i++)
		if (!cl->set[i]->in_set) {
			probe_stop(cl->set[i]);
			inst_unref(cl->set[i]);
		}
	mem_free(cl->opt.mem, cl->set);
	mem_free(cl->opt.mem, cl->lbs);
	cl->set = set;
	cl->lbs = lbs;
	cl->n = n;
	update_gauges(cl);
	return 0;
}

static struct cl_inst *find_in_set(struct cluster *cl,
				   const struct naming_node *node)
{
	for (size_t i = 0; i < cl->n; i++)
		if (!strcmp(cl->set[i]->node.addr, node->addr) &&
		    !strcmp(cl->set[i]->node.tag, node->tag))
			return cl->set[i];
	return NULL;
}

static struct cl_inst *find_fresh(struct cluster *cl,
				  const struct naming_node *node)
{
	for (size_t i = 0; i < cl->nfresh; i++)
		if (cl->fresh[i] &&
		    !strcmp(cl->fresh[i]->node.addr, node->addr) &&
		    !strcmp(cl->fresh[i]->node.tag, node->tag))
			return cl->fresh[i];
	return NULL;
}

/*
 * Opens channels for the nodes of cl->next_names that are not in
 * cl->names (the set's), into cl->fresh.  Worker or init (never the
 * loop: resolving a host name may block).  Nodes whose channel cannot
 * be opened are dropped from next_names, logged.
 */
static int open_fresh(struct cluster *cl)
{
	struct naming_list *nx = &cl->next_names;
	char why[256];
	size_t k = 0;

	cl->nfresh = 0;
	cl->fresh =
	    nx->n ? mem_zalloc(cl->opt.mem, nx->n * sizeof(*cl->fresh)) : NULL;
	if (nx->n && !cl->fresh)
		return -ENOMEM;
	for (size_t i = 0; i < nx->n; i++) {
		bool known = false;

		for (size_t j = 0; j < cl->names.n; j++)
			if (!strcmp(cl->names.v[j].addr, nx->v[i].addr) &&
			    !strcmp(cl->names.v[j].tag, nx->v[i].tag))
				known = true;
		if (!known) {
			struct cl_inst *in =
			    inst_new(cl, &nx->v[i], why, sizeof(why));

			if (!in) {
				cl_log_fmt(cl, LOG_LVL_WARN, "skipping %s",
					   why);
				continue;
			}
			cl->fresh[cl->nfresh++] = in;
		}
		nx->v[k++] = nx->v[i];
	}
	nx->n = k;
	return 0;
}

/* Loop thread: lets go of fresh instances the set did not take (all of
 * them when apply failed). */
static void drop_fresh(struct cluster *cl)
{
	for (size_t i = 0; i < cl->nfresh; i++) {
		cl->fresh[i]->refs++;
		inst_unref(cl->fresh[i]); /* frees it if the set has none */
	}
	mem_free(cl->opt.mem, cl->fresh);
	cl->fresh = NULL;
	cl->nfresh = 0;
}

/* Loop thread: next_names (known instances and fresh ones) becomes the
 * set. */
static int apply_names(struct cluster *cl)
{
	struct naming_list *nx = &cl->next_names;
	struct cl_inst **set = NULL;
	struct naming_list tmp;
	int err = 0;

	if (nx->n) {
		set = mem_alloc(cl->opt.mem, nx->n * sizeof(*set));
		if (!set) {
			err = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < nx->n; i++) {
		struct cl_inst *fresh = find_fresh(cl, &nx->v[i]);

		/* A kept instance holds the set's reference already. */
		set[i] = fresh ? fresh : find_in_set(cl, &nx->v[i]);
		if (fresh)
			fresh->refs++;
	}
	err = set_replace(cl, set, nx->n);
	if (err) {
		for (size_t i = 0; i < nx->n; i++)
			if (find_fresh(cl, &nx->v[i]))
				set[i]->refs--;
		mem_free(cl->opt.mem, set);
		goto out;
	}
	tmp = cl->names;
	cl->names = *nx;
	*nx = tmp;
out:
	nx->n = 0;
	drop_fresh(cl);
	return err;
}

/* ---- file:// reloads and http:// re-resolution ---------------------- */

static void reload_check(struct loop_timer *t);

static void reload_arm(struct cluster *cl)
{
	int ms = cl->scheme == NAMING_DNS ? cl->opt.dns_interval_ms
					  : cl->opt.reload_interval_ms;

	if (cl->scheme != NAMING_LIST && !cl->closing)
		loop_timer_start(cl->loop, &cl->reload_timer,
				 loop_now(cl->loop) + ms * NS_PER_MS,
				 reload_check);
}

/* Whether the file changed since the last look (and remembers it). */
static bool file_changed(struct cluster *cl)
{
	struct stat st;
	int64_t mt, ct;

	if (stat(cl->path, &st)) {
		if (!cl->file_missing_logged)
			cl_log_fmt(cl, LOG_LVL_WARN,
				   "cannot stat %s: %s; keeping the %zu "
				   "instances known",
				   cl->path, strerror(errno), cl->n);
		cl->file_missing_logged = true;
		return false;
	}
	cl->file_missing_logged = false;
	mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	ct = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	if (mt == cl->file_mtime_ns && ct == cl->file_ctime_ns &&
	    st.st_size == cl->file_size && st.st_ino == cl->file_ino)
		return false;
	cl->file_mtime_ns = mt;
	cl->file_ctime_ns = ct;
	cl->file_size = st.st_size;
	cl->file_ino = st.st_ino;
	return true;
}

static void set_reloading(struct cluster *cl, bool on)
{
	pthread_mutex_lock(&cl->lock);
	cl->reloading = on;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void apply_task_fn(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, apply_task);
	size_t before = cl->n;
	int err;

	if (cl->closing || !cl->reload_ok) {
		drop_fresh(cl);
		cl->next_names.n = 0;
		if (!cl->reload_ok)
			cl->file_mtime_ns = -1; /* look again next time */
		reload_arm(cl);			/* nothing when closing */
		/* Last: a destroy waiting for it may free cl at once. */
		set_reloading(cl, false);
		return;
	}
	err = apply_names(cl);
	if (err)
		cl_log_fmt(cl, LOG_LVL_ERROR, "cannot apply %s: %s", cl->url,
			   strerror(-err));
	else
		cl_log_fmt(cl, cl->n ? LOG_LVL_INFO : LOG_LVL_WARN,
			   "reloaded %s: %zu instances (were %zu)%s", cl->url,
			   cl->n, before,
			   cl->n ? ""
				 : "; calls fail with EHOSTDOWN until "
				   "it lists one");
	count(&cl->n_reloads);
	set_reloading(cl, false);
	reload_arm(cl);
}

/* Worker: reads the file (http://: the names are in already), opens
 * channels for new instances. */
static void reload_task_fn(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_task);
	unsigned skipped = 0;
	char why[256];
	int err = 0;

	if (cl->scheme == NAMING_FILE)
		err = naming_read_file(cl->path, &cl->next_names, &skipped, why,
				       sizeof(why));
	if (!err) {
		naming_filter_tag(&cl->next_names, cl->opt.tag);
		if (skipped)
			cl_log_fmt(cl, LOG_LVL_WARN,
				   "%s: %u entries skipped: %s", cl->path,
				   skipped, why);
		err = open_fresh(cl);
		if (err)
			cl_log_fmt(cl, LOG_LVL_ERROR, "cannot reload %s: %s",
				   cl->path, strerror(-err));
	} else {
		cl_log_fmt(cl, LOG_LVL_WARN, "%s; keeping the instances known",
			   why);
	}
	cl->reload_ok = !err;
	task_init(&cl->apply_task, apply_task_fn);
	loop_post(cl->loop, &cl->apply_task);
}

/* Opens the new instances on a worker, then applies (loop). */
static void reload_submit(struct cluster *cl)
{
	task_init(&cl->reload_task, reload_task_fn);
	if (rt_submit(cl->opt.rt, &cl->reload_task)) {
		cl->next_names.n = 0;
		set_reloading(cl, false);
	}
}

/* Copies a resolver's answer into next_names.  0 or -ENOMEM. */
static int take_names(struct cluster *cl, const struct naming_list *l)
{
	struct naming_list *nx = &cl->next_names;

	nx->n = 0;
	if (l->n > nx->cap) {
		struct naming_node *v =
		    mem_alloc(cl->opt.mem, l->n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		mem_free(cl->opt.mem, nx->v);
		nx->v = v;
		nx->cap = l->n;
	}
	if (l->n)
		memcpy(nx->v, l->v, l->n * sizeof(*nx->v));
	nx->n = l->n;
	return 0;
}

/* dns_done_fn of a re-resolution (loop). */
static void dns_refreshed(void *arg, int err, const struct naming_list *l,
			  const char *why)
{
	struct cluster *cl = arg;

	if (cl->closing) {
		set_reloading(cl, false);
		return;
	}
	if (!err)
		err = take_names(cl, l);
	if (err) {
		if (!cl->dns_failing)
			cl_log_fmt(cl, LOG_LVL_WARN,
				   "%s; keeping the %zu instances known, "
				   "trying again every %d ms",
				   why && why[0] ? why : strerror(-err), cl->n,
				   cl->opt.dns_interval_ms);
		cl->dns_failing = true;
	} else {
		if (cl->dns_failing)
			cl_log_fmt(cl, LOG_LVL_INFO, "%s resolves again",
				   cl->host);
		cl->dns_failing = false;
	}
	if (err || naming_same(&cl->next_names, &cl->names)) {
		cl->next_names.n = 0;
		set_reloading(cl, false);
		reload_arm(cl);
		return;
	}
	reload_submit(cl);
}

static void reload_check(struct loop_timer *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_timer);

	if (cl->closing)
		return;
	if (cl->reloading || (cl->scheme == NAMING_FILE && !file_changed(cl))) {
		reload_arm(cl);
		return;
	}
	set_reloading(cl, true);
	if (cl->scheme == NAMING_DNS)
		dns_resolve(&cl->dns, cl->host, cl->port, dns_refreshed, cl);
	else
		reload_submit(cl);
}

/* ---- calls (loop thread) -------------------------------------------- */

/* Errors that say the instance could not take the call at all: the
 * call can go elsewhere, and (but ELIMIT, an overloaded one) the
 * instance is isolated. */
static bool is_conn_failure(int code)
{
	switch (code) {
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case ENOTCONN:
	case ETIMEDOUT: /* connect_timeout_ms */
	case EHOSTUNREACH:
	case ENETUNREACH:
	case ENODEV:
	case RPC_EEOF:
	case RPC_EFAILEDSOCKET:
		return true;
	}
	return false;
}

/* Upstream answers a call may be retried elsewhere after. */
static bool is_retryable_answer(int code)
{
	return code == RPC_ELOGOFF || code == RPC_ELIMIT;
}

/* Loop thread: errors by code, each code's counter registered the
 * first time it is seen (CLUSTER_ERROR_CODES_MAX, then "other"). */
static void count_error_code(struct cluster *cl, int code)
{
	struct cl_code_counter *k = NULL;
	int i;

	for (i = 0; i < cl->ncodes; i++)
		if (cl->codes[i].code == code) {
			k = &cl->codes[i];
			break;
		}
	if (!k && cl->ncodes < CLUSTER_ERROR_CODES_MAX) {
		k = &cl->codes[cl->ncodes++];
		k->code = code;
		metrics_counter_init(&k->c);
		if (cl->ncodes == CLUSTER_ERROR_CODES_MAX)
			snprintf(k->labels, sizeof(k->labels),
				 "%s,code=\"other\"", cl->labels);
		else
			snprintf(k->labels, sizeof(k->labels), "%s,code=\"%d\"",
				 cl->labels, code);
		if (cl->opt.metrics)
			metrics_register_counter(
			    cl->opt.metrics, &k->c,
			    "rpcgate_route_errors_by_code_total",
			    "failed calls of a route by error code", k->labels);
	}
	if (!k)
		k = &cl->codes[CLUSTER_ERROR_CODES_MAX - 1];
	metrics_counter_add(&k->c, 1);
}

static void call_end(struct cluster_call *c, int code, const char *text)
{
	struct cluster *cl = c->cl;
	int64_t now = clock_mono_ns();

	if (loop_timer_active(&c->backup_timer))
		loop_timer_stop(cl->loop, &c->backup_timer);
	for (int i = 0; i < c->nlive; i++) {
		c->live[i]->owner = NULL;
		rpc_call_cancel(&c->live[i]->rc);
	}
	c->nlive = 0;
	if (code) {
		c->error_code = code;
		if (text != c->text)
			snprintf(c->text, sizeof(c->text), "%s", text);
		c->error_text = c->text;
	}
	c->latency_us = (now - c->start_ns) / 1000;
	count(&cl->n_calls);
	metrics_counter_add(&cl->m_calls, 1);
	if (c->error_code) {
		count(&cl->n_errors);
		metrics_counter_add(&cl->m_errors, 1);
		count_error_code(cl, c->error_code);
	}
	metrics_latency_record(&cl->m_latency, (uint64_t)c->latency_us);
	c->done(c, c->done_arg); /* may free c */
}

static void attempt_done(struct rpc_call *rc, void *arg);

static int64_t time_left_ms(const struct cluster_call *c, int64_t now)
{
	return (c->deadline_ns - now + NS_PER_MS - 1) / NS_PER_MS;
}

/* Starts an attempt on an instance this call has not tried.  0, or
 * -EHOSTDOWN (none left), -ETIMEDOUT (no time left), -ENOMEM. */
static int attempt_start(struct cluster_call *c)
{
	struct cluster *cl = c->cl;
	bool skip_buf[64] = {false}, *skip = NULL;
	struct cl_attempt *a;
	struct cl_inst *in;
	int64_t left = -1;
	size_t slen, mlen;
	int i;

	if (c->deadline_ns >= 0) {
		left = time_left_ms(c, loop_now(cl->loop));
		if (left <= 0)
			return -ETIMEDOUT;
	}
	if (c->ntried == CLUSTER_TRIED_MAX)
		return -EHOSTDOWN;
	if (c->ntried) {
		skip = cl->n <= ARRAY_SIZE(skip_buf)
			   ? skip_buf
			   : mem_zalloc(cl->opt.mem, cl->n * sizeof(*skip));
		if (!skip)
			return -ENOMEM;
		/* By address only: an instance tried may have left the set
		 * and been freed since. */
		for (size_t j = 0; j < cl->n; j++) {
			skip[j] = false;
			for (int k = 0; k < c->ntried; k++)
				if (c->tried[k] == cl->set[j])
					skip[j] = true;
		}
	}
	i = lb_select(&cl->lb, skip, c->has_code, c->code);
	if (skip && skip != skip_buf)
		mem_free(cl->opt.mem, skip);
	if (i < 0)
		return i;
	in = cl->set[i];
	slen = strlen(c->service) + 1;
	mlen = strlen(c->method) + 1;
	a = mem_alloc(cl->opt.mem, sizeof(*a) + slen + mlen);
	if (!a)
		return -ENOMEM;
	memcpy(a->service, c->service, slen);
	a->method = a->service + slen;
	memcpy(a->method, c->method, mlen);
	rpc_call_init(&a->rc, cl->opt.pool);
	if (iobuf_share(&a->rc.body, &c->body, 0, iobuf_len(&c->body)) ||
	    iobuf_share(&a->rc.request_attachment, &c->attachment, 0,
			iobuf_len(&c->attachment))) {
		rpc_call_destroy(&a->rc);
		mem_free(cl->opt.mem, a);
		return -ENOMEM;
	}
	a->rc.compress_type = c->compress_type;
	a->rc.has_log_id = c->has_log_id;
	a->rc.log_id = c->log_id;
	a->rc.has_request_crc = c->has_crc;
	memcpy(a->rc.request_crc, c->crc, sizeof(c->crc));
	a->rc.timeout_ms = left > INT32_MAX ? INT32_MAX : (int)left;
	a->rc.max_retry = 0;
	a->rc.backup_request_ms = -1;
	a->owner = c;
	a->inst = in;
	in->refs++;
	lb_server_begin(&in->lbs);
	metrics_counter_add(&in->m_calls, 1);
	c->live[c->nlive++] = a;
	c->tried[c->ntried++] = in;
	c->attempts++;
	/* Both NAMING_ADDR_MAX: the copy fits, NUL included. */
	memcpy(c->instance, in->node.addr, strlen(in->node.addr) + 1);
	channel_call_raw(&in->ch, a->service, a->method, &a->rc, attempt_done,
			 a);
	return 0;
}

/* A failed start: the call's error from attempt_start()'s. */
static void end_unstarted(struct cluster_call *c, int err)
{
	struct cluster *cl = c->cl;

	if (err == -ETIMEDOUT) {
		snprintf(c->text, sizeof(c->text), "Reached timeout=%dms @%s",
			 c->timeout_ms, cl->name);
		call_end(c, RPC_ERPCTIMEDOUT, c->text);
	} else if (err == -EINVAL) {
		snprintf(c->text, sizeof(c->text),
			 "%s balances by a request code and the call has "
			 "none (send a log_id)",
			 lb_kind_name(cl->opt.lb));
		call_end(c, RPC_EREQUEST, c->text);
	} else if (err == -ENOMEM) {
		call_end(c, ENOMEM, "no memory for the call");
	} else {
		snprintf(c->text, sizeof(c->text),
			 "Fail to select server from %s: %zu instances, "
			 "none healthy",
			 cl->name, cl->n);
		call_end(c, EHOSTDOWN, c->text);
	}
}

/* The budget allows one more retry (and spends it). */
static bool budget_take(struct cluster *cl)
{
	if (cl->opt.retry_budget_percent >= 100)
		return true;
	if (cl->budget < 1.0) {
		count(&cl->n_budget_denied);
		metrics_counter_add(&cl->m_budget_denied, 1);
		return false;
	}
	cl->budget -= 1.0;
	return true;
}

/* The attempt failed without an answer the client should see: retry on
 * another instance, or end with this error. */
static void retry_or_end(struct cluster_call *c, int code, const char *text,
			 bool from_server)
{
	struct cluster *cl = c->cl;
	int err;

	if (c->nlive)
		return; /* the other attempt may still answer */
	snprintf(c->text, sizeof(c->text), "%s", text);
	if (c->retries_left > 0 && !cl->closing && budget_take(cl)) {
		err = attempt_start(c);
		if (!err) {
			c->retries_left--;
			c->retries++;
			count(&cl->n_retries);
			metrics_counter_add(&cl->m_retries, 1);
			return;
		}
		/* Not sent: the budget keeps its retry. */
		cl->budget += 1.0;
		if (err == -ETIMEDOUT) {
			end_unstarted(c, err);
			return;
		}
	}
	/* No retry left, allowed, or anywhere to go: this error (an
	 * upstream's answer stays the upstream's). */
	c->error_from_server = from_server;
	call_end(c, code, c->text);
}

static void take_answer(struct cluster_call *c, struct rpc_call *rc)
{
	c->error_code = rc->error_code;
	c->error_from_server = rc->error_from_server;
	if (rc->error_code) {
		snprintf(c->text, sizeof(c->text), "%s", rc->error_text);
		c->error_text = c->text;
		return;
	}
	c->error_text = "";
	if (iobuf_append_buf(&c->response_body, &rc->response_body) ||
	    iobuf_append_buf(&c->response_attachment,
			     &rc->response_attachment)) {
		iobuf_reset(&c->response_body);
		iobuf_reset(&c->response_attachment);
		c->error_code = ENOMEM;
		c->error_text = "no memory for the answer";
		return;
	}
	c->response_compress_type = rc->response_compress_type;
	c->has_response_crc = rc->has_response_crc;
	memcpy(c->response_crc, rc->response_crc, sizeof(c->response_crc));
}

static void attempt_free(struct cl_attempt *a)
{
	struct cl_inst *in = a->inst;

	rpc_call_destroy(&a->rc);
	mem_free(in->cl->opt.mem, a);
	inst_unref(in);
}

/* The channel's done, on the cluster's loop. */
static void attempt_done(struct rpc_call *rc, void *arg)
{
	struct cl_attempt *a = arg;
	struct cluster_call *c = a->owner;
	struct cl_inst *in = a->inst;
	int code = rc->error_code;
	bool conn_failed =
	    code && !rc->error_from_server && is_conn_failure(code);
	bool retry_answer =
	    code && rc->error_from_server && is_retryable_answer(code);

	if (code == ECANCELED) /* cut short: says nothing of its speed */
		in->lbs.inflight -= in->lbs.inflight > 0;
	else
		lb_server_end(&in->lbs, rc->latency_us,
			      code && (conn_failed || retry_answer ||
				       code == RPC_ERPCTIMEDOUT));
	if (code && code != ECANCELED)
		metrics_counter_add(&in->m_errors, 1);
	if (code != ECANCELED)
		metrics_latency_record(
		    &in->m_latency,
		    rc->latency_us > 0 ? (uint64_t)rc->latency_us : 0);
	if (code != ECANCELED)
		cb_feed(in, code != 0);
	if (conn_failed || (retry_answer && code == RPC_ELOGOFF))
		isolate(in, code, rc->error_text);
	if (!c) {
		attempt_free(a);
		return;
	}
	for (int i = 0; i < c->nlive; i++)
		if (c->live[i] == a) {
			c->live[i] = c->live[--c->nlive];
			break;
		}
	if (conn_failed || retry_answer) {
		char text[CLUSTER_TEXT_MAX];

		/* rc goes with a: keep what the retry needs. */
		snprintf(text, sizeof(text), "%s", rc->error_text);
		attempt_free(a);
		retry_or_end(c, code, text, retry_answer);
		return;
	}
	if (code && !rc->error_from_server && c->nlive) {
		/* This one timed out or was cancelled; the backup runs. */
		attempt_free(a);
		return;
	}
	take_answer(c, rc);
	attempt_free(a);
	call_end(c, 0, NULL);
}

static void backup_due(struct loop_timer *t)
{
	struct cluster_call *c =
	    container_of(t, struct cluster_call, backup_timer);

	if (c->nlive != 1 || c->backup_sent)
		return;
	if (attempt_start(c) == 0) {
		c->backup_sent = true;
		count(&c->cl->n_backups);
		metrics_counter_add(&c->cl->m_backups, 1);
	}
}

/*
 * Recovery throttling (brpc's cluster recover policy, rr and random):
 * after every instance was down, while fewer than min_working_instances
 * take calls, a call goes through with probability usable / min and is
 * rejected otherwise, so the first instances back are not buried under
 * the whole load.  It ends when enough are back, or when the count of
 * usable ones has not changed for hold_seconds.
 */
static bool recovery_rejects(struct cluster *cl)
{
	int64_t now = loop_now(cl->loop);
	int min = cl->opt.min_working_instances;

	if (!cl->recovering)
		return false;
	if (cl->usable != cl->recover_usable) {
		cl->recover_usable = cl->usable;
		cl->recover_since_ns = now;
	}
	/* The hold counts only once some are back: an outage longer than
	 * hold_seconds must not end the recovery before it starts. */
	if (cl->usable >= min ||
	    (cl->usable > 0 && now - cl->recover_since_ns >=
				   cl->opt.hold_seconds * 1000 * NS_PER_MS)) {
		cl->recovering = false;
		cl_log_fmt(cl, LOG_LVL_INFO,
			   "recovered: %d instances take calls, none rejected "
			   "any more",
			   cl->usable);
		return false;
	}
	cl->rng ^= cl->rng << 13;
	cl->rng ^= cl->rng >> 7;
	cl->rng ^= cl->rng << 17;
	return (int)(cl->rng % (uint64_t)min) >= cl->usable;
}

static void start_task_fn(struct task *t)
{
	struct cluster_call *c = container_of(t, struct cluster_call, task);
	struct cluster *cl = c->cl;
	double earn = cl->opt.retry_budget_percent / 100.0;
	int err;

	if (cl->closing) {
		snprintf(c->text, sizeof(c->text), "cluster %s is closing",
			 cl->name);
		call_end(c, ECANCELED, c->text);
		return;
	}
	if (recovery_rejects(cl)) {
		count(&cl->n_rejected);
		snprintf(c->text, sizeof(c->text),
			 "Rejected by the recovery of %s: %d of %d working "
			 "instances",
			 cl->name, cl->usable, cl->opt.min_working_instances);
		call_end(c, RPC_EREJECT, c->text);
		return;
	}
	cl->budget += earn;
	if (cl->budget > CLUSTER_BUDGET_CAP)
		cl->budget = CLUSTER_BUDGET_CAP;
	err = attempt_start(c);
	if (err) {
		end_unstarted(c, err);
		return;
	}
	if (cl->opt.backup_request_ms > 0 && c->nlive)
		loop_timer_start(cl->loop, &c->backup_timer,
				 c->start_ns +
				     cl->opt.backup_request_ms * NS_PER_MS,
				 backup_due);
}

void cluster_call_init(struct cluster_call *c, struct iobuf_pool *pool)
{
	memset(c, 0, sizeof(*c));
	iobuf_init(&c->body, pool);
	iobuf_init(&c->attachment, pool);
	iobuf_init(&c->response_body, pool);
	iobuf_init(&c->response_attachment, pool);
	loop_timer_init(&c->backup_timer);
	c->error_text = "";
}

void cluster_call_destroy(struct cluster_call *c)
{
	iobuf_destroy(&c->body);
	iobuf_destroy(&c->attachment);
	iobuf_destroy(&c->response_body);
	iobuf_destroy(&c->response_attachment);
}

void cluster_call_start(struct cluster *cl, struct cluster_call *c,
			cluster_done_fn *done, void *arg)
{
	c->cl = cl;
	c->done = done;
	c->done_arg = arg;
	c->error_code = 0;
	c->error_text = "";
	c->error_from_server = false;
	c->text[0] = '\0';
	c->instance[0] = '\0';
	c->attempts = c->retries = 0;
	c->backup_sent = false;
	c->nlive = c->ntried = 0;
	c->has_response_crc = false;
	c->response_compress_type = 0;
	iobuf_reset(&c->response_body);
	iobuf_reset(&c->response_attachment);
	c->retries_left = cl->opt.max_retry;
	if (!c->timeout_ms)
		c->timeout_ms = cl->opt.timeout_ms;
	c->start_ns = clock_mono_ns();
	c->deadline_ns =
	    c->timeout_ms > 0 ? c->start_ns + c->timeout_ms * NS_PER_MS : -1;
	task_init(&c->task, start_task_fn);
	if (loop_on_thread(cl->loop))
		loop_defer(cl->loop, &c->task);
	else
		loop_post(cl->loop, &c->task);
}

/* ---- init, destroy -------------------------------------------------- */

static int options_check(const struct cluster_options *o, char *why,
			 size_t why_size)
{
	if (!o->rt || !o->pool || !o->name || !o->naming_url) {
		snprintf(why, why_size,
			 "cluster options miss rt, pool, name "
			 "or naming_url");
		return -EINVAL;
	}
	if (o->timeout_ms < -1 || o->timeout_ms == 0 || o->max_retry < 0 ||
	    o->max_retry >= CLUSTER_TRIED_MAX || o->backup_request_ms < -1 ||
	    o->backup_request_ms == 0 || o->health_check_interval_ms <= 0 ||
	    o->retry_budget_percent < 0 || o->retry_budget_percent > 100 ||
	    o->reload_interval_ms <= 0 || o->dns_interval_ms <= 0 ||
	    o->min_working_instances < 0 || o->hold_seconds < 0) {
		snprintf(why, why_size,
			 "cluster %s: timeout_ms, max_retry (0..%d), "
			 "backup_request_ms, health_check_interval_ms, "
			 "retry_budget_percent (0..100) or reload_interval_ms "
			 "out of range",
			 o->name, CLUSTER_TRIED_MAX - 1);
		return -EINVAL;
	}
	if (o->min_working_instances > 0 &&
	    ((o->lb != LB_RR && o->lb != LB_RANDOM) || o->hold_seconds <= 0)) {
		snprintf(why, why_size,
			 "cluster %s: min_working_instances needs lb rr or "
			 "random and hold_seconds > 0 (as brpc's recover "
			 "policy)",
			 o->name);
		return -EINVAL;
	}
	return 0;
}

static void register_metrics(struct cluster *cl)
{
	struct metrics *m = cl->opt.metrics;

	metrics_counter_init(&cl->m_calls);
	metrics_counter_init(&cl->m_errors);
	metrics_counter_init(&cl->m_retries);
	metrics_counter_init(&cl->m_backups);
	metrics_counter_init(&cl->m_budget_denied);
	metrics_counter_init(&cl->m_breaker_trips);
	metrics_gauge_init(&cl->m_instances);
	metrics_gauge_init(&cl->m_healthy);
	metrics_latency_init(&cl->m_latency);
	snprintf(cl->labels, sizeof(cl->labels), "route=\"%s\"", cl->name);
	if (!m)
		return;
	metrics_register_counter(m, &cl->m_calls, "rpcgate_route_calls_total",
				 "calls forwarded on a route", cl->labels);
	metrics_register_counter(m, &cl->m_errors, "rpcgate_route_errors_total",
				 "calls of a route that failed", cl->labels);
	metrics_register_counter(
	    m, &cl->m_retries, "rpcgate_route_retries_total",
	    "attempts sent again to another instance", cl->labels);
	metrics_register_counter(m, &cl->m_backups,
				 "rpcgate_route_backups_total",
				 "backup requests sent", cl->labels);
	metrics_register_counter(
	    m, &cl->m_budget_denied, "rpcgate_route_retry_budget_denied_total",
	    "retries the retry budget refused", cl->labels);
	metrics_register_counter(
	    m, &cl->m_breaker_trips, "rpcgate_route_breaker_trips_total",
	    "instances the circuit breaker isolated", cl->labels);
	metrics_register_gauge(m, &cl->m_instances, "rpcgate_route_instances",
			       "instances named", cl->labels);
	metrics_register_gauge(m, &cl->m_healthy,
			       "rpcgate_route_instances_healthy",
			       "instances taking calls", cl->labels);
	metrics_register_latency(m, &cl->m_latency, "rpcgate_route_latency_us",
				 "latency of forwarded calls", cl->labels);
}

static void unregister_metrics(struct cluster *cl)
{
	metrics_unregister(&cl->m_calls.node);
	metrics_unregister(&cl->m_errors.node);
	metrics_unregister(&cl->m_retries.node);
	metrics_unregister(&cl->m_backups.node);
	metrics_unregister(&cl->m_budget_denied.node);
	metrics_unregister(&cl->m_breaker_trips.node);
	metrics_unregister(&cl->m_instances.node);
	metrics_unregister(&cl->m_healthy.node);
	metrics_unregister(&cl->m_latency.node);
	for (int i = 0; i < cl->ncodes; i++)
		metrics_unregister(&cl->codes[i].c.node);
}

/* dns_done_fn of the first resolution (loop): hands the answer to
 * cluster_init. */
static void dns_first(void *arg, int err, const struct naming_list *l,
		      const char *why)
{
	struct cluster *cl = arg;

	if (!err)
		err = take_names(cl, l);
	pthread_mutex_lock(&cl->lock);
	cl->first_err = err;
	snprintf(cl->first_why, sizeof(cl->first_why), "%s",
		 why && why[0] ? why : strerror(-err));
	cl->first_resolved = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void first_resolve_task(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_task);

	dns_resolve(&cl->dns, cl->host, cl->port, dns_first, cl);
}

static void wait_flag(struct cluster *cl, bool *flag);

/* Owner thread: resolves the name once, on the loop, and waits. */
static int first_resolve(struct cluster *cl, char *why, size_t why_size)
{
	task_init(&cl->reload_task, first_resolve_task);
	loop_post(cl->loop, &cl->reload_task);
	wait_flag(cl, &cl->first_resolved);
	if (cl->first_err)
		snprintf(why, why_size, "%s: %s", cl->url, cl->first_why);
	return cl->first_err;
}

/* The first list (init): read, open channels, make it the set. */
static int first_names(struct cluster *cl, const char *rest, char *why,
		       size_t why_size)
{
	unsigned skipped = 0;
	int err;

	if (cl->scheme == NAMING_LIST)
		err = naming_parse(rest, ',', &cl->next_names, &skipped, why,
				   why_size);
	else if (cl->scheme == NAMING_DNS)
		err = first_resolve(cl, why, why_size);
	else
		err = naming_read_file(cl->path, &cl->next_names, &skipped, why,
				       why_size);
	if (err)
		return err;
	if (skipped && cl->scheme == NAMING_LIST) {
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "%s", why);
		snprintf(why, why_size, "%s: %s", cl->url, tmp);
		return -EINVAL;
	}
	if (skipped)
		cl_log_fmt(cl, LOG_LVL_WARN, "%s: %u entries skipped: %s",
			   cl->path, skipped, why);
	naming_filter_tag(&cl->next_names, cl->opt.tag);
	if (cl->scheme != NAMING_FILE && !cl->next_names.n) {
		snprintf(why, why_size, "%s names no instance%s%s", cl->url,
			 cl->opt.tag ? " with tag " : "",
			 cl->opt.tag ? cl->opt.tag : "");
		return -EINVAL;
	}
	if (cl->scheme == NAMING_FILE)
		file_changed(cl); /* remember the file as read */
	err = open_fresh(cl);
	if (err)
		return err;
	if (cl->scheme != NAMING_FILE && !cl->next_names.n) {
		snprintf(why, why_size, "%s: no instance could be set up",
			 cl->url);
		return -EINVAL;
	}
	return 0;
}

static void first_apply_task(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, apply_task);

	if (apply_names(cl))
		cl_log_fmt(cl, LOG_LVL_ERROR,
			   "no memory for the first instances");
	reload_arm(cl);
	pthread_mutex_lock(&cl->lock);
	cl->first_applied = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void wait_flag(struct cluster *cl, bool *flag)
{
	pthread_mutex_lock(&cl->lock);
	while (!*flag)
		pthread_cond_wait(&cl->cond, &cl->lock);
	pthread_mutex_unlock(&cl->lock);
}

int cluster_init(struct cluster *cl, const struct cluster_options *opt,
		 char *why, size_t why_size)
{
	const char *rest;
	int err;

	err = options_check(opt, why, why_size);
	if (err)
		return err;
	memset(cl, 0, sizeof(*cl));
	cl->opt = *opt;
	cl->opt.mem = mem_or_default(opt->mem);
	snprintf(cl->name, sizeof(cl->name), "%s", opt->name);
	cl->opt.name = cl->name;
	snprintf(cl->url, sizeof(cl->url), "%s", opt->naming_url);
	cl->opt.naming_url = cl->url;
	err = naming_url_split(cl->url, &cl->scheme, &rest, why, why_size);
	if (err)
		return err;
	if (cl->scheme == NAMING_FILE)
		cl->path = rest;
	if (cl->scheme == NAMING_DNS &&
	    naming_dns_target(rest, cl->host, sizeof(cl->host), &cl->port)) {
		snprintf(why, why_size,
			 "naming URL \"%s\": expected http://HOST[:PORT]",
			 cl->url);
		return -EINVAL;
	}
	pthread_mutex_init(&cl->lock, NULL);
	pthread_cond_init(&cl->cond, NULL);
	naming_list_init(&cl->names, cl->opt.mem);
	naming_list_init(&cl->next_names, cl->opt.mem);
	loop_timer_init(&cl->reload_timer);
	lb_init(&cl->lb, opt->lb, cl->opt.mem,
		(uint64_t)clock_mono_ns() ^ (uintptr_t)cl);
	cl->budget = CLUSTER_BUDGET_RESERVE;
	cl->rng = (uint64_t)clock_mono_ns() | 1;
	cl->loop = rt_loop_for(opt->rt, (unsigned)((uintptr_t)cl >> 6));
	register_metrics(cl);
	if (cl->scheme == NAMING_DNS) {
		err = dns_init(&cl->dns, cl->loop, opt->dns_servers,
			       opt->chan.connect_timeout_ms * 5, cl->opt.mem,
			       why, why_size);
		if (err) {
			cluster_destroy(cl);
			return err;
		}
		cl->dns_up = true;
	}
	err = first_names(cl, rest, why, why_size);
	if (err) {
		drop_fresh(cl); /* not on the loop, but it runs nothing yet */
		cluster_destroy(cl);
		return err;
	}
	task_init(&cl->apply_task, first_apply_task);
	loop_post(cl->loop, &cl->apply_task);
	wait_flag(cl, &cl->first_applied);
	cl_log_fmt(cl, LOG_LVL_INFO, "%zu instances from %s, balanced by %s",
		   cl->n, cl->url, lb_kind_name(opt->lb));
	return 0;
}

/* Loop: stop timers and probes, let the set go. */
static void quiesce_task_fn(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, quiesce_task);

	cl->closing = true;
	if (cl->dns_up)
		dns_destroy(&cl->dns); /* a lookup under way ends here */
	cl->dns_up = false;
	if (loop_timer_active(&cl->reload_timer))
		loop_timer_stop(cl->loop, &cl->reload_timer);
	set_replace(cl, NULL, 0);
	pthread_mutex_lock(&cl->lock);
	cl->quiesced = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

void cluster_destroy(struct cluster *cl)
{
	if (cl->loop) {
		task_init(&cl->quiesce_task, quiesce_task_fn);
		loop_post(cl->loop, &cl->quiesce_task);
		wait_flag(cl, &cl->quiesced);
		/* A reload under way hands its instances back on apply. */
		pthread_mutex_lock(&cl->lock);
		while (cl->nalive > 0 || cl->reloading)
			pthread_cond_wait(&cl->cond, &cl->lock);
		pthread_mutex_unlock(&cl->lock);
	}
	unregister_metrics(cl);
	lb_destroy(&cl->lb);
	mem_free(cl->opt.mem, cl->set);
	mem_free(cl->opt.mem, cl->lbs);
	cl->set = NULL;
	cl->lbs = NULL;
	naming_list_free(&cl->names);
	naming_list_free(&cl->next_names);
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->cond);
}

void cluster_stats(struct cluster *cl, struct cluster_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->calls = __atomic_load_n(&cl->n_calls, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&cl->n_errors, __ATOMIC_RELAXED);
	out->retries = __atomic_load_n(&cl->n_retries, __ATOMIC_RELAXED);
	out->backups = __atomic_load_n(&cl->n_backups, __ATOMIC_RELAXED);
	out->budget_denied =
	    __atomic_load_n(&cl->n_budget_denied, __ATOMIC_RELAXED);
	out->isolations = __atomic_load_n(&cl->n_isolations, __ATOMIC_RELAXED);
	out->rejoins = __atomic_load_n(&cl->n_rejoins, __ATOMIC_RELAXED);
	out->reloads = __atomic_load_n(&cl->n_reloads, __ATOMIC_RELAXED);
	out->breaker_trips =
	    __atomic_load_n(&cl->n_breaker_trips, __ATOMIC_RELAXED);
	out->rejected = __atomic_load_n(&cl->n_rejected, __ATOMIC_RELAXED);
	out->instances = (int)metrics_gauge_get(&cl->m_instances);
	out->healthy = (int)metrics_gauge_get(&cl->m_healthy);
}
