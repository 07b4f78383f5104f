/* Transport choice for virtio devices: PCI (default) or MMIO. */
#include "virtio/transport.h"

#include <errno.h>
#include <stdlib.h>

#include "migration/stream.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"
#include "virtio/virtio_pci.h"
#include "vmm/iothread.h"
#include "vmm/vm.h"

struct virtio_transport {
	struct virtio_device *vdev;
	struct virtio_pci *pci;
	struct virtio_mmio *mmio;
};

struct virtio_transport *virtio_transport_create(struct vm *vm, struct virtio_device *vdev)
{
	struct virtio_transport *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->vdev = vdev;
	if (vm->cfg->transport == VIRTIO_TRANSPORT_MMIO)
		t->mmio = virtio_mmio_create(vm, vdev);
	else
		t->pci = virtio_pci_create(vm, vdev);
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
	iothread_sync(t->vdev->vm->io);
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
