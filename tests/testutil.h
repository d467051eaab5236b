/*
 * testutil: what several cmocka test programs share.  Header only.
 *
 * Include it after <cmocka.h> and after defining TEST_TIMEOUT_S, the
 * seconds one test may run before SIGALRM ends the program (a hung test
 * must fail, not stall the tier).
 *
 *   TEST_BOUNDED(fn)        a test run under that alarm
 *   test_vector_read(name)  a file of ../shared/vectors/baidu_std, found
 *                           through TEST_VECTORS_DIR (`make` sets it)
 *   test_desc_path(name)    a descriptor set the build made for the tests
 *                           (build/gen/test, TEST_DESC_DIR)
 */
#ifndef RPCGATE_TESTS_TESTUTIL_H
#define RPCGATE_TESTS_TESTUTIL_H

#ifndef TEST_TIMEOUT_S
#error "define TEST_TIMEOUT_S before including testutil.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int test_alarm_arm(void **state)
{
	(void)state;
	alarm(TEST_TIMEOUT_S);
	return 0;
}

static inline int test_alarm_disarm(void **state)
{
	(void)state;
	alarm(0);
	return 0;
}

#define TEST_BOUNDED(fn)                                                      \
	cmocka_unit_test_setup_teardown(fn, test_alarm_arm, test_alarm_disarm)

/* The vectors folder; fails the test with the fix when it is not set. */
static inline const char *test_vectors_dir(void)
{
	const char *dir = getenv("TEST_VECTORS_DIR");

	if (!dir || !*dir)
		fail_msg("TEST_VECTORS_DIR is not set: point it at the shared "
			 "vectors folder (../shared/vectors; `make unit` does)");
	return dir;
}

/* Reads the file at path whole into a malloc'd buffer (free it), with a
 * NUL after its bytes. */
static inline uint8_t *test_file_read(const char *path, size_t *len)
{
	uint8_t *buf;
	FILE *fp;
	long n;

	fp = fopen(path, "rb");
	if (!fp)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	buf[n] = 0;
	*len = (size_t)n;
	return buf;
}

/* Reads vectors/baidu_std/name (or vectors/name when name has a '/')
 * whole into a malloc'd buffer (free it). */
static inline uint8_t *test_vector_read(const char *name, size_t *len)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s%s", test_vectors_dir(),
		 strchr(name, '/') ? "" : "baidu_std/", name);
	return test_file_read(path, len);
}

/* build/gen/test/NAME (TEST_DESC_DIR, set by `make`), in a static
 * buffer; fails the test with the fix when it is not set. */
static inline const char *test_desc_path(const char *name)
{
	static char path[4096];
	const char *dir = getenv("TEST_DESC_DIR");

	if (!dir || !*dir)
		fail_msg("TEST_DESC_DIR is not set: point it at build/gen/test "
			 "(`make unit` does)");
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

/* The same into caller storage; the vector must be shorter than cap. */
static inline size_t test_vector_read_into(const char *name, uint8_t *buf,
					   size_t cap)
{
	size_t n;
	uint8_t *v = test_vector_read(name, &n);

	assert_true(n < cap);
	memcpy(buf, v, n);
	free(v);
	return n;
}

static inline uint32_t test_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* The protobuf varint at *p (below end); advances *p; fails if bad. */
static inline uint64_t test_pb_varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		assert_true(*p < end);
		v |= (uint64_t)(**p & 0x7f) << shift;
		if (!(*(*p)++ & 0x80))
			return v;
	}
	fail_msg("varint too long");
	return 0;
}

/* The static binary the integration tier drives (TEST_RPCGATE_BIN, set
 * by `make`); fails the test with the fix when it is missing. */
static inline const char *test_rpcgate_bin(void)
{
	const char *bin = getenv("TEST_RPCGATE_BIN");

	if (!bin || !*bin)
		fail_msg("TEST_RPCGATE_BIN is not set: it names the rpcgate "
			 "binary to test, e.g. TEST_RPCGATE_BIN=build/rpcgate");
	if (access(bin, X_OK))
		fail_msg("TEST_RPCGATE_BIN=%s is not executable: %s", bin,
			 strerror(errno));
	return bin;
}

#endif
