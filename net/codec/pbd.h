/*
 * pbd: protobuf descriptors known at run time, read from FileDescriptorSet
 * bytes (what `protoc --include_imports -o FILE` writes), so that a
 * service can be transcoded, listed and printed without generated code.
 *
 * A pool holds every message, enum and service of the sets added to it,
 * resolved: a field's message or enum type is a pointer into the pool.
 * Sets are added at start (the compiled-in services' own, then each
 * --descriptor_set); once the pool is in use it is read-only, and any
 * thread may read it.
 *
 * The same full name may come from two sets (a service's .proto loaded
 * beside the compiled-in copy of it): identical definitions are taken
 * once; different ones are refused, naming both files.
 *
 * Reading a set is a parser of untrusted bytes: lengths are checked
 * against the bytes present, nesting is limited (PBD_MAX_DEPTH), and every
 * failure names the file and the part that is wrong.
 */
#ifndef RPCGATE_NET_PBD_H
#define RPCGATE_NET_PBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

/* Messages nested in messages, as protoc's own recursion limit. */
#define PBD_MAX_DEPTH 100

/* FieldDescriptorProto.Type, as numbered in descriptor.proto. */
enum pbd_type {
	PBD_DOUBLE = 1,
	PBD_FLOAT = 2,
	PBD_INT64 = 3,
	PBD_UINT64 = 4,
	PBD_INT32 = 5,
	PBD_FIXED64 = 6,
	PBD_FIXED32 = 7,
	PBD_BOOL = 8,
	PBD_STRING = 9,
	PBD_GROUP = 10,
	PBD_MESSAGE = 11,
	PBD_BYTES = 12,
	PBD_UINT32 = 13,
	PBD_ENUM = 14,
	PBD_SFIXED32 = 15,
	PBD_SFIXED64 = 16,
	PBD_SINT32 = 17,
	PBD_SINT64 = 18,
};

enum pbd_label {
	PBD_OPTIONAL = 1,
	PBD_REQUIRED = 2,
	PBD_REPEATED = 3,
};

struct pbd_msg;
struct pbd_enum;

struct pbd_field {
	const char *name;
	const char *json_name; /* lowerCamelCase, as protoc derives it */
	uint32_t number;
	uint8_t type;		    /* enum pbd_type */
	uint8_t label;		    /* enum pbd_label */
	bool packed;		    /* repeated scalars go packed on the wire */
	bool is_map;		    /* repeated, of a map entry type */
	const struct pbd_msg *msg;  /* PBD_MESSAGE */
	const struct pbd_enum *enm; /* PBD_ENUM */
	const char *default_value;  /* proto2's [default = ...]; NULL: none */
	const struct pbd_msg *owner; /* the message it belongs to */
	const char *type_name;	     /* as the set names it, ".pkg.Type" */
};

struct pbd_msg {
	const char *full_name; /* "example.Kitchen" */
	const char *name;      /* "Kitchen" */
	const char *file;
	bool proto3;
	bool map_entry; /* key = 1, value = 2 */
	unsigned nfields;
	struct pbd_field *fields;	  /* by number */
	const struct pbd_field **by_name; /* sorted by name (strcmp) */
	unsigned nrequired;
	const struct pbd_msg *parent; /* a nested message's; NULL at top */
	const uint8_t *raw; /* its DescriptorProto bytes, for duplicates */
	size_t raw_len;
};

struct pbd_enum_value {
	const char *name;
	int32_t number;
};

struct pbd_enum {
	const char *full_name;
	const char *name;
	const char *file;
	unsigned nvalues;
	const struct pbd_enum_value *values; /* in .proto order */
	const struct pbd_msg *parent;
	const uint8_t *raw;
	size_t raw_len;
};

struct pbd_method {
	const char *name;
	const struct pbd_msg *input, *output;
	bool client_streaming, server_streaming;
	const char *input_name, *output_name; /* ".pkg.Type" */
};

struct pbd_service {
	const char *full_name; /* "example.EchoService" */
	const char *name;      /* "EchoService" */
	const char *file;
	unsigned nmethods;
	const struct pbd_method *methods;
	const uint8_t *raw;
	size_t raw_len;
};

struct pbd_chunk;

struct pbd_pool {
	const struct mem *mem;
	struct pbd_chunk *chunks;    /* the arena everything lives in */
	const struct pbd_msg **msgs; /* sorted by full name */
	unsigned nmsgs, cap_msgs;
	const struct pbd_enum **enums;
	unsigned nenums, cap_enums;
	const struct pbd_service **services;
	unsigned nservices, cap_services;
	const char **files; /* names of the files taken, in order */
	unsigned nfiles, cap_files;
};

void pbd_pool_init(struct pbd_pool *pool, const struct mem *mem);
void pbd_pool_destroy(struct pbd_pool *pool);

/*
 * Adds every file of a FileDescriptorSet.  `origin` names the set in
 * messages (its path).  0; -EBADMSG: not a FileDescriptorSet, or a type a
 * field or method names is in no set added so far or now (a set made
 * without --include_imports), or a name defined twice differently;
 * -ENOMEM.  On failure the pool is as it was and `why` (if not NULL)
 * says what is wrong in one line.  Not thread-safe: add before use.
 */
int pbd_pool_add_set(struct pbd_pool *pool, const void *bytes, size_t len,
		     const char *origin, char *why, size_t why_size);

/* By full name, without a leading dot; NULL: none. */
const struct pbd_msg *pbd_find_msg(const struct pbd_pool *pool,
				   const char *full_name);
const struct pbd_enum *pbd_find_enum(const struct pbd_pool *pool,
				     const char *full_name);

/*
 * A service by full name ("example.EchoService") or, when no service
 * has that full name, by its short name ("EchoService") if exactly one
 * service has it.  n: the name's length (the name need not end there).
 * NULL: none, or a short name two services share.
 */
const struct pbd_service *pbd_find_service(const struct pbd_pool *pool,
					   const char *name, size_t n);
const struct pbd_method *pbd_find_method(const struct pbd_service *svc,
					 const char *name, size_t n);

/* A field by number, or by name (or json_name); NULL: none. */
const struct pbd_field *pbd_field_by_number(const struct pbd_msg *m,
					    uint32_t number);
const struct pbd_field *pbd_field_by_name(const struct pbd_msg *m,
					  const char *name, size_t n);

/* An enum value by number (the first of that number) or name. */
const struct pbd_enum_value *pbd_enum_by_number(const struct pbd_enum *e,
						int32_t number);
const struct pbd_enum_value *pbd_enum_by_name(const struct pbd_enum *e,
					      const char *name, size_t n);

/* The type's name as a .proto writes it: "int32", "string", ...
 * (messages and enums: their full name). */
const char *pbd_type_name(const struct pbd_field *f);

/*
 * The definition of the message, enum or service of that full name in
 * .proto text, as protobuf's DebugString writes it and the /protobufs
 * pages show it: nested messages and enums inside their parent, map
 * fields as map<K, V>, types by full name.  Appended to `out`.  0;
 * -ENOENT: no such name; out->err on a failed allocation.
 */
struct fbuf;
int pbd_print(const struct pbd_pool *pool, const char *full_name,
	      struct fbuf *out);

#endif
