/*
 * fuzz_grpc: gRPC's framing codec (net/codec/grpc.c) on arbitrary bytes.
 * The first byte cuts the rest in two (at byte % size): the first part
 * is a stream of length-prefixed messages, read from an iobuf split at
 * every message; the second is tried as a grpc-timeout value and as a
 * grpc-message text.  Checks: no crash, no read past the input (ASan);
 * a message's length never passes the limit and its bytes are all
 * there when peek says so; the same verdict whether the bytes come in one
 * piece or two; a timeout is never negative and reads back, formatted,
 * no shorter; encode then decode gives the text back, and a truncated
 * encode is a prefix of the whole.
 */
// fuzz-sources: net/codec/grpc.c net/codec/rpc_errno.c net/base/iobuf.c net/base/mem.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/grpc.h"

#define MAX_MSG 4096

static struct iobuf_pool pool;

static void frames(const uint8_t *p, size_t n, size_t cut)
{
	struct iobuf one, two;
	size_t off = 0;

	iobuf_init(&one, &pool);
	iobuf_init(&two, &pool);
	if (iobuf_append(&one, p, n) || iobuf_append(&two, p, cut) ||
	    iobuf_append(&two, p + cut, n - cut))
		abort();
	for (;;) {
		struct grpc_msg a, b;
		int r = grpc_msg_peek(&one, off, MAX_MSG, &a);

		if (r != grpc_msg_peek(&two, off, MAX_MSG, &b))
			abort();
		if (r < 0 && r != -EPROTO && r != -EMSGSIZE)
			abort();
		if (r == 1) {
			if (a.len != b.len || a.compressed != b.compressed ||
			    a.len > MAX_MSG ||
			    off + GRPC_PREFIX_LEN + a.len > n)
				abort();
			off += GRPC_PREFIX_LEN + a.len;
			continue;
		}
		break;
	}
	iobuf_destroy(&one);
	iobuf_destroy(&two);
}

static void timeout(const uint8_t *p, size_t n)
{
	char out[GRPC_TIMEOUT_TEXT];
	int64_t ms, back;

	if (grpc_timeout_parse((const char *)p, n, &ms))
		return;
	if (ms < 0 || ms > INT32_MAX)
		abort();
	if (!ms)
		return;
	grpc_timeout_format(ms, out);
	if (grpc_timeout_parse(out, strlen(out), &back) || back < ms)
		abort();
}

static void message(const uint8_t *p, size_t n)
{
	size_t need = grpc_message_encode((const char *)p, n, NULL, 0);
	char *enc = malloc(need + 1), *dec = malloc(need + 1), small[16];

	if (!enc || !dec)
		abort();
	if (grpc_message_encode((const char *)p, n, enc, need + 1) != need ||
	    strlen(enc) != need)
		abort();
	/* the escapes hold only printable ASCII */
	for (size_t i = 0; i < need; i++)
		if ((uint8_t)enc[i] < 0x20 || (uint8_t)enc[i] > 0x7e)
			abort();
	if (grpc_message_decode(enc, need, dec) != n || memcmp(dec, p, n))
		abort();
	grpc_message_encode((const char *)p, n, small, sizeof(small));
	if (strncmp(small, enc, strlen(small)))
		abort();
	free(enc);
	free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool up;
	size_t cut;

	if (!up) {
		struct iobuf_pool_options po;

		iobuf_pool_options_default(&po);
		if (iobuf_pool_init(&pool, &po))
			abort();
		up = true;
	}
	if (size < 1)
		return 0;
	cut = size > 1 ? data[0] % (size - 1) : 0;
	frames(data + 1, cut, cut / 2);
	timeout(data + 1 + cut, size - 1 - cut);
	message(data + 1 + cut, size - 1 - cut);
	return 0;
}
