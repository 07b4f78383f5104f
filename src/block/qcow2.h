/* The qcow2 format driver's private header: on-disk constants (from the qcow2 specification)
 * and the state of an open image, shared by qcow2.c (open, reads, writes) and qcow2_create.c. */
#ifndef KVMKIT_BLOCK_QCOW2_H
#define KVMKIT_BLOCK_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

struct block_dev;
struct qcow2_async;

#define QCOW2_MAGIC 0x514649fbu            /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_LEN 104u           /* without the compression type byte */
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

/* Header extension types. */
#define QCOW2_EXT_END 0u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau

/* Table entries. */
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull /* L1/L2 entries: host offset bits 9..55 */
#define QCOW2_COPIED (1ull << 63)                 /* refcount is exactly 1: writable in place */
#define QCOW2_COMPRESSED (1ull << 62)
#define QCOW2_ZERO (1ull << 0)                    /* v3 L2: the cluster reads as zeroes */
#define QCOW2_REFTABLE_MASK 0xfffffffffffffe00ull

/* Limits that keep a hostile image from making us allocate unbounded memory. */
#define QCOW2_MAX_TABLE_BYTES (32u << 20)       /* L1 table (refcount table: qcow2_parse.h) */
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_CHAIN 64u
#define QCOW2_L2_CACHE 16u
#define QCOW2_MAX_PENDING_RELEASES 65536u /* then the metadata is written back early */

struct qcow2_l2_slot {
	uint64_t offset;   /* host offset of the cached L2 table; 0 = slot empty */
	uint64_t *table;   /* big-endian entries, as on disk */
	uint64_t last_use; /* for LRU eviction */
	bool dirty;        /* changed in memory, not yet written (see q_writeback) */
};

struct qcow2 {
	const char *path;
	int fd;             /* metadata I/O (synchronous, worker) and data I/O (engine) */
	bool own_fd;        /* fd is ours (opened without O_DIRECT) rather than bd->file's */
	bool sync;          /* flushes and ordering points fdatasync (not cache=unsafe) */
	bool dirty;         /* incompatible bit 0: refcounts may be stale */
	bool broken;        /* a metadata update failed half-way: writes are refused */
	bool writable;      /* opened read-write: corruption found sets the header's corrupt bit */
	uint32_t version;
	uint32_t cluster_bits;
	uint32_t l2_bits;   /* log2 of entries per L2 table */
	uint32_t refcount_order;
	uint64_t cluster_size;
	uint64_t size;
	uint64_t l1_offset;
	uint32_t l1_size;
	uint64_t *l1;       /* host-endian copy */
	uint64_t rt_offset;
	uint64_t rt_entries;
	uint64_t *rt;       /* refcount table, host-endian copy */
	uint64_t next_free; /* new clusters are appended here (never reused: simple and safe) */
	struct qcow2_l2_slot l2c[QCOW2_L2_CACHE];
	uint64_t tick;
	bool meta_dirty;    /* some L2 slot is dirty or a release is pending */
	uint64_t *releases; /* L2 entries whose clusters are released at the next writeback */
	size_t nreleases, releases_cap;
	uint8_t *buf;       /* one cluster: copy-on-write assembly */
	uint8_t *dbuf;      /* one cluster: guest data of one chunk */
	uint8_t *cbuf;      /* one cluster: an inflated compressed cluster */
	uint8_t *zbuf;      /* two clusters: compressed input */
	struct block_dev *backing;
	uint8_t compression_type; /* header byte 104 (with incompatible bit 3): zlib 0, zstd 1 */
	struct qcow2_async *async; /* the worker thread and request path (qcow2_async.c) */
};

/* pwrite until all of buf is written (EINTR retried); 0 or -errno. Shared by the driver
 * and block_create. */
int q_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* pread of len bytes; what lies beyond the end of the file reads as zeroes. 0 or -errno. */
int q_pread(int fd, void *buf, size_t len, uint64_t off);

/* What a new version 3 image (16-bit refcounts) has in its header. */
struct qcow2_new_header {
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t l1_entries;
	uint64_t l1_offset;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	bool lazy_refcounts;
	uint8_t compression;
};
/* Fills the header's first QCOW2_NEW_HEADER_LEN bytes of c (which must be zeroed). In
 * qcow2_create.c; used by block_create and kvmkit-img's streaming writer. */
#define QCOW2_NEW_HEADER_LEN 112u /* 104 + the compression type byte, padded to 8 */
void qcow2_fill_header(uint8_t *c, const struct qcow2_new_header *h);

/* The driver's open path (qcow2_open.c) and what undoes it. */
int qcow2_open(struct block_dev *bd);
void qcow2_free(struct qcow2 *s);

/* Big-endian header fields. */
static inline uint32_t qcow2_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t qcow2_be64(const uint8_t *p)
{
	return (uint64_t)qcow2_be32(p) << 32 | qcow2_be32(p + 4);
}

#endif
