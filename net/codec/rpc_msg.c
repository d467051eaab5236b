/*
 * rpc_msg: encode/compress/checksum and verify/decompress/decode of a
 * baidu_std message (see rpc_msg.h).
 */
#include "rpc_msg.h"

#include <errno.h>
#include <string.h>

#include "compress.h"
#include "crc32c.h"
#include "pbuf.h"

int rpc_msg_encode(const ProtobufCMessage *msg, int compress_type,
		   struct iobuf *out)
{
	struct iobuf raw;
	int err;

	if (compress_type == COMPRESS_NONE)
		return pbuf_pack(msg, out);
	if (!compress_type_supported(compress_type))
		return -EPROTONOSUPPORT;
	iobuf_init(&raw, out->pool);
	err = pbuf_pack(msg, &raw);
	if (!err)
		err = compress_encode(compress_type, &raw, out);
	iobuf_destroy(&raw);
	return err;
}

int rpc_msg_checksum(const struct iobuf *data, const struct iobuf *att,
		     uint8_t value[4])
{
	uint32_t crc = 0;
	int err;

	err = crc32c_iobuf(data, 0, iobuf_len(data), &crc);
	if (!err && att)
		err = crc32c_iobuf(att, 0, iobuf_len(att), &crc);
	if (!err)
		baidu_checksum_encode(crc, value);
	return err;
}

int rpc_msg_verify(const struct baidu_frame *f)
{
	const struct baidu_meta *m = &f->meta;
	uint32_t want;
	uint8_t got[4], expect[4];
	int err;

	if (m->checksum_type == BAIDU_CHECKSUM_NONE)
		return 0;
	if (m->checksum_type != BAIDU_CHECKSUM_CRC32C)
		return -EPROTONOSUPPORT;
	err = baidu_checksum_decode(&m->checksum_value, &want);
	if (err)
		return err;
	err = rpc_msg_checksum(
	    &f->data, m->checksum_with_attachment ? &f->attachment : NULL, got);
	if (err)
		return err;
	baidu_checksum_encode(want, expect);
	return memcmp(expect, got, sizeof(got)) ? -EBADMSG : 0;
}

int rpc_msg_decode(const ProtobufCMessageDescriptor *desc, int compress_type,
		   const struct iobuf *data, size_t max_size,
		   const struct mem *mem, ProtobufCMessage **out)
{
	struct iobuf plain;
	int err;

	if (compress_type == COMPRESS_NONE) {
		if (iobuf_len(data) > max_size)
			return -EMSGSIZE;
		return pbuf_unpack(desc, data, mem, out);
	}
	if (!compress_type_supported(compress_type))
		return -EPROTONOSUPPORT;
	iobuf_init(&plain, data->pool);
	err = compress_decode(compress_type, data, &plain, max_size);
	if (!err)
		err = pbuf_unpack(desc, &plain, mem, out);
	iobuf_destroy(&plain);
	return err;
}

const char *rpc_content_type_name(int type)
{
	switch (type) {
	case BAIDU_CONTENT_PB:
		return "pb";
	case BAIDU_CONTENT_JSON:
		return "json";
	case BAIDU_CONTENT_PROTO_JSON:
		return "proto-json";
	case BAIDU_CONTENT_PROTO_TEXT:
		return "proto-text";
	}
	return "unknown";
}

const char *rpc_checksum_type_name(int type)
{
	switch (type) {
	case BAIDU_CHECKSUM_NONE:
		return "none";
	case BAIDU_CHECKSUM_CRC32C:
		return "crc32c";
	}
	return "unknown";
}
