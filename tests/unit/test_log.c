/* Tests for net/base/log.c: format, levels, repeat suppression, threads. */
#define _GNU_SOURCE /* strptime, timegm */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Enough for every test's output; the sink fails the test beyond it. */
#define CAP_BYTES (1 << 20)
/* Concurrency test: threads and lines per thread. */
#define MT_THREADS 4
#define MT_LINES   2000
/* Holds a full pipe (64 KiB by default, 1 MiB max unprivileged) + a line. */
#define EINTR_BUF (2 << 20)

#define PREFIX_RE                                                              \
	"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "  \
	"(DEBUG|INFO |WARN |ERROR) \\[[^] ]+\\] "

struct cap {
	char buf[CAP_BYTES];
	size_t len;
	int lines;
};

static void cap_sink(void *ctx, const char *line, size_t len)
{
	struct cap *c = ctx;

	assert_true(len > 0 && line[len - 1] == '\n');
	assert_true(c->len + len < sizeof(c->buf));
	memcpy(c->buf + c->len, line, len);
	c->len += len;
	c->buf[c->len] = '\0';
	c->lines++;
}

/* Line `i` (0-based) of the capture, without its '\n', into `out`. */
static const char *cap_line(const struct cap *c, int i, char *out, size_t size)
{
	const char *p = c->buf, *e;

	while (i-- > 0) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	e = strchr(p, '\n');
	assert_non_null(e);
	assert_true((size_t)(e - p) < size);
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return out;
}

/* The text after the prefix of line `i`. */
static const char *cap_text(const struct cap *c, int i, char *out, size_t size)
{
	cap_line(c, i, out, size);
	return strchr(out, ']') + 2;
}

static struct cap *cap_new(void)
{
	struct cap *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	return c;
}

static void init_cap(struct log *lg, struct cap *c, enum log_level level,
		     int64_t window_ms)
{
	struct log_options opt;

	log_options_default(&opt);
	opt.level = level;
	opt.sink = cap_sink;
	opt.sink_ctx = c;
	opt.repeat_window_ms = window_ms;
	assert_int_equal(log_init(lg, &opt), 0);
}

static bool matches(const char *re, const char *s)
{
	regex_t r;
	int rc;

	assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	rc = regexec(&r, s, 0, NULL, 0);
	regfree(&r);
	return rc == 0;
}

static void test_format(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX];
	struct tm tm = {0};
	int64_t before = clock_wall_ns() / CLOCK_NS_PER_S, t;

	(void)state;
	init_cap(&lg, c, LOG_LVL_DEBUG, 0);
	log_debug(&lg, "d %d", 1);
	log_info(&lg, "i %s", "two");
	log_warn(&lg, "w");
	log_error(&lg, "e\n\n");
	log_destroy(&lg);
	assert_int_equal(c->lines, 4);
	assert_true(
	    matches(PREFIX_RE "d 1$", cap_line(c, 0, line, sizeof(line))));
	assert_true(
	    matches(PREFIX_RE "i two$", cap_line(c, 1, line, sizeof(line))));
	assert_true(matches(" WARN  \\[", cap_line(c, 2, line, sizeof(line))));
	/* Trailing newlines are dropped: the line is "... e\n". */
	assert_true(matches(" ERROR \\[[^]]+\\] e$",
			    cap_line(c, 3, line, sizeof(line))));

	/* The stamp is UTC and now. */
	cap_line(c, 0, line, sizeof(line));
	assert_non_null(strptime(line, "%Y-%m-%dT%H:%M:%S", &tm));
	t = (int64_t)timegm(&tm);
	assert_true(t >= before && t <= before + 2);
	free(c);
}

static void test_levels(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX];

	(void)state;
	init_cap(&lg, c, LOG_LVL_WARN, 0);
	assert_false(log_enabled(&lg, LOG_LVL_DEBUG));
	assert_false(log_enabled(&lg, LOG_LVL_INFO));
	assert_true(log_enabled(&lg, LOG_LVL_WARN));
	assert_true(log_enabled(&lg, LOG_LVL_ERROR));
	assert_false(log_enabled(NULL, LOG_LVL_ERROR));
	log_debug(&lg, "no");
	log_info(&lg, "no");
	log_warn(&lg, "yes1");
	log_error(&lg, "yes2");
	log_error(NULL, "discarded");
	log_destroy(&lg);
	assert_int_equal(c->lines, 2);
	assert_string_equal(cap_text(c, 0, line, sizeof(line)), "yes1");
	assert_string_equal(cap_text(c, 1, line, sizeof(line)), "yes2");
	free(c);
}

static void test_init_invalid(void **state)
{
	struct log_options opt;
	struct log lg;

	(void)state;
	log_options_default(&opt);
	assert_int_equal(opt.level, LOG_LVL_INFO);
	assert_int_equal(opt.fd, 2);
	assert_null(opt.sink);
	assert_int_equal(opt.repeat_window_ms, 5000);

	opt.level = (enum log_level)7;
	assert_int_equal(log_init(&lg, &opt), -EINVAL);
	log_options_default(&opt);
	opt.fd = -1;
	assert_int_equal(log_init(&lg, &opt), -EINVAL);
	log_options_default(&opt);
	opt.repeat_window_ms = -1;
	assert_int_equal(log_init(&lg, &opt), -EINVAL);
}

static void test_repeat_then_different(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX];
	int i;

	(void)state;
	init_cap(&lg, c, LOG_LVL_DEBUG, 60000);
	for (i = 0; i < 5; i++)
		log_warn(&lg, "disk %s", "full");
	assert_int_equal(c->lines, 1);
	log_warn(&lg, "other");
	assert_int_equal(c->lines, 3);
	assert_string_equal(cap_text(c, 0, line, sizeof(line)), "disk full");
	assert_string_equal(cap_text(c, 1, line, sizeof(line)),
			    "last message repeated 4 times");
	/* The count line carries the repeated message's level. */
	assert_true(matches(PREFIX_RE, cap_line(c, 1, line, sizeof(line))));
	assert_true(matches(" WARN  ", line));
	assert_string_equal(cap_text(c, 2, line, sizeof(line)), "other");

	/* Same text at another level is another message. */
	log_error(&lg, "other");
	assert_int_equal(c->lines, 4);
	/* A single copy leaves no count line behind. */
	log_info(&lg, "third");
	assert_int_equal(c->lines, 5);
	log_destroy(&lg);
	assert_int_equal(c->lines, 5);
	free(c);
}

static void test_repeat_on_destroy(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX];
	int i;

	(void)state;
	init_cap(&lg, c, LOG_LVL_DEBUG, 60000);
	for (i = 0; i < 3; i++)
		log_info(&lg, "same");
	assert_int_equal(c->lines, 1);
	log_destroy(&lg);
	assert_int_equal(c->lines, 2);
	assert_string_equal(cap_text(c, 1, line, sizeof(line)),
			    "last message repeated 2 times");
	free(c);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void test_repeat_window_expires(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX];
	int i;

	(void)state;
	/* Far longer than any stall of a loaded machine; the window is
	 * made to expire by moving its start back. */
	init_cap(&lg, c, LOG_LVL_DEBUG, 5000);
	for (i = 0; i < 3; i++)
		log_info(&lg, "tick");
	assert_int_equal(c->lines, 1);
	lg.last_ns -= 6 * CLOCK_NS_PER_S;
	/* Same text after the window: count, then the line again. */
	log_info(&lg, "tick");
	assert_int_equal(c->lines, 3);
	assert_string_equal(cap_text(c, 1, line, sizeof(line)),
			    "last message repeated 2 times");
	assert_string_equal(cap_text(c, 2, line, sizeof(line)), "tick");
	/* The window restarted with that line. */
	log_info(&lg, "tick");
	assert_int_equal(c->lines, 3);
	lg.last_ns -= 6 * CLOCK_NS_PER_S;
	/* Expired, but a different line: count first. */
	log_info(&lg, "tock");
	assert_int_equal(c->lines, 5);
	assert_string_equal(cap_text(c, 3, line, sizeof(line)),
			    "last message repeated 1 times");
	log_destroy(&lg);
	assert_int_equal(c->lines, 5);
	free(c);
}

static void test_repeat_disabled(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	int i;

	(void)state;
	init_cap(&lg, c, LOG_LVL_DEBUG, 0);
	for (i = 0; i < 4; i++)
		log_info(&lg, "again");
	log_destroy(&lg);
	assert_int_equal(c->lines, 4);
	free(c);
}

static void test_truncation(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char big[5000];
	char line[LOG_LINE_MAX + 1];
	size_t len;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	init_cap(&lg, c, LOG_LVL_DEBUG, 60000);
	log_info(&lg, "%s", big);
	assert_int_equal(c->len, LOG_LINE_MAX);
	cap_line(c, 0, line, sizeof(line));
	len = strlen(line);
	assert_int_equal(len, LOG_LINE_MAX - 1);
	assert_memory_equal(line + len - 3, "...", 3);
	assert_int_equal(line[len - 4], 'x');
	assert_true(matches(PREFIX_RE "x+\\.\\.\\.$", line));

	/* Exactly fitting text is not cut. */
	c->len = 0;
	c->lines = 0;
	len = LOG_LINE_MAX - (strchr(line, ']') + 2 - line) - 1;
	big[len] = '\0';
	log_info(&lg, "%s", big);
	assert_int_equal(c->len, LOG_LINE_MAX);
	assert_int_equal(c->buf[LOG_LINE_MAX - 2], 'x');
	big[len] = 'x';
	log_destroy(&lg);
	free(c);
}

struct tn_arg {
	struct log *lg;
	const char *name;
};

static void *tn_main(void *p)
{
	struct tn_arg *a = p;

	log_thread_name(a->name);
	log_info(a->lg, "hello");
	return NULL;
}

static void test_thread_names(void **state)
{
	struct cap *c = cap_new();
	struct log lg;
	char line[LOG_LINE_MAX], want[64];
	struct tn_arg a = {&lg, "worker-1"};
	struct tn_arg b = {&lg, "a-very-long-thread-name"};
	pthread_t t;

	(void)state;
	init_cap(&lg, c, LOG_LVL_DEBUG, 0);
	log_info(&lg, "main");
	assert_int_equal(pthread_create(&t, NULL, tn_main, &a), 0);
	pthread_join(t, NULL);
	assert_int_equal(pthread_create(&t, NULL, tn_main, &b), 0);
	pthread_join(t, NULL);
	log_thread_name("main");
	log_info(&lg, "named");
	log_thread_name(NULL);
	log_info(&lg, "unnamed");
	log_destroy(&lg);

	snprintf(want, sizeof(want), " \\[%ld\\] main$",
		 (long)syscall(SYS_gettid));
	assert_true(matches(want, cap_line(c, 0, line, sizeof(line))));
	assert_true(matches(" \\[worker-1\\] hello$",
			    cap_line(c, 1, line, sizeof(line))));
	assert_true(matches(" \\[a-very-long-thr\\] hello$",
			    cap_line(c, 2, line, sizeof(line))));
	assert_true(
	    matches(" \\[main\\] named$", cap_line(c, 3, line, sizeof(line))));
	snprintf(want, sizeof(want), " \\[%ld\\] unnamed$",
		 (long)syscall(SYS_gettid));
	assert_true(matches(want, cap_line(c, 4, line, sizeof(line))));
	free(c);
}

static void test_level_parse(void **state)
{
	static const char *const bad[] = {
	    "", "inf", "infox", "warning", "fatal", " info", "3",
	};
	enum log_level l = LOG_LVL_ERROR;
	size_t i;

	(void)state;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("info", &l), 0);
	assert_int_equal(l, LOG_LVL_INFO);
	assert_int_equal(log_level_parse("WARN", &l), 0);
	assert_int_equal(l, LOG_LVL_WARN);
	assert_int_equal(log_level_parse("Error", &l), 0);
	assert_int_equal(l, LOG_LVL_ERROR);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(log_level_parse(bad[i], &l), -EINVAL);
		assert_int_equal(l, LOG_LVL_ERROR);
	}
	assert_int_equal(log_level_parse(NULL, &l), -EINVAL);
	for (i = LOG_LVL_DEBUG; i <= LOG_LVL_ERROR; i++) {
		assert_int_equal(log_level_parse(log_level_name(i), &l), 0);
		assert_int_equal(l, i);
	}
	assert_string_equal(log_level_name((enum log_level)9), "?");
}

struct mt_arg {
	struct log *lg;
	int id;
};

static void *mt_main(void *p)
{
	struct mt_arg *a = p;
	char name[16];
	char pad[900];
	int i;

	snprintf(name, sizeof(name), "mt-%d", a->id);
	log_thread_name(name);
	memset(pad, 'a' + a->id, sizeof(pad));
	for (i = 0; i < MT_LINES; i++) {
		/* Lengths from a few bytes to ~950 to mix small and big. */
		log_info(a->lg, "t%d n%d %.*s|", a->id, i, (i * 37) % 900, pad);
	}
	return NULL;
}

/* Every line whole and well formed; every thread's lines in order. */
static void check_mt_output(const char *buf, size_t len)
{
	int next[MT_THREADS] = {0};
	const char *p = buf, *e;
	char line[LOG_LINE_MAX + 1], want[32];
	int id, n, off, i;
	regex_t re;

	/* Compiled once: 8000 regcomp()s under ASan take seconds. */
	assert_int_equal(regcomp(&re, PREFIX_RE "t[0-9] n[0-9]+ [a-d]*\\|$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	while (p < buf + len) {
		e = memchr(p, '\n', (size_t)(buf + len - p));
		assert_non_null(e);
		assert_true(e - p < (long)sizeof(line));
		memcpy(line, p, (size_t)(e - p));
		line[e - p] = '\0';
		assert_int_equal(regexec(&re, line, 0, NULL, 0), 0);
		assert_int_equal(
		    sscanf(strchr(line, ']') + 2, "t%d n%d %n", &id, &n, &off),
		    2);
		assert_true(id >= 0 && id < MT_THREADS);
		snprintf(want, sizeof(want), "[mt-%d]", id);
		assert_non_null(strstr(line, want));
		assert_int_equal(n, next[id]);
		assert_int_equal(strlen(strchr(line, ']') + 2 + off) - 1,
				 (size_t)((n * 37) % 900));
		next[id]++;
		p = e + 1;
	}
	regfree(&re);
	for (i = 0; i < MT_THREADS; i++)
		assert_int_equal(next[i], MT_LINES);
}

static void test_concurrent_fd(void **state)
{
	struct log_options opt;
	struct log lg;
	struct mt_arg args[MT_THREADS];
	pthread_t t[MT_THREADS];
	FILE *f = tmpfile();
	char *buf;
	long len;
	int i;

	(void)state;
	assert_non_null(f);
	log_options_default(&opt);
	opt.fd = fileno(f);
	assert_int_equal(log_init(&lg, &opt), 0);
	for (i = 0; i < MT_THREADS; i++) {
		args[i].lg = &lg;
		args[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, mt_main, &args[i]),
				 0);
	}
	for (i = 0; i < MT_THREADS; i++)
		pthread_join(t[i], NULL);
	log_destroy(&lg);

	len = lseek(fileno(f), 0, SEEK_END);
	assert_true(len > 0);
	buf = malloc((size_t)len);
	assert_non_null(buf);
	assert_int_equal(pread(fileno(f), buf, (size_t)len, 0), len);
	check_mt_output(buf, (size_t)len);
	free(buf);
	fclose(f);
}

static volatile sig_atomic_t eintr_hits;

static void eintr_handler(int sig)
{
	(void)sig;
	eintr_hits++;
}

static void *eintr_writer(void *p)
{
	log_info(p, "after the signal");
	return NULL;
}

/* A write blocked on a full pipe and interrupted is retried, not lost. */
static void test_eintr_retried(void **state)
{
	struct sigaction sa, old;
	struct log_options opt;
	struct log lg;
	char junk[4096];
	char *all = malloc(EINTR_BUF);
	int fds[2], fl, i;
	ssize_t n;
	size_t got = 0;
	pthread_t t;

	(void)state;
	assert_non_null(all);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = eintr_handler; /* no SA_RESTART: write gets EINTR */
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	assert_int_equal(pipe(fds), 0);
	/* Fill the pipe so that the logger blocks. */
	fl = fcntl(fds[1], F_GETFL);
	fcntl(fds[1], F_SETFL, fl | O_NONBLOCK);
	memset(junk, 'j', sizeof(junk));
	while (write(fds[1], junk, sizeof(junk)) > 0)
		;
	fcntl(fds[1], F_SETFL, fl);

	log_options_default(&opt);
	opt.fd = fds[1];
	assert_int_equal(log_init(&lg, &opt), 0);
	assert_int_equal(pthread_create(&t, NULL, eintr_writer, &lg), 0);
	for (i = 0; i < 3; i++) {
		sleep_ms(30);
		pthread_kill(t, SIGUSR1);
	}
	sleep_ms(30);
	/* Drain everything; the logger's line comes last. */
	fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
	for (;;) {
		n = read(fds[0], all + got, EINTR_BUF - got - 1);
		if (n > 0) {
			got += (size_t)n;
			assert_true(got < EINTR_BUF - 1);
			continue;
		}
		if (got && all[got - 1] == '\n')
			break;
		sleep_ms(5);
	}
	pthread_join(t, NULL);
	log_destroy(&lg);
	assert_int_equal(eintr_hits, 3);
	all[got - 1] = '\0';
	/* Only 'j's came before the line. */
	assert_true(
	    matches(PREFIX_RE "after the signal$", all + strspn(all, "j")));
	free(all);
	close(fds[0]);
	close(fds[1]);
	sigaction(SIGUSR1, &old, NULL);
}

/* A dead fd drops lines without failing or crashing. */
static void test_bad_fd_dropped(void **state)
{
	struct log_options opt;
	struct log lg;
	int fds[2];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	log_options_default(&opt);
	opt.fd = fds[1];
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(log_init(&lg, &opt), 0);
	log_error(&lg, "into a broken pipe");
	log_destroy(&lg);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_levels),
	    cmocka_unit_test(test_init_invalid),
	    cmocka_unit_test(test_repeat_then_different),
	    cmocka_unit_test(test_repeat_on_destroy),
	    cmocka_unit_test(test_repeat_window_expires),
	    cmocka_unit_test(test_repeat_disabled),
	    cmocka_unit_test(test_truncation),
	    cmocka_unit_test(test_thread_names),
	    cmocka_unit_test(test_level_parse),
	    cmocka_unit_test(test_concurrent_fd),
	    cmocka_unit_test(test_eintr_retried),
	    cmocka_unit_test(test_bad_fd_dropped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
