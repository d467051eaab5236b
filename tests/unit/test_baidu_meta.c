/*
 * RpcMeta fast path tests (net/codec/baidu_meta): the hand encoder writes what
 * protobuf-c packs, byte for byte; the hand decoder takes every meta brpc
 * recorded and reads each meta it takes as protobuf-c does, and leaves
 * the unusual ones (and every doubtful byte) to protobuf-c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/baidu_meta.h"
#include "baidu_rpc_meta.pb-c.h"
#include "codec/baidu_std.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"
#include "meta_view.h"

#define RANDOM_METAS 3000

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Values where varint lengths change, and negatives for int32s. */
static uint64_t rnd_u64(void)
{
	static const uint64_t edges[] = {0,	1,     127,	   128,
					 16383, 16384, UINT32_MAX, UINT64_MAX};

	return rnd() % 2 ? edges[rnd() % ARRAY_SIZE(edges)]
			 : rnd() >> (rnd() % 64);
}

static int32_t rnd_i32(void)
{
	static const int32_t edges[] = {0,   1,		-1,	   127,
					128, INT32_MIN, INT32_MAX, 1009};

	return rnd() % 2 ? edges[rnd() % ARRAY_SIZE(edges)] : (int32_t)rnd();
}

/* A string of 0-200 letters (lengths cross the 1-byte length varint). */
static const char *rnd_str(char *buf)
{
	size_t n = rnd() % 3 ? rnd() % 24 : rnd() % 200;

	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + rnd() % 26);
	buf[n] = '\0';
	return buf;
}

/* protobuf-c's packing of the same fields, as brpc's PackRpcRequest sets
 * them (baidu_std.h documents which are always sent). */
static size_t pbc_pack(const struct baidu_meta_out *m, uint8_t *out)
{
	Brpc__Policy__RpcRequestMeta rq = BRPC__POLICY__RPC_REQUEST_META__INIT;
	Brpc__Policy__RpcResponseMeta rs =
	    BRPC__POLICY__RPC_RESPONSE_META__INIT;
	Brpc__Policy__RpcMeta pb = BRPC__POLICY__RPC_META__INIT;
	const struct baidu_bytes *ck;
	static const uint8_t none[1];

	if (m->req) {
		const struct baidu_req_meta *r = m->req;

		rq.service_name = (char *)r->service;
		rq.method_name = (char *)r->method;
		rq.has_log_id = r->has_log_id;
		rq.log_id = (int64_t)r->log_id;
		rq.has_trace_id = rq.has_span_id = rq.has_parent_span_id =
		    r->has_trace;
		rq.trace_id = (int64_t)r->trace_id;
		rq.span_id = (int64_t)r->span_id;
		rq.parent_span_id = (int64_t)r->parent_span_id;
		if (r->request_id && r->request_id[0])
			rq.request_id = (char *)r->request_id;
		rq.has_timeout_ms = r->has_timeout_ms;
		rq.timeout_ms = r->timeout_ms;
		pb.request = &rq;
		pb.compress_type = r->compress_type;
		pb.correlation_id = (int64_t)r->correlation_id;
		pb.content_type = r->content_type;
		pb.checksum_type = r->checksum_type;
		if (r->auth.ptr) {
			pb.has_authentication_data = 1;
			pb.authentication_data.data = (uint8_t *)r->auth.ptr;
			pb.authentication_data.len = r->auth.len;
		}
		ck = &r->checksum_value;
	} else {
		const struct baidu_resp_meta *r = m->resp;

		rs.has_error_code = 1;
		rs.error_code = r->error_code;
		if (r->error_text && r->error_text[0])
			rs.error_text = (char *)r->error_text;
		pb.response = &rs;
		pb.compress_type = r->compress_type;
		pb.correlation_id = (int64_t)r->correlation_id;
		pb.content_type = r->content_type;
		pb.checksum_type = r->checksum_type;
		ck = &r->checksum_value;
	}
	pb.has_compress_type = pb.has_correlation_id = pb.has_content_type =
	    pb.has_checksum_type = pb.has_checksum_value = 1;
	pb.checksum_value.data = (uint8_t *)(ck->ptr ? ck->ptr : none);
	pb.checksum_value.len = ck->ptr ? ck->len : 0;
	pb.has_attachment_size = m->attachment_size > 0;
	pb.attachment_size = (int32_t)m->attachment_size;
	return brpc__policy__rpc_meta__pack(&pb, out);
}

/* Random metas of both kinds, every optional field on or off. */
struct rnd_meta {
	struct baidu_req_meta req;
	struct baidu_resp_meta resp;
	struct baidu_meta_out out;
	char s1[256], s2[256], s3[256];
	uint8_t bytes[300], ck[4];
};

static void rnd_meta(struct rnd_meta *r)
{
	struct baidu_bytes ck = {0};

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < sizeof(r->bytes); i++)
		r->bytes[i] = (uint8_t)rnd();
	if (rnd() % 2) {
		ck.ptr = r->ck;
		ck.len = rnd() % 2 ? 4 : rnd() % 5;
	}
	if (rnd() % 2) {
		struct baidu_req_meta *q = &r->req;

		q->service = rnd_str(r->s1);
		q->method = rnd_str(r->s2);
		q->correlation_id = rnd_u64();
		q->compress_type = rnd_i32();
		q->content_type = rnd_i32();
		q->has_log_id = rnd() % 2;
		q->log_id = rnd_u64();
		q->has_trace = rnd() % 2;
		q->trace_id = rnd_u64();
		q->span_id = rnd_u64();
		q->parent_span_id = rnd_u64();
		q->request_id = rnd() % 2 ? rnd_str(r->s3) : NULL;
		q->has_timeout_ms = rnd() % 2;
		q->timeout_ms = rnd_i32();
		if (rnd() % 2) {
			q->auth.ptr = r->bytes;
			q->auth.len = rnd() % sizeof(r->bytes);
		}
		q->checksum_type = rnd_i32();
		q->checksum_value = ck;
		r->out.req = q;
	} else {
		struct baidu_resp_meta *s = &r->resp;

		s->correlation_id = rnd_u64();
		s->error_code = rnd_i32();
		s->error_text = rnd() % 2 ? rnd_str(r->s1) : NULL;
		s->compress_type = rnd_i32();
		s->content_type = rnd_i32();
		s->checksum_type = rnd_i32();
		s->checksum_value = ck;
		r->out.resp = s;
	}
	r->out.attachment_size = rnd() % 2 ? (uint32_t)(rnd() % INT32_MAX) : 0;
}

/* A meta buffer large enough for any rnd_meta(). */
#define META_BUF 2048

static void test_encoder_matches_protobuf_c(void **state)
{
	static struct rnd_meta r;
	uint8_t mine[META_BUF], theirs[META_BUF];

	(void)state;
	for (int i = 0; i < RANDOM_METAS; i++) {
		size_t n, want;

		rnd_meta(&r);
		n = baidu_meta_size(&r.out);
		assert_true(n <= sizeof(mine));
		assert_int_equal(baidu_meta_put(&r.out, mine), n);
		want = pbc_pack(&r.out, theirs);
		assert_int_equal(n, want);
		assert_memory_equal(mine, theirs, n);
	}
}

/* What we encode, the fast path takes, and reads as protobuf-c does. */
static void test_decoder_takes_what_we_encode(void **state)
{
	static struct rnd_meta r;
	uint8_t buf[META_BUF];
	bool agree;

	(void)state;
	for (int i = 0; i < RANDOM_METAS; i++) {
		size_t n;

		rnd_meta(&r);
		n = baidu_meta_size(&r.out);
		assert_true(n <= sizeof(buf));
		assert_int_equal(baidu_meta_put(&r.out, buf), n);
		assert_int_equal(meta_fast_vs_pbc(buf, n, &agree), 1);
		assert_true(agree);
	}
}

/* Every meta in brpc's recorded streams goes the fast way. */
static void test_decoder_takes_brpc_metas(void **state)
{
	char pattern[4096];
	size_t metas = 0;
	glob_t g;

	(void)state;
	snprintf(pattern, sizeof(pattern), "%s/baidu_std/*.[cs]2[sc]",
		 test_vectors_dir());
	assert_int_equal(glob(pattern, 0, NULL, &g), 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *name = strrchr(g.gl_pathv[i], '/') + 1;
		size_t len, off = 0;
		uint8_t *p = test_vector_read(name, &len);

		/* Walk the well-formed frames; the malformed vectors stop
		 * at their bad header. */
		while (len - off >= BAIDU_HEADER_LEN &&
		       !memcmp(p + off, BAIDU_MAGIC, BAIDU_MAGIC_LEN)) {
			uint32_t body = test_be32(p + off + 4);
			uint32_t meta = test_be32(p + off + 8);
			struct Brpc__Policy__RpcMeta *pb;
			struct baidu_meta view;
			bool agree;

			if (meta > body || body > len - off - BAIDU_HEADER_LEN)
				break;
			if (baidu_meta_decode(p + off + BAIDU_HEADER_LEN, meta,
					      NULL, &pb, &view) == 0) {
				baidu_meta_free(pb, NULL);
				if (!meta_fast_vs_pbc(p + off +
							  BAIDU_HEADER_LEN,
						      meta, &agree))
					fail_msg("%s: a meta at byte %zu is "
						 "not taken by the fast path",
						 name, off);
				assert_true(agree);
				metas++;
			}
			off += BAIDU_HEADER_LEN + body;
		}
		free(p);
	}
	globfree(&g);
	/* 15 recorded exchanges: 2 have no valid frame (bad magic, meta
	 * larger than body), 12 one request and one answer, pipelined_two
	 * two of each. */
	assert_int_equal(metas, 28);
}

/* Metas the fast path must leave to protobuf-c, with the reason. */
static void test_decoder_declines(void **state)
{
	static const struct {
		const char *why;
		const char *bytes;
		size_t len;
	} cases[] = {
#define CASE(why, lit) {why, lit, sizeof(lit) - 1}
	    CASE("user_fields (9)", "\x4a\x06\x0a\x01k\x12\x01v"),
	    CASE("stream_settings (8)", "\x42\x02\x08\x01"),
	    CASE("chunk_info (6)", "\x32\x04\x08\x01\x10\x02"),
	    CASE("request twice (protobuf merges)",
		 "\x0a\x06\x0a\x01s\x12\x01m\x0a\x06\x0a\x01s\x12\x01m"),
	    CASE("request without method_name", "\x0a\x03\x0a\x01s"),
	    CASE("request without service_name", "\x0a\x03\x12\x01m"),
	    CASE("unknown field 14", "\x70\x01"),
	    CASE("unknown field in the request",
		 "\x0a\x08\x0a\x01s\x12\x01m\x48\x01"),
	    CASE("two-byte key (field 1, padded)", "\x88\x00\x01"),
	    CASE("service_name as a varint", "\x0a\x02\x08\x01"),
	    CASE("compress_type as bytes", "\x1a\x01x"),
	    CASE("length in 6 bytes", "\x3a\x81\x80\x80\x80\x80\x00x"),
	    CASE("varint of 11 bytes",
		 "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
	    CASE("bits past 64 in the tenth varint byte",
		 "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
	    CASE("length past the end", "\x3a\x05xy"),
	    CASE("varint cut short", "\x20\x80"),
	    CASE("key without a value", "\x20"),
	    CASE("field number 0", "\x00\x01"),
	    CASE("a group (wire type 3)", "\x0b\x0c"),
#undef CASE
	};
	char store[64];
	struct baidu_meta v;
	bool agree;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (baidu_meta_decode_fast(cases[i].bytes, cases[i].len, store,
					   &v) != 1)
			fail_msg("fast path took: %s", cases[i].why);
		meta_fast_vs_pbc(cases[i].bytes, cases[i].len, &agree);
		assert_true(agree);
	}
}

/* Odd but valid: empty strings and bytes, embedded NUL, a non-zero bool
 * of two bytes, a repeated scalar (the last wins), an empty meta. */
static void test_decoder_edge_values(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} cases[] = {
#define CASE(lit) {lit, sizeof(lit) - 1}
	    CASE(""),
	    CASE("\x0a\x04\x0a\x00\x12\x00"),
	    CASE("\x0a\x08\x0a\x03s\0t\x12\x01m\x3a\x00"),
	    CASE("\x68\x80\x01"),
	    CASE("\x68\x00"),
	    CASE("\x20\x05\x20\x07"),
	    CASE("\x12\x00\x62\x00\x3a\x00"),
	    CASE(
		"\x12\x0d\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12\x00"),
	    CASE("\x28\xff\xff\xff\xff\x0f"),
#undef CASE
	};
	bool agree;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(
		    meta_fast_vs_pbc(cases[i].bytes, cases[i].len, &agree), 1);
		if (!agree)
			fail_msg("case %zu read differently", i);
	}
}

/* Every one-byte change and every truncation of a rich meta: whatever the
 * fast path still takes, protobuf-c reads the same. */
static void test_decoder_mutations(void **state)
{
	static const uint8_t auth[] = "token";
	static const uint8_t ck[4] = {1, 2, 3, 4};
	struct baidu_req_meta rq = {
	    .service = "example.EchoService",
	    .method = "Echo",
	    .correlation_id = 0x1234567890ull,
	    .compress_type = BAIDU_COMPRESS_SNAPPY,
	    .has_log_id = true,
	    .log_id = 77,
	    .has_trace = true,
	    .trace_id = 1,
	    .span_id = 2,
	    .parent_span_id = 3,
	    .request_id = "r1",
	    .has_timeout_ms = true,
	    .timeout_ms = -5,
	    .auth = {auth, 5},
	    .checksum_type = BAIDU_CHECKSUM_CRC32C,
	    .checksum_value = {ck, 4},
	};
	struct baidu_meta_out mo = {.req = &rq, .attachment_size = 300};
	uint8_t good[256], buf[256];
	size_t n = baidu_meta_size(&mo), taken = 0, tried = 0;
	bool agree;

	(void)state;
	assert_true(n <= sizeof(good));
	assert_int_equal(baidu_meta_put(&mo, good), n);
	for (size_t pos = 0; pos < n; pos++) {
		for (unsigned b = 0; b < 256; b++) {
			memcpy(buf, good, n);
			buf[pos] = (uint8_t)b;
			taken += (size_t)meta_fast_vs_pbc(buf, n, &agree);
			tried++;
			if (!agree)
				fail_msg("byte %zu = 0x%02x: read differently",
					 pos, b);
		}
	}
	for (size_t len = 0; len < n; len++) {
		meta_fast_vs_pbc(good, len, &agree);
		assert_true(agree);
	}
	/* Most changes land in values and keep the meta decodable. */
	assert_true(taken > tried / 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_encoder_matches_protobuf_c),
	    TEST_BOUNDED(test_decoder_takes_what_we_encode),
	    TEST_BOUNDED(test_decoder_takes_brpc_metas),
	    TEST_BOUNDED(test_decoder_declines),
	    TEST_BOUNDED(test_decoder_edge_values),
	    TEST_BOUNDED(test_decoder_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
