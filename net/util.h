/*
 * util: tiny helpers shared by every module.  Header only; no state.
 */
#ifndef RPCGATE_NET_UTIL_H
#define RPCGATE_NET_UTIL_H

#include <stddef.h>

/* The object that embeds `ptr` as its member `member`. */
#define container_of(ptr, type, member)                                        \
	((type *)(void *)(((char *)(ptr)) - offsetof(type, member)))

/* Number of elements of a true array (not a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
