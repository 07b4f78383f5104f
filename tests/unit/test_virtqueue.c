/* Unit tests of the split virtqueue against a small in-test driver that lays out rings and chains
 * the way Linux's virtio_ring does: requests, index wrap, indirect tables, notification
 * suppression both ways, and a hostile driver breaking every rule. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/virtqueue.h"
#include "vmm/memory.h"

#define RAM_SIZE (16ULL << 20)
#define DESC_GPA 0x10000ULL  /* room for 2048 descriptors */
#define AVAIL_GPA 0x20000ULL
#define USED_GPA 0x30000ULL
#define HEAP_GPA 0x400000ULL /* buffers and indirect tables */
#define FAR_GPA (1ULL << 40) /* not RAM */

#define USED_F_NO_NOTIFY 1
#define AVAIL_F_NO_INTERRUPT 1
#define NEXT VIRTQ_DESC_F_NEXT
#define WRITE VIRTQ_DESC_F_WRITE
#define INDIRECT VIRTQ_DESC_F_INDIRECT

/* The driver's side of one queue, plus the device under test. */
struct drv {
	struct guest_mem mem;
	struct virtqueue vq;
	struct virtq_elem elem;
	uint16_t size;
	uint16_t next_desc;    /* descriptors are handed out round robin (Linux: a free list) */
	uint16_t avail_shadow; /* avail->idx as the driver last wrote it */
	uint64_t heap;         /* bump allocator */
	uint64_t bufs[16];     /* guest addresses of the last request's buffers */
};

static void w16(struct drv *d, uint64_t gpa, uint16_t v)
{
	assert_int_equal(guest_mem_write(&d->mem, gpa, &v, sizeof(v)), 0);
}

static uint16_t r16(struct drv *d, uint64_t gpa)
{
	uint16_t v;
	assert_int_equal(guest_mem_read(&d->mem, gpa, &v, sizeof(v)), 0);
	return v;
}

static uint32_t r32(struct drv *d, uint64_t gpa)
{
	uint32_t v;
	assert_int_equal(guest_mem_read(&d->mem, gpa, &v, sizeof(v)), 0);
	return v;
}

/* Ring fields by their spec names. */
static uint64_t avail_flags(void) { return AVAIL_GPA; }
static uint64_t avail_idx(void) { return AVAIL_GPA + 2; }
static uint64_t used_event(struct drv *d) { return AVAIL_GPA + 4 + 2ULL * d->size; }
static uint64_t used_flags(void) { return USED_GPA; }
static uint64_t used_idx(void) { return USED_GPA + 2; }
static uint64_t used_id(uint16_t slot) { return USED_GPA + 4 + 8ULL * slot; }
static uint64_t used_len(uint16_t slot) { return used_id(slot) + 4; }
static uint64_t avail_event(struct drv *d) { return USED_GPA + 4 + 8ULL * d->size; }

static void drv_init(struct drv *d, uint16_t size, bool event_idx, bool indirect)
{
	memset(d, 0, sizeof(*d));
	assert_int_equal(guest_mem_init(&d->mem, RAM_SIZE), 0);
	assert_int_equal(virtq_setup(&d->vq, &d->mem, size, DESC_GPA, AVAIL_GPA, USED_GPA,
				     event_idx, indirect), 0);
	d->size = size;
	d->heap = HEAP_GPA;
}

static void drv_fini(struct drv *d)
{
	guest_mem_destroy(&d->mem);
}

/* Both sides start at idx instead of 0, as after a long run. */
static void drv_start_at(struct drv *d, uint16_t idx)
{
	d->avail_shadow = idx;
	d->vq.last_avail_idx = d->vq.used_idx = idx;
	w16(d, avail_idx(), idx);
	w16(d, used_idx(), idx);
}

static uint64_t drv_alloc(struct drv *d, uint64_t len)
{
	uint64_t gpa = d->heap;
	d->heap += (len + 15) & ~15ULL;
	assert_true(d->heap < RAM_SIZE);
	return gpa;
}

static void put_desc(struct drv *d, uint64_t table, uint32_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc_raw desc = { .addr = addr, .len = len, .flags = flags, .next = next };
	assert_int_equal(guest_mem_write(&d->mem, table + 16ULL * i, &desc, sizeof(desc)), 0);
}

/* Makes head available: ring entry first, then the index (one thread here, so no barrier). */
static void drv_publish(struct drv *d, uint16_t head)
{
	w16(d, AVAIL_GPA + 4 + 2ULL * (d->avail_shadow & (d->size - 1)), head);
	w16(d, avail_idx(), ++d->avail_shadow);
}

/* Buffer i of a request is readable for i < nout, writable after; lens gives their sizes. */
static uint16_t buf_flags(int i, int nout)
{
	return i < nout ? 0 : WRITE;
}

/* A direct chain of nout readable then nin writable buffers; returns its head. */
static uint16_t drv_add(struct drv *d, int nout, int nin, const uint32_t *lens)
{
	int n = nout + nin;
	assert_true(n <= (int)(sizeof(d->bufs) / sizeof(d->bufs[0])));
	uint16_t head = d->next_desc;
	for (int i = 0; i < n; i++) {
		uint16_t at = d->next_desc;
		d->next_desc = (uint16_t)((at + 1) & (d->size - 1));
		d->bufs[i] = drv_alloc(d, lens[i]);
		uint16_t more = i + 1 < n ? NEXT : 0;
		put_desc(d, DESC_GPA, at, d->bufs[i], lens[i], buf_flags(i, nout) | more,
			 d->next_desc);
	}
	drv_publish(d, head);
	return head;
}

/* The same request through one descriptor pointing to an indirect table. */
static uint16_t drv_add_indirect(struct drv *d, int nout, int nin, const uint32_t *lens)
{
	int n = nout + nin;
	assert_true(n <= (int)(sizeof(d->bufs) / sizeof(d->bufs[0])));
	uint64_t table = drv_alloc(d, 16ULL * n);
	for (int i = 0; i < n; i++) {
		d->bufs[i] = drv_alloc(d, lens[i]);
		uint16_t more = i + 1 < n ? NEXT : 0;
		put_desc(d, table, i, d->bufs[i], lens[i], buf_flags(i, nout) | more, i + 1);
	}
	uint16_t head = d->next_desc;
	d->next_desc = (uint16_t)((head + 1) & (d->size - 1));
	put_desc(d, DESC_GPA, head, table, 16 * n, INDIRECT, 0);
	drv_publish(d, head);
	return head;
}

/* Linux's virtqueue_kick_prepare after adding `added` requests. */
static bool drv_kick_needed(struct drv *d, uint16_t added)
{
	uint16_t new_idx = d->avail_shadow, old = new_idx - added;
	if (d->vq.event_idx) {
		uint16_t event = r16(d, avail_event(d));
		return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
	}
	return !(r16(d, used_flags()) & USED_F_NO_NOTIFY);
}

/* The popped element is exactly the last request added, buffer for buffer. */
static void check_elem(struct drv *d, uint16_t head, int nout, int nin, const uint32_t *lens)
{
	struct virtq_elem *e = &d->elem;
	uint64_t out_len = 0, in_len = 0;
	assert_int_equal(e->head, head);
	assert_int_equal(e->out_num, nout);
	assert_int_equal(e->in_num, nin);
	for (int i = 0; i < nout + nin; i++) {
		assert_ptr_equal(e->iov[i].iov_base, guest_mem_ptr(&d->mem, d->bufs[i], lens[i]));
		assert_int_equal(e->iov[i].iov_len, lens[i]);
		*(i < nout ? &out_len : &in_len) += lens[i];
	}
	assert_int_equal(e->out_len, out_len);
	assert_int_equal(e->in_len, in_len);
}

/* The guest broke a rule: this pop and every later one fail with err, even once the driver
 * offers a perfectly good request. */
static void expect_broken(struct drv *d, int err)
{
	assert_int_equal(virtq_pop(&d->vq, &d->elem), err);
	assert_true(d->vq.broken);
	static const uint32_t lens[] = { 8 };
	d->next_desc = 0;
	drv_add(d, 1, 0, lens);
	assert_int_equal(virtq_pop(&d->vq, &d->elem), err);
}

static void test_setup_rejects_bad_sizes(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct virtqueue vq;
	assert_int_equal(guest_mem_init(&mem, RAM_SIZE), 0);
	/* A uint16_t above 32768 is never a power of two, so these cover "too big" too. */
	static const uint16_t bad[] = { 0, 3, 100, 32767, 32769, 49152, 65535 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(virtq_setup(&vq, &mem, bad[i], 0x100000, 0x200000, 0x300000,
					     false, false), -EINVAL);
	static const uint16_t good[] = { 1, 2, 256, 32768 };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(virtq_setup(&vq, &mem, good[i], 0x100000, 0x200000, 0x300000,
					     true, true), 0);
	guest_mem_destroy(&mem);
}

static void test_setup_rejects_misaligned_rings(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct virtqueue vq;
	assert_int_equal(guest_mem_init(&mem, RAM_SIZE), 0);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA + 8, AVAIL_GPA, USED_GPA, false,
				     false), -EINVAL);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, AVAIL_GPA + 1, USED_GPA, false,
				     false), -EINVAL);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, AVAIL_GPA, USED_GPA + 2, false,
				     false), -EINVAL);
	/* the spec's minimum alignments are enough */
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA + 16, AVAIL_GPA + 2, USED_GPA + 4,
				     false, false), 0);
	guest_mem_destroy(&mem);
}

static void test_setup_rejects_rings_outside_ram(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct virtqueue vq;
	struct virtq_elem *elem = malloc(sizeof(*elem));
	assert_non_null(elem);
	assert_int_equal(guest_mem_init(&mem, RAM_SIZE), 0);
	assert_int_equal(virtq_setup(&vq, &mem, 16, FAR_GPA, AVAIL_GPA, USED_GPA, false, false),
			 -EFAULT);
	/* the last descriptor would cross the end of RAM */
	assert_int_equal(virtq_setup(&vq, &mem, 16, RAM_SIZE - 15 * 16, AVAIL_GPA, USED_GPA,
				     false, false), -EFAULT);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, RAM_SIZE - 2, USED_GPA, false,
				     false), -EFAULT);
	/* used_event / avail_event count even without EVENT_IDX */
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, RAM_SIZE - 4 - 2 * 16, USED_GPA,
				     false, false), -EFAULT);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 4 - 8 * 16,
				     false, false), -EFAULT);
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, AVAIL_GPA, RAM_SIZE - 8 - 8 * 16,
				     false, false), 0);
	/* a queue that failed setup refuses to pop instead of touching NULL rings */
	assert_int_equal(virtq_setup(&vq, &mem, 16, DESC_GPA, AVAIL_GPA, FAR_GPA, false, false),
			 -EFAULT);
	assert_int_equal(virtq_pop(&vq, elem), -EFAULT);
	guest_mem_destroy(&mem);
	free(elem);
}

static void test_pop_empty_ring(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);
	assert_false(d.vq.broken);
	drv_fini(&d);
}

/* A queue the driver never enabled (virtio-console serves all its queues on any doorbell):
 * nothing available, nothing touched (found by tests/fuzz/virtio_fuzz.c: a NULL ring read). */
static void test_pop_queue_never_set_up(void **state)
{
	(void)state;
	struct virtqueue vq;
	memset(&vq, 0, sizeof(vq));
	struct virtq_elem *elem = malloc(sizeof(*elem));
	assert_non_null(elem);
	assert_int_equal(virtq_pop(&vq, elem), 0);
	assert_false(vq.broken);
	free(elem);
}

/* A virtio-blk read: header out, data in, status in. */
static void test_out_in_chain(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	static const uint32_t lens[] = { 16, 4096, 1 };
	uint16_t head = drv_add(&d, 1, 2, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	check_elem(&d, head, 1, 2, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);

	virtq_push(&d.vq, head, 4097);
	assert_int_equal(r16(&d, used_idx()), 1);
	assert_int_equal(r32(&d, used_id(0)), head);
	assert_int_equal(r32(&d, used_len(0)), 4097);
	drv_fini(&d);
}

/* virtq_fill writes entries the driver cannot see yet; virtq_flush publishes them at once (a
 * receive frame spread over several buffers must appear whole). */
static void test_fill_then_flush(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 4, false, false);
	drv_start_at(&d, 65534); /* the batch crosses the 16-bit wrap of the indices */
	static const uint32_t lens[] = { 100 };
	uint16_t a = drv_add(&d, 0, 1, lens), b = drv_add(&d, 0, 1, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	virtq_fill(&d.vq, 0, a, 10);
	virtq_fill(&d.vq, 1, b, 20);
	assert_int_equal(r16(&d, used_idx()), 65534); /* nothing visible before the flush */
	virtq_flush(&d.vq, 2);
	assert_int_equal(r16(&d, used_idx()), 0);
	assert_int_equal(r32(&d, used_id(65534 % 4)), a);
	assert_int_equal(r32(&d, used_len(65534 % 4)), 10);
	assert_int_equal(r32(&d, used_id(65535 % 4)), b);
	assert_int_equal(r32(&d, used_len(65535 % 4)), 20);
	drv_fini(&d);
}

/* Requests come out in the order they were made available; the used ring takes them in the
 * order they complete. */
static void test_several_requests_in_order(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	static const uint32_t lens[] = { 16, 512, 512, 1 };
	uint16_t heads[3];
	heads[0] = drv_add(&d, 1, 1, lens);
	heads[1] = drv_add(&d, 3, 1, lens);
	heads[2] = drv_add(&d, 0, 2, lens);
	int shape[3][2] = { { 1, 1 }, { 3, 1 }, { 0, 2 } };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
		assert_int_equal(d.elem.head, heads[i]);
		assert_int_equal(d.elem.out_num, shape[i][0]);
		assert_int_equal(d.elem.in_num, shape[i][1]);
	}
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);
	for (int i = 2; i >= 0; i--)
		virtq_push(&d.vq, heads[i], (uint32_t)i);
	assert_int_equal(r16(&d, used_idx()), 3);
	for (uint16_t slot = 0; slot < 3; slot++) {
		assert_int_equal(r32(&d, used_id(slot)), heads[2 - slot]);
		assert_int_equal(r32(&d, used_len(slot)), 2 - slot);
	}
	drv_fini(&d);
}

/* avail->idx and used->idx are free-running 16-bit counters: past 65535 they go on at 0. */
static void test_indices_wrap_around(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	drv_start_at(&d, 65533);
	static const uint32_t lens[] = { 32, 1 };
	uint16_t heads[6];
	for (int i = 0; i < 6; i++)
		heads[i] = drv_add(&d, 1, 1, lens);
	assert_int_equal(r16(&d, avail_idx()), 3);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
		assert_int_equal(d.elem.head, heads[i]);
		assert_int_equal(d.elem.out_num + d.elem.in_num, 2);
		virtq_push(&d.vq, heads[i], 1);
	}
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);
	assert_int_equal(r16(&d, used_idx()), 3);
	for (int i = 0; i < 6; i++)
		assert_int_equal(r32(&d, used_id((uint16_t)(65533 + i) & 15)), heads[i]);
	drv_fini(&d);
}

/* Zero-length buffers are legal; they move no data, so their address is never looked at. */
static void test_zero_length_buffers(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 0, NEXT, 1);
	put_desc(&d, DESC_GPA, 1, FAR_GPA, 0, WRITE, 0);
	drv_publish(&d, 0);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(d.elem.out_num, 1);
	assert_int_equal(d.elem.in_num, 1);
	assert_int_equal(d.elem.out_len + d.elem.in_len, 0);
	assert_int_equal(d.elem.iov[0].iov_len, 0);
	assert_int_equal(d.elem.iov[1].iov_len, 0);
	drv_fini(&d);
}

/* A chain may use every descriptor of the queue, just not one more. */
static void test_chain_as_long_as_queue(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	uint32_t lens[16];
	for (int i = 0; i < 16; i++)
		lens[i] = 64;
	uint16_t head = drv_add(&d, 8, 8, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(d.elem.head, head);
	assert_int_equal(d.elem.out_num + d.elem.in_num, 16);
	drv_fini(&d);
}

static void test_indirect_table(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	static const uint32_t lens[] = { 16, 1024, 1024, 1 };
	uint16_t head = drv_add_indirect(&d, 2, 2, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	check_elem(&d, head, 2, 2, lens);
	virtq_push(&d.vq, head, 1025);
	assert_int_equal(r32(&d, used_id(0)), head);
	drv_fini(&d);
}

/* The spec (2.7.5.3.2) lets direct descriptors lead into one indirect table at the end, and a
 * WRITE flag on the descriptor that points to the table means nothing. */
static void test_direct_then_indirect(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t hdr = drv_alloc(&d, 16), data = drv_alloc(&d, 512), status = drv_alloc(&d, 1);
	uint64_t table = drv_alloc(&d, 32);
	put_desc(&d, table, 0, data, 512, WRITE | NEXT, 1);
	put_desc(&d, table, 1, status, 1, WRITE, 0);
	put_desc(&d, DESC_GPA, 3, hdr, 16, NEXT, 5);
	put_desc(&d, DESC_GPA, 5, table, 32, INDIRECT | WRITE, 0);
	drv_publish(&d, 3);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(d.elem.head, 3);
	assert_int_equal(d.elem.out_num, 1);
	assert_int_equal(d.elem.in_num, 2);
	assert_ptr_equal(d.elem.iov[2].iov_base, guest_mem_ptr(&d.mem, status, 1));
	drv_fini(&d);
}

static void test_indirect_refused_when_not_negotiated(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	static const uint32_t lens[] = { 16, 1 };
	drv_add_indirect(&d, 1, 1, lens);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

/* EVENT_IDX: interrupt only when the used index moves past used_event. */
static void test_event_idx_used_event(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, true, false);
	static const uint32_t lens[] = { 8 };
	for (int i = 0; i < 8; i++)
		drv_add(&d, 1, 0, lens);
	for (int i = 0; i < 8; i++)
		assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);

	virtq_push(&d.vq, 0, 0);
	assert_true(virtq_should_notify(&d.vq)); /* nothing signalled yet: always */
	/* Linux after a callback: used_event = the next used entry it has not seen */
	w16(&d, used_event(&d), 1);
	virtq_push(&d.vq, 1, 0);
	assert_true(virtq_should_notify(&d.vq));
	assert_false(virtq_should_notify(&d.vq)); /* nothing new since */
	/* delayed callback: not before entry 5 */
	w16(&d, used_event(&d), 5);
	virtq_push(&d.vq, 2, 0);
	assert_false(virtq_should_notify(&d.vq));
	virtq_push(&d.vq, 3, 0);
	virtq_push(&d.vq, 4, 0);
	assert_false(virtq_should_notify(&d.vq)); /* used idx 5: entry 5 not written yet */
	virtq_push(&d.vq, 5, 0);
	virtq_push(&d.vq, 6, 0);
	assert_true(virtq_should_notify(&d.vq)); /* this batch wrote entries 5 and 6 */
	/* with EVENT_IDX the NO_INTERRUPT flag is ignored */
	w16(&d, avail_flags(), AVAIL_F_NO_INTERRUPT);
	w16(&d, used_event(&d), 7);
	virtq_push(&d.vq, 7, 0);
	assert_true(virtq_should_notify(&d.vq));
	drv_fini(&d);
}

static void test_event_idx_wraps(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, true, false);
	drv_start_at(&d, 65534);
	d.vq.signalled_used = 65534;
	d.vq.signalled_used_valid = true;
	w16(&d, used_event(&d), 65535);
	virtq_push(&d.vq, 0, 0);
	virtq_push(&d.vq, 1, 0);
	assert_int_equal(r16(&d, used_idx()), 0);
	assert_true(virtq_should_notify(&d.vq)); /* 65534 -> 0 passed 65535 */
	w16(&d, used_event(&d), 3);
	virtq_push(&d.vq, 2, 0);
	assert_false(virtq_should_notify(&d.vq));
	drv_fini(&d);
}

/* Without EVENT_IDX the driver's NO_INTERRUPT flag decides. */
static void test_no_interrupt_flag(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	virtq_push(&d.vq, 0, 0);
	assert_true(virtq_should_notify(&d.vq));
	w16(&d, avail_flags(), AVAIL_F_NO_INTERRUPT);
	virtq_push(&d.vq, 1, 0);
	assert_false(virtq_should_notify(&d.vq));
	w16(&d, avail_flags(), 0);
	virtq_push(&d.vq, 2, 0);
	assert_true(virtq_should_notify(&d.vq));
	drv_fini(&d);
}

/* Without EVENT_IDX: NO_NOTIFY while draining, cleared after, and the re-check catches a request
 * that came in while the flag was still set. */
static void test_notify_flag_and_recheck(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	static const uint32_t lens[] = { 8 };
	drv_add(&d, 1, 0, lens);
	assert_true(drv_kick_needed(&d, 1));

	virtq_disable_notify(&d.vq);
	assert_int_equal(r16(&d, used_flags()), USED_F_NO_NOTIFY);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);
	drv_add(&d, 1, 0, lens); /* races with the device going back to sleep */
	assert_false(drv_kick_needed(&d, 1));
	assert_true(virtq_enable_notify(&d.vq));
	assert_int_equal(r16(&d, used_flags()), 0);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);

	assert_false(virtq_enable_notify(&d.vq));
	drv_add(&d, 1, 0, lens);
	assert_true(drv_kick_needed(&d, 1));
	drv_fini(&d);
}

/* With EVENT_IDX: avail_event follows the device while it wants kicks, stays behind while it
 * drains (so the driver stops kicking), and the re-check catches what came in meanwhile. */
static void test_notify_avail_event_and_recheck(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, true, false);
	static const uint32_t lens[] = { 8 };
	drv_add(&d, 1, 0, lens);
	assert_true(drv_kick_needed(&d, 1));
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(r16(&d, avail_event(&d)), 1);

	virtq_disable_notify(&d.vq);
	assert_int_equal(r16(&d, used_flags()), 0); /* the flag is not used with EVENT_IDX */
	drv_add(&d, 1, 0, lens);
	assert_true(drv_kick_needed(&d, 1)); /* it was still asked for */
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(r16(&d, avail_event(&d)), 1);
	drv_add(&d, 1, 0, lens);
	assert_false(drv_kick_needed(&d, 1)); /* suppressed while draining */
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 0);

	drv_add(&d, 1, 0, lens);
	assert_false(drv_kick_needed(&d, 1));
	assert_true(virtq_enable_notify(&d.vq)); /* the re-check finds it */
	assert_int_equal(r16(&d, avail_event(&d)), 3);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);

	assert_false(virtq_enable_notify(&d.vq));
	assert_int_equal(r16(&d, avail_event(&d)), 4);
	drv_add(&d, 1, 0, lens);
	assert_true(drv_kick_needed(&d, 1));
	drv_fini(&d);
}

/* The hostile driver. */

static void test_head_out_of_range(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	drv_publish(&d, 16);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_next_out_of_range(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, NEXT, 16);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_chain_loops_to_itself(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 4, HEAP_GPA, 8, NEXT, 4);
	drv_publish(&d, 4);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_chain_loops_back(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, NEXT, 1);
	put_desc(&d, DESC_GPA, 1, HEAP_GPA, 8, WRITE | NEXT, 2);
	put_desc(&d, DESC_GPA, 2, HEAP_GPA, 8, WRITE | NEXT, 1);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

/* A loop-free chain in a big queue still stops at VIRTQ_MAX_SEGS segments. */
static void test_chain_longer_than_max_segs(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 2048, false, false);
	for (uint16_t i = 0; i < VIRTQ_MAX_SEGS; i++)
		put_desc(&d, DESC_GPA, i, HEAP_GPA, 8, NEXT, i + 1);
	put_desc(&d, DESC_GPA, VIRTQ_MAX_SEGS - 1, HEAP_GPA, 8, 0, 0);
	drv_publish(&d, 0);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1); /* exactly the limit is fine */
	put_desc(&d, DESC_GPA, VIRTQ_MAX_SEGS - 1, HEAP_GPA, 8, NEXT, VIRTQ_MAX_SEGS);
	put_desc(&d, DESC_GPA, VIRTQ_MAX_SEGS, HEAP_GPA, 8, 0, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_out_after_in(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, WRITE | NEXT, 1);
	put_desc(&d, DESC_GPA, 1, HEAP_GPA, 8, 0, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

/* The order holds across the jump into an indirect table too. */
static void test_out_after_in_across_indirect(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t table = drv_alloc(&d, 16);
	put_desc(&d, table, 0, HEAP_GPA, 8, 0, 0);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, WRITE | NEXT, 1);
	put_desc(&d, DESC_GPA, 1, table, 16, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_nested_indirect(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t inner = drv_alloc(&d, 16), outer = drv_alloc(&d, 16);
	put_desc(&d, inner, 0, HEAP_GPA, 8, 0, 0);
	put_desc(&d, outer, 0, inner, 16, INDIRECT, 0);
	put_desc(&d, DESC_GPA, 0, outer, 16, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_with_next(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t table = drv_alloc(&d, 16);
	put_desc(&d, table, 0, HEAP_GPA, 8, 0, 0);
	put_desc(&d, DESC_GPA, 0, table, 16, INDIRECT | NEXT, 1);
	put_desc(&d, DESC_GPA, 1, HEAP_GPA, 8, WRITE, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_len_not_multiple_of_16(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t table = drv_alloc(&d, 32);
	put_desc(&d, table, 0, HEAP_GPA, 8, 0, 0);
	put_desc(&d, DESC_GPA, 0, table, 24, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_len_zero(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 0, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_next_out_of_range(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t table = drv_alloc(&d, 32);
	put_desc(&d, table, 0, HEAP_GPA, 8, NEXT, 1);
	put_desc(&d, table, 1, HEAP_GPA, 8, NEXT, 2); /* the table has 2 entries */
	put_desc(&d, DESC_GPA, 0, table, 32, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_loop(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint64_t table = drv_alloc(&d, 32);
	put_desc(&d, table, 0, HEAP_GPA, 8, NEXT, 1);
	put_desc(&d, table, 1, HEAP_GPA, 8, NEXT, 0);
	put_desc(&d, DESC_GPA, 0, table, 32, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

/* Direct and indirect segments count together against VIRTQ_MAX_SEGS. */
static void test_indirect_longer_than_max_segs(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	uint32_t n = VIRTQ_MAX_SEGS - 1;
	uint64_t table = drv_alloc(&d, 16ULL * n);
	for (uint32_t i = 0; i < n; i++)
		put_desc(&d, table, i, HEAP_GPA, 8, i + 1 < n ? NEXT : 0, (uint16_t)(i + 1));
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, NEXT, 1);
	put_desc(&d, DESC_GPA, 1, table, 16 * n, INDIRECT, 0);
	drv_publish(&d, 0);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1); /* 1 + 1023: the limit */
	put_desc(&d, DESC_GPA, 0, HEAP_GPA, 8, NEXT, 2);
	put_desc(&d, DESC_GPA, 2, HEAP_GPA, 8, NEXT, 1);
	drv_publish(&d, 0);
	expect_broken(&d, -EINVAL);
	drv_fini(&d);
}

static void test_indirect_table_outside_ram(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, true);
	put_desc(&d, DESC_GPA, 0, RAM_SIZE - 16, 32, INDIRECT, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EFAULT);
	drv_fini(&d);
}

static void test_buffer_outside_ram(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, FAR_GPA, 8, 0, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EFAULT);
	drv_fini(&d);
}

/* addr + len wraps around 2^64: must not look like a small buffer at the start of RAM. */
static void test_buffer_address_overflow(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, UINT64_MAX - 7, 16, WRITE, 0);
	drv_publish(&d, 0);
	expect_broken(&d, -EFAULT);
	drv_fini(&d);
}

static void test_buffer_crossing_end_of_ram(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	put_desc(&d, DESC_GPA, 0, RAM_SIZE - 16, 16, WRITE, 0); /* the last 16 bytes: fine */
	drv_publish(&d, 0);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	put_desc(&d, DESC_GPA, 1, RAM_SIZE - 8, 16, WRITE, 0);
	drv_publish(&d, 1);
	expect_broken(&d, -EFAULT);
	drv_fini(&d);
}

/* At most size requests can be outstanding; an index further ahead is garbage. */
static void test_avail_idx_too_far_ahead(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	static const uint32_t lens[] = { 8 };
	for (int i = 0; i < 16; i++)
		drv_add(&d, 1, 0, lens);
	for (int i = 0; i < 16; i++) /* a full ring is fine */
		assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	w16(&d, avail_idx(), 16 + 17);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), -EINVAL);
	assert_true(d.vq.broken);
	w16(&d, avail_idx(), 17); /* back to sane: still broken */
	assert_int_equal(virtq_pop(&d.vq, &d.elem), -EINVAL);
	drv_fini(&d);
}

/* Broken lasts until the next setup, which a device reset does. */
static void test_broken_until_setup(void **state)
{
	(void)state;
	struct drv d;
	drv_init(&d, 16, false, false);
	drv_publish(&d, 99);
	expect_broken(&d, -EINVAL);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), -EINVAL);
	assert_int_equal(virtq_setup(&d.vq, &d.mem, 16, DESC_GPA, AVAIL_GPA, USED_GPA, false,
				     false), 0);
	assert_false(d.vq.broken);
	drv_start_at(&d, 0);
	static const uint32_t lens[] = { 8, 8 };
	d.next_desc = 0;
	uint16_t head = drv_add(&d, 1, 1, lens);
	assert_int_equal(virtq_pop(&d.vq, &d.elem), 1);
	check_elem(&d, head, 1, 1, lens);
	drv_fini(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_setup_rejects_bad_sizes),
		cmocka_unit_test(test_setup_rejects_misaligned_rings),
		cmocka_unit_test(test_setup_rejects_rings_outside_ram),
		cmocka_unit_test(test_pop_empty_ring),
		cmocka_unit_test(test_pop_queue_never_set_up),
		cmocka_unit_test(test_out_in_chain),
		cmocka_unit_test(test_several_requests_in_order),
		cmocka_unit_test(test_fill_then_flush),
		cmocka_unit_test(test_indices_wrap_around),
		cmocka_unit_test(test_zero_length_buffers),
		cmocka_unit_test(test_chain_as_long_as_queue),
		cmocka_unit_test(test_indirect_table),
		cmocka_unit_test(test_direct_then_indirect),
		cmocka_unit_test(test_indirect_refused_when_not_negotiated),
		cmocka_unit_test(test_event_idx_used_event),
		cmocka_unit_test(test_event_idx_wraps),
		cmocka_unit_test(test_no_interrupt_flag),
		cmocka_unit_test(test_notify_flag_and_recheck),
		cmocka_unit_test(test_notify_avail_event_and_recheck),
		cmocka_unit_test(test_head_out_of_range),
		cmocka_unit_test(test_next_out_of_range),
		cmocka_unit_test(test_chain_loops_to_itself),
		cmocka_unit_test(test_chain_loops_back),
		cmocka_unit_test(test_chain_longer_than_max_segs),
		cmocka_unit_test(test_out_after_in),
		cmocka_unit_test(test_out_after_in_across_indirect),
		cmocka_unit_test(test_nested_indirect),
		cmocka_unit_test(test_indirect_with_next),
		cmocka_unit_test(test_indirect_len_not_multiple_of_16),
		cmocka_unit_test(test_indirect_len_zero),
		cmocka_unit_test(test_indirect_next_out_of_range),
		cmocka_unit_test(test_indirect_loop),
		cmocka_unit_test(test_indirect_longer_than_max_segs),
		cmocka_unit_test(test_indirect_table_outside_ram),
		cmocka_unit_test(test_buffer_outside_ram),
		cmocka_unit_test(test_buffer_address_overflow),
		cmocka_unit_test(test_buffer_crossing_end_of_ram),
		cmocka_unit_test(test_avail_idx_too_far_ahead),
		cmocka_unit_test(test_broken_until_setup),
	};
	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
