/*
 * util: tiny helpers shared by every module.  Header only; no state.
 */
#ifndef RPCGATE_NET_UTIL_H
#define RPCGATE_NET_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The object that embeds `ptr` as its member `member`. */
#define container_of(ptr, type, member)                                        \
	((type *)(void *)(((char *)(ptr)) - offsetof(type, member)))

/* Number of elements of a true array (not a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A hex digit's value, or -1 for any other byte. */
static inline int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* v in decimal at o, within end (not NUL-terminated): past its last
 * digit, or NULL when o is NULL or there is no room.  Written by hand
 * for answers' status codes and lengths: snprintf costs some 850
 * instructions a number (callgrind). */
static inline char *put_decimal(char *o, const char *end, uint64_t v)
{
	char d[20];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (!o || (size_t)(end - o) < sizeof(d) - i)
		return NULL;
	memcpy(o, d + i, sizeof(d) - i);
	return o + sizeof(d) - i;
}

/* Makes `fd` non-blocking: 0, or -errno (errno set). */
static inline int fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

#endif
