/*
 * base64: RFC 4648's alphabet (section 4), and on input its URL-safe one
 * (section 5) too, as the proto3 JSON mapping reads bytes fields.
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_BASE64_H
#define RPCGATE_NET_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "base/fbuf.h"

/* Bytes of the encoding of n bytes (with padding). */
static inline size_t base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Appends the encoding of p[0..n), padded with '='. */
void base64_encode(struct fbuf *out, const uint8_t *p, size_t n);

/*
 * Appends the bytes that s[0..n) encodes: either alphabet, padding
 * optional but, when present, correct.  0, or -EINVAL (a character out of
 * the alphabet, a bad length or padding, bits set past the end); out->err
 * on a failed allocation.
 */
int base64_decode(struct fbuf *out, const char *s, size_t n);

#endif
