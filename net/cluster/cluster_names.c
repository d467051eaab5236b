/*
 * cluster_names: a cluster's set of instances and where it comes from
 * (see cluster_int.h): list:// at init, file:// re-read when it changes
 * and http:// re-resolved on an interval.  Reading the file and opening
 * channels for new instances happen on a task worker (next_names,
 * fresh), the switch to the new set on the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "cluster_int.h"

#include "codec/rpc_errno.h"
/* Loop thread: `set` (n instances, referenced by the caller) becomes
 * the set; instances left out are let go. */
int cl_set_replace(struct cluster *cl, struct cl_inst **set, size_t n)
{
	struct lb_server **lbs = NULL;
	int err;

	if (n) {
		lbs = mem_alloc(cl->opt.mem, n * sizeof(*lbs));
		if (!lbs)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		lbs[i] = &set[i]->lbs;
	err = lb_set_servers(&cl->lb, lbs, n);
	if (err) {
		mem_free(cl->opt.mem, lbs);
		return err;
	}
	for (size_t i = 0; i < cl->n; i++)
		cl->set[i]->in_set = false;
	for (size_t i = 0; i < n; i++) {
		set[i]->in_set = true;
		set[i]->idx = i;
	}
	for (size_t i = 0; i < cl->n; i++)
		if (!cl->set[i]->in_set) {
			cl_probe_stop(cl->set[i]);
			cl_inst_unref(cl->set[i]);
		}
	mem_free(cl->opt.mem, cl->set);
	mem_free(cl->opt.mem, cl->lbs);
	cl->set = set;
	cl->lbs = lbs;
	cl->n = n;
	cl_update_gauges(cl);
	return 0;
}

/* Indexes the nodes of instances set[0..n) (their names are unique:
 * each came from a duplicate-free list).  0 or -ENOMEM. */
static int index_insts(struct naming_index *ix, struct cluster *cl,
		       struct cl_inst *const *set, size_t n)
{
	int err = naming_index_init(ix, cl->opt.mem, n);

	for (size_t i = 0; i < n && !err; i++)
		naming_index_add(ix, &set[i]->node);
	return err;
}

/* The instance of `ix` (an index_insts) with `node`'s name, or NULL. */
static struct cl_inst *find_inst(const struct naming_index *ix,
				 const struct naming_node *node)
{
	const struct naming_node *hit = naming_index_find(ix, node);

	return hit ? container_of(hit, struct cl_inst, node) : NULL;
}

/*
 * Opens channels for the nodes of cl->next_names that are not in
 * cl->names (the set's), into cl->fresh.  Worker or init (never the
 * loop: resolving a host name may block).  Nodes whose channel cannot
 * be opened are dropped from next_names, logged.
 */
static int open_fresh(struct cluster *cl)
{
	struct naming_list *nx = &cl->next_names;
	struct naming_index known;
	char why[256];
	size_t k = 0;

	cl->nfresh = 0;
	cl->fresh =
	    nx->n ? mem_zalloc(cl->opt.mem, nx->n * sizeof(*cl->fresh)) : NULL;
	if (nx->n && !cl->fresh)
		return -ENOMEM;
	if (naming_index_init(&known, cl->opt.mem, cl->names.n)) {
		mem_free(cl->opt.mem, cl->fresh);
		cl->fresh = NULL;
		return -ENOMEM;
	}
	for (size_t i = 0; i < cl->names.n; i++)
		naming_index_add(&known, &cl->names.v[i]);
	for (size_t i = 0; i < nx->n; i++) {
		if (!naming_index_find(&known, &nx->v[i])) {
			struct cl_inst *in =
			    cl_inst_new(cl, &nx->v[i], why, sizeof(why));

			if (!in) {
				cl_log(cl, LOG_LVL_WARN, "skipping %s", why);
				continue;
			}
			cl->fresh[cl->nfresh++] = in;
		}
		nx->v[k++] = nx->v[i];
	}
	naming_index_destroy(&known);
	nx->n = k;
	return 0;
}

/* Loop thread: lets go of fresh instances the set did not take (all of
 * them when apply failed). */
void cl_drop_fresh(struct cluster *cl)
{
	for (size_t i = 0; i < cl->nfresh; i++) {
		cl->fresh[i]->refs++;
		cl_inst_unref(cl->fresh[i]); /* frees it if the set has none */
	}
	mem_free(cl->opt.mem, cl->fresh);
	cl->fresh = NULL;
	cl->nfresh = 0;
}

/* Loop thread: next_names (known instances and fresh ones) becomes the
 * set. */
static int apply_names(struct cluster *cl)
{
	struct naming_list *nx = &cl->next_names;
	struct naming_index fresh_ix = {0}, set_ix = {0};
	struct cl_inst **set = NULL;
	struct naming_list tmp;
	int err = 0;

	if (nx->n) {
		set = mem_alloc(cl->opt.mem, nx->n * sizeof(*set));
		if (!set || index_insts(&fresh_ix, cl, cl->fresh, cl->nfresh) ||
		    index_insts(&set_ix, cl, cl->set, cl->n)) {
			mem_free(cl->opt.mem, set);
			err = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < nx->n; i++) {
		struct cl_inst *fresh = find_inst(&fresh_ix, &nx->v[i]);

		/* A kept instance holds the set's reference already. */
		set[i] = fresh ? fresh : find_inst(&set_ix, &nx->v[i]);
		if (fresh)
			fresh->refs++;
	}
	err = cl_set_replace(cl, set, nx->n);
	if (err) {
		for (size_t i = 0; i < nx->n; i++)
			if (find_inst(&fresh_ix, &nx->v[i]))
				set[i]->refs--;
		mem_free(cl->opt.mem, set);
		goto out;
	}
	tmp = cl->names;
	cl->names = *nx;
	*nx = tmp;
out:
	naming_index_destroy(&fresh_ix);
	naming_index_destroy(&set_ix);
	nx->n = 0;
	cl_drop_fresh(cl);
	return err;
}

/* ---- file:// reloads and http:// re-resolution ---------------------- */

static void reload_check(struct loop_timer *t);

static void reload_arm(struct cluster *cl)
{
	int ms = cl->scheme == NAMING_DNS ? cl->opt.dns_interval_ms
					  : cl->opt.reload_interval_ms;

	if (cl->scheme != NAMING_LIST && cl->scheme != NAMING_ETCD &&
	    cl->scheme != NAMING_CONSUL && !cl->closing)
		loop_timer_start(cl->loop, &cl->reload_timer,
				 loop_now(cl->loop) + ms * CLOCK_NS_PER_MS,
				 reload_check);
}

/* Whether the file changed since the last look (and remembers it). */
static bool file_changed(struct cluster *cl)
{
	struct stat st;
	int64_t mt, ct;

	if (stat(cl->path, &st)) {
		if (!cl->file_missing_logged)
			cl_log(cl, LOG_LVL_WARN,
			       "cannot stat %s: %s; keeping the %zu "
			       "instances known",
			       cl->path, strerror(errno), cl->n);
		cl->file_missing_logged = true;
		return false;
	}
	cl->file_missing_logged = false;
	mt = (int64_t)st.st_mtim.tv_sec * CLOCK_NS_PER_S + st.st_mtim.tv_nsec;
	ct = (int64_t)st.st_ctim.tv_sec * CLOCK_NS_PER_S + st.st_ctim.tv_nsec;
	if (mt == cl->file_mtime_ns && ct == cl->file_ctime_ns &&
	    st.st_size == cl->file_size && st.st_ino == cl->file_ino)
		return false;
	cl->file_mtime_ns = mt;
	cl->file_ctime_ns = ct;
	cl->file_size = st.st_size;
	cl->file_ino = st.st_ino;
	return true;
}

static void set_reloading(struct cluster *cl, bool on)
{
	pthread_mutex_lock(&cl->lock);
	cl->reloading = on;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void reload_submit(struct cluster *cl);
static int take_names(struct cluster *cl, const struct naming_list *l);

/* etcd:// changed while a reload ran: the newest list goes next, the
 * reload going on (true), unless it is the set already. */
static bool etcd_pending_again(struct cluster *cl)
{
	if (!cl->etcd_pending || cl->closing)
		return false;
	cl->etcd_pending = false;
	if (take_names(cl, cl->scheme == NAMING_CONSUL
			       ? consul_watch_list(&cl->consul)
			       : etcd_watch_list(&cl->etcd)) ||
	    naming_same(&cl->next_names, &cl->names)) {
		cl->next_names.n = 0;
		return false;
	}
	reload_submit(cl);
	return true;
}

static void apply_task_fn(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, apply_task);
	size_t before = cl->n;
	int err;

	if (cl->closing || !cl->reload_ok) {
		cl_drop_fresh(cl);
		cl->next_names.n = 0;
		if (!cl->reload_ok)
			cl->file_mtime_ns = -1; /* look again next time */
		reload_arm(cl);			/* nothing when closing */
		if (etcd_pending_again(cl))
			return;
		/* Last: a destroy waiting for it may free cl at once. */
		set_reloading(cl, false);
		return;
	}
	err = apply_names(cl);
	if (err)
		cl_log(cl, LOG_LVL_ERROR, "cannot apply %s: %s", cl->url,
		       strerror(-err));
	else
		cl_log(cl, cl->n ? LOG_LVL_INFO : LOG_LVL_WARN,
		       "reloaded %s: %zu instances (were %zu)%s", cl->url,
		       cl->n, before,
		       cl->n ? ""
			     : "; calls fail with EHOSTDOWN until "
			       "it lists one");
	cl_count(&cl->n_reloads);
	reload_arm(cl);
	if (etcd_pending_again(cl))
		return;
	set_reloading(cl, false);
}

/* Worker: reads the file (http://: the names are in already), opens
 * channels for new instances. */
static void reload_task_fn(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_task);
	unsigned skipped = 0;
	char why[256];
	int err = 0;

	if (cl->scheme == NAMING_FILE)
		err = naming_read_file(cl->path, &cl->next_names, &skipped, why,
				       sizeof(why));
	if (!err) {
		naming_filter_tag(&cl->next_names, cl->opt.tag);
		naming_filter(&cl->next_names, cl->opt.filter,
			      cl->opt.filter_arg);
		if (skipped)
			cl_log(cl, LOG_LVL_WARN, "%s: %u entries skipped: %s",
			       cl->path, skipped, why);
		err = open_fresh(cl);
		if (err)
			cl_log(cl, LOG_LVL_ERROR, "cannot reload %s: %s",
			       cl->path, strerror(-err));
	} else {
		cl_log(cl, LOG_LVL_WARN, "%s; keeping the instances known",
		       why);
	}
	cl->reload_ok = !err;
	task_init(&cl->apply_task, apply_task_fn);
	loop_post(cl->loop, &cl->apply_task);
}

/* Opens the new instances on a worker, then applies (loop). */
static void reload_submit(struct cluster *cl)
{
	task_init(&cl->reload_task, reload_task_fn);
	if (rt_submit(cl->opt.rt, &cl->reload_task)) {
		cl->next_names.n = 0;
		set_reloading(cl, false);
	}
}

/* Copies a resolver's answer into next_names.  0 or -ENOMEM. */
static int take_names(struct cluster *cl, const struct naming_list *l)
{
	struct naming_list *nx = &cl->next_names;

	nx->n = 0;
	if (l->n > nx->cap) {
		struct naming_node *v =
		    mem_alloc(cl->opt.mem, l->n * sizeof(*v));

		if (!v)
			return -ENOMEM;
		mem_free(cl->opt.mem, nx->v);
		nx->v = v;
		nx->cap = l->n;
	}
	if (l->n)
		memcpy(nx->v, l->v, l->n * sizeof(*nx->v));
	nx->n = l->n;
	return 0;
}

/* etcd_changed_fn (loop): the instances under the prefix changed. */
static void etcd_changed(void *arg, const struct naming_list *l)
{
	struct cluster *cl = arg;

	if (cl->closing)
		return;
	if (cl->reloading) { /* taken when that reload is applied */
		cl->etcd_pending = true;
		return;
	}
	if (take_names(cl, l)) {
		cl_log(cl, LOG_LVL_ERROR, "no memory for %zu instances", l->n);
		cl->next_names.n = 0;
		return;
	}
	if (naming_same(&cl->next_names, &cl->names)) {
		cl->next_names.n = 0;
		return;
	}
	set_reloading(cl, true);
	reload_submit(cl);
}

/* dns_done_fn of a re-resolution (loop). */
static void dns_refreshed(void *arg, int err, const struct naming_list *l,
			  const char *why)
{
	struct cluster *cl = arg;

	if (cl->closing) {
		set_reloading(cl, false);
		return;
	}
	if (!err)
		err = take_names(cl, l);
	if (err) {
		if (!cl->dns_failing)
			cl_log(cl, LOG_LVL_WARN,
			       "%s; keeping the %zu instances known, "
			       "trying again every %d ms",
			       why && why[0] ? why : strerror(-err), cl->n,
			       cl->opt.dns_interval_ms);
		cl->dns_failing = true;
	} else {
		if (cl->dns_failing)
			cl_log(cl, LOG_LVL_INFO, "%s resolves again", cl->host);
		cl->dns_failing = false;
	}
	if (err || naming_same(&cl->next_names, &cl->names)) {
		cl->next_names.n = 0;
		set_reloading(cl, false);
		reload_arm(cl);
		return;
	}
	reload_submit(cl);
}

static void reload_check(struct loop_timer *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_timer);

	if (cl->closing)
		return;
	if (cl->reloading || (cl->scheme == NAMING_FILE && !file_changed(cl))) {
		reload_arm(cl);
		return;
	}
	set_reloading(cl, true);
	if (cl->scheme == NAMING_DNS)
		dns_resolve(&cl->dns, cl->host, cl->port, dns_refreshed, cl);
	else
		reload_submit(cl);
}

/* dns_done_fn of the first resolution (loop): hands the answer to
 * cluster_init. */
static void dns_first(void *arg, int err, const struct naming_list *l,
		      const char *why)
{
	struct cluster *cl = arg;

	if (!err)
		err = take_names(cl, l);
	pthread_mutex_lock(&cl->lock);
	cl->first_err = err;
	snprintf(cl->first_why, sizeof(cl->first_why), "%s",
		 why && why[0] ? why : strerror(-err));
	cl->first_resolved = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}

static void first_resolve_task(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, reload_task);

	dns_resolve(&cl->dns, cl->host, cl->port, dns_first, cl);
}

/* Owner thread: resolves the name once, on the loop, and waits. */
static int first_resolve(struct cluster *cl, char *why, size_t why_size)
{
	task_init(&cl->reload_task, first_resolve_task);
	loop_post(cl->loop, &cl->reload_task);
	cl_wait_flag(cl, &cl->first_resolved);
	if (cl->first_err)
		snprintf(why, why_size, "%s: %s", cl->url, cl->first_why);
	return cl->first_err;
}

/* A watched source's gauge: since when it does not answer. */
static void register_down_gauge(struct cluster *cl, struct metrics_gauge *g)
{
	if (cl->opt.metrics)
		metrics_register_gauge(
		    cl->opt.metrics, g, "rpcgate_route_naming_down_since_seconds",
		    "Unix time since when the naming service does not answer "
		    "(0: it answers)",
		    cl->labels);
}

/* etcd://: the first range, then the watch goes on on the loop. */
static int first_etcd(struct cluster *cl, const char *rest, char *why,
		      size_t why_size)
{
	int err = etcd_watch_start(&cl->etcd, rest, cl->loop, cl->opt.log,
				   cl->name, etcd_changed, cl, &cl->next_names,
				   why, why_size);

	if (err)
		return err;
	cl->etcd_up = true;
	register_down_gauge(cl, &cl->etcd.m_down);
	return 0;
}

/* consul://: the first answer, then blocking queries on the loop. */
static int first_consul(struct cluster *cl, const char *rest, char *why,
			size_t why_size)
{
	struct consul_options o = cl->opt.consul;
	int err;

	if (!o.agent || !*o.agent)
		o.agent = "http://127.0.0.1:8500";
	if (!o.params)
		o.params = "?stale&passing";
	if (o.wait_s <= 0)
		o.wait_s = 60;
	err = consul_watch_start(&cl->consul, rest, &o, cl->loop, cl->opt.log,
				 cl->name, etcd_changed, cl, &cl->next_names,
				 why, why_size);
	if (err)
		return err;
	cl->consul_up = true;
	register_down_gauge(cl, &cl->consul.m_down);
	return 0;
}

/* The first list (init): read, open channels, make it the set. */
int cl_first_names(struct cluster *cl, const char *rest, char *why,
		   size_t why_size)
{
	unsigned skipped = 0;
	int err;

	if (cl->scheme == NAMING_LIST)
		err = naming_parse(rest, ',', &cl->next_names, &skipped, why,
				   why_size);
	else if (cl->scheme == NAMING_DNS)
		err = first_resolve(cl, why, why_size);
	else if (cl->scheme == NAMING_ETCD)
		err = first_etcd(cl, rest, why, why_size);
	else if (cl->scheme == NAMING_CONSUL)
		err = first_consul(cl, rest, why, why_size);
	else
		err = naming_read_file(cl->path, &cl->next_names, &skipped, why,
				       why_size);
	if (err)
		return err;
	if (skipped && cl->scheme == NAMING_LIST) {
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "%s", why);
		snprintf(why, why_size, "%s: %s", cl->url, tmp);
		return -EINVAL;
	}
	if (skipped)
		cl_log(cl, LOG_LVL_WARN, "%s: %u entries skipped: %s", cl->path,
		       skipped, why);
	naming_filter_tag(&cl->next_names, cl->opt.tag);
	naming_filter(&cl->next_names, cl->opt.filter, cl->opt.filter_arg);
	/* A file or an etcd prefix may name none yet: instances come. */
	if (cl->scheme != NAMING_FILE && cl->scheme != NAMING_ETCD &&
	    cl->scheme != NAMING_CONSUL && !cl->next_names.n) {
		snprintf(why, why_size, "%s names no instance%s%s", cl->url,
			 cl->opt.tag ? " with tag " : "",
			 cl->opt.tag ? cl->opt.tag : "");
		return -EINVAL;
	}
	if (cl->scheme == NAMING_FILE)
		file_changed(cl); /* remember the file as read */
	err = open_fresh(cl);
	if (err)
		return err;
	if (cl->scheme != NAMING_FILE && cl->scheme != NAMING_ETCD &&
	    cl->scheme != NAMING_CONSUL && !cl->next_names.n) {
		snprintf(why, why_size, "%s: no instance could be set up",
			 cl->url);
		return -EINVAL;
	}
	return 0;
}

void cl_first_apply_task(struct task *t)
{
	struct cluster *cl = container_of(t, struct cluster, apply_task);

	if (apply_names(cl))
		cl_log(cl, LOG_LVL_ERROR, "no memory for the first instances");
	reload_arm(cl);
	pthread_mutex_lock(&cl->lock);
	cl->first_applied = true;
	pthread_cond_broadcast(&cl->cond);
	pthread_mutex_unlock(&cl->lock);
}
