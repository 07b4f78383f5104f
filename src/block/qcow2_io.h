/* Between the qcow2 driver's two halves: the metadata code (qcow2.c, run on the image's worker
 * thread under the metadata lock) and the request path (qcow2_async.c, on the event loop). */
#ifndef KVMKIT_BLOCK_QCOW2_IO_H
#define KVMKIT_BLOCK_QCOW2_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block_int.h"
#include "block/qcow2.h"

/* A whole request, synchronously (worker thread, metadata lock held). 0 or -errno. */
int qcow2_run(struct block_dev *bd, struct block_request *req, uint64_t len);
/* A flush's metadata part: writes the cached L2 changes back (ending with a sync) and returns
 * 1, or returns 0 if nothing was dirty (the caller then syncs, without the lock), or -errno. */
int qcow2_flush_meta(struct qcow2 *s);
/* fdatasync of the image unless cache=unsafe, through the fault hook. Needs no lock. */
int qcow2_sync(struct qcow2 *s);
/* block_extent (metadata lock held). */
int qcow2_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n);
/* Writes the cached metadata back before close (nothing in flight). */
void qcow2_close_meta(struct qcow2 *s);

/* Where guest bytes [g, g + n), within one cluster, are, from the cached tables only (metadata
 * lock held): 1 with *host their host offset (for a write, a cluster the active image owns
 * alone, written in place), 0 when a read of them reads zeroes, -EAGAIN when metadata work is
 * needed (a table not cached, a cluster to allocate or copy, compressed data, the backing
 * file). Changes nothing on disk. */
int qcow2_map_cached(struct qcow2 *s, const struct block_dev *bd, uint64_t g, uint64_t n,
		     bool write, uint64_t *host);

/* The fault hook of bd (tests): 0, or the -errno the I/O at this point fails with. */
int qcow2_fault(struct qcow2 *s, enum block_fault_point point, uint64_t off, uint64_t len);

#endif
