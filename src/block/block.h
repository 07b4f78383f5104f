/* The block layer: disk images opened through a format driver (an ops table: raw now, qcow2
 * later) and asynchronous requests completed on the caller's event loop. */
#ifndef KVMKIT_BLOCK_BLOCK_H
#define KVMKIT_BLOCK_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum block_cache {
	BLOCK_CACHE_WRITEBACK, /* default: host page cache; flush = fdatasync */
	BLOCK_CACHE_NONE,      /* O_DIRECT; flush = fdatasync */
	BLOCK_CACHE_UNSAFE,    /* host page cache; flush does nothing */
};

struct block_options {
	const char *path;
	const char *format;  /* "raw" (NULL = raw) */
	bool readonly;
	enum block_cache cache;
};

enum block_op {
	BLOCK_OP_READ,
	BLOCK_OP_WRITE,
	BLOCK_OP_FLUSH,
	BLOCK_OP_DISCARD,      /* may do nothing; reads of the range then return old or zero data */
	BLOCK_OP_WRITE_ZEROES, /* reads of the range return zeroes afterwards */
};

/* One request. The caller owns it (and the iovecs) until done() runs. */
struct block_request {
	enum block_op op;
	uint64_t offset;          /* bytes */
	const struct iovec *iov;  /* READ/WRITE: the buffers */
	int iovcnt;
	uint64_t len;             /* DISCARD/WRITE_ZEROES: bytes; READ/WRITE: ignored (iov total) */
	/* Called on the thread that calls block_process_completions, with 0 or -errno (-EIO,
	 * -ENOSPC, -EROFS for writes to a read-only disk, -EINVAL beyond the end of the disk). */
	void (*done)(struct block_request *req, int result);
	void *opaque;
	/* private to the block layer */
	struct block_request *next_done;
	int result;
};

struct block_dev;

/* Opens the image. On failure prints one clear sentence naming the file and the problem (no
 * such file, permission, not a regular file or block device, unknown format, O_DIRECT not
 * supported by the file system, ...) and returns -errno. */
int block_open(const struct block_options *opts, struct block_dev **out);
/* Waits for the requests in flight (running their done() callbacks, on the calling thread),
 * then frees bd. */
void block_close(struct block_dev *bd);

uint64_t block_size(const struct block_dev *bd);  /* bytes the guest sees */
bool block_readonly(const struct block_dev *bd);

/* Starts a request; it completes later through done(). Returns 0, or -errno if it could not be
 * queued at all (done() is then not called). Thread-safe against block_process_completions
 * only if both run on the same thread: the block device belongs to one event loop. */
int block_submit(struct block_dev *bd, struct block_request *req);

/* A synchronous request: submits one (buf, len) request and waits for it on the calling
 * thread, running block_process_completions meanwhile (so other requests of bd in flight
 * complete too). For tools and for a format driver reading its backing file. 0 or -errno. */
int block_io(struct block_dev *bd, enum block_op op, uint64_t off, void *buf, uint64_t len);

/* Between block_plug and block_unplug, requests are collected and handed to the kernel as one
 * batch at unplug (a device plugs while it drains its queue). Plugs nest. */
void block_plug(struct block_dev *bd);
void block_unplug(struct block_dev *bd);

/* An fd that becomes readable when requests have completed; the event loop then calls
 * block_process_completions, which runs their done() callbacks. A done() may submit again. */
int block_completion_fd(const struct block_dev *bd);
void block_process_completions(struct block_dev *bd);

/* Where data is: whether [off, off + *n) may hold data (1) or certainly reads as zeroes (0),
 * with *n (1..len bytes) as long as the answer stays the same. Synchronous and cheap (metadata
 * only), for copying tools that skip what reads as zeroes; from the thread that owns bd, and
 * not while requests are in flight. Formats that cannot tell answer 1 for all of len.
 * Returns 1, 0 or -errno. */
int block_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n);

/* Which asynchronous engine the device uses: "io_uring" or "threads" (for logs and tests). */
const char *block_engine_name(const struct block_dev *bd);

/* What block_create makes. */
struct block_create_options {
	const char *path;
	const char *format;           /* "raw" or "qcow2" (NULL = raw) */
	uint64_t size;                /* bytes; 0 with a backing file = the backing file's size */
	uint32_t cluster_size;        /* qcow2: a power of two 512..2M (0 = 65536) */
	const char *backing_file;     /* qcow2: NULL or a path (relative to the image's directory) */
	const char *backing_format;   /* qcow2: "raw" or "qcow2" (NULL = probed) */
	const char *preallocation;    /* "off" (NULL), raw also "full" */
	bool lazy_refcounts;          /* qcow2: sets the compatible feature bit */
	const char *compression_type; /* qcow2: "zlib" (NULL) */
};

/* Creates (or replaces) an image. On failure prints one clear sentence naming the file and the
 * problem, leaves no file behind, and returns -errno. */
int block_create(const struct block_create_options *o);

#endif
