/*
 * snappy tests: round trips across block boundaries, every malformed-input
 * class, every prefix and random mutations decoded against guard pages,
 * the bodies of brpc's recorded echo_snappy vectors (TEST_VECTORS_DIR), and
 * a cross-check with the reference implementation through python3-snappy
 * in both directions (TEST_PYTHON, default /usr/bin/python3: Debian's
 * python, where python3-snappy is installed).
 *
 * The codec allocates nothing; the buffers here are the test's own and
 * are freed (or unmapped) by each test.
 */
#define _GNU_SOURCE /* mkdtemp */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec/snappy.h"

/* Seconds any one test may take before SIGALRM ends the run. */
#define TEST_TIMEOUT_S 60

#include "testutil.h"
/* Seconds python3 may take for the whole cross-check. */
#define PYTHON_TIMEOUT_S 30
/* Largest input the tests compress: 1 MiB. */
#define BIG (1024 * 1024)
/* Random mutations of valid streams decoded per seed stream. */
#define MUTATIONS 3000
/* Debian's python3, where python3-snappy lives (not a pyenv shim's). */
#define PYTHON_DEFAULT "/usr/bin/python3"

extern char **environ;

static const char ECHO_MSG[] = "\n\x1e"
			       "hellohellohellohellohellohello";
#define ECHO_MSG_LEN (sizeof(ECHO_MSG) - 1)

/* --- data ---------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic across libcs, unlike rand(). */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

enum kind { RANDOM, ZEROS, TEXT, PERIODIC, NKINDS };

static const char *const kind_name[] = {"random", "zeros", "text", "periodic"};

/* Fills p per kind: random bytes, zeros, word salad, or short periods. */
static void fill(unsigned char *p, size_t n, enum kind k, uint64_t seed)
{
	static const char *const words[] = {
	    "echo ",   "service ", "request ", "response ", "brpc ",
	    "rdma ",   "buffer ",  "message ", "hello ",    "attachment ",
	    "snappy ", "\n",	   "{\"id\":", "12345",	    "}, "};
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
	size_t i = 0, period = 1 + seed % 7, w, k2;

	switch (k) {
	case RANDOM:
		for (; i < n; i++)
			p[i] = (unsigned char)(rng_next(&s) >> 56);
		break;
	case ZEROS:
		memset(p, 0, n);
		break;
	case TEXT:
		while (i < n) {
			w = rng_next(&s) % (sizeof(words) / sizeof(words[0]));
			k2 = strlen(words[w]);
			if (k2 > n - i)
				k2 = n - i;
			memcpy(p + i, words[w], k2);
			i += k2;
			/* Now and then a random byte breaks a match. */
			if (i < n && rng_next(&s) % 16 == 0)
				p[i++] = (unsigned char)rng_next(&s);
		}
		break;
	default:
		for (; i < n; i++)
			p[i] = (unsigned char)('a' + i % period);
		break;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	assert_non_null(p);
	return p;
}

/* Compresses src into a fresh buffer; returns it, its size in *clen. */
static unsigned char *compress_new(const void *src, size_t n, size_t *clen)
{
	size_t cap = snappy_max_compressed_length(n);
	unsigned char *c = xmalloc(cap);
	ssize_t r = snappy_compress(src, n, c, cap);

	assert_true(r > 0);
	assert_true((size_t)r <= cap);
	*clen = (size_t)r;
	return c;
}

/* --- guard pages --------------------------------------------------------- */

struct guarded {
	unsigned char *map;
	size_t maplen;
};

/* n bytes that end right where a PROT_NONE page starts. */
static unsigned char *guard_alloc(struct guarded *g, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t data = (n + pg - 1) / pg * pg;

	g->maplen = data + pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + data, pg, PROT_NONE), 0);
	return g->map + data - n;
}

static void guard_free(struct guarded *g)
{
	assert_int_equal(munmap(g->map, g->maplen), 0);
}

/*
 * Decodes src[0, n) from guarded memory into a guarded buffer of exactly
 * the stated length (or cap, if smaller): any read past the input or write
 * past the output faults.
 */
static ssize_t decode_guarded(const unsigned char *src, size_t n,
			      size_t cap_max, unsigned char **copy_out)
{
	struct guarded gi, go;
	unsigned char *in, *out;
	size_t want = 0, cap;
	ssize_t r;

	in = guard_alloc(&gi, n);
	memcpy(in, src, n);
	if (snappy_uncompressed_length(in, n, &want) == 0 && want < cap_max)
		cap = want;
	else
		cap = cap_max;
	out = guard_alloc(&go, cap);
	r = snappy_decompress(in, n, out, cap);
	if (copy_out && r >= 0) {
		*copy_out = xmalloc((size_t)r);
		memcpy(*copy_out, out, (size_t)r);
	}
	guard_free(&go);
	guard_free(&gi);
	return r;
}

/*
 * Parses a preamble of n bytes followed by the fewest body bytes that make
 * its length plausible (3 per 64 stated), mapped but never touched; one
 * body byte fewer must be refused.
 */
static int read_len_padded(const unsigned char *pre, int n, size_t *len)
{
	size_t v = 0, body, maplen;
	unsigned char *map;
	int r;

	for (int i = n - 1; i >= 0; i--)
		v = v << 7 | (pre[i] & 0x7f);
	body = 3 * (v / 64);
	maplen = (size_t)n + body;
	map = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(map != MAP_FAILED);
	memcpy(map, pre, (size_t)n);
	r = snappy_uncompressed_length(map, maplen, len);
	if (body)
		assert_int_equal(
		    snappy_uncompressed_length(map, maplen - 1, len), -EBADMSG);
	assert_int_equal(munmap(map, maplen), 0);
	return r;
}

/* --- round trips --------------------------------------------------------- */

static void roundtrip(const unsigned char *src, size_t n)
{
	unsigned char *c, *d;
	size_t clen, len;

	c = compress_new(src, n, &clen);
	assert_int_equal(snappy_uncompressed_length(c, clen, &len), 0);
	assert_int_equal(len, n);
	d = xmalloc(n);
	assert_int_equal(snappy_decompress(c, clen, d, n), (ssize_t)n);
	assert_memory_equal(d, src, n);
	/* One byte short of room is refused before anything is written. */
	if (n)
		assert_int_equal(snappy_decompress(c, clen, d, n - 1),
				 -EMSGSIZE);
	free(d);
	free(c);
}

static void test_roundtrip_sizes(void **state)
{
	static const size_t sizes[] = {
	    0,	   1,	  2,	 3,	 4,	 5,	 6,	7,     8,
	    11,	   12,	  15,	 16,	 17,	 31,	 32,	33,    59,
	    60,	   61,	  63,	 64,	 65,	 66,	 67,	68,    255,
	    256,   257,	  1000,	 4095,	 4096,	 8160,	 8161,	65535, 65536,
	    65537, 65540, 98304, 131071, 131072, 131073, 200003};
	unsigned char *src = xmalloc(200003);

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int k = 0; k < NKINDS; k++) {
			fill(src, sizes[i], (enum kind)k, i + 1);
			roundtrip(src, sizes[i]);
		}
	free(src);
}

static void test_roundtrip_big(void **state)
{
	unsigned char *src = xmalloc(BIG), *c;
	size_t clen;

	(void)state;
	for (int k = 0; k < NKINDS; k++) {
		fill(src, BIG, (enum kind)k, 99);
		roundtrip(src, BIG);
		c = compress_new(src, BIG, &clen);
		print_message("1 MiB %-8s -> %zu bytes\n", kind_name[k], clen);
		if (k == RANDOM)
			/* Incompressible: a few tag bytes per block. */
			assert_true(clen <= BIG + BIG / 1000);
		else
			assert_true(clen < BIG / 2);
		if (k == ZEROS)
			/* 64 bytes per 3-byte copy, block after block. */
			assert_true(clen < BIG / 20);
		free(c);
	}
	free(src);
}

/* Matches longer than one copy element, at every length near 64. */
static void test_long_matches(void **state)
{
	unsigned char src[2048];

	(void)state;
	for (size_t len = 60; len < 140; len++) {
		/* 16 random bytes, then a run repeating them, then noise. */
		fill(src, sizeof(src), RANDOM, len);
		for (size_t i = 16; i < 16 + len; i++)
			src[i] = src[i - 16];
		roundtrip(src, sizeof(src));
	}
}

/* brpc's echo body, byte for byte: literal of 7, copy-2 of 25 at 5. */
static void test_brpc_bytes(void **state)
{
	static const unsigned char want[] = {
	    0x20, 0x18, 0x0a, 0x1e, 'h', 'e', 'l', 'l', 'o', 0x62, 0x05, 0x00};
	unsigned char c[128];

	(void)state;
	assert_int_equal(snappy_compress(ECHO_MSG, ECHO_MSG_LEN, c, sizeof(c)),
			 (ssize_t)sizeof(want));
	assert_memory_equal(c, want, sizeof(want));
}

static void test_api_limits(void **state)
{
	unsigned char buf[64], src[16] = {0};
	size_t len;

	(void)state;
	assert_int_equal(snappy_max_compressed_length(0), 32);
	assert_int_equal(snappy_max_compressed_length(600), 32 + 600 + 100);
	assert_int_equal(snappy_max_compressed_length(SNAPPY_MAX_LENGTH),
			 32 + (size_t)SNAPPY_MAX_LENGTH +
			     SNAPPY_MAX_LENGTH / 6);
	assert_int_equal(
	    snappy_max_compressed_length((size_t)SNAPPY_MAX_LENGTH + 1), 0);
	/* Checked before the input is read. */
	assert_int_equal(
	    snappy_compress(src, (size_t)SNAPPY_MAX_LENGTH + 1, buf, SIZE_MAX),
	    -EMSGSIZE);
	assert_int_equal(snappy_compress(src, sizeof(src), buf, 32 + 16 + 1),
			 -ENOBUFS);
	assert_true(snappy_compress(src, sizeof(src), buf, 32 + 16 + 2) > 0);
	assert_int_equal(
	    snappy_compress_block(src, SNAPPY_BLOCK_SIZE + 1, buf, SIZE_MAX),
	    -EINVAL);
	assert_int_equal(snappy_compress_block(src, 16, buf, 40), -ENOBUFS);

	/* Preambles at each varint length boundary. */
	static const struct {
		size_t v;
		int n;
	} pre[] = {{0, 1},	   {127, 1},	   {128, 2},	 {16383, 2},
		   {16384, 3},	   {2097151, 3},   {2097152, 4}, {268435455, 4},
		   {268435456, 5}, {UINT32_MAX, 5}};
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
		assert_int_equal(snappy_put_preamble(buf, pre[i].v), pre[i].n);
		/* Parse with room for the largest output it could state. */
		assert_int_equal(read_len_padded(buf, pre[i].n, &len), 0);
		assert_int_equal(len, pre[i].v);
	}
	assert_int_equal(snappy_put_preamble(buf, (size_t)UINT32_MAX + 1),
			 -EMSGSIZE);
}

/* --- malformed input ----------------------------------------------------- */

struct bad {
	const char *what;
	unsigned char in[16];
	size_t n;
	ssize_t want; /* -EBADMSG, -EMSGSIZE, or the length for good ones */
};

#define B(...) {__VA_ARGS__}, sizeof((unsigned char[]){__VA_ARGS__})

static const struct bad bad_inputs[] = {
    {"empty input", {0}, 0, -EBADMSG},
    {"truncated varint", B(0x80), -EBADMSG},
    {"truncated varint, 4 bytes", B(0xff, 0xff, 0xff, 0xff), -EBADMSG},
    {"varint over 5 bytes", B(0x80, 0x80, 0x80, 0x80, 0x80, 0x00), -EBADMSG},
    {"varint above 32 bits", B(0xff, 0xff, 0xff, 0xff, 0x1f), -EBADMSG},
    {"length beyond what the body can hold", B(0x40, 0x00, 'a'), -EBADMSG},
    {"literal past the input's end", B(0x05, 0x10, 'a', 'b'), -EBADMSG},
    {"literal length byte missing", B(0x05, 60 << 2), -EBADMSG},
    {"literal length bytes missing", B(0x05, 63 << 2, 0, 0), -EBADMSG},
    {"literal 4-byte length past end",
     B(0x05, 63 << 2, 0xff, 0xff, 0xff, 0xff, 'a'), -EBADMSG},
    {"literal beyond stated length", B(0x02, 0x08, 'a', 'b', 'c'), -EBADMSG},
    {"copy-1 offset byte missing", B(0x06, 0x04, 'a', 'b', 0x01), -EBADMSG},
    {"copy-2 offset bytes missing", B(0x06, 0x04, 'a', 'b', 0x0e, 0x01),
     -EBADMSG},
    {"copy-4 offset bytes missing",
     B(0x06, 0x04, 'a', 'b', 0x0f, 0x01, 0x00, 0x00), -EBADMSG},
    {"copy-1 offset 0", B(0x06, 0x04, 'a', 'b', 0x01, 0x00), -EBADMSG},
    {"copy-2 offset 0", B(0x06, 0x04, 'a', 'b', 0x0e, 0x00, 0x00), -EBADMSG},
    {"copy-4 offset 0", B(0x06, 0x04, 'a', 'b', 0x0f, 0x00, 0x00, 0x00, 0x00),
     -EBADMSG},
    {"copy-1 before output start", B(0x06, 0x04, 'a', 'b', 0x01, 0x03),
     -EBADMSG},
    {"copy-2 before output start", B(0x06, 0x04, 'a', 'b', 0x0e, 0x03, 0x00),
     -EBADMSG},
    {"copy-4 before output start",
     B(0x06, 0x04, 'a', 'b', 0x0f, 0x00, 0x00, 0x00, 0x01), -EBADMSG},
    {"copy-1 high offset bits", B(0x06, 0x04, 'a', 'b', 0x21, 0x02), -EBADMSG},
    {"copy as the first element", B(0x04, 0x01, 0x01), -EBADMSG},
    {"copy beyond stated length", B(0x05, 0x04, 'a', 'b', 0x01, 0x02),
     -EBADMSG},
    {"input ends before stated length", B(0x07, 0x04, 'a', 'b', 0x01, 0x02),
     -EBADMSG},
    {"element after stated length reached", B(0x02, 0x04, 'a', 'b', 0x00, 'c'),
     -EBADMSG},
    {"stated 0 with a body", B(0x00, 0x00, 'a'), -EBADMSG},
    /* Good ones of the same shapes, so the checks are not off by one. */
    {"stated 0", B(0x00), 0},
    {"copy-1 from the output's start", B(0x06, 0x04, 'a', 'b', 0x01, 0x02), 6},
    {"copy-2 overlapping (run)", B(0x0b, 0x00, 'a', 0x26, 0x01, 0x00), 11},
    {"copy-4 from the start",
     B(0x06, 0x04, 'a', 'b', 0x0f, 0x02, 0x00, 0x00, 0x00), 6},
    {"literal with 1 length byte", B(0x03, 60 << 2, 0x02, 'a', 'b', 'c'), 3},
    {"literal with 4 length bytes",
     B(0x02, 63 << 2, 0x01, 0x00, 0x00, 0x00, 'a', 'b'), 2},
};

static void test_malformed(void **state)
{
	unsigned char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]);
	     i++) {
		const struct bad *b = &bad_inputs[i];
		ssize_t r = decode_guarded(b->in, b->n, sizeof(out), NULL);

		if (r != b->want)
			fail_msg("%s: got %zd, want %zd", b->what, r, b->want);
		/* Same answer from unguarded memory with a roomy buffer. */
		assert_int_equal(
		    snappy_decompress(b->in, b->n, out, sizeof(out)), b->want);
	}
	/* The run case decodes to eleven 'a's. */
	for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++)
		if (strstr(bad_inputs[i].what, "(run)")) {
			assert_int_equal(snappy_decompress(bad_inputs[i].in,
							   bad_inputs[i].n, out,
							   sizeof(out)),
					 11);
			assert_memory_equal(out, "aaaaaaaaaaa", 11);
		}
}

/* A plausible stated length above the caller's cap: -EMSGSIZE, no write. */
static void test_length_above_cap(void **state)
{
	unsigned char *src = xmalloc(BIG), *c, out[1000];
	size_t clen, len;

	(void)state;
	fill(src, BIG, ZEROS, 0);
	c = compress_new(src, BIG, &clen);
	assert_int_equal(snappy_uncompressed_length(c, clen, &len), 0);
	assert_int_equal(len, BIG);
	memset(out, 0x5a, sizeof(out));
	assert_int_equal(snappy_decompress(c, clen, out, sizeof(out)),
			 -EMSGSIZE);
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(out[i], 0x5a);
	assert_int_equal(snappy_decompress(c, clen, NULL, 0), -EMSGSIZE);
	/* A huge length with a short body is not even plausible. */
	c[0] = 0xff;
	c[1] = 0xff;
	c[2] = 0xff;
	c[3] = 0xff;
	c[4] = 0x0f;
	assert_int_equal(snappy_decompress(c, 64, out, sizeof(out)), -EBADMSG);
	free(c);
	free(src);
}

/* Every proper prefix of a valid stream is refused, reading nothing past. */
static void test_prefixes_guarded(void **state)
{
	unsigned char src[3000], *c, *d;
	size_t clen;

	(void)state;
	for (int k = 0; k < NKINDS; k++) {
		fill(src, sizeof(src), (enum kind)k, 7);
		c = compress_new(src, sizeof(src), &clen);
		for (size_t n = 0; n < clen; n++)
			assert_int_equal(decode_guarded(c, n, 4096, NULL),
					 -EBADMSG);
		d = NULL;
		assert_int_equal(decode_guarded(c, clen, 4096, &d),
				 (ssize_t)sizeof(src));
		assert_memory_equal(d, src, sizeof(src));
		free(d);
		free(c);
	}
}

/* Mutated streams: any answer, but no fault and no out-of-bounds access. */
static void test_mutations_guarded(void **state)
{
	unsigned char src[1500], *c, *m, *d;
	uint64_t s = 11;
	size_t clen, pos;
	ssize_t r;
	int ok = 0, bad = 0;

	(void)state;
	for (int k = 0; k < NKINDS; k++) {
		fill(src, sizeof(src), (enum kind)k, 9);
		c = compress_new(src, sizeof(src), &clen);
		m = xmalloc(clen);
		for (int i = 0; i < MUTATIONS; i++) {
			memcpy(m, c, clen);
			for (int j = 0; j < 1 + (int)(rng_next(&s) % 3); j++) {
				pos = rng_next(&s) % clen;
				m[pos] ^=
				    (unsigned char)(1 + rng_next(&s) % 255);
			}
			d = NULL;
			r = decode_guarded(m, clen, 1 << 16, &d);
			assert_true(r >= 0 || r == -EBADMSG || r == -EMSGSIZE);
			if (r >= 0)
				ok++;
			else
				bad++;
			free(d);
		}
		free(m);
		free(c);
	}
	print_message("mutations: %d decoded, %d refused\n", ok, bad);
	assert_true(bad > 0);
}

/* --- brpc's recorded vectors --------------------------------------------- */

/*
 * The value of varint field `field` of the protobuf message meta[0, n), or
 * `dflt` when absent.  Skips the other wire types.
 */
static uint64_t pb_field(const unsigned char *meta, size_t n, uint32_t field,
			 uint64_t dflt)
{
	const unsigned char *p = meta, *end = meta + n;
	uint64_t key, v;

	while (p < end) {
		key = test_pb_varint(&p, end);
		switch (key & 7) {
		case 0:
			v = test_pb_varint(&p, end);
			if (key >> 3 == field)
				return v;
			break;
		case 2:
			v = test_pb_varint(&p, end);
			assert_true(v <= (uint64_t)(end - p));
			p += v;
			break;
		default:
			fail_msg("unexpected wire type %d", (int)(key & 7));
		}
	}
	return dflt;
}

static void check_snappy_vector(const char *name)
{
	unsigned char frame[512], out[256], c[128];
	uint32_t body, meta;
	size_t n, att, msg;
	const unsigned char *m;

	n = test_vector_read_into(name, frame, sizeof(frame));
	assert_true(n >= 12);
	assert_memory_equal(frame, "PRPC", 4);
	body = test_be32(frame + 4);
	meta = test_be32(frame + 8);
	assert_int_equal(12 + (size_t)body, n);
	assert_true(meta <= body);
	m = frame + 12;
	assert_int_equal(pb_field(m, meta, 3, 0), 1); /* compress_type */
	att = pb_field(m, meta, 5, 0);		      /* attachment_size */
	assert_int_equal(att, 3);
	msg = body - meta - att;
	assert_memory_equal(m + meta + msg, "raw", 3);

	assert_int_equal(snappy_decompress(m + meta, msg, out, sizeof(out)),
			 (ssize_t)ECHO_MSG_LEN);
	assert_memory_equal(out, ECHO_MSG, ECHO_MSG_LEN);
	/* Ours compresses the message to the very same bytes. */
	assert_int_equal(snappy_compress(out, ECHO_MSG_LEN, c, sizeof(c)),
			 (ssize_t)msg);
	assert_memory_equal(c, m + meta, msg);
}

static void test_brpc_vectors(void **state)
{
	(void)state;
	check_snappy_vector("echo_snappy.c2s");
	check_snappy_vector("echo_snappy.s2c");
}

/* --- cross-check with the reference implementation ---------------------- */

/*
 * For i in 0..n-1: py<i> = snappy.compress(in<i>) and back<i> =
 * snappy.uncompress(our<i>), both the reference's raw block format.
 */
static const char PY_SCRIPT[] =
    "import sys, snappy\n"
    "d, n = sys.argv[1], int(sys.argv[2])\n"
    "def rd(p):\n"
    "    with open(p, 'rb') as f: return f.read()\n"
    "def wr(p, b):\n"
    "    with open(p, 'wb') as f: f.write(b)\n"
    "for i in range(n):\n"
    "    wr('%s/py%d' % (d, i), snappy.compress(rd('%s/in%d' % (d, i))))\n"
    "    wr('%s/back%d' % (d, i), snappy.uncompress(rd('%s/our%d' % (d, "
    "i))))\n";

#define XSIZES 9
#define XFILES (XSIZES * 2)

static const size_t xsizes[XSIZES] = {0,     1,	    100,    4096, 65535,
				      65536, 65537, 300000, BIG};

static void write_file(const char *dir, const char *name, int i, const void *p,
		       size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%d", dir, name, i);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Reads dir/name<i> into a fresh buffer. */
static unsigned char *read_file(const char *dir, const char *name, int i,
				size_t *n)
{
	char path[4096];
	unsigned char *p;
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s%d", dir, name, i);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("python left no %s: %s", path, strerror(errno));
	assert_int_equal(fstat(fileno(f), &st), 0);
	*n = (size_t)st.st_size;
	p = xmalloc(*n);
	assert_int_equal(fread(p, 1, *n, f), *n);
	fclose(f);
	return p;
}

static void remove_files(const char *dir)
{
	static const char *const names[] = {"in", "our", "py", "back"};
	char path[4096];

	for (int i = 0; i < XFILES; i++)
		for (size_t k = 0; k < 4; k++) {
			snprintf(path, sizeof(path), "%s/%s%d", dir, names[k],
				 i);
			unlink(path);
		}
	rmdir(dir);
}

/* Runs python on PY_SCRIPT: its wait status, or -1 if it had to be killed
 * after PYTHON_TIMEOUT_S. */
static int run_python(const char *dir)
{
	const char *py = getenv("TEST_PYTHON");
	char nfiles[16];
	char *argv[6];
	struct timespec nap = {0, 20 * 1000 * 1000};
	int status = -1;
	pid_t pid, w;

	if (!py || !*py)
		py = PYTHON_DEFAULT;
	if (access(py, X_OK))
		fail_msg("%s is not executable (%s): install python3 and "
			 "python3-snappy, or name a python with the snappy "
			 "module in TEST_PYTHON",
			 py, strerror(errno));
	snprintf(nfiles, sizeof(nfiles), "%d", XFILES);
	argv[0] = (char *)py;
	argv[1] = (char *)"-c";
	argv[2] = (char *)PY_SCRIPT;
	argv[3] = (char *)dir;
	argv[4] = nfiles;
	argv[5] = NULL;
	assert_int_equal(posix_spawn(&pid, py, NULL, NULL, argv, environ), 0);
	for (int t = 0; t < PYTHON_TIMEOUT_S * 50; t++) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		assert_int_equal(w, 0);
		nanosleep(&nap, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

static void test_python_crosscheck(void **state)
{
	char dir[] = "/tmp/rpcgate-snappy-XXXXXX";
	unsigned char *src[XFILES], *c, *p, *d;
	size_t n[XFILES], clen, plen, dlen, sum_ours = 0, sum_ref = 0;
	int status;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (int i = 0; i < XFILES; i++) {
		n[i] = xsizes[i / 2];
		src[i] = xmalloc(n[i]);
		fill(src[i], n[i], i % 2 ? TEXT : RANDOM, (uint64_t)i + 100);
		write_file(dir, "in", i, src[i], n[i]);
		c = compress_new(src[i], n[i], &clen);
		write_file(dir, "our", i, c, clen);
		free(c);
	}
	status = run_python(dir);
	if (status == -1) {
		remove_files(dir);
		fail_msg("python did not finish within %d s", PYTHON_TIMEOUT_S);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		remove_files(dir);
		fail_msg(
		    "python's snappy failed (status %#x): is python3-snappy "
		    "installed for it?  TEST_PYTHON names the python "
		    "(default " PYTHON_DEFAULT ")",
		    status);
	}
	for (int i = 0; i < XFILES; i++) {
		/* Ours, decompressed by the reference. */
		d = read_file(dir, "back", i, &dlen);
		assert_int_equal(dlen, n[i]);
		assert_memory_equal(d, src[i], n[i]);
		free(d);
		/* The reference's, decompressed by ours. */
		p = read_file(dir, "py", i, &plen);
		d = xmalloc(n[i]);
		assert_int_equal(snappy_decompress(p, plen, d, n[i]),
				 (ssize_t)n[i]);
		assert_memory_equal(d, src[i], n[i]);
		c = compress_new(src[i], n[i], &clen);
		print_message("%7zu bytes %-6s: ours %7zu, reference %7zu\n",
			      n[i], i % 2 ? "text" : "random", clen, plen);
		sum_ours += clen;
		sum_ref += plen;
		free(c);
		free(d);
		free(p);
		free(src[i]);
	}
	remove_files(dir);
	/* A sanity bound on the matcher, not a contract: within 10%. */
	assert_true(sum_ours <= sum_ref + sum_ref / 10);
}

#define T(f) TEST_BOUNDED(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_roundtrip_sizes),   T(test_roundtrip_big),
	    T(test_long_matches),      T(test_brpc_bytes),
	    T(test_api_limits),	       T(test_malformed),
	    T(test_length_above_cap),  T(test_prefixes_guarded),
	    T(test_mutations_guarded), T(test_brpc_vectors),
	    T(test_python_crosscheck),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
