/* block_create: new raw and qcow2 (version 3, 16-bit refcounts) images. The image is written
 * to a temporary file next to its destination and renamed into place, so a failure leaves no
 * partial file behind. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2.h"
#include "block/qcow2_compress.h"
#include "lib/log.h"

static void put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* The backing file's path as the image will resolve it (relative to the image's directory). */
static void backing_path(const char *image, const char *backing, char *out, size_t size)
{
	const char *slash = strrchr(image, '/');
	if (backing[0] == '/' || !slash)
		snprintf(out, size, "%s", backing);
	else
		snprintf(out, size, "%.*s/%s", (int)(slash - image), image, backing);
}

/* Fills in the backing format (probed) and, when size is 0, the backing file's size. */
static int probe_backing(const struct block_create_options *o, const char **fmt, uint64_t *size)
{
	char path[PATH_MAX];
	backing_path(o->path, o->backing_file, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		log_error("cannot create disk image '%s': its backing file '%s' cannot be opened: %s",
			  o->path, path, strerror(err));
		return -err;
	}
	uint8_t h[32] = { 0 };
	ssize_t n = pread(fd, h, sizeof(h), 0);
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	close(fd);
	if (r < 0)
		return r;
	uint32_t magic;
	memcpy(&magic, h, 4);
	bool is_qcow2 = n >= 32 && be32toh(magic) == QCOW2_MAGIC;
	if (!*fmt)
		*fmt = is_qcow2 ? "qcow2" : "raw";
	if (*size == 0) {
		uint64_t v;
		memcpy(&v, h + 24, 8);
		*size = strcmp(*fmt, "qcow2") == 0 ? be64toh(v) : (uint64_t)st.st_size;
	}
	return 0;
}

void qcow2_fill_header(uint8_t *c, const struct qcow2_new_header *h)
{
	put_be32(c, QCOW2_MAGIC);
	put_be32(c + 4, 3);
	put_be32(c + 20, h->cluster_bits);
	put_be64(c + 24, h->size);
	put_be32(c + 36, h->l1_entries);
	put_be64(c + 40, h->l1_offset);
	put_be64(c + 48, h->rt_offset);
	put_be32(c + 56, h->rt_clusters);
	/* zlib is the default that needs no feature bit: older readers can open such images */
	put_be64(c + 72, h->compression != QCOW2_COMPRESSION_ZLIB ? QCOW2_INCOMPAT_COMPRESSION : 0);
	put_be64(c + 80, h->lazy_refcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
	put_be32(c + 96, 4); /* refcount_order: 16-bit refcounts */
	put_be32(c + 100, QCOW2_NEW_HEADER_LEN);
	c[QCOW2_V3_HEADER_LEN] = h->compression;
}

/* -o preallocation=: qemu-img's modes. metadata allocates the L2 tables and a data cluster
 * for every guest cluster (the file stays sparse, so they read as zeroes); falloc also
 * reserves the data area with fallocate; full writes zeroes over it. */
enum prealloc { PREALLOC_OFF, PREALLOC_METADATA, PREALLOC_FALLOC, PREALLOC_FULL };

static int prealloc_mode(const char *s)
{
	static const char *const names[] = { "off", "metadata", "falloc", "full" };
	for (int i = 0; i < 4; i++)
		if (strcmp(s ? s : "off", names[i]) == 0)
			return i;
	return -1;
}

/* Reserves (falloc) or zero-writes (full) [off, off + len) of the file. */
static int prealloc_fill(int fd, uint64_t off, uint64_t len, int mode)
{
	if (mode == PREALLOC_FALLOC)
		return -posix_fallocate(fd, (off_t)off, (off_t)len);
	if (mode != PREALLOC_FULL)
		return 0;
	const size_t chunk = 1u << 20;
	uint8_t *z = calloc(1, chunk);
	if (!z)
		return -ENOMEM;
	int r = 0;
	for (uint64_t done = 0; done < len && r == 0; done += chunk)
		r = q_pwrite(fd, z, len - done < chunk ? (size_t)(len - done) : chunk, off + done);
	free(z);
	return r;
}

/* Preallocated qcow2 metadata: the L1 table pointing at l1_entries L2 tables from l2_off on,
 * and those pointing at ndata data clusters right after them, all with refcount 1. */
static int prealloc_tables(int fd, uint8_t *c, uint64_t cs, uint64_t l1_off,
			   uint64_t l1_entries, uint64_t l2_off, uint64_t ndata)
{
	uint64_t per = cs / 8, data_off = l2_off + l1_entries * cs;
	for (uint64_t t = 0; t < l1_entries; t++) { /* an L1 table cluster at a time */
		if (t % per == 0)
			memset(c, 0, cs);
		put_be64(c + (t % per) * 8, (l2_off + t * cs) | QCOW2_COPIED);
		int r = t % per == per - 1 || t == l1_entries - 1 ?
				q_pwrite(fd, c, cs, l1_off + (t / per) * cs) : 0;
		if (r < 0)
			return r;
	}
	for (uint64_t t = 0; t < l1_entries; t++) {
		memset(c, 0, cs);
		for (uint64_t j = 0; j < per && t * per + j < ndata; j++)
			put_be64(c + j * 8, (data_off + (t * per + j) * cs) | QCOW2_COPIED);
		int r = q_pwrite(fd, c, cs, l2_off + t * cs);
		if (r < 0)
			return r;
	}
	return 0;
}

static int create_qcow2(int fd, const struct block_create_options *o, uint64_t size,
			const char *bfmt, uint8_t compression)
{
	uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
	uint32_t cb = 0;
	while ((1ull << cb) < cs)
		cb++;
	if ((1ull << cb) != cs || cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
		log_error("cannot create disk image '%s': cluster size %llu is not a power of two "
			  "from 512 to 2M", o->path, (unsigned long long)cs);
		return -EINVAL;
	}
	const uint64_t rb_entries = cs / 2; /* 16-bit refcounts */
	uint64_t l1_entries = div_up(size, cs * (cs / 8));
	uint64_t l1c = div_up(l1_entries * 8, cs);
	/* The refcount table covers every cluster the image could ever take, twice over: the
	 * driver appends new clusters and does not grow the table. */
	uint64_t data = div_up(size, cs) + l1_entries, rbc = 0, rtc = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t total = 2 * (data + 1 + l1c + rtc + rbc) + 64;
		rbc = div_up(total, rb_entries);
		rtc = div_up(rbc * 8, cs);
	}
	if (l1_entries * 8 > QCOW2_MAX_TABLE_BYTES || rtc * cs > QCOW2_MAX_TABLE_BYTES) {
		log_error("cannot create disk image '%s': %llu bytes is too large for %llu-byte "
			  "clusters (use larger clusters)", o->path, (unsigned long long)size,
			  (unsigned long long)cs);
		return -EFBIG;
	}
	/* Layout: header, refcount table, L1 table, the refcount blocks for these and, with
	 * preallocation, for the L2 tables and data clusters that follow them. */
	int mode = prealloc_mode(o->preallocation);
	uint64_t rt_off = cs, l1_off = rt_off + rtc * cs, rb_off = l1_off + l1c * cs;
	uint64_t pre = mode == PREALLOC_OFF ? 0 : l1_entries + div_up(size, cs);
	uint64_t nrb = 1;
	while (div_up(1 + rtc + l1c + nrb + pre, rb_entries) > nrb)
		nrb++;
	uint64_t used = 1 + rtc + l1c + nrb + pre, l2_off = rb_off + nrb * cs;

	uint8_t *c = calloc(1, cs);
	if (!c)
		return -ENOMEM;
	struct qcow2_new_header nh = {
		.cluster_bits = cb, .size = size, .l1_entries = (uint32_t)l1_entries,
		.l1_offset = l1_off, .rt_offset = rt_off, .rt_clusters = (uint32_t)rtc,
		.lazy_refcounts = o->lazy_refcounts, .compression = compression,
	};
	qcow2_fill_header(c, &nh);
	uint64_t at = QCOW2_NEW_HEADER_LEN;
	int r = 0;
	if (o->backing_file) {
		size_t flen = strlen(bfmt), blen = strlen(o->backing_file);
		if (blen > QCOW2_MAX_BACKING_NAME || at + 8 + 32 + 8 + blen > cs) {
			log_error("cannot create disk image '%s': the backing file name is too long",
				  o->path);
			free(c);
			return -ENAMETOOLONG;
		}
		put_be32(c + at, QCOW2_EXT_BACKING_FORMAT);
		put_be32(c + at + 4, (uint32_t)flen);
		memcpy(c + at + 8, bfmt, flen);
		at += 8 + ((flen + 7) & ~(size_t)7);
		at += 8; /* end-of-extensions marker: already zero */
		put_be64(c + 8, at);
		put_be32(c + 16, (uint32_t)blen);
		memcpy(c + at, o->backing_file, blen);
	}
	if ((r = q_pwrite(fd, c, cs, 0)) < 0)
		goto out;
	/* refcount table: the refcount blocks (preallocated images may need more than one
	 * table cluster); refcount blocks: 1 for each cluster used */
	if (nrb * 8 > rtc * cs) {
		log_error("cannot create disk image '%s': too much metadata", o->path);
		r = -EFBIG;
		goto out;
	}
	for (uint64_t t = 0; t < rtc; t++) {
		memset(c, 0, cs);
		for (uint64_t i = t * (cs / 8); i < nrb && i < (t + 1) * (cs / 8); i++)
			put_be64(c + (i * 8) % cs, rb_off + i * cs);
		if ((r = q_pwrite(fd, c, cs, rt_off + t * cs)) < 0)
			goto out;
	}
	for (uint64_t b = 0; b < nrb; b++) {
		memset(c, 0, cs);
		for (uint64_t k = 0; k < rb_entries && b * rb_entries + k < used; k++)
			c[k * 2 + 1] = 1;
		if ((r = q_pwrite(fd, c, cs, rb_off + b * cs)) < 0)
			goto out;
	}
	/* L1 table: zeroes, as the file extension gives them, unless preallocated */
	if (pre && (r = prealloc_tables(fd, c, cs, l1_off, l1_entries, l2_off,
					pre - l1_entries)) < 0)
		goto out;
	if (ftruncate(fd, (off_t)(used * cs)) < 0)
		r = -errno;
	else if (pre)
		r = prealloc_fill(fd, l2_off + l1_entries * cs, (pre - l1_entries) * cs, mode);
out:
	if (r < 0 && r != -EFBIG)
		log_error("cannot write disk image '%s': %s", o->path, strerror(-r));
	free(c);
	return r;
}

int block_create(const struct block_create_options *o)
{
	if (!o->path || !*o->path) {
		log_error("creating a disk image needs its path");
		return -EINVAL;
	}
	const char *fmt = o->format ? o->format : "raw";
	bool qcow2 = strcmp(fmt, "qcow2") == 0;
	const char *prealloc = o->preallocation ? o->preallocation : "off";
	uint64_t size = o->size;
	const char *bfmt = o->backing_format;
	if (!qcow2 && strcmp(fmt, "raw") != 0) {
		log_error("cannot create disk image '%s': unknown format \"%s\"", o->path, fmt);
		return -EINVAL;
	}
	int mode = prealloc_mode(prealloc);
	if (mode < 0 || (!qcow2 && mode == PREALLOC_METADATA)) {
		log_error("cannot create disk image '%s': preallocation \"%s\" is not supported for "
			  "%s (off, %sfalloc and full are)", o->path, prealloc, fmt,
			  qcow2 ? "metadata, " : "");
		return -ENOTSUP;
	}
	if (mode != PREALLOC_OFF && o->backing_file) {
		/* qemu-img allows it only with extended L2 entries, which kvmkit does not have */
		log_error("cannot create disk image '%s': a backing file and preallocation cannot "
			  "be used together", o->path);
		return -ENOTSUP;
	}
	uint8_t compression;
	if (!qcow2_compression_parse(o->compression_type, &compression)) {
		log_error("cannot create disk image '%s': compression type \"%s\" is not supported "
			  "(zlib and, if built with libzstd, zstd are)", o->path, o->compression_type);
		return -ENOTSUP;
	}
	if (!qcow2 && (o->backing_file || o->lazy_refcounts)) {
		log_error("cannot create disk image '%s': backing files and lazy refcounts need "
			  "qcow2", o->path);
		return -EINVAL;
	}
	if (bfmt && strcmp(bfmt, "raw") != 0 && strcmp(bfmt, "qcow2") != 0) {
		log_error("cannot create disk image '%s': unknown backing format \"%s\"", o->path,
			  bfmt);
		return -EINVAL;
	}
	int r;
	if (o->backing_file && (r = probe_backing(o, &bfmt, &size)) < 0)
		return r;
	if (size == 0 || size > (1ull << 61)) {
		log_error("cannot create disk image '%s': size %llu is invalid", o->path,
			  (unsigned long long)size);
		return -EINVAL;
	}

	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", o->path) >= (int)sizeof(tmp)) {
		log_error("cannot create disk image '%s': path too long", o->path);
		return -ENAMETOOLONG;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		r = -errno;
		log_error("cannot create disk image '%s': %s", o->path, strerror(-r));
		return r;
	}
	mode_t mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		r = -errno;
		log_error("cannot create disk image '%s': %s", o->path, strerror(-r));
		goto fail;
	}
	if (qcow2) {
		r = create_qcow2(fd, o, size, bfmt, compression);
	} else {
		r = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
		if (r == 0)
			r = prealloc_fill(fd, 0, size, mode);
		if (r < 0)
			log_error("cannot create disk image '%s': %s", o->path, strerror(-r));
	}
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0 || rename(tmp, o->path) < 0) {
		r = -errno;
		log_error("cannot create disk image '%s': %s", o->path, strerror(-r));
		goto fail;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	unlink(tmp);
	return r;
}
