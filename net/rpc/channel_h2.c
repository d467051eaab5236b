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
 * 200, else ERESPONSE.
 *
 * A streaming call (channel_stream_open()) is a stream of its own kind:
 * the same HEADERS, its DATA a queue of messages that defers while empty
 * and resumes on the next write, END_STREAM at channel_stream_end(); its
 * answer's messages go to on_message as each is whole, its trailers to
 * on_close.  Flow control is ours (nghttp2's automatic WINDOW_UPDATE is
 * off): DATA is consumed as it is handed on, except a paused stream's,
 * which is consumed when it resumes.  Everything here runs on the
 * channel's loop.
 */
#include "channel_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
/* Sends a flush makes in a row while on_writable keeps writing; then
 * the rest goes on the loop's next turn, after the other connections. */
#define CH2_FLUSH_ROUNDS 16
/* A grpc-message kept of an error answer, at most. */
#define CH2_MESSAGE_MAX 1024

/* A service's or a method's name, each. */
#define CH2_NAME_MAX 256
/* Metadata fields a streaming call sends, at most. */
#define CH2_METADATA_MAX 64

struct ch2_stream {
	uint64_t id; /* the attempt's; 0: a streaming call's */
	struct chan_h2 *h2;
	struct ch2_stream *prev, *next;
	struct iobuf out; /* the request's DATA to send */
	struct iobuf in;  /* the answer's DATA */
	int http_status;
	int grpc_status; /* -1: none yet */
	bool gzip;	 /* grpc-encoding: gzip */
	struct channel_stream *user; /* a streaming call; NULL: an attempt */
	char message[CH2_MESSAGE_MAX + 1];
};

struct channel_stream {
	struct ch2_stream h; /* first: freed with it */
	struct channel *ch;
	struct chan_conn *cc;
	const struct channel_stream_ops *ops;
	void *arg;
	struct channel_stream *pnext; /* on cc->pending */
	int32_t sid;		      /* 0: not started */
	int timeout_ms;
	int64_t deadline_ns; /* 0: none */
	struct loop_timer timer;
	size_t unconsumed; /* DATA held back from the window (paused) */
	int local_code;	   /* ending for a reason of ours; its text: */
	char text[200];
	bool ending;	/* channel_stream_end(): END_STREAM after the queue */
	bool deferred;	/* its DATA provider waits for a write */
	bool paused, cancelled, closing, want_writable, writable_due;
	char path[2 * CH2_NAME_MAX + 3];
	/* metadata: ours to send, the server's headers and trailers
	 * ("name: value\r\n" each) */
	char *meta, *hdrs, *trls;
	size_t meta_len, meta_cap, hdrs_len, hdrs_cap, trls_len, trls_cap;
};

struct chan_h2 {
	struct h2_io io; /* first: nghttp2's user data */
	struct chan_conn *cc;
	struct ch2_stream *streams;
	bool failed;
	bool resend; /* submitted while in nghttp2: send once out */
};

static void ch2_flush(struct chan_h2 *h2);

/* Frees a stream not on any list (a streaming call's, whole). */
static void stream_release(const struct mem *mem, struct ch2_stream *st)
{
	if (st->user) {
		loop_timer_stop(st->user->ch->loop, &st->user->timer);
		mem_free(mem, st->user->meta);
		mem_free(mem, st->user->hdrs);
		mem_free(mem, st->user->trls);
	}
	iobuf_destroy(&st->out);
	iobuf_destroy(&st->in);
	mem_free(mem, st);
}

/* Takes st off its session's list. */
static void stream_unlink(struct chan_h2 *h2, struct ch2_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		h2->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
}

static void stream_free(struct chan_h2 *h2, struct ch2_stream *st)
{
	stream_unlink(h2, st);
	stream_release(h2->cc->ch->opt.mem, st);
}

/* ---- the answer ----------------------------------------------------- */

/* How st ended, if not with grpc-status 0: brpc's code, and its text
 * in *why (st->message, or text[]). */
static int stream_status(struct chan_h2 *h2, struct ch2_stream *st,
			 uint32_t rst, char *text, size_t size,
			 const char **why)
{
	if (st->grpc_status > 0) {
		*why = st->message[0] ? st->message
				      : grpc_status_name(st->grpc_status);
		return grpc_status_to_rpc(st->grpc_status);
	}
	if (st->grpc_status == 0)
		return 0;
	snprintf(text, size,
		 "the gRPC answer from %s ended without grpc-status "
		 "(HTTP status %d%s%s)",
		 h2->cc->ch->addr_text, st->http_status,
		 rst ? ", stream reset: " : "",
		 rst ? nghttp2_http2_strerror(rst) : "");
	*why = text;
	return st->http_status && st->http_status != 200 ? RPC_EHTTP
							 : RPC_ERESPONSE;
}

/* st's answer as a frame, handed to the channel. */
static void stream_answer(struct chan_h2 *h2, struct ch2_stream *st,
			  uint32_t rst)
{
	struct channel *ch = h2->cc->ch;
	struct baidu_frame f;
	struct grpc_msg m;
	char text[160];
	const char *why = NULL;
	int code, r;

	memset(&f, 0, sizeof(f));
	iobuf_init(&f.data, ch->opt.pool);
	iobuf_init(&f.attachment, ch->opt.pool);
	f.mem = ch->opt.mem;
	code = stream_status(h2, st, rst, text, sizeof(text), &why);
	if (st->grpc_status == 0) {
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

/* ---- streaming calls ------------------------------------------------ */

/* Ends a streaming call not started (or whose stream is gone): on_close
 * unless cancelled, then it is freed. */
static void user_end(struct channel_stream *us, int code, const char *text)
{
	const struct mem *mem = us->ch->opt.mem;

	loop_timer_stop(us->ch->loop, &us->timer);
	if (code)
		chan_count(&us->ch->n_errors);
	us->closing = true;
	if (!us->cancelled)
		us->ops->on_close(us, code, text ? text : "", us->arg);
	stream_release(mem, &us->h);
}

/* Ends a started call for a reason of ours: the stream is reset, and
 * on_close says `code` when nghttp2 has closed it. */
static void user_fail(struct channel_stream *us, int code, const char *text)
{
	struct chan_h2 *h2 = us->h.h2;

	if (us->local_code || us->cancelled)
		return;
	us->local_code = code;
	snprintf(us->text, sizeof(us->text), "%s", text);
	nghttp2_submit_rst_stream(h2->io.ng, NGHTTP2_FLAG_NONE, us->sid,
				  NGHTTP2_CANCEL);
	ch2_flush(h2);
}

/* The answer's whole messages, each to on_message. */
static void user_messages(struct channel_stream *us)
{
	struct ch2_stream *st = &us->h;
	const struct channel_options *o = &us->ch->opt;
	struct iobuf msg, plain;
	struct grpc_msg m;
	int r;

	while (!us->local_code && !us->cancelled) {
		r = grpc_msg_peek(&st->in, 0, o->max_body_size, &m);
		if (r == 0)
			return;
		if (r < 0 || (m.compressed && !st->gzip)) {
			user_fail(us, RPC_ERESPONSE,
				  r == -EMSGSIZE ? "an answer over max_body_size"
				  : r < 0	 ? "an answer with a bad flag"
					  : "a compressed answer without "
					    "grpc-encoding");
			break;
		}
		iobuf_init(&msg, o->pool);
		iobuf_drop_front(&st->in, GRPC_PREFIX_LEN);
		iobuf_cut(&st->in, &msg, m.len);
		if (m.compressed) {
			iobuf_init(&plain, o->pool);
			r = compress_decode(COMPRESS_GZIP, &msg, &plain,
					    o->max_body_size);
			iobuf_destroy(&msg);
			msg = plain;
			if (r) {
				iobuf_destroy(&msg);
				user_fail(us, RPC_ERESPONSE,
					  "an answer does not un-gzip");
				break;
			}
		}
		if (us->ops->on_message)
			us->ops->on_message(us, &msg, us->arg);
		iobuf_destroy(&msg);
	}
	iobuf_reset(&st->in);
}

/* nghttp2 closed a streaming call's stream. */
static void user_closed(struct chan_h2 *h2, struct channel_stream *us,
			uint32_t rst)
{
	struct chan_conn *cc = us->cc;
	struct ch2_stream *st = &us->h;
	const char *why = "";
	char text[200];
	int code;

	if (us->local_code) {
		code = us->local_code;
		why = us->text;
	} else {
		code = stream_status(h2, st, rst, text, sizeof(text), &why);
		if (!code && !iobuf_empty(&st->in)) {
			code = RPC_ERESPONSE;
			why = "the answer ended inside a message";
		}
	}
	stream_unlink(h2, st); /* then the caller hears of it */
	user_end(us, code, why);
	chan_stream_conn_done(cc);
}

/* The request headers of a call to `path`, into nv (room for 10). */
static size_t request_headers(struct channel *ch, const char *path,
			      bool gzip, int64_t deadline_ns, char *tmo,
			      nghttp2_nv *nv)
{
	size_t n = 0;

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
	if (deadline_ns) {
		int64_t left =
		    (deadline_ns - loop_now(ch->loop)) / CLOCK_NS_PER_MS;

		grpc_timeout_format(left > 0 ? left : 1, tmo);
		nv[n++] = (nghttp2_nv)NV("grpc-timeout", tmo, strlen(tmo));
	}
	if (ch->opt.credential)
		nv[n++] = (nghttp2_nv)NV("authorization", ch->opt.credential,
					 ch->opt.credential_len);
	return n;
}

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
			 size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user);
static int ch2_start(struct chan_conn *cc);

/* Submits a streaming call's HEADERS: 0 or -errno with us->text set. */
static int user_start(struct chan_conn *cc, struct channel_stream *us)
{
	nghttp2_data_provider prd = {.source.ptr = &us->h,
				     .read_callback = data_read};
	char tmo[GRPC_TIMEOUT_TEXT];
	nghttp2_nv nv[10 + CH2_METADATA_MAX];
	size_t n;
	int32_t sid;

	if (!cc->h2 && ch2_start(cc)) {
		snprintf(us->text, sizeof(us->text),
			 "no memory for an HTTP/2 session");
		return -ENOMEM;
	}
	n = request_headers(us->ch, us->path, false, us->deadline_ns, tmo, nv);
	n += h2_fields_nv(us->meta, nv + n, CH2_METADATA_MAX);
	sid = nghttp2_submit_request(cc->h2->io.ng, NULL, nv, n, &prd, &us->h);
	if (sid < 0) {
		snprintf(us->text, sizeof(us->text),
			 "Fail to start an HTTP/2 stream: %s",
			 nghttp2_strerror(sid));
		return -ENOMEM;
	}
	us->sid = sid;
	us->h.h2 = cc->h2;
	us->h.next = cc->h2->streams;
	if (us->h.next)
		us->h.next->prev = &us->h;
	cc->h2->streams = &us->h;
	return 0;
}

void chan_h2_start_pending(struct chan_conn *cc)
{
	struct channel_stream *us;

	while ((us = cc->pending)) {
		cc->pending = us->pnext;
		if (!cc->pending)
			cc->pending_tail = NULL;
		if (user_start(cc, us))
			user_end(us, ENOMEM, us->text);
	}
	if (cc->h2)
		ch2_flush(cc->h2);
	chan_stream_conn_done(cc);
}

static void pending_remove(struct channel_stream *us)
{
	struct chan_conn *cc = us->cc;
	struct channel_stream **pp, *prev = NULL;

	for (pp = &cc->pending; *pp; prev = *pp, pp = &(*pp)->pnext)
		if (*pp == us) {
			*pp = us->pnext;
			if (cc->pending_tail == us)
				cc->pending_tail = prev;
			return;
		}
}

static void user_deadline(struct loop_timer *t)
{
	struct channel_stream *us =
	    container_of(t, struct channel_stream, timer);
	char text[100];

	snprintf(text, sizeof(text), "Reached timeout=%dms @%s",
		 us->timeout_ms, us->ch->addr_text);
	chan_count(&us->ch->n_timeouts);
	if (!us->sid) {
		struct chan_conn *cc = us->cc;

		pending_remove(us);
		user_end(us, RPC_ERPCTIMEDOUT, text);
		chan_stream_conn_done(cc);
		return;
	}
	user_fail(us, RPC_ERPCTIMEDOUT, text);
}

/* Does the channel set the field itself (or may it not pass on)? */
static bool own_field(const struct channel *ch, const char *name, size_t n,
		      bool request)
{
	static const char *const names[] = {
	    "content-type", "te",	  "host",	     "connection",
	    "keep-alive",   "upgrade",	  "proxy-connection",
	    "content-length", "transfer-encoding",
	};
	static const char *const answer[] = {
	    "grpc-status", "grpc-message", "grpc-encoding",
	    "grpc-accept-encoding",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (n == strlen(names[i]) && !strncasecmp(name, names[i], n))
			return true;
	if (!request) {
		for (size_t i = 0; i < ARRAY_SIZE(answer); i++)
			if (n == strlen(answer[i]) &&
			    !strncasecmp(name, answer[i], n))
				return true;
		return false;
	}
	/* gRPC keeps grpc-* for itself; our credential is ours */
	return (n >= 5 && !strncasecmp(name, "grpc-", 5)) ||
	       (ch->opt.credential && n == 13 &&
		!strncasecmp(name, "authorization", 13));
}

/* The caller's metadata lines, less the channel's own, into us->meta. */
static int take_metadata(struct channel_stream *us, const char *md)
{
	const struct mem *mem = us->ch->opt.mem;
	int nf = 0;

	for (const char *p = md; p && *p && nf < CH2_METADATA_MAX;) {
		const char *colon = strstr(p, ": "), *eol = strstr(p, "\r\n");

		if (!colon || !eol || colon > eol)
			break;
		if (colon > p && !own_field(us->ch, p, (size_t)(colon - p), true)) {
			if (h2_put3(mem, &us->meta, &us->meta_len, &us->meta_cap,
				    p, (size_t)(eol - p), "", 0, "\r\n"))
				return -ENOMEM;
			nf++;
		}
		p = eol + 2;
	}
	return 0;
}

const char *channel_stream_headers(const struct channel_stream *s)
{
	return s->hdrs ? s->hdrs : "";
}

const char *channel_stream_trailers(const struct channel_stream *s)
{
	return s->trls ? s->trls : "";
}

struct channel_stream *channel_stream_open(struct channel *ch,
					   const char *service,
					   const char *method, int timeout_ms,
					   const char *metadata,
					   const struct channel_stream_ops *ops,
					   void *arg, int *err)
{
	struct channel_stream *us;
	struct chan_conn *cc;
	int64_t now;

	if (ch->opt.protocol != CHANNEL_PROTO_GRPC ||
	    !loop_on_thread(ch->loop) || !ops || !ops->on_close ||
	    strlen(service) > CH2_NAME_MAX || strlen(method) > CH2_NAME_MAX) {
		*err = -EINVAL;
		return NULL;
	}
	us = mem_zalloc(ch->opt.mem, sizeof(*us));
	if (!us) {
		*err = -ENOMEM;
		return NULL;
	}
	us->ch = ch;
	us->ops = ops;
	us->arg = arg;
	us->h.user = us;
	us->h.grpc_status = -1;
	iobuf_init(&us->h.out, ch->opt.pool);
	iobuf_init(&us->h.in, ch->opt.pool);
	loop_timer_init(&us->timer);
	snprintf(us->path, sizeof(us->path), "/%s/%s", service, method);
	if (take_metadata(us, metadata)) {
		stream_release(ch->opt.mem, &us->h);
		*err = -ENOMEM;
		return NULL;
	}
	chan_count(&ch->n_calls);
	if (timeout_ms == RPC_CALL_CHANNEL)
		timeout_ms = ch->opt.timeout_ms;
	now = loop_now(ch->loop);
	us->timeout_ms = timeout_ms;
	if (timeout_ms > 0) {
		us->deadline_ns = now + (int64_t)timeout_ms * CLOCK_NS_PER_MS;
		loop_timer_start(ch->loop, &us->timer, us->deadline_ns,
				 user_deadline);
	}
	cc = chan_stream_conn(ch, ch->opt.conn_type != CHANNEL_CONN_SINGLE,
			      err);
	if (!cc) {
		stream_release(ch->opt.mem, &us->h);
		return NULL;
	}
	us->cc = cc;
	if (cc->state != CC_READY) {
		if (cc->pending_tail)
			cc->pending_tail->pnext = us;
		else
			cc->pending = us;
		cc->pending_tail = us;
		return us;
	}
	*err = user_start(cc, us);
	if (*err) {
		stream_release(ch->opt.mem, &us->h);
		chan_stream_conn_done(cc);
		return NULL;
	}
	ch2_flush(cc->h2);
	return us;
}

/* The queue has news for nghttp2. */
static void user_kick(struct channel_stream *us)
{
	if (!us->sid)
		return; /* sent once it starts */
	if (us->deferred) {
		us->deferred = false;
		nghttp2_session_resume_data(us->h.h2->io.ng, us->sid);
	}
	ch2_flush(us->h.h2);
}

ssize_t channel_stream_write(struct channel_stream *s, struct iobuf *msg)
{
	size_t queued;
	int err;

	if (s->ending || s->closing || s->cancelled || s->local_code) {
		iobuf_reset(msg);
		return -EPIPE;
	}
	err = grpc_msg_put(&s->h.out, false, msg);
	if (err)
		return err;
	queued = iobuf_len(&s->h.out);
	if (queued > CHANNEL_STREAM_HIGH)
		s->want_writable = true;
	user_kick(s);
	return (ssize_t)queued;
}

void channel_stream_end(struct channel_stream *s)
{
	if (s->ending || s->closing || s->cancelled)
		return;
	s->ending = true;
	user_kick(s);
}

void channel_stream_pause(struct channel_stream *s, bool paused)
{
	struct chan_h2 *h2 = s->h.h2;

	if (s->closing || s->paused == paused)
		return;
	s->paused = paused;
	if (paused || !s->sid || !s->unconsumed)
		return;
	nghttp2_session_consume_stream(h2->io.ng, s->sid, s->unconsumed);
	s->unconsumed = 0;
	ch2_flush(h2);
}

void channel_stream_cancel(struct channel_stream *s)
{
	struct chan_conn *cc = s->cc;

	if (s->closing || s->cancelled)
		return;
	s->cancelled = true;
	if (!s->sid) {
		pending_remove(s);
		user_end(s, ECANCELED, NULL);
		chan_stream_conn_done(cc);
		return;
	}
	nghttp2_submit_rst_stream(s->h.h2->io.ng, NGHTTP2_FLAG_NONE, s->sid,
				  NGHTTP2_CANCEL);
	ch2_flush(s->h.h2);
}

const char *channel_stream_peer(const struct channel_stream *s)
{
	return s->ch->addr_text;
}

/* After a send: on_writable for the calls whose queue drained; true if
 * any ran. */
static bool user_writable(struct chan_h2 *h2)
{
	struct ch2_stream *st, *next;
	bool ran = false;

	for (st = h2->streams; st; st = next) {
		struct channel_stream *us = st->user;

		next = st->next;
		if (!us || !us->writable_due)
			continue;
		us->writable_due = false;
		if (us->ops->on_writable && !us->cancelled && !us->local_code) {
			h2->io.in_io = true;
			us->ops->on_writable(us, us->arg);
			h2->io.in_io = false;
			ran = true;
		}
	}
	return ran;
}

/* ---- nghttp2's callbacks -------------------------------------------- */

static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf,
			 size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct ch2_stream *st = src->ptr;
	size_t left = iobuf_len(&st->out);
	size_t n = left < length ? left : length;

	if (st->user && !n && !st->user->ending) {
		st->user->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (n == left && (!st->user || st->user->ending))
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int send_data(nghttp2_session *ng, nghttp2_frame *frame,
		     const uint8_t *framehd, size_t length,
		     nghttp2_data_source *src, void *user)
{
	struct chan_h2 *h2 = user;
	struct ch2_stream *st = src->ptr;
	struct channel_stream *us = st->user;

	if (h2_io_put_data(&h2->io, framehd, &st->out, length))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (us && us->want_writable && iobuf_len(&st->out) < CHANNEL_STREAM_LOW) {
		us->want_writable = false;
		us->writable_due = true;
	}
	return 0;
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
	if (st->user && namelen && name[0] != ':' &&
	    !own_field(st->user->ch, (const char *)name, namelen, false)) {
		struct channel_stream *us = st->user;
		bool trailer = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
		const struct mem *mem = us->ch->opt.mem;

		if (trailer ? h2_put3(mem, &us->trls, &us->trls_len,
				      &us->trls_cap, (const char *)name,
				      namelen, ": ", 2, "") ||
				  h2_put3(mem, &us->trls, &us->trls_len,
					  &us->trls_cap, (const char *)value,
					  valuelen, "", 0, "\r\n")
			    : h2_put3(mem, &us->hdrs, &us->hdrs_len,
				      &us->hdrs_cap, (const char *)name,
				      namelen, ": ", 2, "") ||
				  h2_put3(mem, &us->hdrs, &us->hdrs_len,
					  &us->hdrs_cap, (const char *)value,
					  valuelen, "", 0, "\r\n"))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
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

	/* the window: the connection's given back now (a paused call holds
	 * up no other stream), the stream's now or when it resumes */
	nghttp2_session_consume_connection(ng, len);
	if (st && st->user && st->user->paused)
		st->user->unconsumed += len;
	else
		nghttp2_session_consume_stream(ng, id, len);
	if (!st)
		return 0;
	if (st->user) {
		if (st->user->local_code || st->user->cancelled)
			return 0;
		if (iobuf_append(&st->in, data, len))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		user_messages(st->user);
		return 0;
	}
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
	if (st->user) {
		struct chan_conn *cc = st->user->cc;

		if (!st->user->cancelled) {
			user_closed(h2, st->user, code);
			return 0;
		}
		stream_free(h2, st);
		chan_stream_conn_done(cc); /* an own connection closes */
		return 0;
	}
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

	nghttp2_option *opt;

	pthread_once(&cbs_once, cbs_make);
	if (!h2 || !cbs || nghttp2_option_new(&opt)) {
		mem_free(mem, h2);
		return -ENOMEM;
	}
	/* flow control is ours: DATA is consumed as it is handed on */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	h2->cc = cc;
	iobuf_init(&h2->io.out, cc->ch->opt.pool);
	rv = nghttp2_session_client_new2(&h2->io.ng, cbs, h2, opt);
	nghttp2_option_del(opt);
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

static void ch2_flush_task(struct task *t)
{
	struct chan_conn *cc = container_of(t, struct chan_conn, flush_task);

	cc->flush_posted = false;
	if (cc->h2 && !conn_closing(&cc->conn))
		ch2_flush(cc->h2);
	conn_unref(&cc->conn);
}

static void ch2_flush(struct chan_h2 *h2)
{
	struct conn *c = &h2->cc->conn;
	int rv, rounds = 0;

	if (h2->io.in_io) {
		/* from a callback: sent when nghttp2 returns */
		h2->resend = true;
		return;
	}
	do {
		h2->resend = false;
		h2->io.in_io = true;
		rv = nghttp2_session_send(h2->io.ng);
		h2->io.in_io = false;
		if (rv) {
			ch2_fail(h2, "session", rv);
			return;
		}
		if (user_writable(h2))
			h2->resend = true;
	} while (h2->resend && ++rounds < CH2_FLUSH_ROUNDS);
	if (h2->resend && !h2->cc->flush_posted) {
		/* on_writable kept writing: the rest on the loop's next turn */
		h2->cc->flush_posted = true;
		conn_ref(c);
		task_init(&h2->cc->flush_task, ch2_flush_task);
		loop_defer(h2->cc->ch->loop, &h2->cc->flush_task);
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
	nghttp2_data_provider prd = {.read_callback = data_read};
	struct ch2_stream *st;
	struct iobuf plain;
	nghttp2_nv nv[10];
	bool gzip = c->compress_type == COMPRESS_GZIP;
	size_t n;
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
	if (!err)
		err = grpc_msg_put(&st->out, gzip, &plain);
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
	n = request_headers(ch, path, gzip, c->deadline_ns, tmo, nv);
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

bool chan_h2_busy(const struct chan_conn *cc)
{
	return cc->h2 && cc->h2->streams;
}

void chan_h2_close(struct chan_conn *cc, const char *why)
{
	struct chan_h2 *h2 = cc->h2;
	const struct mem *mem = cc->ch->opt.mem;
	struct channel_stream *us;
	struct ch2_stream *st;

	while ((us = cc->pending)) {
		cc->pending = us->pnext;
		user_end(us, RPC_EFAILEDSOCKET, why);
	}
	cc->pending_tail = NULL;
	if (!h2)
		return;
	while ((st = h2->streams)) {
		if (!st->user) {
			stream_free(h2, st);
			continue;
		}
		h2->streams = st->next;
		if (st->next)
			st->next->prev = NULL;
		user_end(st->user, RPC_EFAILEDSOCKET, why);
	}
	nghttp2_session_del(h2->io.ng);
	iobuf_destroy(&h2->io.out);
	mem_free(mem, h2);
	cc->h2 = NULL;
}
