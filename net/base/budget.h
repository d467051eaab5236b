/*
 * budget: how the process's runtime threads are shared out.
 *
 * Three numbers, named as brpc names them so its users recognise them:
 *
 *   worker_num (W)            every runtime thread the process may run
 *   event_dispatcher_num (D)  epoll event loops, each a thread taken from W
 *   rdma_poller_num (P)       busy-polling CQ threads, taken from W, counted
 *                             only when rdma_use_polling is true
 *
 * Handlers and completions run on the W - D - P task workers, so the rule
 * is D + P < W.  brpc accepts a budget that breaks it and later fails with
 * "Fail to read Hello Message from client ... Got EOF" (handshakes starve:
 * spec/brpc-wire.md section 3); rpcgate refuses it at start (strict) or
 * raises W to fit (auto).  Pure functions: no allocation, any thread.
 */
#ifndef RPCGATE_NET_BUDGET_H
#define RPCGATE_NET_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

/* brpc's minimum bthread concurrency (src/bthread/types.h). */
#define BUDGET_MIN_DEFAULT_WORKERS 4
/* Upper bounds: far above what a gateway runs, low enough to catch typos. */
#define BUDGET_MAX_WORKERS     1024
#define BUDGET_MAX_DISPATCHERS 256
#define BUDGET_MAX_POLLERS     64

enum budget_mode {
	BUDGET_STRICT, /* a budget that breaks the rule stops the start */
	BUDGET_AUTO,   /* worker_num is raised to fit */
};

struct budget_input {
	int worker_num;
	int event_dispatcher_num;
	int rdma_poller_num;
	bool rdma_use_polling;
	enum budget_mode mode;
	int ncpu; /* cores the process may use; sizes auto's raise */
};

struct budget {
	int workers;	  /* W after resolution */
	int dispatchers;  /* D */
	int pollers;	  /* P as counted: 0 unless polling */
	int task_workers; /* W - D - P, >= 1 */
	bool raised;	  /* auto raised W from the asked worker_num */
	int asked_workers;
};

/* brpc's num_threads default: cores + 1, at least 4 (and at most
 * BUDGET_MAX_WORKERS). */
int budget_default_workers(int ncpu);

/*
 * Resolves the budget.  0 and *out filled; -ERANGE when strict and
 * D + P >= W (out still describes the asked numbers, task_workers <= 0);
 * -EINVAL for numbers outside their ranges.  With auto, a budget that
 * breaks the rule gets W = D + P + max(2, ncpu), capped at BUDGET_MAX_WORKERS:
 * one task worker per core, and never fewer than two so one blocked handler
 * cannot idle the pool.
 */
int budget_resolve(const struct budget_input *in, struct budget *out);

/*
 * Where each of the three numbers came from, for messages: e.g. "default",
 * "command line --worker_num".
 */
struct budget_sources {
	const char *worker_num;
	const char *event_dispatcher_num;
	const char *rdma_poller_num;
};

/*
 * Writes the operator's message for a refused budget: the three flags with
 * their values and sources, the rule, and the fix.  Returns snprintf's
 * length.
 */
int budget_explain_refusal(const struct budget_input *in,
			   const struct budget_sources *src, char *buf,
			   size_t cap);

/* One line: "W threads = D event dispatchers + P rdma pollers + T task
 * workers (mode)". */
int budget_describe(const struct budget *b, enum budget_mode mode, char *buf,
		    size_t cap);

#endif
