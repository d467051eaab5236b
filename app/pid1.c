/*
 * pid1: rpcgate as the whole userland of a VM (DESIGN.md, "The appliance").
 *
 * The kernel starts the binary as /init with no arguments.  Then, in order:
 *
 *   1. app_pid1_early(), before the configuration is read (it needs
 *      /proc/cmdline): mounts /proc, /sys, /dev (devtmpfs), /tmp and gives
 *      fds 0-2 the console;
 *   2. app_pid1_main(): loads the modules /etc/rpcgate/modules lists, in
 *      that order (the image resolved the dependencies at build time), with
 *      finit_module; sets lo up and --nic with --ip and --gateway
 *      (rtnetlink); creates rxe0 over --rxe (RDMA netlink) and waits for
 *      its port to be ACTIVE; starts every --spawn role and the --run role;
 *   3. waits: reaps every child (orphans included; a role's status is
 *      read by this same loop, so none is stolen), logs roles that end,
 *      and on the --run role's end, on SIGTERM, SIGINT or SIGPWR (the
 *      kernel turns Ctrl-Alt-Del into SIGINT) stops the roles (SIGTERM,
 *      then SIGKILL after --shutdown_grace_ms), syncs, reports the status
 *      through QEMU's isa-debug-exit port and powers off.  It never exits:
 *      the kernel panics when init does.
 *
 * The VM's status: the --run role's exit status (0-126), 127 when it was
 * killed by a signal or exited above 126; 1 when the set-up failed, 2
 * for a configuration error.  Without --run and without a failure nothing
 * is reported and QEMU sees a plain power-off.
 *
 * The --run role writes to /dev/ttyS1 when the VM has a second serial
 * port (scripts/vm gives it one, so the role's output reaches the
 * harness's stdout apart from the console's); everything else writes to
 * the console.
 */
#define _GNU_SOURCE
#include "app.h"
#include "netcfg.h"
#include "rdt_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The image's module list: one path per line, dependencies first. */
#define MODULE_LIST "/etc/rpcgate/modules"
/* QEMU's -device isa-debug-exit,iobase=0xf4: a byte v written there ends
 * QEMU with status (v << 1) | 1. */
#define DEBUG_EXIT_PORT 0xf4
/* The --run role's own output, when the VM has that serial port. */
#define RUN_TTY	 "/dev/ttyS1"
#define RXE_NAME "rxe0"
/* Words in one role's command line. */
#define ROLE_ARGS_MAX 64
/* Roles: --run and the --spawn ones. */
#define ROLES_MAX 16
/* How often the rxe port's state is looked at while waiting. */
#define RXE_POLL_MS 100
/* Status for a set-up failure and for a role killed by a signal. */
#define STATUS_SETUP	 1
#define STATUS_SIGNALLED 127

struct role {
	const char *line; /* as given */
	pid_t pid;	  /* 0: not running */
	bool is_run;
};

struct init {
	struct role roles[ROLES_MAX];
	int nroles;
	sigset_t waitset; /* the signals the loop takes */
	int status;	  /* to report; -1: none */
};

static double uptime_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on the console: "[  1.234] rpcgate init: ...". */
static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%8.3f] rpcgate init: ", uptime_s());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- 1. file systems and console ------------------------------------- */

static void mount_one(const char *what, const char *where, const char *type,
		      unsigned long flags, const char *data)
{
	mkdir(where, 0755);
	if (mount(what, where, type, flags, data) && errno != EBUSY)
		say("cannot mount %s on %s: %s", type, where, strerror(errno));
}

void app_pid1_early(void)
{
	int fd;

	mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL);
	mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL);
	mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	/* The kernel opened /dev/console for us if the image had the node;
	 * otherwise devtmpfs has it now. */
	if (fcntl(1, F_GETFD) < 0 && (fd = open("/dev/console", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* --- 2. modules, network, rxe ---------------------------------------- */

static int load_modules(void)
{
	char line[512];
	int n = 0, failed = 0;
	FILE *fp = fopen(MODULE_LIST, "r");

	if (!fp) {
		/* A kernel with everything built in (kernel-cfg/) needs no
		 * list. */
		say("no %s: no modules to load", MODULE_LIST);
		return 0;
	}
	while (fgets(line, sizeof(line), fp)) {
		int fd;

		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0 ||
		    (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST)) {
			say("cannot load module %s: %s", line, strerror(errno));
			failed++;
		} else {
			n++;
		}
		if (fd >= 0)
			close(fd);
	}
	fclose(fp);
	say("loaded %d modules%s", n,
	    failed ? " (some failed, see above)" : "");
	return failed ? -EIO : 0;
}

static int setup_network(const struct app_config *cfg)
{
	const char *nic = flags_str(&cfg->flags, "nic");
	const char *ip = flags_str(&cfg->flags, "ip");
	const char *gw = flags_str(&cfg->flags, "gateway");
	int err;

	err = netcfg_link_up("lo");
	if (err) {
		say("cannot set lo up: %s", strerror(-err));
		return err;
	}
	if (!*ip)
		return 0;
	if ((err = netcfg_link_up(nic)) || (err = netcfg_addr_add(nic, ip))) {
		say("cannot set %s up with %s: %s", nic, ip, strerror(-err));
		return err;
	}
	if (*gw && (err = netcfg_route_default(gw))) {
		say("cannot add the default route via %s: %s", gw,
		    strerror(-err));
		return err;
	}
	say("%s up: %s%s%s", nic, ip, *gw ? " via " : "", gw);
	return 0;
}

/* Is device `name`'s port 1 ACTIVE?  Fills *state with its state. */
static bool rxe_active(const char *name, const char **state)
{
	struct rdt_device devs[4];
	int n = rdt_dev_list(devs, 4);

	*state = "absent";
	for (int i = 0; i < n; i++) {
		if (strcmp(devs[i].name, name) || devs[i].nports < 1)
			continue;
		*state = devs[i].port[0].state;
		return !strcmp(*state, "ACTIVE");
	}
	return false;
}

static int setup_rxe(const struct app_config *cfg)
{
	const char *netdev = flags_str(&cfg->flags, "rxe");
	int64_t wait_ms = flags_int(&cfg->flags, "rxe_wait_ms");
	double start = uptime_s();
	const char *state;
	int err;

	if (!*netdev)
		return 0;
	/* rxe sends over the NIC: it must be up, with or without --ip. */
	err = netcfg_link_up(netdev);
	if (!err)
		err = netcfg_rxe_add(RXE_NAME, netdev);
	if (err && err != -EEXIST) {
		say("cannot create %s over %s: %s (the image needs rdma_rxe "
		    "and ib_uverbs)",
		    RXE_NAME, netdev, strerror(-err));
		return err;
	}
	while (!rxe_active(RXE_NAME, &state)) {
		if ((uptime_s() - start) * 1000 > (double)wait_ms) {
			say("%s over %s: port 1 is %s after %" PRId64 " ms "
			    "(--rxe_wait_ms)",
			    RXE_NAME, netdev, state, wait_ms);
			return -ETIMEDOUT;
		}
		usleep(RXE_POLL_MS * 1000);
	}
	say("%s over %s: port 1 ACTIVE after %.0f ms", RXE_NAME, netdev,
	    (uptime_s() - start) * 1000);
	return 0;
}

/* --- 3. roles ---------------------------------------------------------- */

/*
 * Splits a role's line into words in place: spaces separate, single
 * quotes group ("echo --message='a b'" is two words, the second
 * "--message=a b").  -E2BIG past ROLE_ARGS_MAX - 2 words, -EINVAL on an
 * unclosed quote.
 */
static int split_words(char *s, char **argv, int max)
{
	int n = 0;

	while (*s) {
		char *out;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		if (n == max)
			return -E2BIG;
		argv[n++] = out = s;
		while (*s && *s != ' ' && *s != '\t') {
			if (*s == '\'') {
				char *end = strchr(s + 1, '\'');

				if (!end)
					return -EINVAL;
				memmove(out, s + 1, (size_t)(end - s - 1));
				out += end - s - 1;
				s = end + 1;
			} else {
				*out++ = *s++;
			}
		}
		if (*s)
			s++;
		*out = '\0';
	}
	return n;
}

/* Starts one role: this binary again with the role's words, or the
 * program a first word like /bin/x names. */
static int role_start(struct role *r)
{
	char *argv[ROLE_ARGS_MAX], *words = strdup(r->line);
	int n;
	pid_t pid;

	if (!words)
		return -ENOMEM;
	argv[0] = "rpcgate";
	n = split_words(words, argv + 1, ROLE_ARGS_MAX - 2);
	if (n <= 0) {
		say("role \"%s\": %s", r->line,
		    n == 0	  ? "empty"
		    : n == -E2BIG ? "too many words"
				  : "unclosed quote");
		free(words);
		return -EINVAL;
	}
	argv[n + 1] = NULL;
	pid = fork();
	if (pid == 0) {
		sigset_t none;
		int fd;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (r->is_run && (fd = open(RUN_TTY, O_RDWR | O_NOCTTY)) >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		/* A first word that is an absolute path names a program
		 * packed in the image (image/mkvm --extra: the bench
		 * image's tools); anything else is a subcommand. */
		if (argv[1][0] == '/')
			execv(argv[1], argv + 1);
		else
			execv("/proc/self/exe", argv);
		fprintf(stderr, "rpcgate init: cannot start \"%s\": %s\n",
			r->line, strerror(errno));
		_exit(STATUS_SETUP);
	}
	free(words);
	if (pid < 0) {
		say("cannot fork for \"%s\": %s", r->line, strerror(errno));
		return -errno;
	}
	r->pid = pid;
	say("started %s role \"%s\" (pid %d)", r->is_run ? "run" : "spawn",
	    r->line, (int)pid);
	return 0;
}

/* Adds every --spawn line (one per line of the repeated flag), then
 * --run. */
static int roles_from_flags(struct init *in, const struct app_config *cfg)
{
	const char *spawn = flags_str(&cfg->flags, "spawn");
	const char *run = flags_str(&cfg->flags, "run");
	static char lines[4096];
	char *save = NULL, *tok;

	if (strlen(spawn) >= sizeof(lines)) {
		say("--spawn: the roles' lines are longer than %zu bytes",
		    sizeof(lines) - 1);
		return -E2BIG;
	}
	strcpy(lines, spawn);
	for (tok = strtok_r(lines, "\n", &save); tok;
	     tok = strtok_r(NULL, "\n", &save)) {
		if (in->nroles == ROLES_MAX - 1)
			return -E2BIG;
		in->roles[in->nroles++] = (struct role){.line = tok};
	}
	if (*run)
		in->roles[in->nroles++] =
		    (struct role){.line = run, .is_run = true};
	return 0;
}

/* A role's exit status as the VM reports it. */
static int role_status(int wstatus)
{
	if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) < STATUS_SIGNALLED)
		return WEXITSTATUS(wstatus);
	return STATUS_SIGNALLED;
}

static void describe_end(int wstatus, char *buf, size_t cap)
{
	if (WIFEXITED(wstatus))
		snprintf(buf, cap, "exited with status %d",
			 WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, cap, "was killed by signal %d (%s)%s",
			 WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)),
			 WCOREDUMP(wstatus) ? ", core dumped" : "");
	else
		snprintf(buf, cap, "ended (wait status 0x%x)", wstatus);
}

/* Reaps every child that ended; true when the --run role was one. */
static bool reap(struct init *in)
{
	bool run_ended = false;
	int wstatus;
	pid_t pid;

	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		char how[96];

		for (int i = 0; i < in->nroles; i++) {
			struct role *r = &in->roles[i];

			if (r->pid != pid)
				continue;
			r->pid = 0;
			describe_end(wstatus, how, sizeof(how));
			say("%s role \"%s\" %s", r->is_run ? "run" : "spawn",
			    r->line, how);
			if (r->is_run) {
				in->status = role_status(wstatus);
				run_ended = true;
			}
		}
		/* Anything else was an orphan: reaped, nothing to say. */
	}
	return run_ended;
}

static int roles_running(const struct init *in)
{
	int n = 0;

	for (int i = 0; i < in->nroles; i++)
		n += in->roles[i].pid != 0;
	return n;
}

static void signal_roles(const struct init *in, int sig)
{
	for (int i = 0; i < in->nroles; i++)
		if (in->roles[i].pid)
			kill(in->roles[i].pid, sig);
}

/* Waits for a signal of the wait set for up to `ms` (-1: forever); the
 * signal, or 0 on timeout. */
static int wait_signal(const struct init *in, long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000};
	int sig;

	do
		sig = ms < 0 ? sigwaitinfo(&in->waitset, NULL)
			     : sigtimedwait(&in->waitset, NULL, &ts);
	while (sig < 0 && errno == EINTR);
	return sig < 0 ? 0 : sig;
}

/* SIGTERM, and SIGKILL to what is left after grace_ms; returns once
 * every role is reaped. */
static void stop_roles(struct init *in, int64_t grace_ms)
{
	double deadline = uptime_s() + (double)grace_ms / 1000;
	bool killed = false;

	reap(in);
	if (!roles_running(in))
		return;
	say("stopping %d role(s)", roles_running(in));
	signal_roles(in, SIGTERM);
	while (roles_running(in)) {
		long left = (long)((deadline - uptime_s()) * 1000);

		if (left <= 0 && !killed) {
			say("%d role(s) still running after %" PRId64
			    " ms: SIGKILL",
			    roles_running(in), grace_ms);
			signal_roles(in, SIGKILL);
			killed = true;
		}
		/* After SIGKILL the kernel ends them; wait for the SIGCHLD. */
		wait_signal(in, killed ? -1 : left);
		reap(in);
	}
}

/* --- the end ------------------------------------------------------------ */

static void __attribute__((noreturn)) power_off(int status)
{
	sync();
	if (status >= 0) {
		say("reporting status %d", status);
		if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
			outb((unsigned char)status, DEBUG_EXIT_PORT);
		/* Still here: no isa-debug-exit device (a real VM). */
	}
	say("power off");
	reboot(RB_POWER_OFF);
	/* Never exit: the kernel panics when init does. */
	for (;;)
		pause();
}

void app_pid1_main(struct app_config *cfg, int config_status)
{
	struct init in = {.status = -1};
	int err;

	sigemptyset(&in.waitset);
	sigaddset(&in.waitset, SIGCHLD);
	sigaddset(&in.waitset, SIGTERM);
	sigaddset(&in.waitset, SIGINT);
	sigaddset(&in.waitset, SIGPWR);
	sigprocmask(SIG_BLOCK, &in.waitset, NULL);
	/* Ctrl-Alt-Del: SIGINT to us instead of an immediate reboot. */
	reboot(RB_DISABLE_CAD);

	say("starting (kernel command line flags: see `rpcgate config`)");
	if (config_status) {
		app_config_print_errors(cfg, stderr);
		power_off(config_status);
	}
	if (load_modules() || setup_network(cfg) || setup_rxe(cfg) ||
	    roles_from_flags(&in, cfg))
		power_off(STATUS_SETUP);
	for (int i = 0; i < in.nroles; i++) {
		err = role_start(&in.roles[i]);
		if (err) {
			stop_roles(&in,
				   flags_int(&cfg->flags, "shutdown_grace_ms"));
			power_off(STATUS_SETUP);
		}
	}
	if (!in.nroles)
		say("no roles (--spawn, --run): idle until shutdown");

	for (;;) {
		int sig = wait_signal(&in, -1);

		if (sig == SIGCHLD) {
			if (reap(&in))
				break;
			continue;
		}
		say("%s: shutting down", strsignal(sig));
		break;
	}
	stop_roles(&in, flags_int(&cfg->flags, "shutdown_grace_ms"));
	power_off(in.status);
}
