/* rdma-info: lists RDMA devices, ports, GIDs and states (ibv_devinfo's
 * job, from inside the static binary, which is all a VM image has). */
#include "app.h"
#include "rdt.h"
#include "rdt_dev.h"

#include <arpa/inet.h>
#include <string.h>

/* Devices listed; a host with more is not a gateway appliance. */
#define MAX_DEVICES 8

static void print_gid(const struct rdt_gid *g)
{
	char text[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, g->raw, text, sizeof(text));
	printf("    gid[%d] %s\n", g->index, text);
}

/* What a connection would use, under the rdma_* flags given. */
static int print_choice(const struct app_config *cfg)
{
	struct rdt_options o;
	struct rdt_choice ch;
	struct rdt_ctx *ctx;
	char why[256], gid[INET6_ADDRSTRLEN];
	int err;

	app_rdma_options(cfg, &o, NULL);
	err = rdt_open(&ctx, &o, why, sizeof(why));
	if (err) {
		printf("chosen: none: %s\n", why);
		return APP_EXIT_FAILURE;
	}
	rdt_choice(ctx, &ch);
	inet_ntop(AF_INET6, ch.gid, gid, sizeof(gid));
	printf("chosen: device %s port %d gid[%d] %s lid %u mtu %d "
	       "max_sge %d\n",
	       ch.device, ch.port, ch.gid_index, gid, ch.lid, ch.active_mtu,
	       ch.max_sge);
	rdt_close(ctx);
	return APP_EXIT_OK;
}

int app_cmd_rdma_info(struct app_config *cfg)
{
	struct rdt_device devs[MAX_DEVICES];
	int n = rdt_dev_list(devs, MAX_DEVICES);

	if (n < 0) {
		fprintf(stderr, "rpcgate: cannot list RDMA devices: %s\n",
			strerror(-n));
		return APP_EXIT_FAILURE;
	}
	if (n == 0) {
		fprintf(stderr,
			"rpcgate: no RDMA devices found (the kernel "
			"needs ib_uverbs and a device; for soft-RoCE load "
			"rdma_rxe and add a link: rdma link add rxe0 type rxe "
			"netdev eth0)\n");
		return APP_EXIT_FAILURE;
	}
	for (int i = 0; i < n; i++) {
		const struct rdt_device *d = &devs[i];

		printf("device %s guid %016llx max_qp %d\n", d->name,
		       (unsigned long long)d->node_guid, d->max_qp);
		for (int p = 0; p < d->nports; p++) {
			const struct rdt_port *pt = &d->port[p];

			printf("  port %d state %s mtu %d link %s\n", pt->num,
			       pt->state, pt->active_mtu,
			       pt->ethernet ? "ethernet" : "infiniband");
			for (int g = 0; g < pt->ngids; g++)
				print_gid(&pt->gid[g]);
		}
	}
	return print_choice(cfg);
}
