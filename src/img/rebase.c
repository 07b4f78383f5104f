/* `kvmkit-img rebase [-f FMT] [-u] -b BACKING [-F FMT] [-p] [-q] FILE`: changes the backing
 * file recorded in a qcow2 image, as qemu-img rebase does.
 *
 * Safe mode (the default) keeps the guest view: every cluster that FILE does not hold itself
 * and whose content differs between the old backing chain and the new backing file (which
 * reads as zeroes beyond its end; -b "" means no backing file, all zeroes) gets the old
 * content written into FILE, which is flushed before the header changes. Until then the image
 * still names its old backing file, under which the copied clusters read the same, so a crash
 * at any point leaves a correct image. -u (unsafe) only rewrites the header. The header
 * rewrite itself is one write into the header cluster and an fdatasync (qcow2_header.c). */
#include "img/img.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img/layer.h"
#include "img/qcow2_header.h"

#define REBASE_CHUNK (2u << 20) /* bytes compared per step: a multiple of every cluster size */

struct rebase {
	const char *path;
	const char *name, *fmt;    /* the new backing file as recorded ("" none) and its format */
	struct img_layer top;      /* FILE's own metadata: what it holds itself */
	struct block_dev *img;     /* FILE through its old backing chain, writable */
	struct block_dev *nb;      /* the new backing file, read-only; NULL for -b "" */
	uint64_t nb_size;
	uint8_t *old, *new;        /* one chunk as the old chain / the new backing reads it */
	bool show;
};

/* [pos, pos + len) as the new backing file shows it, zeroes beyond its end. */
static int read_new(struct rebase *rb, uint64_t pos, uint64_t len)
{
	uint64_t have = rb->nb && pos < rb->nb_size ? rb->nb_size - pos : 0;
	if (have > len)
		have = len;
	memset(rb->new + have, 0, len - have);
	int r = have ? block_io(rb->nb, BLOCK_OP_READ, pos, rb->new, have) : 0;
	if (r < 0)
		img_error("error while reading the new backing file '%s' at offset %llu: %s",
			  rb->name, (unsigned long long)pos, strerror(-r));
	return r;
}

/* Writes the clusters of one chunk whose old and new contents differ into FILE, runs of
 * differing clusters as one request. */
static int write_differences(struct rebase *rb, uint64_t pos, uint64_t len)
{
	uint64_t cs = rb->top.q.cluster_size;
	for (uint64_t at = 0; at < len;) {
		uint64_t end = at;
		while (end < len) {
			uint64_t n = len - end < cs ? len - end : cs;
			if (memcmp(rb->old + end, rb->new + end, n) == 0)
				break;
			end += n;
		}
		if (end == at) {
			at += len - at < cs ? len - at : cs;
			continue;
		}
		int r = block_io(rb->img, BLOCK_OP_WRITE, pos + at, rb->old + at, end - at);
		if (r < 0) {
			img_error("error while writing '%s' at offset %llu: %s", rb->path,
				  (unsigned long long)(pos + at), strerror(-r));
			return r;
		}
		at = end;
	}
	return 0;
}

/* One run of clusters that FILE does not hold: what reads differently is copied in. */
static int keep_run(struct rebase *rb, uint64_t pos, uint64_t len)
{
	int r = block_io(rb->img, BLOCK_OP_READ, pos, rb->old, len);
	if (r < 0) {
		img_error("error while reading '%s' at offset %llu: %s", rb->path,
			  (unsigned long long)pos, strerror(-r));
		return r;
	}
	if ((r = read_new(rb, pos, len)) < 0)
		return r;
	return write_differences(rb, pos, len);
}

/* Walks FILE's unallocated runs, then flushes FILE. */
static int copy_differences(struct rebase *rb)
{
	uint64_t size = rb->top.size;
	int last = -100, r = 0;
	img_progress(rb->show, 0, size, &last);
	for (uint64_t pos = 0, len; pos < size && r == 0; pos += len) {
		enum img_alloc a = IMG_ALLOC_NONE;
		if (img_layer_run(&rb->top, pos, REBASE_CHUNK, &a, &len) < 0)
			return -1;
		if (a == IMG_ALLOC_NONE)
			r = keep_run(rb, pos, len);
		img_progress(rb->show, pos + len, size, &last);
	}
	if (r == 0 && (r = block_io(rb->img, BLOCK_OP_FLUSH, 0, NULL, 0)) < 0)
		img_error("error while flushing '%s': %s", rb->path, strerror(-r));
	if (rb->show)
		printf("\n");
	return r;
}

/* Opens FILE (with its old chain) and the new backing file for a safe rebase. */
static int safe_open(struct rebase *rb)
{
	if (!img_layer_open(&rb->top, rb->path, "qcow2") ||
	    img_open(rb->path, "qcow2", false, &rb->img) < 0)
		return -1;
	if (rb->name[0]) {
		/* A relative name is relative to FILE's directory, as it will be recorded. */
		char p[PATH_MAX];
		if (!img_backing_path(rb->path, rb->name, p, sizeof(p))) {
			img_error("the new backing file path '%s' is too long", rb->name);
			return -1;
		}
		if (img_open(p, rb->fmt, true, &rb->nb) < 0)
			return -1;
		rb->nb_size = block_size(rb->nb);
	}
	rb->old = malloc(REBASE_CHUNK);
	rb->new = malloc(REBASE_CHUNK);
	if (!rb->old || !rb->new) {
		img_error("out of memory");
		return -1;
	}
	return 0;
}

static int safe_copy(struct rebase *rb)
{
	int r = safe_open(rb);
	if (r == 0)
		r = copy_differences(rb);
	block_close(rb->nb);
	block_close(rb->img);
	img_layer_close(&rb->top);
	free(rb->old);
	free(rb->new);
	return r;
}

/* Checks the arguments before anything is opened for writing. */
static bool rebase_args_ok(struct rebase *rb, const char *fmt, bool have_b, bool unsafe)
{
	if (!have_b && !unsafe) {
		img_error("Must specify backing file (-b) or use unsafe mode (-u)");
		return false;
	}
	if (!img_known_format(rb->path, fmt) ||
	    !img_known_format(rb->name[0] ? rb->name : rb->path, rb->fmt))
		return false;
	if (rb->name[0] && !rb->fmt) {
		img_error("Could not change the backing file to '%s': backing format must be "
			  "specified (-F)", rb->name);
		return false;
	}
	if (!fmt && !(fmt = img_probe(rb->path)))
		return false;
	if (strcmp(fmt, "qcow2") != 0) {
		img_error("Could not change the backing file of '%s': %s images have no backing "
			  "file", rb->path, fmt);
		return false;
	}
	return true;
}

int img_rebase(int argc, char **argv)
{
	const char *fmt = NULL;
	struct rebase rb = { .name = "" };
	bool unsafe = false, have_b = false, show = false, quiet = false;
	int ch;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	optind = 1;
	while ((ch = getopt_long(argc, argv, ":f:F:b:upqh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': fmt = optarg; break;
		case 'F': rb.fmt = optarg; break;
		case 'b': rb.name = optarg; have_b = true; break;
		case 'u': unsafe = true; break;
		case 'p': show = true; break;
		case 'q': quiet = true; break;
		case 'h':
			printf("Usage: kvmkit-img rebase [-f FMT] [-u] -b BACKING [-F FMT] [-p] [-q] "
			       "FILE\n");
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	if (!img_one_file(argc))
		return 1;
	rb.path = argv[optind];
	rb.show = show && !quiet;
	rb.top.fd = rb.top.q.fd = -1; /* nothing open yet */
	if (!rebase_args_ok(&rb, fmt, have_b, unsafe))
		return 1;
	if (!unsafe && safe_copy(&rb) < 0)
		return 1;
	return img_q2_set_backing(rb.path, rb.name, rb.name[0] ? rb.fmt : NULL) < 0 ? 1 : 0;
}
