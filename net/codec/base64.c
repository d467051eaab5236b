/* base64 (see base64.h). */
#include "base64.h"

#include <errno.h>
#include <stdbool.h>

static const char enc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(struct fbuf *out, const uint8_t *p, size_t n)
{
	uint8_t *o = fbuf_room(out, base64_encoded_len(n));
	size_t i;

	if (!o)
		return;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v =
		    (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		*o++ = (uint8_t)enc[v >> 18];
		*o++ = (uint8_t)enc[(v >> 12) & 63];
		*o++ = (uint8_t)enc[(v >> 6) & 63];
		*o++ = (uint8_t)enc[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		*o++ = (uint8_t)enc[v >> 18];
		*o++ = (uint8_t)enc[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		*o++ = (uint8_t)enc[v >> 18];
		*o++ = (uint8_t)enc[(v >> 12) & 63];
		*o++ = (uint8_t)enc[(v >> 6) & 63];
		*o++ = '=';
	}
	out->len += base64_encoded_len(n);
}

/* 0-63, or -1 for a character of neither alphabet. */
static int dec(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int base64_decode(struct fbuf *out, const char *s, size_t n)
{
	size_t pad = 0, i, full;
	uint8_t *o;
	uint32_t v;
	int d[4];

	if (n % 4 == 0 && n) {
		pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
		n -= pad;
	}
	if (n % 4 == 1)
		return -EINVAL;
	full = n / 4 * 4;
	o = fbuf_room(out, n / 4 * 3 + 2);
	if (!o)
		return 0;
	for (i = 0; i < full; i += 4) {
		for (int k = 0; k < 4; k++)
			if ((d[k] = dec((unsigned char)s[i + k])) < 0)
				return -EINVAL;
		v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12 |
		    (uint32_t)d[2] << 6 | (uint32_t)d[3];
		*o++ = (uint8_t)(v >> 16);
		*o++ = (uint8_t)(v >> 8);
		*o++ = (uint8_t)v;
	}
	out->len += full / 4 * 3;
	if (n == full)
		return 0;
	/* 2 or 3 characters left: 1 or 2 bytes, the rest of the bits 0 */
	for (size_t k = 0; k < n - full; k++)
		if ((d[k] = dec((unsigned char)s[full + k])) < 0)
			return -EINVAL;
	v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12;
	if (n - full == 3)
		v |= (uint32_t)d[2] << 6;
	if (n - full == 2 ? (v & 0xffff) : (v & 0xff))
		return -EINVAL;
	*o++ = (uint8_t)(v >> 16);
	out->len++;
	if (n - full == 3) {
		*o = (uint8_t)(v >> 8);
		out->len++;
	}
	return 0;
}
