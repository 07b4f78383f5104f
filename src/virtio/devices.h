/* Constructors of the virtio devices; each puts itself on the VM's virtio transport. */
#ifndef KVMKIT_VIRTIO_DEVICES_H
#define KVMKIT_VIRTIO_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

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

/* virtio-net and virtio-console keep state of their own beside the transport's, saved in a
 * section before it (stopped device) and loaded before it (not started yet). Load returns 0
 * or -EBADMSG. */
struct stream;
#define VIRTIO_NET_STATE_VERSION 1
struct virtio_transport *virtio_net_transport(struct virtio_net *net);
void virtio_net_save(struct virtio_net *net, struct stream *s);
int virtio_net_load(struct virtio_net *net, struct stream *s, uint32_t version);
#define VIRTIO_CONSOLE_STATE_VERSION 1
struct virtio_transport *virtio_console_transport(struct virtio_console *con);
void virtio_console_save(struct virtio_console *con, struct stream *s);
int virtio_console_load(struct virtio_console *con, struct stream *s, uint32_t version);
/* The console's start and stop also serve a driver's reset, which forgets the MULTIPORT
 * control state; between hold(true) and hold(false) they are a snapshot's stop and restart
 * (or a restore's start), which keep it. */
void virtio_console_hold_driver_state(struct virtio_console *con, bool hold);

#endif
