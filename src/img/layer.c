/* One layer of a backing chain, read from its own metadata (see layer.h). */
#include "img/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"

bool img_layer_open(struct img_layer *l, const char *path, const char *fmt)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->q.fd = -1;
	snprintf(l->path, sizeof(l->path), "%s", path);
	if (!img_known_format(path, fmt))
		return false;
	if (!fmt && !(fmt = img_probe(path)))
		return false;
	if (strcmp(fmt, "qcow2") == 0) {
		l->qcow2 = true;
		if (img_q2_open(path, false, &l->q) < 0)
			return false;
		l->size = l->q.size;
		l->l1 = img_q2_read_l1(&l->q, l->q.l1_offset, l->q.l1_size);
		l->l2 = malloc(l->q.cluster_size);
		if (!l->l1 || !l->l2) {
			img_error("'%s': cannot load the L1 table", path);
			return false;
		}
		return true;
	}
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (l->fd < 0 || fstat(l->fd, &st) < 0) {
		img_error("could not open '%s': %s", path, strerror(errno));
		return false;
	}
	l->size = (uint64_t)st.st_size;
	return true;
}

void img_layer_close(struct img_layer *l)
{
	if (l->qcow2)
		img_q2_close(&l->q);
	free(l->l1);
	free(l->l2);
	l->l1 = NULL;
	l->l2 = NULL;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* A raw layer: data where the file has data, zeroes in its holes. */
static int raw_status(struct img_layer *l, uint64_t off, uint64_t *len, enum img_kind *k,
		      uint64_t *host)
{
	off_t d = lseek(l->fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno != ENXIO) {
		img_error("'%s': cannot find data: %s", l->path, strerror(errno));
		return -1;
	}
	uint64_t end;
	if (d == (off_t)off) {
		off_t h = lseek(l->fd, (off_t)off, SEEK_HOLE);
		end = h < 0 ? l->size : (uint64_t)h;
		*k = IMG_DATA_OFF;
	} else {
		end = d < 0 ? l->size : (uint64_t)d;
		*k = IMG_ZERO_OFF;
	}
	if (end > off && end - off < *len)
		*len = end - off;
	*host = off;
	return 0;
}

int img_layer_status(struct img_layer *l, uint64_t off, uint64_t *len, enum img_kind *k,
		     uint64_t *host)
{
	*host = 0;
	if (!l->qcow2)
		return raw_status(l, off, len, k, host);
	const struct img_q2 *q = &l->q;
	uint64_t entries = img_q2_l2_entries(q);
	uint64_t c = off >> q->cluster_bits, l1i = c / entries;
	uint64_t in_cluster = q->cluster_size - (off & (q->cluster_size - 1));
	uint64_t l2off = l1i < q->l1_size ? l->l1[l1i] & QCOW2_OFFSET_MASK : 0;
	if (!l2off) {
		uint64_t span = ((l1i + 1) * entries << q->cluster_bits) - off;
		if (span < *len)
			*len = span;
		*k = IMG_UNALLOC;
		return 0;
	}
	if (*len > in_cluster)
		*len = in_cluster;
	if (l->l2_cached != l2off) {
		if ((l2off & (q->cluster_size - 1)) ||
		    img_q2_read(q, l->l2, q->cluster_size, l2off) < 0) {
			img_error("'%s': the L2 table at offset %llu is invalid", l->path,
				  (unsigned long long)l2off);
			return -1;
		}
		l->l2_cached = l2off;
	}
	uint64_t e = img_q2_be64(l->l2 + (c % entries) * 8);
	uint64_t h = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_COMPRESSED) {
		*k = IMG_DATA;
		return 0;
	}
	if (h & (q->cluster_size - 1)) {
		img_error("'%s': a data cluster at offset %llu is not aligned", l->path,
			  (unsigned long long)h);
		return -1;
	}
	uint64_t within = off & (q->cluster_size - 1);
	if (q->version >= 3 && (e & QCOW2_ZERO))
		*k = h ? IMG_ZERO_OFF : IMG_ZERO;
	else
		*k = h ? IMG_DATA_OFF : IMG_UNALLOC;
	*host = h ? h + within : 0;
	return 0;
}

static enum img_alloc alloc_class(enum img_kind k)
{
	return k == IMG_UNALLOC ? IMG_ALLOC_NONE
	       : k == IMG_ZERO || k == IMG_ZERO_OFF ? IMG_ALLOC_ZERO : IMG_ALLOC_DATA;
}

int img_layer_run(struct img_layer *l, uint64_t off, uint64_t max, enum img_alloc *a,
		  uint64_t *len)
{
	*len = 0;
	if (off >= l->size)
		return 0;
	if (max > l->size - off)
		max = l->size - off;
	while (*len < max) {
		uint64_t n = max - *len, host;
		enum img_kind k;
		if (img_layer_status(l, off + *len, &n, &k, &host) < 0)
			return -1;
		if (*len && alloc_class(k) != *a)
			break;
		*a = alloc_class(k);
		*len += n;
	}
	return 0;
}

bool img_backing_path(const char *image, const char *backing, char *out, size_t len)
{
	const char *slash = strrchr(image, '/');
	int n;
	if (backing[0] == '/' || !slash)
		n = snprintf(out, len, "%s", backing);
	else
		n = snprintf(out, len, "%.*s/%s", (int)(slash - image), image, backing);
	return n >= 0 && (size_t)n < len;
}
