/* The qcow2 driver's open path: the header parsed by qcow2_parse.c (the parser kvmkit-img uses
 * too) and what the driver needs on top of it, the L1 and refcount tables read, and the backing
 * chain opened (with loop and depth checks). Reads and writes are in qcow2.c. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block_int.h"
#include "block/qcow2.h"
#include "block/qcow2_compress.h"
#include "block/qcow2_parse.h"
#include "lib/log.h"

void qcow2_free(struct qcow2 *s)
{
	if (!s)
		return;
	if (s->backing)
		block_close(s->backing);
	if (s->own_fd && s->fd >= 0)
		close(s->fd);
	for (unsigned i = 0; i < QCOW2_L2_CACHE; i++)
		free(s->l2c[i].table);
	free(s->l1);
	free(s->rt);
	free(s->buf);
	free(s->dbuf);
	free(s->cbuf);
	free(s->zbuf);
	free(s->releases);
	free(s);
}

/* The images whose backing files are being opened, innermost last: loops and depth. */
static _Thread_local struct { dev_t dev; ino_t ino; } q_chain[QCOW2_MAX_CHAIN];
static _Thread_local unsigned q_chain_len;

static int q_open_backing(struct qcow2 *s, struct block_dev *bd, const char *name,
			  const char *fmt, enum block_cache cache)
{
	char path[PATH_MAX];
	if (name[0] == '/') {
		if (snprintf(path, sizeof(path), "%s", name) >= (int)sizeof(path))
			return -ENAMETOOLONG;
	} else {
		const char *slash = strrchr(bd->path, '/');
		int dirlen = slash ? (int)(slash - bd->path) : 1;
		if (snprintf(path, sizeof(path), "%.*s/%s", dirlen, slash ? bd->path : ".", name) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
	}
	struct stat self, st;
	if (fstat(bd->file.fd, &self) < 0)
		return -errno;
	if (stat(path, &st) == 0) {
		if (st.st_dev == self.st_dev && st.st_ino == self.st_ino) {
			log_error("disk image '%s': its backing chain loops back to itself", s->path);
			return -ELOOP;
		}
		for (unsigned i = 0; i < q_chain_len; i++)
			if (q_chain[i].dev == st.st_dev && q_chain[i].ino == st.st_ino) {
				log_error("disk image '%s': its backing file '%s' is already in the "
					  "backing chain (a loop)", s->path, path);
				return -ELOOP;
			}
	}
	if (q_chain_len >= QCOW2_MAX_CHAIN) {
		log_error("disk image '%s': backing chain is deeper than %u images", s->path,
			  QCOW2_MAX_CHAIN);
		return -ELOOP;
	}
	char probed[8] = "raw";
	if (!fmt) {
		/* No format recorded: qcow2 if it says so, else raw. */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint8_t magic[4];
		if (fd >= 0) {
			if (pread(fd, magic, 4, 0) == 4 && qcow2_be32(magic) == QCOW2_MAGIC)
				strcpy(probed, "qcow2");
			close(fd);
		}
		fmt = probed;
	}
	q_chain[q_chain_len].dev = self.st_dev;
	q_chain[q_chain_len].ino = self.st_ino;
	q_chain_len++;
	struct block_options o = { .path = path, .format = fmt, .readonly = true, .cache = cache };
	int r = block_open(&o, &s->backing);
	q_chain_len--;
	return r;
}

#define Q_FAIL(err, ...) do { log_error(__VA_ARGS__); r = (err); goto fail; } while (0)

int qcow2_open(struct block_dev *bd)
{
	const char *p = bd->path;
	uint64_t fsize = bd->file.size;
	int r;
	struct qcow2_header *h = NULL;
	struct qcow2 *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->path = p;
	s->fd = bd->file.fd;
	if (bd->file.direct_align > 1) {
		/* Metadata I/O here is unaligned and synchronous: use a descriptor without
		 * O_DIRECT; flushes still fdatasync. */
		s->fd = open(p, (bd->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (s->fd < 0)
			Q_FAIL(-errno, "cannot open disk image '%s': %s", p, strerror(errno));
		s->own_fd = true;
	}
	s->sync = bd->file.sync_on_flush;
	s->writable = !bd->readonly;

	if (!(h = malloc(sizeof(*h))))
		Q_FAIL(-ENOMEM, "disk image '%s': out of memory", p);
	if ((r = qcow2_parse_fd(s->fd, fsize, h)) < 0) {
		log_error("cannot open disk image '%s': %s", p, h->error);
		goto fail_quiet;
	}
	const char *unsupported = qcow2_parse_unsupported(h);
	if (unsupported) {
		log_error("cannot open disk image '%s': %s", p, unsupported);
		r = -ENOTSUP;
		goto fail_quiet;
	}
	s->version = h->version;
	s->cluster_bits = h->cluster_bits;
	s->cluster_size = h->cluster_size;
	s->l2_bits = s->cluster_bits - 3;
	s->size = h->size;
	s->l1_size = h->l1_size;
	s->l1_offset = h->l1_offset;
	s->rt_offset = h->rt_offset;
	s->refcount_order = h->refcount_order;
	s->compression_type = h->compression_type;
	if (s->compression_type != QCOW2_COMPRESSION_ZLIB &&
	    !qcow2_compression_supported(s->compression_type))
		Q_FAIL(-ENOTSUP, "disk image '%s' uses compression type %u, which this kvmkit cannot "
		       "read (zlib and, if built with libzstd, zstd)", p, s->compression_type);
	if ((h->incompat & QCOW2_INCOMPAT_CORRUPT) && !bd->readonly)
		Q_FAIL(-EINVAL, "disk image '%s' is marked corrupt; open it read-only or repair it "
		       "with 'qemu-img check -r all'", p);
	/* Dirty (lazy refcounts, not closed cleanly): refcounts may be too low. Writing stays
	 * safe because new clusters are appended, never taken from "free" ones; the bit stays
	 * set so that qemu-img check -r all (or QEMU's next open) repairs the counts. */
	s->dirty = h->incompat & QCOW2_INCOMPAT_DIRTY;
	if (s->size == 0)
		Q_FAIL(-EINVAL, "disk image '%s' has a virtual size of 0 bytes", p);

	/* The parser bounded the tables' sizes and alignment (QEMU's limits); the driver reads
	 * them whole and appends at the end of the file, so they must also lie inside it. */
	if (s->l1_offset > fsize || (uint64_t)s->l1_size * 8 > fsize - s->l1_offset)
		Q_FAIL(-EINVAL, "disk image '%s': L1 table offset 0x%llx lies outside the file", p, (unsigned long long)s->l1_offset);
	s->rt_entries = (uint64_t)h->rt_clusters * s->cluster_size / 8;
	if (s->rt_offset > fsize || s->rt_entries * 8 > fsize - s->rt_offset)
		Q_FAIL(-EINVAL, "disk image '%s': refcount table offset 0x%llx lies outside the "
		       "file", p, (unsigned long long)s->rt_offset);

	s->l1 = calloc(s->l1_size ? s->l1_size : 1, 8);
	s->rt = calloc(s->rt_entries, 8);
	s->buf = malloc(s->cluster_size);
	s->dbuf = malloc(s->cluster_size);
	s->cbuf = malloc(s->cluster_size);
	s->zbuf = malloc(2 * s->cluster_size);
	if (!s->l1 || !s->rt || !s->buf || !s->dbuf || !s->cbuf || !s->zbuf)
		Q_FAIL(-ENOMEM, "disk image '%s': out of memory", p);
	for (unsigned i = 0; i < QCOW2_L2_CACHE; i++)
		if (!(s->l2c[i].table = malloc(s->cluster_size)))
			Q_FAIL(-ENOMEM, "disk image '%s': out of memory", p);
	if ((r = q_pread(s->fd, s->l1, (size_t)s->l1_size * 8, s->l1_offset)) < 0 ||
	    (r = q_pread(s->fd, s->rt, s->rt_entries * 8, s->rt_offset)) < 0)
		Q_FAIL(r, "cannot read disk image '%s': %s", p, strerror(-r));
	for (uint32_t i = 0; i < s->l1_size; i++)
		s->l1[i] = be64toh(s->l1[i]);
	for (uint64_t i = 0; i < s->rt_entries; i++)
		s->rt[i] = be64toh(s->rt[i]);

	/* Writable: allocation appends at the cluster-aligned end of the file; bitmaps we do
	 * not maintain are declared stale by clearing the autoclear bits. */
	s->next_free = (fsize + s->cluster_size - 1) & ~(s->cluster_size - 1);
	if (!bd->readonly && h->autoclear) {
		uint64_t zero = 0;
		if ((r = q_pwrite(s->fd, &zero, 8, 88)) < 0)
			Q_FAIL(r, "cannot write disk image '%s': %s", p, strerror(-r));
	}
	bd->driver_state = s;
	bd->size = s->size;

	if (h->backing[0]) {
		enum block_cache cache = !s->sync ? BLOCK_CACHE_UNSAFE
			: bd->file.direct_align > 1 ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK;
		if ((r = q_open_backing(s, bd, h->backing, h->backing_fmt[0] ? h->backing_fmt : NULL,
					cache)) < 0)
			goto fail_quiet;
	}
	free(h);
	return 0;
fail:
fail_quiet:
	free(h);
	bd->driver_state = NULL;
	qcow2_free(s);
	return r;
}

