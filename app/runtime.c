/*
 * runtime: what the echo, call and bench subcommands share (see app.h):
 * the runtime they run on, the channel built from the client flags, and
 * the names of error codes.
 */
#include "app.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/util.h"
#include "codec/compress.h"
#include "codec/rpc_errno.h"
#include "rpc/channel.h"
#include "rpc/server.h"
#include "rpc/tls.h"
#include "rdt.h"

/* Some --route (routes are '\n'-separated, options ';'-separated) has
 * the option transport=rdma. */
static bool route_wants_rdma(const char *routes)
{
	static const char opt[] = ";transport=rdma";
	const char *p = routes;

	while ((p = strstr(p, opt))) {
		p += sizeof(opt) - 1;
		if (!*p || *p == ';' || *p == '\n')
			return true;
	}
	return false;
}

bool app_wants_rdma(const struct app_config *cfg)
{
	return flags_bool(&cfg->flags, "rdma") ||
	       !strcmp(flags_str(&cfg->flags, "transport"), "rdma") ||
	       route_wants_rdma(flags_str(&cfg->flags, "route"));
}

void app_rdma_options(const struct app_config *cfg, struct rdt_options *o,
		      struct log *log)
{
	const struct flags *fl = &cfg->flags;

	rdt_options_default(o);
	o->device = flags_str(fl, "rdma_device");
	o->port = (int)flags_int(fl, "rdma_port");
	o->gid_index = (int)flags_int(fl, "rdma_gid_index");
	o->sq_size = (int)flags_int(fl, "rdma_sq_size");
	o->rq_size = (int)flags_int(fl, "rdma_rq_size");
	o->recv_blocks = !strcmp(flags_str(fl, "rdma_recv_block_type"), "large")
			     ? RDT_RECV_BLOCKS_LARGE
			     : 1;
	o->handshake_timeout_ms =
	    (int)flags_int(fl, "rdma_handshake_timeout_ms");
	o->max_handshakes = (int)flags_int(fl, "rdma_max_handshakes");
	o->credit_timeout_ms = (int)flags_int(fl, "rdma_credit_timeout_ms");
	o->region_mb = (size_t)flags_int(fl, "rdma_memory_pool_region_mb");
	o->max_regions = (size_t)flags_int(fl, "rdma_memory_pool_max_regions");
	o->withhold_credits = flags_bool(fl, "rdma_withhold_credits");
	o->log = log;
}

/* Open file descriptors of the process, or -1. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* A task worker: the pool ran low; register regions before it runs dry. */
static void grow_fn(struct task *t)
{
	struct app_runtime *r = container_of(t, struct app_runtime, grow_task);

	iobuf_pool_grow_ahead(&r->pool);
}

/* The pool's grow hook: any thread, outside the pool's lock. */
static int grow_kick(void *arg)
{
	struct app_runtime *r = arg;

	if (!__atomic_load_n(&r->rt_running, __ATOMIC_ACQUIRE))
		return -ESHUTDOWN;
	return rt_submit(&r->rt, &r->grow_task);
}

/*
 * Registered memory is pinned: without CAP_IPC_LOCK (a --user, a
 * container that drops it) it must fit in the locked-memory limit.
 * Checked here, at the start, rather than met as a failing ibv_reg_mr:
 * the start's `start_mb` must fit (else -ENOMEM after a message); the
 * pool's most, `max_mb`, gets a warning when it does not.
 */
static int memlock_check(struct app_runtime *r, size_t start_mb, size_t max_mb)
{
	struct __user_cap_header_struct hdr = {.version =
						   _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[2];
	unsigned long long limit_kb;
	struct rlimit rl;

	if (!syscall(SYS_capget, &hdr, caps) &&
	    (caps[0].effective & (1u << CAP_IPC_LOCK)))
		return 0;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	limit_kb = (unsigned long long)rl.rlim_cur >> 10;
	if ((unsigned long long)start_mb << 10 > limit_kb) {
		fprintf(stderr,
			"%s: rdma: the %zu MiB of registered memory of the "
			"start (rdma_memory_pool_initial_size_mb, in whole "
			"regions) do not fit in the locked-memory limit of "
			"%llu KiB (uid %u, without CAP_IPC_LOCK): raise it "
			"(ulimit -l; LimitMEMLOCK= under systemd; --ulimit "
			"memlock= for a container) or lower the flag\n",
			r->who, start_mb, limit_kb, (unsigned)getuid());
		return -ENOMEM;
	}
	if ((unsigned long long)max_mb << 10 > limit_kb)
		log_warn(&r->log,
			 "%s: rdma: the pool may grow to %zu MiB, but the "
			 "locked-memory limit (uid %u, without CAP_IPC_LOCK) "
			 "holds %llu KiB: registering past it fails, and "
			 "connections then fail with a pool-exhausted error",
			 r->who, max_mb, (unsigned)getuid(), limit_kb);
	return 0;
}

/*
 * Opens the RDMA device and makes the buffer pool registered memory.  No
 * device is not an error (spec 2.8: TCP then); a device that fails is.
 */
static int open_rdma(struct app_runtime *r, const struct app_config *cfg,
		     struct iobuf_pool_options *po)
{
	size_t initial_mb =
	    (size_t)flags_int(&cfg->flags, "rdma_memory_pool_initial_size_mb");
	struct rdt_options o;
	struct rdt_choice ch;
	char why[256], gid[64];
	int err;

	app_rdma_options(cfg, &o, &r->log);
	/* The pollers are the budget's P: started here, counted there. */
	o.use_polling = cfg->budget.pollers > 0;
	o.poller_num = cfg->budget.pollers;
	o.poller_yield = flags_bool(&cfg->flags, "rdma_poller_yield");
	r->fds_device = count_fds();
	err = rdt_open(&r->rdma, &o, why, sizeof(why));
	r->fds_device = count_fds() - r->fds_device;
	if (err == -ENODEV) {
		log_warn(&r->log, "%s: %s: using TCP", r->who, why);
		return 0;
	}
	if (err) {
		fprintf(stderr, "%s: cannot use RDMA: %s\n", r->who, why);
		return err;
	}
	rdt_choice(r->rdma, &ch);
	inet_ntop(AF_INET6, ch.gid, gid, sizeof(gid));
	if (o.use_polling)
		log_info(&r->log,
			 "%s: rdma on %s port %d gid[%d] %s, polling "
			 "mode (%d poller%s)",
			 r->who, ch.device, ch.port, ch.gid_index, gid,
			 o.poller_num, o.poller_num == 1 ? "" : "s");
	else
		log_info(&r->log,
			 "%s: rdma on %s port %d gid[%d] %s, "
			 "completion events",
			 r->who, ch.device, ch.port, ch.gid_index, gid);
	rdt_region_hook(r->rdma, &po->region, &po->region_blocks,
			&po->max_regions);
	/* Half a region left (32 MiB of the default 64, 16 connections):
	 * time to register the next one, on a worker. */
	task_init(&r->grow_task, grow_fn);
	po->grow =
	    (struct iobuf_grow_hook){grow_kick, r, po->region_blocks / 2};
	/* Whole regions covering rdma_memory_pool_initial_size_mb. */
	po->prealloc_regions = (initial_mb + o.region_mb - 1) / o.region_mb;
	if (po->prealloc_regions > po->max_regions) {
		fprintf(stderr,
			"%s: rdma_memory_pool_initial_size_mb=%zu "
			"needs %zu regions of %zu MiB, more than "
			"rdma_memory_pool_max_regions=%zu\n",
			r->who, initial_mb, po->prealloc_regions, o.region_mb,
			po->max_regions);
		return -EINVAL;
	}
	return memlock_check(r, po->prealloc_regions * o.region_mb,
			     po->max_regions * o.region_mb);
}

static void trim_fn(struct task *t)
{
	struct app_runtime *r = container_of(t, struct app_runtime, trim_task);
	size_t given = iobuf_pool_trim(&r->pool);

	if (given)
		log_debug(&r->log, "buffer pool: %zu KiB of free blocks given "
				   "back", given >> 10);
	__atomic_store_n(&r->trim_busy, 0, __ATOMIC_RELEASE);
}

static void trim_due(struct loop_timer *t)
{
	struct app_runtime *r =
	    container_of(t, struct app_runtime, trim_timer);
	struct loop *loop = rt_loop_for(&r->rt, 0);

	if (!__atomic_exchange_n(&r->trim_busy, 1, __ATOMIC_ACQ_REL) &&
	    rt_submit(&r->rt, &r->trim_task))
		__atomic_store_n(&r->trim_busy, 0, __ATOMIC_RELEASE);
	loop_timer_start(loop, &r->trim_timer,
			 loop_now(loop) + APP_TRIM_MS * 1000000LL, trim_due);
}

static void trim_start_fn(struct task *t)
{
	struct app_runtime *r = container_of(t, struct app_runtime, trim_start);
	struct loop *loop = rt_loop_for(&r->rt, 0);

	loop_timer_start(loop, &r->trim_timer,
			 loop_now(loop) + APP_TRIM_MS * 1000000LL, trim_due);
}

int app_runtime_start(struct app_runtime *r, const struct app_config *cfg,
		      const char *who)
{
	struct iobuf_pool_options po;
	struct log_options lo;
	struct rt_options ro;
	int err;

	memset(r, 0, sizeof(*r));
	r->who = who;
	log_options_default(&lo);
	/* The flag's choices are log_level_parse()'s names. */
	log_level_parse(flags_str(&cfg->flags, "log_level"), &lo.level);
	err = log_init(&r->log, &lo);
	if (err) {
		fprintf(stderr, "%s: cannot set up the log: %s\n", who,
			strerror(-err));
		return err;
	}
	err = metrics_init(&r->metrics, NULL);
	if (err) {
		log_destroy(&r->log);
		return err;
	}
	/* The hot path's small allocations: per-thread caches (mem.h). */
	iobuf_pool_options_default(&po);
	po.mem = mem_cached();
	po.thread_cache = true;
	if (app_wants_rdma(cfg)) {
		err = open_rdma(r, cfg, &po);
		if (err)
			goto out_log;
		if (r->rdma)
			/* Only the names are checked: fixed, and valid. */
			rdt_metrics_register(r->rdma, &r->metrics);
	}
	err = iobuf_pool_init(&r->pool, &po);
	if (err) {
		fprintf(stderr, "%s: cannot set up the buffer pool: %s\n", who,
			strerror(-err));
		goto out_log;
	}
	/* Before the loops' own fds, which close before the account. */
	r->fds_at_start = count_fds();
	rt_options_from_budget(&ro, &cfg->budget);
	ro.log = &r->log;
	ro.spin_ns =
	    flags_int(&cfg->flags, "event_dispatcher_spin_us") * 1000LL;
	err = rt_init(&r->rt, &ro);
	if (!err)
		err = rt_start(&r->rt);
	if (!err)
		__atomic_store_n(&r->rt_running, true, __ATOMIC_RELEASE);
	if (err) {
		fprintf(stderr,
			"%s: cannot start %d event loops and %d task "
			"workers: %s\n",
			who, ro.dispatchers, ro.task_workers, strerror(-err));
		goto out_pool;
	}
	if (!r->rdma) {
		loop_timer_init(&r->trim_timer);
		task_init(&r->trim_task, trim_fn);
		task_init(&r->trim_start, trim_start_fn);
		loop_post(rt_loop_for(&r->rt, 0), &r->trim_start);
	}
	if (r->rdma) {
		err = rdt_watch(r->rdma, rt_loop_for(&r->rt, 0), &r->pool);
		if (err)
			log_warn(&r->log,
				 "%s: rdma: the device's removal will not be "
				 "seen: %s",
				 r->who, strerror(-err));
	}
	return 0;

out_pool:
	iobuf_pool_destroy(&r->pool);
out_log:
	rdt_close(r->rdma);
	metrics_destroy(&r->metrics);
	log_destroy(&r->log);
	return err;
}

/*
 * The RDMA account at exit: handshakes by outcome, and what should be
 * back to where it started (QPs, fds): a handshake fault test reads it.
 */
static void log_rdma_account(struct app_runtime *r)
{
	struct iobuf_pool_stats ps;
	struct rdt_stats st;
	int fds = count_fds(), start = r->fds_at_start;
	char dev[128] = "";

	rdt_stats(r->rdma, &st);
	iobuf_pool_stats(&r->pool, &ps);
	log_write(&r->log, ps.grows_sync ? LOG_LVL_WARN : LOG_LVL_INFO,
		  "%s: registered memory: %zu regions; %llu registered "
		  "ahead of need on a task worker, %llu by an event loop or "
		  "worker that ran dry, %llu waits for one on its way%s",
		  r->who, ps.regions, (unsigned long long)ps.grows_ahead,
		  (unsigned long long)ps.grows_sync,
		  (unsigned long long)ps.grow_waits,
		  ps.grows_sync || ps.grow_waits
		      ? " (a larger rdma_memory_pool_initial_size_mb avoids "
			"them)"
		      : "");
	/* A device let go of took its fds along. */
	if (st.device_released) {
		start -= r->fds_device;
		if (st.return_failures)
			snprintf(dev, sizeof(dev),
				 " (the device was removed and let go of; "
				 "%llu looks found it back but could not set "
				 "it up)",
				 (unsigned long long)st.return_failures);
		else
			snprintf(dev, sizeof(dev),
				 " (the device was removed and let go of)");
	} else if (st.device_gone) {
		snprintf(dev, sizeof(dev),
			 " (the device was removed, NOT let go of)");
	} else if (st.return_failures) {
		snprintf(dev, sizeof(dev),
			 " (the device came back after %llu looks that could "
			 "not set it up)",
			 (unsigned long long)st.return_failures);
	}
	log_write(
	    &r->log, st.qps || fds != start ? LOG_LVL_WARN : LOG_LVL_INFO,
	    "%s: rdma: %llu handshakes ended on RDMA, %llu on TCP, %llu "
	    "failed (%llu timed out); %llu sends (%llu writes waited for "
	    "credits, %llu connections closed waiting), %llu send "
	    "completions, "
	    "%llu completion events (%llu empty reads); QPs left %lld, fds %d "
	    "at start and %d at exit%s",
	    r->who, (unsigned long long)st.hs_rdma,
	    (unsigned long long)st.hs_tcp, (unsigned long long)st.hs_failed,
	    (unsigned long long)st.hs_timeout, (unsigned long long)st.send_wrs,
	    (unsigned long long)st.credit_stalls,
	    (unsigned long long)st.credit_timeouts,
	    (unsigned long long)st.send_completions,
	    (unsigned long long)st.cq_events,
	    (unsigned long long)st.cq_empty_reads, (long long)st.qps, start,
	    fds, dev);
}

void app_runtime_stop(struct app_runtime *r)
{
	__atomic_store_n(&r->rt_running, false, __ATOMIC_RELEASE);
	rt_stop(&r->rt);
	/* the loops are stopped: their timers are this thread's now */
	if (!r->rdma)
		loop_timer_stop(rt_loop_for(&r->rt, 0), &r->trim_timer);
	rdt_unwatch(r->rdma); /* its loop is stopped: this thread's now */
	rt_destroy(&r->rt);
	if (r->rdma)
		log_rdma_account(r);
	/* Every block should be back: a leak is a bug worth a line. */
	if (iobuf_pool_destroy(&r->pool) == -EBUSY)
		log_warn(&r->log, "%s: buffer blocks still referenced at exit",
			 r->who);
	else
		rdt_close(r->rdma); /* its regions went with the pool */
	metrics_destroy(&r->metrics);
	tls_side_free(r->tls);
	tls_side_free(r->tls_client);
	log_destroy(&r->log);
}

bool app_require_server(const struct app_config *cfg, const char *who)
{
	if (*flags_str(&cfg->flags, "server"))
		return true;
	fprintf(stderr,
		"%s: --server=HOST:PORT is required (the server to "
		"call, e.g. --server=127.0.0.1:8000)\n",
		who);
	return false;
}

int app_compress_type(const struct app_config *cfg)
{
	const char *name = flags_str(&cfg->flags, "compress");

	/* The flag's choices are compress_type_name()'s names. */
	for (int t = COMPRESS_NONE; t <= COMPRESS_ZLIB; t++)
		if (!strcmp(compress_type_name(t), name))
			return t;
	return COMPRESS_NONE;
}

int app_channel_open(struct channel *ch, struct app_runtime *r,
		     const struct app_config *cfg, unsigned min_calls,
		     bool done_inline)
{
	const struct flags *fl = &cfg->flags;
	const char *server = flags_str(fl, "server");
	const char *token = flags_str(fl, "auth_token");
	struct channel_options opt;
	int err;

	channel_options_default(&opt);
	opt.rt = &r->rt;
	opt.pool = &r->pool;
	opt.log = &r->log;
	opt.mem = mem_cached();
	opt.timeout_ms = (int)flags_int(fl, "timeout_ms");
	opt.max_retry = (int)flags_int(fl, "max_retry");
	opt.checksum = flags_bool(fl, "checksum");
	opt.done_inline = done_inline;
	if (!strcmp(flags_str(fl, "transport"), "rdma"))
		opt.upgrade = rdt_upgrade(r->rdma);
	/* The flag's choices are channel_conn_type_parse()'s names. */
	channel_conn_type_parse(flags_str(fl, "connection_type"),
				&opt.conn_type);
	if (channel_protocol_parse(flags_str(fl, "protocol"), &opt.protocol)) {
		fprintf(stderr, "%s: --protocol=%s is for call --json only\n",
			r->who, flags_str(fl, "protocol"));
		return -EINVAL;
	}
	if (*token) {
		opt.credential = token;
		opt.credential_len = strlen(token);
	}
	if (opt.max_calls < min_calls)
		opt.max_calls = min_calls;
	if (flags_bool(fl, "tls")) {
		char name[256], why[256];

		if (opt.upgrade) {
			fprintf(stderr, "%s: --tls and --transport=rdma "
					"exclude each other\n",
				r->who);
			return -EINVAL;
		}
		if (*flags_str(fl, "tls_server_name"))
			snprintf(name, sizeof(name), "%s",
				 flags_str(fl, "tls_server_name"));
		else
			app_tls_name_of(server, name, sizeof(name));
		err = app_tls_client_new(
		    &r->tls_client, cfg, *name ? name : NULL,
		    opt.protocol == CHANNEL_PROTO_GRPC ? "h2" : NULL, &r->log,
		    why, sizeof(why));
		if (err) {
			fprintf(stderr, "%s: TLS: %s\n", r->who,
				err == -EINVAL ? why : strerror(-err));
			return err;
		}
		opt.upgrade = tls_upgrade(r->tls_client);
	}
	err = channel_init(ch, server, &opt);
	if (err)
		fprintf(stderr, "%s: cannot set up a channel to %s: %s\n",
			r->who, server, strerror(-err));
	return err;
}

struct errno_name {
	int code;
	const char *name;
};

/* The plain errno values a channel or a handler puts in error_code.
 * musl has no strerrorname_np(), hence the table. */
/* clang-format off */
#define ERRNO_NAME(e) {e, #e}
static const struct errno_name errno_names[] = {
	ERRNO_NAME(EPERM),	  ERRNO_NAME(ENOENT),
	ERRNO_NAME(EINTR),	  ERRNO_NAME(EIO),
	ERRNO_NAME(EAGAIN),	  ERRNO_NAME(ENOMEM),
	ERRNO_NAME(EACCES),	  ERRNO_NAME(EBUSY),
	ERRNO_NAME(EEXIST),	  ERRNO_NAME(EINVAL),
	ERRNO_NAME(ENOSPC),	  ERRNO_NAME(EPIPE),
	ERRNO_NAME(ERANGE),	  ERRNO_NAME(EDEADLK),
	ERRNO_NAME(ENOSYS),	  ERRNO_NAME(EPROTO),
	ERRNO_NAME(EBADMSG),	  ERRNO_NAME(EOVERFLOW),
	ERRNO_NAME(EMSGSIZE),	  ERRNO_NAME(EPROTONOSUPPORT),
	ERRNO_NAME(EADDRINUSE),	  ERRNO_NAME(EADDRNOTAVAIL),
	ERRNO_NAME(ENETDOWN),	  ERRNO_NAME(ENETUNREACH),
	ERRNO_NAME(ECONNABORTED), ERRNO_NAME(ECONNRESET),
	ERRNO_NAME(ENOBUFS),	  ERRNO_NAME(ENOTCONN),
	ERRNO_NAME(ESHUTDOWN),	  ERRNO_NAME(ETIMEDOUT),
	ERRNO_NAME(ECONNREFUSED), ERRNO_NAME(EHOSTDOWN),
	ERRNO_NAME(EHOSTUNREACH), ERRNO_NAME(ECANCELED),
	ERRNO_NAME(ENODEV),	  ERRNO_NAME(ENXIO),
};
#undef ERRNO_NAME
/* clang-format on */

const char *app_error_name(int code)
{
	const char *name = rpc_errno_name(code);

	if (name)
		return name;
	for (size_t i = 0; i < ARRAY_SIZE(errno_names); i++)
		if (errno_names[i].code == code)
			return errno_names[i].name;
	return "?";
}

bool app_not_up_yet(int code)
{
	return code == ECONNREFUSED || code == EHOSTUNREACH ||
	       code == ENETUNREACH || code == EHOSTDOWN || code == ECONNRESET ||
	       code == ETIMEDOUT || code == RPC_ERPCTIMEDOUT;
}

/* Compares all n bytes whatever differs, so the time taken does not say
 * how much of a guessed token was right. */
static bool same_bytes(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

int app_token_auth(void *arg, const struct baidu_bytes *cred,
		   const struct server_peer *peer, char *why, size_t why_size)
{
	const char *token = arg;
	size_t len = strlen(token);

	if (cred->ptr && cred->len == len && same_bytes(cred->ptr, token, len))
		return 0;
	snprintf(why, why_size, "bad credential");
	return -EACCES;
}

void app_block_stop_signals(sigset_t *stop)
{
	sigemptyset(stop);
	sigaddset(stop, SIGTERM);
	sigaddset(stop, SIGINT);
	sigaddset(stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, stop, NULL);
}

void app_server_stop(struct server *s, int grace_ms, const char *who)
{
	struct server_stats st;

	/* Calls still in their handlers after the grace are the server's
	 * to log (it does, once). */
	server_stop(s, grace_ms);
	server_stats(s, &st);
	printf("%s: stopped after %llu calls\n", who,
	       (unsigned long long)st.calls);
	fflush(stdout);
	server_destroy(s);
}
