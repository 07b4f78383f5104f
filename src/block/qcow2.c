/* The qcow2 format driver's metadata work: guest reads through L1/L2 (with backing files, zero
 * and compressed clusters) and guest writes that allocate clusters with refcounts updated in
 * crash-safe order, L2 changes written back in dependency order (opening is qcow2_open.c).
 *
 * This code does its I/O synchronously (pread/pwrite on the image's fd). It runs on the image's
 * worker thread (qcow2_async.c) under the metadata lock, never on the event loop thread, which
 * sends the reads and in-place writes that the cached tables map straight to the I/O engine. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block_int.h"
#include "block/qcow2.h"
#include "block/qcow2_compress.h"
#include "block/qcow2_io.h"
#include "block/qcow2_parse.h"
#include "lib/log.h"

/* ---- synchronous file I/O ---- */

/* Reads len bytes at off; what lies beyond the end of the file reads as zeroes (a table or
 * cluster may legitimately end past a file that was never written that far). */
int q_pread(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX)
			return -EINVAL;
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int q_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		if (off > (uint64_t)INT64_MAX)
			return -EINVAL;
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* An ordering point: what was written before is on disk before anything written after. */
int qcow2_sync(struct qcow2 *s)
{
	if (!s->sync)
		return 0;
	int r = qcow2_fault(s, BLOCK_FAULT_SYNC, 0, 0);
	if (r == 0 && fdatasync(s->fd) < 0)
		r = -errno;
	return r;
}

/* The driver's own reads and writes of the image, through the fault-injection point. */
static int q_rd(struct qcow2 *s, void *buf, size_t len, uint64_t off)
{
	int r = qcow2_fault(s, BLOCK_FAULT_READ, off, len);
	return r < 0 ? r : q_pread(s->fd, buf, len, off);
}

static int q_wr(struct qcow2 *s, const void *buf, size_t len, uint64_t off)
{
	int r = qcow2_fault(s, BLOCK_FAULT_WRITE, off, len);
	return r < 0 ? r : q_pwrite(s->fd, buf, len, off);
}

/* ---- refcounts (any width: 1..64 bits) ---- */

/* Metadata that cannot be right: the request fails, and a writable image gets the corrupt bit
 * (as QEMU does) so that nothing writes to it again before a repair; reads go on. */
static int q_corrupt(struct qcow2 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int q_corrupt(struct qcow2 *s, const char *fmt, ...)
{
	char what[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (!s->writable || s->broken || s->version < 3) {
		log_error("disk image '%s' is corrupt: %s", s->path, what);
		return -EIO;
	}
	s->broken = true;
	uint8_t raw[8];
	int r = q_rd(s, raw, 8, 72);
	uint64_t be = htobe64(qcow2_be64(raw) | QCOW2_INCOMPAT_CORRUPT);
	if (r == 0 && (r = q_wr(s, &be, 8, 72)) == 0)
		r = qcow2_sync(s);
	log_error("disk image '%s' is corrupt: %s; %s (repair it with 'qemu-img check -r all')",
		  s->path, what, r == 0 ? "it is now marked corrupt" : "marking it corrupt failed");
	return -EIO;
}

static uint64_t q_file_end(const struct qcow2 *s, const struct block_dev *bd)
{
	return s->next_free > bd->file.size ? s->next_free : bd->file.size;
}

static int q_update_refcount(struct qcow2 *s, uint64_t host, int delta, unsigned depth);
static int q_grow_reftable(struct qcow2 *s, uint64_t need);

/* Takes the next cluster at the end of the file, its refcount already 1 on disk. */
static int q_alloc_cluster(struct qcow2 *s, uint64_t *host, unsigned depth)
{
	uint64_t h = s->next_free;
	if (h > QCOW2_OFFSET_MASK - s->cluster_size)
		return -ENOSPC;
	s->next_free += s->cluster_size;
	int r = q_update_refcount(s, h, +1, depth);
	if (r < 0)
		return r;
	*host = h;
	return 0;
}

/* Moves the refcount table to a bigger copy at the end of the file, for at least `need`
 * entries. The header points at the new table only once it is complete and on disk, so a
 * crash leaves the old table in charge and the new clusters merely leaked. */
static int q_grow_reftable(struct qcow2 *s, uint64_t need)
{
	uint64_t entries = s->rt_entries * 2 > need ? s->rt_entries * 2 : need;
	uint64_t clusters = (entries * 8 + s->cluster_size - 1) >> s->cluster_bits;
	entries = clusters * s->cluster_size / 8;
	/* QEMU's limit, which qcow2_parse enforces on open: a bigger table could not be reopened. */
	if (clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES || clusters > UINT32_MAX) {
		log_error("disk image '%s': its refcount table would grow beyond QEMU's limit of "
			  "%u MiB", s->path, QCOW2_MAX_REFTABLE_BYTES >> 20);
		return -ENOSPC;
	}
	uint64_t *rt = realloc(s->rt, entries * 8);
	if (!rt)
		return -ENOMEM;
	memset(rt + s->rt_entries, 0, (entries - s->rt_entries) * 8);
	uint64_t old_offset = s->rt_offset, old_clusters = s->rt_entries * 8 >> s->cluster_bits;
	uint64_t t = s->next_free;
	s->next_free += clusters * s->cluster_size;
	s->rt = rt;
	s->rt_entries = entries;
	s->rt_offset = t;
	/* The new table on disk, then refcounts for its own clusters (which may add refcount
	 * blocks, recorded straight into the new table). */
	int r = 0;
	for (uint64_t i = 0; i < entries && r == 0; i++) {
		uint64_t be = htobe64(rt[i]);
		r = q_wr(s, &be, 8, t + i * 8);
	}
	for (uint64_t i = 0; i < clusters && r == 0; i++)
		r = q_update_refcount(s, t + i * s->cluster_size, +1, 1);
	if (r == 0)
		r = qcow2_sync(s);
	uint8_t h[12];
	uint64_t off_be = htobe64(t);
	uint32_t n_be = htobe32((uint32_t)clusters);
	memcpy(h, &off_be, 8);
	memcpy(h + 8, &n_be, 4);
	if (r == 0 && (r = q_wr(s, h, sizeof(h), 48)) == 0)
		r = qcow2_sync(s);
	if (r < 0) {
		/* Memory and disk may now disagree about the refcounts: no more writes. */
		log_error("disk image '%s': growing its refcount table failed (%s); further writes "
			  "are refused", s->path, strerror(-r));
		s->broken = true;
		return r;
	}
	for (uint64_t i = 0; i < old_clusters && r == 0; i++)
		r = q_update_refcount(s, old_offset + i * s->cluster_size, -1, 1);
	return r;
}

/* Where refcount entry k of a block lies: *width bytes at byte *at of the block (big-endian),
 * or, for entries narrower than a byte, bits *shift.. of one byte (first entry in the least
 * significant bits, as QEMU packs them). */
static void q_rc_locate(const struct qcow2 *s, uint64_t k, uint64_t *at, size_t *width,
			unsigned *shift)
{
	unsigned bits = 1u << s->refcount_order;
	*width = bits >= 8 ? bits / 8 : 1;
	*at = bits >= 8 ? k * *width : k * bits / 8;
	*shift = bits >= 8 ? 0 : (unsigned)(k * bits % 8);
}

static int q_update_refcount(struct qcow2 *s, uint64_t host, int delta, unsigned depth)
{
	if (depth > 8)
		return -EIO;
	uint32_t rb_bits = s->cluster_bits + 3 - s->refcount_order; /* log2 entries per block */
	uint64_t idx = host >> (s->cluster_bits + rb_bits);
	uint64_t k = (host >> s->cluster_bits) & ((1ull << rb_bits) - 1);
	uint64_t max = s->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << s->refcount_order)) - 1;
	uint64_t in;
	size_t width;
	unsigned shift;
	if (idx >= s->rt_entries) {
		/* Releasing a cluster no refcount block covers: it was never counted (a damaged L2
		 * entry pointing past the file, found by fuzzing). Growing the table for it would
		 * cost megabytes of metadata for nothing. */
		if (delta < 0)
			return s->dirty ? 0 : -EIO;
		int r = q_grow_reftable(s, idx + 1);
		if (r < 0)
			return r;
	}
	uint64_t block = s->rt[idx] & QCOW2_REFTABLE_MASK;
	if (block == 0) {
		if (delta < 0)
			return s->dirty ? 0 : -EIO; /* dirty: counts may be stale */
		/* A new refcount block, appended; it counts itself when it covers itself, else
		 * another block counts it (first: that may itself need a new block, in zbuf). */
		block = s->next_free;
		s->next_free += s->cluster_size;
		bool self = (block >> (s->cluster_bits + rb_bits)) == idx;
		int r;
		if (!self && (r = q_update_refcount(s, block, +1, depth + 1)) < 0)
			return r;
		/* zbuf: s->buf may hold a cluster being assembled for a write */
		memset(s->zbuf, 0, s->cluster_size);
		if (self) {
			uint64_t kb = (block >> s->cluster_bits) & ((1ull << rb_bits) - 1);
			q_rc_locate(s, kb, &in, &width, &shift);
			s->zbuf[in + width - 1] = (uint8_t)(1u << shift);
		}
		if ((r = q_wr(s, s->zbuf, s->cluster_size, block)) < 0 ||
		    (r = qcow2_sync(s)) < 0)
			return r;
		uint64_t be = htobe64(block);
		if ((r = q_wr(s, &be, 8, s->rt_offset + idx * 8)) < 0)
			return r;
		s->rt[idx] = block;
	} else if ((block & (s->cluster_size - 1)) || block >= s->next_free) {
		return q_corrupt(s, "refcount block offset 0x%llx is misaligned or outside the file",
				 (unsigned long long)block);
	}
	uint8_t raw[8] = { 0 };
	q_rc_locate(s, k, &in, &width, &shift);
	uint64_t at = block + in;
	int r = q_rd(s, raw + 8 - width, width, at);
	if (r < 0)
		return r;
	uint64_t whole = qcow2_be64(raw); /* the bytes that hold the entry */
	uint64_t v = (whole >> shift) & max;
	if (delta < 0 && v == 0 && s->dirty)
		return 0; /* a stale count in a dirty image: left for the repair */
	if ((delta > 0 && v == max) || (delta < 0 && v == 0)) {
		if (delta > 0) {
			log_error("disk image '%s': refcount of cluster 0x%llx would overflow",
				  s->path, (unsigned long long)host);
			return -EIO;
		}
		return q_corrupt(s, "refcount of cluster 0x%llx would drop below zero",
				 (unsigned long long)host);
	}
	v = delta > 0 ? v + 1 : v - 1;
	uint64_t be = htobe64((whole & ~(max << shift)) | v << shift);
	memcpy(raw, &be, 8);
	return q_wr(s, raw + 8 - width, width, at);
}

/* ---- L2 tables ---- */

static int q_cow_l2(struct qcow2 *s, struct block_dev *bd, uint64_t l1i,
		    struct qcow2_l2_slot **out);
static int q_writeback(struct qcow2 *s);
static int q_release_later(struct qcow2 *s, uint64_t e);

/* The L2 table for guest L1 index l1i, or NULL (*t) when unallocated and !alloc. With alloc,
 * the table returned is the active image's own (refcount 1), so its entries may change. */
static int q_get_l2(struct qcow2 *s, struct block_dev *bd, uint64_t l1i, bool alloc,
		    struct qcow2_l2_slot **out)
{
	*out = NULL;
	uint64_t e = s->l1[l1i];
	uint64_t off = e & QCOW2_OFFSET_MASK;
	int r;
	if (off == 0) {
		if (!alloc)
			return 0;
		/* New table: zeroed and on disk before the L1 entry points at it. */
		if ((r = q_alloc_cluster(s, &off, 0)) < 0)
			return r;
		memset(s->zbuf, 0, s->cluster_size);
		if ((r = q_wr(s, s->zbuf, s->cluster_size, off)) < 0 || (r = qcow2_sync(s)) < 0)
			return r;
		e = off | QCOW2_COPIED;
		uint64_t be = htobe64(e);
		if ((r = q_wr(s, &be, 8, s->l1_offset + l1i * 8)) < 0)
			return r;
		s->l1[l1i] = e;
	} else if ((off & (s->cluster_size - 1)) || off > q_file_end(s, bd) - s->cluster_size ||
		   q_file_end(s, bd) < s->cluster_size) {
		return q_corrupt(s, "L2 table offset 0x%llx is misaligned or outside the file",
				 (unsigned long long)off);
	} else if (alloc && !(e & QCOW2_COPIED)) {
		return q_cow_l2(s, bd, l1i, out);
	}
	struct qcow2_l2_slot *victim = &s->l2c[0];
	for (unsigned i = 0; i < QCOW2_L2_CACHE; i++) {
		struct qcow2_l2_slot *c = &s->l2c[i];
		if (c->offset == off) {
			c->last_use = ++s->tick;
			*out = c;
			return 0;
		}
		if (c->last_use < victim->last_use)
			victim = c;
	}
	if (victim->dirty && (r = q_writeback(s)) < 0)
		return r;
	victim->offset = 0;
	if ((r = q_rd(s, victim->table, s->cluster_size, off)) < 0)
		return r;
	victim->offset = off;
	victim->last_use = ++s->tick;
	*out = victim;
	return 0;
}

/* An L2 table shared with internal snapshots (no COPIED flag in its L1 entry) is copied
 * before the active image changes it. Its entries keep their flags: the data clusters stay
 * shared, so writes to them allocate (see q_write_part). Order: the copy on disk, then the L1
 * entry, then the old table's refcount down; a crash in between only leaks a cluster. */
static int q_cow_l2(struct qcow2 *s, struct block_dev *bd, uint64_t l1i,
		    struct qcow2_l2_slot **out)
{
	uint64_t old = s->l1[l1i] & QCOW2_OFFSET_MASK, h;
	struct qcow2_l2_slot *c;
	int r = q_get_l2(s, bd, l1i, false, &c);
	if (r < 0)
		return r;
	if ((r = q_alloc_cluster(s, &h, 0)) < 0 ||
	    (r = q_wr(s, c->table, s->cluster_size, h)) < 0 || (r = qcow2_sync(s)) < 0)
		return r;
	uint64_t be = htobe64(h | QCOW2_COPIED);
	if ((r = q_wr(s, &be, 8, s->l1_offset + l1i * 8)) < 0)
		return r;
	s->l1[l1i] = h | QCOW2_COPIED;
	c->offset = h; /* the cached copy is now the active table's */
	*out = c;
	return q_release_later(s, old);
}

/* L2 entries change in the cache only; q_writeback puts them on disk (see there). */
static void q_set_l2(struct qcow2 *s, struct qcow2_l2_slot *c, uint64_t l2i, uint64_t entry)
{
	c->table[l2i] = htobe64(entry);
	c->dirty = true;
	s->meta_dirty = true;
}

/* Host range [*start, *start + *len) of a compressed cluster's data. */
static void q_compressed_range(const struct qcow2 *s, uint64_t e, uint64_t *start, uint64_t *len)
{
	uint32_t x = 62 - (s->cluster_bits - 8);
	*start = e & ((1ull << x) - 1);
	uint64_t sectors = (e >> x) & ((1ull << (s->cluster_bits - 8)) - 1);
	*len = (sectors + 1) * 512 - (*start & 511);
}

static int q_inflate(struct qcow2 *s, uint64_t e)
{
	uint64_t start, len;
	q_compressed_range(s, e, &start, &len);
	int r = q_rd(s, s->zbuf, len, start);
	if (r < 0)
		return r;
	r = qcow2_decompress(s->compression_type, s->cbuf, s->cluster_size, s->zbuf, len);
	if (r == -ENOTSUP)
		log_error("disk image '%s' has compressed clusters (%s), and this kvmkit was built "
			  "without that library", s->path,
			  s->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
	else if (r < 0)
		log_error("disk image '%s': compressed cluster at 0x%llx does not inflate",
			  s->path, (unsigned long long)start);
	return r;
}

/* Guest bytes [g, g + n), within one cluster, into dst. */
static int q_read_part(struct qcow2 *s, struct block_dev *bd, uint64_t g, uint8_t *dst,
		       uint64_t n)
{
	uint64_t l1i = g >> (s->cluster_bits + s->l2_bits);
	uint64_t l2i = (g >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
	uint64_t in = g & (s->cluster_size - 1);
	struct qcow2_l2_slot *c;
	int r = q_get_l2(s, bd, l1i, false, &c);
	if (r < 0)
		return r;
	uint64_t e = c ? be64toh(c->table[l2i]) : 0;
	if (e & QCOW2_COMPRESSED) {
		if ((r = q_inflate(s, e)) < 0)
			return r;
		memcpy(dst, s->cbuf + in, n);
		return 0;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	if (s->version >= 3 && (e & QCOW2_ZERO)) {
		memset(dst, 0, n);
		return 0;
	}
	if (off) {
		if (off & (s->cluster_size - 1))
			return q_corrupt(s, "data cluster offset 0x%llx is not cluster-aligned",
					 (unsigned long long)off);
		return q_rd(s, dst, n, off + in);
	}
	/* Unallocated: the backing file where it reaches, zeroes beyond. */
	uint64_t have = 0;
	if (s->backing) {
		uint64_t bsize = block_size(s->backing);
		if (g < bsize) {
			have = bsize - g < n ? bsize - g : n;
			if ((r = block_io(s->backing, BLOCK_OP_READ, g, dst, have)) < 0)
				return r;
		}
	}
	memset(dst + have, 0, n - have);
	return 0;
}

/* Releases what an L2 entry pointed at (after the entry stopped pointing there on disk). */
static int q_release(struct qcow2 *s, uint64_t e)
{
	if (e & QCOW2_COMPRESSED) {
		uint64_t start, len;
		q_compressed_range(s, e, &start, &len);
		uint64_t first = start & ~(s->cluster_size - 1);
		for (uint64_t h = first; h < start + len; h += s->cluster_size) {
			int r = q_update_refcount(s, h, -1, 0);
			if (r < 0)
				return r;
		}
		return 0;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	return off ? q_update_refcount(s, off, -1, 0) : 0;
}

/* What an L2 entry that no longer points there pointed at is released once the change is on
 * disk (q_writeback): released earlier, a crash could leave a table pointing at a cluster
 * whose refcount is 0, which is corruption; released later, it is only a leak. */
static int q_release_later(struct qcow2 *s, uint64_t e)
{
	if (!(e & QCOW2_COMPRESSED) && !(e & QCOW2_OFFSET_MASK))
		return 0;
	if (s->nreleases == s->releases_cap) {
		size_t cap = s->releases_cap ? s->releases_cap * 2 : 64;
		uint64_t *p = cap <= QCOW2_MAX_PENDING_RELEASES ? realloc(s->releases, cap * 8) : NULL;
		if (!p) {
			int r = q_writeback(s); /* empties the list */
			if (r < 0)
				return r;
			return q_release(s, e);
		}
		s->releases = p;
		s->releases_cap = cap;
	}
	s->releases[s->nreleases++] = e;
	s->meta_dirty = true;
	return 0;
}

/* Puts the cached L2 changes on disk, in the order that keeps every moment consistent (what
 * QEMU's qcow2 metadata cache does with its flush dependencies): the data and refcount
 * increments they depend on first (sync), then the tables (sync), then the releases of what
 * they no longer point at. A guest flush, an eviction and close call it, so allocating
 * writes cost no sync of their own. */
static int q_writeback(struct qcow2 *s)
{
	if (!s->meta_dirty)
		return 0;
	int r = qcow2_sync(s);
	for (unsigned i = 0; i < QCOW2_L2_CACHE && r == 0; i++) {
		struct qcow2_l2_slot *c = &s->l2c[i];
		if (c->offset && c->dirty && (r = q_wr(s, c->table, s->cluster_size,
							     c->offset)) == 0)
			c->dirty = false;
	}
	if (r == 0)
		r = qcow2_sync(s);
	for (size_t i = 0; i < s->nreleases && r == 0; i++)
		r = q_release(s, s->releases[i]);
	if (r < 0) {
		log_error("disk image '%s': writing its metadata failed (%s); further writes are "
			  "refused", s->path, strerror(-r));
		s->broken = true;
		return r;
	}
	s->nreleases = 0;
	s->meta_dirty = false;
	return 0;
}

/* Whether the guest range of cluster g reads as zeroes before a write to it: then a new
 * cluster, fresh space past the end of the file that reads as zeroes, needs only the new
 * bytes written, not a whole cluster. */
static bool q_reads_zero(const struct qcow2 *s, uint64_t e, uint64_t g)
{
	if (s->version >= 3 && !(e & QCOW2_COMPRESSED) && (e & QCOW2_ZERO))
		return true;
	if (e & (QCOW2_COMPRESSED | QCOW2_OFFSET_MASK))
		return false;
	return !s->backing || g >= block_size(s->backing);
}

/* Guest bytes [g, g + n) within one cluster from src (NULL: zeroes). */
static int q_write_part(struct qcow2 *s, struct block_dev *bd, uint64_t g, const uint8_t *src,
			uint64_t n)
{
	uint64_t l1i = g >> (s->cluster_bits + s->l2_bits);
	uint64_t l2i = (g >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
	uint64_t in = g & (s->cluster_size - 1);
	struct qcow2_l2_slot *c;
	int r = q_get_l2(s, bd, l1i, true, &c);
	if (r < 0)
		return r;
	uint64_t e = be64toh(c->table[l2i]);
	uint64_t off = e & QCOW2_OFFSET_MASK;
	bool zero = s->version >= 3 && (e & QCOW2_ZERO);
	if (!(e & QCOW2_COMPRESSED) && !zero && off && (e & QCOW2_COPIED)) {
		if (off & (s->cluster_size - 1))
			return q_corrupt(s, "data cluster offset 0x%llx is not cluster-aligned",
					 (unsigned long long)off);
		if (src)
			return q_wr(s, src, n, off + in);
		memset(s->buf, 0, n);
		return q_wr(s, s->buf, n, off + in);
	}
	/* A new cluster: old contents around the write, then the data, written before the L2
	 * entry points there (q_writeback orders them on disk). */
	uint64_t h;
	if (q_reads_zero(s, e, g - in)) {
		if ((r = q_alloc_cluster(s, &h, 0)) < 0)
			return r;
		if (src && (r = q_wr(s, src, n, h + in)) < 0)
			return r;
		/* The file reaches the cluster's end before an L2 entry can point there (else a
		 * crash could leave an entry past the end of the file): a zero byte where zeroes
		 * are due anyway, unless the data just written ends there. */
		static const uint8_t zero_byte;
		if ((!src || in + n < s->cluster_size) &&
		    (r = q_wr(s, &zero_byte, 1, h + s->cluster_size - 1)) < 0)
			return r;
	} else {
		if (n < s->cluster_size &&
		    (r = q_read_part(s, bd, g - in, s->buf, s->cluster_size)) < 0)
			return r;
		if (src)
			memcpy(s->buf + in, src, n);
		else
			memset(s->buf + in, 0, n);
		if ((r = q_alloc_cluster(s, &h, 0)) < 0 ||
		    (r = q_wr(s, s->buf, s->cluster_size, h)) < 0)
			return r;
	}
	/* The L2 table may have been evicted by the reads above: look it up again. */
	if ((r = q_get_l2(s, bd, l1i, true, &c)) < 0)
		return r;
	q_set_l2(s, c, l2i, h | QCOW2_COPIED);
	return q_release_later(s, e);
}

/* Whole cluster at g made to read as zeroes (write_zeroes) or deallocated (discard). */
static int q_clear_cluster(struct qcow2 *s, struct block_dev *bd, uint64_t g, bool discard)
{
	uint64_t l1i = g >> (s->cluster_bits + s->l2_bits);
	uint64_t l2i = (g >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
	struct qcow2_l2_slot *c;
	int r = q_get_l2(s, bd, l1i, false, &c);
	if (r < 0)
		return r;
	uint64_t e = c ? be64toh(c->table[l2i]) : 0;
	uint64_t want;
	if (!s->backing)
		want = 0; /* unallocated reads as zeroes */
	else if (s->version >= 3)
		want = QCOW2_ZERO;
	else if (discard)
		return 0; /* discard may do nothing */
	else
		return q_write_part(s, bd, g, NULL, s->cluster_size);
	if (e == want || (!c && want == 0))
		return 0;
	if ((r = q_get_l2(s, bd, l1i, true, &c)) < 0)
		return r;
	q_set_l2(s, c, l2i, want);
	return q_release_later(s, e);
}

/* ---- requests ---- */

static void iov_copy(const struct iovec *iov, int iovcnt, uint64_t pos, uint8_t *buf,
		     uint64_t n, bool to_iov)
{
	for (int i = 0; i < iovcnt && n; i++) {
		if (pos >= iov[i].iov_len) {
			pos -= iov[i].iov_len;
			continue;
		}
		uint64_t k = iov[i].iov_len - pos < n ? iov[i].iov_len - pos : n;
		uint8_t *p = (uint8_t *)iov[i].iov_base + pos;
		if (to_iov)
			memcpy(p, buf, k);
		else
			memcpy(buf, p, k);
		buf += k;
		n -= k;
		pos = 0;
	}
}

int qcow2_flush_meta(struct qcow2 *s)
{
	if (s->broken)
		return -EIO;
	if (!s->meta_dirty)
		return 0;
	int r = q_writeback(s); /* ends with a sync */
	return r < 0 ? r : 1;
}

int qcow2_run(struct block_dev *bd, struct block_request *req, uint64_t len)
{
	struct qcow2 *s = bd->driver_state;
	if (s->broken && req->op != BLOCK_OP_READ)
		return -EIO;
	if (req->op == BLOCK_OP_FLUSH) {
		int r = qcow2_flush_meta(s);
		return r != 0 ? (r < 0 ? r : 0) : qcow2_sync(s);
	}
	uint64_t pos = 0;
	while (pos < len) {
		uint64_t g = req->offset + pos;
		uint64_t in = g & (s->cluster_size - 1);
		uint64_t n = s->cluster_size - in < len - pos ? s->cluster_size - in : len - pos;
		int r = 0;
		switch (req->op) {
		case BLOCK_OP_READ:
			r = q_read_part(s, bd, g, s->dbuf, n);
			if (r == 0)
				iov_copy(req->iov, req->iovcnt, pos, s->dbuf, n, true);
			break;
		case BLOCK_OP_WRITE:
			iov_copy(req->iov, req->iovcnt, pos, s->dbuf, n, false);
			r = q_write_part(s, bd, g, s->dbuf, n);
			break;
		case BLOCK_OP_WRITE_ZEROES:
			r = n == s->cluster_size ? q_clear_cluster(s, bd, g, false)
						 : q_write_part(s, bd, g, NULL, n);
			break;
		case BLOCK_OP_DISCARD:
			if (n == s->cluster_size)
				r = q_clear_cluster(s, bd, g, true);
			break;
		default:
			r = -EINVAL;
		}
		if (r < 0)
			return r;
		pos += n;
	}
	return 0;
}

int qcow2_map_cached(struct qcow2 *s, const struct block_dev *bd, uint64_t g, uint64_t n,
		     bool write, uint64_t *host)
{
	uint64_t l1i = g >> (s->cluster_bits + s->l2_bits);
	uint64_t l2i = (g >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
	uint64_t in = g & (s->cluster_size - 1);
	uint64_t l1e = s->l1[l1i], off = l1e & QCOW2_OFFSET_MASK, e = 0;
	/* A write into a table shared with a snapshot copies the table first. */
	if (write && (s->broken || !(l1e & QCOW2_COPIED)))
		return -EAGAIN;
	if (off) {
		struct qcow2_l2_slot *c = NULL;
		for (unsigned i = 0; i < QCOW2_L2_CACHE && !c; i++)
			if (s->l2c[i].offset == off)
				c = &s->l2c[i];
		if (!c)
			return -EAGAIN;
		c->last_use = ++s->tick;
		e = be64toh(c->table[l2i]);
	}
	if (e & QCOW2_COMPRESSED)
		return -EAGAIN;
	uint64_t h = e & QCOW2_OFFSET_MASK;
	bool zero = s->version >= 3 && (e & QCOW2_ZERO);
	if (write && (zero || !h || !(e & QCOW2_COPIED)))
		return -EAGAIN;
	if (!write && zero)
		return 0;
	if (!write && !h)
		return s->backing && g < block_size(s->backing) ? -EAGAIN : 0;
	if (h & (s->cluster_size - 1))
		return -EAGAIN; /* the worker reports the corruption */
	/* The engine fails a read past the end of the file, where the worker's path reads
	 * zeroes: clusters this driver allocated reach their end, but the image as opened may
	 * end inside its last cluster. */
	uint64_t fsize = bd->file.size;
	if (h + in + n > fsize && h < ((fsize + s->cluster_size - 1) & ~(s->cluster_size - 1)))
		return -EAGAIN;
	*host = h + in;
	return 1;
}

/* block_extent: from the L2 entries, cluster by cluster, asking the backing file about the
 * clusters that read through to it. */
int qcow2_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n)
{
	struct qcow2 *s = bd->driver_state;
	int kind = -1;
	uint64_t pos = off, end = off + len;
	while (pos < end) {
		uint64_t l1i = pos >> (s->cluster_bits + s->l2_bits);
		uint64_t l2i = (pos >> s->cluster_bits) & ((1ull << s->l2_bits) - 1);
		uint64_t step = s->cluster_size - (pos & (s->cluster_size - 1));
		if (step > end - pos)
			step = end - pos;
		struct qcow2_l2_slot *c;
		int r = q_get_l2(s, bd, l1i, false, &c), k;
		if (r < 0)
			return r;
		uint64_t e = c ? be64toh(c->table[l2i]) : 0;
		if (s->version >= 3 && !(e & QCOW2_COMPRESSED) && (e & QCOW2_ZERO))
			k = 0;
		else if (e & (QCOW2_COMPRESSED | QCOW2_OFFSET_MASK))
			k = 1;
		else if (!s->backing || pos >= block_size(s->backing))
			k = 0;
		else if ((k = block_extent(s->backing, pos, step, &step)) < 0)
			return k;
		if (kind >= 0 && k != kind)
			break;
		kind = k;
		pos += step;
	}
	*n = pos - off;
	return kind;
}

void qcow2_close_meta(struct qcow2 *s)
{
	if (s && !s->broken)
		q_writeback(s);
}
