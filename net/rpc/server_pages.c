/*
 * server_pages: the built-in pages every port answers, named as brpc's
 * (users know them):
 *
 *   /                   the list of pages
 *   /health             "OK"
 *   /version            the server's version text
 *   /status             services and methods: calls, errors, latency
 *   /flags[/NAME]       every flag, its value and where it came from;
 *                       ?setvalue=V sets a flag marked runtime
 *   /connections        the open connections
 *   /vars[/PREFIX]      every metric whose name starts with PREFIX
 *   /protobufs[/NAME]   the types the server knows, and one's definition
 *   /metrics            every metric, in Prometheus text
 *
 * Plain text for curl and for Accept: text/plain; a small HTML page (no
 * script) for a browser (Accept: text/html).  GET and HEAD only.
 */
#include "server_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/fbuf.h"
#include "base/flags.h"
#include "base/util.h"

/* A page being written: text, or HTML with the same content. */
struct page {
	struct fbuf out;
	bool html;
	bool in_table;
};

/* The text, escaped for HTML when the page is. */
static void put(struct page *pg, const char *s, size_t n)
{
	size_t i, run = 0;

	if (!pg->html) {
		fbuf_append(&pg->out, s, n);
		return;
	}
	for (i = 0; i < n; i++) {
		const char *e = s[i] == '<'   ? "&lt;"
				: s[i] == '>' ? "&gt;"
				: s[i] == '&' ? "&amp;"
				: s[i] == '"' ? "&quot;"
					      : NULL;

		if (!e)
			continue;
		fbuf_append(&pg->out, s + run, i - run);
		fbuf_puts(&pg->out, e);
		run = i + 1;
	}
	fbuf_append(&pg->out, s + run, n - run);
}

static void putf(struct page *pg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void putf(struct page *pg, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(pg, buf,
		    (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static const char *const pages[][2] = {
    {"status", "services and methods"},	 {"flags", "flags, values, sources"},
    {"connections", "open connections"}, {"vars", "every metric"},
    {"protobufs", "the types known"},	 {"metrics", "Prometheus text"},
    {"health", "OK when serving"},	 {"version", "the version"},
};

static void page_begin(struct page *pg, const char *title)
{
	if (!pg->html)
		return;
	fbuf_puts(&pg->out,
		  "<!doctype html><html><head><meta charset=\"utf-8\">"
		  "<meta name=\"viewport\" content=\"width=device-width\">"
		  "<title>rpcgate ");
	put(pg, title, strlen(title));
	fbuf_puts(&pg->out,
		  "</title><style>body{font:14px/1.4 system-ui,sans-serif;"
		  "margin:0;color:#1d232a;background:#f6f7f9}"
		  "nav{background:#1d3557;padding:8px 16px}"
		  "nav a{color:#f1faee;margin-right:14px;text-decoration:none}"
		  "nav a:hover{text-decoration:underline}"
		  "main{padding:12px 16px}h1{font-size:20px;margin:8px 0}"
		  "h2{font-size:16px;margin:18px 0 6px}"
		  "table{border-collapse:collapse;background:#fff}"
		  "td,th{border:1px solid #d5d9de;padding:3px 8px;"
		  "text-align:left;vertical-align:top}"
		  "th{background:#e9ecef}td.n{text-align:right;"
		  "font-variant-numeric:tabular-nums}"
		  "pre{background:#fff;border:1px solid #d5d9de;padding:8px;"
		  "overflow:auto}</style></head><body><nav>"
		  "<a href=\"/\"><b>rpcgate</b></a>");
	for (size_t i = 0; i < ARRAY_SIZE(pages); i++)
		fbuf_printf(&pg->out, "<a href=\"/%s\">%s</a>", pages[i][0],
			    pages[i][0]);
	fbuf_puts(&pg->out, "</nav><main><h1>");
	put(pg, title, strlen(title));
	fbuf_puts(&pg->out, "</h1>");
}

static void page_end(struct page *pg)
{
	if (pg->html)
		fbuf_puts(&pg->out, "</main></body></html>\n");
}

static void heading(struct page *pg, const char *text)
{
	if (pg->html) {
		fbuf_puts(&pg->out, "<h2>");
		put(pg, text, strlen(text));
		fbuf_puts(&pg->out, "</h2>");
	} else {
		fbuf_printf(&pg->out, "[%s]\n", text);
	}
}

/* A table: text rows are "a | b | c" lines under a header line. */
static void table(struct page *pg, int ncols, const char *const *cols)
{
	pg->in_table = true;
	fbuf_puts(&pg->out, pg->html ? "<table><tr>" : "");
	for (int i = 0; i < ncols; i++) {
		if (pg->html)
			fbuf_puts(&pg->out, "<th>");
		else if (i)
			fbuf_puts(&pg->out, " | ");
		put(pg, cols[i], strlen(cols[i]));
		if (pg->html)
			fbuf_puts(&pg->out, "</th>");
	}
	fbuf_puts(&pg->out, pg->html ? "</tr>" : "\n");
}

/* A decimal number, as a table right-aligns it ("127.0.0.1" is not). */
static bool is_number(const char *s)
{
	bool digits = false, dot = false;

	if (*s == '-')
		s++;
	for (; *s; s++) {
		if (*s >= '0' && *s <= '9')
			digits = true;
		else if (*s == '.' && !dot)
			dot = true;
		else
			return false;
	}
	return digits;
}

static void row(struct page *pg, int ncols, ...)
{
	va_list ap;

	va_start(ap, ncols);
	if (pg->html)
		fbuf_puts(&pg->out, "<tr>");
	for (int i = 0; i < ncols; i++) {
		const char *cell = va_arg(ap, const char *);
		bool num = is_number(cell);

		if (pg->html)
			fbuf_puts(&pg->out, num ? "<td class=\"n\">" : "<td>");
		else if (i)
			fbuf_puts(&pg->out, " | ");
		put(pg, cell, strlen(cell));
		if (pg->html)
			fbuf_puts(&pg->out, "</td>");
	}
	fbuf_puts(&pg->out, pg->html ? "</tr>" : "\n");
	va_end(ap);
}

static void table_end(struct page *pg)
{
	pg->in_table = false;
	fbuf_puts(&pg->out, pg->html ? "</table>" : "\n");
}

/* key: value, a line of text or a row of a two-column table. */
static void kv(struct page *pg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kv(struct page *pg, const char *key, const char *fmt, ...)
{
	char v[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	if (pg->html)
		row(pg, 2, key, v);
	else
		fbuf_printf(&pg->out, "%s: %s\n", key, v);
}

static void kv_begin(struct page *pg)
{
	if (pg->html)
		fbuf_puts(&pg->out, "<table>");
}

static void kv_end(struct page *pg)
{
	if (pg->html)
		fbuf_puts(&pg->out, "</table>");
}

static void pre(struct page *pg, const char *s, size_t n)
{
	if (pg->html)
		fbuf_puts(&pg->out, "<pre>");
	put(pg, s, n);
	if (pg->html)
		fbuf_puts(&pg->out, "</pre>");
}

/* ---- the pages ------------------------------------------------------------ */

static void page_index(struct server *s, struct page *pg)
{
	(void)s;
	page_begin(pg, "built-in pages");
	if (pg->html)
		fbuf_puts(&pg->out, "<table>");
	for (size_t i = 0; i < ARRAY_SIZE(pages); i++) {
		if (pg->html)
			fbuf_printf(&pg->out,
				    "<tr><td><a href=\"/%s\">/%s</a></td><td>"
				    "%s</td></tr>",
				    pages[i][0], pages[i][0], pages[i][1]);
		else
			fbuf_printf(&pg->out, "/%s\t%s\n", pages[i][0],
				    pages[i][1]);
	}
	if (pg->html)
		fbuf_puts(&pg->out, "</table>");
	page_end(pg);
}

static const char *type_short(const struct server_method *m, bool in)
{
	if (m->input)
		return (in ? m->input : m->output)->short_name;
	if (m->pbd)
		return (in ? m->pbd->input : m->pbd->output)->name;
	return "?";
}

static void page_status(struct server *s, struct page *pg)
{
	struct server_stats st;
	struct iobuf_pool_stats ps;
	int64_t now = clock_mono_ns();

	server_stats(s, &st);
	page_begin(pg, "status");
	kv_begin(pg);
	kv(pg, "version", "%s", s->opt.version ? s->opt.version : "rpcgate");
	kv(pg, "non_service_error", "%llu",
	   (unsigned long long)(st.closed_bad +
				__atomic_load_n(&s->n_http_bad,
						__ATOMIC_RELAXED)));
	kv(pg, "connection_count", "%lld", (long long)st.connections);
	if (s->limit.mode == CLIMIT_AUTO)
		kv(pg, "max_concurrency", "%d (auto)", st.limit);
	else if (st.limit)
		kv(pg, "max_concurrency", "%d", st.limit);
	else
		kv(pg, "max_concurrency", "unlimited");
	kv(pg, "concurrency", "%lld", (long long)st.inflight);
	kv(pg, "calls", "%llu", (unsigned long long)st.calls);
	kv(pg, "errors", "%llu", (unsigned long long)st.errors);
	kv(pg, "limited", "%llu", (unsigned long long)st.limited);
	kv(pg, "inflight_bytes", "%lld", (long long)st.held_bytes);
	kv(pg, "refused_connections", "%llu",
	   (unsigned long long)(st.refused_no_fd + st.refused_max_conn));
	kv(pg, "write_timeouts", "%llu", (unsigned long long)st.closed_slow);
	iobuf_pool_stats(s->opt.pool, &ps);
	kv(pg, "buffer_blocks", "%zu (%zu free, %zu regions)", ps.blocks_total,
	   ps.blocks_free, ps.regions);
	kv_end(pg);
	if (pg->html)
		fbuf_puts(&pg->out, "<p>Latencies in microseconds, qps "
				    "over the last 10 seconds.</p>");
	for (int i = 0; i < s->nservices; i++) {
		const struct server_service *svc = s->services[i];

		heading(pg, svc->name);
		for (unsigned k = 0; k < svc->nmethods; k++) {
			const struct server_method *m = &svc->methods[k];
			struct metrics_latency_stats ls;
			char sig[512];

			if (!m->fn)
				continue;
			metrics_latency_stats_at(&m->latency, now, &ls);
			snprintf(sig, sizeof(sig), "%s (%s) returns (%s)",
				 m->name, type_short(m, true),
				 type_short(m, false));
			if (pg->html) {
				fbuf_puts(&pg->out, "<p><b>");
				put(pg, sig, strlen(sig));
				fbuf_puts(&pg->out, "</b></p>");
			} else {
				fbuf_printf(&pg->out, "\n%s\n", sig);
			}
			kv_begin(pg);
			kv(pg, "count", "%llu",
			   (unsigned long long)metrics_counter_get(&m->calls));
			kv(pg, "qps", "%llu",
			   (unsigned long long)(ls.count / METRICS_LAT_SLOTS));
			kv(pg, "error", "%llu",
			   (unsigned long long)metrics_counter_get(&m->errors));
			kv(pg, "latency", "%llu", (unsigned long long)ls.avg);
			kv(pg, "latency_50", "%llu",
			   (unsigned long long)ls.p50);
			kv(pg, "latency_90", "%llu",
			   (unsigned long long)ls.p90);
			kv(pg, "latency_99", "%llu",
			   (unsigned long long)ls.p99);
			kv(pg, "latency_999", "%llu",
			   (unsigned long long)ls.p999);
			kv(pg, "max_latency", "%llu",
			   (unsigned long long)ls.max);
			kv_end(pg);
		}
		if (!pg->html)
			fbuf_puts(&pg->out, "\n");
	}
	page_end(pg);
}

/* /flags/NAME?setvalue=V: 0 set (or only shown), else the status. */
static int flags_set_value(struct server *s, const char *name,
			   const char *value, char *why, size_t why_size)
{
	const struct flag *f = flags_find(s->opt.flags, name);

	if (!f) {
		snprintf(why, why_size, "no flag %.64s", name);
		return 404;
	}
	if (!f->def->runtime) {
		snprintf(why, why_size,
			 "%.64s cannot change while the server runs; set it "
			 "at start",
			 name);
		return 403;
	}
	if (!s->opt.set_flag) {
		snprintf(why, why_size, "this server changes no flag");
		return 403;
	}
	if (s->opt.set_flag(s->opt.set_flag_arg, name, value, why, why_size)) {
		if (!why[0])
			snprintf(why, why_size, "bad value for %.64s", name);
		return 400;
	}
	log_info(s->opt.log, "flag %s set to %s through /flags", name, value);
	return 0;
}

static void page_flags(struct server *s, struct page *pg, const char *only)
{
	static const char *const cols[] = {"name", "value", "source", "default",
					   "runtime"};
	char src[160];

	page_begin(pg, "flags");
	if (!s->opt.flags) {
		put(pg, "no flags\n", 9);
		page_end(pg);
		return;
	}
	table(pg, ARRAY_SIZE(cols), cols);
	for (size_t i = 0; i < s->opt.flags->n; i++) {
		const struct flag *f = &s->opt.flags->v[i];

		if (only && strcmp(only, f->def->name))
			continue;
		flags_describe_source(s->opt.flags, f, src, sizeof(src));
		row(pg, 5, f->def->name, f->s ? f->s : "", src,
		    f->defval ? f->defval : "", f->def->runtime ? "yes" : "");
	}
	table_end(pg);
	page_end(pg);
}

struct conn_row {
	char peer[64], proto[16], transport[16], age[32], in[24], out[24];
};

static void page_connections(struct server *s, struct page *pg)
{
	static const char *const cols[] = {"peer",  "protocol", "transport",
					   "age_s", "bytes_in", "bytes_out"};
	static const char *const protos[] = {[SRV_DETECT] = "-",
					     [SRV_UPGRADE] = "handshake",
					     [SRV_TLS] = "tls handshake",
					     [SRV_BAIDU] = "baidu_std",
					     [SRV_HTTP] = "http",
					     [SRV_REFUSED] = "closing"};
	int64_t now = clock_mono_ns();
	struct conn_row *rows = NULL;
	size_t n = 0, cap = 0;

	/* copied under the lock, written after it */
	pthread_mutex_lock(&s->lock);
	for (struct srv_conn *sc = s->conns; sc; sc = sc->next)
		cap++;
	rows = cap ? mem_alloc(s->opt.mem, cap * sizeof(*rows)) : NULL;
	for (struct srv_conn *sc = s->conns; rows && sc && n < cap;
	     sc = sc->next, n++) {
		struct conn_row *r = &rows[n];
		const struct conn_transport *tp =
		    __atomic_load_n(&sc->conn.tp, __ATOMIC_ACQUIRE);
		enum srv_proto p =
		    __atomic_load_n(&sc->proto, __ATOMIC_RELAXED);

		snprintf(r->peer, sizeof(r->peer), "%s", sc->conn.peer_text);
		snprintf(r->proto, sizeof(r->proto), "%s",
			 p <= SRV_REFUSED ? protos[p] : "?");
		snprintf(r->transport, sizeof(r->transport), "%s",
			 tp ? tp->name : "?");
		snprintf(r->age, sizeof(r->age), "%.1f",
			 (double)(now - sc->accepted_ns) / 1e9);
		snprintf(r->in, sizeof(r->in), "%llu",
			 (unsigned long long)__atomic_load_n(&sc->conn.bytes_in,
							     __ATOMIC_RELAXED));
		snprintf(r->out, sizeof(r->out), "%llu",
			 (unsigned long long)__atomic_load_n(
			     &sc->conn.bytes_out, __ATOMIC_RELAXED));
	}
	pthread_mutex_unlock(&s->lock);
	page_begin(pg, "connections");
	table(pg, ARRAY_SIZE(cols), cols);
	for (size_t i = 0; i < n; i++)
		row(pg, 6, rows[i].peer, rows[i].proto, rows[i].transport,
		    rows[i].age, rows[i].in, rows[i].out);
	table_end(pg);
	if (cap && !rows)
		put(pg, "(out of memory)\n", 16);
	mem_free(s->opt.mem, rows);
	page_end(pg);
}

/* The registry's text, whole: NULL when it changed while written. */
static char *prometheus_text(struct server *s, size_t *len)
{
	ssize_t need = metrics_write_prometheus(s->opt.metrics, NULL, 0);
	char *text = need >= 0 ? mem_alloc(s->opt.mem, (size_t)need + 1) : NULL;

	if (text && metrics_write_prometheus(s->opt.metrics, text,
					     (size_t)need + 1) != need) {
		mem_free(s->opt.mem, text);
		text = NULL;
	}
	*len = text ? (size_t)need : 0;
	return text;
}

static void page_vars(struct server *s, struct page *pg, const char *prefix)
{
	size_t len, plen = prefix ? strlen(prefix) : 0;
	char *text = s->opt.metrics ? prometheus_text(s, &len) : NULL;
	const char *p, *end;

	page_begin(pg, "vars");
	if (pg->html)
		fbuf_puts(&pg->out, "<pre>");
	for (p = text, end = text ? text + len : NULL; p && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		if (p[0] != '#' &&
		    (!plen || (n >= plen && !memcmp(p, prefix, plen))))
			put(pg, p, n);
		p += n;
	}
	if (pg->html)
		fbuf_puts(&pg->out, "</pre>");
	mem_free(s->opt.mem, text);
	page_end(pg);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void page_protobufs(struct server *s, struct page *pg, const char *name)
{
	const struct pbd_pool *pool = s->opt.descriptors;
	const char **names;
	size_t n = 0;

	if (name) {
		struct fbuf def;

		fbuf_init(&def, s->opt.mem, 0);
		page_begin(pg, name);
		if (!pool || pbd_print(pool, name, &def))
			putf(pg, "no type %s\n", name);
		else
			pre(pg, (const char *)def.p, def.len);
		fbuf_destroy(&def);
		page_end(pg);
		return;
	}
	page_begin(pg, "protobufs");
	if (!pool) {
		page_end(pg);
		return;
	}
	/* messages and services, sorted, as brpc lists them */
	names = mem_alloc(s->opt.mem,
			  (pool->nmsgs + pool->nservices + 1) * sizeof(*names));
	if (!names) {
		page_end(pg);
		return;
	}
	for (unsigned i = 0; i < pool->nmsgs; i++)
		names[n++] = pool->msgs[i]->full_name;
	for (unsigned i = 0; i < pool->nservices; i++)
		names[n++] = pool->services[i]->full_name;
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (pg->html)
			fbuf_printf(&pg->out,
				    "<a href=\"/protobufs/%s\">%s</a><br>",
				    names[i], names[i]);
		else
			fbuf_printf(&pg->out, "%s\n", names[i]);
	}
	mem_free(s->opt.mem, names);
	page_end(pg);
}

/* ---- dispatch ------------------------------------------------------------- */

/* The query's value of `key` (not decoded but for %XX and '+'), into buf;
 * false when absent. */
static bool query_value(const struct http1_str *q, const char *key, char *buf,
			size_t cap)
{
	size_t kn = strlen(key), i = 0;

	while (i < q->n) {
		const char *p = q->p + i, *amp = memchr(p, '&', q->n - i);
		size_t n = amp ? (size_t)(amp - p) : q->n - i, o = 0;

		i += n + 1;
		if (n < kn + 1 || memcmp(p, key, kn) || p[kn] != '=')
			continue;
		for (size_t k = kn + 1; k < n && o + 1 < cap; k++) {
			unsigned v;

			if (p[k] == '%' && k + 2 < n &&
			    sscanf(p + k + 1, "%2x", &v) == 1) {
				buf[o++] = (char)v;
				k += 2;
			} else {
				buf[o++] = p[k] == '+' ? ' ' : p[k];
			}
		}
		buf[o] = '\0';
		return true;
	}
	return false;
}

enum page_id {
	PG_NONE,
	PG_INDEX,
	PG_HEALTH,
	PG_VERSION,
	PG_STATUS,
	PG_FLAGS,
	PG_CONNECTIONS,
	PG_VARS,
	PG_PROTOBUFS,
	PG_METRICS,
	PG_APP,
};

static const struct {
	const char *name;
	enum page_id id;
} page_ids[] = {
    {"index", PG_INDEX},     {"health", PG_HEALTH},
    {"version", PG_VERSION}, {"status", PG_STATUS},
    {"flags", PG_FLAGS},     {"connections", PG_CONNECTIONS},
    {"vars", PG_VARS},	     {"protobufs", PG_PROTOBUFS},
    {"metrics", PG_METRICS},
};

/*
 * The page a path names, /PAGE or /PAGE/REST, with REST in `rest`
 * (NUL-terminated); PG_NONE for a service's path.  The first segment is
 * compared once against each name of its length.
 */
static enum page_id page_of(const struct server *s,
			    const struct http1_str *path, char *rest,
			    size_t cap)
{
	const char *seg = path->p + 1, *slash;
	size_t n, left;

	rest[0] = '\0';
	if (path->n == 1 && path->p[0] == '/')
		return PG_INDEX;
	if (path->n < 2 || path->p[0] != '/')
		return PG_NONE;
	slash = memchr(seg, '/', path->n - 1);
	n = slash ? (size_t)(slash - seg) : path->n - 1;
	if (s->opt.app_page && !slash && strlen(s->opt.app_page) == n &&
	    !memcmp(s->opt.app_page, seg, n))
		return PG_APP;
	for (size_t i = 0; i < ARRAY_SIZE(page_ids); i++) {
		if (strlen(page_ids[i].name) != n ||
		    memcmp(page_ids[i].name, seg, n))
			continue;
		left = slash ? path->n - 1 - n - 1 : 0;
		if (left >= cap)
			return PG_NONE;
		memcpy(rest, seg + n + 1, left);
		rest[left] = '\0';
		return page_ids[i].id;
	}
	return PG_NONE;
}

static bool wants_html(const struct http1_req *req)
{
	const struct http1_str *a = req->accept;

	return a && http1_has_token(a, "text/html");
}

bool server__page(struct srv_conn *sc, const struct http1_req *req,
		  bool keep_alive)
{
	struct server *s = sc->srv;
	bool head = req->method.n == 4 && !memcmp(req->method.p, "HEAD", 4);
	bool get =
	    head || (req->method.n == 3 && !memcmp(req->method.p, "GET", 3));
	const char *close_field =
	    !keep_alive	 ? (req->minor ? "connection: close\r\n" : "")
	    : req->minor ? ""
			 : "Connection: keep-alive\r\n";
	struct page pg = {.html = wants_html(req)};
	const char *type = pg.html ? "text/html; charset=utf-8" : "text/plain";
	char rest[256], value[FLAGS_VALUE_MAX < 1024 ? FLAGS_VALUE_MAX : 1024];
	char why[256] = "", extra[160];
	int status = 200;
	struct iobuf body;
	enum page_id id = page_of(s, &req->path, rest, sizeof(rest));

	if (id == PG_NONE)
		return false;
	if (!get) {
		snprintf(extra, sizeof(extra), "Allow: GET, HEAD\r\n%s",
			 close_field);
		iobuf_init(&body, s->opt.pool);
		iobuf_append(&body,
			     "rpcgate: the built-in pages answer GET "
			     "and HEAD\n",
			     44);
		server__http_answer(sc, req->minor, false, 405, extra,
				    "text/plain", &body);
		iobuf_destroy(&body);
		return true;
	}
	fbuf_init(&pg.out, s->opt.mem, 0);
	if (id == PG_INDEX) {
		page_index(s, &pg);
	} else if (id == PG_HEALTH) {
		fbuf_puts(&pg.out, "OK");
		type = "text/plain";
	} else if (id == PG_VERSION) {
		fbuf_puts(&pg.out, s->opt.version ? s->opt.version : "rpcgate");
		type = "text/plain";
	} else if (id == PG_STATUS) {
		page_status(s, &pg);
	} else if (id == PG_FLAGS) {
		pthread_mutex_lock(&s->flags_lock);
		if (rest[0] && query_value(&req->query, "setvalue", value,
					   sizeof(value))) {
			/* changing a flag needs the credential when the
			 * server checks one */
			const struct http1_str *a = req->authorization;
			struct baidu_bytes cred = {
			    a ? (const uint8_t *)a->p : NULL, a ? a->n : 0};
			char r[128] = "";
			struct server_peer peer = server__peer(sc);

			if (s->opt.auth &&
			    s->opt.auth(s->opt.auth_arg, &cred, &peer, r,
					sizeof(r))) {
				status = 401;
				snprintf(why, sizeof(why),
					 "setting a flag needs the credential");
			} else {
				status = flags_set_value(s, rest, value, why,
							 sizeof(why));
			}
			if (!status)
				status = 200;
		}
		if (status == 200)
			page_flags(s, &pg, rest[0] ? rest : NULL);
		pthread_mutex_unlock(&s->flags_lock);
	} else if (id == PG_CONNECTIONS) {
		page_connections(s, &pg);
	} else if (id == PG_VARS) {
		if (!rest[0] &&
		    query_value(&req->query, "prefix", value, sizeof(value)))
			snprintf(rest, sizeof(rest), "%.*s",
				 (int)sizeof(rest) - 1, value);
		page_vars(s, &pg, rest[0] ? rest : NULL);
	} else if (id == PG_PROTOBUFS) {
		page_protobufs(s, &pg, rest[0] ? rest : NULL);
	} else if (id == PG_APP) {
		struct fbuf text;

		fbuf_init(&text, s->opt.mem, 0);
		s->opt.app_page_fn(s->opt.app_page_arg, &text);
		page_begin(&pg, s->opt.app_page);
		if (pg.html)
			fbuf_puts(&pg.out, "<pre>");
		if (text.len)
			put(&pg, (const char *)text.p, text.len);
		if (pg.html)
			fbuf_puts(&pg.out, "</pre>");
		page_end(&pg);
		if (text.err)
			pg.out.err = text.err;
		fbuf_destroy(&text);
	} else if (s->opt.metrics) { /* /metrics */
		size_t len;
		char *text = rest[0] ? NULL : prometheus_text(s, &len);

		if (text) {
			fbuf_append(&pg.out, text, len);
			type = "text/plain; version=0.0.4; charset=utf-8";
		} else if (!rest[0]) {
			status = 503;
			snprintf(why, sizeof(why),
				 "the metrics changed while being written; "
				 "try again");
		} else {
			status = 404;
			snprintf(why, sizeof(why), "no such page");
		}
		mem_free(s->opt.mem, text);
	} else {
		status = 404;
		snprintf(why, sizeof(why), "this server keeps no metrics");
	}
	if (status != 200) {
		fbuf_clear(&pg.out);
		fbuf_printf(&pg.out, "rpcgate: %s\n", why);
		type = "text/plain";
	}
	iobuf_init(&body, s->opt.pool);
	if (pg.out.err || iobuf_append(&body, pg.out.p, pg.out.len)) {
		conn_close(&sc->conn, -ENOMEM);
	} else {
		server__http_answer(sc, req->minor, head, status, close_field,
				    type, &body);
	}
	iobuf_destroy(&body);
	fbuf_destroy(&pg.out);
	return true;
}
