/*
 * Integration tests of the rpcgate binary's command line: exit statuses
 * (0 ok, 1 failure, 2 configuration error) and the text an operator reads.
 *
 * Runs the real static binary named by TEST_RPCGATE_BIN as a child
 * process with an environment built here (the caller's RPCGATE_* never
 * leak in), a kernel command line file of the test's own (so the host's
 * /proc/cmdline does not matter), stdout and stderr captured in temporary
 * files, and a time limit per run.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Each test bounds its own processes (RUN_TIMEOUT_MS); the alarm is a
 * backstop. */
#define TEST_TIMEOUT_S 120
#include "testutil.h"
#include "echo_proc.h"

/* A run that takes longer has hung: the CLI only reads its config. */
#define RUN_TIMEOUT_MS 10000
#define POLL_MS	       5
/* Captured output kept per stream; --help is about 2 KiB. */
#define OUT_MAX	     (256 * 1024)
#define MAX_ENV	     8
#define MAX_ARGS     16
#define TMP_TEMPLATE "/tmp/rpcgate-cli-XXXXXX"
/* util-linux's, to start a process with fewer capabilities. */
#define SETPRIV "/usr/bin/setpriv"

struct spec {
	const char *kernel;	    /* kernel command line file text */
	const char *env[MAX_ENV];   /* extra environment entries */
	const char *args[MAX_ARGS]; /* after argv[0] and --cmdline_file */
	bool cmdline_via_env;	    /* name the file in RPCGATE_CMDLINE_FILE */
};

struct run {
	int status;			    /* exit status */
	char cmdline[sizeof(TMP_TEMPLATE)]; /* the kernel file's path */
	char out[OUT_MAX];
	char err[OUT_MAX];
};

static int make_temp(char *path, const char *text)
{
	int fd;

	strcpy(path, TMP_TEMPLATE);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	if (text)
		assert_int_equal(write(fd, text, strlen(text)),
				 (ssize_t)strlen(text));
	return fd;
}

static void slurp(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	while ((n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	assert_true(n == 0);
	buf[len] = '\0';
	close(fd);
}

/* Waits for `pid` at most RUN_TIMEOUT_MS; kills it after. */
static int wait_bounded(pid_t pid, int *wstatus)
{
	struct timespec nap = {0, POLL_MS * 1000000L};

	for (int waited = 0; waited < RUN_TIMEOUT_MS; waited += POLL_MS) {
		pid_t r = waitpid(pid, wstatus, WNOHANG);

		if (r == pid)
			return 0;
		assert_true(r == 0 || (r < 0 && errno == EINTR));
		nanosleep(&nap, NULL);
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, wstatus, 0), pid);
	return -ETIMEDOUT;
}

static void run(struct run *r, const struct spec *s)
{
	const char *bin = test_rpcgate_bin();
	char *argv[MAX_ARGS + 3], *envp[MAX_ENV + 4];
	char outpath[sizeof(TMP_TEMPLATE)], errpath[sizeof(TMP_TEMPLATE)];
	char cmdarg[64], cmdenv[64];
	posix_spawn_file_actions_t fa;
	int kfd, ofd, efd, argc = 0, envc = 0, wstatus, err;
	pid_t pid;

	kfd = make_temp(r->cmdline, s->kernel ? s->kernel : "");
	close(kfd);
	ofd = make_temp(outpath, NULL);
	efd = make_temp(errpath, NULL);

	argv[argc++] = (char *)bin;
	snprintf(cmdarg, sizeof(cmdarg), "--cmdline_file=%s", r->cmdline);
	snprintf(cmdenv, sizeof(cmdenv), "RPCGATE_CMDLINE_FILE=%s", r->cmdline);
	if (!s->cmdline_via_env)
		argv[argc++] = cmdarg;
	for (int i = 0; i < MAX_ARGS && s->args[i]; i++)
		argv[argc++] = (char *)s->args[i];
	argv[argc] = NULL;
	/* The environment: nothing inherited. */
	envp[envc++] = "PATH=/usr/bin:/bin";
	envp[envc++] = "LC_ALL=C";
	if (s->cmdline_via_env)
		envp[envc++] = cmdenv;
	for (int i = 0; i < MAX_ENV && s->env[i]; i++)
		envp[envc++] = (char *)s->env[i];
	envp[envc] = NULL;

	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	assert_int_equal(
	    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0),
	    0);
	assert_int_equal(posix_spawn_file_actions_adddup2(&fa, ofd, 1), 0);
	assert_int_equal(posix_spawn_file_actions_adddup2(&fa, efd, 2), 0);
	err = posix_spawn(&pid, bin, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		fail_msg("cannot run %s: %s", bin, strerror(err));
	err = wait_bounded(pid, &wstatus);

	slurp(ofd, r->out, sizeof(r->out));
	slurp(efd, r->err, sizeof(r->err));
	unlink(outpath);
	unlink(errpath);
	unlink(r->cmdline);
	if (err)
		fail_msg("%s %s: killed after %d ms", bin,
			 s->args[0] ? s->args[0] : "", RUN_TIMEOUT_MS);
	if (WIFSIGNALED(wstatus))
		fail_msg("%s died of signal %d; stderr:\n%s", bin,
			 WTERMSIG(wstatus), r->err);
	assert_true(WIFEXITED(wstatus));
	r->status = WEXITSTATUS(wstatus);
}

/* Runs, and checks the exit status (printing the output when wrong). */
static struct run *expect_run(const struct spec *s, int status)
{
	struct run *r = malloc(sizeof(*r));

	assert_non_null(r);
	run(r, s);
	if (r->status != status) {
		int got = r->status;

		fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", r->out, r->err);
		free(r);
		fail_msg("exit status %d, want %d", got, status);
	}
	return r;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("'%s' not found in:\n%s", needle, hay);
}

static int ncpu(void)
{
	cpu_set_t set;

	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	return CPU_COUNT(&set);
}

/* ---- configuration errors: exit 2 ----------------------------------- */

static void test_budget_refused_brpc_case(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"--event_dispatcher_num=12",
					       "--worker_num=12", "config"}},
		       2);

	(void)state;
	assert_contains(r->err, "rpcgate: thread budget refused: ");
	assert_contains(r->err, "event_dispatcher_num=12 (command line "
				"--event_dispatcher_num)");
	assert_contains(r->err, "rdma_poller_num=1 (default; not counted");
	assert_contains(r->err, "worker_num=12 (command line --worker_num)");
	assert_contains(r->err, "Fail to read Hello Message");
	assert_contains(r->err, "--worker_num=13 or more");
	assert_contains(r->err, "--thread_budget=auto");
	assert_string_equal(r->out, "");
	free(r);
}

static void test_budget_refused_from_kernel_and_env(void **state)
{
	struct run *r = expect_run(
	    &(struct spec){.kernel = "ro rpcgate.event_dispatcher_num=3 "
				     "rpcgate.rdma_use_polling=true",
			   .env = {"RPCGATE_WORKER_NUM=4"},
			   .args = {"config"}},
	    2);
	char want[160];

	(void)state;
	snprintf(want, sizeof(want),
		 "event_dispatcher_num=3 (kernel command line "
		 "rpcgate.event_dispatcher_num (%s))",
		 r->cmdline);
	assert_contains(r->err, want);
	assert_contains(r->err, "rdma_poller_num=1 (default; counted because "
				"rdma_use_polling=true)");
	assert_contains(r->err, "worker_num=4 (environment "
				"RPCGATE_WORKER_NUM)");
	assert_contains(r->err, "--worker_num=5 or more");
	free(r);
}

static void test_bad_env_value(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.env = {"RPCGATE_WORKER_NUM=abc"},
				      .args = {"config"}},
		       2);

	(void)state;
	assert_string_equal(r->err,
			    "rpcgate: bad value 'abc' for flag worker_num "
			    "(from environment RPCGATE_WORKER_NUM): expected "
			    "an integer from 2 to 1024\n");
	assert_string_equal(r->out, "");
	free(r);
}

static void test_unknown_flag(void **state)
{
	struct run *r = expect_run(
	    &(struct spec){.args = {"--no_such_flag=1", "config"}}, 2);

	(void)state;
	assert_string_equal(r->err,
			    "rpcgate: unknown flag 'no_such_flag' (from "
			    "command line --no_such_flag); 'rpcgate --help' "
			    "lists the flags\n");
	free(r);
}

static void test_typo_suggestion(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"--worker_nun=3", "config"}}, 2);

	(void)state;
	assert_string_equal(r->err,
			    "rpcgate: unknown flag 'worker_nun' (from command "
			    "line --worker_nun); did you mean 'worker_num'?\n");
	free(r);
}

static void test_every_mistake_reported(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.kernel = "rpcgate.log_level=loud",
				      .env = {"RPCGATE_EVENT_DISPATCHER_NUM=0"},
				      .args = {"--worker_num", "config",
					       "--thread_budget=maybe"}},
		       2);
	char want[256];

	(void)state;
	snprintf(want, sizeof(want),
		 "rpcgate: bad value 'loud' for flag log_level (from kernel "
		 "command line rpcgate.log_level (%s)): expected one of "
		 "debug, info, warn, error\n",
		 r->cmdline);
	assert_contains(r->err, want);
	assert_contains(r->err, "rpcgate: bad value '0' for flag "
				"event_dispatcher_num (from environment "
				"RPCGATE_EVENT_DISPATCHER_NUM)");
	assert_contains(r->err, "rpcgate: flag worker_num needs a value: "
				"--worker_num=VALUE\n");
	assert_contains(r->err, "rpcgate: bad value 'maybe' for flag "
				"thread_budget (from command line "
				"--thread_budget): expected one of strict, "
				"auto\n");
	free(r);
}

static void test_missing_cmdline_file(void **state)
{
	struct run *r = expect_run(
	    &(struct spec){
		.args = {"--cmdline_file=/nonexistent/cmdline", "config"}},
	    2);

	(void)state;
	assert_string_equal(r->err, "rpcgate: cannot read cmdline_file "
				    "'/nonexistent/cmdline': No such file or "
				    "directory\n");
	free(r);
}

static void test_unknown_subcommand(void **state)
{
	struct run *r = expect_run(&(struct spec){.args = {"frobnicate"}}, 2);

	(void)state;
	assert_string_equal(r->err, "rpcgate: unknown subcommand 'frobnicate'; "
				    "'rpcgate help' lists them\n");
	assert_string_equal(r->out, "");
	free(r);
}

static void test_no_subcommand(void **state)
{
	struct run *r = expect_run(&(struct spec){.args = {NULL}}, 2);

	(void)state;
	assert_int_equal(strncmp(r->err, "usage: rpcgate ", 15), 0);
	assert_contains(r->err, "\n  config ");
	assert_string_equal(r->out, "");
	free(r);
}

static void test_stray_positional(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"config", "extra"}}, 2);

	(void)state;
	assert_string_equal(r->err, "rpcgate: unexpected argument 'extra' "
				    "after 'config'\n");
	assert_string_equal(r->out, "");
	free(r);
}

static void test_not_a_flag(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"config", "--=1"}}, 2);

	(void)state;
	assert_string_equal(r->err, "rpcgate: '--=1' is not a flag: flags are "
				    "written --NAME=VALUE\n");
	free(r);
}

/* ---- success: exit 0 -------------------------------------------------- */

static void test_budget_fits(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"--event_dispatcher_num=12",
					       "--worker_num=14", "config"}},
		       0);

	(void)state;
	assert_contains(r->out, "# thread budget: 14 threads = 12 event "
				"dispatchers + 0 rdma pollers + 2 task workers "
				"(thread_budget=strict)\n");
	assert_contains(r->out, "\nconfiguration OK\n");
	assert_string_equal(r->err, "");
	free(r);
}

static void test_budget_auto_raises(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.args = {"--thread_budget=auto",
					       "--event_dispatcher_num=12",
					       "--worker_num=12", "config"}},
		       0);
	int n = ncpu(), w = 12 + (n > 2 ? n : 2);
	char want[128];

	(void)state;
	snprintf(want, sizeof(want),
		 "# worker_num raised from 12 to %d by "
		 "thread_budget=auto\n",
		 w);
	assert_contains(r->out, want);
	assert_contains(r->out, "(thread_budget=auto, worker_num raised)");
	assert_contains(r->out, "configuration OK");
	assert_string_equal(r->err, "");
	free(r);
}

static void test_config_lists_every_flag(void **state)
{
	static const char *const names[] = {
	    "worker_num",      "event_dispatcher_num",
	    "rdma_poller_num", "rdma_use_polling",
	    "thread_budget",   "log_level",
	    "cmdline_file",    "help",
	    "version",
	};
	struct run *r = expect_run(&(struct spec){.args = {"config"}}, 0);
	int n = ncpu(), w = n + 1 > 4 ? n + 1 : 4;
	char want[128];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(want, sizeof(want), "\n%-22s = ", names[i]);
		assert_contains(r->out, want);
	}
	snprintf(want, sizeof(want), "\n%-22s = %-16d # default\n",
		 "worker_num", w);
	assert_contains(r->out, want);
	snprintf(want, sizeof(want),
		 "\n%-22s = %-16s # command line "
		 "--cmdline_file\n",
		 "cmdline_file", r->cmdline);
	assert_contains(r->out, want);
	free(r);
}

static void test_kernel_cmdline_source(void **state)
{
	struct run *r =
	    expect_run(&(struct spec){.kernel = "BOOT_IMAGE=/vmlinuz ro quiet "
						"rpcgate.log_level=debug "
						"console=ttyS0\n",
				      .args = {"config"}},
		       0);
	char want[160];

	(void)state;
	snprintf(want, sizeof(want),
		 "\n%-22s = %-16s # kernel command line "
		 "rpcgate.log_level (%s)\n",
		 "log_level", "debug", r->cmdline);
	assert_contains(r->out, want);
	free(r);
}

static void test_kernel_cmdline_via_env(void **state)
{
	struct run *r = expect_run(
	    &(struct spec){.kernel = "rpcgate.event_dispatcher_num=2",
			   .cmdline_via_env = true,
			   .args = {"config"}},
	    0);
	char want[160];

	(void)state;
	snprintf(want, sizeof(want),
		 "\n%-22s = %-16s # kernel command line "
		 "rpcgate.event_dispatcher_num (%s)\n",
		 "event_dispatcher_num", "2", r->cmdline);
	assert_contains(r->out, want);
	assert_contains(r->out, "# environment RPCGATE_CMDLINE_FILE\n");
	free(r);
}

struct prec_case {
	const char *kernel, *env, *arg;
	const char *want;   /* log_level's value */
	const char *source; /* its source, as printed ("" for the kernel's) */
};

static void test_precedence(void **state)
{
	static const struct prec_case cases[] = {
	    {NULL, NULL, NULL, "info", "default"},
	    {"rpcgate.log_level=debug", NULL, NULL, "debug", ""},
	    {"rpcgate.log_level=debug", "RPCGATE_LOG_LEVEL=warn", NULL, "warn",
	     "environment RPCGATE_LOG_LEVEL"},
	    {"rpcgate.log_level=debug", "RPCGATE_LOG_LEVEL=warn",
	     "--log_level=error", "error", "command line --log_level"},
	    {"rpcgate.log_level=debug", NULL, "--log_level=error", "error",
	     "command line --log_level"},
	    {NULL, "RPCGATE_LOG_LEVEL=warn", "--log_level=error", "error",
	     "command line --log_level"},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct prec_case *c = &cases[k];
		struct spec s = {.kernel = c->kernel, .env = {c->env}};
		struct run *r;
		char want[200], src[120];
		int a = 0;

		if (c->arg)
			s.args[a++] = c->arg;
		s.args[a++] = "config";
		r = expect_run(&s, 0);
		if (*c->source)
			snprintf(src, sizeof(src), "%s", c->source);
		else
			snprintf(src, sizeof(src),
				 "kernel command line "
				 "rpcgate.log_level (%s)",
				 r->cmdline);
		snprintf(want, sizeof(want), "\n%-22s = %-16s # %s\n",
			 "log_level", c->want, src);
		assert_contains(r->out, want);
		free(r);
	}
}

/* The harness's own environment never reaches the binary. */
static void test_caller_environment_not_inherited(void **state)
{
	struct run *r;

	(void)state;
	assert_int_equal(setenv("RPCGATE_WORKER_NUM", "abc", 1), 0);
	r = expect_run(&(struct spec){.args = {"config"}}, 0);
	unsetenv("RPCGATE_WORKER_NUM");
	assert_null(strstr(r->out, "environment"));
	free(r);
}

static void test_help(void **state)
{
	static const char *const forms[][2] = {
	    {"--help", NULL},
	    {"help", NULL},
	    {"-h", NULL},
	    {"config", "--help"},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
		struct run *r = expect_run(
		    &(struct spec){.args = {forms[k][0], forms[k][1]}}, 0);
		int n = ncpu(), w = n + 1 > 4 ? n + 1 : 4;
		char want[160];

		assert_int_equal(strncmp(r->out, "usage: rpcgate ", 15), 0);
		assert_contains(r->out, "\n  config ");
		assert_contains(r->out, "\n  rdma-info ");
		assert_contains(r->out, "\n  --worker_num=N\n");
		assert_contains(r->out, "\n  --thread_budget=VALUE\n");
		/* The default shown is the computed one. */
		snprintf(want, sizeof(want),
			 "(an integer from 2 to 1024; "
			 "default %d)",
			 w);
		assert_contains(r->out, want);
		assert_contains(r->out, "exit status: 0 ok, 1 failure, 2 "
					"configuration error\n");
		assert_string_equal(r->err, "");
		free(r);
	}
}

static void test_version(void **state)
{
	static const char *const forms[] = {"version", "--version"};
	regex_t re;

	(void)state;
	assert_int_equal(regcomp(&re,
				 "^rpcgate [0-9]+\\.[0-9]+\\.[0-9]+"
				 "[^\n]*\n$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
		struct run *r =
		    expect_run(&(struct spec){.args = {forms[k]}}, 0);

		if (regexec(&re, r->out, 0, NULL, 0))
			fail_msg("version output: '%s'", r->out);
		assert_string_equal(r->err, "");
		free(r);
	}
	regfree(&re);
}

/* ---- run-time failure: exit 1 ----------------------------------------- */

/* A route's option values are read as flags' are; a bad one is refused
 * at start with the route, value and option named. */
static void test_gateway_bad_route_value(void **state)
{
	struct run *r;

	(void)state;
	r = expect_run(
	    &(struct spec){.args = {"gateway", "--listen=127.0.0.1:0",
				    "--route=example.EchoService=list://"
				    "127.0.0.1:9;circuit_breaker=maybe"}},
	    2);
	assert_contains(r->err, "route example.EchoService: bad value "
				"\"maybe\" for circuit_breaker");
	free(r);
	r = expect_run(
	    &(struct spec){.args = {"gateway", "--listen=127.0.0.1:0",
				    "--route=example.EchoService=list://"
				    "127.0.0.1:9;max_retry=2x"}},
	    2);
	assert_contains(r->err, "bad value \"2x\" for max_retry");
	free(r);
}

/* bench --oneway against echo --discard: the payload goes one way, as an
 * attachment, and the answers come back empty.  Deadlines of 5 s, past
 * any stall of a loaded machine: a wrong answer is an error whatever
 * the deadline. */
static void test_bench_oneway(void **state)
{
	struct echo_proc discard, echo;
	char server[64];
	struct run *r;

	(void)state;
	echo_proc_start(&discard, (const char *[]){"--discard=true", NULL});
	echo_proc_start(&echo, NULL);
	snprintf(server, sizeof(server), "--server=%s", discard.addr);
	r = expect_run(
	    &(struct spec){.args = {"bench", server, "--oneway=true",
				    "--payload=300000", "--concurrency=4",
				    "--duration=1", "--timeout_ms=5000",
				    "--json"}},
	    0);
	assert_contains(r->out, "\"errors\":0,");
	assert_contains(r->out, "\"oneway\":true,");
	assert_null(strstr(r->out, "\"calls\":0,"));
	free(r);

	/* An echo that sends the bytes back: every answer is wrong. */
	snprintf(server, sizeof(server), "--server=%s", echo.addr);
	r = expect_run(&(struct spec){.args = {"bench", server, "--oneway=true",
					       "--payload=1000", "--duration=1",
					       "--timeout_ms=5000"}},
		       1);
	assert_contains(r->err, "first wrong answer: 1000 of 1000 bytes sent, "
				"1000 came back (--oneway wants an empty "
				"answer: echo --discard=true)");
	free(r);

	r = expect_run(&(struct spec){.args = {"bench", server, "--oneway=true",
					       "--verify=true"}},
		       2);
	assert_contains(r->err, "--oneway and --verify do not go together");
	free(r);
	assert_int_equal(echo_proc_stop(&discard), 0);
	assert_int_equal(echo_proc_stop(&echo), 0);
}

/* "Uid:" (or another key) of /proc/PID/status: the line's rest. */
static void proc_status(pid_t pid, const char *key, char *buf, size_t size)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	assert_non_null(f);
	buf[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			snprintf(buf, size, "%s", line + strlen(key));
			break;
		}
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

/* Asserts the rest of /proc/PID/status's line `key`. */
static void assert_status(pid_t pid, const char *key, const char *want)
{
	char buf[128];

	proc_status(pid, key, buf, sizeof(buf));
	assert_string_equal(buf, want);
}

/* A free TCP port below 1024 on loopback, or 0. */
static int free_low_port(void)
{
	for (int port = 1023; port >= 900; port--) {
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr =
					    htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool ok = fd >= 0 && !bind(fd, (void *)&a, sizeof(a));

		if (fd >= 0)
			close(fd);
		if (ok)
			return port;
	}
	return 0;
}

/*
 * echo --user: as root, the echo runs as uid/gid 65534 with
 * CAP_NET_BIND_SERVICE only, still binds a port below 1024, and answers;
 * as anyone else it says it cannot become root.  An unknown name or group
 * is a configuration error.
 */
static void test_user(void **state)
{
	struct echo_proc echo;
	char port[32], server[64], buf[128];
	struct run *r;
	int low;

	(void)state;
	r = expect_run(&(struct spec){.args = {"echo", "--port=0",
					       "--user=rpcgate-no-such-user"}},
		       2);
	assert_contains(r->err, "rpcgate echo: --user=rpcgate-no-such-user: "
				"no user \"rpcgate-no-such-user\" in "
				"/etc/passwd (a number works without it)");
	free(r);
	r = expect_run(&(struct spec){.args = {"gateway", "--port=0",
					       "--user=0:rpcgate-no-group"}},
		       2);
	assert_contains(r->err, "no group \"rpcgate-no-group\" in /etc/group");
	free(r);
	r = expect_run(&(struct spec){.args = {"echo", "--user=a b"}}, 2);
	assert_contains(r->err, "expected USER or USER:GROUP");
	free(r);
	if (geteuid() != 0) {
		/* Not root: it cannot become root. */
		r = expect_run(
		    &(struct spec){.args = {"echo", "--port=0", "--user=0:0"}},
		    1);
		assert_contains(r->err, "rpcgate echo: --user: cannot become "
					"uid 0 gid 0: Operation not "
					"permitted (only root can change its "
					"user)");
		free(r);
		/* Its own user: nothing to change, it serves. */
		snprintf(buf, sizeof(buf), "--user=%u:%u", (unsigned)getuid(),
			 (unsigned)getgid());
		echo_proc_start(&echo, (const char *[]){buf, NULL});
		assert_int_equal(echo_proc_stop(&echo), 0);
		return;
	}
	low = free_low_port();
	assert_true(low > 0);
	snprintf(port, sizeof(port), "--port=%d", low);
	echo_proc_start(&echo,
			(const char *[]){"--user=65534:65534", port, NULL});
	assert_int_equal(echo.port, low);
	assert_status(echo.pid, "Uid:", "\t65534\t65534\t65534\t65534");
	assert_status(echo.pid, "Gid:", "\t65534\t65534\t65534\t65534");
	/* No supplementary groups: the kernel's line is a tab and a
	 * space. */
	proc_status(echo.pid, "Groups:", buf, sizeof(buf));
	assert_true(strspn(buf, "\t ") == strlen(buf));
	/* CAP_NET_BIND_SERVICE, bit 10, and nothing else. */
	assert_status(echo.pid, "CapEff:", "\t0000000000000400");
	assert_status(echo.pid, "CapPrm:", "\t0000000000000400");
	assert_status(echo.pid, "NoNewPrivs:", "\t1");
	snprintf(server, sizeof(server), "--server=%s", echo.addr);
	r = expect_run(
	    &(struct spec){.args = {"call", server, "--message=as nobody",
				    "--timeout_ms=5000"}},
	    0);
	assert_string_equal(r->out, "message: as nobody\n");
	free(r);
	assert_int_equal(echo_proc_stop(&echo), 0);

	/* Started without CAP_NET_BIND_SERVICE (a container that dropped
	 * it): nothing to keep, and still a user. */
	if (access(SETPRIV, X_OK))
		fail_msg("%s is missing (util-linux)", SETPRIV);
	echo_proc_start_wrapped(
	    &echo,
	    (const char *[]){SETPRIV, "--bounding-set=-net_bind_service", NULL},
	    "echo", ECHO_READY_PREFIX, (const char *[]){"--user=65534", NULL});
	assert_status(echo.pid, "Uid:", "\t65534\t65534\t65534\t65534");
	assert_status(echo.pid, "CapEff:", "\t0000000000000000");
	assert_status(echo.pid, "CapPrm:", "\t0000000000000000");
	assert_int_equal(echo_proc_stop(&echo), 0);
}

static void test_rdma_info_without_devices(void **state)
{
	struct stat st;
	struct run *r;

	(void)state;
	if (!stat("/sys/class/infiniband", &st)) {
		/* This host has RDMA devices: the case is not testable. */
		skip();
	}
	r = expect_run(&(struct spec){.args = {"rdma-info"}}, 1);
	assert_contains(r->err, "rpcgate: no RDMA devices found");
	assert_contains(r->err, "rdma_rxe");
	assert_string_equal(r->out, "");
	free(r);
}

/* ---- output ---------------------------------------------------------- */

/*
 * Every write(2) to stderr holds whole lines.  stderr is a SEQPACKET
 * socket here, which keeps each write a packet of its own: an
 * unbuffered stderr under musl arrives in 80-byte pieces, and two
 * processes sharing a console (a VM's roles) cut into each other's
 * lines.  The budget refusal prints several lines of more than 80 bytes.
 */
static void test_stderr_whole_lines(void **state)
{
	const char *bin = test_rpcgate_bin();
	char *argv[] = {(char *)bin,
			"--cmdline_file=/dev/null",
			"--event_dispatcher_num=12",
			"--worker_num=12",
			"config",
			NULL};
	char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
	posix_spawn_file_actions_t fa;
	static char pkt[65536];
	char all[16384] = "";
	int sv[2], wstatus, packets = 0, longest = 0;
	size_t used = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	assert_int_equal(posix_spawn_file_actions_adddup2(&fa, sv[1], 2), 0);
	assert_int_equal(posix_spawn_file_actions_addclose(&fa, sv[0]), 0);
	assert_int_equal(posix_spawn(&pid, bin, &fa, NULL, argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	for (;;) {
		struct pollfd p = {.fd = sv[0], .events = POLLIN};
		ssize_t n;

		assert_int_equal(poll(&p, 1, RUN_TIMEOUT_MS), 1);
		n = recv(sv[0], pkt, sizeof(pkt), 0);
		assert_true(n >= 0);
		if (n == 0)
			break;
		packets++;
		if (n > longest)
			longest = (int)n;
		if (pkt[n - 1] != '\n')
			fail_msg("write %d to stderr ends mid-line: '%.*s'",
				 packets, (int)n, pkt);
		assert_true(used + (size_t)n < sizeof(all));
		memcpy(all + used, pkt, (size_t)n);
		used += (size_t)n;
		all[used] = '\0';
	}
	close(sv[0]);
	assert_int_equal(wait_bounded(pid, &wstatus), 0);
	assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 2);
	assert_contains(all, "rpcgate: thread budget refused: ");
	assert_contains(all, "--thread_budget=auto");
	assert_true(longest > 80);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_budget_refused_brpc_case),
	    cmocka_unit_test(test_budget_refused_from_kernel_and_env),
	    cmocka_unit_test(test_bad_env_value),
	    cmocka_unit_test(test_unknown_flag),
	    cmocka_unit_test(test_typo_suggestion),
	    cmocka_unit_test(test_every_mistake_reported),
	    cmocka_unit_test(test_missing_cmdline_file),
	    cmocka_unit_test(test_unknown_subcommand),
	    cmocka_unit_test(test_no_subcommand),
	    cmocka_unit_test(test_stray_positional),
	    cmocka_unit_test(test_not_a_flag),
	    cmocka_unit_test(test_budget_fits),
	    cmocka_unit_test(test_budget_auto_raises),
	    cmocka_unit_test(test_config_lists_every_flag),
	    cmocka_unit_test(test_kernel_cmdline_source),
	    cmocka_unit_test(test_kernel_cmdline_via_env),
	    cmocka_unit_test(test_precedence),
	    cmocka_unit_test(test_caller_environment_not_inherited),
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_version),
	    cmocka_unit_test(test_rdma_info_without_devices),
	    cmocka_unit_test(test_user),
	    cmocka_unit_test(test_bench_oneway),
	    cmocka_unit_test(test_gateway_bad_route_value),
	    cmocka_unit_test(test_stderr_whole_lines),
	};

	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
