/*
 * Tests for net/base/flags.c: value parsing of every type, the four sources and
 * their precedence, the kernel command line tokenizer, environment and
 * argument forms, the exact diagnostics, typo suggestions, replaced
 * defaults, allocation failures and malformed definitions.
 *
 * Every test runs on its own registry allocated through mem_failing, and
 * the teardown checks that destroy leaves no live block.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/flags.h"
#include "base/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The kernel command line "file" the tests name as the origin. */
#define ORIGIN "/tmp/test-cmdline"
/* Longer than the tokenizer's token buffer ("rpcgate." + 64 + 4096). */
#define OVERLONG 5000

static const char *const modes[] = {"fast", "safe", "auto", NULL};

static bool is_abs_path(const char *v)
{
	return v[0] == '/';
}

/* Indices into defs[], for the malformed-definition messages. */
static const struct flag_def defs[] = {
    {.name = "verbose", .type = FLAG_BOOL, .def = "false", .help = "a bool"},
    {.name = "count",
     .type = FLAG_INT,
     .def = "5",
     .min = 2,
     .max = 100,
     .help = "an int in [2, 100]"},
    {.name = "mode",
     .type = FLAG_ENUM,
     .def = "safe",
     .choices = modes,
     .help = "an enum"},
    {.name = "path",
     .type = FLAG_STRING,
     .def = "/tmp",
     .valid = is_abs_path,
     .expect = "an absolute path",
     .help = "a checked string"},
    {.name = "s", .type = FLAG_STRING, .def = "", .help = "any text"},
    {.name = "worker_num",
     .type = FLAG_INT,
     .def = "4",
     .min = 2,
     .max = 1024,
     .help = "an int with an underscore"},
    {.name = "offset",
     .type = FLAG_INT,
     .def = "0",
     .min = INT64_MIN,
     .max = INT64_MAX,
     .help = "the whole int64 range"},
};
#define NDEFS (sizeof(defs) / sizeof(defs[0]))

struct fx {
	struct mem_failing mf;
	struct flags fl;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	mem_failing_init(&fx->mf, -1);
	if (flags_init(&fx->fl, defs, NDEFS, &fx->mf.mem)) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	long live;

	flags_destroy(&fx->fl);
	live = fx->mf.live;
	free(fx);
	/* Balanced allocations: nothing the registry took is left. */
	assert_int_equal(live, 0);
	return 0;
}

static struct flags *FL(void **state)
{
	return &((struct fx *)*state)->fl;
}

static int set(struct flags *fl, const char *name, const char *value,
	       enum flag_source src)
{
	return flags_set(fl, name, strlen(name), value, src);
}

static const char *src_text(const struct flags *fl, const char *name)
{
	static char buf[256];
	const struct flag *f = flags_find(fl, name);

	assert_non_null(f);
	assert_true(flags_describe_source(fl, f, buf, sizeof(buf)) <
		    (int)sizeof(buf));
	return buf;
}

static void assert_diag(const struct flags *fl, unsigned i, const char *want)
{
	const char *got = flags_diag(fl, i);

	assert_non_null(got);
	assert_string_equal(got, want);
}

static void assert_no_diag(const struct flags *fl)
{
	if (flags_ndiag(fl))
		fail_msg("unexpected diagnostic: %s", flags_diag(fl, 0));
}

/* ---- parsing --------------------------------------------------------- */

struct parse_case {
	const char *flag;
	const char *value;
	bool ok;
	int64_t i; /* the parsed value when ok */
};

static const struct parse_case parse_cases[] = {
    /* bool: every spelling, either case */
    {"verbose", "true", true, 1},
    {"verbose", "1", true, 1},
    {"verbose", "yes", true, 1},
    {"verbose", "on", true, 1},
    {"verbose", "TRUE", true, 1},
    {"verbose", "On", true, 1},
    {"verbose", "false", true, 0},
    {"verbose", "0", true, 0},
    {"verbose", "no", true, 0},
    {"verbose", "off", true, 0},
    {"verbose", "FALSE", true, 0},
    {"verbose", "", false, 0},
    {"verbose", "2", false, 0},
    {"verbose", "y", false, 0},
    {"verbose", "truee", false, 0},
    {"verbose", " true", false, 0},
    {"verbose", "abc", false, 0},
    /* int within [2, 100] */
    {"count", "2", true, 2},
    {"count", "100", true, 100},
    {"count", "50", true, 50},
    {"count", "007", true, 7},
    {"count", "1", false, 0},
    {"count", "101", false, 0},
    {"count", "0", false, 0},
    {"count", "-3", false, 0},
    {"count", "abc", false, 0},
    {"count", "", false, 0},
    {"count", " 1", false, 0},
    {"count", "\t5", false, 0},
    {"count", "1x", false, 0},
    {"count", "5 ", false, 0},
    {"count", "1.5", false, 0},
    {"count", "0x10", false, 0},
    {"count", "-", false, 0},
    {"count", "99999999999999999999", false, 0},
    {"count", "-99999999999999999999", false, 0},
    /* int64 edges */
    {"offset", "9223372036854775807", true, INT64_MAX},
    {"offset", "-9223372036854775808", true, INT64_MIN},
    {"offset", "9223372036854775808", false, 0},
    {"offset", "-9223372036854775809", false, 0},
    {"offset", "99999999999999999999", false, 0},
    {"offset", "-1", true, -1},
    /* enum: exact choice names, index as the value */
    {"mode", "fast", true, 0},
    {"mode", "safe", true, 1},
    {"mode", "auto", true, 2},
    {"mode", "FAST", false, 0},
    {"mode", "fas", false, 0},
    {"mode", "fast ", false, 0},
    {"mode", "", false, 0},
    /* string with a validator */
    {"path", "/var/run", true, 0},
    {"path", "/", true, 0},
    {"path", "relative", false, 0},
    {"path", "", false, 0},
    /* string without one */
    {"s", "", true, 0},
    {"s", "anything at all", true, 0},
};

static void test_parse_every_type(void **state)
{
	struct flags *fl = FL(state);

	for (size_t k = 0; k < sizeof(parse_cases) / sizeof(parse_cases[0]);
	     k++) {
		const struct parse_case *c = &parse_cases[k];
		const struct flag *f = flags_find(fl, c->flag);
		const char *before_s;
		int64_t before_i;
		int r;

		assert_non_null(f);
		before_s = f->s;
		before_i = f->i;
		r = set(fl, c->flag, c->value, FLAG_SRC_ARGV);
		if (c->ok != (r == 0))
			fail_msg("--%s='%s': got %d, want %s", c->flag,
				 c->value, r, c->ok ? "ok" : "-EINVAL");
		if (c->ok) {
			assert_string_equal(f->s, c->value);
			assert_true(f->i == c->i);
			assert_int_equal(f->src, FLAG_SRC_ARGV);
		} else {
			/* A bad value leaves the flag as it was. */
			assert_int_equal(r, -EINVAL);
			assert_ptr_equal(f->s, before_s);
			assert_true(f->i == before_i);
		}
	}
}

static void test_parse_bad_value_messages(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(set(fl, "count", "abc", FLAG_SRC_ARGV), -EINVAL);
	assert_int_equal(set(fl, "count", "101", FLAG_SRC_ENV), -EINVAL);
	assert_int_equal(set(fl, "verbose", "maybe", FLAG_SRC_KERNEL), -EINVAL);
	assert_int_equal(set(fl, "mode", "slow", FLAG_SRC_ARGV), -EINVAL);
	assert_int_equal(set(fl, "path", "rel", FLAG_SRC_ENV), -EINVAL);
	assert_int_equal(set(fl, "offset", "x", FLAG_SRC_DEFAULT), -EINVAL);
	assert_int_equal(flags_ndiag(fl), 6);
	assert_diag(fl, 0,
		    "bad value 'abc' for flag count (from command line "
		    "--count): expected an integer from 2 to 100");
	assert_diag(fl, 1,
		    "bad value '101' for flag count (from environment "
		    "RPCGATE_COUNT): expected an integer from 2 to 100");
	assert_diag(fl, 2,
		    "bad value 'maybe' for flag verbose (from kernel "
		    "command line rpcgate.verbose (/proc/cmdline)): "
		    "expected true or false");
	assert_diag(fl, 3,
		    "bad value 'slow' for flag mode (from command line "
		    "--mode): expected one of fast, safe, auto");
	assert_diag(fl, 4,
		    "bad value 'rel' for flag path (from environment "
		    "RPCGATE_PATH): expected an absolute path");
	assert_diag(fl, 5,
		    "bad value 'x' for flag offset (from default): "
		    "expected an integer from -9223372036854775808 to "
		    "9223372036854775807");
}

static void test_parse_string_length_limit(void **state)
{
	struct flags *fl = FL(state);
	char *v = malloc(FLAGS_VALUE_MAX + 1);

	assert_non_null(v);
	memset(v, 'a', FLAGS_VALUE_MAX);
	v[FLAGS_VALUE_MAX - 1] = '\0'; /* the longest value: 4095 bytes */
	assert_int_equal(set(fl, "s", v, FLAG_SRC_ARGV), 0);
	assert_int_equal(strlen(flags_str(fl, "s")), FLAGS_VALUE_MAX - 1);
	v[FLAGS_VALUE_MAX - 1] = 'a';
	v[FLAGS_VALUE_MAX] = '\0';
	assert_int_equal(set(fl, "s", v, FLAG_SRC_ARGV), -EINVAL);
	assert_int_equal(strlen(flags_str(fl, "s")), FLAGS_VALUE_MAX - 1);
	/* The message shows at most 200 bytes of the value. */
	assert_int_equal(flags_ndiag(fl), 1);
	assert_non_null(strstr(flags_diag(fl, 0), "for flag s (from command "
						  "line --s): expected text"));
	assert_true(strlen(flags_diag(fl, 0)) < FLAGS_DIAG_LEN);
	free(v);
}

static void test_typed_reads(void **state)
{
	struct flags *fl = FL(state);

	assert_false(flags_bool(fl, "verbose"));
	assert_int_equal(flags_int(fl, "count"), 5);
	assert_int_equal(flags_int(fl, "mode"), 1); /* enum: the index */
	assert_string_equal(flags_str(fl, "mode"), "safe");
	assert_string_equal(flags_str(fl, "path"), "/tmp");
	assert_string_equal(flags_str(fl, "s"), "");
	assert_null(flags_find(fl, "nope"));
	assert_null(flags_find(fl, "coun"));
	assert_null(flags_find(fl, "counts"));
	assert_int_equal(set(fl, "verbose", "on", FLAG_SRC_ARGV), 0);
	assert_true(flags_bool(fl, "verbose"));
	assert_int_equal(set(fl, "mode", "auto", FLAG_SRC_ARGV), 0);
	assert_int_equal(flags_int(fl, "mode"), 2);
	assert_string_equal(flags_str(fl, "mode"), "auto");
	assert_no_diag(fl);
}

static void test_describe_expect(void **state)
{
	char buf[128], small[8];
	int n;

	(void)state;
	flag_describe_expect(&defs[0], buf, sizeof(buf));
	assert_string_equal(buf, "true or false");
	flag_describe_expect(&defs[1], buf, sizeof(buf));
	assert_string_equal(buf, "an integer from 2 to 100");
	n = flag_describe_expect(&defs[2], buf, sizeof(buf));
	assert_string_equal(buf, "one of fast, safe, auto");
	assert_int_equal(n, strlen(buf));
	flag_describe_expect(&defs[3], buf, sizeof(buf));
	assert_string_equal(buf, "an absolute path");
	flag_describe_expect(&defs[4], buf, sizeof(buf));
	assert_string_equal(buf, "text");
	/* Truncated: the full length is returned, the text is a prefix. */
	assert_int_equal(flag_describe_expect(&defs[2], small, sizeof(small)),
			 n);
	assert_string_equal(small, "one of ");
	assert_int_equal(flag_describe_expect(&defs[2], small, 0), n);
}

static void test_source_names(void **state)
{
	(void)state;
	assert_string_equal(flag_source_name(FLAG_SRC_DEFAULT), "default");
	assert_string_equal(flag_source_name(FLAG_SRC_KERNEL),
			    "kernel command line");
	assert_string_equal(flag_source_name(FLAG_SRC_ENV), "environment");
	assert_string_equal(flag_source_name(FLAG_SRC_ARGV), "command line");
}

/* ---- precedence ------------------------------------------------------ */

struct prec_case {
	const char *kernel; /* values of count per source, NULL: not set */
	const char *env;
	const char *argv;
	const char *want;
	enum flag_source src;
	const char *where;
};

static const struct prec_case prec_cases[] = {
    {NULL, NULL, NULL, "5", FLAG_SRC_DEFAULT, "default"},
    {"10", NULL, NULL, "10", FLAG_SRC_KERNEL,
     "kernel command line rpcgate.count (" ORIGIN ")"},
    {NULL, "20", NULL, "20", FLAG_SRC_ENV, "environment RPCGATE_COUNT"},
    {NULL, NULL, "30", "30", FLAG_SRC_ARGV, "command line --count"},
    {"10", "20", NULL, "20", FLAG_SRC_ENV, "environment RPCGATE_COUNT"},
    {"10", NULL, "30", "30", FLAG_SRC_ARGV, "command line --count"},
    {NULL, "20", "30", "30", FLAG_SRC_ARGV, "command line --count"},
    {"10", "20", "30", "30", FLAG_SRC_ARGV, "command line --count"},
};

/* Loads the sources in the order app/ does: kernel, environment, args. */
static void load_sources(struct flags *fl, const struct prec_case *c)
{
	char kbuf[64], ebuf[64], abuf[64];
	char *envp[] = {"HOME=/root", ebuf, NULL};

	snprintf(kbuf, sizeof(kbuf), "quiet rpcgate.count=%s ro",
		 c->kernel ? c->kernel : "x");
	snprintf(ebuf, sizeof(ebuf), "RPCGATE_COUNT=%s", c->env ? c->env : "");
	snprintf(abuf, sizeof(abuf), "--count=%s", c->argv ? c->argv : "");
	assert_int_equal(
	    flags_load_cmdline(fl, c->kernel ? kbuf : "quiet ro", ORIGIN), 0);
	if (!c->env)
		envp[1] = NULL;
	assert_int_equal(flags_load_env(fl, envp), 0);
	if (c->argv)
		assert_int_equal(flags_load_arg(fl, abuf), 0);
}

static void test_precedence_all_sources(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(prec_cases) / sizeof(prec_cases[0]);
	     k++) {
		const struct prec_case *c = &prec_cases[k];
		struct mem_failing mf;
		struct flags fl;
		const struct flag *f;

		mem_failing_init(&mf, -1);
		assert_int_equal(flags_init(&fl, defs, NDEFS, &mf.mem), 0);
		load_sources(&fl, c);
		f = flags_find(&fl, "count");
		assert_string_equal(f->s, c->want);
		assert_int_equal(f->i, atoi(c->want));
		assert_int_equal(f->src, c->src);
		assert_string_equal(src_text(&fl, "count"), c->where);
		/* Other flags stay at their defaults. */
		assert_string_equal(src_text(&fl, "mode"), "default");
		assert_no_diag(&fl);
		flags_destroy(&fl);
		assert_int_equal(mf.live, 0);
	}
}

static void test_describe_source_each(void **state)
{
	struct flags *fl = FL(state);

	assert_string_equal(src_text(fl, "worker_num"), "default");
	/* Without a loaded kernel source the origin is /proc/cmdline. */
	assert_int_equal(set(fl, "worker_num", "8", FLAG_SRC_KERNEL), 0);
	assert_string_equal(src_text(fl, "worker_num"),
			    "kernel command line rpcgate.worker_num "
			    "(/proc/cmdline)");
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.worker_num=9", ORIGIN),
			 0);
	assert_string_equal(src_text(fl, "worker_num"),
			    "kernel command line rpcgate.worker_num (" ORIGIN
			    ")");
	assert_int_equal(set(fl, "worker_num", "10", FLAG_SRC_ENV), 0);
	assert_string_equal(src_text(fl, "worker_num"),
			    "environment RPCGATE_WORKER_NUM");
	assert_int_equal(set(fl, "worker_num", "11", FLAG_SRC_ARGV), 0);
	assert_string_equal(src_text(fl, "worker_num"),
			    "command line --worker_num");
	assert_int_equal(flags_int(fl, "worker_num"), 11);
	assert_no_diag(fl);
}

/* ---- kernel command line --------------------------------------------- */

static void test_cmdline_other_tokens_ignored(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(
	    flags_load_cmdline(fl,
			       "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet "
			       "console=ttyS0,115200 rpcgatex.count=3 "
			       "RPCGATE.count=4 xrpcgate.count=5 count=6 "
			       "rpcgate_count=8 rpcgate.count=7 "
			       "init=/sbin/init",
			       ORIGIN),
	    0);
	assert_int_equal(flags_int(fl, "count"), 7);
	assert_int_equal(flags_find(fl, "count")->src, FLAG_SRC_KERNEL);
	assert_no_diag(fl);
}

static void test_cmdline_quotes(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(
	    flags_load_cmdline(fl, "a=1 rpcgate.s=\"a b c\" b=2", ORIGIN), 0);
	assert_string_equal(flags_str(fl, "s"), "a b c");
	/* Quotes may open anywhere in the token and are removed. */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.s=x\"y z\"w", ORIGIN),
			 0);
	assert_string_equal(flags_str(fl, "s"), "xy zw");
	assert_int_equal(flags_load_cmdline(fl, "\"rpcgate.count=8\"", ORIGIN),
			 0);
	assert_int_equal(flags_int(fl, "count"), 8);
	/* A quoted kernel token with spaces is not ours. */
	assert_int_equal(flags_load_cmdline(fl,
					    "dyndbg=\"file x rpcgate.count=9"
					    "\" rpcgate.mode=fast",
					    ORIGIN),
			 0);
	assert_int_equal(flags_int(fl, "count"), 8);
	assert_string_equal(flags_str(fl, "mode"), "fast");
	/* An unterminated quote runs to the end of the line. */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.s=\"a b", ORIGIN), 0);
	assert_string_equal(flags_str(fl, "s"), "a b");
	/* Empty quotes: an empty value. */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.s=\"\"", ORIGIN), 0);
	assert_string_equal(flags_str(fl, "s"), "");
	assert_no_diag(fl);
}

static void test_cmdline_bare_name_is_true(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(
	    flags_load_cmdline(fl, "quiet rpcgate.verbose ro", ORIGIN), 0);
	assert_true(flags_bool(fl, "verbose"));
	assert_int_equal(flags_find(fl, "verbose")->src, FLAG_SRC_KERNEL);
	/* A bare non-bool is a bad value "true". */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.count", ORIGIN),
			 -EINVAL);
	assert_int_equal(flags_ndiag(fl), 1);
	assert_diag(fl, 0,
		    "bad value 'true' for flag count (from kernel "
		    "command line rpcgate.count (" ORIGIN ")): "
		    "expected an integer from 2 to 100");
	assert_int_equal(flags_int(fl, "count"), 5);
}

static void test_cmdline_whitespace(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(flags_load_cmdline(fl,
					    "\t rpcgate.count=9\n"
					    "rpcgate.mode=fast\t\trpcgate."
					    "verbose=yes\r\n",
					    ORIGIN),
			 0);
	assert_int_equal(flags_int(fl, "count"), 9);
	assert_string_equal(flags_str(fl, "mode"), "fast");
	assert_true(flags_bool(fl, "verbose"));
	assert_no_diag(fl);
}

static void test_cmdline_empty_and_prefix_alone(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(flags_load_cmdline(fl, "", ORIGIN), 0);
	assert_int_equal(flags_load_cmdline(fl, " \t\n ", ORIGIN), 0);
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.", ORIGIN), 0);
	assert_int_equal(
	    flags_load_cmdline(fl, "ro rpcgate. rpcgate.\"\" x", ORIGIN), 0);
	assert_no_diag(fl);
	for (size_t i = 0; i < NDEFS; i++)
		assert_int_equal(fl->v[i].src, FLAG_SRC_DEFAULT);
	/* "rpcgate.=1": a token with an empty name is an unknown flag. */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.=1", ORIGIN), -ENOENT);
	assert_int_equal(flags_ndiag(fl), 1);
	assert_non_null(strstr(flags_diag(fl, 0), "unknown flag ''"));
}

static void test_cmdline_unknown_and_bad(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(
	    flags_load_cmdline(fl,
			       "rpcgate.cuont=3 rpcgate.zzzzzzzz=1 "
			       "rpcgate.count=abc rpcgate.mode=fast",
			       ORIGIN),
	    -ENOENT); /* the first error */
	assert_int_equal(flags_ndiag(fl), 3);
	assert_diag(fl, 0,
		    "unknown flag 'cuont' (from kernel command line "
		    "rpcgate.cuont (" ORIGIN ")); did you mean 'count'?");
	assert_diag(fl, 1,
		    "unknown flag 'zzzzzzzz' (from kernel command line "
		    "rpcgate.zzzzzzzz (" ORIGIN ")); 'rpcgate --help' "
		    "lists the flags");
	assert_diag(fl, 2,
		    "bad value 'abc' for flag count (from kernel "
		    "command line rpcgate.count (" ORIGIN ")): expected "
		    "an integer from 2 to 100");
	/* Loading went on after the errors. */
	assert_string_equal(flags_str(fl, "mode"), "fast");
}

static void test_cmdline_overlong_tokens(void **state)
{
	struct flags *fl = FL(state);
	size_t cap = 3 * OVERLONG;
	char *text = malloc(cap), *p = text;

	assert_non_null(text);
	/* Someone else's overlong token: ignored. */
	memset(p, 'k', OVERLONG);
	p += OVERLONG;
	p += sprintf(p, " rpcgate.s=");
	/* Ours, too long for the token buffer: reported, skipped. */
	memset(p, 'a', OVERLONG);
	p += OVERLONG;
	sprintf(p, " rpcgate.count=11");
	assert_int_equal(flags_load_cmdline(fl, text, ORIGIN), -EINVAL);
	assert_int_equal(flags_ndiag(fl), 1);
	assert_diag(fl, 0,
		    "kernel command line token 'rpcgate.s=aaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaa...' in " ORIGIN " is too long");
	assert_string_equal(flags_str(fl, "s"), "");
	assert_int_equal(flags_int(fl, "count"), 11);

	/* A value of FLAGS_VALUE_MAX bytes fits the token but not a value. */
	p = text + sprintf(text, "rpcgate.s=");
	memset(p, 'b', FLAGS_VALUE_MAX);
	p[FLAGS_VALUE_MAX] = '\0';
	assert_int_equal(flags_load_cmdline(fl, text, ORIGIN), -EINVAL);
	assert_int_equal(flags_ndiag(fl), 2);
	assert_diag(fl, 1, "value of flag 's' is longer than 4095 bytes");
	assert_string_equal(flags_str(fl, "s"), "");

	/* One byte less is the longest value accepted. */
	p[FLAGS_VALUE_MAX - 1] = '\0';
	assert_int_equal(flags_load_cmdline(fl, text, ORIGIN), 0);
	assert_int_equal(strlen(flags_str(fl, "s")), FLAGS_VALUE_MAX - 1);
	assert_int_equal(flags_ndiag(fl), 2);
	free(text);
}

/* The tokenizer never reads past the NUL: the text ends at a guard page. */
static void test_cmdline_at_guard_page(void **state)
{
	static const char *const texts[] = {
	    "rpcgate.count=12",
	    "rpcgate.s=\"unterminated",
	    "rpcgate.verbose",
	    "rpcgate.",
	    " ",
	};
	struct flags *fl = FL(state);
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + pg, pg, PROT_NONE), 0);
	for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
		size_t len = strlen(texts[k]) + 1;
		char *t = map + pg - len;

		memcpy(t, texts[k], len);
		assert_int_equal(flags_load_cmdline(fl, t, ORIGIN), 0);
	}
	assert_int_equal(flags_int(fl, "count"), 12);
	assert_string_equal(flags_str(fl, "s"), "unterminated");
	assert_true(flags_bool(fl, "verbose"));

	/* flags_set's name is not NUL-terminated: it ends at the guard. */
	memcpy(map + pg - 5, "count", 5);
	assert_int_equal(flags_set(fl, map + pg - 5, 5, "13", FLAG_SRC_ARGV),
			 0);
	assert_int_equal(flags_int(fl, "count"), 13);
	memcpy(map + pg - 5, "cuont", 5);
	assert_int_equal(flags_set(fl, map + pg - 5, 5, "13", FLAG_SRC_ENV),
			 -ENOENT);
	assert_diag(fl, 0,
		    "unknown flag 'cuont' (from environment "
		    "RPCGATE_CUONT); did you mean 'count'?");
	assert_int_equal(munmap(map, 2 * pg), 0);
}

/* ---- environment ----------------------------------------------------- */

static void test_env_lowercases_and_ignores(void **state)
{
	struct flags *fl = FL(state);
	char *envp[] = {
	    "PATH=/usr/bin:/bin",
	    "HOME=/root",
	    "RPCGATE_WORKER_NUM=8",
	    "RPCGATE_=1",      /* no name */
	    "RPCGATE_NOEQ",    /* no value */
	    "rpcgate_count=3", /* the prefix is upper case */
	    "XRPCGATE_COUNT=3",
	    "RPCGATE",
	    "RPCGATE_Mode=fast", /* the name is lower-cased */
	    NULL,
	};

	assert_int_equal(flags_load_env(fl, envp), 0);
	assert_int_equal(flags_int(fl, "worker_num"), 8);
	assert_int_equal(flags_find(fl, "worker_num")->src, FLAG_SRC_ENV);
	assert_string_equal(src_text(fl, "worker_num"),
			    "environment RPCGATE_WORKER_NUM");
	assert_string_equal(flags_str(fl, "mode"), "fast");
	assert_int_equal(flags_int(fl, "count"), 5);
	assert_int_equal(flags_find(fl, "count")->src, FLAG_SRC_DEFAULT);
	assert_no_diag(fl);
	assert_int_equal(flags_load_env(fl, NULL), 0);
	{
		char *none[] = {NULL};

		assert_int_equal(flags_load_env(fl, none), 0);
	}
	assert_no_diag(fl);
}

static void test_env_unknown_and_bad(void **state)
{
	struct flags *fl = FL(state);
	char longname[128];
	char *envp[] = {
	    "RPCGATE_FOO=1",
	    "RPCGATE_COUNT=abc",
	    "RPCGATE_WORKER_NUN=3",
	    "RPCGATE_WORKER_NUM=",
	    longname,
	    "RPCGATE_MODE=fast",
	    NULL,
	};

	snprintf(longname, sizeof(longname), "RPCGATE_%0*d=1", 70, 0);
	assert_int_equal(flags_load_env(fl, envp), -ENOENT);
	assert_int_equal(flags_ndiag(fl), 5);
	assert_diag(fl, 0,
		    "unknown flag 'foo' (from environment RPCGATE_FOO); "
		    "'rpcgate --help' lists the flags");
	assert_diag(fl, 1,
		    "bad value 'abc' for flag count (from environment "
		    "RPCGATE_COUNT): expected an integer from 2 to 100");
	assert_diag(fl, 2,
		    "unknown flag 'worker_nun' (from environment "
		    "RPCGATE_WORKER_NUN); did you mean 'worker_num'?");
	assert_diag(fl, 3,
		    "bad value '' for flag worker_num (from environment "
		    "RPCGATE_WORKER_NUM): expected an integer from 2 to "
		    "1024");
	assert_non_null(strstr(flags_diag(fl, 4),
			       "unknown flag in environment variable "
			       "'RPCGATE_0000"));
	assert_string_equal(flags_str(fl, "mode"), "fast");
	assert_int_equal(flags_int(fl, "count"), 5);
	assert_int_equal(flags_int(fl, "worker_num"), 4);
}

/* ---- arguments ------------------------------------------------------- */

static void test_arg_forms(void **state)
{
	struct flags *fl = FL(state);

	assert_int_equal(flags_load_arg(fl, "--count=7"), 0);
	assert_int_equal(flags_int(fl, "count"), 7);
	assert_int_equal(flags_load_arg(fl, "--verbose"), 0);
	assert_true(flags_bool(fl, "verbose"));
	assert_int_equal(flags_load_arg(fl, "--noverbose"), 0);
	assert_false(flags_bool(fl, "verbose"));
	assert_int_equal(flags_find(fl, "verbose")->src, FLAG_SRC_ARGV);
	assert_int_equal(flags_load_arg(fl, "--verbose=yes"), 0);
	assert_true(flags_bool(fl, "verbose"));
	assert_int_equal(flags_load_arg(fl, "--verbose=off"), 0);
	assert_false(flags_bool(fl, "verbose"));
	assert_int_equal(flags_load_arg(fl, "--s="), 0);
	assert_string_equal(flags_str(fl, "s"), "");
	assert_int_equal(flags_load_arg(fl, "--s=a=b c"), 0);
	assert_string_equal(flags_str(fl, "s"), "a=b c");
	assert_int_equal(flags_load_arg(fl, "--mode=auto"), 0);
	assert_int_equal(flags_int(fl, "mode"), 2);
	assert_no_diag(fl);
}

static void test_arg_errors(void **state)
{
	static const struct {
		const char *arg;
		int err;
		const char *diag;
	} cases[] = {
	    {"--count", -EINVAL, "flag count needs a value: --count=VALUE"},
	    {"--mode", -EINVAL, "flag mode needs a value: --mode=VALUE"},
	    {"--path", -EINVAL, "flag path needs a value: --path=VALUE"},
	    {"--nocount", -EINVAL, "flag count needs a value: --count=VALUE"},
	    {"-x", -EINVAL,
	     "'-x' is not a flag: flags are written --NAME=VALUE"},
	    {"-count=3", -EINVAL,
	     "'-count=3' is not a flag: flags are written --NAME=VALUE"},
	    {"--", -EINVAL,
	     "'--' is not a flag: flags are written --NAME=VALUE"},
	    {"--=1", -EINVAL,
	     "'--=1' is not a flag: flags are written --NAME=VALUE"},
	    {"count=3", -EINVAL,
	     "'count=3' is not a flag: flags are written --NAME=VALUE"},
	    {"", -EINVAL, "'' is not a flag: flags are written --NAME=VALUE"},
	    {"--no", -ENOENT,
	     "unknown flag 'no' (from command line --no); "
	     "'rpcgate --help' lists the flags"},
	    {"--nosuch", -ENOENT,
	     "unknown flag 'nosuch' (from command line --nosuch); "
	     "'rpcgate --help' lists the flags"},
	    {"--cout=3", -ENOENT,
	     "unknown flag 'cout' (from command line "
	     "--cout); did you mean 'count'?"},
	    {"--verbos", -ENOENT,
	     "unknown flag 'verbos' (from command line "
	     "--verbos); did you mean 'verbose'?"},
	    {"--count=1x", -EINVAL,
	     "bad value '1x' for flag count (from command line --count): "
	     "expected an integer from 2 to 100"},
	    {"--verbose=2", -EINVAL,
	     "bad value '2' for flag verbose (from command line "
	     "--verbose): expected true or false"},
	};
	struct flags *fl = FL(state);
	size_t n = sizeof(cases) / sizeof(cases[0]);

	assert_true(n <= FLAGS_DIAG_MAX);
	for (size_t k = 0; k < n; k++) {
		int r = flags_load_arg(fl, cases[k].arg);

		if (r != cases[k].err)
			fail_msg("'%s': got %d, want %d", cases[k].arg, r,
				 cases[k].err);
		assert_int_equal(flags_ndiag(fl), k + 1);
		assert_diag(fl, (unsigned)k, cases[k].diag);
	}
	for (size_t i = 0; i < NDEFS; i++)
		assert_int_equal(fl->v[i].src, FLAG_SRC_DEFAULT);
}

/* ---- diagnostics ----------------------------------------------------- */

static void test_errors_collected_across_sources(void **state)
{
	struct flags *fl = FL(state);
	char *envp[] = {"RPCGATE_MODE=slow", "RPCGATE_BOGUS=1", NULL};

	assert_int_equal(flags_load_cmdline(fl,
					    "rpcgate.count=0 "
					    "rpcgate.verbose=1",
					    ORIGIN),
			 -EINVAL);
	assert_int_equal(flags_load_env(fl, envp), -EINVAL);
	assert_int_equal(flags_load_arg(fl, "--worker_num=1"), -EINVAL);
	assert_int_equal(flags_load_arg(fl, "--count=9"), 0);
	assert_int_equal(flags_ndiag(fl), 4);
	assert_non_null(strstr(flags_diag(fl, 0), "'0' for flag count (from "
						  "kernel command line"));
	assert_non_null(strstr(flags_diag(fl, 1), "'slow' for flag mode (from "
						  "environment RPCGATE_MODE)"));
	assert_non_null(strstr(flags_diag(fl, 2),
			       "unknown flag 'bogus' (from "
			       "environment RPCGATE_BOGUS)"));
	assert_non_null(strstr(flags_diag(fl, 3), "'1' for flag worker_num "
						  "(from command line "
						  "--worker_num)"));
	/* Good values of every source still took effect. */
	assert_true(flags_bool(fl, "verbose"));
	assert_int_equal(flags_int(fl, "count"), 9);
}

static void test_diag_overflow_counted(void **state)
{
	struct flags *fl = FL(state);
	char arg[32], want[128];
	unsigned total = FLAGS_DIAG_MAX + 5;

	for (unsigned i = 0; i < total; i++) {
		snprintf(arg, sizeof(arg), "--count=%u", 1000 + i);
		assert_int_equal(flags_load_arg(fl, arg), -EINVAL);
	}
	assert_int_equal(flags_ndiag(fl), total);
	for (unsigned i = 0; i < FLAGS_DIAG_MAX; i++) {
		snprintf(want, sizeof(want),
			 "bad value '%u' for flag count (from command line "
			 "--count): expected an integer from 2 to 100",
			 1000 + i);
		assert_diag(fl, i, want);
	}
	assert_null(flags_diag(fl, FLAGS_DIAG_MAX));
	assert_null(flags_diag(fl, total - 1));
	assert_null(flags_diag(fl, total));
	/* flags_report is counted the same way. */
	flags_report(fl, "one more: %d", 42);
	assert_int_equal(flags_ndiag(fl), total + 1);
}

static void test_diag_report_and_length(void **state)
{
	struct flags *fl = FL(state);
	char big[FLAGS_DIAG_LEN * 2];

	assert_null(flags_diag(fl, 0));
	flags_report(fl, "cannot read %s: %s", "x", "y");
	assert_diag(fl, 0, "cannot read x: y");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	flags_report(fl, "%s", big);
	assert_int_equal(strlen(flags_diag(fl, 1)), FLAGS_DIAG_LEN - 1);
	/* A long bad value is cut to 200 bytes in the message. */
	assert_int_equal(set(fl, "count", big, FLAG_SRC_ARGV), -EINVAL);
	assert_true(strlen(flags_diag(fl, 2)) < FLAGS_DIAG_LEN);
	assert_non_null(strstr(flags_diag(fl, 2), "bad value 'zzz"));
}

/* ---- typo suggestions ------------------------------------------------ */

static void test_closest(void **state)
{
	static const struct {
		const char *typo;
		const char *want; /* NULL: no suggestion */
	} cases[] = {
	    {"cout", "count"},
	    {"coutn", "count"},
	    {"counts", "count"},
	    {"count", "count"},
	    {"verbos", "verbose"},
	    {"verbsoe", "verbose"},
	    {"worker_nun", "worker_num"},
	    {"workernum", "worker_num"},
	    {"worker-num", "worker_num"},
	    {"WORKER_NUM", NULL},
	    {"mdoe", "mode"},
	    {"zzzzzzzz", NULL},
	    {"foo", NULL},
	    {"q", NULL},
	    {"", NULL},
	    {"event_dispatcher_num", NULL},
	};
	struct flags *fl = FL(state);
	char longname[200];

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const char *got =
		    flags_closest(fl, cases[k].typo, strlen(cases[k].typo));

		if (!cases[k].want ? got != NULL
				   : !got || strcmp(got, cases[k].want))
			fail_msg("closest('%s') = %s, want %s", cases[k].typo,
				 got ? got : "NULL",
				 cases[k].want ? cases[k].want : "NULL");
	}
	/* Only `len` bytes are the name. */
	assert_string_equal(flags_closest(fl, "countQQQQ", 5), "count");
	/* Too long to be a typo of ours. */
	memset(longname, 'c', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(flags_closest(fl, longname, strlen(longname)));
	assert_int_equal(set(fl, longname, "1", FLAG_SRC_ARGV), -ENOENT);
	assert_int_equal(strncmp(flags_diag(fl, 0), "unknown flag 'ccc", 17),
			 0);
	assert_int_equal(strlen(flags_diag(fl, 0)), FLAGS_DIAG_LEN - 1);
}

/* ---- replaced defaults ----------------------------------------------- */

/*
 * Regression: a default replaced with FLAG_SRC_DEFAULT (worker_num's
 * computed default) and then overridden by a source must keep the
 * replaced default readable; once the source's copy freed the default's,
 * and `defval` (shown by --help) was a use after free.
 */
static void test_regression_replaced_default_use_after_free(void **state)
{
	struct fx *fx = *state;
	struct flags *fl = &fx->fl;
	const struct flag *f = flags_find(fl, "worker_num");

	assert_int_equal(set(fl, "worker_num", "7", FLAG_SRC_DEFAULT), 0);
	assert_int_equal(f->src, FLAG_SRC_DEFAULT);
	assert_string_equal(f->s, "7");
	assert_string_equal(f->defval, "7");
	assert_int_equal(f->i, 7);
	assert_string_equal(src_text(fl, "worker_num"), "default");
	/* Replaced twice: the first copy goes, the second stands. */
	assert_int_equal(set(fl, "worker_num", "8", FLAG_SRC_DEFAULT), 0);
	assert_string_equal(f->s, "8");
	assert_string_equal(f->defval, "8");
	assert_int_equal(fx->mf.live, 2); /* the array + the default */

	/* Overridden by each source in turn; the default survives. */
	assert_int_equal(flags_load_cmdline(fl, "rpcgate.worker_num=9", ORIGIN),
			 0);
	assert_string_equal(f->defval, "8");
	assert_int_equal(set(fl, "worker_num", "10", FLAG_SRC_ENV), 0);
	assert_int_equal(flags_load_arg(fl, "--worker_num=11"), 0);
	assert_string_equal(f->s, "11");
	assert_int_equal(f->i, 11);
	assert_int_equal(f->src, FLAG_SRC_ARGV);
	assert_string_equal(f->defval, "8");
	assert_int_equal(fx->mf.live, 3);

	/* A default replaced after a source set the flag changes only the
	 * default in force, not the value. */
	assert_int_equal(set(fl, "worker_num", "12", FLAG_SRC_DEFAULT), 0);
	assert_string_equal(f->s, "11");
	assert_int_equal(f->i, 11);
	assert_int_equal(f->src, FLAG_SRC_ARGV);
	assert_string_equal(f->defval, "12");
	assert_int_equal(flags_load_arg(fl, "--worker_num=13"), 0);
	assert_string_equal(f->defval, "12");
	assert_string_equal(f->s, "13");
	assert_int_equal(fx->mf.live, 3);

	/* A bad replacement default changes nothing. */
	assert_int_equal(set(fl, "worker_num", "1", FLAG_SRC_DEFAULT), -EINVAL);
	assert_string_equal(f->defval, "12");
	assert_int_equal(flags_ndiag(fl), 1);
	assert_diag(fl, 0,
		    "bad value '1' for flag worker_num (from default): "
		    "expected an integer from 2 to 1024");
}

/* ---- allocation failures --------------------------------------------- */

/*
 * One step of the sweep: each makes exactly one allocation when it
 * succeeds, so step `i` (0-based, after init's one) fails iff fail_at <=
 * i + 1.
 */
static int sweep_step(struct flags *fl, int i)
{
	char *envp[] = {"RPCGATE_MODE=fast", NULL};

	switch (i) {
	case 0:
		return set(fl, "worker_num", "6", FLAG_SRC_DEFAULT);
	case 1:
		return set(fl, "worker_num", "7", FLAG_SRC_DEFAULT);
	case 2:
		return flags_load_cmdline(fl, "ro rpcgate.count=8 quiet",
					  ORIGIN);
	case 3:
		return flags_load_env(fl, envp);
	case 4:
		return flags_load_arg(fl, "--count=9");
	case 5:
		return flags_load_arg(fl, "--verbose");
	case 6:
		return flags_load_arg(fl, "--s=\"x y\"");
	case 7:
		return set(fl, "worker_num", "8", FLAG_SRC_DEFAULT);
	}
	return 1;
}

static void test_alloc_failure_sweep(void **state)
{
	const int nsteps = 8;
	bool completed = false;

	(void)state;
	for (long k = 0; !completed; k++) {
		struct mem_failing mf;
		struct flags fl;
		int r, i;

		assert_true(k < 100);
		mem_failing_init(&mf, k);
		r = flags_init(&fl, defs, NDEFS, &mf.mem);
		if (k == 0) {
			assert_int_equal(r, -ENOMEM);
			assert_int_equal(mf.live, 0);
			assert_null(fl.v);
			flags_destroy(&fl); /* harmless after a failed init */
			assert_int_equal(mf.live, 0);
			continue;
		}
		assert_int_equal(r, 0);
		for (i = 0; i < nsteps; i++) {
			const struct flag *w = flags_find(&fl, "worker_num");
			const struct flag *c = flags_find(&fl, "count");
			const char *ws = w->s, *cs = c->s, *wd = w->defval;

			r = sweep_step(&fl, i);
			if (k <= i + 1) {
				if (r != -ENOMEM)
					fail_msg("fail_at %ld step %d: %d", k,
						 i, r);
				/* The flag kept its value and default. */
				assert_ptr_equal(w->s, ws);
				assert_ptr_equal(c->s, cs);
				assert_ptr_equal(w->defval, wd);
			} else {
				assert_int_equal(r, 0);
			}
		}
		/* An allocation failure is not a diagnostic. */
		assert_int_equal(flags_ndiag(&fl), 0);
		if (k > nsteps) {
			completed = true;
			assert_int_equal(flags_int(&fl, "count"), 9);
			/* Still from the default: the last replacement is
			 * the value too. */
			assert_int_equal(flags_int(&fl, "worker_num"), 8);
			assert_string_equal(
			    flags_find(&fl, "worker_num")->defval, "8");
			assert_string_equal(flags_str(&fl, "mode"), "fast");
			assert_string_equal(flags_str(&fl, "s"), "\"x y\"");
			assert_true(flags_bool(&fl, "verbose"));
			assert_int_equal(mf.calls, 1 + nsteps);
		}
		flags_destroy(&fl);
		if (mf.live != 0)
			fail_msg("fail_at %ld: %ld blocks leaked", k, mf.live);
	}
}

/*
 * Regression: an allocation failure after a bad value in the same source
 * was returned as the bad value's -EINVAL, so the caller took an out of
 * memory condition (which records no diagnostic) for a config mistake.
 */
static void test_regression_enomem_masked_by_earlier_error(void **state)
{
	char *envp[] = {"RPCGATE_COUNT=abc", "RPCGATE_S=y", NULL};
	struct mem_failing mf;
	struct flags fl;

	(void)state;
	mem_failing_init(&mf, 1); /* the array only */
	assert_int_equal(flags_init(&fl, defs, NDEFS, &mf.mem), 0);
	assert_int_equal(flags_load_env(&fl, envp), -ENOMEM);
	assert_int_equal(flags_load_cmdline(&fl,
					    "rpcgate.count=abc "
					    "rpcgate.s=y",
					    ORIGIN),
			 -ENOMEM);
	/* An error after -ENOMEM does not hide it either. */
	assert_int_equal(flags_load_cmdline(&fl,
					    "rpcgate.s=y "
					    "rpcgate.count=abc",
					    ORIGIN),
			 -ENOMEM);
	assert_string_equal(flags_str(&fl, "s"), "");
	/* The bad values were still reported. */
	assert_int_equal(flags_ndiag(&fl), 3);
	flags_destroy(&fl);
	assert_int_equal(mf.live, 0);
}

/* ---- malformed definitions ------------------------------------------- */

static void test_malformed_definition(void **state)
{
	static const char *const two[] = {"a", "b", NULL};
	static const struct flag_def bad[] = {
	    {.name = "i", .type = FLAG_INT, .def = "abc", .min = 0, .max = 9},
	    {.name = "i", .type = FLAG_INT, .def = "10", .min = 0, .max = 9},
	    {.name = "i", .type = FLAG_INT, .def = "", .min = 0, .max = 9},
	    {.name = "i", .type = FLAG_INT, .def = "5", .min = 9, .max = 0},
	    {.name = "b", .type = FLAG_BOOL, .def = "maybe"},
	    {.name = "e", .type = FLAG_ENUM, .def = "c", .choices = two},
	    {.name = "e", .type = FLAG_ENUM, .def = "a"},
	    {.name = "p",
	     .type = FLAG_STRING,
	     .def = "rel",
	     .valid = is_abs_path},
	    {.name = "n", .type = FLAG_STRING},
	    {.type = FLAG_STRING, .def = "x"},
	    {.name = "t", .type = (enum flag_type)42, .def = "1"},
	    /* 65 bytes: one more than the longest name */
	    {.name = "a_name_longer_than_sixty_four_bytes_cannot_be_one_"
		     "of_ours_at_allx",
	     .type = FLAG_BOOL,
	     .def = "false"},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		/* A good definition first, so index 1 is the bad one. */
		struct flag_def table[2] = {defs[0], bad[k]};
		struct mem_failing mf;
		struct flags fl;
		char want[FLAGS_DIAG_LEN];

		mem_failing_init(&mf, -1);
		if (flags_init(&fl, table, 2, &mf.mem) != -EINVAL)
			fail_msg("bad definition %zu accepted", k);
		assert_null(fl.v);
		assert_int_equal(fl.n, 0);
		assert_int_equal(mf.live, 0);
		assert_int_equal(flags_ndiag(&fl), 1);
		snprintf(want, sizeof(want),
			 "internal: flag definition 1 (%s) is malformed",
			 bad[k].name ? bad[k].name : "?");
		assert_diag(&fl, 0, want);
		flags_destroy(&fl);
		assert_int_equal(mf.live, 0);
	}
}

/* The longest name allowed: 64 bytes. */
static void test_init_longest_name(void **state)
{
	static const struct flag_def table[] = {
	    {.name = "a_name_longer_than_sixty_four_bytes_cannot_be_one_"
		     "of_ours_at_all",
	     .type = FLAG_BOOL,
	     .def = "false"},
	};
	struct mem_failing mf;
	struct flags fl;

	(void)state;
	assert_int_equal(strlen(table[0].name), 64);
	mem_failing_init(&mf, -1);
	assert_int_equal(flags_init(&fl, table, 1, &mf.mem), 0);
	assert_int_equal(flags_load_arg(&fl,
					"--a_name_longer_than_sixty_four_"
					"bytes_cannot_be_one_of_ours_at_all"),
			 0);
	assert_true(flags_bool(&fl, table[0].name));
	assert_int_equal(flags_ndiag(&fl), 0);
	flags_destroy(&fl);
	assert_int_equal(mf.live, 0);
}

/*
 * A repeatable string flag (the appliance's --spawn): the values one
 * source gives are all kept, in order, joined by newlines; a later source
 * replaces them all; a value holding a newline is refused.
 */
static void test_repeat_flag(void **state)
{
	static const struct flag_def table[] = {
	    {.name = "spawn", .type = FLAG_STRING, .def = "", .repeat = true},
	    {.name = "one", .type = FLAG_STRING, .def = ""},
	};
	char *envp[] = {"RPCGATE_SPAWN=c", NULL};
	struct mem_failing mf;
	struct flags fl;

	(void)state;
	mem_failing_init(&mf, -1);
	assert_int_equal(flags_init(&fl, table, 2, &mf.mem), 0);
	assert_int_equal(
	    flags_load_cmdline(&fl,
			       "rpcgate.spawn=\"echo --port=1\" quiet "
			       "rpcgate.spawn=a rpcgate.one=x rpcgate.one=y",
			       "/proc/cmdline"),
	    0);
	assert_string_equal(flags_str(&fl, "spawn"), "echo --port=1\na");
	assert_string_equal(flags_str(&fl, "one"), "y"); /* not repeatable */
	assert_int_equal(flags_load_env(&fl, envp), 0);
	assert_string_equal(flags_str(&fl, "spawn"), "c");
	assert_int_equal(flags_load_arg(&fl, "--spawn=d"), 0);
	assert_int_equal(flags_load_arg(&fl, "--spawn=e"), 0);
	assert_string_equal(flags_str(&fl, "spawn"), "d\ne");
	assert_int_equal(flags_set(&fl, "spawn", 5, "f\ng", FLAG_SRC_ARGV),
			 -EINVAL);
	assert_string_equal(flags_str(&fl, "spawn"), "d\ne");
	flags_destroy(&fl);
	assert_int_equal(mf.live, 0);
}

static void test_init_empty_table(void **state)
{
	struct mem_failing mf;
	struct flags fl;

	(void)state;
	mem_failing_init(&mf, -1);
	assert_int_equal(flags_init(&fl, defs, 0, &mf.mem), 0);
	assert_null(flags_find(&fl, "count"));
	assert_int_equal(flags_load_arg(&fl, "--count=3"), -ENOENT);
	assert_diag(&fl, 0,
		    "unknown flag 'count' (from command line --count); "
		    "'rpcgate --help' lists the flags");
	flags_destroy(&fl);
	assert_int_equal(mf.live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_parse_every_type),
	    T(test_parse_bad_value_messages),
	    T(test_parse_string_length_limit),
	    T(test_typed_reads),
	    T(test_describe_expect),
	    T(test_source_names),
	    T(test_precedence_all_sources),
	    T(test_describe_source_each),
	    T(test_cmdline_other_tokens_ignored),
	    T(test_cmdline_quotes),
	    T(test_cmdline_bare_name_is_true),
	    T(test_cmdline_whitespace),
	    T(test_cmdline_empty_and_prefix_alone),
	    T(test_cmdline_unknown_and_bad),
	    T(test_cmdline_overlong_tokens),
	    T(test_cmdline_at_guard_page),
	    T(test_env_lowercases_and_ignores),
	    T(test_env_unknown_and_bad),
	    T(test_arg_forms),
	    T(test_arg_errors),
	    T(test_errors_collected_across_sources),
	    T(test_diag_overflow_counted),
	    T(test_diag_report_and_length),
	    T(test_closest),
	    T(test_regression_replaced_default_use_after_free),
	    T(test_alloc_failure_sweep),
	    T(test_regression_enomem_masked_by_earlier_error),
	    T(test_malformed_definition),
	    T(test_init_longest_name),
	    T(test_init_empty_table),
	    T(test_repeat_flag),
#undef T
	};

	return cmocka_run_group_tests_name("flags", tests, NULL, NULL);
}
