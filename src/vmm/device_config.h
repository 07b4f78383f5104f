/* What the user asked of each configurable device (--disk, --net, --vconsole, --transport):
 * the part of the VM's configuration a device is given when the machine creates it. */
#ifndef KVMKIT_VMM_DEVICE_CONFIG_H
#define KVMKIT_VMM_DEVICE_CONFIG_H

#include <stdint.h>

#include "block/block.h"

#define VM_MAX_DISKS 16

/* One --disk: the image and what the guest sees of it. */
struct vm_disk {
	struct block_options block;
	const char *serial;    /* virtio-blk ID, may be NULL */
};

#define VM_MAX_NICS 8
#define VM_MAX_HOSTFWDS 8

/* One --net. */
struct vm_nic {
	enum { VM_NIC_USER, VM_NIC_TAP } backend;
	const char *ifname;            /* tap: the interface (must exist, or be creatable) */
	const char *hostfwd[VM_MAX_HOSTFWDS]; /* user: "tcp::2222-:22" as QEMU writes them */
	unsigned nhostfwd;
	uint8_t mac[6];                /* given with mac=, else 52:54:00:12:34:(56 + index) */
};

/* One --vconsole: a virtio-console port on a unix socket kvmkit listens on. */
struct vm_vconsole {
	const char *path;
	const char *name;              /* the port name the guest sees (/dev/virtio-ports/NAME) */
};

enum virtio_transport_kind { VIRTIO_TRANSPORT_PCI, VIRTIO_TRANSPORT_MMIO };

#endif
