/*
 * fuzz_etcd: what the etcd client reads, on arbitrary bytes: an HTTP
 * answer's head and chunked body (net/codec/http1's client side), and
 * the gateway's JSON (net/cluster/etcd_msg), consul's health answers
 * (net/cluster/consul_msg).  Checks: no crash and no
 * read past the input (ASan); a head's end lies in the input and a parsed
 * head has a status of three digits; a chunked body decodes to the same
 * bytes and verdict in one piece or cut in two; a stream splits into
 * messages that lie in the input; a parsed answer's kvs are within the
 * size limits; an instance value, and every instance of a consul answer,
 * gives a valid address or a refusal.
 */
// fuzz-sources: net/codec/http1.c net/codec/json.c net/codec/base64.c net/cluster/etcd_msg.c net/cluster/consul_msg.c net/cluster/naming.c net/base/uaddr.c net/base/iobuf.c net/base/fbuf.c net/base/mem.c
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/consul.h"
#include "cluster/etcd_msg.h"
#include "codec/http1.h"

static void check_head(const char *p, size_t n)
{
	ssize_t hl = http1_flat_head_end(p, n);
	struct http1_resp r;

	if (hl < 0) {
		if (hl != -EAGAIN && hl != -E2BIG)
			abort();
		return;
	}
	if ((size_t)hl > n)
		abort();
	if (http1_parse_response(p, (size_t)hl, &r) == 0) {
		if (r.status < 100 || r.status > 599)
			abort();
		if (r.chunked && r.has_length)
			abort();
	} else if (!r.why) {
		abort();
	}
}

static int unchunk(const char *p, size_t n, size_t cut, struct fbuf *body,
		   size_t *used_all)
{
	struct http1_chunked c;
	size_t used, at = 0;
	int r;

	http1_chunked_init(&c);
	r = http1_unchunk(&c, p, cut, &used, body);
	if (used > cut)
		abort();
	at = used;
	if (r == 0) {
		r = http1_unchunk(&c, p + at, n - at, &used, body);
		if (used > n - at)
			abort();
		at += used;
	}
	*used_all = at;
	return r;
}

static void check_chunked(const char *p, size_t n)
{
	struct fbuf a, b;
	size_t ua, ub;
	int ra, rb;

	fbuf_init(&a, NULL, 4096);
	fbuf_init(&b, NULL, 4096);
	ra = unchunk(p, n, n, &a, &ua);
	rb = unchunk(p, n, n / 2, &b, &ub);
	if (a.len > 4096)
		abort();
	/* Cut in two, the same verdict and bytes, unless the whole failed
	 * on the limit (the halves may have failed first elsewhere). */
	if (ra == 1 || ra == 0) {
		if (rb != ra || a.len != b.len ||
		    (a.len && memcmp(a.p, b.p, a.len)))
			abort();
		if (ra == 1 && ua != ub)
			abort();
	}
	fbuf_destroy(&a);
	fbuf_destroy(&b);
}

static int on_kv(void *arg, const struct etcd_kv *kv)
{
	(void)arg;
	if (kv->key_n > ETCD_KEY_MAX || kv->value_n > ETCD_VALUE_MAX)
		abort();
	if (kv->key[kv->key_n] || kv->value[kv->value_n])
		abort(); /* NUL-terminated */
	return 0;
}

static void check_json(const char *p, size_t n)
{
	struct etcd_answer a;
	struct naming_node node;
	struct fbuf scratch;
	const char *why;
	size_t off = 0;
	long len;
	int err;

	fbuf_init(&scratch, NULL, 0);
	err = etcd_parse(p, n, &a, on_kv, NULL, &scratch, &why);
	if (err == -EBADMSG && !why)
		abort();
	if (err && err != -EBADMSG && err != -ENOMEM)
		abort();
	while (off < n && (len = etcd_msg_len(p + off, n - off)) > 0) {
		if ((size_t)len > n - off)
			abort();
		etcd_parse(p + off, (size_t)len, &a, on_kv, NULL, &scratch,
			   &why);
		off += (size_t)len;
	}
	if (etcd_node_from_value(p, n, &node, &scratch) == 0 &&
	    !naming_addr_valid(node.addr))
		abort();
	{
		struct naming_list l;
		unsigned skipped;
		char cwhy[256];

		naming_list_init(&l, NULL);
		err = consul_parse(p, n, &l, &skipped, &scratch, cwhy,
				   sizeof(cwhy));
		if (err == 0)
			for (size_t i = 0; i < l.n; i++)
				if (!naming_addr_valid(l.v[i].addr))
					abort();
		if (err == -EBADMSG && !cwhy[0])
			abort();
		naming_list_free(&l);
	}
	fbuf_destroy(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Its own copy: a read past the end is caught. */
	char *p = malloc(size ? size : 1);

	memcpy(p, data, size);
	check_head(p, size);
	check_chunked(p, size);
	check_json(p, size);
	free(p);
	return 0;
}
