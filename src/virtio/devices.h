/* The virtio devices (vmm/device.h's interface); each puts itself on the transport its context
 * names and enters that transport in the registry after itself ("VIRT", see transport.h). */
#ifndef KVMKIT_VIRTIO_DEVICES_H
#define KVMKIT_VIRTIO_DEVICES_H

#include <stdint.h>

#include "vmm/device.h"

/* virtio-rng: entropy from getrandom(2). No arg. */
extern const struct device_ops virtio_rng_ops;

/* virtio-blk; arg: the struct vm_disk (the image, and the serial GET_ID returns: at most 20
 * bytes, as /sys/block/vdX/serial shows it). */
extern const struct device_ops virtio_blk_ops;
/* Live block migration's hook: while installed (log non-NULL), written() is called on the I/O
 * thread for every guest write, write-zeroes or discard once it has completed, with its byte
 * range. The log must outlive its installation (a completion may still be using it). */
struct virtio_blk;
struct virtio_blk_write_log {
	void (*written)(void *opaque, uint64_t offset, uint64_t len);
	void *opaque;
};
void virtio_blk_log_writes(struct virtio_blk *blk, const struct virtio_blk_write_log *log);

/* virtio-net; arg: the struct vm_nic (user-mode networking through libslirp, or a TAP
 * interface). Its own section "VNET" (instance: the NIC's index) holds its configuration. */
#define VIRTIO_NET_STATE_VERSION 1
extern const struct device_ops virtio_net_ops;

/* virtio-console with one port (MULTIPORT); arg: the struct vm_vconsole (the port's name, and
 * the unix socket kvmkit listens on, one client at a time). Its own section "VCON" holds the
 * MULTIPORT control state, which a snapshot's stop and restart keep (virtio_device_ops hold). */
#define VIRTIO_CONSOLE_STATE_VERSION 1
extern const struct device_ops virtio_console_ops;

#endif
