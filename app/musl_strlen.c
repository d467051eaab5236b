/*
 * musl_strlen: the static binary's strlen is fast_strlen.
 *
 * Linked into build/rpcgate only (the host builds keep glibc's, which is
 * already vectorised).  A definition of strlen in the program wins over
 * the member of musl's libc.a that holds its own, so every caller uses
 * this one: our code, musl, and the static archives, protobuf-c's string
 * packing among them (see net/base/fast_strlen.h for why it matters).
 */
#include <string.h>

#include "base/fast_strlen.h"

size_t strlen(const char *s)
{
	return fast_strlen(s);
}
