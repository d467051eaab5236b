/*
 * channel_h2: a channel's calls as gRPC over HTTP/2 (protocol grpc).
 *
 * A connection's nghttp2 client session is made with its first request
 * (the client preface and SETTINGS go first).  An attempt is a stream:
 *
 *   HEADERS  :method POST, :path /SERVICE/METHOD, content-type
 *            application/grpc, te trailers, grpc-timeout (what is left of
 *            the call's deadline), grpc-encoding gzip for a gzipped body,
 *            authorization (the channel's credential)
 *   DATA     the message, length-prefixed, from the call's bytes (shared)
 *
 * and its answer, headers, DATA and trailers, becomes a baidu_std frame
 * (net/codec/baidu_std.h) for the channel's common path: the message
 * bytes as data, gzip as compress_type, grpc-status mapped to brpc's
 * codes (codec/grpc.h) with grpc-message as error_text.  A stream that
 * ends without grpc-status fails the call: EHTTP for a status other than
 * 200, else ERESPONSE.  Everything here runs on the channel's loop.
 */
#include "channel_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/grpc.h"
#include "codec/rpc_errno.h"
#include "h2_io.h"

/* Our SETTINGS: a stream window of 1 MiB, the connection's 16 MiB (big
 * answers need not wait for WINDOW_UPDATEs), no push. */
#define CH2_STREAM_WINDOW (1 << 20)
#define CH2_CONN_WINDOW	  (16 << 20)
/* A grpc-message kept of an error answer, at most. */
#define CH2_MESSAGE_MAX 1024

struct ch2_stream {
	uint64_t id; /* the attempt's */
	struct chan_h2 *h2;
	struct ch2_stream *prev, *next;
	struct iobuf out; /* the request's DATA to send */
	struct iobuf in;  /* the answer's DATA */
	int http_status;
	int grpc_status; /* -1: none yet */
	bool gzip;	 /* grpc-encoding: gzip */
	char message[CH2_MESSAGE_MAX + 1];
};

struct chan_h2 {
	struct h2_io io; /* first: nghttp2's user data */
	struct chan_conn *cc;
	struct ch2_stream *streams;
	bool failed;
};

static void ch2_flush(struct chan_h2 *h2);

static void stream_free(struct chan_h2 *h2, struct ch2_stream *st)
{
	const struct mem *mem = h2->cc->ch->opt.mem;

	if (st->prev)
		st->prev->next = st->next;
	else
		h2->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	iobuf_destroy(&st->out);
	iobuf_destroy(&st->in);
	mem_free(mem, st);
}

/* ---- the answer ----------------------------------------------------- */

/* st's answer as a frame, handed to the channel. */
static void stream_answer(struct chan_h2 *h2, struct ch2_stream *st,
			  uint32_t rst)
{
	struct channel *ch = h2->cc->ch;
	struct baidu_frame f;
	struct grpc_msg m;
	char text[160];
	const char *why = NULL;
	int code = 0, r;

	memset(&f, 0, sizeof(f));
	iobuf_init(&f.data, ch->opt.pool);
	iobuf_init(&f.attachment, ch->opt.pool);
	f.mem = ch->opt.mem;
	if (st->grpc_status > 0) {
		code = grpc_status_to_rpc(st->grpc_status);
		why = st->message[0] ? st->message
				     : grpc_status_name(st->grpc_status);
	} else if (st->grpc_status < 0) {
		code = st->http_status && st->http_status != 200
			   ? RPC_EHTTP
			   : RPC_ERESPONSE;
		snprintf(text, sizeof(text),
			 "the gRPC answer from %s ended without grpc-status "
			 "(HTTP status %d%s%s)",
			 ch->addr_text, st->http_status,
			 rst ? ", stream reset: " : "",
			 rst ? nghttp2_http2_strerror(rst) : "");
		why = text;
	} else {
		r = grpc_msg_peek(&st->in, 0, ch->opt.max_body_size, &m);
		if (r != 1 || iobuf_len(&st->in) != GRPC_PREFIX_LEN + m.len) {
			code = RPC_ERESPONSE;
			snprintf(text, sizeof(text),
				 "the gRPC answer from %s is not one "
				 "length-prefixed message (%zu bytes)",
				 ch->addr_text, iobuf_len(&st->in));
			why = text;
		} else if (m.compressed && !st->gzip) {
			code = RPC_ERESPONSE;
			why = "a compressed gRPC answer without grpc-encoding";
		} else {
			iobuf_drop_front(&st->in, GRPC_PREFIX_LEN);
			iobuf_append_buf(&f.data, &st->in);
			f.meta.compress_type =
			    m.compressed ? COMPRESS_GZIP : COMPRESS_NONE;
		}
	}
	f.meta.error_code = code;
	f.meta.error_text = "";
	if (code && why) {
		size_t n = strlen(why);

		f.store = mem_alloc(ch->opt.mem, n + 1);
		if (f.store) {
			memcpy(f.store, why, n + 1);
			f.meta.error_text = f.store;
		}
	}
	f.meta.has_response = true;
	f.meta.correlation_id = st->id;
	chan_answer(h2->cc, st->id, &f);
}

/* ---- nghttp2's callbacks -------------------------------------------- */

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
			 size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct ch2_stream *st = src->ptr;
	size_t left = iobuf_len(&st->out);
	size_t n = left < length ? left : length;

	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == left)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int send_data(nghttp2_session *ng, nghttp2_frame *frame,
		     const uint8_t *framehd, size_t length,
		     nghttp2_data_source *src, void *user)
{
	struct chan_h2 *h2 = user;
	struct ch2_stream *st = src->ptr;

	return h2_io_put_data(&h2->io, framehd, &st->out, length);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	struct ch2_stream *st =
	    nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	int v = 0;

	if (!st)
		return 0;
	if (h2_is(name, namelen, ":status")) {
		for (size_t i = 0; i < valuelen && i < 3; i++)
			v = v * 10 + (value[i] - '0');
		st->http_status = v;
	} else if (h2_is(name, namelen, "grpc-status")) {
		for (size_t i = 0; i < valuelen && i < 3; i++)
			if (value[i] >= '0' && value[i] <= '9')
				v = v * 10 + (value[i] - '0');
		st->grpc_status = v;
	} else if (h2_is(name, namelen, "grpc-message")) {
		size_t n = valuelen < CH2_MESSAGE_MAX ? valuelen
						      : CH2_MESSAGE_MAX;

		grpc_message_decode((const char *)value, n, st->message);
	} else if (h2_is(name, namelen, "grpc-encoding")) {
		st->gzip = h2_is(value, valuelen, "gzip");
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
			 const uint8_t *data, size_t len, void *user)
{
	struct chan_h2 *h2 = user;
	struct ch2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	if (!st)
		return 0;
	if (iobuf_len(&st->in) + len >
	    h2->cc->ch->opt.max_body_size + GRPC_PREFIX_LEN) {
		/* too big: the stream is reset, the call fails */
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id,
					  NGHTTP2_CANCEL);
		iobuf_reset(&st->in);
		return 0;
	}
	if (iobuf_append(&st->in, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code,
			   void *user)
{
	struct chan_h2 *h2 = user;
	struct ch2_stream *st = nghttp2_session_get_stream_user_data(ng, id);

	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	if (code != NGHTTP2_NO_ERROR && st->grpc_status < 0)
		st->grpc_status = -1;
	stream_answer(h2, st, code);
	stream_free(h2, st);
	return 0;
}

static nghttp2_session_callbacks *cbs;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void cbs_make(void)
{
	nghttp2_session_callbacks *c;

	if (nghttp2_session_callbacks_new(&c))
		return;
	nghttp2_session_callbacks_set_send_callback(c, h2_io_send);
	nghttp2_session_callbacks_set_send_data_callback(c, send_data);
	nghttp2_session_callbacks_set_on_header_callback(c, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    c, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(
	    c, on_stream_close);
	cbs = c;
}

/* ---- the session ---------------------------------------------------- */

static int ch2_start(struct chan_conn *cc)
{
	const struct mem *mem = cc->ch->opt.mem;
	struct chan_h2 *h2 = mem_zalloc(mem, sizeof(*h2));
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CH2_STREAM_WINDOW},
	};
	int rv;

	pthread_once(&cbs_once, cbs_make);
	if (!h2 || !cbs) {
		mem_free(mem, h2);
		return -ENOMEM;
	}
	h2->cc = cc;
	iobuf_init(&h2->io.out, cc->ch->opt.pool);
	rv = nghttp2_session_client_new(&h2->io.ng, cbs, h2);
	if (!rv)
		rv = nghttp2_submit_settings(h2->io.ng, NGHTTP2_FLAG_NONE, iv,
					     ARRAY_SIZE(iv));
	if (!rv)
		rv = nghttp2_session_set_local_window_size(
		    h2->io.ng, NGHTTP2_FLAG_NONE, 0, CH2_CONN_WINDOW);
	if (rv) {
		if (h2->io.ng)
			nghttp2_session_del(h2->io.ng);
		iobuf_destroy(&h2->io.out);
		mem_free(mem, h2);
		return -ENOMEM;
	}
	cc->h2 = h2;
	return 0;
}

static void ch2_fail(struct chan_h2 *h2, const char *what, int rv)
{
	struct chan_conn *cc = h2->cc;

	if (!h2->failed)
		log_warn(cc->ch->opt.log,
			 "closing connection to %s: HTTP/2 %s: %s",
			 cc->ch->addr_text, what, nghttp2_strerror(rv));
	h2->failed = true;
	conn_close(&cc->conn, -EPROTO);
}

static void ch2_flush(struct chan_h2 *h2)
{
	struct conn *c = &h2->cc->conn;
	int rv;

	if (h2->io.in_io)
		return; /* a call started from a done callback: sent below */
	rv = nghttp2_session_send(h2->io.ng);
	if (rv) {
		ch2_fail(h2, "session", rv);
		return;
	}
	if (!iobuf_empty(&h2->io.out))
		conn_write(c, &h2->io.out);
	if (!nghttp2_session_want_read(h2->io.ng) &&
	    !nghttp2_session_want_write(h2->io.ng))
		conn_close_after_flush(c, -ECONNRESET); /* GOAWAY */
}

int chan_h2_send(struct chan_conn *cc, struct rpc_attempt *a)
{
	struct rpc_call *c = a->call;
	struct channel *ch = cc->ch;
	char path[600], tmo[GRPC_TIMEOUT_TEXT];
	uint8_t pfx[GRPC_PREFIX_LEN];
	nghttp2_data_provider prd = {.read_callback = data_read};
	struct ch2_stream *st;
	struct iobuf plain;
	nghttp2_nv nv[10];
	bool gzip = c->compress_type == COMPRESS_GZIP;
	size_t n = 0, len;
	int32_t sid;
	int err = 0;

	if (!iobuf_empty(&c->request_attachment)) {
		chan_set_local_text(c, "gRPC carries no attachment");
		return -EMSGSIZE;
	}
	if (!cc->h2 && ch2_start(cc)) {
		chan_set_local_text(c, "no memory for an HTTP/2 session");
		return -ENOMEM;
	}
	st = mem_zalloc(ch->opt.mem, sizeof(*st));
	if (!st) {
		chan_set_local_text(c, "no memory for the stream");
		return -ENOMEM;
	}
	st->id = a->id;
	st->h2 = cc->h2;
	st->grpc_status = -1;
	iobuf_init(&st->out, ch->opt.pool);
	iobuf_init(&st->in, ch->opt.pool);
	iobuf_init(&plain, ch->opt.pool);
	/* the message, shared: the call keeps its bytes for a retry */
	if (c->body_is_inline)
		err = iobuf_append(&plain, c->body_inline, c->body_inline_len);
	else
		err = iobuf_share(&plain, &c->body, 0, iobuf_len(&c->body));
	if (!err && c->compress_type != COMPRESS_NONE && !gzip) {
		/* gRPC knows gzip only: anything else goes plain */
		struct iobuf dec;

		iobuf_init(&dec, ch->opt.pool);
		err = compress_decode(c->compress_type, &plain, &dec,
				      ch->opt.max_body_size);
		iobuf_reset(&plain);
		iobuf_append_buf(&plain, &dec);
		iobuf_destroy(&dec);
	}
	len = iobuf_len(&plain);
	grpc_msg_prefix(pfx, gzip, (uint32_t)len);
	if (!err && len > UINT32_MAX)
		err = -EMSGSIZE;
	if (!err)
		err = iobuf_append(&st->out, pfx, sizeof(pfx));
	if (!err)
		err = iobuf_append_buf(&st->out, &plain);
	iobuf_destroy(&plain);
	if (err) {
		chan_set_local_text(c, "Fail to pack the gRPC request: %s",
				    strerror(-err));
		iobuf_destroy(&st->out);
		iobuf_destroy(&st->in);
		mem_free(ch->opt.mem, st);
		return err;
	}
	snprintf(path, sizeof(path), "/%s/%s", c->service, c->method);
	nv[n++] = (nghttp2_nv)NV(":method", "POST", 4);
	nv[n++] = (nghttp2_nv)NV(":scheme", "http", 4);
	nv[n++] = (nghttp2_nv)NV(":path", path, strlen(path));
	nv[n++] = (nghttp2_nv)NV(":authority", ch->addr_text,
				 strlen(ch->addr_text));
	nv[n++] = (nghttp2_nv)NV("content-type", "application/grpc", 16);
	nv[n++] = (nghttp2_nv)NV("te", "trailers", 8);
	nv[n++] = (nghttp2_nv)NV("grpc-accept-encoding", "identity,gzip", 13);
	if (gzip)
		nv[n++] = (nghttp2_nv)NV("grpc-encoding", "gzip", 4);
	if (c->deadline_ns) {
		int64_t left = (c->deadline_ns - loop_now(ch->loop)) /
			       CLOCK_NS_PER_MS;

		grpc_timeout_format(left > 0 ? left : 1, tmo);
		nv[n++] = (nghttp2_nv)NV("grpc-timeout", tmo, strlen(tmo));
	}
	if (ch->opt.credential)
		nv[n++] = (nghttp2_nv)NV("authorization", ch->opt.credential,
					 ch->opt.credential_len);
	prd.source.ptr = st;
	sid = nghttp2_submit_request(cc->h2->io.ng, NULL, nv, n, &prd, st);
	if (sid < 0) {
		chan_set_local_text(c, "Fail to start an HTTP/2 stream: %s",
				    nghttp2_strerror(sid));
		iobuf_destroy(&st->out);
		iobuf_destroy(&st->in);
		mem_free(ch->opt.mem, st);
		return sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? -EOVERFLOW
								  : -ENOMEM;
	}
	st->next = cc->h2->streams;
	if (st->next)
		st->next->prev = st;
	cc->h2->streams = st;
	ch2_flush(cc->h2);
	return 0;
}

void chan_h2_data(struct chan_conn *cc)
{
	struct conn *c = &cc->conn;
	struct chan_h2 *h2 = cc->h2;
	int rv;

	if (!h2) {
		/* bytes before any request of ours: not an HTTP/2 server */
		log_warn(cc->ch->opt.log,
			 "closing connection to %s: it spoke first, as no "
			 "HTTP/2 server does",
			 cc->ch->addr_text);
		conn_close(c, -EPROTO);
		return;
	}
	rv = h2_io_recv(&h2->io, &c->in);
	if (rv < 0) {
		ch2_fail(h2, "from the server", rv);
		return;
	}
	ch2_flush(h2);
}

void chan_h2_close(struct chan_conn *cc)
{
	struct chan_h2 *h2 = cc->h2;
	const struct mem *mem = cc->ch->opt.mem;

	if (!h2)
		return;
	while (h2->streams)
		stream_free(h2, h2->streams);
	nghttp2_session_del(h2->io.ng);
	iobuf_destroy(&h2->io.out);
	mem_free(mem, h2);
	cc->h2 = NULL;
}
