/*
 * runtime: what the echo, call and bench subcommands share (see app.h):
 * the runtime they run on, the channel built from the client flags, and
 * the names of error codes.
 */
#include "app.h"

#include <errno.h>
#include <string.h>

#include "channel.h"
#include "compress.h"
#include "rpc_errno.h"
#include "util.h"

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
	/* The hot path's small allocations: per-thread caches (mem.h). */
	iobuf_pool_options_default(&po);
	po.mem = mem_cached();
	err = iobuf_pool_init(&r->pool, &po);
	if (err) {
		fprintf(stderr, "%s: cannot set up the buffer pool: %s\n", who,
			strerror(-err));
		goto out_log;
	}
	rt_options_from_budget(&ro, &cfg->budget);
	ro.log = &r->log;
	err = rt_init(&r->rt, &ro);
	if (!err)
		err = rt_start(&r->rt);
	if (err) {
		fprintf(stderr,
			"%s: cannot start %d event loops and %d task "
			"workers: %s\n",
			who, ro.dispatchers, ro.task_workers, strerror(-err));
		goto out_pool;
	}
	return 0;

out_pool:
	iobuf_pool_destroy(&r->pool);
out_log:
	log_destroy(&r->log);
	return err;
}

void app_runtime_stop(struct app_runtime *r)
{
	rt_destroy(&r->rt); /* stops the threads first */
	/* Every block should be back: a leak is a bug worth a line. */
	if (iobuf_pool_destroy(&r->pool) == -EBUSY)
		log_warn(&r->log, "%s: buffer blocks still referenced at exit",
			 r->who);
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
	/* The flag's choices are channel_conn_type_parse()'s names. */
	channel_conn_type_parse(flags_str(fl, "connection_type"),
				&opt.conn_type);
	if (*token) {
		opt.credential = token;
		opt.credential_len = strlen(token);
	}
	if (opt.max_calls < min_calls)
		opt.max_calls = min_calls;
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
