/* kvmkit-img's read-only view of qcow2 metadata (see qcow2_meta.h). */
#include "img/qcow2_meta.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "block/qcow2_parse.h"
#include "img/img.h"

uint64_t img_q2_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

uint32_t img_q2_be32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

uint16_t img_q2_be16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

void img_q2_put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

void img_q2_put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

int img_q2_read(const struct img_q2 *q, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX)
			return -EINVAL;
		ssize_t n = pread(q->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int img_q2_write(const struct img_q2 *q, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX)
			return -EINVAL;
		ssize_t n = pwrite(q->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int img_q2_open(const char *path, bool rw, struct img_q2 *q)
{
	memset(q, 0, sizeof(*q));
	q->path = path;
	q->fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (q->fd < 0) {
		int e = errno;
		img_error("could not open '%s': %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	struct qcow2_header *h = malloc(sizeof(*h));
	int r = -ENOMEM;
	const char *why = NULL;
	if (!h)
		img_error("out of memory");
	else if (fstat(q->fd, &st) < 0)
		img_error("could not examine '%s': %s", path, strerror(-(r = -errno)));
	else if ((r = qcow2_parse_fd(q->fd, q->fsize = (uint64_t)st.st_size, h)) < 0)
		img_error("cannot open '%s': %s", path, h->error);
	else if ((why = qcow2_parse_unsupported(h)) != NULL) {
		img_error("cannot open '%s': %s", path, why);
		r = -ENOTSUP;
	}
	if (r < 0) {
		free(h);
		img_q2_close(q);
		return r;
	}
	q->version = h->version;
	q->cluster_bits = h->cluster_bits;
	q->cluster_size = h->cluster_size;
	q->refcount_order = h->refcount_order;
	q->size = h->size;
	q->l1_offset = h->l1_offset;
	q->l1_size = h->l1_size;
	q->rt_offset = h->rt_offset;
	q->rt_clusters = h->rt_clusters;
	q->nb_snapshots = h->nb_snapshots;
	q->snap_offset = h->snap_offset;
	q->incompat = h->incompat;
	q->compat = h->compat;
	q->autoclear = h->autoclear;
	q->header_len = h->header_len;
	q->has_bitmaps = h->has_bitmaps;
	q->backing_offset = h->backing_offset;
	q->backing_len = h->backing_len;
	memcpy(q->backing, h->backing, sizeof(q->backing));
	memcpy(q->backing_fmt, h->backing_fmt, sizeof(q->backing_fmt));
	free(h);
	return 0;
}

void img_q2_close(struct img_q2 *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
}

uint64_t img_q2_l2_entries(const struct img_q2 *q)
{
	return q->cluster_size / 8;
}

uint64_t img_q2_l1_needed(const struct img_q2 *q, uint64_t size)
{
	uint64_t per_l1 = q->cluster_size * img_q2_l2_entries(q);
	return size / per_l1 + (size % per_l1 != 0);
}

uint64_t *img_q2_read_l1(const struct img_q2 *q, uint64_t offset, uint32_t entries)
{
	if ((uint64_t)entries * 8 > QCOW2_MAX_TABLE_BYTES) {
		img_error("'%s': an L1 table of %u entries is too large", q->path, entries);
		return NULL;
	}
	uint64_t *t = calloc(entries ? entries : 1, 8);
	if (!t) {
		img_error("out of memory");
		return NULL;
	}
	if (entries && img_q2_read(q, t, (uint64_t)entries * 8, offset) < 0) {
		img_error("'%s': the L1 table at offset %llu cannot be read", q->path,
			  (unsigned long long)offset);
		free(t);
		return NULL;
	}
	for (uint32_t i = 0; i < entries; i++)
		t[i] = be64toh(t[i]);
	return t;
}

void img_q2_compressed_range(const struct img_q2 *q, uint64_t e, uint64_t *start, uint64_t *len)
{
	/* Bits 0..(61 - (cluster_bits - 8)) hold the offset, the next (cluster_bits - 8) bits
	 * the number of additional 512-byte sectors. */
	unsigned shift = 62 - (q->cluster_bits - 8);
	uint64_t off = e & ((1ull << shift) - 1);
	uint64_t sectors = ((e >> shift) & ((1ull << (q->cluster_bits - 8)) - 1)) + 1;
	*start = off;
	*len = sectors * 512 - (off & 511);
}

uint64_t img_q2_rc_get(const struct img_q2 *q, const uint8_t *block, uint64_t i)
{
	unsigned bits = 1u << q->refcount_order;
	switch (bits) {
	case 64: return img_q2_be64(block + i * 8);
	case 32: return img_q2_be32(block + i * 4);
	case 16: return img_q2_be16(block + i * 2);
	case 8: return block[i];
	default: {
		uint64_t bit = i * bits;
		return (block[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
	}
	}
}

void img_q2_rc_set(const struct img_q2 *q, uint8_t *block, uint64_t i, uint64_t v)
{
	unsigned bits = 1u << q->refcount_order;
	switch (bits) {
	case 64: img_q2_put_be64(block + i * 8, v); break;
	case 32: img_q2_put_be32(block + i * 4, (uint32_t)v); break;
	case 16: {
		uint16_t b = htobe16((uint16_t)v);
		memcpy(block + i * 2, &b, 2);
		break;
	}
	case 8: block[i] = (uint8_t)v; break;
	default: {
		uint64_t bit = i * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
		block[bit / 8] = (uint8_t)((block[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
	}
	}
}

int img_q2_rc_begin(const struct img_q2 *q, struct img_q2_rc *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->q = q;
	rc->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
	rc->rt = calloc(rc->rt_entries ? rc->rt_entries : 1, 8);
	rc->blk = malloc(q->cluster_size);
	if (!rc->rt || !rc->blk) {
		img_error("out of memory");
		return -ENOMEM;
	}
	int r = img_q2_read(q, rc->rt, rc->rt_entries * 8, q->rt_offset);
	if (r < 0) {
		img_error("'%s': the refcount table cannot be read", q->path);
		return r;
	}
	for (uint64_t i = 0; i < rc->rt_entries; i++)
		rc->rt[i] = be64toh(rc->rt[i]);
	return 0;
}

int img_q2_rc_flush(struct img_q2_rc *rc)
{
	if (!rc->dirty)
		return 0;
	rc->dirty = false;
	return img_q2_write(rc->q, rc->blk, rc->q->cluster_size, rc->blk_off);
}

/* Makes the refcount block covering cluster c the cached one; its slot in *slot. */
static int rc_load(struct img_q2_rc *rc, uint64_t c, uint64_t *slot)
{
	const struct img_q2 *q = rc->q;
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	uint64_t idx = c / per;
	uint64_t off = idx < rc->rt_entries ? rc->rt[idx] & QCOW2_REFTABLE_MASK : 0;
	*slot = c % per;
	if (!off || (off & (q->cluster_size - 1)) || off > q->fsize ||
	    q->cluster_size > q->fsize - off) {
		img_error("'%s': no valid refcount block covers cluster %llu", q->path,
			  (unsigned long long)c);
		return -EINVAL;
	}
	if (off == rc->blk_off)
		return 0;
	int r = img_q2_rc_flush(rc);
	if (r < 0)
		return r;
	rc->blk_off = 0;
	if ((r = img_q2_read(q, rc->blk, q->cluster_size, off)) < 0)
		return r;
	rc->blk_off = off;
	return 0;
}

int img_q2_rc_add(struct img_q2_rc *rc, uint64_t off, int delta, uint64_t *now)
{
	const struct img_q2 *q = rc->q;
	uint64_t c = off >> q->cluster_bits, slot;
	int r = rc_load(rc, c, &slot);
	if (r < 0)
		return r;
	uint64_t v = img_q2_rc_get(q, rc->blk, slot);
	uint64_t max = q->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << q->refcount_order)) - 1;
	if ((delta < 0 && v < (uint64_t)-delta) || (delta > 0 && max - v < (uint64_t)delta)) {
		img_error("'%s': the refcount of cluster %llu is %llu and cannot change by %d",
			  q->path, (unsigned long long)c, (unsigned long long)v, delta);
		return -EINVAL;
	}
	*now = v + (uint64_t)(int64_t)delta;
	img_q2_rc_set(q, rc->blk, slot, *now);
	rc->dirty = true;
	return 0;
}

int img_q2_rc_used_end(struct img_q2_rc *rc, uint64_t *end)
{
	const struct img_q2 *q = rc->q;
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	*end = 0;
	for (uint64_t idx = rc->rt_entries; idx-- > 0;) {
		if (!(rc->rt[idx] & QCOW2_REFTABLE_MASK))
			continue;
		uint64_t slot;
		int r = rc_load(rc, idx * per, &slot);
		if (r < 0)
			return r;
		for (uint64_t i = per; i-- > 0;)
			if (img_q2_rc_get(q, rc->blk, i)) {
				*end = (idx * per + i + 1) << q->cluster_bits;
				return 0;
			}
	}
	return 0;
}

int img_q2_rc_end(struct img_q2_rc *rc)
{
	int r = rc->blk ? img_q2_rc_flush(rc) : 0;
	free(rc->rt);
	free(rc->blk);
	rc->rt = NULL;
	rc->blk = NULL;
	return r;
}
