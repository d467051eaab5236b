/*
 * echo_stream: example.EchoStreamService, echo's streaming methods over
 * gRPC (tests/grpc/echo_stream.proto; the messages are echo.proto's):
 *
 *   Split  (server streaming)  one EchoResponse per word of the request
 *   Join   (client streaming)  the requests' messages joined by spaces
 *   Chat   (bidirectional)     each request echoed as it comes; "fail"
 *                              ends the stream with ECHO_FAIL_CODE
 *   Flood  (server streaming)  "COUNT SIZE": COUNT answers of SIZE bytes,
 *                              written as flow control lets them (it
 *                              waits for on_writable past
 *                              SERVER_STREAM_HIGH): a slow reader holds
 *                              the server to that much
 *
 * The messages are read and written as wire bytes (field 1, the
 * message), without protobuf-c.
 */
#include "echo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fbuf.h"
#include "base/util.h"
#include "codec/pbwire.h"

#define ECHO_STREAM_SERVICE "example.EchoStreamService"
/* Flood's limits: answers and bytes of each. */
#define FLOOD_COUNT_MAX 1000000
#define FLOOD_SIZE_MAX	(4u << 20)

/* A request's message (field 1) into out (a C string); false: not an
 * EchoRequest. */
static bool request_text(const struct iobuf *msg, struct fbuf *out)
{
	size_t n = iobuf_len(msg);
	uint8_t *flat = malloc(n ? n : 1);
	const uint8_t *p;
	size_t len;
	struct pbw_rd r;
	bool ok = flat != NULL;

	fbuf_clear(out);
	if (!ok)
		return false;
	iobuf_copy_out(msg, 0, flat, n);
	pbw_rd_init(&r, flat, n);
	while (ok && pbw_rd_more(&r)) {
		uint32_t num, wt;

		if (pbw_get_key(&r, &num, &wt))
			ok = false;
		else if (num == 1 && wt == 2 && !pbw_get_len(&r, &p, &len))
			fbuf_append(out, p, len);
		else if (num == 1 || pbw_skip(&r, wt))
			ok = false;
	}
	free(flat);
	return ok && fbuf_cstr(out) != NULL;
}

/* Writes an EchoResponse{message: p[0..n)}: what server_stream_write
 * says. */
static ssize_t write_text(struct echo_service *e, struct server_stream *st,
			  const void *p, size_t n)
{
	struct iobuf msg;
	uint8_t head[11], *o = head;
	ssize_t r;

	iobuf_init(&msg, e->pool);
	*o++ = 0x0a;
	o = pbw_put_varint(o, n);
	if (iobuf_append(&msg, head, (size_t)(o - head)) ||
	    iobuf_append(&msg, p, n)) {
		iobuf_destroy(&msg);
		return -ENOMEM;
	}
	r = server_stream_write(st, &msg);
	iobuf_destroy(&msg);
	return r;
}

/* ---- Split ---------------------------------------------------------- */

static void split_message(struct server_stream *st, struct iobuf *msg,
			  void *arg)
{
	struct echo_service *e = arg;
	struct fbuf text;
	const char *p, *end;

	fbuf_init(&text, NULL, 0);
	if (!request_text(msg, &text)) {
		server_stream_finish(st, EINVAL, "not an EchoRequest");
		fbuf_destroy(&text);
		return;
	}
	p = (const char *)text.p;
	end = p + text.len;
	while (p < end) {
		const char *w = p;

		while (p < end && *p != ' ')
			p++;
		if (p > w && write_text(e, st, w, (size_t)(p - w)) < 0)
			break;
		while (p < end && *p == ' ')
			p++;
	}
	fbuf_destroy(&text);
}

static void finish_ok(struct server_stream *st, void *arg)
{
	server_stream_finish(st, 0, NULL);
}

static const struct server_stream_ops split_ops = {
    .on_message = split_message,
    .on_end = finish_ok,
};

/* ---- Join ----------------------------------------------------------- */

static void join_start(struct server_stream *st, void *arg)
{
	struct fbuf *all = malloc(sizeof(*all));

	if (!all) {
		server_stream_finish(st, ENOMEM, "no memory");
		return;
	}
	fbuf_init(all, NULL, FLOOD_SIZE_MAX);
	*server_stream_user(st) = all;
}

static void join_message(struct server_stream *st, struct iobuf *msg,
			 void *arg)
{
	struct fbuf *all = *server_stream_user(st), text;

	fbuf_init(&text, NULL, 0);
	if (!all || !request_text(msg, &text)) {
		server_stream_finish(st, EINVAL, "not an EchoRequest");
	} else {
		if (all->len)
			fbuf_putc(all, ' ');
		fbuf_append(all, text.p, text.len);
	}
	fbuf_destroy(&text);
}

static void join_end(struct server_stream *st, void *arg)
{
	struct fbuf *all = *server_stream_user(st);

	if (!all)
		return;
	write_text(arg, st, all->p, all->len);
	server_stream_finish(st, 0, NULL);
}

static void free_user(struct server_stream *st, int err, void *arg)
{
	struct fbuf *all = *server_stream_user(st);

	if (all) {
		fbuf_destroy(all);
		free(all);
	}
}

static const struct server_stream_ops join_ops = {
    .on_start = join_start,
    .on_message = join_message,
    .on_end = join_end,
    .on_close = free_user,
};

/* ---- Chat ----------------------------------------------------------- */

static void chat_message(struct server_stream *st, struct iobuf *msg,
			 void *arg)
{
	struct fbuf text;

	fbuf_init(&text, NULL, 0);
	if (!request_text(msg, &text))
		server_stream_finish(st, EINVAL, "not an EchoRequest");
	else if (!strcmp((const char *)text.p, ECHO_FAIL_MESSAGE))
		server_stream_finish(st, ECHO_FAIL_CODE, ECHO_FAIL_TEXT);
	else
		write_text(arg, st, text.p, text.len);
	fbuf_destroy(&text);
}

static const struct server_stream_ops chat_ops = {
    .on_message = chat_message,
    .on_end = finish_ok,
};

/* ---- Flood ---------------------------------------------------------- */

struct flood {
	long left;
	size_t size;
	char *chunk;
};

/* Writes until the queue is past SERVER_STREAM_HIGH (on_writable goes
 * on) or the count is done. */
static void flood_pump(struct server_stream *st, void *arg)
{
	struct flood *f = *server_stream_user(st);
	ssize_t queued = 0;

	while (f && f->left > 0 && queued <= (ssize_t)SERVER_STREAM_HIGH) {
		queued = write_text(arg, st, f->chunk, f->size);
		if (queued < 0)
			return;
		f->left--;
	}
	if (f && !f->left)
		server_stream_finish(st, 0, NULL);
}

static void flood_message(struct server_stream *st, struct iobuf *msg,
			  void *arg)
{
	struct flood *f;
	struct fbuf text;
	long count = 0, size = 0;

	if (*server_stream_user(st))
		return; /* one request starts it */
	fbuf_init(&text, NULL, 0);
	if (!request_text(msg, &text) ||
	    sscanf((const char *)text.p, "%ld %ld", &count, &size) != 2 ||
	    count < 1 || count > FLOOD_COUNT_MAX || size < 0 ||
	    size > (long)FLOOD_SIZE_MAX) {
		fbuf_destroy(&text);
		server_stream_finish(st, EINVAL,
				     "Flood wants \"COUNT SIZE\" (COUNT up "
				     "to 1000000, SIZE up to 4 MiB)");
		return;
	}
	fbuf_destroy(&text);
	f = calloc(1, sizeof(*f));
	if (f)
		f->chunk = malloc((size_t)size + 1);
	if (!f || !f->chunk) {
		free(f);
		server_stream_finish(st, ENOMEM, "no memory");
		return;
	}
	memset(f->chunk, 'f', (size_t)size);
	f->left = count;
	f->size = (size_t)size;
	*server_stream_user(st) = f;
	flood_pump(st, arg);
}

static void flood_close(struct server_stream *st, int err, void *arg)
{
	struct flood *f = *server_stream_user(st);

	if (f) {
		free(f->chunk);
		free(f);
	}
}

static const struct server_stream_ops flood_ops = {
    .on_message = flood_message,
    .on_writable = flood_pump,
    .on_close = flood_close,
};

int echo_stream_add(struct server *s, struct echo_service *e)
{
	static const struct {
		const char *method;
		const struct server_stream_ops *ops;
	} methods[] = {
	    {"Split", &split_ops},
	    {"Join", &join_ops},
	    {"Chat", &chat_ops},
	    {"Flood", &flood_ops},
	};
	int err = 0;

	e->pool = s->opt.pool;
	for (size_t i = 0; i < ARRAY_SIZE(methods) && !err; i++)
		err = server_add_stream_method(s, ECHO_STREAM_SERVICE,
					       methods[i].method,
					       methods[i].ops, e);
	return err;
}
