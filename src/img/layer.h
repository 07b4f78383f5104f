/* One layer of a backing chain as kvmkit-img's metadata readers see it (shared by `map`,
 * `commit` and `rebase`): which guest ranges this layer alone allocates, as data or as
 * zeroes, read from the qcow2 L1/L2 tables (every offset checked) or, for raw files, with
 * SEEK_DATA/SEEK_HOLE. Independent of the block driver, so it never reads through to a
 * backing file. */
#ifndef KVMKIT_IMG_LAYER_H
#define KVMKIT_IMG_LAYER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "img/qcow2_meta.h"

enum img_kind {
	IMG_UNALLOC,   /* not in this layer: reads through to the backing file */
	IMG_ZERO,      /* reads as zeroes, no host cluster */
	IMG_ZERO_OFF,  /* reads as zeroes, with a host cluster (or a raw hole) */
	IMG_DATA,      /* data without a plain host offset (compressed) */
	IMG_DATA_OFF,  /* data at a host offset */
};

struct img_layer {
	bool qcow2;
	struct img_q2 q;
	uint64_t *l1;
	uint8_t *l2;
	uint64_t l2_cached;  /* offset of the L2 table in l2; 0 none */
	int fd;              /* raw */
	uint64_t size;
	char path[PATH_MAX];
};

/* Opens one layer (format given or probed); false after one error sentence. */
bool img_layer_open(struct img_layer *l, const char *path, const char *fmt);
void img_layer_close(struct img_layer *l);

/* The kind of [off, off + *len) in this layer alone; shortens *len to a run of one kind and
 * sets *host to its host offset (0 if none). Runs of a qcow2 layer end at cluster boundaries
 * or at the end of the image. -1 after an error sentence. */
int img_layer_status(struct img_layer *l, uint64_t off, uint64_t *len, enum img_kind *k,
		     uint64_t *host);

/* What a layer does with a guest range, for copying it elsewhere (commit, rebase). */
enum img_alloc {
	IMG_ALLOC_NONE,  /* left to the backing file */
	IMG_ALLOC_ZERO,  /* zeroes */
	IMG_ALLOC_DATA,  /* data */
};

/* The longest run from off (at most max bytes, not past the layer's end) that is of one
 * img_alloc class in this layer alone: adjacent clusters are merged so that callers copy in
 * large requests. -1 after an error sentence. */
int img_layer_run(struct img_layer *l, uint64_t off, uint64_t max, enum img_alloc *a,
		  uint64_t *len);

/* The path of backing file name `backing` as recorded in `image`: relative names are taken
 * from the image's directory, as QEMU does. false if it does not fit. */
bool img_backing_path(const char *image, const char *backing, char *out, size_t len);

#endif
