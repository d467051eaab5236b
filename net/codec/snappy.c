/*
 * snappy: raw block format codec (see snappy.h for the format).
 *
 * Compressor, per block of at most SNAPPY_BLOCK_SIZE bytes:
 * - a table maps a hash of 4 input bytes to the last position (16 bits,
 *   from the block's start) where they were seen; it is sized to the block
 *   (2^8 .. 2^SNAPPY_HASH_BITS slots) so a short RPC message does not pay
 *   for clearing 16 KiB;
 * - walking the block, each probed position's entry is read and replaced;
 *   if the old position holds the same 4 bytes, the pending literal is
 *   emitted and the match is extended as far as it goes (8 bytes at a
 *   time), then emitted as copies;
 * - after SNAPPY_SKIP_AFTER misses in a row the walk starts stepping over
 *   bytes, one more byte per SNAPPY_SKIP_AFTER further misses, so
 *   incompressible data costs little; a match resets the step;
 * - the block's unmatched rest is one literal.
 * Everything reads through byte loads (no unaligned or out-of-bounds
 * access), so no input margin is kept.
 *
 * Decompressor: one pass; each element's lengths and offsets are checked
 * against the input left, the output written and the stated length before
 * any byte moves.
 */
#include "snappy.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

/* Element tags: the low two bits of a tag byte. */
#define TAG_LITERAL 0
#define TAG_COPY1   1
#define TAG_COPY2   2
#define TAG_COPY4   3
/* Literal lengths - 1 below this fit in the tag; 60..63 say 1..4 bytes. */
#define LITERAL_TAG_MAX 60
/* Copy with 1-byte offset: lengths 4..11, offsets below 2^11. */
#define COPY1_LEN_MIN 4
#define COPY1_LEN_MAX 11
#define COPY1_OFF_MAX 2048
/* Longest copy element (6 length bits + 1). */
#define COPY_LEN_MAX 64
/* The most output any 3 input bytes can stand for: one copy-2 element. */
#define EXPAND_IN  3
#define EXPAND_OUT COPY_LEN_MAX
/* Shortest match the compressor uses: the 4 hashed bytes. */
#define MATCH_MIN 4
/* Smallest hash table, in bits: below it clearing costs nothing anyway. */
#define HASH_BITS_MIN 8
/* The reference design's multiplicative hash constant (0x1e35a7bd). */
#define HASH_MUL 0x1e35a7bdu
/* Misses before the walk starts skipping (a power of two). */
#define SNAPPY_SKIP_AFTER 32
#define SNAPPY_SKIP_SHIFT 5

static_assert(SNAPPY_BLOCK_SIZE <= 65536, "table positions are 16-bit");
static_assert(1u << SNAPPY_SKIP_SHIFT == SNAPPY_SKIP_AFTER, "skip shift");

static inline uint32_t load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t load_le64(const uint8_t *p)
{
	return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

/* --- compressor ---------------------------------------------------------- */

size_t snappy_max_compressed_length(size_t n)
{
	if (n > SNAPPY_MAX_LENGTH)
		return 0;
	return 32 + n + n / 6;
}

int snappy_put_preamble(void *dst, size_t len)
{
	uint8_t *p = dst;
	int k = 0;

	if (len > SNAPPY_MAX_LENGTH)
		return -EMSGSIZE;
	while (len >= 0x80) {
		p[k++] = (uint8_t)(len | 0x80);
		len >>= 7;
	}
	p[k++] = (uint8_t)len;
	return k;
}

static uint8_t *emit_literal(uint8_t *op, const uint8_t *src, size_t len)
{
	size_t n = len - 1;
	int bytes = 0;

	if (n < LITERAL_TAG_MAX) {
		*op++ = (uint8_t)(n << 2 | TAG_LITERAL);
	} else {
		for (size_t v = n; v; v >>= 8)
			bytes++;
		*op++ =
		    (uint8_t)((LITERAL_TAG_MAX - 1 + bytes) << 2 | TAG_LITERAL);
		for (int i = 0; i < bytes; i++)
			*op++ = (uint8_t)(n >> (8 * i));
	}
	memcpy(op, src, len);
	return op + len;
}

static uint8_t *emit_copy2(uint8_t *op, size_t off, size_t len)
{
	*op++ = (uint8_t)((len - 1) << 2 | TAG_COPY2);
	*op++ = (uint8_t)off;
	*op++ = (uint8_t)(off >> 8);
	return op;
}

/* off < 65536 (one block), len >= MATCH_MIN. */
static uint8_t *emit_copy(uint8_t *op, size_t off, size_t len)
{
	/* Long matches go out in 64-byte pieces, leaving at least 4. */
	while (len > COPY_LEN_MAX) {
		size_t k = len - COPY_LEN_MAX >= MATCH_MIN
			       ? COPY_LEN_MAX
			       : COPY_LEN_MAX - MATCH_MIN;

		op = emit_copy2(op, off, k);
		len -= k;
	}
	if (len >= COPY1_LEN_MIN && len <= COPY1_LEN_MAX &&
	    off < COPY1_OFF_MAX) {
		*op++ = (uint8_t)((off >> 8) << 5 | (len - COPY1_LEN_MIN) << 2 |
				  TAG_COPY1);
		*op++ = (uint8_t)off;
		return op;
	}
	return emit_copy2(op, off, len);
}

/* Bytes equal at a and b (a < b), not reading b at or past end. */
static size_t match_length(const uint8_t *a, const uint8_t *b,
			   const uint8_t *end)
{
	const uint8_t *start = b;
	uint64_t x;

	while (end - b >= 8) {
		x = load_le64(a) ^ load_le64(b);
		if (x)
			return (size_t)(b - start) +
			       (size_t)__builtin_ctzll(x) / 8;
		a += 8;
		b += 8;
	}
	while (b < end && *a == *b) {
		a++;
		b++;
	}
	return (size_t)(b - start);
}

static inline uint32_t hash4(const uint8_t *p, int shift)
{
	return (load_le32(p) * HASH_MUL) >> shift;
}

/* One block; dst has room for snappy_max_compressed_length(n). */
static uint8_t *compress_block(const uint8_t *base, size_t n, uint8_t *op)
{
	uint16_t table[1u << SNAPPY_HASH_BITS];
	const uint8_t *ip = base, *lit = base, *end = base + n, *cand;
	const uint8_t *last; /* last position with MATCH_MIN bytes to read */
	int bits = HASH_BITS_MIN, shift;
	uint32_t h, skip;
	size_t len, step;

	if (n < MATCH_MIN)
		goto out_tail;
	while (bits < SNAPPY_HASH_BITS && (1u << bits) < n)
		bits++;
	shift = 32 - bits;
	memset(table, 0, sizeof(table[0]) << bits);
	last = end - MATCH_MIN;

	for (;;) {
		/* Find a position whose 4 bytes were seen before. */
		skip = SNAPPY_SKIP_AFTER;
		for (;;) {
			if (ip > last)
				goto out_tail;
			h = hash4(ip, shift);
			cand = base + table[h];
			table[h] = (uint16_t)(ip - base);
			if (cand < ip && load_le32(cand) == load_le32(ip))
				break;
			step = skip++ >> SNAPPY_SKIP_SHIFT;
			if (step > (size_t)(last - ip))
				goto out_tail;
			ip += step;
		}
		if (ip > lit)
			op = emit_literal(op, lit, (size_t)(ip - lit));
		len = MATCH_MIN +
		      match_length(cand + MATCH_MIN, ip + MATCH_MIN, end);
		op = emit_copy(op, (size_t)(ip - cand), len);
		ip += len;
		lit = ip;
		/* Seed the table with the match's last position too. */
		if (ip <= last)
			table[hash4(ip - 1, shift)] = (uint16_t)(ip - 1 - base);
	}

out_tail:
	if (end > lit)
		op = emit_literal(op, lit, (size_t)(end - lit));
	return op;
}

ssize_t snappy_compress_block(const void *src, size_t n, void *dst, size_t cap)
{
	uint8_t *op = dst;

	if (n > SNAPPY_BLOCK_SIZE)
		return -EINVAL;
	if (cap < snappy_max_compressed_length(n))
		return -ENOBUFS;
	return compress_block(src, n, op) - op;
}

ssize_t snappy_compress(const void *src, size_t n, void *dst, size_t cap)
{
	const uint8_t *ip = src;
	uint8_t *op = dst;
	size_t k;

	if (n > SNAPPY_MAX_LENGTH)
		return -EMSGSIZE;
	if (cap < snappy_max_compressed_length(n))
		return -ENOBUFS;
	op += snappy_put_preamble(op, n);
	for (; n; n -= k, ip += k) {
		k = n < SNAPPY_BLOCK_SIZE ? n : SNAPPY_BLOCK_SIZE;
		op = compress_block(ip, k, op);
	}
	return op - (uint8_t *)dst;
}

/* --- decompressor -------------------------------------------------------- */

/* Parses the preamble; returns its size (> 0) or -EBADMSG. */
static int read_preamble(const uint8_t *p, size_t n, size_t *len)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < SNAPPY_PREAMBLE_MAX && (size_t)i < n; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (p[i] & 0x80)
			continue;
		if (v > SNAPPY_MAX_LENGTH)
			return -EBADMSG;
		n -= (size_t)i + 1;
		/* Max output of n bytes is below EXPAND_OUT * (n/3 + 1). */
		if (v / EXPAND_OUT > n / EXPAND_IN)
			return -EBADMSG;
		*len = (size_t)v;
		return i + 1;
	}
	return -EBADMSG;
}

int snappy_uncompressed_length(const void *src, size_t n, size_t *len)
{
	int r = read_preamble(src, n, len);

	return r < 0 ? r : 0;
}

ssize_t snappy_decompress(const void *src, size_t n, void *dst, size_t cap)
{
	const uint8_t *ip = src, *end;
	uint8_t *out = dst, *op = dst, *oend;
	size_t want, off, len, k;
	uint8_t tag;
	int r;

	r = read_preamble(ip, n, &want);
	if (r < 0)
		return r;
	if (want > cap)
		return -EMSGSIZE;
	/* dst is not touched (and may be NULL) when nothing is stated. */
	if (want == 0)
		return (size_t)r == n ? 0 : -EBADMSG;
	end = ip + n;
	ip += r;
	oend = out + want;

	while (ip < end) {
		tag = *ip++;
		switch (tag & 3) {
		case TAG_LITERAL:
			len = tag >> 2;
			if (len >= LITERAL_TAG_MAX) {
				/* Length - 1 in the next 1..4 bytes, LE. */
				k = len - LITERAL_TAG_MAX + 1;
				if ((size_t)(end - ip) < k)
					return -EBADMSG;
				len = 0;
				for (size_t i = 0; i < k; i++)
					len |= (size_t)ip[i] << (8 * i);
				ip += k;
			}
			/* len is length - 1, so the checks below use >=. */
			if (len >= (size_t)(end - ip) ||
			    len >= (size_t)(oend - op))
				return -EBADMSG;
			memcpy(op, ip, len + 1);
			ip += len + 1;
			op += len + 1;
			continue;
		case TAG_COPY1:
			if (end - ip < 1)
				return -EBADMSG;
			len = COPY1_LEN_MIN + ((tag >> 2) & 7);
			off = (size_t)(tag >> 5) << 8 | ip[0];
			ip += 1;
			break;
		case TAG_COPY2:
			if (end - ip < 2)
				return -EBADMSG;
			len = (size_t)(tag >> 2) + 1;
			off = (size_t)ip[0] | (size_t)ip[1] << 8;
			ip += 2;
			break;
		default: /* TAG_COPY4 */
			if (end - ip < 4)
				return -EBADMSG;
			len = (size_t)(tag >> 2) + 1;
			off = load_le32(ip);
			ip += 4;
			break;
		}
		if (off == 0 || off > (size_t)(op - out) ||
		    len > (size_t)(oend - op))
			return -EBADMSG;
		if (off >= len) {
			memcpy(op, op - off, len);
			op += len;
		} else {
			/* Overlap repeats the last `off` bytes: byte order. */
			for (; len; len--, op++)
				*op = *(op - off);
		}
	}
	if (op != oend)
		return -EBADMSG;
	return (ssize_t)want;
}
