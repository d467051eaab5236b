/*
 * server: services, listeners, per-connection protocol detection and
 * brpc's processing of baidu_std requests (see server.h for the way a
 * request takes and spec/brpc-wire.md 1.8 for the order of the checks).
 */
#define _GNU_SOURCE /* accept4 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/metrics.h"
#include "base/stamp.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/http_head.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"
#include "conn.h"

/* How long server_stop waits for answers to flush before it closes
 * connections whose peers do not read. */
#define SERVER_FLUSH_WAIT_MS 1000
/* Backlog of listening sockets; the kernel caps it at somaxconn. */
#define SERVER_BACKLOG 1024
/* Bytes of an unknown protocol's first bytes shown in the log. */
#define SERVER_SNIFF_SHOW 8

struct server_method {
	const char *name;
	size_t name_len;
	server_handler_fn *fn;
	const ProtobufCMessageDescriptor *input, *output;
	unsigned flags;
	struct server_service *svc;
};

struct server_service {
	const ProtobufCServiceDescriptor *desc;
	size_t name_len, short_len;
	bool packaged; /* its full name has a dot (it differs from the short) */
	void *arg;
	unsigned nmethods;
	struct server_method methods[];
};

enum srv_proto {
	SRV_DETECT,  /* no protocol recognised yet */
	SRV_UPGRADE, /* the upgrade's handshake */
	SRV_BAIDU,   /* baidu_std */
	SRV_HTTP,    /* a built-in page's request */
	SRV_REFUSED, /* answered, closing: read nothing more */
};

struct srv_conn {
	struct conn conn;
	struct server *srv;
	struct srv_conn *prev, *next; /* srv->conns, under srv->lock */
	bool linked;
	enum srv_proto proto; /* loop thread */
	bool authed;	      /* loop thread */
	bool upgraded;	      /* loop thread: handshake done (or refused) */
	char local_text[SERVER_ADDR_TEXT_MAX];
	int64_t accepted_ns;
	struct loop_timer first_bytes; /* upgrade ports: first bytes due */
};

/* ---- options, services --------------------------------------------- */

void server_options_default(struct server_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->max_body_size = BAIDU_MAX_BODY_SIZE_DEFAULT;
}

int server_init(struct server *s, const struct server_options *opt)
{
	pthread_condattr_t ca;
	int err;

	if (!opt->rt || !opt->pool || opt->max_concurrency < 0)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->opt = *opt;
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
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err) {
		pthread_mutex_destroy(&s->lock);
		return -err;
	}
	for (int i = 0; i < SERVER_MAX_LISTENERS; i++)
		s->listeners[i].fd = -1;
	return 0;
}

int server_add_service(struct server *s, const ProtobufCServiceDescriptor *desc,
		       server_handler_fn *const *handlers, void *arg,
		       unsigned flags)
{
	struct server_service *svc;

	if (s->started)
		return -EBUSY;
	for (int i = 0; i < s->nservices; i++)
		if (!strcmp(s->services[i]->desc->name, desc->name))
			return -EEXIST;
	if (s->nservices == SERVER_MAX_SERVICES)
		return -ENOSPC;
	svc =
	    mem_zalloc(s->opt.mem, sizeof(*svc) + desc->n_methods *
						      sizeof(svc->methods[0]));
	if (!svc)
		return -ENOMEM;
	svc->desc = desc;
	svc->name_len = strlen(desc->name);
	svc->short_len = strlen(desc->short_name);
	svc->packaged = strchr(desc->name, '.') != NULL;
	svc->arg = arg;
	svc->nmethods = desc->n_methods;
	for (unsigned i = 0; i < desc->n_methods; i++) {
		struct server_method *m = &svc->methods[i];

		m->name = desc->methods[i].name;
		m->name_len = strlen(m->name);
		m->fn = handlers[i];
		m->input = desc->methods[i].input;
		m->output = desc->methods[i].output;
		m->flags = flags;
		m->svc = svc;
	}
	s->services[s->nservices++] = svc;
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
static struct server_service *find_service(struct server *s, const char *name,
					   bool *is_short)
{
	size_t n = strlen(name);

	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];

		if (svc->packaged && n == svc->name_len &&
		    same_bytes(name, svc->desc->name, n)) {
			*is_short = false;
			return svc;
		}
	}
	*is_short = !memchr(name, '.', n);
	if (!*is_short)
		return NULL; /* every full name with a dot was tried */
	for (int i = 0; i < s->nservices; i++) {
		struct server_service *svc = s->services[i];

		if (n == svc->short_len &&
		    same_bytes(name, svc->desc->short_name, n))
			return svc;
	}
	return NULL;
}

static struct server_method *find_method(struct server_service *svc,
					 const char *name)
{
	size_t n = strlen(name);

	for (unsigned i = 0; i < svc->nmethods; i++) {
		struct server_method *m = &svc->methods[i];

		if (n == m->name_len && same_bytes(name, m->name, n))
			return m->fn ? m : NULL;
	}
	return NULL;
}

/* ---- answers ------------------------------------------------------- */

static const char *addr_text(const struct srv_conn *sc)
{
	return sc->srv->opt.addr_text ? sc->srv->opt.addr_text : sc->local_text;
}

/* Queues a packed answer (or, pack_err, closes) and counts it. */
static void write_answer(struct srv_conn *sc, struct iobuf *out, int pack_err)
{
	struct server *s = sc->srv;

	if (pack_err) {
		log_warn(s->opt.log, "cannot pack the answer to %s: %s",
			 sc->conn.peer_text, strerror(-pack_err));
		conn_close(&sc->conn, pack_err);
	} else {
		/* A failed write means the connection is going: the peer
		 * will see its calls fail, nothing to add here. */
		conn_write(&sc->conn, out);
	}
	__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
	iobuf_destroy(out);
}

/*
 * Queues one answer on the connection: the message (already encoded, may
 * be NULL) and attachment on success, with `crc` (NULL: none) as its
 * checksum_value, or code and text on failure, formatted as brpc's
 * "[addr][E<code>]text" unless `plain` (the ERPCAUTH answer, which brpc
 * writes without SetFailed, and texts passed on from an upstream).
 * Buffers are consumed.
 */
static void send_answer(struct srv_conn *sc, uint64_t cid, int code,
			const char *text, bool plain, int compress,
			const uint8_t *crc, struct iobuf *msg,
			struct iobuf *att)
{
	struct server *s = sc->srv;
	struct baidu_resp_meta m = {.correlation_id = cid};
	char small[512], *big = NULL;
	struct iobuf out;
	int err;

	STAMP(STAMP_PACK);
	iobuf_init(&out, s->opt.pool);
	m.error_code = code;
	if (code) {
		size_t need = strlen(text) + SERVER_ADDR_TEXT_MAX + 32;
		size_t size = need > sizeof(small) ? need : sizeof(small);
		char *buf = need > sizeof(small)
				? big = mem_alloc(s->opt.mem, need)
				: small;

		m.error_text = text; /* plain, or no memory: still answer */
		if (!plain && buf &&
		    baidu_format_error_text(buf, size, addr_text(sc), code,
					    text) >= 0)
			m.error_text = buf;
		__atomic_fetch_add(&s->n_errors, 1, __ATOMIC_RELAXED);
	} else {
		m.compress_type = compress;
		if (crc) {
			m.checksum_type = BAIDU_CHECKSUM_CRC32C;
			m.checksum_value.ptr = crc;
			m.checksum_value.len = 4;
		}
	}
	err =
	    baidu_pack_response(&out, &m, code ? NULL : msg, code ? NULL : att);
	write_answer(sc, &out, err);
	if (msg)
		iobuf_reset(msg);
	if (att)
		iobuf_reset(att);
	mem_free(s->opt.mem, big);
}

/*
 * A successful answer, uncompressed and without a checksum, whose message
 * is encoded straight into the frame (baidu_pack_response_pb()): a frame
 * of up to 256 bytes, header and meta included.  false if it is bigger
 * or there is no memory for it (nothing done: encode the message and
 * send_answer(), which reports what fails).
 */
static bool send_small_answer(struct srv_conn *sc, uint64_t cid,
			      const ProtobufCMessage *msg, struct iobuf *att)
{
	struct baidu_resp_meta m = {.correlation_id = cid};
	struct iobuf out;
	int err;

	STAMP(STAMP_PACK);
	iobuf_init(&out, sc->srv->opt.pool);
	err = baidu_pack_response_pb(&out, &m, msg, att);
	if (err == -ENOSPC || err == -ENOMEM) {
		iobuf_destroy(&out);
		return false;
	}
	write_answer(sc, &out, err);
	iobuf_reset(att);
	return true;
}

static void answer_error(struct srv_conn *sc, uint64_t cid, int code,
			 const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer_error(struct srv_conn *sc, uint64_t cid, int code,
			 const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	send_answer(sc, cid, code, text, false, 0, NULL, NULL, NULL);
}

/* ---- calls ---------------------------------------------------------- */

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

/* A call's answer is queued: the last one of a stopping server wakes
 * server_stop(). */
static void uncount_call(struct server *s)
{
	if (__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&s->stopping, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&s->lock);
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

static void call_free(struct server_call *call)
{
	struct server *s = call->srv;
	const struct mem *mem = s->opt.mem;

	pbuf_free((ProtobufCMessage *)call->request, mem);
	pbuf_free_shallow(call->response, mem);
	iobuf_destroy(&call->request_attachment);
	iobuf_destroy(&call->response_attachment);
	iobuf_destroy(&call->request_body);
	iobuf_destroy(&call->response_body);
	baidu_frame_release(&call->frame);
	mem_free(mem, call->error_text);
	conn_unref(&call->sc->conn);
	mem_free(mem, call);
	uncount_call(s);
}

void server_call_fail_plain(struct server_call *call, int code,
			    const char *text)
{
	server_call_fail(call, code, "%s", text);
	call->error_plain = true;
}

/* A raw call's answer: the bytes the handler put in response_body. */
static void finish_raw(struct server_call *call)
{
	if (call->error_code)
		send_answer(call->sc, call->correlation_id, call->error_code,
			    call->error_text ? call->error_text
					     : rpc_errno_text(call->error_code),
			    call->error_plain, 0, NULL, &call->response_body,
			    &call->response_attachment);
	else
		send_answer(call->sc, call->correlation_id, 0, NULL, false,
			    call->response_compress_type,
			    call->has_response_crc ? call->response_crc : NULL,
			    &call->response_body, &call->response_attachment);
	call_free(call);
}

void server_call_finish(struct server_call *call)
{
	struct server *s = call->srv;
	uint8_t crc[4];
	struct iobuf msg;
	int err;

	if (!call->m) {
		finish_raw(call);
		return;
	}
	if (!call->error_code && !pbuf_complete(call->response))
		server_call_fail(call, RPC_ERESPONSE,
				 "Missing required fields in response=%s",
				 call->m->output->name);
	if (!call->error_code &&
	    call->response_compress_type == COMPRESS_NONE &&
	    !call->answer_checksum &&
	    send_small_answer(call->sc, call->correlation_id, call->response,
			      &call->response_attachment)) {
		call_free(call);
		return;
	}
	iobuf_init(&msg, s->opt.pool);
	if (!call->error_code) {
		err = rpc_msg_encode(call->response,
				     call->response_compress_type, &msg);
		if (err)
			server_call_fail(
			    call, RPC_EINTERNAL,
			    "Fail to serialize response=%s, "
			    "CompressType=%s: %s",
			    call->m->output->name,
			    compress_type_name(call->response_compress_type),
			    strerror(-err));
	}
	if (call->error_code)
		send_answer(call->sc, call->correlation_id, call->error_code,
			    call->error_text ? call->error_text
					     : rpc_errno_text(call->error_code),
			    false, 0, false, &msg, &call->response_attachment);
	else
		send_answer(call->sc, call->correlation_id, 0, NULL, false,
			    call->response_compress_type,
			    call->answer_checksum &&
				    rpc_msg_checksum(&msg, NULL, crc) == 0
				? crc
				: NULL,
			    &msg, &call->response_attachment);
	iobuf_destroy(&msg);
	call_free(call);
}

/* Worker (or loop, for inline methods): check, decompress, decode, run. */
static void call_run(struct server_call *call)
{
	struct baidu_frame *f = &call->frame;
	struct server *s = call->srv;
	int err;

	err = rpc_msg_verify(f);
	if (!err && f->meta.content_type != BAIDU_CONTENT_PB)
		err = -EPROTONOSUPPORT;
	if (!err)
		err = rpc_msg_decode(call->m->input, f->meta.compress_type,
				     &f->data, s->opt.max_body_size, s->opt.mem,
				     (ProtobufCMessage **)&call->request);
	if (err == -ENOMEM) {
		server_call_fail(call, RPC_EINTERNAL, "no memory for request");
	} else if (err) {
		server_call_fail(call, RPC_EREQUEST,
				 "Fail to parse request=%s, ContentType=%s, "
				 "CompressType=%s, ChecksumType=%s, "
				 "request_size=%zu",
				 call->m->input->name,
				 rpc_content_type_name(f->meta.content_type),
				 compress_type_name(f->meta.compress_type),
				 rpc_checksum_type_name(f->meta.checksum_type),
				 /* brpc counts the attachment in */
				 iobuf_len(&f->data) +
				     iobuf_len(&f->attachment));
	}
	if (!call->error_code) {
		call->response = pbuf_new(call->m->output, s->opt.mem);
		if (!call->response)
			server_call_fail(call, RPC_EINTERNAL,
					 "no memory for response");
	}
	call->request_attachment = f->attachment;
	iobuf_init(&f->attachment, s->opt.pool);
	baidu_frame_release(f);
	if (call->error_code) {
		server_call_finish(call);
		return;
	}
	STAMP(STAMP_DISPATCH);
	call->m->fn(call, call->m->svc->arg);
}

static void call_task(struct task *t)
{
	call_run(container_of(t, struct server_call, task));
}

/* ---- the baidu_std request path (loop thread) ----------------------- */

/*
 * spec 1.8, checks 2-5, then the call goes to its method.  Takes the
 * frame (released or moved into the call).
 */
static void baidu_request(struct srv_conn *sc, struct baidu_frame *f)
{
	struct server *s = sc->srv;
	const struct baidu_meta *mt = &f->meta;
	uint64_t cid = mt->correlation_id;
	struct server_service *svc;
	struct server_method *m;
	struct server_call *call;
	void *route = NULL;
	bool is_short;
	int64_t n;

	/*
	 * Counted before the stopping check, and uncounted only after the
	 * answer is queued: server_stop() waits for inflight == 0 before it
	 * closes connections, so it either sees this call or this call sees
	 * it stopping, and an ELOGOFF answer is queued before the close.
	 */
	n = __atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->stopping, __ATOMIC_SEQ_CST)) {
		answer_error(sc, cid, RPC_ELOGOFF, "Server is stopping");
		goto out_unaccount;
	}
	if (s->opt.max_concurrency && n > s->opt.max_concurrency) {
		answer_error(sc, cid, RPC_ELIMIT,
			     "Reached server's max_concurrency=%d",
			     s->opt.max_concurrency);
		goto out_unaccount;
	}
	if (f->bad_attachment) {
		answer_error(sc, cid, RPC_EREQUEST,
			     "attachment_size=%d is larger than "
			     "request_size=%zu",
			     mt->attachment_size, iobuf_len(&f->data));
		goto out_unaccount;
	}
	svc = find_service(s, mt->service, &is_short);
	m = svc ? find_method(svc, mt->method) : NULL;
	if (!m && s->route)
		route = s->route(s->route_arg, mt->service, mt->method);
	if (!m && !route && !svc && (is_short || s->route)) {
		answer_error(sc, cid, RPC_ENOSERVICE, "Fail to find service=%s",
			     mt->service);
		goto out_unaccount;
	}
	if (!m && !route) {
		/* The service as sent, short or full, as brpc prints it. */
		answer_error(sc, cid, RPC_ENOMETHOD,
			     "Fail to find method=%s/%s", mt->service,
			     mt->method);
		goto out_unaccount;
	}
	call = mem_zalloc(s->opt.mem, sizeof(*call));
	if (!call) {
		answer_error(sc, cid, RPC_EINTERNAL, "no memory for the call");
		goto out_unaccount;
	}
	call->srv = s;
	call->sc = sc;
	call->m = m;
	call->route = route;
	call->frame = *f;
	call->service = m ? svc->desc->name : call->frame.meta.service;
	call->method = m ? m->name : call->frame.meta.method;
	call->correlation_id = cid;
	call->has_log_id = mt->has_log_id;
	call->log_id = mt->log_id;
	call->request_compress_type = mt->compress_type;
	call->peer = sc->conn.peer_text;
	call->answer_checksum = s->opt.checksum_answers &&
				mt->checksum_type == BAIDU_CHECKSUM_CRC32C;
	call->start_ns = loop_now(sc->conn.loop);
	iobuf_init(&call->request_attachment, s->opt.pool);
	iobuf_init(&call->response_attachment, s->opt.pool);
	iobuf_init(&call->request_body, s->opt.pool);
	iobuf_init(&call->response_body, s->opt.pool);
	conn_ref(&sc->conn);
	if (route) {
		/* Forwarded as it came: the frame's bytes move to the call,
		 * its meta stays (names, log_id, authentication_data). */
		if (iobuf_append_buf(&call->request_body, &call->frame.data) ||
		    iobuf_append_buf(&call->request_attachment,
				     &call->frame.attachment)) {
			server_call_fail(call, RPC_EINTERNAL,
					 "no memory for the request");
			server_call_finish(call);
			return;
		}
		call->has_request_crc =
		    mt->checksum_type == BAIDU_CHECKSUM_CRC32C &&
		    mt->checksum_value.ptr && mt->checksum_value.len == 4;
		if (call->has_request_crc)
			memcpy(call->request_crc, mt->checksum_value.ptr, 4);
		s->route_handler(call, s->route_arg);
		return;
	}
	if (m->flags & SERVER_METHOD_INLINE) {
		call_run(call);
		return;
	}
	task_init(&call->task, call_task);
	if (rt_submit(s->opt.rt, &call->task)) {
		/* The workers stopped: the server is going down. */
		server_call_fail(call, RPC_ELOGOFF, "Server is stopping");
		server_call_finish(call);
	}
	return;

out_unaccount:
	uncount_call(s);
	baidu_frame_release(f);
}

/* Authentication of a connection's first request (spec 1.7).  true: go
 * on; false: refused, answered and closing. */
static bool baidu_auth(struct srv_conn *sc, const struct baidu_frame *f)
{
	struct server *s = sc->srv;
	char why[256] = "";

	if (!s->opt.auth || sc->authed)
		return true;
	if (s->opt.auth(s->opt.auth_arg, &f->meta.authentication_data,
			sc->conn.peer_text, why, sizeof(why)) == 0) {
		sc->authed = true;
		return true;
	}
	log_warn(s->opt.log, "refusing %s: authentication failed%s%s",
		 sc->conn.peer_text, why[0] ? ": " : "", why);
	{
		char text[300];

		snprintf(text, sizeof(text), "Fail to authenticate%s%s",
			 why[0] ? ": " : "", why);
		send_answer(sc, f->meta.correlation_id, RPC_ERPCAUTH, text,
			    true, 0, NULL, NULL, NULL);
	}
	sc->proto = SRV_REFUSED;
	conn_close_after_flush(&sc->conn, -EACCES);
	return false;
}

/* Why a frame broke the stream, for the one log line before closing. */
static void log_bad_frame(struct srv_conn *sc, int err)
{
	struct server *s = sc->srv;
	uint8_t hdr[BAIDU_HEADER_LEN];
	uint32_t body = 0, meta = 0;
	size_t n;

	n = iobuf_copy_out(&sc->conn.in, 0, hdr, sizeof(hdr));
	baidu_parse_header(hdr, n, &s->limits, &body, &meta);
	switch (err) {
	case -EPROTO:
		log_warn(s->opt.log,
			 "closing %s: bad magic in a baidu_std "
			 "frame header",
			 sc->conn.peer_text);
		break;
	case -EMSGSIZE:
		log_warn(s->opt.log,
			 "closing %s: baidu_std body_size=%u "
			 "meta_size=%u over max_body_size=%zu or meta limit "
			 "%zu",
			 sc->conn.peer_text, body, meta,
			 s->limits.max_body_size, s->limits.max_meta_size);
		break;
	case -EBADMSG:
		if (meta > body)
			log_warn(s->opt.log,
				 "closing %s: baidu_std "
				 "meta_size=%u larger than body_size=%u",
				 sc->conn.peer_text, meta, body);
		else
			log_warn(s->opt.log,
				 "closing %s: baidu_std meta of "
				 "%u bytes does not decode as RpcMeta",
				 sc->conn.peer_text, meta);
		break;
	default:
		log_warn(s->opt.log, "closing %s: %s", sc->conn.peer_text,
			 strerror(-err));
	}
}

static void baidu_data(struct srv_conn *sc)
{
	struct server *s = sc->srv;
	struct baidu_frame f;
	int n;

	while (sc->proto == SRV_BAIDU && !conn_closing(&sc->conn)) {
		n = baidu_parse(&sc->conn.in, &f, &s->limits);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			if (n != -ENOMEM)
				__atomic_fetch_add(&s->n_closed_bad, 1,
						   __ATOMIC_RELAXED);
			log_bad_frame(sc, n);
			conn_close(&sc->conn, n);
			return;
		}
		STAMP(STAMP_PARSED);
		if (!f.meta.has_request) {
			log_warn(s->opt.log,
				 "closing %s: a baidu_std frame "
				 "without a request meta on a server "
				 "connection",
				 sc->conn.peer_text);
			__atomic_fetch_add(&s->n_closed_bad, 1,
					   __ATOMIC_RELAXED);
			baidu_frame_release(&f);
			conn_close(&sc->conn, -EPROTO);
			return;
		}
		if (!baidu_auth(sc, &f)) {
			baidu_frame_release(&f);
			return;
		}
		baidu_request(sc, &f);
	}
}

/* ---- built-in pages over HTTP ----------------------------------------- */

/* Queues one HTTP/1.1 answer and closes once it is out. */
static void http_answer(struct srv_conn *sc, bool head_only, const char *status,
			const char *extra, const char *type, const char *body,
			size_t len)
{
	struct conn *c = &sc->conn;
	struct iobuf out;
	char h[320];
	int n;

	n = snprintf(h, sizeof(h),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: "
		     "%zu\r\nConnection: close\r\n%s\r\n",
		     status, type, len, extra);
	iobuf_init(&out, sc->srv->opt.pool);
	if (iobuf_append(&out, h, (size_t)n) == 0 &&
	    (head_only || iobuf_append(&out, body, len) == 0))
		conn_write(c, &out);
	iobuf_destroy(&out);
	sc->proto = SRV_REFUSED;
	conn_close_after_flush(c, 0);
}

static void http_text(struct srv_conn *sc, bool head_only, const char *status,
		      const char *extra, const char *text)
{
	http_answer(sc, head_only, status, extra, "text/plain; charset=utf-8",
		    text, strlen(text));
}

static void http_metrics(struct srv_conn *sc, bool head_only)
{
	struct server *s = sc->srv;
	ssize_t need = metrics_write_prometheus(s->opt.metrics, NULL, 0);
	char *text = need >= 0 ? mem_alloc(s->opt.mem, (size_t)need + 1) : NULL;

	if (!text || metrics_write_prometheus(s->opt.metrics, text,
					      (size_t)need + 1) != need) {
		/* A metric registered in between: the next scrape. */
		http_text(sc, head_only, "503 Service Unavailable", "",
			  "rpcgate: the metrics changed while being written; "
			  "try again\n");
	} else {
		http_answer(sc, head_only, "200 OK", "",
			    "text/plain; version=0.0.4; charset=utf-8", text,
			    (size_t)need);
	}
	mem_free(s->opt.mem, text);
}

/* SRV_HTTP: the request head, then one answer. */
static void http_data(struct srv_conn *sc)
{
	struct conn *c = &sc->conn;
	uint8_t buf[HTTP_HEAD_MAX];
	size_t n = iobuf_copy_out(&c->in, 0, buf, sizeof(buf));
	struct http_head h;
	char why[160];
	bool get, head_only;
	int r = http_head_parse(buf, n, &h);

	if (r == -EAGAIN)
		return;
	iobuf_reset(&c->in);
	if (r) {
		log_info(sc->srv->opt.log, "HTTP request from %s refused: %s",
			 c->peer_text,
			 r == -E2BIG ? "its head is over 8 KiB" : h.why);
		snprintf(why, sizeof(why), "rpcgate: bad request: %s\n",
			 r == -E2BIG ? "the head is over 8 KiB" : h.why);
		http_text(sc, false,
			  r == -E2BIG ? "431 Request Header Fields Too Large"
				      : "400 Bad Request",
			  "", why);
		return;
	}
	head_only = !strcmp(h.method, "HEAD");
	get = head_only || !strcmp(h.method, "GET");
	log_debug(sc->srv->opt.log, "HTTP %s %s from %s", h.method, h.target,
		  c->peer_text);
	if (!get)
		http_text(sc, false, "405 Method Not Allowed",
			  "Allow: GET, HEAD\r\n",
			  "rpcgate: this port's pages answer GET and HEAD\n");
	else if (sc->srv->opt.metrics && (!strcmp(h.target, "/metrics") ||
					  !strncmp(h.target, "/metrics?", 9)))
		http_metrics(sc, head_only);
	else
		http_text(sc, head_only, "404 Not Found", "",
			  sc->srv->opt.metrics
			      ? "rpcgate: no such page; try /metrics\n"
			      : "rpcgate: no such page\n");
}

/* ---- connections ---------------------------------------------------- */

static void srv_on_data(struct conn *c)
{
	struct srv_conn *sc = container_of(c, struct srv_conn, conn);
	const struct conn_upgrade *up = sc->srv->opt.upgrade;
	uint8_t first[SERVER_SNIFF_SHOW];
	size_t n;
	int r;

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
		 * 1.9): baidu_std, then HTTP (the built-in pages). */
		r = baidu_detect(&c->in);
		if (r < 0) {
			n = iobuf_copy_out(&c->in, 0, first, sizeof(first));
			r = http_detect(first, n);
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
		baidu_data(sc);
	else if (sc->proto == SRV_HTTP)
		http_data(sc);
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

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(a->sin_port));
	}
}

static void accept_one(struct server *s, int fd)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct srv_conn *sc;
	int err;

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

static void on_accept(struct loop_io *io, uint32_t events)
{
	struct server_listener *l =
	    container_of(io, struct server_listener, io);
	int fd;

	for (;;) {
		fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			accept_one(l->srv, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN)
			log_error(l->srv->opt.log, "accept on port %d: %s",
				  l->port, strerror(errno));
		return;
	}
}

/* ---- listeners ------------------------------------------------------ */

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
	close(l->fd);
	pthread_mutex_lock(&s->lock);
	l->fd = -1;
	s->listeners_open--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int server_start(struct server *s)
{
	if (s->started)
		return -EBUSY;
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
		for (int i = 0; i < s->nlisteners; i++)
			close(s->listeners[i].fd);
	pthread_mutex_lock(&s->lock);
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
	for (int i = 0; i < s->nservices; i++)
		mem_free(s->opt.mem, s->services[i]);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

void server_stats(struct server *s, struct server_stats *out)
{
	out->calls = __atomic_load_n(&s->n_calls, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->n_errors, __ATOMIC_RELAXED);
	out->closed_bad = __atomic_load_n(&s->n_closed_bad, __ATOMIC_RELAXED);
	out->inflight = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->lock);
	out->connections = s->nconns;
	pthread_mutex_unlock(&s->lock);
}
