/* Shared by check.c (the walk of the metadata, the comparison and the report) and
 * check_repair.c (what `check -r` writes): the state of one check pass and the helpers both
 * use. */
#ifndef KVMKIT_IMG_CHECK_INT_H
#define KVMKIT_IMG_CHECK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "img/qcow2_meta.h"

enum fix { FIX_NONE, FIX_LEAKS, FIX_ALL };

struct ck {
	struct img_q2 *q;
	uint64_t nclusters;       /* clusters in the file */
	uint32_t *ref;            /* counted references per cluster (saturating) */
	uint64_t *rt;             /* refcount table, host-endian */
	uint64_t rt_entries;
	uint8_t *l2;              /* one cluster: an L2 table */
	uint8_t *rb;              /* one cluster: the cached refcount block */
	uint64_t rb_index;        /* refcount table index of the cached block; UINT64_MAX none */
	bool rb_dirty;
	bool quiet;               /* a trial pass: count, print nothing */
	enum fix fix;
	uint64_t corruptions, leaks, check_errors, leaks_fixed, corruptions_fixed;
	uint64_t unrepairable;    /* corruptions that no in-place repair can fix */
	uint64_t allocated, fragmented, compressed, next_contig;
	uint64_t highest;         /* highest cluster with a reference or refcount, + 1 */
};

/* One finding or repair on stderr, the way qemu-img prints them (silent in a trial pass). */
void ck_msg(const struct ck *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool ck_in_file(const struct ck *k, uint64_t off, uint64_t len);
/* The offset of refcount block idx if it may be followed (aligned, inside the file), else 0. */
uint64_t ck_rb_offset(const struct ck *k, uint64_t idx);
/* The stored refcount of cluster c: 1 with *v and its *slot in the cached block k->rb, 0 (and
 * *v = 0) where no refcount block covers c, -1 on an I/O error. */
int ck_stored_rc(struct ck *k, uint64_t c, uint64_t *v, uint64_t *slot);
/* Writes the cached refcount block back if it was changed. */
int ck_rb_flush(struct ck *k);
/* The largest refcount the image's refcount width can hold. */
uint64_t ck_rc_max(const struct ck *k);

/* check_repair.c: with k->fix, the repairs, each an in-place write toward the correct value. */
/* A referenced cluster that no refcount block covers, where a new block can be added. */
bool ck_block_addable(const struct ck *k, uint64_t c);
void ck_add_missing_blocks(struct ck *k);
void ck_fix_refcounts(struct ck *k);
void ck_check_copied(struct ck *k);
int ck_clear_header_bits(const struct img_q2 *q);

#endif
