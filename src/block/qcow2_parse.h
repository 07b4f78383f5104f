/* The one qcow2 header parser: the fixed header, its extensions, feature bits and backing file
 * name, checked against the limits QEMU enforces; used by the driver and by kvmkit-img. */
#ifndef KVMKIT_BLOCK_QCOW2_PARSE_H
#define KVMKIT_BLOCK_QCOW2_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* QEMU's limits (block/qcow2.h): tables are read whole, so they bound what an image can make
 * a reader allocate. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_SNAPSHOT_HEADER_LEN 40u
#define QCOW2_MAX_BITMAPS 65535u
#define QCOW2_BACKING_FMT_MAX 16u /* QEMU's backing_format[16], with its NUL */

/* Header extension types other than the end marker and the backing format (qcow2.h). */
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)

struct qcow2_header {
	uint32_t version;          /* 2 or 3 */
	uint32_t cluster_bits;     /* 9..21 */
	uint64_t cluster_size;
	uint64_t size;             /* virtual size in bytes */
	uint32_t crypt_method;     /* 0 none, 1 AES, 2 LUKS: the callers refuse encryption */
	uint32_t l1_size;          /* entries */
	uint64_t l1_offset;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snap_offset;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;   /* refcounts are 1 << order bits wide, order 0..6 */
	uint32_t header_len;       /* where the extensions start */
	uint8_t compression_type;  /* 0 zlib, 1 zstd (QCOW2_INCOMPAT_COMPRESSION says which) */
	bool has_bitmaps;          /* a bitmaps extension */
	uint64_t ext_end;          /* just past the extensions' end marker (or where they stop) */
	uint64_t backing_offset;   /* 0: none */
	uint32_t backing_len;
	char backing[1024];        /* "" = no backing file */
	char backing_fmt[QCOW2_BACKING_FMT_MAX]; /* "" = not recorded */
	char error[160];           /* after a failure: what is wrong, a phrase for a sentence */
};

/* Parses the header cluster: buf holds the file's first len bytes (len >= 72; what lies past
 * len reads as zeroes, as QEMU reads past the end of a file). 0, or -EINVAL / -ENOTSUP /
 * -EFBIG with h->error set ("cluster_bits 30 is outside 9..21"). */
int qcow2_parse(const uint8_t *buf, size_t len, struct qcow2_header *h);

/* Reads the header cluster of the file open on fd (fsize bytes) and parses it. 0, or -errno
 * with h->error set. */
int qcow2_parse_fd(int fd, uint64_t fsize, struct qcow2_header *h);

/* What a reader of guest data cannot handle in a parsed image (encryption, an external data
 * file, extended L2 entries), as a phrase; NULL when there is nothing. */
const char *qcow2_parse_unsupported(const struct qcow2_header *h);

#endif
