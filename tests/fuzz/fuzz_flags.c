/*
 * fuzz_flags: the flag sources' parsers on arbitrary bytes, against the
 * real flag table.  The first byte picks the source: kernel command line
 * text, environment entries (one per line), or arguments (one per line).
 * Checks: no crash, no leak, and every flag still holds a value its own
 * definition accepts (a bad value must never be half-applied).
 */
// fuzz-sources: net/base/flags.c net/base/mem.c net/base/uaddr.c app/flagtab.c app/netcfg.c net/rpc/climit.c
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "base/flags.h"

/* Lines handed to the env and argv loaders per input. */
#define MAX_LINES 64

static void check_values(const struct flags *fl)
{
	for (size_t i = 0; i < fl->n; i++) {
		const struct flag *f = &fl->v[i];

		if (!f->s)
			abort();
		if (f->def->type == FLAG_INT &&
		    (f->i < f->def->min || f->i > f->def->max))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *lines[MAX_LINES + 1];
	struct flags fl;
	char *text, *p;
	int n = 0;

	if (size < 1)
		return 0;
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	if (flags_init(&fl, app_flag_defs, app_flag_count, NULL)) {
		free(text);
		return 0;
	}
	switch (data[0] % 3) {
	case 0:
		flags_load_cmdline(&fl, text, "fuzz");
		break;
	case 1:
	case 2:
		for (p = text; n < MAX_LINES && p && *p; n++) {
			lines[n] = p;
			p = strchr(p, '\n');
			if (p)
				*p++ = '\0';
		}
		lines[n] = NULL;
		if (data[0] % 3 == 1) {
			flags_load_env(&fl, lines);
		} else {
			for (int i = 0; i < n; i++)
				flags_load_arg(&fl, lines[i]);
		}
		break;
	}
	check_values(&fl);
	for (unsigned i = 0; i < flags_ndiag(&fl) && i < FLAGS_DIAG_MAX; i++)
		if (strlen(flags_diag(&fl, i)) >= FLAGS_DIAG_LEN)
			abort();
	flags_destroy(&fl);
	free(text);
	return 0;
}
