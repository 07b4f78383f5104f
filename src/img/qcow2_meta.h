/* kvmkit-img's own read-only view of a qcow2 file's metadata, for `check`, `map` and `resize`:
 * the header fields with every offset and size checked against the file and bounded, and
 * helpers to read tables and refcounts with pread. Independent of the block driver, so a broken
 * image can be examined without being opened for guest I/O. */
#ifndef KVMKIT_IMG_QCOW2_META_H
#define KVMKIT_IMG_QCOW2_META_H

#include <stdbool.h>
#include <stdint.h>

struct img_q2 {
	const char *path;
	int fd;
	uint64_t fsize;            /* file size in bytes */
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t refcount_order;   /* refcount width is 1 << order bits */
	uint64_t size;             /* virtual size */
	uint64_t l1_offset;
	uint32_t l1_size;          /* entries */
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snap_offset;
	uint64_t incompat, compat, autoclear;
	uint32_t header_len;
	bool has_bitmaps;          /* a bitmap directory extension: not walked by check */
	uint64_t backing_offset;
	uint32_t backing_len;
	char backing[1024];
	char backing_fmt[16];      /* QCOW2_BACKING_FMT_MAX */
};

/* Opens the file and parses its header (block/qcow2_parse.c); refuses what kvmkit-img cannot
 * work on (encryption, external data files, extended L2 entries). Prints one error sentence
 * and returns -errno on failure. */
int img_q2_open(const char *path, bool rw, struct img_q2 *q);
void img_q2_close(struct img_q2 *q);

/* pread/pwrite of exactly len bytes (reads past the end of file fail). */
int img_q2_read(const struct img_q2 *q, void *buf, uint64_t len, uint64_t off);
int img_q2_write(const struct img_q2 *q, const void *buf, uint64_t len, uint64_t off);

/* Entries per L2 table, and the L1 entries a virtual size needs. */
uint64_t img_q2_l2_entries(const struct img_q2 *q);
uint64_t img_q2_l1_needed(const struct img_q2 *q, uint64_t size);

/* Reads an L1 table (l1_size entries, host-endian) into a new buffer; bounded in size.
 * Returns NULL after an error sentence. */
uint64_t *img_q2_read_l1(const struct img_q2 *q, uint64_t offset, uint32_t entries);

/* A compressed L2 entry's host byte range. */
void img_q2_compressed_range(const struct img_q2 *q, uint64_t e, uint64_t *start, uint64_t *len);

uint64_t img_q2_be64(const uint8_t *p);
uint32_t img_q2_be32(const uint8_t *p);
uint16_t img_q2_be16(const uint8_t *p);
void img_q2_put_be64(uint8_t *p, uint64_t v);
void img_q2_put_be32(uint8_t *p, uint32_t v);

/* Reads refcount entry i of a refcount block buffer / writes it. */
uint64_t img_q2_rc_get(const struct img_q2 *q, const uint8_t *block, uint64_t i);
void img_q2_rc_set(const struct img_q2 *q, uint8_t *block, uint64_t i, uint64_t v);

/* Stored refcounts changed one cluster at a time, through one cached refcount block (written
 * back when another block is needed and at img_q2_rc_end). For clusters already covered by a
 * refcount block: nothing here allocates one. */
struct img_q2_rc {
	const struct img_q2 *q;
	uint64_t *rt;          /* refcount table, host-endian */
	uint64_t rt_entries;
	uint8_t *blk;          /* the cached refcount block */
	uint64_t blk_off;      /* its host offset; 0 none */
	bool dirty;
};
/* Loads the refcount table; -errno after an error sentence. */
int img_q2_rc_begin(const struct img_q2 *q, struct img_q2_rc *rc);
/* Adds delta to the refcount of the cluster at host offset off; *now is the new value.
 * -EINVAL (after an error sentence) if no refcount block covers it or the value would leave
 * the refcount's range, -errno on I/O errors. */
int img_q2_rc_add(struct img_q2_rc *rc, uint64_t off, int delta, uint64_t *now);
/* Writes the cached block back when it changed; 0 or -errno. */
int img_q2_rc_flush(struct img_q2_rc *rc);
/* The byte offset just past the last cluster whose stored refcount is not zero (every cluster
 * in use lies below it); 0 or -errno. */
int img_q2_rc_used_end(struct img_q2_rc *rc, uint64_t *end);
/* Writes the cached block back (when dirty) and frees; 0 or -errno. */
int img_q2_rc_end(struct img_q2_rc *rc);

#endif
