/* Puts a virtio device on the transport the VM was configured with (--transport pci|mmio). */
#ifndef KVMKIT_VIRTIO_TRANSPORT_H
#define KVMKIT_VIRTIO_TRANSPORT_H

struct vm;
struct virtio_device;
struct virtio_transport;

/* Returns NULL after printing why. */
struct virtio_transport *virtio_transport_create(struct vm *vm, struct virtio_device *vdev);
/* Detaches the device (unbinds its doorbells); call before virtio_device_destroy. */
void virtio_transport_destroy(struct virtio_transport *t);

#endif
