/*
 * meta_view: does the RpcMeta fast path (net/codec/baidu_meta) read a meta as
 * protobuf-c does?  Shared by tests/unit/test_baidu_meta.c and
 * tests/fuzz/fuzz_baidu_std.c.  Header only; needs baidu_meta.h and
 * baidu_std.h included before it.
 */
#ifndef RPCGATE_TESTS_META_VIEW_H
#define RPCGATE_TESTS_META_VIEW_H

#include <stdbool.h>
#include <string.h>

static inline bool meta_bytes_equal(const struct baidu_bytes *a,
				    const struct baidu_bytes *b)
{
	if (!a->ptr || !b->ptr)
		return !a->ptr && !b->ptr;
	return a->len == b->len && (!a->len || !memcmp(a->ptr, b->ptr, a->len));
}

static inline bool meta_str_equal(const char *a, const char *b)
{
	if (!a || !b)
		return !a && !b;
	return !strcmp(a, b);
}

/* Every field of the light view, strings and bytes by content. */
static inline bool meta_view_equal(const struct baidu_meta *a,
				   const struct baidu_meta *b)
{
	return a->has_request == b->has_request &&
	       meta_str_equal(a->service, b->service) &&
	       meta_str_equal(a->method, b->method) &&
	       a->has_log_id == b->has_log_id && a->log_id == b->log_id &&
	       a->trace_id == b->trace_id && a->span_id == b->span_id &&
	       a->parent_span_id == b->parent_span_id &&
	       meta_str_equal(a->request_id, b->request_id) &&
	       a->has_timeout_ms == b->has_timeout_ms &&
	       a->timeout_ms == b->timeout_ms &&
	       a->has_response == b->has_response &&
	       a->error_code == b->error_code &&
	       meta_str_equal(a->error_text, b->error_text) &&
	       a->correlation_id == b->correlation_id &&
	       a->compress_type == b->compress_type &&
	       a->content_type == b->content_type &&
	       a->attachment_size == b->attachment_size &&
	       meta_bytes_equal(&a->authentication_data,
				&b->authentication_data) &&
	       a->checksum_type == b->checksum_type &&
	       meta_bytes_equal(&a->checksum_value, &b->checksum_value) &&
	       a->checksum_with_attachment == b->checksum_with_attachment &&
	       a->has_stream_settings == b->has_stream_settings &&
	       a->n_user_fields == b->n_user_fields;
}

/*
 * Runs both decoders on (p, n).  Returns 1 when the fast path took the
 * meta, 0 when it left it to protobuf-c; false from *agree when the fast
 * path took a meta protobuf-c refuses or reads differently.
 */
static inline int meta_fast_vs_pbc(const void *p, size_t n, bool *agree)
{
	struct Brpc__Policy__RpcMeta *pb;
	struct baidu_meta fast, slow;
	char *store = malloc(n ? n : 1);
	int taken, ret;

	*agree = true;
	if (!store)
		abort();
	taken = baidu_meta_decode_fast(p, n, store, &fast) == 0;
	if (taken) {
		ret = baidu_meta_decode(p, n, NULL, &pb, &slow);
		*agree = ret == 0 && meta_view_equal(&fast, &slow);
		if (ret == 0)
			baidu_meta_free(pb, NULL);
	}
	free(store);
	return taken;
}

#endif
