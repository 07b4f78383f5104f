/* `kvmkit-img commit [-f FMT] [-d] [-p] [-q] FILE`: copies what FILE's top layer holds (data,
 * and zero clusters as zeroes) into its backing file, then, unless -d, empties FILE so that it
 * reads through to the backing file again, as qemu-img commit does.
 *
 * Order for data safety: every copied range is written and the backing file flushed before
 * FILE changes at all, so a failure or crash during the copy leaves FILE whole. FILE is then
 * emptied by zeroing its active L1 table in one write (each entry is either still the old one
 * or zero, both consistent) and flushing, and only then are the refcounts of the dropped L2
 * tables and data clusters lowered: a crash there leaves nothing worse than leaked clusters.
 * Clusters shared with internal snapshots keep the snapshots' references. Last, the clusters
 * after the last one still in use are cut off the file (qemu-img leaves a small file too). */
#include "img/img.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/layer.h"
#include "img/qcow2_meta.h"

#define COMMIT_CHUNK (2u << 20) /* bytes copied per request: a multiple of every cluster size */

struct commit {
	const char *path;
	struct img_layer top;      /* FILE's own metadata: what its top layer holds */
	struct block_dev *img;     /* FILE, read-only: its data */
	struct block_dev *base;    /* the backing file, writable */
	char base_path[PATH_MAX];
	uint8_t *buf;
	bool show;
};

/* Copies one run of the top layer into the backing file. */
static int copy_run(struct commit *c, uint64_t pos, uint64_t len, enum img_alloc a)
{
	int r;
	if (a == IMG_ALLOC_ZERO) {
		if ((r = block_io(c->base, BLOCK_OP_WRITE_ZEROES, pos, NULL, len)) < 0)
			img_error("error while writing zeroes to '%s' at offset %llu: %s",
				  c->base_path, (unsigned long long)pos, strerror(-r));
		return r;
	}
	if ((r = block_io(c->img, BLOCK_OP_READ, pos, c->buf, len)) < 0) {
		img_error("error while reading '%s' at offset %llu: %s", c->path,
			  (unsigned long long)pos, strerror(-r));
		return r;
	}
	if ((r = block_io(c->base, BLOCK_OP_WRITE, pos, c->buf, len)) < 0)
		img_error("error while writing '%s' at offset %llu: %s", c->base_path,
			  (unsigned long long)pos, strerror(-r));
	return r;
}

/* Copies everything the top layer holds, then flushes the backing file. */
static int copy_top(struct commit *c)
{
	uint64_t size = c->top.size;
	int last = -100, r = 0;
	img_progress(c->show, 0, size, &last);
	for (uint64_t pos = 0, len; pos < size && r == 0; pos += len) {
		enum img_alloc a = IMG_ALLOC_NONE;
		if (img_layer_run(&c->top, pos, COMMIT_CHUNK, &a, &len) < 0)
			return -EIO;
		if (a != IMG_ALLOC_NONE)
			r = copy_run(c, pos, len, a);
		img_progress(c->show, pos + len, size, &last);
	}
	if (r == 0 && (r = block_io(c->base, BLOCK_OP_FLUSH, 0, NULL, 0)) < 0)
		img_error("error while flushing '%s': %s", c->base_path, strerror(-r));
	if (c->show)
		printf("\n");
	return r;
}

/* Drops one reference to what an L2 entry points at. */
static int release_entry(struct img_q2_rc *rc, const struct img_q2 *q, uint64_t e)
{
	uint64_t now;
	if (e & QCOW2_COMPRESSED) {
		uint64_t start, len;
		img_q2_compressed_range(q, e, &start, &len);
		for (uint64_t h = start & ~(q->cluster_size - 1); h < start + len;
		     h += q->cluster_size) {
			int r = img_q2_rc_add(rc, h, -1, &now);
			if (r < 0)
				return r;
		}
		return 0;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	return off ? img_q2_rc_add(rc, off, -1, &now) : 0;
}

/* Drops the active L1 table's reference to an L2 table, and when that was the last one (no
 * snapshot shares it), the table's references to its clusters. */
static int release_l2(struct img_q2_rc *rc, const struct img_q2 *q, uint64_t l2off, uint8_t *l2)
{
	uint64_t now;
	int r = img_q2_rc_add(rc, l2off, -1, &now);
	if (r < 0 || now > 0)
		return r;
	if ((r = img_q2_read(q, l2, q->cluster_size, l2off)) < 0)
		return r;
	for (uint64_t i = 0; i < img_q2_l2_entries(q) && r == 0; i++)
		r = release_entry(rc, q, img_q2_be64(l2 + i * 8));
	return r;
}

/* Cuts the clusters after the last one in use off the file: the freed data is mostly there,
 * as clusters are appended. Safe once the lowered refcounts are on disk. */
static int trim_file(const struct img_q2 *q, struct img_q2_rc *rc)
{
	uint64_t end;
	int r = img_q2_rc_used_end(rc, &end);
	if (r < 0 || end < q->cluster_size || end >= q->fsize)
		return r;
	if (ftruncate(q->fd, (off_t)end) < 0 || fdatasync(q->fd) < 0)
		return -errno;
	return 0;
}

/* Lowers the refcounts of everything the old active L1 table referenced, flushes them, then
 * trims the file. */
static int release_tables(const struct img_q2 *q, const uint64_t *l1)
{
	struct img_q2_rc rc;
	uint8_t *l2 = malloc(q->cluster_size);
	int r = l2 ? img_q2_rc_begin(q, &rc) : -ENOMEM;
	for (uint32_t i = 0; i < q->l1_size && r == 0; i++) {
		uint64_t off = l1[i] & QCOW2_OFFSET_MASK;
		if (off)
			r = release_l2(&rc, q, off, l2);
	}
	if (r == 0 && (r = img_q2_rc_flush(&rc)) == 0 && fdatasync(q->fd) < 0)
		r = -errno;
	if (r == 0)
		r = trim_file(q, &rc);
	int r2 = l2 ? img_q2_rc_end(&rc) : 0;
	free(l2);
	return r ? r : r2;
}

/* Points every active L1 entry nowhere, in one write, and flushes. */
static int zero_l1(const struct img_q2 *q)
{
	uint8_t *zero = calloc(q->l1_size ? q->l1_size : 1, 8);
	if (!zero)
		return -ENOMEM;
	int r = img_q2_write(q, zero, (uint64_t)q->l1_size * 8, q->l1_offset);
	free(zero);
	if (r == 0 && fdatasync(q->fd) < 0)
		r = -errno;
	return r;
}

/* Makes every cluster of FILE unallocated (see the top of the file for the order). */
static int empty_image(const char *path)
{
	struct img_q2 q;
	if (img_q2_open(path, true, &q) < 0)
		return -EIO;
	int r;
	uint64_t *l1 = img_q2_read_l1(&q, q.l1_offset, q.l1_size);
	if (!l1)
		r = -EIO;
	else if ((r = zero_l1(&q)) < 0)
		img_error("'%s': cannot empty the image (its data is still all there): %s", path,
			  strerror(-r));
	else if ((r = release_tables(&q, l1)) < 0)
		img_error("'%s' was emptied, but some of its clusters could not be freed (%s): "
			  "'kvmkit-img check -r leaks' reclaims them", path, strerror(-r));
	free(l1);
	img_q2_close(&q);
	return r;
}

/* Opens FILE and its backing file; checks that the commit can run before anything changes. */
static int commit_open(struct commit *c, const char *fmt, bool keep)
{
	if (!fmt && !(fmt = img_probe(c->path)))
		return -1;
	if (strcmp(fmt, "qcow2") != 0) {
		img_error("Image does not have a backing file");
		return -1;
	}
	if (!img_layer_open(&c->top, c->path, fmt))
		return -1;
	const struct img_q2 *q = &c->top.q;
	if (!q->backing[0]) {
		img_error("Image does not have a backing file");
		return -1;
	}
	if (!keep && (q->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
		img_error("'%s' is marked dirty or corrupt: run 'kvmkit-img check' first", c->path);
		return -1;
	}
	if (!keep && access(c->path, W_OK) < 0) {
		img_error("could not open '%s' for writing: %s", c->path, strerror(errno));
		return -1;
	}
	if (!img_backing_path(c->path, q->backing, c->base_path, sizeof(c->base_path))) {
		img_error("'%s': the backing file path is too long", c->path);
		return -1;
	}
	if (img_open(c->path, fmt, true, &c->img) < 0 ||
	    img_open(c->base_path, q->backing_fmt[0] ? q->backing_fmt : NULL, false, &c->base) < 0)
		return -1;
	if (block_size(c->base) < c->top.size) {
		/* qemu-img grows the backing file here; kvmkit-img leaves that to resize. */
		img_error("'%s' is larger than its backing file '%s': grow the backing file to %llu "
			  "bytes with 'kvmkit-img resize' first", c->path, c->base_path,
			  (unsigned long long)c->top.size);
		return -1;
	}
	if (!(c->buf = malloc(COMMIT_CHUNK))) {
		img_error("out of memory");
		return -1;
	}
	return 0;
}

static void commit_close(struct commit *c)
{
	block_close(c->base);
	block_close(c->img);
	c->base = c->img = NULL;
	img_layer_close(&c->top);
	free(c->buf);
	c->buf = NULL;
}

int img_commit(int argc, char **argv)
{
	const char *fmt = NULL;
	bool keep = false, show = false, quiet = false;
	int ch;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":f:dpqh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': fmt = optarg; break;
		case 'd': keep = true; break;
		case 'p': show = true; break;
		case 'q': quiet = true; break;
		case 'h':
			printf("Usage: kvmkit-img commit [-f FMT] [-d] [-p] [-q] FILE\n");
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	if (!img_one_file(argc))
		return 1;
	struct commit c = { .path = argv[optind], .show = show && !quiet };
	c.top.fd = c.top.q.fd = -1; /* nothing open yet: commit_close may run */
	if (!img_known_format(c.path, fmt)) /* before anything is opened */
		return 1;
	int r = commit_open(&c, fmt, keep);
	if (r == 0)
		r = copy_top(&c);
	commit_close(&c); /* the backing file is flushed and closed before FILE changes */
	if (r == 0 && !keep)
		r = empty_image(c.path);
	if (r < 0)
		return 1;
	if (!quiet)
		printf("Image committed.\n");
	return 0;
}
