/*
 * util: tiny helpers shared by every module.  Header only; no state.
 */
#ifndef RPCGATE_NET_UTIL_H
#define RPCGATE_NET_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>

/* The object that embeds `ptr` as its member `member`. */
#define container_of(ptr, type, member)                                        \
	((type *)(void *)(((char *)(ptr)) - offsetof(type, member)))

/* Number of elements of a true array (not a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Makes `fd` non-blocking: 0, or -errno (errno set). */
static inline int fd_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

#endif
