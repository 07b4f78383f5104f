/* The raw format: the image is the disk, byte for byte, so guest offsets map 1:1 to the file. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "block/block_int.h"
#include "lib/log.h"

/* One guest request on its way through the file layer. */
struct raw_io {
	struct block_io io;
	struct block_request *req;
	struct block_dev *bd;
	struct raw_io *next_free;
};

struct raw_state {
	/* Finished raw_ios kept for reuse: no malloc per request once the queue depth is met. */
	struct raw_io *free_list;
};

static int raw_open(struct block_dev *bd)
{
	struct block_file *f = &bd->file;
	/* Under O_DIRECT a partial last block could only be written by writing past the end of
	 * the file, growing it: the guest sees whole blocks only. */
	uint64_t size = f->size & ~(uint64_t)(f->direct_align - 1);
	if (size == 0) {
		log_error("disk image '%s' (%llu bytes) is smaller than one %u-byte block, the "
			  "least cache=none can use", f->path, (unsigned long long)f->size,
			  f->direct_align);
		return -EINVAL;
	}
	if (size != f->size)
		log_warn("disk image '%s': with cache=none the guest sees whole %u-byte blocks; the "
			 "last %llu bytes are left out", f->path, f->direct_align,
			 (unsigned long long)(f->size - size));
	struct raw_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	bd->driver_state = s;
	bd->size = size;
	return 0;
}

static void raw_close(struct block_dev *bd)
{
	struct raw_state *s = bd->driver_state;
	while (s->free_list) {
		struct raw_io *r = s->free_list;
		s->free_list = r->next_free;
		free(r);
	}
	free(s);
	bd->driver_state = NULL;
}

static void raw_put(struct raw_state *s, struct raw_io *r)
{
	r->next_free = s->free_list;
	s->free_list = r;
}

static void raw_io_done(struct block_io *io, int result)
{
	struct raw_io *r = io->opaque;
	struct block_request *req = r->req;
	struct block_dev *bd = r->bd;
	raw_put(bd->driver_state, r);
	block_request_complete(bd, req, result);
}

static int raw_submit(struct block_dev *bd, struct block_request *req, uint64_t len)
{
	struct raw_state *s = bd->driver_state;
	struct raw_io *r = s->free_list;
	if (r)
		s->free_list = r->next_free;
	else if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	r->req = req;
	r->bd = bd;
	r->io.op = req->op;
	r->io.offset = req->offset;
	r->io.iov = req->iov;
	r->io.iovcnt = req->iovcnt;
	r->io.len = len;
	r->io.complete = raw_io_done;
	r->io.opaque = r;
	int ret = block_file_submit(&bd->file, &r->io);
	if (ret < 0)
		raw_put(s, r);
	return ret;
}

/* The file's holes read as zeroes (SEEK_DATA/SEEK_HOLE; without them everything is data). */
static int raw_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n)
{
	int fd = bd->file.fd;
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		*n = len;
		return errno == ENXIO ? 0 : 1; /* ENXIO: nothing but a hole from off on */
	}
	if ((uint64_t)d > off) {
		*n = (uint64_t)d - off < len ? (uint64_t)d - off : len;
		return 0;
	}
	off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
	*n = h > (off_t)off && (uint64_t)h - off < len ? (uint64_t)h - off : len;
	return 1;
}

const struct block_driver block_driver_raw = {
	.format = "raw",
	.open = raw_open,
	.close = raw_close,
	.submit = raw_submit,
	.extent = raw_extent,
};
