/* The virtio device model shared by the transports (see virtio.h). */
#include "virtio/virtio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/device.h"
#include "vmm/iothread.h"

/* Doorbell of one queue, read on the I/O thread. */
static void virtio_doorbell(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_queue *vq = opaque;
	uint64_t count;
	if (read(vq->notify_fd, &count, sizeof(count)) != sizeof(count))
		return; /* spurious */
	struct virtio_device *d = vq->owner;
	if (atomic_load(&d->running) && !atomic_load(&d->needs_reset))
		d->ops->queue_notify(d, (uint16_t)(vq - d->queues));
}

static void virtio_reset_queues(struct virtio_device *d)
{
	for (uint16_t i = 0; i < d->ops->num_queues; i++) {
		struct virtio_queue *q = &d->queues[i];
		q->size = d->ops->queue_size;
		q->enabled = false;
		q->desc = q->driver = q->device = 0;
		q->vector = VIRTIO_NO_VECTOR;
		memset(&q->vq, 0, sizeof(q->vq));
	}
}

int virtio_device_init(struct virtio_device *d, const struct device_ctx *ctx,
		       const struct virtio_device_ops *ops,
		       void *opaque, uint64_t device_features)
{
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES || ops->queue_size == 0 ||
	    ops->queue_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->opaque = opaque;
	d->mem = ctx->mem;
	d->io = ctx->io;
	pthread_mutex_init(&d->lock, NULL);
	d->device_features = device_features | (1ULL << VIRTIO_F_VERSION_1) |
			     (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
			     (1ULL << VIRTIO_RING_F_EVENT_IDX);
	d->config_vector = VIRTIO_NO_VECTOR;
	for (uint16_t i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->queues[i].notify_fd = -1;
	virtio_reset_queues(d);
	for (uint16_t i = 0; i < ops->num_queues; i++) {
		struct virtio_queue *q = &d->queues[i];
		q->owner = d;
		q->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->notify_fd < 0 ||
		    iothread_add(d->io, q->notify_fd, EPOLLIN, virtio_doorbell, q) < 0) {
			int err = errno;
			log_error("%s: cannot set up the doorbell of queue %u: %s", ops->name, i,
				  strerror(err));
			virtio_device_destroy(d);
			return -err;
		}
	}
	return 0;
}

void virtio_device_stop(struct virtio_device *d)
{
	if (!d->ops)
		return;
	pthread_mutex_lock(&d->lock);
	if (atomic_exchange(&d->running, false)) {
		iothread_sync(d->io);
		d->ops->stop(d);
	}
	pthread_mutex_unlock(&d->lock);
}

void virtio_device_destroy(struct virtio_device *d)
{
	if (!d->ops)
		return;
	virtio_device_stop(d);
	for (uint16_t i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_queue *q = &d->queues[i];
		if (q->notify_fd < 0)
			continue;
		iothread_remove(d->io, q->notify_fd);
		close(q->notify_fd);
		q->notify_fd = -1;
	}
	pthread_mutex_destroy(&d->lock);
	d->ops = NULL;
}

uint8_t virtio_get_status(struct virtio_device *d)
{
	return d->status | (atomic_load(&d->needs_reset) ? VIRTIO_STATUS_NEEDS_RESET : 0);
}

static void virtio_reset(struct virtio_device *d)
{
	if (atomic_exchange(&d->running, false)) {
		/* No doorbell handler may still be working on the rings when stop runs. */
		iothread_sync(d->io);
		d->ops->stop(d);
	}
	atomic_store(&d->needs_reset, false);
	d->status = 0;
	d->driver_features = 0;
	d->config_vector = VIRTIO_NO_VECTOR;
	atomic_store(&d->isr, 0);
	virtio_reset_queues(d);
}

void virtio_set_status(struct virtio_device *d, uint8_t status)
{
	if (status == 0) {
		virtio_reset(d);
		return;
	}
	uint8_t old = d->status;
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* Refuse (FEATURES_OK reads back clear) features we did not offer, and legacy
		 * drivers: this device model is virtio 1.x only. */
		if ((d->driver_features & ~d->device_features) ||
		    !(d->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
			status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	d->status = status & (uint8_t)~VIRTIO_STATUS_NEEDS_RESET;
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
	    (status & VIRTIO_STATUS_FEATURES_OK) && !atomic_load(&d->needs_reset)) {
		int r = d->ops->start(d);
		if (r < 0) {
			virtio_device_broken(d, "the device could not start");
			return;
		}
		atomic_store(&d->running, true);
		/* Buffers made available before DRIVER_OK (without a doorbell) are served now. */
		uint64_t one = 1;
		for (uint16_t i = 0; i < d->ops->num_queues; i++)
			if (d->queues[i].enabled && write(d->queues[i].notify_fd, &one, 8) != 8)
				log_debug("%s: cannot ring queue %u", d->ops->name, i);
	}
}

void virtio_queue_enable(struct virtio_device *d, uint16_t q)
{
	struct virtio_queue *vq = &d->queues[q];
	bool event_idx = d->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	bool indirect = d->driver_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	int r = virtq_setup(&vq->vq, d->mem, vq->size, vq->desc, vq->driver, vq->device,
			    event_idx, indirect);
	if (r < 0) {
		virtio_device_broken(d, r == -EFAULT ? "a queue's rings lie outside guest memory"
						     : "a queue has a bad size or misaligned rings");
		return;
	}
	vq->enabled = true;
}

void virtio_device_broken(struct virtio_device *d, const char *why)
{
	if (atomic_exchange(&d->needs_reset, true))
		return;
	log_warn("%s: %s; the device needs a reset by the guest", d->ops->name, why);
	atomic_fetch_or(&d->isr, VIRTIO_ISR_CONFIG);
	if (d->raise)
		d->raise(d, d->config_vector);
}

void virtio_queue_kick_later(struct virtio_device *d, uint16_t q)
{
	uint64_t one = 1;
	if (write(d->queues[q].notify_fd, &one, sizeof(one)) != sizeof(one))
		log_debug("virtio: cannot ring queue %u again", q);
}

void virtio_queue_interrupt(struct virtio_device *d, uint16_t q)
{
	struct virtio_queue *vq = &d->queues[q];
	if (!d->raise || !virtq_should_notify(&vq->vq))
		return;
	atomic_fetch_or(&d->isr, VIRTIO_ISR_QUEUE);
	d->raise(d, vq->vector);
}

void virtio_queue_error(struct virtio_device *d, uint16_t q, int err)
{
	char why[96];
	snprintf(why, sizeof(why), "queue %u: %s", q,
		 err == -EFAULT ? "the guest put a buffer or ring outside its memory"
				: "the guest broke the virtqueue rules");
	virtio_device_broken(d, why);
}

/* A device the driver had started (DRIVER_OK, FEATURES_OK, not broken) runs (again): requests
 * left in the rings meanwhile are served at once. */
static int virtio_device_restart_locked(struct virtio_device *d)
{
	bool started = (d->status & VIRTIO_STATUS_DRIVER_OK) &&
		       (d->status & VIRTIO_STATUS_FEATURES_OK) && !atomic_load(&d->needs_reset);
	if (!started || atomic_load(&d->running))
		return 0;
	int r = d->ops->start(d);
	if (r < 0)
		return r;
	atomic_store(&d->running, true);
	uint64_t one = 1;
	for (uint16_t i = 0; i < d->ops->num_queues; i++)
		if (d->queues[i].enabled && write(d->queues[i].notify_fd, &one, 8) != 8)
			log_debug("%s: cannot ring queue %u", d->ops->name, i);
	return 0;
}

void virtio_device_save(struct virtio_device *d, struct stream *s)
{
	pthread_mutex_lock(&d->lock);
	stream_put_u64(s, d->device_features);
	stream_put_u64(s, d->driver_features);
	stream_put_u8(s, d->status);
	stream_put_u8(s, d->config_generation);
	stream_put_u16(s, d->config_vector);
	stream_put_u32(s, atomic_load(&d->isr));
	stream_put_u8(s, atomic_load(&d->needs_reset));
	stream_put_u16(s, d->ops->num_queues);
	for (uint16_t i = 0; i < d->ops->num_queues; i++) {
		const struct virtio_queue *q = &d->queues[i];
		stream_put_u16(s, q->size);
		stream_put_u8(s, q->enabled);
		stream_put_u64(s, q->desc);
		stream_put_u64(s, q->driver);
		stream_put_u64(s, q->device);
		stream_put_u16(s, q->vector);
		/* Where the device is in the rings: the rest of the ring state is in guest RAM. */
		stream_put_u16(s, q->vq.last_avail_idx);
		stream_put_u16(s, q->vq.used_idx);
		stream_put_u16(s, q->vq.signalled_used);
		stream_put_u8(s, q->vq.signalled_used_valid);
	}
	pthread_mutex_unlock(&d->lock);
}

/* One queue's saved layout and indices; an enabled one is mapped again (virtq_setup checks the
 * rings against guest RAM, which the snapshot has restored before the devices). */
static int virtio_queue_load(struct virtio_device *d, uint16_t i, struct stream *s)
{
	struct virtio_queue *q = &d->queues[i];
	uint16_t size = stream_get_u16(s);
	uint8_t enabled = stream_get_u8(s);
	uint64_t desc = stream_get_u64(s), driver = stream_get_u64(s), device = stream_get_u64(s);
	uint16_t vector = stream_get_u16(s);
	uint16_t last_avail = stream_get_u16(s), used = stream_get_u16(s);
	uint16_t signalled = stream_get_u16(s);
	uint8_t signalled_valid = stream_get_u8(s);
	if (stream_error(s) || size > d->ops->queue_size || enabled > 1 || signalled_valid > 1)
		return -EBADMSG;
	q->size = size;
	q->desc = desc;
	q->driver = driver;
	q->device = device;
	q->vector = vector;
	if (!enabled)
		return 0;
	int r = virtq_setup(&q->vq, d->mem, size, desc, driver, device,
			    d->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX),
			    d->driver_features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	if (r < 0)
		return -EBADMSG;
	/* Any indices are ones a guest could have caused; a driver's avail index too far ahead of
	 * them is caught by virtq_pop, as in a running VM (NEEDS_RESET). */
	q->vq.last_avail_idx = last_avail;
	q->vq.used_idx = used;
	q->vq.signalled_used = signalled;
	q->vq.signalled_used_valid = signalled_valid;
	q->enabled = true;
	return 0;
}

int virtio_device_load(struct virtio_device *d, struct stream *s, uint32_t version)
{
	if (version != VIRTIO_DEVICE_STATE_VERSION)
		return -EBADMSG;
	uint64_t offered = stream_get_u64(s), accepted = stream_get_u64(s);
	uint8_t status = stream_get_u8(s), generation = stream_get_u8(s);
	uint16_t config_vector = stream_get_u16(s);
	uint32_t isr = stream_get_u32(s);
	uint8_t needs_reset = stream_get_u8(s);
	uint16_t nq = stream_get_u16(s);
	/* The same device model, and a driver that accepted only what it was offered. */
	if (stream_error(s) || offered != d->device_features || (accepted & ~offered) ||
	    (status & VIRTIO_STATUS_NEEDS_RESET) || isr & ~(uint32_t)(VIRTIO_ISR_QUEUE |
	    VIRTIO_ISR_CONFIG) || needs_reset > 1 || nq != d->ops->num_queues)
		return -EBADMSG;
	pthread_mutex_lock(&d->lock);
	d->driver_features = accepted;
	d->status = status;
	d->config_generation = generation;
	d->config_vector = config_vector;
	atomic_store(&d->isr, isr);
	atomic_store(&d->needs_reset, needs_reset);
	int r = 0;
	for (uint16_t i = 0; i < nq && r == 0; i++)
		r = virtio_queue_load(d, i, s);
	if (r == 0)
		r = virtio_device_restart_locked(d);
	if (r < 0)
		virtio_reset_queues(d);
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? -EBADMSG : 0;
}

int virtio_device_restart(struct virtio_device *d)
{
	pthread_mutex_lock(&d->lock);
	int r = virtio_device_restart_locked(d);
	pthread_mutex_unlock(&d->lock);
	return r;
}
