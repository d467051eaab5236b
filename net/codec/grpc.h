/*
 * grpc: gRPC's own layer over HTTP/2 (spec/brpc-wire.md section 5, and
 * gRPC's PROTOCOL-HTTP2.md): the length-prefixed messages of a stream's
 * DATA, the grpc-timeout field, grpc-message's percent-encoding, and the
 * mapping between brpc's error codes and gRPC's status codes.
 *
 *   message   = flag (1 byte: 0 plain, 1 compressed by grpc-encoding)
 *               length (4 bytes, big-endian)  bytes (length)
 *   timeout   = 1 to 8 ASCII digits, then a unit: H M S m u n
 *
 * Pure functions; any thread.
 */
#ifndef RPCGATE_NET_GRPC_H
#define RPCGATE_NET_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"

#define GRPC_PREFIX_LEN 5
/* grpc-timeout's value has at most this many digits (the gRPC spec). */
#define GRPC_TIMEOUT_DIGITS 8
/* Room for a formatted grpc-timeout value ("99999999m" and a NUL, with
 * room to spare for the compiler's count). */
#define GRPC_TIMEOUT_TEXT 24

/* gRPC's status codes (grpc/include/grpc/impl/codegen/status.h). */
enum grpc_status {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* One message's prefix. */
struct grpc_msg {
	bool compressed;
	uint32_t len; /* of the bytes after the prefix */
};

/*
 * The message at `off` of `in`: 1 its prefix is in *m and its bytes are
 * all in `in`; 0 more bytes are needed; -EPROTO a flag other than 0 or
 * 1; -EMSGSIZE longer than `max`.
 */
int grpc_msg_peek(const struct iobuf *in, size_t off, size_t max,
		  struct grpc_msg *m);

/* Writes the 5 prefix bytes of a message of `len` bytes to p. */
void grpc_msg_prefix(uint8_t p[GRPC_PREFIX_LEN], bool compressed,
		     uint32_t len);

/* Appends the message `msg` (moved out: empty afterwards, whatever the
 * result) to q with its prefix, whole or not at all: 0, -EMSGSIZE (over
 * 4 GiB), -ENOMEM. */
int grpc_msg_put(struct iobuf *q, bool compressed, struct iobuf *msg);

/*
 * A grpc-timeout value (n bytes at s) in milliseconds, rounded up (1 us
 * is 1 ms: a deadline is never made shorter), at most INT32_MAX.  0, or
 * -EINVAL (not digits and a unit, or too many digits).
 */
int grpc_timeout_parse(const char *s, size_t n, int64_t *ms);

/* ms (> 0) as a grpc-timeout value into out (GRPC_TIMEOUT_TEXT bytes):
 * "<n>m", or "<n>S" past 8 digits of ms. */
void grpc_timeout_format(int64_t ms, char out[GRPC_TIMEOUT_TEXT]);

/*
 * grpc-message's percent-encoding: every byte outside 0x20..0x7e and
 * '%' itself become %XX.  Writes at most out_size - 1 bytes and a NUL;
 * returns the length the whole text needs (as snprintf).
 */
size_t grpc_message_encode(const char *in, size_t n, char *out,
			   size_t out_size);
/* The other way, in place allowed (out == in): bad escapes are kept as
 * they are, as gRPC's decoders do.  Returns the length written (<= n);
 * out gets a NUL (room for n + 1). */
size_t grpc_message_decode(const char *in, size_t n, char *out);

/* brpc's error code (or an errno a handler used) as a gRPC status, and
 * back (the tables of brpc's src/brpc/grpc.cpp, spec 5). */
int grpc_status_from_rpc(int code);
int grpc_status_to_rpc(int status);
/* "OK", "CANCELLED", ...; "UNKNOWN" for a status not listed. */
const char *grpc_status_name(int status);

#endif
