/* Internal snapshots of a qcow2 file for kvmkit-img: the snapshot table (read with every field
 * bounded, written back whole) and a refcount transaction that makes each snapshot operation
 * crash safe.
 *
 * Why a transaction: changing a snapshot moves refcounts (refcount blocks) and COPIED flags
 * (L1/L2 tables) together, and `qemu-img check` calls any state where a flag disagrees with a
 * refcount a corruption, so no order of in-place writes is safe. Instead every changed table -
 * refcount blocks, the refcount table, L1 and L2 tables, the snapshot table - is written to
 * new clusters past the end of the file, and one write of header bytes 24..71 (one sector:
 * size, L1 size and offset, refcount table offset and size, snapshot count and offset)
 * switches to the new state. A crash before that write leaves the old image untouched (the new
 * clusters are unreferenced with refcount 0); after it, the new image is complete, with the
 * replaced clusters already free in the new refcounts. */
#ifndef KVMKIT_IMG_QCOW2_SNAP_H
#define KVMKIT_IMG_QCOW2_SNAP_H

#include <stdbool.h>
#include <stdint.h>

#include "img/qcow2_meta.h"

/* Bounds, as QEMU's: snapshot count, table size, extra data per entry. Tags and IDs of new
 * snapshots are bounded by what qemu keeps of them (255 and 127 bytes). */
#define IMG_SNAP_MAX 65536u
#define IMG_SNAP_MAX_TABLE (64u << 20)
#define IMG_SNAP_MAX_EXTRA 1024u
#define IMG_SNAP_MAX_NAME 255u

struct img_snap {
	uint64_t l1_offset;
	uint32_t l1_size;
	char *id, *name;           /* NUL-terminated copies */
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;    /* the 64-bit extra field when present, else the 32-bit one */
	uint64_t disk_size;        /* the extra field when present, else the image's size */
	uint64_t icount;           /* UINT64_MAX when not recorded */
	uint32_t extra_len;
	uint8_t *extra;            /* extra data as stored: unknown fields are kept on rewrite */
};

struct img_snap_table {
	uint32_t n;
	struct img_snap *s;
	uint64_t bytes;            /* size on disk */
};

/* Reads the table the header points to. Returns -1 after one error sentence. */
int img_snap_read(const struct img_q2 *q, struct img_snap_table *t);
void img_snap_free(struct img_snap_table *t);
/* Index of the snapshot whose ID is name, else whose tag is name (qemu's order); -1 if none. */
int img_snap_find(const struct img_snap_table *t, const char *name);
/* qemu-img's "Snapshot list:" table, and info's JSON "snapshots" array (indent: the array's
 * key's indentation). */
void img_snap_print(const struct img_snap_table *t);
void img_snap_print_json(const struct img_snap_table *t, int indent);

/* A refcount transaction on an image opened read-write (see the top of this file). */
struct img_q2_rb;
struct img_q2_range {
	uint64_t first, n;         /* clusters */
};
struct img_q2_tx {
	struct img_q2 *q;
	struct img_q2_rb *rb;      /* refcount blocks by refcount table index */
	uint64_t rb_n;             /* refcount table entries known */
	uint64_t loaded;           /* bytes of refcount blocks held in memory */
	uint64_t next;             /* next cluster to allocate: only ever past the old end */
	uint8_t *l2;               /* one cluster of scratch space */
	bool switching;            /* the header write was attempted: no way back */
	struct img_q2_range *freed; /* clusters whose refcount dropped to 0, as ranges */
	uint64_t freed_n, freed_cap;
};

int img_q2_tx_begin(struct img_q2 *q, struct img_q2_tx *t);
void img_q2_tx_end(struct img_q2_tx *t);
/* After a failure: drops what was written past the old end of the file (nothing refers to it)
 * unless the header switch was attempted. */
void img_q2_tx_abort(struct img_q2_tx *t);
/* Refcount of a cluster; -1 after an error sentence. */
int img_q2_tx_rc(struct img_q2_tx *t, uint64_t cluster, uint64_t *v);
/* Adds delta (+1 or -1) to the refcount of every cluster [off, off + len) touches. */
int img_q2_tx_rc_add(struct img_q2_tx *t, uint64_t off, uint64_t len, int delta);
/* Allocates n contiguous new clusters (refcount 1) and writes len bytes of buf there, the rest
 * of the last cluster zeroed. *off = their byte offset. */
int img_q2_tx_write_new(struct img_q2_tx *t, const void *buf, uint64_t len, uint64_t *off);
/* Adds delta to the refcount of every L2 table of an L1 table and of every cluster they map
 * (compressed clusters included): what one more or one less L1 table referring to them
 * means. */
int img_q2_tx_ref_tree(struct img_q2_tx *t, const uint64_t *l1, uint32_t n, int delta);
/* Sets the COPIED flags of an active L1 table (in memory) and its L2 tables from the
 * refcounts; an L2 table needing a change is copied to a new cluster. *changed: l1 changed. */
int img_q2_tx_fix_copied(struct img_q2_tx *t, uint64_t *l1, uint32_t n, bool *changed);
/* Writes an L1 table (host-endian entries) to new clusters; *off = 0 for an empty table. */
int img_q2_tx_write_l1(struct img_q2_tx *t, const uint64_t *l1, uint32_t n, uint64_t *off);
/* Writes a snapshot table to new clusters; *off = 0 for an empty table. */
int img_q2_tx_write_snaps(struct img_q2_tx *t, const struct img_snap_table *s, uint64_t *off);
/* Writes the changed refcount blocks and a new refcount table to new clusters, flushes, then
 * switches the header to q's size, l1_size, l1_offset, nb_snapshots and snap_offset and the
 * new refcount table in one write, and flushes again. Then punches holes where the freed
 * clusters were, as qemu discards a deleted snapshot's clusters. */
int img_q2_tx_commit(struct img_q2_tx *t);

#endif
