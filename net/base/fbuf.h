/*
 * fbuf: a flat byte buffer that grows through a mem hook, for what is
 * written piece by piece before its size is known: transcoded messages,
 * JSON, page text.
 *
 * After a failed allocation the buffer stays failed (`err` -ENOMEM) and
 * ignores further writes, so a writer checks once, at the end.  `limit`
 * (0: none) caps its length: a write past it fails with -EMSGSIZE.  The
 * bytes are p[0..len); not NUL-terminated unless fbuf_cstr() is called.
 * One thread at a time.
 */
#ifndef RPCGATE_NET_FBUF_H
#define RPCGATE_NET_FBUF_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"

struct fbuf {
	uint8_t *p;
	size_t len, cap, limit;
	const struct mem *mem;
	int err; /* 0, -ENOMEM or -EMSGSIZE */
};

void fbuf_init(struct fbuf *b, const struct mem *mem, size_t limit);
void fbuf_destroy(struct fbuf *b);

/* Empties it, keeping its storage and clearing `err`. */
void fbuf_clear(struct fbuf *b);

/* Room for n more bytes at p + len: a pointer to them, or NULL (err set).
 * The caller writes and then adds what it wrote to len. */
uint8_t *fbuf_room(struct fbuf *b, size_t n);

void fbuf_append(struct fbuf *b, const void *data, size_t n);
void fbuf_putc(struct fbuf *b, char c);
void fbuf_puts(struct fbuf *b, const char *s);
void fbuf_printf(struct fbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The bytes as a C string (a NUL after them, not counted in len); NULL
 * when the buffer failed. */
const char *fbuf_cstr(struct fbuf *b);

#endif
