/*
 * fuzz_rdt_hello: the RDMA hello parser on arbitrary bytes.  Checks: no
 * crash; a hello it takes packs back to the same 40 bytes (with msg_len
 * 40) and parses again to the same fields; a hello it refuses stays
 * refused with more bytes after it (the decision never depends on bytes
 * past the ones it looked at).
 */
// fuzz-sources: rdma/rdt_hello.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rdt_hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t packed[RDT_HELLO_LEN], longer[RDT_HELLO_LEN + 8];
	struct rdt_hello h, again;
	int r = rdt_hello_parse(data, size, &h);

	if (r == -EPROTO) {
		if (size < sizeof(longer)) {
			memcpy(longer, data, size);
			memset(longer + size, 0xa5, sizeof(longer) - size);
			if (rdt_hello_parse(longer, sizeof(longer), &h) !=
			    -EPROTO)
				abort();
		}
		return 0;
	}
	if (r == -EAGAIN) {
		if (size >= RDT_HELLO_LEN)
			abort();
		return 0;
	}
	if (r != 0 || size < RDT_HELLO_LEN || h.msg_len < RDT_HELLO_LEN ||
	    h.msg_len > RDT_HELLO_MAX)
		abort();
	rdt_hello_pack(&h, packed);
	if (memcmp(packed, data, 4) || memcmp(packed + 6, data + 6, 34))
		abort();
	if (rdt_hello_parse(packed, sizeof(packed), &again) != 0 ||
	    again.msg_len != RDT_HELLO_LEN)
		abort();
	if (again.hello_ver != h.hello_ver || again.impl_ver != h.impl_ver ||
	    again.block_size != h.block_size || again.sq_size != h.sq_size ||
	    again.rq_size != h.rq_size || again.lid != h.lid ||
	    memcmp(again.gid, h.gid, 16) || again.qp_num != h.qp_num)
		abort();
	if (rdt_hello_negotiable(&h) != rdt_hello_negotiable(&again))
		abort();
	return 0;
}
