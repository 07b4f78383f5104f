/* The block layer's insides: the device, and the ops table each image format driver fills in
 * (raw, and qcow2 with its metadata work on a worker thread). */
#ifndef KVMKIT_BLOCK_BLOCK_INT_H
#define KVMKIT_BLOCK_BLOCK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "block/engine.h"
#include "block/file.h"

struct block_driver {
	const char *format; /* as given in block_options.format */
	/* Reads what the format needs from bd->file and sets bd->size, the size the guest sees.
	 * On failure prints one sentence naming the file and the problem, and returns -errno. */
	int (*open)(struct block_dev *bd);
	/* Frees what open allocated. Nothing is in flight any more. */
	void (*close)(struct block_dev *bd);
	/* Starts req, already checked by block.c: in range, a known op, no write to a read-only
	 * disk; len is its length in bytes (the iovec total for READ/WRITE). It completes through
	 * block_request_complete. Returns 0, or -errno if it could not start at all. */
	int (*submit)(struct block_dev *bd, struct block_request *req, uint64_t len);
	/* block_extent for an in-range [off, off + len), len > 0; optional (NULL: all data). */
	int (*extent)(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n);
	/* Optional: called from block_process_completions on the event loop thread, to complete
	 * what the driver finished elsewhere (a worker thread, which kicks the engine's fd). */
	void (*process)(struct block_dev *bd);
};

/* Fault injection at a format driver's I/O boundary, for tests (as SQLite's test_vfs): the
 * qcow2 driver calls hook before each read, write and sync it makes itself (metadata and the
 * data of allocating writes, on its worker thread; not the data I/O it hands to the engine).
 * A negative return fails that call with it; the hook may also sleep or wait. */
enum block_fault_point { BLOCK_FAULT_READ, BLOCK_FAULT_WRITE, BLOCK_FAULT_SYNC };
struct block_fault {
	int (*hook)(void *opaque, enum block_fault_point point, uint64_t off, uint64_t len);
	void *opaque;
};

struct block_dev {
	const struct block_driver *driver;
	void *driver_state;
	struct block_engine *engine;
	struct block_file file;
	char *path;
	uint64_t size;
	bool readonly;
	unsigned inflight; /* requests accepted by block_submit whose done() has not run */
	/* completed requests whose done() runs at the end of block_process_completions */
	struct block_request *done_head;
	struct block_request **done_tail;
	struct block_fault fault; /* tests only; set before the first request */
};

/* Records req's result; its done() runs from block_process_completions (never from inside a
 * driver, which may then still be in the middle of updating its state). */
void block_request_complete(struct block_dev *bd, struct block_request *req, int result);

extern const struct block_driver block_driver_raw;
extern const struct block_driver block_driver_qcow2;

#endif
