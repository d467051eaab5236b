/*
 * gateway: accepts baidu_std calls and forwards each to the upstream
 * cluster of its service, until SIGTERM or SIGINT.
 *
 *   rpcgate gateway [--listen=ADDR[:PORT]] [--port=N] [--rdma=BOOL]
 *       --route='SERVICE=NAMING_URL[;lb=NAME][;transport=tcp|rdma]
 *                [;timeout_ms=N][;max_retry=N][;backup_request_ms=N]
 *                [;connection_type=T][;retry_budget_percent=N]
 *                [;circuit_breaker=BOOL][;health_check_path=/P]
 *                [;min_working_instances=N;hold_seconds=S][;tag=T]
 *                [;max_concurrency=auto|N]'
 *                (once per route)
 *       [--lb=NAME] [--timeout_ms=N] [--max_retry=N]
 *       [--backup_request_ms=N] [--connection_type=T]
 *       [--health_check_interval_s=N] [--retry_budget_percent=N]
 *       [--auth_token=S] [--access_log=BOOL] [--dns_servers=IP[:PORT],...]
 *       [--ns_access_interval=S] [--circuit_breaker=BOOL]
 *
 * SERVICE is a full service name ("example.EchoService"), a prefix
 * ("example.*": every service of the package) or "*" (the rest); the
 * most specific route wins.  Route options override the flags of the
 * same name.  A call whose service no route takes is answered
 * ENOSERVICE.
 *
 * Forwarding does not re-encode: the request's message bytes (compressed
 * or not) and attachment go upstream as they came, with the client's
 * log_id and checksum; only the meta is new (the upstream connection's
 * correlation id, the time left).  The answer comes back the same way.
 * Upstream errors keep their code and text; the gateway's own failures
 * use brpc's codes (ERPCTIMEDOUT, EHOSTDOWN when no instance is healthy,
 * ECONNREFUSED/EEOF when the last instance tried failed, EREQUEST when a
 * consistent-hashing route gets a call without a log_id, its request
 * code).  With --auth_token, clients must send it and the gateway sends
 * it to the upstreams.
 */
#include "app.h"
#include "rdt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbd.h"
#include "codec/rpc_errno.h"
#include "rpc/server.h"
#include "rpc/tls.h"
#include "cluster/cluster.h"

#define WHO "rpcgate gateway"

/* Routes one gateway takes. */
#define GW_ROUTES_MAX 32
/* Calls in flight to one instance (its channel's callid capacity). */
#define GW_INSTANCE_CALLS_MAX 8192
/* Grace for calls in flight at the stop, as echo's. */
#define GW_STOP_GRACE_MS 5000

enum gw_match {
	GW_EXACT,  /* "pkg.Service" */
	GW_PREFIX, /* "pkg.*": names starting with "pkg." */
	GW_ANY,	   /* "*" */
};

struct gw_route {
	char pattern[256];
	size_t plen; /* GW_PREFIX: bytes before the '*' */
	enum gw_match match;
	char url[FLAGS_VALUE_MAX];
	char tag[NAMING_TAG_MAX];
	char hc_path[256];
	struct cluster_options co;
	struct cluster cl;
	struct climit limit; /* max_concurrency=: calls through the route */
	int tls;	     /* ;tls=: -1 unsaid (https:// says yes), 0, 1 */
	char tls_name[256];  /* ;tls_server_name=, else the URL's host */
	struct tls_side *tls_side;
	char limit_what[280];
	bool up;
};

struct gateway {
	struct app_runtime r;
	struct pbd_pool descriptors; /* HTTP/JSON callers' types */
	struct server srv;
	struct gw_route *routes;
	int nroutes;
	char host[256];
	int port, bound_port;
	const char *token;
	bool access_log;
};

/* One forwarded call. */
struct gw_call {
	struct cluster_call cc;
	struct server_call *sc;
	struct gw_route *route;
	struct gateway *gw;
};

/* ---- routes --------------------------------------------------------- */

/* An integer option in [lo, hi], read as an int flag is. */
static int parse_int_opt(const char *v, long lo, long hi, int *out)
{
	int64_t x;

	if (!flags_parse_int(v, &x) || x < lo || x > hi)
		return -EINVAL;
	*out = (int)x;
	return 0;
}

/* One "key=value" of a route.  0, or -EINVAL after a message. */
static int route_option(struct gw_route *rt, const char *key, const char *val,
			struct app_runtime *r)
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
		char why[160];

		err = climit_parse(val, &rt->limit.mode, &rt->limit.fixed, why,
				   sizeof(why));
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
		fprintf(stderr,
			WHO ": route %s: unknown option \"%s\" (lb, transport, "
			    "timeout_ms, max_retry, backup_request_ms, "
			    "connection_type, retry_budget_percent, "
			    "circuit_breaker, health_check_path, "
			    "min_working_instances, hold_seconds, tag, "
			    "max_concurrency, tls, tls_server_name)\n",
			rt->pattern, key);
		return -EINVAL;
	}
	if (err)
		fprintf(stderr, WHO ": route %s: bad value \"%s\" for %s\n",
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
		     const struct app_config *cfg)
{
	char why[256];
	int err;

	if (rt->tls < 0)
		rt->tls = naming_url_tls(rt->url);
	if (!rt->tls)
		return 0;
	if (rt->co.chan.upgrade) {
		fprintf(stderr,
			WHO ": route %s: TLS and transport=rdma exclude each "
			    "other\n",
			rt->pattern);
		return -EINVAL;
	}
	if (!*rt->tls_name)
		app_tls_name_of(rt->url, rt->tls_name, sizeof(rt->tls_name));
	err = app_tls_client_new(&rt->tls_side, cfg,
				 *rt->tls_name ? rt->tls_name : NULL,
				 &gw->r.log, why, sizeof(why));
	if (err) {
		fprintf(stderr, WHO ": route %s: TLS: %s\n", rt->pattern,
			err == -EINVAL ? why : strerror(-err));
		return -EINVAL;
	}
	rt->co.chan.upgrade = tls_upgrade(rt->tls_side);
	return 0;
}

/* Parses one --route value into rt.  0, or -EINVAL after a message. */
static int route_parse(struct gw_route *rt, const char *text,
		       struct gateway *gw, const struct app_config *cfg)
{
	char buf[FLAGS_VALUE_MAX], *eq, *save = NULL, *tok;

	memset(rt, 0, sizeof(*rt));
	route_defaults(rt, gw, cfg);
	climit_init(&rt->limit, CLIMIT_NONE, 0, rt->limit_what);
	rt->tls = -1;
	snprintf(buf, sizeof(buf), "%s", text);
	eq = strchr(buf, '=');
	if (!eq || eq == buf) {
		fprintf(stderr,
			WHO ": --route=%s: expected SERVICE=NAMING_URL[;...]\n",
			text);
		return -EINVAL;
	}
	*eq = '\0';
	if (strlen(buf) >= sizeof(rt->pattern)) {
		fprintf(stderr, WHO ": --route: service name too long\n");
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
			fprintf(stderr,
				WHO ": --route: \"%s\": a prefix route is "
				    "PACKAGE.* (e.g. example.*)\n",
				buf);
			return -EINVAL;
		}
		rt->match = GW_PREFIX;
	} else if (strchr(buf, '*')) {
		fprintf(stderr,
			WHO ": --route: \"%s\": '*' only ends a "
			    "PACKAGE.* prefix or stands alone\n",
			buf);
		return -EINVAL;
	}
	tok = strtok_r(eq + 1, ";", &save);
	if (!tok) {
		fprintf(stderr, WHO ": --route=%s: no naming URL\n", text);
		return -EINVAL;
	}
	snprintf(rt->url, sizeof(rt->url), "%s", tok);
	while ((tok = strtok_r(NULL, ";", &save))) {
		char *v = strchr(tok, '=');

		if (!v) {
			fprintf(stderr,
				WHO ": route %s: \"%s\" is not KEY=VALUE\n",
				rt->pattern, tok);
			return -EINVAL;
		}
		*v++ = '\0';
		if (route_option(rt, tok, v, &gw->r))
			return -EINVAL;
	}
	rt->co.name = rt->pattern;
	rt->co.naming_url = rt->url;
	return route_tls(rt, gw, cfg);
}

/* The most specific route of `service`, or NULL. */
static struct gw_route *route_find(struct gateway *gw, const char *service)
{
	struct gw_route *best = NULL;

	for (int i = 0; i < gw->nroutes; i++) {
		struct gw_route *rt = &gw->routes[i];

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

/* Parses every --route and opens its cluster.  0, or -errno after a
 * message. */
static int routes_open(struct gateway *gw, const struct app_config *cfg)
{
	const char *all = flags_str(&cfg->flags, "route");
	char why[512];
	int err;

	if (!*all) {
		fprintf(stderr, WHO ": no --route given: nothing to forward "
				    "(e.g. --route='example.EchoService="
				    "list://127.0.0.1:8001,127.0.0.1:8002')\n");
		return -EINVAL;
	}
	gw->routes =
	    mem_zalloc(mem_cached(), GW_ROUTES_MAX * sizeof(*gw->routes));
	if (!gw->routes)
		return -ENOMEM;
	for (const char *p = all; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char one[FLAGS_VALUE_MAX];
		struct gw_route *rt;

		if (gw->nroutes == GW_ROUTES_MAX) {
			fprintf(stderr, WHO ": more than %d routes\n",
				GW_ROUTES_MAX);
			return -EINVAL;
		}
		snprintf(one, sizeof(one), "%.*s", (int)len, p);
		p = nl ? nl + 1 : p + len;
		rt = &gw->routes[gw->nroutes];
		if (route_parse(rt, one, gw, cfg))
			return -EINVAL;
		for (int i = 0; i < gw->nroutes; i++)
			if (!strcmp(gw->routes[i].pattern, rt->pattern)) {
				fprintf(stderr, WHO ": two routes for %s\n",
					rt->pattern);
				return -EINVAL;
			}
		err = cluster_init(&rt->cl, &rt->co, why, sizeof(why));
		if (err) {
			fprintf(stderr, WHO ": route %s: %s\n", rt->pattern,
				why);
			return err;
		}
		rt->up = true;
		gw->nroutes++;
	}
	return 0;
}

static void routes_close(struct gateway *gw)
{
	if (!gw->routes)
		return;
	for (int i = 0; i < GW_ROUTES_MAX; i++) {
		if (gw->routes[i].up) {
			cluster_destroy(&gw->routes[i].cl);
			climit_destroy(&gw->routes[i].limit);
		}
		tls_side_free(gw->routes[i].tls_side);
	}
	mem_free(mem_cached(), gw->routes);
	gw->routes = NULL;
}

/* ---- forwarding ----------------------------------------------------- */

static void *gw_route_fn(void *arg, const char *service, const char *method)
{
	(void)method;
	return route_find(arg, service);
}

/* The cluster's done, on its loop: the answer goes back as it came. */
static void gw_done(struct cluster_call *cc, void *arg)
{
	struct gw_call *g = arg;
	struct server_call *sc = g->sc;

	if (cc->error_code && cc->error_from_server) {
		server_call_fail_plain(sc, cc->error_code, cc->error_text);
	} else if (cc->error_code) {
		server_call_fail(sc, cc->error_code, "%s", cc->error_text);
	} else if (iobuf_append_buf(&sc->response_body, &cc->response_body) ||
		   iobuf_append_buf(&sc->response_attachment,
				    &cc->response_attachment)) {
		iobuf_reset(&sc->response_body);
		iobuf_reset(&sc->response_attachment);
		server_call_fail(sc, RPC_EINTERNAL, "no memory for the answer");
	} else {
		sc->response_compress_type = cc->response_compress_type;
		sc->has_response_crc = cc->has_response_crc;
		memcpy(sc->response_crc, cc->response_crc,
		       sizeof(sc->response_crc));
	}
	if (g->gw->access_log)
		log_info(&g->gw->r.log,
			 "access %s %s/%s route=%s instance=%s code=%d "
			 "latency_us=%lld attempts=%d%s%s%s%s",
			 sc->peer, sc->service, sc->method, g->route->pattern,
			 cc->instance[0] ? cc->instance : "-", cc->error_code,
			 (long long)cc->latency_us, cc->attempts,
			 cc->backup_sent ? " backup" : "",
			 sc->peer_subject ? " client=\"" : "",
			 sc->peer_subject ? sc->peer_subject : "",
			 sc->peer_subject ? "\"" : "");
	server_call_finish(sc);
	cluster_call_destroy(cc);
	mem_free(mem_cached(), g);
}

/* server_set_router's handler, on the loop that read the request. */
static void gw_forward(struct server_call *sc, void *arg)
{
	struct gateway *gw = arg;
	struct gw_route *rt = sc->route;
	struct gw_call *g;
	struct cluster_call *cc;
	char why[320];

	if (server_call_limit(sc, &rt->limit, why, sizeof(why))) {
		server_call_fail(sc, RPC_ELIMIT, "%s", why);
		server_call_finish(sc);
		return;
	}
	g = mem_alloc(mem_cached(), sizeof(*g));
	if (!g) {
		server_call_fail(sc, RPC_EINTERNAL, "no memory for the call");
		server_call_finish(sc);
		return;
	}
	g->sc = sc;
	g->route = rt;
	g->gw = gw;
	cc = &g->cc;
	cluster_call_init(cc, &gw->r.pool);
	cc->service = sc->service;
	cc->method = sc->method;
	if (iobuf_append_buf(&cc->body, &sc->request_body) ||
	    iobuf_append_buf(&cc->attachment, &sc->request_attachment)) {
		cluster_call_destroy(cc);
		mem_free(mem_cached(), g);
		server_call_fail(sc, RPC_EINTERNAL, "no memory for the call");
		server_call_finish(sc);
		return;
	}
	cc->compress_type = sc->request_compress_type;
	cc->has_log_id = sc->has_log_id;
	cc->log_id = sc->log_id;
	cc->has_code = sc->has_log_id; /* consistent hashing's key */
	cc->code = sc->log_id;
	cc->has_crc = sc->has_request_crc;
	memcpy(cc->crc, sc->request_crc, sizeof(cc->crc));
	/* A client that says how long it waits bounds ours. */
	cc->timeout_ms = rt->co.timeout_ms;
	if (sc->timeout_ms > 0 &&
	    (cc->timeout_ms < 0 || sc->timeout_ms < cc->timeout_ms))
		cc->timeout_ms = sc->timeout_ms;
	cluster_call_start(&rt->cl, cc, gw_done, g);
}

/* ---- the command ---------------------------------------------------- */

/* --listen as ADDR:PORT, or ADDR with --port. */
static int listen_parse(struct gateway *gw, const struct app_config *cfg)
{
	const char *l = flags_str(&cfg->flags, "listen");
	const char *colon = strrchr(l, ':');
	bool v6_bare = colon && strchr(l, ':') != colon && l[0] != '[';

	gw->port = (int)flags_int(&cfg->flags, "port");
	if (colon && !v6_bare) {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		size_t hl = (size_t)(colon - l);

		if (*end || end == colon + 1 || p < 0 || p > 65535 ||
		    hl >= sizeof(gw->host)) {
			fprintf(stderr,
				WHO ": --listen=%s: expected ADDR:PORT or "
				    "ADDR\n",
				l);
			return -EINVAL;
		}
		if (l[0] == '[' && hl >= 2 && l[hl - 1] == ']')
			snprintf(gw->host, sizeof(gw->host), "%.*s",
				 (int)(hl - 2), l + 1);
		else
			snprintf(gw->host, sizeof(gw->host), "%.*s", (int)hl,
				 l);
		gw->port = (int)p;
	} else {
		snprintf(gw->host, sizeof(gw->host), "%s", l);
	}
	return 0;
}

static int gw_serve(struct gateway *gw, struct app_config *cfg)
{
	struct server_options so;
	int err;

	app_server_options(&so, &gw->r, cfg, &gw->descriptors, WHO);
	if (*gw->token) {
		so.auth = app_token_auth;
		so.auth_arg = (void *)gw->token;
	}
	err = server_init(&gw->srv, &so);
	if (!err)
		err = server_set_router(&gw->srv, gw_route_fn, gw_forward, gw);
	if (err) {
		fprintf(stderr, WHO ": cannot set up the server: %s\n",
			strerror(-err));
		return err;
	}
	err = server_listen(&gw->srv, gw->host, gw->port);
	if (err < 0) {
		fprintf(stderr, WHO ": cannot listen on %s:%d: %s\n", gw->host,
			gw->port, strerror(-err));
		goto out_destroy;
	}
	gw->bound_port = err;
	err = server_start(&gw->srv);
	if (err) {
		fprintf(stderr, WHO ": cannot start serving on %s:%d: %s\n",
			gw->host, gw->bound_port, strerror(-err));
		goto out_destroy;
	}
	return 0;

out_destroy:
	server_destroy(&gw->srv);
	return err;
}

static void gw_print_serving(const struct gateway *gw)
{
	bool v6 = strchr(gw->host, ':') != NULL;

	printf(WHO ": serving on %s%s%s:%d, %d routes:", v6 ? "[" : "",
	       gw->host, v6 ? "]" : "", gw->bound_port, gw->nroutes);
	for (int i = 0; i < gw->nroutes; i++)
		printf(" %s -> %s (%s, %zu instances)", gw->routes[i].pattern,
		       gw->routes[i].url, lb_kind_name(gw->routes[i].co.lb),
		       gw->routes[i].cl.n);
	printf("\n");
	fflush(stdout);
}

int app_cmd_gateway(struct app_config *cfg)
{
	struct gateway gw;
	struct app_user user;
	struct tls_side *tls = NULL;
	struct etcd_reg *reg = NULL;
	sigset_t stop;
	int sig, status = APP_EXIT_FAILURE;

	memset(&gw, 0, sizeof(gw));
	gw.token = flags_str(&cfg->flags, "auth_token");
	gw.access_log = flags_bool(&cfg->flags, "access_log");
	if (listen_parse(&gw, cfg) || app_user_resolve(cfg, &user, WHO))
		return APP_EXIT_CONFIG;
	if (app_descriptors_load(&gw.descriptors, cfg, WHO))
		return APP_EXIT_CONFIG;
	/* The key is read while the files are still readable. */
	if (app_tls_server_load(&tls, cfg, WHO)) {
		status = APP_EXIT_CONFIG;
		goto out_descriptors;
	}
	if (app_user_become(&user, WHO))
		goto out_tls;
	app_block_stop_signals(&stop);

	if (app_runtime_start(&gw.r, cfg, WHO))
		goto out_tls;
	app_runtime_adopt_tls(&gw.r, tls);
	tls = NULL;
	app_user_log(&user, &gw.r.log, WHO);
	if (routes_open(&gw, cfg)) {
		status = APP_EXIT_CONFIG;
		goto out_routes;
	}
	if (gw_serve(&gw, cfg))
		goto out_routes;
	if (app_register_start(&reg, &gw.r, cfg, gw.host, gw.bound_port,
			       WHO)) {
		app_server_stop(&gw.srv, 0, WHO);
		status = APP_EXIT_CONFIG;
		goto out_routes;
	}
	gw_print_serving(&gw);
	sig = app_wait_stop(&gw.r, &stop, 0);
	log_info(&gw.r.log, WHO ": %s received, stopping (grace %d ms)",
		 sig == SIGINT ? "SIGINT" : "SIGTERM", GW_STOP_GRACE_MS);
	app_register_stop(reg);
	app_server_stop(&gw.srv, GW_STOP_GRACE_MS, WHO);
	status = APP_EXIT_OK;
out_routes:
	routes_close(&gw);
	app_runtime_stop(&gw.r);
out_tls:
	tls_side_free(tls);
out_descriptors:
	pbd_pool_destroy(&gw.descriptors);
	return status;
}
