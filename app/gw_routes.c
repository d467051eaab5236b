/*
 * gw_routes: the gateway's routes (see gateway.h): --route's syntax
 * parsed into a route and its cluster, the table in force, and the live
 * changes of --routes_from:
 *
 *   file://PATH   one route per line ('#' comments), keyed by its
 *                 service pattern; re-read on SIGHUP and when the file
 *                 changes
 *   etcd://HOST:PORT[,...]/PREFIX
 *                 one route per key under PREFIX, watched
 *
 * A change is applied on a task worker (opening a cluster may resolve
 * names and wait for etcd): a route whose text is the same is kept as it
 * is; a new or changed one is opened first, then the new table replaces
 * the old one at once; a route that does not parse or open is refused
 * with a log line, and the one it would replace is kept.
 */
#include "gateway.h"
#include "rdt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/util.h"
#include "rpc/tls.h"

#define WHO GW_WHO
/* The longest --routes_from file read. */
#define GW_ROUTES_FILE_MAX (1u << 20)

/* An integer option in [lo, hi], read as an int flag is. */
static int parse_int_opt(const char *v, long lo, long hi, int *out)
{
	int64_t x;

	if (!flags_parse_int(v, &x) || x < lo || x > hi)
		return -EINVAL;
	*out = (int)x;
	return 0;
}

/* One "key=value" of a route.  0, or -EINVAL with `why`. */
static int route_option(struct gw_route *rt, const char *key, const char *val,
			struct app_runtime *r, char *why, size_t why_size)
{
	struct cluster_options *co = &rt->co;
	int err = 0;

	if (!strcmp(key, "lb"))
		err = lb_kind_parse(val, &co->lb);
	else if (!strcmp(key, "transport")) {
		if (!strcmp(val, "rdma"))
			co->chan.upgrade = rdt_upgrade(r->rdma);
		else if (!strcmp(val, "tcp"))
			co->chan.upgrade = NULL;
		else
			err = -EINVAL;
	} else if (!strcmp(key, "timeout_ms")) {
		err =
		    parse_int_opt(val, -1, APP_TIMEOUT_MS_MAX, &co->timeout_ms);
		if (!err && !co->timeout_ms)
			err = -EINVAL;
	} else if (!strcmp(key, "max_retry"))
		err = parse_int_opt(val, 0, CLUSTER_TRIED_MAX - 1,
				    &co->max_retry);
	else if (!strcmp(key, "backup_request_ms")) {
		err = parse_int_opt(val, -1, APP_TIMEOUT_MS_MAX,
				    &co->backup_request_ms);
		if (!err && !co->backup_request_ms)
			err = -EINVAL;
	} else if (!strcmp(key, "connection_type"))
		err = channel_conn_type_parse(val, &co->chan.conn_type);
	else if (!strcmp(key, "protocol"))
		err = channel_protocol_parse(val, &co->chan.protocol);
	else if (!strcmp(key, "retry_budget_percent"))
		err = parse_int_opt(val, 0, 100, &co->retry_budget_percent);
	else if (!strcmp(key, "min_working_instances"))
		err = parse_int_opt(val, 0, NAMING_NODES_MAX,
				    &co->min_working_instances);
	else if (!strcmp(key, "hold_seconds"))
		err = parse_int_opt(val, 0, 3600, &co->hold_seconds);
	else if (!strcmp(key, "health_check_path")) {
		if (val[0] != '/' || strlen(val) >= sizeof(rt->hc_path) ||
		    strpbrk(val, " \r\n"))
			err = -EINVAL;
		else {
			strcpy(rt->hc_path, val);
			co->health_check_path = rt->hc_path;
		}
	} else if (!strcmp(key, "circuit_breaker")) {
		if (!flags_parse_bool(val, &co->circuit_breaker))
			err = -EINVAL;
	} else if (!strcmp(key, "max_concurrency")) {
		err = climit_parse(val, &rt->limit.mode, &rt->limit.fixed, why,
				   why_size);
	} else if (!strcmp(key, "tls")) {
		bool on = false;

		if (!flags_parse_bool(val, &on))
			err = -EINVAL;
		rt->tls = on;
	} else if (!strcmp(key, "tls_server_name")) {
		if (!*val || strlen(val) >= sizeof(rt->tls_name))
			err = -EINVAL;
		else
			strcpy(rt->tls_name, val);
	} else if (!strcmp(key, "tag")) {
		if (strlen(val) >= sizeof(rt->tag))
			err = -EINVAL;
		else {
			strcpy(rt->tag, val);
			co->tag = rt->tag;
		}
	} else {
		snprintf(why, why_size,
			 "route %s: unknown option \"%s\" (lb, transport, "
			    "timeout_ms, max_retry, backup_request_ms, "
			    "connection_type, protocol, retry_budget_percent, "
			    "circuit_breaker, health_check_path, "
			    "min_working_instances, hold_seconds, tag, "
			    "max_concurrency, tls, tls_server_name)",
			rt->pattern, key);
		return -EINVAL;
	}
	if (err)
		snprintf(why, why_size, "route %s: bad value \"%s\" for %s",
			 rt->pattern, val, key);
	return err ? -EINVAL : 0;
}

/* The flags' defaults for every route. */
static void route_defaults(struct gw_route *rt, struct gateway *gw,
			   const struct app_config *cfg)
{
	const struct flags *fl = &cfg->flags;
	struct cluster_options *co = &rt->co;

	cluster_options_default(co);
	co->rt = &gw->r.rt;
	co->pool = &gw->r.pool;
	co->mem = mem_cached();
	co->log = &gw->r.log;
	co->metrics = &gw->r.metrics;
	lb_kind_parse(flags_str(fl, "lb"), &co->lb);
	co->timeout_ms = (int)flags_int(fl, "timeout_ms");
	co->max_retry = (int)flags_int(fl, "max_retry");
	if (co->max_retry > CLUSTER_TRIED_MAX - 1)
		co->max_retry = CLUSTER_TRIED_MAX - 1;
	co->backup_request_ms = (int)flags_int(fl, "backup_request_ms");
	co->health_check_interval_ms =
	    (int)flags_int(fl, "health_check_interval_s") * 1000;
	co->retry_budget_percent = (int)flags_int(fl, "retry_budget_percent");
	co->dns_servers = flags_str(fl, "dns_servers");
	co->circuit_breaker = flags_bool(fl, "circuit_breaker");
	co->dns_interval_ms = (int)flags_int(fl, "ns_access_interval") * 1000;
	co->consul.agent = flags_str(fl, "consul_agent_addr");
	co->consul.params = flags_str(fl, "consul_url_parameter");
	co->consul.wait_s = (int)flags_int(fl, "consul_blocking_query_wait_secs");
	co->consul.degrade_dir =
	    flags_bool(fl, "consul_enable_degrade_to_file_naming_service")
		? flags_str(fl, "consul_file_naming_service_dir")
		: NULL;
	channel_conn_type_parse(flags_str(fl, "connection_type"),
				&co->chan.conn_type);
	if (!strcmp(flags_str(fl, "transport"), "rdma"))
		co->chan.upgrade = rdt_upgrade(gw->r.rdma);
	/* Calls in flight per instance: the callid table costs 20 bytes
	 * a slot, for each instance of each route. */
	co->chan.max_calls = GW_INSTANCE_CALLS_MAX;
	if (*gw->token) {
		co->chan.credential = gw->token;
		co->chan.credential_len = strlen(gw->token);
	}
}

/* ;tls=true or an https:// URL: the route's instances are called over
 * TLS, verified as --tls_ca and --tls_verify say.  0 or -EINVAL after a
 * message. */
static int route_tls(struct gw_route *rt, struct gateway *gw,
		     const struct app_config *cfg, char *why, size_t why_size)
{
	char tmp[256];
	int err;

	if (rt->tls < 0)
		rt->tls = naming_url_tls(rt->url);
	if (!rt->tls)
		return 0;
	if (rt->co.chan.upgrade) {
		snprintf(why, why_size,
			 "route %s: TLS and transport=rdma exclude each other",
			 rt->pattern);
		return -EINVAL;
	}
	if (!*rt->tls_name)
		app_tls_name_of(rt->url, rt->tls_name, sizeof(rt->tls_name));
	/* gRPC over TLS offers h2, as gRPC's clients do */
	err = app_tls_client_new(&rt->tls_side, cfg,
				 *rt->tls_name ? rt->tls_name : NULL,
				 rt->co.chan.protocol == CHANNEL_PROTO_GRPC
				     ? "h2"
				     : NULL,
				 &gw->r.log, tmp, sizeof(tmp));
	if (err) {
		snprintf(why, why_size, "route %s: TLS: %s", rt->pattern,
			 err == -EINVAL ? tmp : strerror(-err));
		return -EINVAL;
	}
	rt->co.chan.upgrade = tls_upgrade(rt->tls_side);
	return 0;
}

/* Parses one route (--route's syntax) into rt.  0, or -EINVAL with
 * `why`. */
static int route_parse(struct gw_route *rt, const char *text,
		       struct gateway *gw, const struct app_config *cfg,
		       char *why, size_t why_size)
{
	char buf[FLAGS_VALUE_MAX], *eq, *save = NULL, *tok;

		route_defaults(rt, gw, cfg);
	climit_init(&rt->limit, CLIMIT_NONE, 0, rt->limit_what);
	rt->tls = -1;
	snprintf(buf, sizeof(buf), "%s", text);
	eq = strchr(buf, '=');
	if (!eq || eq == buf) {
		snprintf(why, why_size,
			 "route \"%s\": expected SERVICE=NAMING_URL[;...]",
			 text);
		return -EINVAL;
	}
	*eq = '\0';
	if (strlen(buf) >= sizeof(rt->pattern)) {
		snprintf(why, why_size, "route: service name too long");
		return -EINVAL;
	}
	strcpy(rt->pattern, buf);
	snprintf(rt->limit_what, sizeof(rt->limit_what), "route %s", rt->pattern);
	if (!strcmp(buf, "*")) {
		rt->match = GW_ANY;
	} else if (rt->pattern[strlen(buf) - 1] == '*') {
		rt->plen = strlen(buf) - 1;
		if (!rt->plen || buf[rt->plen - 1] != '.' ||
		    memchr(buf, '*', rt->plen)) {
			snprintf(why, why_size,
				 "route \"%s\": a prefix route is PACKAGE.* "
				 "(e.g. example.*)",
				 buf);
			return -EINVAL;
		}
		rt->match = GW_PREFIX;
	} else if (strchr(buf, '*')) {
		snprintf(why, why_size,
			 "route \"%s\": '*' only ends a PACKAGE.* prefix or "
			 "stands alone",
			 buf);
		return -EINVAL;
	}
	tok = strtok_r(eq + 1, ";", &save);
	if (!tok) {
		snprintf(why, why_size, "route \"%s\": no naming URL", text);
		return -EINVAL;
	}
	snprintf(rt->url, sizeof(rt->url), "%s", tok);
	while ((tok = strtok_r(NULL, ";", &save))) {
		char *v = strchr(tok, '=');

		if (!v) {
			snprintf(why, why_size,
				 "route %s: \"%s\" is not KEY=VALUE",
				 rt->pattern, tok);
			return -EINVAL;
		}
		*v++ = '\0';
		if (route_option(rt, tok, v, &gw->r, why, why_size))
			return -EINVAL;
	}
	rt->co.name = rt->pattern;
	rt->co.naming_url = rt->url;
	return route_tls(rt, gw, cfg, why, why_size);
}

/* ---- a route's life ------------------------------------------------- */

static void route_free_now(struct gw_route *rt)
{
	struct gateway *gw = rt->gw;

	if (rt->up) {
		cluster_destroy(&rt->cl);
		climit_destroy(&rt->limit);
	}
	tls_side_free(rt->tls_side);
	free(rt);
	pthread_mutex_lock(&gw->free_lock);
	gw->nalive--;
	pthread_cond_broadcast(&gw->free_cond);
	pthread_mutex_unlock(&gw->free_lock);
}

static void route_free_task(struct task *t)
{
	route_free_now(container_of(t, struct gw_route, free_task));
}

/* A route from its text, its cluster open; NULL with `why`.  Not on a
 * loop: opening may wait for a resolver or etcd. */
static struct gw_route *route_new(struct gateway *gw, const char *text,
				  const char *key, int64_t revision, char *why,
				  size_t why_size)
{
	struct gw_route *rt = calloc(1, sizeof(*rt));
	char tmp[512];
	int err;

	if (!rt) {
		snprintf(why, why_size, "no memory for a route");
		return NULL;
	}
	rt->gw = gw;
	rt->refs = 1; /* the table's */
	rt->revision = revision;
	snprintf(rt->text, sizeof(rt->text), "%s", text);
	snprintf(rt->key, sizeof(rt->key), "%s", key);
	pthread_mutex_lock(&gw->free_lock);
	gw->nalive++;
	pthread_mutex_unlock(&gw->free_lock);
	if (route_parse(rt, text, gw, gw->cfg, why, why_size)) {
		route_free_now(rt);
		return NULL;
	}
	err = cluster_init(&rt->cl, &rt->co, tmp, sizeof(tmp));
	if (err) {
		snprintf(why, why_size, "route %s: %s", rt->pattern, tmp);
		climit_destroy(&rt->limit);
		route_free_now(rt);
		return NULL;
	}
	rt->up = true;
	return rt;
}

void gw_route_hold(struct gw_route *rt)
{
	__atomic_add_fetch(&rt->refs, 1, __ATOMIC_RELAXED);
}

void gw_route_put(struct gw_route *rt)
{
	if (__atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL))
		return;
	/* The last call of a route taken out: closed on a worker (the
	 * cluster waits for its loop, which may be this thread). */
	task_init(&rt->free_task, route_free_task);
	if (rt_submit(&rt->gw->r.rt, &rt->free_task))
		route_free_now(rt); /* stopping: no loop runs any more */
}

/* The most specific route of `service` in `tab`, or NULL. */
static struct gw_route *route_find(const struct gw_table *tab,
				   const char *service)
{
	struct gw_route *best = NULL;

	for (int i = 0; i < tab->n; i++) {
		struct gw_route *rt = tab->r[i];

		switch (rt->match) {
		case GW_EXACT:
			if (!strcmp(rt->pattern, service))
				return rt;
			break;
		case GW_PREFIX:
			if (!strncmp(rt->pattern, service, rt->plen) &&
			    (!best || best->match == GW_ANY ||
			     best->plen < rt->plen))
				best = rt;
			break;
		case GW_ANY:
			if (!best)
				best = rt;
			break;
		}
	}
	return best;
}

struct gw_route *gw_route_get(struct gateway *gw, const char *service)
{
	struct gw_route *rt;

	pthread_rwlock_rdlock(&gw->lock);
	rt = route_find(&gw->tab, service);
	if (rt)
		__atomic_add_fetch(&rt->refs, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&gw->lock);
	return rt;
}

static struct gw_route *table_pattern(const struct gw_table *tab,
				      const char *pattern)
{
	for (int i = 0; i < tab->n; i++)
		if (!strcmp(tab->r[i]->pattern, pattern))
			return tab->r[i];
	return NULL;
}

/* ---- live changes ------------------------------------------------------ */

/* One route of --routes_from: its key (a file's: the pattern), text and
 * revision. */
struct gw_src {
	char *key, *text;
	int64_t rev;
};

static void src_free(struct gw_src *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].text);
	}
	free(v);
}

/* The pattern of a route's text ("" when it has none), for keying. */
static void text_pattern(const char *text, char *out, size_t size)
{
	size_t n = strcspn(text, "=");

	snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), text);
}

/*
 * Makes the --routes_from routes v[0..n) the table's, keeping the fixed
 * ones (--route) and every route whose text did not change.  Worker or
 * owner thread; one at a time.
 */
static void apply_routes(struct gateway *gw, const struct gw_src *v, size_t n,
			 bool first)
{
	struct gw_table old, next = {0};
	struct gw_route *made[GW_ROUTES_MAX];
	int nmade = 0, added = 0, changed = 0, removed = 0, refused = 0;
	char why[640];

	pthread_mutex_lock(&gw->apply_lock);
	pthread_rwlock_rdlock(&gw->lock);
	old = gw->tab;
	pthread_rwlock_unlock(&gw->lock);
	for (int i = 0; i < old.n; i++)
		if (!old.r[i]->key[0])
			next.r[next.n++] = old.r[i];
	for (size_t i = 0; i < n; i++) {
		struct gw_route *was = NULL, *rt;
		char pat[256];

		for (int k = 0; k < old.n; k++)
			if (old.r[k]->key[0] && !strcmp(old.r[k]->key, v[i].key))
				was = old.r[k];
		if (was && !strcmp(was->text, v[i].text)) {
			was->revision = v[i].rev;
			rt = was;
		} else {
			text_pattern(v[i].text, pat, sizeof(pat));
			rt = NULL;
			if (next.n == GW_ROUTES_MAX)
				snprintf(why, sizeof(why), "more than %d routes",
					 GW_ROUTES_MAX);
			else if (table_pattern(&next, pat))
				snprintf(why, sizeof(why),
					 "route %s is there already", pat);
			else
				rt = route_new(gw, v[i].text, v[i].key,
					       v[i].rev, why, sizeof(why));
			if (!rt) {
				refused++;
				log_warn(&gw->r.log,
					 "routes from %s: %s: %s; %s",
					 gw->routes_from, v[i].key, why,
					 was ? "keeping the route in force"
					     : "not taken");
				rt = was;
			} else {
				made[nmade++] = rt;
				if (was)
					changed++;
				else
					added++;
			}
		}
		if (rt && !table_pattern(&next, rt->pattern) &&
		    next.n < GW_ROUTES_MAX)
			next.r[next.n++] = rt;
	}
	pthread_rwlock_wrlock(&gw->lock);
	gw->tab = next;
	pthread_rwlock_unlock(&gw->lock);
	/* What the old table held and the new one does not: its calls end
	 * on it, then it is freed. */
	for (int i = 0; i < old.n; i++) {
		bool kept = false;

		for (int k = 0; k < next.n && !kept; k++)
			kept = next.r[k] == old.r[i];
		if (!kept) {
			bool replaced = false;

			for (int k = 0; k < nmade && !replaced; k++)
				replaced = !strcmp(made[k]->key, old.r[i]->key);
			if (!replaced)
				removed++;
			gw_route_put(old.r[i]);
		}
	}
	gw->n_applied += (uint64_t)(added + changed + removed);
	gw->n_refused += (uint64_t)refused;
	if (first || added || changed || removed || refused)
		log_info(&gw->r.log,
			 "routes from %s: %d in force (%d added, %d changed, "
			 "%d removed, %d refused)",
			 gw->routes_from, next.n, added, changed, removed,
			 refused);
	pthread_mutex_unlock(&gw->apply_lock);
}

/* file://: every line a route.  0, or -errno with `why`. */
static int read_routes_file(const char *path, struct gw_src **out, size_t *n,
			    char *why, size_t why_size)
{
	FILE *fp = fopen(path, "r");
	char line[FLAGS_VALUE_MAX];
	struct gw_src *v = NULL;
	size_t cap = 0;
	long bytes = 0;

	*n = 0;
	if (!fp) {
		snprintf(why, why_size, "cannot read %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), fp)) {
		char *p = line, *e, pat[256];

		bytes += (long)strlen(line);
		if (bytes > (long)GW_ROUTES_FILE_MAX) {
			snprintf(why, why_size, "%s: larger than 1 MiB", path);
			fclose(fp);
			src_free(v, *n);
			return -EFBIG;
		}
		e = strchr(p, '#');
		if (e)
			*e = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strlen(p);
		while (e > p && (e[-1] == '\n' || e[-1] == '\r' ||
				 e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (!*p)
			continue;
		if (*n == cap) {
			struct gw_src *g;

			cap = cap ? 2 * cap : 16;
			g = realloc(v, cap * sizeof(*v));
			if (!g)
				break;
			v = g;
		}
		text_pattern(p, pat, sizeof(pat));
		v[*n].key = strdup(pat);
		v[*n].text = strdup(p);
		v[*n].rev = 0;
		if (!v[*n].key || !v[*n].text) {
			free(v[*n].key);
			free(v[*n].text);
			break;
		}
		(*n)++;
	}
	fclose(fp);
	*out = v;
	return 0;
}

/* Whether the file changed since the last read (and remembers it). */
static bool file_changed(struct gateway *gw, const char *path)
{
	struct stat st;
	int64_t mt;

	if (stat(path, &st))
		return false;
	mt = (int64_t)st.st_mtim.tv_sec * CLOCK_NS_PER_S + st.st_mtim.tv_nsec;
	if (mt == gw->file_mtime_ns && st.st_size == gw->file_size)
		return false;
	gw->file_mtime_ns = mt;
	gw->file_size = st.st_size;
	return true;
}

/* Re-reads file:// routes; refuses the whole file when it cannot be read
 * (the routes in force stay). */
static int reload_file(struct gateway *gw, bool first)
{
	const char *path = gw->routes_from + 7;
	struct gw_src *v = NULL;
	size_t n = 0;
	char why[512];

	file_changed(gw, path);
	if (read_routes_file(path, &v, &n, why, sizeof(why))) {
		if (first)
			fprintf(stderr, WHO ": --routes_from: %s\n", why);
		else
			log_warn(&gw->r.log,
				 "routes from %s: %s; keeping the routes in "
				 "force",
				 gw->routes_from, why);
		return -EINVAL;
	}
	gw->file_reads++;
	for (size_t i = 0; i < n; i++)
		v[i].rev = gw->file_reads;
	apply_routes(gw, v, n, first);
	src_free(v, n);
	return 0;
}

void gw_routes_check(void *arg, bool sighup)
{
	struct gateway *gw = arg;

	if (strncmp(gw->routes_from, "file://", 7))
		return;
	if (sighup || file_changed(gw, gw->routes_from + 7)) {
		if (sighup)
			log_info(&gw->r.log, "SIGHUP: reading %s",
				 gw->routes_from);
		gw->file_mtime_ns = -1; /* read now */
		reload_file(gw, false);
	}
}

static void etcd_apply_task(struct task *t)
{
	struct gateway *gw = container_of(t, struct gateway, apply_task);

	for (;;) {
		struct gw_src *v;
		size_t n;

		pthread_mutex_lock(&gw->free_lock);
		v = gw->pending;
		n = gw->npending;
		gw->pending = NULL;
		gw->npending = 0;
		if (!v && !gw->apply_again) {
			gw->apply_queued = false;
			pthread_cond_broadcast(&gw->free_cond);
			pthread_mutex_unlock(&gw->free_lock);
			return;
		}
		gw->apply_again = false;
		pthread_mutex_unlock(&gw->free_lock);
		apply_routes(gw, v, n, false);
		src_free(v, n);
	}
}

/* etcd_kvs_fn (the watch's loop): copies the set, queues the apply. */
static void etcd_routes_changed(void *arg, const struct etcd_ent *e, size_t n,
				int64_t rev)
{
	struct gateway *gw = arg;
	struct gw_src *v = calloc(n ? n : 1, sizeof(*v));
	size_t k = 0;

	(void)rev;
	if (!v) {
		log_error(&gw->r.log, "routes from %s: no memory",
			  gw->routes_from);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (!e[i].valid)
			continue;
		v[k].key = strdup(e[i].key);
		v[k].text = strdup(e[i].value);
		v[k].rev = e[i].mod_revision;
		if (!v[k].key || !v[k].text) {
			free(v[k].key);
			free(v[k].text);
			continue;
		}
		k++;
	}
	pthread_mutex_lock(&gw->free_lock);
	src_free(gw->pending, gw->npending);
	gw->pending = v;
	gw->npending = k;
	gw->apply_again = true;
	if (!gw->apply_queued) {
		gw->apply_queued = true;
		task_init(&gw->apply_task, etcd_apply_task);
		if (rt_submit(&gw->r.rt, &gw->apply_task))
			gw->apply_queued = false;
	}
	pthread_mutex_unlock(&gw->free_lock);
}

/* Waits until the queued etcd applies are done. */
static void etcd_apply_wait(struct gateway *gw)
{
	pthread_mutex_lock(&gw->free_lock);
	while (gw->apply_queued)
		pthread_cond_wait(&gw->free_cond, &gw->free_lock);
	pthread_mutex_unlock(&gw->free_lock);
}

/* ---- open and close ------------------------------------------------- */

int gw_routes_open(struct gateway *gw)
{
	const char *all = flags_str(&gw->cfg->flags, "route");
	char why[640];

	pthread_rwlock_init(&gw->lock, NULL);
	pthread_mutex_init(&gw->apply_lock, NULL);
	pthread_mutex_init(&gw->free_lock, NULL);
	pthread_cond_init(&gw->free_cond, NULL);
	gw->routes_from = flags_str(&gw->cfg->flags, "routes_from");
	if (!*all && !*gw->routes_from) {
		fprintf(stderr, WHO ": no --route given: nothing to forward "
				    "(e.g. --route='example.EchoService="
				    "list://127.0.0.1:8001,127.0.0.1:8002')\n");
		return -EINVAL;
	}
	for (const char *p = all; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char one[FLAGS_VALUE_MAX];
		struct gw_route *rt;

		if (gw->tab.n == GW_ROUTES_MAX) {
			fprintf(stderr, WHO ": more than %d routes\n",
				GW_ROUTES_MAX);
			return -EINVAL;
		}
		snprintf(one, sizeof(one), "%.*s", (int)len, p);
		p = nl ? nl + 1 : p + len;
		rt = route_new(gw, one, "", 0, why, sizeof(why));
		if (!rt) {
			fprintf(stderr, WHO ": %s\n", why);
			return -EINVAL;
		}
		if (table_pattern(&gw->tab, rt->pattern)) {
			fprintf(stderr, WHO ": two routes for %s\n",
				rt->pattern);
			gw_route_put(rt);
			return -EINVAL;
		}
		gw->tab.r[gw->tab.n++] = rt;
	}
	if (!*gw->routes_from)
		return 0;
	if (!strncmp(gw->routes_from, "file://", 7) && gw->routes_from[7])
		return reload_file(gw, true);
	if (!strncmp(gw->routes_from, "etcd://", 7)) {
		gw->rwatch = calloc(1, sizeof(*gw->rwatch));
		if (!gw->rwatch ||
		    etcd_watch_start_raw(gw->rwatch, gw->routes_from + 7,
					 rt_loop_for(&gw->r.rt, 0), &gw->r.log,
					 "routes", etcd_routes_changed, gw, why,
					 sizeof(why))) {
			fprintf(stderr, WHO ": --routes_from=%s: %s\n",
				gw->routes_from,
				gw->rwatch ? why : "no memory");
			free(gw->rwatch);
			gw->rwatch = NULL;
			return -EINVAL;
		}
		etcd_apply_wait(gw); /* the first set is in force */
		return 0;
	}
	fprintf(stderr,
		WHO ": --routes_from=%s: expected file://PATH or "
		    "etcd://HOST:PORT[,...]/PREFIX\n",
		gw->routes_from);
	return -EINVAL;
}

void gw_routes_close(struct gateway *gw)
{
	struct gw_table tab;

	if (gw->rwatch) {
		etcd_watch_stop(gw->rwatch);
		etcd_apply_wait(gw);
		free(gw->rwatch);
		gw->rwatch = NULL;
	}
	pthread_mutex_lock(&gw->free_lock);
	src_free(gw->pending, gw->npending);
	gw->pending = NULL;
	gw->npending = 0;
	pthread_mutex_unlock(&gw->free_lock);
	pthread_rwlock_wrlock(&gw->lock);
	tab = gw->tab;
	gw->tab.n = 0;
	pthread_rwlock_unlock(&gw->lock);
	for (int i = 0; i < tab.n; i++)
		gw_route_put(tab.r[i]);
	/* Routes taken out earlier whose last call just ended. */
	pthread_mutex_lock(&gw->free_lock);
	while (gw->nalive > 0)
		pthread_cond_wait(&gw->free_cond, &gw->free_lock);
	pthread_mutex_unlock(&gw->free_lock);
}

/* ---- what is in force ------------------------------------------------ */

void gw_routes_page(void *arg, struct fbuf *out)
{
	struct gateway *gw = arg;

	fbuf_printf(out, "routes from: %s\nchanges applied: %llu, refused: "
			 "%llu\n\n",
		    *gw->routes_from ? gw->routes_from : "--route only",
		    (unsigned long long)gw->n_applied,
		    (unsigned long long)gw->n_refused);
	fbuf_puts(out, "pattern\tnaming\tinstances\tsource\trevision\n");
	pthread_rwlock_rdlock(&gw->lock);
	for (int i = 0; i < gw->tab.n; i++) {
		const struct gw_route *rt = gw->tab.r[i];
		bool etcd = !strncmp(gw->routes_from, "etcd://", 7);

		fbuf_printf(out, "%s\t%s\t%zu\t", rt->pattern, rt->url,
			    rt->cl.n);
		if (!rt->key[0])
			fbuf_puts(out, "--route\t-\n");
		else
			fbuf_printf(out, "%s%s%s\t%lld\n", gw->routes_from,
				    etcd ? " key " : "", etcd ? rt->key : "",
				    (long long)rt->revision);
	}
	pthread_rwlock_unlock(&gw->lock);
}

void gw_routes_print(struct gateway *gw)
{
	pthread_rwlock_rdlock(&gw->lock);
	printf("%d routes:", gw->tab.n);
	for (int i = 0; i < gw->tab.n; i++)
		printf(" %s -> %s (%s, %zu instances)", gw->tab.r[i]->pattern,
		       gw->tab.r[i]->url, lb_kind_name(gw->tab.r[i]->co.lb),
		       gw->tab.r[i]->cl.n);
	pthread_rwlock_unlock(&gw->lock);
}
