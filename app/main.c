/*
 * rpcgate: one binary, several roles chosen by subcommand.
 *
 *   rpcgate [--FLAG=VALUE ...] SUBCOMMAND [--FLAG=VALUE ...]
 *
 * Flags come from the kernel command line, the environment and the
 * arguments (app/config.c); a configuration error of any source stops the
 * start with exit status 2 before any thread runs.
 */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef RPCGATE_VERSION
#define RPCGATE_VERSION "0.1.0"
#endif

extern char **environ;

struct subcommand {
	const char *name;
	const char *summary;
	int (*run)(struct app_config *cfg);
};

static int cmd_help(struct app_config *cfg);
static int cmd_version(struct app_config *cfg);
static int cmd_exit(struct app_config *cfg);

static const struct subcommand subcommands[] = {
    {"config",
     "check the configuration; print every flag, its value "
     "and source (exit 2 on errors)",
     app_cmd_config},
    {"rdma-info", "list RDMA devices, ports, GIDs and states",
     app_cmd_rdma_info},
    {"rdma-link",
     "delete an RDMA device (--delete=rxe0 [--after_ms=N]), as "
     "`rdma link delete` does, and add it back (--readd=eth0 "
     "[--readd_after_ms=M])",
     app_cmd_rdma_link},
    {"echo",
     "serve example.EchoService until SIGTERM/SIGINT "
     "(--port, --listen, ...)",
     app_cmd_echo},
    {"call",
     "one example.EchoService.Echo call to --server; print "
     "the answer",
     app_cmd_call},
    {"bench",
     "closed-loop load on --server's EchoService; qps and "
     "latency percentiles",
     app_cmd_bench},
    {"gateway",
     "forward baidu_std calls by service to upstream clusters "
     "(--listen, --route, ...) until SIGTERM/SIGINT",
     app_cmd_gateway},
    {"exit",
     "end at once with exit status --status (scripts, and the "
     "VM harness's pass-through check)",
     cmd_exit},
    {"help", "this text", cmd_help},
    {"version", "print the version", cmd_version},
};

#define NSUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void print_help(const struct app_config *cfg, FILE *out)
{
	char expect[256];

	fprintf(
	    out,
	    "usage: rpcgate [--FLAG=VALUE ...] SUBCOMMAND [--FLAG=VALUE ...]\n"
	    "\n"
	    "An RPC gateway speaking brpc's baidu_std over TCP and RDMA.\n"
	    "\nsubcommands:\n");
	for (size_t i = 0; i < NSUBCOMMANDS; i++)
		fprintf(out, "  %-12s %s\n", subcommands[i].name,
			subcommands[i].summary);
	fprintf(out,
		"\nflags (later sources win: default < kernel command line "
		"rpcgate.NAME=VALUE\n< environment RPCGATE_NAME=VALUE < "
		"arguments --NAME=VALUE):\n");
	for (size_t i = 0; i < cfg->flags.n; i++) {
		const struct flag *f = &cfg->flags.v[i];
		const struct flag_def *d = f->def;

		flag_describe_expect(d, expect, sizeof(expect));
		fprintf(out, "  --%s=%s\n      %s\n      (%s; default %s%s)\n",
			d->name,
			d->type == FLAG_BOOL  ? "BOOL"
			: d->type == FLAG_INT ? "N"
					      : "VALUE",
			d->help, expect, f->defval,
			d->runtime ? "; can change at run time" : "");
	}
	fprintf(out, "\nexit status: 0 ok, 1 failure, 2 configuration "
		     "error\n");
}

static int cmd_help(struct app_config *cfg)
{
	(void)cfg;
	print_help(cfg, stdout);
	return APP_EXIT_OK;
}

static int cmd_exit(struct app_config *cfg)
{
	return (int)flags_int(&cfg->flags, "status");
}

static int cmd_version(struct app_config *cfg)
{
	(void)cfg;
	printf("rpcgate %s\n", RPCGATE_VERSION);
	return APP_EXIT_OK;
}

int app_cmd_config(struct app_config *cfg)
{
	app_config_print(cfg, stdout);
	printf("configuration OK\n");
	return APP_EXIT_OK;
}

static const struct subcommand *find_subcommand(const char *name)
{
	for (size_t i = 0; i < NSUBCOMMANDS; i++)
		if (!strcmp(subcommands[i].name, name))
			return &subcommands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	/* stderr is unbuffered, and musl prints to an unbuffered stream in
	 * 80-byte pieces: the messages of two processes sharing a console
	 * (the roles of a VM) were cut into each other mid-line.  Line
	 * buffered, each line is one write(2). */
	static char err_buf[4096];
	const struct subcommand *cmd = NULL;
	struct app_config cfg;
	int err, status;
	/* The init of a VM: the kernel passes no subcommand.  PID 1 of a
	 * container is given one and runs it like any process. */
	bool pid1 = getpid() == 1 && argc == 1;

	setvbuf(stderr, err_buf, _IOLBF, sizeof(err_buf));
	if (pid1)
		app_pid1_early();
	err = app_config_load(&cfg, argc, argv, environ, app_ncpu());
	if (err == -ENOMEM) {
		fprintf(stderr, "rpcgate: out of memory at start\n");
		return APP_EXIT_FAILURE;
	}
	if (cfg.subcommand) {
		cmd = find_subcommand(cfg.subcommand);
		if (!cmd)
			flags_report(&cfg.flags,
				     "unknown subcommand '%s'; "
				     "'rpcgate help' lists them",
				     cfg.subcommand);
	}
	if (!err && cfg.nargs)
		flags_report(&cfg.flags, "unexpected argument '%s' after '%s'",
			     cfg.args[0], cfg.subcommand);
	if (!err && !cfg.budget_refused && flags_ndiag(&cfg.flags))
		err = -EINVAL;
	if (pid1)
		app_pid1_main(&cfg,
			      err || cfg.budget_refused ? APP_EXIT_CONFIG : 0);
	if (err) {
		app_config_print_errors(&cfg, stderr);
		status = APP_EXIT_CONFIG;
		goto out;
	}
	if (flags_bool(&cfg.flags, "help")) {
		status = cmd_help(&cfg);
		goto out;
	}
	if (flags_bool(&cfg.flags, "version")) {
		status = cmd_version(&cfg);
		goto out;
	}
	if (!cmd) {
		print_help(&cfg, stderr);
		status = APP_EXIT_CONFIG;
		goto out;
	}
	status = cmd->run(&cfg);
out:
	app_config_destroy(&cfg);
	return status;
}
