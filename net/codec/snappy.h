/*
 * snappy: the raw snappy block format (brpc's COMPRESS_TYPE_SNAPPY), not
 * the framed/streaming format.
 *
 * A compressed buffer is a varint (7 bits per byte, least significant
 * first) of the uncompressed length, then elements until the input ends:
 *
 *   tag & 3 == 0  literal: length-1 in tag >> 2 if below 60, else in the
 *                 next 1..4 bytes (tag >> 2 = 60..63), little-endian;
 *                 that many bytes follow
 *   tag & 3 == 1  copy, length 4 + ((tag >> 2) & 7), 11-bit offset:
 *                 (tag >> 5) << 8 | next byte
 *   tag & 3 == 2  copy, length (tag >> 2) + 1, 16-bit LE offset follows
 *   tag & 3 == 3  copy, length (tag >> 2) + 1, 32-bit LE offset follows
 *
 * A copy repeats `length` bytes starting `offset` bytes back in the output;
 * offset < length repeats a pattern (copied byte by byte).
 *
 * The compressor is a greedy hash-table matcher over independent blocks of
 * SNAPPY_BLOCK_SIZE bytes (offsets stay below 64 KiB); its output is
 * plain format, readable by any snappy decoder.  The decompressor checks
 * every length and offset against the input and output bounds.
 *
 * All calls work on caller buffers, allocate nothing, never block, keep no
 * state and may run on any thread.  Compression uses SNAPPY_STACK_BYTES of
 * stack for its hash table.
 */
#ifndef RPCGATE_NET_SNAPPY_H
#define RPCGATE_NET_SNAPPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Compressor block: the reference implementation's kBlockSize (64 KiB). */
#define SNAPPY_BLOCK_SIZE 65536
/* Largest uncompressed length: the preamble is a 32-bit varint. */
#define SNAPPY_MAX_LENGTH UINT32_MAX
/* Longest preamble: 32 bits at 7 bits per byte. */
#define SNAPPY_PREAMBLE_MAX 5
/* Hash table of 2^13 16-bit positions: 16 KiB, a quarter of the smallest
 * thread stack the runtime allows (WORKERS_STACK_SIZE_MIN, 64 KiB). */
#define SNAPPY_HASH_BITS   13
#define SNAPPY_STACK_BYTES ((1u << SNAPPY_HASH_BITS) * sizeof(uint16_t))

/*
 * Room snappy_compress() needs for n input bytes: 32 + n + n / 6, the
 * reference implementation's bound.  0 if n > SNAPPY_MAX_LENGTH.
 */
size_t snappy_max_compressed_length(size_t n);

/*
 * Compresses src[0, n) into dst.  Returns the compressed size, -EMSGSIZE
 * if n > SNAPPY_MAX_LENGTH, or -ENOBUFS if cap is below
 * snappy_max_compressed_length(n) (nothing is written then).
 */
ssize_t snappy_compress(const void *src, size_t n, void *dst, size_t cap);

/*
 * The two halves of snappy_compress(), for callers that feed the input a
 * block at a time (compress.c, from iobufs): the preamble for a total of
 * `len` bytes, then each consecutive block of at most SNAPPY_BLOCK_SIZE
 * bytes; the concatenation equals snappy_compress()'s output when every
 * block but the last is exactly SNAPPY_BLOCK_SIZE bytes.
 *
 * snappy_put_preamble(): bytes written (1..SNAPPY_PREAMBLE_MAX; dst has
 * room for SNAPPY_PREAMBLE_MAX), or -EMSGSIZE if len > SNAPPY_MAX_LENGTH.
 * snappy_compress_block(): bytes written, -EINVAL if n > SNAPPY_BLOCK_SIZE,
 * or -ENOBUFS if cap < snappy_max_compressed_length(n).
 */
int snappy_put_preamble(void *dst, size_t len);
ssize_t snappy_compress_block(const void *src, size_t n, void *dst, size_t cap);

/*
 * Reads the preamble of src[0, n) into *len.  0, or -EBADMSG if it is
 * truncated, longer than SNAPPY_PREAMBLE_MAX bytes, above
 * SNAPPY_MAX_LENGTH, or more than the rest of the input could ever expand
 * to (at most 64 bytes per 3 input bytes): a length from the wire is
 * checked against the bytes present before anyone allocates for it.
 */
int snappy_uncompressed_length(const void *src, size_t n, size_t *len);

/*
 * Decompresses src[0, n) into dst.  Returns the uncompressed length, or:
 * -EMSGSIZE if the stated length exceeds cap (nothing is written: cap is
 * the caller's limit); -EBADMSG for a bad preamble (as above), an element
 * running past the input, a copy with offset 0 or reaching before the
 * output's start, output beyond the stated length, or input ending before
 * it.  After -EBADMSG, dst[0, stated length) holds garbage.
 */
ssize_t snappy_decompress(const void *src, size_t n, void *dst, size_t cap);

#endif
