/* consul_msg: consul's health answers read (see consul.h). */
#include "consul.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "codec/json.h"

/* ---- the answer ------------------------------------------------------ */

/* One element's fields, as read. */
struct elem {
	char node_addr[NAMING_ADDR_MAX];
	char addr[NAMING_ADDR_MAX];
	char tag[NAMING_TAG_MAX];
	int64_t port;
	bool has_service, bad_tag, too_long;
	struct fbuf *scratch;
};

/* A string member into `to` (too long: e->too_long). */
static int take_str(struct json_rd *r, struct fbuf *scratch, char *to,
		    size_t cap, struct elem *e)
{
	const char *s;
	size_t n;
	int err = json_string(r, scratch, &s, &n);

	if (err)
		return err;
	if (n >= cap || memchr(s, '\0', n) || memchr(s, ' ', n))
		e->too_long = true;
	else
		snprintf(to, cap, "%.*s", (int)n, s);
	return 0;
}

static int node_member(struct json_rd *r, const char *name, void *ctx)
{
	struct elem *e = ctx;
	struct fbuf *scratch = e->scratch;

	if (!strcmp(name, "Address") && json_peek(r) == '"')
		return take_str(r, scratch, e->node_addr, sizeof(e->node_addr),
				e);
	return json_skip(r, scratch);
}

static int service_member(struct json_rd *r, const char *name, void *ctx)
{
	struct elem *e = ctx;
	struct fbuf *scratch = e->scratch;

	if (!strcmp(name, "Address") && json_peek(r) == '"')
		return take_str(r, scratch, e->addr, sizeof(e->addr), e);
	if (!strcmp(name, "Port") && json_peek(r) != 'n') {
		const char *s;
		size_t n;
		int err = json_number(r, &s, &n);

		if (err)
			return err;
		if (json_parse_i64(s, n, 0, 65535, &e->port))
			e->port = -1;
		return 0;
	}
	if (!strcmp(name, "Tags") && json_peek(r) == '[') {
		int err, more, k = 0;

		r->p++;
		if (json_peek(r) == ']') {
			r->p++;
			return 0;
		}
		do {
			if (k++ == 0 && json_peek(r) == '"')
				err = take_str(r, scratch, e->tag,
					       sizeof(e->tag), e);
			else if (k == 1) /* the first tag is not a string */
				e->bad_tag = true, err = json_skip(r, scratch);
			else
				err = json_skip(r, scratch);
			if (err)
				return err;
			more = json_next(r, ']');
			if (more < 0)
				return more;
		} while (more);
		return 0;
	}
	return json_skip(r, scratch);
}

static int elem_member(struct json_rd *r, const char *name, void *ctx)
{
	struct elem *e = ctx;

	if (!strcmp(name, "Node") && json_peek(r) == '{')
		return json_each_member(r, e->scratch, node_member, e);
	if (!strcmp(name, "Service") && json_peek(r) == '{') {
		e->has_service = true;
		return json_each_member(r, e->scratch, service_member, e);
	}
	return json_skip(r, e->scratch);
}

int consul_parse(const char *p, size_t n, struct naming_list *out,
		 unsigned *skipped, struct fbuf *scratch, char *why,
		 size_t why_size)
{
	struct naming_index seen;
	struct json_rd r;
	int err = 0, more;

	out->n = 0;
	*skipped = 0;
	why[0] = '\0';
	json_rd_init(&r, p, n);
	if ((err = json_expect(&r, '[', "expected a JSON array")))
		goto bad;
	if (json_peek(&r) == ']') {
		r.p++;
		goto end;
	}
	if (naming_index_init(&seen, out->mem, out->cap))
		return -ENOMEM;
	do {
		struct elem e = {.port = -1, .scratch = scratch};
		struct naming_node node;
		const char *host;

		err = json_each_member(&r, scratch, elem_member, &e);
		if (err)
			break;
		host = e.addr[0] ? e.addr : e.node_addr;
		memset(&node, 0, sizeof(node));
		{
			char a[NAMING_ADDR_MAX + 32];
			bool v6 = strchr(host, ':') && host[0] != '[';

			snprintf(a, sizeof(a), v6 ? "[%s]:%lld" : "%s:%lld",
				 host, (long long)e.port);
			if (strlen(a) >= sizeof(node.addr))
				e.too_long = true;
			else
				memcpy(node.addr, a, strlen(a) + 1);
		}
		snprintf(node.tag, sizeof(node.tag), "%s", e.tag);
		if (!e.has_service || !host[0] || e.port <= 0 || e.bad_tag ||
		    e.too_long || !naming_addr_valid(node.addr)) {
			if (!*skipped)
				snprintf(why, why_size,
					 "an element without a valid "
					 "Service.Address (or Node.Address), "
					 "Service.Port and first tag");
			(*skipped)++;
		} else if (!naming_index_find(&seen, &node)) {
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 16;
				struct naming_node *v =
				    mem_alloc(out->mem, cap * sizeof(*v));
				struct naming_index grown;

				if (!v || naming_index_init(&grown, out->mem,
							    cap)) {
					mem_free(out->mem, v);
					err = -ENOMEM;
					break;
				}
				for (size_t i = 0; i < out->n; i++) {
					v[i] = out->v[i];
					naming_index_add(&grown, &v[i]);
				}
				naming_index_destroy(&seen);
				seen = grown;
				mem_free(out->mem, out->v);
				out->v = v;
				out->cap = cap;
			}
			if (out->n == NAMING_NODES_MAX) {
				err = -E2BIG;
				break;
			}
			out->v[out->n] = node;
			if (naming_index_add(&seen, &out->v[out->n]) == -ENOSPC) {
				err = -E2BIG;
				break;
			}
			out->n++;
		}
		more = json_next(&r, ']');
		if (more < 0)
			err = more;
	} while (!err && more);
	naming_index_destroy(&seen);
	if (err && err != -EBADMSG)
		return err;
	if (err)
		goto bad;
end:
	if (json_peek(&r) >= 0) {
		err = json_fail(&r, "data after the array");
		goto bad;
	}
	return 0;
bad:
	snprintf(why, why_size, "not consul's answer: %s at byte %zu",
		 r.why ? r.why : "bad JSON", r.at);
	return -EBADMSG;
}
