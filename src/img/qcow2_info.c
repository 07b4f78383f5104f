/* What `info` (and `resize`) report from a qcow2 header, read through the one header parser
 * (block/qcow2_parse.c): unlike img_q2_open, images kvmkit cannot do I/O on (encrypted,
 * extended L2 entries, an external data file) are still described. */
#include "img/img.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "block/qcow2_parse.h"

int img_qcow2_read_info(const char *path, struct img_qcow2_info *q)
{
	memset(q, 0, sizeof(*q));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		img_error("could not open '%s': %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	struct qcow2_header *h = malloc(sizeof(*h));
	int r = -ENOMEM;
	if (!h)
		img_error("out of memory");
	else if (fstat(fd, &st) < 0)
		img_error("could not examine '%s': %s", path, strerror(-(r = -errno)));
	else if ((r = qcow2_parse_fd(fd, (uint64_t)st.st_size, h)) < 0)
		img_error("cannot open '%s': %s", path, h->error);
	if (r == 0) {
		q->version = h->version;
		q->size = h->size;
		q->cluster_size = (uint32_t)h->cluster_size;
		q->refcount_bits = 1u << h->refcount_order;
		q->dirty = h->incompat & QCOW2_INCOMPAT_DIRTY;
		q->corrupt = h->incompat & QCOW2_INCOMPAT_CORRUPT;
		q->extended_l2 = h->incompat & QCOW2_INCOMPAT_EXTL2;
		q->lazy_refcounts = h->compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
		q->compression = h->compression_type;
		memcpy(q->backing, h->backing, sizeof(q->backing));
		memcpy(q->backing_fmt, h->backing_fmt, sizeof(q->backing_fmt));
	}
	free(h);
	close(fd);
	return r;
}
