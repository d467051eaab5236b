/*
 * test_conn: the connection's write queue (order, integrity, no loss,
 * the EAGAIN hand-over to the loop, the loop thread's writes joined into
 * one), its read path, and closing from any thread exactly once with
 * every queued buffer released.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/conn.h"
#include "base/iobuf.h"
#include "base/loop.h"
#include "base/mem.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 120

#include "testutil.h"
#define NWRITERS   4
#define PER_WRITER 5000
#define MSG_MAX	   3000

struct fixture {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct loop loop;
	struct conn conn;
	int peer; /* the test's end of the socketpair */
	int closes;
	int close_err;
	int releases;
	size_t received; /* bytes seen by on_data */
	int tp_writes;	 /* atomic: calls of counting_tp's write */
};

/* conn_tcp, counting its writes. */
static ssize_t counting_write(struct conn *c, struct iobuf *out)
{
	struct fixture *fx = c->ctx;

	__atomic_fetch_add(&fx->tp_writes, 1, __ATOMIC_RELAXED);
	return conn_tcp.write(c, out);
}

static struct conn_transport counting_tp;

static void on_data(struct conn *c)
{
	struct fixture *fx = c->ctx;

	fx->received += iobuf_len(&c->in);
	iobuf_reset(&c->in);
}

static void on_close(struct conn *c, int err)
{
	struct fixture *fx = c->ctx;

	/* published by the release below: the test reads after it */
	fx->close_err = err;
	__atomic_fetch_add(&fx->closes, 1, __ATOMIC_RELEASE);
}

static void release(struct conn *c)
{
	struct fixture *fx = c->ctx;

	__atomic_fetch_add(&fx->releases, 1, __ATOMIC_RELEASE);
}

static const struct conn_handler handler = {
    .on_data = on_data,
    .on_close = on_close,
    .release = release,
};

static void fx_setup_h(struct fixture *fx, int sndbuf,
		       const struct conn_transport *tp,
		       const struct conn_handler *h)
{
	struct iobuf_pool_options po;
	struct loop_options lo;
	int sv[2];

	memset(fx, 0, sizeof(*fx));
	mem_failing_init(&fx->mf, -1);
	iobuf_pool_options_default(&po);
	po.mem = &fx->mf.mem;
	assert_int_equal(iobuf_pool_init(&fx->pool, &po), 0);
	loop_options_default(&lo);
	lo.mem = &fx->mf.mem;
	lo.name = "tconn";
	assert_int_equal(loop_init(&fx->loop, &lo), 0);
	assert_int_equal(loop_start(&fx->loop), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if (sndbuf)
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
			   sizeof(sndbuf));
	fx->peer = sv[1];
	assert_int_equal(conn_init(&fx->conn, sv[0], &fx->loop, tp, h, fx,
				   &fx->pool, &fx->mf.mem, NULL),
			 0);
	conn_start(&fx->conn);
}

static void fx_setup_tp(struct fixture *fx, int sndbuf,
			const struct conn_transport *tp)
{
	fx_setup_h(fx, sndbuf, tp, &handler);
}

static void fx_setup(struct fixture *fx, int sndbuf)
{
	fx_setup_tp(fx, sndbuf, &conn_tcp);
}

static void wait_released(struct fixture *fx)
{
	while (!__atomic_load_n(&fx->releases, __ATOMIC_ACQUIRE))
		usleep(1000);
}

static void fx_teardown(struct fixture *fx)
{
	loop_stop(&fx->loop);
	loop_join(&fx->loop);
	loop_destroy(&fx->loop);
	assert_int_equal(iobuf_pool_destroy(&fx->pool), 0);
	assert_int_equal(fx->mf.live, 0);
	close(fx->peer);
}

/* A message: [writer u8][seq u32][len u16] then len bytes of a pattern. */
#define HDR 7

static size_t msg_len(unsigned w, unsigned seq)
{
	return 1 + (w * 7919u + seq * 104729u) % MSG_MAX;
}

static uint8_t msg_byte(unsigned w, unsigned seq, size_t i)
{
	return (uint8_t)(w * 31 + seq * 17 + i);
}

struct writer {
	struct fixture *fx;
	unsigned id;
	int failures;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[HDR + MSG_MAX];
	struct iobuf b;

	for (unsigned seq = 0; seq < PER_WRITER; seq++) {
		size_t len = msg_len(w->id, seq);

		buf[0] = (uint8_t)w->id;
		memcpy(buf + 1, &seq, 4);
		buf[5] = (uint8_t)(len >> 8);
		buf[6] = (uint8_t)len;
		for (size_t i = 0; i < len; i++)
			buf[HDR + i] = msg_byte(w->id, seq, i);
		iobuf_init(&b, &w->fx->pool);
		assert_int_equal(iobuf_append(&b, buf, HDR + len), 0);
		if (conn_write(&w->fx->conn, &b))
			w->failures++;
		assert_int_equal(iobuf_len(&b), 0);
		iobuf_destroy(&b);
	}
	return NULL;
}

static void read_exact(int fd, void *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		assert_true(r > 0);
		p = (char *)p + r;
		n -= (size_t)r;
	}
}

/* Four threads write concurrently through a small socket buffer (so the
 * writer role keeps moving to the loop); every message arrives whole, in
 * each writer's order. */
static void test_concurrent_writers_in_order(void **state)
{
	static struct fixture fx;
	struct writer ws[NWRITERS];
	pthread_t th[NWRITERS];
	unsigned next[NWRITERS] = {0};
	uint8_t buf[HDR + MSG_MAX];

	(void)state;
	fx_setup(&fx, 4096);
	for (unsigned i = 0; i < NWRITERS; i++) {
		ws[i] = (struct writer){.fx = &fx, .id = i};
		assert_int_equal(
		    pthread_create(&th[i], NULL, writer_main, &ws[i]), 0);
	}
	for (unsigned n = 0; n < NWRITERS * PER_WRITER; n++) {
		unsigned w, seq;
		size_t len;

		read_exact(fx.peer, buf, HDR);
		w = buf[0];
		memcpy(&seq, buf + 1, 4);
		len = (size_t)buf[5] << 8 | buf[6];
		assert_true(w < NWRITERS);
		assert_int_equal(seq, next[w]);
		assert_int_equal(len, msg_len(w, seq));
		read_exact(fx.peer, buf + HDR, len);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(buf[HDR + i], msg_byte(w, seq, i));
		next[w]++;
	}
	for (unsigned i = 0; i < NWRITERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ws[i].failures, 0);
	}
	conn_close(&fx.conn, 0);
	conn_unref(&fx.conn);
	wait_released(&fx);
	assert_int_equal(fx.closes, 1);
	fx_teardown(&fx);
}

/* Bytes from the peer reach on_data; the peer's EOF closes once, with 0. */
static void test_read_path_and_eof(void **state)
{
	static struct fixture fx;
	char chunk[10000];

	(void)state;
	fx_setup(&fx, 0);
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 50; i++)
		assert_int_equal(write(fx.peer, chunk, sizeof(chunk)),
				 (ssize_t)sizeof(chunk));
	shutdown(fx.peer, SHUT_WR);
	while (!__atomic_load_n(&fx.closes, __ATOMIC_ACQUIRE))
		usleep(1000);
	assert_int_equal(fx.received, 50 * sizeof(chunk));
	assert_int_equal(fx.close_err, 0);
	conn_unref(&fx.conn);
	wait_released(&fx);
	assert_int_equal(fx.closes, 1);
	fx_teardown(&fx);
}

/* Closing while writers push and the peer reads nothing: on_close runs
 * once, later writes fail, and every queued buffer is released. */
static void test_close_while_writing_releases_all(void **state)
{
	static struct fixture fx;
	struct writer ws[NWRITERS];
	pthread_t th[NWRITERS];
	struct iobuf b;
	int failures = 0;

	(void)state;
	fx_setup(&fx, 4096);
	for (unsigned i = 0; i < NWRITERS; i++) {
		ws[i] = (struct writer){.fx = &fx, .id = i};
		assert_int_equal(
		    pthread_create(&th[i], NULL, writer_main, &ws[i]), 0);
	}
	usleep(20000);
	conn_close(&fx.conn, -ECONNABORTED);
	conn_close(&fx.conn, -EIO); /* the first close wins */
	for (unsigned i = 0; i < NWRITERS; i++) {
		pthread_join(th[i], NULL);
		failures += ws[i].failures;
	}
	iobuf_init(&b, &fx.pool);
	assert_int_equal(iobuf_append(&b, "late", 4), 0);
	assert_int_equal(conn_write(&fx.conn, &b), -ECONNABORTED);
	assert_int_equal(iobuf_len(&b), 0);
	iobuf_destroy(&b);
	conn_unref(&fx.conn);
	wait_released(&fx);
	assert_int_equal(fx.closes, 1);
	assert_int_equal(fx.close_err, -ECONNABORTED);
	assert_true(failures > 0); /* the peer never read: most could not go */
	fx_teardown(&fx);
}

/* A close that overtakes the start still closes once and frees. */
static void test_close_before_start(void **state)
{
	static struct fixture fx;
	struct iobuf_pool_options po;
	struct loop_options lo;
	int sv[2];

	(void)state;
	memset(&fx, 0, sizeof(fx));
	mem_failing_init(&fx.mf, -1);
	iobuf_pool_options_default(&po);
	po.mem = &fx.mf.mem;
	assert_int_equal(iobuf_pool_init(&fx.pool, &po), 0);
	loop_options_default(&lo);
	lo.mem = &fx.mf.mem;
	assert_int_equal(loop_init(&fx.loop, &lo), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fx.peer = sv[1];
	assert_int_equal(conn_init(&fx.conn, sv[0], &fx.loop, &conn_tcp,
				   &handler, &fx, &fx.pool, &fx.mf.mem, NULL),
			 0);
	conn_close(&fx.conn, -ECANCELED);
	conn_start(&fx.conn);
	conn_unref(&fx.conn);
	assert_int_equal(loop_start(&fx.loop), 0);
	wait_released(&fx);
	assert_int_equal(fx.closes, 1);
	assert_int_equal(fx.close_err, -ECANCELED);
	fx_teardown(&fx);
}

/* K messages of `size` bytes (16 when 0) written by one task on the
 * loop thread. */
#define BATCH_MSG_MAX (16u << 10)

struct loop_batch {
	struct task task;
	struct fixture *fx;
	unsigned k;
	size_t size;
	int close_err; /* closes the conn after writing, when not 0 */
	int failures;
	int done; /* atomic */
};

static void batch_msg(unsigned seq, uint8_t *buf, size_t size)
{
	memcpy(buf, &seq, 4);
	for (size_t i = 4; i < size; i++)
		buf[i] = (uint8_t)(seq * 13 + i);
}

static void batch_fn(struct task *t)
{
	struct loop_batch *lb = container_of(t, struct loop_batch, task);
	static uint8_t buf[BATCH_MSG_MAX];
	struct iobuf b;

	for (unsigned seq = 0; seq < lb->k; seq++) {
		batch_msg(seq, buf, lb->size);
		iobuf_init(&b, &lb->fx->pool);
		if (iobuf_append(&b, buf, lb->size) ||
		    conn_write(&lb->fx->conn, &b))
			lb->failures++;
		iobuf_destroy(&b);
	}
	/* Nothing has gone out yet: the write waits for the iteration's
	 * end, so a close now still drops everything. */
	if (lb->close_err)
		conn_close(&lb->fx->conn, lb->close_err);
	__atomic_store_n(&lb->done, 1, __ATOMIC_RELEASE);
}

static void run_batch(struct fixture *fx, struct loop_batch *lb)
{
	task_init(&lb->task, batch_fn);
	lb->fx = fx;
	if (!lb->size)
		lb->size = 16;
	loop_post(&fx->loop, &lb->task);
	while (!__atomic_load_n(&lb->done, __ATOMIC_ACQUIRE))
		usleep(1000);
}

/* Writes queued by one loop callback go out in one system call, up to
 * IOBUF_WRITE_MAX_IOV buffers or CONN_CORK_BYTES per call, whole and in
 * order. */
static void test_loop_writes_go_out_together(void **state)
{
	static struct fixture fx;
	static uint8_t got[BATCH_MSG_MAX], want[BATCH_MSG_MAX];
	const struct {
		unsigned k;
		size_t size;
		int writes;
	} cases[] = {
	    {1, 16, 1},
	    {40, 16, 1},
	    /* one buffer per message: 64, then 36 */
	    {IOBUF_WRITE_MAX_IOV + 36, 16, 2},
	    /* the cork lets go at 16 KiB: 3 x 6 KiB, 3 more, the last 2 */
	    {8, 6u << 10, 3},
	    /* a write of 16 KiB or more does not wait */
	    {1, CONN_CORK_BYTES, 1},
	};

	(void)state;
	assert_true(CONN_CORK_BYTES <= sizeof(got));
	counting_tp = conn_tcp;
	counting_tp.write = counting_write;
	fx_setup_tp(&fx, 0, &counting_tp);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct loop_batch lb = {.k = cases[i].k, .size = cases[i].size};
		int before = __atomic_load_n(&fx.tp_writes, __ATOMIC_RELAXED);

		run_batch(&fx, &lb);
		assert_int_equal(lb.failures, 0);
		for (unsigned seq = 0; seq < lb.k; seq++) {
			read_exact(fx.peer, got, lb.size);
			batch_msg(seq, want, lb.size);
			assert_memory_equal(got, want, lb.size);
		}
		assert_int_equal(
		    __atomic_load_n(&fx.tp_writes, __ATOMIC_RELAXED) - before,
		    cases[i].writes);
	}
	conn_close(&fx.conn, 0);
	conn_unref(&fx.conn);
	wait_released(&fx);
	fx_teardown(&fx);
}

/* A close in the same callback as the writes: none goes out, every
 * buffer is released, the peer sees the end of the stream. */
static void test_loop_writes_then_close(void **state)
{
	static struct fixture fx;
	struct loop_batch lb = {.k = 10, .close_err = -EIO};
	char byte;

	(void)state;
	fx_setup(&fx, 0);
	run_batch(&fx, &lb);
	assert_int_equal(lb.failures, 0);
	assert_int_equal(read(fx.peer, &byte, 1), 0);
	conn_unref(&fx.conn);
	wait_released(&fx);
	assert_int_equal(fx.closes, 1);
	assert_int_equal(fx.close_err, -EIO);
	fx_teardown(&fx);
}

/*
 * A request/answer handler: every whole UNIT bytes read is a request,
 * answered at once with UNIT bytes; a partial one waits in c->in.  It
 * notes, right after each conn_write(), how many answer bytes the peer
 * could already read: what went out while the handler still ran.
 */
#define UNIT	    8
#define MAX_ANSWERS 8

struct answer_fx {
	struct fixture fx; /* first: c->ctx points at both */
	int answers;	   /* loop thread, then read after done */
	int readable[MAX_ANSWERS];
	int done; /* atomic: answers so far, published */
};

static void answer_on_data(struct conn *c)
{
	struct answer_fx *afx = c->ctx;
	uint8_t unit[UNIT];
	struct iobuf out;
	int n;

	while (iobuf_len(&c->in) >= UNIT) {
		assert_true(afx->answers < MAX_ANSWERS);
		iobuf_copy_out(&c->in, 0, unit, UNIT);
		iobuf_drop_front(&c->in, UNIT);
		iobuf_init(&out, c->pool);
		assert_int_equal(iobuf_append(&out, unit, UNIT), 0);
		assert_int_equal(conn_write(c, &out), 0);
		iobuf_destroy(&out);
		n = (int)recv(afx->fx.peer, (uint8_t[UNIT * MAX_ANSWERS]){0},
			      UNIT * MAX_ANSWERS, MSG_PEEK | MSG_DONTWAIT);
		afx->readable[afx->answers++] = n < 0 ? 0 : n;
		__atomic_store_n(&afx->done, afx->answers, __ATOMIC_RELEASE);
	}
}

static const struct conn_handler answer_handler = {
    .on_data = answer_on_data,
    .on_close = on_close,
    .release = release,
};

static void wait_answers(struct answer_fx *afx, int n)
{
	while (__atomic_load_n(&afx->done, __ATOMIC_ACQUIRE) < n)
		usleep(1000);
}

/* Byte i of the request stream (and so of the answers) is i % 251. */
static uint8_t unit_byte(size_t i)
{
	return (uint8_t)(i % 251);
}

/* Writes bytes [off, off + len) of the request stream in one write. */
static void send_units(int fd, size_t off, size_t len)
{
	uint8_t buf[UNIT * MAX_ANSWERS];

	assert_true(len <= sizeof(buf));
	for (size_t i = 0; i < len; i++)
		buf[i] = unit_byte(off + i);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

/* Reads answers first .. first + n - 1: each its request's bytes. */
static void expect_units(int fd, unsigned first, unsigned n)
{
	uint8_t got[UNIT * MAX_ANSWERS];

	assert_true(n * UNIT <= sizeof(got));
	read_exact(fd, got, n * UNIT);
	for (size_t i = 0; i < n * UNIT; i++)
		assert_int_equal(got[i], unit_byte(first * UNIT + i));
}

/*
 * The answer that uses up a read goes out before on_data returns (the
 * rest of the callback then overlaps the peer's wake-up); answers with
 * more of the read still to handle, or a partial request left in the
 * input, wait for the end of the iteration and go out together.
 */
static void test_read_answer_goes_out_at_once(void **state)
{
	static struct answer_fx afx;
	int writes;

	(void)state;
	memset(&afx, 0, sizeof(afx));
	counting_tp = conn_tcp;
	counting_tp.write = counting_write;
	fx_setup_h(&afx.fx, 0, &counting_tp, &answer_handler);

	/* One request: its answer is out while the handler runs. */
	send_units(afx.fx.peer, 0, UNIT);
	wait_answers(&afx, 1);
	assert_int_equal(afx.readable[0], UNIT);
	expect_units(afx.fx.peer, 0, 1);

	/* Three in one read: the first two wait, the third takes all. */
	writes = __atomic_load_n(&afx.fx.tp_writes, __ATOMIC_RELAXED);
	send_units(afx.fx.peer, UNIT, 3 * UNIT);
	wait_answers(&afx, 4);
	assert_int_equal(afx.readable[1], 0);
	assert_int_equal(afx.readable[2], 0);
	assert_int_equal(afx.readable[3], 3 * UNIT);
	assert_int_equal(
	    __atomic_load_n(&afx.fx.tp_writes, __ATOMIC_RELAXED) - writes, 1);
	expect_units(afx.fx.peer, 1, 3);

	/* A request and half of the next: its answer waits for the end of
	 * the iteration; the rest of the second answers at once. */
	send_units(afx.fx.peer, 4 * UNIT, UNIT + UNIT / 2);
	wait_answers(&afx, 5);
	assert_int_equal(afx.readable[4], 0);
	expect_units(afx.fx.peer, 4, 1);
	send_units(afx.fx.peer, 5 * UNIT + UNIT / 2, UNIT / 2);
	wait_answers(&afx, 6);
	assert_int_equal(afx.readable[5], UNIT);
	expect_units(afx.fx.peer, 5, 1);

	conn_close(&afx.fx.conn, 0);
	conn_unref(&afx.fx.conn);
	wait_released(&afx.fx);
	fx_teardown(&afx.fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_concurrent_writers_in_order),
	    cmocka_unit_test(test_read_path_and_eof),
	    cmocka_unit_test(test_close_while_writing_releases_all),
	    cmocka_unit_test(test_close_before_start),
	    cmocka_unit_test(test_loop_writes_go_out_together),
	    cmocka_unit_test(test_loop_writes_then_close),
	    cmocka_unit_test(test_read_answer_goes_out_at_once),
	};

	return cmocka_run_group_tests_name("conn", tests, test_alarm_arm, NULL);
}
