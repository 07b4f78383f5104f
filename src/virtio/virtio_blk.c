/* virtio-blk (virtio 1.x 5.2): requests from the queue become asynchronous block-layer
 * requests; completions write the status byte and go back through the used ring. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "lib/iov.h"
#include "lib/le.h"
#include "lib/log.h"
#include "virtio/devices.h"
#include "virtio/virtio.h"
#include "virtio/transport.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

#define BLK_QUEUE_SIZE 256
#define BLK_BUDGET (2 * BLK_QUEUE_SIZE) /* requests per doorbell round: a full ring and more */
#define BLK_SECTOR 512
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2) /* data segments: the chain also has header and status */
#define BLK_ID_BYTES 20
/* One range per discard/write-zeroes request; the block layer takes any length. */
#define BLK_MAX_DISCARD_SECTORS 0x3fffffu

/* Feature bits (virtio 1.x 5.2.3) */
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

/* struct virtio_blk_config offsets */
#define CFG_CAPACITY        0x00
#define CFG_SEG_MAX         0x0c
#define CFG_BLK_SIZE        0x14
#define CFG_MAX_DISCARD     0x24
#define CFG_MAX_DISCARD_SEG 0x28
#define CFG_DISCARD_ALIGN   0x2c
#define CFG_MAX_WZ          0x30
#define CFG_MAX_WZ_SEG      0x34
#define CFG_WZ_MAY_UNMAP    0x38
#define CFG_SIZE            0x3c

struct blk_request {
	struct block_request breq;
	struct virtio_blk *blk;
	uint16_t queue;
	uint8_t *status;            /* the last byte of the chain's writable part */
	uint32_t written;           /* bytes the device writes into the chain on success */
	struct iovec data[VIRTQ_MAX_SEGS];
	struct virtq_elem elem;
	struct blk_request *next_free;
};

struct virtio_blk {
	struct virtio_device vdev;
	struct virtio_transport *transport;
	struct block_dev *bd;
	struct iothread *io;
	char id[BLK_ID_BYTES];
	uint8_t config[CFG_SIZE];
	struct blk_request *free_list;  /* I/O thread only */
	bool irq_pending[VIRTIO_MAX_QUEUES]; /* I/O thread only: used entries not yet signalled */
	/* In-flight accounting, shared with the vCPU that resets the device. */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned inflight;
	bool stopping;
	bool writethrough;              /* the driver did not negotiate FLUSH (set at start) */
	const struct virtio_blk_write_log *write_log; /* live block migration's, or NULL */
};



static struct blk_request *req_alloc(struct virtio_blk *blk)
{
	struct blk_request *r = blk->free_list;
	if (r) {
		blk->free_list = r->next_free;
		return r;
	}
	return malloc(sizeof(*r));
}

static void req_free(struct virtio_blk *blk, struct blk_request *r)
{
	r->next_free = blk->free_list;
	blk->free_list = r;
}

/* Hands a finished request back to the driver (or drops it if the device was reset). */
static void req_complete(struct blk_request *r, uint8_t status)
{
	struct virtio_blk *blk = r->blk;
	pthread_mutex_lock(&blk->lock);
	if (!blk->stopping) {
		*r->status = status;
		virtq_push(&blk->vdev.queues[r->queue].vq, r->elem.head,
			   status == VIRTIO_BLK_S_OK ? r->written : 1);
		blk->irq_pending[r->queue] = true;
	}
	if (--blk->inflight == 0)
		pthread_cond_broadcast(&blk->idle);
	pthread_mutex_unlock(&blk->lock);
	req_free(blk, r);
}

void virtio_blk_log_writes(struct virtio_blk *blk, const struct virtio_blk_write_log *log)
{
	__atomic_store_n(&blk->write_log, log, __ATOMIC_SEQ_CST);
}

/* A completed change of the disk, for live block migration (marked after it completed, so a
 * copy of the range made after the mark sees it). */
static void req_log_write(struct blk_request *r)
{
	const struct virtio_blk_write_log *log = __atomic_load_n(&r->blk->write_log,
								 __ATOMIC_ACQUIRE);
	const struct block_request *b = &r->breq;
	if (!log)
		return;
	uint64_t len = b->len;
	if (b->op == BLOCK_OP_WRITE)
		for (int i = 0; i < b->iovcnt; i++)
			len += b->iov[i].iov_len;
	log->written(log->opaque, b->offset, len);
}

static void req_done(struct block_request *breq, int result)
{
	struct blk_request *r = (struct blk_request *)breq;
	if (result == 0 && (breq->op == BLOCK_OP_WRITE || breq->op == BLOCK_OP_WRITE_ZEROES ||
			    breq->op == BLOCK_OP_DISCARD))
		req_log_write(r);
	/* A driver that cannot flush gets write-through: each write is made durable before it
	 * completes (virtio 1.x 5.2.6.2), by a flush that reuses the request. */
	if (result == 0 && breq->op == BLOCK_OP_WRITE && r->blk->writethrough) {
		breq->op = BLOCK_OP_FLUSH;
		if (block_submit(r->blk->bd, breq) == 0)
			return;
		result = -EIO;
	}
	if (result < 0)
		log_debug("virtio-blk: request type %d at %llu failed: %s", (int)breq->op,
			  (unsigned long long)breq->offset, strerror(-result));
	req_complete(r, result < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void blk_signal(struct virtio_blk *blk)
{
	for (uint16_t q = 0; q < blk->vdev.ops->num_queues; q++) {
		if (!blk->irq_pending[q])
			continue;
		blk->irq_pending[q] = false;
		if (!blk->stopping)
			virtio_queue_interrupt(&blk->vdev, q);
	}
}

static void blk_completions(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_blk *blk = opaque;
	block_process_completions(blk->bd);
	blk_signal(blk);
}

/* Starts one request; returns false if the guest broke the protocol (device needs reset). */
static bool blk_handle(struct virtio_blk *blk, uint16_t q, struct blk_request *r)
{
	struct virtq_elem *e = &r->elem;
	uint8_t hdr[16];
	if (e->in_num == 0 || e->in_len < 1 ||
	    iov_to_buf(e->iov, e->out_num, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return false; /* no header or no status byte: nothing can be answered */
	uint32_t type = (uint32_t)le_get(hdr, 4);
	uint64_t sector = le_get(hdr + 8, 8);

	/* The status is the last writable byte; the data lies between header and status. */
	const struct iovec *in = &e->iov[e->out_num];
	unsigned in_last = e->in_num - 1;
	while (in_last > 0 && in[in_last].iov_len == 0)
		in_last--;
	if (in[in_last].iov_len == 0)
		return false;
	r->status = (uint8_t *)in[in_last].iov_base + in[in_last].iov_len - 1;
	size_t data_in = (size_t)e->in_len - 1;
	size_t data_out = (size_t)e->out_len - sizeof(hdr);
	r->blk = blk;
	r->queue = q;
	r->written = 1;
	struct block_request *b = &r->breq;
	memset(b, 0, sizeof(*b));
	b->done = req_done;
	b->offset = sector * BLK_SECTOR;
	int n;
	uint8_t seg[16];

	pthread_mutex_lock(&blk->lock);
	blk->inflight++;
	pthread_mutex_unlock(&blk->lock);

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (sector > UINT64_MAX / BLK_SECTOR)
			break;
		if (type == VIRTIO_BLK_T_IN) {
			n = iov_slice(in, e->in_num, 0, data_in, r->data, VIRTQ_MAX_SEGS);
			b->op = BLOCK_OP_READ;
			r->written = (uint32_t)data_in + 1;
		} else {
			n = iov_slice(e->iov, e->out_num, sizeof(hdr), data_out, r->data, VIRTQ_MAX_SEGS);
			b->op = BLOCK_OP_WRITE;
		}
		if (n < 0 || (type == VIRTIO_BLK_T_IN ? data_in : data_out) % BLK_SECTOR)
			break;
		b->iov = r->data;
		b->iovcnt = n;
		if (block_submit(blk->bd, b) < 0)
			break;
		return true;
	case VIRTIO_BLK_T_FLUSH:
		b->op = BLOCK_OP_FLUSH;
		if (block_submit(blk->bd, b) < 0)
			break;
		return true;
	case VIRTIO_BLK_T_GET_ID: {
		size_t len = data_in < BLK_ID_BYTES ? data_in : BLK_ID_BYTES;
		r->written = (uint32_t)iov_from_buf(in, e->in_num, 0, blk->id, len) + 1;
		req_complete(r, VIRTIO_BLK_S_OK);
		return true;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		/* One {le64 sector, le32 num_sectors, le32 flags} range: max_*_seg is 1. */
		if (data_out != sizeof(seg) ||
		    iov_to_buf(e->iov, e->out_num, sizeof(hdr), seg, sizeof(seg)) != sizeof(seg))
			break;
		sector = le_get(seg, 8);
		if (sector > UINT64_MAX / BLK_SECTOR)
			break;
		b->op = type == VIRTIO_BLK_T_DISCARD ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE_ZEROES;
		b->offset = sector * BLK_SECTOR;
		b->len = le_get(seg + 8, 4) * (uint64_t)BLK_SECTOR;
		if (block_submit(blk->bd, b) < 0)
			break;
		return true;
	default:
		req_complete(r, VIRTIO_BLK_S_UNSUPP);
		return true;
	}
	req_complete(r, VIRTIO_BLK_S_IOERR);
	return true;
}

/* Takes every available request. The driver is asked not to ring while the ring is drained
 * (its doorbells would only wake this loop again), and the ring is checked once more after
 * turning doorbells back on, for requests that raced with that. */
static void blk_notify(struct virtio_device *d, uint16_t q)
{
	struct virtio_blk *blk = d->opaque;
	struct virtqueue *vq = &d->queues[q].vq;
	bool more = true;
	unsigned budget = BLK_BUDGET;
	block_plug(blk->bd);
	while (more) {
		virtq_disable_notify(vq);
		for (;;) {
			if (budget-- == 0) {
				/* The rest after the I/O thread served the others (notifications stay
				 * off meanwhile: our own doorbell brings us back). */
				virtio_queue_kick_later(d, q);
				more = false;
				break;
			}
			struct blk_request *r = req_alloc(blk);
			if (!r) {
				log_warn("virtio-blk: out of memory; requests wait for the next doorbell");
				virtq_enable_notify(vq);
				more = false;
				break;
			}
			int got = virtq_pop(vq, &r->elem);
			if (got <= 0) {
				req_free(blk, r);
				if (got < 0) {
					virtio_queue_error(d, q, got);
					more = false;
				}
				break;
			}
			if (!blk_handle(blk, q, r)) {
				req_free(blk, r);
				virtio_device_broken(d, "a request without header or status byte");
				more = false;
				break;
			}
		}
		more = more && virtq_enable_notify(vq);
	}
	/* One system call for the batch; reads the host has cached are often done by the time it
	 * returns, so their completions are collected now rather than after an event-loop turn. */
	block_unplug(blk->bd);
	block_process_completions(blk->bd);
	blk_signal(blk);
}

static void blk_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_blk *blk = d->opaque;
	memcpy(data, blk->config + off, len);
}

static int blk_start(struct virtio_device *d)
{
	struct virtio_blk *blk = d->opaque;
	pthread_mutex_lock(&blk->lock);
	blk->stopping = false;
	blk->writethrough = !(d->driver_features & (1ULL << VIRTIO_BLK_F_FLUSH));
	pthread_mutex_unlock(&blk->lock);
	return 0;
}

/* Waits for the requests in flight: after a reset the driver reuses their buffers. */
static void blk_stop(struct virtio_device *d)
{
	struct virtio_blk *blk = d->opaque;
	pthread_mutex_lock(&blk->lock);
	blk->stopping = true;
	while (blk->inflight > 0)
		pthread_cond_wait(&blk->idle, &blk->lock);
	pthread_mutex_unlock(&blk->lock);
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_size = BLK_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.config_read = blk_config_read,
	.start = blk_start,
	.queue_notify = blk_notify,
	.stop = blk_stop,
};

static void virtio_blk_destroy(void *opaque);

/* arg: the struct vm_disk (image and serial). */
static void *virtio_blk_realize(const struct device_ctx *ctx, const void *arg)
{
	const struct block_options *opts = &((const struct vm_disk *)arg)->block;
	const char *serial = ((const struct vm_disk *)arg)->serial;
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	if (!blk)
		return NULL;
	blk->io = ctx->io;
	pthread_mutex_init(&blk->lock, NULL);
	pthread_cond_init(&blk->idle, NULL);
	if (serial) /* the spec's ID is NUL-padded, not NUL-terminated at 20 bytes */
		memcpy(blk->id, serial, strnlen(serial, sizeof(blk->id)));
	if (block_open(opts, &blk->bd) < 0)
		goto fail;

	bool ro = block_readonly(blk->bd);
	le_put(blk->config + CFG_CAPACITY, 8, block_size(blk->bd) / BLK_SECTOR);
	le_put(blk->config + CFG_SEG_MAX, 4, BLK_SEG_MAX);
	le_put(blk->config + CFG_BLK_SIZE, 4, BLK_SECTOR);
	le_put(blk->config + CFG_MAX_DISCARD, 4, BLK_MAX_DISCARD_SECTORS);
	le_put(blk->config + CFG_MAX_DISCARD_SEG, 4, 1);
	le_put(blk->config + CFG_DISCARD_ALIGN, 4, 1);
	le_put(blk->config + CFG_MAX_WZ, 4, BLK_MAX_DISCARD_SECTORS);
	le_put(blk->config + CFG_MAX_WZ_SEG, 4, 1);
	blk->config[CFG_WZ_MAY_UNMAP] = 0;
	uint64_t features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ULL << VIRTIO_BLK_F_FLUSH);
	if (ro)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);

	if (virtio_device_init(&blk->vdev, ctx, &blk_ops, blk, features) < 0)
		goto fail_bd;
	if (iothread_add(ctx->io, block_completion_fd(blk->bd), EPOLLIN, blk_completions, blk) < 0)
		goto fail_vdev;
	blk->transport = virtio_transport_create(ctx, &blk->vdev);
	if (!blk->transport)
		goto fail_io;
	if (virtio_transport_register(ctx, blk->transport) < 0) {
		virtio_blk_destroy(blk);
		return NULL;
	}
	log_debug("virtio-blk: %s, %llu sectors, %s, I/O engine %s", opts->path,
		  (unsigned long long)(block_size(blk->bd) / BLK_SECTOR), ro ? "read-only" : "read-write",
		  block_engine_name(blk->bd));
	return blk;

fail_io:
	iothread_remove(ctx->io, block_completion_fd(blk->bd));
fail_vdev:
	virtio_device_destroy(&blk->vdev);
fail_bd:
	block_close(blk->bd);
fail:
	pthread_cond_destroy(&blk->idle);
	pthread_mutex_destroy(&blk->lock);
	free(blk);
	return NULL;
}

static void virtio_blk_destroy(void *opaque)
{
	struct virtio_blk *blk = opaque;
	virtio_transport_destroy(blk->transport);
	/* Stops the device (waiting for requests in flight, completed by the I/O thread). */
	virtio_device_destroy(&blk->vdev);
	iothread_remove(blk->io, block_completion_fd(blk->bd));
	block_close(blk->bd);
	while (blk->free_list) {
		struct blk_request *r = blk->free_list;
		blk->free_list = r->next_free;
		free(r);
	}
	pthread_cond_destroy(&blk->idle);
	pthread_mutex_destroy(&blk->lock);
	free(blk);
}

/* Its state travels in its transport's section (the requests are drained before a save). */
const struct device_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.realize = virtio_blk_realize,
	.destroy = virtio_blk_destroy,
};
