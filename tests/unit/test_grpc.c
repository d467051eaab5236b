/*
 * grpc codec tests (net/codec/grpc.c): the message prefix over split
 * buffers, grpc-timeout's units and rounding, grpc-message's
 * percent-encoding both ways (and truncation), the status tables against
 * brpc's src/brpc/grpc.cpp (spec/brpc-wire.md 5).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/baidu_std.h"
#include "codec/grpc.h"
#include "codec/rpc_errno.h"

#define TEST_TIMEOUT_S 60
#include "testutil.h"
#include "baidu_test.h"

static void test_msg_peek(void **state)
{
	struct iobuf_pool pool;
	struct iobuf b;
	struct grpc_msg m;
	uint8_t p[GRPC_PREFIX_LEN];

	pool_up(&pool, NULL, 4, 0);
	iobuf_init(&b, &pool);
	grpc_msg_prefix(p, true, 3);
	assert_memory_equal(p, "\x01\x00\x00\x00\x03", 5);
	/* the prefix arrives in two pieces, then the bytes */
	assert_int_equal(iobuf_append(&b, p, 2), 0);
	assert_int_equal(grpc_msg_peek(&b, 0, 100, &m), 0);
	assert_int_equal(iobuf_append(&b, p + 2, 3), 0);
	assert_int_equal(grpc_msg_peek(&b, 0, 100, &m), 0);
	assert_int_equal(iobuf_append(&b, "abc", 3), 0);
	assert_int_equal(grpc_msg_peek(&b, 0, 100, &m), 1);
	assert_true(m.compressed);
	assert_int_equal(m.len, 3);
	/* a second message behind it, at its offset */
	grpc_msg_prefix(p, false, 0);
	assert_int_equal(iobuf_append(&b, p, 5), 0);
	assert_int_equal(grpc_msg_peek(&b, 8, 100, &m), 1);
	assert_false(m.compressed);
	assert_int_equal(m.len, 0);
	/* over the limit, a bad flag */
	assert_int_equal(grpc_msg_peek(&b, 0, 2, &m), -EMSGSIZE);
	iobuf_reset(&b);
	assert_int_equal(iobuf_append(&b, "\x02\x00\x00\x00\x00", 5), 0);
	assert_int_equal(grpc_msg_peek(&b, 0, 100, &m), -EPROTO);
	/* the largest length */
	iobuf_reset(&b);
	grpc_msg_prefix(p, false, UINT32_MAX);
	assert_int_equal(iobuf_append(&b, p, 5), 0);
	assert_int_equal(grpc_msg_peek(&b, 0, UINT32_MAX, &m), 0);
	assert_int_equal(m.len, UINT32_MAX);
	iobuf_destroy(&b);
	pool_down(&pool);
}

/* grpc_msg_put: the message moved behind its prefix, two in a row. */
static void test_msg_put(void **state)
{
	struct iobuf_pool pool;
	struct iobuf q, msg;
	struct grpc_msg m;
	char out[16];

	pool_up(&pool, NULL, 4, 0);
	iobuf_init(&q, &pool);
	iobuf_init(&msg, &pool);
	assert_int_equal(iobuf_append(&msg, "abc", 3), 0);
	assert_int_equal(grpc_msg_put(&q, true, &msg), 0);
	assert_true(iobuf_empty(&msg));
	assert_int_equal(iobuf_append(&msg, "de", 2), 0);
	assert_int_equal(grpc_msg_put(&q, false, &msg), 0);
	assert_int_equal(iobuf_len(&q), 2 * GRPC_PREFIX_LEN + 5);
	assert_int_equal(grpc_msg_peek(&q, 0, 100, &m), 1);
	assert_true(m.compressed);
	assert_int_equal(m.len, 3);
	assert_int_equal(grpc_msg_peek(&q, 8, 100, &m), 1);
	assert_false(m.compressed);
	assert_int_equal(m.len, 2);
	iobuf_copy_out(&q, 13, out, 2);
	assert_memory_equal(out, "de", 2);
	iobuf_destroy(&q);
	iobuf_destroy(&msg);
	pool_down(&pool);
}

static void test_timeout(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
	    {"1H", 3600000},	{"2M", 120000}, {"3S", 3000},
	    {"250m", 250},	{"1u", 1},	{"1500u", 2},
	    {"1000000n", 1},	{"1n", 1},	{"99999999m", 99999999},
	    {"99999999H", INT32_MAX}, {"0m", 0},
	};
	static const char *const bad[] = {
	    "", "m", "10", "10x", "-1m", "123456789m", "1.5S", " 1m",
	};
	char out[GRPC_TIMEOUT_TEXT];
	int64_t ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ms = -1;
		assert_int_equal(grpc_timeout_parse(ok[i].s, strlen(ok[i].s),
						    &ms),
				 0);
		assert_int_equal(ms, ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(
		    grpc_timeout_parse(bad[i], strlen(bad[i]), &ms), -EINVAL);
	grpc_timeout_format(250, out);
	assert_string_equal(out, "250m");
	grpc_timeout_format(0, out);
	assert_string_equal(out, "1m");
	grpc_timeout_format(100000000, out);
	assert_string_equal(out, "100000S");
	/* what it writes reads back no shorter */
	for (int64_t v = 1; v < INT32_MAX / 3; v = v * 3 + 1) {
		grpc_timeout_format(v, out);
		assert_int_equal(grpc_timeout_parse(out, strlen(out), &ms), 0);
		assert_true(ms >= v);
	}
}

static void test_message(void **state)
{
	char out[64], back[64];
	const char text[] = "bad: 100% \xe2\x9c\x93\n";
	size_t n;

	n = grpc_message_encode(text, strlen(text), out, sizeof(out));
	assert_string_equal(out, "bad: 100%25 %E2%9C%93%0A");
	assert_int_equal(n, strlen(out));
	assert_int_equal(grpc_message_decode(out, n, back), strlen(text));
	assert_string_equal(back, text);
	/* no room: the count is the whole, the text stops before an
	 * escape it cannot hold */
	assert_int_equal(grpc_message_encode(text, strlen(text), out, 11),
			 n);
	assert_string_equal(out, "bad: 100");
	assert_int_equal(grpc_message_encode(text, strlen(text), NULL, 0), n);
	/* bad escapes stay as they are; in place works */
	strcpy(back, "%zz%4");
	assert_int_equal(grpc_message_decode(back, 5, back), 5);
	assert_string_equal(back, "%zz%4");
	strcpy(back, "a%41b");
	assert_int_equal(grpc_message_decode(back, 5, back), 3);
	assert_string_equal(back, "aAb");
}

static void test_status_tables(void **state)
{
	/* brpc's ErrorCodeToGrpcStatus */
	assert_int_equal(grpc_status_from_rpc(0), GRPC_OK);
	assert_int_equal(grpc_status_from_rpc(RPC_ENOSERVICE),
			 GRPC_UNIMPLEMENTED);
	assert_int_equal(grpc_status_from_rpc(RPC_ENOMETHOD),
			 GRPC_UNIMPLEMENTED);
	assert_int_equal(grpc_status_from_rpc(RPC_ERPCAUTH),
			 GRPC_UNAUTHENTICATED);
	assert_int_equal(grpc_status_from_rpc(RPC_EREQUEST),
			 GRPC_INVALID_ARGUMENT);
	assert_int_equal(grpc_status_from_rpc(EINVAL), GRPC_INVALID_ARGUMENT);
	assert_int_equal(grpc_status_from_rpc(RPC_ELIMIT),
			 GRPC_RESOURCE_EXHAUSTED);
	assert_int_equal(grpc_status_from_rpc(RPC_ELOGOFF), GRPC_UNAVAILABLE);
	assert_int_equal(grpc_status_from_rpc(EPERM), GRPC_PERMISSION_DENIED);
	assert_int_equal(grpc_status_from_rpc(RPC_ERPCTIMEDOUT),
			 GRPC_DEADLINE_EXCEEDED);
	assert_int_equal(grpc_status_from_rpc(ECANCELED), GRPC_CANCELLED);
	assert_int_equal(grpc_status_from_rpc(ETIMEDOUT), GRPC_INTERNAL);
	assert_int_equal(grpc_status_from_rpc(RPC_EINTERNAL), GRPC_INTERNAL);
	/* rpcgate's: a broken upstream is UNAVAILABLE */
	assert_int_equal(grpc_status_from_rpc(RPC_EFAILEDSOCKET),
			 GRPC_UNAVAILABLE);
	/* brpc's GrpcStatusToErrorCode */
	assert_int_equal(grpc_status_to_rpc(GRPC_OK), 0);
	assert_int_equal(grpc_status_to_rpc(GRPC_DEADLINE_EXCEEDED),
			 RPC_ERPCTIMEDOUT);
	assert_int_equal(grpc_status_to_rpc(GRPC_UNIMPLEMENTED),
			 RPC_ENOMETHOD);
	assert_int_equal(grpc_status_to_rpc(GRPC_RESOURCE_EXHAUSTED),
			 RPC_ELIMIT);
	assert_int_equal(grpc_status_to_rpc(GRPC_UNAUTHENTICATED),
			 RPC_ERPCAUTH);
	assert_int_equal(grpc_status_to_rpc(GRPC_INVALID_ARGUMENT), EINVAL);
	assert_int_equal(grpc_status_to_rpc(GRPC_PERMISSION_DENIED), EPERM);
	assert_int_equal(grpc_status_to_rpc(GRPC_CANCELLED), ECANCELED);
	assert_int_equal(grpc_status_to_rpc(GRPC_ALREADY_EXISTS), EEXIST);
	assert_int_equal(grpc_status_to_rpc(GRPC_DATA_LOSS), RPC_EINTERNAL);
	assert_int_equal(grpc_status_to_rpc(GRPC_UNAVAILABLE),
			 RPC_EFAILEDSOCKET);
	assert_string_equal(grpc_status_name(GRPC_UNAUTHENTICATED),
			    "UNAUTHENTICATED");
	assert_string_equal(grpc_status_name(99), "UNKNOWN");
	assert_string_equal(grpc_status_name(-1), "UNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_msg_peek),
	    TEST_BOUNDED(test_msg_put),
	    TEST_BOUNDED(test_timeout),
	    TEST_BOUNDED(test_message),
	    TEST_BOUNDED(test_status_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
