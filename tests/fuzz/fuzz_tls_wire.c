/*
 * fuzz_tls_wire: ClientHello detection and ALPN lists on arbitrary bytes.
 * Checks: no crash, no read past the input (ASan); detection of a prefix
 * is 0 or the answer for the whole; a name found lies in the list, is
 * the name asked for, and starts right after a length byte equal to its
 * length.
 */
// fuzz-sources: net/codec/tls_wire.c
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/tls_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"http/1.1", "h2", "x"};
	int whole = tls_wire_detect(data, size < 3 ? size : 3);

	for (size_t k = 0; k < 3 && k <= size; k++) {
		int part = tls_wire_detect(data, k);

		if (part != 0 && part != whole)
			abort();
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t wl = strlen(names[i]);
		long at = tls_wire_alpn_find(data, size, names[i]);

		if (at < 0)
			continue;
		if (at < 1 || (size_t)at + wl > size || data[at - 1] != wl ||
		    memcmp(data + at, names[i], wl))
			abort();
	}
	return 0;
}
