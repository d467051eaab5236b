/*
 * baidu_std: framing and meta (see baidu_std.h for the frame layout).
 *
 * Parsing order, each step before anything depending on it:
 *   1. up to 4 bytes: the magic (-EPROTO), so detection answers early;
 *   2. 12 bytes: body_size and meta_size against the limits and each other
 *      (-EMSGSIZE, -EBADMSG), before waiting for or allocating a body;
 *   3. 12 + body_size bytes: the meta, flat (in place when it lies in one
 *      ref, else copied to the stack or, above META_STACK_LEN, to a buffer
 *      from `mem` of meta_size bytes, a length already checked against the
 *      limit and the bytes present), decoded by protobuf-c through `mem`;
 *   4. data and attachment shared out of the input, then the frame dropped
 *      from it: sharing is the only step after decoding that can fail and
 *      it leaves the input untouched, so a failure unwinds completely.
 *
 * Packing writes header and meta through a small stack buffer into the
 * output, then shares the caller's message and attachment refs onto it and
 * only then empties them, so that every failure can be undone by dropping
 * what was appended.  A message and attachment that fit in the stack
 * buffer beside the meta are copied there instead: a small frame is then
 * one region of the output, sent with one send(2) rather than a sendmsg
 * of three iovecs (see iobuf_write_fd).  A server's small answer skips
 * even the message's own buffer: baidu_pack_response_pb() encodes it
 * straight into that stack buffer.
 */
#include "baidu_std.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "baidu_meta.h"
#include "baidu_rpc_meta.pb-c.h"
#include "pbuf.h"

/* Metas up to this size that straddle two refs are flattened on the stack
 * (brpc's own metas are 20-60 bytes); a frame packed whole up to this
 * size is copied into one region there. */
#define META_STACK_LEN 256
/* The LevelDB CRC mask brpc uses for checksum_value (crc32c.h in butil). */
#define CHECKSUM_MASK_DELTA 0xa282ead8u
/*
 * A frame length must fit the int a parser returns; with the u32 fields of
 * the header that bounds body_size a little under 2 GiB, far over any
 * sane max_body_size.
 */
#define BODY_SIZE_RETURNABLE ((size_t)INT_MAX - BAIDU_HEADER_LEN)

static const uint8_t empty_bytes[1];

/* --- options ------------------------------------------------------------- */

void baidu_limits_default(struct baidu_limits *lim)
{
	*lim = (struct baidu_limits){
	    .max_body_size = BAIDU_MAX_BODY_SIZE_DEFAULT,
	    .max_meta_size = BAIDU_MAX_META_SIZE_DEFAULT,
	    .mem = NULL,
	};
}

int baidu_limits_validate(const struct baidu_limits *lim)
{
	if (lim->max_body_size == 0 || lim->max_body_size > UINT32_MAX)
		return -EINVAL;
	if (lim->max_meta_size == 0 || lim->max_meta_size > lim->max_body_size)
		return -EINVAL;
	return 0;
}

static const struct baidu_limits *
limits_or_default(const struct baidu_limits *lim, struct baidu_limits *def)
{
	if (lim)
		return lim;
	baidu_limits_default(def);
	return def;
}

/* --- parsing ------------------------------------------------------------- */

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

int baidu_detect(const struct iobuf *in)
{
	uint8_t magic[BAIDU_MAGIC_LEN];
	size_t n = iobuf_copy_out(in, 0, magic, sizeof(magic));

	if (n && memcmp(magic, BAIDU_MAGIC, n) != 0)
		return -EPROTO;
	return n == BAIDU_MAGIC_LEN ? 1 : 0;
}

int baidu_parse_header(const void *p, size_t n, const struct baidu_limits *lim,
		       uint32_t *body_size, uint32_t *meta_size)
{
	const uint8_t *b = p;
	struct baidu_limits def;
	size_t k = n < BAIDU_MAGIC_LEN ? n : BAIDU_MAGIC_LEN;
	uint32_t body, meta;

	if (k && memcmp(b, BAIDU_MAGIC, k) != 0)
		return -EPROTO;
	if (n < BAIDU_HEADER_LEN)
		return -EAGAIN;
	lim = limits_or_default(lim, &def);
	body = get_be32(b + 4);
	meta = get_be32(b + 8);
	/* Filled before the checks: a refusal's log line names them. */
	*body_size = body;
	*meta_size = meta;
	if (body > lim->max_body_size || body > BODY_SIZE_RETURNABLE)
		return -EMSGSIZE;
	/* brpc's order: this is checked once the size is known to be sane. */
	if (meta > body)
		return -EBADMSG;
	if (meta > lim->max_meta_size)
		return -EMSGSIZE;
	return BAIDU_HEADER_LEN;
}

static void meta_view(const Brpc__Policy__RpcMeta *pb, struct baidu_meta *v)
{
	const Brpc__Policy__RpcRequestMeta *rq = pb->request;
	const Brpc__Policy__RpcResponseMeta *rs = pb->response;

	memset(v, 0, sizeof(*v));
	v->service = "";
	v->method = "";
	v->error_text = "";
	if (rq) {
		v->has_request = true;
		if (rq->service_name)
			v->service = rq->service_name;
		if (rq->method_name)
			v->method = rq->method_name;
		v->has_log_id = rq->has_log_id;
		v->log_id = (uint64_t)rq->log_id;
		v->trace_id = (uint64_t)rq->trace_id;
		v->span_id = (uint64_t)rq->span_id;
		v->parent_span_id = (uint64_t)rq->parent_span_id;
		v->request_id = rq->request_id;
		v->has_timeout_ms = rq->has_timeout_ms;
		v->timeout_ms = rq->timeout_ms;
	}
	if (rs) {
		v->has_response = true;
		v->error_code = rs->error_code;
		if (rs->error_text)
			v->error_text = rs->error_text;
	}
	v->correlation_id = (uint64_t)pb->correlation_id;
	v->compress_type = pb->compress_type;
	v->content_type = pb->content_type;
	v->attachment_size = pb->attachment_size;
	if (pb->has_authentication_data) {
		v->authentication_data.ptr = pb->authentication_data.data;
		v->authentication_data.len = pb->authentication_data.len;
		if (!v->authentication_data.ptr)
			v->authentication_data.ptr = empty_bytes;
	}
	v->checksum_type = pb->checksum_type;
	if (pb->has_checksum_value) {
		v->checksum_value.ptr = pb->checksum_value.data;
		v->checksum_value.len = pb->checksum_value.len;
		if (!v->checksum_value.ptr)
			v->checksum_value.ptr = empty_bytes;
	}
	v->checksum_with_attachment = pb->checksum_with_attachment;
	v->has_stream_settings = pb->stream_settings != NULL;
	v->n_user_fields = pb->n_user_fields;
}

int baidu_meta_decode(const void *p, size_t n, const struct mem *mem,
		      struct Brpc__Policy__RpcMeta **pb,
		      struct baidu_meta *view)
{
	struct pbuf_alloc pa;
	Brpc__Policy__RpcMeta *m;

	pbuf_alloc_init(&pa, mem);
	/* protobuf-c reads exactly n bytes and never writes them. */
	m = brpc__policy__rpc_meta__unpack(&pa.a, n, n ? p : empty_bytes);
	if (!m)
		return pa.nomem ? -ENOMEM : -EBADMSG;
	if (pbuf_has_field_zero(&m->base)) {
		brpc__policy__rpc_meta__free_unpacked(m, &pa.a);
		return -EBADMSG;
	}
	meta_view(m, view);
	*pb = m;
	return 0;
}

void baidu_meta_free(struct Brpc__Policy__RpcMeta *pb, const struct mem *mem)
{
	struct pbuf_alloc pa;

	if (!pb)
		return;
	pbuf_alloc_init(&pa, mem);
	brpc__policy__rpc_meta__free_unpacked(pb, &pa.a);
}

/*
 * The fast path first (*pb NULL, strings in *store), protobuf-c when it
 * declines (*store NULL).  0, -EBADMSG or -ENOMEM.
 */
static int decode_meta(const void *p, size_t n, const struct mem *mem,
		       struct Brpc__Policy__RpcMeta **pb, char **store,
		       struct baidu_meta *view)
{
	*pb = NULL;
	*store = NULL;
	if (n) {
		*store = mem_alloc(mem, n);
		if (!*store)
			return -ENOMEM;
	}
	if (baidu_meta_decode_fast(p, n, *store, view) == 0)
		return 0;
	mem_free(mem, *store);
	*store = NULL;
	return baidu_meta_decode(p, n, mem, pb, view);
}

/* Pointer to in[off, off + n) if those bytes lie in one ref, else NULL. */
static const void *iobuf_span(const struct iobuf *in, size_t off, size_t n)
{
	const void *p;
	size_t i, len;

	for (i = 0; iobuf_ref_at(in, i, &p, &len) == 0; i++) {
		if (off < len)
			return n <= len - off ? (const uint8_t *)p + off : NULL;
		off -= len;
	}
	return NULL;
}

int baidu_parse(struct iobuf *in, struct baidu_frame *f,
		const struct baidu_limits *lim)
{
	uint8_t hdr[BAIDU_HEADER_LEN], stack[META_STACK_LEN];
	struct Brpc__Policy__RpcMeta *pb;
	struct baidu_limits def;
	char *store;
	uint32_t body, meta_len;
	size_t data_len, att_len, frame_len;
	const void *meta, *head;
	void *heap = NULL;
	bool bad_att = false;
	int ret;

	lim = limits_or_default(lim, &def);
	/* Mostly the header lies in the first block: read it in place. */
	head = iobuf_span(in, 0, sizeof(hdr));
	ret = head
		  ? baidu_parse_header(head, sizeof(hdr), lim, &body, &meta_len)
		  : baidu_parse_header(hdr,
				       iobuf_copy_out(in, 0, hdr, sizeof(hdr)),
				       lim, &body, &meta_len);
	if (ret < 0)
		return ret;
	if (iobuf_len(in) - BAIDU_HEADER_LEN < body)
		return -EAGAIN;
	frame_len = BAIDU_HEADER_LEN + (size_t)body;

	meta = iobuf_span(in, BAIDU_HEADER_LEN, meta_len);
	if (!meta && meta_len) {
		void *flat = stack;

		if (meta_len > sizeof(stack)) {
			flat = heap = mem_alloc(lim->mem, meta_len);
			if (!flat)
				return -ENOMEM;
		}
		iobuf_copy_out(in, BAIDU_HEADER_LEN, flat, meta_len);
		meta = flat;
	}
	ret = decode_meta(meta, meta_len, lim->mem, &pb, &store, &f->meta);
	mem_free(lim->mem, heap);
	if (ret < 0)
		return ret;

	data_len = body - meta_len;
	att_len = 0;
	if (f->meta.attachment_size) {
		if (f->meta.attachment_size < 0 ||
		    (size_t)f->meta.attachment_size > data_len)
			bad_att = true;
		else
			att_len = (size_t)f->meta.attachment_size;
	}
	iobuf_init(&f->data, in->pool);
	iobuf_init(&f->attachment, in->pool);
	ret = iobuf_share(&f->data, in, BAIDU_HEADER_LEN + meta_len,
			  data_len - att_len);
	if (ret < 0)
		goto out_free_meta;
	ret = iobuf_share(&f->attachment, in, frame_len - att_len, att_len);
	if (ret < 0)
		goto out_reset_data;
	iobuf_drop_front(in, frame_len);

	f->body_size = body;
	f->meta_size = meta_len;
	f->pb = pb;
	f->store = store;
	f->bad_attachment = bad_att;
	f->mem = lim->mem;
	return (int)frame_len;

out_reset_data:
	iobuf_reset(&f->data);
out_free_meta:
	baidu_meta_free(pb, lim->mem);
	mem_free(lim->mem, store);
	return ret;
}

void baidu_frame_release(struct baidu_frame *f)
{
	iobuf_reset(&f->data);
	iobuf_reset(&f->attachment);
	baidu_meta_free(f->pb, f->mem);
	f->pb = NULL;
	mem_free(f->mem, f->store);
	f->store = NULL;
}

/* --- packing ------------------------------------------------------------- */

/* Header and meta, for a body (message and attachment) of body_len. */
static void put_head(uint8_t *buf, const struct baidu_meta_out *m,
		     size_t meta_len, size_t body_len)
{
	memcpy(buf, BAIDU_MAGIC, BAIDU_MAGIC_LEN);
	put_be32(buf + 4, (uint32_t)(meta_len + body_len));
	put_be32(buf + 8, (uint32_t)meta_len);
	baidu_meta_put(m, buf + BAIDU_HEADER_LEN);
}

/* A frame's message, in one of three forms, and its encoded length. */
struct msg_src {
	struct iobuf *buf;	    /* encoded bytes, emptied once packed */
	const void *flat;	    /* or encoded bytes, left as they are */
	const ProtobufCMessage *pb; /* or a message, encoded here */
	size_t len;
};

/*
 * A frame whose message and attachment fit beside header and meta in one
 * stack buffer: packed there and appended as one region (one send(2)),
 * message iobuf and attachment copied and emptied.  -ENOSPC, nothing
 * done, when they do not fit.
 */
static int pack_inline(struct iobuf *out, struct baidu_meta_out *m,
		       const struct msg_src *msg, struct iobuf *att)
{
	size_t att_len = att ? iobuf_len(att) : 0;
	uint8_t buf[META_STACK_LEN];
	size_t meta_len, len;
	int err;

	if (att_len > sizeof(buf) || msg->len > sizeof(buf))
		return -ENOSPC;
	m->attachment_size = (uint32_t)att_len;
	meta_len = baidu_meta_size(m);
	len = BAIDU_HEADER_LEN + meta_len;
	if (len > sizeof(buf) || msg->len + att_len > sizeof(buf) - len)
		return -ENOSPC;
	put_head(buf, m, meta_len, msg->len + att_len);
	if (msg->pb)
		protobuf_c_message_pack(msg->pb, buf + len);
	else if (msg->buf && msg->len)
		iobuf_copy_out(msg->buf, 0, buf + len, msg->len);
	else if (msg->len)
		memcpy(buf + len, msg->flat, msg->len);
	len += msg->len;
	if (att_len)
		len += iobuf_copy_out(att, 0, buf + len, att_len);
	err = iobuf_append(out, buf, len);
	if (err)
		return err;
	if (msg->buf && msg->len)
		iobuf_drop_front(msg->buf, msg->len);
	if (att_len)
		iobuf_drop_front(att, att_len);
	return 0;
}

/*
 * Appends header, meta (attachment_size filled in here), msg and
 * attachment; empties msg and attachment.  All or nothing.  A small frame
 * is copied whole (pack_inline()); else msg's and att's refs are shared
 * behind header and meta.
 */
static int pack_frame(struct iobuf *out, struct baidu_meta_out *m,
		      struct iobuf *msg, struct iobuf *att)
{
	size_t msg_len = msg ? iobuf_len(msg) : 0;
	size_t att_len = att ? iobuf_len(att) : 0;
	size_t orig = iobuf_len(out), meta_len;
	uint8_t stack[META_STACK_LEN], *buf = stack;
	int err;

	if (msg == out || att == out || (msg && msg == att))
		return -EINVAL;
	err = pack_inline(out, m, &(struct msg_src){.buf = msg, .len = msg_len},
			  att);
	if (err != -ENOSPC)
		return err;
	if (att_len > INT32_MAX)
		return -EMSGSIZE;
	m->attachment_size = (uint32_t)att_len;
	meta_len = baidu_meta_size(m);
	if (msg_len > UINT32_MAX || att_len > UINT32_MAX - msg_len ||
	    meta_len > UINT32_MAX - msg_len - att_len)
		return -EMSGSIZE;

	/* Only a long credential or error text needs the heap. */
	if (BAIDU_HEADER_LEN + meta_len > sizeof(stack)) {
		buf = mem_alloc(NULL, BAIDU_HEADER_LEN + meta_len);
		if (!buf)
			return -ENOMEM;
	}
	put_head(buf, m, meta_len, msg_len + att_len);
	err = iobuf_append(out, buf, BAIDU_HEADER_LEN + meta_len);
	if (buf != stack)
		mem_free(NULL, buf);
	if (err)
		goto out_drop_appended;
	if (msg_len) {
		err = iobuf_share(out, msg, 0, msg_len);
		if (err)
			goto out_drop_appended;
	}
	if (att_len) {
		err = iobuf_share(out, att, 0, att_len);
		if (err)
			goto out_drop_appended;
	}
	/* Nothing can fail from here on: the refs now live in out. */
	if (msg_len)
		iobuf_drop_front(msg, msg_len);
	if (att_len)
		iobuf_drop_front(att, att_len);
	return 0;

out_drop_appended:
	iobuf_drop_back(out, iobuf_len(out) - orig);
	return err;
}

int baidu_pack_request(struct iobuf *out, const struct baidu_req_meta *m,
		       struct iobuf *msg, struct iobuf *attachment)
{
	struct baidu_meta_out mo = {.req = m};

	if (!m->service || !m->method)
		return -EINVAL;
	return pack_frame(out, &mo, msg, attachment);
}

int baidu_pack_response(struct iobuf *out, const struct baidu_resp_meta *m,
			struct iobuf *msg, struct iobuf *attachment)
{
	struct baidu_meta_out mo = {.resp = m};

	if (m->error_code != 0 && ((msg && !iobuf_empty(msg)) ||
				   (attachment && !iobuf_empty(attachment))))
		return -EINVAL;
	return pack_frame(out, &mo, msg, attachment);
}

int baidu_pack_request_flat(struct iobuf *out, const struct baidu_req_meta *m,
			    const void *msg, size_t msg_len,
			    struct iobuf *attachment)
{
	struct baidu_meta_out mo = {.req = m};
	struct iobuf tmp;
	int err;

	if (!m->service || !m->method || attachment == out)
		return -EINVAL;
	err = pack_inline(out, &mo,
			  &(struct msg_src){.flat = msg, .len = msg_len},
			  attachment);
	if (err != -ENOSPC)
		return err;
	/* Not in 256 bytes: a long credential or names, a big attachment. */
	iobuf_init(&tmp, out->pool);
	err = iobuf_append(&tmp, msg, msg_len);
	if (!err)
		err = pack_frame(out, &mo, &tmp, attachment);
	iobuf_destroy(&tmp);
	return err;
}

int baidu_pack_response_pb(struct iobuf *out, const struct baidu_resp_meta *m,
			   const ProtobufCMessage *msg,
			   struct iobuf *attachment)
{
	struct baidu_meta_out mo = {.resp = m};

	if (m->error_code != 0 || attachment == out)
		return -EINVAL;
	return pack_inline(
	    out, &mo,
	    &(struct msg_src){.pb = msg,
			      .len = protobuf_c_message_get_packed_size(msg)},
	    attachment);
}

int baidu_format_error_text(char *buf, size_t size, const char *server_addr,
			    int code, const char *text)
{
	char ecode[sizeof("[E-2147483648]")] = "";
	int n;

	if (code != -1)
		snprintf(ecode, sizeof(ecode), "[E%d]", code);
	n = snprintf(buf, size, "%s%s%s%s%s", server_addr ? "[" : "",
		     server_addr ? server_addr : "", server_addr ? "]" : "",
		     ecode, text ? text : "");
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size) {
		if (size)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

/* --- checksum hook ------------------------------------------------------- */

void baidu_checksum_encode(uint32_t crc, uint8_t out[4])
{
	put_be32(out, ((crc >> 15) | (crc << 17)) + CHECKSUM_MASK_DELTA);
}

int baidu_checksum_decode(const struct baidu_bytes *v, uint32_t *crc)
{
	uint32_t rot;

	if (!v->ptr || v->len != 4)
		return -EBADMSG;
	rot = get_be32(v->ptr) - CHECKSUM_MASK_DELTA;
	*crc = (rot >> 17) | (rot << 15);
	return 0;
}
