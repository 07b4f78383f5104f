/* The one qcow2 header parser (see qcow2_parse.h): QEMU's qcow2_do_open and
 * qcow2_read_extensions checks, on a buffer, so that the driver, kvmkit-img, the unit tests
 * and the fuzzer all judge a header the same way. */
#include "block/qcow2_parse.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

/* The header cluster as read: bytes past len read as zeroes. */
struct qp_buf {
	const uint8_t *p;
	size_t len;
};

static uint8_t qp_byte(const struct qp_buf *b, uint64_t off)
{
	return off < b->len ? b->p[off] : 0;
}

static uint32_t qp_be32(const struct qp_buf *b, uint64_t off)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < 4; i++)
		v = v << 8 | qp_byte(b, off + i);
	return v;
}

static uint64_t qp_be64(const struct qp_buf *b, uint64_t off)
{
	return (uint64_t)qp_be32(b, off) << 32 | qp_be32(b, off + 4);
}

static int qp_fail(struct qcow2_header *h, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int qp_fail(struct qcow2_header *h, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->error, sizeof(h->error), fmt, ap);
	va_end(ap);
	return err;
}

/* QEMU's qcow2_validate_table: a bounded size, the offset cluster-aligned, and the table's end
 * representable as a signed file offset. */
static int qp_table(struct qcow2_header *h, const char *name, uint64_t off, uint64_t entries,
		    uint64_t entry_len, uint64_t max_bytes)
{
	if (entries > max_bytes / entry_len)
		return qp_fail(h, -EFBIG, "%s is larger than kvmkit's limit of %llu KiB (QEMU's)",
			       name, (unsigned long long)(max_bytes >> 10));
	if ((uint64_t)INT64_MAX - entries * entry_len < off || (off & (h->cluster_size - 1)))
		return qp_fail(h, -EINVAL, "%s offset 0x%llx is misaligned or too large", name,
			       (unsigned long long)off);
	return 0;
}

/* The bitmaps extension (24 bytes: count, reserved, directory size and offset), checked as
 * QEMU checks it when the autoclear bit says the bitmaps are consistent. */
static int qp_bitmaps(const struct qp_buf *b, uint64_t at, uint32_t len, struct qcow2_header *h)
{
	if (len != 24)
		return qp_fail(h, -EINVAL, "the bitmaps header extension has a bad length");
	h->has_bitmaps = true;
	if (!(h->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	uint32_t n = qp_be32(b, at);
	if (qp_be32(b, at + 4) != 0 || n == 0 || n > QCOW2_MAX_BITMAPS ||
	    (qp_be64(b, at + 16) & (h->cluster_size - 1)) ||
	    qp_be64(b, at + 8) > 1024ull * QCOW2_MAX_BITMAPS)
		return qp_fail(h, -EINVAL, "the bitmaps header extension is invalid");
	return 0;
}

/* Header extensions from header_len up to end: each must fit before end. */
static int qp_extensions(const struct qp_buf *b, uint64_t end, struct qcow2_header *h)
{
	uint64_t at = h->header_len;
	while (at < end) {
		if (end - at < 8)
			return qp_fail(h, -EINVAL, "a header extension at %llu runs past the header",
				       (unsigned long long)at);
		uint32_t type = qp_be32(b, at), len = qp_be32(b, at + 4);
		at += 8;
		if (len > end - at)
			return qp_fail(h, -EINVAL, "header extension 0x%x runs past the header", type);
		int r = 0;
		switch (type) {
		case QCOW2_EXT_END:
			h->ext_end = at;
			return 0;
		case QCOW2_EXT_BACKING_FORMAT:
			if (len >= sizeof(h->backing_fmt))
				return qp_fail(h, -EINVAL, "the backing format name is too long");
			for (uint32_t i = 0; i < len; i++)
				h->backing_fmt[i] = (char)qp_byte(b, at + i);
			h->backing_fmt[len] = '\0';
			if (strlen(h->backing_fmt) != len)
				return qp_fail(h, -EINVAL, "the backing format name holds a NUL byte");
			break;
		case QCOW2_EXT_CRYPTO:
			if (h->crypt_method != 2 || len != 16 ||
			    (qp_be64(b, at) & (h->cluster_size - 1)))
				return qp_fail(h, -EINVAL, "the encryption header extension is invalid");
			break;
		case QCOW2_EXT_BITMAPS:
			r = qp_bitmaps(b, at, len, h);
			break;
		default: /* a feature name table, or unknown: kept by rewrites, else ignored */
			break;
		}
		if (r < 0)
			return r;
		at += (len + 7ull) & ~7ull;
	}
	h->ext_end = end;
	return 0;
}

/* The backing file name: inside the header cluster, at most 1023 bytes, no NUL byte. */
static int qp_backing(const struct qp_buf *b, struct qcow2_header *h)
{
	uint64_t off = h->backing_offset, len = h->backing_len;
	if (!off)
		return 0;
	if (len > QCOW2_MAX_BACKING_NAME || len > h->cluster_size - off)
		return qp_fail(h, -EINVAL, "the backing file name is too long or runs past the "
				       "header cluster");
	for (uint64_t i = 0; i < len; i++)
		h->backing[i] = (char)qp_byte(b, off + i);
	h->backing[len] = '\0';
	if (strlen(h->backing) != len)
		return qp_fail(h, -EINVAL, "the backing file name holds a NUL byte");
	return 0;
}

/* The fixed header fields, version 2 or 3. */
static int qp_fixed(const struct qp_buf *b, struct qcow2_header *h)
{
	if (b->len < QCOW2_V2_HEADER_LEN)
		return qp_fail(h, -EINVAL, "the file is too small to hold a qcow2 header");
	if (qp_be32(b, 0) != QCOW2_MAGIC)
		return qp_fail(h, -EINVAL, "not a qcow2 image (bad magic)");
	h->version = qp_be32(b, 4);
	if (h->version != 2 && h->version != 3)
		return qp_fail(h, -ENOTSUP, "qcow2 version %u is not supported (2 and 3 are)", h->version);
	h->backing_offset = qp_be64(b, 8);
	h->backing_len = qp_be32(b, 16);
	h->cluster_bits = qp_be32(b, 20);
	h->size = qp_be64(b, 24);
	h->crypt_method = qp_be32(b, 32);
	h->l1_size = qp_be32(b, 36);
	h->l1_offset = qp_be64(b, 40);
	h->rt_offset = qp_be64(b, 48);
	h->rt_clusters = qp_be32(b, 56);
	h->nb_snapshots = qp_be32(b, 60);
	h->snap_offset = qp_be64(b, 64);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return qp_fail(h, -EINVAL, "cluster_bits %u is outside 9..21", h->cluster_bits);
	h->cluster_size = 1ull << h->cluster_bits;
	h->refcount_order = 4;
	h->header_len = QCOW2_V2_HEADER_LEN;
	if (h->version == 3) {
		h->incompat = qp_be64(b, 72);
		h->compat = qp_be64(b, 80);
		h->autoclear = qp_be64(b, 88);
		h->refcount_order = qp_be32(b, 96);
		h->header_len = qp_be32(b, 100);
		if (h->header_len < QCOW2_V3_HEADER_LEN)
			return qp_fail(h, -EINVAL, "header length %u is below 104", h->header_len);
	}
	if (h->header_len > h->cluster_size)
		return qp_fail(h, -EINVAL, "header length %u exceeds the cluster size", h->header_len);
	if (h->backing_offset > h->cluster_size)
		return qp_fail(h, -EINVAL, "the backing file name offset is outside the header "
				       "cluster");
	if (h->header_len > QCOW2_V3_HEADER_LEN)
		h->compression_type = qp_byte(b, QCOW2_V3_HEADER_LEN);
	return 0;
}

/* Feature bits, refcount width and compression type. */
static int qp_features(struct qcow2_header *h)
{
	if (h->incompat & ~QCOW2_INCOMPAT_KNOWN)
		return qp_fail(h, -ENOTSUP, "uses qcow2 feature(s) kvmkit does not know (incompatible bits 0x%llx)",
			       (unsigned long long)(h->incompat & ~QCOW2_INCOMPAT_KNOWN));
	if (h->compression_type > 1)
		return qp_fail(h, -ENOTSUP, "compression type %u is unknown", h->compression_type);
	if ((h->compression_type != 0) != !!(h->incompat & QCOW2_INCOMPAT_COMPRESSION))
		return qp_fail(h, -EINVAL, "the compression type and its incompatible feature bit "
				       "disagree");
	if ((h->incompat & QCOW2_INCOMPAT_EXTL2) && h->cluster_bits < QCOW2_MIN_CLUSTER_BITS + 5)
		return qp_fail(h, -EINVAL, "extended L2 entries need clusters of 16 KiB or more");
	if (h->refcount_order > 6)
		return qp_fail(h, -EINVAL, "refcount_order %u is above 6", h->refcount_order);
	return 0;
}

/* The refcount, snapshot and L1 tables' places and sizes, and the virtual size. */
static int qp_tables(struct qcow2_header *h)
{
	if (h->rt_clusters == 0)
		return qp_fail(h, -EINVAL, "it has no refcount table");
	int r;
	if ((r = qp_table(h, "refcount table", h->rt_offset, h->rt_clusters, h->cluster_size,
			  QCOW2_MAX_REFTABLE_BYTES)) < 0 ||
	    (r = qp_table(h, "snapshot table", h->snap_offset, h->nb_snapshots,
			  QCOW2_SNAPSHOT_HEADER_LEN,
			  (uint64_t)QCOW2_SNAPSHOT_HEADER_LEN * QCOW2_MAX_SNAPSHOTS)) < 0 ||
	    (r = qp_table(h, "L1 table", h->l1_offset, h->l1_size, 8, QCOW2_MAX_L1_BYTES)) < 0)
		return r;
	unsigned l2_bits = h->cluster_bits - ((h->incompat & QCOW2_INCOMPAT_EXTL2) ? 4 : 3);
	unsigned span_bits = h->cluster_bits + l2_bits;
	uint64_t need = (h->size >> span_bits) + !!(h->size & ((1ull << span_bits) - 1));
	if (need > INT_MAX)
		return qp_fail(h, -EFBIG, "virtual size %llu is too large", (unsigned long long)h->size);
	if (h->l1_size < need)
		return qp_fail(h, -EINVAL, "L1 table (%u entries) is too small for the virtual size", h->l1_size);
	return 0;
}

int qcow2_parse(const uint8_t *buf, size_t len, struct qcow2_header *h)
{
	memset(h, 0, sizeof(*h));
	struct qp_buf b = { buf, len };
	int r;
	if ((r = qp_fixed(&b, h)) < 0 || (r = qp_features(h)) < 0 ||
	    (r = qp_tables(h)) < 0)
		return r;
	uint64_t ext_end = h->backing_offset ? h->backing_offset : h->cluster_size;
	if ((r = qp_extensions(&b, ext_end, h)) < 0 || (r = qp_backing(&b, h)) < 0)
		return r;
	return 0;
}

int qcow2_parse_fd(int fd, uint64_t fsize, struct qcow2_header *h)
{
	/* The fixed header first, for the cluster size; then the header cluster. */
	uint8_t fixed[QCOW2_NEW_HEADER_LEN];
	memset(h, 0, sizeof(*h));
	if (fsize < QCOW2_V2_HEADER_LEN)
		return qp_fail(h, -EINVAL, "the file is too small to hold a qcow2 header");
	int r = q_pread(fd, fixed, sizeof(fixed), 0);
	if (r < 0)
		return qp_fail(h, r, "the header cannot be read: %s", strerror(-r));
	uint32_t bits = qcow2_be32(fixed + 20);
	if (bits < QCOW2_MIN_CLUSTER_BITS || bits > QCOW2_MAX_CLUSTER_BITS)
		return qcow2_parse(fixed, sizeof(fixed), h); /* says what is wrong */
	uint64_t len = (1ull << bits) < fsize ? 1ull << bits : fsize;
	uint8_t *c = malloc(len);
	if (!c)
		return qp_fail(h, -ENOMEM, "out of memory");
	if ((r = q_pread(fd, c, len, 0)) < 0)
		qp_fail(h, r, "the header cannot be read: %s", strerror(-r));
	else
		r = qcow2_parse(c, len, h);
	free(c);
	return r;
}

const char *qcow2_parse_unsupported(const struct qcow2_header *h)
{
	if (h->crypt_method)
		return "it is encrypted, which kvmkit does not support";
	if (h->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return "it keeps its data in an external data file, which kvmkit does not support";
	if (h->incompat & QCOW2_INCOMPAT_EXTL2)
		return "it uses extended L2 entries (subclusters), which kvmkit does not support";
	return NULL;
}
