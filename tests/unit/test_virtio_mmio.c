/* Unit tests of the virtio-mmio transport (virtio/virtio_mmio.c) through the VM's real MMIO bus,
 * as a guest reaches it: a driver that goes through the steps Linux's virtio_mmio.c takes
 * (identification, reset, feature negotiation, queue set-up, DRIVER_OK, notify, interrupt
 * status and acknowledgement, teardown), the window and interrupt allocation, the doorbell
 * ioeventfds, and a hostile driver. The real device model (virtio.c), virtqueues and I/O thread
 * run a stand-in device; KVM is replaced by recording fakes behind the interrupt handle the
 * transport is given (vmm/device.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "virtio/virtio.h"
#include "virtio/virtio_mmio.h"
#include "vmm/bus.h"
#include "vmm/device.h"
#include "vmm/iothread.h"
#include "vmm/memory.h"

/* Register offsets, written out from the spec (virtio 1.x 4.2.2) rather than taken from the
 * transport, so a wrong constant there is a failure here. */
enum {
	MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, VENDOR_ID = 0x00c,
	DEVICE_FEATURES = 0x010, DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020,
	DRIVER_FEATURES_SEL = 0x024, QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038,
	QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050, INTERRUPT_STATUS = 0x060,
	INTERRUPT_ACK = 0x064, STATUS = 0x070, QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084,
	QUEUE_DRIVER_LOW = 0x090, QUEUE_DRIVER_HIGH = 0x094, QUEUE_DEVICE_LOW = 0x0a0,
	QUEUE_DEVICE_HIGH = 0x0a4, SHM_SEL = 0x0ac, SHM_LEN_LOW = 0x0b0, SHM_LEN_HIGH = 0x0b4,
	CONFIG_GENERATION = 0x0fc, CONFIG = 0x100,
};

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define RAM_SIZE (2u << 20)
#define QSIZE 16
#define NQUEUES 2
#define TEST_DEVICE_ID 42
#define TEST_FEATURE (1ULL << 3)
/* Each queue's rings and buffer, 16 KiB apart */
#define RING_GPA(q) (0x10000ULL + (uint64_t)(q) * 0x4000)
#define DESC_GPA(q) RING_GPA(q)
#define AVAIL_GPA(q) (RING_GPA(q) + 0x1000)
#define USED_GPA(q) (RING_GPA(q) + 0x2000)
#define BUF_GPA(q) (RING_GPA(q) + 0x3000)
#define BUF_LEN 64

/* --- Fakes of what the transport asks of KVM --- */

static atomic_int irq_level[LAYOUT_IOAPIC_PINS];
static atomic_int irq_changes; /* set_line calls */

static void fake_set_line(void *opaque, uint32_t irq, int level)
{
	(void)opaque;
	assert_true(irq < LAYOUT_IOAPIC_PINS);
	assert_true(level == 0 || level == 1);
	atomic_store(&irq_level[irq], level);
	atomic_fetch_add(&irq_changes, 1);
}

#define MAX_IOEVENTFDS 64
static struct ioeventfd {
	uint64_t addr, datamatch;
	uint32_t len;
	int fd;
} ioeventfds[MAX_IOEVENTFDS];
static int nioeventfds;
static int ioeventfd_error; /* nonzero: binding fails with it (KVM without ioeventfds) */

static int fake_ioeventfd(void *opaque, uint64_t addr, uint32_t len, bool is_pio,
			  bool match, uint64_t datamatch, int eventfd, bool assign)
{
	(void)opaque;
	assert_false(is_pio);
	assert_true(match); /* QueueNotify is shared: every doorbell matches its queue index */
	if (assign && ioeventfd_error)
		return -ioeventfd_error;
	for (int i = 0; i < nioeventfds; i++) {
		struct ioeventfd *e = &ioeventfds[i];
		if (e->addr == addr && e->len == len && e->datamatch == datamatch && e->fd == eventfd) {
			assert_false(assign); /* KVM refuses a second identical binding */
			*e = ioeventfds[--nioeventfds];
			return 0;
		}
	}
	assert_true(assign); /* unbinding what was never bound is a transport bug */
	assert_true(nioeventfds < MAX_IOEVENTFDS);
	ioeventfds[nioeventfds++] = (struct ioeventfd){ addr, datamatch, len, eventfd };
	return 0;
}

/* The interrupt handle the transport is given: the recording fakes above. */
static const struct irq_ops fake_irq_ops = {
	.set_line = fake_set_line,
	.ioeventfd = fake_ioeventfd,
};

/* --- A stand-in device: echoes a pattern into each buffer and interrupts --- */

struct test_dev {
	struct virtio_device vdev;
	struct virtio_mmio *mmio;
	uint8_t config[8];
	atomic_int starts, stops;
	atomic_int notified[NQUEUES];
	atomic_int completed[NQUEUES];
	struct virtq_elem elem;
};

static void tdev_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct test_dev *t = d->opaque;
	assert_true(off + len <= sizeof(t->config));
	memcpy(data, t->config + off, len);
}

static void tdev_config_write(struct virtio_device *d, uint32_t off, const uint8_t *data,
			      uint32_t len)
{
	struct test_dev *t = d->opaque;
	assert_true(off + len <= sizeof(t->config));
	memcpy(t->config + off, data, len);
}

static int tdev_start(struct virtio_device *d)
{
	struct test_dev *t = d->opaque;
	atomic_fetch_add(&t->starts, 1);
	return 0;
}

static void tdev_stop(struct virtio_device *d)
{
	struct test_dev *t = d->opaque;
	atomic_fetch_add(&t->stops, 1);
}

static void tdev_notify(struct virtio_device *d, uint16_t q)
{
	struct test_dev *t = d->opaque;
	struct virtqueue *vq = &d->queues[q].vq;
	bool pushed = false;
	int r;
	while ((r = virtq_pop(vq, &t->elem)) == 1) {
		uint32_t written = 0;
		for (uint32_t i = 0; i < t->elem.in_num; i++) {
			struct iovec *io = &t->elem.iov[t->elem.out_num + i];
			memset(io->iov_base, 0xa0 + q, io->iov_len);
			written += (uint32_t)io->iov_len;
		}
		virtq_push(vq, t->elem.head, written);
		pushed = true;
	}
	if (r < 0)
		virtio_queue_error(d, q, r);
	if (pushed) {
		virtio_queue_interrupt(d, q);
		atomic_fetch_add(&t->completed[q], 1);
	}
	atomic_fetch_add(&t->notified[q], 1); /* last: waiters then see the interrupt too */
}

static const struct virtio_device_ops tdev_ops = {
	.name = "virtio-test",
	.device_id = TEST_DEVICE_ID,
	.num_queues = NQUEUES,
	.queue_size = QSIZE,
	.config_size = sizeof(((struct test_dev *)0)->config),
	.config_read = tdev_config_read,
	.config_write = tdev_config_write,
	.start = tdev_start,
	.queue_notify = tdev_notify,
	.stop = tdev_stop,
};

/* --- The VM: real bus, memory and I/O thread --- */

/* What the machine gives a device: its own MMIO bus, memory, I/O thread, the fakes above. */
static struct test_vm {
	struct bus mmio_bus;
	struct guest_mem mem;
	struct iothread *io;
	struct device_ctx ctx;
} *vm;

static struct test_vm *vm_new(void)
{
	struct test_vm *v = calloc(1, sizeof(*v));
	assert_non_null(v);
	assert_int_equal(guest_mem_init(&v->mem, RAM_SIZE), 0);
	v->io = iothread_create();
	assert_non_null(v->io);
	v->ctx = (struct device_ctx){ .mmio = &v->mmio_bus, .mem = &v->mem, .io = v->io,
				      .irq = { &fake_irq_ops, NULL }, .virtio_mmio = true };
	return v;
}

static void vm_free(struct test_vm *v)
{
	iothread_destroy(v->io);
	bus_destroy(&v->mmio_bus);
	guest_mem_destroy(&v->mem);
	free(v);
}

static struct test_dev *tdev_new(struct test_vm *v)
{
	struct test_dev *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memcpy(t->config, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_int_equal(virtio_device_init(&t->vdev, &v->ctx, &tdev_ops, t, TEST_FEATURE), 0);
	t->mmio = virtio_mmio_create(&v->ctx, &t->vdev);
	return t;
}

/* As the device types do: the transport first (it unbinds the doorbells), then the device. */
static void tdev_free(struct test_dev *t)
{
	virtio_mmio_destroy(t->mmio);
	virtio_device_destroy(&t->vdev);
	free(t);
}

/* A destroyed device's window stays claimed on the bus: tests that go through several devices
 * one after the other start each on a new VM, as kvmkit does on a guest reset. */
static void next_vm(void)
{
	vm_free(vm);
	vm = vm_new();
}

static int setup(void **state)
{
	(void)state;
	memset(irq_level, 0, sizeof(irq_level));
	atomic_store(&irq_changes, 0);
	nioeventfds = 0;
	ioeventfd_error = 0;
	vm = vm_new();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vm_free(vm);
	assert_int_equal(nioeventfds, 0); /* every doorbell was unbound */
	return 0;
}

/* --- Guest accesses --- */

static uint64_t window(unsigned n)
{
	return LAYOUT_VIRTIO_MMIO_BASE + n * LAYOUT_VIRTIO_MMIO_SIZE;
}

static uint64_t rd(unsigned n, uint32_t off, uint32_t len)
{
	uint8_t data[8];
	memset(data, 0x5a, sizeof(data));
	assert_true(bus_dispatch(&vm->mmio_bus, window(n) + off, data, len, false));
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)data[i] << (8 * i);
	return v;
}

static void wr(unsigned n, uint32_t off, uint32_t len, uint64_t v)
{
	uint8_t data[8];
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(v >> (8 * i));
	assert_true(bus_dispatch(&vm->mmio_bus, window(n) + off, data, len, true));
}

static uint32_t r32(uint32_t off) { return (uint32_t)rd(0, off, 4); }
static void w32(uint32_t off, uint32_t v) { wr(0, off, 4, v); }

static void put16(uint64_t gpa, uint16_t v)
{
	assert_int_equal(guest_mem_write(&vm->mem, gpa, &v, 2), 0);
}

static uint16_t get16(uint64_t gpa)
{
	uint16_t v;
	assert_int_equal(guest_mem_read(&vm->mem, gpa, &v, 2), 0);
	return v;
}

/* Waits (up to 5 s) for *counter to reach want: the device works on the I/O thread. */
static void wait_for(atomic_int *counter, int want)
{
	for (int i = 0; i < 5000 && atomic_load(counter) < want; i++)
		usleep(1000);
	assert_int_equal(atomic_load(counter), want);
}

/* The driver's part up to FEATURES_OK, as Linux's virtio_mmio.c and the virtio core do it;
 * accept is written as given (Linux masks it with what the device offers). */
static void negotiate(uint64_t accept)
{
	w32(STATUS, 0);
	assert_int_equal(r32(STATUS), 0); /* Linux waits for the reset to read back 0 */
	w32(STATUS, S_ACK);
	w32(STATUS, S_ACK | S_DRIVER);
	w32(DEVICE_FEATURES_SEL, 1);
	uint64_t features = (uint64_t)r32(DEVICE_FEATURES) << 32;
	w32(DEVICE_FEATURES_SEL, 0);
	features |= r32(DEVICE_FEATURES);
	assert_true(features & (1ULL << VIRTIO_F_VERSION_1));
	assert_true(features & TEST_FEATURE);
	w32(DRIVER_FEATURES_SEL, 1);
	w32(DRIVER_FEATURES, (uint32_t)(accept >> 32));
	w32(DRIVER_FEATURES_SEL, 0);
	w32(DRIVER_FEATURES, (uint32_t)accept);
	w32(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
}

/* vm_setup_vq: select, check it is free, size, the three ring addresses, ready. */
static void setup_queue(uint16_t q, uint32_t num)
{
	w32(QUEUE_SEL, q);
	assert_int_equal(r32(QUEUE_READY), 0);
	assert_int_equal(r32(QUEUE_NUM_MAX), QSIZE);
	w32(QUEUE_NUM, num);
	w32(QUEUE_DESC_LOW, (uint32_t)DESC_GPA(q));
	w32(QUEUE_DESC_HIGH, 0);
	w32(QUEUE_DRIVER_LOW, (uint32_t)AVAIL_GPA(q));
	w32(QUEUE_DRIVER_HIGH, 0);
	w32(QUEUE_DEVICE_LOW, (uint32_t)USED_GPA(q));
	w32(QUEUE_DEVICE_HIGH, 0);
	w32(QUEUE_READY, 1);
}

/* A running device with both queues set up. */
static struct test_dev *running_device(void)
{
	struct test_dev *t = tdev_new(vm);
	assert_non_null(t->mmio);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	for (uint16_t q = 0; q < NQUEUES; q++) {
		setup_queue(q, QSIZE);
		assert_int_equal(r32(QUEUE_READY), 1);
	}
	w32(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(atomic_load(&t->starts), 1);
	/* DRIVER_OK rings every enabled queue once (for buffers made available before it): let
	 * those pass, and count from zero. */
	for (uint16_t q = 0; q < NQUEUES; q++) {
		wait_for(&t->notified[q], 1);
		atomic_store(&t->notified[q], 0);
	}
	assert_int_equal(r32(INTERRUPT_STATUS), 0); /* no buffers yet: no interrupt */
	return t;
}

/* Makes the n-th request on queue q available: one device-writable buffer. */
static void make_request(uint16_t q, uint16_t n)
{
	uint16_t head = n % QSIZE;
	struct virtq_desc_raw desc = { BUF_GPA(q), BUF_LEN, VIRTQ_DESC_F_WRITE, 0 };
	assert_int_equal(guest_mem_write(&vm->mem, DESC_GPA(q) + 16ULL * head, &desc,
					 sizeof(desc)), 0);
	put16(AVAIL_GPA(q) + 4 + 2ULL * head, head);
	put16(AVAIL_GPA(q) + 2, (uint16_t)(n + 1)); /* avail->idx */
}

static bool needs_reset(void)
{
	return r32(STATUS) & S_NEEDS_RESET;
}

/* --- Tests --- */

/* What Linux's probe reads first, and where the device sits. */
static void test_identity(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	assert_non_null(t->mmio);
	assert_int_equal(r32(MAGIC), 0x74726976);
	assert_int_equal(r32(VERSION), 2);
	assert_int_equal(r32(DEVICE_ID), TEST_DEVICE_ID);
	assert_int_equal(r32(VENDOR_ID), 0x554d4551);
	assert_int_equal(r32(STATUS), 0);
	assert_int_equal(r32(INTERRUPT_STATUS), 0);
	assert_int_equal(r32(CONFIG_GENERATION), 0);
	/* no virtio 1.2 shared memory regions: length -1 */
	w32(SHM_SEL, 0);
	assert_int_equal(r32(SHM_LEN_LOW), 0xffffffff);
	assert_int_equal(r32(SHM_LEN_HIGH), 0xffffffff);
	/* Device features: VERSION_1 in the high word, the device's own and the ring features in
	 * the low word, nothing beyond. */
	w32(DEVICE_FEATURES_SEL, 1);
	assert_int_equal(r32(DEVICE_FEATURES), 1);
	w32(DEVICE_FEATURES_SEL, 0);
	assert_int_equal(r32(DEVICE_FEATURES),
			 TEST_FEATURE | (1u << VIRTIO_RING_F_INDIRECT_DESC) |
			 (1u << VIRTIO_RING_F_EVENT_IDX));
	w32(DEVICE_FEATURES_SEL, 2);
	assert_int_equal(r32(DEVICE_FEATURES), 0);
	/* the device configuration at 0x100, any width */
	assert_int_equal(rd(0, CONFIG, 1), 0x01);
	assert_int_equal(rd(0, CONFIG + 1, 2), 0x0302);
	assert_int_equal(rd(0, CONFIG + 4, 4), 0x08070605);
	assert_int_equal(rd(0, CONFIG, 8), 0x0807060504030201ULL);
	wr(0, CONFIG + 2, 2, 0xbbaa);
	assert_memory_equal(t->config, "\x01\x02\xaa\xbb\x05\x06\x07\x08", 8);

	struct virtio_mmio_window w[4];
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, 4), 1);
	assert_int_equal(w[0].base, LAYOUT_VIRTIO_MMIO_BASE);
	assert_int_equal(w[0].size, 0x200);
	assert_int_equal(w[0].gsi, 16);
	tdev_free(t);
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, 4), 0);
}

/* Windows and GSIs: packed from the base, reused after a device goes, at most 8 (the IOAPIC
 * pins 16-23), and per VM. */
static void test_allocation(void **state)
{
	(void)state;
	struct test_dev *t[LAYOUT_VIRTIO_MMIO_COUNT];
	for (unsigned i = 0; i < LAYOUT_VIRTIO_MMIO_COUNT; i++) {
		t[i] = tdev_new(vm);
		assert_non_null(t[i]->mmio);
		assert_int_equal(rd(i, MAGIC, 4), 0x74726976);
	}
	assert_int_equal(LAYOUT_VIRTIO_MMIO_COUNT, 8);
	struct test_dev *extra = tdev_new(vm);
	assert_null(extra->mmio);
	virtio_device_destroy(&extra->vdev);
	free(extra);

	struct virtio_mmio_window w[LAYOUT_VIRTIO_MMIO_COUNT + 1];
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, 3), LAYOUT_VIRTIO_MMIO_COUNT); /* counts all */
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, LAYOUT_VIRTIO_MMIO_COUNT + 1),
			 LAYOUT_VIRTIO_MMIO_COUNT);
	for (unsigned i = 0; i < LAYOUT_VIRTIO_MMIO_COUNT; i++) {
		assert_int_equal(w[i].base, window(i));
		assert_int_equal(w[i].gsi, 16 + i);
	}

	/* A second VM has windows of its own. */
	struct test_vm *vm2 = vm_new();
	struct test_dev *other = tdev_new(vm2);
	assert_non_null(other->mmio);
	assert_int_equal(virtio_mmio_windows(&vm2->mmio_bus, w, 2), 1);
	assert_int_equal(w[0].base, window(0));
	tdev_free(other);
	vm_free(vm2);

	/* A device that goes leaves a gap in the listing; its window stays claimed on the bus,
	 * so a new device of this VM cannot have it (and fails cleanly). */
	tdev_free(t[2]);
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, LAYOUT_VIRTIO_MMIO_COUNT),
			 LAYOUT_VIRTIO_MMIO_COUNT - 1);
	assert_int_equal(w[1].base, window(1));
	assert_int_equal(w[2].base, window(3));
	assert_int_equal(w[2].gsi, 19);
	extra = tdev_new(vm);
	assert_null(extra->mmio);
	virtio_device_destroy(&extra->vdev);
	free(extra);
	for (unsigned i = 0; i < LAYOUT_VIRTIO_MMIO_COUNT; i++)
		if (i != 2)
			tdev_free(t[i]);
	/* Gaps below are filled first: on a new VM the first device gets window 0 again. */
	next_vm();
	t[0] = tdev_new(vm);
	assert_int_equal(virtio_mmio_windows(&vm->mmio_bus, w, 1), 1);
	assert_int_equal(w[0].base, window(0));
	tdev_free(t[0]);
}

/* The doorbells: one data-matched ioeventfd per queue on QueueNotify, unbound at destroy. */
static void test_doorbell_ioeventfds(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	assert_int_equal(nioeventfds, NQUEUES);
	for (uint16_t q = 0; q < NQUEUES; q++) {
		bool found = false;
		for (int i = 0; i < nioeventfds; i++)
			found |= ioeventfds[i].addr == LAYOUT_VIRTIO_MMIO_BASE + QUEUE_NOTIFY &&
				 ioeventfds[i].len == 4 && ioeventfds[i].datamatch == q &&
				 ioeventfds[i].fd == t->vdev.queues[q].notify_fd;
		assert_true(found);
	}
	tdev_free(t);
	assert_int_equal(nioeventfds, 0);
}

/* The whole life of a device as Linux drives it, with a request on each queue. */
static void test_linux_driver(void **state)
{
	(void)state;
	struct test_dev *t = running_device();
	for (uint16_t q = 0; q < NQUEUES; q++) {
		make_request(q, 0);
		w32(QUEUE_NOTIFY, q); /* no ioeventfd in a unit test: the write reaches kvmkit */
		wait_for(&t->notified[q], 1);
		assert_int_equal(atomic_load(&t->completed[q]), 1);
		assert_int_equal(get16(USED_GPA(q) + 2), 1); /* used->idx */
		uint32_t used_elem[2];
		assert_int_equal(guest_mem_read(&vm->mem, USED_GPA(q) + 4, used_elem, 8), 0);
		assert_int_equal(used_elem[0], 0);       /* id */
		assert_int_equal(used_elem[1], BUF_LEN); /* len */
		uint8_t buf[BUF_LEN];
		assert_int_equal(guest_mem_read(&vm->mem, BUF_GPA(q), buf, BUF_LEN), 0);
		assert_int_equal(buf[0], 0xa0 + q);
		/* vm_interrupt: the line is up until the driver acknowledges what it read */
		assert_int_equal(atomic_load(&irq_level[16]), 1);
		uint32_t status = r32(INTERRUPT_STATUS);
		assert_int_equal(status, 1); /* used buffer notification */
		w32(INTERRUPT_ACK, status);
		assert_int_equal(r32(INTERRUPT_STATUS), 0);
		assert_int_equal(atomic_load(&irq_level[16]), 0);
	}
	/* Notifying a queue index the device does not have does nothing. */
	w32(QUEUE_NOTIFY, NQUEUES);
	w32(QUEUE_NOTIFY, 0xffffffff);
	/* Config space writes, and the generation the driver rereads around multi-word reads. */
	wr(0, CONFIG, 4, 0x44332211);
	assert_int_equal(rd(0, CONFIG, 4), 0x44332211);
	assert_int_equal(r32(CONFIG_GENERATION), 0);

	/* Removal: reset (stops the device, lowers everything), then vm_del_vq for each queue. */
	w32(STATUS, 0);
	assert_int_equal(r32(STATUS), 0);
	assert_int_equal(atomic_load(&t->stops), 1);
	for (uint16_t q = 0; q < NQUEUES; q++) {
		w32(QUEUE_SEL, q);
		w32(QUEUE_READY, 0);
		assert_int_equal(r32(QUEUE_READY), 0);
	}
	assert_false(needs_reset());
	/* and the driver can come back */
	negotiate(1ULL << VIRTIO_F_VERSION_1 | TEST_FEATURE);
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	tdev_free(t);
}

/* Destroying the transport of a running device stops the device first. */
static void test_destroy_running(void **state)
{
	(void)state;
	struct test_dev *t = running_device();
	virtio_mmio_destroy(t->mmio);
	assert_int_equal(atomic_load(&t->stops), 1);
	virtio_device_destroy(&t->vdev);
	assert_int_equal(atomic_load(&t->stops), 1);
	free(t);
}

/* Without ioeventfds every doorbell is a write kvmkit forwards to the queue's eventfd. */
static void test_doorbell_without_ioeventfd(void **state)
{
	(void)state;
	ioeventfd_error = ENOSYS;
	struct test_dev *t = running_device();
	assert_int_equal(nioeventfds, 0);
	for (uint16_t n = 0; n < 3; n++) {
		make_request(1, n);
		w32(QUEUE_NOTIFY, 1);
		wait_for(&t->notified[1], n + 1);
		w32(INTERRUPT_ACK, r32(INTERRUPT_STATUS));
	}
	assert_int_equal(get16(USED_GPA(1) + 2), 3);
	assert_int_equal(atomic_load(&t->notified[0]), 0);
	tdev_free(t);
}

/* Feature negotiation the device refuses, and features fixed after FEATURES_OK. */
static void test_features(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	negotiate(TEST_FEATURE); /* a legacy driver: no VERSION_1 */
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER);
	negotiate((1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40)); /* 40: never offered */
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	assert_int_equal(r32(STATUS), S_ACK | S_DRIVER | S_FEATURES_OK);
	/* after FEATURES_OK, DriverFeatures writes are ignored */
	w32(DRIVER_FEATURES_SEL, 0);
	w32(DRIVER_FEATURES, (uint32_t)TEST_FEATURE);
	assert_int_equal(t->vdev.driver_features, 1ULL << VIRTIO_F_VERSION_1);
	/* a selector beyond the two words selects nothing */
	w32(STATUS, 0);
	w32(DRIVER_FEATURES_SEL, 2);
	w32(DRIVER_FEATURES, 0xffffffff);
	assert_int_equal(t->vdev.driver_features, 0);
	tdev_free(t);
}

/* Registers take aligned 32-bit accesses only; anything else reads 0 and writes nothing. */
static void test_bad_widths(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	static const uint32_t widths[] = {1, 2, 8};
	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
		assert_int_equal(rd(0, MAGIC, widths[i]), 0);
		assert_int_equal(rd(0, STATUS, widths[i]), 0);
		wr(0, STATUS, widths[i], S_ACK);
		wr(0, QUEUE_SEL, widths[i], 1);
		wr(0, QUEUE_NOTIFY, widths[i], 0);
	}
	assert_int_equal(r32(STATUS), 0);
	assert_int_equal(rd(0, MAGIC + 1, 4), 0);  /* unaligned */
	assert_int_equal(rd(0, MAGIC + 2, 2), 0);
	wr(0, STATUS + 2, 4, S_ACK);
	assert_int_equal(r32(STATUS), 0);
	w32(QUEUE_SEL, 0);
	wr(0, QUEUE_NUM + 1, 4, 8);
	assert_int_equal(t->vdev.queues[0].size, QSIZE);
	/* the register block's last word and the config space's first word do not mix */
	assert_int_equal(rd(0, CONFIG_GENERATION + 2, 4), 0);
	/* config space beyond the device's 8 bytes: reads 0, writes go nowhere */
	assert_int_equal(rd(0, CONFIG + 8, 4), 0);
	assert_int_equal(rd(0, CONFIG + 6, 4), 0);
	assert_int_equal(rd(0, 0x1f8, 8), 0);
	wr(0, CONFIG + 6, 4, 0xffffffff);
	wr(0, 0x1ff, 1, 0xff);
	assert_memory_equal(t->config, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	/* accesses the bus does not hand over: past the window's end */
	uint8_t data[8];
	assert_false(bus_dispatch(&vm->mmio_bus, window(0) + 0x1fc, data, 8, false));
	assert_false(needs_reset());
	tdev_free(t);
}

/* QueueSel naming no queue: the queue registers read 0 and writes go nowhere. */
static void test_queue_sel_out_of_range(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	static const uint32_t sels[] = {NQUEUES, VIRTIO_MAX_QUEUES, 0x10000, 0xffffffff};
	for (size_t i = 0; i < sizeof(sels) / sizeof(sels[0]); i++) {
		w32(QUEUE_SEL, sels[i]);
		assert_int_equal(r32(QUEUE_NUM_MAX), 0); /* Linux: no such queue */
		assert_int_equal(r32(QUEUE_READY), 0);
		w32(QUEUE_NUM, 4);
		w32(QUEUE_DESC_LOW, 0x1000);
		w32(QUEUE_READY, 1);
		assert_int_equal(r32(QUEUE_READY), 0);
		assert_int_equal(r32(QUEUE_DESC_LOW), 0);
	}
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		assert_false(t->vdev.queues[q].enabled);
		assert_int_equal(t->vdev.queues[q].desc, 0);
	}
	assert_false(needs_reset());
	tdev_free(t);
}

/* Queue sizes the driver may not use: above QueueNumMax (even if 16 bits of it look fine),
 * zero, not a power of two. Each makes QueueReady fail and the device need a reset, with a
 * configuration interrupt. */
static void test_bad_queue_num(void **state)
{
	(void)state;
	static const uint32_t nums[] = {QSIZE * 2, 0x10000 + 8, 0, 12, 0xffffffff};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		struct test_dev *t = tdev_new(vm);
		negotiate(1ULL << VIRTIO_F_VERSION_1);
		setup_queue(0, nums[i]);
		assert_int_equal(r32(QUEUE_READY), 0);
		assert_true(needs_reset());
		assert_int_equal(r32(INTERRUPT_STATUS), 2); /* configuration change */
		assert_int_equal(atomic_load(&irq_level[16]), 1);
		w32(INTERRUPT_ACK, 2);
		assert_int_equal(atomic_load(&irq_level[16]), 0);
		/* DRIVER_OK does not start a device that needs a reset */
		w32(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
		assert_int_equal(atomic_load(&t->starts), 0);
		/* a reset clears it */
		w32(STATUS, 0);
		assert_false(needs_reset());
		tdev_free(t);
		next_vm();
	}
}

/* Rings outside guest RAM or misaligned: the device needs a reset, kvmkit goes on. */
static void test_bad_rings(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	w32(QUEUE_SEL, 0);
	w32(QUEUE_NUM, QSIZE);
	w32(QUEUE_DESC_LOW, 0);
	w32(QUEUE_DESC_HIGH, 0x100); /* 1 TiB: not RAM */
	w32(QUEUE_DRIVER_LOW, (uint32_t)AVAIL_GPA(0));
	w32(QUEUE_DEVICE_LOW, (uint32_t)USED_GPA(0));
	assert_int_equal(r32(QUEUE_DESC_HIGH), 0x100);
	w32(QUEUE_READY, 1);
	assert_int_equal(r32(QUEUE_READY), 0);
	assert_true(needs_reset());
	w32(STATUS, 0);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	w32(QUEUE_SEL, 0);
	w32(QUEUE_DESC_LOW, (uint32_t)DESC_GPA(0) + 8); /* descriptors need 16-byte alignment */
	w32(QUEUE_DRIVER_LOW, (uint32_t)AVAIL_GPA(0));
	w32(QUEUE_DEVICE_LOW, (uint32_t)USED_GPA(0));
	w32(QUEUE_READY, 1);
	assert_true(needs_reset());
	tdev_free(t);
}

/* The layout of a ready queue is fixed until reset; taking a queue back is allowed before
 * DRIVER_OK only (after it, the device may be using the rings). */
static void test_change_ready_queue(void **state)
{
	(void)state;
	static const uint32_t regs[] = {QUEUE_NUM, QUEUE_DESC_LOW, QUEUE_DESC_HIGH,
					QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, QUEUE_DEVICE_LOW,
					QUEUE_DEVICE_HIGH};
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		struct test_dev *t = tdev_new(vm);
		negotiate(1ULL << VIRTIO_F_VERSION_1);
		setup_queue(1, QSIZE);
		assert_false(needs_reset());
		w32(QUEUE_READY, 1); /* again: nothing changes */
		assert_false(needs_reset());
		w32(regs[i], regs[i] == QUEUE_NUM ? 8 : 0x2000);
		assert_true(needs_reset());
		assert_int_equal(t->vdev.queues[1].desc, DESC_GPA(1)); /* unchanged */
		assert_int_equal(t->vdev.queues[1].size, QSIZE);
		tdev_free(t);
		next_vm();
	}

	struct test_dev *t = tdev_new(vm);
	negotiate(1ULL << VIRTIO_F_VERSION_1);
	setup_queue(0, QSIZE);
	w32(QUEUE_READY, 0); /* before DRIVER_OK: the queue is the driver's again */
	assert_int_equal(r32(QUEUE_READY), 0);
	assert_false(needs_reset());
	setup_queue(0, QSIZE / 2);
	assert_int_equal(t->vdev.queues[0].vq.size, QSIZE / 2);
	w32(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	assert_int_equal(atomic_load(&t->starts), 1);
	w32(QUEUE_READY, 0); /* a running device's queue */
	assert_true(needs_reset());
	assert_int_equal(r32(QUEUE_READY), 1);
	/* the broken device serves no doorbells (DRIVER_OK's own kick may have been served just
	 * before it broke: count from when no handler can be running any more) */
	iothread_sync(vm->io);
	int before = atomic_load(&t->notified[0]);
	make_request(0, 0);
	w32(QUEUE_NOTIFY, 0);
	usleep(20000);
	assert_int_equal(atomic_load(&t->notified[0]), before);
	tdev_free(t);
}

/* Writes to read-only registers and unknown offsets are ignored. */
static void test_read_only_registers(void **state)
{
	(void)state;
	struct test_dev *t = tdev_new(vm);
	static const uint32_t regs[] = {MAGIC, VERSION, DEVICE_ID, VENDOR_ID, DEVICE_FEATURES,
					QUEUE_NUM_MAX, INTERRUPT_STATUS, CONFIG_GENERATION,
					SHM_LEN_LOW, 0x0c0, 0x0f0, 0x0f8};
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		w32(regs[i], 0xffffffff);
	assert_int_equal(r32(MAGIC), 0x74726976);
	assert_int_equal(r32(VERSION), 2);
	assert_int_equal(r32(DEVICE_ID), TEST_DEVICE_ID);
	assert_int_equal(r32(INTERRUPT_STATUS), 0);
	assert_int_equal(r32(QUEUE_NUM_MAX), QSIZE);
	assert_int_equal(r32(STATUS), 0);
	assert_int_equal(atomic_load(&irq_level[16]), 0);
	/* an acknowledgement of what is not pending changes nothing */
	w32(INTERRUPT_ACK, 0xffffffff);
	assert_int_equal(atomic_load(&irq_changes), 0);
	tdev_free(t);
}

/* The I/O thread raises while a vCPU acknowledges: the line must end up matching
 * InterruptStatus, never high with nothing pending (an interrupt storm in the guest) nor low
 * with something pending (a lost interrupt). */
static void test_interrupt_race(void **state)
{
	(void)state;
	struct test_dev *t = running_device();
	for (uint16_t n = 0; n < 200; n++) {
		make_request(0, n);
		w32(QUEUE_NOTIFY, 0);
		/* acknowledge whatever is pending while the device may be completing */
		for (int spin = 0; spin < 50; spin++) {
			uint32_t status = r32(INTERRUPT_STATUS);
			if (status)
				w32(INTERRUPT_ACK, status);
		}
		wait_for(&t->notified[0], n + 1);
		assert_int_equal(atomic_load(&irq_level[16]), r32(INTERRUPT_STATUS) != 0);
		w32(INTERRUPT_ACK, r32(INTERRUPT_STATUS));
		assert_int_equal(atomic_load(&irq_level[16]), 0);
	}
	assert_int_equal(get16(USED_GPA(0) + 2), 200);
	tdev_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doorbell_ioeventfds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_linux_driver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doorbell_without_ioeventfd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_features, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_widths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_sel_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_queue_num, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_ready_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_race, setup, teardown),
	};
	return cmocka_run_group_tests_name("virtio_mmio", tests, NULL, NULL);
}
