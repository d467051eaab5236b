/*
 * Tests for app/config.c through the real flag table (app/flagtab.c):
 * the four sources, where the kernel command line is read from, the
 * subcommand and positional arguments, worker_num's computed default, the
 * thread budget refusal and the printed configuration.
 *
 * Every test names its own kernel command line file (mkstemp in /tmp,
 * removed by the teardown) and passes an explicit environment, so neither
 * the host's /proc/cmdline nor the caller's RPCGATE_* variables matter.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FILES 4
#define MAX_ARGS  40
#define MAX_ENV	  16
/* Short, so source descriptions fit the 96-byte buffers of messages. */
#define TMP_TEMPLATE "/tmp/rpcgate-cfg-XXXXXX"
#define MISSING	     "/nonexistent/rpcgate-test-cmdline"

struct fx {
	char files[MAX_FILES][sizeof(TMP_TEMPLATE)];
	int nfiles;
	char *argv[MAX_ARGS + 1];
	int argc;
	char *envp[MAX_ENV + 1];
	int nenv;
	struct app_config cfg;
	bool loaded;
	char *out; /* captured output */
	size_t outlen;
};

static struct fx *fx_new(void)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->argv[fx->argc++] = strdup("rpcgate");
	return fx;
}

static void fx_free(struct fx *fx)
{
	if (fx->loaded)
		app_config_destroy(&fx->cfg);
	for (int i = 0; i < fx->nfiles; i++)
		unlink(fx->files[i]);
	for (int i = 0; i < fx->argc; i++)
		free(fx->argv[i]);
	for (int i = 0; i < fx->nenv; i++)
		free(fx->envp[i]);
	free(fx->out);
	free(fx);
}

static int setup(void **state)
{
	*state = fx_new();
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* A kernel command line file holding `text`; its path. */
static const char *fx_file_len(struct fx *fx, const char *text, size_t len)
{
	char *path;
	int fd;

	assert_true(fx->nfiles < MAX_FILES);
	path = fx->files[fx->nfiles];
	strcpy(path, TMP_TEMPLATE);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fx->nfiles++;
	assert_int_equal(write(fd, text, len), len);
	close(fd);
	return path;
}

static const char *fx_file(struct fx *fx, const char *text)
{
	return fx_file_len(fx, text, strlen(text));
}

static void fx_arg(struct fx *fx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fx_arg(struct fx *fx, const char *fmt, ...)
{
	va_list ap;

	assert_true(fx->argc < MAX_ARGS);
	va_start(ap, fmt);
	assert_true(vasprintf(&fx->argv[fx->argc], fmt, ap) >= 0);
	va_end(ap);
	fx->argc++;
}

static void fx_env(struct fx *fx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fx_env(struct fx *fx, const char *fmt, ...)
{
	va_list ap;

	assert_true(fx->nenv < MAX_ENV);
	va_start(ap, fmt);
	assert_true(vasprintf(&fx->envp[fx->nenv], fmt, ap) >= 0);
	va_end(ap);
	fx->nenv++;
}

/* The cmdline file argument every test gives unless it tests the choice. */
static const char *fx_cmdline(struct fx *fx, const char *text)
{
	const char *path = fx_file(fx, text);

	fx_arg(fx, "--cmdline_file=%s", path);
	return path;
}

static int fx_load(struct fx *fx, int ncpu)
{
	int r;

	assert_false(fx->loaded);
	r = app_config_load(&fx->cfg, fx->argc, fx->argv, fx->envp, ncpu);
	fx->loaded = r != -ENOMEM;
	return r;
}

static const char *fx_print(struct fx *fx, bool errors)
{
	FILE *f;

	free(fx->out);
	fx->out = NULL;
	f = open_memstream(&fx->out, &fx->outlen);
	assert_non_null(f);
	if (errors)
		app_config_print_errors(&fx->cfg, f);
	else
		app_config_print(&fx->cfg, f);
	assert_int_equal(fclose(f), 0);
	return fx->out;
}

static const char *src_of(struct fx *fx, const char *name)
{
	static char buf[256];
	const struct flag *f = flags_find(&fx->cfg.flags, name);

	assert_non_null(f);
	flags_describe_source(&fx->cfg.flags, f, buf, sizeof(buf));
	return buf;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("'%s' not found in:\n%s", needle, hay);
}

static void assert_no_diag(const struct fx *fx)
{
	if (flags_ndiag(&fx->cfg.flags))
		fail_msg("unexpected diagnostic: %s",
			 flags_diag(&fx->cfg.flags, 0));
}

/* ---- the four sources ------------------------------------------------ */

struct src_case {
	const char *kernel, *env, *argv; /* log_level per source, or NULL */
	const char *want;
	enum flag_source src;
};

static const struct src_case src_cases[] = {
    {NULL, NULL, NULL, "info", FLAG_SRC_DEFAULT},
    {"debug", NULL, NULL, "debug", FLAG_SRC_KERNEL},
    {NULL, "warn", NULL, "warn", FLAG_SRC_ENV},
    {NULL, NULL, "error", "error", FLAG_SRC_ARGV},
    {"debug", "warn", NULL, "warn", FLAG_SRC_ENV},
    {"debug", NULL, "error", "error", FLAG_SRC_ARGV},
    {NULL, "warn", "error", "error", FLAG_SRC_ARGV},
    {"debug", "warn", "error", "error", FLAG_SRC_ARGV},
    /* the argument after the subcommand, too */
    {"debug", "warn", "warn+", "warn", FLAG_SRC_ARGV},
};

static void test_four_sources_precedence(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(src_cases) / sizeof(src_cases[0]); k++) {
		const struct src_case *c = &src_cases[k];
		struct fx *fx = fx_new();
		char kernel[128], want_src[128];
		const char *path;

		snprintf(kernel, sizeof(kernel),
			 "BOOT_IMAGE=/vmlinuz ro quiet%s%s",
			 c->kernel ? " rpcgate.log_level=" : "",
			 c->kernel ? c->kernel : "");
		path = fx_cmdline(fx, kernel);
		fx_env(fx, "PATH=/usr/bin:/bin");
		if (c->env)
			fx_env(fx, "RPCGATE_LOG_LEVEL=%s", c->env);
		if (c->argv && strchr(c->argv, '+')) {
			fx_arg(fx, "config");
			fx_arg(fx, "--log_level=%.*s",
			       (int)(strchr(c->argv, '+') - c->argv), c->argv);
		} else {
			if (c->argv)
				fx_arg(fx, "--log_level=%s", c->argv);
			fx_arg(fx, "config");
		}
		assert_int_equal(fx_load(fx, 4), 0);
		assert_no_diag(fx);
		assert_string_equal(flags_str(&fx->cfg.flags, "log_level"),
				    c->want);
		assert_int_equal(flags_find(&fx->cfg.flags, "log_level")->src,
				 c->src);
		switch (c->src) {
		case FLAG_SRC_DEFAULT:
			snprintf(want_src, sizeof(want_src), "default");
			break;
		case FLAG_SRC_KERNEL:
			snprintf(want_src, sizeof(want_src),
				 "kernel command line rpcgate.log_level (%s)",
				 path);
			break;
		case FLAG_SRC_ENV:
			snprintf(want_src, sizeof(want_src),
				 "environment RPCGATE_LOG_LEVEL");
			break;
		case FLAG_SRC_ARGV:
			snprintf(want_src, sizeof(want_src),
				 "command line --log_level");
			break;
		case FLAG_SRC_RUNTIME: /* only a server's /flags sets it */
			fail_msg("no source of the table sets at run time");
		}
		assert_string_equal(src_of(fx, "log_level"), want_src);
		assert_string_equal(fx->cfg.subcommand, "config");
		assert_int_equal(fx->cfg.nargs, 0);
		fx_free(fx);
	}
}

/* Different flags from different sources in one load. */
static void test_four_sources_mixed(void **state)
{
	struct fx *fx = *state;
	const char *path;
	char want[128];

	path = fx_cmdline(fx, "quiet rpcgate.log_level=debug "
			      "rpcgate.event_dispatcher_num=2 "
			      "rpcgate.rdma_use_polling\n");
	fx_env(fx, "HOME=/root");
	fx_env(fx, "RPCGATE_LOG_LEVEL=warn");
	fx_env(fx, "RPCGATE_RDMA_POLLER_NUM=3");
	fx_arg(fx, "--log_level=error");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 8), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "error");
	assert_string_equal(src_of(fx, "log_level"),
			    "command line --log_level");
	assert_int_equal(flags_int(&fx->cfg.flags, "event_dispatcher_num"), 2);
	snprintf(want, sizeof(want),
		 "kernel command line rpcgate.event_dispatcher_num (%s)", path);
	assert_string_equal(src_of(fx, "event_dispatcher_num"), want);
	assert_true(flags_bool(&fx->cfg.flags, "rdma_use_polling"));
	assert_int_equal(flags_int(&fx->cfg.flags, "rdma_poller_num"), 3);
	assert_string_equal(src_of(fx, "rdma_poller_num"),
			    "environment RPCGATE_RDMA_POLLER_NUM");
	assert_string_equal(src_of(fx, "worker_num"), "default");
	assert_string_equal(src_of(fx, "cmdline_file"),
			    "command line --cmdline_file");
	assert_string_equal(flags_str(&fx->cfg.flags, "cmdline_file"), path);
	/* The budget was resolved from the loaded flags: 9 = 2 + 3 + 4. */
	assert_false(fx->cfg.budget_refused);
	assert_int_equal(fx->cfg.budget_in.worker_num, 9);
	assert_int_equal(fx->cfg.budget_in.event_dispatcher_num, 2);
	assert_int_equal(fx->cfg.budget_in.rdma_poller_num, 3);
	assert_true(fx->cfg.budget_in.rdma_use_polling);
	assert_int_equal(fx->cfg.budget_in.mode, BUDGET_STRICT);
	assert_int_equal(fx->cfg.budget.task_workers, 4);
	assert_int_equal(fx->cfg.ncpu, 8);
}

/* ---- where the kernel command line comes from ------------------------ */

static void test_cmdline_file_from_env(void **state)
{
	struct fx *fx = *state;
	const char *a = fx_file(fx, "rpcgate.log_level=debug");
	char want[128];

	fx_env(fx, "RPCGATE_CMDLINE_FILE=%s", a);
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "debug");
	snprintf(want, sizeof(want),
		 "kernel command line rpcgate.log_level "
		 "(%s)",
		 a);
	assert_string_equal(src_of(fx, "log_level"), want);
	assert_string_equal(flags_str(&fx->cfg.flags, "cmdline_file"), a);
	assert_string_equal(src_of(fx, "cmdline_file"),
			    "environment RPCGATE_CMDLINE_FILE");
}

static void test_cmdline_file_argv_wins_over_env(void **state)
{
	struct fx *fx = *state;
	const char *a = fx_file(fx, "rpcgate.log_level=debug");
	const char *b = fx_file(fx, "rpcgate.log_level=warn");
	const char *c = fx_file(fx, "rpcgate.log_level=error");
	char want[128];

	fx_env(fx, "RPCGATE_CMDLINE_FILE=%s", a);
	fx_arg(fx, "--cmdline_file=%s", b);
	fx_arg(fx, "config");
	/* The last one given wins, after the subcommand too. */
	fx_arg(fx, "--cmdline_file=%s", c);
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "error");
	snprintf(want, sizeof(want),
		 "kernel command line rpcgate.log_level "
		 "(%s)",
		 c);
	assert_string_equal(src_of(fx, "log_level"), want);
	assert_string_equal(flags_str(&fx->cfg.flags, "cmdline_file"), c);
}

/* A --cmdline_file after "--" is a positional argument, not the file. */
static void test_cmdline_file_after_double_dash(void **state)
{
	struct fx *fx = *state;
	const char *a = fx_file(fx, "rpcgate.log_level=warn");

	fx_arg(fx, "--cmdline_file=%s", a);
	fx_arg(fx, "config");
	fx_arg(fx, "--");
	fx_arg(fx, "--cmdline_file=%s", MISSING);
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "warn");
	assert_string_equal(flags_str(&fx->cfg.flags, "cmdline_file"), a);
	assert_int_equal(fx->cfg.nargs, 1);
	assert_string_equal(fx->cfg.args[0], "--cmdline_file=" MISSING);
}

static void test_cmdline_file_missing_argv(void **state)
{
	struct fx *fx = *state;

	fx_arg(fx, "--cmdline_file=%s", MISSING);
	fx_arg(fx, "--worker_num=1"); /* reported as well */
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_false(fx->cfg.budget_refused);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 2);
	assert_string_equal(flags_diag(&fx->cfg.flags, 0),
			    "cannot read cmdline_file '" MISSING
			    "': No such file or directory");
	assert_string_equal(flags_diag(&fx->cfg.flags, 1),
			    "bad value '1' for flag worker_num (from command "
			    "line --worker_num): expected an integer from 2 "
			    "to 1024");
	assert_string_equal(fx_print(fx, true),
			    "rpcgate: cannot read cmdline_file '" MISSING
			    "': No such file or directory\n"
			    "rpcgate: bad value '1' for flag worker_num (from "
			    "command line --worker_num): expected an integer "
			    "from 2 to 1024\n");
}

static void test_cmdline_file_missing_env(void **state)
{
	struct fx *fx = *state;

	fx_env(fx, "RPCGATE_CMDLINE_FILE=%s", MISSING);
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 1);
	assert_string_equal(flags_diag(&fx->cfg.flags, 0),
			    "cannot read cmdline_file '" MISSING
			    "': No such file or directory");
}

static void test_cmdline_file_directory(void **state)
{
	struct fx *fx = *state;

	fx_arg(fx, "--cmdline_file=/tmp");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 1);
	assert_string_equal(flags_diag(&fx->cfg.flags, 0),
			    "cannot read cmdline_file '/tmp': Is a directory");
}

static void test_cmdline_file_empty_and_large(void **state)
{
	struct fx *fx = *state;
	size_t big = 65535;
	char *text = malloc(big + 1);
	const char *path;

	/* An empty file is an empty command line. */
	fx_cmdline(fx, "");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	app_config_destroy(&fx->cfg);
	fx->loaded = false;

	/* A long one (several read buffers) is read whole. */
	assert_non_null(text);
	memset(text, ' ', big);
	memcpy(text + big - 22, "rpcgate.log_level=warn", 22);
	path = fx_file_len(fx, text, big);
	fx_arg(fx, "--cmdline_file=%s", path);
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "warn");
	app_config_destroy(&fx->cfg);
	fx->loaded = false;

	/* A file far bigger than any kernel command line is refused. */
	free(text);
	big = 100000;
	text = malloc(big);
	assert_non_null(text);
	memset(text, ' ', big);
	path = fx_file_len(fx, text, big);
	fx_arg(fx, "--cmdline_file=%s", path);
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 1);
	assert_contains(flags_diag(&fx->cfg.flags, 0), "cannot read "
						       "cmdline_file '");
	assert_contains(flags_diag(&fx->cfg.flags, 0), "': File too large");
	free(text);
}

static void test_cmdline_errors_name_the_file(void **state)
{
	struct fx *fx = *state;
	const char *path;
	char want[256];

	path =
	    fx_cmdline(fx, "ro rpcgate.worker_num=abc rpcgate.log_levl=warn");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 2);
	snprintf(want, sizeof(want),
		 "bad value 'abc' for flag worker_num (from kernel command "
		 "line rpcgate.worker_num (%s)): expected an integer from 2 "
		 "to 1024",
		 path);
	assert_string_equal(flags_diag(&fx->cfg.flags, 0), want);
	snprintf(want, sizeof(want),
		 "unknown flag 'log_levl' (from kernel command line "
		 "rpcgate.log_levl (%s)); did you mean 'log_level'?",
		 path);
	assert_string_equal(flags_diag(&fx->cfg.flags, 1), want);
}

/* ---- subcommand and positional arguments ----------------------------- */

static void test_subcommand_flags_before_and_after(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "--log_level=warn");
	fx_arg(fx, "config");
	fx_arg(fx, "--worker_num=6");
	fx_arg(fx, "extra1");
	fx_arg(fx, "--rdma_use_polling");
	fx_arg(fx, "extra2");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(fx->cfg.subcommand, "config");
	assert_int_equal(fx->cfg.nargs, 2);
	assert_string_equal(fx->cfg.args[0], "extra1");
	/* args points into argv: the flags between stay where they were. */
	assert_ptr_equal(fx->cfg.args, &fx->argv[5]);
	assert_string_equal(flags_str(&fx->cfg.flags, "log_level"), "warn");
	assert_int_equal(flags_int(&fx->cfg.flags, "worker_num"), 6);
	assert_true(flags_bool(&fx->cfg.flags, "rdma_use_polling"));
}

static void test_subcommand_double_dash(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "config");
	fx_arg(fx, "--");
	fx_arg(fx, "--worker_num=9");
	fx_arg(fx, "x");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(fx->cfg.subcommand, "config");
	assert_int_equal(fx->cfg.nargs, 2);
	assert_string_equal(fx->cfg.args[0], "--worker_num=9");
	assert_string_equal(fx->cfg.args[1], "x");
	assert_int_equal(flags_int(&fx->cfg.flags, "worker_num"), 5);
	assert_string_equal(src_of(fx, "worker_num"), "default");
}

static void test_subcommand_after_double_dash(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "--log_level=debug");
	fx_arg(fx, "--");
	fx_arg(fx, "--version");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_no_diag(fx);
	assert_string_equal(fx->cfg.subcommand, "--version");
	assert_int_equal(fx->cfg.nargs, 0);
	assert_false(flags_bool(&fx->cfg.flags, "version"));
}

static void test_no_subcommand(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "--version");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_null(fx->cfg.subcommand);
	assert_int_equal(fx->cfg.nargs, 0);
	assert_null(fx->cfg.args);
	assert_true(flags_bool(&fx->cfg.flags, "version"));
}

static void test_dash_h_is_help(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "-h");
	assert_int_equal(fx_load(fx, 4), 0);
	assert_true(flags_bool(&fx->cfg.flags, "help"));
	assert_string_equal(src_of(fx, "help"), "command line --help");
	assert_null(fx->cfg.subcommand);
}

static void test_bad_arg_after_subcommand(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "config");
	fx_arg(fx, "--worker_num");
	fx_arg(fx, "--thread_budget=lenient");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 2);
	assert_string_equal(flags_diag(&fx->cfg.flags, 0),
			    "flag worker_num needs a value: "
			    "--worker_num=VALUE");
	assert_string_equal(flags_diag(&fx->cfg.flags, 1),
			    "bad value 'lenient' for flag thread_budget (from "
			    "command line --thread_budget): expected one of "
			    "strict, auto");
	assert_string_equal(fx->cfg.subcommand, "config");
}

/* ---- worker_num's default -------------------------------------------- */

static void test_worker_num_default(void **state)
{
	static const int ncpu[] = {1, 2, 3, 4, 7, 64, 1023};

	(void)state;
	for (size_t k = 0; k < sizeof(ncpu) / sizeof(ncpu[0]); k++) {
		struct fx *fx = fx_new();
		int want = ncpu[k] + 1 > 4 ? ncpu[k] + 1 : 4;
		const struct flag *f;
		char line[128], defval[16];

		fx_cmdline(fx, "");
		fx_arg(fx, "config");
		assert_int_equal(fx_load(fx, ncpu[k]), 0);
		assert_no_diag(fx);
		f = flags_find(&fx->cfg.flags, "worker_num");
		assert_int_equal(f->i, want);
		assert_int_equal(f->src, FLAG_SRC_DEFAULT);
		snprintf(defval, sizeof(defval), "%d", want);
		assert_string_equal(f->s, defval);
		assert_string_equal(f->defval, defval);
		assert_string_equal(src_of(fx, "worker_num"), "default");
		assert_int_equal(fx->cfg.budget.workers, want);
		assert_int_equal(fx->cfg.budget.task_workers, want - 1);
		snprintf(line, sizeof(line), "\n%-22s = %-16s # default\n",
			 "worker_num", defval);
		assert_contains(fx_print(fx, false), line);
		fx_free(fx);
	}
}

/* Overridden, worker_num keeps its computed default for --help. */
static void test_worker_num_default_overridden(void **state)
{
	struct fx *fx = *state;
	const struct flag *f;

	fx_cmdline(fx, "rpcgate.worker_num=5");
	fx_env(fx, "RPCGATE_WORKER_NUM=6");
	fx_arg(fx, "--worker_num=7");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 15), 0);
	f = flags_find(&fx->cfg.flags, "worker_num");
	assert_int_equal(f->i, 7);
	assert_string_equal(f->s, "7");
	assert_string_equal(f->defval, "16");
	assert_string_equal(src_of(fx, "worker_num"),
			    "command line --worker_num");
}

/* ---- the thread budget ----------------------------------------------- */

static void test_budget_refused_argv(void **state)
{
	struct fx *fx = *state;
	const char *out;

	fx_cmdline(fx, "");
	fx_arg(fx, "--event_dispatcher_num=12");
	fx_arg(fx, "--worker_num=12");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 8), -ERANGE);
	assert_true(fx->cfg.budget_refused);
	assert_no_diag(fx);
	assert_int_equal(fx->cfg.budget.task_workers, 0);
	out = fx_print(fx, true);
	assert_int_equal(strncmp(out, "rpcgate: thread budget refused: ", 32),
			 0);
	assert_contains(out, "event_dispatcher_num=12 (command line "
			     "--event_dispatcher_num)");
	assert_contains(out, "rdma_poller_num=1 (default; not counted because "
			     "rdma_use_polling=false)");
	assert_contains(out, "worker_num=12 (command line --worker_num)");
	assert_contains(out, "Fail to read Hello Message");
	assert_contains(out, "fix: --worker_num=13 or more");
	assert_contains(out, "--thread_budget=auto");
	/* The whole message made it through (no truncation). */
	assert_contains(out, "to raise worker_num to fit.\n");
	assert_int_equal(out[strlen(out) - 1], '\n');
}

static void test_budget_refused_sources(void **state)
{
	struct fx *fx = *state;
	const char *path, *out;
	char want[160];

	path = fx_cmdline(fx, "rpcgate.event_dispatcher_num=4 "
			      "rpcgate.rdma_use_polling=true");
	fx_env(fx, "RPCGATE_RDMA_POLLER_NUM=2");
	fx_arg(fx, "--worker_num=6");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 8), -ERANGE);
	assert_true(fx->cfg.budget_refused);
	out = fx_print(fx, true);
	snprintf(want, sizeof(want),
		 "event_dispatcher_num=4 (kernel command line "
		 "rpcgate.event_dispatcher_num (%s))",
		 path);
	assert_contains(out, want);
	assert_contains(out, "rdma_poller_num=2 (environment "
			     "RPCGATE_RDMA_POLLER_NUM; counted because "
			     "rdma_use_polling=true)");
	assert_contains(out, "worker_num=6 (command line --worker_num)");
	assert_contains(out, "fix: --worker_num=7 or more, or fewer event "
			     "dispatchers or rdma pollers");
	assert_contains(out, "to raise worker_num to fit.\n");
}

static void test_budget_refused_default_workers(void **state)
{
	struct fx *fx = *state;
	const char *out;

	fx_cmdline(fx, "");
	fx_env(fx, "RPCGATE_EVENT_DISPATCHER_NUM=4");
	assert_int_equal(fx_load(fx, 3), -ERANGE); /* W = 4 */
	out = fx_print(fx, true);
	assert_contains(out, "event_dispatcher_num=4 (environment "
			     "RPCGATE_EVENT_DISPATCHER_NUM)");
	assert_contains(out, "worker_num=4 (default)");
	assert_contains(out, "--worker_num=5 or more");
}

/* With errors in the flags the budget is not judged. */
static void test_budget_not_judged_after_errors(void **state)
{
	struct fx *fx = *state;

	fx_cmdline(fx, "");
	fx_arg(fx, "--event_dispatcher_num=12");
	fx_arg(fx, "--worker_num=12");
	fx_arg(fx, "--bogus=1");
	assert_int_equal(fx_load(fx, 8), -EINVAL);
	assert_false(fx->cfg.budget_refused);
	assert_null(strstr(fx_print(fx, true), "thread budget"));
}

/* A repeated flag from the kernel command line (the appliance's roles):
 * every value kept, one printed line each, each naming its source. */
static void test_print_repeated_flag(void **state)
{
	struct fx *fx = *state;
	const char *out;

	fx_cmdline(fx, "rpcgate.spawn=\"echo --port=1\" quiet "
		       "rpcgate.spawn=\"echo --port=2\"");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 2), 0);
	assert_no_diag(fx);
	assert_string_equal(flags_str(&fx->cfg.flags, "spawn"),
			    "echo --port=1\necho --port=2");
	out = fx_print(fx, false);
	assert_contains(out, "\nspawn                  = echo --port=1    # "
			     "kernel command line rpcgate.spawn");
	assert_contains(out, "\nspawn                  = echo --port=2    # "
			     "kernel command line rpcgate.spawn");
}

static void test_budget_auto_raises(void **state)
{
	struct fx *fx = *state;
	const char *out;

	fx_cmdline(fx, "");
	fx_arg(fx, "--thread_budget=auto");
	fx_arg(fx, "--event_dispatcher_num=12");
	fx_arg(fx, "--worker_num=12");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 2), 0);
	assert_false(fx->cfg.budget_refused);
	assert_true(fx->cfg.budget.raised);
	assert_int_equal(fx->cfg.budget.workers, 14);
	assert_int_equal(fx->cfg.budget.asked_workers, 12);
	out = fx_print(fx, false);
	assert_contains(out, "# thread budget: 14 threads = 12 event "
			     "dispatchers + 0 rdma pollers + 2 task workers "
			     "(thread_budget=auto, worker_num raised)\n");
	assert_contains(out, "# worker_num raised from 12 to 14 by "
			     "thread_budget=auto\n");
	/* The flag shows what was asked; the budget line what runs. */
	assert_contains(out, "\nworker_num             = 12               "
			     "# command line --worker_num\n");
}

/* ---- printing -------------------------------------------------------- */

#define HEADER "# every flag, its value, and where the value came from\n"

static void test_print_every_flag(void **state)
{
	struct fx *fx = *state;
	const char *path, *out, *p;
	char want[256];
	size_t lines = 0;

	path = fx_cmdline(fx, "rpcgate.event_dispatcher_num=2");
	fx_env(fx, "RPCGATE_RDMA_USE_POLLING=yes");
	fx_arg(fx, "--log_level=debug");
	fx_arg(fx, "config");
	assert_int_equal(fx_load(fx, 4), 0);
	out = fx_print(fx, false);
	assert_int_equal(strncmp(out, HEADER, strlen(HEADER)), 0);
	for (p = out; *p; p++)
		lines += *p == '\n';
	/* header + one line per flag + budget line */
	assert_int_equal(lines, app_flag_count + 2);
	for (size_t i = 0; i < app_flag_count; i++) {
		const struct flag *f = &fx->cfg.flags.v[i];
		char src[160];

		assert_ptr_equal(f->def, &app_flag_defs[i]);
		flags_describe_source(&fx->cfg.flags, f, src, sizeof(src));
		snprintf(want, sizeof(want), "\n%-22s = %-16s # %s\n",
			 app_flag_defs[i].name, f->s, src);
		assert_contains(out, want);
	}
	/* The sources by name, as an operator reads them. */
	assert_contains(out, "\nlog_level              = debug            "
			     "# command line --log_level\n");
	assert_contains(out, "\nrdma_use_polling       = yes              "
			     "# environment RPCGATE_RDMA_USE_POLLING\n");
	assert_contains(out, "\nthread_budget          = strict           "
			     "# default\n");
	assert_contains(out, "\nworker_num             = 5                "
			     "# default\n");
	snprintf(want, sizeof(want),
		 "\nevent_dispatcher_num   = 2                # kernel command "
		 "line rpcgate.event_dispatcher_num (%s)\n",
		 path);
	assert_contains(out, want);
	assert_contains(out, "# thread budget: 5 threads = 2 event dispatchers "
			     "+ 1 rdma poller + 2 task workers "
			     "(thread_budget=strict)\n");
	assert_null(strstr(out, "raised"));
}

/* ---- every mistake in one round -------------------------------------- */

static void test_errors_collected_across_sources(void **state)
{
	struct fx *fx = *state;
	const char *path, *out;
	char want[1024];

	path = fx_cmdline(fx, "rpcgate.worker_num=abc");
	fx_env(fx, "RPCGATE_LOG_LEVEL=loud");
	fx_env(fx, "RPCGATE_NOPE=1");
	fx_arg(fx, "--event_dispatcher_num=0");
	fx_arg(fx, "config");
	fx_arg(fx, "--worker_nun=3");
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), 5);
	out = fx_print(fx, true);
	snprintf(
	    want, sizeof(want),
	    "rpcgate: bad value 'abc' for flag worker_num (from kernel "
	    "command line rpcgate.worker_num (%s)): expected an integer "
	    "from 2 to 1024\n"
	    "rpcgate: bad value 'loud' for flag log_level (from "
	    "environment RPCGATE_LOG_LEVEL): expected one of debug, info, "
	    "warn, error\n"
	    "rpcgate: unknown flag 'nope' (from environment RPCGATE_NOPE); "
	    "'rpcgate --help' lists the flags\n"
	    "rpcgate: bad value '0' for flag event_dispatcher_num (from "
	    "command line --event_dispatcher_num): expected an integer "
	    "from 1 to 256\n"
	    "rpcgate: unknown flag 'worker_nun' (from command line "
	    "--worker_nun); did you mean 'worker_num'?\n",
	    path);
	assert_string_equal(out, want);
	assert_false(fx->cfg.budget_refused);
}

static void test_print_errors_overflow(void **state)
{
	struct fx *fx = *state;
	const char *out, *p;
	unsigned n = FLAGS_DIAG_MAX + 4, lines = 0;

	fx_cmdline(fx, "");
	for (unsigned i = 0; i < n; i++)
		fx_arg(fx, "--worker_num=%u", 2000 + i);
	assert_int_equal(fx_load(fx, 4), -EINVAL);
	assert_int_equal(flags_ndiag(&fx->cfg.flags), n);
	out = fx_print(fx, true);
	for (p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, FLAGS_DIAG_MAX + 1);
	assert_contains(out, "'2015' for flag worker_num");
	assert_null(strstr(out, "'2016'"));
	assert_contains(out, "\nrpcgate: ... and 4 more errors\n");
}

static void test_ncpu(void **state)
{
	int n = app_ncpu();

	(void)state;
	assert_true(n >= 1);
	assert_true(n <= CPU_SETSIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    cmocka_unit_test(test_four_sources_precedence),
	    T(test_four_sources_mixed),
	    T(test_cmdline_file_from_env),
	    T(test_cmdline_file_argv_wins_over_env),
	    T(test_cmdline_file_after_double_dash),
	    T(test_cmdline_file_missing_argv),
	    T(test_cmdline_file_missing_env),
	    T(test_cmdline_file_directory),
	    T(test_cmdline_file_empty_and_large),
	    T(test_cmdline_errors_name_the_file),
	    T(test_subcommand_flags_before_and_after),
	    T(test_subcommand_double_dash),
	    T(test_subcommand_after_double_dash),
	    T(test_no_subcommand),
	    T(test_dash_h_is_help),
	    T(test_bad_arg_after_subcommand),
	    cmocka_unit_test(test_worker_num_default),
	    T(test_worker_num_default_overridden),
	    T(test_budget_refused_argv),
	    T(test_budget_refused_sources),
	    T(test_budget_refused_default_workers),
	    T(test_budget_not_judged_after_errors),
	    T(test_budget_auto_raises),
	    T(test_print_every_flag),
	    T(test_errors_collected_across_sources),
	    T(test_print_errors_overflow),
	    T(test_print_repeated_flag),
	    cmocka_unit_test(test_ncpu),
#undef T
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
