/* pbwire: writing into a growing buffer (see pbwire.h). */
#include "pbwire.h"

void pbw_buf_varint(struct fbuf *b, uint64_t v)
{
	uint8_t *p = fbuf_room(b, PBW_VARINT_MAX);

	if (p)
		b->len = (size_t)(pbw_put_varint(p, v) - b->p);
}

void pbw_buf_fixed32(struct fbuf *b, uint32_t v)
{
	uint8_t *p = fbuf_room(b, 4);

	if (p) {
		pbw_put_fixed32(p, v);
		b->len += 4;
	}
}

void pbw_buf_fixed64(struct fbuf *b, uint64_t v)
{
	uint8_t *p = fbuf_room(b, 8);

	if (p) {
		pbw_put_fixed64(p, v);
		b->len += 8;
	}
}

size_t pbw_buf_len_begin(struct fbuf *b)
{
	if (!fbuf_room(b, 1))
		return 0;
	return b->len++;
}

void pbw_buf_len_end(struct fbuf *b, size_t mark)
{
	size_t n, extra;

	if (b->err)
		return;
	n = b->len - mark - 1;
	extra = pbw_varint_size(n) - 1;
	if (extra) {
		if (!fbuf_room(b, extra))
			return;
		memmove(b->p + mark + 1 + extra, b->p + mark + 1, n);
		b->len += extra;
	}
	pbw_put_varint(b->p + mark, n);
}
