/* Tests for net/base/stamp.c: which rows are kept, first-reach stages, the
 * dump's format and its tick to nanosecond conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define TEST_TIMEOUT_S 30
#include "testutil.h"

#include "base/clock.h"
#include "base/stamp.h"

#include <pthread.h>

/* Spins: the gaps the dump must show between stages. */
#define GAP_NS	     (200 * CLOCK_NS_PER_US)
#define SHORT_GAP_NS (50 * CLOCK_NS_PER_US)

static char path[64];

static void spin_ns(int64_t ns)
{
	int64_t end = clock_mono_ns() + ns;

	while (clock_mono_ns() < end)
		;
}

static int setup(void **state)
{
	int fd;

	strcpy(path, "/tmp/test_stamp.XXXXXX"); /* mkstemp's template */
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	stamp_reset();
	return test_alarm_arm(state);
}

static int teardown(void **state)
{
	unlink(path);
	return test_alarm_disarm(state);
}

/* The dump's rows: fields[r][stage], -1 for "-"; returns the row count
 * and checks the header. */
static int read_dump(int64_t fields[][STAMP_N], int max)
{
	char line[512];
	FILE *f;
	int n = 0;

	assert_int_equal(stamp_dump(path), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(
	    line, "# woke read parsed dispatch pack send sent sleep\n");
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *end;

		assert_true(n < max);
		for (int i = 0; i < STAMP_N; i++) {
			while (*p == ' ')
				p++;
			if (*p == '-') {
				fields[n][i] = -1;
				p++;
				continue;
			}
			fields[n][i] = strtoll(p, &end, 10);
			assert_ptr_not_equal(end, p);
			p = end;
		}
		assert_string_equal(p, "\n");
		n++;
	}
	fclose(f);
	return n;
}

/* A wake-up that read keeps a row; stages not reached print "-"; the
 * gaps come out in nanoseconds. */
static void test_row_kept(void **state)
{
	int64_t rows[4][STAMP_N];

	(void)state;
	stamp_wake();
	spin_ns(GAP_NS);
	stamp_at(STAMP_READ);
	stamp_at(STAMP_PARSED);
	spin_ns(GAP_NS);
	stamp_at(STAMP_SEND);
	stamp_at(STAMP_SENT);
	stamp_sleep();
	assert_int_equal(stamp_rows(), 1);
	assert_int_equal(read_dump(rows, 4), 1);
	assert_int_equal(rows[0][STAMP_WOKE], 0);
	/* At least the spin; a stalled machine may stretch it, never
	 * shrink it (the tick rate is calibrated over the whole run). */
	assert_true(rows[0][STAMP_READ] >= GAP_NS * 9 / 10);
	assert_true(rows[0][STAMP_PARSED] >= rows[0][STAMP_READ]);
	assert_int_equal(rows[0][STAMP_DISPATCH], -1);
	assert_int_equal(rows[0][STAMP_PACK], -1);
	assert_true(rows[0][STAMP_SEND] - rows[0][STAMP_PARSED] >=
		    GAP_NS * 9 / 10);
	assert_true(rows[0][STAMP_SENT] >= rows[0][STAMP_SEND]);
	assert_true(rows[0][STAMP_SLEEP] >= rows[0][STAMP_SENT]);
}

/* A wake-up with nothing read (a timer, a posted task) is no call's:
 * dropped.  Stages outside a wake-up count nowhere. */
static void test_row_without_read_dropped(void **state)
{
	int64_t rows[4][STAMP_N];

	(void)state;
	stamp_wake();
	stamp_at(STAMP_SEND);
	stamp_at(STAMP_SENT);
	stamp_sleep();
	assert_int_equal(stamp_rows(), 0);
	stamp_at(STAMP_READ); /* after the sleep: no row open */
	stamp_sleep();
	assert_int_equal(stamp_rows(), 0);
	assert_int_equal(read_dump(rows, 4), 0);
}

/* A stage reached twice in one wake-up keeps its first time. */
static void test_first_reach_kept(void **state)
{
	int64_t rows[4][STAMP_N], t0, t1;

	(void)state;
	stamp_wake();
	stamp_at(STAMP_READ);
	spin_ns(GAP_NS);
	stamp_at(STAMP_READ);
	stamp_at(STAMP_PARSED);
	stamp_sleep();
	t0 = clock_mono_ns();
	stamp_wake();
	spin_ns(SHORT_GAP_NS);
	stamp_at(STAMP_READ);
	t1 = clock_mono_ns();
	stamp_sleep();
	assert_int_equal(read_dump(rows, 4), 2);
	assert_true(rows[0][STAMP_PARSED] - rows[0][STAMP_READ] >=
		    GAP_NS * 9 / 10);
	/* The second row counts from its own wake-up: within the time
	 * measured around it (a stall stretches both). */
	assert_true(rows[1][STAMP_READ] >= SHORT_GAP_NS * 9 / 10);
	assert_true(rows[1][STAMP_READ] <= (t1 - t0) * 11 / 10);
}

/* Loops on several threads stamp at once: every row kept whole. */
#define MT_THREADS 4
#define MT_ROWS	   2000

static void *stamp_rows_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < MT_ROWS; i++) {
		stamp_wake();
		for (int p = STAMP_READ; p < STAMP_SLEEP; p++)
			stamp_at(p);
		stamp_sleep();
	}
	return NULL;
}

static void test_threads(void **state)
{
	static int64_t rows[MT_THREADS * MT_ROWS][STAMP_N];
	pthread_t th[MT_THREADS];
	int n;

	(void)state;
	for (int i = 0; i < MT_THREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, stamp_rows_thread, NULL), 0);
	for (int i = 0; i < MT_THREADS; i++)
		pthread_join(th[i], NULL);
	n = read_dump(rows, MT_THREADS * MT_ROWS);
	assert_int_equal(n, MT_THREADS * MT_ROWS);
	for (int r = 0; r < n; r++)
		for (int p = STAMP_READ; p < STAMP_N; p++)
			assert_true(rows[r][p] >= rows[r][p - 1]);
}

/* A full table keeps its rows and counts the rest. */
static void test_table_full(void **state)
{
	(void)state;
	for (int i = 0; i < STAMP_MAX_ROWS + 5; i++) {
		stamp_wake();
		stamp_at(STAMP_READ);
		stamp_sleep();
	}
	assert_int_equal(stamp_rows(), STAMP_MAX_ROWS);
	assert_int_equal(stamp_dropped(), 5);
}

static void test_dump_errors(void **state)
{
	(void)state;
	assert_int_equal(stamp_dump(NULL), -EINVAL);
	assert_int_equal(stamp_dump(""), -EINVAL);
	assert_int_equal(stamp_dump("/nonexistent-dir/stamps"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_row_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_row_without_read_dropped,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_reach_kept, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_table_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
