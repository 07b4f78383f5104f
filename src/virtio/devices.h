/* Constructors of the virtio devices; each puts itself on the VM's virtio transport. */
#ifndef KVMKIT_VIRTIO_DEVICES_H
#define KVMKIT_VIRTIO_DEVICES_H

#include "block/block.h"

struct vm;

/* virtio-rng: entropy from getrandom(2). Returns NULL after printing why. */
struct virtio_rng *virtio_rng_create(struct vm *vm);
void virtio_rng_destroy(struct virtio_rng *rng);

/* virtio-blk on the image opts names; serial (may be NULL) is what GET_ID returns (at most 20
 * bytes, as /sys/block/vdX/serial shows it). Returns NULL after printing why. */
struct virtio_blk *virtio_blk_create(struct vm *vm, const struct block_options *opts,
				     const char *serial);
void virtio_blk_destroy(struct virtio_blk *blk);

/* virtio-net on the backend nic names (user-mode networking through libslirp, or a TAP
 * interface). Returns NULL after printing why. */
struct vm_nic;
struct virtio_net *virtio_net_create(struct vm *vm, const struct vm_nic *nic);
void virtio_net_destroy(struct virtio_net *net);

/* virtio-console with one port (MULTIPORT) named c->name, carried over the unix socket
 * c->path that kvmkit listens on (one client at a time). Returns NULL after printing why. */
struct vm_vconsole;
struct virtio_console *virtio_console_create(struct vm *vm, const struct vm_vconsole *c);
void virtio_console_destroy(struct virtio_console *con);

/* Snapshots: the transport a device sits on (migration/vmstate.c saves and loads its state
 * there; virtio-blk and virtio-rng keep nothing else that a restore would not rebuild). */
struct virtio_transport *virtio_blk_transport(struct virtio_blk *blk);
/* Live block migration's hook: while installed (log non-NULL), written() is called on the I/O
 * thread for every guest write, write-zeroes or discard once it has completed, with its byte
 * range. The log must outlive its installation (a completion may still be using it). */
struct virtio_blk_write_log {
	void (*written)(void *opaque, uint64_t offset, uint64_t len);
	void *opaque;
};
void virtio_blk_log_writes(struct virtio_blk *blk, const struct virtio_blk_write_log *log);
struct virtio_transport *virtio_rng_transport(struct virtio_rng *rng);

#endif
