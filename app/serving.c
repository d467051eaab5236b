/*
 * serving: what the serving subcommands (echo, gateway) set up alike
 * around their server: the descriptor pool (the compiled-in services'
 * sets, then each --descriptor_set file), the server's options from the
 * flags, and the /flags page's setter.
 */
#include "app.h"
#include "rdt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/uaddr.h"
#include "cluster/etcd.h"
#include "echo.h"
#include "rpc/server.h"
#include "rpc/tls.h"

/* A descriptor set larger than this is refused (protoc's for the whole
 * of Google's APIs is a few MiB). */
#define APP_DESC_SET_MAX (64u << 20)

/* The file whole, malloc'd; NULL with errno. */
static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!fp)
		return NULL;
	if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 ||
	    fseek(fp, 0, SEEK_SET))
		goto out;
	if ((size_t)n > max) {
		errno = EFBIG;
		goto out;
	}
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
		errno = EIO;
	}
	*len = (size_t)n;
out:
	fclose(fp);
	return buf;
}

int app_descriptors_load(struct pbd_pool *pool, const struct app_config *cfg,
			 const char *who)
{
	const char *list = flags_str(&cfg->flags, "descriptor_set");
	char why[512], path[FLAGS_VALUE_MAX];
	int err;

	pbd_pool_init(pool, NULL);
	err = pbd_pool_add_set(pool, echo_proto_desc, echo_proto_desc_len,
			       "echo.proto (compiled in)", why, sizeof(why));
	if (err) {
		fprintf(stderr, "%s: %s\n", who, why);
		goto fail;
	}
	while (*list) {
		const char *nl = strchr(list, '\n');
		size_t n = nl ? (size_t)(nl - list) : strlen(list), len = 0;
		uint8_t *set;

		memcpy(path, list, n);
		path[n] = '\0';
		list += n + (nl ? 1 : 0);
		set = read_file(path, APP_DESC_SET_MAX, &len);
		if (!set) {
			fprintf(stderr,
				"%s: --descriptor_set=%s: cannot read it: %s\n",
				who, path, strerror(errno));
			err = -EINVAL;
			goto fail;
		}
		err = pbd_pool_add_set(pool, set, len, path, why, sizeof(why));
		free(set);
		if (err) {
			fprintf(stderr,
				"%s: --descriptor_set=%s: %s (make it with "
				"protoc --include_imports -o FILE x.proto)\n",
				who, path, why);
			goto fail;
		}
	}
	return 0;
fail:
	pbd_pool_destroy(pool);
	return err == -ENOMEM ? err : -EINVAL;
}

/* /flags/NAME?setvalue=V: set the flag as a run-time value, then apply
 * it (log_level is the one flag marked runtime). */
static int set_flag(void *arg, const char *name, const char *value, char *why,
		    size_t why_size)
{
	struct app_runtime *r = arg;
	unsigned before = flags_ndiag(r->flags);
	enum log_level lvl;
	int err;

	err = flags_set(r->flags, name, strlen(name), value, FLAG_SRC_RUNTIME);
	if (err) {
		const char *d = flags_diag(r->flags, before);

		snprintf(why, why_size, "%s", d ? d : strerror(-err));
		return err;
	}
	if (!strcmp(name, "log_level") && log_level_parse(value, &lvl) == 0)
		log_set_level(&r->log, lvl);
	return 0;
}

/* A quarter of the memory: the default of max_inflight_bytes. */
static size_t quarter_of_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return (size_t)1 << 30;
	return (size_t)pages * (size_t)size / 4;
}

/* The overload flags; a max_connections the descriptor limit cannot
 * hold is said at start, not found in a flood. */
static void overload_options(struct server_options *so,
			     const struct flags *fl, const char *who)
{
	const char *mc = flags_str(fl, "max_concurrency");
	enum climit_mode mode = CLIMIT_NONE;
	struct rlimit rl;
	char why[128];
	int fixed = 0;

	climit_parse(mc, &mode, &fixed, why, sizeof(why)); /* checked */
	so->max_concurrency = fixed;
	so->max_concurrency_auto = mode == CLIMIT_AUTO;
	so->max_connections = (int)flags_int(fl, "max_connections");
	so->max_inflight_bytes = (size_t)flags_int(fl, "max_inflight_bytes");
	if (!so->max_inflight_bytes)
		so->max_inflight_bytes = quarter_of_memory();
	so->write_timeout_ms = (int)flags_int(fl, "write_timeout_ms");
	if (so->max_connections && !getrlimit(RLIMIT_NOFILE, &rl) &&
	    rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)so->max_connections + APP_FDS_RESERVED > rl.rlim_cur)
		fprintf(stderr,
			"%s: warning: max_connections=%d, but the descriptor "
			"limit (ulimit -n) is %llu: past about %llu "
			"connections new ones are closed as accepted\n",
			who ? who : "rpcgate", so->max_connections,
			(unsigned long long)rl.rlim_cur,
			(unsigned long long)(rl.rlim_cur > APP_FDS_RESERVED
						 ? rl.rlim_cur - APP_FDS_RESERVED
						 : 0));
}

int app_method_limits(struct server *srv, const struct app_config *cfg,
		      const char *who)
{
	const char *v = flags_str(&cfg->flags, "method_max_concurrency");
	char item[FLAGS_VALUE_MAX], why[256];

	while (*v) {
		size_t n = strcspn(v, "\n");
		char *eq, *dot;
		int err;

		if (n >= sizeof(item))
			n = sizeof(item) - 1;
		memcpy(item, v, n);
		item[n] = '\0';
		v += n + (v[n] == '\n');
		eq = strchr(item, '=');
		*eq = '\0'; /* the flag's check saw SERVICE.METHOD=LIMIT */
		dot = strrchr(item, '.');
		*dot = '\0';
		err = server_set_method_concurrency(srv, item, dot + 1, eq + 1,
						    why, sizeof(why));
		if (err) {
			fprintf(stderr, "%s: --method_max_concurrency: %s\n",
				who, why);
			return err;
		}
	}
	return 0;
}

void app_server_options(struct server_options *so, struct app_runtime *r,
			struct app_config *cfg, const struct pbd_pool *pool,
			const char *version)
{
	const struct flags *fl = &cfg->flags;

	server_options_default(so);
	so->rt = &r->rt;
	so->pool = &r->pool;
	so->log = &r->log;
	so->mem = mem_cached();
	/* RDMA hellos: served with --rdma=true and a device, else refused
	 * (the client goes on over TCP, spec 2.8). */
	so->upgrade = rdt_upgrade(r->rdma);
	so->tls = r->tls ? tls_upgrade(r->tls) : NULL;
	so->tls_required = flags_bool(fl, "tls_required");
	so->metrics = &r->metrics;
	so->descriptors = pool;
	so->version = version;
	so->max_body_size = (size_t)flags_int(fl, "max_body_size");
	so->http_header_timeout_ms =
	    (int)flags_int(fl, "http_header_timeout_ms");
	so->http_idle_timeout_ms = (int)flags_int(fl, "http_idle_timeout_ms");
	overload_options(so, fl, version);
	r->flags = &cfg->flags;
	so->flags = &cfg->flags;
	so->set_flag = set_flag;
	so->set_flag_arg = r;
}

int app_register_start(struct etcd_reg **out, struct app_runtime *r,
		       const struct app_config *cfg, const char *host,
		       int port, const char *who)
{
	const char *url = flags_str(&cfg->flags, "register");
	const char *addr = flags_str(&cfg->flags, "register_addr");
	char own[NAMING_ADDR_MAX + 8], why[512];
	struct etcd_reg *reg;

	*out = NULL;
	if (!*url)
		return 0;
	if (!*addr && uaddr_is_unix(host)) {
		addr = host;
	} else if (!*addr) {
		snprintf(own, sizeof(own),
			 strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
		addr = own;
	}
	reg = calloc(1, sizeof(*reg));
	if (!reg) {
		fprintf(stderr, "%s: --register: no memory\n", who);
		return -1;
	}
	if (etcd_reg_start(reg, url, addr, flags_str(&cfg->flags, "register_tag"),
			   (int)flags_int(&cfg->flags, "register_ttl_s"),
			   rt_loop_for(&r->rt, 0), &r->log, why, sizeof(why))) {
		fprintf(stderr, "%s: --register=%s: %s\n", who, url, why);
		free(reg);
		return -1;
	}
	log_info(&r->log, "%s: registered %s in %s", who, reg->key, url);
	*out = reg;
	return 0;
}

void app_register_stop(struct etcd_reg *reg)
{
	if (!reg)
		return;
	etcd_reg_stop(reg);
	free(reg);
}
