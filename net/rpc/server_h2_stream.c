/*
 * server_h2_stream: gRPC's streaming methods on an HTTP/2 stream
 * (server_add_stream_method(), server.h).
 *
 *   HEADERS      the path names a streaming method: admitted as a call
 *                (the server's limits, the auth hook), on_start
 *   DATA         cut into length-prefixed messages, each (gunzipped if
 *                flagged) to on_message as it is whole
 *   END_STREAM   on_end
 *   write        the message framed into the stream's queue; the first
 *                write submits HEADERS with a DATA provider that defers
 *                while the queue is empty and resumes on the next write
 *   finish       the status in the trailers after the queue (or a
 *                trailers-only answer if nothing was written)
 *   close        on_close, once, whatever ended the stream
 *
 * Flow control is HTTP/2's: the queue drains as the client's windows
 * let it, and on_writable tells a handler that waited past
 * SERVER_STREAM_HIGH that it fell below SERVER_STREAM_LOW.
 */
#include "server_h2_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/util.h"
#include "codec/compress.h"
#include "codec/grpc.h"
#include "codec/rpc_errno.h"

/* ---- the handler's side ---------------------------------------------- */

static void submit_headers(struct srv_h2 *h2, struct server_stream *st)
{
	nghttp2_data_provider prd = {.source.ptr = st,
				     .read_callback = h2__data_read};
	nghttp2_nv nv[3 + H2_HTTP_FIELDS_MAX] = {
	    NV(":status", "200", 3),
	    NV("content-type", st->ctype, strlen(st->ctype)),
	    NV("grpc-accept-encoding", "identity,gzip", 13),
	};
	size_t n = 3 + h2_fields_nv(st->answer_fields, nv + 3,
				    H2_HTTP_FIELDS_MAX);

	st->resp_started = true;
	if (nghttp2_submit_response(h2->io.ng, st->id, nv, n, &prd))
		nghttp2_submit_rst_stream(h2->io.ng, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
}

/* The queue has news for nghttp2: resume a deferred DATA provider. */
static void kick(struct srv_h2 *h2, struct server_stream *st)
{
	if (!st->resp_started)
		submit_headers(h2, st);
	else if (st->deferred) {
		st->deferred = false;
		nghttp2_session_resume_data(h2->io.ng, st->id);
	}
	h2__flush(h2);
}

ssize_t server_stream_write(struct server_stream *st, struct iobuf *msg)
{
	size_t queued;
	int err;

	if (!st->h2 || st->closed || st->finished) {
		iobuf_reset(msg);
		return -EPIPE;
	}
	err = grpc_msg_put(&st->resp, false, msg);
	if (err)
		return err;
	kick(st->h2, st);
	queued = iobuf_len(&st->resp);
	if (queued > SERVER_STREAM_HIGH)
		st->want_writable = true;
	return (ssize_t)queued;
}

void server_stream_finish(struct server_stream *st, int code,
			  const char *text)
{
	struct srv_h2 *h2 = st->h2;

	if (!h2 || st->finished)
		return;
	/* what the client still sends is read and dropped */
	server_stream_pause(st, false);
	st->finished = true;
	loop_timer_stop(h2->sc->conn.loop, &st->deadline);
	if (code)
		__atomic_fetch_add(&h2->sc->srv->n_errors, 1,
				   __ATOMIC_RELAXED);
	h2__status(h2->sc->srv, st, code ? grpc_status_from_rpc(code) : 0,
		   text);
	if (st->closed)
		return;
	if (!st->resp_started && code) {
		/* nothing written: a trailers-only answer */
		st->resp_started = true;
		h2__answer(h2, st);
		h2__flush(h2);
		return;
	}
	kick(h2, st);
}

void server_stream_pause(struct server_stream *st, bool paused)
{
	struct srv_h2 *h2 = st->h2;

	if (st->paused == paused)
		return;
	st->paused = paused;
	if (paused || !h2 || st->closed || !st->unconsumed)
		return;
	nghttp2_session_consume_stream(h2->io.ng, st->id, st->unconsumed);
	st->unconsumed = 0;
	h2__flush(h2);
}

struct loop *server_stream_loop(const struct server_stream *st)
{
	return st->h2 ? st->h2->sc->conn.loop : NULL;
}

void *server_stream_route(const struct server_stream *st)
{
	return st->route;
}

const char *server_stream_metadata(const struct server_stream *st)
{
	return st->fields ? st->fields : "";
}

/* *dst = a copy of src (NULL: kept as it is). */
static void fields_set(struct server_stream *st, char **dst, const char *src)
{
	size_t n;

	if (!src)
		return;
	n = strlen(src);
	mem_free(st->srv->opt.mem, *dst);
	*dst = n ? mem_alloc(st->srv->opt.mem, n + 1) : NULL;
	if (*dst)
		memcpy(*dst, src, n + 1);
}

void server_stream_set_metadata(struct server_stream *st, const char *headers,
				const char *trailers)
{
	if (!st->resp_started)
		fields_set(st, &st->answer_fields, headers);
	fields_set(st, &st->trailer_fields, trailers);
}

const char *server_stream_path(const struct server_stream *st)
{
	return st->path;
}

int64_t server_stream_timeout_ms(const struct server_stream *st)
{
	return st->timeout_ms;
}

void **server_stream_user(struct server_stream *st)
{
	return &st->user;
}

const char *server_stream_peer(const struct server_stream *st)
{
	return st->h2 ? st->h2->sc->conn.peer_text : "";
}

/* ---- the session's side (loop thread) -------------------------------- */

static void stream_deadline(struct loop_timer *t)
{
	struct server_stream *st =
	    container_of(t, struct server_stream, deadline);

	server_stream_finish(st, RPC_ERPCTIMEDOUT,
			     "the stream's grpc-timeout passed");
}

/* A request for no method of ours that the router sends to a stream
 * (server_set_route_stream()): st's ops set, true. */
static bool route_stream(struct server *s, struct server_stream *st,
			 const char *svc, const char *method)
{
	bool is_short;
	void *route;

	if (!s->route || !s->route_stream || !strcmp(svc, H2_HEALTH_SERVICE) ||
	    server__find_service(s, svc, strlen(svc), &is_short))
		return false;
	route = s->route(s->route_arg, svc, method);
	if (!route)
		return false;
	st->ops = s->route_stream(s->route_arg, route, svc, method,
				  &st->ops_arg);
	if (!st->ops) {
		server__route_release(s, route);
		return false;
	}
	st->route = route;
	return true;
}

bool h2s__start(struct srv_h2 *h2, struct server_stream *st)
{
	struct server *s = h2->sc->srv;
	char svc[2 * H2_NAME_MAX + 3], method[H2_NAME_MAX + 1], why[320];
	int i, code;

	if (!st->grpc || !h2__split_path(st->path, svc, method))
		return false;
	for (i = 0; i < s->nstream_methods; i++)
		if (!strcmp(s->stream_methods[i].service, svc) &&
		    !strcmp(s->stream_methods[i].method, method))
			break;
	if (i < s->nstream_methods) {
		st->ops = s->stream_methods[i].ops;
		st->ops_arg = s->stream_methods[i].arg;
	} else if (!route_stream(s, st, svc, method)) {
		return false;
	}
	if (!st->post || st->bad_encoding) {
		server_stream_finish(st, RPC_ENOMETHOD,
				     !st->post ? "gRPC calls are POST requests"
					       : "grpc-encoding not supported: "
						 "identity and gzip are");
		return true;
	}
	code = server__admit(s, why, sizeof(why));
	if (code) {
		server__refused(s);
		server_stream_finish(st, code, why);
		return true;
	}
	st->counted = true;
	if (h2__authenticate(h2, st, why, sizeof(why))) {
		server_stream_finish(st, RPC_ERPCAUTH, why);
		return true;
	}
	if (st->timeout_ms > 0)
		loop_timer_start(h2->sc->conn.loop, &st->deadline,
				 loop_now(h2->sc->conn.loop) +
				     st->timeout_ms * CLOCK_NS_PER_MS,
				 stream_deadline);
	st->started = true;
	if (st->ops->on_start)
		st->ops->on_start(st, st->ops_arg);
	return true;
}

void h2s__data(struct srv_h2 *h2, struct server_stream *st)
{
	struct server *s = h2->sc->srv;
	struct grpc_msg m;
	struct iobuf msg, plain;
	int r;

	while (!st->finished && !st->closed) {
		r = grpc_msg_peek(&st->body, 0, s->opt.max_body_size, &m);
		if (r == 0)
			return;
		if (r < 0 || (m.compressed && !st->gzip_in)) {
			server_stream_finish(
			    st, r == -EMSGSIZE ? RPC_ELIMIT : RPC_EREQUEST,
			    r == -EMSGSIZE ? "a message over max_body_size"
			    : r < 0	   ? "a message with a bad flag"
				    : "a compressed message without "
				      "grpc-encoding");
			break;
		}
		iobuf_init(&msg, s->opt.pool);
		iobuf_drop_front(&st->body, GRPC_PREFIX_LEN);
		iobuf_cut(&st->body, &msg, m.len);
		if (m.compressed) {
			iobuf_init(&plain, s->opt.pool);
			r = compress_decode(COMPRESS_GZIP, &msg, &plain,
					    s->opt.max_body_size);
			iobuf_destroy(&msg);
			msg = plain;
			if (r) {
				iobuf_destroy(&msg);
				server_stream_finish(st, RPC_EREQUEST,
						     "a message does not "
						     "un-gzip");
				break;
			}
		}
		if (st->ops->on_message && st->started)
			st->ops->on_message(st, &msg, st->ops_arg);
		iobuf_destroy(&msg);
	}
	iobuf_reset(&st->body); /* finished: the rest is not read */
}

void h2s__end(struct srv_h2 *h2, struct server_stream *st)
{
	if (!iobuf_empty(&st->body) && !st->finished)
		server_stream_finish(st, RPC_EREQUEST,
				     "the stream ended inside a message");
	if (!st->finished && st->ops->on_end)
		st->ops->on_end(st, st->ops_arg);
}

void h2s__closed(struct srv_h2 *h2, struct server_stream *st, int err)
{
	struct server *s = h2->sc->srv;

	loop_timer_stop(h2->sc->conn.loop, &st->deadline);
	st->closed = true; /* writes from on_close fail */
	if (st->started && st->ops->on_close)
		st->ops->on_close(st, err, st->ops_arg);
	if (st->counted) {
		__atomic_fetch_add(&s->n_calls, 1, __ATOMIC_RELAXED);
		server__uncount_call(s);
	}
	server__route_release(s, st->route);
	h2__stream_free(s, st);
}

bool h2s__writable(struct srv_h2 *h2)
{
	struct server_stream *st, *next;
	bool ran = false;

	for (st = h2->streams; st; st = next) {
		next = st->next;
		if (!st->writable_due)
			continue;
		st->writable_due = false;
		if (st->ops && st->ops->on_writable && !st->finished &&
		    !st->closed) {
			/* its writes are sent by h2__flush's next round */
			h2->io.in_io = true;
			st->ops->on_writable(st, st->ops_arg);
			h2->io.in_io = false;
			ran = true;
		}
	}
	return ran;
}
