/*
 * echo: serves example.EchoService (app/echo.h) until SIGTERM or SIGINT,
 * the server side of brpc's example/echo_c++ and of `rpcgate call` and
 * `rpcgate bench`.
 *
 *   rpcgate echo [--port=N] [--listen=ADDR] [--sleep_ms=N] [--fail_percent=N]
 *                [--crash_after_ms=N] [--serve_us=N [--serve_slots=K]]
 *                [--max_concurrency=N|auto] [--method_max_concurrency=M=L]
 *                [--max_connections=N] [--max_inflight_bytes=N]
 *                [--write_timeout_ms=N] [--auth_token=S]
 *                [--echo_on_workers=BOOL]
 *
 * Sequence:
 *   block SIGTERM and SIGINT (before any thread exists, so every runtime
 *   thread inherits the mask and only sigwaitinfo() here sees them)
 *   -> runtime (log, buffer pool, loops and task workers of the budget)
 *   -> server with the echo service (and the token check when
 *      --auth_token is set) -> listen -> start
 *   -> stdout: "rpcgate echo: serving example.EchoService on ADDR:PORT"
 *      (PORT the bound one, so --port=0 tells scripts where it went)
 *   -> wait for SIGTERM or SIGINT
 *   -> graceful stop (ECHO_STOP_GRACE_MS for calls in flight)
 *   -> stdout: "rpcgate echo: stopped after N calls" -> teardown, exit 0.
 *
 * Any start-up failure (a port in use, ...) prints what and why on
 * stderr and exits 1.
 */
#include "app.h"
#include "rdt.h"

#include "base/uaddr.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#include "codec/pbd.h"
#include "rpc/server.h"
#include "rpc/tls.h"
#include "echo.h"

#define WHO "rpcgate echo"

/* Time calls in flight get to finish after the stop signal: well above
 * a normal call, short enough for a supervisor's stop timeout (systemd
 * and runc wait 10 s before SIGKILL). */
#define ECHO_STOP_GRACE_MS 5000

struct echo_cmd {
	struct app_runtime r;
	struct pbd_pool descriptors; /* outlives srv */
	struct server srv;
	struct echo_service svc; /* outlives srv */
	const char *listen;
	int port;	/* asked: 0 is any free port */
	int bound_port; /* taken */
	const char *token; /* "": no authentication */
	size_t token_len;
};

static void echo_cmd_from_flags(struct echo_cmd *e,
				const struct app_config *cfg)
{
	const struct flags *fl = &cfg->flags;

	memset(e, 0, sizeof(*e));
	e->listen = flags_str(fl, "listen");
	e->port = (int)flags_int(fl, "port");
	e->token = flags_str(fl, "auth_token");
	e->token_len = strlen(e->token);
	e->svc.sleep_ms = (int)flags_int(fl, "sleep_ms");
	e->svc.on_workers = flags_bool(fl, "echo_on_workers");
	e->svc.fail_percent = (int)flags_int(fl, "fail_percent");
	e->svc.discard = flags_bool(fl, "discard");
	e->svc.serve_us = (int)flags_int(fl, "serve_us");
	e->svc.serve_slots = (int)flags_int(fl, "serve_slots");
}

/* Server, service, listener, start; on failure says why and holds
 * nothing.  0 or -errno. */
static int echo_serve(struct echo_cmd *e, struct app_config *cfg)
{
	struct server_options so;
	int err;

	app_server_options(&so, &e->r, cfg, &e->descriptors, WHO);
	so.checksum_answers = true; /* as brpc: a checked request, a
				       checked answer */
	if (e->token_len) {
		so.auth = app_token_auth;
		so.auth_arg = (void *)e->token;
	}
	err = server_init(&e->srv, &so);
	if (err) {
		fprintf(stderr, WHO ": cannot set up the server: %s\n",
			strerror(-err));
		return err;
	}
	err = echo_service_add(&e->srv, &e->svc);
	if (err) {
		fprintf(stderr, WHO ": cannot add example.EchoService: %s\n",
			strerror(-err));
		goto out_destroy;
	}
	err = echo_mirrors_add(&e->srv, &e->descriptors, &e->svc);
	if (err) {
		fprintf(stderr,
			WHO ": cannot serve the services of "
			    "--descriptor_set: %s\n",
			strerror(-err));
		goto out_destroy;
	}
	err = app_method_limits(&e->srv, cfg, WHO);
	if (err)
		goto out_destroy;
	err = server_listen(&e->srv, e->listen, e->port);
	if (err < 0) {
		fprintf(stderr, WHO ": cannot listen on %s:%d: %s\n", e->listen,
			e->port, strerror(-err));
		goto out_destroy;
	}
	e->bound_port = err;
	err = server_start(&e->srv);
	if (err) {
		fprintf(stderr, WHO ": cannot start serving on %s:%d: %s\n",
			e->listen, e->bound_port, strerror(-err));
		goto out_destroy;
	}
	return 0;

out_destroy:
	server_destroy(&e->srv);
	echo_service_destroy(&e->svc);
	return err;
}

/* The one line scripts wait for.  An IPv6 address is bracketed so that
 * the line's ADDR:PORT can be passed to --server as it is. */
static void echo_print_serving(const struct echo_cmd *e)
{
	bool v6 = strchr(e->listen, ':') != NULL;

	if (uaddr_is_unix(e->listen)) {
		printf(WHO ": serving example.EchoService on %s\n", e->listen);
		fflush(stdout);
		return;
	}
	printf(WHO ": serving example.EchoService on %s%s%s:%d\n",
	       v6 ? "[" : "", e->listen, v6 ? "]" : "", e->bound_port);
	fflush(stdout);
}

int app_cmd_echo(struct app_config *cfg)
{
	struct echo_cmd e;
	struct app_user user;
	struct tls_side *tls = NULL;
	struct etcd_reg *reg = NULL;
	sigset_t stop;
	int sig, crash_ms, status = APP_EXIT_FAILURE;

	echo_cmd_from_flags(&e, cfg);
	if (app_user_resolve(cfg, &user, WHO))
		return APP_EXIT_CONFIG;
	if (app_descriptors_load(&e.descriptors, cfg, WHO))
		return APP_EXIT_CONFIG;
	/* The key is read while the files are still readable. */
	if (app_tls_server_load(&tls, cfg, WHO)) {
		status = APP_EXIT_CONFIG;
		goto out_descriptors;
	}
	if (app_user_become(&user, WHO))
		goto out_tls;
	app_block_stop_signals(&stop);

	if (app_runtime_start(&e.r, cfg, WHO))
		goto out_tls;
	app_runtime_adopt_tls(&e.r, tls);
	tls = NULL;
	app_user_log(&user, &e.r.log, WHO);
	if (echo_serve(&e, cfg))
		goto out_runtime;
	if (app_register_start(&reg, &e.r, cfg, e.listen, e.bound_port, WHO)) {
		app_server_stop(&e.srv, 0, WHO);
		status = APP_EXIT_CONFIG;
		goto out_runtime;
	}
	echo_print_serving(&e);
	crash_ms = (int)flags_int(&cfg->flags, "crash_after_ms");
	sig = app_wait_stop(&e.r, &stop, crash_ms);
	if (!sig) {
		fprintf(stderr, WHO ": --crash_after_ms=%d: dying by SIGKILL\n",
			crash_ms);
		raise(SIGKILL);
	}
	log_info(&e.r.log, WHO ": %s received, stopping (grace %d ms)",
		 sig == SIGINT ? "SIGINT" : "SIGTERM", ECHO_STOP_GRACE_MS);
	app_register_stop(reg);
	app_server_stop(&e.srv, ECHO_STOP_GRACE_MS, WHO);
	status = APP_EXIT_OK;
out_runtime:
	app_runtime_stop(&e.r);
out_tls:
	tls_side_free(tls);
out_descriptors:
	pbd_pool_destroy(&e.descriptors);
	return status;
}
