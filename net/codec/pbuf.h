/*
 * pbuf: protobuf-c over our memory hook and our buffers.
 *
 * protobuf-c allocates through a ProtobufCAllocator and packs into a
 * ProtobufCBuffer; these adapt struct mem and struct iobuf to both, so
 * that every decoded message (RpcMeta, a service's request or response)
 * is allocated through the caller's `mem` and every packed message lands
 * in an iobuf without an intermediate flat copy.
 *
 * Threads: no state of its own; a call touches only its arguments.
 */
#ifndef RPCGATE_NET_PBUF_H
#define RPCGATE_NET_PBUF_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "base/iobuf.h"
#include "base/mem.h"

/* Bytes packed through a stack buffer before they go to the iobuf. */
#define PBUF_SCRATCH_LEN 256

/* A ProtobufCAllocator over `mem`.  `nomem` tells -ENOMEM from a decode
 * failure after protobuf_c_message_unpack() returned NULL. */
struct pbuf_alloc {
	ProtobufCAllocator a;
	const struct mem *mem;
	bool nomem;
};

void pbuf_alloc_init(struct pbuf_alloc *pa, const struct mem *mem);

/* A ProtobufCBuffer appending to `out`.  pbuf_sink_finish() flushes and
 * returns 0 or the first append error (-ENOMEM). */
struct pbuf_sink {
	ProtobufCBuffer base;
	struct iobuf *out;
	int err;
	size_t n;
	uint8_t buf[PBUF_SCRATCH_LEN];
};

void pbuf_sink_init(struct pbuf_sink *s, struct iobuf *out);
int pbuf_sink_finish(struct pbuf_sink *s);

/*
 * Appends `msg` in wire format to `out`.  0, or -ENOMEM with `out` as it
 * was.  Does not check required fields (protobuf-c packs what is set).
 */
int pbuf_pack(const ProtobufCMessage *msg, struct iobuf *out);

/*
 * Decodes all of `in` as a message of type `desc` into *out, allocated
 * through `mem` (NULL: default).  Bytes spread over several blocks are
 * gathered into one temporary copy first (protobuf-c reads flat memory).
 * 0; -EBADMSG: not a valid message of that type (including a missing
 * required field, and a field numbered 0, see pbuf_has_field_zero());
 * -ENOMEM.  Free *out with pbuf_free().
 */
int pbuf_unpack(const ProtobufCMessageDescriptor *desc, const struct iobuf *in,
		const struct mem *mem, ProtobufCMessage **out);

/*
 * Does a decoded message, or one inside it, hold an unknown field numbered
 * 0?  protobuf-c reads a key padded to two bytes (0x81 0x00) as one,
 * although the wire format forbids field 0, and would pack it back as a
 * key no decoder takes; protobuf's C++ parser (brpc's) refuses such a
 * message, and so must we after protobuf-c's unpack.
 */
bool pbuf_has_field_zero(const ProtobufCMessage *m);

/* Frees a message from pbuf_unpack() or pbuf_new().  NULL is fine. */
void pbuf_free(ProtobufCMessage *msg, const struct mem *mem);

/*
 * A new message of type `desc`, initialised (defaults set, nothing
 * present), allocated through `mem`, to be filled by the caller with
 * strings and arrays it owns; NULL on -ENOMEM.  Free it with
 * pbuf_free_shallow(), which frees only the struct.
 */
ProtobufCMessage *pbuf_new(const ProtobufCMessageDescriptor *desc,
			   const struct mem *mem);
void pbuf_free_shallow(ProtobufCMessage *msg, const struct mem *mem);

/* Whether every required field of `msg` is set (recursively). */
bool pbuf_complete(const ProtobufCMessage *msg);

#endif
