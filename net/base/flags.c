/*
 * flags: the configuration registry (see flags.h).
 *
 * Values are parsed into `struct flag` when set, so a flag holds only
 * valid values and readers never parse.  Diagnostics are kept in the
 * registry itself: the API returns -errno, the operator reads the lines.
 */
#include "flags.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL_PREFIX "rpcgate."
#define ENV_PREFIX    "RPCGATE_"
/* Names longer than this cannot be ours; caps the edit-distance table. */
#define NAME_MAX_LEN 64

void flags_report(struct flags *fl, const char *fmt, ...)
{
	va_list ap;

	if (fl->ndiag < FLAGS_DIAG_MAX) {
		va_start(ap, fmt);
		vsnprintf(fl->diag[fl->ndiag], FLAGS_DIAG_LEN, fmt, ap);
		va_end(ap);
	}
	fl->ndiag++;
}

const char *flags_diag(const struct flags *fl, unsigned i)
{
	return i < fl->ndiag && i < FLAGS_DIAG_MAX ? fl->diag[i] : NULL;
}

const char *flag_source_name(enum flag_source src)
{
	switch (src) {
	case FLAG_SRC_DEFAULT:
		return "default";
	case FLAG_SRC_KERNEL:
		return "kernel command line";
	case FLAG_SRC_ENV:
		return "environment";
	case FLAG_SRC_ARGV:
		return "command line";
	case FLAG_SRC_RUNTIME:
		return "run time";
	}
	return "?";
}

/* The exact place a value of flag `name` from `src` was written. */
static int describe_origin(const struct flags *fl, const char *name, size_t len,
			   enum flag_source src, char *buf, size_t cap)
{
	char up[NAME_MAX_LEN + 1];
	size_t i;

	switch (src) {
	case FLAG_SRC_DEFAULT:
		return snprintf(buf, cap, "default");
	case FLAG_SRC_KERNEL:
		return snprintf(buf, cap, "kernel command line %s%.*s (%s)",
				KERNEL_PREFIX, (int)len, name,
				fl->kernel_origin ? fl->kernel_origin
						  : "/proc/cmdline");
	case FLAG_SRC_ENV:
		if (len > NAME_MAX_LEN)
			len = NAME_MAX_LEN;
		for (i = 0; i < len; i++)
			up[i] = (char)toupper((unsigned char)name[i]);
		up[len] = '\0';
		return snprintf(buf, cap, "environment %s%s", ENV_PREFIX, up);
	case FLAG_SRC_ARGV:
		return snprintf(buf, cap, "command line --%.*s", (int)len,
				name);
	case FLAG_SRC_RUNTIME:
		return snprintf(buf, cap, "set at run time (/flags/%.*s)",
				(int)len, name);
	}
	return snprintf(buf, cap, "?");
}

int flags_describe_source(const struct flags *fl, const struct flag *f,
			  char *buf, size_t cap)
{
	return describe_origin(fl, f->def->name, strlen(f->def->name), f->src,
			       buf, cap);
}

int flag_describe_expect(const struct flag_def *def, char *buf, size_t cap)
{
	size_t used;
	int n;

	switch (def->type) {
	case FLAG_BOOL:
		return snprintf(buf, cap, "true or false");
	case FLAG_INT:
		return snprintf(buf, cap, "an integer from %lld to %lld",
				(long long)def->min, (long long)def->max);
	case FLAG_ENUM:
		n = snprintf(buf, cap, "one of");
		used = n > 0 ? (size_t)n : 0;
		for (const char *const *c = def->choices; *c; c++) {
			n = snprintf(buf + (used < cap ? used : cap),
				     used < cap ? cap - used : 0, "%s %s",
				     c == def->choices ? "" : ",", *c);
			used += n > 0 ? (size_t)n : 0;
		}
		return (int)used;
	case FLAG_STRING:
		return snprintf(buf, cap, "%s",
				def->expect ? def->expect : "text");
	}
	return 0;
}

bool flags_parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"true", "1", "yes", "on"};
	static const char *const no[] = {"false", "0", "no", "off"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return true;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return true;
		}
	}
	return false;
}

bool flags_parse_int(const char *v, int64_t *out)
{
	char *end;
	long long x;

	if (!*v || isspace((unsigned char)*v))
		return false;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno || *end)
		return false;
	*out = x;
	return true;
}

/* Parses `v` for `def`; true and *out on success. */
static bool parse_value(const struct flag_def *def, const char *v, int64_t *out)
{
	bool b;

	*out = 0;
	switch (def->type) {
	case FLAG_BOOL:
		if (!flags_parse_bool(v, &b))
			return false;
		*out = b;
		return true;
	case FLAG_INT:
		return flags_parse_int(v, out) && *out >= def->min &&
		       *out <= def->max;
	case FLAG_ENUM:
		for (int64_t i = 0; def->choices[i]; i++) {
			if (!strcmp(def->choices[i], v)) {
				*out = i;
				return true;
			}
		}
		return false;
	case FLAG_STRING:
		return strlen(v) < FLAGS_VALUE_MAX &&
		       (!def->valid || def->valid(v));
	}
	return false;
}

static struct flag *find(const struct flags *fl, const char *name, size_t len)
{
	for (size_t i = 0; i < fl->n; i++) {
		const char *d = fl->v[i].def->name;

		if (strlen(d) == len && !memcmp(d, name, len))
			return &fl->v[i];
	}
	return NULL;
}

const struct flag *flags_find(const struct flags *fl, const char *name)
{
	return find(fl, name, strlen(name));
}

/* Levenshtein distance, two rows; both lengths <= NAME_MAX_LEN. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	size_t row[2][NAME_MAX_LEN + 1];
	size_t i, j;

	for (j = 0; j <= lb; j++)
		row[0][j] = j;
	for (i = 1; i <= la; i++) {
		size_t *cur = row[i & 1], *prev = row[(i - 1) & 1];

		cur[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? sub : del;
			if (ins < cur[j])
				cur[j] = ins;
		}
	}
	return row[la & 1][lb];
}

const char *flags_closest(const struct flags *fl, const char *name, size_t len)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1;

	if (len > NAME_MAX_LEN)
		return NULL;
	for (size_t i = 0; i < fl->n; i++) {
		const char *d = fl->v[i].def->name;
		size_t dl = strlen(d), dist;

		if (dl > NAME_MAX_LEN)
			continue;
		dist = edit_distance(name, len, d, dl);
		if (dist < best_d) {
			best_d = dist;
			best = d;
		}
	}
	/* A typo changes a few letters, never half of the word: "nope"
	 * is not a typo of "port" (3 of 4 letters differ). */
	if (best && best_d <= 2 + len / 4 && 2 * best_d <= len)
		return best;
	return NULL;
}

static void release(struct flags *fl, struct flag *f)
{
	mem_free(fl->mem, f->owned);
	f->owned = NULL;
}

/*
 * Stores a parsed value.  A value from a source is copied into f->owned;
 * a replaced default is copied into f->defowned, so the default in force
 * outlives later values.
 */
static int assign(struct flags *fl, struct flag *f, const char *value,
		  int64_t parsed, enum flag_source src)
{
	size_t len = strlen(value), keep = 0;
	char *copy;

	if (f->def->repeat && src != FLAG_SRC_DEFAULT && f->src == src &&
	    f->owned)
		keep = strlen(f->owned) + 1; /* the earlier values and '\n' */
	copy = mem_alloc(fl->mem, keep + len + 1);
	if (!copy)
		return -ENOMEM;
	if (keep) {
		memcpy(copy, f->owned, keep - 1);
		copy[keep - 1] = '\n';
	}
	memcpy(copy + keep, value, len + 1);
	if (src == FLAG_SRC_DEFAULT) {
		mem_free(fl->mem, f->defowned);
		f->defowned = copy;
		f->defval = copy;
		if (f->src != FLAG_SRC_DEFAULT)
			return 0;
		release(fl, f);
		f->s = copy;
	} else {
		release(fl, f);
		f->owned = copy;
		f->s = copy;
	}
	f->i = parsed;
	f->src = src;
	return 0;
}

int flags_set(struct flags *fl, const char *name, size_t len, const char *value,
	      enum flag_source src)
{
	char where[128], expect[256];
	struct flag *f = find(fl, name, len);
	const char *close;
	int64_t parsed;

	if (!f) {
		describe_origin(fl, name, len, src, where, sizeof(where));
		close = flags_closest(fl, name, len);
		if (close)
			flags_report(
			    fl,
			    "unknown flag '%.*s' (from %s); did you mean '%s'?",
			    (int)len, name, where, close);
		else
			flags_report(fl,
				     "unknown flag '%.*s' (from %s); 'rpcgate "
				     "--help' lists the flags",
				     (int)len, name, where);
		return -ENOENT;
	}
	if (!parse_value(f->def, value, &parsed) ||
	    (f->def->repeat && strchr(value, '\n'))) {
		describe_origin(fl, name, len, src, where, sizeof(where));
		flag_describe_expect(f->def, expect, sizeof(expect));
		flags_report(
		    fl, "bad value '%.200s' for flag %s (from %s): expected %s",
		    value, f->def->name, where, expect);
		return -EINVAL;
	}
	return assign(fl, f, value, parsed, src);
}

int flags_init(struct flags *fl, const struct flag_def *defs, size_t n,
	       const struct mem *mem)
{
	int64_t parsed;
	size_t i;

	memset(fl, 0, sizeof(*fl));
	fl->mem = mem;
	fl->v = mem_zalloc(mem, n * sizeof(*fl->v) + 1);
	if (!fl->v)
		return -ENOMEM;
	fl->n = n;
	for (i = 0; i < n; i++) {
		const struct flag_def *d = &defs[i];

		fl->v[i].def = d;
		if (!d->name || !d->def || strlen(d->name) > NAME_MAX_LEN ||
		    (d->type == FLAG_ENUM && !d->choices) ||
		    !parse_value(d, d->def, &parsed)) {
			flags_report(
			    fl,
			    "internal: flag definition %zu (%s) is malformed",
			    i, d->name ? d->name : "?");
			goto out_free;
		}
		fl->v[i].s = d->def;
		fl->v[i].defval = d->def;
		fl->v[i].i = parsed;
		fl->v[i].src = FLAG_SRC_DEFAULT;
	}
	return 0;

out_free:
	mem_free(mem, fl->v);
	fl->v = NULL;
	fl->n = 0;
	return -EINVAL;
}

void flags_destroy(struct flags *fl)
{
	for (size_t i = 0; i < fl->n; i++) {
		release(fl, &fl->v[i]);
		mem_free(fl->mem, fl->v[i].defowned);
	}
	mem_free(fl->mem, fl->v);
	fl->v = NULL;
	fl->n = 0;
}

/* Keeps the first error, but goes on so every mistake is reported;
 * -ENOMEM (which records no diagnostic) is never masked by a bad value. */
static void keep_first(int *first, int err)
{
	if (err && (!*first || err == -ENOMEM))
		*first = err;
}

/* Sets NAME=VALUE (or NAME alone, a bool) from one token. */
static int set_token(struct flags *fl, const char *tok, size_t len,
		     enum flag_source src)
{
	char value[FLAGS_VALUE_MAX];
	const char *eq = memchr(tok, '=', len);

	if (!eq)
		return flags_set(fl, tok, len, "true", src);
	if ((size_t)(tok + len - eq - 1) >= sizeof(value)) {
		flags_report(fl, "value of flag '%.*s' is longer than %d bytes",
			     (int)(eq - tok), tok, FLAGS_VALUE_MAX - 1);
		return -EINVAL;
	}
	memcpy(value, eq + 1, tok + len - eq - 1);
	value[tok + len - eq - 1] = '\0';
	return flags_set(fl, tok, (size_t)(eq - tok), value, src);
}

int flags_load_cmdline(struct flags *fl, const char *text, const char *origin)
{
	/* Unquoted copy of the current token. */
	char tok[sizeof(KERNEL_PREFIX) + NAME_MAX_LEN + FLAGS_VALUE_MAX];
	const size_t plen = sizeof(KERNEL_PREFIX) - 1;
	const char *p = text;
	int first = 0;

	fl->kernel_origin = origin;
	while (*p) {
		bool quoted = false, overlong = false;
		size_t len = 0;

		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
			if (*p == '"')
				quoted = !quoted;
			else if (len < sizeof(tok) - 1)
				tok[len++] = *p;
			else
				overlong = true;
		}
		tok[len] = '\0';
		if (len <= plen || memcmp(tok, KERNEL_PREFIX, plen))
			continue;
		if (overlong) {
			flags_report(fl,
				     "kernel command line token '%.40s...' "
				     "in %s is too long",
				     tok, origin ? origin : "/proc/cmdline");
			keep_first(&first, -EINVAL);
			continue;
		}
		keep_first(&first, set_token(fl, tok + plen, len - plen,
					     FLAG_SRC_KERNEL));
	}
	return first;
}

int flags_load_env(struct flags *fl, char *const *envp)
{
	char name[NAME_MAX_LEN + 1];
	const size_t plen = sizeof(ENV_PREFIX) - 1;
	int first = 0;

	for (; envp && *envp; envp++) {
		const char *e = *envp, *eq = strchr(e, '=');
		size_t len, i;

		if (!eq || strncmp(e, ENV_PREFIX, plen) || eq == e + plen)
			continue;
		len = (size_t)(eq - e) - plen;
		if (len > NAME_MAX_LEN) {
			flags_report(
			    fl, "unknown flag in environment variable '%.*s'",
			    (int)(eq - e), e);
			keep_first(&first, -ENOENT);
			continue;
		}
		for (i = 0; i < len; i++)
			name[i] = (char)tolower((unsigned char)e[plen + i]);
		keep_first(&first,
			   flags_set(fl, name, len, eq + 1, FLAG_SRC_ENV));
	}
	return first;
}

int flags_load_arg(struct flags *fl, const char *arg)
{
	const char *body, *eq;
	const struct flag *f;
	size_t len;

	if (strncmp(arg, "--", 2) || !arg[2] || arg[2] == '=') {
		flags_report(
		    fl,
		    "'%.100s' is not a flag: flags are written --NAME=VALUE",
		    arg);
		return -EINVAL;
	}
	body = arg + 2;
	eq = strchr(body, '=');
	if (eq)
		return set_token(fl, body, strlen(body), FLAG_SRC_ARGV);
	/* --NAME sets a bool (or a string flag's `bare` value); --noNAME
	 * clears a bool, as gflags users expect. */
	len = strlen(body);
	f = find(fl, body, len);
	if (!f && len > 2 && !strncmp(body, "no", 2)) {
		f = find(fl, body + 2, len - 2);
		if (f && f->def->type == FLAG_BOOL)
			return flags_set(fl, body + 2, len - 2, "false",
					 FLAG_SRC_ARGV);
	}
	if (f && f->def->type == FLAG_STRING && f->def->bare)
		return flags_set(fl, body, len, f->def->bare, FLAG_SRC_ARGV);
	if (f && f->def->type != FLAG_BOOL) {
		flags_report(fl, "flag %s needs a value: --%s=VALUE",
			     f->def->name, f->def->name);
		return -EINVAL;
	}
	return flags_set(fl, body, len, "true", FLAG_SRC_ARGV);
}

static const struct flag *typed(const struct flags *fl, const char *name,
				enum flag_type type)
{
	const struct flag *f = flags_find(fl, name);

	if (!f || f->def->type != type) {
		fprintf(stderr,
			"rpcgate: internal: flag %s read as wrong type\n",
			name);
		abort();
	}
	return f;
}

int64_t flags_int(const struct flags *fl, const char *name)
{
	const struct flag *f = flags_find(fl, name);

	if (f && f->def->type == FLAG_ENUM)
		return f->i;
	return typed(fl, name, FLAG_INT)->i;
}

bool flags_bool(const struct flags *fl, const char *name)
{
	return typed(fl, name, FLAG_BOOL)->i != 0;
}

const char *flags_str(const struct flags *fl, const char *name)
{
	const struct flag *f = flags_find(fl, name);

	if (f && f->def->type != FLAG_BOOL && f->def->type != FLAG_INT)
		return f->s;
	return typed(fl, name, FLAG_STRING)->s;
}
