/*
 * rdma-link: deletes an RDMA device, as `rdma link delete NAME` does
 * (the VM image has no iproute2): the link-fault tests pull the device
 * from under running servers and clients with it.
 *
 *   rpcgate rdma-link --delete=rxe0 [--after_ms=N]
 *                     [--readd=eth0 [--readd_after_ms=M]]
 *
 * With --readd the device comes back (an rxe device of the same name over
 * that interface) M ms after the delete: rpcgate's processes pick it up
 * again (rdt_watch).
 *
 * The kernel answers once the device is gone; for rxe, whose driver
 * cannot take a device away from a process, that is when every process
 * has let go of it, so the time it took is printed: rpcgate's own
 * processes let go as soon as they see the removal (rdt_watch).
 */
#include "app.h"
#include "clock.h"
#include "netcfg.h"
#include "rdt_dev.h"

#include <errno.h>
#include <string.h>
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
	int64_t t0;
	int index, err;

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
	return *netdev ? readd(name, netdev,
			       flags_int(&cfg->flags, "readd_after_ms"))
		       : APP_EXIT_OK;
}
