/* virtio-rng (virtio 1.x 5.4): fills the driver's buffers from getrandom(2). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/log.h"
#include "virtio/devices.h"
#include "virtio/virtio.h"
#include "virtio/transport.h"
#include "vmm/device.h"

#define RNG_QUEUE_SIZE 64
#define RNG_BUDGET RNG_QUEUE_SIZE   /* requests per doorbell round (virtio_queue_kick_later) */
/* Bytes per request at most: a driver asking for more gets a short answer, as allowed. */
#define RNG_MAX_BYTES (64u << 10)

struct virtio_rng {
	struct virtio_device vdev;
	struct virtio_transport *transport;
	struct virtq_elem elem;
};

static void rng_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)d, (void)off;
	memset(data, 0, len); /* no configuration */
}

static int rng_start(struct virtio_device *d)
{
	(void)d;
	return 0;
}

static void rng_stop(struct virtio_device *d)
{
	(void)d; /* requests complete inside rng_notify: nothing is ever in flight */
}

static void rng_notify(struct virtio_device *d, uint16_t q)
{
	struct virtio_rng *rng = d->opaque;
	struct virtqueue *vq = &d->queues[q].vq;
	bool pushed = false;
	for (unsigned n = 0;; n++) {
		if (n == RNG_BUDGET) {
			virtio_queue_kick_later(d, q);
			break;
		}
		int r = virtq_pop(vq, &rng->elem);
		if (r < 0) {
			virtio_queue_error(d, q, r);
			break;
		}
		if (r == 0)
			break;
		uint32_t written = 0;
		for (uint32_t i = 0; i < rng->elem.in_num && written < RNG_MAX_BYTES; i++) {
			struct iovec *io = &rng->elem.iov[rng->elem.out_num + i];
			size_t want = io->iov_len;
			if (want > RNG_MAX_BYTES - written)
				want = RNG_MAX_BYTES - written;
			ssize_t n = getrandom(io->iov_base, want, 0);
			if (n < 0) {
				log_warn("virtio-rng: getrandom failed: %s", strerror(errno));
				break;
			}
			written += (uint32_t)n;
			if ((size_t)n < want)
				break;
		}
		virtq_push(vq, rng->elem.head, written);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(d, q);
}

static const struct virtio_device_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_size = RNG_QUEUE_SIZE,
	.config_size = 0,
	.config_read = rng_config_read,
	.start = rng_start,
	.queue_notify = rng_notify,
	.stop = rng_stop,
};

static void virtio_rng_destroy(void *opaque)
{
	struct virtio_rng *rng = opaque;
	/* The transport first: it unbinds the doorbell eventfds the device then closes. */
	virtio_transport_destroy(rng->transport);
	virtio_device_destroy(&rng->vdev);
	free(rng);
}

static void *virtio_rng_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	if (!rng)
		return NULL;
	if (virtio_device_init(&rng->vdev, ctx, &rng_ops, rng, 0) < 0) {
		free(rng);
		return NULL;
	}
	rng->transport = virtio_transport_create(ctx, &rng->vdev);
	if (!rng->transport) {
		virtio_device_destroy(&rng->vdev);
		free(rng);
		return NULL;
	}
	if (virtio_transport_register(ctx, rng->transport) < 0) {
		virtio_rng_destroy(rng);
		return NULL;
	}
	return rng;
}

/* Its state travels in its transport's section. */
const struct device_ops virtio_rng_ops = {
	.name = "virtio-rng",
	.realize = virtio_rng_realize,
	.destroy = virtio_rng_destroy,
};
