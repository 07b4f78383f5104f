/* Block migration: raw disk images copied over the migration stream in passes, with the
 * guest's completed writes tracked per 1 MiB chunk (format in block_mig.h). */
#include "migration/block_mig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "migration/dirty.h"
#include "migration/ram.h"

static bool disk_is_raw(const struct vm_disk *d)
{
	return !d->block.format || strcmp(d->block.format, "raw") == 0;
}

int block_mig_check(const struct vm *vm, char *why, size_t why_len)
{
	for (unsigned i = 0; i < vm->cfg->ndisks; i++) {
		if (!disk_is_raw(&vm->cfg->disks[i])) {
			snprintf(why, why_len, "block migration copies raw images only, and disk %u "
				 "(%s) is %s: convert it to raw or use shared storage", i,
				 vm->cfg->disks[i].block.path, vm->cfg->disks[i].block.format);
			return -ENOTSUP;
		}
	}
	return 0;
}

int block_mig_check_shared(const struct vm *vm, char *why, size_t why_len)
{
	for (unsigned i = 0; i < vm->cfg->ndisks; i++) {
		const struct vm_disk *d = &vm->cfg->disks[i];
		if (!disk_is_raw(d) && !d->block.readonly) {
			snprintf(why, why_len, "disk %u (%s) is a writable %s image: the target would "
				 "not see the metadata this process caches, so it cannot be shared "
				 "during a migration (use a raw image)", i, d->block.path,
				 d->block.format);
			return -ENOTSUP;
		}
	}
	return 0;
}

/* virtio-blk's hook, on the I/O thread: the chunks of a completed write. */
static void disk_written(void *opaque, uint64_t offset, uint64_t len)
{
	struct disk_mig *d = opaque;
	if (len == 0 || offset >= d->size)
		return;
	uint64_t last = (offset + len - 1) / BLOCK_MIG_CHUNK;
	for (uint64_t c = offset / BLOCK_MIG_CHUNK; c <= last && c < d->nchunks; c++)
		__atomic_fetch_or(&d->written[c / 64], 1ULL << (c % 64), __ATOMIC_RELAXED);
}

static int disk_start(struct disk_mig *d, const struct vm_disk *cfg, struct virtio_blk *dev)
{
	struct stat st;
	d->fd = open(cfg->block.path, O_RDONLY | O_CLOEXEC);
	if (d->fd < 0 || fstat(d->fd, &st) < 0)
		return -errno;
	d->size = (uint64_t)st.st_size;
	d->nchunks = (d->size + BLOCK_MIG_CHUNK - 1) / BLOCK_MIG_CHUNK;
	d->written = calloc(dirty_words(d->nchunks) + 1, sizeof(uint64_t));
	d->pending = calloc(dirty_words(d->nchunks) + 1, sizeof(uint64_t));
	if (!d->written || !d->pending)
		return -ENOMEM;
	for (uint64_t c = 0; c < d->nchunks; c++)
		d->pending[c / 64] |= 1ULL << (c % 64);
	d->log = (struct virtio_blk_write_log){ disk_written, d };
	virtio_blk_log_writes(dev, &d->log);
	return 0;
}

void block_mig_free(struct block_mig *b)
{
	for (unsigned i = 0; i < b->ndisks; i++) {
		free(b->disks[i].written);
		b->disks[i].written = NULL;
	}
}

int block_mig_start(struct block_mig *b, struct vm *vm, struct stream *s, char *why,
		    size_t why_len)
{
	/* The logs of an earlier migration were removed when it ended: no completion uses
	 * them any more. */
	block_mig_free(b);
	memset(b, 0, sizeof(*b));
	b->vm = vm;
	if (!(b->buf = malloc(BLOCK_MIG_CHUNK))) {
		snprintf(why, why_len, "cannot allocate block migration's buffer");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < VM_MAX_DISKS; i++)
		b->disks[i].fd = -1;
	int r = block_mig_check(vm, why, why_len);
	for (unsigned i = 0; r == 0 && i < vm->cfg->ndisks; i++, b->ndisks++) {
		r = disk_start(&b->disks[i], &vm->cfg->disks[i],
			       device_find(&vm->devices, &virtio_blk_ops, i));
		if (r < 0)
			snprintf(why, why_len, "cannot read disk %u (%s) for block migration: %s", i,
				 vm->cfg->disks[i].block.path, strerror(-r));
		stream_begin_section(s, BLOCK_MIG_SIZE_TAG, i, 1);
		stream_put_u64(s, b->disks[i].size);
		stream_end_section(s);
	}
	return r < 0 ? r : stream_error(s);
}

uint64_t block_mig_sync(struct block_mig *b)
{
	uint64_t bytes = 0;
	for (unsigned i = 0; i < b->ndisks; i++) {
		struct disk_mig *d = &b->disks[i];
		for (uint64_t w = 0; w < dirty_words(d->nchunks); w++)
			d->pending[w] |= __atomic_exchange_n(&d->written[w], 0, __ATOMIC_ACQ_REL);
		d->next = 0;
		bytes += dirty_count(d->pending, d->nchunks) * BLOCK_MIG_CHUNK;
	}
	return bytes;
}

/* The next pending chunk of d at or after d->next, cleared; false if none. */
static bool disk_take_chunk(struct disk_mig *d, uint64_t *chunk)
{
	for (uint64_t c = d->next; c < d->nchunks; c++) {
		if (d->pending[c / 64] == 0) {
			c |= 63; /* a whole word without pending chunks */
			continue;
		}
		if (d->pending[c / 64] & (1ULL << (c % 64))) {
			d->pending[c / 64] &= ~(1ULL << (c % 64));
			d->next = c + 1;
			*chunk = c;
			return true;
		}
	}
	d->next = d->nchunks;
	return false;
}

int block_mig_send_one(struct block_mig *b, struct stream *s, bool *done)
{
	uint8_t *buf = b->buf;
	for (unsigned i = 0; i < b->ndisks; i++) {
		struct disk_mig *d = &b->disks[i];
		uint64_t c;
		if (!disk_take_chunk(d, &c))
			continue;
		uint64_t off = c * BLOCK_MIG_CHUNK;
		uint32_t len = (uint32_t)(d->size - off < BLOCK_MIG_CHUNK ? d->size - off
									  : BLOCK_MIG_CHUNK);
		ssize_t n = pread(d->fd, buf, len, (off_t)off);
		if (n != (ssize_t)len)
			return n < 0 ? -errno : -EIO;
		bool zero = true;
		for (uint32_t p = 0; zero && p + RAM_PAGE_SIZE <= len; p += RAM_PAGE_SIZE)
			zero = ram_page_is_zero(buf + p);
		zero = zero && len % RAM_PAGE_SIZE == 0;
		stream_begin_section(s, BLOCK_MIG_DATA_TAG, i, 1);
		stream_put_u64(s, off);
		stream_put_u32(s, len);
		stream_put_u8(s, zero ? 0 : 1);
		if (!zero)
			stream_put_bytes(s, buf, len);
		*done = false;
		return stream_end_section(s);
	}
	*done = true;
	return 0;
}

void block_mig_stop(struct block_mig *b)
{
	for (unsigned i = 0; i < b->ndisks; i++) {
		struct disk_mig *d = &b->disks[i];
		struct virtio_blk *blk = b->vm ? device_find(&b->vm->devices, &virtio_blk_ops, i) : NULL;
		if (blk)
			virtio_blk_log_writes(blk, NULL);
		if (d->fd >= 0)
			close(d->fd);
		d->fd = -1;
		free(d->pending);
		d->pending = NULL;
		/* A completion on the I/O thread may still be in disk_written: the written bits
		 * stay until the next start (a few bits per MiB of disk). */
	}
	free(b->buf);
	b->buf = NULL;
}

int block_mig_flush_shared(const struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg->ndisks; i++) {
		const struct vm_disk *d = &vm->cfg->disks[i];
		if (d->block.readonly || d->block.cache == BLOCK_CACHE_UNSAFE)
			continue;
		int fd = open(d->block.path, O_RDONLY | O_CLOEXEC);
		int r = fd < 0 || fdatasync(fd) < 0 ? -errno : 0;
		if (fd >= 0)
			close(fd);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the target ---- */

static int recv_open_disk(struct block_mig_recv *rx, struct vm *vm, unsigned i, uint64_t size, const char *uri)
{
	const struct vm_disk *d = &vm->cfg->disks[i];
	if (!disk_is_raw(d) || d->block.readonly) {
		log_error("the migration from %s brings disk %u's content, but this VM's disk %u "
			  "(%s) is %s: give the target a writable raw image", uri, i, i,
			  d->block.path, d->block.readonly ? "read-only" : d->block.format);
		return -ENOTSUP;
	}
	int fd = open(d->block.path, O_WRONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = errno;
		log_error("cannot write the migrated disk %u into %s: %s", i, d->block.path,
			  strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	if ((uint64_t)st.st_size != size) {
		log_error("the migration from %s brings a disk %u of %llu bytes, but %s holds %llu: "
			  "give the target an image of the source's size", uri, i,
			  (unsigned long long)size, d->block.path, (unsigned long long)st.st_size);
		close(fd);
		return -EINVAL;
	}
	rx->fds[i] = fd;
	rx->sizes[i] = size;
	rx->open[i] = true;
	return 0;
}

int block_mig_recv(struct block_mig_recv *rx, struct vm *vm, const struct stream_section *sec,
		   struct stream *s, const char *uri)
{
	unsigned i = sec->instance;
	if (i >= vm->cfg->ndisks || sec->version != 1) {
		log_error("the migration from %s brings a disk %u this VM lacks", uri, i);
		return -EINVAL;
	}
	if (sec->tag == BLOCK_MIG_SIZE_TAG) {
		uint64_t size = stream_get_u64(s);
		if (stream_end_read(s) < 0 || rx->open[i])
			return -EBADMSG;
		return recv_open_disk(rx, vm, i, size, uri);
	}
	uint64_t off = stream_get_u64(s);
	uint32_t len = stream_get_u32(s);
	uint8_t kind = stream_get_u8(s);
	/* Checked before buf is touched: the peer chooses len, and buf holds one chunk. */
	if (stream_error(s) < 0 || !rx->open[i] || len == 0 || len > BLOCK_MIG_CHUNK ||
	    kind > 1 || off > rx->sizes[i] || len > rx->sizes[i] - off) {
		log_error("the migration from %s brings a damaged chunk of disk %u", uri, i);
		return -EBADMSG;
	}
	if (!rx->buf && !(rx->buf = malloc(BLOCK_MIG_CHUNK))) {
		log_error("cannot allocate a buffer for the migrated disk %u", i);
		return -ENOMEM;
	}
	uint8_t *buf = rx->buf;
	if (kind == 1)
		stream_get_bytes(s, buf, len);
	else
		memset(buf, 0, len);
	if (stream_end_read(s) < 0)
		return stream_error(s);
	if (pwrite(rx->fds[i], buf, len, (off_t)off) != (ssize_t)len) {
		log_error("cannot write the migrated disk %u into %s: %s", i,
			  vm->cfg->disks[i].block.path, strerror(errno ? errno : EIO));
		return -EIO;
	}
	return 0;
}

int block_mig_recv_finish(struct block_mig_recv *rx)
{
	int r = 0;
	for (unsigned i = 0; i < VM_MAX_DISKS; i++) {
		if (!rx->open[i])
			continue;
		if (fdatasync(rx->fds[i]) < 0 && r == 0)
			r = -errno;
		close(rx->fds[i]);
		rx->open[i] = false;
	}
	free(rx->buf);
	rx->buf = NULL;
	return r;
}
