/*
 * test_server_h2: HTTP/2 and gRPC on the server's port (net/rpc/
 * server_h2.c), in-process under the sanitizers, over raw sockets: the
 * client's frames are written here byte by byte (HPACK literals), the
 * server's read back with nghttp2's HPACK decoder.  One case a rule,
 * each naming the section of RFC 9113 (or gRPC's PROTOCOL-HTTP2.md) it
 * checks, in the manner of h2spec; then the gRPC answers, the server's
 * own deadline, and the floods (RFC 9113 10.5) that must end in GOAWAY
 * with one log line and leave other connections alone.  Last, the
 * channel's protocol grpc (net/rpc/channel_h2.c) against this server:
 * typed and raw calls, many at once on one connection, the server's
 * errors, a deadline, gzip.
 */
#include "server_test.h"

#include <nghttp2/nghttp2.h>

#include "base/util.h"
#include "codec/grpc.h"
#include "codec/pbd.h"
#include "rpc/channel.h"

enum {
	F_DATA = 0, F_HEADERS = 1, F_PRIORITY = 2, F_RST = 3, F_SETTINGS = 4,
	F_PING = 6, F_GOAWAY = 7, F_WINDOW = 8,
};
#define FL_END_STREAM  0x1
#define FL_ACK	       0x1
#define FL_END_HEADERS 0x4
/* Room for one frame read back (our max frame size and its header). */
#define H2_FRAME_ROOM (16384 + 9)

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2f {
	uint32_t len, stream;
	uint8_t type, flags;
	uint8_t p[H2_FRAME_ROOM];
};

struct h2c {
	struct cli c;
	nghttp2_hd_inflater *inf;
	bool soft; /* sends may fail: the server hangs up mid-flood */
	/* the server's SETTINGS */
	uint32_t max_streams, window, max_frame, max_header_list;
};

/* ---- writing -------------------------------------------------------- */

static void put_frame(struct h2c *h, uint8_t type, uint8_t flags,
		      uint32_t stream, const void *p, size_t n)
{
	uint8_t hd[9] = {(uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n,
			 type, flags, (uint8_t)(stream >> 24),
			 (uint8_t)(stream >> 16), (uint8_t)(stream >> 8),
			 (uint8_t)stream};

	int err = cli_send(&h->c, hd, 9);

	if (!err && n)
		err = cli_send(&h->c, p, n);
	if (!h->soft)
		assert_int_equal(err, 0);
}

/* An HPACK literal without indexing, new name (RFC 7541 6.2.2). */
static size_t hp_lit(uint8_t *o, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	assert_true(nl < 127 && vl < 127);
	o[0] = 0;
	o[1] = (uint8_t)nl;
	memcpy(o + 2, name, nl);
	o[2 + nl] = (uint8_t)vl;
	memcpy(o + 3 + nl, value, vl);
	return 3 + nl + vl;
}

/* A request's HEADERS: POST `path`, content-type `ctype`, and extra
 * name/value pairs (NULL-ended). */
static void put_request(struct h2c *h, uint32_t stream, const char *path,
			const char *ctype, bool end, const char *const *extra)
{
	uint8_t b[2048];
	size_t n = 0;

	n += hp_lit(b + n, ":method", "POST");
	n += hp_lit(b + n, ":scheme", "http");
	n += hp_lit(b + n, ":path", path);
	n += hp_lit(b + n, ":authority", "test");
	if (ctype)
		n += hp_lit(b + n, "content-type", ctype);
	n += hp_lit(b + n, "te", "trailers");
	for (; extra && extra[0]; extra += 2)
		n += hp_lit(b + n, extra[0], extra[1]);
	put_frame(h, F_HEADERS, FL_END_HEADERS | (end ? FL_END_STREAM : 0),
		  stream, b, n);
}

/* One gRPC message as the stream's DATA, ending it. */
static void put_grpc(struct h2c *h, uint32_t stream, const void *msg,
		     size_t n)
{
	uint8_t b[4096];

	assert_true(n + GRPC_PREFIX_LEN <= sizeof(b));
	grpc_msg_prefix(b, false, (uint32_t)n);
	memcpy(b + GRPC_PREFIX_LEN, msg, n);
	put_frame(h, F_DATA, FL_END_STREAM, stream, b, n + GRPC_PREFIX_LEN);
}

/* An EchoRequest{message} */
static size_t echo_req(uint8_t *b, const char *message)
{
	size_t n = strlen(message);

	assert_true(n < 127);
	b[0] = 0x0a;
	b[1] = (uint8_t)n;
	memcpy(b + 2, message, n);
	return n + 2;
}

static void put_settings(struct h2c *h, const uint16_t *ids,
			 const uint32_t *vals, int n)
{
	uint8_t b[64];

	for (int i = 0; i < n; i++) {
		b[6 * i] = (uint8_t)(ids[i] >> 8);
		b[6 * i + 1] = (uint8_t)ids[i];
		b[6 * i + 2] = (uint8_t)(vals[i] >> 24);
		b[6 * i + 3] = (uint8_t)(vals[i] >> 16);
		b[6 * i + 4] = (uint8_t)(vals[i] >> 8);
		b[6 * i + 5] = (uint8_t)vals[i];
	}
	put_frame(h, F_SETTINGS, 0, 0, b, (size_t)n * 6);
}

/* ---- reading -------------------------------------------------------- */

/* The next frame: 1, or 0 at the close (or a timeout: -EAGAIN). */
static int get_frame(struct h2c *h, struct h2f *f)
{
	uint8_t hd[9];

	for (;;) {
		if (iobuf_len(&h->c.in) >= 9) {
			iobuf_copy_out(&h->c.in, 0, hd, 9);
			f->len = (uint32_t)hd[0] << 16 | hd[1] << 8 | hd[2];
			assert_true(f->len <= H2_FRAME_ROOM - 9);
			if (iobuf_len(&h->c.in) >= 9 + f->len) {
				f->type = hd[3];
				f->flags = hd[4];
				f->stream = ((uint32_t)hd[5] << 24 |
					     hd[6] << 16 | hd[7] << 8 | hd[8]) &
					    0x7fffffff;
				iobuf_copy_out(&h->c.in, 9, f->p, f->len);
				iobuf_drop_front(&h->c.in, 9 + f->len);
				return 1;
			}
		}
		ssize_t r = cli_fill(&h->c);

		if (r <= 0)
			return r == 0 || r == -ECONNRESET ? 0 : (int)r;
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

/* Frames until one of `type` (on `stream`, or any if stream is -1);
 * SETTINGS from the server are acknowledged on the way.  1 or 0 as
 * get_frame(). */
static int wait_frame(struct h2c *h, struct h2f *f, uint8_t type,
		      int64_t stream)
{
	int r;

	while ((r = get_frame(h, f)) == 1) {
		if (f->type == F_SETTINGS && !(f->flags & FL_ACK) &&
		    type != F_SETTINGS)
			put_frame(h, F_SETTINGS, FL_ACK, 0, NULL, 0);
		if (f->type == type && (stream < 0 || f->stream == stream))
			return 1;
	}
	return r;
}

/* The GOAWAY that ends a connection: its error code (-1: closed without
 * one). */
static int goaway_code(struct h2c *h)
{
	struct h2f *f = malloc(sizeof(*f));
	int code = -1;

	assert_non_null(f);
	if (wait_frame(h, f, F_GOAWAY, 0) == 1)
		code = (int)be32(f->p + 4);
	free(f);
	return code;
}

/* The decoded fields of a HEADERS frame, "name: value\n" each. */
static void fields(struct h2c *h, const struct h2f *f, char *out, size_t size)
{
	const uint8_t *p = f->p;
	size_t left = f->len, o = 0;

	out[0] = '\0';
	for (;;) {
		nghttp2_nv nv;
		int flags = 0;
		ssize_t n = nghttp2_hd_inflate_hd2(h->inf, &nv, &flags, p, left,
						   1);

		assert_true(n >= 0);
		p += n;
		left -= (size_t)n;
		if (flags & NGHTTP2_HD_INFLATE_EMIT) {
			int w = snprintf(out + o, size - o, "%.*s: %.*s\n",
					 (int)nv.namelen, nv.name,
					 (int)nv.valuelen, nv.value);
			if (w > 0 && o + (size_t)w < size)
				o += (size_t)w;
		}
		if (flags & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(h->inf);
			break;
		}
		if (!n && !left)
			break;
	}
}

/* Opens a connection: the preface and `n` settings, the server's
 * SETTINGS read (and acknowledged), our SETTINGS' ack awaited. */
static void h2_open_with(struct h2c *h, struct fx *fx, const uint16_t *ids,
			 const uint32_t *vals, int n)
{
	struct h2f *f = malloc(sizeof(*f));
	bool theirs = false, ours = false;

	assert_non_null(f);
	memset(h, 0, sizeof(*h));
	cli_open(&h->c, fx);
	assert_int_equal(nghttp2_hd_inflate_new(&h->inf), 0);
	assert_int_equal(cli_send(&h->c, PREFACE, sizeof(PREFACE) - 1), 0);
	put_settings(h, ids, vals, n);
	while (!(theirs && ours)) {
		assert_int_equal(get_frame(h, f), 1);
		if (f->type != F_SETTINGS)
			continue;
		if (f->flags & FL_ACK) {
			ours = true;
			continue;
		}
		theirs = true;
		for (uint32_t i = 0; i + 6 <= f->len; i += 6) {
			uint16_t id = (uint16_t)(f->p[i] << 8 | f->p[i + 1]);
			uint32_t v = be32(f->p + i + 2);

			if (id == 3)
				h->max_streams = v;
			else if (id == 4)
				h->window = v;
			else if (id == 5)
				h->max_frame = v;
			else if (id == 6)
				h->max_header_list = v;
		}
		put_frame(h, F_SETTINGS, FL_ACK, 0, NULL, 0);
	}
	free(f);
}

static void h2_open(struct h2c *h, struct fx *fx)
{
	h2_open_with(h, fx, NULL, NULL, 0);
}

static void h2_close(struct h2c *h)
{
	nghttp2_hd_inflate_del(h->inf);
	cli_close(&h->c);
}

/* A unary echo on `stream`: the answer's message, or the grpc-status
 * (and its fields in `hdrs`). */
static int grpc_call(struct h2c *h, uint32_t stream, const char *path,
		     const char *msg, char *hdrs, size_t hsize, char *answer)
{
	struct h2f *f = malloc(sizeof(*f));
	uint8_t req[256];
	char *st;
	int status = -1;

	assert_non_null(f);
	put_request(h, stream, path, "application/grpc", false, NULL);
	put_grpc(h, stream, req, echo_req(req, msg));
	answer[0] = '\0';
	hdrs[0] = '\0';
	while (get_frame(h, f) == 1) {
		if (f->stream != stream)
			continue;
		if (f->type == F_HEADERS) {
			size_t o = strlen(hdrs);

			fields(h, f, hdrs + o, hsize - o);
		} else if (f->type == F_DATA && f->len > GRPC_PREFIX_LEN + 2) {
			memcpy(answer, f->p + GRPC_PREFIX_LEN + 2,
			       f->p[GRPC_PREFIX_LEN + 1]);
			answer[f->p[GRPC_PREFIX_LEN + 1]] = '\0';
		} else if (f->type == F_RST) {
			break;
		}
		if (f->flags & FL_END_STREAM)
			break;
	}
	st = strstr(hdrs, "grpc-status: ");
	if (st)
		status = atoi(st + 13);
	free(f);
	return status;
}

static struct fx *up(int sleep_ms)
{
	struct fx_cfg cfg = {.sleep_ms = sleep_ms, .on_workers = true};

	return fx_up(&cfg);
}

/* ---- RFC 9113 -------------------------------------------------------- */

/* 3.4: the preface is followed by the server's SETTINGS (6.5: ours are
 * acknowledged); 6.5.2: the limits we advertise. */
static void test_preface_settings(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;

	h2_open(&h, fx);
	assert_int_equal(h.max_streams, 128);
	assert_int_equal(h.window, 1u << 20);
	assert_int_equal(h.max_frame, 16384);
	assert_int_equal(h.max_header_list, 16384);
	h2_close(&h);
	fx_down(fx);
}

/* 3.4: a preface not followed by SETTINGS is a connection error
 * (PROTOCOL_ERROR), logged once. */
static void test_preface_then_not_settings(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	uint8_t ping[8] = {0};

	memset(&h, 0, sizeof(h));
	cli_open(&h.c, fx);
	assert_int_equal(nghttp2_hd_inflate_new(&h.inf), 0);
	assert_int_equal(cli_send(&h.c, PREFACE, sizeof(PREFACE) - 1), 0);
	put_frame(&h, F_PING, 0, 0, ping, 8);
	assert_int_equal(goaway_code(&h), NGHTTP2_PROTOCOL_ERROR);
	h2_close(&h);
	fx_down(fx);
	assert_true(log_has(fx, "HTTP/2"));
}

/* 6.5: a SETTINGS frame whose length is not a multiple of 6 is a
 * FRAME_SIZE_ERROR. */
static void test_settings_bad_length(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	uint8_t b[5] = {0, 3, 0, 0, 1};

	h2_open(&h, fx);
	put_frame(&h, F_SETTINGS, 0, 0, b, sizeof(b));
	assert_int_equal(goaway_code(&h), NGHTTP2_FRAME_SIZE_ERROR);
	h2_close(&h);
	fx_down(fx);
}

/* 6.7: a PING is answered by a PING with ACK and the same payload. */
static void test_ping_ack(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	struct h2c h;
	uint8_t p[8] = {1, 2, 3, 4, 5, 6, 7, 8};

	h2_open(&h, fx);
	put_frame(&h, F_PING, 0, 0, p, 8);
	assert_int_equal(wait_frame(&h, f, F_PING, 0), 1);
	assert_true(f->flags & FL_ACK);
	assert_memory_equal(f->p, p, 8);
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* 6.9: a WINDOW_UPDATE of 0 on the connection is a PROTOCOL_ERROR. */
static void test_window_update_zero(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	uint8_t z[4] = {0};

	h2_open(&h, fx);
	put_frame(&h, F_WINDOW, 0, 0, z, 4);
	assert_int_equal(goaway_code(&h), NGHTTP2_PROTOCOL_ERROR);
	h2_close(&h);
	fx_down(fx);
}

/* 5.1: DATA on an idle stream is a PROTOCOL_ERROR; 5.1.1: a client's
 * stream id is odd. */
static void test_stream_states(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	uint8_t d[5] = {0};

	h2_open(&h, fx);
	put_frame(&h, F_DATA, FL_END_STREAM, 7, d, sizeof(d));
	assert_int_equal(goaway_code(&h), NGHTTP2_PROTOCOL_ERROR);
	h2_close(&h);

	h2_open(&h, fx);
	put_request(&h, 2, "/example.EchoService/Echo", "application/grpc",
		    true, NULL);
	assert_int_equal(goaway_code(&h), NGHTTP2_PROTOCOL_ERROR);
	h2_close(&h);
	fx_down(fx);
}

/* 4.2: a frame over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR. */
static void test_frame_too_big(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	uint8_t *b = calloc(1, 20000);

	assert_non_null(b);
	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoService/Echo", "application/grpc",
		    false, NULL);
	put_frame(&h, F_DATA, 0, 1, b, 20000);
	assert_int_equal(goaway_code(&h), NGHTTP2_FRAME_SIZE_ERROR);
	free(b);
	h2_close(&h);
	fx_down(fx);
}

/* 6.9.1: the server sends no more DATA than the client's window
 * (SETTINGS_INITIAL_WINDOW_SIZE 8), and the rest after a WINDOW_UPDATE. */
static void test_flow_control(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	const uint16_t id = 4;
	const uint32_t val = 8;
	uint8_t req[64], inc[4] = {0, 0, 0, 100}, ping[8] = {9};
	size_t got = 0;
	struct h2c h;

	assert_non_null(f);
	h2_open_with(&h, fx, &id, &val, 1);
	put_request(&h, 1, "/example.EchoService/Echo", "application/grpc",
		    false, NULL);
	put_grpc(&h, 1, req, echo_req(req, "sixteen bytes ok"));
	assert_int_equal(wait_frame(&h, f, F_DATA, 1), 1);
	got = f->len;
	assert_int_equal(got, 8);
	/* nothing more comes before the window opens: the PING's ack is
	 * the next frame */
	put_frame(&h, F_PING, 0, 0, ping, 8);
	assert_int_equal(get_frame(&h, f), 1);
	assert_int_equal(f->type, F_PING);
	put_frame(&h, F_WINDOW, 0, 1, inc, 4);
	assert_int_equal(wait_frame(&h, f, F_DATA, 1), 1);
	got += f->len;
	assert_int_equal(got, GRPC_PREFIX_LEN + 18);
	assert_int_equal(wait_frame(&h, f, F_HEADERS, 1), 1);
	assert_true(f->flags & FL_END_STREAM); /* the trailers */
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* 5.4.2 / 6.4: a stream reset while its call runs: the connection goes
 * on, the next stream is answered. */
static void test_rst_during_call(void **state)
{
	struct fx *fx = up(300);
	struct h2c h;
	uint8_t req[64], cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
	char hdrs[1024], answer[128];

	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoService/Echo", "application/grpc",
		    false, NULL);
	put_grpc(&h, 1, req, echo_req(req, "gone"));
	put_frame(&h, F_RST, 0, 1, cancel, 4);
	assert_int_equal(grpc_call(&h, 3, "/example.EchoService/Echo", "next",
				   hdrs, sizeof(hdrs), answer),
			 0);
	assert_string_equal(answer, "next");
	h2_close(&h);
	fx_down(fx);
}

/* 5.1.2: past SETTINGS_MAX_CONCURRENT_STREAMS.  RFC 9113 asks for a
 * stream error; nghttp2 makes it a connection error (GOAWAY
 * PROTOCOL_ERROR), which h2spec accepts too.  128 streams at once are
 * served. */
static void test_max_streams(void **state)
{
	struct fx *fx = up(200);
	struct h2f *f = malloc(sizeof(*f));
	struct h2c h;
	uint8_t req[64];
	int answered = 0;

	assert_non_null(f);
	h2_open(&h, fx);
	for (uint32_t i = 0; i < 128; i++) {
		put_request(&h, 1 + 2 * i, "/example.EchoService/Echo",
			    "application/grpc", false, NULL);
		put_grpc(&h, 1 + 2 * i, req, echo_req(req, "m"));
	}
	while (answered < 128 && get_frame(&h, f) == 1) {
		char hd[512];

		assert_int_not_equal(f->type, F_RST);
		assert_int_not_equal(f->type, F_GOAWAY);
		if (f->type != F_HEADERS)
			continue;
		fields(&h, f, hd, sizeof(hd));
		if (f->flags & FL_END_STREAM) {
			assert_non_null(strstr(hd, "grpc-status: 0\n"));
			answered++;
		}
	}
	assert_int_equal(answered, 128);
	/* 129 at once */
	for (uint32_t i = 128; i < 257; i++)
		put_request(&h, 1 + 2 * i, "/example.EchoService/Echo",
			    "application/grpc", false, NULL);
	assert_int_equal(goaway_code(&h), NGHTTP2_PROTOCOL_ERROR);
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* 6.8: a stopping server says GOAWAY (NO_ERROR) and answers the stream
 * in flight. */
static void test_goaway_at_stop(void **state)
{
	struct fx *fx = up(300);
	struct h2f *f = malloc(sizeof(*f));
	struct h2c h;
	uint8_t req[64];
	bool goaway = false, answered = false;

	assert_non_null(f);
	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoService/Echo", "application/grpc",
		    false, NULL);
	put_grpc(&h, 1, req, echo_req(req, "last"));
	usleep(50000);
	/* waits for the call, then closes (the client's buffer still holds
	 * the pool's blocks: fx_down comes after) */
	assert_int_equal(server_stop(&fx->srv, 5000), 0);
	while (get_frame(&h, f) == 1) {
		if (f->type == F_GOAWAY) {
			goaway = true;
			assert_int_equal(be32(f->p + 4), NGHTTP2_NO_ERROR);
		}
		if (f->type == F_HEADERS && f->stream == 1 &&
		    (f->flags & FL_END_STREAM)) {
			char hd[512];

			fields(&h, f, hd, sizeof(hd));
			answered = strstr(hd, "grpc-status: 0") != NULL;
		}
	}
	assert_true(goaway);
	assert_true(answered);
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* ---- gRPC ----------------------------------------------------------- */

/* A unary call: HEADERS (:status 200, content-type), one message, the
 * trailers with grpc-status 0; an unknown method: a trailers-only
 * UNIMPLEMENTED with brpc's text. */
static void test_grpc_unary(void **state)
{
	struct fx *fx = up(0);
	struct h2c h;
	char hdrs[1024], answer[128];

	h2_open(&h, fx);
	assert_int_equal(grpc_call(&h, 1, "/example.EchoService/Echo", "hello",
				   hdrs, sizeof(hdrs), answer),
			 0);
	assert_string_equal(answer, "hello");
	assert_non_null(strstr(hdrs, ":status: 200\n"));
	assert_non_null(strstr(hdrs, "content-type: application/grpc\n"));
	assert_int_equal(grpc_call(&h, 3, "/example.EchoService/Nope", "x",
				   hdrs, sizeof(hdrs), answer),
			 GRPC_UNIMPLEMENTED);
	assert_non_null(strstr(
	    hdrs, "grpc-message: Fail to find method=example.EchoService/Nope"));
	h2_close(&h);
	fx_down(fx);
}

/* PROTOCOL-HTTP2.md: grpc-timeout is the call's deadline; the server
 * answers DEADLINE_EXCEEDED itself when its handler is late. */
static void test_grpc_server_deadline(void **state)
{
	struct fx *fx = up(1000);
	struct h2f *f = malloc(sizeof(*f));
	static const char *const tmo[] = {"grpc-timeout", "100m", NULL};
	struct h2c h;
	uint8_t req[64];
	char hd[512] = "";
	int64_t t0 = now_ms(), took;

	assert_non_null(f);
	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoService/Echo", "application/grpc",
		    false, tmo);
	put_grpc(&h, 1, req, echo_req(req, "late"));
	assert_int_equal(wait_frame(&h, f, F_HEADERS, 1), 1);
	took = now_ms() - t0;
	fields(&h, f, hd, sizeof(hd));
	assert_non_null(strstr(hd, "grpc-status: 4\n"));
	assert_true(took >= 90 && took < 900);
	free(f);
	h2_close(&h);
	fx_down(fx); /* the late handler's answer is dropped, nothing leaks */
}

/* A GET of `path` on `stream`, ending it. */
static void put_get(struct h2c *h, uint32_t stream, const char *path)
{
	uint8_t b[512];
	size_t n = 0;

	n += hp_lit(b + n, ":method", "GET");
	n += hp_lit(b + n, ":scheme", "http");
	n += hp_lit(b + n, ":path", path);
	n += hp_lit(b + n, ":authority", "test");
	put_frame(h, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, stream, b, n);
}

/* An HTTP answer on `stream`: its fields into hd, its body into body. */
static void http_answer(struct h2c *h, struct h2f *f, uint32_t stream,
			char *hd, size_t hsize, char *body, size_t bsize)
{
	size_t bn = 0;

	assert_int_equal(wait_frame(h, f, F_HEADERS, stream), 1);
	fields(h, f, hd, hsize);
	body[0] = '\0';
	while (!(f->flags & FL_END_STREAM)) {
		assert_int_equal(wait_frame(h, f, F_DATA, stream), 1);
		assert_true(bn + f->len < bsize);
		memcpy(body + bn, f->p, f->len);
		bn += f->len;
		body[bn] = '\0';
	}
}

/* Not gRPC over HTTP/2: served as over HTTP/1.1, the JSON mapping and
 * the pages, brpc's error answers with x-bd-error-code (RFC 9113 8.3:
 * the request's pseudo-fields; 8.2.2: no connection-specific field in
 * the answer). */
static void test_http_over_h2(void **state)
{
	struct h2f *f = malloc(sizeof(*f));
	static const char json[] = "{\"message\":\"h2 json\"}";
	struct fx_cfg cfg = {.on_workers = true, .max_body_size = 1000};
	struct pbd_pool pool;
	uint8_t big[1200];
	struct h2c h;
	struct fx *fx;
	char hd[512], body[512];

	pbd_pool_init(&pool, NULL);
	assert_int_equal(pbd_pool_add_set(&pool, echo_proto_desc,
					  echo_proto_desc_len, "echo", hd,
					  sizeof(hd)),
			 0);
	cfg.descriptors = &pool;
	fx = fx_up(&cfg);
	assert_non_null(f);
	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoService/Echo", "application/json",
		    false, NULL);
	put_frame(&h, F_DATA, FL_END_STREAM, 1, json, sizeof(json) - 1);
	http_answer(&h, f, 1, hd, sizeof(hd), body, sizeof(body));
	assert_non_null(strstr(hd, ":status: 200\n"));
	assert_non_null(strstr(hd, "content-type: application/json\n"));
	assert_string_equal(body, json);
	put_get(&h, 3, "/health");
	http_answer(&h, f, 3, hd, sizeof(hd), body, sizeof(body));
	assert_non_null(strstr(hd, ":status: 200\n"));
	assert_null(strstr(hd, "connection"));
	assert_string_equal(body, "OK");
	put_request(&h, 5, "/example.EchoService/Nope", "application/json",
		    false, NULL);
	put_frame(&h, F_DATA, FL_END_STREAM, 5, json, sizeof(json) - 1);
	http_answer(&h, f, 5, hd, sizeof(hd), body, sizeof(body));
	assert_non_null(strstr(hd, ":status: 404\n"));
	assert_non_null(strstr(hd, "x-bd-error-code: 1002\n"));
	assert_non_null(strstr(body, "Fail to find method"));
	/* a body over max_body_size: 413, as over HTTP/1.1 */
	memset(big, ' ', sizeof(big));
	put_request(&h, 7, "/example.EchoService/Echo", "application/json",
		    false, NULL);
	put_frame(&h, F_DATA, FL_END_STREAM, 7, big, sizeof(big));
	http_answer(&h, f, 7, hd, sizeof(hd), body, sizeof(body));
	assert_non_null(strstr(hd, ":status: 413\n"));
	free(f);
	h2_close(&h);
	fx_down(fx);
	pbd_pool_destroy(&pool);
}

/* RFC 7540 3.2 (deprecated by RFC 9113 3.1, but curl --http2 sends it):
 * an HTTP/1.1 request with Upgrade: h2c gets 101, its answer comes as
 * stream 1, and the connection goes on as HTTP/2.  With a body the
 * upgrade is declined and the request served over HTTP/1.1. */
static void test_upgrade_h2c(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	static const char ask[] =
	    "GET /health HTTP/1.1\r\nHost: t\r\n"
	    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
	    "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
	static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n";
	struct h2c h;
	char hd[512], body[512], head[256];
	int64_t end = now_ms() + 3000;
	ssize_t at;

	assert_non_null(f);
	memset(&h, 0, sizeof(h));
	cli_open(&h.c, fx);
	assert_int_equal(nghttp2_hd_inflate_new(&h.inf), 0);
	assert_int_equal(cli_send(&h.c, ask, sizeof(ask) - 1), 0);
	for (at = -1; at < 0 && now_ms() < end;) {
		size_t n = iobuf_copy_out(&h.c.in, 0, head, sizeof(head) - 1);
		char *e;

		head[n] = '\0';
		e = strstr(head, "\r\n\r\n");
		if (e)
			at = e - head;
		else
			assert_true(cli_fill(&h.c) > 0);
	}
	assert_true(at > 0);
	iobuf_copy_out(&h.c.in, 0, head, (size_t)at + 4);
	head[at + 4] = '\0';
	iobuf_drop_front(&h.c.in, (size_t)at + 4);
	assert_memory_equal(head, sw, sizeof(sw) - 1);
	assert_non_null(strstr(head, "Upgrade: h2c\r\n"));
	assert_int_equal(cli_send(&h.c, PREFACE, sizeof(PREFACE) - 1), 0);
	put_settings(&h, NULL, NULL, 0);
	http_answer(&h, f, 1, hd, sizeof(hd), body, sizeof(body));
	assert_non_null(strstr(hd, ":status: 200\n"));
	assert_string_equal(body, "OK");
	put_get(&h, 3, "/health"); /* HTTP/2 from here on */
	http_answer(&h, f, 3, hd, sizeof(hd), body, sizeof(body));
	assert_string_equal(body, "OK");
	h2_close(&h);
	free(f);
	fx_down(fx);
}

/* 6.5.2: a header list over SETTINGS_MAX_HEADER_LIST_SIZE resets its
 * stream; the connection goes on. */
static void test_header_list_too_big(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	char value[120];
	struct h2c h;
	char hdrs[1024], answer[128];
	uint8_t *b = malloc(16384);
	size_t n = 0;

	assert_non_null(f);
	assert_non_null(b);
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	h2_open(&h, fx);
	/* 110 fields of 157 bytes (RFC 9113's count): 17 KB, in one frame */
	n += hp_lit(b + n, ":method", "POST");
	n += hp_lit(b + n, ":scheme", "http");
	n += hp_lit(b + n, ":path", "/example.EchoService/Echo");
	n += hp_lit(b + n, ":authority", "t");
	n += hp_lit(b + n, "content-type", "application/grpc");
	for (int i = 0; i < 110; i++)
		n += hp_lit(b + n, "x-big", value);
	assert_true(n <= 16384);
	put_frame(&h, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, 1, b, n);
	free(b);
	assert_int_equal(wait_frame(&h, f, F_RST, 1), 1);
	assert_int_equal(grpc_call(&h, 3, "/example.EchoService/Echo", "ok",
				   hdrs, sizeof(hdrs), answer),
			 0);
	assert_string_equal(answer, "ok");
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* ---- floods (RFC 9113 10.5) ----------------------------------------- */

enum flood { FLOOD_PING, FLOOD_SETTINGS, FLOOD_RESET, FLOOD_EMPTY_DATA };

/* 2,000 frames of one kind at once: GOAWAY ENHANCE_YOUR_CALM and one
 * log line; a second connection is answered meanwhile. */
static void flood(enum flood kind)
{
	struct fx *fx = up(0);
	struct h2c h, other;
	uint8_t p[8] = {0}, cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
	char hdrs[1024], answer[128];

	h2_open(&h, fx);
	h2_open(&other, fx);
	h.soft = true;
	if (kind == FLOOD_EMPTY_DATA)
		put_request(&h, 1, "/example.EchoService/Echo",
			    "application/grpc", false, NULL);
	for (int i = 0; i < 2000; i++) {
		uint32_t sid = 1 + 2 * (uint32_t)i;

		if (kind == FLOOD_PING)
			put_frame(&h, F_PING, 0, 0, p, 8);
		else if (kind == FLOOD_SETTINGS)
			put_frame(&h, F_SETTINGS, 0, 0, NULL, 0);
		else if (kind == FLOOD_EMPTY_DATA)
			put_frame(&h, F_DATA, 0, 1, NULL, 0);
		if (kind != FLOOD_RESET)
			continue;
		put_request(&h, sid, "/example.EchoService/Echo",
			    "application/grpc", false, NULL);
		put_frame(&h, F_RST, 0, sid, cancel, 4);
	}
	assert_int_equal(goaway_code(&h), NGHTTP2_ENHANCE_YOUR_CALM);
	assert_int_equal(grpc_call(&other, 1, "/example.EchoService/Echo",
				   "fine", hdrs, sizeof(hdrs), answer),
			 0);
	assert_string_equal(answer, "fine");
	h2_close(&h);
	h2_close(&other);
	fx_down(fx);
	assert_true(log_has(fx, "closing 127.0.0.1:"));
}

static void test_flood_ping(void **state) { flood(FLOOD_PING); }
static void test_flood_settings(void **state) { flood(FLOOD_SETTINGS); }
static void test_flood_reset(void **state) { flood(FLOOD_RESET); }
static void test_flood_empty_data(void **state) { flood(FLOOD_EMPTY_DATA); }

/* ---- streaming methods ---------------------------------------------- */

/* A bidirectional stream over raw frames: answers come before the
 * request ends (each message echoed as it arrives), then the trailers
 * with grpc-status 0 after END_STREAM. */
static void test_stream_bidi(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	struct h2c h;
	uint8_t req[64], b[64];
	char hd[512];

	assert_non_null(f);
	h2_open(&h, fx);
	put_request(&h, 1, "/example.EchoStreamService/Chat",
		    "application/grpc", false, NULL);
	for (int i = 0; i < 3; i++) {
		size_t n = echo_req(req, i == 1 ? "two" : "one");

		grpc_msg_prefix(b, false, (uint32_t)n);
		memcpy(b + GRPC_PREFIX_LEN, req, n);
		put_frame(&h, F_DATA, 0, 1, b, n + GRPC_PREFIX_LEN);
		assert_int_equal(wait_frame(&h, f, F_DATA, 1), 1);
		assert_int_equal(f->len, n + GRPC_PREFIX_LEN);
		assert_memory_equal(f->p + GRPC_PREFIX_LEN, req, n);
	}
	put_frame(&h, F_DATA, FL_END_STREAM, 1, NULL, 0);
	assert_int_equal(wait_frame(&h, f, F_HEADERS, 1), 1);
	fields(&h, f, hd, sizeof(hd));
	assert_non_null(strstr(hd, "grpc-status: 0\n"));
	assert_true(f->flags & FL_END_STREAM);
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* A stream's grpc-timeout ends it DEADLINE_EXCEEDED; a stream whose
 * connection goes mid-way is closed and counted (fx_down: nothing in
 * flight, nothing leaked). */
static void test_stream_deadline_and_drop(void **state)
{
	struct fx *fx = up(0);
	struct h2f *f = malloc(sizeof(*f));
	static const char *const tmo[] = {"grpc-timeout", "100m", NULL};
	struct h2c h;
	char hd[512];
	int64_t t0;

	assert_non_null(f);
	h2_open(&h, fx);
	t0 = now_ms();
	put_request(&h, 1, "/example.EchoStreamService/Chat",
		    "application/grpc", false, tmo);
	assert_int_equal(wait_frame(&h, f, F_HEADERS, 1), 1);
	fields(&h, f, hd, sizeof(hd));
	assert_non_null(strstr(hd, "grpc-status: 4\n"));
	assert_true(now_ms() - t0 >= 90);
	/* a second stream, left open: the connection closes under it */
	put_request(&h, 3, "/example.EchoStreamService/Join",
		    "application/grpc", false, NULL);
	usleep(50000);
	free(f);
	h2_close(&h);
	fx_down(fx);
}

/* ---- the channel's side -------------------------------------------- */

static void grpc_channel(struct fx *fx, struct channel *ch, int timeout_ms)
{
	struct channel_options co;
	char addr[32];

	channel_options_default(&co);
	co.rt = &fx->rt;
	co.pool = &fx->pool;
	co.mem = &fx->mf.mem;
	co.timeout_ms = timeout_ms;
	co.protocol = CHANNEL_PROTO_GRPC;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx->port);
	assert_int_equal(channel_init(ch, addr, &co), 0);
}

static int echo_call(struct fx *fx, struct channel *ch, const char *msg,
		     int compress, struct rpc_call *c, rpc_done_fn *done)
{
	Example__EchoRequest q = EXAMPLE__ECHO_REQUEST__INIT;

	q.message = (char *)msg;
	rpc_call_init(c, &fx->pool);
	c->compress_type = compress;
	return channel_call(ch, &example__echo_service__descriptor, 0, &q.base,
			    c, done, NULL);
}

static void test_channel_grpc(void **state)
{
	struct fx *fx = up(0);
	struct channel ch;
	struct rpc_call c, many[64];
	struct channel_stats cs;
	char msg[64];

	grpc_channel(fx, &ch, 3000);
	for (int i = 0; i < 100; i++) {
		snprintf(msg, sizeof(msg), "call %d", i);
		assert_int_equal(echo_call(fx, &ch, msg,
					   i % 2 ? COMPRESS_GZIP
						 : COMPRESS_NONE,
					   &c, NULL),
				 0);
		assert_string_equal(
		    ((const Example__EchoResponse *)c.response)->message, msg);
		rpc_call_destroy(&c);
	}
	/* 64 at once: streams of one connection */
	for (int i = 0; i < 64; i++)
		echo_call(fx, &ch, "many", COMPRESS_NONE, &many[i],
			  RPC_JOINABLE);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(rpc_call_join(&many[i]), 0);
		assert_int_equal(many[i].error_code, 0);
		rpc_call_destroy(&many[i]);
	}
	channel_stats(&ch, &cs);
	assert_int_equal(cs.connects, 1);
	/* the server's error, mapped back: ENOMETHOD with its text */
	rpc_call_init(&c, &fx->pool);
	iobuf_append(&c.body, "\x0a\x01x", 3);
	assert_int_equal(channel_call_raw(&ch, "example.EchoService", "Nope",
					  &c, NULL, NULL),
			 RPC_ENOMETHOD);
	assert_true(c.error_from_server);
	assert_string_equal(c.error_text,
			    "Fail to find method=example.EchoService/Nope");
	rpc_call_destroy(&c);
	/* an attachment has no place in gRPC */
	rpc_call_init(&c, &fx->pool);
	iobuf_append(&c.request_attachment, "a", 1);
	assert_int_not_equal(channel_call_raw(&ch, "example.EchoService",
					      "Echo", &c, NULL, NULL),
			     0);
	rpc_call_destroy(&c);
	channel_destroy(&ch);
	fx_down(fx);
}

/* The channel's deadline goes as grpc-timeout: the server answers
 * DEADLINE_EXCEEDED itself, or the channel times out first. */
static void test_channel_grpc_deadline(void **state)
{
	struct fx *fx = up(500);
	struct channel ch;
	struct rpc_call c;
	int64_t t0 = now_ms();

	grpc_channel(fx, &ch, 100);
	echo_call(fx, &ch, "late", COMPRESS_NONE, &c, NULL);
	assert_true(c.error_code == RPC_ERPCTIMEDOUT);
	assert_true(now_ms() - t0 < 400);
	rpc_call_destroy(&c);
	channel_destroy(&ch);
	fx_down(fx);
}

/* ---- the channel's streaming calls ---------------------------------- */

/* One streaming call driven from the test thread: opened, written and
 * ended by a task on the channel's loop, its callbacks counted here. */
struct cs {
	struct channel *ch;
	struct channel_stream *s;
	const char *method;
	const char *const *msgs; /* written at the open, NULL-ended */
	bool end, pause, cancel;
	int timeout_ms;
	const char *metadata; /* sent with the request */
	struct task task;
	int open_err;
	/* the callbacks' (the loop thread), read once closed */
	int answers;
	size_t bytes;
	char first[256], joined[4096];
	int code;
	char text[256];
	int closed; /* atomic */
};

static void cs_message(struct channel_stream *s, struct iobuf *msg, void *arg)
{
	struct cs *c = arg;
	uint8_t b[300];
	size_t n = iobuf_len(msg), o = strlen(c->joined);

	c->answers++;
	__atomic_fetch_add(&c->bytes, n, __ATOMIC_RELAXED);
	if (n < sizeof(b) && n >= 2) {
		/* EchoResponse: field 1, a short string */
		iobuf_copy_out(msg, 0, b, n);
		if (!c->first[0])
			snprintf(c->first, sizeof(c->first), "%.*s", b[1], b + 2);
		snprintf(c->joined + o, sizeof(c->joined) - o, "%s%.*s",
			 o ? "," : "", b[1], b + 2);
	}
}

static void cs_close(struct channel_stream *s, int code, const char *text,
		     void *arg)
{
	struct cs *c = arg;

	c->code = code;
	snprintf(c->text, sizeof(c->text), "%s", text);
	__atomic_store_n(&c->closed, 1, __ATOMIC_RELEASE);
}

static const struct channel_stream_ops cs_ops = {
    .on_message = cs_message,
    .on_close = cs_close,
};

static void cs_open_task(struct task *t)
{
	struct cs *c = container_of(t, struct cs, task);
	struct iobuf m;
	uint8_t b[300];

	c->s = channel_stream_open(c->ch, "example.EchoStreamService",
				   c->method, c->timeout_ms, c->metadata,
				   &cs_ops, c, &c->open_err);
	if (!c->s) {
		__atomic_store_n(&c->closed, 2, __ATOMIC_RELEASE);
		return;
	}
	if (c->pause)
		channel_stream_pause(c->s, true);
	iobuf_init(&m, c->ch->opt.pool);
	for (int i = 0; c->msgs && c->msgs[i]; i++) {
		iobuf_append(&m, b, echo_req(b, c->msgs[i]));
		assert_true(channel_stream_write(c->s, &m) > 0);
	}
	if (c->end) {
		channel_stream_end(c->s);
		iobuf_append(&m, "x", 1);
		assert_int_equal(channel_stream_write(c->s, &m), -EPIPE);
	}
	iobuf_destroy(&m);
}

/* Runs fn(c) on the channel's loop and waits for it. */
static void cs_on_loop(struct cs *c, void (*fn)(struct task *))
{
	task_init(&c->task, fn);
	loop_post(c->ch->loop, &c->task);
}

static void cs_resume_task(struct task *t)
{
	struct cs *c = container_of(t, struct cs, task);

	channel_stream_pause(c->s, false);
}

static void cs_cancel_task(struct task *t)
{
	struct cs *c = container_of(t, struct cs, task);

	channel_stream_cancel(c->s);
	__atomic_store_n(&c->closed, 3, __ATOMIC_RELEASE);
}

/* Waits for the call to close (5 s at most): its `closed` value. */
static int cs_wait(struct cs *c)
{
	int64_t end = now_ms() + 5000;
	int v;

	while (!(v = __atomic_load_n(&c->closed, __ATOMIC_ACQUIRE)) &&
	       now_ms() < end)
		usleep(1000);
	return v;
}

static void cs_run(struct cs *c, struct channel *ch, const char *method,
		   const char *const *msgs)
{
	c->ch = ch;
	c->method = method;
	c->msgs = msgs;
	c->end = true;
	if (!c->timeout_ms)
		c->timeout_ms = 3000;
	cs_on_loop(c, cs_open_task);
	assert_int_equal(cs_wait(c), 1);
}

/* Each kind against echo's EchoStreamService: server streaming (Split),
 * client streaming (Join), bidirectional (Chat), and an error. */
static void test_channel_stream_kinds(void **state)
{
	struct fx *fx = up(0);
	static const char *const split[] = {"a bb  ccc", NULL};
	static const char *const words[] = {"w1", "w2", "w3", "w4", NULL};
	static const char *const chat[] = {"one", "two", NULL};
	static const char *const fail[] = {"ok", "fail", "never", NULL};
	struct channel ch;
	struct cs c;

	grpc_channel(fx, &ch, 3000);
	memset(&c, 0, sizeof(c));
	cs_run(&c, &ch, "Split", split);
	assert_int_equal(c.code, 0);
	assert_string_equal(c.joined, "a,bb,ccc");
	memset(&c, 0, sizeof(c));
	cs_run(&c, &ch, "Join", words);
	assert_int_equal(c.code, 0);
	assert_string_equal(c.joined, "w1 w2 w3 w4");
	memset(&c, 0, sizeof(c));
	cs_run(&c, &ch, "Chat", chat);
	assert_int_equal(c.code, 0);
	assert_string_equal(c.joined, "one,two");
	memset(&c, 0, sizeof(c));
	cs_run(&c, &ch, "Chat", fail);
	assert_int_not_equal(c.code, 0);
	assert_non_null(strstr(c.text, "asked to fail"));
	assert_string_equal(c.joined, "ok");
	memset(&c, 0, sizeof(c));
	cs_run(&c, &ch, "Nope", chat);
	assert_int_equal(c.code, RPC_ENOMETHOD);
	channel_destroy(&ch);
	fx_down(fx);
}

/* A paused call takes no more than a stream window; resumed, every
 * answer comes. */
static void test_channel_stream_pause(void **state)
{
	struct fx *fx = up(0);
	static const char *const flood[] = {"200 65536", NULL};
	struct channel ch;
	struct cs c;

	grpc_channel(fx, &ch, 10000);
	memset(&c, 0, sizeof(c));
	c.ch = &ch;
	c.method = "Flood";
	c.msgs = flood;
	c.end = true;
	c.pause = true;
	c.timeout_ms = 10000;
	cs_on_loop(&c, cs_open_task);
	usleep(300000);
	assert_int_equal(__atomic_load_n(&c.closed, __ATOMIC_ACQUIRE), 0);
	/* read on the loop while it runs: a lower bound is all we need */
	assert_true(__atomic_load_n(&c.bytes, __ATOMIC_RELAXED) <=
		    (1u << 20) + 65536);
	cs_on_loop(&c, cs_resume_task);
	assert_int_equal(cs_wait(&c), 1);
	assert_int_equal(c.code, 0);
	assert_int_equal(c.answers, 200);
	assert_int_equal(c.bytes, 200 * (65536 + 4));
	channel_destroy(&ch);
	fx_down(fx);
}

/* Paused calls hold back their own stream's window only: 20 of them,
 * each with a stream window of answers unread (more than the 16 MiB
 * connection window in all), leave the connection open for a unary
 * call; cancelled, they give nothing back late and the next call works
 * too. */
static void test_channel_stream_paused_many(void **state)
{
	struct fx *fx = up(0);
	static const char *const flood[] = {"100 65536", NULL};
	struct channel ch;
	struct cs c[20];
	struct rpc_call call;

	grpc_channel(fx, &ch, 10000);
	memset(c, 0, sizeof(c));
	for (int i = 0; i < 20; i++) {
		c[i].ch = &ch;
		c[i].method = "Flood";
		c[i].msgs = flood;
		c[i].end = true;
		c[i].pause = true;
		c[i].timeout_ms = 10000;
		cs_on_loop(&c[i], cs_open_task);
	}
	usleep(500000);
	assert_int_equal(echo_call(fx, &ch, "past them", COMPRESS_NONE, &call,
				   NULL),
			 0);
	rpc_call_destroy(&call);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(__atomic_load_n(&c[i].closed, __ATOMIC_ACQUIRE),
				 0);
		cs_on_loop(&c[i], cs_cancel_task);
		assert_int_equal(cs_wait(&c[i]), 3);
	}
	assert_int_equal(echo_call(fx, &ch, "after", COMPRESS_NONE, &call,
				   NULL),
			 0);
	rpc_call_destroy(&call);
	channel_destroy(&ch);
	fx_down(fx);
}

/* timeout_ms ends an open call ERPCTIMEDOUT; a cancelled one hears
 * nothing more; a server not there ends it with the connect's error;
 * only protocol grpc streams. */
static void test_channel_stream_ends(void **state)
{
	struct fx *fx = up(0);
	struct channel ch, none, baidu;
	struct channel_options co;
	struct cs c;
	int64_t t0;

	grpc_channel(fx, &ch, 3000);
	memset(&c, 0, sizeof(c));
	c.ch = &ch;
	c.method = "Chat";
	c.timeout_ms = 100;
	t0 = now_ms();
	cs_on_loop(&c, cs_open_task);
	assert_int_equal(cs_wait(&c), 1);
	assert_int_equal(c.code, RPC_ERPCTIMEDOUT);
	assert_true(now_ms() - t0 >= 90 && now_ms() - t0 < 1000);
	memset(&c, 0, sizeof(c));
	c.ch = &ch;
	c.method = "Chat";
	c.timeout_ms = 3000;
	cs_on_loop(&c, cs_open_task);
	usleep(50000);
	cs_on_loop(&c, cs_cancel_task);
	assert_int_equal(cs_wait(&c), 3);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&c.closed, __ATOMIC_ACQUIRE), 3);
	channel_destroy(&ch);
	/* nobody there */
	channel_options_default(&co);
	co.rt = &fx->rt;
	co.pool = &fx->pool;
	co.protocol = CHANNEL_PROTO_GRPC;
	assert_int_equal(channel_init(&none, "127.0.0.1:1", &co), 0);
	memset(&c, 0, sizeof(c));
	cs_run(&c, &none, "Chat", NULL);
	assert_int_equal(c.code, RPC_EFAILEDSOCKET);
	assert_non_null(strstr(c.text, "Fail to connect"));
	channel_destroy(&none);
	/* baidu_std has no streams */
	co.protocol = CHANNEL_PROTO_BAIDU;
	assert_int_equal(channel_init(&baidu, "127.0.0.1:1", &co), 0);
	memset(&c, 0, sizeof(c));
	c.ch = &baidu;
	c.method = "Chat";
	cs_on_loop(&c, cs_open_task);
	assert_int_equal(cs_wait(&c), 2);
	assert_int_equal(c.open_err, -EINVAL);
	channel_destroy(&baidu);
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_SERVER(test_preface_settings),
	    TEST_SERVER(test_preface_then_not_settings),
	    TEST_SERVER(test_settings_bad_length),
	    TEST_SERVER(test_ping_ack),
	    TEST_SERVER(test_window_update_zero),
	    TEST_SERVER(test_stream_states),
	    TEST_SERVER(test_frame_too_big),
	    TEST_SERVER(test_flow_control),
	    TEST_SERVER(test_rst_during_call),
	    TEST_SERVER(test_max_streams),
	    TEST_SERVER(test_goaway_at_stop),
	    TEST_SERVER(test_grpc_unary),
	    TEST_SERVER(test_grpc_server_deadline),
	    TEST_SERVER(test_http_over_h2),
	    TEST_SERVER(test_upgrade_h2c),
	    TEST_SERVER(test_header_list_too_big),
	    TEST_SERVER(test_flood_ping),
	    TEST_SERVER(test_flood_settings),
	    TEST_SERVER(test_flood_reset),
	    TEST_SERVER(test_flood_empty_data),
	    TEST_SERVER(test_stream_bidi),
	    TEST_SERVER(test_stream_deadline_and_drop),
	    TEST_SERVER(test_channel_grpc),
	    TEST_SERVER(test_channel_grpc_deadline),
	    TEST_SERVER(test_channel_stream_kinds),
	    TEST_SERVER(test_channel_stream_pause),
	    TEST_SERVER(test_channel_stream_paused_many),
	    TEST_SERVER(test_channel_stream_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
