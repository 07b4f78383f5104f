/* Split virtqueues, device side (virtio 1.x, 2.7): pops descriptor chains from the available
 * ring, pushes them to the used ring, and decides who notifies whom. The driver is hostile. */
#include "virtio/virtqueue.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define VIRTQ_USED_F_NO_NOTIFY     1 /* used->flags: device asks for no kicks */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1 /* avail->flags: driver asks for no interrupts */

/* Ring positions in 16-bit units. avail: flags, idx, ring[size], used_event.
 * used: flags, idx, ring[size] of {u32 id, u32 len} (4 u16 each), avail_event. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 1
#define AVAIL_RING(i) (2 + (i))
#define USED_FLAGS 0
#define USED_IDX 1
#define USED_RING 2

static volatile uint16_t *used_event(const struct virtqueue *vq)
{
	return &vq->avail[AVAIL_RING(vq->size)];
}

static volatile uint16_t *avail_event(const struct virtqueue *vq)
{
	return &vq->used[USED_RING + 4 * (uint32_t)vq->size];
}

/* For live migration: the device writes the used ring (entries, index, flags, avail_event). */
static void used_ring_written(const struct virtqueue *vq)
{
	guest_mem_mark_device_write(vq->mem, vq->used, 8 + 8 * (size_t)vq->size);
}

/* Spec 2.7.10: whether moving an index from old to new_idx passed event_idx. */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

int virtq_setup(struct virtqueue *vq, const struct guest_mem *mem, uint16_t size,
		uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
		bool indirect)
{
	/* A queue that failed setup stays broken (size 0), so a stray pop cannot use it. */
	memset(vq, 0, sizeof(*vq));
	vq->broken = true;
	vq->error = -EINVAL;
	if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		return -EINVAL;
	if (desc_gpa % 16 || avail_gpa % 2 || used_gpa % 4)
		return -EINVAL;
	/* Sizes from spec 2.7, including used_event and avail_event even without EVENT_IDX. */
	void *desc = guest_mem_ptr(mem, desc_gpa, 16ULL * size);
	void *avail = guest_mem_ptr(mem, avail_gpa, 6 + 2ULL * size);
	void *used = guest_mem_ptr(mem, used_gpa, 6 + 8ULL * size);
	if (!desc || !avail || !used) {
		vq->error = -EFAULT;
		return -EFAULT;
	}
	*vq = (struct virtqueue){
		.mem = mem, .size = size, .event_idx = event_idx, .indirect = indirect,
		.desc = desc, .avail = avail, .used = used,
	};
	return 0;
}

/* Once the guest broke a rule the queue is dead until the next setup (a device reset). */
static int fail(struct virtqueue *vq, int err)
{
	vq->broken = true;
	vq->error = err;
	return err;
}

/* One descriptor copied out of guest memory in one go: every field is then used from this
 * copy, never re-read, whatever the driver writes meanwhile. The compiler barrier stops the
 * compiler from turning uses of the copy back into loads from guest memory. Tables need not be
 * aligned (indirect ones are anywhere the driver likes), hence bytes and memcpy. */
static struct virtq_desc_raw load_desc(const uint8_t *table, uint32_t i)
{
	struct virtq_desc_raw d;
	memcpy(&d, table + 16 * (size_t)i, sizeof(d));
	atomic_signal_fence(memory_order_seq_cst);
	return d;
}

/* Appends one buffer to elem, enforcing writable-after-readable and the segment limit. */
static int add_segment(const struct virtqueue *vq, struct virtq_elem *elem,
		       const struct virtq_desc_raw *d)
{
	/* Moves no data, so any address will do; a real one keeps memcpy(p, q, 0) well defined. */
	static uint8_t empty;
	uint32_t n = elem->out_num + elem->in_num;
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;

	if (n >= VIRTQ_MAX_SEGS)
		return -EINVAL;
	if (!writable && elem->in_num)
		return -EINVAL;
	void *p = d->len ? guest_mem_ptr(vq->mem, d->addr, d->len) : &empty;
	if (!p)
		return -EFAULT;
	if (writable) /* for live migration: the device will write it */
		guest_mem_mark_device_write(vq->mem, p, d->len);
	elem->iov[n] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	if (writable) {
		elem->in_num++;
		elem->in_len += d->len;
	} else {
		elem->out_num++;
		elem->out_len += d->len;
	}
	return 0;
}

/* Walks the chain at head: direct descriptors, optionally ending in one descriptor that points
 * to an indirect table (spec 2.7.5.3.2 says a device must accept that, not only at the head). */
static int walk_chain(const struct virtqueue *vq, struct virtq_elem *elem, uint16_t head)
{
	const uint8_t *table = (const uint8_t *)vq->desc;
	uint32_t entries = vq->size, walked = 0, i = head;
	bool in_indirect = false;

	/* Not the whole struct: iov is 16 KiB and only its first entries get filled. */
	elem->head = head;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;
	for (;;) {
		/* Every step counts, so a loop ends here instead of spinning. */
		if (++walked > entries)
			return -EINVAL;
		struct virtq_desc_raw d = load_desc(table, i);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* Its WRITE flag means nothing (the spec says ignore it). */
			if (!vq->indirect || in_indirect || (d.flags & VIRTQ_DESC_F_NEXT))
				return -EINVAL;
			if (d.len == 0 || d.len % 16)
				return -EINVAL;
			table = guest_mem_ptr(vq->mem, d.addr, d.len);
			if (!table)
				return -EFAULT;
			entries = d.len / 16;
			walked = 0;
			i = 0;
			in_indirect = true;
			continue;
		}
		int r = add_segment(vq, elem, &d);
		if (r)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= entries)
			return -EINVAL;
	}
}

int virtq_pop(struct virtqueue *vq, struct virtq_elem *elem)
{
	if (vq->broken)
		return vq->error;
	/* A queue the driver never enabled has no rings and nothing available: virtio-console
	 * serves all its queues on any doorbell, and a driver may leave some disabled. */
	if (!vq->size)
		return 0;
	uint16_t avail_idx = vq->avail[AVAIL_IDX];
	uint16_t pending = avail_idx - vq->last_avail_idx;
	if (pending > vq->size)
		return fail(vq, -EINVAL);
	if (pending == 0)
		return 0;
	/* The driver wrote the ring entry and descriptors before avail->idx: read them after. */
	atomic_thread_fence(memory_order_acquire);
	uint16_t head = vq->avail[AVAIL_RING(vq->last_avail_idx & (vq->size - 1))];
	if (head >= vq->size)
		return fail(vq, -EINVAL);
	int r = walk_chain(vq, elem, head);
	if (r)
		return fail(vq, r);
	vq->last_avail_idx++;
	/* While notifications are on, ask for a kick when the driver makes the next entry
	 * available, so a device that only pops keeps being woken. */
	if (vq->event_idx && !vq->notify_off) {
		used_ring_written(vq);
		*avail_event(vq) = vq->last_avail_idx;
	}
	return 1;
}

void virtq_fill(struct virtqueue *vq, uint16_t offset, uint16_t head, uint32_t written)
{
	if (!vq->size)
		return;
	used_ring_written(vq);
	volatile uint32_t *elem = (volatile uint32_t *)(vq->used + USED_RING) +
				  2 * ((uint16_t)(vq->used_idx + offset) & (vq->size - 1));
	elem[0] = head;
	elem[1] = written;
}

void virtq_flush(struct virtqueue *vq, uint16_t n)
{
	if (!vq->size || n == 0)
		return;
	/* The entries must be visible before the index that hands them to the driver. */
	atomic_thread_fence(memory_order_release);
	uint16_t before = (uint16_t)(vq->used_idx - vq->signalled_used);
	vq->used_idx = (uint16_t)(vq->used_idx + n);
	vq->used[USED_IDX] = vq->used_idx;
	/* 32768 entries without virtq_should_notify make the 16-bit distance from the last
	 * interrupt ambiguous: forget it, and the next check interrupts. */
	if ((uint32_t)before + n >= 0x8000)
		vq->signalled_used_valid = false;
}

void virtq_push(struct virtqueue *vq, uint16_t head, uint32_t written)
{
	virtq_fill(vq, 0, head, written);
	virtq_flush(vq, 1);
}

bool virtq_should_notify(struct virtqueue *vq)
{
	if (!vq->size)
		return false;
	/* Store-load order: used->idx must be visible before used_event / flags are read, or the
	 * driver could see the old used->idx and go to sleep while we read its stale request for
	 * no interrupt, and neither side would wake the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!vq->event_idx)
		return !(vq->avail[AVAIL_FLAGS] & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_used_valid;
	vq->signalled_used = vq->used_idx;
	vq->signalled_used_valid = true;
	return !valid || need_event(*used_event(vq), vq->used_idx, old);
}

void virtq_disable_notify(struct virtqueue *vq)
{
	if (!vq->size)
		return;
	vq->notify_off = true;
	used_ring_written(vq);
	/* With EVENT_IDX, avail_event stays where it is: once the driver has gone past it, it
	 * stops kicking by itself. */
	if (!vq->event_idx)
		vq->used[USED_FLAGS] = VIRTQ_USED_F_NO_NOTIFY;
}

bool virtq_enable_notify(struct virtqueue *vq)
{
	if (!vq->size)
		return false;
	vq->notify_off = false;
	used_ring_written(vq);
	if (vq->event_idx)
		*avail_event(vq) = vq->last_avail_idx;
	else
		vq->used[USED_FLAGS] = 0;
	/* The request for kicks is stored before avail->idx is loaded: a driver that added a
	 * request meanwhile either sees the request and kicks, or we see its entry here. */
	atomic_thread_fence(memory_order_seq_cst);
	return vq->avail[AVAIL_IDX] != vq->last_avail_idx;
}

void virtq_unpop(struct virtqueue *vq, uint16_t n)
{
	vq->last_avail_idx = (uint16_t)(vq->last_avail_idx - n);
}
