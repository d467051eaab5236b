/*
 * server_baidu: baidu_std on a server port (spec/brpc-wire.md 1.8): the
 * checks of a request in brpc's order, the call to its method, route or
 * raw handler, and the answer frame.
 */
#include "server_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/stamp.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/pbuf.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"

/* ---- answers ------------------------------------------------------- */

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
		    baidu_format_error_text(buf, size, server__addr_text(sc),
					    code, text) >= 0)
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

/* ---- finishing a call ------------------------------------------------ */

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
	server__call_free(call);
}

void server__baidu_finish(struct server_call *call)
{
	struct server *s = call->srv;
	uint8_t crc[4];
	struct iobuf msg;
	int err;

	if (!call->m || !call->m->input) {
		finish_raw(call);
		return;
	}
	if (!call->error_code &&
	    call->response_compress_type == COMPRESS_NONE &&
	    !call->answer_checksum &&
	    send_small_answer(call->sc, call->correlation_id, call->response,
			      &call->response_attachment)) {
		server__call_free(call);
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
	server__call_free(call);
}

/* Worker (or loop, for inline methods): check, decompress, decode, run. */
static void call_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);
	struct baidu_frame *f = &call->frame;
	int err = rpc_msg_verify(f);

	if (!err && f->meta.content_type != BAIDU_CONTENT_PB)
		err = -EPROTONOSUPPORT;
	if (err) {
		server_call_fail(call, RPC_EREQUEST,
				 "Fail to parse request=%s, ContentType=%s, "
				 "CompressType=%s, ChecksumType=%s, "
				 "request_size=%zu",
				 call->m->input->name,
				 rpc_content_type_name(f->meta.content_type),
				 compress_type_name(f->meta.compress_type),
				 rpc_checksum_type_name(f->meta.checksum_type),
				 iobuf_len(&f->data) +
				     iobuf_len(&f->attachment));
		baidu_frame_release(f);
		server_call_finish(call);
		return;
	}
	call->request_attachment = f->attachment;
	iobuf_init(&f->attachment, call->srv->opt.pool);
	server__call_typed(call, &f->data, f->meta.compress_type);
}

/* A raw method's call: its handler, with the bytes as they came. */
static void raw_task(struct task *t)
{
	struct server_call *call = container_of(t, struct server_call, task);

	call->m->fn(call, call->m->svc->arg);
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
	char why[128];
	int code;

	code = server__admit(s, why, sizeof(why));
	if (code) {
		answer_error(sc, cid, code, "%s", why);
		server__refused(s);
		baidu_frame_release(f);
		return;
	}
	if (f->bad_attachment) {
		answer_error(sc, cid, RPC_EREQUEST,
			     "attachment_size=%d is larger than "
			     "request_size=%zu",
			     mt->attachment_size, iobuf_len(&f->data));
		goto out_unaccount;
	}
	svc = server__find_service(s, mt->service, strlen(mt->service),
				   &is_short);
	m = svc ? server__find_method(svc, mt->method, strlen(mt->method))
		: NULL;
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
	if (m && server__method_enter(s, m, why, sizeof(why))) {
		answer_error(sc, cid, RPC_ELIMIT, "%s", why);
		goto out_unaccount;
	}
	call = server__call_new(sc);
	if (!call) {
		if (m)
			climit_leave(&m->limit, 0, false, clock_mono_ns());
		server__route_release(s, route);
		answer_error(sc, cid, RPC_EINTERNAL, "no memory for the call");
		goto out_unaccount;
	}
	call->m = m;
	call->route = route;
	call->frame = *f;
	server__call_hold(call, iobuf_len(&f->data) + iobuf_len(&f->attachment));
	call->service = m ? svc->name : call->frame.meta.service;
	call->method = m ? m->name : call->frame.meta.method;
	call->correlation_id = cid;
	call->has_log_id = mt->has_log_id;
	call->log_id = mt->log_id;
	call->request_compress_type = mt->compress_type;
	call->timeout_ms =
	    mt->has_timeout_ms && mt->timeout_ms > 0 ? mt->timeout_ms : 0;
	call->answer_checksum = s->opt.checksum_answers &&
				mt->checksum_type == BAIDU_CHECKSUM_CRC32C;
	if (route || !m->input) {
		/* Routed or raw: the frame's bytes move to the call as they
		 * came. */
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
		if (route)
			s->route_handler(call, s->route_arg);
		else
			server__call_dispatch(call, raw_task);
		return;
	}
	server__call_dispatch(call, call_task);
	return;

out_unaccount:
	server__uncount_call(s);
	baidu_frame_release(f);
}

/* Authentication of a connection's first request (spec 1.7).  true: go
 * on; false: refused, answered and closing. */
static bool baidu_auth(struct srv_conn *sc, const struct baidu_frame *f)
{
	char text[300];

	if (sc->authed ||
	    !server__authenticate(sc, &f->meta.authentication_data, text,
				  sizeof(text))) {
		sc->authed = true;
		return true;
	}
	send_answer(sc, f->meta.correlation_id, RPC_ERPCAUTH, text, true, 0,
		    NULL, NULL, NULL);
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

void server__baidu_data(struct srv_conn *sc)
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
