/* The qcow2 driver's open path: the header and its extensions checked field by field against the
 * file and kvmkit's bounds, the L1 and refcount tables read, and the backing chain opened (with
 * loop and depth checks). Reads and writes are in qcow2.c. */
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

	uint8_t h[QCOW2_V3_HEADER_LEN + 8] = { 0 };
	if (fsize < QCOW2_V2_HEADER_LEN)
		Q_FAIL(-EINVAL, "disk image '%s' is too small to be a qcow2 image", p);
	if ((r = q_pread(s->fd, h, sizeof(h), 0)) < 0)
		Q_FAIL(r, "cannot read disk image '%s': %s", p, strerror(-r));
	if (qcow2_be32(h) != QCOW2_MAGIC)
		Q_FAIL(-EINVAL, "disk image '%s' is not a qcow2 image (bad magic)", p);
	s->version = qcow2_be32(h + 4);
	if (s->version != 2 && s->version != 3)
		Q_FAIL(-ENOTSUP, "disk image '%s' is qcow2 version %u; kvmkit reads versions 2 and 3",
		       p, s->version);
	uint64_t backing_off = qcow2_be64(h + 8);
	uint32_t backing_len = qcow2_be32(h + 16);
	s->cluster_bits = qcow2_be32(h + 20);
	s->size = qcow2_be64(h + 24);
	uint32_t crypt = qcow2_be32(h + 32);
	s->l1_size = qcow2_be32(h + 36);
	s->l1_offset = qcow2_be64(h + 40);
	s->rt_offset = qcow2_be64(h + 48);
	uint32_t rt_clusters = qcow2_be32(h + 56);
	uint64_t incompat = 0, autoclear = 0;
	uint32_t hlen = QCOW2_V2_HEADER_LEN;
	s->refcount_order = 4;
	uint8_t compression = 0;
	if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		Q_FAIL(-EINVAL, "disk image '%s': cluster_bits %u is outside 9..21", p,
		       s->cluster_bits);
	s->cluster_size = 1ull << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	if (s->version == 3) {
		incompat = qcow2_be64(h + 72);
		autoclear = qcow2_be64(h + 88);
		s->refcount_order = qcow2_be32(h + 96);
		hlen = qcow2_be32(h + 100);
		if (hlen < QCOW2_V3_HEADER_LEN || hlen > s->cluster_size || hlen > fsize)
			Q_FAIL(-EINVAL, "disk image '%s': header length %u is invalid", p, hlen);
		if (hlen > QCOW2_V3_HEADER_LEN)
			compression = h[104];
	}
	if (incompat & ~QCOW2_INCOMPAT_KNOWN)
		Q_FAIL(-ENOTSUP, "image %s uses qcow2 feature(s) kvmkit does not know (incompatible "
		       "bits 0x%llx)", p, (unsigned long long)(incompat & ~QCOW2_INCOMPAT_KNOWN));
	if (incompat & QCOW2_INCOMPAT_DATA_FILE)
		Q_FAIL(-ENOTSUP, "disk image '%s' keeps its data in an external data file, which "
		       "kvmkit does not support", p);
	if (incompat & QCOW2_INCOMPAT_EXTL2)
		Q_FAIL(-ENOTSUP, "disk image '%s' uses extended L2 entries (subclusters), which "
		       "kvmkit does not support", p);
	if ((incompat & QCOW2_INCOMPAT_COMPRESSION) && compression != QCOW2_COMPRESSION_ZLIB &&
	    !qcow2_compression_supported(compression))
		Q_FAIL(-ENOTSUP, "disk image '%s' uses compression type %u, which this kvmkit cannot "
		       "read (zlib and, if built with libzstd, zstd)", p, compression);
	s->compression_type = (incompat & QCOW2_INCOMPAT_COMPRESSION) ? compression : 0;
	if ((incompat & QCOW2_INCOMPAT_CORRUPT) && !bd->readonly)
		Q_FAIL(-EINVAL, "disk image '%s' is marked corrupt; open it read-only or repair it "
		       "with 'qemu-img check -r all'", p);
	/* Dirty (lazy refcounts, not closed cleanly): refcounts may be too low. Writing stays
	 * safe because new clusters are appended, never taken from "free" ones; the bit stays
	 * set so that qemu-img check -r all (or QEMU's next open) repairs the counts. */
	s->dirty = incompat & QCOW2_INCOMPAT_DIRTY;
	if (crypt != 0)
		Q_FAIL(-ENOTSUP, "disk image '%s' is encrypted, which kvmkit does not support", p);
	if (s->refcount_order > 6)
		Q_FAIL(-EINVAL, "disk image '%s': refcount_order %u is above 6", p,
		       s->refcount_order);
	if (s->size > (1ull << 61) || s->size == 0)
		Q_FAIL(-EINVAL, "disk image '%s': virtual size %llu is invalid", p,
		       (unsigned long long)s->size);

	/* L1: big enough for the disk, inside the file, bounded. */
	uint64_t l2_span = 1ull << (s->cluster_bits + s->l2_bits);
	uint64_t l1_need = (s->size + l2_span - 1) / l2_span;
	if (s->l1_size < l1_need)
		Q_FAIL(-EINVAL, "disk image '%s': L1 table (%u entries) is too small for the disk",
		       p, s->l1_size);
	if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_TABLE_BYTES)
		Q_FAIL(-EFBIG, "disk image '%s': L1 table of %llu bytes is larger than kvmkit's "
		       "limit of %u MiB", p, (unsigned long long)s->l1_size * 8,
		       QCOW2_MAX_TABLE_BYTES >> 20);
	if ((s->l1_offset & (s->cluster_size - 1)) || s->l1_offset > fsize ||
	    (uint64_t)s->l1_size * 8 > fsize - s->l1_offset)
		Q_FAIL(-EINVAL, "disk image '%s': L1 table offset 0x%llx is misaligned or outside "
		       "the file", p, (unsigned long long)s->l1_offset);
	/* Refcount table: same checks. */
	s->rt_entries = (uint64_t)rt_clusters * s->cluster_size / 8;
	if ((uint64_t)rt_clusters * s->cluster_size > QCOW2_MAX_TABLE_BYTES)
		Q_FAIL(-EFBIG, "disk image '%s': refcount table is larger than kvmkit's limit of "
		       "%u MiB", p, QCOW2_MAX_TABLE_BYTES >> 20);
	if (rt_clusters == 0 || (s->rt_offset & (s->cluster_size - 1)) || s->rt_offset > fsize ||
	    s->rt_entries * 8 > fsize - s->rt_offset)
		Q_FAIL(-EINVAL, "disk image '%s': refcount table offset 0x%llx is misaligned or "
		       "outside the file", p, (unsigned long long)s->rt_offset);

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

	/* Header extensions, up to the end of the first cluster (or the file). */
	char backing_fmt[32] = "";
	uint64_t ext_end = s->cluster_size < fsize ? s->cluster_size : fsize;
	if (backing_off && backing_off < ext_end)
		ext_end = backing_off;
	for (uint64_t at = hlen; at + 8 <= ext_end;) {
		uint8_t eh[8];
		if ((r = q_pread(s->fd, eh, 8, at)) < 0)
			Q_FAIL(r, "cannot read disk image '%s': %s", p, strerror(-r));
		uint32_t type = qcow2_be32(eh), elen = qcow2_be32(eh + 4);
		if (type == QCOW2_EXT_END)
			break;
		if (elen > ext_end - at - 8)
			Q_FAIL(-EINVAL, "disk image '%s': header extension 0x%x overruns the header",
			       p, type);
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (elen >= sizeof(backing_fmt))
				Q_FAIL(-EINVAL, "disk image '%s': backing format name is too long", p);
			if ((r = q_pread(s->fd, backing_fmt, elen, at + 8)) < 0)
				Q_FAIL(r, "cannot read disk image '%s': %s", p, strerror(-r));
			backing_fmt[elen] = '\0';
		}
		at += 8 + ((elen + 7ull) & ~7ull);
	}

	/* Writable: allocation appends at the cluster-aligned end of the file; bitmaps we do
	 * not maintain are declared stale by clearing the autoclear bits. */
	s->next_free = (fsize + s->cluster_size - 1) & ~(s->cluster_size - 1);
	if (!bd->readonly && autoclear) {
		uint64_t zero = 0;
		if ((r = q_pwrite(s->fd, &zero, 8, 88)) < 0)
			Q_FAIL(r, "cannot write disk image '%s': %s", p, strerror(-r));
	}
	bd->driver_state = s;
	bd->size = s->size;

	if (backing_off) {
		char name[QCOW2_MAX_BACKING_NAME + 1];
		if (backing_len == 0 || backing_len > QCOW2_MAX_BACKING_NAME ||
		    backing_off > fsize || backing_len > fsize - backing_off)
			Q_FAIL(-EINVAL, "disk image '%s': backing file name is outside the file or "
			       "too long", p);
		if ((r = q_pread(s->fd, name, backing_len, backing_off)) < 0)
			Q_FAIL(r, "cannot read disk image '%s': %s", p, strerror(-r));
		name[backing_len] = '\0';
		if (strlen(name) != backing_len)
			Q_FAIL(-EINVAL, "disk image '%s': backing file name contains a NUL byte", p);
		enum block_cache cache = !s->sync ? BLOCK_CACHE_UNSAFE
			: bd->file.direct_align > 1 ? BLOCK_CACHE_NONE : BLOCK_CACHE_WRITEBACK;
		if ((r = q_open_backing(s, bd, name, backing_fmt[0] ? backing_fmt : NULL, cache)) < 0)
			goto fail_quiet;
	}
	return 0;
fail:
fail_quiet:
	bd->driver_state = NULL;
	qcow2_free(s);
	return r;
}

