/* fbuf: a flat growing buffer (see fbuf.h). */
#include "fbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The first allocation: most transcoded messages and pages fit. */
#define FBUF_FIRST 256

void fbuf_init(struct fbuf *b, const struct mem *mem, size_t limit)
{
	*b = (struct fbuf){.mem = mem, .limit = limit};
}

void fbuf_destroy(struct fbuf *b)
{
	mem_free(b->mem, b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void fbuf_clear(struct fbuf *b)
{
	b->len = 0;
	b->err = 0;
}

uint8_t *fbuf_room(struct fbuf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return NULL;
	if (n > SIZE_MAX / 4 - b->len || (b->limit && b->len + n > b->limit)) {
		b->err = -EMSGSIZE;
		return NULL;
	}
	if (b->p && b->len + n <= b->cap)
		return b->p + b->len;
	cap = b->cap ? b->cap : FBUF_FIRST;
	while (cap < b->len + n)
		cap *= 2;
	p = mem_alloc(b->mem, cap);
	if (!p) {
		b->err = -ENOMEM;
		return NULL;
	}
	if (b->len)
		memcpy(p, b->p, b->len);
	mem_free(b->mem, b->p);
	b->p = p;
	b->cap = cap;
	return b->p + b->len;
}

void fbuf_append(struct fbuf *b, const void *data, size_t n)
{
	uint8_t *p = fbuf_room(b, n);

	if (p && n) {
		memcpy(p, data, n);
		b->len += n;
	}
}

void fbuf_putc(struct fbuf *b, char c)
{
	uint8_t *p = fbuf_room(b, 1);

	if (p) {
		*p = (uint8_t)c;
		b->len++;
	}
}

void fbuf_puts(struct fbuf *b, const char *s)
{
	fbuf_append(b, s, strlen(s));
}

void fbuf_printf(struct fbuf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	uint8_t *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		if (!b->err)
			b->err = -EINVAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		fbuf_append(b, small, (size_t)n);
		return;
	}
	p = fbuf_room(b, (size_t)n + 1);
	if (!p)
		return;
	va_start(ap, fmt);
	vsnprintf((char *)p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *fbuf_cstr(struct fbuf *b)
{
	uint8_t *p = fbuf_room(b, 1);

	if (!p)
		return NULL;
	*p = '\0';
	return (const char *)b->p;
}
