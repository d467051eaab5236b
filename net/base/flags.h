/*
 * flags: one registry of configuration flags and where each value came from.
 *
 * The application describes every flag once (struct flag_def: name, type,
 * default, help, validator, whether it may change at run time) and loads
 * the sources in order, later wins:
 *
 *   defaults -> kernel command line -> environment -> command-line arguments
 *   (built in)  rpcgate.NAME=VALUE     RPCGATE_NAME    --NAME=VALUE
 *
 * A value is parsed and validated when it is set; an unknown name or a bad
 * value leaves the flag unchanged, returns -ENOENT or -EINVAL and records a
 * diagnostic line (naming the flag, the value, its source and what is
 * expected; for unknown names the closest known name).  Loading goes on
 * after an error so that one run reports every mistake; the caller decides
 * what to do (app/ stops the start with exit status 2).
 *
 * A `struct flags` is caller storage; it allocates one array at init and a
 * copy of each string value set from a source, through opt->mem.  It is not
 * thread-safe: load and read it on one thread at start-up.
 */
#ifndef RPCGATE_NET_FLAGS_H
#define RPCGATE_NET_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem.h"

/* Diagnostics kept per registry; more are counted, not kept. */
#define FLAGS_DIAG_MAX 16
/* One diagnostic line, NUL included. */
#define FLAGS_DIAG_LEN 320
/* A flag value as text, NUL included (longest: a route list). */
#define FLAGS_VALUE_MAX 4096

enum flag_type {
	FLAG_BOOL,   /* true/false, 1/0, yes/no, on/off */
	FLAG_INT,    /* decimal int64 within [min, max] */
	FLAG_STRING, /* any text, optionally checked by `valid` */
	FLAG_ENUM,   /* one of `choices` */
};

enum flag_source {
	FLAG_SRC_DEFAULT,
	FLAG_SRC_KERNEL,
	FLAG_SRC_ENV,
	FLAG_SRC_ARGV,
	FLAG_SRC_RUNTIME, /* set while running (a server's /flags page) */
};

struct flag_def {
	const char *name;
	enum flag_type type;
	const char *def; /* default, as text */
	const char *help;
	int64_t min, max;	      /* FLAG_INT: inclusive range */
	const char *const *choices;   /* FLAG_ENUM: NULL-terminated */
	bool (*valid)(const char *v); /* optional extra check of the text */
	const char *expect;	      /* what `valid` accepts, for messages */
	bool runtime;		      /* may change while running */
	/*
	 * FLAG_STRING only: values given several times by one source are
	 * all kept, joined by '\n' in order (a value may not hold one); a
	 * later source still replaces them all.
	 */
	bool repeat;
	/* FLAG_STRING only: the value `--NAME` alone sets (NULL: it needs
	 * one), for a flag that reads as a bool to some subcommands. */
	const char *bare;
};

struct flag {
	const struct flag_def *def;
	enum flag_source src;
	int64_t i;	    /* FLAG_INT value, FLAG_BOOL 0/1, FLAG_ENUM index */
	const char *s;	    /* the value as text */
	const char *defval; /* the default in force, as text */
	char *owned;	    /* s, when it is a copy we must free */
	char *defowned;	    /* defval, when a replaced default */
};

struct flags {
	const struct mem *mem;
	struct flag *v;
	size_t n;
	const char *kernel_origin; /* file the kernel source came from */
	char diag[FLAGS_DIAG_MAX][FLAGS_DIAG_LEN];
	unsigned ndiag; /* diagnostics recorded, kept or not */
};

/*
 * 0; -EINVAL if a definition is malformed or its default does not pass its
 * own validation (a programming error, recorded as a diagnostic); -ENOMEM.
 */
int flags_init(struct flags *fl, const struct flag_def *defs, size_t n,
	       const struct mem *mem);
void flags_destroy(struct flags *fl);

/*
 * Sets one flag from `src`.  `name` is `name_len` bytes (not necessarily
 * NUL-terminated).  Setting with FLAG_SRC_DEFAULT replaces the built-in
 * default (for defaults computed at start, such as worker_num's).
 * 0, -ENOENT (unknown name), -EINVAL (bad value), -ENOMEM.
 */
int flags_set(struct flags *fl, const char *name, size_t name_len,
	      const char *value, enum flag_source src);

/*
 * Loads `rpcgate.NAME=VALUE` tokens from a kernel command line (other
 * tokens are the kernel's and are ignored; double quotes group words and
 * are removed; `rpcgate.NAME` alone sets a bool).  `origin` names the file.
 * 0 or the first error (-ENOMEM wins over any other); every error is
 * recorded.
 */
int flags_load_cmdline(struct flags *fl, const char *text, const char *origin);

/* Loads RPCGATE_NAME=VALUE entries of `envp` (NAME upper-cased). */
int flags_load_env(struct flags *fl, char *const *envp);

/*
 * Parses one argument "--NAME=VALUE", "--NAME" (bool true) or "--noNAME"
 * (bool false).  -EINVAL with a diagnostic if `arg` is not of that form.
 */
int flags_load_arg(struct flags *fl, const char *arg);

/* NULL if there is no flag of that name. */
const struct flag *flags_find(const struct flags *fl, const char *name);

/* The value syntax of FLAG_BOOL (true/false, 1/0, yes/no, on/off, any
 * case) and FLAG_INT (a decimal integer), for options parsed elsewhere
 * (a route's key=value list): true and *out, or false. */
bool flags_parse_bool(const char *v, bool *out);
bool flags_parse_int(const char *v, int64_t *out);

/*
 * Typed reads of flags the caller defined; a name that is not defined, or
 * of another type, is a programming error and aborts.
 */
int64_t flags_int(const struct flags *fl, const char *name);
bool flags_bool(const struct flags *fl, const char *name);
const char *flags_str(const struct flags *fl, const char *name);

/* "default", "kernel command line", "environment", "command line",
 * "run time". */
const char *flag_source_name(enum flag_source src);

/*
 * Writes where flag `f` got its value: "default", "command line
 * --worker_num", "environment RPCGATE_WORKER_NUM" or "kernel command line
 * rpcgate.worker_num (/proc/cmdline)"; returns snprintf's length.
 */
int flags_describe_source(const struct flags *fl, const struct flag *f,
			  char *buf, size_t cap);

/* Writes what values `def` accepts, e.g. "an integer from 2 to 1024". */
int flag_describe_expect(const struct flag_def *def, char *buf, size_t cap);

/* The defined name closest to `name` by edit distance, or NULL if none is
 * close enough to be a plausible typo. */
const char *flags_closest(const struct flags *fl, const char *name,
			  size_t name_len);

/* Diagnostics: how many were recorded, and the i-th kept line. */
static inline unsigned flags_ndiag(const struct flags *fl)
{
	return fl->ndiag;
}

const char *flags_diag(const struct flags *fl, unsigned i);

/* Records a diagnostic of the caller's (e.g. an unreadable source). */
void flags_report(struct flags *fl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
