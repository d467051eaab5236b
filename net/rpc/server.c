/*
 * server: services, listeners, connections and the protocol of each
 * (detected on its first bytes), the life every call shares, and the
 * graceful stop.  The protocols are in server_baidu.c and server_http.c,
 * the built-in pages in server_pages.c (see server.h for the way a
 * request takes and spec/brpc-wire.md 1.8 for the order of the checks).
 */
#define _GNU_SOURCE /* accept4 */
#include "server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/stamp.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"
#include "tls.h"
#include "base/uaddr.h"

/* How long server_stop waits for answers to flush before it closes
 * connections whose peers do not read. */
#define SERVER_FLUSH_WAIT_MS 1000
/* Backlog of listening sockets; the kernel caps it at somaxconn. */
#define SERVER_BACKLOG 1024

/* ---- options, services --------------------------------------------- */

void server_options_default(struct server_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->max_body_size = BAIDU_MAX_BODY_SIZE_DEFAULT;
	opt->http_header_timeout_ms = SERVER_HTTP_HEADER_TIMEOUT_MS;
	opt->http_body_idle_ms = SERVER_HTTP_BODY_IDLE_MS;
	opt->http_idle_timeout_ms = SERVER_HTTP_IDLE_TIMEOUT_MS;
	opt->http_gzip_min = SERVER_HTTP_GZIP_MIN;
	opt->write_timeout_ms = SERVER_WRITE_TIMEOUT_MS;
}

/* The descriptor kept to accept-and-close with when the process has no
 * other (see on_accept). */
static int reserve_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int server_init(struct server *s, const struct server_options *opt)
{
	pthread_condattr_t ca;
	int err;

	if (!opt->rt || !opt->pool || opt->max_concurrency < 0 ||
	    opt->http_header_timeout_ms <= 0 || opt->http_body_idle_ms <= 0 ||
	    opt->http_idle_timeout_ms <= 0 || opt->max_connections < 0 ||
	    opt->write_timeout_ms < 0)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->opt = *opt;
	climit_init(&s->limit,
		    opt->max_concurrency_auto ? CLIMIT_AUTO
		    : opt->max_concurrency    ? CLIMIT_FIXED
					      : CLIMIT_NONE,
		    opt->max_concurrency, "server");
	metrics_gauge_init(&s->held);
	metrics_counter_init(&s->refused_no_fd);
	metrics_counter_init(&s->refused_max_conn);
	metrics_counter_init(&s->closed_slow);
	metrics_counter_init(&s->limited);
	s->reserve_fd = reserve_open();
	s->opt.mem = mem_or_default(opt->mem);
	baidu_limits_default(&s->limits);
	s->limits.max_body_size = opt->max_body_size;
	s->limits.mem = s->opt.mem;
	if (s->limits.max_meta_size > s->limits.max_body_size)
		s->limits.max_meta_size = s->limits.max_body_size;
	if (baidu_limits_validate(&s->limits))
		return -EINVAL;
	err = pthread_mutex_init(&s->lock, NULL);
	if (err)
		return -err;
	err = pthread_mutex_init(&s->flags_lock, NULL);
	if (err) {
		pthread_mutex_destroy(&s->lock);
		return -err;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err) {
		pthread_mutex_destroy(&s->flags_lock);
		pthread_mutex_destroy(&s->lock);
		return -err;
	}
	for (int i = 0; i < SERVER_MAX_LISTENERS; i++) {
		s->listeners[i].fd = -1;
		loop_timer_init(&s->listeners[i].resume);
	}
	return 0;
}

/* A service's slot: its name free, room left, not started. */
static int service_slot(struct server *s, const char *name)
{
	if (s->started)
		return -EBUSY;
	for (int i = 0; i < s->nservices; i++)
		if (!strcmp(s->services[i]->name, name))
			return -EEXIST;
	if (s->nservices == SERVER_MAX_SERVICES)
		return -ENOSPC;
	return 0;
}

static struct server_service *service_new(struct server *s, const char *name,
					  const char *short_name,
					  unsigned nmethods, void *arg)
{
	struct server_service *svc = mem_zalloc(
	    s->opt.mem, sizeof(*svc) + nmethods * sizeof(svc->methods[0]));

	if (!svc)
		return NULL;
	svc->name = name;
	svc->short_name = short_name;
	svc->name_len = strlen(name);
	svc->short_len = strlen(short_name);
	svc->packaged = strchr(name, '.') != NULL;
	svc->arg = arg;
	svc->nmethods = nmethods;
	return svc;
}

static void method_init(struct server_method *m, struct server_service *svc,
			const char *name, server_handler_fn *fn, unsigned flags)
{
	m->name = name;
	m->name_len = strlen(name);
	m->fn = fn;
	m->flags = flags;
	m->svc = svc;
	snprintf(m->limit_what, sizeof(m->limit_what), "method %s.%s",
		 svc->name, name);
	climit_init(&m->limit, CLIMIT_NONE, 0, m->limit_what);
	metrics_counter_init(&m->calls);
	metrics_counter_init(&m->errors);
	metrics_latency_init(&m->latency);
}

int server_add_service(struct server *s, const ProtobufCServiceDescriptor *desc,
		       server_handler_fn *const *handlers, void *arg,
		       unsigned flags)
{
	struct server_service *svc;
	int err = service_slot(s, desc->name);

	if (err)
		return err;
	svc =
	    service_new(s, desc->name, desc->short_name, desc->n_methods, arg);
	if (!svc)
		return -ENOMEM;
	svc->desc = desc;
	for (unsigned i = 0; i < desc->n_methods; i++) {
		struct server_method *m = &svc->methods[i];

		method_init(m, svc, desc->methods[i].name, handlers[i], flags);
		m->input = desc->methods[i].input;
		m->output = desc->methods[i].output;
	}
	s->services[s->nservices++] = svc;
	return 0;
}

int server_add_raw_service(struct server *s, const struct pbd_service *ps,
			   server_handler_fn *handler, void *arg,
			   unsigned flags)
{
	struct server_service *svc;
	int err = service_slot(s, ps->full_name);

	if (err)
		return err;
	if (!handler)
		return -EINVAL;
	svc = service_new(s, ps->full_name, ps->name, ps->nmethods, arg);
	if (!svc)
		return -ENOMEM;
	svc->pbd = ps;
	for (unsigned i = 0; i < ps->nmethods; i++) {
		method_init(&svc->methods[i], svc, ps->methods[i].name, handler,
			    flags);
		svc->methods[i].pbd = &ps->methods[i];
	}
	s->services[s->nservices++] = svc;
	return 0;
}

int server_set_method_concurrency(struct server *s, const char *service,
				  const char *method, const char *limit,
				  char *why, size_t why_size)
{
	struct server_method *m = NULL;
	enum climit_mode mode;
	int fixed, err;

	if (s->started)
		return -EBUSY;
	for (int i = 0; i < s->nservices && !m; i++) {
		struct server_service *svc = s->services[i];

		if (strcmp(svc->name, service) && strcmp(svc->short_name, service))
			continue;
		for (unsigned k = 0; k < svc->nmethods; k++)
			if (!strcmp(svc->methods[k].name, method))
				m = &svc->methods[k];
	}
	if (!m) {
		snprintf(why, why_size, "no method %s.%s on this server",
			 service, method);
		return -ENOENT;
	}
	err = climit_parse(limit, &mode, &fixed, why, why_size);
	if (err)
		return err;
	m->limit.mode = mode;
	m->limit.fixed = fixed;
	return 0;
}

/* (a, n) and (b, n) hold the same bytes: eight at a time, then the
 * rest (names are short; musl's memcmp goes a byte at a time). */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
	for (; n >= 8; a += 8, b += 8, n -= 8) {
		uint64_t x, y;

		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
			return false;
	}
	for (; n; a++, b++, n--)
		if (*a != *b)
			return false;
	return true;
}

/*
 * The service a request names: by full name when the name has a dot, by
 * short name when it has none (spec 1.8); *is_short says which.  The
 * full names with a dot are tried first, which is all a well-formed
 * request needs: a match there settles both questions without looking
 * for a dot.  A name without one goes through the short names, in
 * registration order (a service with no package is found there: its
 * full name is its short name).
 */
struct server_service *server__find_service(struct server *s, const char *name,
					    size_t n, bool *is_short)
{
	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];

		if (svc->packaged && n == svc->name_len &&
		    same_bytes(name, svc->name, n)) {
			*is_short = false;
			return svc;
		}
	}
	*is_short = !memchr(name, '.', n);
	if (!*is_short)
		return NULL; /* every full name with a dot was tried */
	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];

		if (n == svc->short_len && same_bytes(name, svc->short_name, n))
			return svc;
	}
	return NULL;
}

struct server_method *server__find_method(struct server_service *svc,
					  const char *name, size_t n)
{
	for (unsigned i = 0; i < svc->nmethods; i++) {
		struct server_method *m = &svc->methods[i];

		if (n == m->name_len && same_bytes(name, m->name, n))
			return m->fn ? m : NULL;
	}
	return NULL;
}

const char *server__addr_text(const struct srv_conn *sc)
{
	return sc->srv->opt.addr_text ? sc->srv->opt.addr_text : sc->local_text;
}

/* ---- calls ---------------------------------------------------------- */

/*
 * Counted before the stopping check, and uncounted only after the answer
 * is queued: server_stop() waits for inflight == 0 before it closes
 * connections, so it either sees this call or this call sees it
 * stopping, and an ELOGOFF answer is queued before the close.
 */
int server__admit(struct server *s, char *why, size_t why_size)
{
	int64_t held;

	__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->stopping, __ATOMIC_SEQ_CST)) {
		snprintf(why, why_size, "Server is stopping");
		return RPC_ELOGOFF;
	}
	held = metrics_gauge_get(&s->held);
	if (s->opt.max_inflight_bytes &&
	    held > (int64_t)s->opt.max_inflight_bytes) {
		metrics_counter_add(&s->limited, 1);
		snprintf(why, why_size,
			 "Reached server's max_inflight_bytes=%zu (%lld held "
			 "by requests and queued answers)",
			 s->opt.max_inflight_bytes, (long long)held);
		return RPC_ELIMIT;
	}
	if (climit_enter(&s->limit, why, why_size)) {
		metrics_counter_add(&s->limited, 1);
		return RPC_ELIMIT;
	}
	return 0;
}

/* A call's answer is queued: the last one of a stopping server wakes
 * server_stop(). */
static void inflight_done(struct server *s)
{
	if (__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&s->stopping, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&s->lock);
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

void server__refused(struct server *s)
{
	inflight_done(s);
}

void server__uncount_call(struct server *s)
{
	climit_leave(&s->limit, 0, false, clock_mono_ns());
	inflight_done(s);
}

void server__call_hold(struct server_call *call, size_t n)
{
	call->held += n;
	metrics_gauge_add(&call->srv->held, (int64_t)n);
}

int server__method_enter(struct server *s, struct server_method *m, char *why,
			 size_t why_size)
{
	if (!climit_enter(&m->limit, why, why_size))
		return 0;
	metrics_counter_add(&s->limited, 1);
	return RPC_ELIMIT;
}

int server_call_limit(struct server_call *call, struct climit *l, char *why,
		      size_t why_size)
{
	if (call->xlimit || climit_enter(l, why, why_size)) {
		metrics_counter_add(&call->srv->limited, 1);
		return RPC_ELIMIT;
	}
	call->xlimit = l;
	return 0;
}

struct server_call *server__call_new(struct srv_conn *sc)
{
	struct server *s = sc->srv;
	struct server_call *call = mem_zalloc(s->opt.mem, sizeof(*call));

	if (!call)
		return NULL;
	call->srv = s;
	call->sc = sc;
	call->peer = sc->conn.peer_text;
	call->peer_subject = tls_conn_subject(&sc->conn);
	call->start_ns = loop_now(sc->conn.loop);
	iobuf_init(&call->request_attachment, s->opt.pool);
	iobuf_init(&call->response_attachment, s->opt.pool);
	iobuf_init(&call->request_body, s->opt.pool);
	iobuf_init(&call->response_body, s->opt.pool);
	conn_ref(&sc->conn);
	return call;
}

void server__call_free(struct server_call *call)
{
	struct server *s = call->srv;
	const struct mem *mem = s->opt.mem;
	struct server_method *m =
	    (struct server_method *)call->m; /* its figures */
	int64_t now = clock_mono_ns();
	uint64_t us = (uint64_t)(now - call->start_ns) / 1000;
	bool ok = !call->error_code;

	if (m) {
		metrics_counter_add(&m->calls, 1);
		if (!ok)
			metrics_counter_add(&m->errors, 1);
		metrics_latency_record(&m->latency, us);
		climit_leave(&m->limit, us, ok, now);
	}
	if (call->xlimit)
		climit_leave(call->xlimit, us, ok, now);
	server__route_release(s, call->route); /* after its limit's leave */
	climit_leave(&s->limit, us, ok, now);
	if (call->held)
		metrics_gauge_add(&s->held, -(int64_t)call->held);
	pbuf_free((ProtobufCMessage *)call->request, mem);
	pbuf_free_shallow(call->response, mem);
	iobuf_destroy(&call->request_attachment);
	iobuf_destroy(&call->response_attachment);
	iobuf_destroy(&call->request_body);
	iobuf_destroy(&call->response_body);
	baidu_frame_release(&call->frame);
	mem_free(mem, call->error_text);
	mem_free(mem, call->http);
	conn_unref(&call->sc->conn);
	mem_free(mem, call);
	inflight_done(s);
}

struct loop *server_call_loop(const struct server_call *call)
{
	return call->sc->conn.loop;
}

void server_call_fail(struct server_call *call, int code, const char *fmt, ...)
{
	const struct mem *mem = call->srv->opt.mem;
	va_list ap;
	int n;

	call->error_code = code ? code : RPC_EINTERNAL;
	mem_free(mem, call->error_text);
	call->error_text = NULL;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	call->error_text = mem_alloc(mem, (size_t)n + 1);
	if (!call->error_text)
		return;
	va_start(ap, fmt);
	vsnprintf(call->error_text, (size_t)n + 1, fmt, ap);
	va_end(ap);
}

void server_call_fail_plain(struct server_call *call, int code,
			    const char *text)
{
	server_call_fail(call, code, "%s", text);
	call->error_plain = true;
}

void server_call_finish(struct server_call *call)
{
	if (call->m && call->m->input && !call->error_code &&
	    !pbuf_complete(call->response))
		server_call_fail(call, RPC_ERESPONSE,
				 "Missing required fields in response=%s",
				 call->m->output->name);
	if (call->http)
		server__http_finish(call);
	else if (call->h2)
		server__h2_finish(call);
	else
		server__baidu_finish(call);
}

void server__call_typed(struct server_call *call, struct iobuf *body,
			int compress)
{
	struct server *s = call->srv;
	int err;

	err =
	    rpc_msg_decode(call->m->input, compress, body, s->opt.max_body_size,
			   s->opt.mem, (ProtobufCMessage **)&call->request);
	if (err == -ENOMEM) {
		server_call_fail(call, RPC_EINTERNAL, "no memory for request");
	} else if (err && call->http) {
		server_call_fail(call, RPC_EREQUEST,
				 "Fail to parse http body as %s",
				 call->m->input->name);
	} else if (err) {
		server_call_fail(
		    call, RPC_EREQUEST,
		    "Fail to parse request=%s, ContentType=%s, "
		    "CompressType=%s, ChecksumType=%s, "
		    "request_size=%zu",
		    call->m->input->name,
		    rpc_content_type_name(BAIDU_CONTENT_PB),
		    compress_type_name(compress),
		    rpc_checksum_type_name(call->frame.meta.checksum_type),
		    /* brpc counts the attachment in */
		    iobuf_len(body) + iobuf_len(&call->request_attachment));
	}
	if (!call->error_code) {
		call->response = pbuf_new(call->m->output, s->opt.mem);
		if (!call->response)
			server_call_fail(call, RPC_EINTERNAL,
					 "no memory for response");
	}
	iobuf_reset(body);
	baidu_frame_release(&call->frame);
	if (call->error_code) {
		server_call_finish(call);
		return;
	}
	STAMP(STAMP_DISPATCH);
	call->m->fn(call, call->m->svc->arg);
}

void server__call_dispatch(struct server_call *call, void (*run)(struct task *))
{
	task_init(&call->task, run);
	if (call->m && (call->m->flags & SERVER_METHOD_INLINE)) {
		run(&call->task);
		return;
	}
	if (rt_submit(call->srv->opt.rt, &call->task)) {
		/* The workers stopped: the server is going down. */
		server_call_fail(call, RPC_ELOGOFF, "Server is stopping");
		server_call_finish(call);
	}
}

/* ---- connections ---------------------------------------------------- */

struct server_peer server__peer(struct srv_conn *sc)
{
	return (struct server_peer){sc->conn.peer_text,
				    tls_conn_subject(&sc->conn)};
}

int server__authenticate(struct srv_conn *sc, const struct baidu_bytes *cred,
			 char *text, size_t text_size)
{
	struct server *s = sc->srv;
	struct server_peer peer = server__peer(sc);
	char why[256] = "";

	if (!s->opt.auth ||
	    !s->opt.auth(s->opt.auth_arg, cred, &peer, why, sizeof(why)))
		return 0;
	log_warn(s->opt.log, "refusing %s: authentication failed%s%s",
		 sc->conn.peer_text, why[0] ? ": " : "", why);
	snprintf(text, text_size, "Fail to authenticate%s%s",
		 why[0] ? ": " : "", why);
	return RPC_ERPCAUTH;
}

/* A plain connection on a tls_required port: an HTTP client is told, in
 * the answer nginx gives the same mistake; anything else is closed. */
static void refuse_plain(struct srv_conn *sc)
{
	static const char body[] = "this port speaks only TLS: use https://\n";
	struct conn *c = &sc->conn;
	uint8_t first[SERVER_SNIFF_SHOW];
	size_t n = iobuf_copy_out(&c->in, 0, first, sizeof(first));
	struct iobuf out;
	char head[160];
	int len;

	__atomic_fetch_add(&sc->srv->n_closed_bad, 1, __ATOMIC_RELAXED);
	log_warn(sc->srv->opt.log,
		 "closing %s: a plain connection to a port with "
		 "tls_required", c->peer_text);
	sc->proto = SRV_REFUSED;
	iobuf_reset(&c->in);
	if (http1_detect(first, n) <= 0) {
		conn_close(c, -EPROTO);
		return;
	}
	len = snprintf(head, sizeof(head),
		       "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain"
		       "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		       sizeof(body) - 1);
	iobuf_init(&out, c->pool);
	if (iobuf_append(&out, head, (size_t)len) ||
	    iobuf_append(&out, body, sizeof(body) - 1) || conn_write(c, &out)) {
		iobuf_destroy(&out);
		conn_close(c, -EPROTO);
		return;
	}
	conn_close_after_flush(c, -EPROTO);
}

/* TLS first: 1 go on with c->in (plaintext now, or plain all along), 0
 * wait for bytes, -1 closing. */
static int srv_tls_data(struct srv_conn *sc)
{
	const struct conn_upgrade *tls = sc->srv->opt.tls;
	struct conn *c = &sc->conn;
	const char *alpn;
	int r;

	if (sc->proto == SRV_DETECT) {
		r = tls->detect(&c->in);
		if (r == 0)
			return 0;
		if (r < 0) {
			if (sc->srv->opt.tls_required) {
				refuse_plain(sc);
				return -1;
			}
			sc->tls_decided = true;
			return 1;
		}
		sc->proto = SRV_TLS;
	}
	r = tls->accept_step(tls->ctx, c);
	if (r == CONN_UP_WAIT)
		return 0;
	if (r < 0) {
		sc->proto = SRV_REFUSED;
		conn_close(c, r);
		return -1;
	}
	/* No RDMA hello inside TLS; ALPN's choice is the protocol. */
	sc->tls_decided = true;
	sc->upgraded = true;
	alpn = tls_conn_alpn(c);
	sc->proto = alpn && !strcmp(alpn, "http/1.1") ? SRV_HTTP : SRV_DETECT;
	return iobuf_empty(&c->in) ? 0 : 1;
}

static void srv_on_data(struct conn *c)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, conn);
	const struct conn_upgrade *up = sc->srv->opt.upgrade;
	uint8_t first[SERVER_SNIFF_SHOW];
	size_t n;
	int r;

	if (sc->srv->opt.tls && !sc->tls_decided &&
	    (sc->proto == SRV_DETECT || sc->proto == SRV_TLS) &&
	    srv_tls_data(sc) <= 0)
		return;
	if (sc->proto == SRV_DETECT && up && !sc->upgraded) {
		/* The RDMA hello comes before anything else (spec 2.7). */
		r = up->detect(&c->in);
		if (r == 0)
			return;
		if (r > 0)
			sc->proto = SRV_UPGRADE;
	}
	if (sc->proto == SRV_UPGRADE) {
		r = up->accept_step(up->ctx, c);
		if (r == CONN_UP_WAIT)
			return;
		if (r < 0) {
			conn_close(c, r);
			return;
		}
		sc->upgraded = true;
		sc->proto = SRV_DETECT;
		if (iobuf_empty(&c->in))
			return;
	}
	if (sc->proto == SRV_DETECT) {
		/* The protocols this port speaks, in brpc's order (spec
		 * 1.9): baidu_std, then HTTP. */
		r = baidu_detect(&c->in);
		if (r < 0) {
			r = server__h2_detect(&c->in);
			if (r > 0)
				sc->proto = SRV_H2;
		}
		if (r < 0) {
			n = iobuf_copy_out(&c->in, 0, first, sizeof(first));
			r = http1_detect(first, n);
			if (r > 0)
				sc->proto = SRV_HTTP;
			else
				r = r == 0 ? 0 : -1;
		}
		if (r == 0)
			return;
		if (r < 0) {
			n = iobuf_copy_out(&c->in, 0, first, sizeof(first));
			log_warn(sc->srv->opt.log,
				 "closing %s: unknown "
				 "protocol, first bytes %02x %02x %02x %02x "
				 "(%zu bytes read)",
				 c->peer_text, n > 0 ? first[0] : 0,
				 n > 1 ? first[1] : 0, n > 2 ? first[2] : 0,
				 n > 3 ? first[3] : 0, iobuf_len(&c->in));
			__atomic_fetch_add(&sc->srv->n_closed_bad, 1,
					   __ATOMIC_RELAXED);
			conn_close(c, -EPROTO);
			return;
		}
		if (sc->proto == SRV_DETECT)
			sc->proto = SRV_BAIDU;
	}
	if (sc->proto == SRV_BAIDU)
		server__baidu_data(sc);
	else if (sc->proto == SRV_HTTP)
		server__http_data(sc);
	else if (sc->proto == SRV_H2)
		server__h2_data(sc);
	else
		iobuf_reset(&c->in); /* refused: ignore the rest */
}

/* A connection on an upgrade port that ended before its protocol was
 * known: what it sent, when, and the usual cause.  Nothing at all is
 * logged at info (port probes do that), a partial hello at warn. */
static void log_undetected(struct srv_conn *sc, const char *how)
{
	const struct conn_upgrade *up = sc->srv->opt.upgrade;
	struct conn *c = &sc->conn;
	size_t have = iobuf_len(&c->in);

	log_write(sc->srv->opt.log, have ? LOG_LVL_WARN : LOG_LVL_INFO,
		  "client %s %s %lld ms after connect, having sent neither "
		  "an %s hello nor a request (%zu of %zu bytes of a hello); "
		  "a client usually does this when its own call timed out: "
		  "check the client's thread budget and timeout_ms",
		  c->peer_text, how,
		  (long long)((clock_mono_ns() - sc->accepted_ns) / 1000000),
		  up->name, have < up->first_len ? have : up->first_len,
		  up->first_len);
}

static void first_bytes_due(struct loop_timer *t)
{
	struct srv_conn *sc = container_of(t, struct srv_conn, first_bytes);

	if (sc->proto != SRV_DETECT || sc->upgraded)
		return;
	log_undetected(sc, "was closed by the handshake deadline");
	conn_close(&sc->conn, -ETIMEDOUT);
}

/* Ports with an upgrade that sets first_bytes_ms: a connection that
 * says nothing is closed once it is due (the RDMA hello's deadline). */
static void srv_on_start(struct conn *c)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, conn);
	const struct conn_upgrade *up = sc->srv->opt.upgrade;

	if (!up || up->first_bytes_ms <= 0)
		return;
	loop_timer_start(c->loop, &sc->first_bytes,
			 sc->accepted_ns +
			     (int64_t)up->first_bytes_ms * 1000000,
			 first_bytes_due);
}

static void srv_on_close(struct conn *c, int err)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, conn);
	struct server *s = sc->srv;
	const struct conn_upgrade *up = s->opt.upgrade;

	loop_timer_stop(c->loop, &sc->first_bytes);
	server__http_close(sc);
	server__h2_close(sc);
	if (c->write_timed_out) {
		metrics_counter_add(&s->closed_slow, 1);
		log_warn(s->opt.log,
			 "closing %s: %lld bytes of answers made no progress "
			 "for write_timeout_ms=%d (the client does not read)",
			 c->peer_text, (long long)conn_queued(c),
			 c->write_timeout_ms);
	}
	if (err == 0 && up && up->first_bytes_ms > 0 &&
	    sc->proto == SRV_DETECT && !sc->upgraded)
		log_undetected(sc, "closed the connection");
	if (err && err != -EPROTO && err != -EACCES)
		log_debug(s->opt.log, "connection %s closed: %s", c->peer_text,
			  strerror(-err));
	pthread_mutex_lock(&s->lock);
	if (sc->linked) {
		if (sc->prev)
			sc->prev->next = sc->next;
		else
			s->conns = sc->next;
		if (sc->next)
			sc->next->prev = sc->prev;
		sc->linked = false;
	}
	pthread_mutex_unlock(&s->lock);
}

static void srv_release(struct conn *c)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, conn);
	struct server *s = sc->srv;

	mem_free(s->opt.mem, sc);
	pthread_mutex_lock(&s->lock);
	if (--s->nconns == 0)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static const struct conn_handler srv_handler = {
    .on_start = srv_on_start,
    .on_data = srv_on_data,
    .on_close = srv_on_close,
    .release = srv_release,
};

static void format_sockaddr(const struct sockaddr_storage *ss, char *buf,
			    size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_UNIX) {
		uaddr_format(ss, sizeof(*ss), buf, size);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(a->sin_port));
	}
}

/*
 * Past max_connections: closed as accepted, counted, and said in the log
 * at most once a second with the count since (loop thread).
 */
static bool over_max_connections(struct server_listener *l, int fd)
{
	struct server *s = l->srv;
	int64_t now, n;

	if (!s->opt.max_connections)
		return false;
	pthread_mutex_lock(&s->lock);
	n = s->nconns;
	pthread_mutex_unlock(&s->lock);
	if (n < s->opt.max_connections)
		return false;
	close(fd);
	metrics_counter_add(&s->refused_max_conn, 1);
	l->full_shed++;
	now = clock_mono_ns();
	if (now - l->full_logged_ns >= 1000000000) {
		log_warn(s->opt.log,
			 "port %d: %lld connections open, max_connections=%d: "
			 "closing new ones as they come (%llu so far)",
			 l->port, (long long)n, s->opt.max_connections,
			 (unsigned long long)l->full_shed);
		l->full_logged_ns = now;
	}
	return true;
}

static void accept_one(struct server_listener *l, int fd)
{
	struct server *s = l->srv;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct srv_conn *sc;
	int err;

	if (over_max_connections(l, fd))
		return;
	sc = mem_zalloc(s->opt.mem, sizeof(*sc));
	if (!sc) {
		log_error(s->opt.log, "no memory for a connection: closing it");
		close(fd);
		return;
	}
	err = conn_init(&sc->conn, fd, rt_loop_for(s->opt.rt, (unsigned)fd),
			&conn_tcp, &srv_handler, sc, s->opt.pool, s->opt.mem,
			s->opt.log);
	if (err) {
		log_error(s->opt.log, "cannot set up a connection: %s",
			  strerror(-err));
		mem_free(s->opt.mem, sc);
		close(fd);
		return;
	}
	conn_set_limits(&sc->conn, &s->held, SERVER_CONN_QUEUE_PAUSE,
			s->opt.write_timeout_ms);
	sc->srv = s;
	sc->accepted_ns = clock_mono_ns();
	loop_timer_init(&sc->first_bytes);
	if (getsockname(fd, (struct sockaddr *)&local, &len) == 0)
		format_sockaddr(&local, sc->local_text, sizeof(sc->local_text));
	pthread_mutex_lock(&s->lock);
	s->nconns++;
	sc->next = s->conns;
	if (s->conns)
		s->conns->prev = sc;
	s->conns = sc;
	sc->linked = true;
	pthread_mutex_unlock(&s->lock);
	conn_start(&sc->conn);
	conn_unref(&sc->conn); /* the watch holds it now */
}

/*
 * Out of descriptors (EMFILE, ENFILE) or of kernel memory for one: the
 * connection at the head of the backlog is accepted with the reserved
 * descriptor and closed at once.  A client then sees its connection
 * end instead of waiting in a backlog that edge-triggered epoll would
 * not report again, and the dead connections of a flood that is over
 * leave the backlog instead of standing before the next live one.
 * 1: one shed, go on accepting; 0: the backlog is empty; -1: no reserve
 * (another listener holds it, or it could not be reopened).
 */
static int shed_one(struct server_listener *l)
{
	struct server *s = l->srv;
	int rfd = __atomic_exchange_n(&s->reserve_fd, -1, __ATOMIC_ACQ_REL);
	int fd, r;

	if (rfd < 0)
		return -1;
	close(rfd);
	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	r = fd >= 0 ? 1 : errno == EAGAIN ? 0 : -1;
	if (fd >= 0) {
		close(fd);
		metrics_counter_add(&s->refused_no_fd, 1);
		l->starved_shed++;
	}
	rfd = reserve_open();
	__atomic_store_n(&s->reserve_fd, rfd, __ATOMIC_RELEASE);
	return rfd < 0 && r == 1 ? -1 : r;
}

static void starved_begin(struct server_listener *l, int err)
{
	struct rlimit rl = {0};
	int64_t open_now;

	if (l->starved_ns)
		return;
	l->starved_ns = clock_mono_ns();
	l->starved_shed = 0;
	getrlimit(RLIMIT_NOFILE, &rl);
	pthread_mutex_lock(&l->srv->lock);
	open_now = l->srv->nconns;
	pthread_mutex_unlock(&l->srv->lock);
	log_warn(l->srv->opt.log,
		 "port %d: accept failed: %s (the descriptor limit is %llu, "
		 "%lld connections open): closing new connections at once "
		 "until descriptors are free",
		 l->port, strerror(err), (unsigned long long)rl.rlim_cur,
		 (long long)open_now);
}

static void starved_end(struct server_listener *l)
{
	log_info(l->srv->opt.log,
		 "port %d: accepting again after %lld ms out of descriptors; "
		 "%llu connections were closed unserved",
		 l->port, (long long)((clock_mono_ns() - l->starved_ns) / 1000000),
		 (unsigned long long)l->starved_shed);
	l->starved_ns = 0;
}

static void on_accept(struct loop_io *io, uint32_t events);

/* A listener that rested (no reserve to shed with) watches again; the
 * backlog, ready, is reported at once. */
static void listener_resume(struct loop_timer *t)
{
	struct server_listener *l =
	    container_of(t, struct server_listener, resume);
	struct server *s = l->srv;
	int rfd;

	if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) || l->fd < 0)
		return;
	if (__atomic_load_n(&s->reserve_fd, __ATOMIC_ACQUIRE) < 0 &&
	    (rfd = reserve_open()) >= 0) {
		int old = -1;

		if (!__atomic_compare_exchange_n(&s->reserve_fd, &old, rfd,
						 false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			close(rfd);
	}
	loop_io_init(&l->io, l->fd, EPOLLIN, on_accept);
	if (loop_io_add(l->loop, &l->io))
		loop_timer_start(l->loop, &l->resume,
				 loop_now(l->loop) +
				     SERVER_ACCEPT_PAUSE_MS * 1000000LL,
				 listener_resume);
}

static void listener_rest(struct server_listener *l)
{
	if (l->io.active)
		loop_io_del(l->loop, &l->io);
	loop_timer_start(l->loop, &l->resume,
			 loop_now(l->loop) + SERVER_ACCEPT_PAUSE_MS * 1000000LL,
			 listener_resume);
}

static void on_accept(struct loop_io *io, uint32_t events)
{
	struct server_listener *l =
	    container_of(io, struct server_listener, io);
	int fd, r;

	for (;;) {
		fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (l->starved_ns)
				starved_end(l);
			accept_one(l, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN)
			return;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			starved_begin(l, errno);
			r = shed_one(l);
			if (r > 0)
				continue;
			if (r < 0)
				listener_rest(l);
			return;
		}
		log_error(l->srv->opt.log, "accept on port %d: %s", l->port,
			  strerror(errno));
		listener_rest(l);
		return;
	}
}

/* ---- listeners ------------------------------------------------------ */

int server_add_stream_method(struct server *s, const char *service,
			     const char *method,
			     const struct server_stream_ops *ops, void *arg)
{
	if (s->started)
		return -EBUSY;
	for (int i = 0; i < s->nstream_methods; i++)
		if (!strcmp(s->stream_methods[i].service, service) &&
		    !strcmp(s->stream_methods[i].method, method))
			return -EEXIST;
	if (s->nstream_methods == SERVER_MAX_STREAM_METHODS)
		return -ENOSPC;
	s->stream_methods[s->nstream_methods].service = service;
	s->stream_methods[s->nstream_methods].method = method;
	s->stream_methods[s->nstream_methods].ops = ops;
	s->stream_methods[s->nstream_methods].arg = arg;
	s->nstream_methods++;
	return 0;
}

int server_set_router(struct server *s, server_route_fn *route,
		      server_handler_fn *handler, void *arg)
{
	if (s->started)
		return -EBUSY;
	if (!route || !handler)
		return -EINVAL;
	s->route = route;
	s->route_handler = handler;
	s->route_arg = arg;
	return 0;
}

/* server_listen() of "unix:/path" or "unix:@name": 0, or -errno.  A
 * socket file left by a server that died is replaced; any other file is
 * not. */
static int listen_unix(struct server *s, const char *addr)
{
	struct server_listener *l;
	struct sockaddr_storage ss;
	socklen_t len;
	struct stat st;
	int fd, err;

	err = uaddr_parse(addr, &ss, &len);
	if (err)
		return err;
	if (addr[5] == '/' && lstat(addr + 5, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(addr + 5);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, SERVER_BACKLOG) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	l = &s->listeners[s->nlisteners++];
	l->fd = fd;
	l->srv = s;
	l->port = 0;
	snprintf(l->unix_path, sizeof(l->unix_path), "%s",
		 addr[5] == '/' ? addr + 5 : "");
	return 0;
}

int server_set_route_release(struct server *s, server_route_release_fn *fn)
{
	if (s->started)
		return -EBUSY;
	s->route_release = fn;
	return 0;
}

int server_set_route_stream(struct server *s, server_route_stream_fn *fn)
{
	if (s->started)
		return -EBUSY;
	s->route_stream = fn;
	return 0;
}

void server__route_release(struct server *s, void *route)
{
	if (route && s->route_release)
		s->route_release(s->route_arg, route);
}

int server_listen(struct server *s, const char *host, int port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct server_listener *l;
	struct sockaddr_storage ss;
	struct addrinfo *ai;
	socklen_t len = sizeof(ss);
	char portbuf[16];
	int fd, one = 1, err;

	if (s->started)
		return -EBUSY;
	if (s->nlisteners == SERVER_MAX_LISTENERS)
		return -ENOSPC;
	if (host && uaddr_is_unix(host))
		return listen_unix(s, host);
	if (port < 0 || port > 65535)
		return -EINVAL;
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	err = getaddrinfo(host && *host ? host : NULL, portbuf, &hints, &ai);
	if (err)
		return err == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		err = -errno;
		freeaddrinfo(ai);
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(fd, SERVER_BACKLOG) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		err = -errno;
		freeaddrinfo(ai);
		close(fd);
		return err;
	}
	freeaddrinfo(ai);
	l = &s->listeners[s->nlisteners++];
	l->fd = fd;
	l->srv = s;
	l->port = ntohs(ss.ss_family == AF_INET6
			    ? ((struct sockaddr_in6 *)&ss)->sin6_port
			    : ((struct sockaddr_in *)&ss)->sin_port);
	return l->port;
}

static void listener_start_task(struct task *t)
{
	struct server_listener *l =
	    container_of(t, struct server_listener, start_task);
	int err;

	loop_io_init(&l->io, l->fd, EPOLLIN, on_accept);
	err = loop_io_add(l->loop, &l->io);
	if (err)
		log_error(l->srv->opt.log, "cannot watch port %d: %s", l->port,
			  strerror(-err));
}

static void listener_stop_task(struct task *t)
{
	struct server_listener *l =
	    container_of(t, struct server_listener, stop_task);
	struct server *s = l->srv;

	if (l->io.active)
		loop_io_del(l->loop, &l->io);
	loop_timer_stop(l->loop, &l->resume);
	close(l->fd);
	if (l->unix_path[0])
		unlink(l->unix_path); /* the socket file goes with us */
	pthread_mutex_lock(&s->lock);
	l->fd = -1;
	s->listeners_open--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Each method's HTTP/JSON types (from the pool, by their names) and
 * figures (in the registry, labelled with its names). */
static void methods_start(struct server *s)
{
	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];
		const struct pbd_service *ps = svc->pbd;

		if (!ps && s->opt.descriptors)
			ps = svc->pbd = pbd_find_service(
			    s->opt.descriptors, svc->name, svc->name_len);
		for (unsigned k = 0; k < svc->nmethods; k++) {
			struct server_method *m = &svc->methods[k];

			if (!m->pbd && ps)
				m->pbd =
				    pbd_find_method(ps, m->name, m->name_len);
			if (!s->opt.metrics || !m->fn)
				continue;
			snprintf(m->labels, sizeof(m->labels),
				 "service=\"%s\",method=\"%s\"", svc->name,
				 m->name);
			metrics_register_counter(s->opt.metrics, &m->calls,
						 "rpcgate_method_calls_total",
						 "calls answered by a method",
						 m->labels);
			metrics_register_counter(s->opt.metrics, &m->errors,
						 "rpcgate_method_errors_total",
						 "calls a method answered with "
						 "an error",
						 m->labels);
			metrics_register_latency(
			    s->opt.metrics, &m->latency,
			    "rpcgate_method_latency_us",
			    "a method's calls, from request "
			    "to answer",
			    m->labels);
		}
	}
}

/* The server's own figures on /metrics. */
static void overload_metrics_start(struct server *s)
{
	struct metrics *mx = s->opt.metrics;

	if (!mx)
		return;
	metrics_register_counter(mx, &s->refused_no_fd,
				 "rpcgate_server_connections_refused_total",
				 "connections closed as accepted",
				 "reason=\"no_descriptor\"");
	metrics_register_counter(mx, &s->refused_max_conn,
				 "rpcgate_server_connections_refused_total",
				 "connections closed as accepted",
				 "reason=\"max_connections\"");
	metrics_register_counter(mx, &s->closed_slow,
				 "rpcgate_server_write_timeouts_total",
				 "connections closed by write_timeout_ms", NULL);
	metrics_register_counter(mx, &s->limited,
				 "rpcgate_server_calls_limited_total",
				 "calls answered ELIMIT", NULL);
	metrics_register_gauge(mx, &s->held, "rpcgate_server_inflight_bytes",
			       "bytes of requests and queued answers held",
			       NULL);
}

int server_start(struct server *s)
{
	if (s->started)
		return -EBUSY;
	methods_start(s);
	overload_metrics_start(s);
	s->started = true;
	s->listeners_open = s->nlisteners;
	for (int i = 0; i < s->nlisteners; i++) {
		struct server_listener *l = &s->listeners[i];

		l->loop = rt_loop_for(s->opt.rt, (unsigned)i);
		task_init(&l->start_task, listener_start_task);
		task_init(&l->stop_task, listener_stop_task);
		loop_post(l->loop, &l->start_task);
	}
	return 0;
}

/* ---- stopping ------------------------------------------------------- */

/* Waits on s->cond (lock held) until *done() or the deadline (-1: none).
 * true when the condition holds. */
static bool wait_until(struct server *s, bool (*done)(struct server *),
		       int64_t deadline_ns)
{
	struct timespec ts;

	while (!done(s)) {
		if (deadline_ns < 0) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		ts.tv_sec = deadline_ns / 1000000000;
		ts.tv_nsec = deadline_ns % 1000000000;
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) ==
		    ETIMEDOUT)
			return done(s);
	}
	return true;
}

static bool listeners_closed(struct server *s)
{
	return s->listeners_open == 0;
}

static bool calls_done(struct server *s)
{
	return __atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE) == 0;
}

static bool conns_gone(struct server *s)
{
	return s->nconns == 0;
}

static int64_t deadline_after(int ms)
{
	return ms < 0 ? -1 : clock_mono_ns() + (int64_t)ms * 1000000;
}

int server_stop(struct server *s, int grace_ms)
{
	struct srv_conn *sc;
	int left;

	if (__atomic_exchange_n(&s->stopping, 1, __ATOMIC_SEQ_CST))
		return (int)__atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE);
	if (s->started)
		for (int i = 0; i < s->nlisteners; i++)
			loop_post(s->listeners[i].loop,
				  &s->listeners[i].stop_task);
	else
		for (int i = 0; i < s->nlisteners; i++) {
			close(s->listeners[i].fd);
			if (s->listeners[i].unix_path[0])
				unlink(s->listeners[i].unix_path);
		}
	pthread_mutex_lock(&s->lock);
	/* HTTP/2 clients are told to open no more streams here */
	for (sc = s->conns; sc; sc = sc->next)
		server__h2_stop(sc);
	wait_until(s, listeners_closed, -1);
	wait_until(s, calls_done, deadline_after(grace_ms));
	left = (int)__atomic_load_n(&s->inflight, __ATOMIC_ACQUIRE);
	/* Answers are queued; each connection closes once its queue has
	 * gone out.  Peers that do not read get SERVER_FLUSH_WAIT_MS. */
	for (sc = s->conns; sc; sc = sc->next)
		conn_close_after_flush(&sc->conn, 0);
	if (!wait_until(s, conns_gone, deadline_after(SERVER_FLUSH_WAIT_MS)))
		for (sc = s->conns; sc; sc = sc->next)
			conn_close(&sc->conn, -ESHUTDOWN);
	wait_until(s, conns_gone, -1);
	pthread_mutex_unlock(&s->lock);
	if (left)
		log_warn(s->opt.log,
			 "server stopped with %d calls still in "
			 "their handlers after %d ms",
			 left, grace_ms);
	return left;
}

void server_destroy(struct server *s)
{
	server_stop(s, -1);
	pthread_mutex_lock(&s->lock);
	wait_until(s, calls_done, -1);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];

		for (unsigned k = 0; k < svc->nmethods; k++) {
			metrics_unregister(&svc->methods[k].calls.node);
			metrics_unregister(&svc->methods[k].errors.node);
			metrics_unregister(&svc->methods[k].latency.node);
			climit_destroy(&svc->methods[k].limit);
		}
		mem_free(s->opt.mem, svc);
	}
	metrics_unregister(&s->refused_no_fd.node);
	metrics_unregister(&s->refused_max_conn.node);
	metrics_unregister(&s->closed_slow.node);
	metrics_unregister(&s->limited.node);
	metrics_unregister(&s->held.node);
	climit_destroy(&s->limit);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->flags_lock);
	pthread_mutex_destroy(&s->lock);
}

void server_stats(struct server *s, struct server_stats *out)
{
	out->calls = __atomic_load_n(&s->n_calls, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->n_errors, __ATOMIC_RELAXED);
	out->closed_bad = __atomic_load_n(&s->n_closed_bad, __ATOMIC_RELAXED);
	out->inflight = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
	out->refused_no_fd = metrics_counter_get(&s->refused_no_fd);
	out->refused_max_conn = metrics_counter_get(&s->refused_max_conn);
	out->closed_slow = metrics_counter_get(&s->closed_slow);
	out->limited = metrics_counter_get(&s->limited);
	out->held_bytes = metrics_gauge_get(&s->held);
	out->limit = climit_current(&s->limit);
	pthread_mutex_lock(&s->lock);
	out->connections = s->nconns;
	pthread_mutex_unlock(&s->lock);
}
