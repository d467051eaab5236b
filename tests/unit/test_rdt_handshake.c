/*
 * test_rdt_handshake: the server side of the RDMA hello on a host without
 * RDMA (rdt_upgrade(NULL): a TCP-only port, as brpc HEAD's): every
 * client hello gets brpc's refusal, and the connection goes on as TCP
 * after ACK 0.  Bad hellos, EOFs and stalls are closed with one log line
 * that says where the handshake stood.  The RDMA side itself runs under
 * soft-RoCE in tests/rxe/test-vm.
 */
#include "server_test.h"

#include "rdt.h"
#include "rdt_hello.h"

/* Waits up to RECV_TIMEOUT_S for a log line containing `needle`. */
static void wait_log(struct fx *fx, const char *needle)
{
	for (int i = 0; i < RECV_TIMEOUT_S * 100; i++) {
		if (log_has(fx, needle))
			return;
		usleep(10000);
	}
	fail_msg("no log line with \"%s\"; log:\n%s", needle, fx->log_text);
}

static struct fx *up(void)
{
	struct fx_cfg cfg = {.upgrade = rdt_upgrade(NULL)};

	return fx_up(&cfg);
}

/* Reads exactly n bytes of answer into out. */
static void read_exact(struct cli *c, uint8_t *out, size_t n, const char *what)
{
	ssize_t r;

	while (iobuf_len(&c->in) < n) {
		r = cli_fill(c);
		if (r <= 0)
			fail_msg("%s: %zu of %zu bytes, then %s", what,
				 iobuf_len(&c->in), n,
				 r == 0 ? "EOF" : strerror((int)-r));
	}
	iobuf_copy_out(&c->in, 0, out, n);
	iobuf_drop_front(&c->in, n);
}

static void send_vector(struct cli *c, const char *name)
{
	size_t n;
	uint8_t *v = test_vector_read(name, &n);

	assert_int_equal(cli_send(c, v, n), 0);
	free(v);
}

/* The refusal brpc's TCP-only server sends, byte for byte. */
static void expect_refusal(struct cli *c)
{
	uint8_t got[RDT_HELLO_LEN], want[RDT_HELLO_LEN];
	size_t n;
	uint8_t *v = test_vector_read("rdma/brpc_tcp_server_refusal.bin", &n);

	assert_int_equal(n, sizeof(want));
	memcpy(want, v, n);
	free(v);
	read_exact(c, got, sizeof(got), "refusal hello");
	assert_memory_equal(got, want, sizeof(want));
}

/* A connection whose brpc hello got the refusal; the ACK is next. */
static void open_refused(struct cli *c, struct fx *fx)
{
	cli_open(c, fx);
	send_vector(c, "rdma/brpc_client_hello_v2.bin");
	expect_refusal(c);
}

static void send_ack(struct cli *c, uint32_t flags)
{
	uint8_t ack[RDT_ACK_LEN];

	rdt_ack_pack(flags, ack);
	assert_int_equal(cli_send(c, ack, sizeof(ack)), 0);
}

static void echo_works(struct cli *c, struct fx *fx, uint64_t cid)
{
	struct req r = {.cid = cid, .message = "after the hello"};
	struct baidu_frame f;

	cli_call(c, fx, &r, &f, "echo after the handshake");
	expect_ok(fx, &f, cid, "after the hello", NULL);
	baidu_frame_release(&f);
}

/* brpc's client hello, refusal, ACK 0, then baidu_std on the same
 * connection. */
static void test_refused_then_tcp(void **state)
{
	struct fx *fx = up();
	struct cli c;

	(void)state;
	open_refused(&c, fx);
	send_ack(&c, 0);
	echo_works(&c, fx, 1);
	echo_works(&c, fx, 2);
	cli_close(&c);
	fx_down(fx);
}

/* The ACK and the first request in one write (a client that falls back
 * sends both at once) and a hello fed one byte at a time. */
static void test_bytewise_and_ack_with_request(void **state)
{
	struct fx *fx = up();
	struct req r = {.cid = 9, .message = "glued"};
	struct iobuf out;
	uint8_t ack[RDT_ACK_LEN], *v;
	struct baidu_frame f;
	struct cli c;
	size_t n;

	(void)state;
	cli_open(&c, fx);
	v = test_vector_read("rdma/brpc_client_hello_v2.bin", &n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(cli_send(&c, v + i, 1), 0);
		if (i + 1 < n)
			cli_expect_quiet(&c, 2, "partial hello");
	}
	free(v);
	expect_refusal(&c);
	rdt_ack_pack(0, ack);
	iobuf_init(&out, &fx->pool);
	assert_int_equal(iobuf_append(&out, ack, sizeof(ack)), 0);
	req_pack(fx, &out, &r);
	cli_send_buf(&c, &out);
	iobuf_destroy(&out);
	cli_frame(&c, &f, "request glued to the ACK");
	expect_ok(fx, &f, 9, "glued", NULL);
	baidu_frame_release(&f);
	cli_close(&c);
	fx_down(fx);
}

/* A hello longer than 40 bytes (brpc HEAD allows up to 4096): the tail
 * is skipped, not read as the ACK or as RPC bytes. */
static void test_long_hello_skipped(void **state)
{
	struct fx *fx = up();
	uint8_t hello[RDT_HELLO_LEN + 24], *v;
	struct cli c;
	size_t n;

	(void)state;
	v = test_vector_read("rdma/brpc_client_hello_v2.bin", &n);
	memcpy(hello, v, n);
	free(v);
	memset(hello + RDT_HELLO_LEN, 'P', sizeof(hello) - RDT_HELLO_LEN);
	hello[5] = sizeof(hello);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, hello, sizeof(hello)), 0);
	expect_refusal(&c);
	send_ack(&c, 0);
	echo_works(&c, fx, 3);
	cli_close(&c);
	fx_down(fx);
}

/* ACK 1 after a refusal breaks the protocol: closed, logged. */
static void test_rdma_ack_after_refusal(void **state)
{
	struct fx *fx = up();
	struct cli c;

	(void)state;
	open_refused(&c, fx);
	send_ack(&c, RDT_ACK_RDMA);
	cli_expect_closed(&c, "ACK 1 after a refusal");
	cli_close(&c);
	wait_log(fx, "asked for RDMA after our refusal");
	fx_down(fx);
}

static void test_bad_msg_len(void **state)
{
	struct fx *fx = up();
	uint8_t hello[RDT_HELLO_LEN], *v;
	struct cli c;
	size_t n;

	(void)state;
	v = test_vector_read("rdma/brpc_client_hello_v2.bin", &n);
	memcpy(hello, v, n);
	free(v);
	hello[5] = 39;
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, hello, sizeof(hello)), 0);
	cli_expect_closed(&c, "msg_len 39");
	cli_close(&c);
	wait_log(fx, "its hello says msg_len 39 (40..4096 allowed)");
	fx_down(fx);
}

/* The report brpc users know as "Fail to read Hello Message from
 * client ... Got EOF", said so that it leads to the cause. */
static void test_eof_mid_hello_explained(void **state)
{
	struct fx *fx = up();
	uint8_t *v;
	struct cli c;
	size_t n;

	(void)state;
	v = test_vector_read("rdma/brpc_client_hello_v2.bin", &n);
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, v, 10), 0);
	free(v);
	cli_expect_quiet(&c, 50, "10 bytes of a hello");
	cli_close(&c);
	wait_log(fx, "rdma handshake with client 127.0.0.1:");
	wait_log(fx, "failed: the peer closed the connection");
	wait_log(fx, "waiting for the client's RDMA hello (10 of 40 bytes); "
		     "a client usually does this when its own call timed out: "
		     "check the client's thread budget and timeout_ms");
	fx_down(fx);
}

/* A client that stops mid-hello is closed at the handshake deadline. */
static void test_stalled_hello_times_out(void **state)
{
	struct fx *fx = up();
	struct cli c;
	int64_t t0;

	(void)state;
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "RDMA\0", 5), 0);
	t0 = now_ms();
	/* RECV_TIMEOUT_S (3 s) equals the deadline: wait in two rounds. */
	cli_expect_quiet(&c, RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT - 500,
			 "before the deadline");
	cli_expect_closed(&c, "stalled hello");
	assert_true(now_ms() - t0 >= RDT_HANDSHAKE_TIMEOUT_MS_DEFAULT - 50);
	cli_close(&c);
	wait_log(fx, "no progress within rdma_handshake_timeout_ms=3000");
	wait_log(fx, "(5 of 40 bytes)");
	fx_down(fx);
}

/* An upgrade port with a first-bytes deadline of FIRST_MS, as an RDMA
 * port has (rdma_handshake_timeout_ms). */
#define FIRST_MS 300

static struct fx *up_with_deadline(struct conn_upgrade *copy)
{
	struct fx_cfg cfg = {.upgrade = copy};

	*copy = *rdt_upgrade(NULL);
	copy->first_bytes_ms = FIRST_MS;
	return fx_up(&cfg);
}

/* A client that connects and says nothing is closed at the deadline,
 * with a line saying it sent nothing. */
static void test_silent_client_closed(void **state)
{
	struct conn_upgrade copy;
	struct fx *fx = up_with_deadline(&copy);
	struct cli c;
	int64_t t0 = now_ms();

	(void)state;
	cli_open(&c, fx);
	cli_expect_closed(&c, "silent client");
	assert_true(now_ms() - t0 >= FIRST_MS - 50);
	cli_close(&c);
	wait_log(fx, "was closed by the handshake deadline");
	wait_log(fx, "(0 of 40 bytes of a hello)");
	fx_down(fx);
}

/* A client that closes after 3 bytes of the magic (not yet a hello for
 * the upgrade) is logged with what it sent; a plain client that makes
 * its call before the deadline is not touched by it. */
static void test_early_eof_and_plain_client(void **state)
{
	struct conn_upgrade copy;
	struct fx *fx = up_with_deadline(&copy);
	struct cli c;

	(void)state;
	cli_open(&c, fx);
	assert_int_equal(cli_send(&c, "RDM", 3), 0);
	cli_close(&c);
	wait_log(fx, "closed the connection");
	wait_log(fx, "(3 of 40 bytes of a hello)");
	cli_open(&c, fx);
	echo_works(&c, fx, 2);
	usleep((FIRST_MS + 200) * 1000);
	echo_works(&c, fx, 2); /* still open past the deadline */
	cli_close(&c);
	fx_down(fx);
}

/* Plain baidu_std clients on the same port never see the handshake. */
static void test_plain_client_unaffected(void **state)
{
	struct fx *fx = up();
	struct cli c;

	(void)state;
	cli_open(&c, fx);
	echo_works(&c, fx, 5);
	cli_close(&c);
	fx_down(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_refused_then_tcp),
	    TEST_BOUNDED(test_bytewise_and_ack_with_request),
	    TEST_BOUNDED(test_long_hello_skipped),
	    TEST_BOUNDED(test_rdma_ack_after_refusal),
	    TEST_BOUNDED(test_bad_msg_len),
	    TEST_BOUNDED(test_eof_mid_hello_explained),
	    TEST_BOUNDED(test_stalled_hello_times_out),
	    TEST_BOUNDED(test_plain_client_unaffected),
	    TEST_BOUNDED(test_silent_client_closed),
	    TEST_BOUNDED(test_early_eof_and_plain_client),
	};

	return cmocka_run_group_tests_name("rdt_handshake", tests, NULL, NULL);
}
