/*
 * compress tests: every codec round-trips iobufs of many refs (blocks
 * shared with other buffers); gzip/zlib against plain zlib both ways; the
 * bodies of brpc's recorded echo_gzip/zlib/snappy vectors
 * (TEST_VECTORS_DIR); max_out limits; corrupt and truncated input; refused
 * types; and an allocation-failure sweep over every codec and direction.
 *
 * Every test ends with its pool destroyed (0: every block back) and no
 * live allocation in its struct mem_failing, which is the pool's `mem` and
 * so also zlib's and the snappy scratch's allocator.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "codec/compress.h"
#include "codec/snappy.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"
/* Blocks per pool region: small, so the sweep meets region growth. */
#define REGION_BLOCKS 4
/* Longest piece build_chain() cuts: refs far shorter than a block. */
#define PIECE_MAX 1500
/* Allocation sweep gives up past this many failure points. */
#define SWEEP_MAX 400
/* The bomb: 16 MiB of zeros, decoded with a 1 MiB limit. */
#define BOMB_LEN (16u << 20)
#define BOMB_MAX (1u << 20)
/* brpc's -max_body_size default (64 MiB): the limit a gateway would use. */
#define MAX_BODY (64u << 20)

static const char ECHO_MSG[] = "hellohellohellohellohellohello";
#define ECHO_MSG_LEN (sizeof(ECHO_MSG) - 1)
static const char PREFIX[] = "XYZ";

static const int codecs[] = {COMPRESS_NONE, COMPRESS_SNAPPY, COMPRESS_GZIP,
			     COMPRESS_ZLIB};
#define NCODECS (sizeof(codecs) / sizeof(codecs[0]))

/* --- data ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic across libcs, unlike rand(). */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Random bytes, or (text) words that compress about 3:1. */
static void fill(unsigned char *p, size_t n, bool text, uint64_t seed)
{
	static const char *const words[] = {"echo ",	"request ", "brpc ",
					    "message ", "hello ",   "rdma ",
					    "\n",	"12345",    "}, "};
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
	size_t i = 0, k;
	const char *w;

	while (i < n) {
		if (!text) {
			p[i++] = (unsigned char)(rng_next(&s) >> 56);
			continue;
		}
		w = words[rng_next(&s) % (sizeof(words) / sizeof(words[0]))];
		k = strlen(w) < n - i ? strlen(w) : n - i;
		memcpy(p + i, w, k);
		i += k;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	assert_non_null(p);
	return p;
}

/* --- fixture ------------------------------------------------------------- */

struct fx {
	struct mem_failing mf;
	struct iobuf_pool pool;
	struct iobuf in, out, tmp, a, b;
};

static void fx_init(struct fx *f)
{
	struct iobuf_pool_options opt;

	mem_failing_init(&f->mf, -1);
	iobuf_pool_options_default(&opt);
	opt.mem = &f->mf.mem;
	opt.region_blocks = REGION_BLOCKS;
	assert_int_equal(iobuf_pool_init(&f->pool, &opt), 0);
	iobuf_init(&f->in, &f->pool);
	iobuf_init(&f->out, &f->pool);
	iobuf_init(&f->tmp, &f->pool);
	iobuf_init(&f->a, &f->pool);
	iobuf_init(&f->b, &f->pool);
}

static void fx_fini(struct fx *f)
{
	iobuf_destroy(&f->in);
	iobuf_destroy(&f->out);
	iobuf_destroy(&f->tmp);
	iobuf_destroy(&f->a);
	iobuf_destroy(&f->b);
	assert_int_equal(iobuf_pool_destroy(&f->pool), 0);
	assert_int_equal(f->mf.live, 0);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	fx_init(f);
	alarm(TEST_TIMEOUT_S);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	alarm(0);
	fx_fini(f);
	free(f);
	return 0;
}

/*
 * Appends p[0, n) to dst as many short refs: the bytes go into a and b
 * (two copies, emptied first) and dst gets views of them, alternating so
 * that neighbours never merge into one ref.  a and b keep holding the
 * blocks, so dst's blocks are shared.
 */
static void build_chain(struct fx *f, struct iobuf *dst, const void *p,
			size_t n, uint64_t seed)
{
	uint64_t s = seed + 17;
	size_t off = 0, k;
	int i = 0;

	iobuf_reset(&f->a);
	iobuf_reset(&f->b);
	assert_int_equal(iobuf_append(&f->a, p, n), 0);
	assert_int_equal(iobuf_append(&f->b, p, n), 0);
	for (; off < n; off += k, i++) {
		k = 1 + rng_next(&s) % PIECE_MAX;
		if (k > n - off)
			k = n - off;
		assert_int_equal(
		    iobuf_share(dst, i % 2 ? &f->b : &f->a, off, k), 0);
	}
	if (n > 2 * PIECE_MAX)
		assert_true(iobuf_ref_count(dst) > n / PIECE_MAX);
}

/* A malloc'd copy of buf's bytes from off on. */
static unsigned char *flatten(const struct iobuf *buf, size_t off, size_t *n)
{
	unsigned char *p;

	*n = iobuf_len(buf) - off;
	p = xmalloc(*n);
	assert_int_equal(iobuf_copy_out(buf, off, p, *n), *n);
	return p;
}

static void assert_buf_equal(const struct iobuf *buf, size_t off,
			     const void *want, size_t n)
{
	unsigned char *p;
	size_t len;

	p = flatten(buf, off, &len);
	assert_int_equal(len, n);
	assert_memory_equal(p, want, n);
	free(p);
}

/* out holds exactly PREFIX: what a failed call must leave behind. */
static void assert_prefix_only(const struct iobuf *out)
{
	assert_buf_equal(out, 0, PREFIX, strlen(PREFIX));
}

/* --- round trips --------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = {0,    1,	   100,	  8159,
				       8160, 8161, 70000, 300000};
	struct fx *f = *state;
	unsigned char *src = xmalloc(300000), *enc;
	size_t n, elen;
	int type;

	for (size_t c = 0; c < NCODECS; c++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			for (int text = 0; text < 2; text++) {
				type = codecs[c];
				n = sizes[i];
				fill(src, n, text, i);
				iobuf_reset(&f->in);
				iobuf_reset(&f->out);
				iobuf_reset(&f->tmp);
				build_chain(f, &f->in, src, n, i);

				/* Appended after what out already holds. */
				assert_int_equal(iobuf_append(&f->out, PREFIX,
							      strlen(PREFIX)),
						 0);
				assert_int_equal(
				    compress_encode(type, &f->in, &f->out), 0);
				assert_buf_equal(&f->in, 0, src, n);
				enc = flatten(&f->out, strlen(PREFIX), &elen);
				if (type == COMPRESS_NONE) {
					assert_int_equal(elen, n);
					/* Shared, not copied: same blocks. */
					if (n)
						assert_ptr_equal(
						    iobuf_ref_block(&f->out, 1),
						    iobuf_ref_block(&f->in, 0));
				}
				if (text && n >= 8160 && type != COMPRESS_NONE)
					assert_true(elen < n / 2);

				/* Decode from a chain of its own. */
				iobuf_reset(&f->out);
				build_chain(f, &f->tmp, enc, elen, i + 1);
				assert_int_equal(iobuf_append(&f->out, PREFIX,
							      strlen(PREFIX)),
						 0);
				assert_int_equal(
				    compress_decode(type, &f->tmp, &f->out, n),
				    0);
				assert_buf_equal(&f->out, strlen(PREFIX), src,
						 n);
				/* One byte over the limit is refused. */
				iobuf_reset(&f->out);
				assert_int_equal(iobuf_append(&f->out, PREFIX,
							      strlen(PREFIX)),
						 0);
				if (n)
					assert_int_equal(
					    compress_decode(type, &f->tmp,
							    &f->out, n - 1),
					    -EMSGSIZE);
				assert_prefix_only(&f->out);
				free(enc);
			}
	free(src);
}

/* --- zlib, both ways ----------------------------------------------------- */

/* Inflates p[0, n) with plain zlib (windowBits wbits) into out[0, cap). */
static size_t zlib_inflate_flat(const void *p, size_t n, int wbits,
				unsigned char *out, size_t cap)
{
	z_stream zs = {0};
	size_t got;

	assert_int_equal(inflateInit2(&zs, wbits), Z_OK);
	zs.next_in = (Bytef *)p;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	assert_int_equal(zs.avail_in, 0);
	got = cap - zs.avail_out;
	inflateEnd(&zs);
	return got;
}

/* Deflates with plain zlib; returns a malloc'd stream and its size. */
static unsigned char *zlib_deflate_flat(const void *p, size_t n, int wbits,
					int level, int strategy, size_t *clen)
{
	z_stream zs = {0};
	unsigned char *c;
	uLong cap;

	assert_int_equal(
	    deflateInit2(&zs, level, Z_DEFLATED, wbits, 8, strategy), Z_OK);
	cap = deflateBound(&zs, (uLong)n);
	c = xmalloc(cap);
	zs.next_in = (Bytef *)p;
	zs.avail_in = (uInt)n;
	zs.next_out = c;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*clen = cap - zs.avail_out;
	deflateEnd(&zs);
	return c;
}

static void test_ours_to_zlib(void **state)
{
	struct fx *f = *state;
	size_t n = 100000, elen;
	unsigned char *src = xmalloc(n), *back = xmalloc(n + 1), *enc;
	uLongf blen;

	fill(src, n, true, 3);
	build_chain(f, &f->in, src, n, 3);
	/* zlib container: plain uncompress() reads it. */
	assert_int_equal(compress_encode(COMPRESS_ZLIB, &f->in, &f->out), 0);
	enc = flatten(&f->out, 0, &elen);
	blen = n + 1;
	assert_int_equal(uncompress(back, &blen, enc, elen), Z_OK);
	assert_int_equal(blen, n);
	assert_memory_equal(back, src, n);
	free(enc);
	/* gzip container: RFC 1952 magic, then inflate with gzip bits. */
	iobuf_reset(&f->out);
	assert_int_equal(compress_encode(COMPRESS_GZIP, &f->in, &f->out), 0);
	enc = flatten(&f->out, 0, &elen);
	assert_int_equal(enc[0], 0x1f);
	assert_int_equal(enc[1], 0x8b);
	assert_int_equal(
	    zlib_inflate_flat(enc, elen, 16 + MAX_WBITS, back, n + 1), n);
	assert_memory_equal(back, src, n);
	/* Auto-detecting inflate agrees it is gzip. */
	assert_int_equal(
	    zlib_inflate_flat(enc, elen, 32 + MAX_WBITS, back, n + 1), n);
	free(enc);
	free(back);
	free(src);
}

static void test_zlib_to_ours(void **state)
{
	static const struct {
		int level, strategy;
	} modes[] = {{0, Z_DEFAULT_STRATEGY},
		     {1, Z_DEFAULT_STRATEGY},
		     {9, Z_DEFAULT_STRATEGY},
		     {6, Z_HUFFMAN_ONLY},
		     {6, Z_RLE},
		     {6, Z_FIXED}};
	struct fx *f = *state;
	size_t n = 50000, clen;
	unsigned char *src = xmalloc(n), *c;

	fill(src, n, true, 4);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		for (int gz = 0; gz < 2; gz++) {
			c = zlib_deflate_flat(
			    src, n, gz ? 16 + MAX_WBITS : MAX_WBITS,
			    modes[m].level, modes[m].strategy, &clen);
			iobuf_reset(&f->in);
			iobuf_reset(&f->out);
			build_chain(f, &f->in, c, clen, m);
			assert_int_equal(
			    compress_decode(gz ? COMPRESS_GZIP : COMPRESS_ZLIB,
					    &f->in, &f->out, n),
			    0);
			assert_buf_equal(&f->out, 0, src, n);
			/* The other container is refused. */
			iobuf_reset(&f->out);
			assert_int_equal(
			    compress_decode(gz ? COMPRESS_ZLIB : COMPRESS_GZIP,
					    &f->in, &f->out, n),
			    -EBADMSG);
			assert_int_equal(iobuf_len(&f->out), 0);
			free(c);
		}
	free(src);
}

/* Concatenated gzip members, a gzip header with a name, trailing bytes. */
static void test_gzip_members_and_trailers(void **state)
{
	struct fx *f = *state;
	unsigned char src[3000], both[6000], *c1, *c2, *cat;
	size_t n1 = 1000, n2 = 2000, l1, l2, zl;
	gz_header hdr = {.name = (Bytef *)"echo.bin", .time = 1234567};
	z_stream zs = {0};
	uLong cap;

	fill(src, sizeof(src), true, 5);
	memcpy(both, src, n1);
	memcpy(both + n1, src + n1, n2);
	c1 = zlib_deflate_flat(src, n1, 16 + MAX_WBITS, 6, Z_DEFAULT_STRATEGY,
			       &l1);
	c2 = zlib_deflate_flat(src + n1, n2, 16 + MAX_WBITS, 6,
			       Z_DEFAULT_STRATEGY, &l2);
	cat = xmalloc(l1 + l2 + 1);
	memcpy(cat, c1, l1);
	memcpy(cat + l1, c2, l2);

	/* Two members: RFC 1952 2.2, one after the other. */
	build_chain(f, &f->in, cat, l1 + l2, 1);
	assert_int_equal(
	    compress_decode(COMPRESS_GZIP, &f->in, &f->out, n1 + n2), 0);
	assert_buf_equal(&f->out, 0, both, n1 + n2);
	/* The limit counts across members. */
	iobuf_reset(&f->out);
	assert_int_equal(
	    compress_decode(COMPRESS_GZIP, &f->in, &f->out, n1 + n2 - 1),
	    -EMSGSIZE);
	assert_int_equal(iobuf_len(&f->out), 0);
	/* A member then a stray byte, or half a member. */
	cat[l1] = 0x00;
	iobuf_reset(&f->in);
	build_chain(f, &f->in, cat, l1 + 1, 2);
	assert_int_equal(
	    compress_decode(COMPRESS_GZIP, &f->in, &f->out, 1 << 20), -EBADMSG);
	memcpy(cat + l1, c2, l2);
	iobuf_reset(&f->in);
	build_chain(f, &f->in, cat, l1 + 10, 3);
	assert_int_equal(
	    compress_decode(COMPRESS_GZIP, &f->in, &f->out, 1 << 20), -EBADMSG);
	assert_int_equal(iobuf_len(&f->out), 0);
	free(c1);
	free(c2);

	/* zlib: exactly one stream; a second or a stray byte is refused. */
	c1 = zlib_deflate_flat(src, n1, MAX_WBITS, 6, Z_DEFAULT_STRATEGY, &l1);
	memcpy(cat, c1, l1);
	memcpy(cat + l1, c1, l1);
	for (size_t extra = 0; extra <= l1; extra += l1 ? l1 : 1) {
		iobuf_reset(&f->in);
		build_chain(f, &f->in, cat, l1 + (extra ? extra : 1), 4);
		assert_int_equal(
		    compress_decode(COMPRESS_ZLIB, &f->in, &f->out, 1 << 20),
		    -EBADMSG);
		assert_int_equal(iobuf_len(&f->out), 0);
	}
	free(c1);

	/* A gzip header with a file name and mtime decodes the same. */
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
				      Z_DEFAULT_STRATEGY),
			 Z_OK);
	assert_int_equal(deflateSetHeader(&zs, &hdr), Z_OK);
	cap = deflateBound(&zs, n1) + 64;
	c1 = xmalloc(cap);
	zs.next_in = src;
	zs.avail_in = (uInt)n1;
	zs.next_out = c1;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	zl = cap - zs.avail_out;
	deflateEnd(&zs);
	iobuf_reset(&f->in);
	build_chain(f, &f->in, c1, zl, 5);
	assert_int_equal(compress_decode(COMPRESS_GZIP, &f->in, &f->out, n1),
			 0);
	assert_buf_equal(&f->out, 0, src, n1);
	free(c1);
	free(cat);
}

/* A zlib stream that needs a preset dictionary cannot be decoded here. */
static void test_zlib_dictionary_refused(void **state)
{
	struct fx *f = *state;
	static const char dict[] = "hellohello";
	unsigned char out[256];
	z_stream zs = {0};
	size_t len;

	assert_int_equal(deflateInit(&zs, 6), Z_OK);
	assert_int_equal(
	    deflateSetDictionary(&zs, (const Bytef *)dict, sizeof(dict) - 1),
	    Z_OK);
	zs.next_in = (Bytef *)ECHO_MSG;
	zs.avail_in = ECHO_MSG_LEN;
	zs.next_out = out;
	zs.avail_out = sizeof(out);
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	len = sizeof(out) - zs.avail_out;
	deflateEnd(&zs);
	assert_int_equal(iobuf_append(&f->in, out, len), 0);
	assert_int_equal(compress_decode(COMPRESS_ZLIB, &f->in, &f->out, 1024),
			 -EBADMSG);
	assert_int_equal(iobuf_len(&f->out), 0);
}

/* --- brpc's recorded vectors --------------------------------------------- */

/*
 * Field `field` of the protobuf message p[0, n): a varint's value in *v,
 * or a length-delimited field's bytes in *s / *v.  false when absent.
 */
static bool pb_field(const unsigned char *p, size_t n, uint32_t field,
		     uint64_t *v, const unsigned char **s)
{
	const unsigned char *end = p + n;
	uint64_t key, val;

	while (p < end) {
		key = test_pb_varint(&p, end);
		switch (key & 7) {
		case 0:
			val = test_pb_varint(&p, end);
			if (key >> 3 == field) {
				*v = val;
				return true;
			}
			break;
		case 2:
			val = test_pb_varint(&p, end);
			assert_true(val <= (uint64_t)(end - p));
			if (key >> 3 == field) {
				*v = val;
				*s = p;
				return true;
			}
			p += val;
			break;
		default:
			fail_msg("unexpected wire type %d", (int)(key & 7));
		}
	}
	return false;
}

/*
 * Decodes the message of the recorded frame `name` (compress type from its
 * meta) and checks it is EchoRequest/EchoResponse {message = want_msg} and
 * that the attachment, if any, is "raw".  Our encoder must reproduce the
 * compressed bytes exactly: same zlib, level and container as brpc (a
 * zlib upgrade that changes deflate's output would show up here first).
 */
static void check_vector(struct fx *f, const char *name, int want_type,
			 const char *want_msg)
{
	unsigned char frame[512], *msg;
	const unsigned char *meta, *s = NULL;
	uint32_t body, meta_len;
	uint64_t type = 0, att = 0, slen;
	size_t n, mlen, data;

	n = test_vector_read_into(name, frame, sizeof(frame));
	assert_true(n >= 12);
	assert_memory_equal(frame, "PRPC", 4);
	body = test_be32(frame + 4);
	meta_len = test_be32(frame + 8);
	assert_int_equal(12 + (size_t)body, n);
	assert_true(meta_len <= body);
	meta = frame + 12;
	pb_field(meta, meta_len, 3, &type, &s);
	assert_int_equal(type, want_type);
	pb_field(meta, meta_len, 5, &att, &s);
	data = body - meta_len;
	assert_true(att <= data);
	if (att) {
		assert_int_equal(att, 3);
		assert_memory_equal(meta + meta_len + data - att, "raw", 3);
	}

	iobuf_reset(&f->in);
	iobuf_reset(&f->out);
	iobuf_reset(&f->tmp);
	build_chain(f, &f->in, meta + meta_len, data - att, 1);
	assert_int_equal(compress_decode((int)type, &f->in, &f->out, MAX_BODY),
			 0);
	msg = flatten(&f->out, 0, &mlen);
	assert_true(pb_field(msg, mlen, 1, &slen, &s));
	assert_int_equal(slen, strlen(want_msg));
	assert_memory_equal(s, want_msg, slen);

	assert_int_equal(compress_encode((int)type, &f->out, &f->tmp), 0);
	assert_buf_equal(&f->tmp, 0, meta + meta_len, data - att);
	free(msg);
}

static void test_brpc_vectors(void **state)
{
	struct fx *f = *state;

	/* Request and response carry the same message: the echo. */
	check_vector(f, "echo_gzip.c2s", COMPRESS_GZIP, ECHO_MSG);
	check_vector(f, "echo_gzip.s2c", COMPRESS_GZIP, ECHO_MSG);
	check_vector(f, "echo_zlib.c2s", COMPRESS_ZLIB, ECHO_MSG);
	check_vector(f, "echo_zlib.s2c", COMPRESS_ZLIB, ECHO_MSG);
	check_vector(f, "echo_snappy.c2s", COMPRESS_SNAPPY, ECHO_MSG);
	check_vector(f, "echo_snappy.s2c", COMPRESS_SNAPPY, ECHO_MSG);
	check_vector(f, "echo_plain.c2s", COMPRESS_NONE, "hello");
	check_vector(f, "echo_plain.s2c", COMPRESS_NONE, "hello");
}

/* --- limits and corrupt input -------------------------------------------- */

/* 16 MiB of zeros in ~16 KiB: decoding stops at the limit. */
static void test_zip_bomb(void **state)
{
	struct fx *f = *state;
	unsigned char *zeros = calloc(1, BOMB_LEN), *c;
	struct iobuf_pool_stats st;
	size_t clen;

	assert_non_null(zeros);
	for (int gz = 0; gz < 2; gz++) {
		c = zlib_deflate_flat(zeros, BOMB_LEN,
				      gz ? 16 + MAX_WBITS : MAX_WBITS, 9,
				      Z_DEFAULT_STRATEGY, &clen);
		assert_true(clen < BOMB_LEN / 500);
		iobuf_reset(&f->in);
		iobuf_reset(&f->out);
		assert_int_equal(iobuf_append(&f->in, c, clen), 0);
		assert_int_equal(iobuf_append(&f->out, PREFIX, strlen(PREFIX)),
				 0);
		assert_int_equal(
		    compress_decode(gz ? COMPRESS_GZIP : COMPRESS_ZLIB, &f->in,
				    &f->out, BOMB_MAX),
		    -EMSGSIZE);
		assert_prefix_only(&f->out);
		/* It stopped near the limit: blocks for ~1 MiB, not 16. */
		iobuf_pool_stats(&f->pool, &st);
		assert_true(st.blocks_total * IOBUF_BLOCK_CAP <
			    BOMB_MAX + BOMB_MAX / 4 + clen +
				4 * IOBUF_BLOCK_SIZE);
		free(c);
	}

	/* Snappy states its length up front: refused with no allocation. */
	iobuf_reset(&f->in);
	iobuf_reset(&f->out);
	clen = snappy_max_compressed_length(1 << 16);
	c = xmalloc(clen);
	clen = (size_t)snappy_compress(zeros, 1 << 16, c, clen);
	assert_true(clen < IOBUF_BLOCK_CAP);
	assert_int_equal(iobuf_append(&f->in, c, clen), 0);
	assert_int_equal(iobuf_ref_count(&f->in), 1);
	{
		long calls = f->mf.calls;

		assert_int_equal(compress_decode(COMPRESS_SNAPPY, &f->in,
						 &f->out, (1 << 16) - 1),
				 -EMSGSIZE);
		assert_int_equal(f->mf.calls, calls);
	}
	assert_int_equal(iobuf_len(&f->out), 0);
	free(c);
	free(zeros);
}

/* Decoding `bytes` (as a chain) must fail with `want`, out untouched. */
static void expect_decode(struct fx *f, int type, const void *bytes, size_t n,
			  int want)
{
	iobuf_reset(&f->in);
	iobuf_reset(&f->out);
	build_chain(f, &f->in, bytes, n, n);
	assert_int_equal(iobuf_append(&f->out, PREFIX, strlen(PREFIX)), 0);
	assert_int_equal(compress_decode(type, &f->in, &f->out, 1 << 20), want);
	assert_prefix_only(&f->out);
}

static void test_corrupt(void **state)
{
	struct fx *f = *state;
	unsigned char src[2000], *enc, *bad;
	size_t elen;
	int type;

	fill(src, sizeof(src), true, 8);
	/* Nothing at all is not a stream (but is an empty NONE message). */
	for (size_t c = 1; c < NCODECS; c++)
		expect_decode(f, codecs[c], "", 0, -EBADMSG);
	iobuf_reset(&f->in);
	iobuf_reset(&f->out);
	assert_int_equal(compress_decode(COMPRESS_NONE, &f->in, &f->out, 0), 0);
	assert_int_equal(iobuf_len(&f->out), 0);

	for (size_t c = 1; c < NCODECS; c++) {
		type = codecs[c];
		iobuf_reset(&f->in);
		iobuf_reset(&f->out);
		assert_int_equal(iobuf_append(&f->in, src, sizeof(src)), 0);
		assert_int_equal(compress_encode(type, &f->in, &f->out), 0);
		enc = flatten(&f->out, 0, &elen);
		bad = xmalloc(elen);
		/* Every truncation. */
		for (size_t k = 0; k < elen; k++)
			expect_decode(f, type, enc, k, -EBADMSG);
		/* A changed first byte (magic, header or preamble). */
		memcpy(bad, enc, elen);
		bad[0] ^= 0x40;
		expect_decode(f, type, bad, elen, -EBADMSG);
		if (type != COMPRESS_SNAPPY) {
			/* Each byte of the trailer: CRC-32/Adler-32, ISIZE. */
			for (size_t k = elen - (type == COMPRESS_GZIP ? 8 : 4);
			     k < elen; k++) {
				memcpy(bad, enc, elen);
				bad[k] ^= 0x01;
				expect_decode(f, type, bad, elen, -EBADMSG);
			}
		}
		free(bad);
		free(enc);
	}
	/* Snappy copies out of bounds (stated 6: "ab" then a copy). */
	expect_decode(f, COMPRESS_SNAPPY,
		      (const unsigned char[]){0x06, 0x04, 'a', 'b', 0x01, 0x00},
		      6, -EBADMSG);
	expect_decode(f, COMPRESS_SNAPPY,
		      (const unsigned char[]){0x06, 0x04, 'a', 'b', 0x01, 0x03},
		      6, -EBADMSG);
	expect_decode(f, COMPRESS_SNAPPY,
		      (const unsigned char[]){0x07, 0x04, 'a', 'b', 0x01, 0x02},
		      6, -EBADMSG);
	/* Implausible stated length (4 GiB - 1 from 6 bytes). */
	expect_decode(f, COMPRESS_SNAPPY,
		      (const unsigned char[]){0xff, 0xff, 0xff, 0xff, 0x0f, 0},
		      6, -EBADMSG);
	/* Garbage in the deflate data itself (reserved block type 3). */
	expect_decode(f, COMPRESS_ZLIB,
		      (const unsigned char[]){0x78, 0x9c, 0x07, 0, 0, 0, 0}, 7,
		      -EBADMSG);
}

static void test_unsupported(void **state)
{
	static const int bad_types[] = {COMPRESS_LZ4, 5,       100,
					-1,	      INT_MAX, INT_MIN};
	struct fx *f = *state;

	assert_int_equal(iobuf_append(&f->in, ECHO_MSG, ECHO_MSG_LEN), 0);
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		assert_false(compress_type_supported(bad_types[i]));
		assert_int_equal(compress_encode(bad_types[i], &f->in, &f->out),
				 -EPROTONOSUPPORT);
		assert_int_equal(
		    compress_decode(bad_types[i], &f->in, &f->out, 1 << 20),
		    -EPROTONOSUPPORT);
		assert_int_equal(iobuf_len(&f->out), 0);
	}
	assert_string_equal(compress_type_name(COMPRESS_NONE), "none");
	assert_string_equal(compress_type_name(COMPRESS_SNAPPY), "snappy");
	assert_string_equal(compress_type_name(COMPRESS_GZIP), "gzip");
	assert_string_equal(compress_type_name(COMPRESS_ZLIB), "zlib");
	assert_string_equal(compress_type_name(COMPRESS_LZ4), "lz4");
	assert_string_equal(compress_type_name(5), "unknown");
	assert_string_equal(compress_type_name(-1), "unknown");
	for (size_t c = 0; c < NCODECS; c++) {
		assert_true(compress_type_supported(codecs[c]));
		/* In place is refused. */
		assert_int_equal(compress_encode(codecs[c], &f->in, &f->in),
				 -EINVAL);
		assert_int_equal(
		    compress_decode(codecs[c], &f->in, &f->in, 1 << 20),
		    -EINVAL);
		assert_buf_equal(&f->in, 0, ECHO_MSG, ECHO_MSG_LEN);
	}
}

/* --- allocation failures ------------------------------------------------- */

/*
 * One call with allocation number k (counted from the call) failing, in a
 * fresh pool.  Returns true when the call succeeded (k is past the last
 * allocation it makes).
 */
static bool sweep_once(int type, bool decode, const unsigned char *bytes,
		       size_t n, const unsigned char *plain, size_t plen,
		       long k)
{
	struct fx f;
	int r;

	fx_init(&f);
	build_chain(&f, &f.in, bytes, n, (uint64_t)k);
	assert_int_equal(iobuf_append(&f.out, PREFIX, strlen(PREFIX)), 0);
	f.mf.fail_at = f.mf.calls + k;
	r = decode ? compress_decode(type, &f.in, &f.out, plen)
		   : compress_encode(type, &f.in, &f.out);
	f.mf.fail_at = -1;
	if (r == -ENOMEM) {
		assert_prefix_only(&f.out);
	} else {
		assert_int_equal(r, 0);
		if (!decode) {
			/* Check what was made by decoding it back. */
			iobuf_drop_front(&f.out, strlen(PREFIX));
			assert_int_equal(
			    compress_decode(type, &f.out, &f.tmp, plen), 0);
			assert_buf_equal(&f.tmp, 0, plain, plen);
		} else {
			assert_buf_equal(&f.out, strlen(PREFIX), plain, plen);
		}
	}
	assert_buf_equal(&f.in, 0, bytes, n);
	fx_fini(&f);
	return r == 0;
}

static void test_alloc_sweep(void **state)
{
	static const size_t sizes[] = {100, 70000};
	unsigned char *src = xmalloc(70000), *enc;
	struct fx f;
	size_t n, elen;
	long k;

	(void)state;
	for (size_t c = 0; c < NCODECS; c++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			n = sizes[i];
			fill(src, n, true, i);
			fx_init(&f);
			assert_int_equal(iobuf_append(&f.in, src, n), 0);
			assert_int_equal(
			    compress_encode(codecs[c], &f.in, &f.out), 0);
			enc = flatten(&f.out, 0, &elen);
			fx_fini(&f);
			for (int dec = 0; dec < 2; dec++) {
				for (k = 0; k < SWEEP_MAX; k++)
					if (dec ? sweep_once(codecs[c], true,
							     enc, elen, src, n,
							     k)
						: sweep_once(codecs[c], false,
							     src, n, src, n, k))
						break;
				assert_true(k < SWEEP_MAX);
				print_message(
				    "%-6s %6s %6zu bytes: %ld failure "
				    "points\n",
				    compress_type_name(codecs[c]),
				    dec ? "decode" : "encode", n, k);
				/* Codecs with state or scratch failed some. */
				if (codecs[c] != COMPRESS_NONE || n > 1000)
					assert_true(k > 0);
			}
			free(enc);
		}
	free(src);
}

#define FX(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    FX(test_roundtrip),
	    FX(test_ours_to_zlib),
	    FX(test_zlib_to_ours),
	    FX(test_gzip_members_and_trailers),
	    FX(test_zlib_dictionary_refused),
	    FX(test_brpc_vectors),
	    FX(test_zip_bomb),
	    FX(test_corrupt),
	    FX(test_unsupported),
	    FX(test_alloc_sweep),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
