/*
 * fuzz_rpc_msg: the message part of a baidu_std body as the server and
 * the channel decode it (net/codec/rpc_msg.h): rpc_msg_verify() then
 * rpc_msg_decode() as example.EchoRequest, on arbitrary bytes cut into
 * many refs.  The first input byte picks the compress type (0..5: the
 * four codecs, LZ4, an unknown value), the second whether a CRC32C is
 * claimed and whether it is right.  Checks:
 * - decode answers 0, -EBADMSG, -EMSGSIZE or -EPROTONOSUPPORT;
 * - a decoded message re-encodes with the same compress type and decodes
 *   back to the same message;
 * - a right CRC32C verifies, a wrong one is -EBADMSG;
 * - every block goes back to the pool, every allocation is freed.
 */
// fuzz-sources: net/codec/rpc_msg.c net/codec/pbuf.c net/codec/compress.c net/codec/snappy.c net/codec/crc32c.c net/codec/baidu_std.c net/codec/baidu_meta.c net/base/iobuf.c net/base/mem.c build/gen/app/proto/echo.pb-c.c build/gen/net/codec/proto/baidu_rpc_meta.pb-c.c /usr/lib/x86_64-linux-gnu/libprotobuf-c.a
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "codec/pbuf.h"
#include "codec/rpc_msg.h"

#define FUZZ_MAX_OUT (64u * 1024)
#define FUZZ_PIECE_MAX 61
#define FUZZ_TYPES 6

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fill(struct iobuf *b, const uint8_t *p, size_t n, unsigned seed)
{
	struct iobuf piece;
	size_t k;

	/* Separate appends in separate iobufs make separate refs. */
	while (n) {
		k = 1 + (seed = seed * 1103515245u + 12345u) % FUZZ_PIECE_MAX;
		if (k > n)
			k = n;
		iobuf_init(&piece, b->pool);
		if (iobuf_append(&piece, p, k) || iobuf_append_buf(b, &piece))
			abort();
		iobuf_destroy(&piece);
		p += k;
		n -= k;
	}
}

static void check_checksum(struct iobuf_pool *pool, struct iobuf *body,
			   unsigned mode)
{
	struct baidu_frame f;
	uint8_t value[4];
	int err;

	memset(&f, 0, sizeof(f));
	f.data = *body;
	iobuf_init(&f.attachment, pool);
	f.meta.checksum_type = BAIDU_CHECKSUM_CRC32C;
	if (rpc_msg_checksum(body, NULL, value))
		abort();
	if (mode & 2)
		value[mode % 4] ^= 0x40;
	f.meta.checksum_value.ptr = value;
	f.meta.checksum_value.len = sizeof(value);
	err = rpc_msg_verify(&f);
	if (err != ((mode & 2) ? -EBADMSG : 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *d = &example__echo_request__descriptor;
	struct iobuf_pool pool;
	ProtobufCMessage *m = NULL, *again = NULL;
	struct iobuf body, re;
	int type, err;
	unsigned mode;

	if (size < 2)
		return 0;
	type = data[0] % FUZZ_TYPES;
	mode = data[1];
	if (iobuf_pool_init(&pool, NULL))
		abort();
	iobuf_init(&body, &pool);
	iobuf_init(&re, &pool);
	fill(&body, data + 2, size - 2, mode);
	if (mode & 1)
		check_checksum(&pool, &body, mode);

	err = rpc_msg_decode(d, type, &body, FUZZ_MAX_OUT, NULL, &m);
	if (err && err != -EBADMSG && err != -EMSGSIZE &&
	    err != -EPROTONOSUPPORT)
		abort();
	if (!err) {
		const char *msg = ((Example__EchoRequest *)m)->message;

		if (rpc_msg_encode(m, type, &re) ||
		    rpc_msg_decode(d, type, &re, SIZE_MAX, NULL, &again) ||
		    strcmp(msg, ((Example__EchoRequest *)again)->message))
			abort();
	}
	pbuf_free(m, NULL);
	pbuf_free(again, NULL);
	iobuf_destroy(&body);
	iobuf_destroy(&re);
	if (iobuf_pool_destroy(&pool))
		abort();
	return 0;
}
