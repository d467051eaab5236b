/*
 * baidu_std packing tests: pack/parse round trips, packing byte-identical
 * to brpc's recorded frames, the no-copy rule (small frames copied whole),
 * allocation failures
 * while packing, brpc's error text format, rpc_errno and the checksum
 * hook.  Parsing is tested in test_baidu_std.c.  Every test ends with its
 * pool destroyed and no live allocation in its struct mem_failing.
 */
#define _GNU_SOURCE /* open_memstream */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "baidu_rpc_meta.pb-c.h"
#include "codec/baidu_std.h"
#include "base/iobuf.h"
#include "base/mem.h"
#include "codec/rpc_errno.h"
#include "base/util.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 120

#include "testutil.h"
#include "baidu_test.h"

/* --- round trips ---------------------------------------------------------- */

/* Parses the one frame in `out` (which ends empty) into *f. */
static void parse_one(struct iobuf *out, struct baidu_frame *f)
{
	size_t len = iobuf_len(out);

	assert_int_equal(baidu_parse(out, f, NULL), (int)len);
	assert_int_equal(iobuf_len(out), 0);
}

/*
 * The meta of the one frame in `out` as protobuf-c reads it, for checks
 * the light view cannot make (which fields were sent at all); free with
 * brpc__policy__rpc_meta__free_unpacked(pb, NULL).
 */
static Brpc__Policy__RpcMeta *packed_pb(const struct iobuf *out)
{
	uint8_t hdr[BAIDU_HEADER_LEN], *meta;
	Brpc__Policy__RpcMeta *pb;
	uint32_t meta_len;

	assert_int_equal(iobuf_copy_out(out, 0, hdr, sizeof(hdr)), sizeof(hdr));
	meta_len = test_be32(hdr + 8);
	meta = malloc(meta_len + 1);
	assert_non_null(meta);
	assert_int_equal(iobuf_copy_out(out, sizeof(hdr), meta, meta_len),
			 meta_len);
	pb = brpc__policy__rpc_meta__unpack(NULL, meta_len, meta);
	free(meta);
	assert_non_null(pb);
	return pb;
}

static void test_roundtrip_request(void **state)
{
	static const uint8_t auth[] = {0x00, 0x01, 0xfe, 0xff, 'k'};
	uint8_t ck[4];
	struct baidu_req_meta base = {
	    .service = "example.EchoService",
	    .method = "Echo",
	    .correlation_id = 0xfedcba9876543210ull,
	};
	struct iobuf_pool pool;
	struct iobuf out, msg, att;
	struct baidu_frame f;
	Brpc__Policy__RpcMeta *pb;
	unsigned variant;
	uint32_t crc;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	baidu_checksum_encode(0x12345678, ck);
	for (variant = 0; variant < 64; variant++) {
		struct baidu_req_meta m = base;
		bool with_att = variant & 1, with_msg = variant & 32;

		if (variant & 2) {
			m.has_log_id = true;
			m.log_id = 123456789;
		}
		if (variant & 4) {
			m.auth.ptr = auth;
			m.auth.len = sizeof(auth);
		}
		if (variant & 8) {
			m.request_id = "req-42";
			m.has_trace = true;
			m.trace_id = 1;
			m.span_id = UINT64_MAX;
			m.parent_span_id = 3;
			m.has_timeout_ms = true;
			m.timeout_ms = 250;
		}
		if (variant & 16) {
			m.compress_type = BAIDU_COMPRESS_ZLIB;
			m.content_type = BAIDU_CONTENT_JSON;
			m.checksum_type = BAIDU_CHECKSUM_CRC32C;
			m.checksum_value.ptr = ck;
			m.checksum_value.len = sizeof(ck);
		}
		iobuf_init(&out, &pool);
		fill(&msg, &pool, with_msg ? "\x0a\x05hello" : "",
		     with_msg ? 7 : 0);
		fill(&att, &pool, "world", with_att ? 5 : 0);
		assert_int_equal(baidu_pack_request(&out, &m, &msg, &att), 0);
		assert_true(iobuf_empty(&msg));
		assert_true(iobuf_empty(&att));
		pb = packed_pb(&out);
		assert_int_equal(pb->has_attachment_size, with_att);
		brpc__policy__rpc_meta__free_unpacked(pb, NULL);
		parse_one(&out, &f);

		assert_true(f.meta.has_request);
		assert_false(f.meta.has_response);
		assert_string_equal(f.meta.service, m.service);
		assert_string_equal(f.meta.method, m.method);
		assert_int_equal(f.meta.correlation_id, m.correlation_id);
		assert_int_equal(f.meta.has_log_id, m.has_log_id);
		assert_int_equal(f.meta.log_id, m.log_id);
		assert_int_equal(f.meta.trace_id, m.trace_id);
		assert_int_equal(f.meta.span_id, m.span_id);
		assert_int_equal(f.meta.parent_span_id, m.parent_span_id);
		if (m.request_id)
			assert_string_equal(f.meta.request_id, m.request_id);
		else
			assert_null(f.meta.request_id);
		assert_int_equal(f.meta.has_timeout_ms, m.has_timeout_ms);
		assert_int_equal(f.meta.timeout_ms, m.timeout_ms);
		assert_int_equal(f.meta.compress_type, m.compress_type);
		assert_int_equal(f.meta.content_type, m.content_type);
		assert_int_equal(f.meta.checksum_type, m.checksum_type);
		/* brpc's PackRpcRequest: checksum_value always present. */
		assert_non_null(f.meta.checksum_value.ptr);
		if (variant & 16) {
			assert_int_equal(
			    baidu_checksum_decode(&f.meta.checksum_value, &crc),
			    0);
			assert_int_equal(crc, 0x12345678);
		} else {
			assert_int_equal(f.meta.checksum_value.len, 0);
		}
		if (m.auth.ptr) {
			assert_int_equal(f.meta.authentication_data.len,
					 sizeof(auth));
			assert_memory_equal(f.meta.authentication_data.ptr,
					    auth, sizeof(auth));
		} else {
			assert_null(f.meta.authentication_data.ptr);
		}
		assert_int_equal(f.meta.attachment_size, with_att ? 5 : 0);
		buf_equal(&f.data, "\x0a\x05hello", with_msg ? 7 : 0);
		buf_equal(&f.attachment, "world", with_att ? 5 : 0);
		assert_false(f.bad_attachment);
		baidu_frame_release(&f);
		baidu_frame_release(&f); /* idempotent */
		iobuf_destroy(&out);
		iobuf_destroy(&msg);
		iobuf_destroy(&att);
	}

	/* NULL msg/attachment are empty; service and method are required. */
	iobuf_init(&out, &pool);
	assert_int_equal(baidu_pack_request(&out, &base, NULL, NULL), 0);
	parse_one(&out, &f);
	assert_true(iobuf_empty(&f.data));
	assert_true(iobuf_empty(&f.attachment));
	baidu_frame_release(&f);
	base.method = NULL;
	assert_int_equal(baidu_pack_request(&out, &base, NULL, NULL), -EINVAL);
	base.method = "Echo";
	base.service = NULL;
	assert_int_equal(baidu_pack_request(&out, &base, NULL, NULL), -EINVAL);
	base.service = "example.EchoService";
	assert_int_equal(baidu_pack_request(&out, &base, &out, NULL), -EINVAL);
	assert_int_equal(iobuf_len(&out), 0);
	iobuf_destroy(&out);
	pool_down(&pool);
}

static void test_roundtrip_response(void **state)
{
	struct baidu_resp_meta ok = {.correlation_id = 7};
	struct baidu_resp_meta err = {
	    .correlation_id = 8,
	    .error_code = RPC_ENOMETHOD,
	    .error_text = SRV "[E1002]Fail to find method=a.B/C",
	};
	struct iobuf_pool pool;
	struct iobuf out, msg, att;
	struct baidu_frame f;
	Brpc__Policy__RpcMeta *pb;
	unsigned variant;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (variant = 0; variant < 4; variant++) {
		bool with_att = variant & 1;

		ok.compress_type = variant & 2 ? BAIDU_COMPRESS_GZIP : 0;
		iobuf_init(&out, &pool);
		fill(&msg, &pool, "\x0a\x02hi", 4);
		fill(&att, &pool, "raw", with_att ? 3 : 0);
		assert_int_equal(baidu_pack_response(&out, &ok, &msg, &att), 0);
		pb = packed_pb(&out);
		assert_null(pb->response->error_text);
		assert_true(pb->response->has_error_code);
		brpc__policy__rpc_meta__free_unpacked(pb, NULL);
		parse_one(&out, &f);
		assert_true(f.meta.has_response);
		assert_false(f.meta.has_request);
		assert_int_equal(f.meta.error_code, 0);
		assert_string_equal(f.meta.error_text, "");
		assert_int_equal(f.meta.correlation_id, 7);
		assert_int_equal(f.meta.compress_type, ok.compress_type);
		buf_equal(&f.data, "\x0a\x02hi", 4);
		buf_equal(&f.attachment, "raw", with_att ? 3 : 0);
		baidu_frame_release(&f);
		iobuf_destroy(&out);
		iobuf_destroy(&msg);
		iobuf_destroy(&att);
	}

	/* A failure: text, no body. */
	iobuf_init(&out, &pool);
	assert_int_equal(baidu_pack_response(&out, &err, NULL, NULL), 0);
	parse_one(&out, &f);
	assert_int_equal(f.meta.error_code, RPC_ENOMETHOD);
	assert_string_equal(f.meta.error_text, err.error_text);
	assert_int_equal(f.body_size, f.meta_size);
	baidu_frame_release(&f);

	/* An empty text is not sent. */
	err.error_text = "";
	assert_int_equal(baidu_pack_response(&out, &err, NULL, NULL), 0);
	pb = packed_pb(&out);
	assert_null(pb->response->error_text);
	brpc__policy__rpc_meta__free_unpacked(pb, NULL);
	parse_one(&out, &f);
	assert_string_equal(f.meta.error_text, "");
	baidu_frame_release(&f);

	/* A failure with a body is refused, nothing touched. */
	fill(&msg, &pool, "x", 1);
	iobuf_init(&att, &pool);
	assert_int_equal(baidu_pack_response(&out, &err, &msg, &att), -EINVAL);
	assert_int_equal(baidu_pack_response(&out, &err, &att, &msg), -EINVAL);
	assert_int_equal(iobuf_len(&msg), 1);
	assert_int_equal(iobuf_len(&out), 0);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
	iobuf_destroy(&out);
	pool_down(&pool);
}

/* --- packing as brpc does ------------------------------------------------ */

/*
 * Packs the meaning of every frame of a recorded stream and checks that
 * the packed frame decodes to the same meaning and, for frames a real brpc
 * peer wrote (exact), that it is the same bytes.
 */
static void check_repack(struct iobuf_pool *pool, const char *file, bool exact)
{
	size_t len, off = 0;
	uint8_t *p = test_vector_read(file, &len);
	struct iobuf in, out, msg, att;
	struct baidu_frame f, g;
	int ret, ret2;

	fill(&in, pool, (const char *)p, len);
	while ((ret = baidu_parse(&in, &f, NULL)) > 0) {
		const struct baidu_meta *m = &f.meta;
		char *a, *b;

		iobuf_init(&out, pool);
		iobuf_init(&msg, pool);
		iobuf_init(&att, pool);
		assert_int_equal(
		    iobuf_share(&msg, &f.data, 0, iobuf_len(&f.data)), 0);
		assert_int_equal(iobuf_share(&att, &f.attachment, 0,
					     iobuf_len(&f.attachment)),
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

			assert_int_equal(
			    baidu_pack_request(&out, &rq, &msg, &att), 0);
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

			assert_int_equal(
			    baidu_pack_response(&out, &rs, &msg, &att), 0);
		}
		if (exact)
			buf_equal(&out, p + off, (size_t)ret);
		ret2 = baidu_parse(&out, &g, NULL);
		assert_true(ret2 > 0);
		assert_int_equal(iobuf_len(&out), 0);
		if (exact)
			assert_int_equal(ret2, ret);
		a = summarize_meaning(&f);
		b = summarize_meaning(&g);
		assert_string_equal(b, a);
		free(a);
		free(b);
		baidu_frame_release(&g);
		baidu_frame_release(&f);
		iobuf_destroy(&out);
		iobuf_destroy(&msg);
		iobuf_destroy(&att);
		off += (size_t)ret;
	}
	assert_int_equal(ret, -EAGAIN);
	assert_int_equal(off, len);
	iobuf_destroy(&in);
	free(p);
}

static void test_pack_like_brpc(void **state)
{
	/* Written by brpc itself: ours must be the same bytes. */
	static const char *const brpc_wrote[] = {
	    "echo_plain.c2s",
	    "echo_plain.s2c",
	    "echo_attachment.c2s",
	    "echo_attachment.s2c",
	    "echo_log_id.c2s",
	    "echo_log_id.s2c",
	    "echo_gzip.c2s",
	    "echo_gzip.s2c",
	    "echo_zlib.c2s",
	    "echo_zlib.s2c",
	    "echo_snappy.c2s",
	    "echo_snappy.s2c",
	    "echo_fail.c2s",
	    "echo_fail.s2c",
	    "err_no_service.s2c",
	    "err_no_method.s2c",
	    "err_short_service.s2c",
	    "err_bad_body.s2c",
	    "err_missing_required.s2c",
	    "pipelined_two.s2c",
	};
	/* Written by hand (no fields 10-12, no compress_type): same meaning. */
	static const char *const by_hand[] = {
	    "err_no_service.c2s",	"err_no_method.c2s",
	    "err_short_service.c2s",	"err_bad_body.c2s",
	    "err_missing_required.c2s", "pipelined_two.c2s",
	};
	struct iobuf_pool pool;
	size_t i;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < ARRAY_SIZE(brpc_wrote); i++)
		check_repack(&pool, brpc_wrote[i], true);
	for (i = 0; i < ARRAY_SIZE(by_hand); i++)
		check_repack(&pool, by_hand[i], false);
	pool_down(&pool);
}

/* The success meta the spec quotes (1.3), byte for byte. */
static void test_pack_spec_example(void **state)
{
	static const uint8_t want[] = {
	    'P',  'R',	'P',  'C',  0,	  0,	0,    18,   0,	  0,
	    0,	  14,	0x12, 0x02, 0x08, 0x00, 0x18, 0x00, 0x20, 0x01,
	    0x50, 0x00, 0x58, 0x00, 0x62, 0x00, 0x0a, 0x02, 'h',  'i',
	};
	struct baidu_resp_meta rs = {.correlation_id = 1};
	struct iobuf_pool pool;
	struct iobuf out, msg;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	iobuf_init(&out, &pool);
	fill(&msg, &pool, "\x0a\x02hi", 4);
	assert_int_equal(baidu_pack_response(&out, &rs, &msg, NULL), 0);
	buf_equal(&out, want, sizeof(want));
	iobuf_destroy(&out);
	iobuf_destroy(&msg);
	pool_down(&pool);
}

/* Copies b (which must fit in size bytes) for a comparison. */
static size_t flat_of(const struct iobuf *b, uint8_t *buf, size_t size)
{
	size_t n = iobuf_len(b);

	assert_true(n <= size);
	assert_int_equal(iobuf_copy_out(b, 0, buf, n), n);
	return n;
}

/* One way of packing msg and the attachment behind what out holds. */
typedef int pack_fn(struct iobuf *out, struct iobuf *msg, struct iobuf *att,
		    const void *arg);

/*
 * out ("abc", its last block shared so the frame needs a fresh one), msg
 * (ml bytes of mb, in three refs) and att ("attach", in two), built in a
 * pool whose allocations come from pmf.
 */
static void sweep_setup(struct iobuf_pool *pool, struct mem_failing *pmf,
			struct iobuf *out, struct iobuf *keep,
			struct iobuf *msg, struct iobuf *att, const char *mb,
			size_t ml)
{
	mem_failing_init(pmf, -1);
	pool_up(pool, &pmf->mem, 1, 0);
	build_split(out, pool, (const uint8_t *)"abc", 3, 1);
	iobuf_init(keep, pool);
	assert_int_equal(iobuf_share(keep, out, 2, 1), 0);
	build_split(msg, pool, (const uint8_t *)mb, ml, 3);
	build_split(att, pool, (const uint8_t *)"attach", 6, 2);
}

static void sweep_teardown(struct iobuf_pool *pool, struct mem_failing *pmf,
			   struct iobuf *out, struct iobuf *keep,
			   struct iobuf *msg, struct iobuf *att)
{
	iobuf_destroy(out);
	iobuf_destroy(msg);
	iobuf_destroy(att);
	iobuf_destroy(keep);
	pool_down(pool);
	assert_int_equal(pmf->live, 0);
}

/*
 * Packs with the pool's k-th allocation failing, k = 0, 1, ... until it
 * succeeds: every -ENOMEM leaves out, msg and the attachment as they
 * were; the success leaves msg and the attachment empty and out as a run
 * without failures packs it, a frame whose message is the dl bytes of
 * data and whose attachment is "attach".
 */
static void sweep_pack_failures(pack_fn *pack, const void *arg, const char *mb,
				size_t ml, const char *data, size_t dl)
{
	static uint8_t want[1024], got[1024];
	struct mem_failing pmf;
	struct iobuf_pool pool;
	struct iobuf out, msg, att, keep;
	struct baidu_frame f;
	long k, failures = 0;
	size_t n;
	int ret;

	sweep_setup(&pool, &pmf, &out, &keep, &msg, &att, mb, ml);
	assert_int_equal(pack(&out, &msg, &att, arg), 0);
	n = flat_of(&out, want, sizeof(want));
	sweep_teardown(&pool, &pmf, &out, &keep, &msg, &att);
	for (k = 0; k < SWEEP_MAX; k++) {
		sweep_setup(&pool, &pmf, &out, &keep, &msg, &att, mb, ml);
		pmf.fail_at = pmf.calls + k;
		ret = pack(&out, &msg, &att, arg);
		pmf.fail_at = -1;
		if (ret == -ENOMEM) {
			buf_equal(&out, "abc", 3);
			buf_equal(&msg, mb, ml);
			buf_equal(&att, "attach", 6);
			failures++;
		} else {
			assert_int_equal(ret, 0);
			assert_true(iobuf_empty(&msg));
			assert_true(iobuf_empty(&att));
			assert_int_equal(flat_of(&out, got, sizeof(got)), n);
			assert_memory_equal(got, want, n);
			iobuf_drop_front(&out, 3);
			assert_true(baidu_parse(&out, &f, NULL) > 0);
			buf_equal(&f.data, data, dl);
			buf_equal(&f.attachment, "attach", 6);
			baidu_frame_release(&f);
		}
		sweep_teardown(&pool, &pmf, &out, &keep, &msg, &att);
		if (ret == 0)
			break;
	}
	assert_true(k < SWEEP_MAX);
	assert_true(failures > 0);
}

static int pack_hi_pb(struct iobuf *out, struct iobuf *msg, struct iobuf *att,
		      const void *arg)
{
	const struct baidu_resp_meta rs = {.correlation_id = 1};

	return baidu_pack_response_pb(out, &rs, arg, att);
}

static int pack_hi_flat(struct iobuf *out, struct iobuf *msg, struct iobuf *att,
			const void *arg)
{
	return baidu_pack_request_flat(out, arg, "\x0a\x02hi", 4, att);
}

/*
 * Messages that make the frame a little under, exactly and a little over
 * 256 bytes, with att_len bytes of attachment: packed as the iobuf path
 * packs them up to 256, -ENOSPC with nothing done above.
 */
static void pack_pb_edge(struct iobuf_pool *pool, size_t att_len)
{
	static uint8_t a[512], b[512], enc[512];
	Brpc__Policy__UserFieldsEntry m = BRPC__POLICY__USER_FIELDS_ENTRY__INIT;
	struct baidu_resp_meta rs = {.correlation_id = 1};
	struct iobuf out, ref, msg, att;
	bool fitted = false, refused = false;
	char key[300];
	size_t len, n;
	int ret;

	for (len = 200; len < 240; len++) {
		memset(key, 'k', len);
		key[len] = '\0';
		m.key = key;
		iobuf_init(&out, pool);
		fill(&att, pool, "attach", att_len);
		ret = baidu_pack_response_pb(&out, &rs, &m.base, &att);
		if (ret == 0)
			assert_true(iobuf_empty(&att));
		else
			buf_equal(&att, "attach", att_len);
		iobuf_destroy(&att);
		n = protobuf_c_message_pack(&m.base, enc);
		fill(&msg, pool, (const char *)enc, n);
		fill(&ref, pool, "", 0);
		fill(&att, pool, "attach", att_len);
		assert_int_equal(baidu_pack_response(&ref, &rs, &msg, &att), 0);
		if (iobuf_len(&ref) <= 256) {
			assert_int_equal(ret, 0);
			n = flat_of(&out, a, sizeof(a));
			assert_int_equal(flat_of(&ref, b, sizeof(b)), n);
			assert_memory_equal(a, b, n);
			fitted |= n == 256;
		} else {
			assert_int_equal(ret, -ENOSPC);
			assert_true(iobuf_empty(&out));
			refused |= iobuf_len(&ref) == 257;
		}
		iobuf_destroy(&out);
		iobuf_destroy(&ref);
		iobuf_destroy(&msg);
		iobuf_destroy(&att);
	}
	assert_true(fitted && refused);
}

/*
 * A message encoded straight into the frame: the same bytes as encoding it
 * first (the spec's example again, its message being any one whose field
 * 1 is "hi"), the attachment copied and emptied; -ENOSPC above 256 bytes
 * and -EINVAL for an error answer, with out and attachment untouched;
 * -ENOMEM likewise, wherever the pool's allocations fail.
 */
static void test_pack_response_pb(void **state)
{
	static const uint8_t want[] = {
	    'P',  'R',	'P',  'C',  0,	  0,	0,    18,   0,	  0,
	    0,	  14,	0x12, 0x02, 0x08, 0x00, 0x18, 0x00, 0x20, 0x01,
	    0x50, 0x00, 0x58, 0x00, 0x62, 0x00, 0x0a, 0x02, 'h',  'i',
	};
	Brpc__Policy__UserFieldsEntry hi =
	    BRPC__POLICY__USER_FIELDS_ENTRY__INIT;
	Brpc__Policy__UserFieldsEntry big =
	    BRPC__POLICY__USER_FIELDS_ENTRY__INIT;
	struct baidu_resp_meta rs = {.correlation_id = 1};
	struct baidu_resp_meta bad = {.correlation_id = 1, .error_code = 1};
	static uint8_t a[1024], b[1024];
	struct iobuf_pool pool;
	struct iobuf out, att, msg, ref;
	char name[260];
	size_t na;

	(void)state;
	hi.key = "hi";
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	big.key = name;
	pool_up(&pool, NULL, 64, 0);
	iobuf_init(&out, &pool);
	assert_int_equal(baidu_pack_response_pb(&out, &rs, &hi.base, NULL), 0);
	buf_equal(&out, want, sizeof(want));
	iobuf_reset(&out);

	/* Behind what out holds, with an attachment: as the iobuf path. */
	fill(&out, &pool, "abc", 3);
	fill(&att, &pool, "attach", 6);
	fill(&ref, &pool, "abc", 3);
	fill(&msg, &pool, "\x0a\x02hi", 4);
	assert_int_equal(baidu_pack_response_pb(&out, &rs, &hi.base, &att), 0);
	assert_true(iobuf_empty(&att));
	fill(&att, &pool, "attach", 6);
	assert_int_equal(baidu_pack_response(&ref, &rs, &msg, &att), 0);
	na = flat_of(&out, a, sizeof(a));
	assert_int_equal(flat_of(&ref, b, sizeof(b)), na);
	assert_memory_equal(a, b, na);

	/* Either side of 256 bytes, with and without an attachment. */
	pack_pb_edge(&pool, 0);
	pack_pb_edge(&pool, 6);

	/* Too big, or an error answer: nothing done. */
	iobuf_reset(&out);
	fill(&out, &pool, "abc", 3);
	fill(&att, &pool, "attach", 6);
	assert_int_equal(baidu_pack_response_pb(&out, &rs, &big.base, &att),
			 -ENOSPC);
	assert_int_equal(baidu_pack_response_pb(&out, &bad, &hi.base, &att),
			 -EINVAL);
	buf_equal(&out, "abc", 3);
	buf_equal(&att, "attach", 6);
	iobuf_destroy(&out);
	iobuf_destroy(&att);
	iobuf_destroy(&ref);
	iobuf_destroy(&msg);
	pool_down(&pool);
	sweep_pack_failures(pack_hi_pb, &hi.base, "", 0, "\x0a\x02hi", 4);
}

/*
 * A request held as flat bytes packs as the same bytes in an iobuf do:
 * one region when it fits in 256 bytes, else (a long credential) the
 * shared path; the attachment emptied either way.  Failures leave out
 * and the attachment as they were.
 */
static void test_pack_request_flat(void **state)
{
	static uint8_t cred[300];
	struct baidu_req_meta rq = {.service = "example.EchoService",
				    .method = "Echo",
				    .correlation_id = 7};
	static uint8_t a[1024], b[1024];
	struct iobuf_pool pool;
	struct iobuf out, ref, msg, att;
	size_t na, nb;
	int pass;

	(void)state;
	memset(cred, 'c', sizeof(cred));
	for (pass = 0; pass < 2; pass++) {
		/* Pass 1: a credential too long for the stack buffer. */
		rq.auth.ptr = pass ? cred : NULL;
		rq.auth.len = pass ? sizeof(cred) : 0;
		pool_up(&pool, NULL, 64, 0);
		fill(&out, &pool, "abc", 3);
		fill(&ref, &pool, "abc", 3);
		fill(&att, &pool, "attach", 6);
		assert_int_equal(
		    baidu_pack_request_flat(&out, &rq, "\x0a\x02hi", 4, &att),
		    0);
		assert_true(iobuf_empty(&att));
		/* Behind "abc" in its block; long: msg and att shared. */
		assert_int_equal(iobuf_ref_count(&out), pass ? 3 : 1);
		fill(&att, &pool, "attach", 6);
		fill(&msg, &pool, "\x0a\x02hi", 4);
		assert_int_equal(baidu_pack_request(&ref, &rq, &msg, &att), 0);
		na = flat_of(&out, a, sizeof(a));
		nb = flat_of(&ref, b, sizeof(b));
		assert_int_equal(na, nb);
		assert_memory_equal(a, b, na);
		iobuf_destroy(&out);
		iobuf_destroy(&ref);
		iobuf_destroy(&msg);
		iobuf_destroy(&att);
		assert_int_equal(
		    baidu_pack_request_flat(&out, &(struct baidu_req_meta){0},
					    "x", 1, NULL),
		    -EINVAL);
		pool_down(&pool);
		sweep_pack_failures(pack_hi_flat, &rq, "", 0, "\x0a\x02hi", 4);
	}
}

/* --- zero copy ----------------------------------------------------------- */

static const uint8_t *first_ptr(const struct iobuf *b, size_t *len)
{
	const void *p;

	assert_int_equal(iobuf_ref_at(b, 0, &p, len), 0);
	return p;
}

/* Parsed data and attachment point into the input's block; packed
 * message and attachment refs are the caller's, unless they are small
 * enough to be copied beside the meta into one region. */
static void test_no_payload_copy(void **state)
{
	struct baidu_req_meta rq = {.service = "s.S", .method = "M"};
	const uint8_t *base, *p, *mp, *ap;
	struct iobuf_pool pool;
	struct iobuf in, out, msg, att;
	struct baidu_frame f;
	size_t blen, len, i, total;
	char big[300], small[10];
	uint8_t *v;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	v = test_vector_read("echo_gzip.c2s", &len);
	fill(&in, &pool, (const char *)v, len);
	base = first_ptr(&in, &blen);
	assert_int_equal(blen, len);
	assert_int_equal(baidu_parse(&in, &f, NULL), (int)len);
	p = first_ptr(&f.data, &blen);
	assert_ptr_equal(p, base + BAIDU_HEADER_LEN + f.meta_size);
	assert_int_equal(blen, 29);
	p = first_ptr(&f.attachment, &blen);
	assert_ptr_equal(p, base + len - 3);
	assert_int_equal(blen, 3);
	baidu_frame_release(&f);
	iobuf_destroy(&in);
	free(v);

	/* Pack: out's refs after the meta are msg's and att's, moved. */
	iobuf_init(&out, &pool);
	memset(big, 'm', sizeof(big));
	fill(&msg, &pool, big, sizeof(big));
	fill(&att, &pool, "attach", 6);
	mp = first_ptr(&msg, &blen);
	ap = first_ptr(&att, &blen);
	assert_int_equal(baidu_pack_request(&out, &rq, &msg, &att), 0);
	assert_int_equal(iobuf_ref_count(&out), 3);
	total = 0;
	for (i = 0; i < 3; i++) {
		const void *rp;

		assert_int_equal(iobuf_ref_at(&out, i, &rp, &blen), 0);
		if (i == 1)
			assert_ptr_equal(rp, mp);
		if (i == 2)
			assert_ptr_equal(rp, ap);
		total += blen;
	}
	assert_int_equal(total, iobuf_len(&out));
	assert_true(iobuf_empty(&msg) && iobuf_empty(&att));
	iobuf_reset(&out);

	/* Small: one region, every byte in place, msg and att emptied. */
	fill(&msg, &pool, "0123456789", 10);
	fill(&att, &pool, "attach", 6);
	assert_int_equal(baidu_pack_request(&out, &rq, &msg, &att), 0);
	assert_int_equal(iobuf_ref_count(&out), 1);
	assert_true(iobuf_empty(&msg) && iobuf_empty(&att));
	total = iobuf_len(&out);
	assert_int_equal(baidu_parse(&out, &f, NULL), (int)total);
	assert_int_equal(iobuf_len(&f.data), 10);
	assert_int_equal(iobuf_copy_out(&f.data, 0, small, 10), 10);
	assert_memory_equal(small, "0123456789", 10);
	assert_int_equal(iobuf_len(&f.attachment), 6);
	assert_int_equal(iobuf_copy_out(&f.attachment, 0, small, 6), 6);
	assert_memory_equal(small, "attach", 6);
	baidu_frame_release(&f);
	iobuf_destroy(&out);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
	pool_down(&pool);
}

static int pack_req(struct iobuf *out, struct iobuf *msg, struct iobuf *att,
		    const void *arg)
{
	return baidu_pack_request(out, arg, msg, att);
}

static int pack_resp(struct iobuf *out, struct iobuf *msg, struct iobuf *att,
		     const void *arg)
{
	return baidu_pack_response(out, arg, msg, att);
}

/* Packing with the pool's allocation k failing (region records, regions,
 * ref arrays): -ENOMEM leaves out, msg and attachment as they were. */
static void test_alloc_failures_pack(void **state)
{
	static const uint8_t auth[] = "secret";
	const struct baidu_req_meta rq = {
	    .service = "example.EchoService",
	    .method = "Echo",
	    .correlation_id = 42,
	    .has_log_id = true,
	    .log_id = 1,
	    .auth = {auth, sizeof(auth)},
	};
	const struct baidu_resp_meta rs = {.correlation_id = 42};
	/* A message too big to be copied beside the meta: its refs are
	 * shared. */
	static char big[300];

	(void)state;
	memset(big, 'b', sizeof(big));
	sweep_pack_failures(pack_req, &rq, "msgbytes", 8, "msgbytes", 8);
	sweep_pack_failures(pack_resp, &rs, "msgbytes", 8, "msgbytes", 8);
	sweep_pack_failures(pack_req, &rq, big, sizeof(big), big, sizeof(big));
	sweep_pack_failures(pack_resp, &rs, big, sizeof(big), big, sizeof(big));
}

/* --- error text ---------------------------------------------------------- */

static void test_format_error_text(void **state)
{
	char buf[256];
	int n;

	(void)state;
	n = baidu_format_error_text(buf, sizeof(buf), "127.0.0.1:8100", 4242,
				    "asked to fail");
	assert_string_equal(buf, "[127.0.0.1:8100][E4242]asked to fail");
	assert_int_equal(n, strlen(buf));
	baidu_format_error_text(buf, sizeof(buf), "127.0.0.1:8100",
				RPC_ENOSERVICE, "Fail to find service=NoSuch");
	assert_string_equal(buf, SRV "[E1001]Fail to find service=NoSuch");
	baidu_format_error_text(buf, sizeof(buf), NULL, RPC_EREQUEST, "bad");
	assert_string_equal(buf, "[E1003]bad");
	baidu_format_error_text(buf, sizeof(buf), "h:1", -1, "plain");
	assert_string_equal(buf, "[h:1]plain");
	baidu_format_error_text(buf, sizeof(buf), "h:1", INT32_MIN, NULL);
	assert_string_equal(buf, "[h:1][E-2147483648]");
	/* Exactly fitting, and one byte short. */
	assert_int_equal(baidu_format_error_text(buf, 11, NULL, 1003, "bad"),
			 10);
	assert_int_equal(baidu_format_error_text(buf, 10, NULL, 1003, "bad"),
			 -ENOSPC);
	assert_string_equal(buf, "");
	assert_int_equal(baidu_format_error_text(NULL, 0, NULL, 1, "x"),
			 -ENOSPC);
}

static void test_rpc_errno(void **state)
{
	(void)state;
	assert_int_equal(RPC_ENOSERVICE, 1001);
	assert_int_equal(RPC_EPROGREADTIMEOUT, 1019);
	assert_int_equal(RPC_ESHUTDOWNWRITE, 2007);
	assert_int_equal(RPC_ERDMAMEM, 3002);
	assert_string_equal(rpc_errno_name(1001), "ENOSERVICE");
	assert_string_equal(rpc_errno_name(1002), "ENOMETHOD");
	assert_string_equal(rpc_errno_name(RPC_EEOF), "EEOF");
	assert_string_equal(rpc_errno_name(RPC_ERDMA), "ERDMA");
	assert_string_equal(rpc_errno_text(RPC_EEOF), "Got EOF");
	assert_string_equal(rpc_errno_text(RPC_EREQUEST), "Bad request");
	assert_string_equal(rpc_errno_text(RPC_ELIMIT),
			    "Reached server's max_concurrency");
	assert_string_equal(rpc_errno_name(RPC_EREJECT), "EREJECT");
	assert_null(rpc_errno_text(RPC_EREJECT));
	assert_null(rpc_errno_name(0));
	assert_null(rpc_errno_name(4242));
	assert_null(rpc_errno_text(-1));
}

static void test_checksum_hook(void **state)
{
	static const uint32_t crcs[] = {0,	    1,		0x12345678,
					0xe3069283, UINT32_MAX, 0x80000000};
	struct baidu_bytes v;
	uint8_t b[5];
	uint32_t crc;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(crcs); i++) {
		baidu_checksum_encode(crcs[i], b);
		v.ptr = b;
		v.len = 4;
		assert_int_equal(baidu_checksum_decode(&v, &crc), 0);
		assert_int_equal(crc, crcs[i]);
	}
	/* The mask: rotate right 15 then add 0xa282ead8, big-endian. */
	baidu_checksum_encode(0, b);
	assert_memory_equal(b, "\xa2\x82\xea\xd8", 4);
	baidu_checksum_encode(1u << 15, b);
	assert_memory_equal(b, "\xa2\x82\xea\xd9", 4);
	v.len = 3;
	assert_int_equal(baidu_checksum_decode(&v, &crc), -EBADMSG);
	v.len = 5;
	assert_int_equal(baidu_checksum_decode(&v, &crc), -EBADMSG);
	v.ptr = NULL;
	v.len = 4;
	assert_int_equal(baidu_checksum_decode(&v, &crc), -EBADMSG);
}

#define T(fn) TEST_BOUNDED(fn)

int main(void)
{
	const char *dir = getenv("TEST_VECTORS_DIR");
	const struct CMUnitTest tests[] = {
	    T(test_roundtrip_request), T(test_roundtrip_response),
	    T(test_pack_like_brpc),    T(test_pack_spec_example),
	    T(test_pack_response_pb),  T(test_pack_request_flat),
	    T(test_no_payload_copy),   T(test_alloc_failures_pack),
	    T(test_format_error_text), T(test_rpc_errno),
	    T(test_checksum_hook),
	};

	if (!dir || !*dir) {
		fprintf(stderr, "test_baidu_pack: TEST_VECTORS_DIR is not set: "
				"point it at the shared vectors folder "
				"(../shared/vectors; `make unit` does)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
