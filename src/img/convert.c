/* `kvmkit-img convert [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-p] SRC DST`: copies the guest
 * view of SRC into a new image, writing only blocks that are not all zeroes (raw output keeps
 * holes; qcow2 output leaves clusters unallocated). The new image is built under a temporary
 * name and renamed to DST at the end, so a failure leaves no partial DST. */
#include "img/img.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONVERT_CHUNK (2u << 20) /* bytes read at a time: a multiple of every granularity */

static void progress(bool on, uint64_t done, uint64_t total, int *last)
{
	int pct100 = total ? (int)(done * 10000 / total) : 10000;
	if (!on || pct100 / 100 == *last / 100)
		return;
	*last = pct100;
	printf("    (%d.%02d/100%%)\r", pct100 / 100, pct100 % 100);
	fflush(stdout);
}

/* Copies src into dst, skipping all-zero runs of gran bytes. */
static int copy(struct block_dev *src, struct block_dev *dst, const char *spath,
		const char *dpath, uint32_t gran, bool show)
{
	uint64_t size = block_size(src);
	uint8_t *buf = malloc(CONVERT_CHUNK);
	if (!buf) {
		img_error("out of memory");
		return -ENOMEM;
	}
	int last = -100, r = 0;
	progress(show, 0, size, &last);
	for (uint64_t off = 0; off < size && r == 0; off += CONVERT_CHUNK) {
		uint64_t n = size - off < CONVERT_CHUNK ? size - off : CONVERT_CHUNK;
		if ((r = img_io(src, BLOCK_OP_READ, off, buf, n)) < 0) {
			img_error("error while reading '%s' at offset %llu: %s", spath,
				  (unsigned long long)off, strerror(-r));
			break;
		}
		/* Coalesce the runs of non-zero granules into single writes. */
		for (uint64_t at = 0; at < n && r == 0;) {
			uint64_t len = n - at < gran ? n - at : gran;
			if (img_all_zero(buf + at, len)) {
				at += len;
				continue;
			}
			uint64_t end = at + len;
			while (end < n) {
				uint64_t l2 = n - end < gran ? n - end : gran;
				if (img_all_zero(buf + end, l2))
					break;
				end += l2;
			}
			if ((r = img_io(dst, BLOCK_OP_WRITE, off + at, buf + at, end - at)) < 0)
				img_error("error while writing '%s' at offset %llu: %s", dpath,
					  (unsigned long long)(off + at), strerror(-r));
			at = end;
		}
		progress(show, off + n, size, &last);
	}
	if (r == 0 && (r = img_io(dst, BLOCK_OP_FLUSH, 0, NULL, 0)) < 0)
		img_error("error while flushing '%s': %s", dpath, strerror(-r));
	if (show)
		printf("\n");
	free(buf);
	return r;
}

int img_convert(int argc, char **argv)
{
	const char *fmt = NULL, *ofmt = "raw";
	struct block_create_options o = { 0 };
	uint64_t unused_size = 0;
	bool show = false;
	int c;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	while ((c = getopt_long(argc, argv, ":f:O:o:pqUh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'o':
			if (!img_parse_create_options(optarg, &o, &unused_size))
				return 1;
			break;
		case 'p': show = true; break;
		case 'q': show = false; break;
		case 'U': break;
		case 'h':
			printf("Usage: kvmkit-img convert [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-p] "
			       "SRC DST\n");
			return 0;
		case ':': img_error("option -%c needs an argument", optopt); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	if (argc - optind != 2) {
		img_error("expecting a source and a destination file name");
		return 1;
	}
	const char *spath = argv[optind], *dpath = argv[optind + 1];
	if (!img_known_format(spath, fmt) || !img_known_format(dpath, ofmt))
		return 1;
	if (o.backing_file) {
		img_error("convert does not support a backing file for the output");
		return 1;
	}
	struct block_dev *src;
	if (img_open(spath, fmt, true, &src) < 0)
		return 1;

	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.kvmkit-img-XXXXXX", dpath) >= (int)sizeof(tmp)) {
		img_error("'%s': path too long", dpath);
		block_close(src);
		return 1;
	}
	int fd = mkstemp(tmp); /* reserves the name; block_create replaces the file */
	if (fd < 0) {
		img_error("could not create '%s': %s", dpath, strerror(errno));
		block_close(src);
		return 1;
	}
	close(fd);
	o.path = tmp;
	o.format = ofmt;
	o.size = block_size(src);
	struct block_dev *dst = NULL;
	int r = block_create(&o);
	if (r == 0)
		r = img_open(tmp, ofmt, false, &dst);
	if (r == 0) {
		bool qcow2 = strcmp(ofmt, "qcow2") == 0;
		uint32_t gran = qcow2 ? (o.cluster_size ? o.cluster_size : 65536u) : 4096u;
		r = copy(src, dst, spath, dpath, gran, show);
	}
	block_close(dst);
	block_close(src);
	if (r == 0 && rename(tmp, dpath) < 0) {
		r = -errno;
		img_error("could not create '%s': %s", dpath, strerror(errno));
	}
	if (r < 0) {
		unlink(tmp);
		return 1;
	}
	return 0;
}
