/*
 * flagtab: every flag of rpcgate, in one table.  Modules keep their
 * options in their own structs; app/ maps these flags onto them.
 * Names follow brpc's where brpc has the same knob.
 */
#include "app.h"
#include "budget.h"

static const char *const budget_modes[] = {"strict", "auto", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error",
					 NULL};

const struct flag_def app_flag_defs[] = {
	/* thread budget (DESIGN.md, "Threads: the budget") */
	{
		.name = "worker_num",
		.type = FLAG_INT,
		.def = "4", /* replaced at start by cores + 1, at least 4 */
		.min = 2,
		.max = BUDGET_MAX_WORKERS,
		.help = "every runtime thread the process may run "
			"(default: cores + 1, at least 4)",
	},
	{
		.name = "event_dispatcher_num",
		.type = FLAG_INT,
		.def = "1",
		.min = 1,
		.max = BUDGET_MAX_DISPATCHERS,
		.help = "epoll event loops, each a thread taken from worker_num",
	},
	{
		.name = "rdma_poller_num",
		.type = FLAG_INT,
		.def = "1",
		.min = 1,
		.max = BUDGET_MAX_POLLERS,
		.help = "busy-polling CQ threads, taken from worker_num when "
			"rdma_use_polling is true",
	},
	{
		.name = "rdma_use_polling",
		.type = FLAG_BOOL,
		.def = "false",
		.help = "poll RDMA completion queues with busy threads instead "
			"of completion events",
	},
	{
		.name = "thread_budget",
		.type = FLAG_ENUM,
		.def = "strict",
		.choices = budget_modes,
		.help = "strict: refuse event_dispatcher_num + rdma_poller_num "
			">= worker_num; auto: raise worker_num to fit",
	},
	/* logging */
	{
		.name = "log_level",
		.type = FLAG_ENUM,
		.def = "info",
		.choices = log_levels,
		.runtime = true,
		.help = "lowest level of log lines written",
	},
	/* flag sources */
	{
		.name = "cmdline_file",
		.type = FLAG_STRING,
		.def = APP_KERNEL_CMDLINE,
		.expect = "a file path",
		.help = "where rpcgate.NAME=VALUE kernel arguments are read "
			"from",
	},
	/* informational */
	{
		.name = "help",
		.type = FLAG_BOOL,
		.def = "false",
		.help = "list subcommands and flags, then exit",
	},
	{
		.name = "version",
		.type = FLAG_BOOL,
		.def = "false",
		.help = "print the version, then exit",
	},
};

const size_t app_flag_count = sizeof(app_flag_defs) / sizeof(app_flag_defs[0]);
