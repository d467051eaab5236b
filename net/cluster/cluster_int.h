/*
 * cluster_int: what the cluster's three files share; private to net/cluster/.
 *
 *   cluster.c        options, calls, init and destroy
 *   cluster_inst.c   an instance: its channel, health probe, circuit
 *                    breaker, figures
 *   cluster_names.c  the set of instances and where it comes from
 *                    (list://, file:// reloads, http:// resolution)
 *
 * Everything here runs on the cluster's loop thread unless it says
 * otherwise.
 */
#ifndef RPCGATE_NET_CLUSTER_INT_H
#define RPCGATE_NET_CLUSTER_INT_H

#include "base/clock.h"
#include "cluster.h"

struct cl_inst {
	struct cluster *cl;
	struct naming_node node;
	char key[NAMING_ADDR_MAX + NAMING_TAG_MAX + 2];
	struct lb_server lbs;
	struct channel ch;
	bool in_set;
	size_t idx; /* in cl->set while in_set */
	int refs;   /* loop thread */
	/* health checking while isolated */
	bool down; /* its connection failed: isolated until a probe connects */
	int64_t isolated_ns;
	int probe_fd;
	struct loop_io probe_io;
	struct loop_timer probe_timer;
	bool probe_http; /* connected: awaiting the health_check_path answer */
	bool probe_logged; /* its bad answer was logged (once per isolation) */
	char probe_buf[CLUSTER_PROBE_ANSWER_MAX];
	size_t probe_len;
	/* the circuit breaker */
	bool broken; /* isolated for cb_isolation_ms */
	double err_ema;
	uint32_t cb_samples;
	int cb_isolation_ms;
	int64_t cb_last_trip_ns;
	struct loop_timer cb_timer;
	struct task free_task;
	/* figures */
	struct metrics_counter m_calls, m_errors;
	struct metrics_gauge m_healthy;
	struct metrics_latency m_latency; /* its attempts' latency */
	char labels[480];
};

/* cluster.c */
void cl_count(uint64_t *ctr); /* atomic += 1 */
void cl_log(struct cluster *cl, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Owner thread: waits until *flag, set under cl->lock. */
void cl_wait_flag(struct cluster *cl, bool *flag);

/* cluster_inst.c */
/* Usable instances changed: gauges, and the recovery's start. */
void cl_update_gauges(struct cluster *cl);
/* Worker or init: opens node's channel; NULL with `why` on failure. */
struct cl_inst *cl_inst_new(struct cluster *cl, const struct naming_node *node,
			    char *why, size_t why_size);
/* Drops a reference; the last one closes and frees it on a worker. */
void cl_inst_unref(struct cl_inst *in);
void cl_probe_stop(struct cl_inst *in);
/* Its connection failed: out of the set's choices until a probe passes. */
void cl_isolate(struct cl_inst *in, int code, const char *text);
/* One call's end, for the circuit breaker. */
void cl_cb_feed(struct cl_inst *in, bool failed);

/* cluster_names.c */
/* `set` (n instances, referenced by the caller) becomes the set. */
int cl_set_replace(struct cluster *cl, struct cl_inst **set, size_t n);
/* Init, owner thread: reads the naming source, opens channels. */
int cl_first_names(struct cluster *cl, const char *rest, char *why,
		   size_t why_size);
/* Lets go of fresh instances the set did not take. */
void cl_drop_fresh(struct cluster *cl);
/* Loop task: the first names become the set; reloads start. */
void cl_first_apply_task(struct task *t);

#endif
