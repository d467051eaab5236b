/* consul: consul:// naming through the agent's HTTP API (see consul.h). */
#include "consul.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/util.h"

/* ---- the watch ----------------------------------------------------- */

static void c_log(struct consul_watch *w, enum log_level lvl, const char *fmt,
		  ...) __attribute__((format(printf, 3, 4)));

static void c_log(struct consul_watch *w, enum log_level lvl, const char *fmt,
		  ...)
{
	char buf[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_write(w->log, lvl, "naming %s: %s", w->name, buf);
}

static void c_signal(struct consul_watch *w, bool *flag)
{
	pthread_mutex_lock(&w->lock);
	*flag = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void c_go(struct consul_watch *w);

static void c_retry(struct loop_timer *t)
{
	c_go(container_of(t, struct consul_watch, retry));
}

/* A new list: to the owner at start, to `changed` after. */
static void c_deliver(struct consul_watch *w, struct naming_list *l)
{
	struct naming_list tmp = w->list;

	w->list = *l;
	*l = tmp;
	if (!w->first_done) {
		struct naming_list *f = w->first;

		w->first_err = 0;
		if (w->list.n > f->cap) {
			struct naming_node *v =
			    mem_alloc(f->mem, w->list.n * sizeof(*v));

			if (!v) {
				w->first_err = -ENOMEM;
				snprintf(w->first_why, sizeof(w->first_why),
					 "no memory");
			} else {
				mem_free(f->mem, f->v);
				f->v = v;
				f->cap = w->list.n;
			}
		}
		if (!w->first_err) {
			if (w->list.n)
				memcpy(f->v, w->list.v,
				       w->list.n * sizeof(*f->v));
			f->n = w->list.n;
		}
		c_signal(w, &w->first_done);
		return;
	}
	w->changed(w->arg, &w->list);
}

/* The file DIR/SERVICE once, when the agent fails before anything was
 * known (brpc's degrade).  True when it gave a list. */
static bool c_degrade(struct consul_watch *w)
{
	char path[800], why[400];
	struct naming_list l;
	unsigned skipped = 0;

	if (!w->degrade_dir[0] || w->degraded || w->index[0])
		return false;
	w->degraded = true;
	snprintf(path, sizeof(path), "%s%s%s", w->degrade_dir,
		 w->degrade_dir[strlen(w->degrade_dir) - 1] == '/' ? "" : "/",
		 w->service);
	naming_list_init(&l, w->mem);
	if (naming_read_file(path, &l, &skipped, why, sizeof(why))) {
		c_log(w, LOG_LVL_WARN, "degrading to %s: %s", path, why);
		naming_list_free(&l);
		return false;
	}
	c_log(w, LOG_LVL_WARN,
	      "the agent does not answer: %zu instances from %s until it "
	      "does",
	      l.n, path);
	c_deliver(w, &l);
	naming_list_free(&l);
	return true;
}

static void c_end(struct etcd_http *h, int err)
{
	struct consul_watch *w = h->arg;

	if (w->stopped)
		return;
	if (!err) {
		c_go(w); /* the next blocking query */
		return;
	}
	if (!w->failing) {
		int64_t now = clock_wall_ns();

		w->down_since_ns = now;
		metrics_gauge_set(&w->m_down, now / CLOCK_NS_PER_S);
		c_log(w, LOG_LVL_WARN,
		      "%s; keeping the %zu instances known, trying again "
		      "every %d ms",
		      h->why, w->list.n, CONSUL_RETRY_MS);
	}
	w->failing = true;
	if (!w->first_done && !c_degrade(w)) {
		w->first_err = err;
		snprintf(w->first_why, sizeof(w->first_why), "%s", h->why);
		c_signal(w, &w->first_done);
		return;
	}
	loop_timer_start(w->loop, &w->retry,
			 loop_now(w->loop) + CONSUL_RETRY_MS * CLOCK_NS_PER_MS,
			 c_retry);
}

static int c_msg(struct etcd_http *h, const char *p, size_t n)
{
	struct consul_watch *w = h->arg;
	struct naming_list l;
	unsigned skipped;
	char why[200];
	int err;

	if (w->failing) {
		c_log(w, LOG_LVL_INFO, "the agent answers again");
		metrics_gauge_set(&w->m_down, 0);
		w->failing = false;
	}
	if (!h->header_value[0]) {
		snprintf(h->why, sizeof(h->why),
			 "consul agent %s: an answer without X-Consul-Index",
			 h->member);
		return -EBADMSG;
	}
	if (w->first_done && !strcmp(h->header_value, w->index))
		return 0; /* the wait ended, nothing changed */
	naming_list_init(&l, w->mem);
	err = consul_parse(p, n, &l, &skipped, &w->scratch, why, sizeof(why));
	if (err) {
		snprintf(h->why, sizeof(h->why), "consul agent %s: %s",
			 h->member, err == -EBADMSG ? why : strerror(-err));
		naming_list_free(&l);
		return err;
	}
	if (skipped)
		c_log(w, LOG_LVL_WARN, "%u elements skipped: %s", skipped, why);
	snprintf(w->index, sizeof(w->index), "%s", h->header_value);
	if (!l.n && skipped) {
		c_log(w, LOG_LVL_ERROR,
		      "every element is bad: keeping the %zu instances known",
		      w->list.n);
		naming_list_free(&l);
		if (!w->first_done) {
			snprintf(h->why, sizeof(h->why),
				 "consul agent %s: every element is bad",
				 h->member);
			return -EBADMSG;
		}
		return 0;
	}
	c_deliver(w, &l);
	naming_list_free(&l);
	return 0;
}

static void c_go(struct consul_watch *w)
{
	char path[1200];
	int err;

	if (w->stopped)
		return;
	if (w->index[0])
		snprintf(path, sizeof(path), "%s%sindex=%s&wait=%ds", w->path,
			 strchr(w->path, '?') ? "&" : "?", w->index,
			 w->opt.wait_s);
	else
		snprintf(path, sizeof(path), "%s", w->path);
	/* A blocking query answers within its wait (consul adds up to
	 * wait/16 of jitter). */
	w->h.timeout_ms = w->index[0] ? w->opt.wait_s * 1000 + 10000 : 0;
	err = etcd_http_start(&w->h, &w->t, 0, path, NULL, false);
	if (err)
		c_end(&w->h, err);
}

static void c_start_task(struct task *t)
{
	c_go(container_of(t, struct consul_watch, start_task));
}

int consul_watch_start(struct consul_watch *w, const char *service,
		       const struct consul_options *opt, struct loop *loop,
		       struct log *log, const char *name,
		       etcd_changed_fn *changed, void *arg,
		       struct naming_list *first, char *why, size_t why_size)
{
	const char *agent = opt->agent;
	char rest[600];
	int err;

	memset(w, 0, sizeof(*w));
	w->opt = *opt;
	if (!strncmp(agent, "http://", 7))
		agent += 7;
	if (!*service || strlen(service) >= sizeof(w->service) ||
	    strpbrk(service, "/?&# ")) {
		snprintf(why, why_size, "consul://%s: expected consul://SERVICE",
			 service);
		return -EINVAL;
	}
	snprintf(rest, sizeof(rest), "%.*s/", (int)strcspn(agent, "/"), agent);
	err = etcd_target_parse(rest, &w->t, why, why_size);
	if (err)
		return err;
	if (w->t.n != 1) {
		snprintf(why, why_size, "consul_agent_addr: one agent");
		return -EINVAL;
	}
	snprintf(w->service, sizeof(w->service), "%s", service);
	snprintf(w->path, sizeof(w->path), "/v1/health/service/%s%s", service,
		 opt->params ? opt->params : "");
	snprintf(w->degrade_dir, sizeof(w->degrade_dir), "%s",
		 opt->degrade_dir ? opt->degrade_dir : "");
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->loop = loop;
	w->mem = first->mem;
	w->log = log;
	w->changed = changed;
	w->arg = arg;
	w->first = first;
	etcd_http_init(&w->h, loop, w->mem);
	w->h.on_end = c_end;
	w->h.on_msg = c_msg;
	w->h.arg = w;
	w->h.header = "X-Consul-Index";
	loop_timer_init(&w->retry);
	metrics_gauge_init(&w->m_down);
	naming_list_init(&w->list, w->mem);
	fbuf_init(&w->scratch, w->mem, 0);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	task_init(&w->start_task, c_start_task);
	loop_post(loop, &w->start_task);
	pthread_mutex_lock(&w->lock);
	while (!w->first_done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	if (w->first_err) {
		snprintf(why, why_size, "%s", w->first_why);
		err = w->first_err;
		consul_watch_stop(w);
		return err;
	}
	return 0;
}

static void c_stop_task(struct task *t)
{
	struct consul_watch *w = container_of(t, struct consul_watch, stop_task);

	w->stopped = true;
	etcd_http_cancel(&w->h);
	if (loop_timer_active(&w->retry))
		loop_timer_stop(w->loop, &w->retry);
	c_signal(w, &w->stop_done);
}

void consul_watch_stop(struct consul_watch *w)
{
	if (!w->loop)
		return;
	task_init(&w->stop_task, c_stop_task);
	loop_post(w->loop, &w->stop_task);
	pthread_mutex_lock(&w->lock);
	while (!w->stop_done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	etcd_http_destroy(&w->h);
	naming_list_free(&w->list);
	fbuf_destroy(&w->scratch);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	w->loop = NULL;
}

const struct naming_list *consul_watch_list(struct consul_watch *w)
{
	return &w->list;
}
