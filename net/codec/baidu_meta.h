/*
 * baidu_meta: RpcMeta (net/codec/proto/baidu_rpc_meta.proto) by hand, for the
 * metas brpc writes on every call; baidu_std.c's hot path.
 *
 * Decoding: protobuf-c's generic decoder allocates a struct per message
 * and per string and walks descriptors; on a 40-byte echo meta that was a
 * fifth of the server's instructions per call.  baidu_meta_decode_fast()
 * reads the fields the light view carries straight into it, copying the
 * strings into one caller buffer.  It takes only what it is sure of: a
 * meta holding anything else (chunk_info, stream_settings, user_fields,
 * unknown fields, a sub-message twice, a missing required field, odd wire
 * types or varints) is left to protobuf-c, which keeps the last word on
 * what is valid.  Whatever it accepts, protobuf-c accepts with the same
 * view; fuzz_baidu_std checks both directions of that on every input.
 *
 * Encoding: baidu_meta_put() writes the metas baidu_pack_request() and
 * baidu_pack_response() describe, byte-identical to protobuf-c's packing
 * of the same fields (fields in number order, negative int32s as 10-byte
 * varints); test_baidu_meta compares the two.
 */
#ifndef RPCGATE_NET_BAIDU_META_H
#define RPCGATE_NET_BAIDU_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baidu_std.h"

/*
 * Decodes (p, n) into *view when the meta is one the fast path takes.
 * Strings and bytes are copied into `store`, which must hold n bytes (each
 * copy, NUL included, is shorter than its field on the wire) and must
 * outlive the view; with n 0, p and store may be NULL.  0: decoded; 1:
 * not taken (nothing to say about its validity: ask protobuf-c).  Reads
 * exactly (p, n).
 */
int baidu_meta_decode_fast(const void *p, size_t n, char *store,
			   struct baidu_meta *view);

/* A meta to encode: exactly one of req and resp is set. */
struct baidu_meta_out {
	const struct baidu_req_meta *req;
	const struct baidu_resp_meta *resp;
	uint32_t attachment_size; /* 0: not sent */
	/* Set by baidu_meta_size() for baidu_meta_put(): the request's or
	 * response's own size and its strings' lengths, counted once. */
	size_t inner_size;
	size_t name_len[2]; /* service, method; or error_text */
};

/* The encoded size of *m (which it completes for baidu_meta_put()). */
size_t baidu_meta_size(struct baidu_meta_out *m);

/* Writes *m into buf, which holds baidu_meta_size(m) bytes (called on m
 * first); returns the bytes written (that size). */
size_t baidu_meta_put(const struct baidu_meta_out *m, uint8_t *buf);

#endif
