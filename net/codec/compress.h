/*
 * compress: brpc's message compression (RpcMeta.compress_type, spec 1.4),
 * from iobuf to iobuf.
 *
 * Types are brpc's CompressType values.  NONE, SNAPPY (raw snappy block,
 * snappy.h), GZIP (RFC 1952 container) and ZLIB (RFC 1950 container) have
 * codecs; LZ4 has none because brpc registers none (a brpc peer fails such
 * a body), and neither has any other value: both give -EPROTONOSUPPORT.
 *
 * Calls:
 * - read `in` (never changed) and append the result to `out`; on an error
 *   `out` holds what it held before.  `in` and `out` must differ.
 * - allocate codec state and scratch through the allocator of out's pool
 *   (pool options' `mem`), freed before returning; output blocks come from
 *   out's pool.
 * - are CPU only: they never block, keep no state between calls and may
 *   run on any thread that owns `out`.
 *
 * Copies: NONE shares in's blocks (no copy).  GZIP/ZLIB feed zlib in's
 * refs one by one (no flattening) and append output through one stack
 * chunk.  SNAPPY compresses 64 KiB windows copied from `in`, and decodes
 * from a flat copy of `in` (unless it is one ref) into a flat buffer of the
 * stated length, then appends: snappy copies may reach anywhere back in
 * the output, so the output must be contiguous.
 */
#ifndef RPCGATE_NET_COMPRESS_H
#define RPCGATE_NET_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/iobuf.h"

/* brpc's CompressType (src/brpc/options.proto). */
enum compress_type {
	COMPRESS_NONE = 0,
	COMPRESS_SNAPPY = 1,
	COMPRESS_GZIP = 2,
	COMPRESS_ZLIB = 3,
	COMPRESS_LZ4 = 4,
};

/* "none", "snappy", "gzip", "zlib", "lz4", or "unknown"; never NULL. */
const char *compress_type_name(int type);

/* Whether compress_encode/decode have a codec for `type`. */
bool compress_type_supported(int type);

/*
 * Appends in's bytes compressed with `type` to out.  0, -EPROTONOSUPPORT,
 * -EINVAL (in == out), -EMSGSIZE (SNAPPY input above SNAPPY_MAX_LENGTH),
 * or -ENOMEM.
 */
int compress_encode(int type, const struct iobuf *in, struct iobuf *out);

/*
 * Appends in's bytes decompressed per `type` to out, at most max_out of
 * them.  0, or:
 * -EMSGSIZE  the output would pass max_out: snappy's stated length is
 *            checked before anything is allocated for it, zlib stops
 *            inflating one byte past max_out (decompression bombs);
 * -EBADMSG   corrupt or truncated input, or bytes after the end of the
 *            stream (GZIP accepts several concatenated members, RFC 1952
 *            2.2; ZLIB exactly one stream; a preset dictionary is refused);
 * -EPROTONOSUPPORT, -EINVAL (in == out), -ENOMEM.
 */
int compress_decode(int type, const struct iobuf *in, struct iobuf *out,
		    size_t max_out);

#endif
