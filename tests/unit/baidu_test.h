/*
 * baidu_test: helpers the baidu_std test programs share (test_baidu_std
 * parses, test_baidu_pack packs).  Header only; include after testutil.h.
 */
#ifndef RPCGATE_TESTS_BAIDU_TEST_H
#define RPCGATE_TESTS_BAIDU_TEST_H

/* Allocation sweeps give up past this many failure points. */
#define SWEEP_MAX 200
/* What the recorded server prefixes its error texts with. */
#define SRV "[127.0.0.1:8100]"

static inline void pool_up(struct iobuf_pool *pool, const struct mem *mem,
			   size_t region_blocks, size_t prealloc)
{
	struct iobuf_pool_options opt;

	iobuf_pool_options_default(&opt);
	opt.mem = mem;
	opt.region_blocks = region_blocks;
	opt.prealloc_regions = prealloc;
	assert_int_equal(iobuf_pool_init(pool, &opt), 0);
}

static inline void pool_down(struct iobuf_pool *pool)
{
	assert_int_equal(iobuf_pool_destroy(pool), 0);
}

static inline void buf_equal(const struct iobuf *b, const void *want, size_t n)
{
	uint8_t *tmp = malloc(n + 1);

	assert_non_null(tmp);
	assert_int_equal(iobuf_len(b), n);
	assert_int_equal(iobuf_copy_out(b, 0, tmp, n), n);
	assert_memory_equal(tmp, want, n);
	free(tmp);
}

/* An iobuf holding (p, n) in pieces of `piece` bytes, one block each. */
static inline void build_split(struct iobuf *in, struct iobuf_pool *pool,
			       const uint8_t *p, size_t n, size_t piece)
{
	struct iobuf part;
	size_t k;

	iobuf_init(in, pool);
	while (n) {
		k = n < piece ? n : piece;
		iobuf_init(&part, pool);
		assert_int_equal(iobuf_append(&part, p, k), 0);
		assert_int_equal(iobuf_append_buf(in, &part), 0);
		iobuf_destroy(&part);
		p += k;
		n -= k;
	}
}

static inline void hexdump(FILE *fp, const struct iobuf *b)
{
	uint8_t c;
	size_t i;

	for (i = 0; i < iobuf_len(b); i++) {
		iobuf_copy_out(b, i, &c, 1);
		fprintf(fp, "%02x", c);
	}
}

static inline void bytesdump(FILE *fp, const struct baidu_bytes *v)
{
	size_t i;

	if (!v->ptr) {
		fputs("-", fp);
		return;
	}
	fputs("'", fp);
	for (i = 0; i < v->len; i++)
		fprintf(fp, "%02x", v->ptr[i]);
}

/* Everything a parse produced, as text: equal texts, equal results. */
static inline char *summarize(int ret, const struct baidu_frame *f)
{
	const struct baidu_meta *m = &f->meta;
	char *s = NULL;
	size_t n = 0;
	FILE *fp = open_memstream(&s, &n);

	assert_non_null(fp);
	fprintf(fp, "ret=%d", ret);
	if (ret > 0) {
		fprintf(fp,
			" body=%" PRIu32 " meta=%" PRIu32 " req=%d svc=%s "
			"mth=%s log=%d:%" PRIu64 " trace=%" PRIu64 "/%" PRIu64
			"/%" PRIu64 " rid=%s to=%d:%d resp=%d code=%d "
			"text=%s cid=%" PRIx64 " cmp=%d ct=%d attsz=%d ck=%d ",
			f->body_size, f->meta_size, m->has_request, m->service,
			m->method, m->has_log_id, m->log_id, m->trace_id,
			m->span_id, m->parent_span_id,
			m->request_id ? m->request_id : "-", m->has_timeout_ms,
			m->timeout_ms, m->has_response, m->error_code,
			m->error_text, m->correlation_id, m->compress_type,
			m->content_type, m->attachment_size, m->checksum_type);
		bytesdump(fp, &m->checksum_value);
		fputs(" auth=", fp);
		bytesdump(fp, &m->authentication_data);
		fprintf(fp, " cwa=%d ss=%d uf=%zu bad=%d data=",
			m->checksum_with_attachment, m->has_stream_settings,
			m->n_user_fields, f->bad_attachment);
		hexdump(fp, &f->data);
		fputs(" att=", fp);
		hexdump(fp, &f->attachment);
	}
	fclose(fp);
	return s;
}

/* The meaning only: no sizes, and an absent checksum_value reads as
 * empty (brpc always sends it; hand-written frames do not). */
static inline char *summarize_meaning(const struct baidu_frame *f)
{
	struct baidu_frame g = *f;
	static const uint8_t none[1];
	char *s, *cut;

	g.body_size = 0;
	g.meta_size = 0;
	if (!g.meta.checksum_value.ptr)
		g.meta.checksum_value.ptr = none;
	s = summarize(1, &g);
	cut = strchr(s, ' ');
	memmove(s, cut + 1, strlen(cut + 1) + 1);
	return s;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static inline void fill(struct iobuf *b, struct iobuf_pool *pool, const char *s,
			size_t n)
{
	iobuf_init(b, pool);
	assert_int_equal(iobuf_append(b, s, n), 0);
}

#endif
