/*
 * baidu_std parsing tests: brpc's recorded streams (TEST_VECTORS_DIR/
 * baidu_std) decoded whole and one byte at a time, frames ending at a
 * guard page, limits and header errors, malformed frames, and allocation
 * failures while parsing.  Packing is tested in test_baidu_pack.c.  Every
 * test ends with its pool destroyed (every block back) and no live
 * allocation in its struct mem_failing.
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

/* Frames one recorded stream may hold. */
#define MAX_FRAMES 8
/* brpc clients' correlation ids in the echo_* vectors. */
#define BRPC_CID 0x100000002ull

struct run {
	int final; /* the first result that was not a frame */
	size_t nframes;
	size_t left;	 /* bytes left in the input at the end */
	size_t consumed; /* bytes the frames took */
	char *sum[MAX_FRAMES];
};

typedef void check_fn(const struct baidu_frame *f, size_t idx, void *ctx);

/*
 * Parses (p, n) fed whole or one byte at a time, until a result other
 * than a frame (for bytewise, -EAGAIN only ends the run after the last
 * byte).  check runs on every frame before it is released.
 */
static void run_stream(struct iobuf_pool *pool, const uint8_t *p, size_t n,
		       bool bytewise, struct run *r, check_fn *check, void *ctx)
{
	struct mem_failing mf;
	struct baidu_limits lim;
	struct baidu_frame f;
	struct iobuf in;
	size_t fed = 0, k, before;
	int ret;

	memset(r, 0, sizeof(*r));
	mem_failing_init(&mf, -1);
	baidu_limits_default(&lim);
	lim.mem = &mf.mem;
	iobuf_init(&in, pool);
	for (;;) {
		k = bytewise ? (fed < n) : n - fed;
		if (k) {
			assert_int_equal(iobuf_append(&in, p + fed, k), 0);
			fed += k;
		}
		before = iobuf_len(&in);
		ret = baidu_parse(&in, &f, &lim);
		if (ret > 0) {
			assert_int_equal(before - iobuf_len(&in), ret);
			assert_true(r->nframes < MAX_FRAMES);
			if (check)
				check(&f, r->nframes, ctx);
			r->sum[r->nframes++] = summarize(ret, &f);
			baidu_frame_release(&f);
			assert_int_equal(mf.live, 0);
			continue; /* more frames may already be in */
		}
		assert_int_equal(iobuf_len(&in), before);
		assert_int_equal(mf.live, 0);
		if (ret == -EAGAIN && fed < n)
			continue;
		break;
	}
	r->final = ret;
	r->left = iobuf_len(&in);
	r->consumed = fed - r->left;
	iobuf_destroy(&in);
}

static void run_free(struct run *r)
{
	size_t i;

	for (i = 0; i < r->nframes; i++)
		free(r->sum[i]);
}

/* --- expectations for the recorded streams ------------------------------ */

struct exp_frame {
	bool request;
	const char *service, *method;
	uint64_t cid;
	int32_t compress;
	bool has_log_id;
	uint64_t log_id;
	int32_t error_code;
	const char *error_text;
	const char *data; /* the message's first data_plen bytes */
	size_t data_plen;
	size_t data_len;
	const char *att;
	size_t att_len;
};

struct exp_vector {
	const char *file;
	int final; /* -EAGAIN: clean end */
	size_t nframes;
	struct exp_frame f[2];
};

#define BIN(s)	s, sizeof(s) - 1
#define DATA(s) .data = s, .data_plen = sizeof(s) - 1, .data_len = sizeof(s) - 1
#define ECHO_REQ(...)                                                          \
	{                                                                      \
		.request = true, .service = "example.EchoService",             \
		.method = "Echo", .cid = BRPC_CID, __VA_ARGS__                 \
	}
#define ECHO_RESP(...)                                                         \
	{                                                                      \
		.cid = BRPC_CID, .error_text = "", __VA_ARGS__                 \
	}
#define HAND_REQ(svc, mth, id, ...)                                            \
	{                                                                      \
		.request = true, .service = svc, .method = mth, .cid = id,     \
		__VA_ARGS__                                                    \
	}
#define FAIL_RESP(id, code, text)                                              \
	{                                                                      \
		.cid = id, .error_code = code, .error_text = text              \
	}
#define PARSE_FAIL_TEXT(n)                                                     \
	SRV "[E1003]Fail to parse request=example.EchoRequest, "               \
	    "ContentType=pb, CompressType=none, ChecksumType=none, "           \
	    "request_size=" n

/* One frame then a clean end; no frame and an ending. */
#define ONE(file, ...)                                                         \
	{                                                                      \
		file, -EAGAIN, 1,                                              \
		{                                                              \
			__VA_ARGS__                                            \
		}                                                              \
	}
#define NONE(file, end)                                                        \
	{                                                                      \
		file, end, 0,                                                  \
		{                                                              \
		}                                                              \
	}
#define HELLO DATA("\x0a\x05hello")
#define HI    DATA("\x0a\x02hi")

static const struct exp_vector vectors[] = {
    ONE("echo_plain.c2s", ECHO_REQ(HELLO)),
    ONE("echo_plain.s2c", ECHO_RESP(HELLO)),
    ONE("echo_attachment.c2s", ECHO_REQ(HELLO, .att = "world", .att_len = 5)),
    ONE("echo_attachment.s2c", ECHO_RESP(HELLO, .att = "world", .att_len = 5)),
    ONE("echo_log_id.c2s",
	ECHO_REQ(HELLO, .has_log_id = true, .log_id = 123456789)),
    ONE("echo_log_id.s2c", ECHO_RESP(HELLO)),
    ONE("echo_gzip.c2s",
	ECHO_REQ(.compress = BAIDU_COMPRESS_GZIP, .data = BIN("\x1f\x8b\x08"),
		 .data_len = 29, .att = "raw", .att_len = 3)),
    ONE("echo_gzip.s2c",
	ECHO_RESP(.compress = BAIDU_COMPRESS_GZIP, .data = BIN("\x1f\x8b\x08"),
		  .data_len = 29, .att = "raw", .att_len = 3)),
    ONE("echo_zlib.c2s", ECHO_REQ(.compress = BAIDU_COMPRESS_ZLIB,
				  .data = BIN("\x78\x9c"), .data_len = 17)),
    ONE("echo_zlib.s2c", ECHO_RESP(.compress = BAIDU_COMPRESS_ZLIB,
				   .data = BIN("\x78\x9c"), .data_len = 17)),
    ONE("echo_snappy.c2s",
	ECHO_REQ(.compress = BAIDU_COMPRESS_SNAPPY,
		 .data = BIN("\x20\x18\x0a\x1ehello"), .data_len = 12,
		 .att = "raw", .att_len = 3)),
    ONE("echo_snappy.s2c",
	ECHO_RESP(.compress = BAIDU_COMPRESS_SNAPPY,
		  .data = BIN("\x20\x18\x0a\x1ehello"), .data_len = 12,
		  .att = "raw", .att_len = 3)),
    ONE("echo_fail.c2s", ECHO_REQ(DATA("\012\004fail"))),
    ONE("echo_fail.s2c", FAIL_RESP(BRPC_CID, 4242, SRV "[E4242]asked to fail")),
    ONE("err_no_service.c2s", HAND_REQ("example.NoSuchService", "Echo", 7, HI)),
    ONE("err_no_service.s2c",
	FAIL_RESP(7, RPC_ENOMETHOD,
		  SRV "[E1002]Fail to find method=example.NoSuchService/Echo")),
    ONE("err_no_method.c2s",
	HAND_REQ("example.EchoService", "NoSuchMethod", 7, HI)),
    ONE("err_no_method.s2c", FAIL_RESP(7, RPC_ENOMETHOD,
				       SRV "[E1002]Fail to find method="
					   "example.EchoService/NoSuchMethod")),
    ONE("err_short_service.c2s", HAND_REQ("NoSuch", "Echo", 7, HI)),
    ONE("err_short_service.s2c",
	FAIL_RESP(7, RPC_ENOSERVICE, SRV "[E1001]Fail to find service=NoSuch")),
    ONE("err_bad_body.c2s",
	HAND_REQ("example.EchoService", "Echo", 7, DATA("\xff\xff\xff"))),
    ONE("err_bad_body.s2c", FAIL_RESP(7, RPC_EREQUEST, PARSE_FAIL_TEXT("3"))),
    /*
     * The meta is complete and valid (request with service and method,
     * correlation_id 7); what is missing is the *message*: body_size ==
     * meta_size, no data at all, so EchoRequest.message (required) is
     * absent.  That is the server's EREQUEST after decoding the message,
     * not a framing error.
     */
    ONE("err_missing_required.c2s",
	HAND_REQ("example.EchoService", "Echo", 7, .data_len = 0)),
    ONE("err_missing_required.s2c",
	FAIL_RESP(7, RPC_EREQUEST, PARSE_FAIL_TEXT("0"))),
    NONE("err_bad_magic.c2s", -EPROTO),
    NONE("err_bad_magic.s2c", -EAGAIN),
    NONE("err_meta_larger_than_body.c2s", -EBADMSG),
    NONE("err_meta_larger_than_body.s2c", -EAGAIN),
    {"pipelined_two.c2s",
     -EAGAIN,
     2,
     {HAND_REQ("example.EchoService", "Echo", 1, HI),
      HAND_REQ("example.EchoService", "Echo", 2, DATA("\x0a\x06second"))}},
    {"pipelined_two.s2c",
     -EAGAIN,
     2,
     {{.cid = 1, .error_text = "", HI},
      {.cid = 2, .error_text = "", DATA("\x0a\x06second")}}},
};

static const struct exp_vector *find_expectation(const char *file)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(vectors); i++)
		if (strcmp(vectors[i].file, file) == 0)
			return &vectors[i];
	return NULL;
}

static void check_vector_frame(const struct baidu_frame *f, size_t idx,
			       void *ctx)
{
	const struct exp_vector *v = ctx;
	const struct exp_frame *e;
	const struct baidu_meta *m = &f->meta;
	uint8_t buf[64];

	assert_true(idx < v->nframes);
	e = &v->f[idx];
	assert_int_equal(m->has_request, e->request);
	assert_int_equal(m->has_response, !e->request);
	if (e->request) {
		assert_string_equal(m->service, e->service);
		assert_string_equal(m->method, e->method);
	}
	assert_int_equal(m->correlation_id, e->cid);
	assert_int_equal(m->compress_type, e->compress);
	assert_int_equal(m->has_log_id, e->has_log_id);
	assert_int_equal(m->log_id, e->log_id);
	assert_int_equal(m->error_code, e->error_code);
	if (!e->request)
		assert_string_equal(m->error_text, e->error_text);
	assert_false(f->bad_attachment);
	assert_int_equal(iobuf_len(&f->data), e->data_len);
	assert_true(e->data_plen <= sizeof(buf));
	assert_int_equal(iobuf_copy_out(&f->data, 0, buf, e->data_plen),
			 e->data_plen);
	assert_memory_equal(buf, e->data, e->data_plen);
	buf_equal(&f->attachment, e->att ? e->att : "", e->att_len);
	assert_int_equal(m->attachment_size, (int32_t)e->att_len);
	assert_int_equal(m->content_type, BAIDU_CONTENT_PB);
	assert_int_equal(m->checksum_type, BAIDU_CHECKSUM_NONE);
	if (e->error_code)
		assert_int_equal(f->body_size, f->meta_size);
}

/* Sorted names of the *.c2s and *.s2c files in the vectors folder. */
static size_t list_vectors(char ***names)
{
	char dir[4096];
	struct dirent *de;
	size_t n = 0, cap = 64, len;
	DIR *d;
	char **v = calloc(cap, sizeof(*v));

	snprintf(dir, sizeof(dir), "%s/baidu_std", test_vectors_dir());
	d = opendir(dir);

	if (!d)
		fail_msg("cannot open %s", dir);
	assert_non_null(v);
	while ((de = readdir(d))) {
		len = strlen(de->d_name);
		if (len < 4 || (strcmp(de->d_name + len - 4, ".c2s") &&
				strcmp(de->d_name + len - 4, ".s2c")))
			continue;
		assert_true(n < cap);
		v[n] = strdup(de->d_name);
		assert_non_null(v[n++]);
	}
	closedir(d);
	*names = v;
	return n;
}

static void free_names(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* --- recorded streams ---------------------------------------------------- */

static void test_vectors_decode(void **state)
{
	struct iobuf_pool pool;
	struct run whole, bytes;
	char **names;
	size_t n, i, j, known = 0;

	(void)state;
	n = list_vectors(&names);
	assert_true(n >= ARRAY_SIZE(vectors));
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < n; i++) {
		const struct exp_vector *v = find_expectation(names[i]);
		size_t len;
		uint8_t *p = test_vector_read(names[i], &len);

		run_stream(&pool, p, len, false, &whole,
			   v ? check_vector_frame : NULL, (void *)v);
		run_stream(&pool, p, len, true, &bytes, NULL, NULL);
		if (v) {
			known++;
			if (whole.final != v->final ||
			    whole.nframes != v->nframes)
				fail_msg(
				    "%s: %zu frames then %d, want %zu then "
				    "%d",
				    names[i], whole.nframes, whole.final,
				    v->nframes, v->final);
		} else {
			/* A vector added later: it must at least parse. */
			print_message("note: no expectations for %s\n",
				      names[i]);
			assert_int_equal(whole.final, -EAGAIN);
		}
		if (whole.final == -EAGAIN)
			assert_int_equal(whole.left, 0);
		else
			assert_int_equal(whole.left, len);
		/* Byte at a time: the very same frames and ending. */
		assert_int_equal(bytes.final, whole.final);
		assert_int_equal(bytes.nframes, whole.nframes);
		assert_int_equal(bytes.consumed, whole.consumed);
		for (j = 0; j < whole.nframes; j++)
			assert_string_equal(bytes.sum[j], whole.sum[j]);
		run_free(&whole);
		run_free(&bytes);
		free(p);
	}
	assert_int_equal(known, ARRAY_SIZE(vectors));
	free_names(names, n);
	pool_down(&pool);
}

/* Every split of every stream into two refs gives the same frames: metas
 * straddling refs are flattened. */
static void test_vectors_split_refs(void **state)
{
	struct iobuf_pool pool;
	struct run ref;
	struct baidu_frame f;
	char **names;
	size_t n, i, cut, k;

	(void)state;
	n = list_vectors(&names);
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < n; i++) {
		size_t len;
		uint8_t *p = test_vector_read(names[i], &len);

		run_stream(&pool, p, len, false, &ref, NULL, NULL);
		for (cut = 1; cut < len; cut++) {
			struct iobuf in, tail;
			int ret;

			iobuf_init(&in, &pool);
			iobuf_init(&tail, &pool);
			assert_int_equal(iobuf_append(&in, p, cut), 0);
			assert_int_equal(
			    iobuf_append(&tail, p + cut, len - cut), 0);
			assert_int_equal(iobuf_append_buf(&in, &tail), 0);
			assert_int_equal(iobuf_ref_count(&in), 2);
			for (k = 0;; k++) {
				ret = baidu_parse(&in, &f, NULL);
				if (ret <= 0)
					break;
				char *s = summarize(ret, &f);

				assert_true(k < ref.nframes);
				assert_string_equal(s, ref.sum[k]);
				free(s);
				baidu_frame_release(&f);
			}
			assert_int_equal(k, ref.nframes);
			assert_int_equal(ret, ref.final);
			iobuf_destroy(&in);
			iobuf_destroy(&tail);
		}
		run_free(&ref);
		free(p);
	}
	free_names(names, n);
	pool_down(&pool);
}

static void test_detect(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		int want;
	} cases[] = {
	    {"", 0, 0},		  {"P", 1, 0},
	    {"PR", 2, 0},	  {"PRP", 3, 0},
	    {"PRPC", 4, 1},	  {"PRPC\0\0", 6, 1},
	    {"X", 1, -EPROTO},	  {"PRX", 3, -EPROTO},
	    {"PRPX", 4, -EPROTO}, {"POST /", 6, -EPROTO},
	    {"STRM", 4, -EPROTO},
	};
	struct iobuf_pool pool;
	struct iobuf in;
	size_t i;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		iobuf_init(&in, &pool);
		assert_int_equal(
		    iobuf_append(&in, cases[i].bytes, cases[i].len), 0);
		assert_int_equal(baidu_detect(&in), cases[i].want);
		assert_int_equal(iobuf_len(&in), cases[i].len);
		iobuf_destroy(&in);
	}
	pool_down(&pool);
}

/* --- limits and header errors -------------------------------------------- */

static int parse_header_bytes(struct iobuf_pool *pool, uint32_t body,
			      uint32_t meta, const struct baidu_limits *lim)
{
	uint8_t hdr[BAIDU_HEADER_LEN] = "PRPC";
	struct baidu_frame f;
	struct iobuf in;
	int ret;

	put32(hdr + 4, body);
	put32(hdr + 8, meta);
	iobuf_init(&in, pool);
	assert_int_equal(iobuf_append(&in, hdr, sizeof(hdr)), 0);
	ret = baidu_parse(&in, &f, lim);
	assert_int_equal(iobuf_len(&in), sizeof(hdr));
	iobuf_destroy(&in);
	return ret;
}

static void test_limits(void **state)
{
	struct baidu_limits lim;
	struct iobuf_pool pool;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	baidu_limits_default(&lim);
	assert_int_equal(lim.max_body_size, 64u << 20);
	assert_int_equal(baidu_limits_validate(&lim), 0);

	/* Only the 12 header bytes are present: the verdict comes first. */
	assert_int_equal(parse_header_bytes(&pool, (64u << 20) + 1, 10, NULL),
			 -EMSGSIZE);
	assert_int_equal(parse_header_bytes(&pool, UINT32_MAX, 0, NULL),
			 -EMSGSIZE);
	assert_int_equal(parse_header_bytes(&pool, 64u << 20, 10, NULL),
			 -EAGAIN);
	assert_int_equal(parse_header_bytes(&pool, 4, 10, NULL), -EBADMSG);
	assert_int_equal(parse_header_bytes(&pool, 1000, 1001, NULL), -EBADMSG);
	assert_int_equal(
	    parse_header_bytes(&pool, 4u << 20, (1u << 20) + 1, NULL),
	    -EMSGSIZE);
	assert_int_equal(parse_header_bytes(&pool, 4u << 20, 1u << 20, NULL),
			 -EAGAIN);

	lim.max_body_size = 100;
	lim.max_meta_size = 50;
	assert_int_equal(baidu_limits_validate(&lim), 0);
	assert_int_equal(parse_header_bytes(&pool, 101, 0, &lim), -EMSGSIZE);
	assert_int_equal(parse_header_bytes(&pool, 100, 51, &lim), -EMSGSIZE);
	assert_int_equal(parse_header_bytes(&pool, 100, 50, &lim), -EAGAIN);

	lim.max_meta_size = 101;
	assert_int_equal(baidu_limits_validate(&lim), -EINVAL);
	lim.max_meta_size = 0;
	assert_int_equal(baidu_limits_validate(&lim), -EINVAL);
	lim.max_meta_size = 10;
	lim.max_body_size = 0;
	assert_int_equal(baidu_limits_validate(&lim), -EINVAL);
	lim.max_body_size = (size_t)UINT32_MAX + 1;
	assert_int_equal(baidu_limits_validate(&lim), -EINVAL);
	pool_down(&pool);
}

/* Fewer than 12 bytes: -EAGAIN while the magic matches, -EPROTO at once
 * when it does not, nothing consumed either way. */
static void test_short_header(void **state)
{
	const uint8_t good[] = "PRPC\0\0\0\0\0\0\0";
	struct iobuf_pool pool;
	struct baidu_frame f;
	struct iobuf in;
	size_t n;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (n = 0; n < BAIDU_HEADER_LEN; n++) {
		iobuf_init(&in, &pool);
		assert_int_equal(iobuf_append(&in, good, n), 0);
		assert_int_equal(baidu_parse(&in, &f, NULL), -EAGAIN);
		assert_int_equal(iobuf_len(&in), n);
		iobuf_destroy(&in);
	}
	for (n = 1; n <= BAIDU_MAGIC_LEN; n++) {
		uint8_t bad[BAIDU_MAGIC_LEN] = "PRPC";

		bad[n - 1] ^= 0x20;
		iobuf_init(&in, &pool);
		assert_int_equal(iobuf_append(&in, bad, n), 0);
		assert_int_equal(baidu_parse(&in, &f, NULL), -EPROTO);
		assert_int_equal(iobuf_len(&in), n);
		iobuf_destroy(&in);
	}
	pool_down(&pool);
}

/* --- guard page ---------------------------------------------------------- */

/*
 * Regions of one block followed by a PROT_NONE page: a block's last
 * payload byte is the last readable byte.  The iobuf copies appended bytes
 * into its blocks, so bytes placed at the end of such a block are what the
 * parser reads through the iobuf calls.
 */
static void *guard_alloc(void *ctx, size_t bytes, void **cookie)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *p;

	(void)ctx;
	assert_int_equal(bytes % pg, 0);
	p = mmap(NULL, bytes + pg, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	assert_int_equal(mprotect(p + bytes, pg, PROT_NONE), 0);
	*cookie = NULL;
	return p;
}

static void guard_free(void *ctx, void *base, size_t bytes, void *cookie)
{
	(void)ctx;
	(void)cookie;
	munmap(base, bytes + (size_t)sysconf(_SC_PAGESIZE));
}

/* in = (p, n) as the last n bytes of a guarded block. */
static void place_at_guard(struct iobuf *in, struct iobuf_pool *pool,
			   const uint8_t *p, size_t n)
{
	static uint8_t filler[IOBUF_BLOCK_CAP];
	const void *ptr;
	size_t len;

	iobuf_init(in, pool);
	memset(filler, 0xa5, sizeof(filler));
	assert_int_equal(iobuf_append(in, filler, IOBUF_BLOCK_CAP - n), 0);
	assert_int_equal(iobuf_append(in, p, n), 0);
	iobuf_drop_front(in, IOBUF_BLOCK_CAP - n);
	assert_int_equal(iobuf_ref_count(in), n ? 1 : 0);
	if (n) {
		assert_int_equal(iobuf_ref_at(in, 0, &ptr, &len), 0);
		assert_int_equal(len, n);
		/* The byte after the last one is in the guard page. */
		assert_int_equal(((uintptr_t)ptr + len) %
				     (uintptr_t)sysconf(_SC_PAGESIZE),
				 0);
	}
}

static void test_guard_page_iobuf(void **state)
{
	static const char *const files[] = {
	    "echo_attachment.c2s", "echo_log_id.c2s", "echo_fail.s2c",
	    "err_bad_body.s2c",	   "echo_gzip.s2c",   "pipelined_two.c2s",
	};
	struct iobuf_pool_options opt;
	struct iobuf_pool pool;
	struct baidu_frame f;
	struct iobuf in;
	size_t i, k;

	(void)state;
	iobuf_pool_options_default(&opt);
	opt.region_blocks = 1;
	opt.max_regions = 1;
	opt.region.alloc = guard_alloc;
	opt.region.free = guard_free;
	assert_int_equal(iobuf_pool_init(&pool, &opt), 0);
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		size_t len;
		uint8_t *p = test_vector_read(files[i], &len);
		uint32_t body, meta;
		size_t first;

		assert_int_equal(baidu_parse_header(p, len, NULL, &body, &meta),
				 BAIDU_HEADER_LEN);
		first = BAIDU_HEADER_LEN + body;
		/* Every prefix of the first frame, then all of it. */
		for (k = 0; k <= first; k++) {
			int ret;

			place_at_guard(&in, &pool, p, k);
			ret = baidu_parse(&in, &f, NULL);
			if (k < first) {
				assert_int_equal(ret, -EAGAIN);
				assert_int_equal(iobuf_len(&in), k);
			} else {
				assert_int_equal(ret, (int)first);
				assert_int_equal(iobuf_len(&in), 0);
				baidu_frame_release(&f);
			}
			iobuf_destroy(&in);
		}
		free(p);
	}
	/* A bad magic at the guard, 1 to 4 bytes. */
	for (k = 1; k <= BAIDU_MAGIC_LEN; k++) {
		place_at_guard(&in, &pool, (const uint8_t *)"PRPX", k);
		assert_int_equal(baidu_parse(&in, &f, NULL),
				 k < 4 ? -EAGAIN : -EPROTO);
		assert_int_equal(baidu_detect(&in), k < 4 ? 0 : -EPROTO);
		iobuf_destroy(&in);
	}
	pool_down(&pool);
}

/* The flat entry points with their input's last byte before a guard page:
 * the header check and the meta's varints (protobuf-c's decoder). */
static void test_guard_page_flat(void **state)
{
	static const char *const files[] = {
	    "echo_log_id.c2s",
	    "echo_attachment.s2c",
	    "err_no_method.s2c",
	    "echo_plain.c2s",
	};
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	struct mem_failing mf;
	uint8_t *page, *end;
	size_t i, k;

	(void)state;
	page = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(page != MAP_FAILED);
	assert_int_equal(mprotect(page + pg, pg, PROT_NONE), 0);
	end = page + pg;
	mem_failing_init(&mf, -1);
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		size_t len;
		uint8_t *p = test_vector_read(files[i], &len);
		uint32_t body, meta_len;

		for (k = 0; k <= BAIDU_HEADER_LEN; k++) {
			memcpy(end - k, p, k);
			assert_int_equal(
			    baidu_parse_header(end - k, k, NULL, &body,
					       &meta_len),
			    k < BAIDU_HEADER_LEN ? -EAGAIN : BAIDU_HEADER_LEN);
		}
		/* Every truncation of the meta decodes or fails cleanly;
		 * all of it decodes. */
		for (k = 0; k <= meta_len; k++) {
			struct Brpc__Policy__RpcMeta *pb = NULL;
			struct baidu_meta view;
			int ret;

			memcpy(end - k, p + BAIDU_HEADER_LEN, k);
			ret =
			    baidu_meta_decode(end - k, k, &mf.mem, &pb, &view);
			assert_true(ret == 0 || ret == -EBADMSG);
			if (k == meta_len)
				assert_int_equal(ret, 0);
			if (ret == 0)
				baidu_meta_free(pb, &mf.mem);
			assert_int_equal(mf.live, 0);
		}
		free(p);
	}
	munmap(page, 2 * pg);
}

/* --- malformed frames ---------------------------------------------------- */

/* A frame around raw meta bytes and data. */
static size_t make_frame(uint8_t *buf, const void *meta, size_t meta_len,
			 const void *data, size_t data_len)
{
	memcpy(buf, "PRPC", 4);
	put32(buf + 4, (uint32_t)(meta_len + data_len));
	put32(buf + 8, (uint32_t)meta_len);
	memcpy(buf + BAIDU_HEADER_LEN, meta, meta_len);
	memcpy(buf + BAIDU_HEADER_LEN + meta_len, data, data_len);
	return BAIDU_HEADER_LEN + meta_len + data_len;
}

static void test_bad_meta(void **state)
{
	static const struct {
		const char *what;
		const char *meta;
		size_t len;
	} cases[] = {
	    /* request {service_name "a"} without method_name */
	    {"missing method_name", BIN("\012\003\012\001a")},
	    /* request {method_name "M"} without service_name */
	    {"missing service_name", BIN("\x0a\x03\x12\x01M")},
	    /* chunk_info {stream_id 1} without chunk_id */
	    {"chunk_info without chunk_id", BIN("\x32\x02\x08\x01")},
	    /* stream_settings {} without stream_id */
	    {"stream_settings without stream_id", BIN("\x42\x00")},
	    {"truncated varint", BIN("\x20\x80")},
	    {"length past the end", BIN("\x3a\x05xy")},
	    {"wire type 7", BIN("\x0f")},
	    {"field 0", BIN("\x00\x01")},
	    {"sub-message cut", BIN("\012\005\012\001a")},
	};
	struct iobuf_pool pool;
	struct baidu_frame f;
	struct iobuf in;
	uint8_t buf[64];
	size_t i, n;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		n = make_frame(buf, cases[i].meta, cases[i].len, "xy", 2);
		fill(&in, &pool, (const char *)buf, n);
		if (baidu_parse(&in, &f, NULL) != -EBADMSG)
			fail_msg("%s: not -EBADMSG", cases[i].what);
		assert_int_equal(iobuf_len(&in), n);
		iobuf_destroy(&in);
	}
	/* An empty meta and unknown fields are fine (proto2 skips them). */
	n = make_frame(buf, "", 0, "", 0);
	fill(&in, &pool, (const char *)buf, n);
	assert_int_equal(baidu_parse(&in, &f, NULL), BAIDU_HEADER_LEN);
	assert_false(f.meta.has_request);
	assert_false(f.meta.has_response);
	assert_string_equal(f.meta.service, "");
	baidu_frame_release(&f);
	iobuf_destroy(&in);
	n = make_frame(buf, BIN("\xa0\x06\x01\x20\x05"), "", 0);
	fill(&in, &pool, (const char *)buf, n);
	assert_true(baidu_parse(&in, &f, NULL) > 0);
	assert_int_equal(f.meta.correlation_id, 5);
	baidu_frame_release(&f);
	iobuf_destroy(&in);
	pool_down(&pool);
}

/* attachment_size beyond the data, or negative: flagged, the frame is
 * consumed whole and the next one parses (the stream stays in sync). */
static void test_bad_attachment_size(void **state)
{
	static const struct {
		const char *meta; /* correlation_id 9, attachment_size ... */
		size_t len;
	} cases[] = {
	    {BIN("\x20\x09\x28\x05")}, /* 5 > 4 */
	    {BIN("\x20\x09\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff"
		 "\x01")}, /* -1 */
	};
	struct baidu_resp_meta rs = {.correlation_id = 10};
	struct iobuf_pool pool;
	struct baidu_frame f;
	struct iobuf in;
	uint8_t buf[64];
	size_t i, n;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		n = make_frame(buf, cases[i].meta, cases[i].len, "data", 4);
		fill(&in, &pool, (const char *)buf, n);
		assert_int_equal(baidu_pack_response(&in, &rs, NULL, NULL), 0);
		assert_int_equal(baidu_parse(&in, &f, NULL), (int)n);
		assert_true(f.bad_attachment);
		assert_int_equal(f.meta.correlation_id, 9);
		buf_equal(&f.data, "data", 4);
		assert_true(iobuf_empty(&f.attachment));
		baidu_frame_release(&f);
		assert_true(baidu_parse(&in, &f, NULL) > 0);
		assert_int_equal(f.meta.correlation_id, 10);
		assert_false(f.bad_attachment);
		baidu_frame_release(&f);
		iobuf_destroy(&in);
	}
	/* attachment_size == data: the message is empty. */
	n = make_frame(buf, BIN("\x28\x04"), "data", 4);
	fill(&in, &pool, (const char *)buf, n);
	assert_int_equal(baidu_parse(&in, &f, NULL), (int)n);
	assert_false(f.bad_attachment);
	assert_true(iobuf_empty(&f.data));
	buf_equal(&f.attachment, "data", 4);
	baidu_frame_release(&f);
	iobuf_destroy(&in);
	pool_down(&pool);
}

/* A meta above META_STACK_LEN straddling two refs is flattened into a
 * buffer from `mem`; below, on the stack; in one ref, read in place. */
static void test_large_meta(void **state)
{
	uint8_t auth[3000], *wire;
	struct baidu_req_meta rq = {.service = "s.S", .method = "M"};
	struct mem_failing mf;
	struct baidu_limits lim;
	struct iobuf_pool pool;
	struct iobuf out, in;
	struct baidu_frame f;
	size_t len, cut;

	(void)state;
	pool_up(&pool, NULL, 64, 0);
	for (size_t i = 0; i < sizeof(auth); i++)
		auth[i] = (uint8_t)(i * 7);
	rq.auth.ptr = auth;
	rq.auth.len = sizeof(auth);
	iobuf_init(&out, &pool);
	assert_int_equal(baidu_pack_request(&out, &rq, NULL, NULL), 0);
	len = iobuf_len(&out);
	wire = malloc(len);
	assert_non_null(wire);
	iobuf_copy_out(&out, 0, wire, len);
	iobuf_destroy(&out);
	baidu_limits_default(&lim);
	for (cut = 1; cut < len; cut += 97) {
		mem_failing_init(&mf, -1);
		lim.mem = &mf.mem;
		build_split(&in, &pool, wire, len, cut);
		assert_int_equal(baidu_parse(&in, &f, &lim), (int)len);
		assert_int_equal(f.meta.authentication_data.len, sizeof(auth));
		assert_memory_equal(f.meta.authentication_data.ptr, auth,
				    sizeof(auth));
		baidu_frame_release(&f);
		assert_int_equal(mf.live, 0);
		iobuf_destroy(&in);
	}
	/* Over a tighter meta limit: refused from the header. */
	lim.max_meta_size = 1000;
	build_split(&in, &pool, wire, BAIDU_HEADER_LEN, 4);
	assert_int_equal(baidu_parse(&in, &f, &lim), -EMSGSIZE);
	iobuf_destroy(&in);
	free(wire);
	pool_down(&pool);
}

/* --- allocation failures ------------------------------------------------- */

/*
 * Parses `wire` (split into pieces of `piece` bytes) with allocation k
 * failing, for k = 0, 1, ... until the parse succeeds.  Two allocators are
 * swept: the limits' mem (meta) and the pool's mem (ref arrays).  Every
 * failure must be -ENOMEM with the input untouched and nothing live.
 */
static long sweep_parse(const uint8_t *wire, size_t len, size_t piece,
			bool pool_mem)
{
	struct mem_failing mf, pmf;
	struct baidu_limits lim;
	struct iobuf_pool pool;
	struct baidu_frame f;
	struct iobuf in;
	long k, failures = 0;
	int ret;

	mem_failing_init(&pmf, -1);
	pool_up(&pool, &pmf.mem, 256, 1);
	baidu_limits_default(&lim);
	for (k = 0; k < SWEEP_MAX; k++) {
		build_split(&in, &pool, wire, len, piece);
		mem_failing_init(&mf, pool_mem ? -1 : k);
		lim.mem = &mf.mem;
		if (pool_mem)
			pmf.fail_at = pmf.calls + k;
		ret = baidu_parse(&in, &f, &lim);
		pmf.fail_at = -1;
		if (ret == -ENOMEM) {
			buf_equal(&in, wire, len);
			assert_int_equal(mf.live, 0);
			iobuf_destroy(&in);
			failures++;
			continue;
		}
		assert_int_equal(ret, (int)len);
		baidu_frame_release(&f);
		assert_int_equal(mf.live, 0);
		iobuf_destroy(&in);
		break;
	}
	assert_true(k < SWEEP_MAX);
	pool_down(&pool);
	assert_int_equal(pmf.live, 0);
	return failures;
}

static void test_alloc_failures_parse(void **state)
{
	static const char *const files[] = {
	    "echo_attachment.c2s",
	    "echo_log_id.c2s",
	    "err_bad_body.s2c",
	    "echo_gzip.s2c",
	};
	static const size_t data_len[] = {7, 7, 0, 29};
	uint8_t auth[600], *wire;
	struct baidu_req_meta rq = {.service = "s.S", .method = "M"};
	struct iobuf_pool pool;
	struct iobuf out, msg, att;
	size_t i, len;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		uint8_t *p = test_vector_read(files[i], &len);

		assert_true(sweep_parse(p, len, len, false) > 0);
		assert_true(sweep_parse(p, len, 1, false) > 0);
		/* One byte per ref: a data of 3+ bytes needs a ref array. */
		assert_int_equal(sweep_parse(p, len, 1, true) > 0,
				 data_len[i] > IOBUF_INLINE_REFS);
		free(p);
	}
	/* A large straddling meta: the flattening buffer fails too. */
	memset(auth, 'a', sizeof(auth));
	rq.auth.ptr = auth;
	rq.auth.len = sizeof(auth);
	pool_up(&pool, NULL, 64, 0);
	iobuf_init(&out, &pool);
	fill(&msg, &pool, "message", 7);
	fill(&att, &pool, "attachment", 10);
	assert_int_equal(baidu_pack_request(&out, &rq, &msg, &att), 0);
	len = iobuf_len(&out);
	wire = malloc(len);
	assert_non_null(wire);
	iobuf_copy_out(&out, 0, wire, len);
	iobuf_destroy(&out);
	iobuf_destroy(&msg);
	iobuf_destroy(&att);
	pool_down(&pool);
	assert_true(sweep_parse(wire, len, 100, false) > 0);
	assert_true(sweep_parse(wire, len, 3, true) > 0);
	free(wire);
}

#define T(fn) TEST_BOUNDED(fn)

int main(void)
{
	const char *dir = getenv("TEST_VECTORS_DIR");
	const struct CMUnitTest tests[] = {
	    T(test_vectors_decode),
	    T(test_vectors_split_refs),
	    T(test_detect),
	    T(test_limits),
	    T(test_short_header),
	    T(test_guard_page_iobuf),
	    T(test_guard_page_flat),
	    T(test_bad_meta),
	    T(test_bad_attachment_size),
	    T(test_large_meta),
	    T(test_alloc_failures_parse),
	};

	if (!dir || !*dir) {
		fprintf(stderr, "test_baidu_std: TEST_VECTORS_DIR is not set: "
				"point it at the shared vectors folder "
				"(../shared/vectors; `make unit` does)\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
