/*
 * h2_io: nghttp2's send side into an iobuf, and its input (h2_io.h).
 */
#include "h2_io.h"

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
