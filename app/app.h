/*
 * app: the appliance's start-up: flag table, configuration loading, and
 * the subcommands of the one binary.  Private to app/.
 *
 * Exit statuses of the binary: 0 success, 1 a run-time failure, 2 a
 * configuration error (bad flag, bad value, refused thread budget).
 */
#ifndef RPCGATE_APP_H
#define RPCGATE_APP_H

#include <stdbool.h>
#include <stdio.h>

#include "budget.h"
#include "flags.h"
#include "log.h"

#define APP_EXIT_OK 0
#define APP_EXIT_FAILURE 1
#define APP_EXIT_CONFIG 2

/* Where the kernel command line is read from unless --cmdline_file says. */
#define APP_KERNEL_CMDLINE "/proc/cmdline"

extern const struct flag_def app_flag_defs[];
extern const size_t app_flag_count;

struct app_config {
	struct flags flags;
	struct budget_input budget_in;
	struct budget budget;
	const char *subcommand; /* NULL when none was given */
	char **args;            /* positional arguments after it */
	int nargs;
	int ncpu;
	bool budget_refused;    /* strict budget broke the rule */
};

/*
 * Loads every source in order (defaults, kernel command line, environment
 * `envp`, arguments) and resolves the thread budget.  0; -EINVAL when a
 * flag or argument is wrong (lines in cfg->flags' diagnostics); -ERANGE
 * when the budget is refused; -ENOMEM.  After any return but -ENOMEM the
 * caller must app_config_destroy().
 */
int app_config_load(struct app_config *cfg, int argc, char **argv,
		    char **envp, int ncpu);
void app_config_destroy(struct app_config *cfg);

/* Prints why the load failed: every diagnostic, or the budget refusal. */
void app_config_print_errors(const struct app_config *cfg, FILE *out);

/* Every flag with its value and source, then the budget line. */
void app_config_print(const struct app_config *cfg, FILE *out);

/* Cores this process may run on (affinity mask), at least 1. */
int app_ncpu(void);

/* Subcommands: each returns an exit status. */
int app_cmd_config(struct app_config *cfg);
int app_cmd_rdma_info(struct app_config *cfg);

#endif
