/*
 * gw_stream: the gateway's gRPC -> gRPC calls, forwarded as streams,
 * message by message (unary calls too: a stream of one message each
 * way).  A gRPC request whose route speaks gRPC (;protocol=grpc) is a
 * pair of streams:
 *
 *   down  the client's, a server stream (net/rpc/server.h) on the loop
 *         that read it
 *   up    the upstream's, a channel stream (net/rpc/channel.h) to an
 *         instance the route's balancer picks, on the cluster's loop
 *
 * and two pipes of whole messages between the loops, under one lock,
 * each drained by a task on its sink's loop:
 *
 *   to_up    down's messages -> channel_stream_write(); the client's
 *            end -> channel_stream_end() after the last
 *   to_down  up's messages -> server_stream_write(); the upstream's
 *            status finishes the client's stream after the last
 *
 * Back-pressure, end to end: a pipe past GW_PIPE_HIGH pauses its source
 * (no more HTTP/2 window for it) until its sink's loop drains it below
 * GW_PIPE_LOW; a sink whose own queue is past its high mark takes no
 * more from the pipe until its on_writable.  The client going (reset,
 * deadline, connection lost) cancels the upstream's stream; the
 * upstream failing finishes the client's with its code and text.
 *
 * Metadata passes too: the client's (less what the channel sets itself)
 * goes with the upstream's request; the upstream's headers go with the
 * first answer, its trailers with the status.
 *
 * Retries: until the upstream's first answer, what was sent upstream is
 * kept (up to GW_REPLAY_MAX); a stream whose connection fails then
 * (EFAILEDSOCKET: refused, reset, a dead instance) is opened again on
 * another instance, as the route's max_retry allows, and the kept
 * messages are sent again.  Once an answer came, or more was sent than
 * is kept, a failure is the client's to see.  (Envoy retries gRPC the
 * same way: before the response starts.)
 *
 * The pair lives while either stream or a posted task does (refs).  The
 * time allowed is the client's grpc-timeout bounded by the route's
 * timeout_ms, as for unary calls: long-lived streams want a route with
 * ;timeout_ms=-1.
 */
#include "gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/grpc.h"
#include "codec/rpc_errno.h"

#define WHO GW_WHO

/* A pipe's bytes past which its source is paused, and below which it
 * resumes. */
#define GW_PIPE_HIGH (1u << 20)
#define GW_PIPE_LOW  (GW_PIPE_HIGH / 2)
/* A service or method name forwarded. */
#define GW_NAME_MAX 256
/* Bytes sent upstream kept for a retry, until the first answer. */
#define GW_REPLAY_MAX (1u << 20)

struct gw_pipe {
	struct iobuf q;	  /* framed messages (gRPC's prefix), lock */
	bool end;	  /* the source's last message is in q, lock */
	bool src_paused;  /* lock */
	bool resume;	  /* lock: the sink drained it, the source reads on */
	bool sink_full;	  /* the sink's loop only: wait for on_writable */
	bool end_done;	  /* the sink's loop only: the end was passed on */
	uint64_t msgs;	  /* passed on, the sink's loop */
};

struct gw_stream {
	struct gateway *gw;
	struct gw_route *route; /* held */
	pthread_mutex_t lock;
	int refs; /* atomic: down, up, each posted task, each drain */
	/* the client's side, on its loop */
	struct server_stream *down;
	struct loop *lx;
	struct task tx;
	bool tx_posted; /* lock */
	/* the upstream's side, on the cluster's loop */
	struct channel_stream *up;
	struct task ty;
	bool ty_posted; /* lock */
	bool up_opened;
	/* retries, the upstream's loop: what went upstream (framed) while
	 * no answer came, the tries so far, the instance that failed */
	struct iobuf replay;
	bool committed, replay_due;
	int tries;
	char failed[NAMING_ADDR_MAX];
	bool cancel_up; /* lock: the client went */
	/* lock: the pipes, and how the upstream ended */
	struct gw_pipe to_up, to_down;
	int code;
	char text[CLUSTER_TEXT_MAX];
	char *hdrs, *trls; /* lock: the upstream's metadata, for the client */
	bool hdrs_taken;   /* the upstream's loop: hdrs copied */
	bool hdrs_sent;	   /* the client's loop: hdrs given to down */
	char *meta;	   /* the client's metadata, for the upstream */
	/* the call */
	char service[GW_NAME_MAX + 1], method[GW_NAME_MAX + 1];
	char peer[64];
	char instance[NAMING_ADDR_MAX];
	int timeout_ms;
	int64_t start_ns;
};

static void gs_unref(struct gw_stream *g)
{
	struct gw_route *rt = g->route;
	int64_t now;

	if (__atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL))
		return;
	now = clock_mono_ns();
	climit_leave(&rt->limit, (uint64_t)(now - g->start_ns) / 1000,
		     g->code == 0, now);
	if (g->gw->access_log)
		log_info(&g->gw->r.log,
			 "access %s %s/%s route=%s instance=%s code=%d "
			 "latency_us=%lld stream in=%llu out=%llu retries=%d",
			 g->peer, g->service, g->method, rt->pattern,
			 g->instance[0] ? g->instance : "-", g->code,
			 (long long)(now - g->start_ns) / 1000,
			 (unsigned long long)g->to_up.msgs,
			 (unsigned long long)g->to_down.msgs, g->tries);
	iobuf_destroy(&g->to_up.q);
	iobuf_destroy(&g->to_down.q);
	iobuf_destroy(&g->replay);
	free(g->hdrs);
	free(g->trls);
	free(g->meta);
	pthread_mutex_destroy(&g->lock);
	mem_free(mem_default(), g);
	gw_route_put(rt);
}

/* Runs t on `loop` (lock held: the flag is under it). */
static void gs_post(struct gw_stream *g, struct loop *loop, struct task *t,
		    bool *posted)
{
	if (*posted)
		return;
	*posted = true;
	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	if (loop_on_thread(loop))
		loop_defer(loop, t);
	else
		loop_post(loop, t);
}

static void post_x(struct gw_stream *g)
{
	gs_post(g, g->lx, &g->tx, &g->tx_posted);
}

static void post_y(struct gw_stream *g)
{
	gs_post(g, g->route->cl.loop, &g->ty, &g->ty_posted);
}

/* A source's message into pipe p (framed, whole or not at all): 1 if
 * the source should pause, 0, or -ENOMEM.  Lock held. */
static int pipe_put(struct gw_pipe *p, struct iobuf *msg)
{
	if (grpc_msg_put(&p->q, false, msg))
		return -ENOMEM;
	if (iobuf_len(&p->q) <= GW_PIPE_HIGH)
		return 0;
	/* a resume not yet acted on is void: the source stays paused */
	p->resume = false;
	if (p->src_paused)
		return 0;
	p->src_paused = true;
	return 1;
}

/* The next message out of pipe p into msg (lock held): true if one was
 * there.  *resume: the source may read again. */
static bool pipe_take(struct gw_pipe *p, struct iobuf *msg, bool *resume)
{
	struct grpc_msg m;

	*resume = false;
	if (p->sink_full ||
	    grpc_msg_peek(&p->q, 0, SIZE_MAX, &m) != 1)
		return false;
	iobuf_drop_front(&p->q, GRPC_PREFIX_LEN);
	iobuf_cut(&p->q, msg, m.len);
	if (p->src_paused && iobuf_len(&p->q) < GW_PIPE_LOW) {
		p->src_paused = false;
		p->resume = true;
		*resume = true;
	}
	return true;
}

/* The upstream's metadata into the client's stream: the headers before
 * the first answer, and with `end` the trailers too. */
static void x_metadata(struct gw_stream *g, bool end)
{
	char *h = NULL, *t = NULL;

	if (g->hdrs_sent && !end)
		return;
	pthread_mutex_lock(&g->lock);
	if (!g->hdrs_sent) {
		h = g->hdrs;
		g->hdrs = NULL;
	}
	if (end) {
		t = g->trls;
		g->trls = NULL;
	}
	pthread_mutex_unlock(&g->lock);
	if (h || end)
		g->hdrs_sent = true;
	if (h || t)
		server_stream_set_metadata(g->down, h, t);
	free(h);
	free(t);
}

/* ---- the client's side (its loop) ------------------------------------ */

/* to_down into the client's stream, then the upstream's status. */
static void x_drain(struct gw_stream *g)
{
	struct gw_pipe *p = &g->to_down;
	struct iobuf msg;
	bool got, resume, finish;
	int code = 0;
	char text[CLUSTER_TEXT_MAX];

	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	iobuf_init(&msg, &g->gw->r.pool);
	while (g->down) {
		pthread_mutex_lock(&g->lock);
		got = pipe_take(p, &msg, &resume);
		if (resume)
			post_y(g); /* the upstream's stream resumes there */
		finish = !got && p->end && !p->end_done && !p->sink_full &&
			 iobuf_empty(&p->q);
		if (finish) {
			code = g->code;
			memcpy(text, g->text, sizeof(text));
		}
		resume = g->to_up.resume; /* our source's turn */
		g->to_up.resume = false;
		pthread_mutex_unlock(&g->lock);
		if (resume)
			server_stream_pause(g->down, false);
		if (got && g->down) {
			p->msgs++;
			x_metadata(g, false);
			if (server_stream_write(g->down, &msg) >
			    (ssize_t)SERVER_STREAM_HIGH)
				p->sink_full = true;
			continue;
		}
		if (finish && g->down) {
			p->end_done = true;
			x_metadata(g, true);
			server_stream_finish(g->down, code,
					     code ? text : NULL);
		}
		break;
	}
	iobuf_destroy(&msg);
	gs_unref(g);
}

static void x_task(struct task *t)
{
	struct gw_stream *g = container_of(t, struct gw_stream, tx);

	pthread_mutex_lock(&g->lock);
	g->tx_posted = false;
	pthread_mutex_unlock(&g->lock);
	x_drain(g);
	gs_unref(g);
}

static void y_task(struct task *t);

static void down_start(struct server_stream *st, void *arg)
{
	struct gateway *gw = arg;
	struct gw_route *rt = server_stream_route(st);
	const char *path = server_stream_path(st);
	const char *slash = strchr(path + 1, '/');
	int64_t tmo = server_stream_timeout_ms(st);
	struct gw_stream *g;
	char why[320];

	if (climit_enter(&rt->limit, why, sizeof(why))) {
		server_stream_finish(st, RPC_ELIMIT, why);
		return;
	}
	g = mem_zalloc(mem_default(), sizeof(*g));
	if (!g) {
		climit_leave(&rt->limit, 0, false, clock_mono_ns());
		server_stream_finish(st, RPC_EINTERNAL,
				     "no memory for the stream");
		return;
	}
	g->gw = gw;
	g->route = rt;
	gw_route_hold(rt);
	pthread_mutex_init(&g->lock, NULL);
	g->refs = 2; /* down, up */
	g->down = st;
	g->lx = server_stream_loop(st);
	task_init(&g->tx, x_task);
	task_init(&g->ty, y_task);
	iobuf_init(&g->to_up.q, &gw->r.pool);
	iobuf_init(&g->to_down.q, &gw->r.pool);
	iobuf_init(&g->replay, &gw->r.pool);
	g->start_ns = clock_mono_ns();
	/* the server split the path already: "/S/M", each fits */
	snprintf(g->service, sizeof(g->service), "%.*s",
		 (int)(slash - path - 1), path + 1);
	snprintf(g->method, sizeof(g->method), "%s", slash + 1);
	snprintf(g->peer, sizeof(g->peer), "%s", server_stream_peer(st));
	g->meta = strdup(server_stream_metadata(st)); /* NULL: none sent */
	g->timeout_ms = rt->co.timeout_ms;
	if (tmo > 0 && (g->timeout_ms < 0 || tmo < g->timeout_ms))
		g->timeout_ms = (int)tmo;
	*server_stream_user(st) = g;
	pthread_mutex_lock(&g->lock);
	post_y(g); /* opens the upstream's stream */
	pthread_mutex_unlock(&g->lock);
}

static void down_message(struct server_stream *st, struct iobuf *msg,
			 void *arg)
{
	struct gw_stream *g = *server_stream_user(st);
	int r;

	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	r = pipe_put(&g->to_up, msg);
	post_y(g);
	pthread_mutex_unlock(&g->lock);
	if (r > 0)
		server_stream_pause(st, true);
	else if (r < 0) /* down_close cancels the upstream */
		server_stream_finish(st, RPC_EINTERNAL,
				     "no memory for a message");
}

static void down_end(struct server_stream *st, void *arg)
{
	struct gw_stream *g = *server_stream_user(st);

	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->to_up.end = true;
	post_y(g);
	pthread_mutex_unlock(&g->lock);
}

static void down_writable(struct server_stream *st, void *arg)
{
	struct gw_stream *g = *server_stream_user(st);

	if (!g)
		return;
	g->to_down.sink_full = false;
	x_drain(g);
}

static void down_close(struct server_stream *st, int err, void *arg)
{
	struct gw_stream *g = *server_stream_user(st);

	if (!g)
		return;
	g->down = NULL;
	pthread_mutex_lock(&g->lock);
	if (err && !g->code) {
		g->code = err == -ETIMEDOUT ? RPC_ERPCTIMEDOUT : ECANCELED;
		snprintf(g->text, sizeof(g->text), "the client's stream "
			 "ended: %s", strerror(-err));
	}
	g->cancel_up = true; /* if it still runs */
	post_y(g);
	pthread_mutex_unlock(&g->lock);
	gs_unref(g);
}

static const struct server_stream_ops down_ops = {
    .on_start = down_start,
    .on_message = down_message,
    .on_end = down_end,
    .on_writable = down_writable,
    .on_close = down_close,
};

const struct server_stream_ops *gw_route_stream(void *arg, void *route,
						const char *service,
						const char *method,
						void **ops_arg)
{
	struct gw_route *rt = route;

	(void)service;
	(void)method;
	if (rt->co.chan.protocol != CHANNEL_PROTO_GRPC)
		return NULL; /* baidu_std upstream: a unary call */
	*ops_arg = arg;
	return &down_ops;
}

/* ---- the upstream's side (the cluster's loop) ----------------------- */

/* A message going upstream, kept (framed) while a retry may need it. */
static void keep_for_retry(struct gw_stream *g, const struct iobuf *msg)
{
	size_t n = iobuf_len(msg);
	struct iobuf copy;
	bool kept;

	if (g->committed)
		return;
	iobuf_init(&copy, g->replay.pool);
	kept = iobuf_len(&g->replay) + GRPC_PREFIX_LEN + n <= GW_REPLAY_MAX &&
	       !iobuf_share(&copy, msg, 0, n) &&
	       !grpc_msg_put(&g->replay, false, &copy);
	iobuf_destroy(&copy);
	if (!kept) {
		g->committed = true; /* too much to send again: no retry */
		iobuf_reset(&g->replay);
	}
}

/* The kept messages again, on a stream opened after a failure; the end
 * too if it had gone. */
static void replay_kept(struct gw_stream *g)
{
	struct iobuf msg;
	struct grpc_msg m;
	size_t at = 0;

	iobuf_init(&msg, &g->gw->r.pool);
	while (g->up && grpc_msg_peek(&g->replay, at, SIZE_MAX, &m) == 1) {
		iobuf_reset(&msg);
		if (iobuf_share(&msg, &g->replay, at + GRPC_PREFIX_LEN, m.len))
			break;
		at += GRPC_PREFIX_LEN + m.len;
		channel_stream_write(g->up, &msg);
	}
	iobuf_destroy(&msg);
	if (g->up && g->to_up.end_done)
		channel_stream_end(g->up);
}

/* to_up into the upstream's stream, then its end. */
static void y_drain(struct gw_stream *g)
{
	struct gw_pipe *p = &g->to_up;
	struct iobuf msg;
	bool got, resume, end;

	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	iobuf_init(&msg, &g->gw->r.pool);
	while (g->up) {
		pthread_mutex_lock(&g->lock);
		got = pipe_take(p, &msg, &resume);
		if (resume)
			post_x(g); /* the client's stream resumes there */
		end = !got && p->end && !p->end_done && !p->sink_full &&
		      iobuf_empty(&p->q);
		resume = g->to_down.resume; /* our source's turn */
		g->to_down.resume = false;
		pthread_mutex_unlock(&g->lock);
		if (resume)
			channel_stream_pause(g->up, false);
		if (got && g->up) {
			p->msgs++;
			keep_for_retry(g, &msg);
			if (channel_stream_write(g->up, &msg) >
			    (ssize_t)CHANNEL_STREAM_HIGH)
				p->sink_full = true;
			continue;
		}
		if (end && g->up) {
			p->end_done = true;
			channel_stream_end(g->up);
		}
		break;
	}
	iobuf_destroy(&msg);
	gs_unref(g);
}

static void up_ended(struct gw_stream *g, int code, const char *text);

static void up_message(struct channel_stream *s, struct iobuf *msg,
		       void *arg)
{
	struct gw_stream *g = arg;
	int r;

	if (!g->committed) {
		g->committed = true; /* an answer came: no retry now */
		iobuf_reset(&g->replay);
	}
	pthread_mutex_lock(&g->lock);
	if (!g->hdrs_taken) {
		g->hdrs_taken = true;
		g->hdrs = strdup(channel_stream_headers(s));
	}
	r = pipe_put(&g->to_down, msg);
	post_x(g);
	pthread_mutex_unlock(&g->lock);
	if (r > 0) {
		channel_stream_pause(s, true);
	} else if (r < 0) {
		g->up = NULL;
		channel_stream_cancel(s); /* no on_close after it */
		up_ended(g, RPC_EINTERNAL, "no memory for a message");
	}
}

static void up_writable(struct channel_stream *s, void *arg)
{
	struct gw_stream *g = arg;

	g->to_up.sink_full = false;
	y_drain(g);
}

/* The upstream's end (lock not held): the client hears it after the
 * messages before it. */
static void up_ended(struct gw_stream *g, int code, const char *text)
{
	pthread_mutex_lock(&g->lock);
	if (!g->code) {
		g->code = code;
		snprintf(g->text, sizeof(g->text), "%s", text);
	}
	g->to_down.end = true;
	post_x(g);
	pthread_mutex_unlock(&g->lock);
	gs_unref(g); /* the up side's */
}

static void up_close(struct channel_stream *s, int code, const char *text,
		     void *arg)
{
	struct gw_stream *g = arg;

	g->up = NULL;
	if (!g->committed && code == RPC_EFAILEDSOCKET &&
	    g->tries < g->route->co.max_retry) {
		/* no answer yet: on another instance, from the start */
		g->tries++;
		memcpy(g->failed, g->instance, sizeof(g->failed));
		pthread_mutex_lock(&g->lock);
		g->up_opened = false;
		g->replay_due = true;
		post_y(g);
		pthread_mutex_unlock(&g->lock);
		return;
	}
	pthread_mutex_lock(&g->lock);
	if (!g->hdrs_taken) {
		g->hdrs_taken = true;
		g->hdrs = strdup(channel_stream_headers(s));
	}
	g->trls = strdup(channel_stream_trailers(s));
	pthread_mutex_unlock(&g->lock);
	up_ended(g, code, text);
}

static const struct channel_stream_ops up_ops = {
    .on_message = up_message,
    .on_writable = up_writable,
    .on_close = up_close,
};

static void y_task(struct task *t)
{
	struct gw_stream *g = container_of(t, struct gw_stream, ty);
	struct channel_stream *s;
	char text[CLUSTER_TEXT_MAX];
	bool cancel;
	int err;

	pthread_mutex_lock(&g->lock);
	g->ty_posted = false;
	cancel = g->cancel_up;
	pthread_mutex_unlock(&g->lock);
	if (!g->up_opened) {
		g->up_opened = true;
		if (cancel) {
			up_ended(g, ECANCELED, "the client went");
			goto out;
		}
		int tmo = g->timeout_ms;

		if (tmo > 0 && g->tries) { /* a retry gets what is left */
			int64_t used = (clock_mono_ns() - g->start_ns) /
				       CLOCK_NS_PER_MS;

			tmo = used < tmo ? tmo - (int)used : 1;
		}
		g->up = cluster_stream_open(&g->route->cl, g->service,
					    g->method, tmo, g->meta,
					    g->tries ? g->failed : NULL, &up_ops,
					    g, g->instance, &err);
		if (!g->up) {
			snprintf(text, sizeof(text),
				 err == -EHOSTDOWN
				     ? "no instance of route %s takes calls"
				     : "Fail to open a stream on route %s: %s",
				 g->route->pattern, strerror(-err));
			up_ended(g, err == -EHOSTDOWN ? EHOSTDOWN
						      : RPC_EFAILEDSOCKET,
				 text);
			goto out;
		}
	}
	if (g->up && g->replay_due) {
		g->replay_due = false;
		replay_kept(g);
	}
	if (g->up && cancel) {
		s = g->up;
		g->up = NULL;
		channel_stream_cancel(s); /* no on_close after it */
		up_ended(g, ECANCELED, "the client went");
		goto out;
	}
	if (g->up)
		y_drain(g);
out:
	gs_unref(g);
}
