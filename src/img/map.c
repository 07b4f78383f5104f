/* `kvmkit-img map [-f FMT] [--output=human|json] FILE`: where each range of the guest-visible
 * image comes from, through the backing chain, as qemu-img map shows it: merged runs of
 * {start, length, depth, present, zero, data, offset}. qcow2 layers are read from their L1/L2
 * tables (kvmkit-img's own metadata reader, every offset checked), raw ones with
 * SEEK_DATA/SEEK_HOLE. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"
#include "img/qcow2_meta.h"

enum kind { K_UNALLOC, K_ZERO, K_ZERO_OFF, K_DATA, K_DATA_OFF };

struct layer {
	bool qcow2;
	struct img_q2 q;
	uint64_t *l1;
	uint8_t *l2;
	uint64_t l2_cached;  /* offset of the L2 table in l2; 0 none */
	int fd;              /* raw */
	uint64_t size;
	char path[PATH_MAX];
};

struct run {
	uint64_t start, length, offset;
	unsigned depth;
	enum kind kind;
	bool valid;
};

static int open_layer(struct layer *l, const char *path, const char *fmt)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->q.fd = -1;
	snprintf(l->path, sizeof(l->path), "%s", path);
	if (!img_known_format(path, fmt))
		return -1;
	if (!fmt && !(fmt = img_probe(path)))
		return -1;
	if (strcmp(fmt, "qcow2") == 0) {
		l->qcow2 = true;
		if (img_q2_open(path, false, &l->q) < 0)
			return -1;
		l->size = l->q.size;
		l->l1 = img_q2_read_l1(&l->q, l->q.l1_offset, l->q.l1_size);
		l->l2 = malloc(l->q.cluster_size);
		if (!l->l1 || !l->l2) {
			img_error("'%s': cannot load the L1 table", path);
			return -1;
		}
		return 0;
	}
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (l->fd < 0 || fstat(l->fd, &st) < 0) {
		img_error("could not open '%s': %s", path, strerror(errno));
		return -1;
	}
	l->size = (uint64_t)st.st_size;
	return 0;
}

static void close_layer(struct layer *l)
{
	if (l->qcow2)
		img_q2_close(&l->q);
	free(l->l1);
	free(l->l2);
	if (l->fd >= 0)
		close(l->fd);
}

/* The kind of [off, off + *len) in this layer alone; shortens *len to a run of one kind. */
static int layer_status(struct layer *l, uint64_t off, uint64_t *len, enum kind *k,
			uint64_t *host)
{
	*host = 0;
	if (!l->qcow2) {
		off_t d = lseek(l->fd, (off_t)off, SEEK_DATA);
		if (d < 0 && errno != ENXIO) {
			img_error("'%s': cannot find data: %s", l->path, strerror(errno));
			return -1;
		}
		uint64_t end;
		if (d == (off_t)off) {
			off_t h = lseek(l->fd, (off_t)off, SEEK_HOLE);
			end = h < 0 ? l->size : (uint64_t)h;
			*k = K_DATA_OFF;
		} else {
			end = d < 0 ? l->size : (uint64_t)d;
			*k = K_ZERO_OFF;
		}
		if (end > off && end - off < *len)
			*len = end - off;
		*host = off;
		return 0;
	}
	const struct img_q2 *q = &l->q;
	uint64_t entries = img_q2_l2_entries(q);
	uint64_t c = off >> q->cluster_bits, l1i = c / entries;
	uint64_t in_cluster = q->cluster_size - (off & (q->cluster_size - 1));
	uint64_t l2off = l1i < q->l1_size ? l->l1[l1i] & QCOW2_OFFSET_MASK : 0;
	if (!l2off) {
		uint64_t span = ((l1i + 1) * entries << q->cluster_bits) - off;
		if (span < *len)
			*len = span;
		*k = K_UNALLOC;
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
		*k = K_DATA;
		return 0;
	}
	if (h & (q->cluster_size - 1)) {
		img_error("'%s': a data cluster at offset %llu is not aligned", l->path,
			  (unsigned long long)h);
		return -1;
	}
	uint64_t within = off & (q->cluster_size - 1);
	if (q->version >= 3 && (e & QCOW2_ZERO))
		*k = h ? K_ZERO_OFF : K_ZERO;
	else
		*k = h ? K_DATA_OFF : K_UNALLOC;
	*host = h ? h + within : 0;
	return 0;
}

static bool has_offset(enum kind k)
{
	return k == K_ZERO_OFF || k == K_DATA_OFF;
}

/* Prints one merged run; false when human output cannot show it (as qemu-img: an error). */
static bool emit(const struct run *r, const struct layer *layers, bool json, bool *first)
{
	bool present = r->kind != K_UNALLOC;
	bool data = r->kind == K_DATA || r->kind == K_DATA_OFF;
	bool zero = !data;
	if (json) {
		printf("%s{ \"start\": %llu, \"length\": %llu, \"depth\": %u, \"present\": %s, "
		       "\"zero\": %s, \"data\": %s", *first ? "[" : ",\n",
		       (unsigned long long)r->start, (unsigned long long)r->length, r->depth,
		       present ? "true" : "false", zero ? "true" : "false", data ? "true" : "false");
		if (has_offset(r->kind))
			printf(", \"offset\": %llu", (unsigned long long)r->offset);
		printf("}");
	} else if (data && !has_offset(r->kind)) {
		fflush(stdout);
		img_error("File contains external, encrypted or compressed clusters.");
		return false;
	} else if (data) {
		printf("%#-16llx%#-16llx%#-16llx%s\n", (unsigned long long)r->start,
		       (unsigned long long)r->length, (unsigned long long)r->offset,
		       layers[r->depth].path);
	}
	*first = false;
	return true;
}

int img_map(int argc, char **argv)
{
	const char *fmt = NULL;
	bool json;
	int r = img_parse_fmt_output(argc, argv, "map", &fmt, &json);
	if (r >= 0)
		return r;
	struct layer *layers = calloc(QCOW2_MAX_CHAIN, sizeof(*layers));
	if (!layers) {
		img_error("out of memory");
		return 1;
	}
	unsigned n = 0;
	int rc = 1;
	const char *path = argv[optind];
	if (open_layer(&layers[n++], path, fmt) < 0)
		goto out;
	while (layers[n - 1].qcow2 && layers[n - 1].q.backing[0]) {
		if (n == QCOW2_MAX_CHAIN) {
			img_error("'%s': the backing chain is longer than %u", path, QCOW2_MAX_CHAIN);
			goto out;
		}
		const struct layer *up = &layers[n - 1];
		char full[PATH_MAX];
		const char *slash = strrchr(up->path, '/');
		if (up->q.backing[0] == '/' || !slash)
			snprintf(full, sizeof(full), "%s", up->q.backing);
		else
			snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - up->path), up->path,
				 up->q.backing);
		const char *bfmt = up->q.backing_fmt[0] ? up->q.backing_fmt : NULL;
		if (open_layer(&layers[n++], full, bfmt) < 0)
			goto out;
	}
	struct run cur = { 0 };
	bool first = true;
	if (!json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	for (uint64_t pos = 0; pos < layers[0].size;) {
		uint64_t len = layers[0].size - pos, host = 0;
		enum kind k = K_UNALLOC;
		unsigned d = 0;
		for (;;) {
			if (layer_status(&layers[d], pos, &len, &k, &host) < 0) {
				goto out;
			}
			if (k != K_UNALLOC || d + 1 >= n || pos >= layers[d + 1].size)
				break;
			d++;
			if (layers[d].size - pos < len)
				len = layers[d].size - pos;
		}
		bool merge = cur.valid && cur.depth == d && cur.kind == k &&
			     (!has_offset(k) || cur.offset + cur.length == host);
		if (merge) {
			cur.length += len;
		} else {
			if (cur.valid && !emit(&cur, layers, json, &first))
				goto out;
			cur = (struct run){ pos, len, host, d, k, true };
		}
		pos += len;
	}
	if (cur.valid && !emit(&cur, layers, json, &first))
		goto out;
	if (json)
		printf("%s]\n", first ? "[" : "");
	rc = 0;
out:
	for (unsigned i = 0; i < n; i++)
		close_layer(&layers[i]);
	free(layers);
	return rc;
}
