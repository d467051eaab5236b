/*
 * log: levelled log lines with time, thread and repeat suppression (see
 * log.h).
 *
 * A line is built in one stack buffer of LOG_LINE_MAX bytes:
 *
 *   <time 24> ' ' <level 5> ' ' '[' <thread> ']' ' ' <text> '\n'
 *
 * The prefix length depends only on the thread tag, so the text is
 * formatted outside the lock straight into its final place; the lock is
 * held to compare it with the last message, stamp the time and write.
 */
#include "log.h"

#include "clock.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* "2026-11-21T06:01:32.123Z": ISO-8601 UTC with milliseconds. */
#define LOG_TIME_LEN 24
/* Width of the level column: the longest tag, "DEBUG"/"ERROR". */
#define LOG_LEVEL_LEN 5
/* pthread_setname_np()'s limit (TASK_COMM_LEN 16 with the NUL). */
#define LOG_TNAME_MAX 15
/* Room for the thread tag: a name, or a tid in decimal (20 digits: u64). */
#define LOG_TAG_MAX 20
/* Time, level and tag with their separators: "T L [tag] ". */
#define LOG_PREFIX_MAX (LOG_TIME_LEN + 1 + LOG_LEVEL_LEN + 2 + LOG_TAG_MAX + 2)
/* Marks cut text; the header promises it. */
#define LOG_CUT_MARK "..."
#define LOG_CUT_LEN  (sizeof(LOG_CUT_MARK) - 1)
/* Fits "last message repeated 18446744073709551615 times" (20 digits). */
#define LOG_REPEAT_TEXT_MAX 64

_Static_assert(LOG_PREFIX_MAX + LOG_CUT_LEN + 1 < LOG_LINE_MAX,
	       "LOG_LINE_MAX leaves no room for text");

static __thread char log_tname[LOG_TNAME_MAX + 1];

static const char *const log_names[] = {
    [LOG_LVL_DEBUG] = "debug",
    [LOG_LVL_INFO] = "info",
    [LOG_LVL_WARN] = "warn",
    [LOG_LVL_ERROR] = "error",
};

static const char *const log_tags[] = {
    [LOG_LVL_DEBUG] = "DEBUG",
    [LOG_LVL_INFO] = "INFO ",
    [LOG_LVL_WARN] = "WARN ",
    [LOG_LVL_ERROR] = "ERROR",
};

static bool log_level_valid(enum log_level level)
{
	return (unsigned)level <= LOG_LVL_ERROR;
}

/* The level column; a caller's out-of-range level shows as "?????". */
static const char *log_valid_tag(enum log_level level)
{
	return log_level_valid(level) ? log_tags[level] : "?????";
}

void log_options_default(struct log_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->level = LOG_LVL_INFO;
	opt->fd = STDERR_FILENO;
	opt->sink = NULL;
	opt->sink_ctx = NULL;
	opt->repeat_window_ms = 5000;
}

int log_init(struct log *lg, const struct log_options *opt)
{
	int err;

	if (!log_level_valid(opt->level))
		return -EINVAL;
	if (!opt->sink && opt->fd < 0)
		return -EINVAL;
	if (opt->repeat_window_ms < 0)
		return -EINVAL;

	memset(lg, 0, sizeof(*lg));
	lg->opt = *opt;
	err = pthread_mutex_init(&lg->lock, NULL);
	if (err)
		return -err;
	return 0;
}

bool log_enabled(const struct log *lg, enum log_level level)
{
	return lg && level >= (enum log_level)__atomic_load_n(
				     &lg->opt.level, __ATOMIC_RELAXED);
}

int log_set_level(struct log *lg, enum log_level level)
{
	if (!log_level_valid(level))
		return -EINVAL;
	__atomic_store_n(&lg->opt.level, level, __ATOMIC_RELAXED);
	return 0;
}

int log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	if (!s)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(log_names); i++) {
		if (strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	return log_level_valid(level) ? log_names[level] : "?";
}

void log_thread_name(const char *name)
{
	size_t n = name ? strnlen(name, LOG_TNAME_MAX) : 0;

	memcpy(log_tname, name ? name : "", n);
	log_tname[n] = '\0';
}

/* Unsigned decimal into `p`; returns the number of digits (at most 20). */
static size_t log_utoa(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

/* The calling thread's tag into `out` (LOG_TAG_MAX bytes); its length. */
static size_t log_thread_tag(char *out)
{
	size_t n = strlen(log_tname);

	if (n) {
		memcpy(out, log_tname, n);
		return n;
	}
	/* Not cached: a forked child's main thread has a new tid. */
	return log_utoa(out, (uint64_t)syscall(SYS_gettid));
}

/* `n` digits of `v`, zero-padded. */
static void log_digits(char *p, unsigned v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

static void log_format_time(char *p, int64_t wall_ns)
{
	time_t sec = (time_t)(wall_ns / CLOCK_NS_PER_S);
	unsigned ms = (unsigned)(wall_ns % CLOCK_NS_PER_S / CLOCK_NS_PER_MS);
	struct tm tm;

	if (!gmtime_r(&sec, &tm))
		memset(&tm, 0, sizeof(tm));
	log_digits(p, (unsigned)(tm.tm_year + 1900) % 10000, 4);
	p[4] = '-';
	log_digits(p + 5, (unsigned)tm.tm_mon + 1, 2);
	p[7] = '-';
	log_digits(p + 8, (unsigned)tm.tm_mday, 2);
	p[10] = 'T';
	log_digits(p + 11, (unsigned)tm.tm_hour, 2);
	p[13] = ':';
	log_digits(p + 14, (unsigned)tm.tm_min, 2);
	p[16] = ':';
	log_digits(p + 17, (unsigned)tm.tm_sec, 2);
	p[19] = '.';
	log_digits(p + 20, ms, 3);
	p[23] = 'Z';
}

/* Fills the prefix (plen bytes) at the start of `line`; tag is its own. */
static void log_format_prefix(char *line, enum log_level level, const char *tag,
			      size_t tag_len)
{
	char *p = line;

	log_format_time(p, clock_wall_ns());
	p += LOG_TIME_LEN;
	*p++ = ' ';
	memcpy(p, log_valid_tag(level), LOG_LEVEL_LEN);
	p += LOG_LEVEL_LEN;
	*p++ = ' ';
	*p++ = '[';
	memcpy(p, tag, tag_len);
	p += tag_len;
	*p++ = ']';
	*p = ' ';
}

static size_t log_prefix_len(size_t tag_len)
{
	return LOG_TIME_LEN + 1 + LOG_LEVEL_LEN + 2 + tag_len + 2;
}

/* One write(2) per line; EINTR and short writes are retried. */
static void log_emit(struct log *lg, const char *line, size_t len)
{
	ssize_t n;

	if (lg->opt.sink) {
		lg->opt.sink(lg->opt.sink_ctx, line, len);
		return;
	}
	while (len) {
		n = write(lg->opt.fd, line, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return; /* EAGAIN, EPIPE, EBADF...: nowhere to report */
		}
		line += n;
		len -= (size_t)n;
	}
}

/* Called with the lock held. */
static void log_flush_repeats(struct log *lg, const char *tag, size_t tag_len)
{
	char line[LOG_PREFIX_MAX + LOG_REPEAT_TEXT_MAX];
	size_t plen = log_prefix_len(tag_len);
	int n;

	if (!lg->repeats)
		return;
	log_format_prefix(line, lg->last_level, tag, tag_len);
	n = snprintf(line + plen, LOG_REPEAT_TEXT_MAX,
		     "last message repeated %llu times\n",
		     (unsigned long long)lg->repeats);
	lg->repeats = 0;
	if (n > 0 && n < LOG_REPEAT_TEXT_MAX)
		log_emit(lg, line, plen + (size_t)n);
}

/*
 * Formats the text into `dst` (room for `avail` bytes plus a NUL), cutting
 * it with LOG_CUT_MARK; returns its length.
 */
static size_t log_format_text(char *dst, size_t avail, const char *fmt,
			      va_list ap)
{
	int n = vsnprintf(dst, avail + 1, fmt, ap);
	size_t len;

	if (n < 0) {
		/* Only for an invalid conversion; say so rather than drop. */
		len = strlen("(bad log format)");
		memcpy(dst, "(bad log format)", len);
		return len;
	}
	if ((size_t)n > avail) {
		memcpy(dst + avail - LOG_CUT_LEN, LOG_CUT_MARK, LOG_CUT_LEN);
		return avail;
	}
	len = (size_t)n;
	while (len && dst[len - 1] == '\n')
		len--;
	return len;
}

/* Same level and text as the last message, and still inside its window? */
static bool log_suppress(const struct log *lg, enum log_level level,
			 const char *text, size_t len, int64_t now)
{
	int64_t window = lg->opt.repeat_window_ms * CLOCK_NS_PER_MS;

	return window && lg->has_last && level == lg->last_level &&
	       len == lg->last_len && memcmp(text, lg->last, len) == 0 &&
	       now - lg->last_ns < window;
}

void log_vwrite(struct log *lg, enum log_level level, const char *fmt,
		va_list ap)
{
	char line[LOG_LINE_MAX];
	char tag[LOG_TAG_MAX];
	size_t tag_len, plen, tlen;
	char *text;
	int64_t now;

	if (!log_enabled(lg, level))
		return;
	tag_len = log_thread_tag(tag);
	plen = log_prefix_len(tag_len);
	text = line + plen;
	/* Leave one byte for the '\n' (vsnprintf's NUL goes there). */
	tlen = log_format_text(text, LOG_LINE_MAX - plen - 1, fmt, ap);

	pthread_mutex_lock(&lg->lock);
	now = clock_mono_ns();
	if (log_suppress(lg, level, text, tlen, now)) {
		lg->repeats++;
		goto out_unlock;
	}
	log_flush_repeats(lg, tag, tag_len);
	log_format_prefix(line, level, tag, tag_len);
	text[tlen] = '\n';
	log_emit(lg, line, plen + tlen + 1);

	memcpy(lg->last, text, tlen);
	lg->last_len = tlen;
	lg->last_level = level;
	lg->last_ns = now;
	lg->has_last = true;
out_unlock:
	pthread_mutex_unlock(&lg->lock);
}

void log_write(struct log *lg, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(lg, level, fmt, ap);
	va_end(ap);
}

void log_destroy(struct log *lg)
{
	char tag[LOG_TAG_MAX];
	size_t tag_len;

	if (!lg)
		return;
	tag_len = log_thread_tag(tag);
	pthread_mutex_lock(&lg->lock);
	log_flush_repeats(lg, tag, tag_len);
	lg->has_last = false;
	pthread_mutex_unlock(&lg->lock);
	pthread_mutex_destroy(&lg->lock);
}
