/* The block layer's front: opening an image through its format driver, checking requests,
 * and running their done() callbacks on the device's event loop. */
#include "block/block.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "block/block_int.h"
#include "lib/log.h"

static const struct block_driver *const block_drivers[] = {
	&block_driver_raw,
	&block_driver_qcow2,
};

static const struct block_driver *block_find_driver(const char *format)
{
	for (size_t i = 0; i < sizeof(block_drivers) / sizeof(block_drivers[0]); i++)
		if (strcmp(block_drivers[i]->format, format) == 0)
			return block_drivers[i];
	return NULL;
}

static void block_free(struct block_dev *bd)
{
	block_engine_destroy(bd->engine);
	free(bd->path);
	free(bd);
}

int block_open(const struct block_options *opts, struct block_dev **out)
{
	*out = NULL;
	if (!opts->path || !*opts->path) {
		log_error("a disk needs the path of its image");
		return -EINVAL;
	}
	const char *format = opts->format ? opts->format : "raw";
	const struct block_driver *driver = block_find_driver(format);
	if (!driver) {
		log_error("disk image '%s': unknown format \"%s\" (raw and qcow2 are supported)",
			  opts->path, format);
		return -EINVAL;
	}
	if (opts->cache != BLOCK_CACHE_WRITEBACK && opts->cache != BLOCK_CACHE_NONE &&
	    opts->cache != BLOCK_CACHE_UNSAFE) {
		log_error("disk image '%s': unknown cache mode %d", opts->path, (int)opts->cache);
		return -EINVAL;
	}

	struct block_dev *bd = calloc(1, sizeof(*bd));
	if (!bd || !(bd->path = strdup(opts->path))) {
		log_error("disk image '%s': out of memory", opts->path);
		free(bd);
		return -ENOMEM;
	}
	bd->done_tail = &bd->done_head;
	bd->readonly = opts->readonly;
	bd->driver = driver;
	bd->file.fd = -1;

	int r = block_engine_create(&bd->engine);
	if (r < 0) {
		log_error("disk image '%s': cannot start asynchronous I/O: %s", bd->path,
			  strerror(-r));
		block_free(bd);
		return r;
	}
	r = block_file_open(&bd->file, bd->path, opts->readonly, opts->cache, bd->engine);
	if (r < 0) {
		block_free(bd);
		return r;
	}
	r = driver->open(bd);
	if (r < 0) {
		block_file_close(&bd->file);
		block_free(bd);
		return r;
	}
	log_debug("block: '%s': %s, %llu bytes%s, %s I/O", bd->path, format,
		  (unsigned long long)bd->size, bd->readonly ? ", read-only" : "",
		  bd->engine->ops->name);
	*out = bd;
	return 0;
}

void block_close(struct block_dev *bd)
{
	if (!bd)
		return;
	/* Drain: the callers' requests finish (done() runs) before anything is freed. */
	while (bd->inflight) {
		if (!bd->done_head) {
			struct pollfd pfd = { .fd = block_completion_fd(bd), .events = POLLIN };
			poll(&pfd, 1, -1);
		}
		block_process_completions(bd);
	}
	/* Then whatever a driver still has in flight on its own (none for raw). */
	block_engine_drain(bd->engine);
	bd->driver->close(bd);
	block_file_close(&bd->file);
	block_free(bd);
}

uint64_t block_size(const struct block_dev *bd)
{
	return bd->size;
}

int block_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n)
{
	*n = 0;
	if (len == 0 || off >= bd->size)
		return -EINVAL;
	if (len > bd->size - off)
		len = bd->size - off;
	*n = len;
	return bd->driver->extent ? bd->driver->extent(bd, off, len, n) : 1;
}

bool block_readonly(const struct block_dev *bd)
{
	return bd->readonly;
}

int block_completion_fd(const struct block_dev *bd)
{
	return bd->engine->event_fd;
}

const char *block_engine_name(const struct block_dev *bd)
{
	return bd->engine->ops->name;
}

void block_request_complete(struct block_dev *bd, struct block_request *req, int result)
{
	req->result = result;
	req->next_done = NULL;
	*bd->done_tail = req;
	bd->done_tail = &req->next_done;
}

/* 0 if req may go to the driver, with its length in *len; else the error it completes with. */
static int block_check(const struct block_dev *bd, const struct block_request *req,
		       uint64_t *len)
{
	*len = 0;
	switch (req->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		if (req->iovcnt < 0 || req->iovcnt > IOV_MAX || (req->iovcnt > 0 && !req->iov))
			return -EINVAL;
		for (int i = 0; i < req->iovcnt; i++) {
			if (req->iov[i].iov_len > UINT64_MAX - *len)
				return -EINVAL;
			*len += req->iov[i].iov_len;
		}
		break;
	case BLOCK_OP_FLUSH:
		return 0;
	case BLOCK_OP_DISCARD:
	case BLOCK_OP_WRITE_ZEROES:
		*len = req->len;
		break;
	default:
		return -EINVAL;
	}
	if (req->op != BLOCK_OP_READ && bd->readonly)
		return -EROFS;
	if (req->offset > bd->size || *len > bd->size - req->offset)
		return -EINVAL;
	return 0;
}

int block_submit(struct block_dev *bd, struct block_request *req)
{
	uint64_t len;
	int err = block_check(bd, req, &len);
	if (err == 0) {
		int r = bd->driver->submit(bd, req, len);
		if (r < 0)
			return r;
	} else {
		/* Refused requests still complete through done(), from the event loop. */
		block_request_complete(bd, req, err);
		block_engine_kick(bd->engine);
	}
	bd->inflight++;
	return 0;
}

struct block_wait {
	bool done;
	int result;
};

static void block_wait_done(struct block_request *req, int result)
{
	struct block_wait *w = req->opaque;
	w->done = true;
	w->result = result;
}

int block_io(struct block_dev *bd, enum block_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov = { buf, len };
	struct block_wait w = { false, 0 };
	struct block_request req = { .op = op, .offset = off, .iov = &iov, .iovcnt = 1,
				     .len = len, .done = block_wait_done, .opaque = &w };
	int r = block_submit(bd, &req);
	if (r < 0)
		return r;
	while (!w.done) {
		struct pollfd pfd = { .fd = block_completion_fd(bd), .events = POLLIN };
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
		block_process_completions(bd);
	}
	return w.result;
}

void block_plug(struct block_dev *bd)
{
	block_engine_plug(bd->engine);
}

void block_unplug(struct block_dev *bd)
{
	block_engine_unplug(bd->engine);
}

void block_process_completions(struct block_dev *bd)
{
	block_engine_process_completions(bd->engine);
	if (bd->driver->process)
		bd->driver->process(bd);
	/* done() may submit more; anything that completes at once is run in this same pass. */
	while (bd->done_head) {
		struct block_request *req = bd->done_head;
		bd->done_head = req->next_done;
		if (!bd->done_head)
			bd->done_tail = &bd->done_head;
		bd->inflight--;
		req->done(req, req->result);
	}
}
