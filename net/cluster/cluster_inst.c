/*
 * cluster_inst: one instance of a cluster (see cluster_int.h): its
 * channel, the connect (and health_check_path) probe while it is
 * isolated, the circuit breaker, its figures.
 *
 * Lifetime: referenced by the set while in it and by each attempt in
 * flight on it; the last reference (loop thread) hands it to a task
 * worker, which closes its channel (channel_destroy waits, which a loop
 * must not) and frees it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "cluster_int.h"

/* Loop thread: usable instances changed.  No one usable starts the
 * recovery (min_working_instances). */
void cl_update_gauges(struct cluster *cl)
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
		cl_log(cl, LOG_LVL_WARN,
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
struct cl_inst *cl_inst_new(struct cluster *cl, const struct naming_node *node,
			    char *why, size_t why_size)
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
			cl_log(cl, LOG_LVL_WARN,
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

void cl_probe_stop(struct cl_inst *in)
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

void cl_inst_unref(struct cl_inst *in)
{
	if (--in->refs > 0)
		return;
	cl_probe_stop(in);
	if (loop_timer_active(&in->cb_timer))
		loop_timer_stop(in->cl->loop, &in->cb_timer);
	task_init(&in->free_task, inst_free_task);
	if (rt_submit(in->cl->opt.rt, &in->free_task)) {
		/* Workers gone (the rt stopping): closing the channel here,
		 * on its own loop, would wait forever.  Left for the exit. */
		cl_log(in->cl, LOG_LVL_ERROR,
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

	cl_probe_stop(in);
	if (cl->closing || !in->in_set)
		return;
	loop_timer_start(cl->loop, &in->probe_timer,
			 loop_now(cl->loop) +
			     cl->opt.health_check_interval_ms * CLOCK_NS_PER_MS,
			 probe_due);
}

static void rejoin(struct cl_inst *in)
{
	struct cluster *cl = in->cl;

	cl_probe_stop(in);
	in->down = false;
	in->probe_logged = false;
	in->lbs.usable = !in->broken;
	cl_count(&cl->n_rejoins);
	metrics_gauge_set(&in->m_healthy, in->lbs.usable);
	cl_update_gauges(cl);
	cl_log(cl, LOG_LVL_INFO,
	       "instance %s is back after %lld ms: it takes calls again",
	       in->key,
	       (long long)((loop_now(cl->loop) - in->isolated_ns) /
			   CLOCK_NS_PER_MS));
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
			cl_log(cl, LOG_LVL_WARN,
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
			     CLUSTER_PROBE_ANSWER_MS * CLOCK_NS_PER_MS,
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
			     cl->opt.chan.connect_timeout_ms * CLOCK_NS_PER_MS,
			 probe_timeout);
}

void cl_isolate(struct cl_inst *in, int code, const char *text)
{
	struct cluster *cl = in->cl;

	if (in->down)
		return;
	in->down = true;
	in->lbs.usable = false;
	in->isolated_ns = loop_now(cl->loop);
	cl_count(&cl->n_isolations);
	metrics_gauge_set(&in->m_healthy, 0);
	cl_update_gauges(cl);
	cl_log(cl, LOG_LVL_WARN,
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
	cl_update_gauges(cl);
	cl_log(cl, LOG_LVL_INFO,
	       "circuit breaker: instance %s takes calls again after %d "
	       "ms",
	       in->key, in->cb_isolation_ms);
}

/* One call's end on instance `in`: trips the breaker when the recent
 * error rate is over CLUSTER_CB_ERROR_PERCENT. */
void cl_cb_feed(struct cl_inst *in, bool failed)
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
	    now - in->cb_last_trip_ns < CLUSTER_CB_REPEAT_MS * CLOCK_NS_PER_MS)
		in->cb_isolation_ms =
		    in->cb_isolation_ms * 2 > CLUSTER_CB_MAX_ISOLATION_MS
			? CLUSTER_CB_MAX_ISOLATION_MS
			: in->cb_isolation_ms * 2;
	else
		in->cb_isolation_ms = CLUSTER_CB_MIN_ISOLATION_MS;
	in->cb_last_trip_ns = now;
	in->broken = true;
	in->lbs.usable = false;
	cl_count(&cl->n_breaker_trips);
	metrics_counter_add(&cl->m_breaker_trips, 1);
	metrics_gauge_set(&in->m_healthy, 0);
	cl_update_gauges(cl);
	cl_log(cl, LOG_LVL_WARN,
	       "circuit breaker: instance %s isolated for %d ms: %.0f%% of "
	       "its recent calls failed",
	       in->key, in->cb_isolation_ms, in->err_ema * 100);
	loop_timer_start(cl->loop, &in->cb_timer,
			 now + in->cb_isolation_ms * CLOCK_NS_PER_MS, cb_end);
}
