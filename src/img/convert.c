/* `kvmkit-img convert [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-c] [-p] SRC DST`: copies the guest
 * view of SRC into a new image, writing only blocks that are not all zeroes. The source is read
 * through the block layer by a thread of its own, one chunk ahead; what block_extent says
 * reads as zeroes is neither read nor zero-filled nor scanned, so a sparse source's holes cost
 * nothing. Raw output keeps holes (4 KiB granules) and gets large pwrites; qcow2 output is
 * built in one sequential pass by the streaming writer (qcow2_writer.c), zero clusters left
 * unallocated and, with -c, each data cluster compressed (zlib, or zstd with
 * -o compression_type=zstd). The new image is built under a temporary name, fdatasync'ed, and
 * renamed to DST at the end, so a failure leaves no partial DST. */
#include "img/img.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "block/qcow2_compress.h"
#include "img/qcow2_writer.h"

/* Bytes read at a time: a multiple of every cluster size, and large enough to keep two
 * compressing threads busy and the writes large. */
#define CONVERT_CHUNK (8u << 20)
#define RAW_GRANULE 4096u /* raw output: the holes' granularity */
#define CONVERT_GRANULE (64u << 10) /* the least the source's holes are skipped by */

/* Where convert's data goes: a raw image's file (written directly: plain large pwrites), or
 * the qcow2 writer. */
struct output {
	const char *path;
	int raw_fd;          /* -1: qcow2 */
	struct qcow2_writer *qcow2;
	uint64_t cluster_size;
};

/* Writes the runs of non-zero granules of buf (n bytes at off) to a raw image, one write per
 * run. */
static int put_raw(struct output *o, uint64_t off, uint8_t *buf, uint64_t n)
{
	int r = 0;
	for (uint64_t at = 0; at < n && r == 0;) {
		uint64_t len = n - at < RAW_GRANULE ? n - at : RAW_GRANULE;
		if (img_all_zero(buf + at, len)) {
			at += len;
			continue;
		}
		uint64_t end = at + len;
		while (end < n) {
			uint64_t l2 = n - end < RAW_GRANULE ? n - end : RAW_GRANULE;
			if (img_all_zero(buf + end, l2))
				break;
			end += l2;
		}
		if ((r = q_pwrite(o->raw_fd, buf + at, end - at, off + at)) < 0)
			img_error("error while writing '%s' at offset %llu: %s", o->path,
				  (unsigned long long)(off + at), strerror(-r));
		at = end;
	}
	return r;
}

static int put(struct output *o, uint64_t off, uint8_t *buf, uint64_t n)
{
	if (o->raw_fd >= 0)
		return put_raw(o, off, buf, n);
	/* The image's last cluster may be partial: the writer takes whole clusters. */
	uint64_t whole = (n + o->cluster_size - 1) & ~(o->cluster_size - 1);
	memset(buf + n, 0, whole - n);
	return qcow2_writer_put(o->qcow2, off, buf, whole);
}

static int finish(struct output *o)
{
	if (o->qcow2)
		return qcow2_writer_finish(o->qcow2);
	if (fdatasync(o->raw_fd) == 0)
		return 0;
	int err = errno;
	img_error("error while flushing '%s': %s", o->path, strerror(err));
	return -err;
}

/* The source, read one chunk ahead by a thread of its own (double buffering) so that reading
 * overlaps with compressing and writing. That thread alone uses src while it runs. Each chunk
 * comes with a map of its granules (whole output clusters, at least 64 KiB) that hold data:
 * the others are neither filled with zeroes nor scanned nor passed on, so the holes of a
 * sparse source cost nothing. */
struct reader {
	struct block_dev *src;
	uint64_t size;
	uint64_t granule;
	uint8_t *buf[2];
	bool *map[2];          /* [CONVERT_CHUNK / granule]: the granule holds data */
	uint64_t len[2];
	int result[2];
	bool full[2];          /* buf[i] holds a chunk the writer has not taken yet */
	bool stop;             /* the writer gave up */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

/* Source bytes [off, off + n) into buf, and map. What the source says reads as zeroes (holes
 * of a raw file, unallocated or zero qcow2 clusters) is not read; of a hole only the parts
 * sharing a granule with data are zeroed in buf. */
static int read_chunk(struct reader *rd, uint64_t off, uint8_t *buf, bool *map, uint64_t n)
{
	uint64_t g = rd->granule;
	memset(map, 0, CONVERT_CHUNK / g * sizeof(*map));
	for (uint64_t pos = off, end = off + n; pos < end;) {
		uint64_t len;
		int data = block_extent(rd->src, pos, end - pos, &len);
		if (data < 0)
			return data;
		uint64_t a = pos - off, b = a + len;
		if (data) {
			if ((data = block_io(rd->src, BLOCK_OP_READ, pos, buf + a, len)) < 0)
				return data;
			for (uint64_t i = a / g; i * g < b; i++)
				map[i] = true;
		} else {
			uint64_t head = (a + g - 1) / g * g, tail = b / g * g;
			if (head >= tail) {
				memset(buf + a, 0, len);
			} else {
				memset(buf + a, 0, head - a);
				memset(buf + tail, 0, b - tail);
			}
		}
		pos += len;
	}
	return 0;
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	for (uint64_t off = 0, k = 0; off < rd->size; off += CONVERT_CHUNK, k++) {
		int i = (int)(k & 1);
		pthread_mutex_lock(&rd->lock);
		while (rd->full[i] && !rd->stop)
			pthread_cond_wait(&rd->cond, &rd->lock);
		bool stop = rd->stop;
		pthread_mutex_unlock(&rd->lock);
		if (stop)
			break;
		uint64_t n = rd->size - off < CONVERT_CHUNK ? rd->size - off : CONVERT_CHUNK;
		int r = read_chunk(rd, off, rd->buf[i], rd->map[i], n);
		pthread_mutex_lock(&rd->lock);
		rd->len[i] = n;
		rd->result[i] = r;
		rd->full[i] = true;
		pthread_cond_broadcast(&rd->cond);
		pthread_mutex_unlock(&rd->lock);
		if (r < 0)
			break;
	}
	return NULL;
}

/* Waits for chunk k (or, with done, hands its buffer back to the reader). */
static void reader_slot(struct reader *rd, uint64_t k, bool done)
{
	int i = (int)(k & 1);
	pthread_mutex_lock(&rd->lock);
	if (done) {
		rd->full[i] = false;
		pthread_cond_broadcast(&rd->cond);
	}
	while (!done && !rd->full[i])
		pthread_cond_wait(&rd->cond, &rd->lock);
	pthread_mutex_unlock(&rd->lock);
}

/* Puts the runs of granules of chunk i (at off) that hold data. */
static int put_chunk(struct reader *rd, int i, uint64_t off, struct output *o)
{
	uint64_t g = rd->granule, n = rd->len[i];
	int r = 0;
	for (uint64_t k = 0; k * g < n && r == 0;) {
		if (!rd->map[i][k]) {
			k++;
			continue;
		}
		uint64_t first = k;
		while (k * g < n && rd->map[i][k])
			k++;
		uint64_t end = k * g < n ? k * g : n;
		r = put(o, off + first * g, rd->buf[i] + first * g, end - first * g);
	}
	return r;
}

/* Copies the source into the output, chunk by chunk, as the reader delivers them. */
static int pump(struct reader *rd, const char *spath, struct output *o, bool show)
{
	int last = -100, r = 0;
	img_progress(show, 0, rd->size, &last);
	for (uint64_t off = 0, k = 0; off < rd->size && r == 0; off += CONVERT_CHUNK, k++) {
		reader_slot(rd, k, false);
		int i = (int)(k & 1);
		if ((r = rd->result[i]) < 0)
			img_error("error while reading '%s' at offset %llu: %s", spath,
				  (unsigned long long)off, strerror(-r));
		else
			r = put_chunk(rd, i, off, o);
		img_progress(show, off + rd->len[i], rd->size, &last);
		reader_slot(rd, k, true);
	}
	return r;
}

/* Copies src into the output, then makes the output durable. */
static int copy(struct block_dev *src, const char *spath, struct output *o, bool show)
{
	struct reader rd = { .src = src, .size = block_size(src),
			     .granule = o->cluster_size > CONVERT_GRANULE ? o->cluster_size
									   : CONVERT_GRANULE };
	int r = 0;
	for (int i = 0; i < 2; i++) {
		rd.buf[i] = malloc(CONVERT_CHUNK);
		rd.map[i] = malloc(CONVERT_CHUNK / rd.granule * sizeof(*rd.map[i]));
		if (!rd.buf[i] || !rd.map[i])
			r = -ENOMEM;
	}
	if (r < 0) {
		img_error("out of memory");
		r = -ENOMEM;
	}
	pthread_mutex_init(&rd.lock, NULL);
	pthread_cond_init(&rd.cond, NULL);
	pthread_t tid;
	if (r == 0 && (r = -pthread_create(&tid, NULL, reader_main, &rd)) < 0)
		img_error("cannot start a thread: %s", strerror(-r));
	if (r == 0) {
		r = pump(&rd, spath, o, show);
		pthread_mutex_lock(&rd.lock);
		rd.stop = true;
		pthread_cond_broadcast(&rd.cond);
		pthread_mutex_unlock(&rd.lock);
		pthread_join(tid, NULL);
	}
	if (r == 0)
		r = finish(o);
	if (show)
		printf("\n");
	pthread_cond_destroy(&rd.cond);
	pthread_mutex_destroy(&rd.lock);
	for (int i = 0; i < 2; i++) {
		free(rd.buf[i]);
		free(rd.map[i]);
	}
	return r;
}

/* The qcow2 output on fd (the temporary file). */
static int convert_qcow2(struct block_dev *src, const char *spath, const char *dpath, int fd, const struct block_create_options *co,
			 bool compress, bool show)
{
	uint8_t type;
	if (!qcow2_compression_parse(co->compression_type, &type)) {
		img_error("compression type '%s' is not supported (zlib and, if built with libzstd, "
			  "zstd are)", co->compression_type);
		return -ENOTSUP;
	}
	if (compress && !qcow2_compression_supported(type)) {
		img_error("-c: this kvmkit-img was built without %s",
			  type == QCOW2_COMPRESSION_ZSTD ? "libzstd" : "zlib");
		return -ENOTSUP;
	}
	if (co->preallocation && strcmp(co->preallocation, "off") != 0) {
		img_error("preallocation '%s' is not supported for qcow2", co->preallocation);
		return -ENOTSUP;
	}
	/* Whole 512-byte sectors, as qemu-img makes it: QEMU reads a qcow2 image's size in
	 * sectors, rounded down. The added tail reads as zeroes. */
	uint64_t size = (block_size(src) + 511) & ~(uint64_t)511;
	struct qcow2_writer_options wo = {
		.path = dpath, .fd = fd, .size = size, .cluster_size = co->cluster_size,
		.compress = compress, .compression = type, .lazy_refcounts = co->lazy_refcounts,
	};
	struct output o = { .path = dpath, .raw_fd = -1,
			    .cluster_size = co->cluster_size ? co->cluster_size : 65536u };
	int r = qcow2_writer_new(&wo, &o.qcow2);
	if (r == 0)
		r = copy(src, spath, &o, show);
	qcow2_writer_free(o.qcow2);
	return r;
}

/* The raw output at tmp (block_create replaces the reserved file). */
static int convert_raw(struct block_dev *src, const char *spath, const char *dpath, const char *tmp, struct block_create_options *co,
		       bool show)
{
	co->path = tmp;
	co->format = "raw";
	co->size = block_size(src);
	struct output o = { .path = dpath, .raw_fd = -1 };
	int r = block_create(co);
	if (r == 0 && (o.raw_fd = open(tmp, O_WRONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		img_error("could not open '%s': %s", tmp, strerror(errno));
	}
	if (r == 0)
		r = copy(src, spath, &o, show);
	if (o.raw_fd >= 0)
		close(o.raw_fd);
	return r;
}

/* Reserves DST.kvmkit-img-XXXXXX with the mode a new file gets (mkstemp's is 0600). */
static int make_temp(const char *dpath, char *tmp, size_t len)
{
	if (snprintf(tmp, len, "%s.kvmkit-img-XXXXXX", dpath) >= (int)len) {
		img_error("'%s': path too long", dpath);
		return -1;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		img_error("could not create '%s': %s", dpath, strerror(errno));
		return -1;
	}
	mode_t mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) < 0) {
		img_error("could not create '%s': %s", dpath, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	return fd;
}

/* Converts with the options parsed; the exit status. */
static int run(const char *spath, const char *fmt, const char *dpath, const char *ofmt,
	       struct block_create_options *co, bool compress, bool show)
{
	struct block_dev *src;
	if (img_open(spath, fmt, true, &src) < 0)
		return 1;
	char tmp[PATH_MAX];
	int fd = make_temp(dpath, tmp, sizeof(tmp));
	if (fd < 0) {
		block_close(src);
		return 1;
	}
	int r;
	if (strcmp(ofmt, "qcow2") == 0) {
		r = convert_qcow2(src, spath, dpath, fd, co, compress, show);
		if (close(fd) < 0 && r == 0) {
			r = -errno;
			img_error("error while writing '%s': %s", dpath, strerror(errno));
		}
	} else {
		close(fd);
		r = convert_raw(src, spath, dpath, tmp, co, show);
	}
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

int img_convert(int argc, char **argv)
{
	const char *fmt = NULL, *ofmt = "raw";
	struct block_create_options o = { 0 };
	uint64_t unused_size = 0;
	bool show = false, compress = false;
	int c;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	while ((c = getopt_long(argc, argv, ":f:O:o:cpqUWm:t:T:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'o':
			if (!img_parse_create_options(optarg, &o, &unused_size))
				return 1;
			break;
		case 'c': compress = true; break;
		case 'p': show = true; break;
		case 'q': show = false; break;
		/* qemu-img's force-share, out-of-order writes, coroutine count and cache modes:
		 * kvmkit-img takes no locks and always writes in one sequential pass. */
		case 'U': case 'W': case 'm': case 't': case 'T': break;
		case 'h':
			printf("Usage: kvmkit-img convert [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-c] "
			       "[-p] SRC DST\n");
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
	if (compress && strcmp(ofmt, "qcow2") != 0) {
		img_error("compression (-c) needs the qcow2 output format");
		return 1;
	}
	return run(spath, fmt, dpath, ofmt, &o, compress, show);
}
