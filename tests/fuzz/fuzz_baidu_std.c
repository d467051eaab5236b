/*
 * fuzz_baidu_std: arbitrary bytes as a baidu_std byte stream.
 *
 * The input is the stream itself (brpc's recorded .c2s/.s2c files are the
 * seeds, verbatim).  It is parsed twice: whole, from one ref; and fed in
 * pieces of 1-16 bytes (sizes from a generator seeded by the input), each
 * piece in its own block, parsing after every piece, so metas and payloads
 * straddle refs and every -EAGAIN path runs.  Checks: both runs give the
 * same frames and the same ending; a frame's pieces add up; every request
 * and success response packs back and parses to the same meaning; no
 * crash, no leak, every block back in the pool, no live meta allocation.
 * And the meta fast path against protobuf-c (tests/meta_view.h), on the
 * input's first meta (bytes 12 on, meta_size of them) and on the whole
 * input taken as a meta: whatever the fast path takes, protobuf-c must
 * take and read the same.
 */
// fuzz-sources: net/codec/baidu_std.c net/codec/baidu_meta.c net/codec/pbuf.c net/base/iobuf.c net/base/mem.c build/gen/net/codec/proto/baidu_rpc_meta.pb-c.c /usr/lib/x86_64-linux-gnu/libprotobuf-c.a
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/baidu_meta.h"
#include "codec/baidu_std.h"
#include "base/iobuf.h"
#include "base/mem.h"

#include "../meta_view.h"

/* Frames remembered per run for the comparison. */
#define MAX_FRAMES 64
/* Limits small enough for the fuzzer to cross: 64 KiB body, 4 KiB meta. */
#define FUZZ_MAX_BODY (64u << 10)
#define FUZZ_MAX_META (4u << 10)

struct outcome {
	int final;
	size_t consumed;
	size_t nframes;
	uint64_t digest[MAX_FRAMES];
};

static struct iobuf_pool pool;

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv_buf(uint64_t h, const struct iobuf *b)
{
	const void *p;
	size_t i, n;

	for (i = 0; iobuf_ref_at(b, i, &p, &n) == 0; i++)
		h = fnv(h, p, n);
	return fnv(h, &b->len, sizeof(b->len));
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s) + 1);
}

/* The frame's meaning (not its sizes). */
static uint64_t digest(const struct baidu_frame *f)
{
	const struct baidu_meta *m = &f->meta;
	uint64_t h = 0xcbf29ce484222325ull;
	int64_t nums[] = {
	    m->has_request,
	    m->has_response,
	    m->has_log_id,
	    (int64_t)m->log_id,
	    (int64_t)m->correlation_id,
	    m->compress_type,
	    m->content_type,
	    m->error_code,
	    m->checksum_type,
	    f->bad_attachment,
	};

	h = fnv(h, nums, sizeof(nums));
	h = fnv_str(h, m->service);
	h = fnv_str(h, m->method);
	h = fnv_str(h, m->error_text);
	if (m->checksum_value.ptr)
		h = fnv(h, m->checksum_value.ptr, m->checksum_value.len);
	h = fnv_buf(h, &f->data);
	return fnv_buf(h, &f->attachment);
}

static void check_frame(const struct baidu_frame *f, int ret)
{
	const struct baidu_meta *m = &f->meta;

	CHECK(ret == BAIDU_HEADER_LEN + (int)f->body_size);
	CHECK(f->meta_size <= f->body_size);
	CHECK(iobuf_len(&f->data) + iobuf_len(&f->attachment) ==
	      f->body_size - f->meta_size);
	if (f->bad_attachment)
		CHECK(iobuf_empty(&f->attachment) &&
		      (m->attachment_size < 0 ||
		       (size_t)m->attachment_size > iobuf_len(&f->data)));
	else
		CHECK(iobuf_len(&f->attachment) == (size_t)m->attachment_size);
	CHECK(m->service && m->method && m->error_text);
}

/* A request packed from flat bytes: the same bytes as from an iobuf. */
static void check_flat_request(const struct baidu_req_meta *rq,
			       const struct baidu_frame *f)
{
	static uint8_t body[1 << 16], a[1 << 17], b[1 << 17];
	size_t n = iobuf_len(&f->data), na, nb;
	struct iobuf out, ref, msg, att;

	if (n > sizeof(body))
		return;
	CHECK(iobuf_copy_out(&f->data, 0, body, n) == n);
	iobuf_init(&out, &pool);
	iobuf_init(&ref, &pool);
	iobuf_init(&msg, &pool);
	iobuf_init(&att, &pool);
	CHECK(iobuf_share(&msg, &f->data, 0, n) == 0);
	CHECK(iobuf_share(&att, &f->attachment, 0, iobuf_len(&f->attachment)) ==
	      0);
	CHECK(baidu_pack_request(&ref, rq, &msg, &att) == 0);
	CHECK(iobuf_share(&att, &f->attachment, 0, iobuf_len(&f->attachment)) ==
	      0);
	CHECK(baidu_pack_request_flat(&out, rq, body, n, &att) == 0);
	CHECK(iobuf_empty(&att));
	na = iobuf_len(&out);
	nb = iobuf_len(&ref);
	CHECK(na == nb);
	if (na <= sizeof(a)) {
		CHECK(iobuf_copy_out(&out, 0, a, na) == na);
		CHECK(iobuf_copy_out(&ref, 0, b, nb) == nb);
		CHECK(memcmp(a, b, na) == 0);
	}
	iobuf_destroy(&out);
	iobuf_destroy(&ref);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
}

/* Packs the frame's meaning again and parses it back. */
static void check_repack(const struct baidu_frame *f)
{
	const struct baidu_meta *m = &f->meta;
	struct iobuf out, msg, att;
	struct baidu_frame g;
	int ret;

	if (m->has_request == m->has_response || f->bad_attachment)
		return;
	if (m->has_response && m->error_code != 0 &&
	    (!iobuf_empty(&f->data) || !iobuf_empty(&f->attachment)))
		return; /* not a frame we may send */
	iobuf_init(&out, &pool);
	iobuf_init(&msg, &pool);
	iobuf_init(&att, &pool);
	CHECK(iobuf_share(&msg, &f->data, 0, iobuf_len(&f->data)) == 0);
	CHECK(iobuf_share(&att, &f->attachment, 0, iobuf_len(&f->attachment)) ==
	      0);
	if (m->has_request) {
		struct baidu_req_meta rq = {
		    .service = m->service,
		    .method = m->method,
		    .correlation_id = m->correlation_id,
		    .compress_type = m->compress_type,
		    .content_type = m->content_type,
		    .has_log_id = m->has_log_id,
		    .log_id = m->log_id,
		    .checksum_type = m->checksum_type,
		    .checksum_value = m->checksum_value,
		};

		check_flat_request(&rq, f);
		ret = baidu_pack_request(&out, &rq, &msg, &att);
	} else {
		struct baidu_resp_meta rs = {
		    .correlation_id = m->correlation_id,
		    .error_code = m->error_code,
		    .error_text = m->error_text,
		    .compress_type = m->compress_type,
		    .content_type = m->content_type,
		    .checksum_type = m->checksum_type,
		    .checksum_value = m->checksum_value,
		};

		ret = baidu_pack_response(&out, &rs, &msg, &att);
	}
	CHECK(ret == 0);
	/* The repacked meta may exceed the fuzz limits; use the defaults. */
	ret = baidu_parse(&out, &g, NULL);
	CHECK(ret > 0 && iobuf_empty(&out));
	/* An absent checksum_value comes back present and empty. */
	if (!m->checksum_value.ptr) {
		CHECK(g.meta.checksum_value.len == 0);
		g.meta.checksum_value.ptr = NULL;
	}
	CHECK(digest(&g) == digest(f));
	baidu_frame_release(&g);
	iobuf_destroy(&out);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
}

/* Parses what `in` holds; returns the first non-frame result. */
static int drain(struct iobuf *in, const struct baidu_limits *lim,
		 struct outcome *o, bool repack)
{
	struct baidu_frame f;
	int ret;

	while ((ret = baidu_parse(in, &f, lim)) > 0) {
		check_frame(&f, ret);
		if (repack)
			check_repack(&f);
		if (o->nframes < MAX_FRAMES)
			o->digest[o->nframes] = digest(&f);
		o->nframes++;
		o->consumed += (size_t)ret;
		baidu_frame_release(&f);
	}
	CHECK(ret != -ENOMEM);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole = {0}, pieces = {0};
	struct iobuf_pool_stats st;
	struct baidu_limits lim;
	struct mem_failing mf;
	struct iobuf in, part;
	uint64_t rng = size * 0x9e3779b97f4a7c15ull + 1;
	size_t off, k, i;
	bool agree;
	int ret;

	if (size > BAIDU_HEADER_LEN) {
		uint32_t meta_len = (uint32_t)data[8] << 24 |
				    (uint32_t)data[9] << 16 |
				    (uint32_t)data[10] << 8 | data[11];

		if (meta_len > size - BAIDU_HEADER_LEN)
			meta_len = (uint32_t)(size - BAIDU_HEADER_LEN);
		meta_fast_vs_pbc(data + BAIDU_HEADER_LEN, meta_len, &agree);
		CHECK(agree);
	}
	meta_fast_vs_pbc(data, size, &agree);
	CHECK(agree);

	mem_failing_init(&mf, -1);
	baidu_limits_default(&lim);
	lim.max_body_size = FUZZ_MAX_BODY;
	lim.max_meta_size = FUZZ_MAX_META;
	lim.mem = &mf.mem;

	iobuf_init(&in, &pool);
	CHECK(iobuf_append(&in, data, size) == 0);
	whole.final = drain(&in, &lim, &whole, true);
	CHECK(whole.final != -EAGAIN ||
	      whole.consumed + iobuf_len(&in) == size);
	iobuf_destroy(&in);

	iobuf_init(&in, &pool);
	ret = -EAGAIN;
	for (off = 0; off < size && ret == -EAGAIN; off += k) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		k = 1 + rng % 16;
		if (k > size - off)
			k = size - off;
		iobuf_init(&part, &pool);
		CHECK(iobuf_append(&part, data + off, k) == 0);
		CHECK(iobuf_append_buf(&in, &part) == 0);
		iobuf_destroy(&part);
		ret = drain(&in, &lim, &pieces, false);
	}
	pieces.final = size ? ret : -EAGAIN;
	iobuf_destroy(&in);

	CHECK(pieces.final == whole.final);
	CHECK(pieces.nframes == whole.nframes);
	CHECK(pieces.consumed == whole.consumed);
	for (i = 0; i < whole.nframes && i < MAX_FRAMES; i++)
		CHECK(pieces.digest[i] == whole.digest[i]);

	CHECK(mf.live == 0);
	iobuf_pool_stats(&pool, &st);
	CHECK(st.blocks_free == st.blocks_total);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	CHECK(iobuf_pool_init(&pool, NULL) == 0);
	return 0;
}
