/* The virtio-mmio transport (virtio 1.x 4.2, version 2 registers): one 512-byte register
 * window per device and one interrupt line, announced to the guest in the ACPI DSDT
 * (LNRO0005, as QEMU's microvm does) and on the kernel command line (virtio_mmio.device=). */
#ifndef KVMKIT_VIRTIO_VIRTIO_MMIO_H
#define KVMKIT_VIRTIO_VIRTIO_MMIO_H

#include <stdint.h>

struct bus;
struct device_ctx;
struct virtio_device;
struct virtio_mmio;

/* Places vdev in the next free window (LAYOUT_VIRTIO_MMIO_BASE + n * LAYOUT_VIRTIO_MMIO_SIZE,
 * interrupt VIRTIO_MMIO_GSI(n), n < LAYOUT_VIRTIO_MMIO_COUNT) on ctx->mmio; call before the
 * vCPUs start. Returns NULL after printing why. */
struct virtio_mmio *virtio_mmio_create(const struct device_ctx *ctx, struct virtio_device *vdev);
/* Resets the device if it runs (waiting for its in-flight work) and unbinds the doorbells. The
 * window stays claimed on the bus until bus_destroy (it is not unregistered) and is not
 * given to another device of this VM: call only once the vCPUs are stopped, or when the VM
 * never ran. */
void virtio_mmio_destroy(struct virtio_mmio *m);

/* Where a device of vm sits, for the ACPI tables and the kernel command line. */
struct virtio_mmio_window {
	uint64_t base;
	uint32_t size;
	uint32_t gsi;
};

/* Copies the windows of the virtio-mmio devices on the bus mmio, in address order, to out (at most max) and
 * returns how many the VM has. Thread-safe. */
unsigned virtio_mmio_windows(const struct bus *mmio, struct virtio_mmio_window *out,
			     unsigned max);

/* Snapshots: the window's place and the selectors (load returns -EBADMSG for another window);
 * after the device's state is loaded, virtio_mmio_sync_irq drives the line from its ISR. */
struct stream;
void virtio_mmio_save(struct virtio_mmio *m, struct stream *s);
int virtio_mmio_load(struct virtio_mmio *m, struct stream *s);
void virtio_mmio_sync_irq(struct virtio_mmio *m);

#endif
