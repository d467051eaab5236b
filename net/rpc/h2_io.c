/*
 * h2_io: nghttp2's send side into an iobuf, and its input (h2_io.h).
 */
#include "h2_io.h"

#include <errno.h>

ssize_t h2_io_send(nghttp2_session *ng, const uint8_t *data, size_t len,
		   int flags, void *user)
{
	struct h2_io *io = user;

	(void)ng;
	(void)flags;
	if (iobuf_append(&io->out, data, len))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

int h2_io_put_data(struct h2_io *io, const uint8_t *framehd,
		   struct iobuf *src, size_t length)
{
	if (iobuf_append(&io->out, framehd, 9) ||
	    iobuf_cut(src, &io->out, length))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

int h2_put3(const struct mem *mem, char **buf, size_t *len, size_t *cap,
	    const char *a, size_t an, const char *b, size_t bn, const char *c)
{
	size_t cn = strlen(c), need = *len + an + bn + cn + 1;

	if (need > *cap) {
		size_t ncap = *cap ? *cap * 2 : 512;
		char *nb;

		while (ncap < need)
			ncap *= 2;
		nb = mem_alloc(mem, ncap);
		if (!nb)
			return -ENOMEM;
		if (*len)
			memcpy(nb, *buf, *len);
		mem_free(mem, *buf);
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, a, an);
	memcpy(*buf + *len + an, b, bn);
	memcpy(*buf + *len + an + bn, c, cn + 1);
	*len += an + bn + cn;
	return 0;
}

size_t h2_fields_nv(char *fields, nghttp2_nv *nv, size_t room)
{
	size_t n = 0;

	for (char *p = fields; p && *p && n < room;) {
		char *colon = strstr(p, ": "), *eol = strstr(p, "\r\n");

		if (!colon || !eol)
			break;
		nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)colon + 2,
				       (size_t)(colon - p),
				       (size_t)(eol - colon - 2),
				       NGHTTP2_NV_FLAG_NONE};
		p = eol + 2;
	}
	return n;
}

int h2_io_recv(struct h2_io *io, struct iobuf *in)
{
	int err = 0;

	for (size_t i = 0; i < iobuf_ref_count(in) && !io->stop; i++) {
		const void *p;
		size_t len;
		ssize_t rv;

		if (iobuf_ref_at(in, i, &p, &len))
			break;
		io->in_io = true;
		rv = nghttp2_session_mem_recv(io->ng, p, len);
		io->in_io = false;
		if (rv < 0) {
			err = (int)rv;
			break;
		}
	}
	iobuf_reset(in);
	return err;
}
