/*
 * rpc_msg: the message part of a baidu_std body, shared by the server and
 * the channel (spec/brpc-wire.md 1.4, 1.5).
 *
 * Sending:   pb-encode the message -> compress it per compress_type ->
 *            (optionally) CRC32C over those bytes as sent -> the frame.
 * Receiving: verify the CRC32C (if the meta carries one) -> decompress ->
 *            pb-decode, checking required fields.
 * The attachment is never compressed; the CRC covers it only when the
 * meta says checksum_with_attachment.
 */
#ifndef RPCGATE_NET_RPC_MSG_H
#define RPCGATE_NET_RPC_MSG_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "base/iobuf.h"
#include "base/mem.h"
#include "baidu_std.h"

/*
 * Appends `msg` encoded and compressed with `compress_type` to `out`.
 * 0; -EPROTONOSUPPORT: no codec for compress_type; -ENOMEM.  `out`
 * unchanged on error.
 */
int rpc_msg_encode(const ProtobufCMessage *msg, int compress_type,
		   struct iobuf *out);

/* The 4-byte checksum_value for `data` (and `att` when not NULL). */
int rpc_msg_checksum(const struct iobuf *data, const struct iobuf *att,
		     uint8_t value[4]);

/*
 * Checks a received frame's checksum, if its meta has one: 0 (none, or
 * it matches); -EBADMSG: a mismatch or a malformed value;
 * -EPROTONOSUPPORT: an unknown checksum_type.
 */
int rpc_msg_verify(const struct baidu_frame *f);

/*
 * Decodes `data` (as received: compressed per compress_type) into a
 * message of type `desc` allocated through `mem`; free it with
 * pbuf_free().  max_size bounds the decompressed size.  0; -EBADMSG:
 * corrupt compressed data, or not a valid message (missing required
 * fields included); -EPROTONOSUPPORT: unknown compress_type; -EMSGSIZE:
 * decompresses past max_size; -ENOMEM.
 */
int rpc_msg_decode(const ProtobufCMessageDescriptor *desc, int compress_type,
		   const struct iobuf *data, size_t max_size,
		   const struct mem *mem, ProtobufCMessage **out);

/* "pb", "json", "proto-json", "proto-text" or "unknown": the names brpc
 * prints in EREQUEST texts. */
const char *rpc_content_type_name(int type);

/* "none", "crc32c" or "unknown". */
const char *rpc_checksum_type_name(int type);

#endif
