/* The host file (or block device) under a format driver: opened for a cache mode, with the I/O
 * that mode implies (O_DIRECT bounce buffers, flushes that sync or not, discard and
 * write-zeroes through fallocate with fallbacks). Format drivers do all their I/O through it. */
#ifndef KVMKIT_BLOCK_FILE_H
#define KVMKIT_BLOCK_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"
#include "block/engine.h"

struct block_io;

struct block_file {
	int fd;
	const char *path;           /* for messages; owned by the caller */
	struct block_engine *engine;
	bool readonly;
	bool sync_on_flush;         /* false for cache=unsafe */
	bool is_blockdev;
	/* Offsets, lengths and buffer addresses that O_DIRECT needs aligned to (a power of two);
	 * 1 without O_DIRECT. */
	uint32_t direct_align;
	/* fallocate on a block device wants whole logical blocks; 1 on a regular file. */
	uint32_t fallocate_align;
	uint64_t size;              /* bytes */
	/* Learnt from EOPNOTSUPP, so later requests skip what the file system cannot do. */
	bool no_zero_range;
	bool no_punch_hole;
	void *zero_buf;             /* zeroes for the last write-zeroes fallback, on first use */
	/* Read-modify-write of partial O_DIRECT blocks runs one at a time: two writes to
	 * different parts of one block must not both write back the whole block. */
	bool rmw_busy;
	struct block_io *rmw_waiting_head;
	struct block_io **rmw_waiting_tail;
};

/* One operation on the file. The caller owns it (and the iovecs) until complete() runs. */
struct block_io {
	enum block_op op;
	uint64_t offset;
	const struct iovec *iov;   /* READ/WRITE */
	int iovcnt;
	uint64_t len;              /* READ/WRITE: the iovec total; DISCARD/WRITE_ZEROES: bytes */
	/* Runs from block_engine_process_completions with 0 or -errno. */
	void (*complete)(struct block_io *io, int result);
	void *opaque;

	/* private to file.c */
	struct block_file *file;
	struct block_aio aio;
	void (*aio_then)(struct block_io *io, int result);  /* continues after aio */
	/* the read or write in progress (the request's own, or a chunk of zeroes) */
	enum block_op rw_op;
	const struct iovec *rw_iov;
	int rw_iovcnt;
	uint64_t rw_offset;
	uint64_t rw_len;
	void (*rw_then)(struct block_io *io, int result);
	/* O_DIRECT bounce buffer covering [bounce_offset, bounce_offset + bounce_len) */
	uint8_t *bounce;
	uint64_t bounce_offset;
	uint64_t bounce_len;
	struct iovec bounce_iov;
	int rmw_step;
	struct block_io *rmw_next;
	/* write-zeroes: which method is being tried, and how far zero-filling got */
	int zero_step;
	uint64_t zero_pos;
	struct iovec zero_iov;
};

/* Opens path for the cache mode. Prints one sentence naming the file and the problem, and
 * returns -errno, on failure. */
int block_file_open(struct block_file *f, const char *path, bool readonly, enum block_cache cache,
		    struct block_engine *engine);
void block_file_close(struct block_file *f);

/* Starts io; it completes later. Returns 0, or -errno (only -ENOMEM) if it could not start,
 * and complete() will then not run. The range must lie within the file. */
int block_file_submit(struct block_file *f, struct block_io *io);

#endif
