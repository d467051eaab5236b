/*
 * config: loads the flag sources in order and resolves the thread budget.
 *
 *   1. defaults (worker_num's computed from the cores)
 *   2. the kernel command line: rpcgate.NAME=VALUE in /proc/cmdline, or
 *      in the file --cmdline_file / RPCGATE_CMDLINE_FILE names (tests)
 *   3. the environment: RPCGATE_NAME=VALUE
 *   4. arguments: --NAME=VALUE, before or after the subcommand
 *
 * Every mistake of every source is collected before the start stops, so
 * an operator fixes them in one round.
 */
#define _GNU_SOURCE
#include "app.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/cmdline is at most a page on x86 (COMMAND_LINE_SIZE 2048, or
 * 4096 with newer configs); a file of this size or more is not one. */
#define CMDLINE_MAX 65536

int app_ncpu(void)
{
	cpu_set_t set;
	long n;

	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* The kernel command line file: --cmdline_file wins over the
 * environment, which wins over the default.  Found before any source is
 * loaded, because it decides where the second source is. */
static const char *cmdline_path(int argc, char **argv, char **envp)
{
	static const char opt[] = "--cmdline_file=";
	static const char env[] = "RPCGATE_CMDLINE_FILE=";
	const char *path = NULL;

	for (; envp && *envp; envp++)
		if (!strncmp(*envp, env, sizeof(env) - 1))
			path = *envp + sizeof(env) - 1;
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strncmp(argv[i], opt, sizeof(opt) - 1))
			path = argv[i] + sizeof(opt) - 1;
	return path;
}

/* Reads the whole file into a NUL-terminated heap buffer; -errno. */
static int read_file(const struct mem *m, const char *path, char **out)
{
	size_t len = 0, cap = 4096;
	char *buf = mem_alloc(m, cap + 1), *bigger;
	ssize_t n;
	int fd, err = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out_free;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CMDLINE_MAX) {
				err = -EFBIG;
				goto out_close;
			}
			bigger = mem_alloc(m, cap * 2 + 1);
			if (!bigger) {
				err = -ENOMEM;
				goto out_close;
			}
			memcpy(bigger, buf, len);
			mem_free(m, buf);
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	return 0;

out_close:
	close(fd);
out_free:
	mem_free(m, buf);
	return err;
}

static int load_kernel_cmdline(struct app_config *cfg, const char *path,
			       bool explicit)
{
	char *text = NULL;
	int err = read_file(cfg->flags.mem, path, &text);

	if (err == -ENOMEM)
		return err;
	if (err) {
		/* Outside Linux or without /proc nothing is lost by skipping
		 * the default; a file the operator named must be there. */
		if (!explicit)
			return 0;
		flags_report(&cfg->flags, "cannot read cmdline_file '%s': %s",
			     path, strerror(-err));
		return -EINVAL;
	}
	err = flags_load_cmdline(&cfg->flags, text, path);
	mem_free(cfg->flags.mem, text);
	return err;
}

static int load_args(struct app_config *cfg, int argc, char **argv)
{
	int err = 0, r, i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h"))
			a = "--help";
		if (!strncmp(a, "--", 2)) {
			r = flags_load_arg(&cfg->flags, a);
			if (r == -ENOMEM)
				return r;
			if (r && !err)
				err = r;
			continue;
		}
		if (!cfg->subcommand) {
			cfg->subcommand = a;
			continue;
		}
		if (!cfg->args)
			cfg->args = &argv[i];
		cfg->nargs++;
	}
	/* After "--" everything is positional. */
	for (; i < argc; i++) {
		if (!cfg->subcommand) {
			cfg->subcommand = argv[i];
			continue;
		}
		if (!cfg->args)
			cfg->args = &argv[i];
		cfg->nargs++;
	}
	return err;
}

static void budget_input_from_flags(const struct flags *fl, int ncpu,
				    struct budget_input *in)
{
	in->worker_num = (int)flags_int(fl, "worker_num");
	in->event_dispatcher_num = (int)flags_int(fl, "event_dispatcher_num");
	in->rdma_poller_num = (int)flags_int(fl, "rdma_poller_num");
	in->rdma_use_polling = flags_bool(fl, "rdma_use_polling");
	in->mode = flags_int(fl, "thread_budget") ? BUDGET_AUTO : BUDGET_STRICT;
	in->ncpu = ncpu;
}

int app_config_load(struct app_config *cfg, int argc, char **argv, char **envp,
		    int ncpu)
{
	const char *path = cmdline_path(argc, argv, envp);
	char def[16];
	int err, first = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->ncpu = ncpu;
	err = flags_init(&cfg->flags, app_flag_defs, app_flag_count, NULL);
	if (err)
		return err;
	snprintf(def, sizeof(def), "%d", budget_default_workers(ncpu));
	err = flags_set(&cfg->flags, "worker_num", strlen("worker_num"), def,
			FLAG_SRC_DEFAULT);
	if (err)
		return err;

	err = load_kernel_cmdline(cfg, path ? path : APP_KERNEL_CMDLINE,
				  path != NULL);
	if (err == -ENOMEM)
		return err;
	first = err;
	err = flags_load_env(&cfg->flags, envp);
	if (err == -ENOMEM)
		return err;
	first = first ? first : err;
	err = load_args(cfg, argc, argv);
	if (err == -ENOMEM)
		return err;
	first = first ? first : err;
	if (first || flags_ndiag(&cfg->flags))
		return -EINVAL;

	budget_input_from_flags(&cfg->flags, ncpu, &cfg->budget_in);
	err = budget_resolve(&cfg->budget_in, &cfg->budget);
	if (err == -ERANGE)
		cfg->budget_refused = true;
	return err;
}

void app_config_destroy(struct app_config *cfg)
{
	flags_destroy(&cfg->flags);
}

void app_config_print_errors(const struct app_config *cfg, FILE *out)
{
	const struct flags *fl = &cfg->flags;
	char w[96], d[96], p[96], msg[1024];
	unsigned i, n = flags_ndiag(fl);

	for (i = 0; i < n && i < FLAGS_DIAG_MAX; i++)
		fprintf(out, "rpcgate: %s\n", flags_diag(fl, i));
	if (n > FLAGS_DIAG_MAX)
		fprintf(out, "rpcgate: ... and %u more errors\n",
			n - FLAGS_DIAG_MAX);
	if (cfg->budget_refused) {
		struct budget_sources src = {w, d, p};

		flags_describe_source(fl, flags_find(fl, "worker_num"), w,
				      sizeof(w));
		flags_describe_source(
		    fl, flags_find(fl, "event_dispatcher_num"), d, sizeof(d));
		flags_describe_source(fl, flags_find(fl, "rdma_poller_num"), p,
				      sizeof(p));
		budget_explain_refusal(&cfg->budget_in, &src, msg, sizeof(msg));
		fprintf(out, "rpcgate: %s\n", msg);
	}
}

void app_config_print(const struct app_config *cfg, FILE *out)
{
	const struct flags *fl = &cfg->flags;
	char src[160], line[256];

	fprintf(out,
		"# every flag, its value, and where the value came from\n");
	for (size_t i = 0; i < fl->n; i++) {
		const struct flag *f = &fl->v[i];

		const char *v = f->s;

		flags_describe_source(fl, f, src, sizeof(src));
		/* A repeated flag (--spawn): one line per value given. */
		do {
			int len = (int)strcspn(v, "\n");

			fprintf(out, "%-22s = %-16.*s # %s\n", f->def->name,
				len, v, src);
			v += len;
		} while (*v++);
	}
	budget_describe(&cfg->budget, cfg->budget_in.mode, line, sizeof(line));
	fprintf(out, "# thread budget: %s\n", line);
	if (cfg->budget.raised)
		fprintf(out,
			"# worker_num raised from %d to %d by "
			"thread_budget=auto\n",
			cfg->budget.asked_workers, cfg->budget.workers);
}
