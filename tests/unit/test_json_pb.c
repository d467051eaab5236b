/*
 * test_json_pb: descriptor sets (net/codec/pbd), the JSON lexer and
 * writer (json), base64, and the transcoder between them (json_pb),
 * checked against protobuf-c's generated code for the same .proto
 * (brpc's kitchen.proto of ../shared/vectors/http, generated under
 * package ktest) and against the bodies brpc answered in the vectors.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>

#include <cmocka.h>

#define TEST_TIMEOUT_S 60
#include "testutil.h"

#include "base/fbuf.h"
#include "base/util.h"
#include "codec/base64.h"
#include "codec/json.h"
#include "codec/json_pb.h"
#include "codec/pbd.h"
#include "codec/pbwire.h"
#include "kitchen.pb-c.h"

/* ---- fixtures -------------------------------------------------------- */

static uint8_t *kitchen_set(size_t *len)
{
	return test_file_read(test_desc_path("kitchen.desc"), len);
}

static void load_kitchen(struct pbd_pool *pool)
{
	char why[256];
	size_t n;
	uint8_t *set = kitchen_set(&n);

	pbd_pool_init(pool, NULL);
	if (pbd_pool_add_set(pool, set, n, "kitchen.desc", why, sizeof(why)))
		fail_msg("kitchen.desc: %s", why);
	free(set);
}

static const struct pbd_msg *msg(const struct pbd_pool *pool, const char *n)
{
	const struct pbd_msg *m = pbd_find_msg(pool, n);

	if (!m)
		fail_msg("no message %s", n);
	return m;
}

/* A body of a vector's request: what follows the blank line. */
static char *vector_body(const char *name)
{
	size_t n;
	char path[256];
	uint8_t *v;
	char *body, *out;

	snprintf(path, sizeof(path), "http/%s", name);
	v = test_vector_read(path, &n);
	body = strstr((char *)v, "\r\n\r\n");
	assert_non_null(body);
	out = strdup(body + 4);
	free(v);
	return out;
}

/* JSON -> wire with m; the wire bytes in *pb (caller destroys). */
static int from_json(const struct pbd_msg *m, const char *json, struct fbuf *pb,
		     char *why)
{
	fbuf_init(pb, NULL, 0);
	return jpb_from_json(m, json, strlen(json), pb, why);
}

/* wire -> JSON, as a malloc'd string; fails the test on an error. */
static char *to_json(const struct pbd_msg *m, const uint8_t *p, size_t n)
{
	char why[JPB_WHY_MAX];
	struct fbuf out;
	int err;
	char *s;

	fbuf_init(&out, NULL, 0);
	err = jpb_to_json(m, p, n, &out, why);
	if (err)
		fail_msg("to_json: %d %s", err, why);
	s = strdup(fbuf_cstr(&out));
	fbuf_destroy(&out);
	return s;
}

/* ---- descriptor sets --------------------------------------------------- */

static void test_pbd_kitchen(void **state)
{
	struct pbd_pool pool;
	const struct pbd_msg *k;
	const struct pbd_field *f;
	const struct pbd_service *s;
	const struct pbd_method *me;

	(void)state;
	load_kitchen(&pool);
	assert_int_equal(pool.nmsgs, 5);
	assert_int_equal(pool.nenums, 1);
	assert_int_equal(pool.nservices, 2);
	k = msg(&pool, "example.Kitchen");
	assert_int_equal(k->nfields, 21);
	assert_int_equal(k->nrequired, 1);
	assert_string_equal(k->name, "Kitchen");
	f = pbd_field_by_name(k, "smap", 4);
	assert_non_null(f);
	assert_true(f->is_map);
	assert_int_equal(f->number, 19);
	assert_true(msg(&pool, "example.Kitchen.SmapEntry")->map_entry);
	f = pbd_field_by_name(k, "ri32xx", 4); /* the name need not end */
	assert_non_null(f);
	assert_string_equal(f->name, "ri32");
	assert_false(f->packed); /* proto2 without [packed] */
	assert_int_equal(f->label, PBD_REPEATED);
	f = pbd_field_by_name(k, "withDefault", 11); /* json_name */
	assert_non_null(f);
	assert_string_equal(f->default_value, "dflt");
	f = pbd_field_by_number(k, 14);
	assert_int_equal(f->type, PBD_ENUM);
	assert_string_equal(f->enm->full_name, "example.Color");
	assert_string_equal(pbd_enum_by_number(f->enm, 2)->name, "BLUE");
	assert_int_equal(pbd_enum_by_name(f->enm, "GREEN", 5)->number, 1);
	assert_null(pbd_field_by_number(k, 22));
	assert_null(pbd_field_by_name(k, "nope", 4));
	assert_ptr_equal(pbd_field_by_number(k, 15)->msg,
			 msg(&pool, "example.Inner"));
	s = pbd_find_service(&pool, "KitchenService", 14);
	assert_non_null(s);
	assert_ptr_equal(s,
			 pbd_find_service(&pool, "example.KitchenService", 22));
	me = pbd_find_method(s, "Mirror", 6);
	assert_non_null(me);
	assert_ptr_equal(me->input, k);
	assert_ptr_equal(me->output, k);
	assert_null(pbd_find_method(s, "Mirro", 5));
	assert_null(pbd_find_service(&pool, "NoSuch", 6));
	pbd_pool_destroy(&pool);
}

static char *print(const struct pbd_pool *pool, const char *name)
{
	struct fbuf out;
	char *s;

	fbuf_init(&out, NULL, 0);
	assert_int_equal(pbd_print(pool, name, &out), 0);
	s = strdup(fbuf_cstr(&out));
	fbuf_destroy(&out);
	return s;
}

static void test_pbd_print(void **state)
{
	struct pbd_pool pool;
	struct fbuf out;
	size_t n;
	uint8_t *v;
	char *s;

	(void)state;
	load_kitchen(&pool);
	/* brpc's /protobufs/example.EchoRequest body, byte for byte */
	v = test_vector_read("http/builtin_protobufs_echo.s2c", &n);
	s = print(&pool, "example.EchoRequest");
	assert_string_equal(s, strstr((char *)v, "\r\n\r\n") + 4);
	free(s);
	free(v);
	s = print(&pool, "example.Kitchen");
	assert_non_null(strstr(s, "  map<string, int32> smap = 19;\n"));
	assert_non_null(strstr(s, "  optional .example.Color color = 14;\n"));
	assert_non_null(strstr(
	    s, "  optional string with_default = 20 [default = \"dflt\"];\n"));
	assert_non_null(strstr(s, "  required int32 req = 21;\n"));
	assert_null(strstr(s, "SmapEntry")); /* map entries are not shown */
	free(s);
	s = print(&pool, "example.KitchenService");
	assert_string_equal(s, "service KitchenService {\n  rpc "
			       "Mirror(.example.Kitchen) returns "
			       "(.example.Kitchen);\n}\n");
	free(s);
	s = print(&pool, "example.Color");
	assert_string_equal(s, "enum Color {\n  RED = 0;\n  GREEN = 1;\n  "
			       "BLUE = 2;\n}\n");
	free(s);
	fbuf_init(&out, NULL, 0);
	assert_int_equal(pbd_print(&pool, "example.Nope", &out), -ENOENT);
	fbuf_destroy(&out);
	pbd_pool_destroy(&pool);
}

/* A set written by hand: one file `name` in package example, with one
 * message `msg` holding one field (number 1) of `type`, named by
 * type_name when it is a message. */
static void hand_set(struct fbuf *set, const char *file, const char *msgname,
		     unsigned type, const char *type_name)
{
	struct fbuf f, m, fld;

	fbuf_init(&fld, NULL, 0);
	pbw_buf_varint(&fld, pbw_key(1, PBW_LEN));
	pbw_buf_varint(&fld, 7);
	fbuf_append(&fld, "message", 7);
	pbw_buf_varint(&fld, pbw_key(3, PBW_VARINT));
	pbw_buf_varint(&fld, 1);
	pbw_buf_varint(&fld, pbw_key(4, PBW_VARINT));
	pbw_buf_varint(&fld, PBD_OPTIONAL);
	pbw_buf_varint(&fld, pbw_key(5, PBW_VARINT));
	pbw_buf_varint(&fld, type);
	if (type_name) {
		pbw_buf_varint(&fld, pbw_key(6, PBW_LEN));
		pbw_buf_varint(&fld, strlen(type_name));
		fbuf_puts(&fld, type_name);
	}
	fbuf_init(&m, NULL, 0);
	pbw_buf_varint(&m, pbw_key(1, PBW_LEN));
	pbw_buf_varint(&m, strlen(msgname));
	fbuf_puts(&m, msgname);
	pbw_buf_varint(&m, pbw_key(2, PBW_LEN));
	pbw_buf_varint(&m, fld.len);
	fbuf_append(&m, fld.p, fld.len);
	fbuf_init(&f, NULL, 0);
	pbw_buf_varint(&f, pbw_key(1, PBW_LEN));
	pbw_buf_varint(&f, strlen(file));
	fbuf_puts(&f, file);
	pbw_buf_varint(&f, pbw_key(2, PBW_LEN));
	pbw_buf_varint(&f, 7);
	fbuf_puts(&f, "example");
	pbw_buf_varint(&f, pbw_key(4, PBW_LEN));
	pbw_buf_varint(&f, m.len);
	fbuf_append(&f, m.p, m.len);
	fbuf_init(set, NULL, 0);
	pbw_buf_varint(set, pbw_key(1, PBW_LEN));
	pbw_buf_varint(set, f.len);
	fbuf_append(set, f.p, f.len);
	assert_int_equal(set->err, 0);
	fbuf_destroy(&fld);
	fbuf_destroy(&m);
	fbuf_destroy(&f);
}

static void test_pbd_duplicates(void **state)
{
	struct pbd_pool pool;
	struct fbuf set;
	char why[256];
	size_t n;
	uint8_t *k;

	(void)state;
	load_kitchen(&pool);
	/* the same set again: every definition is taken once */
	k = kitchen_set(&n);
	assert_int_equal(
	    pbd_pool_add_set(&pool, k, n, "again", why, sizeof(why)), 0);
	assert_int_equal(pool.nmsgs, 5);
	assert_int_equal(pool.nservices, 2);
	free(k);
	/* example.EchoRequest with an int32 field: refused, pool as it was */
	hand_set(&set, "other.proto", "EchoRequest", PBD_INT32, NULL);
	assert_int_equal(pbd_pool_add_set(&pool, set.p, set.len, "other.desc",
					  why, sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "message example.EchoRequest is defined "
				    "differently in kitchen.proto and "
				    "other.proto"));
	assert_int_equal(pool.nmsgs, 5);
	fbuf_destroy(&set);
	/* a new message is taken */
	hand_set(&set, "new.proto", "Fresh", PBD_STRING, NULL);
	assert_int_equal(pbd_pool_add_set(&pool, set.p, set.len, "new.desc",
					  why, sizeof(why)),
			 0);
	assert_int_equal(pool.nmsgs, 6);
	assert_non_null(pbd_find_msg(&pool, "example.Fresh"));
	fbuf_destroy(&set);
	pbd_pool_destroy(&pool);
}

static void test_pbd_unresolved(void **state)
{
	struct pbd_pool pool;
	struct fbuf set;
	char why[256];

	(void)state;
	pbd_pool_init(&pool, NULL);
	hand_set(&set, "lonely.proto", "Lonely", PBD_MESSAGE,
		 ".example.Missing");
	assert_int_equal(
	    pbd_pool_add_set(&pool, set.p, set.len, "l.desc", why, sizeof(why)),
	    -EBADMSG);
	assert_non_null(strstr(why, "l.desc: lonely.proto: "
				    "example.Lonely.message: type "
				    ".example.Missing is in no file"));
	assert_non_null(strstr(why, "--include_imports"));
	assert_int_equal(pool.nmsgs, 0);
	fbuf_destroy(&set);
	/* a group field: refused by name */
	hand_set(&set, "g.proto", "G", PBD_GROUP, ".example.G");
	assert_int_equal(
	    pbd_pool_add_set(&pool, set.p, set.len, "g.desc", why, sizeof(why)),
	    -EBADMSG);
	assert_non_null(strstr(why, "groups are not supported"));
	fbuf_destroy(&set);
	/* not a set at all */
	assert_int_equal(
	    pbd_pool_add_set(&pool, "hello", 5, "x", why, sizeof(why)),
	    -EBADMSG);
	assert_non_null(strstr(why, "not a FileDescriptorSet"));
	assert_int_equal(pbd_pool_add_set(&pool, "", 0, "x", why, sizeof(why)),
			 -EBADMSG);
	pbd_pool_destroy(&pool);
}

/* Every prefix of a good set: taken whole or refused whole, never read
 * past its end (the set sits against a PROT_NONE page). */
static void test_pbd_truncated(void **state)
{
	size_t n, page = (size_t)sysconf(_SC_PAGESIZE), i;
	uint8_t *set = kitchen_set(&n), *map;
	struct pbd_pool pool;
	char why[256];

	(void)state;
	assert_true(n < page);
	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + page, page, PROT_NONE), 0);
	for (i = 0; i <= n; i++) {
		uint8_t *p = map + page - i;
		int r;

		memcpy(p, set, i);
		pbd_pool_init(&pool, NULL);
		r = pbd_pool_add_set(&pool, p, i, "cut", why, sizeof(why));
		if (i == n)
			assert_int_equal(r, 0);
		else if (r) {
			assert_int_equal(r, -EBADMSG);
			assert_int_equal(pool.nmsgs + pool.nservices, 0);
		}
		pbd_pool_destroy(&pool);
	}
	munmap(map, 2 * page);
	free(set);
}

static void test_pbd_alloc_failures(void **state)
{
	size_t n;
	uint8_t *set = kitchen_set(&n);
	struct mem_failing mf;
	struct pbd_pool pool;
	char why[256];
	long k;
	int r;

	(void)state;
	for (k = 0;; k++) {
		mem_failing_init(&mf, k);
		pbd_pool_init(&pool, &mf.mem);
		r = pbd_pool_add_set(&pool, set, n, "k", why, sizeof(why));
		if (r == 0) {
			assert_int_equal(pool.nmsgs, 5);
			pbd_pool_destroy(&pool);
			assert_int_equal(mf.live, 0);
			break;
		}
		assert_int_equal(r, -ENOMEM);
		assert_int_equal(pool.nmsgs + pool.nenums + pool.nservices, 0);
		pbd_pool_destroy(&pool);
		assert_int_equal(mf.live, 0);
	}
	assert_true(k > 3);
	free(set);
}

/* ---- base64 ------------------------------------------------------------ */

static void test_base64(void **state)
{
	static const char *const rfc[][2] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	static const char *const bad[] = {
	    "Z", "Zg=", "Zh==", "Zm9=", "!!!", "Zm9v!", "Zg===", "=Zg="};
	struct fbuf b;

	(void)state;
	fbuf_init(&b, NULL, 0);
	for (size_t i = 0; i < ARRAY_SIZE(rfc); i++) {
		fbuf_clear(&b);
		base64_encode(&b, (const uint8_t *)rfc[i][0],
			      strlen(rfc[i][0]));
		assert_string_equal(fbuf_cstr(&b), rfc[i][1]);
		fbuf_clear(&b);
		assert_int_equal(
		    base64_decode(&b, rfc[i][1], strlen(rfc[i][1])), 0);
		assert_string_equal(fbuf_cstr(&b), rfc[i][0]);
	}
	/* without padding, and the URL-safe alphabet */
	fbuf_clear(&b);
	assert_int_equal(base64_decode(&b, "Zm9vYg", 6), 0);
	assert_string_equal(fbuf_cstr(&b), "foob");
	fbuf_clear(&b);
	assert_int_equal(base64_decode(&b, "-_8", 3), 0);
	assert_int_equal(b.len, 2);
	assert_int_equal(b.p[0], 0xfb);
	assert_int_equal(b.p[1], 0xff);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		fbuf_clear(&b);
		if (base64_decode(&b, bad[i], strlen(bad[i])) != -EINVAL)
			fail_msg("'%s' decoded", bad[i]);
	}
	fbuf_destroy(&b);
}

/* ---- JSON -> wire, checked with protobuf-c ----------------------------- */

static void test_kitchen_all(void **state)
{
	struct pbd_pool pool;
	char why[JPB_WHY_MAX], *body = vector_body("kitchen_all.c2s"), *out;
	struct fbuf pb;
	Ktest__Kitchen *k;

	(void)state;
	load_kitchen(&pool);
	if (from_json(msg(&pool, "example.Kitchen"), body, &pb, why))
		fail_msg("%s", why);
	k = ktest__kitchen__unpack(NULL, pb.len, pb.p);
	assert_non_null(k);
	assert_int_equal(k->i32, -5);
	assert_true(k->i64 == 9007199254740993LL);
	assert_true(k->u32 == 4000000000u);
	assert_true(k->u64 == UINT64_MAX);
	assert_int_equal(k->s32, -7);
	assert_true(k->s64 == -9007199254740993LL);
	assert_int_equal(k->f32, 7);
	assert_int_equal(k->f64, 8);
	assert_true(k->fl == 1.5f && k->db == 2.25 && k->b);
	assert_string_equal(k->str, "s\xc3\xa9\n\"");
	assert_int_equal(k->byt.len, 4);
	assert_memory_equal(k->byt.data, "\x00\x01\x02\xff", 4);
	assert_int_equal(k->color, KTEST__COLOR__BLUE);
	assert_int_equal(k->inner->id, 1);
	assert_string_equal(k->inner->name, "n");
	assert_int_equal(k->n_ri32, 3);
	assert_int_equal(k->ri32[2], 3);
	assert_int_equal(k->n_rstr, 2);
	assert_string_equal(k->rstr[1], "b");
	assert_int_equal(k->n_rinner, 2);
	assert_int_equal(k->rinner[0]->id, 2);
	assert_string_equal(k->rinner[1]->name, "x");
	assert_int_equal(k->n_smap, 2);
	assert_string_equal(k->smap[0]->key, "k1");
	assert_int_equal(k->smap[1]->value, 2);
	assert_int_equal(k->req, 1);
	assert_string_equal(k->with_default, "dflt"); /* not sent */
	/* and back: brpc's answer, but for the map's order, which brpc
	 * took from a hash table */
	out = to_json(msg(&pool, "example.Kitchen"), pb.p, pb.len);
	assert_string_equal(
	    out,
	    "{\"i32\":-5,\"i64\":9007199254740993,\"u32\":4000000000,\"u64\":"
	    "18446744073709551615,\"s32\":-7,\"s64\":-9007199254740993,"
	    "\"f32\":7,\"f64\":8,\"fl\":1.5,\"db\":2.25,\"b\":true,\"str\":"
	    "\"s\xc3\xa9\\n\\\"\",\"byt\":\"AAEC/w==\",\"color\":\"BLUE\","
	    "\"inner\":{\"id\":1,\"name\":\"n\"},\"ri32\":[1,2,3],\"rstr\":["
	    "\"a\",\"b\"],\"rinner\":[{\"id\":2},{\"name\":\"x\"}],\"req\":1,"
	    "\"smap\":{\"k1\":1,\"k2\":2}}");
	free(out);
	ktest__kitchen__free_unpacked(k, NULL);
	fbuf_destroy(&pb);
	free(body);
	pbd_pool_destroy(&pool);
}

/* brpc's answers, byte for byte, where brpc is right. */
static void test_brpc_answers(void **state)
{
	static const struct {
		const char *vector, *type;
	} cases[] = {
	    {"kitchen_defaults_only", "example.Kitchen"},
	    {"kitchen_enum_number", "example.Kitchen"},
	    {"kitchen_int64_as_string", "example.Kitchen"},
	    {"kitchen_null_field", "example.Kitchen"},
	    {"json_echo", "example.EchoRequest"},
	    {"json_unknown_field", "example.EchoRequest"},
	};
	struct pbd_pool pool;

	(void)state;
	load_kitchen(&pool);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char name[128], why[JPB_WHY_MAX], *in, *want, *got;
		const struct pbd_msg *m = msg(&pool, cases[i].type);
		struct fbuf pb;

		snprintf(name, sizeof(name), "%s.c2s", cases[i].vector);
		in = vector_body(name);
		snprintf(name, sizeof(name), "%s.s2c", cases[i].vector);
		want = vector_body(name);
		if (from_json(m, in, &pb, why))
			fail_msg("%s: %s", cases[i].vector, why);
		got = to_json(m, pb.p, pb.len);
		if (strcmp(got, want))
			fail_msg("%s: got %s, brpc answered %s",
				 cases[i].vector, got, want);
		free(in);
		free(want);
		free(got);
		fbuf_destroy(&pb);
	}
	pbd_pool_destroy(&pool);
}

static void test_json_errors(void **state)
{
	static const struct {
		const char *type, *json, *why;
		int err;
	} cases[] = {
	    {"example.EchoRequest", "{\"message\":123}",
	     "Invalid value `123' for field `example.EchoRequest.message' "
	     "which SHOULD be string",
	     -EBADMSG},
	    {"example.EchoRequest", "{}",
	     "Missing required field: example.EchoRequest.message", -EBADMSG},
	    {"example.EchoRequest", " \r\n", "", -ENODATA},
	    {"example.Kitchen", "[1,2]", "The input is not a json object",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"byt\":\"!!!\"}",
	     "Fail to decode base64 string=!!!", -EBADMSG},
	    /* brpc drops these two silently; a 400 names the field */
	    {"example.Kitchen", "{\"req\":1,\"i32\":3000000000}",
	     "Invalid value `3000000000' for field `example.Kitchen.i32' "
	     "which SHOULD be int32",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"color\":\"PURPLE\"}",
	     "Invalid value `\"PURPLE\"' for field `example.Kitchen.color' "
	     "which SHOULD be example.Color",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"color\":4294967296}",
	     "which SHOULD be example.Color", -EBADMSG},
	    {"example.EchoRequest", "{\"message\":", "Invalid json:", -EBADMSG},
	    {"example.EchoRequest", "{\"message\":\"one\"}POST",
	     "Invalid json: the object is followed by more bytes", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"fl\":1e39}",
	     "for field `example.Kitchen.fl' which SHOULD be float", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"db\":1e999}",
	     "which SHOULD be double", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"ri32\":5}",
	     "`5' for field `example.Kitchen.ri32' which SHOULD be array",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"ri32\":[1,null]}",
	     "`null' for field `example.Kitchen.ri32' which SHOULD be int32",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"smap\":{\"k\":null}}",
	     "`null' for field `example.Kitchen.SmapEntry.value'", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"u32\":-1}",
	     "`-1' for field `example.Kitchen.u32' which SHOULD be uint32",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"i32\":1.5}",
	     "which SHOULD be int32", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"b\":1}",
	     "`1' for field `example.Kitchen.b' which SHOULD be bool",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"inner\":{\"id\":\"x\"}}",
	     "`\"x\"' for field `example.Inner.id' which SHOULD be int32",
	     -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"inner\":[]}",
	     "which SHOULD be object", -EBADMSG},
	    {"example.Kitchen", "{\"inner\":{}}",
	     "Missing required field: example.Kitchen.req", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"str\":\"\xff\"}",
	     "Invalid json: invalid UTF-8 in a string", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"str\":\"\\ud800\"}",
	     "Invalid json: lone high surrogate", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"str\":\"a\nb\"}",
	     "Invalid json: control character", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,}", "Invalid json:", -EBADMSG},
	    {"example.Kitchen", "{\"req\" 1}", "expected ':'", -EBADMSG},
	    {"example.Kitchen", "{\"req\":01}", "Invalid json:", -EBADMSG},
	    {"example.Kitchen", "{\"req\":1,\"smap\":{\"k\":\"v\"}}",
	     "which SHOULD be int32", -EBADMSG},
	};
	struct pbd_pool pool;

	(void)state;
	load_kitchen(&pool);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char why[JPB_WHY_MAX];
		struct fbuf pb;
		int r = from_json(msg(&pool, cases[i].type), cases[i].json, &pb,
				  why);

		if (r != cases[i].err || !strstr(why, cases[i].why))
			fail_msg("%s: got %d '%s', want %d '%s'", cases[i].json,
				 r, why, cases[i].err, cases[i].why);
		fbuf_destroy(&pb);
	}
	pbd_pool_destroy(&pool);
}

/* A JSON object past the depth limit, in a field nobody knows. */
static void test_json_depth(void **state)
{
	char json[1024], why[JPB_WHY_MAX];
	struct pbd_pool pool;
	struct fbuf pb;
	size_t n = 0;

	(void)state;
	load_kitchen(&pool);
	n += (size_t)snprintf(json, sizeof(json), "{\"req\":1,\"deep\":");
	for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
		json[n++] = '[';
	for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
		json[n++] = ']';
	json[n++] = '}';
	json[n] = '\0';
	assert_int_equal(
	    from_json(msg(&pool, "example.Kitchen"), json, &pb, why), -EBADMSG);
	assert_non_null(strstr(why, "nested too deep"));
	fbuf_destroy(&pb);
	pbd_pool_destroy(&pool);
}

static void test_json_accepts(void **state)
{
	struct pbd_pool pool;
	const struct pbd_msg *m;
	char why[JPB_WHY_MAX];
	struct fbuf pb;
	Ktest__Kitchen *k;

	(void)state;
	load_kitchen(&pool);
	m = msg(&pool, "example.Kitchen");
	if (from_json(m,
		      " { \"req\" : \"-3\" , \"withDefault\":\"w\", "
		      "\"fl\":\"NaN\",\"db\":\"-Infinity\",\"i32\":1e2,"
		      "\"u64\":\"18446744073709551615\",\"color\":1,"
		      "\"str\":\"\\u00e9\\ud83d\\ude00\\/\\t\","
		      "\"nope\":{\"a\":[1,{\"b\":null}],\"c\":\"\\\"\"},"
		      "\"inner\":null,\"smap\":{},\"ri32\":[],"
		      "\"rinner\":[{}]} ",
		      &pb, why))
		fail_msg("%s", why);
	k = ktest__kitchen__unpack(NULL, pb.len, pb.p);
	assert_non_null(k);
	assert_int_equal(k->req, -3);
	assert_string_equal(k->with_default, "w");
	assert_true(isnan(k->fl));
	assert_true(isinf(k->db) && k->db < 0);
	assert_int_equal(k->i32, 100);
	assert_true(k->u64 == UINT64_MAX);
	assert_int_equal(k->color, KTEST__COLOR__GREEN);
	assert_string_equal(k->str, "\xc3\xa9\xf0\x9f\x98\x80/\t");
	assert_null(k->inner);
	assert_int_equal(k->n_smap, 0);
	assert_int_equal(k->n_ri32, 0);
	assert_int_equal(k->n_rinner, 1);
	ktest__kitchen__free_unpacked(k, NULL);
	fbuf_destroy(&pb);
	/* an empty body for a message without required fields */
	assert_int_equal(from_json(msg(&pool, "example.Inner"), "", &pb, why),
			 0);
	assert_int_equal(pb.len, 0);
	fbuf_destroy(&pb);
	pbd_pool_destroy(&pool);
}

/* ---- wire -> JSON ---------------------------------------------------- */

static void test_to_json_forms(void **state)
{
	Ktest__Kitchen k = KTEST__KITCHEN__INIT;
	Ktest__Inner in = KTEST__INNER__INIT;
	struct pbd_pool pool;
	uint8_t buf[512];
	char *s;
	size_t n;
	int32_t ri[] = {-1, 0, 2147483647};

	(void)state;
	load_kitchen(&pool);
	k.req = 0;
	k.has_fl = k.has_db = true;
	k.fl = NAN;
	k.db = INFINITY;
	k.has_i32 = true;
	k.i32 = INT32_MIN;
	k.has_s64 = true;
	k.s64 = INT64_MIN;
	k.has_color = true;
	k.color = 9; /* no such value: written as its number */
	k.str = "\x01\x7f\"\\\xc3\x28"; /* control, DEL, quote, bad UTF-8 */
	k.n_ri32 = 3;
	k.ri32 = ri;
	in.has_id = true;
	in.id = 5;
	k.inner = &in;
	n = ktest__kitchen__pack(&k, buf);
	s = to_json(msg(&pool, "example.Kitchen"), buf, n);
	assert_string_equal(
	    s, "{\"i32\":-2147483648,\"s64\":-9223372036854775808,"
	       "\"fl\":\"NaN\",\"db\":\"Infinity\",\"str\":\"\\u0001\x7f\\\""
	       "\\\\\xef\xbf\xbd(\",\"color\":9,\"inner\":{\"id\":5},\"ri32\":["
	       "-1,0,"
	       "2147483647],\"req\":0,\"smap\":{}}");
	free(s);
	/* floats in their shortest form */
	k = (Ktest__Kitchen)KTEST__KITCHEN__INIT;
	k.has_fl = k.has_db = true;
	k.fl = 0.1f;
	k.db = 1e21;
	n = ktest__kitchen__pack(&k, buf);
	s = to_json(msg(&pool, "example.Kitchen"), buf, n);
	assert_string_equal(s,
			    "{\"fl\":0.1,\"db\":1e+21,\"req\":0,\"smap\":{}}");
	free(s);
	k.fl = -0.0f;
	k.db = 0.30000000000000004;
	n = ktest__kitchen__pack(&k, buf);
	s = to_json(msg(&pool, "example.Kitchen"), buf, n);
	assert_string_equal(
	    s, "{\"fl\":-0,\"db\":0.30000000000000004,\"req\":0,\"smap\":{}}");
	free(s);
	pbd_pool_destroy(&pool);
}

/* Wire forms protobuf-c does not write but others may. */
static void test_to_json_wire_forms(void **state)
{
	struct pbd_pool pool;
	const struct pbd_msg *k;
	char why[JPB_WHY_MAX], *s;
	struct fbuf out;
	/* ri32 packed (LEN of 1, 2) then one more unpacked; inner twice
	 * (merged: id from the first, name from the second); an unknown
	 * field 99; req */
	static const uint8_t wire[] = {
	    0x82, 0x01, 0x02, 0x01, 0x02, /* 16: packed [1, 2] */
	    0x80, 0x01, 0x03,		  /* 16: 3 */
	    0x7a, 0x02, 0x08, 0x07,	  /* 15: {id: 7} */
	    0x7a, 0x03, 0x12, 0x01, 'z',  /* 15: {name: "z"} */
	    0x98, 0x06, 0x05,		  /* 99: 5 (unknown) */
	    0xa8, 0x01, 0x04,		  /* 21: 4 */
	    0xa8, 0x01, 0x06,		  /* 21: 6, the last wins */
	};
	static const uint8_t bad_type[] = {0xa9, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t no_req[] = {0x08, 0x01};

	(void)state;
	load_kitchen(&pool);
	k = msg(&pool, "example.Kitchen");
	s = to_json(k, wire, sizeof(wire));
	assert_string_equal(s, "{\"inner\":{\"id\":7,\"name\":\"z\"},\"ri32\":"
			       "[1,2,3],\"req\":6,\"smap\":{}}");
	free(s);
	fbuf_init(&out, NULL, 0);
	assert_int_equal(jpb_to_json(k, bad_type, sizeof(bad_type), &out, why),
			 -EBADMSG);
	assert_non_null(strstr(why, "not a example.Kitchen (field 21)"));
	fbuf_clear(&out);
	assert_int_equal(jpb_to_json(k, no_req, sizeof(no_req), &out, why),
			 -EBADMSG);
	assert_non_null(strstr(why, "Missing required field: "
				    "example.Kitchen.req"));
	/* every prefix of a good message: an answer or -EBADMSG */
	for (size_t i = 0; i < sizeof(wire); i++) {
		int r;

		fbuf_clear(&out);
		r = jpb_to_json(k, wire, i, &out, why);
		assert_true(r == 0 || r == -EBADMSG);
	}
	fbuf_destroy(&out);
	pbd_pool_destroy(&pool);
}

/* Every prefix of a JSON body fails cleanly; the body sits against a
 * PROT_NONE page, so a read past its end would fault. */
static void test_json_prefixes_at_guard_page(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n, i;
	char *body = vector_body("kitchen_all.c2s"), *map, why[JPB_WHY_MAX];
	struct pbd_pool pool;
	const struct pbd_msg *k;
	struct fbuf pb;

	(void)state;
	load_kitchen(&pool);
	k = msg(&pool, "example.Kitchen");
	n = strlen(body);
	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + page, page, PROT_NONE), 0);
	for (i = 0; i <= n; i++) {
		char *p = map + page - i;
		int r;

		memcpy(p, body, i);
		fbuf_init(&pb, NULL, 0);
		r = jpb_from_json(k, p, i, &pb, why);
		if (i == n)
			assert_int_equal(r, 0);
		else
			assert_true(r == -EBADMSG || r == -ENODATA);
		fbuf_destroy(&pb);
	}
	munmap(map, 2 * page);
	free(body);
	pbd_pool_destroy(&pool);
}

static void test_alloc_failures(void **state)
{
	char *body = vector_body("kitchen_all.c2s"), why[JPB_WHY_MAX];
	struct pbd_pool pool;
	const struct pbd_msg *k;
	struct mem_failing mf;
	struct fbuf pb, js;
	uint8_t *wire;
	size_t wn;
	long i;
	int r;

	(void)state;
	load_kitchen(&pool);
	k = msg(&pool, "example.Kitchen");
	assert_int_equal(from_json(k, body, &pb, why), 0);
	wn = pb.len;
	wire = malloc(wn);
	memcpy(wire, pb.p, wn);
	fbuf_destroy(&pb);
	for (i = 0;; i++) {
		mem_failing_init(&mf, i);
		fbuf_init(&pb, &mf.mem, 0);
		r = jpb_from_json(k, body, strlen(body), &pb, why);
		fbuf_destroy(&pb);
		assert_int_equal(mf.live, 0);
		if (!r)
			break;
		assert_int_equal(r, -ENOMEM);
	}
	for (i = 0;; i++) {
		mem_failing_init(&mf, i);
		fbuf_init(&js, &mf.mem, 0);
		r = jpb_to_json(k, wire, wn, &js, why);
		fbuf_destroy(&js);
		assert_int_equal(mf.live, 0);
		if (!r)
			break;
		assert_int_equal(r, -ENOMEM);
	}
	/* a limit on the output: -EMSGSIZE */
	fbuf_init(&pb, NULL, 16);
	assert_int_equal(jpb_from_json(k, body, strlen(body), &pb, why),
			 -EMSGSIZE);
	fbuf_destroy(&pb);
	free(wire);
	free(body);
	pbd_pool_destroy(&pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    TEST_BOUNDED(test_pbd_kitchen),
	    TEST_BOUNDED(test_pbd_print),
	    TEST_BOUNDED(test_pbd_duplicates),
	    TEST_BOUNDED(test_pbd_unresolved),
	    TEST_BOUNDED(test_pbd_truncated),
	    TEST_BOUNDED(test_pbd_alloc_failures),
	    TEST_BOUNDED(test_base64),
	    TEST_BOUNDED(test_kitchen_all),
	    TEST_BOUNDED(test_brpc_answers),
	    TEST_BOUNDED(test_json_errors),
	    TEST_BOUNDED(test_json_depth),
	    TEST_BOUNDED(test_json_accepts),
	    TEST_BOUNDED(test_to_json_forms),
	    TEST_BOUNDED(test_to_json_wire_forms),
	    TEST_BOUNDED(test_json_prefixes_at_guard_page),
	    TEST_BOUNDED(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
