/*
 * fuzz_json_pb: JSON <-> protobuf by descriptor (net/codec/json_pb.h)
 * with brpc's kitchen.proto (every field type).  The first byte picks the
 * message and the direction; the rest is the input.  Checks: no crash, no
 * read past the input, no leak (ASan); errors are -EBADMSG or -ENODATA
 * with a reason; and the round trips are stable:
 *
 *   JSON -> pb (A) -> JSON (J) -> pb (B) -> JSON (J2) -> pb (C):
 *       J == J2 and B == C
 *   pb -> JSON (J) -> pb (A) -> JSON (J2) -> pb (B):  J == J2, A == B
 *
 * (the bytes compared are ones written from the transcoder's own JSON,
 * whose fields come in number order: input JSON and arbitrary pb bytes
 * may order fields otherwise, or repeat them).
 */
// fuzz-sources: net/codec/json_pb.c net/codec/json.c net/codec/pbd.c net/codec/pbwire.c net/codec/base64.c net/base/fbuf.c net/base/mem.c build/gen/test/kitchen.desc.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json_pb.h"

extern const uint8_t kitchen_proto_desc[];
extern const size_t kitchen_proto_desc_len;

static struct pbd_pool pool;
static const struct pbd_msg *types[3];

static int j2p(const struct pbd_msg *m, const void *p, size_t n,
	       struct fbuf *out)
{
	char why[JPB_WHY_MAX];
	int r;

	fbuf_init(out, NULL, 0);
	r = jpb_from_json(m, p, n, out, why);
	if (r == -EBADMSG && !why[0])
		abort();
	if (r && r != -EBADMSG && r != -ENODATA)
		abort();
	return r;
}

static int p2j(const struct pbd_msg *m, const void *p, size_t n,
	       struct fbuf *out)
{
	char why[JPB_WHY_MAX];
	int r;

	fbuf_init(out, NULL, 0);
	r = jpb_to_json(m, p, n, out, why);
	if (r == -EBADMSG && !why[0])
		abort();
	if (r && r != -EBADMSG)
		abort();
	return r;
}

static bool same(const struct fbuf *a, const struct fbuf *b)
{
	return a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
}

static void from_json(const struct pbd_msg *m, const uint8_t *p, size_t n)
{
	struct fbuf a, j, b, j2, c;

	if (j2p(m, p, n, &a)) {
		fbuf_destroy(&a);
		return;
	}
	if (p2j(m, a.p, a.len, &j))
		abort(); /* what it wrote, it reads */
	if (j2p(m, j.p, j.len, &b))
		abort();
	if (p2j(m, b.p, b.len, &j2) || !same(&j, &j2))
		abort();
	if (j2p(m, j2.p, j2.len, &c) || !same(&b, &c))
		abort();
	fbuf_destroy(&a);
	fbuf_destroy(&j);
	fbuf_destroy(&b);
	fbuf_destroy(&j2);
	fbuf_destroy(&c);
}

static void from_pb(const struct pbd_msg *m, const uint8_t *p, size_t n)
{
	struct fbuf j, a, j2, b;

	if (p2j(m, p, n, &j)) {
		fbuf_destroy(&j);
		return;
	}
	if (j2p(m, j.p, j.len, &a))
		abort();
	if (p2j(m, a.p, a.len, &j2) || !same(&j, &j2))
		abort();
	if (j2p(m, j2.p, j2.len, &b) || !same(&a, &b))
		abort();
	fbuf_destroy(&j);
	fbuf_destroy(&a);
	fbuf_destroy(&j2);
	fbuf_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;

	if (!ready) {
		pbd_pool_init(&pool, NULL);
		if (pbd_pool_add_set(&pool, kitchen_proto_desc,
				     kitchen_proto_desc_len, "kitchen", NULL,
				     0))
			abort();
		types[0] = pbd_find_msg(&pool, "example.Kitchen");
		types[1] = pbd_find_msg(&pool, "example.EchoRequest");
		types[2] = pbd_find_msg(&pool, "example.Inner");
		if (!types[0] || !types[1] || !types[2])
			abort();
		ready = true;
	}
	if (!size)
		return 0;
	if (data[0] & 1)
		from_pb(types[(data[0] >> 1) % 3], data + 1, size - 1);
	else
		from_json(types[(data[0] >> 1) % 3], data + 1, size - 1);
	return 0;
}
