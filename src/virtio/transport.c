/* Transport choice for virtio devices: PCI (default) or MMIO. */
#include "virtio/transport.h"

#include <errno.h>
#include <stdlib.h>

#include "lib/stream.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_pci.h"
#include "lib/log.h"
#include "vmm/device.h"
#include "vmm/iothread.h"

struct virtio_transport {
	struct virtio_device *vdev;
	struct virtio_pci *pci;
	struct virtio_mmio *mmio;
};

struct virtio_transport *virtio_transport_create(const struct device_ctx *ctx,
						 struct virtio_device *vdev)
{
	struct virtio_transport *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->vdev = vdev;
	if (ctx->virtio_mmio)
		t->mmio = virtio_mmio_create(ctx, vdev);
	else
		t->pci = virtio_pci_create(ctx, vdev);
	if (!t->pci && !t->mmio) {
		free(t);
		return NULL;
	}
	return t;
}

void virtio_transport_destroy(struct virtio_transport *t)
{
	if (!t)
		return;
	/* Nothing may be in flight (or raise an interrupt) once the transport is gone. */
	virtio_device_stop(t->vdev);
	iothread_sync(t->vdev->io);
	virtio_pci_destroy(t->pci);
	virtio_mmio_destroy(t->mmio);
	free(t);
}

void virtio_transport_save(struct virtio_transport *t, struct stream *s)
{
	stream_put_u8(s, t->mmio != NULL);
	if (t->mmio)
		virtio_mmio_save(t->mmio, s);
	else
		virtio_pci_save(t->pci, s);
	virtio_device_save(t->vdev, s);
}

int virtio_transport_load(struct virtio_transport *t, struct stream *s, uint32_t version)
{
	/* The same transport as the saved VM's: the configuration says so, the file must too. */
	if (version != VIRTIO_TRANSPORT_STATE_VERSION || stream_get_u8(s) != (t->mmio != NULL))
		return -EBADMSG;
	int r = t->mmio ? virtio_mmio_load(t->mmio, s) : virtio_pci_load(t->pci, s);
	if (r == 0)
		r = virtio_device_load(t->vdev, s, VIRTIO_DEVICE_STATE_VERSION);
	if (r == 0 && t->mmio)
		virtio_mmio_sync_irq(t->mmio);
	return r;
}

struct virtio_device *virtio_transport_device(struct virtio_transport *t)
{
	return t->vdev;
}

static void virtio_transport_hold(struct virtio_transport *t, bool hold)
{
	if (t->vdev->ops->hold)
		t->vdev->ops->hold(t->vdev, hold);
}

static void virtio_transport_save_dev(void *t, struct stream *s)
{
	virtio_transport_save(t, s);
}

/* A device the saved driver had started starts now, with the state loaded before. */
static int virtio_transport_load_dev(void *opaque, struct stream *s, uint32_t version)
{
	struct virtio_transport *t = opaque;
	virtio_transport_hold(t, true);
	int r = virtio_transport_load(t, s, version);
	virtio_transport_hold(t, false);
	return r;
}

/* Drains the device's requests, so that none is in flight in the saved state and none writes
 * guest RAM while it is saved. */
static void virtio_transport_quiesce(void *opaque)
{
	struct virtio_transport *t = opaque;
	virtio_transport_hold(t, true);
	virtio_device_stop(t->vdev);
}

/* A device the driver had started goes on from where its rings are. */
static void virtio_transport_resume(void *opaque)
{
	struct virtio_transport *t = opaque;
	if (virtio_device_restart(t->vdev) < 0)
		virtio_device_broken(t->vdev, "the device could not start again after a snapshot");
	virtio_transport_hold(t, false);
}

/* No destroy: the device owns its transport and destroys it. */
static const struct device_ops virtio_transport_ops = {
	.name = "virtio device",
	.tag = STREAM_TAG('V', 'I', 'R', 'T'),
	.version = VIRTIO_TRANSPORT_STATE_VERSION,
	.save = virtio_transport_save_dev,
	.load = virtio_transport_load_dev,
	.quiesce = virtio_transport_quiesce,
	.resume = virtio_transport_resume,
};

int virtio_transport_register(const struct device_ctx *ctx, struct virtio_transport *t)
{
	int r = device_register(ctx->registry, &virtio_transport_ops, t);
	if (r < 0)
		log_error("%s: a VM has room for %u devices", t->vdev->ops->name, DEVICE_MAX);
	return r;
}
