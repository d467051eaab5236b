/*
 * stamp: where one call's time goes on a live run, stage by stage.
 *
 * Callgrind counts instructions, and instructions are not time: a loop
 * that wakes on a core whose caches went cold while it slept runs the
 * same instructions two to three times slower than a warm one.  Stamps
 * measure the real thing.  Each time an event loop wakes it opens a row;
 * the stages a call passes record the time since the wake-up, the first
 * time each is reached; the row closes when the loop goes back to sleep
 * and is kept if anything was read.  At exit the rows go, in nanoseconds,
 * to the file named by STAMPS_OUT; `scripts/bench-echo --stamps` reads
 * them.  A debugging build's facility: process-wide state, a dump from
 * atexit().
 *
 * STAMP() compiles to nothing unless RPCGATE_STAMPS is defined: only
 * `make stamps` builds build/stamps/rpcgate with them.  The functions
 * below are always built (the unit test drives them directly); the
 * shipped binary never calls them, and its link drops them.
 *
 * The stages, server side (one baidu_std call) and client side (one
 * answer in, the next call out):
 *
 *   WOKE      epoll_wait returned events
 *   READ      the read (recv or readv) returned bytes
 *   PARSED    a whole frame was parsed
 *   DISPATCH  server: the method's handler starts; client: the call is
 *             delivered (its done callback next)
 *   PACK      server: the answer's frame starts to be built; client: a
 *             request's
 *   SEND      the send (send or sendmsg) is called
 *   SENT      it returned (on loopback it runs the peer's receive
 *             path and wakes it)
 *   SLEEP     the loop goes back to epoll_wait
 *
 * Covered: TCP connections, baidu_std, handlers that run on the loop
 * thread (SERVER_METHOD_INLINE, as echo's) and channels with done_inline
 * (as bench's).  A handler on a task worker, a routed call (the gateway)
 * or RDMA still stamps what runs on the loop, not the rest.
 */
#ifndef RPCGATE_NET_STAMP_H
#define RPCGATE_NET_STAMP_H

#include <stddef.h>

enum stamp_point {
	STAMP_WOKE,
	STAMP_READ,
	STAMP_PARSED,
	STAMP_DISPATCH,
	STAMP_PACK,
	STAMP_SEND,
	STAMP_SENT,
	STAMP_SLEEP,
	STAMP_N
};

/* Rows kept at most (later ones are dropped): about 100 s of calls at
 * concurrency 1 on loopback, 16 MiB. */
#define STAMP_MAX_ROWS 524288

#ifdef RPCGATE_STAMPS
#define STAMP(p)      stamp_at(p)
#define STAMP_WAKE()  stamp_wake()
#define STAMP_SLEEP() stamp_sleep()
#else
#define STAMP(p)      ((void)0)
#define STAMP_WAKE()  ((void)0)
#define STAMP_SLEEP() ((void)0)
#endif

/* The calling thread's loop woke: a new row.  The first call of the
 * process arranges the dump at exit when STAMPS_OUT is set. */
void stamp_wake(void);
/* Stage `p` of the open row, if not reached yet in it. */
void stamp_at(enum stamp_point p);
/* Closes the row: kept when it has STAMP_READ. */
void stamp_sleep(void);
/* Rows kept so far (at most STAMP_MAX_ROWS). */
size_t stamp_rows(void);
/* Rows dropped because the table was full. */
size_t stamp_dropped(void);
/* Writes the rows to `path` (through a temporary file renamed into
 * place): a header line naming the stages, then one line per row,
 * nanoseconds since WOKE or "-" for a stage not reached.  0 or -errno. */
int stamp_dump(const char *path);
/* Forgets every row (tests). */
void stamp_reset(void);

#endif
