/*
 * fast_strlen: strlen with SSE2, 64 bytes per step.
 *
 * musl's strlen is a portable loop over 8-byte words, and protobuf-c
 * measures every string field with strlen each time it packs one: a 4 KiB
 * echo message cost the server 3,600 instructions of strlen per call, a
 * third of all it ran (callgrind).  This one compares 64 bytes per step
 * with SSE2 (part of every x86-64 CPU).  app/musl_strlen.c makes it the
 * static binary's strlen.
 *
 * It reads whole aligned 16-byte blocks, so it may read up to 15 bytes
 * past the terminating NUL, never past the aligned block that holds it:
 * an aligned block never straddles a page, so the read never faults.
 * That is why it is exempt from AddressSanitizer, as libc's own string
 * functions are.
 */
#ifndef RPCGATE_NET_FAST_STRLEN_H
#define RPCGATE_NET_FAST_STRLEN_H

#include <stddef.h>

/* The number of bytes before the first NUL of s. */
size_t fast_strlen(const char *s);

#endif
