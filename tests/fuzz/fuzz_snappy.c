/*
 * fuzz_snappy: the raw snappy decoder on arbitrary bytes, and the encoder
 * on arbitrary bytes.  Checks:
 * - decoding never reads or writes out of bounds (ASan; input and output
 *   buffers are exactly sized) and answers a length, -EBADMSG or -EMSGSIZE;
 * - a length is answered only when it is the stated one, and a cap one
 *   byte short of it gives -EMSGSIZE;
 * - whatever decodes re-encodes and decodes back to the same bytes;
 * - the input itself, compressed, fits the bound and decodes to itself.
 */
// fuzz-sources: net/codec/snappy.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/snappy.h"

/* Largest output decoded per input: keeps each run fast and small. */
#define FUZZ_MAX_OUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Compresses p[0, n) and checks it decodes to itself. */
static void roundtrip(const uint8_t *p, size_t n)
{
	size_t cap = snappy_max_compressed_length(n), len;
	uint8_t *c = malloc(cap), *d = malloc(n ? n : 1);
	ssize_t r;

	if (!c || !d)
		abort();
	r = snappy_compress(p, n, c, cap);
	if (r <= 0 || (size_t)r > cap)
		abort();
	if (snappy_uncompressed_length(c, (size_t)r, &len) || len != n)
		abort();
	if (snappy_decompress(c, (size_t)r, d, n) != (ssize_t)n ||
	    memcmp(d, p, n) != 0)
		abort();
	free(d);
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len;
	uint8_t *out;
	ssize_t r;

	roundtrip(data, size);

	if (snappy_uncompressed_length(data, size, &len)) {
		if (snappy_decompress(data, size, NULL, 0) != -EBADMSG)
			abort();
		return 0;
	}
	if (len > FUZZ_MAX_OUT) {
		if (snappy_decompress(data, size, NULL, FUZZ_MAX_OUT) !=
		    -EMSGSIZE)
			abort();
		return 0;
	}
	out = malloc(len ? len : 1);
	if (!out)
		abort();
	r = snappy_decompress(data, size, out, len);
	if (r != -EBADMSG && r != (ssize_t)len)
		abort();
	if (len && snappy_decompress(data, size, out, len - 1) != -EMSGSIZE)
		abort();
	if (r >= 0)
		roundtrip(out, len);
	free(out);
	return 0;
}
