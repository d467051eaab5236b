/*
 * compress: brpc CompressType codecs over iobufs (see compress.h).
 *
 * One static ops table indexed by type; a type without encode/decode has
 * no codec.  GZIP and ZLIB are one zlib codec differing only in the
 * windowBits that select the container.  zlib's allocations go through
 * the `struct mem` of out's pool (zalloc/zfree), so tests can fail them.
 *
 * Every codec appends to `out`; compress_encode/decode remember out's
 * length and drop anything appended when the codec fails, which is what
 * makes the calls all-or-nothing for the caller.
 */
#define ZLIB_CONST /* next_in is const: in's blocks are read only */
#include "compress.h"

#include <errno.h>
#include <stdint.h>
#include <zlib.h>

#include "base/util.h"
#include "snappy.h"

/* Output chunk between zlib and the iobuf: one block's payload. */
#define COMPRESS_CHUNK IOBUF_BLOCK_CAP
/* Window of 2^15 bytes (zlib's MAX_WBITS); +16 selects the gzip
 * container, as brpc's GzipOutputStream (protobuf) does. */
#define ZLIB_WBITS MAX_WBITS
#define GZIP_WBITS (16 + MAX_WBITS)
/* zlib's default memLevel (zconf.h DEF_MEM_LEVEL), which protobuf uses. */
#define ZLIB_MEM_LEVEL 8

struct compress_ops {
	const char *name;
	int (*encode)(const struct compress_ops *ops, const struct iobuf *in,
		      struct iobuf *out, const struct mem *mem);
	int (*decode)(const struct compress_ops *ops, const struct iobuf *in,
		      struct iobuf *out, size_t max_out, const struct mem *mem);
	int wbits; /* zlib codecs: container */
};

/* --- none ---------------------------------------------------------------- */

static int none_encode(const struct compress_ops *ops, const struct iobuf *in,
		       struct iobuf *out, const struct mem *mem)
{
	(void)ops;
	(void)mem;
	return iobuf_share(out, in, 0, iobuf_len(in));
}

static int none_decode(const struct compress_ops *ops, const struct iobuf *in,
		       struct iobuf *out, size_t max_out, const struct mem *mem)
{
	(void)ops;
	(void)mem;
	if (iobuf_len(in) > max_out)
		return -EMSGSIZE;
	return iobuf_share(out, in, 0, iobuf_len(in));
}

/* --- snappy -------------------------------------------------------------- */

static int snappy_encode(const struct compress_ops *ops, const struct iobuf *in,
			 struct iobuf *out, const struct mem *mem)
{
	size_t n = iobuf_len(in), win, cap, off, k;
	unsigned char *scratch, *dst;
	const void *src;
	ssize_t r;
	int err;

	(void)ops;
	if (n > SNAPPY_MAX_LENGTH)
		return -EMSGSIZE;
	win = n < SNAPPY_BLOCK_SIZE ? n : SNAPPY_BLOCK_SIZE;
	cap = snappy_max_compressed_length(win);
	scratch = mem_alloc(mem, win + cap);
	if (!scratch)
		return -ENOMEM;
	dst = scratch + win;

	err = iobuf_append(out, dst, (size_t)snappy_put_preamble(dst, n));
	for (off = 0; !err && off < n; off += k) {
		k = n - off < win ? n - off : win;
		/* Points into in's block when the window lies in one ref. */
		src = iobuf_peek(in, off, k, scratch);
		r = snappy_compress_block(src, k, dst, cap);
		err = r < 0 ? (int)r : iobuf_append(out, dst, (size_t)r);
	}
	mem_free(mem, scratch);
	return err;
}

static int snappy_decode(const struct compress_ops *ops, const struct iobuf *in,
			 struct iobuf *out, size_t max_out,
			 const struct mem *mem)
{
	size_t n = iobuf_len(in), len;
	unsigned char *flat = NULL, *dst, empty;
	const void *src;
	ssize_t r;
	int err;

	(void)ops;
	if (n == 0)
		return -EBADMSG; /* not even a preamble */
	/* The copy is bounded by bytes already held, not by the wire. */
	if (iobuf_ref_count(in) > 1) {
		flat = mem_alloc(mem, n);
		if (!flat)
			return -ENOMEM;
	}
	src = iobuf_peek(in, 0, n, flat);
	err = snappy_uncompressed_length(src, n, &len);
	if (err)
		goto out_free_flat;
	if (len > max_out) {
		err = -EMSGSIZE;
		goto out_free_flat;
	}
	dst = len ? mem_alloc(mem, len) : &empty;
	if (!dst) {
		err = -ENOMEM;
		goto out_free_flat;
	}
	r = snappy_decompress(src, n, dst, len);
	if (r < 0) {
		err = (int)r;
		goto out_free_dst;
	}
	err = iobuf_append(out, dst, (size_t)r);

out_free_dst:
	if (len)
		mem_free(mem, dst);
out_free_flat:
	mem_free(mem, flat);
	return err;
}

/* --- gzip, zlib ---------------------------------------------------------- */

static voidpf zalloc_mem(voidpf opaque, uInt items, uInt size)
{
	if (size && items > SIZE_MAX / size)
		return Z_NULL;
	return mem_alloc(opaque, (size_t)items * size);
}

static void zfree_mem(voidpf opaque, voidpf ptr)
{
	mem_free(opaque, ptr);
}

static void zstream_init(z_stream *zs, const struct mem *mem)
{
	*zs = (z_stream){
	    .zalloc = zalloc_mem,
	    .zfree = zfree_mem,
	    .opaque = (voidpf)mem_or_default(mem),
	};
}

static int zlib_encode(const struct compress_ops *ops, const struct iobuf *in,
		       struct iobuf *out, const struct mem *mem)
{
	unsigned char chunk[COMPRESS_CHUNK];
	size_t i, nrefs = iobuf_ref_count(in), len;
	const void *ptr;
	int flush, zr, err = 0;
	z_stream zs;

	zstream_init(&zs, mem);
	zr = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, ops->wbits,
			  ZLIB_MEM_LEVEL, Z_DEFAULT_STRATEGY);
	if (zr != Z_OK)
		return zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL;

	/* One pass per ref (refs are < 4 GiB: avail_in is a uInt), then one
	 * with no input to finish the stream. */
	for (i = 0; i <= nrefs; i++) {
		ptr = NULL;
		len = 0;
		if (i < nrefs)
			iobuf_ref_at(in, i, &ptr, &len);
		flush = i < nrefs ? Z_NO_FLUSH : Z_FINISH;
		zs.next_in = ptr;
		zs.avail_in = (uInt)len;
		do {
			zs.next_out = chunk;
			zs.avail_out = sizeof(chunk);
			zr = deflate(&zs, flush);
			if (zr == Z_STREAM_ERROR) {
				err = -EINVAL;
				goto out_end_deflate;
			}
			err = iobuf_append(out, chunk,
					   sizeof(chunk) - zs.avail_out);
			if (err)
				goto out_end_deflate;
			/* Output space left over means the input is used up;
			 * finishing goes on until the trailer is out. */
		} while (zs.avail_out == 0 ||
			 (flush == Z_FINISH && zr != Z_STREAM_END));
	}

out_end_deflate:
	deflateEnd(&zs);
	return err;
}

static int zlib_error(int zr)
{
	switch (zr) {
	case Z_MEM_ERROR:
		return -ENOMEM;
	case Z_STREAM_ERROR:
		return -EINVAL;
	default: /* Z_DATA_ERROR, Z_NEED_DICT, Z_BUF_ERROR without progress */
		return -EBADMSG;
	}
}

static int zlib_decode(const struct compress_ops *ops, const struct iobuf *in,
		       struct iobuf *out, size_t max_out, const struct mem *mem)
{
	unsigned char chunk[COMPRESS_CHUNK];
	size_t i = 0, nrefs = iobuf_ref_count(in), len, left = max_out, room;
	size_t made;
	const void *ptr;
	bool full = false; /* last call filled the chunk: may hold more */
	int zr, err;
	z_stream zs;

	zstream_init(&zs, mem);
	zr = inflateInit2(&zs, ops->wbits);
	if (zr != Z_OK)
		return zlib_error(zr);

	for (;;) {
		if (zs.avail_in == 0 && !full) {
			if (i == nrefs) {
				/* Input used up before the stream's end. */
				err = -EBADMSG;
				break;
			}
			iobuf_ref_at(in, i++, &ptr, &len);
			zs.next_in = ptr;
			zs.avail_in = (uInt)len;
		}
		/* Room for one byte past the limit shows it was passed. */
		room = left < sizeof(chunk) ? left + 1 : sizeof(chunk);
		zs.next_out = chunk;
		zs.avail_out = (uInt)room;
		zr = inflate(&zs, Z_NO_FLUSH);
		made = room - zs.avail_out;
		full = zs.avail_out == 0;
		if (made > left) {
			err = -EMSGSIZE;
			break;
		}
		left -= made;
		err = iobuf_append(out, chunk, made);
		if (err)
			break;
		/* Z_BUF_ERROR: no progress possible until more input. */
		if (zr == Z_OK || (zr == Z_BUF_ERROR && zs.avail_in == 0))
			continue;
		if (zr != Z_STREAM_END) {
			err = zlib_error(zr);
			break;
		}
		if (zs.avail_in == 0 && i == nrefs) {
			err = 0;
			break;
		}
		/* Bytes after the end: another gzip member, else garbage. */
		if (ops->wbits != GZIP_WBITS) {
			err = -EBADMSG;
			break;
		}
		inflateReset(&zs);
	}
	inflateEnd(&zs);
	return err;
}

/* --- table --------------------------------------------------------------- */

static const struct compress_ops compress_table[] = {
    [COMPRESS_NONE] =
	{
	    .name = "none",
	    .encode = none_encode,
	    .decode = none_decode,
	},
    [COMPRESS_SNAPPY] =
	{
	    .name = "snappy",
	    .encode = snappy_encode,
	    .decode = snappy_decode,
	},
    [COMPRESS_GZIP] =
	{
	    .name = "gzip",
	    .encode = zlib_encode,
	    .decode = zlib_decode,
	    .wbits = GZIP_WBITS,
	},
    [COMPRESS_ZLIB] =
	{
	    .name = "zlib",
	    .encode = zlib_encode,
	    .decode = zlib_decode,
	    .wbits = ZLIB_WBITS,
	},
    /* Named in options.proto, but brpc's global.cpp registers no codec. */
    [COMPRESS_LZ4] = {.name = "lz4"},
};

static const struct compress_ops *ops_of(int type)
{
	if (type < 0 || (size_t)type >= ARRAY_SIZE(compress_table))
		return NULL;
	return &compress_table[type];
}

const char *compress_type_name(int type)
{
	const struct compress_ops *ops = ops_of(type);

	return ops ? ops->name : "unknown";
}

bool compress_type_supported(int type)
{
	const struct compress_ops *ops = ops_of(type);

	return ops && ops->encode && ops->decode;
}

int compress_encode(int type, const struct iobuf *in, struct iobuf *out)
{
	const struct compress_ops *ops = ops_of(type);
	size_t mark = iobuf_len(out);
	int err;

	if (!compress_type_supported(type))
		return -EPROTONOSUPPORT;
	if (in == out)
		return -EINVAL;
	err = ops->encode(ops, in, out, out->pool->opt.mem);
	if (err)
		iobuf_drop_back(out, iobuf_len(out) - mark);
	return err;
}

int compress_decode(int type, const struct iobuf *in, struct iobuf *out,
		    size_t max_out)
{
	const struct compress_ops *ops = ops_of(type);
	size_t mark = iobuf_len(out);
	int err;

	if (!compress_type_supported(type))
		return -EPROTONOSUPPORT;
	if (in == out)
		return -EINVAL;
	err = ops->decode(ops, in, out, max_out, out->pool->opt.mem);
	if (err)
		iobuf_drop_back(out, iobuf_len(out) - mark);
	return err;
}
