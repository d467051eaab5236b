/*
 * json_pb: JSON to protobuf wire bytes and back, driven by a descriptor
 * (net/codec/pbd.h), with no generated code and no message tree: brpc's
 * json2pb and pb2json mapping, with the proto3 JSON mapping where brpc
 * is silent or wrong.
 *
 *   JSON member names   the field's name, or its json_name, on input;
 *                       the name on output
 *   unknown members     ignored (as brpc)
 *   null                the field is left unset
 *   int32, uint32, ...  numbers, or strings holding them; a value that
 *                       does not fit its type is an error naming the
 *                       field (brpc drops it silently)
 *   int64, uint64       read from numbers or strings, exactly; written as
 *                       numbers (as brpc)
 *   float, double       numbers, or "NaN", "Infinity", "-Infinity", read
 *                       and written so (brpc writes huge numbers)
 *   bool                true or false
 *   enum                a value's name, or any int32; written by name
 *                       (by number when it has none); an unknown name is
 *                       an error (brpc drops it)
 *   string              valid UTF-8
 *   bytes               base64 (standard or URL-safe); written standard
 *   message             an object
 *   repeated            an array; packed on the wire when the field is
 *   map<K, V>           an object whose names are the keys; written after
 *                       the other fields, and written empty ({}) when it
 *                       has no entry, as brpc does
 *
 * Output fields come in field-number order.  Required fields are checked
 * both ways.  Errors are -EBADMSG with a text in brpc's words ("Missing
 * required field: example.EchoRequest.message", "Invalid value `123' for
 * field `example.EchoRequest.message' which SHOULD be string"), -ENOMEM,
 * or -EMSGSIZE when the output passes the fbuf's limit.
 *
 * Pure functions of their inputs; any thread.
 */
#ifndef RPCGATE_NET_JSON_PB_H
#define RPCGATE_NET_JSON_PB_H

#include <stddef.h>
#include <stdint.h>

#include "base/fbuf.h"
#include "pbd.h"

/* Error texts are cut to this. */
#define JPB_WHY_MAX 256

/*
 * The JSON object in json[0..n) as message m's wire bytes, appended to
 * `pb`.  A body that is only white space is -ENODATA when m has required
 * fields (brpc: "needs to be created from a non-empty json"), else an
 * empty message.  `why` gets the reason of a -EBADMSG.
 */
int jpb_from_json(const struct pbd_msg *m, const char *json, size_t n,
		  struct fbuf *pb, char why[JPB_WHY_MAX]);

/*
 * Message m's wire bytes pb[0..n) as a JSON object, appended to `json`.
 * -EBADMSG: the bytes are not such a message (or lack a required field).
 */
int jpb_to_json(const struct pbd_msg *m, const uint8_t *pb, size_t n,
		struct fbuf *json, char why[JPB_WHY_MAX]);

#endif
