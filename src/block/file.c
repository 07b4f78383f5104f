/* The host file under a format driver: opening it for a cache mode, and turning reads, writes,
 * flushes, discards and write-zeroes into engine system calls the way that mode needs. */
#include "block/file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

/* Zeroes written per request when fallocate cannot zero a range. A multiple of any O_DIRECT
 * alignment, so only the first and last chunk of a range can need a bounce buffer. */
#define ZERO_CHUNK (256u << 10)

/* Write-zeroes tries these in turn, each only if the file system may support it. */
enum { ZERO_BY_ZERO_RANGE, ZERO_BY_PUNCH_HOLE, ZERO_BY_WRITING };

/* A write that covers only part of its first or last O_DIRECT block reads those blocks first. */
enum { RMW_NONE, RMW_READ_HEAD, RMW_READ_TAIL, RMW_WRITE };

static void file_report_open_error(const char *path, int err, bool readonly,
				   enum block_cache cache)
{
	if (err == ENOENT)
		log_error("disk image '%s' does not exist", path);
	else if (err == EACCES || err == EPERM)
		log_error("no permission to open disk image '%s' for %s", path,
			  readonly ? "reading" : "reading and writing");
	else if (err == EROFS)
		log_error("disk image '%s' is on a read-only file system; open it read-only", path);
	else if (err == EISDIR)
		log_error("disk image '%s' is a directory, not a regular file or block device", path);
	else if (err == EINVAL && cache == BLOCK_CACHE_NONE)
		log_error("disk image '%s': cache=none is not supported by its file system "
			  "(it refuses O_DIRECT)", path);
	else
		log_error("cannot open disk image '%s': %s", path, strerror(err));
}

/* A regular file's O_DIRECT alignment. statx can report it (STATX_DIOALIGN) but glibc's struct
 * statx here predates the field, so ask the file itself: a 512-byte read, then 4096. */
static int file_probe_direct_align(int fd, uint32_t *align)
{
	void *buf;
	if (posix_memalign(&buf, 4096, 4096) != 0)
		return -ENOMEM;
	int r = -EINVAL;
	for (uint32_t a = 512; a <= 4096; a *= 8) {
		if (pread(fd, buf, a, 0) >= 0) {
			*align = a;
			r = 0;
			break;
		}
		if (errno != EINVAL) {
			r = -errno;
			break;
		}
	}
	free(buf);
	return r;
}

/* Size and alignments of a block device. */
static int file_probe_blockdev(struct block_file *f, bool direct)
{
	int lbs;
	if (ioctl(f->fd, BLKGETSIZE64, &f->size) < 0 || ioctl(f->fd, BLKSSZGET, &lbs) < 0) {
		int err = errno;
		log_error("cannot get the size of block device '%s': %s", f->path, strerror(err));
		return -err;
	}
	f->fallocate_align = (uint32_t)lbs;
	f->direct_align = direct ? (uint32_t)lbs : 1;
	return 0;
}

static int file_probe_regular(struct block_file *f, const struct stat *st, bool direct)
{
	f->size = (uint64_t)st->st_size;
	f->fallocate_align = 1;
	f->direct_align = 1;
	if (!direct)
		return 0;
	int r = file_probe_direct_align(f->fd, &f->direct_align);
	if (r == -EINVAL)
		log_error("disk image '%s': cache=none is not supported by its file system "
			  "(O_DIRECT reads fail)", f->path);
	else if (r < 0)
		log_error("cannot read disk image '%s': %s", f->path, strerror(-r));
	return r;
}

int block_file_open(struct block_file *f, const char *path, bool readonly, enum block_cache cache,
		    struct block_engine *engine)
{
	memset(f, 0, sizeof(*f));
	f->path = path;
	f->engine = engine;
	f->readonly = readonly;
	f->sync_on_flush = cache != BLOCK_CACHE_UNSAFE;
	f->rmw_waiting_tail = &f->rmw_waiting_head;
	bool direct = cache == BLOCK_CACHE_NONE;

	/* O_NONBLOCK so that a FIFO given by mistake cannot hang the open; cleared below. */
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | (direct ? O_DIRECT : 0);
	f->fd = open(path, flags);
	if (f->fd < 0) {
		int err = errno;
		file_report_open_error(path, err, readonly, cache);
		return -err;
	}
	struct stat st;
	int r;
	if (fstat(f->fd, &st) < 0 || fcntl(f->fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		r = -errno;
		log_error("cannot open disk image '%s': %s", path, strerror(-r));
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		f->is_blockdev = true;
		r = file_probe_blockdev(f, direct);
	} else if (S_ISREG(st.st_mode)) {
		r = file_probe_regular(f, &st, direct);
	} else {
		log_error("disk image '%s' is not a regular file or block device", path);
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	if (r < 0)
		goto fail;
	if (f->size == 0) {
		log_error("disk image '%s' is empty", path);
		r = -EINVAL;
		goto fail;
	}
	return 0;

fail:
	close(f->fd);
	f->fd = -1;
	return r;
}

void block_file_close(struct block_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	free(f->zero_buf);
	f->zero_buf = NULL;
}

/* --- engine calls: each runs io->aio and continues with `then` --- */

static void file_aio_done(struct block_aio *aio, int result)
{
	struct block_io *io = aio->opaque;
	io->aio_then(io, result);
}

static struct block_aio *file_aio(struct block_io *io, enum block_aio_op op, uint64_t offset,
				  void (*then)(struct block_io *, int))
{
	struct block_aio *aio = &io->aio;
	*aio = (struct block_aio){
		.op = op,
		.fd = io->file->fd,
		.offset = offset,
		.complete = file_aio_done,
		.opaque = io,
	};
	io->aio_then = then;
	return aio;
}

static void file_readwrite_aio(struct block_io *io, enum block_op op, const struct iovec *iov,
			       int iovcnt, uint64_t offset, void (*then)(struct block_io *, int))
{
	struct block_aio *aio = file_aio(io, op == BLOCK_OP_READ ? BLOCK_AIO_PREADV
								 : BLOCK_AIO_PWRITEV, offset, then);
	aio->iov = iov;
	aio->iovcnt = iovcnt;
	block_engine_submit(io->file->engine, aio);
}

static void file_fallocate_aio(struct block_io *io, int mode, uint64_t offset, uint64_t len,
			       void (*then)(struct block_io *, int))
{
	struct block_aio *aio = file_aio(io, BLOCK_AIO_FALLOCATE, offset, then);
	aio->mode = mode;
	aio->len = len;
	block_engine_submit(io->file->engine, aio);
}

/* Continues with result from the event loop, never from inside block_file_submit. (The aio
 * makes no system call; its op is only a placeholder.) */
static void file_result_later(struct block_io *io, int result,
			      void (*then)(struct block_io *, int))
{
	block_engine_complete_later(io->file->engine, file_aio(io, BLOCK_AIO_FDATASYNC, 0, then),
				    result);
}

static void file_done(struct block_io *io, int result)
{
	io->complete(io, result);
}

/* --- reads and writes, bounced when O_DIRECT cannot take the caller's buffers --- */

static bool file_rw_is_aligned(const struct block_io *io, uint64_t align)
{
	uint64_t mask = align - 1;
	if (io->rw_offset & mask)
		return false;
	for (int i = 0; i < io->rw_iovcnt; i++)
		if (((uintptr_t)io->rw_iov[i].iov_base | io->rw_iov[i].iov_len) & mask)
			return false;
	return true;
}

static void copy_from_iov(uint8_t *dst, const struct iovec *iov, int iovcnt, uint64_t len)
{
	for (int i = 0; i < iovcnt && len > 0; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : (size_t)len;
		memcpy(dst, iov[i].iov_base, n);
		dst += n;
		len -= n;
	}
}

static void copy_to_iov(const struct iovec *iov, int iovcnt, const uint8_t *src, uint64_t len)
{
	for (int i = 0; i < iovcnt && len > 0; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : (size_t)len;
		memcpy(iov[i].iov_base, src, n);
		src += n;
		len -= n;
	}
}

static void file_bounce_read_done(struct block_io *io, int result)
{
	if (result == 0)
		copy_to_iov(io->rw_iov, io->rw_iovcnt,
			    io->bounce + (io->rw_offset - io->bounce_offset), io->rw_len);
	free(io->bounce);
	io->bounce = NULL;
	io->rw_then(io, result);
}

static void file_rmw_step(struct block_io *io, int result);

/* Lets the next waiting read-modify-write go. */
static void file_rmw_release(struct block_file *f)
{
	struct block_io *next = f->rmw_waiting_head;
	if (!next) {
		f->rmw_busy = false;
		return;
	}
	f->rmw_waiting_head = next->rmw_next;
	if (!f->rmw_waiting_head)
		f->rmw_waiting_tail = &f->rmw_waiting_head;
	file_rmw_step(next, 0); /* the lock passes to it: rmw_busy stays set */
}

static void file_bounce_write_done(struct block_io *io, int result)
{
	free(io->bounce);
	io->bounce = NULL;
	if (io->rmw_step != RMW_NONE) {
		io->rmw_step = RMW_NONE;
		file_rmw_release(io->file);
	}
	io->rw_then(io, result);
}

static void file_bounce_write(struct block_io *io)
{
	copy_from_iov(io->bounce + (io->rw_offset - io->bounce_offset), io->rw_iov, io->rw_iovcnt,
		      io->rw_len);
	io->bounce_iov = (struct iovec){ io->bounce, io->bounce_len };
	file_readwrite_aio(io, BLOCK_OP_WRITE, &io->bounce_iov, 1, io->bounce_offset,
			   file_bounce_write_done);
}

/* Reads the O_DIRECT block at `at` bytes into the bounce buffer, then takes the next step. */
static void file_rmw_read_block(struct block_io *io, uint64_t at)
{
	io->bounce_iov = (struct iovec){ io->bounce + at, io->file->direct_align };
	file_readwrite_aio(io, BLOCK_OP_READ, &io->bounce_iov, 1, io->bounce_offset + at,
			   file_rmw_step);
}

/* Read-modify-write, one step per call: head block, tail block, then the whole span. */
static void file_rmw_step(struct block_io *io, int result)
{
	if (result < 0) {
		file_bounce_write_done(io, result);
		return;
	}
	uint64_t align = io->file->direct_align;
	bool head_partial = io->rw_offset != io->bounce_offset;
	bool tail_partial = io->rw_offset + io->rw_len != io->bounce_offset + io->bounce_len;
	if (io->rmw_step == RMW_READ_HEAD) {
		io->rmw_step = RMW_READ_TAIL;
		if (head_partial) {
			file_rmw_read_block(io, 0);
			return;
		}
	}
	if (io->rmw_step == RMW_READ_TAIL) {
		io->rmw_step = RMW_WRITE;
		/* unless the tail block is the head block, already read */
		if (tail_partial && !(head_partial && io->bounce_len == align)) {
			file_rmw_read_block(io, io->bounce_len - align);
			return;
		}
	}
	file_bounce_write(io);
}

/* O_DIRECT with a misaligned offset, length or buffer: go through an aligned copy of the
 * whole blocks the request touches. */
static int file_bounce(struct block_io *io)
{
	struct block_file *f = io->file;
	uint64_t mask = f->direct_align - 1;
	uint64_t start = io->rw_offset & ~mask;
	uint64_t end = (io->rw_offset + io->rw_len + mask) & ~mask;
	void *buf;
	if (posix_memalign(&buf, f->direct_align, end - start) != 0)
		return -ENOMEM;
	io->bounce = buf;
	io->bounce_offset = start;
	io->bounce_len = end - start;
	io->rmw_step = RMW_NONE;
	if (io->rw_op == BLOCK_OP_READ) {
		io->bounce_iov = (struct iovec){ io->bounce, io->bounce_len };
		file_readwrite_aio(io, BLOCK_OP_READ, &io->bounce_iov, 1, start,
				   file_bounce_read_done);
	} else if (start == io->rw_offset && end == io->rw_offset + io->rw_len) {
		file_bounce_write(io); /* whole blocks: only the buffers were misaligned */
	} else {
		io->rmw_step = RMW_READ_HEAD;
		if (f->rmw_busy) {
			io->rmw_next = NULL;
			*f->rmw_waiting_tail = io;
			f->rmw_waiting_tail = &io->rmw_next;
		} else {
			f->rmw_busy = true;
			file_rmw_step(io, 0);
		}
	}
	return 0;
}

/* Reads or writes rw_len bytes at offset, then continues with then(io, result). */
static int file_rw(struct block_io *io, enum block_op op, const struct iovec *iov, int iovcnt,
		   uint64_t offset, uint64_t len, void (*then)(struct block_io *, int))
{
	io->rw_op = op;
	io->rw_iov = iov;
	io->rw_iovcnt = iovcnt;
	io->rw_offset = offset;
	io->rw_len = len;
	io->rw_then = then;
	if (len == 0) {
		file_result_later(io, 0, then);
		return 0;
	}
	if (io->file->direct_align > 1 && !file_rw_is_aligned(io, io->file->direct_align))
		return file_bounce(io);
	file_readwrite_aio(io, op, iov, iovcnt, offset, then);
	return 0;
}

/* --- discard and write-zeroes --- */

/* Errors that mean "this file (or this range of a block device) cannot do that". EINVAL is
 * not remembered: a block device gives it for ranges that are not whole logical blocks. */
static bool fallocate_unsupported(int result)
{
	return result == -EOPNOTSUPP || result == -ENOSYS || result == -EINVAL;
}

static void file_discard_done(struct block_io *io, int result)
{
	/* Discard is advisory: a file system that cannot punch holes just keeps the data. */
	if (result == -EOPNOTSUPP || result == -ENOSYS) {
		io->file->no_punch_hole = true;
		result = 0;
	}
	file_done(io, result);
}

static int file_discard(struct block_io *io)
{
	struct block_file *f = io->file;
	/* Shrink to whole logical blocks, which is all a block device can punch. */
	uint64_t mask = f->fallocate_align - 1;
	uint64_t start = (io->offset + mask) & ~mask;
	uint64_t end = (io->offset + io->len) & ~mask;
	if (f->no_punch_hole || end <= start)
		file_result_later(io, 0, file_done);
	else
		file_fallocate_aio(io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start,
				   end - start, file_discard_done);
	return 0;
}

static int file_zero_fill_next(struct block_io *io);

static void file_zero_filled(struct block_io *io, int result)
{
	if (result == 0) {
		io->zero_pos += io->rw_len;
		if (io->zero_pos < io->offset + io->len) {
			result = file_zero_fill_next(io);
			if (result == 0)
				return;
		}
	}
	file_done(io, result);
}

static int file_zero_fill_next(struct block_io *io)
{
	uint64_t end = io->offset + io->len;
	uint64_t chunk_end = (io->zero_pos / ZERO_CHUNK + 1) * ZERO_CHUNK;
	if (chunk_end > end)
		chunk_end = end;
	io->zero_iov = (struct iovec){ io->file->zero_buf, chunk_end - io->zero_pos };
	return file_rw(io, BLOCK_OP_WRITE, &io->zero_iov, 1, io->zero_pos, chunk_end - io->zero_pos,
		       file_zero_filled);
}

/* The last resort: write zeroes, chunk by chunk. */
static int file_zero_fill(struct block_io *io)
{
	struct block_file *f = io->file;
	if (!f->zero_buf) {
		size_t align = f->direct_align > 4096 ? f->direct_align : 4096;
		if (posix_memalign(&f->zero_buf, align, ZERO_CHUNK) != 0) {
			f->zero_buf = NULL;
			return -ENOMEM;
		}
		memset(f->zero_buf, 0, ZERO_CHUNK);
	}
	io->zero_pos = io->offset;
	return file_zero_fill_next(io);
}

static void file_zeroes_done(struct block_io *io, int result);

/* Starts the first zeroing method from io->zero_step on that the file may support. */
static int file_zeroes_try(struct block_io *io)
{
	struct block_file *f = io->file;
	if (io->zero_step == ZERO_BY_ZERO_RANGE) {
		if (!f->no_zero_range) {
			file_fallocate_aio(io, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, io->offset,
					   io->len, file_zeroes_done);
			return 0;
		}
		io->zero_step = ZERO_BY_PUNCH_HOLE;
	}
	if (io->zero_step == ZERO_BY_PUNCH_HOLE) {
		/* A hole reads back as zeroes, from files and (Linux 4.9+) block devices. */
		if (!f->no_punch_hole) {
			file_fallocate_aio(io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, io->offset,
					   io->len, file_zeroes_done);
			return 0;
		}
		io->zero_step = ZERO_BY_WRITING;
	}
	return file_zero_fill(io);
}

static void file_zeroes_done(struct block_io *io, int result)
{
	if (!fallocate_unsupported(result)) {
		file_done(io, result);
		return;
	}
	if (result != -EINVAL) {
		if (io->zero_step == ZERO_BY_ZERO_RANGE)
			io->file->no_zero_range = true;
		else
			io->file->no_punch_hole = true;
	}
	io->zero_step++;
	int r = file_zeroes_try(io);
	if (r < 0)
		file_done(io, r);
}

int block_file_submit(struct block_file *f, struct block_io *io)
{
	io->file = f;
	io->bounce = NULL;
	io->rmw_step = RMW_NONE;
	switch (io->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		return file_rw(io, io->op, io->iov, io->iovcnt, io->offset, io->len, file_done);
	case BLOCK_OP_FLUSH:
		if (f->sync_on_flush)
			block_engine_submit(f->engine, file_aio(io, BLOCK_AIO_FDATASYNC, 0, file_done));
		else
			file_result_later(io, 0, file_done); /* cache=unsafe */
		return 0;
	case BLOCK_OP_DISCARD:
		if (io->len == 0)
			break;
		return file_discard(io);
	case BLOCK_OP_WRITE_ZEROES:
		if (io->len == 0)
			break;
		io->zero_step = ZERO_BY_ZERO_RANGE;
		return file_zeroes_try(io);
	}
	file_result_later(io, 0, file_done); /* nothing to do */
	return 0;
}
