/*
 * fuzz_http_head: the HTTP request head parser and the protocol
 * detection on arbitrary bytes.  Checks: no crash and no read past the
 * input (ASan); a complete head's length is within the input and ends in
 * a blank line; its method and target are what the request line holds;
 * the verdict on a prefix never contradicts the verdict on the whole
 * (a head complete in a prefix is the same head; one malformed in a
 * prefix stays malformed); detection of a prefix is 0 or the same
 * answer.
 */
// fuzz-sources: net/codec/http_head.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_head h, p;
	size_t mlen, half = size / 2;
	int r = http_head_parse(data, size, &h);
	int rp = http_head_parse(data, half, &p);
	int d = http_detect(data, size < 8 ? size : 8);
	int dp = http_detect(data, half < 8 ? half : 8);

	if (r != 0 && r != -EAGAIN && r != -EPROTO && r != -E2BIG)
		abort();
	if (r == -EPROTO && !h.why)
		abort();
	if (r == 0) {
		mlen = strlen(h.method);
		if (h.len > size || h.len < 14 || data[h.len - 1] != '\n' ||
		    (data[h.len - 2] != '\n' &&
		     (data[h.len - 2] != '\r' || data[h.len - 3] != '\n')))
			abort();
		if (!mlen || memcmp(data, h.method, mlen) != 0 ||
		    data[mlen] != ' ' || h.target[0] != '/' ||
		    memcmp(data + mlen + 1, h.target, strlen(h.target)) != 0 ||
		    (h.minor != 0 && h.minor != 1))
			abort();
	}
	/* A prefix: complete there means the same head here. */
	if (rp == 0 &&
	    (r != 0 || p.len != h.len || strcmp(p.method, h.method) != 0 ||
	     strcmp(p.target, h.target) != 0))
		abort();
	if (rp == -EPROTO && r != -EPROTO)
		abort();
	if (dp != 0 && dp != d)
		abort();
	return 0;
}
