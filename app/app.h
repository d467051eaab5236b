/*
 * app: the appliance's start-up: flag table, configuration loading, and
 * the subcommands of the one binary.  Private to app/.
 *
 * Exit statuses of the binary: 0 success, 1 a run-time failure, 2 a
 * configuration error (bad flag, bad value, refused thread budget).
 */
#ifndef RPCGATE_APP_H
#define RPCGATE_APP_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "base/budget.h"
#include "base/flags.h"
#include "base/iobuf.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/rt.h"

#define APP_EXIT_OK	 0
#define APP_EXIT_FAILURE 1
#define APP_EXIT_CONFIG	 2

/* Where the kernel command line is read from unless --cmdline_file says. */
#define APP_KERNEL_CMDLINE "/proc/cmdline"

/* Flag limits of the echo, call and bench subcommands (app/flagtab.c). */
/* echo --sleep_ms: ten minutes plays a slow server; more is a stuck one. */
#define APP_SLEEP_MS_MAX 600000
/* echo --max_concurrency: 2^20 calls in flight, far above what one
 * server process holds (each pins its request and a task). */
#define APP_MAX_CONCURRENCY_MAX (1 << 20)
/* Descriptors a server needs besides its connections (loops, listeners,
 * the log, the reserve), for the max_connections check at start. */
#define APP_FDS_RESERVED 32
/* How often the buffer pool's free memory is given back. */
#define APP_TRIM_MS 5000
/* call/bench --timeout_ms: one hour; -1 means no deadline. */
#define APP_TIMEOUT_MS_MAX 3600000
/* call/bench --max_retry: callid numbers at most 254 attempts of a call
 * (CALLID_ATTEMPT_MAX); 100 leaves room for a backup request. */
#define APP_MAX_RETRY_MAX 100
/* bench --concurrency: 100000 calls in flight, each a 1.2 KiB rpc_call
 * (120 MiB in all); under callid's CALLID_CAPACITY_MAX of 2^20. */
#define APP_BENCH_CONCURRENCY_MAX 100000
/* bench --payload: brpc's default max_body_size (64 MiB).  The body adds
 * the meta and the message's tag and length, so payloads within a few
 * hundred bytes of it are refused by a server with that default. */
#define APP_BENCH_PAYLOAD_MAX (64 << 20)
/* bench --duration: one hour, in seconds. */
#define APP_BENCH_DURATION_MAX 3600

extern const struct flag_def app_flag_defs[];
extern const size_t app_flag_count;

struct app_config {
	struct flags flags;
	struct budget_input budget_in;
	struct budget budget;
	const char *subcommand; /* NULL when none was given */
	char **args;		/* positional arguments after it */
	int nargs;
	int ncpu;
	bool budget_refused; /* strict budget broke the rule */
};

/*
 * Loads every source in order (defaults, kernel command line, environment
 * `envp`, arguments) and resolves the thread budget.  0; -EINVAL when a
 * flag or argument is wrong (lines in cfg->flags' diagnostics); -ERANGE
 * when the budget is refused; -ENOMEM.  After any return but -ENOMEM the
 * caller must app_config_destroy().
 */
int app_config_load(struct app_config *cfg, int argc, char **argv, char **envp,
		    int ncpu);
void app_config_destroy(struct app_config *cfg);

/* Prints why the load failed: every diagnostic, or the budget refusal. */
void app_config_print_errors(const struct app_config *cfg, FILE *out);

/* Every flag with its value and source, then the budget line. */
void app_config_print(const struct app_config *cfg, FILE *out);

/* Cores this process may run on (affinity mask), at least 1. */
int app_ncpu(void);

/* Subcommands: each returns an exit status. */
int app_cmd_config(struct app_config *cfg);
int app_cmd_rdma_info(struct app_config *cfg);
int app_cmd_rdma_link(struct app_config *cfg);
int app_cmd_echo(struct app_config *cfg);    /* app/cmd_echo.c */
int app_cmd_call(struct app_config *cfg);    /* app/cmd_call.c */
/* A call's --compress and --log_id (cmd_call.c). */
struct rpc_call;
void app_call_inputs(const struct app_config *cfg, struct rpc_call *c);
/* call --json: any method, JSON both ways (app/cmd_call_json.c). */
int app_call_json(struct app_config *cfg);
int app_cmd_bench(struct app_config *cfg);   /* app/cmd_bench.c */
int app_cmd_gateway(struct app_config *cfg); /* app/cmd_gateway.c */

/*
 * The appliance's init (app/pid1.c), when the kernel starts the binary as
 * PID 1 with no arguments.  app_pid1_early() mounts what reading the
 * configuration needs; app_pid1_main() sets the machine up, runs the
 * roles and powers off, never returning.  config_status: 0, or the exit
 * status of a configuration that did not load (reported, then power-off).
 */
void app_pid1_early(void);
void app_pid1_main(struct app_config *cfg, int config_status)
    __attribute__((noreturn));

/*
 * What echo, call and bench share (app/runtime.c).
 *
 * The runtime of a serving or calling subcommand: a log on stderr at
 * --log_level, the thread budget's loops and task workers, and a buffer
 * pool.  app_runtime_start() brings all three up in that order on the
 * main thread, or prints why not (prefixed with `who`, e.g. "rpcgate
 * echo") and returns -errno with nothing held; app_runtime_stop() stops
 * the threads and frees everything, in reverse.  Servers and channels
 * built on it must be destroyed before app_runtime_stop().
 */
struct rdt_ctx;

struct app_runtime {
	struct log log;
	struct rt rt;
	struct iobuf_pool pool;
	struct rdt_ctx *rdma; /* NULL: no RDMA wanted, or no device */
	const char *who;
	int fds_at_start; /* open fds once started, for the leak check */
	int fds_device;	  /* of which the RDMA device's (closed on removal) */
	struct metrics metrics; /* GET /metrics on the servers' ports */
	/* Registers memory regions ahead of need on a task worker, so that
	 * no event loop waits in ibv_reg_mr (RDMA only). */
	struct task grow_task;
	/* Every APP_TRIM_MS the free buffer blocks' memory goes back to
	 * the kernel (iobuf_pool_trim), on a worker; not with RDMA. */
	struct loop_timer trim_timer;
	struct task trim_start, trim_task;
	int trim_busy; /* atomic: trim_task queued or running */
	bool rt_running; /* atomic: rt_submit may be called */
	struct flags *flags; /* the servers' /flags (app_server_options) */
	struct tls_side *tls; /* --tls_cert's, or NULL (app/tlsconf.c) */
	struct tls_side *tls_client; /* --tls's (app_channel_open) */
	/* app_wait_stop calls it on SIGHUP (true) and every
	 * APP_TLS_CHECK_MS (false), on the waiting thread: the gateway's
	 * file:// routes.  NULL: none. */
	void (*on_check)(void *arg, bool sighup);
	void *on_check_arg;
};

/* RDMA is wanted (--rdma=true, --transport=rdma, or a --route with
 * ;transport=rdma). */
bool app_wants_rdma(const struct app_config *cfg);

/* The RDMA options from the rdma_* flags. */
struct rdt_options;
void app_rdma_options(const struct app_config *cfg, struct rdt_options *o,
		      struct log *log);

int app_runtime_start(struct app_runtime *r, const struct app_config *cfg,
		      const char *who);
void app_runtime_stop(struct app_runtime *r);

struct channel;

/* Whether --server was given; if not, says so on stderr (prefixed with
 * `who`) for the caller to exit with APP_EXIT_CONFIG. */
bool app_require_server(const struct app_config *cfg, const char *who);

/*
 * Opens a channel to --server on r's rt, pool and log, with the flags
 * --timeout_ms, --max_retry, --connection_type, --checksum and
 * --auth_token (the credential points into cfg's flags, which must
 * outlive the channel), and room for at least `min_calls` calls in
 * flight; `done_inline` as in channel_options.  0, or channel_init()'s
 * -errno after a message on stderr.
 */
int app_channel_open(struct channel *ch, struct app_runtime *r,
		     const struct app_config *cfg, unsigned min_calls,
		     bool done_inline);

/* example.EchoService.Echo: methods[0] of example__echo_service__descriptor
 * (app/proto/echo.proto). */
#define APP_ECHO_METHOD 0

/*
 * Failures that mean "the server is not reachable yet": refused,
 * unreachable, or no answer at all (a peer whose NIC is still coming up
 * drops the SYN).  --wait_ms retries them; an echo is idempotent.
 */
bool app_not_up_yet(int code);

/*
 * server_auth_fn checking the first request's authentication_data
 * against the token `arg` (a NUL-terminated string), byte for byte in
 * constant time.
 */
struct baidu_bytes;
struct server_peer;
int app_token_auth(void *arg, const struct baidu_bytes *cred,
		   const struct server_peer *peer, char *why, size_t why_size);

/*
 * The serving subcommands' stop (echo, gateway).  app_block_stop_signals()
 * blocks SIGTERM, SIGINT and SIGHUP before any runtime thread exists, so
 * every thread inherits the mask and only app_wait_stop() sees them; the
 * mask is not restored (a second signal during the stop must not end the
 * process by that signal instead of exit 0).  app_wait_stop() returns
 * SIGTERM or SIGINT, or 0 when timeout_ms (> 0; else none) passed first;
 * meanwhile a SIGHUP re-reads r's TLS files, and every APP_TLS_CHECK_MS
 * they are re-read if they changed (app/tlsconf.c).
 * app_server_stop() stops gracefully (grace_ms for calls in flight),
 * prints "WHO: stopped after N calls" and destroys the server.
 */
struct server;
void app_block_stop_signals(sigset_t *stop);
int app_wait_stop(struct app_runtime *r, const sigset_t *stop, int timeout_ms);
#define APP_TLS_CHECK_MS 2000

/*
 * TLS (app/tlsconf.c).  app_tls_server_load() loads --tls_cert, --tls_key
 * and --tls_client_ca (*out NULL when no TLS is asked for): 0, or -errno
 * after a message on stderr (exit APP_EXIT_CONFIG).  Call it before
 * app_user_become(); app_runtime_adopt_tls() then gives the side to a
 * started runtime, which frees it in app_runtime_stop().
 * app_tls_client_new() makes a client side from --tls_ca, --tls_verify
 * and --tls_client_cert/_key, checking `server_name` (NULL: none) and
 * offering `alpn` ("h2"; NULL: none).
 */
struct tls_side;
int app_tls_server_load(struct tls_side **out, const struct app_config *cfg,
			const char *who);
void app_runtime_adopt_tls(struct app_runtime *r, struct tls_side *tls);
int app_tls_client_new(struct tls_side **out, const struct app_config *cfg,
		       const char *server_name, const char *alpn,
		       struct log *log, char *why, size_t why_size);
/* The host name to send as SNI and check for a target ("host:port", a
 * naming URL): its first host when that is a name, else "" (an IP). */
void app_tls_name_of(const char *target, char *out, size_t size);
void app_server_stop(struct server *s, int grace_ms, const char *who);

/*
 * --register (app/serving.c): puts the server's address (--register_addr,
 * else host:port as listened on) under an etcd lease, on the runtime's
 * first loop, and waits for the first put.  Nothing when --register is
 * empty.  0, or -1 after a message on stderr.  app_register_stop()
 * revokes it (call it before the grace period: callers stop choosing
 * this server while its calls in flight finish).
 */
struct etcd_reg;
int app_register_start(struct etcd_reg **out, struct app_runtime *r,
		       const struct app_config *cfg, const char *host,
		       int port, const char *who);
void app_register_stop(struct etcd_reg *reg);

/*
 * The descriptor pool of a serving or calling subcommand (app/serving.c):
 * the compiled-in services' sets, then every --descriptor_set file.  0;
 * -EINVAL after a message on stderr naming the file and what is wrong
 * (the caller exits APP_EXIT_CONFIG); -ENOMEM.  Nothing is held on
 * failure; pbd_pool_destroy() it after use.
 */
struct pbd_pool;
int app_descriptors_load(struct pbd_pool *pool, const struct app_config *cfg,
			 const char *who);

/* A serving subcommand's server options: r's runtime, RDMA hellos,
 * metrics, `pool` for HTTP/JSON, `version` for /version, the flags for
 * /flags (log_level may be set there), --max_body_size and the HTTP
 * timeouts.  The caller adds the rest. */
struct server_options;
/*
 * --method_max_concurrency, on the methods of srv (before server_start):
 * 0, or -errno after a message on stderr naming the method.
 */
int app_method_limits(struct server *srv, const struct app_config *cfg,
		      const char *who);

void app_server_options(struct server_options *so, struct app_runtime *r,
			struct app_config *cfg, const struct pbd_pool *pool,
			const char *version);

/* A flag that bench reads as a bool but others as text (--json). */
bool app_flag_true(const struct flags *fl, const char *name);

/* --compress as a net/codec/compress.h type. */
int app_compress_type(const struct app_config *cfg);

/* An error_code's name: brpc's ("ERPCTIMEDOUT"), an errno's
 * ("ECONNREFUSED"), or "?".  Never NULL. */
const char *app_error_name(int code);

/*
 * --user=USER[:GROUP] (app/user.c), names or numbers.  resolve() looks
 * them up: 0, or -EINVAL after a message on stderr (an unknown name).
 * become() switches the process to them, keeping of its capabilities
 * only CAP_NET_BIND_SERVICE (if it had it), and sets no_new_privs; call
 * it before app_runtime_start(), while the process has one thread: 0
 * (also when --user is empty), or -EPERM after a message on stderr.
 * log() says what become() did, once the runtime's log is up.
 */
#define APP_USER_NAME_MAX 128
struct app_user {
	uid_t uid;
	gid_t gid;
	bool set;
	bool changed;	/* become() switched (not: started as that user) */
	bool bind_kept; /* and kept CAP_NET_BIND_SERVICE */
};
int app_user_resolve(const struct app_config *cfg, struct app_user *u,
		     const char *who);
int app_user_become(struct app_user *u, const char *who);
void app_user_log(const struct app_user *u, struct log *log, const char *who);

#endif
