/* `kvmkit-img map [-f FMT] [--output=human|json] FILE`: where each range of the guest-visible
 * image comes from, through the backing chain, as qemu-img map shows it: merged runs of
 * {start, length, depth, present, zero, data, offset}. Each layer is read from its own
 * metadata (layer.c: qcow2 L1/L2 tables with every offset checked, raw SEEK_DATA/SEEK_HOLE). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"
#include "img/img.h"
#include "img/layer.h"

struct run {
	uint64_t start, length, offset;
	unsigned depth;
	enum img_kind kind;
	bool valid;
};

static bool has_offset(enum img_kind k)
{
	return k == IMG_ZERO_OFF || k == IMG_DATA_OFF;
}

/* Prints one merged run; false when human output cannot show it (as qemu-img: an error). */
static bool emit(const struct run *r, const struct img_layer *layers, bool json, bool *first)
{
	bool present = r->kind != IMG_UNALLOC;
	bool data = r->kind == IMG_DATA || r->kind == IMG_DATA_OFF;
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
	struct img_layer *layers = calloc(QCOW2_MAX_CHAIN, sizeof(*layers));
	if (!layers) {
		img_error("out of memory");
		return 1;
	}
	unsigned n = 0;
	int rc = 1;
	const char *path = argv[optind];
	if (!img_layer_open(&layers[n++], path, fmt))
		goto out;
	while (layers[n - 1].qcow2 && layers[n - 1].q.backing[0]) {
		if (n == QCOW2_MAX_CHAIN) {
			img_error("'%s': the backing chain is longer than %u", path, QCOW2_MAX_CHAIN);
			goto out;
		}
		const struct img_layer *up = &layers[n - 1];
		char full[PATH_MAX];
		if (!img_backing_path(up->path, up->q.backing, full, sizeof(full))) {
			img_error("'%s': the backing file path is too long", up->path);
			goto out;
		}
		const char *bfmt = up->q.backing_fmt[0] ? up->q.backing_fmt : NULL;
		if (!img_layer_open(&layers[n++], full, bfmt))
			goto out;
	}
	struct run cur = { 0 };
	bool first = true;
	if (!json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	for (uint64_t pos = 0; pos < layers[0].size;) {
		uint64_t len = layers[0].size - pos, host = 0;
		enum img_kind k = IMG_UNALLOC;
		unsigned d = 0;
		for (;;) {
			if (img_layer_status(&layers[d], pos, &len, &k, &host) < 0) {
				goto out;
			}
			if (k != IMG_UNALLOC || d + 1 >= n || pos >= layers[d + 1].size)
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
		img_layer_close(&layers[i]);
	free(layers);
	return rc;
}
