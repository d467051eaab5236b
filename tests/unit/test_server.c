/*
 * test_server: the server (net/server.h) serving the echo service
 * (app/echo.h) over real loopback TCP, driven by plain blocking sockets:
 *
 *   - every recorded brpc exchange in ../shared/vectors/baidu_std, written
 *     whole and one byte at a time, answered as brpc answered it (meta
 *     fields, exact error texts, decoded messages, attachments);
 *   - bytes of no known protocol, bodies over max_body_size: closed, no
 *     answer, no wait for the body;
 *   - max_concurrency (ELIMIT), authentication (spec 1.7), graceful stop
 *     (ELOGOFF, no call lost), CRC32C checksums, ENOSERVICE vs ENOMETHOD
 *     (spec 1.8) and brpc's error texts.
 *
 * Every test sets up its own rt (1 loop, 2 workers), iobuf pool and server
 * (addr_text "127.0.0.1:8100", the recorded server's, so error texts match
 * byte for byte), runs under an alarm, and ends with the server, rt and
 * pool down, every block back in the pool and no live allocation in its
 * counting allocator (ASan's leak check covers the rest).
 */
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

#include "baidu_std.h"
#include "compress.h"
#include "echo.h"
#include "echo.pb-c.h"
#include "iobuf.h"
#include "log.h"
#include "mem.h"
#include "rpc_errno.h"
#include "rpc_msg.h"
#include "rt.h"
#include "server.h"

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
/* The slow echo of the concurrency and stop tests. */
#define SLOW_MS 300
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

static void log_sink(void *ctx, const char *line, size_t len)
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

static bool log_has(struct fx *fx, const char *needle)
{
	bool found;

	pthread_mutex_lock(&fx->log_lock);
	found = strstr(fx->log_text, needle) != NULL;
	pthread_mutex_unlock(&fx->log_lock);
	return found;
}

static struct fx *fx_up(const struct fx_cfg *cfg)
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
	assert_int_equal(server_init(&fx->srv, &so), 0);
	fx->echo.sleep_ms = cfg->sleep_ms;
	fx->echo.on_workers = cfg->on_workers;
	assert_int_equal(echo_service_add(&fx->srv, &fx->echo), 0);
	fx->port = server_listen(&fx->srv, "127.0.0.1", 0);
	assert_true(fx->port > 0);
	assert_int_equal(server_start(&fx->srv), 0);
	g_fx_up = true;
	return fx;
}

static void fx_down(struct fx *fx)
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
static int fx_cleanup(void **state)
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

static int64_t now_ms(void)
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
static void settled_stats(struct fx *fx, struct server_stats *st)
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
static int cli_try_open(struct cli *c, struct fx *fx)
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

static void cli_open(struct cli *c, struct fx *fx)
{
	int err = cli_try_open(c, fx);

	if (err)
		fail_msg("connect to port %d: %s", fx->port, strerror(-err));
}

static void cli_close(struct cli *c)
{
	close(c->fd);
	iobuf_destroy(&c->in);
}

/* All n bytes: 0, or -errno (EPIPE, ECONNRESET once the server closed). */
static int cli_send(struct cli *c, const void *p, size_t n)
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
static void cli_send_buf(struct cli *c, struct iobuf *b)
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
static ssize_t cli_fill(struct cli *c)
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
static void cli_frame(struct cli *c, struct baidu_frame *f, const char *what)
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
static int cli_frames_until_close(struct cli *c, struct baidu_frame *f, int max,
				  const char *what)
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
static void cli_expect_closed(struct cli *c, const char *what)
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
static void cli_expect_quiet(struct cli *c, int ms, const char *what)
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
static void req_pack(struct fx *fx, struct iobuf *out, const struct req *r)
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
static void cli_send_reqs(struct cli *c, struct fx *fx, const struct req *r,
			  int n)
{
	struct iobuf out;

	iobuf_init(&out, &fx->pool);
	for (int i = 0; i < n; i++)
		req_pack(fx, &out, &r[i]);
	cli_send_buf(c, &out);
	iobuf_destroy(&out);
}

/* One request, its answer. */
static void cli_call(struct cli *c, struct fx *fx, const struct req *r,
		     struct baidu_frame *f, const char *what)
{
	cli_send_reqs(c, fx, r, 1);
	cli_frame(c, f, what);
}

/* The EchoResponse.message of a success answer, decompressed per its
 * compress_type (malloc'd). */
static char *answer_message(struct fx *fx, const struct baidu_frame *f,
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

static void iobuf_equal_bytes(const struct iobuf *b, const void *want, size_t n,
			      const char *what)
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
static void expect_ok(struct fx *fx, const struct baidu_frame *f, uint64_t cid,
		      const char *message, const char *attachment)
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
static void expect_err(const struct baidu_frame *f, uint64_t cid, int code,
		       const char *text)
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
static const struct baidu_frame *by_cid(const struct baidu_frame *f, int n,
					uint64_t cid)
{
	for (int i = 0; i < n; i++)
		if (f[i].meta.correlation_id == cid)
			return &f[i];
	fail_msg("no answer to cid %" PRIu64 " among %d", cid, n);
	return NULL;
}

static void release_all(struct baidu_frame *f, int n)
{
	for (int i = 0; i < n; i++)
		baidu_frame_release(&f[i]);
}

/* ---- 1, 2: brpc's recorded exchanges -------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Every NAME of NAME.c2s in the vectors folder, each with its NAME.s2c. */
static int vec_names(char names[][VEC_NAME_MAX], int max)
{
	char dir[4096], path[4200];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/baidu_std", test_vectors_dir());
	d = opendir(dir);
	if (!d)
		fail_msg("cannot list %s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (len <= 4 || strcmp(e->d_name + len - 4, ".c2s"))
			continue;
		assert_true(len - 4 < VEC_NAME_MAX);
		assert_true(n < max);
		memcpy(names[n], e->d_name, len - 4);
		names[n][len - 4] = '\0';
		snprintf(path, sizeof(path), "%s/%s.s2c", dir, names[n]);
		if (access(path, R_OK))
			fail_msg("%s.c2s has no readable .s2c: %s", names[n],
				 strerror(errno));
		n++;
	}
	closedir(d);
	qsort(names, (size_t)n, VEC_NAME_MAX, name_cmp);
	return n;
}

/* One answer against brpc's: meta, text, attachment, decoded message. */
static void frame_compare(struct fx *fx, const char *name,
			  const struct baidu_frame *w,
			  const struct baidu_frame *g)
{
	const struct baidu_meta *wm = &w->meta, *gm = &g->meta;
	uint64_t cid = wm->correlation_id;
	char what[128];

	if (!gm->has_response)
		fail_msg("%s: cid %" PRIu64 ": no response meta", name, cid);
	if (gm->error_code != wm->error_code)
		fail_msg("%s: cid %" PRIu64 ": error_code %d \"%s\", want %d "
			 "\"%s\"",
			 name, cid, gm->error_code, gm->error_text,
			 wm->error_code, wm->error_text);
	if (strcmp(gm->error_text, wm->error_text))
		fail_msg("%s: cid %" PRIu64 ": error_text\n  \"%s\", want\n  "
			 "\"%s\"",
			 name, cid, gm->error_text, wm->error_text);
	if (gm->compress_type != wm->compress_type)
		fail_msg("%s: cid %" PRIu64 ": compress_type %d, want %d", name,
			 cid, gm->compress_type, wm->compress_type);
	if (iobuf_len(&g->attachment) != iobuf_len(&w->attachment))
		fail_msg("%s: cid %" PRIu64 ": attachment of %zu bytes, want "
			 "%zu",
			 name, cid, iobuf_len(&g->attachment),
			 iobuf_len(&w->attachment));
	if (iobuf_len(&w->attachment)) {
		uint8_t *tmp = malloc(iobuf_len(&w->attachment));

		assert_non_null(tmp);
		iobuf_copy_out(&w->attachment, 0, tmp,
			       iobuf_len(&w->attachment));
		snprintf(what, sizeof(what), "%s: attachment", name);
		iobuf_equal_bytes(&g->attachment, tmp,
				  iobuf_len(&w->attachment), what);
		free(tmp);
	}
	if (iobuf_len(&w->data) == 0) {
		if (iobuf_len(&g->data))
			fail_msg("%s: cid %" PRIu64 ": %zu message bytes, want "
				 "none",
				 name, cid, iobuf_len(&g->data));
	} else {
		char *want = answer_message(fx, w, name);
		char *got = answer_message(fx, g, name);

		if (strcmp(got, want))
			fail_msg("%s: cid %" PRIu64 ": message \"%s\", want "
				 "\"%s\"",
				 name, cid, got, want);
		free(want);
		free(got);
	}
}

/*
 * Writes NAME.c2s on a new connection (whole, or one byte at a time with
 * TCP_NODELAY and pauses) and checks the answers against NAME.s2c: the
 * same frames, matched by correlation_id, then nothing more (the client
 * half-closes and the server must close without another byte).  An empty
 * .s2c: the server closes without a byte.
 */
static void run_vector(struct fx *fx, const char *name, bool bytewise)
{
	struct baidu_frame want[VEC_FRAMES_MAX], got[VEC_FRAMES_MAX];
	bool used[VEC_FRAMES_MAX] = {false};
	uint8_t *c2s, *s2c;
	size_t c2s_len, s2c_len;
	char file[VEC_NAME_MAX + 8], what[VEC_NAME_MAX + 32];
	struct iobuf exp;
	struct cli c;
	int nwant = 0, r, err;

	snprintf(what, sizeof(what), "%s%s", name,
		 bytewise ? " (bytewise)" : "");
	snprintf(file, sizeof(file), "%s.c2s", name);
	c2s = test_vector_read(file, &c2s_len);
	snprintf(file, sizeof(file), "%s.s2c", name);
	s2c = test_vector_read(file, &s2c_len);
	iobuf_init(&exp, &fx->pool);
	assert_int_equal(iobuf_append(&exp, s2c, s2c_len), 0);
	while (iobuf_len(&exp)) {
		assert_true(nwant < VEC_FRAMES_MAX);
		r = baidu_parse(&exp, &want[nwant], NULL);
		if (r <= 0)
			fail_msg("%s.s2c: frame %d does not parse: %d", name,
				 nwant, r);
		nwant++;
	}

	cli_open(&c, fx);
	if (!bytewise) {
		err = cli_send(&c, c2s, c2s_len);
		/* The server may close before all of a bad stream is in. */
		if (err &&
		    !(nwant == 0 && (err == -EPIPE || err == -ECONNRESET)))
			fail_msg("%s: send: %s", what, strerror(-err));
	} else {
		for (size_t i = 0; i < c2s_len; i++) {
			err = cli_send(&c, c2s + i, 1);
			if (err && nwant == 0 &&
			    (err == -EPIPE || err == -ECONNRESET))
				break;
			if (err)
				fail_msg("%s: send byte %zu: %s", what, i,
					 strerror(-err));
			usleep(i % 8 == 7 ? 2000 : 100);
		}
	}

	if (nwant == 0) {
		cli_expect_closed(&c, what);
	} else {
		for (int i = 0; i < nwant; i++)
			cli_frame(&c, &got[i], what);
		/* Answers may come in any order: match by correlation_id. */
		for (int i = 0; i < nwant; i++) {
			int j;

			for (j = 0; j < nwant; j++)
				if (!used[j] && got[j].meta.correlation_id ==
						    want[i].meta.correlation_id)
					break;
			if (j == nwant)
				fail_msg("%s: no answer to cid %" PRIu64, what,
					 want[i].meta.correlation_id);
			used[j] = true;
			frame_compare(fx, what, &want[i], &got[j]);
		}
		assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
		cli_expect_closed(&c, what);
		release_all(got, nwant);
	}
	release_all(want, nwant);
	cli_close(&c);
	iobuf_destroy(&exp);
	free(c2s);
	free(s2c);
}

static void vectors_all(bool on_workers, bool bytewise)
{
	static char names[VEC_MAX][VEC_NAME_MAX];
	struct fx_cfg cfg = {.on_workers = on_workers};
	struct fx *fx = fx_up(&cfg);
	int n = vec_names(names, VEC_MAX);

	/* The README lists 15 cases; fewer means a broken folder. */
	if (n < 15)
		fail_msg("only %d vector pairs found", n);
	for (int i = 0; i < n; i++)
		run_vector(fx, names[i], bytewise);
	fx_down(fx);
}

/* 1. Every recorded exchange, inline handler. */
static void test_vectors(void **state)
{
	vectors_all(false, false);
}

/* 1b. The same with the handler on task workers. */
static void test_vectors_on_workers(void **state)
{
	vectors_all(true, false);
}

/* 2. Every recorded exchange delivered one byte at a time. */
static void test_vectors_bytewise(void **state)
{
	vectors_all(false, true);
}

/* ---- 3: protocol detection ------------------------------------------ */

/* Bytes of no protocol: closed, no answer, counted in closed_bad. */
static void test_unknown_protocol(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct server_stats before, after;
	struct cli c;

	server_stats(&fx->srv, &before);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "QQQQ1234", 8), 0);
	cli_expect_closed(&c, "QQQQ1234");
	cli_close(&c);
	server_stats(&fx->srv, &after);
	assert_int_equal(after.closed_bad, before.closed_bad + 1);
	assert_int_equal(after.calls, before.calls);
	assert_true(log_has(fx, "unknown protocol"));
	fx_down(fx);
}

/* Fewer than 4 bytes, all of the magic: wait; the rest decides. */
static void test_partial_magic_waits(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r = {.cid = 7, .message = "late"};
	struct server_stats st;
	struct baidu_frame f;
	struct iobuf out;
	uint8_t *flat;
	size_t n;
	struct cli c;

	/* "PRP" then the rest of a valid request: answered. */
	iobuf_init(&out, &fx->pool);
	req_pack(fx, &out, &r);
	n = iobuf_len(&out);
	flat = malloc(n);
	assert_non_null(flat);
	iobuf_copy_out(&out, 0, flat, n);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, flat, 3), 0);
	cli_expect_quiet(&c, 200, "PRP");
	assert_int_equal(cli_send(&c, flat + 3, n - 3), 0);
	cli_frame(&c, &f, "PRP + rest");
	expect_ok(fx, &f, 7, "late", NULL);
	baidu_frame_release(&f);
	cli_close(&c);

	/* "PR" then "X": closed. */
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "PR", 2), 0);
	cli_expect_quiet(&c, 200, "PR");
	assert_int_equal(cli_send(&c, "X", 1), 0);
	cli_expect_closed(&c, "PRX");
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.closed_bad, 1);

	free(flat);
	iobuf_destroy(&out);
	fx_down(fx);
}

/* ---- 4: max_body_size ------------------------------------------------ */

#define SMALL_BODY 1024

/* body_size == max_body_size is allowed (brpc closes only above it). */
static void test_body_at_limit_served(void **state)
{
	struct fx_cfg cfg = {.max_body_size = SMALL_BODY};
	struct fx *fx = fx_up(&cfg);
	char *msg = malloc(SMALL_BODY + 1);
	struct baidu_frame f;
	struct iobuf out;
	struct cli c;
	size_t len;

	assert_non_null(msg);
	/* Find the message length that makes body_size exactly the limit. */
	iobuf_init(&out, &fx->pool);
	for (len = SMALL_BODY - 64; len < SMALL_BODY; len++) {
		struct req r = {.cid = 1, .message = msg};

		memset(msg, 'a', len);
		msg[len] = '\0';
		iobuf_reset(&out);
		req_pack(fx, &out, &r);
		if (iobuf_len(&out) - BAIDU_HEADER_LEN == SMALL_BODY)
			break;
	}
	assert_int_equal(iobuf_len(&out) - BAIDU_HEADER_LEN, SMALL_BODY);
	cli_open(&c, fx);
	cli_send_buf(&c, &out);
	cli_frame(&c, &f, "body at the limit");
	expect_ok(fx, &f, 1, msg, NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	iobuf_destroy(&out);
	free(msg);
	fx_down(fx);
}

/* body_size over the limit: closed on the header alone, no answer. */
static void test_oversize_closed_without_body(void **state)
{
	struct fx_cfg cfg = {.max_body_size = SMALL_BODY};
	struct fx *fx = fx_up(&cfg);
	uint8_t hdr[BAIDU_HEADER_LEN] = {'P', 'R', 'P', 'C'};
	struct server_stats before, after;
	struct cli c;
	int64_t t0;

	put32(hdr + 4, SMALL_BODY + 1);
	put32(hdr + 8, 20);
	server_stats(&fx->srv, &before);
	cli_open(&c, fx);
	t0 = now_ms();
	/* Only the header: a server waiting for the body would time out. */
	assert_int_equal(cli_send(&c, hdr, sizeof(hdr)), 0);
	cli_expect_closed(&c, "body_size over max_body_size");
	assert_true(now_ms() - t0 < RECV_TIMEOUT_S * 1000);
	cli_close(&c);
	server_stats(&fx->srv, &after);
	assert_int_equal(after.closed_bad, before.closed_bad + 1);
	assert_int_equal(after.calls, before.calls);

	/* A huge one on a fresh connection: the same. */
	put32(hdr + 4, 0xfffffff0u);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, hdr, sizeof(hdr)), 0);
	cli_expect_closed(&c, "body_size 0xfffffff0");
	cli_close(&c);
	fx_down(fx);
}

/* ---- 5: max_concurrency ---------------------------------------------- */

static void test_max_concurrency(void **state)
{
	struct fx_cfg cfg = {.max_concurrency = 1, .sleep_ms = SLOW_MS};
	struct fx *fx = fx_up(&cfg);
	struct req two[2] = {{.cid = 1, .message = "first"},
			     {.cid = 2, .message = "second"}};
	struct req r3 = {.cid = 3, .message = "third"};
	struct req r4 = {.cid = 4, .message = "fourth"};
	struct req r5 = {.cid = 5, .message = "fifth"};
	struct baidu_frame f[2], g;
	struct server_stats st;
	struct cli a, b;

	/* Two on one connection, one write: the second is over the limit
	 * and answered at once, before the first's delayed answer. */
	cli_open(&a, fx);
	cli_send_reqs(&a, fx, two, 2);
	cli_frame(&a, &f[0], "first answer");
	cli_frame(&a, &f[1], "second answer");
	expect_err(&f[0], 2, RPC_ELIMIT,
		   SRV "[E2004]Reached server's max_concurrency=1");
	expect_ok(fx, &f[1], 1, "first", NULL);
	release_all(f, 2);

	/* One in flight on connection a, one more on connection b. */
	settled_stats(fx, &st);
	cli_open(&b, fx);
	cli_send_reqs(&a, fx, &r3, 1);
	usleep(50 * 1000);
	cli_call(&b, fx, &r4, &g, "over the limit on another connection");
	expect_err(&g, 4, RPC_ELIMIT, NULL);
	baidu_frame_release(&g);
	cli_frame(&a, &g, "third");
	expect_ok(fx, &g, 3, "third", NULL);
	baidu_frame_release(&g);

	/* The slot is free again. */
	settled_stats(fx, &st);
	cli_call(&b, fx, &r5, &g, "after the limit cleared");
	expect_ok(fx, &g, 5, "fifth", NULL);
	baidu_frame_release(&g);
	settled_stats(fx, &st);
	assert_int_equal(st.errors, 2);
	cli_close(&a);
	cli_close(&b);
	fx_down(fx);
}

/* ---- 6: authentication ----------------------------------------------- */

/* Accepts only "secret"; "silent" is refused without a reason. */
static int auth_secret(void *arg, const struct baidu_bytes *cred,
		       const char *peer, char *why, size_t why_size)
{
	struct fx *fx = arg;

	__atomic_fetch_add(&fx->auth_calls, 1, __ATOMIC_RELAXED);
	if (!cred || !cred->ptr) {
		snprintf(why, why_size, "no credential");
		return -EACCES;
	}
	if (cred->len == 6 && !memcmp(cred->ptr, "silent", 6))
		return -EACCES;
	if (cred->len != 6 || memcmp(cred->ptr, "secret", 6)) {
		snprintf(why, why_size, "wrong credential");
		return -EACCES;
	}
	return 0;
}

/* error_text ends with `tail` (brpc's own text, whatever prefix). */
static void expect_auth_refused(const struct baidu_frame *f, uint64_t cid,
				const char *tail)
{
	size_t n = strlen(f->meta.error_text), t = strlen(tail);

	assert_true(f->meta.has_response);
	assert_int_equal(f->meta.correlation_id, cid);
	assert_int_equal(f->meta.error_code, RPC_ERPCAUTH);
	if (n < t || strcmp(f->meta.error_text + n - t, tail))
		fail_msg("ERPCAUTH text \"%s\" does not end with \"%s\"",
			 f->meta.error_text, tail);
	assert_int_equal(iobuf_len(&f->data), 0);
}

static void test_auth(void **state)
{
	struct fx_cfg cfg = {.auth = auth_secret};
	struct fx *fx = fx_up(&cfg);
	struct req none_then_good[2] = {
	    {.cid = 11, .message = "x"},
	    {.cid = 12, .message = "y", .auth = "secret"},
	};
	struct req wrong = {.cid = 21, .message = "x", .auth = "wrong"};
	struct req silent = {.cid = 41, .message = "x", .auth = "silent"};
	struct req good[3] = {
	    {.cid = 31, .message = "one", .auth = "secret"},
	    {.cid = 32, .message = "two"},
	    {.cid = 33, .message = "three", .auth = "wrong"},
	};
	struct baidu_frame f[FRAMES_MAX];
	struct server_stats st;
	struct cli c;
	int n;

	/* No credential on the first request: ERPCAUTH, then closed; the
	 * request behind it (with the right credential) is not served. */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, none_then_good, 2);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "no credential");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 11, "Fail to authenticate: no credential");
	release_all(f, n);
	cli_close(&c);

	/* A wrong one: the same. */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &wrong, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "wrong credential");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 21,
			    "Fail to authenticate: wrong credential");
	release_all(f, n);
	cli_close(&c);

	/* Refused without a reason: no ": ". */
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &silent, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "silent refusal");
	assert_int_equal(n, 1);
	expect_auth_refused(&f[0], 41, "Fail to authenticate");
	release_all(f, n);
	cli_close(&c);

	/* The right one first: served, and so is everything after it on
	 * that connection, credential or not (verified once). */
	__atomic_store_n(&fx->auth_calls, 0, __ATOMIC_RELAXED);
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, good, 1);
	cli_frame(&c, &f[0], "authenticated");
	expect_ok(fx, &f[0], 31, "one", NULL);
	cli_send_reqs(&c, fx, good + 1, 2);
	cli_frame(&c, &f[1], "after authentication");
	cli_frame(&c, &f[2], "after authentication");
	expect_ok(fx, by_cid(f, 3, 32), 32, "two", NULL);
	expect_ok(fx, by_cid(f, 3, 33), 33, "three", NULL);
	release_all(f, 3);
	assert_int_equal(__atomic_load_n(&fx->auth_calls, __ATOMIC_RELAXED), 1);
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.closed_bad, 0);
	fx_down(fx);
}

/*
 * brpc writes the ERPCAUTH answer itself (VerifyRpcRequest builds the
 * RpcMeta and writes it), not through Controller::SetFailed, so its
 * error_text is bare "Fail to authenticate" [": " text], without the
 * "[addr][E1004]" prefix of other errors (spec 1.7).
 */
static void test_auth_error_text_is_brpc_s(void **state)
{
	struct fx_cfg cfg = {.auth = auth_secret};
	struct fx *fx = fx_up(&cfg);
	struct req none = {.cid = 51, .message = "x"};
	struct req silent = {.cid = 52, .message = "x", .auth = "silent"};
	struct baidu_frame f[FRAMES_MAX];
	struct cli c;
	int n;

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &none, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "no credential");
	assert_int_equal(n, 1);
	assert_int_equal(f[0].meta.error_code, RPC_ERPCAUTH);
	assert_string_equal(f[0].meta.error_text,
			    "Fail to authenticate: no credential");
	release_all(f, n);
	cli_close(&c);

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, &silent, 1);
	n = cli_frames_until_close(&c, f, FRAMES_MAX, "silent");
	assert_int_equal(n, 1);
	assert_string_equal(f[0].meta.error_text, "Fail to authenticate");
	release_all(f, n);
	cli_close(&c);
	fx_down(fx);
}

/* ---- 7: graceful stop ------------------------------------------------ */

struct stopper {
	struct server *srv;
	int delay_ms;
	int grace_ms;
	int ret;
};

static void *stopper_main(void *arg)
{
	struct stopper *st = arg;

	usleep((useconds_t)st->delay_ms * 1000);
	st->ret = server_stop(st->srv, st->grace_ms);
	return NULL;
}

/* Waits until the listener is gone (connect refused): the stop began. */
static void wait_listener_closed(struct fx *fx)
{
	int64_t deadline = now_ms() + RECV_TIMEOUT_S * 1000;
	struct cli probe;
	int err;

	for (;;) {
		err = cli_try_open(&probe, fx);
		if (err == -ECONNREFUSED)
			return;
		if (err)
			fail_msg("probe connect: %s", strerror(-err));
		cli_close(&probe);
		if (now_ms() > deadline)
			fail_msg("the listener still accepts %d s after "
				 "server_stop",
				 RECV_TIMEOUT_S);
		usleep(5 * 1000);
	}
}

#define STOP_CALLS 5

static void graceful_stop(bool on_workers)
{
	struct fx_cfg cfg = {.sleep_ms = SLOW_MS, .on_workers = on_workers};
	struct fx *fx = fx_up(&cfg);
	struct stopper stopper = {
	    .srv = &fx->srv, .delay_ms = 50, .grace_ms = 5000, .ret = -1};
	struct req r[STOP_CALLS + 1];
	char msgs[STOP_CALLS + 1][32];
	struct baidu_frame f[FRAMES_MAX];
	struct server_stats st;
	pthread_t th;
	struct cli c;
	int n;

	for (int i = 0; i <= STOP_CALLS; i++) {
		snprintf(msgs[i], sizeof(msgs[i]), "call-%d", i + 1);
		r[i] = (struct req){.cid = (uint64_t)i + 1, .message = msgs[i]};
	}
	cli_open(&c, fx);
	cli_send_reqs(&c, fx, r, STOP_CALLS);
	assert_int_equal(pthread_create(&th, NULL, stopper_main, &stopper), 0);
	wait_listener_closed(fx);
	/* The 5 calls are still in their handlers (no answer yet), so the
	 * connection is open: a new request must be refused. */
	cli_expect_quiet(&c, 0, "calls in flight during the stop");
	cli_send_reqs(&c, fx, &r[STOP_CALLS], 1);

	n = cli_frames_until_close(&c, f, FRAMES_MAX, "graceful stop");
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(stopper.ret, 0);
	for (int i = 0; i < STOP_CALLS; i++)
		expect_ok(fx, by_cid(f, n, (uint64_t)i + 1), (uint64_t)i + 1,
			  msgs[i], NULL);
	/* The late one: ELOGOFF, or (allowed) the connection closed
	 * before it was read. */
	if (n == STOP_CALLS + 1)
		expect_err(by_cid(f, n, STOP_CALLS + 1), STOP_CALLS + 1,
			   RPC_ELOGOFF, SRV "[E2003]Server is stopping");
	else
		assert_int_equal(n, STOP_CALLS);
	release_all(f, n);
	cli_close(&c);
	server_stats(&fx->srv, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.connections, 0);
	fx_down(fx);
}

static void test_graceful_stop(void **state)
{
	graceful_stop(false);
}

static void test_graceful_stop_on_workers(void **state)
{
	graceful_stop(true);
}

/* ---- 8: checksums ---------------------------------------------------- */

static void test_checksum(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req right = {.cid = 1, .message = "crc", .ck = CK_RIGHT};
	struct req wrong = {.cid = 2, .message = "crc", .ck = CK_WRONG};
	struct req gz_right = {.cid = 3,
			       .message = "gzipped crc",
			       .compress = COMPRESS_GZIP,
			       .ck = CK_RIGHT,
			       .attachment = "att"};
	struct req gz_plain = {.cid = 4,
			       .message = "gzipped crc",
			       .compress = COMPRESS_GZIP,
			       .ck = CK_OVER_PLAIN};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &right, &f, "right CRC32C");
	expect_ok(fx, &f, 1, "crc", NULL);
	/* checksum_answers is off: the answer carries none. */
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_NONE);
	baidu_frame_release(&f);

	/* "crc" encodes to 5 bytes: 0a 03 'c' 'r' 'c'. */
	cli_call(&c, fx, &wrong, &f, "wrong CRC32C");
	expect_err(&f, 2, RPC_EREQUEST,
		   SRV "[E1003]Fail to parse request=example.EchoRequest, "
		       "ContentType=pb, CompressType=none, "
		       "ChecksumType=crc32c, request_size=5");
	baidu_frame_release(&f);

	/* The CRC covers the bytes as sent, i.e. compressed. */
	cli_call(&c, fx, &gz_right, &f, "CRC32C of gzip bytes");
	expect_ok(fx, &f, 3, "gzipped crc", "att");
	baidu_frame_release(&f);
	cli_call(&c, fx, &gz_plain, &f, "CRC32C of the uncompressed bytes");
	expect_err(&f, 4, RPC_EREQUEST, NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* checksum_answers: answers to requests with a CRC carry a right one. */
static void test_checksum_answers(void **state)
{
	struct fx_cfg cfg = {.checksum_answers = true};
	struct fx *fx = fx_up(&cfg);
	struct req with = {.cid = 1,
			   .message = "sum me",
			   .ck = CK_RIGHT,
			   .compress = COMPRESS_ZLIB,
			   .attachment = "a"};
	struct req without = {.cid = 2, .message = "plain"};
	struct baidu_frame f;
	uint8_t ck[4];
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &with, &f, "request with a CRC");
	expect_ok(fx, &f, 1, "sum me", "a");
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_CRC32C);
	assert_int_equal(f.meta.checksum_value.len, 4);
	assert_int_equal(rpc_msg_checksum(&f.data, NULL, ck), 0);
	assert_memory_equal(f.meta.checksum_value.ptr, ck, 4);
	assert_int_equal(rpc_msg_verify(&f), 0);
	baidu_frame_release(&f);
	cli_call(&c, fx, &without, &f, "request without a CRC");
	expect_ok(fx, &f, 2, "plain", NULL);
	assert_int_equal(f.meta.checksum_type, BAIDU_CHECKSUM_NONE);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* ---- 9: service and method lookup ------------------------------------ */

static void test_service_lookup(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r[] = {
	    {.cid = 1, .service = "EchoService", .message = "short"},
	    {.cid = 2, .service = "NoSuch", .message = "x"},
	    {.cid = 3, .service = "example.NoSuch", .message = "x"},
	    {.cid = 4,
	     .service = "example.EchoService",
	     .method = "Nope",
	     .message = "x"},
	    {.cid = 5, .service = "example.EchoService", .message = "full"},
	};
	struct baidu_frame f[5];
	struct cli c;

	cli_open(&c, fx);
	cli_send_reqs(&c, fx, r, 5);
	for (int i = 0; i < 5; i++)
		cli_frame(&c, &f[i], "lookups");
	expect_ok(fx, by_cid(f, 5, 1), 1, "short", NULL);
	expect_err(by_cid(f, 5, 2), 2, RPC_ENOSERVICE,
		   SRV "[E1001]Fail to find service=NoSuch");
	expect_err(by_cid(f, 5, 3), 3, RPC_ENOMETHOD,
		   SRV "[E1002]Fail to find method=example.NoSuch/Echo");
	expect_err(by_cid(f, 5, 4), 4, RPC_ENOMETHOD,
		   SRV "[E1002]Fail to find method=example.EchoService/Nope");
	expect_ok(fx, by_cid(f, 5, 5), 5, "full", NULL);
	release_all(f, 5);
	cli_close(&c);
	fx_down(fx);
}

/*
 * A known short service name with an unknown method: ENOMETHOD, and brpc
 * prints the service name as the request sent it
 * (request_meta.service_name() in ProcessRpcRequest), not the full name
 * it looked the method up with.
 */
static void test_enomethod_text_keeps_short_name(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	struct req r = {.cid = 9,
			.service = "EchoService",
			.method = "Nope",
			.message = "x"};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "short service, unknown method");
	expect_err(&f, 9, RPC_ENOMETHOD,
		   SRV "[E1002]Fail to find method=EchoService/Nope");
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* ---- brpc's other request checks ------------------------------------- */

/*
 * attachment_size larger than the data: EREQUEST, and the connection
 * stays in sync (the next request is served).
 */
static void test_bad_attachment_size(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	/* Hand-made: meta {request{service, method}, correlation_id 5,
	 * attachment_size 9} and 3 data bytes. */
	static const uint8_t meta[] = {
	    0x0a, 0x1b, 0x0a, 0x13, 'e', 'x', 'a', 'm',	 'p',  'l',  'e',
	    '.',  'E',	'c',  'h',  'o', 'S', 'e', 'r',	 'v',  'i',  'c',
	    'e',  0x12, 0x04, 'E',  'c', 'h', 'o', 0x20, 0x05, 0x28, 0x09,
	};
	uint8_t frame[BAIDU_HEADER_LEN + sizeof(meta) + 3] = {'P', 'R', 'P',
							      'C'};
	struct req next = {.cid = 6, .message = "still in sync"};
	struct baidu_frame f;
	struct cli c;

	put32(frame + 4, sizeof(meta) + 3);
	put32(frame + 8, sizeof(meta));
	memcpy(frame + BAIDU_HEADER_LEN, meta, sizeof(meta));
	memcpy(frame + BAIDU_HEADER_LEN + sizeof(meta), "abc", 3);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, frame, sizeof(frame)), 0);
	cli_frame(&c, &f, "attachment_size > data");
	expect_err(&f, 5, RPC_EREQUEST,
		   SRV "[E1003]attachment_size=9 is larger than "
		       "request_size=3");
	baidu_frame_release(&f);
	cli_call(&c, fx, &next, &f, "after a bad attachment_size");
	expect_ok(fx, &f, 6, "still in sync", NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/*
 * EREQUEST's request_size is the whole payload, attachment included:
 * brpc takes msg->payload.size() before cutting the attachment off.
 */
static void test_erequest_size_counts_attachment(void **state)
{
	struct fx_cfg cfg = {0};
	struct fx *fx = fx_up(&cfg);
	static const uint8_t junk[] = {0xff, 0xff, 0xff};
	struct req r = {.cid = 8,
			.raw = junk,
			.raw_len = sizeof(junk),
			.attachment = "xyz"};
	struct baidu_frame f;
	struct cli c;

	cli_open(&c, fx);
	cli_call(&c, fx, &r, &f, "bad body with an attachment");
	expect_err(&f, 8, RPC_EREQUEST,
		   SRV "[E1003]Fail to parse request=example.EchoRequest, "
		       "ContentType=pb, CompressType=none, "
		       "ChecksumType=none, request_size=6");
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* Many connections, many pipelined calls, answers all accounted. */
static void test_many_connections(void **state)
{
	enum { NCONN = 8, PER = 20 };
	struct fx_cfg cfg = {.on_workers = true};
	struct fx *fx = fx_up(&cfg);
	struct cli c[NCONN];
	struct req r[PER];
	char msgs[PER][32];
	struct baidu_frame f[PER];
	struct server_stats st;

	for (int k = 0; k < NCONN; k++)
		cli_open(&c[k], fx);
	for (int k = 0; k < NCONN; k++) {
		for (int i = 0; i < PER; i++) {
			snprintf(msgs[i], sizeof(msgs[i]), "c%d-m%d", k, i);
			r[i] = (struct req){.cid = (uint64_t)k << 32 | i,
					    .message = msgs[i],
					    .compress = i % 4};
		}
		cli_send_reqs(&c[k], fx, r, PER);
	}
	for (int k = 0; k < NCONN; k++) {
		for (int i = 0; i < PER; i++)
			cli_frame(&c[k], &f[i], "many connections");
		for (int i = 0; i < PER; i++) {
			char want[32];
			uint64_t cid = (uint64_t)k << 32 | i;
			const struct baidu_frame *g = by_cid(f, PER, cid);

			snprintf(want, sizeof(want), "c%d-m%d", k, i);
			expect_ok(fx, g, cid, want, NULL);
			assert_int_equal(g->meta.compress_type, i % 4);
		}
		release_all(f, PER);
	}
	for (int k = 0; k < NCONN; k++)
		cli_close(&c[k]);
	settled_stats(fx, &st);
	assert_int_equal(st.calls, NCONN * PER);
	assert_int_equal(st.errors, 0);
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_SERVER(test_vectors),
	    TEST_SERVER(test_vectors_on_workers),
	    TEST_SERVER(test_vectors_bytewise),
	    TEST_SERVER(test_unknown_protocol),
	    TEST_SERVER(test_partial_magic_waits),
	    TEST_SERVER(test_body_at_limit_served),
	    TEST_SERVER(test_oversize_closed_without_body),
	    TEST_SERVER(test_max_concurrency),
	    TEST_SERVER(test_auth),
	    TEST_SERVER(test_auth_error_text_is_brpc_s),
	    TEST_SERVER(test_graceful_stop),
	    TEST_SERVER(test_graceful_stop_on_workers),
	    TEST_SERVER(test_checksum),
	    TEST_SERVER(test_checksum_answers),
	    TEST_SERVER(test_service_lookup),
	    TEST_SERVER(test_enomethod_text_keeps_short_name),
	    TEST_SERVER(test_bad_attachment_size),
	    TEST_SERVER(test_erequest_size_counts_attachment),
	    TEST_SERVER(test_many_connections),
	};

	/* TEST_FILTER=test_auth* runs only the tests matching the pattern. */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
