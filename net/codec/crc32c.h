/*
 * crc32c: CRC-32C (Castagnoli), the checksum of baidu_std frames (spec 1.5).
 *
 * Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF
 * (the iSCSI CRC of RFC 3720, B.4).  Software only, slicing-by-8 over
 * tables built at compile time: no state, no allocation, no blocking; every
 * call is safe on any thread.
 *
 * Chaining: a value returned by these calls is the CRC of everything fed
 * so far, so crc32c_extend(crc32c_extend(0, a, na), b, nb) equals the CRC
 * of a followed by b, and a message held in an iobuf is summed ref by ref
 * (crc32c_iobuf) without flattening.
 *
 * brpc stores the CRC "masked" LevelDB style (rotate right by 15, add
 * 0xA282EAD8), 4 bytes big-endian in RpcMeta.checksum_value.
 */
#ifndef RPCGATE_NET_CRC32C_H
#define RPCGATE_NET_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"

/* LevelDB's mask delta (util/crc32c.h kMaskDelta), also brpc's. */
#define CRC32C_MASK_DELTA 0xa282ead8u

/* CRC of the bytes summed by `crc` followed by data[0, n).  crc 0: none. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n);

static inline uint32_t crc32c(const void *data, size_t n)
{
	return crc32c_extend(0, data, n);
}

/*
 * Extends *crc over buf[off, off + n), ref by ref.  0, or -ERANGE (and
 * *crc unchanged) if the range is not inside buf.
 */
int crc32c_iobuf(const struct iobuf *buf, size_t off, size_t n, uint32_t *crc);

/* The masked form brpc puts on the wire, and back. */
static inline uint32_t crc32c_mask(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + CRC32C_MASK_DELTA;
}

static inline uint32_t crc32c_unmask(uint32_t masked)
{
	uint32_t rot = masked - CRC32C_MASK_DELTA;

	return (rot >> 17) | (rot << 15);
}

#endif
