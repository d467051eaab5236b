/*
 * rdt_dev: the RDMA devices this host has, as rdma-core reports them.
 *
 * rdt_dev_list() fills caller storage with every device, its ports and
 * their non-zero GIDs.  It opens and closes each device; it may block
 * briefly in the kernel and may run on any thread.  Returns the number of
 * devices found (0 when the host has none, e.g. no rdma_rxe link), or
 * -errno (libibverbs' NULL+errno converted here, at the edge).
 */
#ifndef RPCGATE_RDMA_RDT_DEV_H
#define RPCGATE_RDMA_RDT_DEV_H

#include <stdbool.h>
#include <stdint.h>

/* IBV_SYSFS_NAME_MAX in rdma-core's verbs.h. */
#define RDT_NAME_MAX 64
/* Ports shown per device: HCAs have 1 or 2; rxe has 1. */
#define RDT_PORTS_MAX 2
/* GIDs shown per port: rxe fills a few of its 1024-entry table. */
#define RDT_GIDS_MAX 16

struct rdt_gid {
	int index;
	uint8_t raw[16];
};

struct rdt_port {
	int num;	   /* 1-based, as verbs counts */
	const char *state; /* "ACTIVE", "DOWN", ... (static text) */
	int active_mtu;	   /* bytes */
	bool ethernet;	   /* RoCE (rxe) rather than InfiniBand */
	int ngids;
	struct rdt_gid gid[RDT_GIDS_MAX];
};

struct rdt_device {
	char name[RDT_NAME_MAX];
	int index;	    /* the kernel's, for RDMA netlink; -1 unknown */
	uint64_t node_guid; /* host order */
	int max_qp;
	int nports;
	struct rdt_port port[RDT_PORTS_MAX];
};

int rdt_dev_list(struct rdt_device *out, int max);

#endif
