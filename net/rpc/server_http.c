/*
 * server_http: HTTP/1.x on a server port (brpc's mapping of protobuf
 * services, spec/brpc-wire.md section 4).
 *
 * A connection's requests, one at a time (loop thread):
 *
 *   IDLE  --first byte-->  HEAD  --whole head-->  BODY  --whole body-->
 *   CALL  --answer out (posted back to the loop)-->  IDLE ...
 *
 *   IDLE   the keep-alive timer runs (http_idle_timeout_ms: close)
 *   HEAD   the head's deadline runs (http_header_timeout_ms: 408, close)
 *   BODY   Content-Length bytes or chunks move from the input to the
 *          body without a copy; silence for http_body_idle_ms: 408
 *   CALL   a built-in page is answered at once; a call goes to its
 *          method, route or raw handler, and its answer, made on
 *          whichever thread finished it, posts the connection back to
 *          IDLE.  Pipelined requests wait in the input meanwhile, so
 *          answers leave in the order the requests came (RFC 9112 9.3.2).
 *
 * A call's body on a worker: gunzipped (Content-Encoding: gzip), then,
 * unless it is application/proto, read as JSON by the method's input
 * type into wire bytes; the answer goes the other way, gzipped for a
 * caller that accepts it once it is SERVER_HTTP_GZIP_MIN long.
 *
 * A head that breaks the protocol is answered with its status (400, 413,
 * 414, 417, 431, 501, 505) and one log line, and the connection closes.
 *
 * HTTP/2 requests that are not gRPC come here too (server__http_h2()):
 * their fields made into an HTTP/1.1 head and parsed as one, then served
 * as one, pages and calls alike; every answer made meanwhile (on the
 * loop, or by the call's finish on its thread) goes to the stream
 * (h2_target) instead of the connection.
 */
#include "server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/fbuf.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/json_pb.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"

/* Longest service or method name taken from a path. */
#define HTTP_NAME_MAX 256
/* A routed call's JSON body up to this is transcoded on the loop that
 * read it (a few microseconds); a larger one on a worker. */
#define HTTP_INLINE_BODY_MAX 4096

/* What a call's answer needs to know of its request. */
struct srv_http_call {
	int minor;
	bool keep_alive;
	bool proto;	  /* wire bytes both ways (application/proto) */
	bool has_type;	  /* the request said its Content-Type */
	bool accept_gzip; /* Accept-Encoding: gzip */
	bool gzip_body;	  /* Content-Encoding: gzip */
	const struct pbd_msg *in, *out; /* the method's types, for JSON */
	struct server_stream *h2;	/* over HTTP/2: its stream */
	char service[HTTP_NAME_MAX + 1];
	char method[HTTP_NAME_MAX + 1];
	char path[]; /* for error texts */
};

static void http_read_on(struct srv_conn *sc);

/* Set while an answer for an HTTP/2 stream is made on this thread:
 * server__http_answer() gives it to the stream. */
static __thread struct server_stream *h2_target;

/* ---- answers ------------------------------------------------------------ */

/* Appends s to the head being built at *o, within end. */
static char *put_str(char *o, const char *end, const char *s)
{
	size_t n = strlen(s);

	if (!o || (size_t)(end - o) < n)
		return NULL;
	memcpy(o, s, n);
	return o + n;
}

/* Written by hand: snprintf cost a quarter of a JSON call's
 * instructions (callgrind). */
void server__http_answer(struct srv_conn *sc, int minor, bool head_only,
			 int status, const char *extra, const char *type,
			 struct iobuf *body)
{
	char h[512], *o = h;
	const char *end = h + sizeof(h);
	struct iobuf out;

	if (h2_target) {
		server__h2_http_answer(h2_target, status, head_only, extra,
				       type, body);
		if (body)
			iobuf_reset(body);
		return;
	}
	o = put_str(o, end, minor ? "HTTP/1.1 " : "HTTP/1.0 ");
	o = put_decimal(o, end, (uint64_t)status);
	o = put_str(o, end, " ");
	o = put_str(o, end, http1_reason(status));
	o = put_str(o, end, "\r\nContent-Length: ");
	o = put_decimal(o, end, body ? iobuf_len(body) : 0);
	o = put_str(o, end, "\r\n");
	if (type) {
		o = put_str(o, end, "Content-Type: ");
		o = put_str(o, end, type);
		o = put_str(o, end, "\r\n");
	}
	if (extra)
		o = put_str(o, end, extra);
	o = put_str(o, end, "\r\n");
	if (!o) {
		conn_close(&sc->conn, -EOVERFLOW);
		return;
	}
	iobuf_init(&out, sc->srv->opt.pool);
	if (iobuf_append(&out, h, (size_t)(o - h)) == 0 &&
	    (head_only || !body || iobuf_append_buf(&out, body) == 0))
		conn_write(&sc->conn, &out);
	else
		conn_close(&sc->conn, -ENOMEM);
	iobuf_destroy(&out);
	if (body)
		iobuf_reset(body);
}

/* A refusal before any call: the status, a line of text, and close. */
static void refuse(struct srv_conn *sc, int minor, int status, const char *why)
{
	struct server *s = sc->srv;
	struct iobuf body;
	char text[256];
	int n;

	log_info(s->opt.log, "HTTP request from %s refused with %d: %s",
		 sc->conn.peer_text, status, why);
	__atomic_fetch_add(&s->n_http_bad, 1, __ATOMIC_RELAXED);
	n = snprintf(text, sizeof(text), "rpcgate: %s\n", why);
	iobuf_init(&body, s->opt.pool);
	if (n > 0 && iobuf_append(&body, text, (size_t)n) == 0)
		server__http_answer(sc, minor, false, status,
				    minor ? "connection: close\r\n" : "",
				    "text/plain", &body);
	iobuf_destroy(&body);
	sc->proto = SRV_REFUSED;
	sc->http.state = SH_CALL;
	loop_timer_stop(sc->conn.loop, &sc->http.timer);
	iobuf_reset(&sc->conn.in);
	conn_close_after_flush(&sc->conn, -EPROTO);
}

/* brpc's error answer: its status, x-bd-error-code, "[addr][E<code>]text". */
static void answer_error(struct srv_conn *sc, const struct srv_http_call *hc,
			 int minor, int code, const char *text, bool plain,
			 const char *close_field)
{
	struct server *s = sc->srv;
	char small[512], *big = NULL, extra[96];
	size_t need = strlen(text) + SERVER_ADDR_TEXT_MAX + 32;
	char *buf = small;
	struct iobuf body;
	int n = -1;

	(void)hc;
	if (need > sizeof(small))
		buf = big = mem_alloc(s->opt.mem, need);
	if (!plain && buf)
		n = baidu_format_error_text(
		    buf, need > sizeof(small) ? need : sizeof(small),
		    server__addr_text(sc), code, text);
	iobuf_init(&body, s->opt.pool);
	if (n < 0)
		iobuf_append(&body, text, strlen(text));
	else
		iobuf_append(&body, buf, (size_t)n);
	snprintf(extra, sizeof(extra), "x-bd-error-code: %d\r\n%s", code,
		 close_field);
	server__http_answer(sc, minor, false, rpc_errno_http_status(code),
			    extra, "text/plain", &body);
	iobuf_destroy(&body);
	mem_free(s->opt.mem, big);
	__atomic_fetch_add(&s->n_errors, 1, __ATOMIC_RELAXED);
}

/* The field that says how the connection goes on, for an answer. */
static const char *connection_field(int minor, bool keep_alive)
{
	if (!keep_alive)
		return minor ? "connection: close\r\n" : "";
	return minor ? "" : "Connection: keep-alive\r\n";
}

/* After an answer made on the loop thread: read on, or close. */
static void answered_here(struct srv_conn *sc, bool keep_alive)
{
	if (!keep_alive) {
		sc->proto = SRV_REFUSED;
		iobuf_reset(&sc->conn.in);
		conn_close_after_flush(&sc->conn, 0);
		return;
	}
	sc->http.state = SH_IDLE;
}

/* ---- the call's answer (any thread) ------------------------------------- */

/* The answer's wire bytes, uncompressed, into pb.  0, or an error text
 * set on the call. */
static int answer_bytes(struct server_call *call, struct iobuf *pb)
{
	struct server *s = call->srv;
	int err;

	if (call->m && call->m->input) {
		err = rpc_msg_encode(call->response, COMPRESS_NONE, pb);
		if (err)
			server_call_fail(call, RPC_EINTERNAL,
					 "Fail to serialize response=%s: %s",
					 call->m->output->name, strerror(-err));
		return err;
	}
	if (call->response_compress_type == COMPRESS_NONE)
		return iobuf_append_buf(pb, &call->response_body);
	err = compress_decode(call->response_compress_type,
			      &call->response_body, pb, s->opt.max_body_size);
	if (err)
		server_call_fail(
		    call, RPC_ERESPONSE,
		    "Fail to decompress the answer (%s): %s",
		    compress_type_name(call->response_compress_type),
		    strerror(-err));
	return err;
}

/* A flat view of an iobuf's bytes: in place when it is one piece, else
 * copied into *copy (free it). */
static const uint8_t *flat(const struct iobuf *b, const struct mem *mem,
			   uint8_t **copy)
{
	size_t n = iobuf_len(b);
	const void *p;
	size_t len;

	*copy = NULL;
	if (!n)
		return (const uint8_t *)"";
	if (iobuf_ref_count(b) == 1 && iobuf_ref_at(b, 0, &p, &len) == 0)
		return p;
	*copy = mem_alloc(mem, n);
	if (!*copy)
		return NULL;
	iobuf_copy_out(b, 0, *copy, n);
	return *copy;
}

/* The JSON of the answer's bytes into body. */
static int answer_json(struct server_call *call, struct iobuf *pb,
		       struct iobuf *body)
{
	struct server *s = call->srv;
	char why[JPB_WHY_MAX];
	struct fbuf js;
	uint8_t *copy;
	const uint8_t *p = flat(pb, s->opt.mem, &copy);
	int err;

	if (!p) {
		server_call_fail(call, RPC_EINTERNAL,
				 "no memory for the answer");
		return -ENOMEM;
	}
	fbuf_init(&js, s->opt.mem, 0);
	err = jpb_to_json(call->http->out, p, iobuf_len(pb), &js, why);
	if (!err && iobuf_append(body, js.p, js.len))
		err = -ENOMEM;
	if (err == -ENOMEM)
		server_call_fail(call, RPC_EINTERNAL,
				 "no memory for the answer");
	else if (err)
		server_call_fail(call, RPC_ERESPONSE,
				 "Fail to convert the answer to json as %s: %s",
				 call->http->out->full_name, why);
	fbuf_destroy(&js);
	mem_free(s->opt.mem, copy);
	return err;
}

static void answer_resume(struct task *t)
{
	struct srv_conn *sc = container_of(t, struct srv_conn, http.resume);

	if (!conn_closing(&sc->conn) && sc->proto == SRV_HTTP) {
		sc->http.state = SH_IDLE;
		http_read_on(sc);
	}
	conn_unref(&sc->conn);
}

void server__http_finish(struct server_call *call)
{
	struct srv_http_call *hc = call->http;
	struct srv_conn *sc = call->sc;
	struct server *s = call->srv;
	bool keep =
	    hc->keep_alive && !__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
	const char *close_field = connection_field(hc->minor, keep);
	char extra[128];
	struct iobuf pb, body, gz;

	h2_target = hc->h2;
	iobuf_init(&pb, s->opt.pool);
	iobuf_init(&body, s->opt.pool);
	iobuf_init(&gz, s->opt.pool);
	if (!call->error_code && !answer_bytes(call, &pb)) {
		if (hc->proto)
			iobuf_append_buf(&body, &pb);
		else
			answer_json(call, &pb, &body);
	}
	if (call->error_code) {
		answer_error(sc, hc, hc->minor, call->error_code,
			     call->error_text
				 ? call->error_text
				 : (rpc_errno_text(call->error_code)
					? rpc_errno_text(call->error_code)
					: "failed"),
			     call->error_plain, close_field);
	} else {
		bool zipped = hc->accept_gzip && s->opt.http_gzip_min &&
			      iobuf_len(&body) >= s->opt.http_gzip_min &&
			      compress_encode(COMPRESS_GZIP, &body, &gz) == 0;

		if (zipped) {
			snprintf(extra, sizeof(extra),
				 "Content-Encoding: gzip\r\n%s", close_field);
			close_field = extra;
		}
		server__http_answer(sc, hc->minor, false, 200, close_field,
				    !hc->has_type ? NULL
				    : hc->proto	  ? "application/proto"
						  : "application/json",
				    zipped ? &gz : &body);
	}
	__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
	iobuf_destroy(&pb);
	iobuf_destroy(&body);
	iobuf_destroy(&gz);
	if (h2_target) {
		h2_target = NULL;
		server__h2_http_done(call); /* sent and freed on the loop */
		return;
	}
	if (!keep) {
		conn_close_after_flush(&sc->conn, 0);
	} else {
		conn_ref(&sc->conn);
		loop_post(sc->conn.loop, &sc->http.resume);
	}
	server__call_free(call);
}

/* ---- the call's request (a worker, or the loop for inline methods) ------ */

static bool has_required(const struct server_call *call)
{
	const struct srv_http_call *hc = call->http;

	if (hc->in)
		return hc->in->nrequired > 0;
	if (call->m && call->m->input) {
		const ProtobufCMessageDescriptor *d = call->m->input;

		for (unsigned i = 0; i < d->n_fields; i++)
			if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED)
				return true;
	}
	return false;
}

/* The request's body as uncompressed wire bytes in call->request_body:
 * 0, or the call failed. */
static int request_bytes(struct server_call *call)
{
	struct srv_http_call *hc = call->http;
	struct server *s = call->srv;
	struct iobuf *body = &call->request_body, tmp;
	const char *tname = hc->in			? hc->in->full_name
			    : call->m && call->m->input ? call->m->input->name
							: call->service;
	char why[JPB_WHY_MAX];
	struct fbuf pb;
	uint8_t *copy;
	const uint8_t *p;
	int err;

	if (hc->gzip_body) {
		iobuf_init(&tmp, s->opt.pool);
		err = compress_decode(COMPRESS_GZIP, body, &tmp,
				      s->opt.max_body_size);
		iobuf_reset(body);
		iobuf_append_buf(body, &tmp);
		iobuf_destroy(&tmp);
		if (err) {
			server_call_fail(call, RPC_EREQUEST,
					 "Fail to un-gzip request body: %s",
					 err == -EMSGSIZE ? "over max_body_size"
							  : strerror(-err));
			return err;
		}
	}
	if (iobuf_empty(body) && has_required(call)) {
		server_call_fail(call, RPC_EREQUEST,
				 "%s needs to be created from a non-empty "
				 "json, it has required fields.",
				 tname);
		return -ENODATA;
	}
	if (hc->proto)
		return 0;
	p = flat(body, s->opt.mem, &copy);
	if (!p) {
		server_call_fail(call, RPC_EINTERNAL, "no memory for request");
		return -ENOMEM;
	}
	fbuf_init(&pb, s->opt.mem, s->opt.max_body_size);
	err = jpb_from_json(hc->in, (const char *)p, iobuf_len(body), &pb, why);
	mem_free(s->opt.mem, copy);
	if (err == -ENODATA)
		server_call_fail(call, RPC_EREQUEST,
				 "%s needs to be created from a non-empty "
				 "json, it has required fields.",
				 tname);
	else if (err == -ENOMEM)
		server_call_fail(call, RPC_EINTERNAL, "no memory for request");
	else if (err == -EMSGSIZE)
		server_call_fail(call, RPC_EREQUEST,
				 "the request is over max_body_size=%zu as "
				 "protobuf",
				 s->opt.max_body_size);
	else if (err)
		server_call_fail(call, RPC_EREQUEST,
				 "Fail to parse http json body as %s: %s",
				 tname, why);
	iobuf_reset(body);
	if (!err && iobuf_append(body, pb.p, pb.len)) {
		server_call_fail(call, RPC_EINTERNAL, "no memory for request");
		err = -ENOMEM;
	}
	fbuf_destroy(&pb);
	return err;
}

static void call_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);
	struct server *s = call->srv;

	if (request_bytes(call)) {
		server_call_finish(call);
		return;
	}
	if (call->route)
		s->route_handler(call, s->route_arg);
	else if (!call->m->input)
		call->m->fn(call, call->m->svc->arg);
	else
		server__call_typed(call, &call->request_body, COMPRESS_NONE);
}

/* ---- from a complete request to a call (loop thread) -------------------- */

/* Content-Type application/proto (or x-protobuf), parameters aside. */
static bool is_proto(const struct http1_str *ct)
{
	static const char *const types[] = {"application/proto",
					    "application/x-protobuf"};

	for (size_t i = 0; ct && i < ARRAY_SIZE(types); i++) {
		size_t n = strlen(types[i]);

		if (ct->n >= n && !strncasecmp(ct->p, types[i], n) &&
		    (ct->n == n || ct->p[n] == ';' || ct->p[n] == ' '))
			return true;
	}
	return false;
}

/* log-id, a decimal u64 (brpc's header); a bad one is ignored, logged. */
static void read_log_id(struct srv_conn *sc, const struct http1_req *req,
			struct server_call *call)
{
	const struct http1_str *v = req->log_id;
	uint64_t id = 0;
	size_t i;

	if (!v)
		return;
	for (i = 0; i < v->n && v->p[i] >= '0' && v->p[i] <= '9'; i++) {
		if (id > (UINT64_MAX - 9) / 10)
			break;
		id = id * 10 + (uint64_t)(v->p[i] - '0');
	}
	if (!v->n || i != v->n) {
		log_warn(sc->srv->opt.log, "invalid log-id=%.*s from %s",
			 (int)(v->n > 32 ? 32 : v->n), v->p,
			 sc->conn.peer_text);
		return;
	}
	call->has_log_id = true;
	call->log_id = id;
}

/* x-bd-timeout-ms: the caller's deadline, which bounds a gateway's. */
static int32_t read_timeout(const struct http1_req *req)
{
	const struct http1_str *v = req->timeout_ms;
	int64_t ms = 0;

	if (!v)
		return 0;
	for (size_t i = 0; i < v->n; i++) {
		if (v->p[i] < '0' || v->p[i] > '9' || ms > INT32_MAX / 10)
			return 0;
		ms = ms * 10 + (v->p[i] - '0');
	}
	return ms <= INT32_MAX ? (int32_t)ms : 0;
}

/* "/Service/Method[/...]": the two names (not NUL-terminated). */
static bool split_path(const struct http1_str *path, struct http1_str *svc,
		       struct http1_str *method)
{
	const char *p = path->p + 1, *end = path->p + path->n, *slash;

	if (path->n < 2 || path->p[0] != '/')
		return false;
	slash = memchr(p, '/', (size_t)(end - p));
	if (!slash || slash == p)
		return false;
	*svc = (struct http1_str){p, (size_t)(slash - p)};
	p = slash + 1;
	slash = memchr(p, '/', (size_t)(end - p));
	*method = (struct http1_str){p, slash ? (size_t)(slash - p)
					      : (size_t)(end - p)};
	return method->n > 0 && svc->n <= HTTP_NAME_MAX &&
	       method->n <= HTTP_NAME_MAX;
}

static void copy_name(char *dst, const char *p, size_t n)
{
	memcpy(dst, p, n);
	dst[n] = '\0';
}

/* A call's request is whole (its body in `body`, taken): find what
 * serves it and hand it over.  h2: the HTTP/2 stream it came on. */
static void start_call(struct srv_conn *sc, const struct http1_req *req,
		       bool keep, struct iobuf *body, struct server_stream *h2)
{
	struct server *s = sc->srv;
	const struct pbd_pool *pool = s->opt.descriptors;
	const char *close_field = connection_field(req->minor, keep);
	struct http1_str sname = {0}, mname = {0};
	const struct pbd_service *ps = NULL;
	const struct pbd_method *pm = NULL;
	struct server_service *svc = NULL;
	struct server_method *m = NULL;
	struct srv_http_call *hc;
	struct server_call *call;
	void *route = NULL;
	bool is_short = false;
	char why[320];
	int code;

	hc = mem_zalloc(s->opt.mem, sizeof(*hc) + req->path.n + 1);
	if (!hc) {
		conn_close(&sc->conn, -ENOMEM);
		return;
	}
	copy_name(hc->path, req->path.p, req->path.n);
	hc->minor = req->minor;
	hc->keep_alive = keep;
	if (split_path(&req->path, &sname, &mname)) {
		svc = server__find_service(s, sname.p, sname.n, &is_short);
		m = svc ? server__find_method(svc, mname.p, mname.n) : NULL;
		if (pool && !m)
			ps = pbd_find_service(pool, sname.p, sname.n);
		copy_name(hc->service, ps ? ps->full_name : sname.p,
			  ps ? strlen(ps->full_name) : sname.n);
		copy_name(hc->method, mname.p, mname.n);
		if (!m && !svc && s->route)
			route = s->route(s->route_arg, hc->service, hc->method);
	}
	if (!m && !route) {
		snprintf(why, sizeof(why), "Fail to find method on `%s'",
			 hc->path);
		answer_error(sc, hc, req->minor, RPC_ENOMETHOD, why, false,
			     close_field);
		goto out_answered;
	}
	code = server__admit(s, why, sizeof(why));
	if (code) {
		answer_error(sc, hc, req->minor, code, why, false, close_field);
		server__refused(s);
		goto out_answered;
	}
	{
		const struct http1_str *a = req->authorization;
		struct baidu_bytes cred = {a ? (const uint8_t *)a->p : NULL,
					   a ? a->n : 0};

		if (server__authenticate(sc, &cred, why, sizeof(why))) {
			answer_error(sc, hc, req->minor, RPC_ERPCAUTH, why,
				     true, connection_field(req->minor, false));
			server__uncount_call(s);
			keep = false;
			goto out_answered;
		}
	}
	pm = m ? m->pbd : ps ? pbd_find_method(ps, mname.p, mname.n) : NULL;
	hc->proto = is_proto(req->content_type);
	hc->has_type = req->content_type != NULL;
	hc->accept_gzip = req->accept_encoding &&
			  http1_has_token(req->accept_encoding, "gzip");
	hc->gzip_body = req->content_encoding &&
			http1_has_token(req->content_encoding, "gzip");
	if (pm) {
		hc->in = pm->input;
		hc->out = pm->output;
	}
	if (!hc->proto && !pm) {
		struct iobuf tb;
		char text[512];
		int n =
		    snprintf(text, sizeof(text),
			     "rpcgate: no descriptor for %s.%s, so its JSON "
			     "cannot be read: start with "
			     "--descriptor_set=FILE (protoc "
			     "--include_imports -o FILE), or send "
			     "Content-Type: application/proto\n",
			     hc->service, hc->method);

		iobuf_init(&tb, s->opt.pool);
		iobuf_append(&tb, text, n > 0 ? (size_t)n : 0);
		snprintf(why, sizeof(why), "x-bd-error-code: %d\r\n%s",
			 RPC_EREQUEST, close_field);
		server__http_answer(sc, req->minor, false, 415, why,
				    "text/plain", &tb);
		iobuf_destroy(&tb);
		server__uncount_call(s);
		goto out_answered;
	}
	if (m && server__method_enter(s, m, why, sizeof(why))) {
		answer_error(sc, hc, req->minor, RPC_ELIMIT, why, false,
			     close_field);
		server__uncount_call(s);
		goto out_answered;
	}
	call = server__call_new(sc);
	if (!call) {
		if (m)
			climit_leave(&m->limit, 0, false, clock_mono_ns());
		server__uncount_call(s);
		server__route_release(s, route);
		conn_close(&sc->conn, -ENOMEM);
		mem_free(s->opt.mem, hc);
		return;
	}
	call->http = hc;
	if (h2) {
		hc->h2 = h2;
		server__h2_bind_call(h2, call);
	}
	call->m = m;
	call->route = route;
	call->service = m ? svc->name : hc->service;
	call->method = m ? m->name : hc->method;
	call->request_compress_type = COMPRESS_NONE;
	call->timeout_ms = read_timeout(req);
	read_log_id(sc, req, call);
	iobuf_append_buf(&call->request_body, body);
	server__call_hold(call, iobuf_len(&call->request_body));
	if (!h2)
		sc->http.state = SH_CALL;
	if (route && iobuf_len(&call->request_body) <= HTTP_INLINE_BODY_MAX &&
	    !hc->gzip_body) {
		/* a small body is read here, on the loop: the hop to a worker
		 * and back would cost more than the JSON */
		task_init(&call->task, call_task);
		call_task(&call->task);
		return;
	}
	server__call_dispatch(call, call_task);
	return;

out_answered:
	server__route_release(s, route); /* routed, but no call was made */
	mem_free(s->opt.mem, hc);
	__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
	if (!h2)
		answered_here(sc, keep);
}

/* A request, head and body, is in: a page or a call. */
static void request_done(struct srv_conn *sc)
{
	struct srv_http *h = &sc->http;
	struct server *s = sc->srv;
	const struct http1_req *req = h->req;
	bool keep =
	    req->keep_alive && !__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);

	loop_timer_stop(sc->conn.loop, &h->timer);
	h->requests++;
	h->state = SH_CALL;
	if (server__h2_upgrade(sc, req) == 0) {
		/* HTTP/2 from here on: what else came is its preface */
		server__http_close(sc);
		if (!iobuf_empty(&sc->conn.in))
			server__h2_data(sc);
		return;
	}
	__atomic_fetch_add(&s->n_http, 1, __ATOMIC_RELAXED);
	if (server__page(sc, req, keep)) {
		iobuf_reset(&h->body);
		answered_here(sc, keep);
	} else {
		start_call(sc, req, keep, &h->body, NULL);
	}
	iobuf_reset(&h->body);
	mem_free(s->opt.mem, h->head);
	h->head = NULL;
}

void server__http_h2(struct srv_conn *sc, struct server_stream *st,
		     const char *method, const char *path, const char *fields,
		     size_t n, struct iobuf *body)
{
	struct server *s = sc->srv;
	size_t hl = strlen(method) + strlen(path) + n + 16;
	char *head = mem_alloc(s->opt.mem, hl);
	struct http1_req *req = mem_alloc(s->opt.mem, sizeof(*req));
	int len;

	h2_target = st;
	if (!head || !req) {
		server__http_answer(sc, 1, false, 500, NULL, NULL, NULL);
		goto out;
	}
	len = snprintf(head, hl, "%s %s HTTP/1.1\r\n%.*s\r\n", method, path,
		       (int)n, fields);
	__atomic_fetch_add(&s->n_http, 1, __ATOMIC_RELAXED);
	if (http1_parse_request(head, (size_t)len, req)) {
		struct iobuf b;
		char text[256];
		int tn = snprintf(text, sizeof(text), "rpcgate: %s\n", req->why);

		__atomic_fetch_add(&s->n_http_bad, 1, __ATOMIC_RELAXED);
		iobuf_init(&b, s->opt.pool);
		iobuf_append(&b, text, tn > 0 ? (size_t)tn : 0);
		server__http_answer(sc, 1, false, req->status, NULL,
				    "text/plain", &b);
		iobuf_destroy(&b);
		goto out;
	}
	if (!server__page(sc, req, true))
		start_call(sc, req, true, body, st);
out:
	h2_target = NULL;
	iobuf_reset(body);
	mem_free(s->opt.mem, head);
	mem_free(s->opt.mem, req);
}

/* ---- reading (loop thread) --------------------------------------------- */

static void arm(struct srv_conn *sc, int ms)
{
	loop_timer_start(sc->conn.loop, &sc->http.timer,
			 loop_now(sc->conn.loop) + (int64_t)ms * 1000000,
			 sc->http.timer.cb);
}

static void http_timeout(struct loop_timer *t)
{
	struct srv_conn *sc = container_of(t, struct srv_conn, http.timer);
	const struct http1_req *req = sc->http.req;

	switch (sc->http.state) {
	case SH_IDLE:
		log_debug(sc->srv->opt.log,
			  "closing %s: idle for %d ms between requests",
			  sc->conn.peer_text,
			  sc->srv->opt.http_idle_timeout_ms);
		conn_close(&sc->conn, 0);
		break;
	case SH_HEAD:
		refuse(sc, 1, 408, "the request's head did not come in time");
		break;
	case SH_BODY:
		refuse(sc, req ? req->minor : 1, 408,
		       "the request's body stopped coming");
		break;
	default:
		break;
	}
}

static int http_init(struct srv_conn *sc)
{
	struct srv_http *h = &sc->http;

	h->req = mem_alloc(sc->srv->opt.mem, sizeof(*h->req));
	if (!h->req)
		return -ENOMEM;
	iobuf_init(&h->body, sc->srv->opt.pool);
	loop_timer_init(&h->timer);
	h->timer.cb = http_timeout;
	task_init(&h->resume, answer_resume);
	h->state = SH_IDLE;
	h->inited = true;
	return 0;
}

void server__http_close(struct srv_conn *sc)
{
	struct srv_http *h = &sc->http;

	if (!h->inited)
		return;
	loop_timer_stop(sc->conn.loop, &h->timer);
	iobuf_destroy(&h->body);
	mem_free(sc->srv->opt.mem, h->req);
	mem_free(sc->srv->opt.mem, h->head);
	h->req = NULL;
	h->head = NULL;
	h->inited = false;
}

/* The head is whole: parse it, then frame the body. */
static void head_done(struct srv_conn *sc, size_t n)
{
	struct srv_http *h = &sc->http;
	struct server *s = sc->srv;
	struct http1_req *req = h->req;
	char *head = mem_alloc(s->opt.mem, n + 1);
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	if (!head) {
		conn_close(&sc->conn, -ENOMEM);
		return;
	}
	iobuf_copy_out(&sc->conn.in, 0, head, n);
	head[n] = '\0';
	iobuf_drop_front(&sc->conn.in, n);
	h->head = head;
	if (http1_parse_request(head, n, req)) {
		refuse(sc, req->minor, req->status, req->why);
		return;
	}
	if (req->has_length && req->content_length > s->opt.max_body_size) {
		char why[128];

		snprintf(why, sizeof(why),
			 "the body of %llu bytes is over max_body_size=%zu",
			 (unsigned long long)req->content_length,
			 s->opt.max_body_size);
		refuse(sc, req->minor, 413, why);
		return;
	}
	iobuf_reset(&h->body);
	h->body_left = req->has_length ? req->content_length : 0;
	http1_chunked_init(&h->ch);
	if (!req->chunked && !h->body_left) {
		request_done(sc);
		return;
	}
	if (req->expect_continue && req->minor == 1) {
		struct iobuf out;

		iobuf_init(&out, s->opt.pool);
		if (iobuf_append(&out, cont, sizeof(cont) - 1) == 0)
			conn_write(&sc->conn, &out);
		iobuf_destroy(&out);
	}
	h->state = SH_BODY;
	arm(sc, s->opt.http_body_idle_ms);
}

/* Moves what came of the body; true when it is whole. */
static bool body_step(struct srv_conn *sc)
{
	struct srv_http *h = &sc->http;
	struct server *s = sc->srv;
	struct iobuf *in = &sc->conn.in;
	int r;

	if (!h->req->chunked) {
		size_t n = iobuf_len(in);

		if (n > h->body_left)
			n = (size_t)h->body_left;
		if (n && iobuf_cut(in, &h->body, n)) {
			conn_close(&sc->conn, -ENOMEM);
			return false;
		}
		h->body_left -= n;
		return h->body_left == 0;
	}
	r = http1_chunked_step(&h->ch, in, &h->body, s->opt.max_body_size);
	if (r == -EMSGSIZE) {
		char why[96];

		snprintf(why, sizeof(why),
			 "the chunked body is over max_body_size=%zu",
			 s->opt.max_body_size);
		refuse(sc, h->req->minor, 413, why);
	} else if (r == -EBADMSG) {
		refuse(sc, h->req->minor, 400, "a broken chunked body");
	} else if (r == -ENOMEM) {
		conn_close(&sc->conn, -ENOMEM);
	}
	return r == 1;
}

static void http_read_on(struct srv_conn *sc)
{
	struct srv_http *h = &sc->http;
	struct server *s = sc->srv;
	struct iobuf *in = &sc->conn.in;
	uint8_t c;
	ssize_t n;

	while (sc->proto == SRV_HTTP && !conn_closing(&sc->conn)) {
		switch (h->state) {
		case SH_CALL:
			return;
		case SH_IDLE:
			/* empty lines between requests are allowed */
			while (iobuf_copy_out(in, 0, &c, 1) == 1 &&
			       (c == '\r' || c == '\n'))
				iobuf_drop_front(in, 1);
			if (iobuf_empty(in)) {
				if (!loop_timer_active(&h->timer))
					arm(sc, s->opt.http_idle_timeout_ms);
				return;
			}
			h->state = SH_HEAD;
			h->scanned = 0;
			arm(sc, s->opt.http_header_timeout_ms);
			break;
		case SH_HEAD:
			n = http1_head_end(in, &h->scanned);
			if (n == -EAGAIN)
				return;
			if (n < 0) {
				refuse(sc, 1, 431,
				       "the request's head is over 64 KiB");
				return;
			}
			head_done(sc, (size_t)n);
			break;
		case SH_BODY:
			if (!body_step(sc)) {
				if (h->state == SH_BODY)
					arm(sc, s->opt.http_body_idle_ms);
				return;
			}
			request_done(sc);
			break;
		}
	}
}

void server__http_data(struct srv_conn *sc)
{
	if (!sc->http.inited && http_init(sc)) {
		conn_close(&sc->conn, -ENOMEM);
		return;
	}
	http_read_on(sc);
}
