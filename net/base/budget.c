/* budget: the thread budget rule (see budget.h). */
#include "budget.h"

#include <errno.h>
#include <stdio.h>

int budget_default_workers(int ncpu)
{
	int w = ncpu + 1;

	if (w > BUDGET_MAX_WORKERS)
		return BUDGET_MAX_WORKERS;
	return w < BUDGET_MIN_DEFAULT_WORKERS ? BUDGET_MIN_DEFAULT_WORKERS : w;
}

static int counted_pollers(const struct budget_input *in)
{
	return in->rdma_use_polling ? in->rdma_poller_num : 0;
}

int budget_resolve(const struct budget_input *in, struct budget *out)
{
	int d = in->event_dispatcher_num, p = counted_pollers(in);
	int w = in->worker_num, extra;

	out->asked_workers = w;
	out->workers = w;
	out->dispatchers = d;
	out->pollers = p;
	out->raised = false;
	out->task_workers = w - d - p;
	if (w < 1 || w > BUDGET_MAX_WORKERS || d < 1 ||
	    d > BUDGET_MAX_DISPATCHERS || in->rdma_poller_num < 0 ||
	    in->rdma_poller_num > BUDGET_MAX_POLLERS)
		return -EINVAL;
	if (d + p < w)
		return 0;
	if (in->mode == BUDGET_STRICT)
		return -ERANGE;
	extra = in->ncpu > 2 ? in->ncpu : 2;
	/* D and P are bounded far below it, so at least one task worker
	 * always remains under the cap. */
	if (d + p + extra > BUDGET_MAX_WORKERS)
		extra = BUDGET_MAX_WORKERS - d - p;
	out->workers = d + p + extra;
	out->task_workers = extra;
	out->raised = true;
	return 0;
}

int budget_explain_refusal(const struct budget_input *in,
			   const struct budget_sources *src, char *buf,
			   size_t cap)
{
	int d = in->event_dispatcher_num, p = counted_pollers(in);
	int need = d + p + 1;

	return snprintf(
	    buf, cap,
	    "thread budget refused: event_dispatcher_num=%d (%s) + "
	    "rdma_poller_num=%d (%s; %s because rdma_use_polling=%s) "
	    "leaves no task worker out of worker_num=%d (%s).\n"
	    "  rule: event_dispatcher_num + rdma_poller_num (when polling) "
	    "< worker_num; every event loop and poller holds a whole "
	    "thread, and handshakes and handlers need the rest.  brpc "
	    "accepts this budget and then fails with \"Fail to read Hello "
	    "Message from client ... Got EOF\".\n"
	    "  fix: --worker_num=%d or more, or fewer event dispatchers%s, "
	    "or --thread_budget=auto to raise worker_num to fit.",
	    d, src->event_dispatcher_num, in->rdma_poller_num,
	    src->rdma_poller_num,
	    in->rdma_use_polling ? "counted" : "not counted",
	    in->rdma_use_polling ? "true" : "false", in->worker_num,
	    src->worker_num, need,
	    in->rdma_use_polling ? " or rdma pollers" : "");
}

int budget_describe(const struct budget *b, enum budget_mode mode, char *buf,
		    size_t cap)
{
	return snprintf(buf, cap,
			"%d threads = %d event dispatcher%s + %d rdma poller%s "
			"+ %d task worker%s (thread_budget=%s%s)",
			b->workers, b->dispatchers,
			b->dispatchers == 1 ? "" : "s", b->pollers,
			b->pollers == 1 ? "" : "s", b->task_workers,
			b->task_workers == 1 ? "" : "s",
			mode == BUDGET_AUTO ? "auto" : "strict",
			b->raised ? ", worker_num raised" : "");
}
