/* rdt_dev: device, port and GID discovery (see rdt_dev.h). */
#include "rdt_dev.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include <infiniband/verbs.h>

/* Port states by value (enum ibv_port_state). */
static const char *port_state_name(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_NOP:
		return "NOP";
	case IBV_PORT_DOWN:
		return "DOWN";
	case IBV_PORT_INIT:
		return "INIT";
	case IBV_PORT_ARMED:
		return "ARMED";
	case IBV_PORT_ACTIVE:
		return "ACTIVE";
	case IBV_PORT_ACTIVE_DEFER:
		return "ACTIVE_DEFER";
	}
	return "UNKNOWN";
}

static int mtu_bytes(enum ibv_mtu m)
{
	return m >= IBV_MTU_256 && m <= IBV_MTU_4096 ? 128 << m : 0;
}

static bool gid_is_zero(const union ibv_gid *g)
{
	static const uint8_t zero[16];

	return !memcmp(g->raw, zero, sizeof(zero));
}

static int query_port(struct ibv_context *ctx, int num, int gid_tbl_len,
		      struct rdt_port *out)
{
	struct ibv_port_attr pa;
	union ibv_gid gid;
	int err;

	/* libibverbs returns a positive errno here */
	err = ibv_query_port(ctx, (uint8_t)num, &pa);
	if (err)
		return -err;
	memset(out, 0, sizeof(*out));
	out->num = num;
	out->state = port_state_name(pa.state);
	out->active_mtu = mtu_bytes(pa.active_mtu);
	out->ethernet = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
	if (gid_tbl_len > (int)pa.gid_tbl_len)
		gid_tbl_len = (int)pa.gid_tbl_len;
	for (int i = 0; i < gid_tbl_len && out->ngids < RDT_GIDS_MAX; i++) {
		if (ibv_query_gid(ctx, (uint8_t)num, i, &gid) ||
		    gid_is_zero(&gid))
			continue;
		out->gid[out->ngids].index = i;
		memcpy(out->gid[out->ngids].raw, gid.raw, 16);
		out->ngids++;
	}
	return 0;
}

static int query_device(struct ibv_device *dev, struct rdt_device *out)
{
	struct ibv_device_attr attr;
	struct ibv_context *ctx;
	int err, p;

	memset(out, 0, sizeof(*out));
	strncpy(out->name, ibv_get_device_name(dev), RDT_NAME_MAX - 1);
	out->index = ibv_get_device_index(dev);
	out->node_guid = be64toh(ibv_get_device_guid(dev));
	ctx = ibv_open_device(dev);
	if (!ctx)
		return errno ? -errno : -ENODEV;
	err = ibv_query_device(ctx, &attr);
	if (err) {
		err = -err;
		goto out_close;
	}
	out->max_qp = attr.max_qp;
	for (p = 1; p <= attr.phys_port_cnt && p <= RDT_PORTS_MAX; p++) {
		/* A GID table can hold 1024 entries; the first 256 hold
		 * every address an rxe or RoCE port assigns in practice. */
		err = query_port(ctx, p, 256, &out->port[p - 1]);
		if (err)
			goto out_close;
		out->nports = p;
	}
out_close:
	ibv_close_device(ctx);
	return err;
}

int rdt_dev_list(struct rdt_device *out, int max)
{
	struct ibv_device **list;
	int n = 0, i, err = 0;

	errno = 0;
	list = ibv_get_device_list(&n);
	if (!list)
		/* ENOSYS: the kernel has no uverbs; the same as no device */
		return errno == ENOSYS || errno == 0 ? 0 : -errno;
	for (i = 0; i < n && i < max; i++) {
		err = query_device(list[i], &out[i]);
		if (err)
			break;
	}
	ibv_free_device_list(list);
	return err ? err : i;
}
