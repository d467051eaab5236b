/* rt: event loops + task workers sized by the thread budget (see rt.h). */
#include "rt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Loop thread names: "loop-N", N < BUDGET_MAX_DISPATCHERS, fit Linux's 15
 * characters; the modulo only tells the compiler so. */
#define RT_LOOP_NAME_MAX 16

/* The names must outlive the loops (loop options keep the pointer). */
struct rt_loop_name {
	char s[RT_LOOP_NAME_MAX];
};

void rt_options_from_budget(struct rt_options *opt, const struct budget *b)
{
	memset(opt, 0, sizeof(*opt));
	opt->dispatchers = b->dispatchers;
	opt->task_workers = b->task_workers;
}

int rt_options_validate(const struct rt_options *opt)
{
	if (opt->dispatchers < 1 || opt->dispatchers > BUDGET_MAX_DISPATCHERS)
		return -EINVAL;
	if (opt->task_workers < 1 || opt->task_workers > WORKERS_MAX_THREADS)
		return -EINVAL;
	return 0;
}

static struct rt_loop_name *loop_names(struct rt *rt)
{
	return (struct rt_loop_name *)(rt->loops + rt->opt.dispatchers);
}

int rt_init(struct rt *rt, const struct rt_options *opt)
{
	struct workers_options wo;
	struct loop_options lo;
	int err, i;

	memset(rt, 0, sizeof(*rt));
	err = rt_options_validate(opt);
	if (err)
		return err;
	rt->opt = *opt;
	/* One allocation: the loops, then their names. */
	rt->loops = mem_zalloc(
	    opt->mem, (size_t)opt->dispatchers *
			  (sizeof(struct loop) + sizeof(struct rt_loop_name)));
	if (!rt->loops)
		return -ENOMEM;
	for (i = 0; i < opt->dispatchers; i++) {
		snprintf(loop_names(rt)[i].s, RT_LOOP_NAME_MAX, "loop-%u",
			 (unsigned)i % 1000000u);
		loop_options_default(&lo);
		lo.mem = opt->mem;
		lo.log = opt->log;
		lo.name = loop_names(rt)[i].s;
		lo.spin_ns = opt->spin_ns;
		err = loop_init(&rt->loops[i], &lo);
		if (err)
			goto out_destroy_loops;
		rt->nloops_init++;
	}
	workers_options_default(&wo);
	wo.nthreads = (unsigned)opt->task_workers;
	wo.mem = opt->mem;
	wo.log = opt->log;
	wo.name = "worker";
	err = workers_init(&rt->workers, &wo);
	if (err)
		goto out_destroy_loops;
	return 0;

out_destroy_loops:
	while (rt->nloops_init > 0)
		loop_destroy(&rt->loops[--rt->nloops_init]);
	mem_free(opt->mem, rt->loops);
	rt->loops = NULL;
	return err;
}

static void stop_loops(struct rt *rt)
{
	int i;

	for (i = 0; i < rt->nloops_started; i++)
		loop_stop(&rt->loops[i]);
	for (i = 0; i < rt->nloops_started; i++)
		loop_join(&rt->loops[i]);
	rt->nloops_started = 0;
}

int rt_start(struct rt *rt)
{
	int err;

	if (rt->started)
		return -EBUSY;
	err = workers_start(&rt->workers);
	if (err)
		return err;
	for (; rt->nloops_started < rt->opt.dispatchers; rt->nloops_started++) {
		err = loop_start(&rt->loops[rt->nloops_started]);
		if (err)
			goto out_stop;
	}
	rt->started = true;
	log_info(rt->opt.log,
		 "runtime started: %d event loop%s, %d task "
		 "worker%s",
		 rt->opt.dispatchers, rt->opt.dispatchers == 1 ? "" : "s",
		 rt->opt.task_workers, rt->opt.task_workers == 1 ? "" : "s");
	return 0;

out_stop:
	stop_loops(rt);
	workers_stop(&rt->workers);
	rt->stopped = true;
	return err;
}

void rt_stop(struct rt *rt)
{
	if (rt->stopped)
		return;
	/* Loops first: no event can submit new work into a closed pool. */
	stop_loops(rt);
	workers_stop(&rt->workers);
	rt->stopped = true;
}

void rt_destroy(struct rt *rt)
{
	rt_stop(rt);
	workers_destroy(&rt->workers);
	while (rt->nloops_init > 0)
		loop_destroy(&rt->loops[--rt->nloops_init]);
	mem_free(rt->opt.mem, rt->loops);
	rt->loops = NULL;
}

struct loop *rt_loop_for(struct rt *rt, unsigned key)
{
	return &rt->loops[key % (unsigned)rt->opt.dispatchers];
}

int rt_submit(struct rt *rt, struct task *t)
{
	return workers_submit(&rt->workers, t);
}
