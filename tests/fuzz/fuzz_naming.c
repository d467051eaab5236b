/*
 * fuzz_naming: the naming list parser (list:// entries and file://
 * lines) and the URL split on arbitrary text.  Checks: no crash and no
 * read past the input (ASan); every node kept is a valid HOST:PORT with
 * a tag free of blanks; no (address, tag) pair twice; a list never
 * exceeds NAMING_NODES_MAX; parsing the same text twice gives the same
 * set.
 */
// fuzz-sources: net/cluster/naming.c net/base/uaddr.c net/base/mem.c
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/naming.h"

static void check(const struct naming_list *l)
{
	if (l->n > NAMING_NODES_MAX)
		abort();
	for (size_t i = 0; i < l->n; i++) {
		if (!naming_addr_valid(l->v[i].addr))
			abort();
		for (const char *t = l->v[i].tag; *t; t++)
			if (isspace((unsigned char)*t))
				abort();
		for (size_t j = 0; j < i; j++)
			if (!strcmp(l->v[i].addr, l->v[j].addr) &&
			    !strcmp(l->v[i].tag, l->v[j].tag))
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char seps[] = {',', '\n'};
	struct naming_list a, b;
	enum naming_scheme scheme;
	const char *rest;
	char why[256], *text = malloc(size + 1);
	unsigned skipped;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (naming_url_split(text, &scheme, &rest, why, sizeof(why)) == 0 &&
	    (rest < text || rest > text + size))
		abort();
	for (size_t s = 0; s < sizeof(seps); s++) {
		naming_list_init(&a, NULL);
		naming_list_init(&b, NULL);
		if (naming_parse(text, seps[s], &a, &skipped, why,
				 sizeof(why)) == 0) {
			check(&a);
			if (naming_parse(text, seps[s], &b, NULL, NULL, 0) ||
			    !naming_same(&a, &b))
				abort();
		}
		naming_list_free(&a);
		naming_list_free(&b);
	}
	free(text);
	return 0;
}
