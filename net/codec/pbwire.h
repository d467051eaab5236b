/*
 * pbwire: the Protocol Buffers wire format, read and written by hand, for
 * the codecs that work without generated code (descriptor sets, JSON
 * transcoding, the RpcMeta fast path).  Header only; no state.
 *
 * A message is a sequence of fields; a field is a varint key (number << 3
 * | wire type) and a value:
 *
 *   wire type 0  VARINT  7 bits a byte, least significant first, at most
 *                        10 bytes (int32, int64, uint32, uint64, sint32,
 *                        sint64 zigzagged, bool, enum)
 *   wire type 1  I64     8 bytes little-endian (fixed64, sfixed64, double)
 *   wire type 2  LEN     a varint length, then that many bytes (string,
 *                        bytes, messages, packed repeated scalars)
 *   wire type 5  I32     4 bytes little-endian (fixed32, sfixed32, float)
 *
 * Groups (wire types 3 and 4) are refused: proto2's deprecated form, never
 * written by protoc for a field it does not mark as one.
 *
 * Readers return 0 or -EBADMSG (truncated, overlong, a bad wire type) and
 * never read past `end`.  Writers write into a buffer the caller sized
 * with the *_size() functions, or into a struct fbuf that grows.
 */
#ifndef RPCGATE_NET_PBWIRE_H
#define RPCGATE_NET_PBWIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/fbuf.h"

enum pbw_wire {
	PBW_VARINT = 0,
	PBW_I64 = 1,
	PBW_LEN = 2,
	PBW_I32 = 5,
};

/* Field numbers are 1 .. 2^29 - 1 (19000-19999 reserved, still legal on
 * the wire). */
#define PBW_MAX_FIELD ((1u << 29) - 1)

/* The longest varint: 64 bits in 7-bit groups. */
#define PBW_VARINT_MAX 10

struct pbw_rd {
	const uint8_t *p, *end;
};

static inline void pbw_rd_init(struct pbw_rd *r, const void *p, size_t n)
{
	r->p = p;
	r->end = n ? (const uint8_t *)p + n : r->p; /* p may be NULL */
}

static inline bool pbw_rd_more(const struct pbw_rd *r)
{
	return r->p < r->end;
}

static inline int pbw_get_varint(struct pbw_rd *r, uint64_t *v)
{
	uint64_t x = 0;

	if (r->p < r->end && !(*r->p & 0x80)) {
		*v = *r->p++;
		return 0;
	}
	for (unsigned i = 0; i < PBW_VARINT_MAX; i++) {
		uint8_t b;

		if (r->p == r->end)
			return -EBADMSG;
		b = *r->p++;
		if (i == 9 && b > 1)
			return -EBADMSG;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -EBADMSG;
}

/* A key: its field number (>= 1) and wire type (0, 1, 2 or 5). */
static inline int pbw_get_key(struct pbw_rd *r, uint32_t *num, uint32_t *wt)
{
	uint64_t k;

	if (pbw_get_varint(r, &k) || k > UINT32_MAX || (k >> 3) == 0)
		return -EBADMSG;
	*num = (uint32_t)(k >> 3);
	*wt = (uint32_t)(k & 7);
	if (*wt != PBW_VARINT && *wt != PBW_I64 && *wt != PBW_LEN &&
	    *wt != PBW_I32)
		return -EBADMSG;
	return 0;
}

static inline int pbw_get_fixed32(struct pbw_rd *r, uint32_t *v)
{
	if (r->end - r->p < 4)
		return -EBADMSG;
	*v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 |
	     (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
	r->p += 4;
	return 0;
}

static inline int pbw_get_fixed64(struct pbw_rd *r, uint64_t *v)
{
	uint32_t lo, hi;

	if (r->end - r->p < 8)
		return -EBADMSG;
	pbw_get_fixed32(r, &lo);
	pbw_get_fixed32(r, &hi);
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

/* A LEN value: its bytes, inside the input. */
static inline int pbw_get_len(struct pbw_rd *r, const uint8_t **p, size_t *n)
{
	uint64_t len;

	if (pbw_get_varint(r, &len) || len > (uint64_t)(r->end - r->p))
		return -EBADMSG;
	*p = r->p;
	*n = (size_t)len;
	r->p += len;
	return 0;
}

/* Skips a value of wire type wt. */
static inline int pbw_skip(struct pbw_rd *r, uint32_t wt)
{
	const uint8_t *p;
	uint64_t v;
	size_t n;

	switch (wt) {
	case PBW_VARINT:
		return pbw_get_varint(r, &v);
	case PBW_I64:
		return pbw_get_fixed64(r, &v);
	case PBW_I32:
		if (r->end - r->p < 4)
			return -EBADMSG;
		r->p += 4;
		return 0;
	case PBW_LEN:
		return pbw_get_len(r, &p, &n);
	default:
		return -EBADMSG;
	}
}

static inline int32_t pbw_unzigzag32(uint32_t v)
{
	return (int32_t)((v >> 1) ^ -(v & 1));
}

static inline int64_t pbw_unzigzag64(uint64_t v)
{
	return (int64_t)((v >> 1) ^ -(v & 1));
}

static inline uint32_t pbw_zigzag32(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

static inline uint64_t pbw_zigzag64(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* ---- writing into caller-sized storage ------------------------------- */

static inline size_t pbw_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint8_t *pbw_put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline uint64_t pbw_key(uint32_t num, uint32_t wt)
{
	return (uint64_t)num << 3 | wt;
}

static inline uint8_t *pbw_put_fixed32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

static inline uint8_t *pbw_put_fixed64(uint8_t *p, uint64_t v)
{
	return pbw_put_fixed32(pbw_put_fixed32(p, (uint32_t)v),
			       (uint32_t)(v >> 32));
}

/* ---- writing into a growing buffer (net/base/fbuf.h) ----------------- */

void pbw_buf_varint(struct fbuf *b, uint64_t v);
void pbw_buf_fixed32(struct fbuf *b, uint32_t v);
void pbw_buf_fixed64(struct fbuf *b, uint64_t v);

/*
 * A LEN value whose length is not known before it is written: begin
 * reserves a one-byte length and returns the mark; end writes the length
 * there, moving the value up when it needs more bytes.
 */
size_t pbw_buf_len_begin(struct fbuf *b);
void pbw_buf_len_end(struct fbuf *b, size_t mark);

#endif
