/* Reading what `info` reports from a qcow2 header: version, sizes, feature bits, backing file
 * and its format (header extension), with every offset and length checked against the file. */
#include "img/img.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"

static uint32_t be32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static int bad(const char *path, const char *what)
{
	img_error("'%s' is not a valid qcow2 image: %s", path, what);
	return -EINVAL;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);
	return n == (ssize_t)len ? 0 : -EIO;
}

int img_qcow2_read_info(const char *path, struct img_qcow2_info *q)
{
	memset(q, 0, sizeof(*q));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		img_error("could not open '%s': %s", path, strerror(errno));
		return -errno;
	}
	struct stat st;
	uint8_t h[QCOW2_V3_HEADER_LEN + 8] = { 0 };
	int r = -EINVAL;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)QCOW2_V2_HEADER_LEN ||
	    pread(fd, h, sizeof(h), 0) < (ssize_t)QCOW2_V2_HEADER_LEN) {
		r = bad(path, "the header cannot be read");
		goto out;
	}
	uint64_t fsize = (uint64_t)st.st_size;
	if (be32(h) != QCOW2_MAGIC) {
		r = bad(path, "bad magic");
		goto out;
	}
	q->version = be32(h + 4);
	uint64_t boff = be64(h + 8);
	uint32_t blen = be32(h + 16);
	uint32_t cbits = be32(h + 20);
	q->size = be64(h + 24);
	if (q->version != 2 && q->version != 3) {
		r = bad(path, "unsupported version");
		goto out;
	}
	if (cbits < QCOW2_MIN_CLUSTER_BITS || cbits > QCOW2_MAX_CLUSTER_BITS) {
		r = bad(path, "cluster size out of range");
		goto out;
	}
	q->cluster_size = 1u << cbits;
	q->refcount_bits = 16;
	uint32_t hlen = QCOW2_V2_HEADER_LEN;
	if (q->version == 3) {
		uint64_t incompat = be64(h + 72), compat = be64(h + 80);
		uint32_t order = be32(h + 96);
		hlen = be32(h + 100);
		if (order > 6 || hlen < QCOW2_V3_HEADER_LEN || hlen > q->cluster_size) {
			r = bad(path, "bad refcount order or header length");
			goto out;
		}
		q->refcount_bits = 1u << order;
		q->dirty = incompat & QCOW2_INCOMPAT_DIRTY;
		q->corrupt = incompat & QCOW2_INCOMPAT_CORRUPT;
		q->extended_l2 = incompat & QCOW2_INCOMPAT_EXTL2;
		q->lazy_refcounts = compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
		if (hlen > QCOW2_V3_HEADER_LEN)
			q->compression = h[104];
	}
	uint64_t ext_end = q->cluster_size < fsize ? q->cluster_size : fsize;
	if (boff && boff < ext_end)
		ext_end = boff;
	for (uint64_t at = hlen; q->version == 3 && at + 8 <= ext_end;) {
		uint8_t eh[8];
		if (read_at(fd, eh, 8, at) < 0)
			break;
		uint32_t type = be32(eh), elen = be32(eh + 4);
		if (type == QCOW2_EXT_END || elen > ext_end - at - 8)
			break;
		if (type == QCOW2_EXT_BACKING_FORMAT && elen < sizeof(q->backing_fmt) &&
		    read_at(fd, q->backing_fmt, elen, at + 8) == 0)
			q->backing_fmt[elen] = '\0';
		at += 8 + ((elen + 7ull) & ~7ull);
	}
	if (boff) {
		if (blen == 0 || blen >= sizeof(q->backing) || boff > fsize || blen > fsize - boff ||
		    read_at(fd, q->backing, blen, boff) < 0) {
			r = bad(path, "the backing file name is outside the file or too long");
			goto out;
		}
		q->backing[blen] = '\0';
	}
	r = 0;
out:
	close(fd);
	return r;
}
