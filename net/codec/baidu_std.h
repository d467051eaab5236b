/*
 * baidu_std: brpc's default RPC protocol, framing and meta
 * (../shared/spec/brpc-wire.md section 1).
 *
 * One frame, request or response, on a byte stream (integers big-endian):
 *
 *   0      4           8           12          12+meta_size
 *   +------+-----------+-----------+-----------+------------+------------+
 *   |"PRPC"| body_size | meta_size | RpcMeta   | message    | attachment |
 *   |      | u32       | u32       | (pb)      | bytes      | bytes      |
 *   +------+-----------+-----------+-----------+------------+------------+
 *                                   <----------- body_size ------------->
 *
 *   body_size = meta_size + message length + attachment length; the
 *   attachment is the last RpcMeta.attachment_size bytes (none if absent).
 *   Frames are concatenated, no padding.  The message bytes are compressed
 *   per compress_type and encoded per content_type; the attachment never is.
 *
 * Sequence on one connection: the client sends requests (RpcMeta.request,
 * a correlation_id per request, any number in flight); the server answers
 * each with one response (RpcMeta.response, the request's correlation_id),
 * in any order.  A failed call's response has error_code != 0 and no
 * message or attachment (body_size == meta_size).
 *
 * What this module does: detect the protocol, cut frames off an input
 * iobuf and decode their meta (net/codec/baidu_meta by hand for the common
 * metas, protobuf-c for the rest: net/codec/proto/baidu_rpc_meta.proto), pack
 * frames.  Message and attachment bytes are not copied: parsing shares
 * them out of the input's blocks, packing moves the caller's buffers'
 * refs, except for a small frame, copied whole into one region.  It does not decompress, decode messages, look services
 * up or verify checksums: those belong to the caller (see each call).
 *
 * Checksums (spec 1.5, optional): the meta's checksum_type/checksum_value
 * are exposed on parse and taken on pack, unverified and uncomputed: this
 * module does not depend on a CRC32C implementation.  The caller computes
 * CRC32C (Castagnoli, initial value 0) over the message bytes as sent
 * (f->data; plus f->attachment when checksum_with_attachment), and
 * converts with baidu_checksum_encode()/_decode() (the LevelDB mask and
 * the 4-byte big-endian value).  brpc reports a mismatch as a decode
 * failure: EREQUEST, on either side.
 *
 * Memory: everything lives in caller storage.  A parsed frame holds refs
 * on the input's blocks and its decoded meta (one block of meta_size bytes
 * for the fast path's strings, or protobuf-c's structs), allocated through
 * the limits' `mem`; baidu_frame_release() gives both back.  Every call is
 * all-or-nothing: on an error the input, the output and the caller's
 * buffers are as they were and nothing is held.
 *
 * Threads: no state of its own; a call touches only its arguments (an
 * iobuf has one owner at a time, see iobuf.h).  Nothing blocks.
 */
#ifndef RPCGATE_NET_BAIDU_STD_H
#define RPCGATE_NET_BAIDU_STD_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/iobuf.h"
#include "base/mem.h"

/* The decoded meta, protoc-c's type; include "baidu_rpc_meta.pb-c.h" to
 * read fields the light view leaves out (user_fields, stream_settings). */
struct Brpc__Policy__RpcMeta;

/* "PRPC", compared as raw bytes. */
#define BAIDU_MAGIC	"PRPC"
#define BAIDU_MAGIC_LEN 4
/* Magic, body_size, meta_size. */
#define BAIDU_HEADER_LEN 12
/* brpc's -max_body_size default (src/brpc/protocol.cpp): 64 MiB.  brpc
 * closes the connection over it; so do we (-EMSGSIZE). */
#define BAIDU_MAX_BODY_SIZE_DEFAULT (64u << 20)
/*
 * Our limit on meta_size, which brpc bounds only by max_body_size.
 * protobuf-c's decoder records every field occurrence and allocates a
 * struct per repeated sub-message; measured, a meta made of 2-byte scalar
 * fields costs 32 bytes of heap per wire byte and one of empty user_fields
 * entries 56, so a 64 MiB meta could cost 3.5 GiB.  Metas brpc writes
 * are tens of bytes plus authentication_data and user_fields, which
 * deployments keep in KiBs; 1 MiB leaves three orders of magnitude of
 * headroom and bounds one decode to about 56 MiB.
 */
#define BAIDU_MAX_META_SIZE_DEFAULT (1u << 20)

/* RpcMeta.compress_type values (brpc.CompressType, options.proto). */
enum baidu_compress {
	BAIDU_COMPRESS_NONE = 0,
	BAIDU_COMPRESS_SNAPPY = 1, /* raw snappy block */
	BAIDU_COMPRESS_GZIP = 2,   /* RFC 1952 */
	BAIDU_COMPRESS_ZLIB = 3,   /* RFC 1950 */
	BAIDU_COMPRESS_LZ4 = 4,	   /* no codec in brpc: never send */
};

/* RpcMeta.content_type values (brpc.ContentType). */
enum baidu_content {
	BAIDU_CONTENT_PB = 0,
	BAIDU_CONTENT_JSON = 1,
	BAIDU_CONTENT_PROTO_JSON = 2,
	BAIDU_CONTENT_PROTO_TEXT = 3,
};

/* RpcMeta.checksum_type values (brpc.ChecksumType). */
enum baidu_checksum {
	BAIDU_CHECKSUM_NONE = 0,
	BAIDU_CHECKSUM_CRC32C = 1,
};

/* --- options ------------------------------------------------------------- */

struct baidu_limits {
	size_t max_body_size;  /* body_size over it: -EMSGSIZE */
	size_t max_meta_size;  /* meta_size over it: -EMSGSIZE */
	const struct mem *mem; /* decoded metas; NULL: mem_default() */
};

/* BAIDU_MAX_BODY_SIZE_DEFAULT, BAIDU_MAX_META_SIZE_DEFAULT, mem NULL. */
void baidu_limits_default(struct baidu_limits *lim);

/* 0, or -EINVAL when: max_body_size is 0 or above UINT32_MAX; max_meta_size
 * is 0 or above max_body_size. */
int baidu_limits_validate(const struct baidu_limits *lim);

/* --- parsing ------------------------------------------------------------- */

/* A byte string inside a decoded meta or the caller's memory. */
struct baidu_bytes {
	const uint8_t *ptr; /* NULL: absent */
	size_t len;
};

/*
 * The light view of a decoded meta.  Strings and bytes point into the
 * decoded RpcMeta (valid until baidu_frame_release()); a field that was
 * absent reads as 0, "" (error_text) or NULL (request_id, bytes).
 * Strings are NUL-terminated copies made by protobuf-c, so a name with an
 * embedded NUL reads as its prefix.
 */
struct baidu_meta {
	bool has_request;
	const char *service; /* request.service_name; never NULL */
	const char *method;  /* request.method_name; never NULL */
	bool has_log_id;
	uint64_t log_id;
	uint64_t trace_id, span_id, parent_span_id;
	const char *request_id; /* NULL: absent */
	bool has_timeout_ms;
	int32_t timeout_ms;

	bool has_response;
	int32_t error_code;	/* response.error_code */
	const char *error_text; /* response.error_text; never NULL */

	uint64_t correlation_id; /* int64 on the wire; brpc's are unsigned */
	int32_t compress_type;
	int32_t content_type;
	int32_t attachment_size; /* as sent; may be bad, see bad_attachment */
	struct baidu_bytes authentication_data;
	int32_t checksum_type;
	struct baidu_bytes checksum_value;
	bool checksum_with_attachment;
	bool has_stream_settings;
	size_t n_user_fields;
};

/* A frame cut off the input. */
struct baidu_frame {
	uint32_t body_size;
	uint32_t meta_size;
	/*
	 * The whole meta as protobuf-c decodes it, or NULL when it held only
	 * fields the light view carries (net/codec/baidu_meta: every meta brpc
	 * writes for plain calls), whose strings then live in `store`.
	 */
	struct Brpc__Policy__RpcMeta *pb;
	char *store;
	struct baidu_meta meta;	 /* the light view */
	struct iobuf data;	 /* message bytes, as sent */
	struct iobuf attachment; /* last attachment_size bytes */
	/*
	 * attachment_size is negative or larger than the data: data holds all
	 * of it, attachment is empty.  brpc answers such a request with
	 * EREQUEST (the meta's correlation_id is valid) and fails such a
	 * response locally with ERESPONSE; the stream stays in sync.
	 */
	bool bad_attachment;
	const struct mem *mem; /* frees pb */
};

/*
 * Is `in` baidu_std?  1: it starts with "PRPC"; 0: fewer than 4 bytes,
 * all matching the magic (wait for more); -EPROTO: not this protocol.
 * Looks at the first 4 bytes only; consumes nothing.
 */
int baidu_detect(const struct iobuf *in);

/*
 * Checks one header in flat memory (p, n): the magic, then the limits.
 * Returns BAIDU_HEADER_LEN and fills *body_size and *meta_size, or:
 * -EPROTO: the available (up to 4) bytes differ from the magic;
 * -EAGAIN: fewer than BAIDU_HEADER_LEN bytes and no mismatch;
 * -EMSGSIZE: body_size > max_body_size (or > INT_MAX - 12, so that a
 *   frame's length fits the int parsers return) or meta_size >
 *   max_meta_size;
 * -EBADMSG: meta_size > body_size (brpc drops the frame and, the stream
 *   being unparseable, the connection).
 * Once the 12 bytes are in, *body_size and *meta_size hold the header's
 * values whatever the answer (for the caller's log line).  Reads at most
 * BAIDU_HEADER_LEN bytes.  lim NULL: defaults.
 */
int baidu_parse_header(const void *p, size_t n, const struct baidu_limits *lim,
		       uint32_t *body_size, uint32_t *meta_size);

/*
 * Decodes a meta from flat memory (p, n) into *pb (allocated through
 * `mem`, NULL: default) and fills *view.  0; -EBADMSG: not a valid RpcMeta
 * (bad wire format, a missing required field, e.g. request without
 * method_name); -ENOMEM.  Free *pb with baidu_meta_free().
 */
int baidu_meta_decode(const void *p, size_t n, const struct mem *mem,
		      struct Brpc__Policy__RpcMeta **pb,
		      struct baidu_meta *view);

void baidu_meta_free(struct Brpc__Policy__RpcMeta *pb, const struct mem *mem);

/*
 * Cuts the first frame off `in` into *f (caller storage, overwritten; need
 * not be initialised).  Returns the bytes consumed (BAIDU_HEADER_LEN +
 * body_size), and then *f holds refs and must go to baidu_frame_release();
 * or, with nothing consumed and nothing held:
 * -EAGAIN: the frame is not complete yet (call again with more bytes);
 * -EPROTO, -EMSGSIZE, -EBADMSG: as baidu_parse_header(), checked as soon
 *   as the 12 header bytes are in, before waiting for the body;
 * -EBADMSG: the meta does not decode (brpc closes the connection);
 * -ENOMEM.
 * Every error but -EAGAIN and -ENOMEM means the stream cannot be
 * resynchronised: close the connection.  f->data and f->attachment share
 * in's blocks (refs, no copy); they use in's pool.  lim NULL: defaults.
 * Not checked here, for the caller: request vs response (has_request,
 * has_response), bad_attachment, compress/content types, the checksum.
 */
int baidu_parse(struct iobuf *in, struct baidu_frame *f,
		const struct baidu_limits *lim);

/* Drops the frame's refs and frees its meta.  Idempotent. */
void baidu_frame_release(struct baidu_frame *f);

/* --- packing ------------------------------------------------------------- */

/*
 * A request's meta.  Emitted as brpc 1.17's PackRpcRequest does (fields in
 * number order, byte-identical for the same inputs):
 *   request { service_name, method_name, [log_id], [trace_id, span_id,
 *   parent_span_id], [request_id], [timeout_ms] }, compress_type,
 *   correlation_id, [attachment_size if > 0], [authentication_data],
 *   content_type, checksum_type, checksum_value (empty if none).
 * brpc before 1.14 skips fields 10-12 as unknown, so emitting them at
 * their defaults costs 6 bytes and nothing else.
 */
struct baidu_req_meta {
	const char *service; /* required: "package.Service" (or short name) */
	const char *method;  /* required: bare method name */
	uint64_t correlation_id;
	int32_t compress_type;
	int32_t content_type;
	bool has_log_id;
	uint64_t log_id;
	bool has_trace; /* emits trace_id, span_id and parent_span_id */
	uint64_t trace_id, span_id, parent_span_id;
	const char *request_id; /* NULL or "": not sent */
	bool has_timeout_ms; /* brpc: -baidu_std_protocol_deliver_timeout_ms */
	int32_t timeout_ms;
	struct baidu_bytes auth; /* ptr NULL: not sent (spec 1.7) */
	int32_t checksum_type;
	struct baidu_bytes checksum_value; /* ptr NULL: sent empty */
};

/*
 * A response's meta, emitted as brpc's SendRpcResponse does:
 *   response { error_code, [error_text if non-empty] }, compress_type,
 *   correlation_id, [attachment_size if > 0], content_type,
 *   checksum_type, checksum_value (empty if none).
 */
struct baidu_resp_meta {
	uint64_t correlation_id; /* the request's */
	int32_t error_code;	 /* 0: success */
	const char *error_text;	 /* NULL or "": not sent */
	int32_t compress_type;
	int32_t content_type;
	int32_t checksum_type;
	struct baidu_bytes checksum_value; /* ptr NULL: sent empty */
};

/*
 * Appends one frame to `out`: header and meta (copied, small) then msg's
 * and attachment's refs, moved (msg and attachment end empty); when
 * header, meta, msg and attachment fit in 256 bytes (META_STACK_LEN) all
 * are copied instead, one region for one send(2).  msg/attachment NULL: empty.  attachment_size is the
 * attachment's length.  0, or with out, msg and attachment unchanged:
 * -EINVAL: service or method NULL;
 * -EMSGSIZE: the body would not fit the u32 body_size, or the attachment
 *   the int32 attachment_size (peers also enforce their max_body_size,
 *   64 MiB for brpc by default: staying under it is the caller's call);
 * -ENOMEM.
 */
int baidu_pack_request(struct iobuf *out, const struct baidu_req_meta *m,
		       struct iobuf *msg, struct iobuf *attachment);

/*
 * As baidu_pack_request() for a response.  A failed call (error_code != 0)
 * carries no message and no attachment: -EINVAL if either is non-empty.
 */
int baidu_pack_response(struct iobuf *out, const struct baidu_resp_meta *m,
			struct iobuf *msg, struct iobuf *attachment);

/*
 * As baidu_pack_request() for a message held as msg_len flat bytes (a
 * client's small request, kept for retries): copied into the frame,
 * which is one region when it all fits in 256 bytes.
 */
int baidu_pack_request_flat(struct iobuf *out, const struct baidu_req_meta *m,
			    const void *msg, size_t msg_len,
			    struct iobuf *attachment);

/*
 * As baidu_pack_response() for a successful answer whose message is not
 * encoded yet: when header, meta, the encoded message and the attachment
 * fit in 256 bytes, msg is encoded straight into the frame (no buffer of
 * its own, no copy) and the attachment copied beside it, emptied.
 * -ENOSPC when they do not fit (nothing done: encode msg into an iobuf
 * and call baidu_pack_response()), -EINVAL for an error answer or
 * attachment == out, -ENOMEM (nothing done either way).  The message must
 * be complete (pbuf_complete()).
 */
int baidu_pack_response_pb(struct iobuf *out, const struct baidu_resp_meta *m,
			   const ProtobufCMessage *msg,
			   struct iobuf *attachment);

/*
 * brpc's server-side error_text (Controller::SetFailed on a server):
 *
 *   "[" server_addr "]" "[E" code "]" text
 *
 * e.g. "[127.0.0.1:8100][E1002]Fail to find method=example.EchoService/
 * NoSuchMethod" (vectors err_no_method.s2c; echo_fail.s2c has
 * "[127.0.0.1:8100][E4242]asked to fail").  brpc writes its host's address
 * (butil::my_ip(), not the accepting socket's) and its listen port;
 * "[E<code>]" is left out when code is -1 (SetFailed without a code), the
 * address when server_addr is NULL.  brpc's security mode (an MD5 of the
 * address instead) is not reproduced.  Texts brpc's server writes itself:
 *   ENOSERVICE "Fail to find service=<service as sent>"
 *   ENOMETHOD  "Fail to find method=<service as sent>/<method>"
 *   EREQUEST   "Fail to parse request=<message type>, ContentType=pb,
 *              CompressType=none, ChecksumType=none, request_size=<n>"
 *   ERPCAUTH   "Fail to authenticate" [": " detail]
 * Writes a NUL-terminated string into buf (size bytes) and returns its
 * length, or -ENOSPC if it does not fit (buf then holds "" when size > 0).
 */
int baidu_format_error_text(char *buf, size_t size, const char *server_addr,
			    int code, const char *text);

/* --- checksum hook (spec 1.5) ------------------------------------------- */

/* Masks a CRC32C as brpc does (rotate right 15, add 0xa282ead8) and stores
 * it big-endian: the 4-byte checksum_value. */
void baidu_checksum_encode(uint32_t crc, uint8_t out[4]);

/* The CRC32C inside a checksum_value: 0, or -EBADMSG if v is not 4 bytes. */
int baidu_checksum_decode(const struct baidu_bytes *v, uint32_t *crc);

#endif
