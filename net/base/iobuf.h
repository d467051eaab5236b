/*
 * iobuf: a byte sequence held as a chain of reference-counted blocks
 * (brpc's IOBuf).
 *
 * Blocks are IOBUF_BLOCK_SIZE bytes: a 32-byte header and IOBUF_BLOCK_CAP
 * payload bytes.  A `struct iobuf_pool` hands them out from a free list and
 * gets memory in regions of many blocks through a hook, so that the RDMA
 * layer can register each region once (ibv_reg_mr) and find the region, and
 * its cookie, of any block (iobuf_block_region()).
 *
 * A `struct iobuf` is a sequence of refs {block, offset, length}.  Cutting,
 * sharing, moving and dropping never copy payload bytes; only calls named
 * append/copy/peek (and read_fd, which reads straight into blocks) touch
 * them.  Bytes once written into a block are never rewritten while any ref
 * holds the block: appends reuse a tail block only when this buffer is its
 * sole holder and its ref ends at the block's write position.
 *
 * Ownership and allocation:
 * - Both structs live in caller storage.  A `struct iobuf` may be moved with
 *   memcpy (it holds no pointer into itself); the old copy is then dead.
 *   A pool must stay put from init to destroy (blocks point back to it).
 * - A buffer keeps IOBUF_INLINE_REFS refs inside the struct; beyond that its
 *   ref array is on the heap (pool's `mem`), grown by doubling and kept until
 *   iobuf_reset().  That array and the pool's regions are the only
 *   allocations; both are amortised.
 * - Calls that can fail are all-or-nothing: on an error the buffers are as
 *   they were.
 *
 * Threads: one `struct iobuf` has one owner at a time (no locking).  Blocks
 * may be shared between buffers owned by different threads (atomic
 * refcounts).  The pool is thread-safe: one mutex guards the free list and
 * the region list, taken once per batch of blocks, not per byte; a region
 * is obtained with the mutex dropped.  With thread_cache, each thread keeps
 * a few free blocks of one pool (a batch taken under the mutex) and takes
 * and gives blocks from them without it; stats and destroy count those as
 * free.  Nothing here blocks except on that
 * mutex, in the region hook when the pool must grow (or, for a taker short
 * of blocks, waiting for a region on its way), in
 * iobuf_pool_each_region(), and in the fd calls' system call (which
 * blocks only if the fd is blocking).
 */
#ifndef RPCGATE_NET_IOBUF_H
#define RPCGATE_NET_IOBUF_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mem.h"

/* A whole block: two 4 KiB pages, brpc's default block size. */
#define IOBUF_BLOCK_SIZE 8192
/* Block header: refcount, write position, pool, free link, region. */
#define IOBUF_BLOCK_HDR 32
/* Payload bytes per block: 8160, brpc's receive block size. */
#define IOBUF_BLOCK_CAP (IOBUF_BLOCK_SIZE - IOBUF_BLOCK_HDR)
/* Default blocks per region: 64 x 8 KiB = 512 KiB, one MR per region. */
#define IOBUF_REGION_BLOCKS 64
/* Largest region: 65536 blocks = 512 MiB; bounds bytes = blocks * size. */
#define IOBUF_REGION_BLOCKS_MAX 65536
/* Refs stored inside struct iobuf: a message and its attachment. */
#define IOBUF_INLINE_REFS 2
/* Fresh blocks one iobuf_read_fd() may fill: brpc's MAX_APPEND_IOVEC. */
#define IOBUF_READ_MAX_BLOCKS 64
/* Fresh blocks the first read of iobuf_read_fd() offers: one, so that a
 * read into an empty buffer is one region, read with recv(2). */
#define IOBUF_READ_FIRST_BLOCKS 1
/* iovecs one iobuf_write_fd() passes to the kernel (<= IOV_MAX). */
#define IOBUF_WRITE_MAX_IOV 64

struct iobuf_block;
struct iobuf_region;

/*
 * Where regions come from.  alloc returns `bytes` bytes aligned at least
 * for max_align_t (malloc's alignment; page alignment suits RDMA), or NULL;
 * it may store a cookie (e.g. the ibv_mr) that iobuf_block_region() hands
 * back.  free gets the same base, bytes and cookie.  alloc runs WITHOUT
 * the pool's mutex (a slow alloc, such as ibv_reg_mr, does not stop other
 * threads taking and returning blocks), possibly in several threads at
 * once; free runs with it held (at destroy).  Neither may call back into
 * the pool.
 */
struct iobuf_region_hook {
	void *(*alloc)(void *ctx, size_t bytes, void **cookie);
	void (*free)(void *ctx, void *base, size_t bytes, void *cookie);
	void *ctx;
};

/*
 * Growing ahead of need, off the caller's thread.  When a take leaves
 * fewer than `low_blocks` free blocks, counting the regions already on
 * their way (and the pool may still grow), the
 * pool calls kick(ctx) once, outside its mutex; kick arranges for
 * iobuf_pool_grow_ahead() to run on a thread that may block (a task
 * worker) and returns 0, or nonzero when it cannot (the pool then kicks
 * again at a later take).  A take that finds too few blocks waits for a
 * growth in progress (grow_waits), else grows the pool itself
 * (grows_sync); one that may take fewer (a read) takes those there are.
 */
struct iobuf_grow_hook {
	int (*kick)(void *ctx);
	void *ctx;
	size_t low_blocks; /* 0: no growing ahead */
};

struct iobuf_pool_options {
	const struct mem *mem; /* ref arrays, records; NULL: default */
	struct iobuf_region_hook region; /* alloc == NULL: regions from mem */
	struct iobuf_grow_hook grow;	 /* kick == NULL: none */
	size_t region_blocks;		 /* blocks per region */
	size_t max_regions;		 /* 0: no limit */
	size_t prealloc_regions;	 /* obtained by iobuf_pool_init() */
	/* Each thread keeps up to 32 free blocks of this pool and takes and
	 * gives small batches without the mutex (iobuf.c).  A thread that
	 * runs short uses its own first, never another thread's: the pool
	 * may grow (or hit max_regions) up to 32 blocks a thread sooner.
	 * Off: every take and give locks. */
	bool thread_cache;
};

struct iobuf_pool {
	struct iobuf_pool_options opt;
	pthread_mutex_t lock;	       /* guards everything below */
	pthread_cond_t grown;	       /* a growth ended, or blocks came back */
	struct iobuf_block *free_list; /* linked through the block header */
	struct iobuf_region *regions;
	size_t nregions;
	size_t growing; /* regions being obtained, the mutex dropped */
	size_t waiters; /* takers waiting on `grown` */
	bool grow_kicked;
	size_t blocks_total;
	size_t blocks_free; /* on free_list */
	uint64_t grows_sync, grows_ahead, grow_waits;
	struct iobuf_tcache *caches; /* threads' caches of this pool's blocks */
	uint64_t id; /* unique: a cache names its pool by address and id */
};

struct iobuf_pool_stats {
	size_t regions;
	size_t blocks_total;
	size_t blocks_free;
	/* Regions added by a taker short of blocks (in its thread), and by
	 * iobuf_pool_grow_ahead(); preallocated ones count in neither. */
	uint64_t grows_sync;
	uint64_t grows_ahead;
	uint64_t grow_waits; /* takes that waited for a region on its way */
};

struct iobuf_region_info {
	void *base;
	size_t bytes;
	void *cookie;
};

/* Internal: one piece of a chain.  0 < len and off + len <= block's wpos. */
struct iobuf_ref {
	struct iobuf_block *block;
	uint32_t off;
	uint32_t len;
};

struct iobuf {
	struct iobuf_pool *pool; /* new blocks; `mem` of the ref array */
	struct iobuf_ref *heap;	 /* NULL: refs are in `inl` */
	size_t cap;		 /* slots in heap, or IOBUF_INLINE_REFS */
	size_t start;		 /* first used slot */
	size_t nrefs;
	size_t len; /* payload bytes */
	struct iobuf_ref inl[IOBUF_INLINE_REFS];
};

/* --- pool ---------------------------------------------------------------- */

/* Defaults: mem_default(), regions from mem, 64 blocks/region, no limit,
 * nothing preallocated. */
void iobuf_pool_options_default(struct iobuf_pool_options *opt);

/*
 * 0, or -EINVAL when: region_blocks is 0 or > IOBUF_REGION_BLOCKS_MAX;
 * region.alloc and region.free are not both set or both NULL; or
 * max_regions != 0 and prealloc_regions > max_regions.
 */
int iobuf_pool_options_validate(const struct iobuf_pool_options *opt);

/* opt NULL: defaults.  0, -EINVAL (see validate), -ENOMEM (preallocation),
 * or the -errno of pthread_mutex_init.  On error nothing is held. */
int iobuf_pool_init(struct iobuf_pool *pool,
		    const struct iobuf_pool_options *opt);

/*
 * Frees every region.  0, or -EBUSY (and nothing is freed; the pool stays
 * usable) if any block is still referenced: tests use it to check balance.
 */
int iobuf_pool_destroy(struct iobuf_pool *pool);

void iobuf_pool_stats(struct iobuf_pool *pool, struct iobuf_pool_stats *st);

/*
 * The grow hook's work: adds regions until `low_blocks` blocks are free
 * (counting regions other threads are obtaining), the limit is reached
 * or the region hook fails.  Blocks (in the region
 * hook), so not on an event loop.  Returns the regions added.
 */
size_t iobuf_pool_grow_ahead(struct iobuf_pool *pool);

/*
 * Gives memory the pool does not use back: regions whose blocks are all
 * free are freed (keeping prealloc_regions, one at least), and the other
 * free blocks' pages past their headers are dropped (MADV_DONTNEED; a
 * block used again costs a page fault or two).  After a burst the RSS
 * comes down to what is in use.  Only pools on the default region hook
 * (malloc): registered RDMA memory must stay put.  Holds the pool's
 * mutex for a walk of the free list and a system call per free block:
 * call it rarely, from a thread that may wait.  Returns the bytes given
 * back.
 */
size_t iobuf_pool_trim(struct iobuf_pool *pool);

/*
 * Visits every region with the pool's mutex held, once no growth is in
 * progress, so that no region comes or goes meanwhile: fn may change
 * ri->cookie (stored back for iobuf_block_region()).  Then calls fn(arg,
 * NULL) once, still under the mutex, so the caller can change the region
 * hook's behaviour with no region slipping between.  Stops at fn's first
 * nonzero result and returns it.  For the rare event of re-registering
 * every region with a new device: takers wait meanwhile.
 */
int iobuf_pool_each_region(struct iobuf_pool *pool,
			   int (*fn)(void *arg, struct iobuf_region_info *ri),
			   void *arg);

/* Region of a block: O(1), any thread, valid until the pool is destroyed;
 * the cookie is the one stored last (iobuf_pool_each_region() may change
 * it: the caller orders that change against its readers). */
void iobuf_block_region(const struct iobuf_block *b,
			struct iobuf_region_info *out);

/* Current refcount (for tests and assertions; racy if shared). */
uint32_t iobuf_block_refcount(const struct iobuf_block *b);

/* --- single blocks: a transport that receives into blocks (RDMA) -------- */

/* A fresh empty block holding one reference, the caller's; NULL when the
 * pool has none and cannot grow.  Any thread. */
struct iobuf_block *iobuf_block_get(struct iobuf_pool *pool);

/* The block's IOBUF_BLOCK_CAP payload bytes. */
void *iobuf_block_data(struct iobuf_block *b);

/* Drops the caller's reference. */
void iobuf_block_put(struct iobuf_block *b);

/*
 * The first n bytes (0 < n <= IOBUF_BLOCK_CAP) of a block from
 * iobuf_block_get() that nothing else holds were written (e.g. by a NIC):
 * appends them to buf, moving the caller's reference into it.  0, or
 * -EINVAL (bad n), -ENOMEM (the reference stays the caller's).
 */
int iobuf_append_block(struct iobuf *buf, struct iobuf_block *b, size_t n);

/* --- buffer: lifecycle and size ----------------------------------------- */

/* Empty buffer taking blocks from `pool`; cannot fail, allocates nothing. */
void iobuf_init(struct iobuf *buf, struct iobuf_pool *pool);

/* Drops every ref and frees the ref array; the buffer stays usable. */
void iobuf_reset(struct iobuf *buf);

/* iobuf_reset(); the buffer must be iobuf_init()ed again before use. */
void iobuf_destroy(struct iobuf *buf);

static inline size_t iobuf_len(const struct iobuf *buf)
{
	return buf->len;
}

static inline bool iobuf_empty(const struct iobuf *buf)
{
	return buf->len == 0;
}

/* --- buffer: adding and removing bytes ---------------------------------- */

/* Copies n bytes in.  0 or -ENOMEM. */
int iobuf_append(struct iobuf *buf, const void *data, size_t n);

/* Moves all of src to dst's end; src ends empty.  0, -ENOMEM, or -EINVAL
 * if dst == src. */
int iobuf_append_buf(struct iobuf *dst, struct iobuf *src);

/* Appends a view of src[off, off + n) to dst (dst may be src); src is
 * unchanged.  0, -ERANGE if the range is outside src, or -ENOMEM. */
int iobuf_share(struct iobuf *dst, const struct iobuf *src, size_t off,
		size_t n);

/* Moves src's first n bytes to dst's end.  0, -ERANGE if n > len(src),
 * -EINVAL if dst == src, or -ENOMEM. */
int iobuf_cut(struct iobuf *src, struct iobuf *dst, size_t n);

/* Drop up to n bytes; return the number dropped.  Cannot fail. */
size_t iobuf_drop_front(struct iobuf *buf, size_t n);
size_t iobuf_drop_back(struct iobuf *buf, size_t n);

/* --- buffer: reading bytes ---------------------------------------------- */

/* Copies up to n bytes from off into dst; returns the number copied. */
size_t iobuf_copy_out(const struct iobuf *buf, size_t off, void *dst, size_t n);

/*
 * Pointer to n contiguous bytes at off: inside a block when they lie in one
 * ref, else copied into tmp (room for n bytes) and tmp; tmp when n == 0.
 * NULL if off + n > len.  Valid until the buffer (or tmp) changes.
 */
const void *iobuf_peek(const struct iobuf *buf, size_t off, size_t n,
		       void *tmp);

/* Fills up to max_iov iovecs from the front (one per ref); returns count. */
size_t iobuf_iov(const struct iobuf *buf, struct iovec *iov, size_t max_iov);

/* --- buffer: walking the chain ------------------------------------------ */

size_t iobuf_ref_count(const struct iobuf *buf);

/* Ref i's bytes.  0, or -ERANGE if i >= iobuf_ref_count(). */
int iobuf_ref_at(const struct iobuf *buf, size_t i, const void **ptr,
		 size_t *len);

/* Ref i's block (for iobuf_block_region()), or NULL if out of range. */
const struct iobuf_block *iobuf_ref_block(const struct iobuf *buf, size_t i);

/* Blocks in the chain; adjacent refs into one block count once. */
size_t iobuf_block_count(const struct iobuf *buf);

/* --- buffer: file descriptors ------------------------------------------- */

/*
 * Reads up to max bytes (max > 0) straight into the tail block's free
 * space and fresh blocks: one read offering up to
 * IOBUF_READ_FIRST_BLOCKS fresh blocks and, only while a read filled all
 * it offered, more offering up to IOBUF_READ_MAX_BLOCKS each (so small
 * reads cost few pool round trips, and a result short of max means the
 * fd had no more, even when a pool short of blocks offered less than
 * asked); unused blocks go back to the pool.  Returns
 * bytes read, 0 at EOF, -EAGAIN, -ENOMEM (no space could be obtained),
 * -EINVAL (max == 0), or -errno.  EINTR is retried.  A read into one
 * region is a recv(2) (read(2) on an fd that is not a socket), into
 * several a readv(2).  An EOF or error met by the second read after bytes
 * is left for the next call.
 */
ssize_t iobuf_read_fd(struct iobuf *buf, int fd, size_t max);

/*
 * As iobuf_read_fd(), the first read offering first_blocks fresh blocks
 * (1 to IOBUF_READ_MAX_BLOCKS) instead of IOBUF_READ_FIRST_BLOCKS.  For a
 * caller that knows its reads' sizes: one block is one region, read with
 * a recv(2), cheaper than a readv(2); but a read that overflows it costs
 * a second system call, so a stream of reads bigger than a block (8 KiB
 * to 16 KiB messages) is best offered two.
 */
ssize_t iobuf_read_fd_first(struct iobuf *buf, int fd, size_t max,
			    size_t first_blocks);

/*
 * One write of up to IOBUF_WRITE_MAX_IOV refs from the front, dropping what
 * was written; call again while bytes remain.  Sockets are written with
 * send(MSG_NOSIGNAL) for one ref and sendmsg(MSG_NOSIGNAL) for several,
 * so a closed peer gives -EPIPE, not SIGPIPE; other fds (ENOTSOCK) fall
 * back to writev(2).  Returns bytes written (0 if the
 * buffer is empty), -EAGAIN, or -errno.  EINTR is retried.
 */
ssize_t iobuf_write_fd(struct iobuf *buf, int fd);

#endif
