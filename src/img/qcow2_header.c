/* Rewrites a qcow2 header's backing file name and backing-format extension (see
 * qcow2_header.h). The layout follows QEMU's: fixed header, header extensions (the backing
 * format first), end marker, then the backing file name, all inside the first cluster, so the
 * result is byte for byte what qemu-img rebase -u writes. */
#include "img/qcow2_header.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"
#include "img/qcow2_meta.h"

/* A header cluster being assembled. */
struct hbuf {
	uint8_t *p;
	uint64_t len, cap;
};

static bool put(struct hbuf *h, const void *src, uint64_t n)
{
	if (n > h->cap - h->len)
		return false;
	memcpy(h->p + h->len, src, n);
	h->len += n;
	return true;
}

/* One extension: type, length, data padded to 8 bytes. */
static bool put_ext(struct hbuf *h, uint32_t type, const void *data, uint32_t n)
{
	uint8_t eh[8], pad[8] = { 0 };
	img_q2_put_be32(eh, type);
	img_q2_put_be32(eh + 4, n);
	return put(h, eh, 8) && put(h, data, n) && put(h, pad, (8 - n % 8) % 8);
}

/* Copies the old header's extensions other than the backing format into h; *old_end is set to
 * where the old extension area (with its end marker) stops. */
static int copy_exts(const struct img_q2 *q, const uint8_t *old, uint64_t avail,
		     struct hbuf *h, uint64_t *old_end)
{
	uint64_t end = avail;
	if (q->backing_offset && q->backing_offset < end)
		end = q->backing_offset;
	uint64_t at = q->header_len;
	while (at + 8 <= end) {
		uint32_t type = img_q2_be32(old + at), n = img_q2_be32(old + at + 4);
		if (type == QCOW2_EXT_END) {
			at += 8;
			break;
		}
		uint64_t padded = (n + 7ull) & ~7ull;
		if (padded > end - at - 8) {
			img_error("'%s': a header extension runs past the header", q->path);
			return -EINVAL;
		}
		if (type != QCOW2_EXT_BACKING_FORMAT && !put(h, old + at, 8 + padded))
			return -ENOSPC;
		at += 8 + padded;
	}
	*old_end = at;
	return 0;
}

/* Lays out the new header in h (which holds the old fixed header already). */
static int build(const struct img_q2 *q, const uint8_t *old, uint64_t avail, struct hbuf *h,
		 const char *name, const char *fmt, uint64_t *old_end)
{
	/* The backing format first, then the others in their order, as QEMU writes them. */
	if (fmt && *fmt && !put_ext(h, QCOW2_EXT_BACKING_FORMAT, fmt, (uint32_t)strlen(fmt)))
		return -ENOSPC;
	int r = copy_exts(q, old, avail, h, old_end);
	if (r < 0)
		return r;
	static const uint8_t end_marker[8];
	if (!put(h, end_marker, 8))
		return -ENOSPC;
	uint64_t boff = 0, blen = name ? strlen(name) : 0;
	if (blen) {
		boff = h->len;
		if (!put(h, name, blen))
			return -ENOSPC;
	}
	img_q2_put_be64(h->p + 8, boff);
	img_q2_put_be32(h->p + 16, (uint32_t)blen);
	if (q->backing_offset && q->backing_offset + q->backing_len > *old_end)
		*old_end = q->backing_offset + q->backing_len;
	return 0;
}

/* One write that also covers the old layout, so no stale name or extension survives; then
 * fdatasync, so the switch is on disk when rebase reports success. */
static int write_header(const struct img_q2 *q, const struct hbuf *h, uint64_t old_end)
{
	uint64_t len = h->len > old_end ? h->len : old_end;
	if (len > h->cap)
		len = h->cap;
	int r = img_q2_write(q, h->p, len, 0);
	if (r == 0 && fdatasync(q->fd) < 0)
		r = -errno;
	return r;
}

int img_q2_set_backing(const char *path, const char *name, const char *fmt)
{
	if (name && strlen(name) > QCOW2_MAX_BACKING_NAME) {
		img_error("the backing file name '%s' is too long (at most %u bytes)", name,
			  QCOW2_MAX_BACKING_NAME);
		return -ENAMETOOLONG;
	}
	struct img_q2 q;
	int r = img_q2_open(path, true, &q);
	if (r < 0)
		return r;
	uint64_t avail = q.fsize < q.cluster_size ? q.fsize : q.cluster_size;
	uint8_t *old = calloc(1, q.cluster_size);
	struct hbuf h = { calloc(1, q.cluster_size), q.header_len, q.cluster_size };
	uint64_t old_end = 0;
	if (!old || !h.p) {
		img_error("out of memory");
		r = -ENOMEM;
	} else if ((r = img_q2_read(&q, old, avail, 0)) < 0) {
		img_error("'%s': the header cannot be read: %s", path, strerror(-r));
	} else {
		memcpy(h.p, old, q.header_len);
		r = build(&q, old, avail, &h, name, fmt, &old_end);
		if (r == -ENOSPC)
			img_error("'%s': the backing file name '%s' and format do not fit in the "
				  "header cluster (%llu bytes)", path, name ? name : "",
				  (unsigned long long)q.cluster_size);
	}
	if (r == 0 && (r = write_header(&q, &h, old_end)) < 0)
		img_error("'%s': cannot write the header: %s", path, strerror(-r));
	free(old);
	free(h.p);
	img_q2_close(&q);
	return r;
}
