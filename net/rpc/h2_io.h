/*
 * h2_io: what the server's HTTP/2 sessions (server_h2.c) and the
 * channel's (channel_h2.c) share: the session and the bytes it sends,
 * nghttp2's send callbacks writing into an iobuf (DATA without a copy),
 * feeding a connection's input to the session, and the header helpers.
 * Loop thread.
 */
#ifndef RPCGATE_NET_H2_IO_H
#define RPCGATE_NET_H2_IO_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <string.h>

#include "base/iobuf.h"
#include "base/mem.h"
#include "base/util.h"

/* A header field for nghttp2, its name a literal. */
#define NV(n, v, vl)                                                          \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),                \
	  NGHTTP2_NV_FLAG_NO_COPY_NAME }

/* The first member of a session's user data. */
struct h2_io {
	nghttp2_session *ng;
	struct iobuf out; /* frames for conn_write */
	bool in_io;	  /* inside nghttp2 (recv or send): no send now */
	bool stop;	  /* a callback gave up the session: read no more */
};

/* Is the field name or value n bytes at p the string literal `lit`?
 * (A macro: the literal's length is known, no strlen per field.) */
#define h2_is(p, n, lit)                                                      \
	((n) == sizeof(lit) - 1 && !memcmp((p), (lit), sizeof(lit) - 1))

/* v in decimal into out[12], NUL-terminated: its length. */
static inline int h2_decimal(char *out, unsigned v)
{
	char *e = put_decimal(out, out + 11, v);

	*e = '\0';
	return (int)(e - out);
}

/* nghttp2's send callback: frames into io->out (user: the h2_io). */
ssize_t h2_io_send(nghttp2_session *ng, const uint8_t *data, size_t len,
		   int flags, void *user);
/* A DATA frame's header and `length` bytes from the front of src into
 * io->out, not copied (for a send_data callback): 0 or nghttp2's error. */
int h2_io_put_data(struct h2_io *io, const uint8_t *framehd,
		   struct iobuf *src, size_t length);
/* Appends "a" "b" "c" (c a C string) to the text at *buf, grown as
 * needed: 0 or -ENOMEM.  Fields are kept so, "name: value\r\n" each. */
int h2_put3(const struct mem *mem, char **buf, size_t *len, size_t *cap,
	    const char *a, size_t an, const char *b, size_t bn, const char *c);
/* The "name: value\r\n" lines of `fields` (NULL: none) as nghttp2's,
 * pointing into it, at most `room`: how many. */
size_t h2_fields_nv(char *fields, nghttp2_nv *nv, size_t room);

/* Every byte of `in` to the session, in_io set meanwhile, until io->stop
 * or an error; `in` is emptied.  0, or nghttp2's error. */
int h2_io_recv(struct h2_io *io, struct iobuf *in);

#endif
