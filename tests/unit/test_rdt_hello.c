/*
 * test_rdt_hello: brpc's v2 RDMA hello and ACK (rdma/rdt_hello.h) against
 * the bytes recorded from brpc in ../shared/vectors/rdma.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#define TEST_TIMEOUT_S 10
#include "testutil.h"

#include "rdt_hello.h"

static void read_hello(const char *name, uint8_t out[RDT_HELLO_LEN])
{
	size_t n;
	uint8_t *v = test_vector_read(name, &n);

	assert_int_equal(n, RDT_HELLO_LEN);
	memcpy(out, v, n);
	free(v);
}

static void test_brpc_client_hello(void **state)
{
	static const uint8_t gid[16] = {0xfe, 0xc0, 0,	  0,	0,    0,
					0,    0,    0x50, 0x54, 0x00, 0xff,
					0xfe, 0x12, 0x34, 0x56};
	uint8_t v[RDT_HELLO_LEN], again[RDT_HELLO_LEN];
	struct rdt_hello h;
	char text[160];

	(void)state;
	read_hello("rdma/brpc_client_hello_v2.bin", v);
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), 0);
	assert_int_equal(h.msg_len, 40);
	assert_int_equal(h.hello_ver, 2);
	assert_int_equal(h.impl_ver, 1);
	assert_int_equal(h.block_size, 8160);
	assert_int_equal(h.sq_size, 128);
	assert_int_equal(h.rq_size, 128);
	assert_int_equal(h.lid, 0);
	assert_memory_equal(h.gid, gid, 16);
	assert_int_equal(h.qp_num, 32);
	assert_true(rdt_hello_negotiable(&h));
	/* Packing what was read gives brpc's bytes back. */
	rdt_hello_pack(&h, again);
	assert_memory_equal(again, v, sizeof(v));
	rdt_hello_describe(&h, text, sizeof(text));
	assert_string_equal(text, "ver 2/1 block 8160 sq 128 rq 128 lid 0 "
				  "gid fec0::5054:ff:fe12:3456 qpn 32");
}

static void test_brpc_server_hello(void **state)
{
	uint8_t v[RDT_HELLO_LEN], again[RDT_HELLO_LEN];
	struct rdt_hello h;

	(void)state;
	read_hello("rdma/brpc_server_hello_v2.bin", v);
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), 0);
	assert_true(rdt_hello_negotiable(&h));
	rdt_hello_pack(&h, again);
	assert_memory_equal(again, v, sizeof(v));
}

/* Our refusals are brpc's, byte for byte, and a client reads them as
 * "use TCP". */
static void test_refusals(void **state)
{
	uint8_t v[RDT_HELLO_LEN], mine[RDT_HELLO_LEN];
	struct rdt_hello h;

	(void)state;
	read_hello("rdma/brpc_tcp_server_refusal.bin", v);
	rdt_hello_refusal(&h, true);
	rdt_hello_pack(&h, mine);
	assert_memory_equal(mine, v, sizeof(v));
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), 0);
	assert_int_equal(h.hello_ver, RDT_HELLO_VER_TCP_PORT);
	assert_false(rdt_hello_negotiable(&h));

	read_hello("rdma/brpc_server_refusal_bad_version.bin", v);
	rdt_hello_refusal(&h, false);
	rdt_hello_pack(&h, mine);
	assert_memory_equal(mine, v, sizeof(v));
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), 0);
	assert_int_equal(h.hello_ver, 0);
	assert_false(rdt_hello_negotiable(&h));
}

/* Fewer bytes than a hello: the magic decides as soon as it can. */
static void test_partial_and_bad_magic(void **state)
{
	uint8_t v[RDT_HELLO_LEN], bad[RDT_HELLO_LEN];
	struct rdt_hello h;

	(void)state;
	read_hello("rdma/brpc_client_hello_v2.bin", v);
	for (size_t n = 0; n < RDT_HELLO_LEN; n++)
		assert_int_equal(rdt_hello_parse(v, n, &h), -EAGAIN);
	for (size_t i = 0; i < 4; i++) {
		memcpy(bad, v, sizeof(bad));
		bad[i] ^= 0x20; /* "rDMA", "RdMA", ... */
		for (size_t n = i + 1; n <= RDT_HELLO_LEN; n++)
			assert_int_equal(rdt_hello_parse(bad, n, &h), -EPROTO);
	}
	/* brpc HEAD's v3 magic is not ours. */
	memcpy(bad, v, sizeof(bad));
	memcpy(bad, "RDM3", 4);
	assert_int_equal(rdt_hello_parse(bad, sizeof(bad), &h), -EPROTO);
}

static void test_msg_len(void **state)
{
	uint8_t v[RDT_HELLO_LEN];
	struct rdt_hello h;

	(void)state;
	read_hello("rdma/brpc_client_hello_v2.bin", v);
	v[4] = 0;
	v[5] = 39;
	assert_int_equal(rdt_hello_parse(v, 6, &h), -EPROTO);
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), -EPROTO);
	v[4] = 0x10; /* 4097 */
	v[5] = 0x01;
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), -EPROTO);
	v[5] = 0x00; /* 4096: longer hellos are read, their tail skipped */
	assert_int_equal(rdt_hello_parse(v, sizeof(v), &h), 0);
	assert_int_equal(h.msg_len, 4096);
	assert_int_equal(h.qp_num, 32);
}

/* Spec 2.3's acceptance test, each bound on both sides. */
static void test_negotiable_bounds(void **state)
{
	static const struct rdt_hello base = {.msg_len = 40,
					      .hello_ver = 2,
					      .impl_ver = 1,
					      .block_size = 1024,
					      .sq_size = 16,
					      .rq_size = 16};
	struct rdt_hello bad[5];

	(void)state;
	assert_true(rdt_hello_negotiable(&base));
	for (size_t i = 0; i < 5; i++)
		bad[i] = base;
	bad[0].block_size = 1023;
	bad[1].sq_size = 15;
	bad[2].rq_size = 15;
	bad[3].hello_ver = 3;
	bad[4].impl_ver = 2;
	for (size_t i = 0; i < 5; i++)
		assert_false(rdt_hello_negotiable(&bad[i]));
}

static void test_ack(void **state)
{
	uint8_t b[RDT_ACK_LEN];
	static const uint8_t one[RDT_ACK_LEN] = {0, 0, 0, 1};

	(void)state;
	rdt_ack_pack(RDT_ACK_RDMA, b);
	assert_memory_equal(b, one, sizeof(b));
	assert_int_equal(rdt_ack_parse(b), RDT_ACK_RDMA);
	rdt_ack_pack(0, b);
	assert_int_equal(rdt_ack_parse(b), 0);
	b[0] = 0x80;
	b[3] = 0x01; /* other bits are not ours to judge */
	assert_int_equal(rdt_ack_parse(b) & RDT_ACK_RDMA, RDT_ACK_RDMA);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_brpc_client_hello),
	    TEST_BOUNDED(test_brpc_server_hello),
	    TEST_BOUNDED(test_refusals),
	    TEST_BOUNDED(test_partial_and_bad_magic),
	    TEST_BOUNDED(test_msg_len),
	    TEST_BOUNDED(test_negotiable_bounds),
	    TEST_BOUNDED(test_ack),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
