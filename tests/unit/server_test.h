/*
 * server_test: what the server's test programs share (header only): a
 * fixture with its own rt (1 loop, 2 workers), iobuf pool, counting
 * allocator and server running the echo service (app/echo.h) with
 * addr_text "127.0.0.1:8100", the recorded server's, so error texts
 * match brpc's byte for byte; a blocking loopback client; requests
 * packed as brpc packs them and checks of the answers.
 *
 * Every test built on it runs under an alarm and ends with the server,
 * rt and pool down, every block back in the pool and no live allocation
 * in the counting allocator (ASan's leak check covers the rest).
 */
#ifndef RPCGATE_TESTS_SERVER_TEST_H
#define RPCGATE_TESTS_SERVER_TEST_H

#define _GNU_SOURCE /* open_memstream (baidu_test.h) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "codec/baidu_std.h"
#include "codec/compress.h"
#include "echo.h"
#include "echo.pb-c.h"
#include "base/iobuf.h"
#include "base/log.h"
#include "base/mem.h"
#include "codec/rpc_errno.h"
#include "codec/rpc_msg.h"
#include "base/rt.h"
#include "rpc/server.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"
#include "baidu_test.h"

/* The recorded server's address, in every error text (SRV is its
 * bracketed form, baidu_test.h). */
#define ADDR_TEXT "127.0.0.1:8100"
/* How long a client waits for an answer or a close: far above anything
 * the server should take, far below TEST_TIMEOUT_S. */
#define RECV_TIMEOUT_S 3
/* The slow echo of the concurrency and stop tests: its calls must still
 * be in their handlers after a stall of the machine (CI met 535 ms),
 * and answered well within RECV_TIMEOUT_S after one. */
#define SLOW_MS 1500
/* Vectors: cases in the folder, frames per case, length of a name. */
#define VEC_MAX	       64
#define VEC_FRAMES_MAX 8
#define VEC_NAME_MAX   64
/* Frames one test reads at most from a connection. */
#define FRAMES_MAX 16
/* Decoded answers are small; anything bigger is a bug. */
#define ANSWER_MAX (1u << 20)
/* Log lines kept for failure messages. */
#define LOG_KEEP 8192

struct fx_cfg {
	size_t max_body_size; /* 0: the default */
	int max_concurrency;
	server_auth_fn *auth;
	bool checksum_answers;
	int sleep_ms;	 /* echo's delay */
	bool on_workers; /* echo on task workers instead of inline */
	const struct conn_upgrade *upgrade;
	struct metrics *metrics; /* GET /metrics */
	/* HTTP/JSON: the types, and (with mirrors) the pool's services
	 * served as echo's mirrors (echo_mirrors_add) */
	const struct pbd_pool *descriptors;
	bool mirrors;
	int http_header_timeout_ms, http_body_idle_ms, http_idle_timeout_ms;
	struct flags *flags; /* /flags */
	int (*set_flag)(void *arg, const char *name, const char *value,
			char *why, size_t why_size);
};

struct fx {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct log log;
	struct rt rt;
	struct server srv;
	struct echo_service echo;
	int port;
	int auth_calls; /* atomic */
	pthread_mutex_t log_lock;
	char log_text[LOG_KEEP];
	size_t log_len;
};

static struct fx g_fx;
static bool g_fx_up; /* set up and not yet torn down */

/* ---- fixture --------------------------------------------------------- */

static inline void log_sink(void *ctx, const char *line, size_t len)
{
	struct fx *fx = ctx;

	pthread_mutex_lock(&fx->log_lock);
	if (fx->log_len + len < sizeof(fx->log_text)) {
		memcpy(fx->log_text + fx->log_len, line, len);
		fx->log_len += len;
		fx->log_text[fx->log_len] = '\0';
	}
	pthread_mutex_unlock(&fx->log_lock);
}

static inline bool log_has(struct fx *fx, const char *needle)
{
	bool found;

	pthread_mutex_lock(&fx->log_lock);
	found = strstr(fx->log_text, needle) != NULL;
	pthread_mutex_unlock(&fx->log_lock);
	return found;
}

static inline struct fx *fx_up(const struct fx_cfg *cfg)
{
	struct fx *fx = &g_fx;
	struct rt_options ro = {.dispatchers = 1, .task_workers = 2};
	struct server_options so;
	struct log_options lo;

	memset(fx, 0, sizeof(*fx));
	assert_int_equal(pthread_mutex_init(&fx->log_lock, NULL), 0);
	mem_failing_init(&fx->mf, -1);
	log_options_default(&lo);
	lo.level = LOG_LVL_DEBUG;
	lo.sink = log_sink;
	lo.sink_ctx = fx;
	lo.repeat_window_ms = 0;
	assert_int_equal(log_init(&fx->log, &lo), 0);
	pool_up(&fx->pool, &fx->mf.mem, IOBUF_REGION_BLOCKS, 0);
	ro.mem = &fx->mf.mem;
	ro.log = &fx->log;
	assert_int_equal(rt_init(&fx->rt, &ro), 0);
	assert_int_equal(rt_start(&fx->rt), 0);

	server_options_default(&so);
	so.rt = &fx->rt;
	so.pool = &fx->pool;
	so.mem = &fx->mf.mem;
	so.log = &fx->log;
	so.addr_text = ADDR_TEXT;
	if (cfg->max_body_size)
		so.max_body_size = cfg->max_body_size;
	so.max_concurrency = cfg->max_concurrency;
	so.auth = cfg->auth;
	so.auth_arg = fx;
	so.checksum_answers = cfg->checksum_answers;
	so.upgrade = cfg->upgrade;
	so.metrics = cfg->metrics;
	so.descriptors = cfg->descriptors;
	so.flags = cfg->flags;
	so.set_flag = cfg->set_flag;
	so.set_flag_arg = cfg->flags;
	if (cfg->http_header_timeout_ms)
		so.http_header_timeout_ms = cfg->http_header_timeout_ms;
	if (cfg->http_body_idle_ms)
		so.http_body_idle_ms = cfg->http_body_idle_ms;
	if (cfg->http_idle_timeout_ms)
		so.http_idle_timeout_ms = cfg->http_idle_timeout_ms;
	assert_int_equal(server_init(&fx->srv, &so), 0);
	fx->echo.sleep_ms = cfg->sleep_ms;
	fx->echo.on_workers = cfg->on_workers;
	assert_int_equal(echo_service_add(&fx->srv, &fx->echo), 0);
	if (cfg->mirrors)
		assert_int_equal(echo_mirrors_add(&fx->srv, cfg->descriptors,
						  &fx->echo),
				 0);
	fx->port = server_listen(&fx->srv, "127.0.0.1", 0);
	assert_true(fx->port > 0);
	assert_int_equal(server_start(&fx->srv), 0);
	g_fx_up = true;
	return fx;
}

static inline void fx_down(struct fx *fx)
{
	struct server_stats st;

	g_fx_up = false;
	/* Idempotent: a test that stopped already gets its left-overs. */
	assert_int_equal(server_stop(&fx->srv, 5000), 0);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.connections, 0);
	server_destroy(&fx->srv);
	rt_stop(&fx->rt);
	rt_destroy(&fx->rt);
	pool_down(&fx->pool); /* -EBUSY if a block is still held */
	log_destroy(&fx->log);
	assert_int_equal(fx->mf.live, 0);
	pthread_mutex_destroy(&fx->log_lock);
}

/*
 * After a failed test: stop what is still running so that the next test
 * starts clean.  Best effort: the failed test's sockets and buffers are
 * leaked (the pool stays), the failure is already reported.
 */
static inline int fx_cleanup(void **state)
{
	struct fx *fx = &g_fx;

	test_alarm_disarm(state);
	if (!g_fx_up)
		return 0;
	g_fx_up = false;
	server_destroy(&fx->srv);
	rt_destroy(&fx->rt);
	return 0;
}

/* TEST_BOUNDED, plus the clean-up of a failed test's server. */
#define TEST_SERVER(fn)                                                        \
	cmocka_unit_test_setup_teardown(fn, test_alarm_arm, fx_cleanup)

static inline int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The stats once no call is in flight.  An answer goes out before its
 * call is freed (as in brpc, whose ConcurrencyRemover runs after the
 * write), so a client that has read every answer may still see the last
 * call counted for a moment.
 */
static inline void settled_stats(struct fx *fx, struct server_stats *st)
{
	int64_t deadline = now_ms() + RECV_TIMEOUT_S * 1000;

	for (;;) {
		server_stats(&fx->srv, st);
		if (st->inflight == 0)
			return;
		if (now_ms() > deadline)
			fail_msg("%" PRId64 " calls still in flight %d s after "
				 "their answers",
				 st->inflight, RECV_TIMEOUT_S);
		usleep(1000);
	}
}

/* ---- a blocking client ---------------------------------------------- */

struct cli {
	int fd;
	struct iobuf in; /* read, not yet cut into frames */
};

/* Connects to the server: 0, or -errno of connect(). */
static inline int cli_try_open(struct cli *c, struct fx *fx)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)fx->port)};
	struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
	int one = 1, err;

	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &a.sin_addr), 1);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	assert_int_equal(
	    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(
	    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err = -errno;
		close(c->fd);
		c->fd = -1;
		return err;
	}
	iobuf_init(&c->in, &fx->pool);
	return 0;
}

static inline void cli_open(struct cli *c, struct fx *fx)
{
	int err = cli_try_open(c, fx);

	if (err)
		fail_msg("connect to port %d: %s", fx->port, strerror(-err));
}

static inline void cli_close(struct cli *c)
{
	close(c->fd);
	iobuf_destroy(&c->in);
}

/* All n bytes: 0, or -errno (EPIPE, ECONNRESET once the server closed). */
static inline int cli_send(struct cli *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	ssize_t w;

	while (n) {
		w = send(c->fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Sends and empties `b`. */
static inline void cli_send_buf(struct cli *c, struct iobuf *b)
{
	size_t n = iobuf_len(b);
	uint8_t *flat = malloc(n ? n : 1);
	int err;

	assert_non_null(flat);
	assert_int_equal(iobuf_copy_out(b, 0, flat, n), n);
	err = cli_send(c, flat, n);
	if (err)
		fail_msg("send %zu bytes: %s", n, strerror(-err));
	free(flat);
	iobuf_reset(b);
}

/* One recv into c->in: bytes, 0 at EOF, or -errno (-EAGAIN: timeout). */
static inline ssize_t cli_fill(struct cli *c)
{
	uint8_t buf[4096];
	ssize_t n;

	do
		n = recv(c->fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n > 0)
		assert_int_equal(iobuf_append(&c->in, buf, (size_t)n), 0);
	return n;
}

/* The next answer; fails the test on a close, a timeout or bad bytes. */
static inline void cli_frame(struct cli *c, struct baidu_frame *f,
			     const char *what)
{
	ssize_t r;
	int n;

	for (;;) {
		n = baidu_parse(&c->in, f, NULL);
		if (n > 0)
			return;
		if (n != -EAGAIN)
			fail_msg("%s: the server sent bytes that do not parse "
				 "as baidu_std: %s",
				 what, strerror(-n));
		r = cli_fill(c);
		if (r == 0)
			fail_msg("%s: the server closed the connection instead "
				 "of answering",
				 what);
		if (r == -EAGAIN)
			fail_msg("%s: no answer within %d s", what,
				 RECV_TIMEOUT_S);
		if (r < 0)
			fail_msg("%s: recv: %s", what, strerror((int)-r));
	}
}

/*
 * Frames until the server closes (at most max): their number.  Fails on
 * a timeout.  A reset counts as a close (the kernel resets a socket
 * closed with unread bytes).
 */
static inline int cli_frames_until_close(struct cli *c, struct baidu_frame *f,
					 int max, const char *what)
{
	int k = 0, n;
	ssize_t r;

	for (;;) {
		n = baidu_parse(&c->in, &f[k], NULL);
		if (n > 0) {
			if (++k == max)
				fail_msg("%s: more than %d answers", what, max);
			continue;
		}
		if (n != -EAGAIN)
			fail_msg("%s: bytes that do not parse: %s", what,
				 strerror(-n));
		r = cli_fill(c);
		if (r > 0)
			continue;
		if (r == 0 || r == -ECONNRESET) {
			if (iobuf_len(&c->in))
				fail_msg("%s: closed after %zu bytes of a "
					 "partial frame",
					 what, iobuf_len(&c->in));
			return k;
		}
		if (r == -EAGAIN)
			fail_msg("%s: the server did not close within %d s",
				 what, RECV_TIMEOUT_S);
		fail_msg("%s: recv: %s", what, strerror((int)-r));
	}
}

/* The server closes without sending (another) byte. */
static inline void cli_expect_closed(struct cli *c, const char *what)
{
	ssize_t r;

	if (iobuf_len(&c->in))
		fail_msg("%s: %zu unexpected bytes from the server", what,
			 iobuf_len(&c->in));
	r = cli_fill(c);
	if (r > 0)
		fail_msg("%s: %zd unexpected bytes from the server, expected "
			 "a close",
			 what, r);
	if (r == -EAGAIN)
		fail_msg("%s: the server did not close the connection within "
			 "%d s",
			 what, RECV_TIMEOUT_S);
	if (r < 0 && r != -ECONNRESET)
		fail_msg("%s: recv: %s", what, strerror((int)-r));
}

/* Nothing to read (no byte, no close) for ms milliseconds. */
static inline void cli_expect_quiet(struct cli *c, int ms, const char *what)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	int n = poll(&p, 1, ms);

	assert_true(n >= 0);
	if (n > 0)
		fail_msg("%s: the server answered or closed; it should wait "
			 "for more bytes",
			 what);
}

/* ---- requests and answers ------------------------------------------- */

enum ck_mode {
	CK_NONE,
	CK_RIGHT,      /* CRC32C of the message bytes as sent */
	CK_WRONG,      /* that, one bit off */
	CK_OVER_PLAIN, /* CRC32C of the bytes before compression */
};

struct req {
	const char *service; /* NULL: example.EchoService */
	const char *method;  /* NULL: Echo */
	uint64_t cid;
	const char *message; /* EchoRequest.message; NULL: see raw */
	const uint8_t *raw;  /* message bytes as they are (if no message) */
	size_t raw_len;
	const char *attachment; /* NULL: none */
	int compress;
	const char *auth; /* NULL: no authentication_data */
	enum ck_mode ck;
};

/* Appends the request frame to out. */
static inline void req_pack(struct fx *fx, struct iobuf *out,
			    const struct req *r)
{
	struct baidu_req_meta m = {
	    .service = r->service ? r->service : "example.EchoService",
	    .method = r->method ? r->method : "Echo",
	    .correlation_id = r->cid,
	    .compress_type = r->compress,
	};
	struct iobuf plain, msg, att;
	uint8_t ck[4];

	iobuf_init(&plain, &fx->pool);
	iobuf_init(&msg, &fx->pool);
	iobuf_init(&att, &fx->pool);
	if (r->message) {
		Example__EchoRequest q = EXAMPLE__ECHO_REQUEST__INIT;
		size_t n;
		uint8_t *b;

		q.message = (char *)r->message;
		n = example__echo_request__get_packed_size(&q);
		b = malloc(n);
		assert_non_null(b);
		assert_int_equal(example__echo_request__pack(&q, b), n);
		assert_int_equal(iobuf_append(&plain, b, n), 0);
		free(b);
	} else if (r->raw_len) {
		assert_int_equal(iobuf_append(&plain, r->raw, r->raw_len), 0);
	}
	if (r->ck == CK_OVER_PLAIN)
		assert_int_equal(rpc_msg_checksum(&plain, NULL, ck), 0);
	if (r->compress)
		assert_int_equal(compress_encode(r->compress, &plain, &msg), 0);
	else
		assert_int_equal(iobuf_append_buf(&msg, &plain), 0);
	if (r->ck == CK_RIGHT || r->ck == CK_WRONG)
		assert_int_equal(rpc_msg_checksum(&msg, NULL, ck), 0);
	if (r->ck == CK_WRONG)
		ck[3] ^= 1;
	if (r->ck != CK_NONE) {
		m.checksum_type = BAIDU_CHECKSUM_CRC32C;
		m.checksum_value.ptr = ck;
		m.checksum_value.len = sizeof(ck);
	}
	if (r->auth) {
		m.auth.ptr = (const uint8_t *)r->auth;
		m.auth.len = strlen(r->auth);
	}
	if (r->attachment)
		assert_int_equal(
		    iobuf_append(&att, r->attachment, strlen(r->attachment)),
		    0);
	assert_int_equal(baidu_pack_request(out, &m, &msg, &att), 0);
	iobuf_destroy(&plain);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
}

/* Sends several requests in one write (pipelined). */
static inline void cli_send_reqs(struct cli *c, struct fx *fx,
				 const struct req *r, int n)
{
	struct iobuf out;

	iobuf_init(&out, &fx->pool);
	for (int i = 0; i < n; i++)
		req_pack(fx, &out, &r[i]);
	cli_send_buf(c, &out);
	iobuf_destroy(&out);
}

/* One request, its answer. */
static inline void cli_call(struct cli *c, struct fx *fx, const struct req *r,
			    struct baidu_frame *f, const char *what)
{
	cli_send_reqs(c, fx, r, 1);
	cli_frame(c, f, what);
}

/* The EchoResponse.message of a success answer, decompressed per its
 * compress_type (malloc'd). */
static inline char *answer_message(struct fx *fx, const struct baidu_frame *f,
				   const char *what)
{
	Example__EchoResponse *resp;
	struct iobuf plain;
	uint8_t *flat;
	size_t n;
	char *s;
	int err;

	iobuf_init(&plain, &fx->pool);
	err = compress_decode(f->meta.compress_type, &f->data, &plain,
			      ANSWER_MAX);
	if (err)
		fail_msg("%s: cid %" PRIu64 ": the answer does not decompress "
			 "as %s: %s",
			 what, f->meta.correlation_id,
			 compress_type_name(f->meta.compress_type),
			 strerror(-err));
	n = iobuf_len(&plain);
	flat = malloc(n ? n : 1);
	assert_non_null(flat);
	assert_int_equal(iobuf_copy_out(&plain, 0, flat, n), n);
	resp = example__echo_response__unpack(NULL, n, flat);
	if (!resp)
		fail_msg("%s: cid %" PRIu64 ": the answer is not an "
			 "EchoResponse",
			 what, f->meta.correlation_id);
	s = strdup(resp->message);
	assert_non_null(s);
	example__echo_response__free_unpacked(resp, NULL);
	free(flat);
	iobuf_destroy(&plain);
	return s;
}

static inline void iobuf_equal_bytes(const struct iobuf *b, const void *want,
				     size_t n, const char *what)
{
	uint8_t *tmp;

	if (iobuf_len(b) != n)
		fail_msg("%s: %zu bytes, want %zu", what, iobuf_len(b), n);
	tmp = malloc(n ? n : 1);
	assert_non_null(tmp);
	assert_int_equal(iobuf_copy_out(b, 0, tmp, n), n);
	if (memcmp(tmp, want, n))
		fail_msg("%s: bytes differ", what);
	free(tmp);
}

/* A success answer to cid: message (and attachment, NULL: none). */
static inline void expect_ok(struct fx *fx, const struct baidu_frame *f,
			     uint64_t cid, const char *message,
			     const char *attachment)
{
	char *got;

	if (!f->meta.has_response)
		fail_msg("cid %" PRIu64 ": no response meta", cid);
	assert_int_equal(f->meta.correlation_id, cid);
	if (f->meta.error_code)
		fail_msg("cid %" PRIu64 ": error_code %d \"%s\", want success",
			 cid, f->meta.error_code, f->meta.error_text);
	got = answer_message(fx, f, "expect_ok");
	assert_string_equal(got, message);
	free(got);
	iobuf_equal_bytes(&f->attachment, attachment ? attachment : "",
			  attachment ? strlen(attachment) : 0,
			  "answer attachment");
}

/* A failure answer to cid: code, and text exactly (NULL: only brpc's
 * "[addr][E<code>]" prefix is checked); no message, no attachment. */
static inline void expect_err(const struct baidu_frame *f, uint64_t cid,
			      int code, const char *text)
{
	char prefix[64];

	if (!f->meta.has_response)
		fail_msg("cid %" PRIu64 ": no response meta", cid);
	assert_int_equal(f->meta.correlation_id, cid);
	if (f->meta.error_code != code)
		fail_msg("cid %" PRIu64 ": error_code %d \"%s\", want %d", cid,
			 f->meta.error_code, f->meta.error_text, code);
	if (text) {
		assert_string_equal(f->meta.error_text, text);
	} else {
		snprintf(prefix, sizeof(prefix), SRV "[E%d]", code);
		if (strncmp(f->meta.error_text, prefix, strlen(prefix)))
			fail_msg("cid %" PRIu64 ": error_text \"%s\" does not "
				 "start with \"%s\"",
				 cid, f->meta.error_text, prefix);
	}
	assert_int_equal(iobuf_len(&f->data), 0);
	assert_int_equal(iobuf_len(&f->attachment), 0);
}

/* The frame of f[0..n) answering cid; fails if none. */
static inline const struct baidu_frame *by_cid(const struct baidu_frame *f,
					       int n, uint64_t cid)
{
	for (int i = 0; i < n; i++)
		if (f[i].meta.correlation_id == cid)
			return &f[i];
	fail_msg("no answer to cid %" PRIu64 " among %d", cid, n);
	return NULL;
}

static inline void release_all(struct baidu_frame *f, int n)
{
	for (int i = 0; i < n; i++)
		baidu_frame_release(&f[i]);
}

#endif
