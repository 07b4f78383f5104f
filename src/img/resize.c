/* `kvmkit-img resize [-f FMT] [--shrink] FILE [+|-]SIZE`: raw images are truncated (shrinking
 * needs --shrink, as with qemu-img); qcow2 images grow by updating the header's size, after
 * writing a larger L1 table elsewhere when the new size needs one. The order keeps a crash at
 * any point harmless: new L1 written and flushed, then its clusters' refcounts raised, then
 * the header switched to it (one sector write), then the old L1's refcounts dropped; a crash
 * between steps leaves at most leaked clusters, which `check -r leaks` reclaims.
 *
 * qcow2 shrink (--shrink) discards the guest clusters from the new end on, as qemu-img does:
 * the L2 entries and L1 entries beyond are zeroed and flushed first, then the header's size,
 * then the refcounts of the data clusters and L2 tables no longer referenced are dropped, and
 * finally a tail of the file that no refcount covers any more is cut off. The L1 table keeps
 * its size (entries beyond are zero). Images with internal snapshots are refused: their
 * tables would need the same surgery. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"
#include "img/qcow2_meta.h"
#include "lib/size.h"

static int flush(const struct img_q2 *q)
{
	return fdatasync(q->fd) < 0 ? -errno : 0;
}

/* Adds delta to the stored refcount of clusters [first, first + n), all covered by existing
 * refcount blocks (checked by the caller). */
static int rc_add(const struct img_q2 *q, const uint64_t *rt, uint64_t first, uint64_t n,
		  int delta, uint8_t *blk)
{
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	for (uint64_t c = first; c < first + n;) {
		uint64_t block = c / per, off = rt[block] & QCOW2_REFTABLE_MASK;
		if (img_q2_read(q, blk, q->cluster_size, off) < 0)
			return -EIO;
		for (; c < first + n && c / per == block; c++) {
			uint64_t v = img_q2_rc_get(q, blk, c % per);
			if (delta < 0 && v == 0)
				return -EINVAL;
			img_q2_rc_set(q, blk, c % per, delta < 0 ? v - 1 : v + 1);
		}
		int r = img_q2_write(q, blk, q->cluster_size, off);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The refcount table, host-endian, or NULL after an error sentence. */
static uint64_t *read_reftable(const struct img_q2 *q, uint64_t *entries)
{
	*entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
	uint64_t *rt = calloc(*entries ? *entries : 1, 8);
	if (!rt) {
		img_error("out of memory");
		return NULL;
	}
	if (img_q2_read(q, rt, *entries * 8, q->rt_offset) < 0) {
		img_error("'%s': the refcount table cannot be read", q->path);
		free(rt);
		return NULL;
	}
	for (uint64_t i = 0; i < *entries; i++)
		rt[i] = be64toh(rt[i]);
	return rt;
}

/* Opens a qcow2 image for resizing: refused when its refcounts may be wrong (dirty or
 * corrupt) or when it has persistent bitmaps. Returns -1 after an error sentence. */
static int open_for_resize(const char *path, struct img_q2 *q)
{
	if (img_q2_open(path, true, q) < 0)
		return -1;
	if (q->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)) {
		img_error("'%s' is marked dirty or corrupt: run 'kvmkit-img check -r all' first",
			  path);
	} else if (q->has_bitmaps) {
		img_error("'%s' has persistent bitmaps, which resize does not support", path);
	} else {
		return 0;
	}
	img_q2_close(q);
	return -1;
}

/* Host clusters whose refcount a shrink drops by one each (a cluster may appear twice:
 * compressed clusters share host clusters). */
struct freelist {
	uint64_t *c;
	size_t n, cap;
};

static int fl_add(struct freelist *f, uint64_t cluster)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		uint64_t *c = realloc(f->c, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		f->c = c;
		f->cap = cap;
	}
	f->c[f->n++] = cluster;
	return 0;
}

/* Queues the host clusters an L2 entry holds a reference on. */
static int fl_add_entry(struct freelist *f, const struct img_q2 *q, uint64_t e)
{
	if (e & QCOW2_COMPRESSED) {
		uint64_t start, len;
		img_q2_compressed_range(q, e, &start, &len);
		for (uint64_t c = start >> q->cluster_bits; c <= (start + len - 1) >> q->cluster_bits;
		     c++)
			if (fl_add(f, c) < 0)
				return -ENOMEM;
		return 0;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	return off ? fl_add(f, off >> q->cluster_bits) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Drops the queued references, one rc_add per run of consecutive clusters. */
static int fl_release(struct freelist *f, const struct img_q2 *q, const uint64_t *rt,
		      uint64_t rt_entries, uint8_t *blk)
{
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	qsort(f->c, f->n, sizeof(*f->c), cmp_u64);
	for (size_t i = 0, j; i < f->n; i = j) {
		for (j = i + 1; j < f->n && f->c[j] == f->c[j - 1] + 1; j++)
			;
		for (size_t k = i; k < j; k++)
			if (f->c[k] / per >= rt_entries || !(rt[f->c[k] / per] & QCOW2_REFTABLE_MASK))
				return -EINVAL;
		int r = rc_add(q, rt, f->c[i], j - i, -1, blk);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A table pointer a shrink may follow: cluster aligned and inside the file. */
static bool table_ok(const struct img_q2 *q, uint64_t off)
{
	return !(off & (q->cluster_size - 1)) && off < q->fsize &&
	       q->cluster_size <= q->fsize - off;
}

/* Zeroes the L2 entries of guest clusters from first_gone on in the L2 table at l2off (whose
 * first guest cluster is base), queueing their clusters; *empty tells whether nothing is
 * left in the table. */
static int shrink_l2(const struct img_q2 *q, uint64_t l2off, uint64_t base, uint64_t first_gone,
		     uint8_t *l2, struct freelist *f, bool *empty)
{
	if (img_q2_read(q, l2, q->cluster_size, l2off) < 0)
		return -EIO;
	bool changed = false;
	*empty = true;
	for (uint64_t j = 0; j < img_q2_l2_entries(q); j++) {
		uint64_t e = img_q2_be64(l2 + j * 8);
		if (base + j < first_gone) {
			*empty &= e == 0;
			continue;
		}
		if (!e)
			continue;
		if (fl_add_entry(f, q, e) < 0)
			return -ENOMEM;
		img_q2_put_be64(l2 + j * 8, 0);
		changed = true;
	}
	return changed && !*empty ? img_q2_write(q, l2, q->cluster_size, l2off) : 0;
}

/* Whether refcount block idx (at off, loaded in blk) counts nothing but perhaps itself. */
static bool block_idle(const struct img_q2 *q, uint64_t idx, uint64_t off, const uint8_t *blk)
{
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order, self = off >> q->cluster_bits;
	for (uint64_t j = 0; j < per; j++) {
		uint64_t v = img_q2_rc_get(q, blk, j);
		if (v && !(idx * per + j == self && v == 1))
			return false;
	}
	return true;
}

/* Drops the refcount blocks that count nothing but themselves, as qemu-img does, so they do not
 * pin the end of the file: the table entry is cleared and flushed first (a crash then leaves
 * the block leaked), then the block's own refcount is dropped where another block holds it. */
static int drop_idle_blocks(const struct img_q2 *q, uint64_t *rt, uint64_t rt_entries,
			    uint8_t *blk)
{
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	for (uint64_t i = 0; i < rt_entries; i++) {
		uint64_t off = rt[i] & QCOW2_REFTABLE_MASK, self = off >> q->cluster_bits;
		if (!off)
			continue;
		int r = img_q2_read(q, blk, q->cluster_size, off);
		if (r < 0 || !block_idle(q, i, off, blk))
			continue;
		uint8_t zero[8] = { 0 };
		if ((r = img_q2_write(q, zero, 8, q->rt_offset + i * 8)) < 0 || (r = flush(q)) < 0)
			return r;
		rt[i] = 0;
		if (self / per != i && (r = rc_add(q, rt, self, 1, -1, blk)) < 0)
			return r;
	}
	return flush(q);
}

/* Cuts off the tail of the file that no refcount covers any more (qemu-img does the same). */
static int truncate_free_tail(const struct img_q2 *q, const uint64_t *rt, uint64_t rt_entries,
			      uint8_t *blk)
{
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order, end = 0;
	uint64_t nclusters = (q->fsize + q->cluster_size - 1) >> q->cluster_bits;
	for (uint64_t i = 0; i < rt_entries && i * per < nclusters; i++) {
		uint64_t off = rt[i] & QCOW2_REFTABLE_MASK;
		if (!off)
			continue;
		if (img_q2_read(q, blk, q->cluster_size, off) < 0)
			return -EIO;
		for (uint64_t j = 0; j < per && i * per + j < nclusters; j++)
			if (img_q2_rc_get(q, blk, j))
				end = i * per + j + 1;
	}
	if (end && end < nclusters && ftruncate(q->fd, (off_t)(end << q->cluster_bits)) < 0)
		return -errno;
	return 0;
}

/* Drops the guest clusters from the new end on (see the top of the file for the order). */
static int shrink_tables(struct img_q2 *q, uint64_t new_size, uint64_t *l1, struct freelist *f,
			 uint8_t *l2)
{
	uint64_t per_l2 = img_q2_l2_entries(q);
	uint64_t first_gone = (new_size + q->cluster_size - 1) >> q->cluster_bits;
	bool l1_changed = false;
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK, base = (uint64_t)i * per_l2;
		if (!l2off || base + per_l2 <= first_gone)
			continue;
		if (!table_ok(q, l2off)) {
			img_error("'%s': L1 entry %u points outside the file: run 'kvmkit-img "
				  "check'", q->path, i);
			return -EINVAL;
		}
		bool empty;
		int r = shrink_l2(q, l2off, base, first_gone, l2, f, &empty);
		if (r < 0)
			return r;
		if (empty) { /* the whole table goes: the L1 entry first, then its cluster */
			l1[i] = 0;
			l1_changed = true;
			if (fl_add(f, l2off >> q->cluster_bits) < 0)
				return -ENOMEM;
		}
	}
	if (!l1_changed)
		return 0;
	uint8_t *be = malloc((uint64_t)q->l1_size * 8);
	if (!be)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->l1_size; i++)
		img_q2_put_be64(be + (uint64_t)i * 8, l1[i]);
	int r = img_q2_write(q, be, (uint64_t)q->l1_size * 8, q->l1_offset);
	free(be);
	return r;
}

static int shrink_qcow2(const char *path, uint64_t new_size)
{
	struct img_q2 q;
	if (open_for_resize(path, &q) < 0)
		return 1;
	int rc = 1, r;
	uint64_t *rt = NULL, *l1 = NULL, rt_entries;
	uint8_t *blk = NULL;
	struct freelist f = { 0 };
	if (q.nb_snapshots) {
		img_error("'%s' has internal snapshots: shrinking it is not supported (delete them "
			  "first)", path);
		goto out;
	}
	if (!(rt = read_reftable(&q, &rt_entries)) ||
	    !(l1 = img_q2_read_l1(&q, q.l1_offset, q.l1_size)))
		goto out;
	if (!(blk = malloc(q.cluster_size))) {
		img_error("out of memory");
		goto out;
	}
	uint8_t be[8];
	img_q2_put_be64(be, new_size);
	if ((r = shrink_tables(&q, new_size, l1, &f, blk)) < 0 || (r = flush(&q)) < 0 ||
	    (r = img_q2_write(&q, be, 8, 24)) < 0 || (r = flush(&q)) < 0) {
		if (r != -EINVAL)
			img_error("'%s': cannot shrink the tables: %s", path, strerror(-r));
		goto out;
	}
	if ((r = fl_release(&f, &q, rt, rt_entries, blk)) < 0 || (r = flush(&q)) < 0) {
		/* The tables no longer point at the clusters: they are only leaked. */
		img_error("'%s': resized, but the discarded clusters could not all be freed (%s): "
			  "'kvmkit-img check -r leaks' reclaims them", path, strerror(-r));
		goto out;
	}
	if ((r = drop_idle_blocks(&q, rt, rt_entries, blk)) < 0 ||
	    (r = truncate_free_tail(&q, rt, rt_entries, blk)) < 0)
		img_error("'%s': resized, but the free end of the file could not be cut off: %s",
			  path, strerror(-r));
	rc = r < 0;
out:
	free(f.c);
	free(rt);
	free(l1);
	free(blk);
	img_q2_close(&q);
	return rc;
}

static int grow_qcow2(const char *path, uint64_t new_size)
{
	struct img_q2 q;
	if (open_for_resize(path, &q) < 0)
		return 1;
	int rc = 1;
	uint64_t *rt = NULL, *l1 = NULL;
	uint8_t *blk = NULL, *newl1 = NULL;
	uint64_t need = img_q2_l1_needed(&q, new_size);
	uint8_t be[8];
	if (need > q.l1_size) {
		if (need * 8 > QCOW2_MAX_TABLE_BYTES) {
			img_error("'%s': the new size needs an L1 table larger than %u MiB", path,
				  QCOW2_MAX_TABLE_BYTES >> 20);
			goto out;
		}
		uint64_t cs = q.cluster_size, rt_entries;
		uint64_t per = (cs * 8) >> q.refcount_order;
		if (!(rt = read_reftable(&q, &rt_entries)))
			goto out;
		blk = malloc(cs);
		l1 = img_q2_read_l1(&q, q.l1_offset, q.l1_size);
		uint64_t nclust = (need * 8 + cs - 1) / cs;
		newl1 = calloc(nclust, cs);
		if (!blk || !l1 || !newl1) {
			img_error("out of memory");
			goto out;
		}
		/* The new table goes at the end of the file, where every cluster must have a
		 * refcount block (growing the refcount table is not supported) and be free. */
		uint64_t first = (q.fsize + cs - 1) / cs;
		for (uint64_t c = first; c < first + nclust; c++) {
			uint64_t off = c / per < rt_entries ? rt[c / per] & QCOW2_REFTABLE_MASK : 0;
			if (!off || (off & (cs - 1)) || off + cs > q.fsize ||
			    img_q2_read(&q, blk, cs, off) < 0) {
				img_error("'%s': growing the L1 table needs a new refcount block, "
					  "which resize does not support", path);
				goto out;
			}
			if (img_q2_rc_get(&q, blk, c % per) != 0) {
				img_error("'%s': the clusters after the end of the file are in use; "
					  "run 'kvmkit-img check'", path);
				goto out;
			}
		}
		/* The old L1 table's clusters must be accounted for before being dropped. */
		uint64_t old_first = q.l1_offset / cs;
		uint64_t old_n = ((uint64_t)q.l1_size * 8 + cs - 1) / cs;
		if (q.l1_size && (q.l1_offset & (cs - 1))) {
			img_error("'%s': the L1 table is not cluster aligned", path);
			goto out;
		}
		for (uint32_t i = 0; i < q.l1_size; i++)
			img_q2_put_be64(newl1 + (uint64_t)i * 8, l1[i]);
		int r;
		if ((r = img_q2_write(&q, newl1, nclust * cs, first * cs)) < 0 ||
		    (r = flush(&q)) < 0 || (r = rc_add(&q, rt, first, nclust, +1, blk)) < 0 ||
		    (r = flush(&q)) < 0) {
			img_error("'%s': cannot write the new L1 table: %s", path, strerror(-r));
			goto out;
		}
		/* Size, encryption method, L1 size, L1 offset: bytes 24..47, one sector. */
		uint8_t h[24];
		img_q2_put_be64(h, new_size);
		img_q2_put_be32(h + 8, 0);
		img_q2_put_be32(h + 12, (uint32_t)need);
		img_q2_put_be64(h + 16, first * cs);
		if ((r = img_q2_write(&q, h, sizeof(h), 24)) < 0 || (r = flush(&q)) < 0) {
			img_error("'%s': cannot update the header: %s", path, strerror(-r));
			goto out;
		}
		if (q.l1_size && ((r = rc_add(&q, rt, old_first, old_n, -1, blk)) < 0 ||
				  (r = flush(&q)) < 0)) {
			/* The image is consistent and resized; the old table is only leaked. */
			img_error("'%s': resized, but the old L1 table could not be freed (%s): "
				  "'kvmkit-img check -r leaks' reclaims it", path, strerror(-r));
			goto out;
		}
	} else {
		int r;
		img_q2_put_be64(be, new_size);
		if ((r = img_q2_write(&q, be, 8, 24)) < 0 || (r = flush(&q)) < 0) {
			img_error("'%s': cannot update the header: %s", path, strerror(-r));
			goto out;
		}
	}
	rc = 0;
out:
	free(rt);
	free(l1);
	free(blk);
	free(newl1);
	img_q2_close(&q);
	return rc;
}

int img_resize(int argc, char **argv)
{
	const char *fmt = NULL;
	bool shrink = false;
	int c;
	enum { OPT_SHRINK = 256 };
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "shrink", no_argument, NULL, OPT_SHRINK },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	/* A negative size ("-1G") would look like an option: take it off first. */
	const char *size_arg = NULL;
	if (argc >= 3 && argv[argc - 1][0] == '-' && argv[argc - 1][1] >= '0' &&
	    argv[argc - 1][1] <= '9')
		size_arg = argv[--argc];
	optind = 1;
	while ((c = getopt_long(argc, argv, ":f:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case OPT_SHRINK: shrink = true; break;
		case 'q': break;
		case 'h':
			printf("Usage: kvmkit-img resize [-f FMT] [--shrink] FILE [+|-]SIZE\n");
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	if (!size_arg && optind < argc)
		size_arg = argv[--argc];
	if (!size_arg || optind != argc - 1) {
		img_error("expecting an image file name and a size");
		return 1;
	}
	const char *path = argv[optind];
	if (!img_known_format(path, fmt))
		return 1;
	if (!fmt && !(fmt = img_probe(path)))
		return 1;
	bool qcow2 = strcmp(fmt, "qcow2") == 0;
	int sign = size_arg[0] == '+' ? 1 : size_arg[0] == '-' ? -1 : 0;
	uint64_t n;
	if (size_parse(size_arg + (sign != 0), 1, &n) < 0) {
		img_error("invalid image size '%s'", size_arg);
		return 1;
	}
	uint64_t cur;
	struct img_qcow2_info qi;
	struct stat st;
	if (qcow2) {
		if (img_qcow2_read_info(path, &qi) < 0)
			return 1;
		cur = qi.size;
	} else {
		if (stat(path, &st) < 0) {
			img_error("could not open '%s': %s", path, strerror(errno));
			return 1;
		}
		cur = (uint64_t)st.st_size;
	}
	uint64_t want = sign > 0 ? cur + n : sign < 0 ? cur - n : n;
	if ((sign > 0 && want < cur) || (sign < 0 && n >= cur) || want == 0 ||
	    want > (1ull << 62)) {
		img_error(sign < 0 || want == 0 ? "New image size must be positive"
						: "the new image size is too large");
		return 1;
	}
	if (want < cur && !shrink) {
		img_error("Use the --shrink option to perform a shrink operation.");
		return 1;
	}
	if (qcow2) {
		if (want % 512) {
			img_error("The new size must be a multiple of 512");
			return 1;
		}
		if (want < cur && shrink_qcow2(path, want) != 0)
			return 1;
		if (want > cur && grow_qcow2(path, want) != 0)
			return 1;
	} else {
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)want) < 0 || fsync(fd) < 0) {
			img_error("could not resize '%s': %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return 1;
		}
		close(fd);
	}
	printf("Image resized.\n");
	return 0;
}
