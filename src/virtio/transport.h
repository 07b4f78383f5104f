/* Puts a virtio device on the transport the VM was configured with (--transport pci|mmio). */
#ifndef KVMKIT_VIRTIO_TRANSPORT_H
#define KVMKIT_VIRTIO_TRANSPORT_H

#include <stdint.h>

struct device_ctx;
struct virtio_device;
struct virtio_transport;

/* Puts vdev on virtio-mmio or on the PCI bus (the registry's), as ctx says. Returns NULL after
 * printing why. */
struct virtio_transport *virtio_transport_create(const struct device_ctx *ctx,
						 struct virtio_device *vdev);
/* Enters the transport in the VM's registry as a part of the device being realized: its
 * "VIRT" section (instance: the virtio devices counted in creation order) saves and loads the
 * transport's registers and the device's virtio state, and it quiesces and resumes the device
 * around snapshots. Call last in the device's realize (a device's own section, if any, is
 * then loaded before it). Returns 0 or -errno (printed). */
int virtio_transport_register(const struct device_ctx *ctx, struct virtio_transport *t);
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
