/* The virtio-mmio transport (virtio 1.x 4.2, version 2 registers): one 512-byte register
 * window per device and one interrupt line, announced to the guest in the ACPI DSDT
 * (LNRO0005, as QEMU's microvm does) and on the kernel command line (virtio_mmio.device=). */
#ifndef KVMKIT_VIRTIO_VIRTIO_MMIO_H
#define KVMKIT_VIRTIO_VIRTIO_MMIO_H

#include <stdint.h>

struct vm;
struct virtio_device;
struct virtio_mmio;

/* Places vdev in the next free window (LAYOUT_VIRTIO_MMIO_BASE + n * LAYOUT_VIRTIO_MMIO_SIZE,
 * interrupt VIRTIO_MMIO_GSI(n)). Returns NULL after printing why. */
struct virtio_mmio *virtio_mmio_create(struct vm *vm, struct virtio_device *vdev);
void virtio_mmio_destroy(struct virtio_mmio *vm_dev);

#endif
