/* Split virtqueues (virtio 1.x, 2.7): the device side of the descriptor, available and used
 * rings, with indirect descriptors and EVENT_IDX. Every guest address goes through
 * guest_mem_ptr; a guest that breaks the rules gets an error, never a crash or a hang. */
#ifndef KVMKIT_VIRTIO_VIRTQUEUE_H
#define KVMKIT_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

#define VIRTQ_MAX_SIZE 32768 /* the spec's largest queue size (a power of 2 for split rings) */
/* Segments of one request, direct and indirect together. Longer chains are refused: Linux
 * never builds them for the devices here (virtio-blk advertises seg_max below this). */
#define VIRTQ_MAX_SEGS 1024

/* Feature bits of the ring layout (negotiated by the transport, passed to virtq_setup). */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29

/* One request popped from the available ring: out (device-readable) segments first, then in
 * (device-writable) ones, as host pointers into guest RAM. */
struct virtq_elem {
	uint16_t head;            /* descriptor index to return in the used ring */
	uint32_t out_num, in_num; /* iov[0..out_num) readable, iov[out_num..out_num+in_num) writable */
	uint64_t out_len, in_len; /* total bytes of each kind */
	struct iovec iov[VIRTQ_MAX_SEGS];
};

struct virtqueue {
	const struct guest_mem *mem;
	uint16_t size;
	bool event_idx, indirect;
	/* host pointers to the three rings, checked once at setup */
	volatile struct virtq_desc_raw *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;   /* flags, idx, then ring of {u32 id, u32 len}, then avail_event */
	uint16_t last_avail_idx;   /* next available entry the device will read */
	uint16_t used_idx;         /* next used entry the device will write */
	uint16_t signalled_used;   /* used_idx at the last interrupt (EVENT_IDX) */
	bool signalled_used_valid;
	bool broken;               /* the guest broke the rules: the device needs a reset */
	/* private */
	int error;                 /* what virtq_pop returns once broken */
	bool notify_off;           /* between virtq_disable_notify and virtq_enable_notify */
};

/* Layout of one descriptor in guest memory (virtio 1.x 2.7.5), little-endian. */
struct virtq_desc_raw {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

/* Validates and maps the rings: size is a power of two in [1, VIRTQ_MAX_SIZE], the rings are
 * aligned as the spec requires (desc 16, avail 2, used 4) and lie wholly in guest RAM.
 * Returns 0 or -EINVAL (bad size or alignment) or -EFAULT (not RAM). Resets the indices. */
int virtq_setup(struct virtqueue *vq, const struct guest_mem *mem, uint16_t size,
		uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
		bool indirect);

/* Pops the next available request into *elem. Returns 1 with *elem filled, 0 when the ring is
 * empty, or a negative errno when the guest broke the rules (the queue is then marked broken
 * and every later call fails the same way): -EINVAL for a head or next index out of range, a
 * chain longer than the queue or VIRTQ_MAX_SEGS (covers loops), a readable segment after a
 * writable one, misused indirect descriptors (nested, with NEXT, a length not a multiple of 16,
 * empty, or not negotiated), an avail index more than size ahead of the device; -EFAULT for a
 * buffer or table outside guest RAM (or crossing the end of a RAM region). */
int virtq_pop(struct virtqueue *vq, struct virtq_elem *elem);

/* Gives back the last n popped requests unused (their heads become available again, in the
 * same order): for a device that found it cannot use them yet, e.g. a network frame that needs
 * more receive buffers than the ring has. Only requests not pushed since may be given back. */
void virtq_unpop(struct virtqueue *vq, uint16_t n);

/* Puts a finished request in the used ring with the number of bytes written into its in
 * segments, and publishes the new used index (release order). Does not interrupt. */
void virtq_push(struct virtqueue *vq, uint16_t head, uint32_t written);

/* The same in two steps, for a request the driver must see whole: virtq_fill writes used entry
 * number `offset` after the published ones, virtq_flush publishes n filled entries at once. A
 * network frame spread over several receive buffers goes out this way (the driver reads the
 * first buffer's num_buffers and expects all of them to be there). */
void virtq_fill(struct virtqueue *vq, uint16_t offset, uint16_t head, uint32_t written);
void virtq_flush(struct virtqueue *vq, uint16_t n);

/* After one or more virtq_push: whether the driver wants an interrupt now (EVENT_IDX's
 * used_event, else the avail ring's NO_INTERRUPT flag). Updates the EVENT_IDX bookkeeping, so
 * call it once per batch and interrupt when it says so. */
bool virtq_should_notify(struct virtqueue *vq);

/* Asks the driver not to notify (used ring NO_NOTIFY flag, or avail_event when EVENT_IDX)
 * while the device is draining the ring, and to notify again afterwards. After
 * virtq_enable_notify the caller must check the ring once more (virtq_pop) for requests that
 * raced with the change: it returns true if the ring is not empty. */
void virtq_disable_notify(struct virtqueue *vq);
bool virtq_enable_notify(struct virtqueue *vq);

#endif
