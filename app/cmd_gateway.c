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
#include "gateway.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/uaddr.h"
#include "codec/rpc_errno.h"
#include "rpc/tls.h"

#define WHO GW_WHO

/* Grace for calls in flight at the stop, as echo's. */
#define GW_STOP_GRACE_MS 5000

/* ---- forwarding ----------------------------------------------------- */

static void *gw_route_fn(void *arg, const char *service, const char *method)
{
	(void)method;
	return gw_route_get(arg, service);
}

/* The server gives a route back when its call is freed. */
static void gw_route_release(void *arg, void *route)
{
	(void)arg;
	gw_route_put(route);
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

	if (uaddr_is_unix(l)) { /* unix:/PATH, unix:@NAME */
		if (strlen(l) >= sizeof(gw->host)) {
			fprintf(stderr, WHO ": --listen=%s: too long\n", l);
			return -EINVAL;
		}
		snprintf(gw->host, sizeof(gw->host), "%s", l);
		gw->port = 0;
		return 0;
	}
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
	so.app_page = "routes";
	so.app_page_fn = gw_routes_page;
	so.app_page_arg = gw;
	err = server_init(&gw->srv, &so);
	if (!err)
		err = server_set_router(&gw->srv, gw_route_fn, gw_forward, gw);
	if (!err)
		err = server_set_route_release(&gw->srv, gw_route_release);
	if (!err)
		err = server_set_route_stream(&gw->srv, gw_route_stream);
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

	if (uaddr_is_unix(gw->host))
		printf(WHO ": serving on %s, ", gw->host);
	else
		printf(WHO ": serving on %s%s%s:%d, ", v6 ? "[" : "", gw->host,
		       v6 ? "]" : "", gw->bound_port);
	gw_routes_print((struct gateway *)gw);
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
	gw.cfg = cfg;
	if (gw_routes_open(&gw)) {
		status = APP_EXIT_CONFIG;
		goto out_routes;
	}
	gw.r.on_check = gw_routes_check;
	gw.r.on_check_arg = &gw;
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
	gw_routes_close(&gw);
	app_runtime_stop(&gw.r);
out_tls:
	tls_side_free(tls);
out_descriptors:
	pbd_pool_destroy(&gw.descriptors);
	return status;
}
