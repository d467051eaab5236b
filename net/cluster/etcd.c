/* etcd: etcd v3 gateway client on a loop (see etcd.h). */
#include "etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/util.h"

/* ---- the target -------------------------------------------------------- */

int etcd_target_parse(const char *rest, struct etcd_target *t, char *why,
		      size_t why_size)
{
	const char *slash = strchr(rest, '/'), *p = rest;

	memset(t, 0, sizeof(*t));
	if (!slash || slash == rest) {
		snprintf(why, why_size,
			 "etcd://%s: expected etcd://HOST:PORT[,HOST:PORT...]"
			 "/PREFIX",
			 rest);
		return -EINVAL;
	}
	if (strlen(slash) >= sizeof(t->prefix)) {
		snprintf(why, why_size, "etcd://%s: the prefix is too long",
			 rest);
		return -EINVAL;
	}
	snprintf(t->prefix, sizeof(t->prefix), "%s", slash);
	while (p < slash) {
		size_t len = strcspn(p, ",/");
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
		char host[NAMING_ADDR_MAX], port[8];
		int pn, gerr;

		if (t->n == ETCD_MEMBERS_MAX) {
			snprintf(why, why_size, "etcd://%s: more than %d members",
				 rest, ETCD_MEMBERS_MAX);
			return -EINVAL;
		}
		if (!len || len >= NAMING_ADDR_MAX) {
			snprintf(why, why_size, "etcd://%s: an empty or long "
						"member", rest);
			return -EINVAL;
		}
		memcpy(t->name[t->n], p, len);
		t->name[t->n][len] = '\0';
		if (naming_dns_target(t->name[t->n], host, sizeof(host), &pn,
				      2379)) {
			snprintf(why, why_size,
				 "etcd://%s: \"%s\" is not HOST[:PORT]", rest,
				 t->name[t->n]);
			return -EINVAL;
		}
		snprintf(port, sizeof(port), "%d", pn);
		gerr = getaddrinfo(host, port, &hints, &ai);
		if (gerr) {
			snprintf(why, why_size, "etcd member %s: %s",
				 t->name[t->n], gai_strerror(gerr));
			return -EINVAL;
		}
		memcpy(&t->addr[t->n], ai->ai_addr, ai->ai_addrlen);
		t->addr_len[t->n] = ai->ai_addrlen;
		freeaddrinfo(ai);
		t->n++;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* ---- one exchange ------------------------------------------------------- */

void etcd_http_init(struct etcd_http *h, struct loop *loop,
		    const struct mem *mem)
{
	memset(h, 0, sizeof(*h));
	h->loop = loop;
	h->mem = mem_or_default(mem);
	h->fd = -1;
	loop_timer_init(&h->timer);
	fbuf_init(&h->out, h->mem, 0);
	fbuf_init(&h->in, h->mem, ETCD_ANSWER_MAX);
	fbuf_init(&h->body, h->mem, ETCD_ANSWER_MAX);
}

static void http_close(struct etcd_http *h)
{
	if (h->fd >= 0) {
		if (h->io.active)
			loop_io_del(h->loop, &h->io);
		close(h->fd);
		h->fd = -1;
	}
	if (loop_timer_active(&h->timer))
		loop_timer_stop(h->loop, &h->timer);
	h->busy = false;
	h->gen++;
}

void etcd_http_cancel(struct etcd_http *h)
{
	if (h->busy)
		http_close(h);
}

void etcd_http_destroy(struct etcd_http *h)
{
	etcd_http_cancel(h);
	fbuf_destroy(&h->out);
	fbuf_destroy(&h->in);
	fbuf_destroy(&h->body);
}

static void http_end(struct etcd_http *h, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void http_end(struct etcd_http *h, int err, const char *fmt, ...)
{
	char tmp[200];
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(tmp, sizeof(tmp), fmt, ap);
		va_end(ap);
		snprintf(h->why, sizeof(h->why), "etcd member %s: %s",
			 h->member, tmp);
	}
	http_close(h);
	h->on_end(h, err);
}

static void http_timeout(struct loop_timer *t)
{
	struct etcd_http *h = container_of(t, struct etcd_http, timer);

	http_end(h, -ETIMEDOUT, "no answer within %d ms",
		 h->timeout_ms ? h->timeout_ms : ETCD_TIMEOUT_MS);
}

/* Hands complete messages of a stream's body to on_msg.  0, or the end
 * already done (-ECANCELED: h was ended or restarted meanwhile). */
static int stream_msgs(struct etcd_http *h)
{
	size_t off = 0;
	unsigned gen = h->gen;
	int err = 0;

	for (;;) {
		long len = etcd_msg_len((const char *)h->body.p + off,
					h->body.len - off);

		if (len == 0)
			break;
		if (len < 0) {
			http_end(h, -EBADMSG, "the stream is not JSON messages");
			return -ECANCELED;
		}
		err = h->on_msg(h, (const char *)h->body.p + off, (size_t)len);
		if (h->gen != gen)
			return -ECANCELED;
		if (err) {
			http_end(h, err, NULL);
			return -ECANCELED;
		}
		off += (size_t)len;
	}
	memmove(h->body.p, h->body.p + off, h->body.len - off);
	h->body.len -= off;
	return 0;
}

/* The answer's body is whole. */
static void http_complete(struct etcd_http *h)
{
	unsigned gen = h->gen;
	int err;

	if (h->resp.status != 200) {
		struct etcd_answer a;
		const char *why;
		struct fbuf scratch;

		fbuf_init(&scratch, h->mem, 0);
		if (etcd_parse((const char *)h->body.p, h->body.len, &a, NULL,
			       NULL, &scratch, &why) ||
		    !a.message[0])
			snprintf(a.message, sizeof(a.message), "%s",
				 http1_reason(h->resp.status));
		fbuf_destroy(&scratch);
		http_end(h, -EIO, "answered %d: %s", h->resp.status,
			 a.message);
		return;
	}
	if (h->stream) {
		if (stream_msgs(h))
			return;
		http_end(h, -ECONNRESET, "the stream ended");
		return;
	}
	err = h->on_msg(h, (const char *)h->body.p, h->body.len);
	if (h->gen != gen)
		return;
	http_end(h, err, NULL);
}

/* Takes what came: head, then body.  1 when h ended meanwhile. */
static int http_input(struct etcd_http *h, bool eof)
{
	const char *p = (const char *)h->in.p + h->in_off;
	size_t n = h->in.len - h->in_off;
	int done = 0;

	if (!h->head_done) {
		ssize_t hl = http1_flat_head_end(p, n);

		if (hl == -EAGAIN) {
			if (eof)
				http_end(h, -ECONNRESET,
					 "closed the connection before "
					 "answering");
			return eof;
		}
		if (hl < 0 || http1_parse_response(p, (size_t)hl, &h->resp)) {
			http_end(h, -EBADMSG, "not an HTTP answer (%s)",
				 hl < 0 ? "head too long" : h->resp.why);
			return 1;
		}
		h->head_done = true;
		if (h->header)
			http1_resp_field(p, (size_t)hl, h->header,
					 h->header_value,
					 sizeof(h->header_value));
		h->in_off += (size_t)hl;
		p += hl;
		n -= (size_t)hl;
		/* A stream lasts: only its head is timed. */
		if (h->stream && h->resp.status == 200 &&
		    loop_timer_active(&h->timer))
			loop_timer_stop(h->loop, &h->timer);
	}
	if (h->resp.chunked) {
		size_t used;
		int r = http1_unchunk(&h->ch, p, n, &used, &h->body);

		if (r < 0) {
			http_end(h, r, "%s",
				 r == -EBADMSG ? "bad chunked framing"
					       : "an answer too large");
			return 1;
		}
		h->in_off += used;
		done = r;
	} else {
		size_t take = n;

		if (h->resp.has_length &&
		    take > h->resp.content_length - h->body.len)
			take = (size_t)(h->resp.content_length - h->body.len);
		fbuf_append(&h->body, p, take);
		if (h->body.err) {
			http_end(h, h->body.err, "an answer too large");
			return 1;
		}
		h->in_off += take;
		done = h->resp.has_length
			   ? h->body.len == h->resp.content_length
			   : eof;
	}
	if (h->in_off) { /* keep only what is not taken yet */
		memmove(h->in.p, h->in.p + h->in_off, h->in.len - h->in_off);
		h->in.len -= h->in_off;
		h->in_off = 0;
	}
	if (done) {
		http_complete(h);
		return 1;
	}
	if (h->stream && h->resp.status == 200 && stream_msgs(h))
		return 1;
	if (eof) {
		http_end(h, -ECONNRESET, "%s",
			 h->stream ? "the stream ended"
				   : "closed the connection mid-answer");
		return 1;
	}
	return 0;
}

static void http_io(struct loop_io *io, uint32_t events)
{
	struct etcd_http *h = container_of(io, struct etcd_http, io);

	if (h->out_off < h->out.len && (events & (EPOLLOUT | EPOLLERR))) {
		while (h->out_off < h->out.len) {
			ssize_t w = write(h->fd, h->out.p + h->out_off,
					  h->out.len - h->out_off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EAGAIN)
				break;
			if (w < 0) {
				http_end(h, -errno, "cannot %s: %s",
					 h->out_off ? "send" : "connect",
					 strerror(errno));
				return;
			}
			if (h->out_off == 0) {
				socklen_t sl = sizeof(h->local);

				getsockname(h->fd, (struct sockaddr *)&h->local,
					    &sl);
			}
			h->out_off += (size_t)w;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
		return;
	for (;;) {
		uint8_t *room = fbuf_room(&h->in, 64 * 1024);
		ssize_t r;

		if (!room) {
			http_end(h, -EMSGSIZE, "an answer too large");
			return;
		}
		r = read(h->fd, room, 64 * 1024);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r < 0) {
			http_end(h, -errno, "%s", strerror(errno));
			return;
		}
		h->in.len += (size_t)r;
		if (http_input(h, r == 0) || r == 0)
			return;
	}
}

int etcd_http_start(struct etcd_http *h, const struct etcd_target *t, int i,
		    const char *path, const struct fbuf *body, bool stream)
{
	int fd, one = 1;

	etcd_http_cancel(h);
	snprintf(h->member, sizeof(h->member), "%s", t->name[i]);
	h->why[0] = '\0';
	fbuf_clear(&h->out);
	fbuf_clear(&h->in);
	fbuf_clear(&h->body);
	h->out_off = h->in_off = 0;
	h->head_done = false;
	h->stream = stream;
	http1_chunked_init(&h->ch);
	memset(&h->local, 0, sizeof(h->local));
	h->header_value[0] = '\0';
	if (body)
		fbuf_printf(&h->out,
			    "POST %s HTTP/1.1\r\nHost: %s\r\n"
			    "Content-Type: application/json\r\n"
			    "Content-Length: %zu\r\n%s\r\n",
			    path, t->name[i], body->len,
			    stream ? "" : "Connection: close\r\n");
	else
		fbuf_printf(&h->out,
			    "GET %s HTTP/1.1\r\nHost: %s\r\n"
			    "Connection: close\r\n\r\n",
			    path, t->name[i]);
	if (body)
		fbuf_append(&h->out, body->p, body->len);
	if (h->out.err || (body && body->err)) {
		snprintf(h->why, sizeof(h->why), "no memory for a request");
		return -ENOMEM;
	}
	fd = socket(t->addr[i].ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(h->why, sizeof(h->why), "etcd member %s: socket: %s",
			 h->member, strerror(errno));
		return -errno;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&t->addr[i], t->addr_len[i]) &&
	    errno != EINPROGRESS) {
		int err = -errno;

		snprintf(h->why, sizeof(h->why),
			 "etcd member %s: cannot connect: %s", h->member,
			 strerror(errno));
		close(fd);
		return err;
	}
	h->fd = fd;
	loop_io_init(&h->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, http_io);
	if (loop_io_add(h->loop, &h->io)) {
		close(fd);
		h->fd = -1;
		snprintf(h->why, sizeof(h->why), "cannot watch a socket");
		return -ENOMEM;
	}
	h->busy = true;
	h->gen++;
	loop_timer_start(h->loop, &h->timer,
			 loop_now(h->loop) +
			     (int64_t)(h->timeout_ms ? h->timeout_ms
						     : ETCD_TIMEOUT_MS) *
				 CLOCK_NS_PER_MS,
			 http_timeout);
	return 0;
}

/* The delay before trying again after `fails` exchanges failed in a row
 * over n members: none while members remain untried in this round. */
static int backoff_ms(int fails, int n)
{
	int rounds = fails / n, ms = 100;

	if (fails % n)
		return 0;
	while (--rounds > 0 && ms < ETCD_BACKOFF_MAX_MS)
		ms *= 2;
	return ms < ETCD_BACKOFF_MAX_MS ? ms : ETCD_BACKOFF_MAX_MS;
}

static void first_signal(pthread_mutex_t *lock, pthread_cond_t *cond,
			 bool *flag)
{
	pthread_mutex_lock(lock);
	*flag = true;
	pthread_cond_broadcast(cond);
	pthread_mutex_unlock(lock);
}

static void wait_flag(pthread_mutex_t *lock, pthread_cond_t *cond, bool *flag)
{
	pthread_mutex_lock(lock);
	while (!*flag)
		pthread_cond_wait(cond, lock);
	pthread_mutex_unlock(lock);
}

static void fmt_clock(int64_t wall_ns, char *buf, size_t size)
{
	time_t s = (time_t)(wall_ns / CLOCK_NS_PER_S);
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(buf, size, "%H:%M:%S UTC", &tm);
}

/* ---- naming ------------------------------------------------------------ */

static void w_log(struct etcd_watch *w, enum log_level lvl, const char *fmt,
		  ...) __attribute__((format(printf, 3, 4)));

static void w_log(struct etcd_watch *w, enum log_level lvl, const char *fmt,
		  ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_write(w->log, lvl, "naming %s: %s", w->name, buf);
}

static void ents_free(const struct mem *mem, struct etcd_ent *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mem_free(mem, v[i].key);
		mem_free(mem, v[i].value);
	}
	mem_free(mem, v);
}

/* The index of `key` in w->ents, or where it would go (*found false). */
static size_t ent_find(const struct etcd_watch *w, const char *key, bool *found)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(w->ents[mid].key, key);

		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Fills e from a kv (the key copied); logs a value that names nothing. */
static int ent_set(struct etcd_watch *w, struct etcd_ent *e,
		   const struct etcd_kv *kv)
{
	int err;

	e->mod_revision = kv->mod_revision;
	if (w->kvs_changed) { /* raw: the value as it is */
		char *v = mem_alloc(w->mem, kv->value_n + 1);

		if (!v)
			return -ENOMEM;
		memcpy(v, kv->value, kv->value_n + 1);
		mem_free(w->mem, e->value);
		e->value = v;
		e->valid = !memchr(kv->value, '\0', kv->value_n);
		return 0;
	}
	err = etcd_node_from_value(kv->value, kv->value_n, &e->node,
				   &w->scratch);

	if (err == -ENOMEM)
		return err;
	e->valid = !err;
	if (err)
		w_log(w, LOG_LVL_WARN,
		      "key %s: \"%.*s\" is not HOST:PORT [TAG] nor "
		      "{\"addr\":..}; skipped",
		      kv->key, (int)(kv->value_n > 100 ? 100 : kv->value_n),
		      kv->value);
	return 0;
}

static int ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct etcd_ent *)a)->key,
		      ((const struct etcd_ent *)b)->key);
}

/* A range's kvs, collected into a fresh array. */
struct range_acc {
	struct etcd_watch *w;
	struct etcd_ent *v;
	size_t n, cap;
};

static int range_kv(void *arg, const struct etcd_kv *kv)
{
	struct range_acc *r = arg;
	const struct mem *mem = r->w->mem;

	if (memchr(kv->key, '\0', kv->key_n))
		return 0;
	if (r->n == NAMING_NODES_MAX)
		return -E2BIG;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct etcd_ent *v = mem_alloc(mem, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		if (r->n)
			memcpy(v, r->v, r->n * sizeof(*v));
		mem_free(mem, r->v);
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].key = mem_alloc(mem, kv->key_n + 1);
	r->v[r->n].value = NULL;
	if (!r->v[r->n].key)
		return -ENOMEM;
	memcpy(r->v[r->n].key, kv->key, kv->key_n + 1);
	if (ent_set(r->w, &r->v[r->n], kv)) {
		mem_free(mem, r->v[r->n].key);
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

/* One watch event. */
static int event_kv(void *arg, const struct etcd_kv *kv)
{
	struct etcd_watch *w = arg;
	char *key;
	bool found;
	size_t i;

	if (memchr(kv->key, '\0', kv->key_n))
		return 0;
	i = ent_find(w, kv->key, &found);
	w->n_events++;
	if (kv->deleted) {
		if (found) {
			mem_free(w->mem, w->ents[i].key);
			mem_free(w->mem, w->ents[i].value);
			memmove(&w->ents[i], &w->ents[i + 1],
				(w->n - i - 1) * sizeof(*w->ents));
			w->n--;
			w->dirty = true;
		}
		return 0;
	}
	if (!found) {
		if (w->n == NAMING_NODES_MAX) {
			w_log(w, LOG_LVL_WARN,
			      "more than %d keys: %s not taken",
			      NAMING_NODES_MAX, kv->key);
			return 0;
		}
		if (w->n == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 64;
			struct etcd_ent *v = mem_alloc(w->mem, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			if (w->n)
				memcpy(v, w->ents, w->n * sizeof(*v));
			mem_free(w->mem, w->ents);
			w->ents = v;
			w->cap = cap;
		}
		key = mem_alloc(w->mem, kv->key_n + 1);
		if (!key)
			return -ENOMEM;
		memcpy(key, kv->key, kv->key_n + 1);
		memmove(&w->ents[i + 1], &w->ents[i],
			(w->n - i) * sizeof(*w->ents));
		w->ents[i].key = key;
		w->ents[i].value = NULL;
		w->n++;
	}
	w->dirty = true;
	return ent_set(w, &w->ents[i], kv);
}

/* w->list from the entries: the valid ones, each (address, tag) once. */
static int build_list(struct etcd_watch *w)
{
	struct naming_list *l = &w->list;
	struct naming_index ix;

	l->n = 0;
	if (w->n > l->cap) {
		struct naming_node *v = mem_alloc(w->mem, w->n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		mem_free(w->mem, l->v);
		l->v = v;
		l->cap = w->n;
	}
	if (naming_index_init(&ix, w->mem, w->n))
		return -ENOMEM;
	for (size_t i = 0; i < w->n; i++) {
		if (!w->ents[i].valid || naming_index_find(&ix, &w->ents[i].node))
			continue;
		l->v[l->n] = w->ents[i].node;
		naming_index_add(&ix, &l->v[l->n]);
		l->n++;
	}
	naming_index_destroy(&ix);
	return 0;
}

/* The instances changed: tell the owner (after the first answer). */
static void w_notify(struct etcd_watch *w)
{
	if (!w->dirty || !w->first_done)
		return;
	w->dirty = false;
	if (w->kvs_changed) {
		w->kvs_changed(w->arg, w->ents, w->n, w->rev);
		return;
	}
	if (build_list(w)) {
		w_log(w, LOG_LVL_ERROR, "no memory for the instances");
		w->dirty = true;
		return;
	}
	w->changed(w->arg, &w->list);
}

static void w_up(struct etcd_watch *w)
{
	if (w->down_since_ns) {
		char at[32];

		fmt_clock(w->down_since_ns, at, sizeof(at));
		w_log(w, LOG_LVL_INFO,
		      "etcd answers again (member %s), after %.1f s without "
		      "since %s",
		      w->t.name[w->member],
		      (double)(clock_wall_ns() - w->down_since_ns) / 1e9, at);
	}
	__atomic_store_n(&w->down_since_ns, 0, __ATOMIC_RELAXED);
	metrics_gauge_set(&w->m_down, 0);
	w->fails = 0;
}

static void w_go(struct etcd_watch *w);

static void w_retry(struct loop_timer *t)
{
	w_go(container_of(t, struct etcd_watch, retry));
}

/* An exchange failed (h->why says why): the next member, maybe later. */
static void w_failed(struct etcd_watch *w, int err, const char *why)
{
	int64_t now = clock_wall_ns();
	int ms;

	w->watching = false;
	w->fails++;
	if (!w->first_done && w->fails >= w->t.n) {
		/* Start: every member was asked once. */
		w->first_err = err;
		snprintf(w->first_why, sizeof(w->first_why), "%s", why);
		first_signal(&w->lock, &w->cond, &w->first_done);
		return;
	}
	w->n_failovers++;
	if (!w->down_since_ns) {
		__atomic_store_n(&w->down_since_ns, now, __ATOMIC_RELAXED);
		metrics_gauge_set(&w->m_down, now / CLOCK_NS_PER_S);
		w->down_logged_ns = 0;
	}
	/* Logged at the first failure, then every 10 s while it lasts. */
	if (now - w->down_logged_ns >= 10 * CLOCK_NS_PER_S) {
		char at[32];

		fmt_clock(w->down_since_ns, at, sizeof(at));
		w_log(w, LOG_LVL_WARN,
		      "%s; no answer from etcd since %s; keeping the %zu "
		      "instances known",
		      why, at, w->list.n);
		w->down_logged_ns = now;
	}
	w->member = (w->member + 1) % w->t.n;
	ms = backoff_ms(w->fails, w->t.n);
	loop_timer_start(w->loop, &w->retry,
			 loop_now(w->loop) + ms * CLOCK_NS_PER_MS, w_retry);
}

static void w_end(struct etcd_http *h, int err)
{
	struct etcd_watch *w = h->arg;

	if (w->stopped)
		return;
	if (!err && !h->stream) { /* a range answered: watch from it */
		w_go(w);
		return;
	}
	w_failed(w, err ? err : -ECONNRESET,
		 h->why[0] ? h->why : "the watch ended");
}

/* *to = *from (to's storage grown as needed).  0 or -ENOMEM. */
static int copy_list(struct naming_list *to, const struct naming_list *from)
{
	if (from->n > to->cap) {
		struct naming_node *v =
		    mem_alloc(to->mem, from->n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		mem_free(to->mem, to->v);
		to->v = v;
		to->cap = from->n;
	}
	if (from->n)
		memcpy(to->v, from->v, from->n * sizeof(*to->v));
	to->n = from->n;
	return 0;
}

static int range_msg(struct etcd_http *h, const char *p, size_t n)
{
	struct etcd_watch *w = h->arg;
	struct range_acc r = {.w = w};
	struct etcd_answer a;
	const char *why;
	int err;

	err = etcd_parse(p, n, &a, range_kv, &r, &w->scratch, &why);
	if (!err && a.error)
		err = -EIO;
	if (err) {
		ents_free(w->mem, r.v, r.n);
		snprintf(h->why, sizeof(h->why), "etcd member %s: range: %s",
			 h->member,
			 err == -EBADMSG ? why
			 : a.error	 ? a.message
					 : strerror(-err));
		return err;
	}
	qsort(r.v, r.n, sizeof(*r.v), ent_cmp);
	ents_free(w->mem, w->ents, w->n);
	w->ents = r.v;
	w->n = r.n;
	w->cap = r.cap;
	w->rev = a.revision;
	w->dirty = true;
	w_up(w);
	if (!w->first_done && w->kvs_changed) {
		w->dirty = false;
		w->kvs_changed(w->arg, w->ents, w->n, w->rev);
		first_signal(&w->lock, &w->cond, &w->first_done);
		return 0;
	}
	if (!w->first_done) {
		/* The owner waits: its list is filled here, on the loop. */
		w->first_err = build_list(w);
		if (!w->first_err)
			w->first_err = copy_list(w->first, &w->list);
		w->dirty = false;
		snprintf(w->first_why, sizeof(w->first_why),
			 "no memory for the instances");
		first_signal(&w->lock, &w->cond, &w->first_done);
		return 0;
	}
	w_notify(w);
	return 0;
}

static int watch_msg(struct etcd_http *h, const char *p, size_t n)
{
	struct etcd_watch *w = h->arg;
	struct etcd_answer a;
	const char *why;
	int err;

	err = etcd_parse(p, n, &a, event_kv, w, &w->scratch, &why);
	if (err == -EBADMSG) {
		snprintf(h->why, sizeof(h->why), "etcd member %s: watch: %s",
			 h->member, why);
		return err;
	}
	if (err)
		return err;
	if (a.error) {
		snprintf(h->why, sizeof(h->why), "etcd member %s: watch: %s",
			 h->member, a.message);
		return -EIO;
	}
	if (a.canceled) {
		if (a.compact_revision) {
			w_log(w, LOG_LVL_WARN,
			      "revision %lld was compacted (etcd keeps from "
			      "%lld): reading every key again",
			      (long long)w->rev + 1,
			      (long long)a.compact_revision);
			w->n_resyncs++;
		}
		w->rev = 0; /* read again */
		etcd_http_cancel(h);
		w_go(w);
		return 0;
	}
	if (a.created) {
		w->watching = true;
		w_up(w);
	}
	if (a.revision > w->rev)
		w->rev = a.revision;
	w_notify(w);
	return 0;
}

/* The next exchange: a range when the revision is unknown, else a
 * watch from the one after it. */
static void w_go(struct etcd_watch *w)
{
	struct fbuf body;
	int err;

	if (w->stopped)
		return;
	fbuf_init(&body, w->mem, 0);
	if (w->rev) {
		etcd_put_watch(&body, w->t.prefix, w->rev + 1);
		w->h.on_msg = watch_msg;
	} else {
		etcd_put_range(&body, w->t.prefix);
		w->h.on_msg = range_msg;
	}
	err = etcd_http_start(&w->h, &w->t, w->member,
			      w->rev ? "/v3/watch" : "/v3/kv/range", &body,
			      w->rev != 0);
	fbuf_destroy(&body);
	if (err)
		w_failed(w, err, w->h.why);
}

static void w_start_task(struct task *t)
{
	w_go(container_of(t, struct etcd_watch, start_task));
}

static int watch_start(struct etcd_watch *w, const char *rest,
		       struct loop *loop, struct log *log, const char *name,
		       const struct mem *mem, char *why, size_t why_size);

int etcd_watch_start(struct etcd_watch *w, const char *rest, struct loop *loop,
		     struct log *log, const char *name, etcd_changed_fn *changed,
		     void *arg, struct naming_list *first, char *why,
		     size_t why_size)
{
	memset(w, 0, sizeof(*w));
	w->changed = changed;
	w->arg = arg;
	w->first = first;
	return watch_start(w, rest, loop, log, name, first->mem, why,
			   why_size);
}

int etcd_watch_start_raw(struct etcd_watch *w, const char *rest,
			 struct loop *loop, struct log *log, const char *name,
			 etcd_kvs_fn *kvs_changed, void *arg, char *why,
			 size_t why_size)
{
	memset(w, 0, sizeof(*w));
	w->kvs_changed = kvs_changed;
	w->arg = arg;
	return watch_start(w, rest, loop, log, name, mem_default(), why,
			   why_size);
}

static int watch_start(struct etcd_watch *w, const char *rest,
		       struct loop *loop, struct log *log, const char *name,
		       const struct mem *mem, char *why, size_t why_size)
{
	int err;

	err = etcd_target_parse(rest, &w->t, why, why_size);
	if (err)
		return err;
	w->loop = loop;
	w->mem = mem;
	w->log = log;
	snprintf(w->name, sizeof(w->name), "%s", name);
	etcd_http_init(&w->h, loop, w->mem);
	w->h.on_end = w_end;
	w->h.arg = w;
	loop_timer_init(&w->retry);
	metrics_gauge_init(&w->m_down);
	naming_list_init(&w->list, w->mem);
	fbuf_init(&w->scratch, w->mem, 0);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	task_init(&w->start_task, w_start_task);
	loop_post(loop, &w->start_task);
	wait_flag(&w->lock, &w->cond, &w->first_done);
	if (w->first_err) {
		snprintf(why, why_size, "%s", w->first_why);
		err = w->first_err;
		etcd_watch_stop(w);
		return err;
	}
	return 0;
}

static void w_stop_task(struct task *t)
{
	struct etcd_watch *w = container_of(t, struct etcd_watch, stop_task);

	w->stopped = true;
	etcd_http_cancel(&w->h);
	if (loop_timer_active(&w->retry))
		loop_timer_stop(w->loop, &w->retry);
	first_signal(&w->lock, &w->cond, &w->stop_done);
}

void etcd_watch_stop(struct etcd_watch *w)
{
	if (!w->loop)
		return;
	task_init(&w->stop_task, w_stop_task);
	loop_post(w->loop, &w->stop_task);
	wait_flag(&w->lock, &w->cond, &w->stop_done);
	etcd_http_destroy(&w->h);
	ents_free(w->mem, w->ents, w->n);
	w->ents = NULL;
	w->n = 0;
	naming_list_free(&w->list);
	fbuf_destroy(&w->scratch);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	w->loop = NULL;
}

const struct naming_list *etcd_watch_list(struct etcd_watch *w)
{
	if (w->dirty && !build_list(w))
		w->dirty = false;
	return &w->list;
}

int64_t etcd_watch_down_since(const struct etcd_watch *w)
{
	return __atomic_load_n(&w->down_since_ns, __ATOMIC_RELAXED) /
	       CLOCK_NS_PER_S;
}

/* ---- registration ------------------------------------------------------ */

enum { REG_GRANT, REG_PUT, REG_KEEP, REG_REVOKE };

static const char *const reg_step_name[] = {"lease grant", "put",
					     "lease keepalive", "lease revoke"};

static void r_log(struct etcd_reg *r, enum log_level lvl, const char *fmt,
		  ...) __attribute__((format(printf, 3, 4)));

static void r_log(struct etcd_reg *r, enum log_level lvl, const char *fmt,
		  ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_write(r->log, lvl, "register %s: %s", r->key, buf);
}

static void r_go(struct etcd_reg *r);

static void r_timer(struct loop_timer *t)
{
	r_go(container_of(t, struct etcd_reg, timer));
}

static void r_after(struct etcd_reg *r, int ms)
{
	loop_timer_start(r->loop, &r->timer,
			 loop_now(r->loop) + (int64_t)ms * CLOCK_NS_PER_MS,
			 r_timer);
}

/* Our address as etcd sees it, for a wildcard listen address. */
static void r_learn_addr(struct etcd_reg *r)
{
	char ip[INET6_ADDRSTRLEN] = "";
	const struct sockaddr_storage *ss = &r->h.local;

	if (r->addr[0])
		return;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  ip, sizeof(ip));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr, ip,
			  sizeof(ip));
	if (!ip[0])
		return;
	snprintf(r->addr, sizeof(r->addr),
		 ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, r->port);
	snprintf(r->key + strlen(r->key), sizeof(r->key) - strlen(r->key),
		 "%s", r->addr);
}

static void r_done_first(struct etcd_reg *r, int err, const char *why)
{
	if (r->first_done)
		return;
	r->first_err = err;
	snprintf(r->first_why, sizeof(r->first_why), "%s", why);
	first_signal(&r->lock, &r->cond, &r->first_done);
}

static void r_end(struct etcd_http *h, int err)
{
	struct etcd_reg *r = h->arg;

	if (r->step == REG_REVOKE) {
		if (err)
			r_log(r, LOG_LVL_WARN,
			      "%s; the key stays until its lease ends (%d s)",
			      h->why, r->ttl_s);
		else
			r_log(r, LOG_LVL_INFO, "lease revoked: key removed");
		first_signal(&r->lock, &r->cond, &r->stop_done);
		return;
	}
	if (r->stopping)
		return;
	if (!err) {
		r->fails = 0;
		if (r->step == REG_GRANT) {
			r->step = REG_PUT;
			r_go(r);
		} else if (r->step == REG_PUT) {
			if (!r->registered)
				r_log(r, LOG_LVL_INFO,
				      "registered with a %d s lease", r->ttl_s);
			r->registered = true;
			r->step = REG_KEEP;
			r_done_first(r, 0, "");
			r_after(r, r->ttl_s * 1000 / 3);
		} else if (r->lost) { /* the lease expired: again */
			r->lost = false;
			r->step = REG_GRANT;
			r_go(r);
		} else {
			r_after(r, r->ttl_s * 1000 / 3);
		}
		return;
	}
	r->fails++;
	if (!r->first_done && r->fails >= r->t.n) {
		r_done_first(r, err, h->why);
		return;
	}
	if (r->fails == 1 || r->fails % (4 * r->t.n) == 0)
		r_log(r, LOG_LVL_WARN, "%s: %s; trying the next member",
		      reg_step_name[r->step], h->why);
	r->member = (r->member + 1) % r->t.n;
	r_after(r, backoff_ms(r->fails, r->t.n));
}

static int r_msg(struct etcd_http *h, const char *p, size_t n)
{
	struct etcd_reg *r = h->arg;
	struct etcd_answer a;
	const char *why;
	int err = etcd_parse(p, n, &a, NULL, NULL, &r->scratch, &why);

	if (err == -EBADMSG)
		snprintf(h->why, sizeof(h->why), "etcd member %s: %s",
			 h->member, why);
	if (err)
		return err;
	if (a.error) {
		snprintf(h->why, sizeof(h->why), "etcd member %s: %s",
			 h->member, a.message);
		return -EIO;
	}
	switch (r->step) {
	case REG_GRANT:
		if (!a.id || a.ttl <= 0) {
			snprintf(h->why, sizeof(h->why),
				 "etcd member %s: a grant without a lease",
				 h->member);
			return -EIO;
		}
		r->lease = a.id;
		r_learn_addr(r);
		break;
	case REG_KEEP:
		if (a.ttl <= 0 && a.id) { /* the lease is gone */
			r_log(r, LOG_LVL_WARN,
			      "lease %lld expired: registering again",
			      (long long)r->lease);
			r->lease = 0;
			r->lost = true;
		}
		break;
	default:
		break;
	}
	return 0;
}

static void r_go(struct etcd_reg *r)
{
	static const char *const path[] = {"/v3/lease/grant", "/v3/kv/put",
					   "/v3/lease/keepalive",
					   "/v3/lease/revoke"};
	struct fbuf body;
	int err;

	fbuf_init(&body, r->mem, 0);
	switch (r->step) {
	case REG_GRANT:
		etcd_put_grant(&body, r->ttl_s);
		break;
	case REG_PUT: {
		char value[NAMING_ADDR_MAX + NAMING_TAG_MAX + 2];

		snprintf(value, sizeof(value), "%s%s%s", r->addr,
			 r->tag[0] ? " " : "", r->tag);
		etcd_put_put(&body, r->key, value, r->lease);
		break;
	}
	default:
		etcd_put_lease_id(&body, r->lease);
		break;
	}
	/* keepalive answers as a stream, ended when our request ends */
	err = etcd_http_start(&r->h, &r->t, r->member, path[r->step], &body,
			      false);
	fbuf_destroy(&body);
	if (err) {
		/* as a failed exchange, later */
		r->h.busy = false;
		r_end(&r->h, err);
	}
}

static void r_start_task(struct task *t)
{
	r_go(container_of(t, struct etcd_reg, start_task));
}

static bool wildcard_host(const char *addr, size_t hl)
{
	return hl == 0 || (hl == 7 && !memcmp(addr, "0.0.0.0", 7)) ||
	       (hl == 4 && !memcmp(addr, "[::]", 4)) ||
	       (hl == 1 && addr[0] == '*');
}

int etcd_reg_start(struct etcd_reg *r, const char *url, const char *addr,
		   const char *tag, int ttl_s, struct loop *loop,
		   struct log *log, char *why, size_t why_size)
{
	const char *colon = strrchr(addr, ':');
	int err;

	memset(r, 0, sizeof(*r));
	if (strncmp(url, "etcd://", 7)) {
		snprintf(why, why_size,
			 "--register=%s: expected etcd://HOST:PORT[,...]/PREFIX",
			 url);
		return -EINVAL;
	}
	if (!colon || ttl_s < 2 || ttl_s > 3600 ||
	    strlen(addr) >= sizeof(r->addr) ||
	    strlen(tag) >= sizeof(r->tag)) {
		snprintf(why, why_size,
			 "register: bad address \"%s\" or lease TTL %d "
			 "(2..3600 s)",
			 addr, ttl_s);
		return -EINVAL;
	}
	err = etcd_target_parse(url + 7, &r->t, why, why_size);
	if (err)
		return err;
	r->loop = loop;
	r->mem = mem_default();
	r->log = log;
	r->ttl_s = ttl_s;
	r->port = atoi(colon + 1);
	snprintf(r->tag, sizeof(r->tag), "%s", tag);
	snprintf(r->key, sizeof(r->key), "%s", r->t.prefix);
	if (!wildcard_host(addr, (size_t)(colon - addr))) {
		snprintf(r->addr, sizeof(r->addr), "%s", addr);
		snprintf(r->key + strlen(r->key),
			 sizeof(r->key) - strlen(r->key), "%s", addr);
	}
	etcd_http_init(&r->h, loop, r->mem);
	r->h.on_end = r_end;
	r->h.on_msg = r_msg;
	r->h.arg = r;
	loop_timer_init(&r->timer);
	fbuf_init(&r->scratch, r->mem, 0);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	task_init(&r->start_task, r_start_task);
	loop_post(loop, &r->start_task);
	wait_flag(&r->lock, &r->cond, &r->first_done);
	if (r->first_err) {
		snprintf(why, why_size, "register: %s", r->first_why);
		r->lease = 0; /* nothing to revoke */
		etcd_reg_stop(r);
		return r->first_err ? r->first_err : -EIO;
	}
	return 0;
}

static void r_stop_task(struct task *t)
{
	struct etcd_reg *r = container_of(t, struct etcd_reg, stop_task);

	r->stopping = true;
	etcd_http_cancel(&r->h);
	if (loop_timer_active(&r->timer))
		loop_timer_stop(r->loop, &r->timer);
	if (!r->lease || !r->registered) {
		first_signal(&r->lock, &r->cond, &r->stop_done);
		return;
	}
	r->step = REG_REVOKE;
	r_go(r);
}

void etcd_reg_stop(struct etcd_reg *r)
{
	if (!r->loop)
		return;
	task_init(&r->stop_task, r_stop_task);
	loop_post(r->loop, &r->stop_task);
	wait_flag(&r->lock, &r->cond, &r->stop_done);
	etcd_http_destroy(&r->h);
	fbuf_destroy(&r->scratch);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	r->loop = NULL;
}
