/* Puts a virtio device on the transport the VM was configured with (--transport pci|mmio). */
#ifndef KVMKIT_VIRTIO_TRANSPORT_H
#define KVMKIT_VIRTIO_TRANSPORT_H

#include <stdint.h>

struct vm;
struct virtio_device;
struct virtio_transport;

/* Returns NULL after printing why. */
struct virtio_transport *virtio_transport_create(struct vm *vm, struct virtio_device *vdev);
/* Detaches the device (unbinds its doorbells); call before virtio_device_destroy. */
void virtio_transport_destroy(struct virtio_transport *t);

/* Snapshots of a device: which transport, the transport's registers and the device's virtio
 * state (virtio.h). Stop the device before saving
 * (virtio_device_stop on virtio_transport_device). Load returns 0 or -EBADMSG. */
#define VIRTIO_TRANSPORT_STATE_VERSION 1
struct stream;
void virtio_transport_save(struct virtio_transport *t, struct stream *s);
int virtio_transport_load(struct virtio_transport *t, struct stream *s, uint32_t version);
struct virtio_device *virtio_transport_device(struct virtio_transport *t);

#endif
