/*
 * tls_wire: ClientHello detection and ALPN lists (see tls_wire.h).
 */
#include "tls_wire.h"

#include <string.h>

int tls_wire_detect(const uint8_t *p, size_t n)
{
	/* brpc's test is the first byte alone; the version bytes make a
	 * baidu_std or HTTP client's first bytes impossible to mistake. */
	if (n >= 1 && p[0] != 0x16)
		return -1;
	if (n >= 2 && p[1] != 0x03)
		return -1;
	if (n >= 3 && (p[2] < 0x01 || p[2] > 0x04))
		return -1;
	return n >= 3 ? 1 : 0;
}

long tls_wire_alpn_find(const uint8_t *list, size_t n, const char *want)
{
	size_t wl = strlen(want), i = 0;

	while (i < n) {
		size_t len = list[i];

		if (len == 0 || len > n - i - 1)
			return -1; /* empty names are not allowed either */
		if (len == wl && !memcmp(list + i + 1, want, wl))
			return (long)(i + 1);
		i += 1 + len;
	}
	return -1;
}
