/*
 * cluster: calls over a cluster of instances (see cluster.h): options,
 * the calls (attempts, retries, backups, the budget, recovery
 * throttling), init and destroy.  The instances and their health live in
 * cluster_inst.c, the set and where it comes from in cluster_names.c.
 *
 * An attempt (cl_attempt) holds a reference on its instance and lives
 * from its start to its channel's done callback; when its call
 * ends without it (the other attempt of a backup pair answered first),
 * it is cancelled and orphaned (owner NULL) and frees itself when its
 * done comes.
 */
#include "cluster.h"
#include "cluster_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/rpc_errno.h"

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

void cl_count(uint64_t *ctr)
{
	__atomic_fetch_add(ctr, 1, __ATOMIC_RELAXED);
}

void cl_log(struct cluster *cl, enum log_level lvl, const char *fmt, ...)
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
	cl_count(&cl->n_calls);
	metrics_counter_add(&cl->m_calls, 1);
	if (c->error_code) {
		cl_count(&cl->n_errors);
		metrics_counter_add(&cl->m_errors, 1);
		count_error_code(cl, c->error_code);
	}
	metrics_latency_record(&cl->m_latency, (uint64_t)c->latency_us);
	c->done(c, c->done_arg); /* may free c */
}

static void attempt_done(struct rpc_call *rc, void *arg);

static int64_t time_left_ms(const struct cluster_call *c, int64_t now)
{
	return (c->deadline_ns - now + CLOCK_NS_PER_MS - 1) / CLOCK_NS_PER_MS;
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
		cl_count(&cl->n_budget_denied);
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
			cl_count(&cl->n_retries);
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
	cl_inst_unref(in);
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
	/* Its connection is full of requests it does not read (stopped,
	 * swapping): elsewhere, and isolated like a failed connection until
	 * the health check takes it back, so new calls go elsewhere without
	 * spending the retry budget. */
	bool overcrowded = code == RPC_EOVERCROWDED && !rc->error_from_server;

	if (code == ECANCELED) /* cut short: says nothing of its speed */
		in->lbs.inflight -= in->lbs.inflight > 0;
	else
		lb_server_end(&in->lbs, rc->latency_us,
			      code && (conn_failed || retry_answer ||
				       overcrowded || code == RPC_ERPCTIMEDOUT));
	if (code && code != ECANCELED)
		metrics_counter_add(&in->m_errors, 1);
	if (code != ECANCELED)
		metrics_latency_record(
		    &in->m_latency,
		    rc->latency_us > 0 ? (uint64_t)rc->latency_us : 0);
	if (code != ECANCELED)
		cl_cb_feed(in, code != 0);
	if (conn_failed || overcrowded ||
	    (retry_answer && code == RPC_ELOGOFF))
		cl_isolate(in, code, rc->error_text);
	if (!c) {
		attempt_free(a);
		return;
	}
	for (int i = 0; i < c->nlive; i++)
		if (c->live[i] == a) {
			c->live[i] = c->live[--c->nlive];
			break;
		}
	if (conn_failed || retry_answer || overcrowded) {
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
		cl_count(&c->cl->n_backups);
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
	    (cl->usable > 0 &&
	     now - cl->recover_since_ns >=
		 cl->opt.hold_seconds * 1000 * CLOCK_NS_PER_MS)) {
		cl->recovering = false;
		cl_log(cl, LOG_LVL_INFO,
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
		cl_count(&cl->n_rejected);
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
				 c->start_ns + cl->opt.backup_request_ms *
						   CLOCK_NS_PER_MS,
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
	c->deadline_ns = c->timeout_ms > 0
			     ? c->start_ns + c->timeout_ms * CLOCK_NS_PER_MS
			     : -1;
	task_init(&c->task, start_task_fn);
	if (loop_on_thread(cl->loop))
		loop_defer(cl->loop, &c->task);
	else
		loop_post(cl->loop, &c->task);
}

struct channel_stream *cluster_stream_open(struct cluster *cl,
					   const char *service,
					   const char *method, int timeout_ms,
					   const char *metadata, const char *avoid,
					   const struct channel_stream_ops *ops,
					   void *arg, char *instance, int *err)
{
	bool skip_buf[64] = {false}, *skip = NULL;
	struct cl_inst *in;
	int i;

	instance[0] = '\0';
	if (cl->closing) {
		*err = -ECANCELED;
		return NULL;
	}
	if (avoid && cl->n > 1 && cl->n <= ARRAY_SIZE(skip_buf)) {
		skip = skip_buf;
		for (size_t j = 0; j < cl->n; j++)
			skip[j] = !strcmp(cl->set[j]->node.addr, avoid);
	}
	i = lb_select(&cl->lb, skip, false, 0);
	if (i < 0 && skip) /* only the one to avoid takes calls */
		i = lb_select(&cl->lb, NULL, false, 0);
	if (i < 0) {
		*err = -EHOSTDOWN;
		return NULL;
	}
	in = cl->set[i];
	metrics_counter_add(&in->m_calls, 1);
	memcpy(instance, in->node.addr, strlen(in->node.addr) + 1);
	return channel_stream_open(&in->ch, service, method,
				   timeout_ms ? timeout_ms : cl->opt.timeout_ms,
				   metadata, ops, arg, err);
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

void cl_wait_flag(struct cluster *cl, bool *flag)
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
	    naming_dns_target(rest, cl->host, sizeof(cl->host), &cl->port,
			      naming_url_tls(cl->url) ? 443 : 80)) {
		snprintf(why, why_size,
			 "naming URL \"%s\": expected http[s]://HOST[:PORT]",
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
	err = cl_first_names(cl, rest, why, why_size);
	if (err) {
		cl_drop_fresh(
		    cl); /* not on the loop, but it runs nothing yet */
		cluster_destroy(cl);
		return err;
	}
	task_init(&cl->apply_task, cl_first_apply_task);
	loop_post(cl->loop, &cl->apply_task);
	cl_wait_flag(cl, &cl->first_applied);
	cl_log(cl, LOG_LVL_INFO, "%zu instances from %s, balanced by %s", cl->n,
	       cl->url, lb_kind_name(opt->lb));
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
	cl_set_replace(cl, NULL, 0);
	pthread_mutex_lock(&cl->lock);
	cl->quiesced = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

void cluster_destroy(struct cluster *cl)
{
	if (cl->etcd_up) { /* no change comes after this */
		metrics_unregister(&cl->etcd.m_down.node);
		etcd_watch_stop(&cl->etcd);
		cl->etcd_up = false;
	}
	if (cl->consul_up) {
		metrics_unregister(&cl->consul.m_down.node);
		consul_watch_stop(&cl->consul);
		cl->consul_up = false;
	}
	if (cl->loop) {
		task_init(&cl->quiesce_task, quiesce_task_fn);
		loop_post(cl->loop, &cl->quiesce_task);
		cl_wait_flag(cl, &cl->quiesced);
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
