/*
 * server_h2: HTTP/2 (RFC 9113) on a server port, cleartext with prior
 * knowledge (the client preface as a connection's first bytes), and gRPC
 * over it (net/codec/grpc.h): every service of the server, its routes
 * and raw services, unary; grpc.health.v1.Health/Check built in.
 *
 * nghttp2's session is the framing layer (frames, HPACK, SETTINGS, flow
 * control, stream states, GOAWAY), driven from the connection's loop:
 *
 *   read    every piece of c->in goes to nghttp2_session_mem_recv(); its
 *           callbacks gather each stream's headers and DATA; at
 *           END_STREAM the request is whole and becomes a call, as a
 *           baidu_std frame does (admit, auth, method limit, dispatch)
 *   answer  server_call_finish() (any thread) frames the message and
 *           posts the call to the loop, which submits HEADERS, DATA
 *           (sent from the iobuf without a copy) and the trailers
 *           (grpc-status, grpc-message), then sends what the session
 *           has queued
 *
 * A stream reset by the client while its call runs is kept, detached,
 * until the call ends; its answer is dropped.  A call still running at
 * its grpc-timeout is answered DEADLINE_EXCEEDED then, and its own
 * answer dropped.
 *
 * Misbehaving peers (RFC 9113 10.5, and CVE-2019-9512..9518,
 * CVE-2023-44487): a bad preface, a protocol error, more than
 * H2_CONTROL_PER_SEC control frames (PING, SETTINGS, RST_STREAM,
 * PRIORITY, empty DATA) in a second, or a flood nghttp2 detects itself
 * (unanswered acks, rapid resets, CONTINUATIONs) get a GOAWAY and the
 * close, with one log line.  Other connections are not touched.
 */
#define _GNU_SOURCE /* memmem */
#include "server_h2_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/base64.h"
#include "codec/compress.h"
#include "codec/grpc.h"
#include "codec/pbwire.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"


/* ---- streams -------------------------------------------------------- */

static struct server_stream *stream_new(struct srv_h2 *h2, int32_t id)
{
	struct server *s = h2->sc->srv;
	struct server_stream *st = mem_zalloc(s->opt.mem, sizeof(*st));

	if (!st)
		return NULL;
	st->id = id;
	st->srv = s;
	st->h2 = h2;
	st->status = GRPC_OK;
	iobuf_init(&st->body, s->opt.pool);
	iobuf_init(&st->resp, s->opt.pool);
	loop_timer_init(&st->deadline);
	st->next = h2->streams;
	if (h2->streams)
		h2->streams->prev = st;
	h2->streams = st;
	return st;
}

static void stream_unlink(struct server_stream *st)
{
	struct srv_h2 *h2 = st->h2;

	if (!h2)
		return;
	if (st->prev)
		st->prev->next = st->next;
	else
		h2->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
	st->h2 = NULL;
}

void h2__stream_free(struct server *s, struct server_stream *st)
{
	stream_unlink(st);
	iobuf_destroy(&st->body);
	iobuf_destroy(&st->resp);
	mem_free(s->opt.mem, st->message);
	mem_free(s->opt.mem, st->fields);
	mem_free(s->opt.mem, st->answer_fields);
	mem_free(s->opt.mem, st->trailer_fields);
	mem_free(s->opt.mem, st);
}

/* ---- HTTP/1's semantics (not gRPC) ----------------------------------- */

/* Fields an HTTP/2 answer must not carry (RFC 9113 8.2.2). */
static bool connection_specific(const char *name, size_t n)
{
	static const char *const names[] = {
	    "connection", "keep-alive",	    "proxy-connection",
	    "upgrade",	  "transfer-encoding", "content-length",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (n == strlen(names[i]) && !strncasecmp(name, names[i], n))
			return true;
	return false;
}

void server__h2_http_answer(struct server_stream *st, int status,
			    bool head_only, const char *extra,
			    const char *type, struct iobuf *body)
{
	const struct mem *mem = st->srv->opt.mem;
	size_t len = 0, cap = 0;
	char *f = NULL, name[64];
	int err = 0;

	if (type)
		err = h2_put3(mem, &f, &len, &cap, "content-type: ", 14, type,
			   strlen(type), "\r\n");
	for (const char *p = extra; !err && p && *p;) {
		const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
		size_t n;

		if (!colon || !eol || colon > eol)
			break;
		n = (size_t)(colon - p);
		if (n < sizeof(name) && !connection_specific(p, n)) {
			for (size_t i = 0; i < n; i++)
				name[i] = (char)tolower((unsigned char)p[i]);
			colon++;
			while (*colon == ' ')
				colon++;
			err = h2_put3(mem, &f, &len, &cap, name, n, ": ", 2, "");
			if (!err)
				err = h2_put3(mem, &f, &len, &cap, colon,
					   (size_t)(eol - colon), "", 0,
					   "\r\n");
		}
		p = eol + 2;
	}
	mem_free(mem, st->answer_fields);
	st->answer_fields = err ? NULL : f;
	if (err)
		mem_free(mem, f);
	st->http_status = status;
	st->head_only = head_only;
	iobuf_reset(&st->resp);
	if (body && !head_only)
		iobuf_append_buf(&st->resp, body);
	st->http_ready = true;
}

/* A non-gRPC request refused before it is served: `status`, `text`. */
static void http_refuse(struct server_stream *st, int status,
			const char *text)
{
	struct iobuf b;

	iobuf_init(&b, st->srv->opt.pool);
	iobuf_append(&b, text, strlen(text));
	server__h2_http_answer(st, status, false, NULL, "text/plain", &b);
	iobuf_destroy(&b);
}

void server__h2_bind_call(struct server_stream *st, struct server_call *call)
{
	call->h2 = st;
	st->call = call;
	st->h2->calls++;
}

static void answer_task(struct task *t);

/* answer_task on the call's loop: deferred when this is it (an inline
 * handler: no wake-up of our own loop), else posted. */
static void answer_on_loop(struct server_call *call)
{
	struct loop *loop = call->sc->conn.loop;

	if (loop_on_thread(loop))
		loop_defer(loop, &call->task);
	else
		loop_post(loop, &call->task);
}

void server__h2_http_done(struct server_call *call)
{
	task_init(&call->task, answer_task);
	answer_on_loop(call);
}

/* ---- a bad peer ----------------------------------------------------- */

static void h2_log_once(struct srv_h2 *h2, const char *what)
{
	struct srv_conn *sc = h2->sc;

	if (h2->logged)
		return;
	h2->logged = true;
	h2->io.stop = true; /* read nothing more */
	__atomic_fetch_add(&sc->srv->n_closed_bad, 1, __ATOMIC_RELAXED);
	log_warn(sc->srv->opt.log, "closing %s: HTTP/2: %s%s%s",
		 sc->conn.peer_text, what, h2->why[0] ? ": " : "", h2->why);
}

/* GOAWAY with `code`, one log line, and the close once it is out. */
static void h2_fail(struct srv_h2 *h2, uint32_t code, const char *what)
{
	h2_log_once(h2, what);
	nghttp2_session_terminate_session(h2->io.ng, code);
}

/* Counts a control frame: false once the peer floods. */
static bool h2_control(struct srv_h2 *h2)
{
	int64_t now = loop_now(h2->sc->conn.loop);

	if (now - h2->ctl_window_ns >= 1000000000) {
		h2->ctl_window_ns = now;
		h2->ctl_count = 0;
	}
	if (++h2->ctl_count <= H2_CONTROL_PER_SEC)
		return true;
	snprintf(h2->why, sizeof(h2->why),
		 "more than %d PING, SETTINGS, RST_STREAM, PRIORITY or "
		 "empty DATA frames in a second",
		 H2_CONTROL_PER_SEC);
	h2_fail(h2, NGHTTP2_ENHANCE_YOUR_CALM, "a flood of control frames");
	return false;
}

/* ---- answers (loop thread) ------------------------------------------ */


ssize_t h2__data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
			 size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct server_stream *st = src->ptr;
	size_t left = iobuf_len(&st->resp);
	size_t n = left < length ? left : length;
	char status[12];

	bool eof = n == left;

	if (st->ops) {
		/* a stream's answers come as the handler writes them */
		if (!left && !st->finished) {
			st->deferred = true;
			return NGHTTP2_ERR_DEFERRED;
		}
		eof = eof && st->finished;
	}
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (eof) {
		int len = h2_decimal(status, (unsigned)st->status);
		nghttp2_nv tr[2 + H2_HTTP_FIELDS_MAX] = {
		    NV("grpc-status", status, (size_t)len),
		    NV("grpc-message", st->message,
		       st->message ? strlen(st->message) : 0),
		};
		size_t nt = st->message ? 2 : 1;

		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->grpc) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			nt += h2_fields_nv(st->trailer_fields, tr + nt,
					   H2_HTTP_FIELDS_MAX);
			if (nghttp2_submit_trailer(ng, id, tr, nt))
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
	}
	return (ssize_t)n;
}

/* DATA frames go from the stream's answer to the output, not copied. */
static int send_data(nghttp2_session *ng, nghttp2_frame *frame,
		     const uint8_t *framehd, size_t length,
		     nghttp2_data_source *src, void *user)
{
	struct srv_h2 *h2 = user;
	struct server_stream *st = src->ptr;

	if (h2_io_put_data(&h2->io, framehd, &st->resp, length))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (st->want_writable && iobuf_len(&st->resp) < SERVER_STREAM_LOW) {
		st->want_writable = false;
		st->writable_due = true; /* on_writable after the send */
	}
	return 0;
}

/* Submits st's answer: HEADERS, then DATA and trailers, or a
 * trailers-only gRPC answer (an error), or a plain HTTP one. */
void h2__answer(struct srv_h2 *h2, struct server_stream *st)
{
	char status[12], hstatus[12];
	int len = h2_decimal(status, (unsigned)st->status);
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2__data_read};
	nghttp2_nv nv[2 * H2_HTTP_FIELDS_MAX + 6];
	size_t n = 0;
	int rv;

	st->answered = true;
	if (st->closed)
		return;
	loop_timer_stop(h2->sc->conn.loop, &st->deadline);
	if (!st->grpc) {
		int hlen = h2_decimal(hstatus, st->http_status >= 100 &&
							st->http_status <= 999
						    ? (unsigned)st->http_status
						    : 500);

		nv[n++] = (nghttp2_nv)NV(":status", hstatus, (size_t)hlen);
		n += h2_fields_nv(st->answer_fields, nv + n, H2_HTTP_FIELDS_MAX);
		rv = nghttp2_submit_response(
		    h2->io.ng, st->id, nv, n,
		    st->head_only || iobuf_empty(&st->resp) ? NULL : &prd);
		goto out;
	}
	nv[n++] = (nghttp2_nv)NV(":status", "200", 3);
	nv[n++] = (nghttp2_nv)NV("content-type", st->ctype, strlen(st->ctype));
	if (st->status != GRPC_OK) {
		/* trailers-only: one HEADERS with END_STREAM */
		nv[n++] = (nghttp2_nv)NV("grpc-status", status, (size_t)len);
		if (st->message)
			nv[n++] = (nghttp2_nv)NV("grpc-message", st->message,
						 strlen(st->message));
		n += h2_fields_nv(st->answer_fields, nv + n,
				  H2_HTTP_FIELDS_MAX);
		n += h2_fields_nv(st->trailer_fields, nv + n,
				  H2_HTTP_FIELDS_MAX);
		rv = nghttp2_submit_response(h2->io.ng, st->id, nv, n, NULL);
		goto out;
	}
	if (st->resp_gzip)
		nv[n++] = (nghttp2_nv)NV("grpc-encoding", "gzip", 4);
	nv[n++] = (nghttp2_nv)NV("grpc-accept-encoding", "identity,gzip", 13);
	rv = nghttp2_submit_response(h2->io.ng, st->id, nv, n, &prd);
out:
	if (rv)
		nghttp2_submit_rst_stream(h2->io.ng, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
}

/* st's gRPC status and message (text percent-encoded). */
void h2__status(struct server *s, struct server_stream *st, int status,
			  const char *text)
{
	size_t need;

	st->status = status;
	mem_free(s->opt.mem, st->message);
	st->message = NULL;
	if (!text || !*text)
		return;
	need = grpc_message_encode(text, strlen(text), NULL, 0) + 1;
	st->message = mem_alloc(s->opt.mem, need);
	if (st->message)
		grpc_message_encode(text, strlen(text), st->message, need);
}

/* An answer made here on the loop, with no call. */
static void answer_now(struct srv_h2 *h2, struct server_stream *st, int status,
		       const char *text)
{
	struct server *s = h2->sc->srv;

	if (status != GRPC_OK)
		__atomic_fetch_add(&s->n_errors, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
	h2__status(s, st, status, text);
	h2__answer(h2, st);
}

/* The posted half of server__h2_finish(). */
static void answer_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);
	struct server_stream *st = call->h2;
	struct server *s = call->srv;
	struct srv_h2 *h2 = st->h2;

	if (h2) {
		h2->calls--;
		if (!st->answered)
			h2__answer(h2, st);
		/* queued before the call is freed: a stopping server closes
		 * its connections once the last call is.  The stream may
		 * close meanwhile: with st->call set, it stays ours. */
		h2__flush(h2);
	}
	st->call = NULL;
	server__call_free(call);
	if (!st->h2 || st->closed)
		h2__stream_free(s, st);
}

void server__h2_finish(struct server_call *call)
{
	struct server_stream *st = call->h2;
	struct server *s = call->srv;
	struct iobuf pb;
	int err = 0;

	iobuf_init(&pb, s->opt.pool);
	if (!call->error_code && call->m && call->m->input) {
		err = rpc_msg_encode(call->response, COMPRESS_NONE, &pb);
		if (err)
			server_call_fail(call, RPC_EINTERNAL,
					 "Fail to serialize response=%s: %s",
					 call->m->output->name, strerror(-err));
	} else if (!call->error_code &&
		   (call->response_compress_type == COMPRESS_NONE ||
		    (call->response_compress_type == COMPRESS_GZIP &&
		     st->accept_gzip))) {
		/* gRPC's gzip is brpc's: the bytes go as they came */
		st->resp_gzip = call->response_compress_type == COMPRESS_GZIP;
		iobuf_append_buf(&pb, &call->response_body);
	} else if (!call->error_code) {
		err = compress_decode(call->response_compress_type,
				      &call->response_body, &pb,
				      s->opt.max_body_size);
		if (err)
			server_call_fail(
			    call, RPC_ERESPONSE,
			    "Fail to decompress the answer (%s): %s",
			    compress_type_name(call->response_compress_type),
			    strerror(-err));
	}
	if (!call->error_code && iobuf_len(&pb) > UINT32_MAX)
		server_call_fail(call, RPC_ERESPONSE, "the answer is too long");
	if (call->error_code) {
		const char *text = call->error_text ? call->error_text
				   : rpc_errno_text(call->error_code)
				       ? rpc_errno_text(call->error_code)
				       : "failed";
		char small[512];
		int n = -1;

		if (!call->error_plain)
			n = baidu_format_error_text(small, sizeof(small),
						    server__addr_text(call->sc),
						    call->error_code, text);
		h2__status(s, st, grpc_status_from_rpc(call->error_code),
			      n >= 0 ? small : text);
		__atomic_fetch_add(&s->n_errors, 1, __ATOMIC_RELAXED);
	} else {
		if (grpc_msg_put(&st->resp, st->resp_gzip, &pb))
			h2__status(s, st, GRPC_INTERNAL,
				      "no memory for the answer");
	}
	iobuf_destroy(&pb);
	__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
	task_init(&call->task, answer_task);
	answer_on_loop(call);
}

/* A call still running at its grpc-timeout: DEADLINE_EXCEEDED now. */
static void deadline_due(struct loop_timer *t)
{
	struct server_stream *st = container_of(t, struct server_stream, deadline);

	if (!st->h2 || st->answered || !st->call)
		return;
	answer_now(st->h2, st, GRPC_DEADLINE_EXCEEDED,
		   "the call's grpc-timeout passed before its answer");
	h2__flush(st->h2);
}

/* ---- requests (loop thread) ----------------------------------------- */

static void typed_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);

	server__call_typed(call, &call->request_body,
			   call->request_compress_type);
}

static void raw_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);

	call->m->fn(call, call->m->svc->arg);
}

/* "/Service/Method" into its parts; false: not that shape. */
int h2__authenticate(struct srv_h2 *h2, struct server_stream *st, char *text,
		     size_t text_size)
{
	struct baidu_bytes cred = {
	    st->auth_len ? (const uint8_t *)st->auth : NULL, st->auth_len};

	return server__authenticate(h2->sc, &cred, text, text_size);
}

bool h2__split_path(const char *path, char *svc, char *method)
{
	const char *slash;
	size_t sn, mn;

	if (path[0] != '/')
		return false;
	slash = strchr(path + 1, '/');
	if (!slash)
		return false;
	sn = (size_t)(slash - path - 1);
	mn = strlen(slash + 1);
	if (!sn || !mn || sn > H2_NAME_MAX || mn > H2_NAME_MAX ||
	    strchr(slash + 1, '/'))
		return false;
	memcpy(svc, path + 1, sn);
	svc[sn] = '\0';
	memcpy(method, slash + 1, mn + 1);
	return true;
}

/* grpc.health.v1.Health/Check: the server, or one of its services. */
static void health_check(struct srv_h2 *h2, struct server_stream *st)
{
	struct server *s = h2->sc->srv;
	const uint8_t *name = (const uint8_t *)"";
	size_t name_len = 0;
	uint8_t msg[GRPC_PREFIX_LEN + 2], pfx[GRPC_PREFIX_LEN];
	struct grpc_msg gm;
	char svc[H2_NAME_MAX + 1];
	bool known, is_short;
	uint8_t *flat = NULL;
	struct pbw_rd r;

	if (grpc_msg_peek(&st->body, 0, 4096, &gm) != 1 || gm.compressed ||
	    iobuf_len(&st->body) != GRPC_PREFIX_LEN + gm.len) {
		answer_now(h2, st, GRPC_INVALID_ARGUMENT,
			   "a HealthCheckRequest, uncompressed, is expected");
		return;
	}
	flat = mem_alloc(s->opt.mem, gm.len + 1);
	if (!flat) {
		answer_now(h2, st, GRPC_INTERNAL, "no memory");
		return;
	}
	iobuf_copy_out(&st->body, GRPC_PREFIX_LEN, flat, gm.len);
	pbw_rd_init(&r, flat, gm.len);
	while (pbw_rd_more(&r)) {
		uint32_t num, wt;

		if (pbw_get_key(&r, &num, &wt) ||
		    (num == 1 && wt == 2 ? pbw_get_len(&r, &name, &name_len)
					 : pbw_skip(&r, wt))) {
			mem_free(s->opt.mem, flat);
			answer_now(h2, st, GRPC_INVALID_ARGUMENT,
				   "the HealthCheckRequest does not decode");
			return;
		}
	}
	known = name_len == 0;
	if (!known && name_len <= H2_NAME_MAX) {
		memcpy(svc, name, name_len);
		svc[name_len] = '\0';
		known = server__find_service(s, svc, name_len, &is_short) ||
			!strcmp(svc, H2_HEALTH_SERVICE);
		for (int i = 0; !known && i < s->nstream_methods; i++)
			known = !strcmp(s->stream_methods[i].service, svc);
		if (!known && s->route) {
			void *route = s->route(s->route_arg, svc, "");

			known = route != NULL;
			server__route_release(s, route);
		}
	}
	mem_free(s->opt.mem, flat);
	if (!known) {
		answer_now(h2, st, GRPC_NOT_FOUND, "unknown service");
		return;
	}
	msg[0] = 0x08; /* field 1, varint: status */
	msg[1] = __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)
		     ? HEALTH_NOT_SERVING
		     : HEALTH_SERVING;
	grpc_msg_prefix(pfx, false, 2);
	iobuf_append(&st->resp, pfx, sizeof(pfx));
	iobuf_append(&st->resp, msg, 2);
	answer_now(h2, st, GRPC_OK, NULL);
}

/* A stream's request is whole: a call, or an answer made here. */
static void stream_request(struct srv_h2 *h2, struct server_stream *st)
{
	struct srv_conn *sc = h2->sc;
	struct server *s = sc->srv;
	char svc_name[H2_NAME_MAX + 1], method[H2_NAME_MAX + 1], why[640];
	struct server_service *svc = NULL;
	struct server_method *m = NULL;
	struct server_call *call;
	struct grpc_msg gm;
	void *route = NULL;
	bool is_short = false, health;
	int code, r;

	if (!st->grpc) {
		/* HTTP/JSON and the pages, as over HTTP/1.1 */
		if (st->path_long) {
			http_refuse(st, 414, "rpcgate: the path is too long\n");
		} else {
			server__http_h2(sc, st, st->hmethod, st->path,
					st->fields ? st->fields : "",
					st->fields_len, &st->body);
		}
		if (st->http_ready && !st->call)
			h2__answer(h2, st);
		return;
	}
	if (!st->post) {
		answer_now(h2, st, GRPC_UNIMPLEMENTED,
			   "gRPC calls are POST requests");
		return;
	}
	if (st->bad_encoding) {
		answer_now(h2, st, GRPC_UNIMPLEMENTED,
			   "grpc-encoding not supported: identity and gzip "
			   "are");
		return;
	}
	if (!h2__split_path(st->path, svc_name, method)) {
		snprintf(why, sizeof(why), "Fail to find method on `%s'",
			 st->path);
		answer_now(h2, st, GRPC_UNIMPLEMENTED, why);
		return;
	}
	svc = server__find_service(s, svc_name, strlen(svc_name), &is_short);
	m = svc ? server__find_method(svc, method, strlen(method)) : NULL;
	health = !m && !svc && !strcmp(svc_name, H2_HEALTH_SERVICE) &&
		 !strcmp(method, "Check");
	if (!m && !svc && !health && s->route)
		route = s->route(s->route_arg, svc_name, method);
	if (!m && !route && !health) {
		snprintf(why, sizeof(why), "Fail to find method=%s/%s",
			 svc_name, method);
		answer_now(h2, st, GRPC_UNIMPLEMENTED, why);
		return;
	}
	r = grpc_msg_peek(&st->body, 0, s->opt.max_body_size, &gm);
	if (r != 1 || iobuf_len(&st->body) != GRPC_PREFIX_LEN + gm.len) {
		server__route_release(s, route);
		answer_now(h2, st,
			   r == -EMSGSIZE ? GRPC_RESOURCE_EXHAUSTED
					  : GRPC_INVALID_ARGUMENT,
			   r == -EMSGSIZE ? "the request is over max_body_size"
					  : "a unary call's request is exactly "
					    "one length-prefixed message");
		return;
	}
	if (gm.compressed && !st->gzip_in) {
		server__route_release(s, route);
		answer_now(h2, st, GRPC_INTERNAL,
			   "a compressed message without grpc-encoding");
		return;
	}
	if (health) {
		health_check(h2, st);
		return;
	}
	code = h2->calls >= H2_MAX_CALLS
		   ? RPC_ELIMIT
		   : server__admit(s, why, sizeof(why));
	if (code) {
		if (h2->calls >= H2_MAX_CALLS)
			snprintf(why, sizeof(why),
				 "%d calls of this connection in flight",
				 H2_MAX_CALLS);
		else
			server__refused(s);
		server__route_release(s, route);
		answer_now(h2, st, grpc_status_from_rpc(code), why);
		return;
	}
	if (h2__authenticate(h2, st, why, sizeof(why))) {
		server__uncount_call(s);
		server__route_release(s, route);
		answer_now(h2, st, GRPC_UNAUTHENTICATED, why);
		return;
	}
	if (m && server__method_enter(s, m, why, sizeof(why))) {
		server__uncount_call(s);
		answer_now(h2, st, GRPC_RESOURCE_EXHAUSTED, why);
		return;
	}
	call = server__call_new(sc);
	if (!call) {
		if (m)
			climit_leave(&m->limit, 0, false, clock_mono_ns());
		server__uncount_call(s);
		server__route_release(s, route);
		answer_now(h2, st, GRPC_INTERNAL, "no memory for the call");
		return;
	}
	call->h2 = st;
	st->call = call;
	h2->calls++;
	call->m = m;
	call->route = route;
	call->service = m ? svc->name : NULL;
	call->method = m ? m->name : NULL;
	if (!m) {
		/* the stream holds the names for the call's life */
		memcpy(st->path, svc_name, strlen(svc_name) + 1);
		memcpy(st->path + H2_NAME_MAX + 1, method, strlen(method) + 1);
		call->service = st->path;
		call->method = st->path + H2_NAME_MAX + 1;
	}
	call->correlation_id = (uint64_t)st->id;
	call->request_compress_type =
	    gm.compressed ? COMPRESS_GZIP : COMPRESS_NONE;
	call->timeout_ms = (int32_t)st->timeout_ms;
	iobuf_drop_front(&st->body, GRPC_PREFIX_LEN);
	iobuf_append_buf(&call->request_body, &st->body);
	server__call_hold(call, iobuf_len(&call->request_body));
	if (st->timeout_ms > 0)
		loop_timer_start(sc->conn.loop, &st->deadline,
				 loop_now(sc->conn.loop) +
				     st->timeout_ms * 1000000,
				 deadline_due);
	if (route)
		s->route_handler(call, s->route_arg);
	else if (!m->input)
		server__call_dispatch(call, raw_task);
	else
		server__call_dispatch(call, typed_task);
}

static int h2_start(struct srv_conn *sc);

int server__h2_upgrade(struct srv_conn *sc, const struct http1_req *req)
{
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
				 "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
	static const char *const hop[] = {"connection", "upgrade",
					  "http2-settings", "keep-alive",
					  "proxy-connection"};
	struct server *s = sc->srv;
	const struct http1_str *up = http1_field(req, "upgrade");
	const struct http1_str *set = http1_field(req, "http2-settings");
	const struct http1_str *con = http1_field(req, "connection");
	struct server_stream *st;
	struct srv_h2 *h2;
	struct iobuf out, none;
	struct fbuf settings;
	char *path = NULL;
	int rv;

	if (req->minor != 1 || !up || !set || !con ||
	    !http1_has_token(up, "h2c") || !http1_has_token(con, "upgrade") ||
	    req->chunked || (req->has_length && req->content_length) ||
	    req->method.n >= sizeof(st->hmethod))
		return -EINVAL; /* a body first would need reading: no */
	fbuf_init(&settings, s->opt.mem, 4096);
	if (base64_decode(&settings, set->p, set->n) || settings.err ||
	    h2_start(sc)) {
		fbuf_destroy(&settings);
		return -EINVAL;
	}
	h2 = sc->h2;
	st = stream_new(h2, 1);
	path = mem_alloc(s->opt.mem, req->target.n + 1);
	rv = st && path ? nghttp2_session_upgrade2(
			      h2->io.ng, settings.p, settings.len,
			      req->method.n == 4 && !memcmp(req->method.p, "HEAD", 4),
			      st)
			: NGHTTP2_ERR_NOMEM;
	fbuf_destroy(&settings);
	if (rv) {
		mem_free(s->opt.mem, path);
		server__h2_close(sc);
		return -EINVAL;
	}
	/* the request, as stream 1's */
	memcpy(st->hmethod, req->method.p, req->method.n);
	st->hmethod[req->method.n] = '\0';
	memcpy(path, req->target.p, req->target.n);
	path[req->target.n] = '\0';
	st->ended = true;
	for (unsigned i = 0; i < req->nfields; i++) {
		const struct http1_field *f = &req->fields[i];
		bool skip = false;

		for (size_t j = 0; j < ARRAY_SIZE(hop); j++)
			skip |= f->name.n == strlen(hop[j]) &&
				!strncasecmp(f->name.p, hop[j], f->name.n);
		if (!skip &&
		    (h2_put3(s->opt.mem, &st->fields, &st->fields_len,
			  &st->fields_cap, f->name.p, f->name.n, ": ", 2, "") ||
		     h2_put3(s->opt.mem, &st->fields, &st->fields_len,
			  &st->fields_cap, f->value.p, f->value.n, "", 0,
			  "\r\n")))
			break; /* no memory: served with what fits */
	}
	sc->proto = SRV_H2;
	iobuf_init(&out, s->opt.pool);
	if (iobuf_append(&out, sw, sizeof(sw) - 1) == 0)
		conn_write(&sc->conn, &out);
	iobuf_destroy(&out);
	iobuf_init(&none, s->opt.pool);
	server__http_h2(sc, st, st->hmethod, path,
			st->fields ? st->fields : "", st->fields_len, &none);
	iobuf_destroy(&none);
	mem_free(s->opt.mem, path);
	if (st->http_ready && !st->call)
		h2__answer(h2, st);
	h2__flush(h2);
	return 0;
}

/* ---- nghttp2's callbacks -------------------------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame,
			    void *user)
{
	struct srv_h2 *h2 = user;
	struct server_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = stream_new(h2, frame->hd.stream_id);
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	struct server_stream *st =
	    nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	int64_t ms;

	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	st->header_bytes += namelen + valuelen + 32;
	if (st->header_bytes > H2_MAX_HEADER_LIST)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* trailers of a request: nothing in them for us */
	/* a gateway's streams pass the metadata on; HTTP needs them all */
	if ((!st->grpc || st->srv->route_stream) && namelen && name[0] != ':' &&
	    (h2_put3(st->srv->opt.mem, &st->fields, &st->fields_len,
		  &st->fields_cap, (const char *)name, namelen, ": ", 2, "") ||
	     h2_put3(st->srv->opt.mem, &st->fields, &st->fields_len,
		  &st->fields_cap, (const char *)value, valuelen, "", 0, "\r\n")))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (h2_is(name, namelen, ":path")) {
		size_t n = valuelen < sizeof(st->path) - 1
			       ? valuelen
			       : sizeof(st->path) - 1;

		memcpy(st->path, value, n);
		st->path[n] = '\0';
		st->path_long = n < valuelen;
	} else if (h2_is(name, namelen, ":authority")) {
		if (h2_put3(st->srv->opt.mem, &st->fields, &st->fields_len,
			 &st->fields_cap, "host: ", 6, (const char *)value,
			 valuelen, "\r\n"))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	} else if (h2_is(name, namelen, ":method")) {
		size_t n = valuelen < sizeof(st->hmethod) - 1
			       ? valuelen
			       : sizeof(st->hmethod) - 1;

		memcpy(st->hmethod, value, n);
		st->hmethod[n] = '\0';
		st->post = h2_is(value, valuelen, "POST");
	} else if (h2_is(name, namelen, "content-type")) {
		st->grpc = valuelen >= 16 && !memcmp(value, "application/grpc", 16) &&
			   (valuelen == 16 || value[16] == ';' ||
			    h2_is(value, valuelen, "application/grpc+proto"));
		if (st->grpc) {
			size_t n = valuelen < sizeof(st->ctype) - 1
				       ? valuelen
				       : sizeof(st->ctype) - 1;

			memcpy(st->ctype, value, n);
			st->ctype[n] = '\0';
		}
	} else if (h2_is(name, namelen, "grpc-timeout")) {
		if (grpc_timeout_parse((const char *)value, valuelen, &ms) == 0)
			st->timeout_ms = ms ? ms : 1;
	} else if (h2_is(name, namelen, "grpc-encoding")) {
		st->gzip_in = h2_is(value, valuelen, "gzip");
		st->bad_encoding =
		    !st->gzip_in && !h2_is(value, valuelen, "identity");
	} else if (h2_is(name, namelen, "grpc-accept-encoding")) {
		st->accept_gzip = memmem(value, valuelen, "gzip", 4) != NULL;
	} else if (h2_is(name, namelen, "authorization") &&
		   valuelen < sizeof(st->auth)) {
		memcpy(st->auth, value, valuelen);
		st->auth_len = valuelen;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
			 const uint8_t *data, size_t len, void *user)
{
	struct srv_h2 *h2 = user;
	struct server *s = h2->sc->srv;
	struct server_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	/* the window: the connection's given back now (a paused stream
	 * holds up no other), the stream's now or when it resumes */
	nghttp2_session_consume_connection(ng, len);
	if (st && st->paused)
		st->unconsumed += len;
	else
		nghttp2_session_consume_stream(ng, id, len);
	if (!st)
		return 0;
	if (st->ops) {
		if (!st->finished && iobuf_append(&st->body, data, len))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		h2s__data(h2, st);
		return 0;
	}
	if (iobuf_len(&st->body) + len > s->opt.max_body_size + GRPC_PREFIX_LEN) {
		/* answered at once; what else comes is dropped */
		if (!st->answered && st->grpc) {
			answer_now(h2, st, GRPC_RESOURCE_EXHAUSTED,
				   "the request is over max_body_size");
		} else if (!st->answered) {
			http_refuse(st, 413,
				    "rpcgate: the body is over max_body_size\n");
			h2__answer(h2, st);
		}
		iobuf_reset(&st->body);
		return 0;
	}
	if (st->answered)
		return 0;
	if (iobuf_append(&st->body, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame,
			 void *user)
{
	struct srv_h2 *h2 = user;
	struct server_stream *st;

	switch (frame->hd.type) {
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
			h2_control(h2);
		return 0;
	case NGHTTP2_RST_STREAM:
	case NGHTTP2_PRIORITY:
		h2_control(h2);
		return 0;
	case NGHTTP2_DATA:
		if (!frame->hd.length &&
		    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
		    !h2_control(h2))
			return 0;
		break;
	case NGHTTP2_HEADERS:
		break;
	default:
		return 0;
	}
	st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!st)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST && !st->answered)
		h2s__start(h2, st); /* a streaming method starts now */
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) || st->ended)
		return 0;
	st->ended = true;
	if (st->ops)
		h2s__end(h2, st);
	else if (!st->answered)
		stream_request(h2, st);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code,
			   void *user)
{
	struct srv_h2 *h2 = user;
	struct server_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	st->closed = true;
	loop_timer_stop(h2->sc->conn.loop, &st->deadline);
	if (st->ops) {
		h2s__closed(h2, st,
			    code == NGHTTP2_NO_ERROR && st->finished
				? 0
				: -ECANCELED);
		return 0;
	}
	if (!st->call)
		h2__stream_free(h2->sc->srv, st);
	/* else the call's answer frees it */
	return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg,
		    size_t len, void *user)
{
	struct srv_h2 *h2 = user;

	if (len >= sizeof(h2->why))
		len = sizeof(h2->why) - 1;
	memcpy(h2->why, msg, len);
	h2->why[len] = '\0';
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame,
			 void *user)
{
	struct srv_h2 *h2 = user;

	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code != NGHTTP2_NO_ERROR)
		h2_log_once(h2, nghttp2_http2_strerror(frame->goaway.error_code));
	return 0;
}

static nghttp2_session_callbacks *h2_cbs;
static pthread_once_t h2_cbs_once = PTHREAD_ONCE_INIT;

static void h2_cbs_make(void)
{
	nghttp2_session_callbacks *c;

	if (nghttp2_session_callbacks_new(&c))
		return;
	nghttp2_session_callbacks_set_send_callback(c, h2_io_send);
	nghttp2_session_callbacks_set_send_data_callback(c, send_data);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    c, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(c, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    c, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(c, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(
	    c, on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(c, on_error);
	nghttp2_session_callbacks_set_on_frame_send_callback(c, on_frame_send);
	h2_cbs = c;
}

/* ---- the connection ------------------------------------------------- */

static const uint8_t h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int server__h2_detect(const struct iobuf *in)
{
	uint8_t first[sizeof(h2_preface) - 1];
	size_t n = iobuf_copy_out(in, 0, first, sizeof(first));

	if (memcmp(first, h2_preface, n))
		return -1;
	return n == sizeof(first) ? 1 : 0;
}

/* A flush left for the loop's next turn (h2__flush). */
static void flush_task(struct task *t)
{
	struct srv_conn *sc = container_of(t, struct srv_conn, h2_flush);

	sc->h2_flush_posted = false;
	if (sc->h2 && !conn_closing(&sc->conn))
		h2__flush(sc->h2);
	conn_unref(&sc->conn);
}

void h2__flush(struct srv_h2 *h2)
{
	struct conn *c = &h2->sc->conn;
	bool more = true;
	int rv;

	if (h2->io.in_io)
		return; /* the outer call sends */
	/* a handler's on_writable writes more: a few rounds, then the
	 * rest on the loop's next turn, after the other connections */
	for (int round = 0; round < H2_FLUSH_ROUNDS && more; round++) {
		h2->io.in_io = true;
		rv = nghttp2_session_send(h2->io.ng);
		h2->io.in_io = false;
		if (rv) {
			snprintf(h2->why, sizeof(h2->why), "%s",
				 nghttp2_strerror(rv));
			h2_log_once(h2, "the session failed");
			conn_close(c, -EPROTO);
			return;
		}
		more = h2s__writable(h2);
	}
	if (more && !h2->sc->h2_flush_posted) {
		h2->sc->h2_flush_posted = true;
		conn_ref(c);
		task_init(&h2->sc->h2_flush, flush_task);
		loop_defer(c->loop, &h2->sc->h2_flush);
	}
	if (!iobuf_empty(&h2->io.out) && conn_write(c, &h2->io.out))
		return; /* closing */
	if (!nghttp2_session_want_read(h2->io.ng) &&
	    !nghttp2_session_want_write(h2->io.ng))
		conn_close_after_flush(c, h2->logged ? -EPROTO : 0);
}

static int h2_start(struct srv_conn *sc)
{
	struct server *s = sc->srv;
	struct srv_h2 *h2 = mem_zalloc(s->opt.mem, sizeof(*h2));
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, H2_MAX_FRAME},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	nghttp2_option *opt;
	int rv;

	pthread_once(&h2_cbs_once, h2_cbs_make);
	if (!h2 || !h2_cbs || nghttp2_option_new(&opt)) {
		mem_free(s->opt.mem, h2);
		return -ENOMEM;
	}
	nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS);
	nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
	nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
	nghttp2_option_set_stream_reset_rate_limit(opt, H2_RST_BURST,
						   H2_RST_RATE);
	/* flow control is ours: DATA is consumed as it is taken in, a
	 * paused stream's when it resumes (server_stream_pause()) */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	h2->sc = sc;
	iobuf_init(&h2->io.out, s->opt.pool);
	rv = nghttp2_session_server_new2(&h2->io.ng, h2_cbs, h2, opt);
	nghttp2_option_del(opt);
	if (!rv)
		rv = nghttp2_submit_settings(h2->io.ng, NGHTTP2_FLAG_NONE, iv,
					     sizeof(iv) / sizeof(iv[0]));
	if (!rv)
		rv = nghttp2_session_set_local_window_size(
		    h2->io.ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
	if (rv) {
		if (h2->io.ng)
			nghttp2_session_del(h2->io.ng);
		iobuf_destroy(&h2->io.out);
		mem_free(s->opt.mem, h2);
		return -ENOMEM;
	}
	h2->ctl_window_ns = loop_now(sc->conn.loop);
	sc->h2 = h2;
	return 0;
}

void server__h2_data(struct srv_conn *sc)
{
	struct conn *c = &sc->conn;
	struct srv_h2 *h2 = sc->h2;
	int rv;

	if (!h2) {
		if (h2_start(sc)) {
			conn_close(c, -ENOMEM);
			return;
		}
		h2 = sc->h2;
	}
	rv = h2_io_recv(&h2->io, &c->in);
	if (rv < 0) {
		if (!h2->why[0])
			snprintf(h2->why, sizeof(h2->why), "%s",
				 nghttp2_strerror(rv));
		h2_fail(h2,
			rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
						  : NGHTTP2_PROTOCOL_ERROR,
			rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? "a bad client preface"
			: rv == NGHTTP2_ERR_FLOODED	   ? "a flood"
						      : "a protocol error");
	}
	h2__flush(h2);
}

void server__h2_close(struct srv_conn *sc)
{
	struct srv_h2 *h2 = sc->h2;
	struct server *s = sc->srv;
	struct server_stream *st, *next;

	if (!h2)
		return;
	for (st = h2->streams; st; st = next) {
		next = st->next;
		loop_timer_stop(sc->conn.loop, &st->deadline);
		if (st->ops)
			h2s__closed(h2, st, -ECONNRESET);
		else if (st->call)
			stream_unlink(st); /* its call's answer frees it */
		else
			h2__stream_free(s, st);
	}
	nghttp2_session_del(h2->io.ng);
	iobuf_destroy(&h2->io.out);
	sc->h2 = NULL;
	mem_free(s->opt.mem, h2);
}

/* A stopping server's GOAWAY (posted by server__h2_stop()). */
static void stop_task(struct task *t)
{
	struct srv_conn *sc = container_of(t, struct srv_conn, h2_stop);
	struct srv_h2 *h2 = sc->h2;

	if (h2 && !conn_closing(&sc->conn)) {
		nghttp2_submit_goaway(
		    h2->io.ng, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(h2->io.ng),
		    NGHTTP2_NO_ERROR, NULL, 0);
		h2__flush(h2);
	}
	conn_unref(&sc->conn);
}

void server__h2_stop(struct srv_conn *sc)
{
	if (!conn_tryref(&sc->conn))
		return;
	task_init(&sc->h2_stop, stop_task);
	loop_post(sc->conn.loop, &sc->h2_stop);
}
