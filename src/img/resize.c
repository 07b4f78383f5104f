/* `kvmkit-img resize [-f FMT] [--shrink] FILE [+|-]SIZE`: raw images are truncated (shrinking
 * needs --shrink, as with qemu-img); qcow2 images grow by updating the header's size, after
 * writing a larger L1 table elsewhere when the new size needs one. The order keeps a crash at
 * any point harmless: new L1 written and flushed, then its clusters' refcounts raised, then
 * the header switched to it (one sector write), then the old L1's refcounts dropped; a crash
 * between steps leaves at most leaked clusters, which `check -r leaks` reclaims. qcow2 shrink
 * is refused. */
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
		uint64_t off = rt[c / per] & QCOW2_REFTABLE_MASK;
		if (img_q2_read(q, blk, q->cluster_size, off) < 0)
			return -EIO;
		for (; c < first + n && (c == first || c % per); c++) {
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

static int grow_qcow2(const char *path, uint64_t new_size)
{
	struct img_q2 q;
	if (img_q2_open(path, true, &q) < 0)
		return 1;
	int rc = 1;
	uint64_t *rt = NULL, *l1 = NULL;
	uint8_t *blk = NULL, *newl1 = NULL;
	if (q.incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)) {
		img_error("'%s' is marked dirty or corrupt: run 'kvmkit-img check' first", path);
		goto out;
	}
	if (q.has_bitmaps) {
		img_error("'%s' has persistent bitmaps, which resize does not support", path);
		goto out;
	}
	uint64_t need = img_q2_l1_needed(&q, new_size);
	uint8_t be[8];
	if (need > q.l1_size) {
		if (need * 8 > QCOW2_MAX_TABLE_BYTES) {
			img_error("'%s': the new size needs an L1 table larger than %u MiB", path,
				  QCOW2_MAX_TABLE_BYTES >> 20);
			goto out;
		}
		uint64_t cs = q.cluster_size, rt_entries = (uint64_t)q.rt_clusters * cs / 8;
		uint64_t per = (cs * 8) >> q.refcount_order;
		rt = calloc(rt_entries ? rt_entries : 1, 8);
		blk = malloc(cs);
		l1 = img_q2_read_l1(&q, q.l1_offset, q.l1_size);
		uint64_t nclust = (need * 8 + cs - 1) / cs;
		newl1 = calloc(nclust, cs);
		if (!rt || !blk || !l1 || !newl1) {
			img_error("out of memory");
			goto out;
		}
		if (img_q2_read(&q, rt, rt_entries * 8, q.rt_offset) < 0) {
			img_error("'%s': the refcount table cannot be read", path);
			goto out;
		}
		for (uint64_t i = 0; i < rt_entries; i++)
			rt[i] = be64toh(rt[i]);
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
			img_error("the new size of a qcow2 image must be a multiple of 512");
			return 1;
		}
		if (want < cur) {
			img_error("shrinking a qcow2 image is not supported");
			return 1;
		}
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
