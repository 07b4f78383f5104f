/* The io_uring I/O engine: one ring per disk, its completions signalled through the registered
 * eventfd and reaped on the event loop. Requests that find no room wait on an overflow list. */
#include "block/engine.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define URING_ENTRIES 128

struct uring_engine {
	struct block_engine base;
	struct io_uring ring;
	/* SQEs handed to the ring whose CQE has not been reaped. Kept at most cq_entries, so the
	 * completion queue can never overflow (older kernels drop or refuse completions then). */
	unsigned in_ring;
	unsigned max_in_ring;
	struct block_aio_list overflow; /* waiting for room in the ring, in submission order */
	bool reaping;                   /* inside reap: submit once at the end, not per request */
};

static void uring_prep(struct io_uring_sqe *sqe, struct block_aio *aio)
{
	int iovcnt;
	const struct iovec *iov = block_aio_iov(aio, &iovcnt);
	switch (aio->op) {
	case BLOCK_AIO_PREADV:
		io_uring_prep_readv(sqe, aio->fd, iov, (unsigned)iovcnt, block_aio_offset(aio));
		break;
	case BLOCK_AIO_PWRITEV:
		io_uring_prep_writev(sqe, aio->fd, iov, (unsigned)iovcnt, block_aio_offset(aio));
		break;
	case BLOCK_AIO_FDATASYNC:
		io_uring_prep_fsync(sqe, aio->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLOCK_AIO_FALLOCATE:
		io_uring_prep_fallocate(sqe, aio->fd, aio->mode, (off_t)aio->offset, (off_t)aio->len);
		break;
	}
	io_uring_sqe_set_data(sqe, aio);
}

/* Hands the prepared SQEs to the kernel. */
static void uring_flush(struct uring_engine *u)
{
	int r;
	do
		r = io_uring_submit(&u->ring);
	while (r == -EINTR);
	/* EAGAIN/EBUSY (kernel short of memory): the SQEs stay queued; wake the loop to retry
	 * from reap, or nothing might ever complete to bring it back. */
	if (r < 0)
		block_engine_kick(&u->base);
}

/* Puts aio in the ring if there is room; returns false if it must wait. */
static bool uring_try_queue(struct uring_engine *u, struct block_aio *aio)
{
	if (u->in_ring >= u->max_in_ring)
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		uring_flush(u); /* the SQ is full of prepared entries: hand them over */
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			return false;
	}
	uring_prep(sqe, aio);
	u->in_ring++;
	return true;
}

static void uring_queue(struct uring_engine *u, struct block_aio *aio)
{
	/* Behind others already waiting, so requests keep their order. */
	if (u->overflow.head || !uring_try_queue(u, aio))
		block_aio_list_push(&u->overflow, aio);
}

static void uring_submit(struct block_engine *e, struct block_aio *aio)
{
	struct uring_engine *u = (struct uring_engine *)e;
	uring_queue(u, aio);
	if (!u->reaping && !e->plugged && io_uring_sq_ready(&u->ring))
		uring_flush(u);
}

static void uring_unplug(struct block_engine *e)
{
	struct uring_engine *u = (struct uring_engine *)e;
	if (!u->reaping && io_uring_sq_ready(&u->ring))
		uring_flush(u);
}

/* One CQE: finishes aio, or sends the rest of a short transfer (or an interrupted call) again. */
static void uring_complete(struct uring_engine *u, struct block_aio *aio, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		uring_queue(u, aio);
		return;
	}
	if (res < 0 || (aio->op != BLOCK_AIO_PREADV && aio->op != BLOCK_AIO_PWRITEV)) {
		block_engine_finish(&u->base, aio, res < 0 ? res : 0);
		return;
	}
	int r = block_aio_advance(aio, (uint64_t)res);
	if (r == 0 && aio->moved >= aio->total)
		block_engine_finish(&u->base, aio, 0);
	else if (r < 0 || res == 0) /* res == 0: end of file; never loop on it */
		block_engine_finish(&u->base, aio, r < 0 ? r : -EIO);
	else
		uring_queue(u, aio);
}

static void uring_reap(struct block_engine *e)
{
	struct uring_engine *u = (struct uring_engine *)e;
	u->reaping = true;
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct block_aio *aio = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		u->in_ring--;
		uring_complete(u, aio, res);
	}
	/* Reaping made room: move waiting requests into the ring. */
	while (u->overflow.head && uring_try_queue(u, u->overflow.head))
		block_aio_list_pop(&u->overflow);
	u->reaping = false;
	if (!e->plugged && io_uring_sq_ready(&u->ring))
		uring_flush(u);
}

static void uring_destroy(struct block_engine *e)
{
	struct uring_engine *u = (struct uring_engine *)e;
	io_uring_queue_exit(&u->ring);
	free(u);
}

static const struct block_engine_ops uring_ops = {
	.name = "io_uring",
	.submit = uring_submit,
	.reap = uring_reap,
	.unplug = uring_unplug,
	.destroy = uring_destroy,
};

/* The ring can do everything the block layer asks of it (fallocate came last, in Linux 5.6). */
static bool uring_has_ops(struct io_uring *ring)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	if (!probe)
		return false;
	bool ok = io_uring_opcode_supported(probe, IORING_OP_READV) &&
		  io_uring_opcode_supported(probe, IORING_OP_WRITEV) &&
		  io_uring_opcode_supported(probe, IORING_OP_FSYNC) &&
		  io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
	io_uring_free_probe(probe);
	return ok;
}

int block_engine_uring_create(struct block_engine **out)
{
	struct uring_engine *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	struct io_uring_params params = { 0 };
	int r = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &params);
	if (r < 0) {
		free(u);
		return r;
	}
	if (!uring_has_ops(&u->ring)) {
		r = -ENOSYS;
		goto fail_ring;
	}
	r = block_engine_init_common(&u->base, &uring_ops);
	if (r < 0)
		goto fail_ring;
	r = io_uring_register_eventfd(&u->ring, u->base.event_fd);
	if (r < 0)
		goto fail_fd;
	u->max_in_ring = params.cq_entries;
	block_aio_list_init(&u->overflow);
	*out = &u->base;
	return 0;

fail_fd:
	close(u->base.event_fd);
fail_ring:
	io_uring_queue_exit(&u->ring);
	free(u);
	return r;
}
