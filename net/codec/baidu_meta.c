/*
 * baidu_meta: the RpcMeta fast path (see baidu_meta.h).
 *
 * Protocol Buffers wire format, the parts used here: a field is a varint
 * key (number << 3 | wire type) then its value: wire type 0 a varint (at
 * most 10 bytes, 7 bits each, least significant first), wire type 2 a
 * varint length then that many bytes (strings, bytes, sub-messages).
 * int32 is the varint's low 32 bits; a negative int32 is written as the
 * 10-byte varint of its sign extension.
 */
#include "baidu_meta.h"

#include <string.h>

enum { WT_VARINT = 0, WT_LEN = 2 };

/* Field numbers (net/codec/proto/baidu_rpc_meta.proto). */
enum {
	META_REQUEST = 1,
	META_RESPONSE = 2,
	META_COMPRESS_TYPE = 3,
	META_CORRELATION_ID = 4,
	META_ATTACHMENT_SIZE = 5,
	META_AUTHENTICATION_DATA = 7,
	META_CONTENT_TYPE = 10,
	META_CHECKSUM_TYPE = 11,
	META_CHECKSUM_VALUE = 12,
	META_CHECKSUM_WITH_ATTACHMENT = 13,
};
enum {
	REQ_SERVICE_NAME = 1,
	REQ_METHOD_NAME = 2,
	REQ_LOG_ID = 3,
	REQ_TRACE_ID = 4,
	REQ_SPAN_ID = 5,
	REQ_PARENT_SPAN_ID = 6,
	REQ_REQUEST_ID = 7,
	REQ_TIMEOUT_MS = 8,
};
enum {
	RESP_ERROR_CODE = 1,
	RESP_ERROR_TEXT = 2,
};

#define TAKEN	  0
#define NOT_TAKEN 1

/* --- decoding ------------------------------------------------------------ */

struct rd {
	const uint8_t *p, *end;
	char *store; /* next free byte of the caller's string buffer */
};

/*
 * One varint.  Anything a strict reader would argue about (more than 10
 * bytes, bits past 64 in the tenth, running off the end) is NOT_TAKEN.
 */
static int get_varint(struct rd *r, uint64_t *v)
{
	uint64_t x = 0;

	/* Most of a meta's varints (types, sizes, lengths) are one byte. */
	if (r->p < r->end && !(*r->p & 0x80)) {
		*v = *r->p++;
		return TAKEN;
	}
	for (unsigned i = 0; i < 10; i++) {
		uint8_t b;

		if (r->p == r->end)
			return NOT_TAKEN;
		b = *r->p++;
		if (i == 9 && b > 1)
			return NOT_TAKEN;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return TAKEN;
		}
	}
	return NOT_TAKEN;
}

/*
 * A field's key.  Every field the fast path knows is numbered below 16,
 * so its key is one byte; a longer key (another field, or a padded
 * encoding) is NOT_TAKEN.
 */
static int get_key(struct rd *r, uint32_t *num, uint32_t *wt)
{
	uint8_t k;

	if (r->p == r->end || (*r->p & 0x80) || (*r->p >> 3) == 0)
		return NOT_TAKEN;
	k = *r->p++;
	*num = k >> 3;
	*wt = k & 7;
	return TAKEN;
}

/*
 * A length-delimited value: its bytes, inside the input.  protobuf-c reads
 * a length of at most 5 bytes; a longer one is NOT_TAKEN.
 */
static int get_len(struct rd *r, const uint8_t **p, size_t *n)
{
	const uint8_t *start = r->p;
	uint64_t len;

	if (get_varint(r, &len) || r->p - start > 5 ||
	    len > (uint64_t)(r->end - r->p))
		return NOT_TAKEN;
	*p = r->p;
	*n = (size_t)len;
	r->p += len;
	return TAKEN;
}

/* A length-delimited value copied into the store, NUL-terminated. */
static int get_str(struct rd *r, const char **s, size_t *n)
{
	const uint8_t *p;
	size_t len;

	if (get_len(r, &p, &len))
		return NOT_TAKEN;
	memcpy(r->store, p, len);
	r->store[len] = '\0';
	*s = r->store;
	if (n)
		*n = len;
	r->store += len + 1;
	return TAKEN;
}

static int get_bytes(struct rd *r, struct baidu_bytes *b)
{
	const char *s;

	if (get_str(r, &s, &b->len))
		return NOT_TAKEN;
	b->ptr = (const uint8_t *)s;
	return TAKEN;
}

static int get_i32(struct rd *r, int32_t *v)
{
	uint64_t x;

	if (get_varint(r, &x))
		return NOT_TAKEN;
	*v = (int32_t)(uint32_t)x;
	return TAKEN;
}

static int request_fields(struct rd *r, struct baidu_meta *v)
{
	bool has_service = false, has_method = false;
	uint32_t num, wt;
	uint64_t x;

	while (r->p < r->end) {
		if (get_key(r, &num, &wt))
			return NOT_TAKEN;
		if (wt != (num == REQ_SERVICE_NAME || num == REQ_METHOD_NAME ||
				   num == REQ_REQUEST_ID
			       ? WT_LEN
			       : WT_VARINT))
			return NOT_TAKEN;
		switch (num) {
		case REQ_SERVICE_NAME:
			has_service = true;
			if (get_str(r, &v->service, NULL))
				return NOT_TAKEN;
			break;
		case REQ_METHOD_NAME:
			has_method = true;
			if (get_str(r, &v->method, NULL))
				return NOT_TAKEN;
			break;
		case REQ_REQUEST_ID:
			if (get_str(r, &v->request_id, NULL))
				return NOT_TAKEN;
			break;
		case REQ_TIMEOUT_MS:
			v->has_timeout_ms = true;
			if (get_i32(r, &v->timeout_ms))
				return NOT_TAKEN;
			break;
		case REQ_LOG_ID:
		case REQ_TRACE_ID:
		case REQ_SPAN_ID:
		case REQ_PARENT_SPAN_ID:
			if (get_varint(r, &x))
				return NOT_TAKEN;
			if (num == REQ_LOG_ID) {
				v->has_log_id = true;
				v->log_id = x;
			} else if (num == REQ_TRACE_ID) {
				v->trace_id = x;
			} else if (num == REQ_SPAN_ID) {
				v->span_id = x;
			} else {
				v->parent_span_id = x;
			}
			break;
		default:
			return NOT_TAKEN;
		}
	}
	/* Both required: without them protobuf-c refuses the meta. */
	return has_service && has_method ? TAKEN : NOT_TAKEN;
}

static int response_fields(struct rd *r, struct baidu_meta *v)
{
	uint32_t num, wt;

	while (r->p < r->end) {
		if (get_key(r, &num, &wt))
			return NOT_TAKEN;
		if (num == RESP_ERROR_CODE && wt == WT_VARINT) {
			if (get_i32(r, &v->error_code))
				return NOT_TAKEN;
		} else if (num == RESP_ERROR_TEXT && wt == WT_LEN) {
			if (get_str(r, &v->error_text, NULL))
				return NOT_TAKEN;
		} else {
			return NOT_TAKEN;
		}
	}
	return TAKEN;
}

/* A sub-message's fields, read by `fn` from a reader bounded to it. */
static int get_sub(struct rd *r, struct baidu_meta *v,
		   int (*fn)(struct rd *, struct baidu_meta *))
{
	struct rd sub;
	const uint8_t *p;
	size_t n;
	int ret;

	if (get_len(r, &p, &n))
		return NOT_TAKEN;
	sub = (struct rd){.p = p, .end = p + n, .store = r->store};
	ret = fn(&sub, v);
	r->store = sub.store;
	return ret;
}

static int top_field(struct rd *r, uint32_t num, struct baidu_meta *v)
{
	uint64_t x;

	switch (num) {
	case META_REQUEST:
		/* A second copy would be merged into the first: rare enough
		 * to leave to protobuf-c. */
		if (v->has_request)
			return NOT_TAKEN;
		v->has_request = true;
		return get_sub(r, v, request_fields);
	case META_RESPONSE:
		if (v->has_response)
			return NOT_TAKEN;
		v->has_response = true;
		return get_sub(r, v, response_fields);
	case META_COMPRESS_TYPE:
		return get_i32(r, &v->compress_type);
	case META_CORRELATION_ID:
		return get_varint(r, &v->correlation_id);
	case META_ATTACHMENT_SIZE:
		return get_i32(r, &v->attachment_size);
	case META_AUTHENTICATION_DATA:
		return get_bytes(r, &v->authentication_data);
	case META_CONTENT_TYPE:
		return get_i32(r, &v->content_type);
	case META_CHECKSUM_TYPE:
		return get_i32(r, &v->checksum_type);
	case META_CHECKSUM_VALUE:
		return get_bytes(r, &v->checksum_value);
	case META_CHECKSUM_WITH_ATTACHMENT:
		if (get_varint(r, &x))
			return NOT_TAKEN;
		v->checksum_with_attachment = x != 0;
		return TAKEN;
	default:
		return NOT_TAKEN;
	}
}

static uint32_t top_wire_type(uint32_t num)
{
	switch (num) {
	case META_REQUEST:
	case META_RESPONSE:
	case META_AUTHENTICATION_DATA:
	case META_CHECKSUM_VALUE:
		return WT_LEN;
	default:
		return WT_VARINT;
	}
}

int baidu_meta_decode_fast(const void *p, size_t n, char *store,
			   struct baidu_meta *view)
{
	struct rd r;
	uint32_t num, wt;

	memset(view, 0, sizeof(*view));
	view->service = "";
	view->method = "";
	view->error_text = "";
	if (!n)
		return TAKEN; /* every field absent; p may be NULL */
	r = (struct rd){.p = p, .end = (const uint8_t *)p + n, .store = store};
	while (r.p < r.end) {
		if (get_key(&r, &num, &wt) || wt != top_wire_type(num) ||
		    top_field(&r, num, view))
			return NOT_TAKEN;
	}
	return TAKEN;
}

/* --- encoding ------------------------------------------------------------ */

static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Keys of fields 1-15 are one byte. */
#define KEY(num, wt) ((uint8_t)((num) << 3 | (wt)))

/* int32 widens with its sign, as protobuf-c packs it. */
static uint64_t i32_wire(int32_t v)
{
	return (uint64_t)(int64_t)v;
}

static size_t varint_field_size(uint64_t v)
{
	return 1 + varint_size(v);
}

static size_t len_field_size(size_t len)
{
	return 1 + varint_size(len) + len;
}

static uint8_t *put_varint_field(uint8_t *p, uint32_t num, uint64_t v)
{
	*p++ = KEY(num, WT_VARINT);
	return put_varint(p, v);
}

static uint8_t *put_len_field(uint8_t *p, uint32_t num, const void *data,
			      size_t len)
{
	*p++ = KEY(num, WT_LEN);
	p = put_varint(p, len);
	if (len)
		memcpy(p, data, len);
	return p + len;
}

static bool nonempty(const char *s)
{
	return s && s[0];
}

/* Sizes fill len[] (service, method), which put_request() uses. */
static size_t request_size(const struct baidu_req_meta *m, size_t len[2])
{
	size_t n;

	len[0] = strlen(m->service);
	len[1] = strlen(m->method);
	n = len_field_size(len[0]) + len_field_size(len[1]);
	if (m->has_log_id)
		n += varint_field_size(m->log_id);
	if (m->has_trace)
		n += varint_field_size(m->trace_id) +
		     varint_field_size(m->span_id) +
		     varint_field_size(m->parent_span_id);
	if (nonempty(m->request_id))
		n += len_field_size(strlen(m->request_id));
	if (m->has_timeout_ms)
		n += varint_field_size(i32_wire(m->timeout_ms));
	return n;
}

static uint8_t *put_request(uint8_t *p, const struct baidu_req_meta *m,
			    const size_t len[2])
{
	p = put_len_field(p, REQ_SERVICE_NAME, m->service, len[0]);
	p = put_len_field(p, REQ_METHOD_NAME, m->method, len[1]);
	if (m->has_log_id)
		p = put_varint_field(p, REQ_LOG_ID, m->log_id);
	if (m->has_trace) {
		p = put_varint_field(p, REQ_TRACE_ID, m->trace_id);
		p = put_varint_field(p, REQ_SPAN_ID, m->span_id);
		p = put_varint_field(p, REQ_PARENT_SPAN_ID, m->parent_span_id);
	}
	if (nonempty(m->request_id))
		p = put_len_field(p, REQ_REQUEST_ID, m->request_id,
				  strlen(m->request_id));
	if (m->has_timeout_ms)
		p = put_varint_field(p, REQ_TIMEOUT_MS,
				     i32_wire(m->timeout_ms));
	return p;
}

/* len[0]: error_text's length (0: not sent), for put_response(). */
static size_t response_size(const struct baidu_resp_meta *m, size_t len[2])
{
	size_t n = varint_field_size(i32_wire(m->error_code));

	len[0] = nonempty(m->error_text) ? strlen(m->error_text) : 0;
	if (len[0])
		n += len_field_size(len[0]);
	return n;
}

static uint8_t *put_response(uint8_t *p, const struct baidu_resp_meta *m,
			     const size_t len[2])
{
	p = put_varint_field(p, RESP_ERROR_CODE, i32_wire(m->error_code));
	if (len[0])
		p = put_len_field(p, RESP_ERROR_TEXT, m->error_text, len[0]);
	return p;
}

/* The fields both kinds share, read from whichever is set. */
struct common {
	int32_t compress_type, content_type, checksum_type;
	uint64_t correlation_id;
	const struct baidu_bytes *auth; /* NULL: not sent */
	const struct baidu_bytes *checksum_value;
};

static void common_of(const struct baidu_meta_out *m, struct common *c)
{
	if (m->req) {
		*c = (struct common){
		    .compress_type = m->req->compress_type,
		    .content_type = m->req->content_type,
		    .checksum_type = m->req->checksum_type,
		    .correlation_id = m->req->correlation_id,
		    .auth = m->req->auth.ptr ? &m->req->auth : NULL,
		    .checksum_value = &m->req->checksum_value,
		};
	} else {
		*c = (struct common){
		    .compress_type = m->resp->compress_type,
		    .content_type = m->resp->content_type,
		    .checksum_type = m->resp->checksum_type,
		    .correlation_id = m->resp->correlation_id,
		    .checksum_value = &m->resp->checksum_value,
		};
	}
}

/* A checksum_value with ptr NULL is sent empty. */
static size_t bytes_len(const struct baidu_bytes *b)
{
	return b->ptr ? b->len : 0;
}

size_t baidu_meta_size(struct baidu_meta_out *m)
{
	struct common c;
	size_t n;

	common_of(m, &c);
	m->inner_size = m->req ? request_size(m->req, m->name_len)
			       : response_size(m->resp, m->name_len);
	n = len_field_size(m->inner_size);
	n += varint_field_size(i32_wire(c.compress_type));
	n += varint_field_size(c.correlation_id);
	if (m->attachment_size)
		n += varint_field_size(m->attachment_size);
	if (c.auth)
		n += len_field_size(c.auth->len);
	n += varint_field_size(i32_wire(c.content_type));
	n += varint_field_size(i32_wire(c.checksum_type));
	n += len_field_size(bytes_len(c.checksum_value));
	return n;
}

size_t baidu_meta_put(const struct baidu_meta_out *m, uint8_t *buf)
{
	struct common c;
	uint8_t *p = buf;

	common_of(m, &c);
	if (m->req) {
		*p++ = KEY(META_REQUEST, WT_LEN);
		p = put_varint(p, m->inner_size);
		p = put_request(p, m->req, m->name_len);
	} else {
		*p++ = KEY(META_RESPONSE, WT_LEN);
		p = put_varint(p, m->inner_size);
		p = put_response(p, m->resp, m->name_len);
	}
	p = put_varint_field(p, META_COMPRESS_TYPE, i32_wire(c.compress_type));
	p = put_varint_field(p, META_CORRELATION_ID, c.correlation_id);
	if (m->attachment_size)
		p = put_varint_field(p, META_ATTACHMENT_SIZE,
				     m->attachment_size);
	if (c.auth)
		p = put_len_field(p, META_AUTHENTICATION_DATA, c.auth->ptr,
				  c.auth->len);
	p = put_varint_field(p, META_CONTENT_TYPE, i32_wire(c.content_type));
	p = put_varint_field(p, META_CHECKSUM_TYPE, i32_wire(c.checksum_type));
	p = put_len_field(p, META_CHECKSUM_VALUE, c.checksum_value->ptr,
			  bytes_len(c.checksum_value));
	return (size_t)(p - buf);
}
