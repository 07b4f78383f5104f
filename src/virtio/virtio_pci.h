/* The virtio 1.x PCI transport ("modern" only): a PCI function whose one memory BAR holds the
 * common configuration, ISR, device configuration, per-queue doorbells and the MSI-X table. */
#ifndef KVMKIT_VIRTIO_VIRTIO_PCI_H
#define KVMKIT_VIRTIO_VIRTIO_PCI_H

struct device_ctx;
struct virtio_device;
struct virtio_pci;

/* Puts vdev on the PCI bus of ctx's registry. Returns NULL after printing why. */
struct virtio_pci *virtio_pci_create(const struct device_ctx *ctx, struct virtio_device *vdev);
void virtio_pci_destroy(struct virtio_pci *vp);

/* Snapshots: the transport's own registers (feature and queue selects). Load returns 0 or
 * -EBADMSG. */
struct stream;
void virtio_pci_save(struct virtio_pci *vp, struct stream *s);
int virtio_pci_load(struct virtio_pci *vp, struct stream *s);

#endif
