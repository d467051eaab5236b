/*
 * pbuf: protobuf-c over struct mem and struct iobuf (see pbuf.h).
 */
#include "pbuf.h"

#include <errno.h>
#include <string.h>

#include "base/util.h"

static void *pbuf_alloc_fn(void *ctx, size_t size)
{
	struct pbuf_alloc *pa = ctx;
	void *p;

	/* A zero-byte request must not read as a failure. */
	p = mem_alloc(pa->mem, size ? size : 1);
	if (!p)
		pa->nomem = true;
	return p;
}

static void pbuf_free_fn(void *ctx, void *ptr)
{
	struct pbuf_alloc *pa = ctx;

	mem_free(pa->mem, ptr);
}

void pbuf_alloc_init(struct pbuf_alloc *pa, const struct mem *mem)
{
	pa->a.alloc = pbuf_alloc_fn;
	pa->a.free = pbuf_free_fn;
	pa->a.allocator_data = pa;
	pa->mem = mem;
	pa->nomem = false;
}

static void sink_flush(struct pbuf_sink *s)
{
	if (!s->err && s->n)
		s->err = iobuf_append(s->out, s->buf, s->n);
	s->n = 0;
}

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct pbuf_sink *s = container_of(b, struct pbuf_sink, base);

	if (s->err || len == 0)
		return;
	if (len > sizeof(s->buf) - s->n) {
		sink_flush(s);
		if (len >= sizeof(s->buf)) {
			if (!s->err)
				s->err = iobuf_append(s->out, data, len);
			return;
		}
	}
	memcpy(s->buf + s->n, data, len);
	s->n += len;
}

void pbuf_sink_init(struct pbuf_sink *s, struct iobuf *out)
{
	s->base.append = sink_append;
	s->out = out;
	s->err = 0;
	s->n = 0;
}

int pbuf_sink_finish(struct pbuf_sink *s)
{
	sink_flush(s);
	return s->err;
}

int pbuf_pack(const ProtobufCMessage *msg, struct iobuf *out)
{
	size_t orig = iobuf_len(out);
	struct pbuf_sink sink;
	int err;

	pbuf_sink_init(&sink, out);
	protobuf_c_message_pack_to_buffer(msg, &sink.base);
	err = pbuf_sink_finish(&sink);
	if (err)
		iobuf_drop_back(out, iobuf_len(out) - orig);
	return err;
}

bool pbuf_has_field_zero(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (size_t i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return true;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;
		ProtobufCMessage *const *sub;
		size_t n = 1;

		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			sub = *(ProtobufCMessage *const *const *)(base +
								  f->offset);
		} else {
			sub = (ProtobufCMessage *const *)(base + f->offset);
		}
		for (size_t k = 0; k < n; k++)
			if (sub[k] && pbuf_has_field_zero(sub[k]))
				return true;
	}
	return false;
}

int pbuf_unpack(const ProtobufCMessageDescriptor *desc, const struct iobuf *in,
		const struct mem *mem, ProtobufCMessage **out)
{
	static const uint8_t empty[1];
	size_t n = iobuf_len(in), len;
	struct pbuf_alloc pa;
	const void *p = empty;
	uint8_t *flat = NULL;
	ProtobufCMessage *m;

	if (n && (iobuf_ref_at(in, 0, &p, &len) != 0 || len != n)) {
		flat = mem_alloc(mem, n);
		if (!flat)
			return -ENOMEM;
		iobuf_copy_out(in, 0, flat, n);
		p = flat;
	}
	pbuf_alloc_init(&pa, mem);
	m = protobuf_c_message_unpack(desc, &pa.a, n, p);
	mem_free(mem, flat);
	if (!m)
		return pa.nomem ? -ENOMEM : -EBADMSG;
	if (pbuf_has_field_zero(m)) {
		protobuf_c_message_free_unpacked(m, &pa.a);
		return -EBADMSG;
	}
	*out = m;
	return 0;
}

void pbuf_free(ProtobufCMessage *msg, const struct mem *mem)
{
	struct pbuf_alloc pa;

	if (!msg)
		return;
	pbuf_alloc_init(&pa, mem);
	protobuf_c_message_free_unpacked(msg, &pa.a);
}

ProtobufCMessage *pbuf_new(const ProtobufCMessageDescriptor *desc,
			   const struct mem *mem)
{
	ProtobufCMessage *m = mem_alloc(mem, desc->sizeof_message);

	if (m)
		protobuf_c_message_init(desc, m);
	return m;
}

void pbuf_free_shallow(ProtobufCMessage *msg, const struct mem *mem)
{
	mem_free(mem, msg);
}

bool pbuf_complete(const ProtobufCMessage *msg)
{
	return protobuf_c_message_check(msg) != 0;
}
