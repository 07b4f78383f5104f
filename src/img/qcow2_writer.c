/* Streaming qcow2 writer for convert: the fresh image is written front to back in one pass.
 * Data clusters are appended in guest order right after the header cluster (uncompressed ones
 * cluster-aligned, compressed ones packed byte by byte into staging clusters as QEMU packs
 * them, each written once it is full); the L2 tables and refcounts are kept in memory and
 * written after the data, then the L1 table, the refcount table and blocks, and the header
 * last. Nothing is read back or rewritten, so the I/O is large and, but for the staging
 * clusters, sequential; the caller renames the file into place only afterwards.
 *
 * With -c, the clusters of each batch are compressed by one thread per CPU (at most
 * WRITER_MAX_THREADS), then placed in order. */
#include "img/qcow2_writer.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "block/qcow2_compress.h"
#include "block/qcow2_parse.h"
#include "img/img.h"

#define WRITER_BUF (8u << 20)      /* bytes gathered before a write */
#define WRITER_MAX_THREADS 4u
#define REFCOUNT_MAX UINT16_MAX    /* 16-bit refcounts */

struct qcow2_writer {
	const char *path;
	int fd;
	uint64_t size;
	uint64_t cs;
	uint32_t cluster_bits, l2_bits;
	uint8_t compression;
	bool lazy_refcounts;
	uint32_t l1_entries;
	uint64_t **l2;       /* [l1_entries]: host-endian L2 tables, NULL until used */
	uint16_t *rc;        /* refcount of each host cluster placed so far */
	uint64_t rc_len;     /* entries in rc */
	uint64_t end;        /* file offset of the next byte appended */
	uint64_t zc_off;     /* the staging cluster of compressed data (0: none open) */
	uint8_t *zc_buf;     /* its bytes, and those spilling into the next cluster */
	uint64_t zc_used;
	uint8_t *wbuf;       /* bytes [end - wlen, end) not written yet */
	size_t wlen;
	/* -c */
	unsigned nthreads;
	struct qcow2_compressor *comp[WRITER_MAX_THREADS];
	uint8_t *zout;       /* [batch][cs]: each cluster's compressed form */
	ssize_t *zlen;       /* [batch]: its length, 0 = store uncompressed */
	uint64_t batch;      /* clusters zout holds */
};

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static int write_all(struct qcow2_writer *w, const void *buf, size_t len, uint64_t off)
{
	int r = q_pwrite(w->fd, buf, len, off);
	if (r < 0)
		img_error("error while writing '%s': %s", w->path, strerror(-r));
	return r;
}

static int flush_buf(struct qcow2_writer *w)
{
	if (!w->wlen)
		return 0;
	int r = write_all(w, w->wbuf, w->wlen, w->end - w->wlen);
	w->wlen = 0;
	return r;
}

/* Appends len bytes (NULL: zeroes) at w->end. Large pieces go straight from the caller's
 * buffer: no copy for uncompressed data. */
static int append(struct qcow2_writer *w, const void *buf, size_t len)
{
	if (buf && len >= WRITER_BUF / 2) {
		int r = flush_buf(w);
		if (r == 0)
			r = write_all(w, buf, len, w->end);
		w->end += len;
		return r;
	}
	while (len) {
		size_t n = WRITER_BUF - w->wlen < len ? WRITER_BUF - w->wlen : len;
		if (buf)
			memcpy(w->wbuf + w->wlen, buf, n);
		else
			memset(w->wbuf + w->wlen, 0, n);
		w->wlen += n;
		w->end += n;
		len -= n;
		buf = buf ? (const uint8_t *)buf + n : NULL;
		if (w->wlen == WRITER_BUF) {
			int r = flush_buf(w);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int align_end(struct qcow2_writer *w)
{
	return append(w, NULL, (w->cs - (w->end & (w->cs - 1))) & (w->cs - 1));
}

/* Makes rc[0, n) exist (zero-filled growth). */
static int rc_reserve(struct qcow2_writer *w, uint64_t n)
{
	if (n <= w->rc_len)
		return 0;
	uint64_t len = w->rc_len ? w->rc_len : 1024;
	while (len < n)
		len *= 2;
	uint16_t *rc = realloc(w->rc, len * sizeof(*rc));
	if (!rc) {
		img_error("out of memory");
		return -ENOMEM;
	}
	memset(rc + w->rc_len, 0, (len - w->rc_len) * sizeof(*rc));
	w->rc = rc;
	w->rc_len = len;
	return 0;
}

/* Host clusters [first, first + n) hold one more reference each. */
static int rc_add(struct qcow2_writer *w, uint64_t first, uint64_t n)
{
	int r = rc_reserve(w, first + n);
	for (uint64_t i = 0; r == 0 && i < n; i++)
		w->rc[first + i]++;
	return r;
}

static int set_l2(struct qcow2_writer *w, uint64_t cluster, uint64_t entry)
{
	uint64_t i = cluster >> w->l2_bits;
	if (!w->l2[i] && !(w->l2[i] = calloc(1, w->cs))) {
		img_error("out of memory");
		return -ENOMEM;
	}
	w->l2[i][cluster & ((1ull << w->l2_bits) - 1)] = entry;
	return 0;
}

/* n uncompressed guest clusters from `cluster` on, cluster-aligned. */
static int place_plain(struct qcow2_writer *w, uint64_t cluster, const uint8_t *buf, uint64_t n)
{
	int r = align_end(w);
	uint64_t host = w->end;
	if (r == 0)
		r = append(w, buf, n * w->cs);
	if (r == 0)
		r = rc_add(w, host >> w->cluster_bits, n);
	for (uint64_t i = 0; r == 0 && i < n; i++)
		r = set_l2(w, cluster + i, (host + i * w->cs) | QCOW2_COPIED);
	return r;
}

/* Moves w->end past n bytes left unwritten here (written later with write_all). */
static int skip(struct qcow2_writer *w, uint64_t n)
{
	int r = flush_buf(w);
	w->end += n;
	return r;
}

/* Writes out the staging cluster's used bytes; none is open afterwards. */
static int zc_close(struct qcow2_writer *w)
{
	int r = w->zc_used ? write_all(w, w->zc_buf, w->zc_used, w->zc_off) : 0;
	w->zc_off = 0;
	w->zc_used = 0;
	return r;
}

/* Makes room for len compressed bytes in the staging cluster: opens one at the end of the file
 * if none is open or the open one is full of references; spans into the next cluster if the
 * open one is the file's last (compressed data must be contiguous on disk), else closes it,
 * its tail left unused, as QEMU does. */
static int zc_make_room(struct qcow2_writer *w, uint64_t len)
{
	int r = 0;
	if (w->zc_off && w->rc[w->zc_off >> w->cluster_bits] == REFCOUNT_MAX)
		r = zc_close(w);
	if (r == 0 && w->zc_off && w->zc_used + len > w->cs) {
		if (w->end == w->zc_off + w->cs)
			return skip(w, w->cs); /* the next cluster joins the staging area */
		r = zc_close(w);
	}
	if (r == 0 && !w->zc_off) {
		r = align_end(w);
		w->zc_off = w->end;
		if (r == 0)
			r = skip(w, w->cs);
	}
	return r;
}

/* One compressed cluster of len bytes. Compressed data is packed byte by byte into a staging
 * cluster kept in memory, so that uncompressed clusters in between do not waste its tail;
 * every host cluster it touches holds one reference for it (what the driver's q_release and
 * qemu-img check expect). */
static int place_compressed(struct qcow2_writer *w, uint64_t cluster, const uint8_t *z,
			    uint64_t len)
{
	int r = zc_make_room(w, len);
	uint64_t off = w->zc_off + w->zc_used;
	uint64_t first = off >> w->cluster_bits, last = (off + len - 1) >> w->cluster_bits;
	uint64_t sectors = (off + len - 1) / 512 - off / 512; /* beyond the first */
	uint32_t x = 62 - (w->cluster_bits - 8);               /* the offset field's width */
	if (r == 0)
		r = rc_add(w, first, last - first + 1);
	if (r == 0)
		r = set_l2(w, cluster, QCOW2_COMPRESSED | (sectors << x) | off);
	if (r < 0)
		return r;
	memcpy(w->zc_buf + w->zc_used, z, len);
	w->zc_used += len;
	if (w->zc_used >= w->cs) { /* the first cluster is full: out, the rest moves down */
		r = write_all(w, w->zc_buf, w->cs, w->zc_off);
		w->zc_used -= w->cs;
		memmove(w->zc_buf, w->zc_buf + w->cs, w->zc_used);
		w->zc_off = w->zc_used ? w->zc_off + w->cs : 0;
	}
	return r;
}

int qcow2_writer_new(const struct qcow2_writer_options *o, struct qcow2_writer **out)
{
	uint64_t cs = o->cluster_size ? o->cluster_size : 65536;
	uint32_t cb = 0;
	while ((1ull << cb) < cs)
		cb++;
	if ((1ull << cb) != cs || cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
		img_error("cluster size %llu is not a power of two from 512 to 2M",
			  (unsigned long long)cs);
		return -EINVAL;
	}
	if (o->size == 0) { /* as block_create: the driver refuses a 0-byte qcow2 image */
		img_error("'%s': a qcow2 image cannot be empty (the source has 0 bytes)", o->path);
		return -EINVAL;
	}
	uint64_t l1_entries = div_up(o->size, cs * (cs / 8));
	if (l1_entries * 8 > QCOW2_MAX_TABLE_BYTES) {
		img_error("'%s': %llu bytes is too large for %llu-byte clusters (use larger "
			  "clusters)", o->path, (unsigned long long)o->size, (unsigned long long)cs);
		return -EFBIG;
	}
	struct qcow2_writer *w = calloc(1, sizeof(*w));
	if (!w)
		goto nomem;
	*w = (struct qcow2_writer){ .path = o->path, .fd = o->fd, .size = o->size, .cs = cs,
				    .cluster_bits = cb, .l2_bits = cb - 3,
				    .compression = o->compression,
				    .lazy_refcounts = o->lazy_refcounts,
				    .l1_entries = (uint32_t)l1_entries, .end = cs };
	w->l2 = calloc(l1_entries, sizeof(*w->l2));
	w->wbuf = malloc(WRITER_BUF);
	w->zc_buf = malloc(2 * cs);
	if (!w->l2 || !w->wbuf || !w->zc_buf || rc_add(w, 0, 1) < 0) /* cluster 0: the header */
		goto nomem;
	if (o->compress) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		w->nthreads = cpus < 1 ? 1 : cpus > WRITER_MAX_THREADS ? WRITER_MAX_THREADS
									: (unsigned)cpus;
		for (unsigned t = 0; t < w->nthreads; t++)
			if (!(w->comp[t] = qcow2_compressor_new(o->compression)))
				goto nomem;
	}
	*out = w;
	return 0;
nomem:
	img_error("out of memory");
	qcow2_writer_free(w);
	return -ENOMEM;
}

struct compress_job {
	struct qcow2_writer *w;
	const uint8_t *buf;
	uint64_t n;
	atomic_uint_fast64_t next; /* the next cluster to take */
	unsigned thread;           /* for handing out compressors */
	pthread_mutex_t lock;
};

/* A worker: takes clusters until none are left. zlen[i] < 0 reports an error. */
static void *compress_worker(void *arg)
{
	struct compress_job *j = arg;
	struct qcow2_writer *w = j->w;
	pthread_mutex_lock(&j->lock);
	struct qcow2_compressor *c = w->comp[j->thread++];
	pthread_mutex_unlock(&j->lock);
	for (uint64_t i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
		const uint8_t *src = j->buf + i * w->cs;
		/* A compressed cluster must take less than a cluster, as QEMU requires. */
		w->zlen[i] = img_all_zero(src, w->cs)
			     ? 0 : qcow2_compress(c, w->zout + i * w->cs, w->cs - 1, src, w->cs);
	}
	return NULL;
}

/* Compresses the n clusters of buf into zout/zlen, on nthreads threads. */
static int compress_batch(struct qcow2_writer *w, const uint8_t *buf, uint64_t n)
{
	if (n > w->batch) {
		free(w->zout);
		free(w->zlen);
		w->zout = malloc(n * w->cs);
		w->zlen = malloc(n * sizeof(*w->zlen));
		w->batch = w->zout && w->zlen ? n : 0;
		if (!w->batch) {
			img_error("out of memory");
			return -ENOMEM;
		}
	}
	struct compress_job j = { .w = w, .buf = buf, .n = n };
	atomic_init(&j.next, 0);
	pthread_mutex_init(&j.lock, NULL);
	pthread_t tid[WRITER_MAX_THREADS];
	unsigned started = 0;
	uint64_t extra = n < w->nthreads ? n : w->nthreads;
	for (; started + 1 < extra; started++)
		if (pthread_create(&tid[started], NULL, compress_worker, &j) != 0)
			break; /* fewer threads: the work still gets done */
	compress_worker(&j);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	pthread_mutex_destroy(&j.lock);
	for (uint64_t i = 0; i < n; i++)
		if (w->zlen[i] < 0) {
			img_error("compressing for '%s' failed: %s", w->path,
				  strerror((int)-w->zlen[i]));
			return (int)w->zlen[i];
		}
	return 0;
}

int qcow2_writer_put(struct qcow2_writer *w, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t n = len >> w->cluster_bits, first = off >> w->cluster_bits;
	int r = w->nthreads ? compress_batch(w, buf, n) : 0;
	for (uint64_t i = 0; r == 0 && i < n;) {
		const uint8_t *p = buf + i * w->cs;
		if (img_all_zero(p, w->cs)) {
			i++;
		} else if (w->nthreads && w->zlen[i] > 0) {
			r = place_compressed(w, first + i, w->zout + i * w->cs, (uint64_t)w->zlen[i]);
			i++;
		} else {
			/* a run of clusters stored as they are: one write */
			uint64_t k = i + 1;
			while (k < n && !(w->nthreads && w->zlen[k] > 0) &&
			       !img_all_zero(buf + k * w->cs, w->cs))
				k++;
			r = place_plain(w, first + i, p, k - i);
			i = k;
		}
	}
	return r;
}

/* The L2 tables (big-endian now) and the L1 table pointing at them. */
static int write_l1_l2(struct qcow2_writer *w, uint64_t *l1_off)
{
	uint64_t l1c = div_up((uint64_t)w->l1_entries * 8, w->cs);
	uint64_t *l1 = calloc(l1c, w->cs);
	if (!l1) {
		img_error("out of memory");
		return -ENOMEM;
	}
	int r = 0;
	for (uint32_t i = 0; r == 0 && i < w->l1_entries; i++) {
		if (!w->l2[i])
			continue;
		l1[i] = htobe64(w->end | QCOW2_COPIED);
		for (uint64_t k = 0; k < w->cs / 8; k++)
			w->l2[i][k] = htobe64(w->l2[i][k]);
		r = rc_add(w, w->end >> w->cluster_bits, 1);
		if (r == 0)
			r = append(w, w->l2[i], w->cs);
	}
	*l1_off = w->end;
	if (r == 0)
		r = rc_add(w, w->end >> w->cluster_bits, l1c);
	if (r == 0)
		r = append(w, l1, l1c * w->cs);
	free(l1);
	return r;
}

/* The refcount table and blocks, which count themselves too. */
static int write_refcounts(struct qcow2_writer *w, uint64_t *rt_off, uint64_t *rtc)
{
	uint64_t used = w->end >> w->cluster_bits, per_block = w->cs / 2, nrb = 1;
	*rtc = 1;
	for (;;) { /* the smallest table and block count that cover everything, themselves too */
		uint64_t need_rb = div_up(used + *rtc + nrb, per_block);
		uint64_t need_rt = div_up(need_rb * 8, w->cs);
		if (need_rb <= nrb && need_rt <= *rtc)
			break;
		nrb = need_rb > nrb ? need_rb : nrb;
		*rtc = need_rt > *rtc ? need_rt : *rtc;
	}
	if (*rtc * w->cs > QCOW2_MAX_REFTABLE_BYTES) { /* what qcow2_parse accepts (QEMU) */
		img_error("'%s': the refcount table would be too large", w->path);
		return -EFBIG;
	}
	*rt_off = w->end;
	uint64_t rb_off = *rt_off + *rtc * w->cs;
	int r = rc_add(w, used, *rtc + nrb);
	uint8_t *c = calloc(*rtc, w->cs);
	if (r == 0 && !c) {
		img_error("out of memory");
		r = -ENOMEM;
	}
	for (uint64_t i = 0; r == 0 && i < nrb; i++) {
		uint64_t e = htobe64(rb_off + i * w->cs);
		memcpy(c + i * 8, &e, 8);
	}
	if (r == 0)
		r = append(w, c, *rtc * w->cs);
	for (uint64_t b = 0; r == 0 && b < nrb; b++) {
		memset(c, 0, w->cs);
		for (uint64_t k = 0; k < per_block && b * per_block + k < w->rc_len; k++) {
			uint16_t v = htobe16(w->rc[b * per_block + k]);
			memcpy(c + k * 2, &v, 2);
		}
		r = append(w, c, w->cs);
	}
	free(c);
	return r;
}

int qcow2_writer_finish(struct qcow2_writer *w)
{
	uint64_t l1_off = 0, rt_off = 0, rtc = 0;
	int r = zc_close(w);
	if (r == 0)
		r = align_end(w);
	if (r == 0)
		r = write_l1_l2(w, &l1_off);
	if (r == 0)
		r = write_refcounts(w, &rt_off, &rtc);
	if (r == 0)
		r = flush_buf(w);
	if (r < 0)
		return r;
	uint8_t h[QCOW2_NEW_HEADER_LEN] = { 0 };
	struct qcow2_new_header nh = {
		.cluster_bits = w->cluster_bits, .size = w->size, .l1_entries = w->l1_entries,
		.l1_offset = l1_off, .rt_offset = rt_off, .rt_clusters = (uint32_t)rtc,
		.lazy_refcounts = w->lazy_refcounts, .compression = w->compression,
	};
	qcow2_fill_header(h, &nh);
	/* The header last: until it is written the file is not a qcow2 image at all. */
	if ((r = write_all(w, h, sizeof(h), 0)) < 0)
		return r;
	if (fdatasync(w->fd) < 0) {
		r = -errno;
		img_error("error while flushing '%s': %s", w->path, strerror(errno));
	}
	return r;
}

void qcow2_writer_free(struct qcow2_writer *w)
{
	if (!w)
		return;
	for (uint32_t i = 0; w->l2 && i < w->l1_entries; i++)
		free(w->l2[i]);
	free(w->l2);
	free(w->rc);
	free(w->wbuf);
	free(w->zc_buf);
	for (unsigned t = 0; t < WRITER_MAX_THREADS; t++)
		qcow2_compressor_free(w->comp[t]);
	free(w->zout);
	free(w->zlen);
	free(w);
}
