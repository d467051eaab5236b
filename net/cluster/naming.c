/*
 * naming: naming URLs and their instance lists (see naming.h).
 */
#include "naming.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "base/uaddr.h"

int naming_url_split(const char *url, enum naming_scheme *scheme,
		     const char **rest, char *why, size_t why_size)
{
	static const struct {
		const char *prefix;
		enum naming_scheme scheme;
	} schemes[] = {
	    {"list://", NAMING_LIST},
	    {"file://", NAMING_FILE},
	    {"http://", NAMING_DNS},
	    {"https://", NAMING_DNS},
	    {"etcd://", NAMING_ETCD},
	    {"consul://", NAMING_CONSUL},
	};

	for (size_t i = 0; i < ARRAY_SIZE(schemes); i++) {
		size_t n = strlen(schemes[i].prefix);

		if (!strncmp(url, schemes[i].prefix, n)) {
			*scheme = schemes[i].scheme;
			*rest = url + n;
			if (!**rest) {
				snprintf(
				    why, why_size,
				    "naming URL \"%s\" names nothing after "
				    "%s",
				    url, schemes[i].prefix);
				return -EINVAL;
			}
			return 0;
		}
	}
	snprintf(why, why_size,
		 "naming URL \"%s\": expected list://ADDR,ADDR..., "
		 "file://PATH, http[s]://HOST[:PORT], "
		 "etcd://HOST:PORT[,...]/PREFIX or consul://SERVICE",
		 url);
	return -EINVAL;
}

bool naming_url_tls(const char *url)
{
	return !strncmp(url, "https://", 8);
}

int naming_dns_target(const char *rest, char *host, size_t host_size, int *port,
		      int default_port)
{
	size_t len = strcspn(rest, "/");
	const char *h = rest, *colon = NULL, *end = rest + len;
	size_t hl;
	long p = default_port;

	if (rest[0] == '[') {
		const char *rb = memchr(rest, ']', len);

		if (!rb)
			return -EINVAL;
		h = rest + 1;
		hl = (size_t)(rb - h);
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return -EINVAL;
			colon = rb + 1;
		}
	} else {
		colon = memchr(rest, ':', len);
		hl = colon ? (size_t)(colon - rest) : len;
	}
	if (colon) {
		p = 0;
		if (colon + 1 == end || end - colon > 6)
			return -EINVAL;
		for (const char *q = colon + 1; q < end; q++) {
			if (!isdigit((unsigned char)*q))
				return -EINVAL;
			p = p * 10 + (*q - '0');
		}
	}
	if (!hl || hl >= host_size || p < 1 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

void naming_list_init(struct naming_list *l, const struct mem *mem)
{
	memset(l, 0, sizeof(*l));
	l->mem = mem_or_default(mem);
}

void naming_list_free(struct naming_list *l)
{
	mem_free(l->mem, l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

bool naming_addr_valid(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	struct sockaddr_storage ss;
	socklen_t len;
	long port = 0;

	if (uaddr_is_unix(addr))
		return uaddr_parse(addr, &ss, &len) == 0;
	if (!colon || colon == addr || !colon[1] || strlen(colon + 1) > 5)
		return false;
	for (const char *p = colon + 1; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		port = port * 10 + (*p - '0');
	}
	/* A bare IPv6 address needs its brackets: "::1:80" is ambiguous. */
	if (addr[0] != '[' && memchr(addr, ':', (size_t)(colon - addr)))
		return false;
	if (addr[0] == '[' && colon[-1] != ']')
		return false;
	return port >= 1 && port <= 65535;
}

/* ---- the index ----------------------------------------------------- */

/* FNV-1a over the address, a NUL, and the tag. */
static uint64_t node_hash(const struct naming_node *n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = n->addr;; p++) {
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
		if (!*p)
			break;
	}
	for (const char *p = n->tag; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	return h;
}

static bool node_eq(const struct naming_node *a, const struct naming_node *b)
{
	return !strcmp(a->addr, b->addr) && !strcmp(a->tag, b->tag);
}

int naming_index_init(struct naming_index *ix, const struct mem *mem, size_t n)
{
	size_t slots = 8;

	/* At most half full: probes stay short. */
	while (slots < 2 * n)
		slots *= 2;
	ix->slot = mem_zalloc(mem, slots * sizeof(*ix->slot));
	if (!ix->slot)
		return -ENOMEM;
	ix->mask = slots - 1;
	ix->n = 0;
	ix->max = n;
	ix->mem = mem;
	return 0;
}

void naming_index_destroy(struct naming_index *ix)
{
	mem_free(ix->mem, ix->slot);
	ix->slot = NULL;
	ix->n = ix->max = 0;
}

/* The slot holding `key`'s node, or the empty slot where it would go. */
static size_t probe(const struct naming_index *ix,
		    const struct naming_node *key)
{
	size_t i = (size_t)node_hash(key) & ix->mask;

	while (ix->slot[i] && !node_eq(ix->slot[i], key))
		i = (i + 1) & ix->mask;
	return i;
}

const struct naming_node *naming_index_find(const struct naming_index *ix,
					    const struct naming_node *key)
{
	return ix->slot ? ix->slot[probe(ix, key)] : NULL;
}

int naming_index_add(struct naming_index *ix, const struct naming_node *node)
{
	size_t i = probe(ix, node);

	if (ix->slot[i])
		return -EEXIST;
	if (ix->n == ix->max)
		return -ENOSPC;
	ix->slot[i] = node;
	ix->n++;
	return 0;
}

/* ---- lists ----------------------------------------------------------- */

/* Appends `n` unless `seen` (the index of l's nodes) has it. */
static int push(struct naming_list *l, struct naming_index *seen,
		const struct naming_node *n)
{
	if (naming_index_find(seen, n))
		return 0;
	if (l->n == NAMING_NODES_MAX)
		return -E2BIG;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct naming_node *v = mem_alloc(l->mem, cap * sizeof(*v));
		struct naming_index grown;

		if (!v)
			return -ENOMEM;
		if (naming_index_init(&grown, l->mem, cap)) {
			mem_free(l->mem, v);
			return -ENOMEM;
		}
		/* The index points into the array: it moves with it. */
		for (size_t i = 0; i < l->n; i++) {
			v[i] = l->v[i];
			naming_index_add(&grown, &v[i]);
		}
		naming_index_destroy(seen);
		*seen = grown;
		mem_free(l->mem, l->v);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = *n;
	naming_index_add(seen, &l->v[l->n]);
	l->n++;
	return 0;
}

int naming_parse_entry(const char *p, size_t len, struct naming_node *out)
{
	size_t a = 0, t;

	while (len && isspace((unsigned char)*p)) {
		p++;
		len--;
	}
	while (len && isspace((unsigned char)p[len - 1]))
		len--;

	while (a < len && !isspace((unsigned char)p[a]))
		a++;
	if (a >= sizeof(out->addr))
		return -EINVAL;
	memcpy(out->addr, p, a);
	out->addr[a] = '\0';
	t = a;
	while (t < len && isspace((unsigned char)p[t]))
		t++;
	if (len - t >= sizeof(out->tag))
		return -EINVAL;
	memcpy(out->tag, p + t, len - t);
	out->tag[len - t] = '\0';
	for (size_t i = 0; out->tag[i]; i++)
		if (isspace((unsigned char)out->tag[i]))
			return -EINVAL; /* one tag, no blanks inside */
	return naming_addr_valid(out->addr) ? 0 : -EINVAL;
}

int naming_parse(const char *text, char sep, struct naming_list *out,
		 unsigned *skipped, char *why, size_t why_size)
{
	const char *p = text;
	struct naming_index seen;
	unsigned bad = 0;
	int err = 0;

	out->n = 0;
	if (why && why_size)
		why[0] = '\0';
	if (naming_index_init(&seen, out->mem, out->cap))
		return -ENOMEM;
	while (*p) {
		const char *end = strchr(p, sep), *next;
		size_t len;
		struct naming_node node;

		if (!end)
			end = p + strlen(p);
		next = *end ? end + 1 : end;
		len = (size_t)(end - p);
		if (sep == '\n') {
			const char *hash = memchr(p, '#', len);

			if (hash)
				len = (size_t)(hash - p);
		}
		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len) {
			if (naming_parse_entry(p, len, &node)) {
				if (!bad && why)
					snprintf(why, why_size,
						 "\"%.*s\" is not HOST:PORT "
						 "[TAG]",
						 (int)(len > 120 ? 120 : len),
						 p);
				bad++;
			} else {
				err = push(out, &seen, &node);
				if (err)
					break;
			}
		}
		p = next;
	}
	naming_index_destroy(&seen);
	if (skipped && !err)
		*skipped = bad;
	return err;
}

int naming_read_file(const char *path, struct naming_list *out,
		     unsigned *skipped, char *why, size_t why_size)
{
	struct stat st;
	char *buf;
	size_t got = 0, cap = NAMING_FILE_MAX;
	ssize_t n;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		snprintf(why, why_size, "cannot open %s: %s", path,
			 strerror(-err));
		return err;
	}
	if (fstat(fd, &st))
		st.st_size = NAMING_FILE_MAX;
	if (st.st_size > (off_t)NAMING_FILE_MAX) {
		snprintf(why, why_size, "cannot read %s: larger than %u MiB",
			 path, NAMING_FILE_MAX >> 20);
		close(fd);
		return -EFBIG;
	}
	/* Room for the size seen and some growth: a file written while we
	 * read changes again, and is read again. */
	if (st.st_size + 4096 < (off_t)NAMING_FILE_MAX)
		cap = (size_t)st.st_size + 4096;
	buf = mem_alloc(out->mem, cap + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	/* Read to EOF: the file may grow between fstat and here. */
	while (got < cap && (n = read(fd, buf + got, cap - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			snprintf(why, why_size, "cannot read %s: %s", path,
				 strerror(-err));
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	/* A NUL inside ends the text there: what follows is not lines. */
	err = naming_parse(buf, '\n', out, skipped, why, why_size);
out:
	mem_free(out->mem, buf);
	close(fd);
	return err;
}

bool naming_same(const struct naming_list *a, const struct naming_list *b)
{
	struct naming_index ix;
	bool same = true;

	if (a->n != b->n)
		return false;
	if (naming_index_init(&ix, b->mem, b->n))
		return false;
	for (size_t i = 0; i < b->n; i++)
		naming_index_add(&ix, &b->v[i]);
	/* Both are duplicate-free, so inclusion one way is equality. */
	for (size_t i = 0; i < a->n && same; i++)
		same = naming_index_find(&ix, &a->v[i]) != NULL;
	naming_index_destroy(&ix);
	return same;
}

void naming_filter(struct naming_list *l, naming_filter_fn *fn, void *arg)
{
	size_t k = 0;

	if (!fn)
		return;
	for (size_t i = 0; i < l->n; i++)
		if (fn(arg, &l->v[i]))
			l->v[k++] = l->v[i];
	l->n = k;
}

void naming_filter_tag(struct naming_list *l, const char *tag)
{
	size_t k = 0;

	if (!tag || !*tag)
		return;
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].tag, tag))
			l->v[k++] = l->v[i];
	l->n = k;
}
