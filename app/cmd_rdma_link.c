/*
 * rdma-link: deletes an RDMA device, as `rdma link delete NAME` does
 * (the VM image has no iproute2): the link-fault tests pull the device
 * from under running servers and clients with it.
 *
 *   rpcgate rdma-link --delete=rxe0 [--after_ms=N] [--memlock_kb=K]
 *                     [--readd=eth0 [--readd_after_ms=M]]
 *
 * With --readd the device comes back (an rxe device of the same name over
 * that interface) M ms after the delete: rpcgate's processes pick it up
 * again (rdt_watch).  --memlock_kb lowers the locked-memory limit of
 * the processes not running as root (rpcgate --user) once the device is
 * gone, so that registering their memory again when it returns fails.
 *
 * The kernel answers once the device is gone; for rxe, whose driver
 * cannot take a device away from a process, that is when every process
 * has let go of it, so the time it took is printed: rpcgate's own
 * processes let go as soon as they see the removal (rdt_watch).
 */
#define _GNU_SOURCE /* prlimit */
#include "base/clock.h"
#include "app.h"
#include "netcfg.h"
#include "rdt_dev.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Devices looked at; a host with more is not a gateway appliance. */
#define MAX_DEVICES 8
/* How long the kernel may take: every process must let go first. */
#define DELETE_TIMEOUT_S 60

static int find_index(const char *name)
{
	struct rdt_device devs[MAX_DEVICES];
	int n = rdt_dev_list(devs, MAX_DEVICES);

	for (int i = 0; i < n; i++)
		if (!strcmp(devs[i].name, name))
			/* -1: this rdma-core or kernel does not say. */
			return devs[i].index >= 0 ? devs[i].index : -ENOSYS;
	return n < 0 ? n : -ENODEV;
}

static void sleep_ms(int64_t ms)
{
	struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};

	if (ms > 0)
		nanosleep(&pause, NULL);
}

/* The real uid of process `pid`, or -1. */
static long proc_uid(const char *pid)
{
	char path[sizeof("/proc//status") + NAME_MAX], line[128];
	long uid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Uid:", 4)) {
			uid = strtol(line + 4, NULL, 10);
			break;
		}
	fclose(f);
	return uid;
}

/* Sets RLIMIT_MEMLOCK of every process not running as root to `kb`:
 * how many it set, or the last error (each is also said on stderr). */
static int limit_memlock(int64_t kb)
{
	struct rlimit rl = {(rlim_t)kb << 10, (rlim_t)kb << 10};
	const struct dirent *d;
	int n = 0, err = 0;
	DIR *dir;

	dir = opendir("/proc");
	if (!dir)
		return -errno;
	while ((d = readdir(dir))) {
		long uid;

		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		uid = proc_uid(d->d_name);
		if (uid <= 0)
			continue;
		if (prlimit(atoi(d->d_name), RLIMIT_MEMLOCK, &rl, NULL)) {
			if (errno == ESRCH) /* gone since readdir */
				continue;
			err = -errno;
			fprintf(stderr,
				"rdma-link: cannot set the locked-memory "
				"limit of pid %s: %s\n",
				d->d_name, strerror(errno));
			continue;
		}
		printf("rdma-link: locked-memory limit of pid %s (uid %ld) "
		       "set to %lld KiB\n",
		       d->d_name, uid, (long long)kb);
		n++;
	}
	closedir(dir);
	fflush(stdout);
	return n ? n : err;
}

static int readd(const char *name, const char *netdev, int64_t after_ms)
{
	int err;

	sleep_ms(after_ms);
	err = netcfg_rxe_add(name, netdev);
	if (err) {
		fprintf(stderr, "rdma-link: adding %s over %s failed: %s\n",
			name, netdev, strerror(-err));
		return APP_EXIT_FAILURE;
	}
	printf("rdma-link: %s added again over %s\n", name, netdev);
	return APP_EXIT_OK;
}

int app_cmd_rdma_link(struct app_config *cfg)
{
	const char *name = flags_str(&cfg->flags, "delete");
	const char *netdev = flags_str(&cfg->flags, "readd");
	int index, err, status = APP_EXIT_OK;
	int64_t t0;

	if (!name[0]) {
		fprintf(stderr, "rdma-link: --delete=DEVICE is required "
				"(e.g. --delete=rxe0; rdma-info lists them)\n");
		return APP_EXIT_CONFIG;
	}
	sleep_ms(flags_int(&cfg->flags, "after_ms"));
	index = find_index(name);
	if (index < 0) {
		fprintf(stderr, "rdma-link: %s %s%s%s\n",
			index == -ENOSYS ? "cannot learn the kernel index of"
					 : "no RDMA device",
			name, index == -ENODEV ? "" : ": ",
			index == -ENODEV ? "" : strerror(-index));
		return APP_EXIT_FAILURE;
	}
	printf("rdma-link: deleting %s (index %d); the kernel answers once "
	       "every process has let go of it\n",
	       name, index);
	fflush(stdout);
	t0 = clock_mono_ns();
	err = netcfg_rdma_link_del((unsigned)index, DELETE_TIMEOUT_S);
	if (err) {
		fprintf(stderr,
			"rdma-link: deleting %s failed after %lld ms: "
			"%s%s\n",
			name, (long long)((clock_mono_ns() - t0) / 1000000),
			strerror(-err),
			err == -ETIMEDOUT ? " (a process still holds the "
					    "device)"
					  : "");
		return APP_EXIT_FAILURE;
	}
	printf("rdma-link: %s deleted in %lld ms\n", name,
	       (long long)((clock_mono_ns() - t0) / 1000000));
	fflush(stdout);
	if (flags_int(&cfg->flags, "memlock_kb") >= 0 &&
	    (err = limit_memlock(flags_int(&cfg->flags, "memlock_kb"))) <= 0) {
		fprintf(stderr, "rdma-link: --memlock_kb: %s\n",
			err ? strerror(-err)
			    : "no process runs as another user than root");
		status = APP_EXIT_FAILURE;
	}
	/* The device comes back whatever happened to the limits. */
	if (*netdev &&
	    readd(name, netdev, flags_int(&cfg->flags, "readd_after_ms")))
		status = APP_EXIT_FAILURE;
	return status;
}
