/*
 * log: levelled log lines with time, thread and repeat suppression.
 *
 * A `struct log` is owned by the application and handed to every object
 * that logs (through its options); a NULL `struct log *` discards.  Lines
 * look like
 *
 *   2026-11-21T06:01:32.123Z INFO  [loop-0] message text
 *
 * An identical message (same level and text) repeated within
 * `repeat_window_ms` of the copy last written is counted instead of
 * written; the count is written as "last message repeated N times" before
 * the next different line, when the window expires at the next write (an
 * identical message is then written again and opens a new window), or at
 * log_destroy().
 *
 * log_write() is thread-safe and never allocates; it may block briefly on
 * the sink's write(2).  Each line goes out in one write(2) (retried on
 * EINTR and short writes; dropped on any other error), so lines from
 * different threads never interleave.  Lines longer than LOG_LINE_MAX are
 * truncated.  Trailing newlines of the text are dropped.
 */
#ifndef RPCGATE_NET_LOG_H
#define RPCGATE_NET_LOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One line, prefix included; longer text is cut and ends in "...". */
#define LOG_LINE_MAX 1024

enum log_level {
	LOG_LVL_DEBUG,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

/*
 * Receives each finished line (with its trailing '\n', not NUL-terminated);
 * called under the log's lock, so calls never overlap.  For tests.
 */
typedef void log_sink_fn(void *ctx, const char *line, size_t len);

struct log_options {
	enum log_level level; /* lines below it are dropped */
	int fd;		      /* where lines go when sink is NULL */
	log_sink_fn *sink;    /* optional: replaces the fd */
	void *sink_ctx;
	int64_t repeat_window_ms; /* 0 disables suppression */
};

struct log {
	struct log_options opt;
	pthread_mutex_t lock;
	char last[LOG_LINE_MAX]; /* text of the last written message */
	size_t last_len;
	bool has_last; /* `last` holds a message */
	enum log_level last_level;
	uint64_t repeats; /* suppressed copies of `last` */
	int64_t last_ns;  /* monotonic time `last` was written */
};

/* Defaults: INFO, fd 2, no sink, 5000 ms repeat window. */
void log_options_default(struct log_options *opt);

/*
 * 0, or -EINVAL for a bad level, fd < 0 without a sink or a negative
 * repeat window.  The fd is borrowed: log_destroy() does not close it.
 */
int log_init(struct log *lg, const struct log_options *opt);

/* Flushes a pending repeat count.  No log_write() may run concurrently. */
void log_destroy(struct log *lg);

void log_write(struct log *lg, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(struct log *lg, enum log_level level, const char *fmt,
		va_list ap);

/* Changes the level while the log is in use (any thread): 0, or -EINVAL
 * for a level out of range. */
int log_set_level(struct log *lg, enum log_level level);

/* Would a line at `level` be written?  False for a NULL log. */
bool log_enabled(const struct log *lg, enum log_level level);

/*
 * "debug", "info", "warn", "error" (any case) -> 0 and *out, else -EINVAL
 * (NULL included).
 */
int log_level_parse(const char *s, enum log_level *out);
/* The name log_level_parse() accepts ("info"), or "?" if out of range. */
const char *log_level_name(enum log_level level);

/*
 * Names the calling thread in its log lines (copied, cut to 15 chars;
 * NULL or "" reverts to the kernel thread id).  Per thread, any log.
 */
void log_thread_name(const char *name);

#define log_debug(lg, ...) log_write((lg), LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(lg, ...)  log_write((lg), LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(lg, ...)  log_write((lg), LOG_LVL_WARN, __VA_ARGS__)
#define log_error(lg, ...) log_write((lg), LOG_LVL_ERROR, __VA_ARGS__)

#endif
