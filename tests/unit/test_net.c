/* Unit tests of virtio-net (virtio/virtio_net.c) driven the way a driver drives it, over a
 * recording fake backend: receive framing with and without MRG_RXBUF (num_buffers, buffers
 * given back when the ring runs dry, frames no ring could hold), transmit framing, vnet header
 * offload rules, a hostile driver's short and oversized frames and broken rings; and the
 * parser of QEMU-style hostfwd rules (net/hostfwd.c). The virtio device model and transport
 * are stood in for by the fakes below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <zlib.h>
#include <unistd.h>

#include "fake_memory.h"
#include "lib/stream.h"
#include "net/hostfwd.h"
#include "net/net.h"
#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

#define RAM_SIZE (8ULL << 20)
#define RING_GPA(q) (0x10000ULL + 0x10000ULL * (q)) /* desc, then avail at +0x4000, used at +0x8000 */
#define HEAP_GPA 0x100000ULL

#define Q_RX 0
#define Q_TX 1
#define HDR 12

/* virtio-net feature bits */
#define F_CSUM       (1ULL << 0)
#define F_GUEST_CSUM (1ULL << 1)
#define F_MAC        (1ULL << 5)
#define F_GUEST_TSO4 (1ULL << 7)
#define F_HOST_TSO4  (1ULL << 11)
#define F_HOST_TSO6  (1ULL << 12)
#define F_MRG_RXBUF  (1ULL << 15)
#define F_STATUS     (1ULL << 16)
#define F_EVENT_IDX  (1ULL << VIRTIO_RING_F_EVENT_IDX)

/* --- Fakes of the device model and transport --- */

static struct virtio_device *dev;  /* the device virtio_net_ops.realize set up */
static int interrupts[2];
static int queue_errors, broken;

int virtio_device_init(struct virtio_device *d, const struct device_ctx *ctx,
		       const struct virtio_device_ops *ops, void *opaque, uint64_t device_features)
{
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->opaque = opaque;
	d->mem = ctx->mem;
	d->io = ctx->io;
	d->device_features = device_features | (1ULL << VIRTIO_F_VERSION_1) |
			     (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | (1ULL << VIRTIO_RING_F_EVENT_IDX);
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		d->queues[i].notify_fd = -1;
	for (int i = 0; i < ops->num_queues; i++) {
		d->queues[i].owner = d;
		d->queues[i].notify_fd = eventfd(0, EFD_NONBLOCK);
		assert_true(d->queues[i].notify_fd >= 0);
	}
	dev = d;
	return 0;
}

void virtio_device_destroy(struct virtio_device *d)
{
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		if (d->queues[i].notify_fd >= 0)
			close(d->queues[i].notify_fd);
	d->ops = NULL;
}

void virtio_queue_interrupt(struct virtio_device *d, uint16_t q)
{
	(void)d;
	interrupts[q]++;
}

/* As virtio.c's: the device rings its own doorbell (the test reads the eventfd). */
void virtio_queue_kick_later(struct virtio_device *d, uint16_t q)
{
	uint64_t one = 1;
	assert_int_equal(write(d->queues[q].notify_fd, &one, sizeof(one)), sizeof(one));
}

void virtio_device_broken(struct virtio_device *d, const char *why)
{
	(void)why;
	broken++;
	atomic_store(&d->needs_reset, true);
}

void virtio_queue_error(struct virtio_device *d, uint16_t q, int err)
{
	(void)q, (void)err;
	queue_errors++;
	virtio_device_broken(d, "queue error");
}

struct virtio_transport *virtio_transport_create(const struct device_ctx *ctx,
						 struct virtio_device *vdev)
{
	(void)ctx, (void)vdev;
	static int token;
	return (struct virtio_transport *)&token;
}

int virtio_transport_register(const struct device_ctx *ctx, struct virtio_transport *t)
{
	(void)ctx, (void)t;
	return 0;
}

void virtio_transport_destroy(struct virtio_transport *t)
{
	(void)t;
}

/* The self-announcement's timer watch: kept for a test to fire (there is no I/O thread). */
static iothread_fn timer_fn;
static void *timer_opaque;
static int timer_fd;

int iothread_add(struct iothread *t, int fd, uint32_t events, iothread_fn fn, void *opaque)
{
	(void)t, (void)events;
	timer_fd = fd;
	timer_fn = fn;
	timer_opaque = opaque;
	return 0;
}

int iothread_remove(struct iothread *t, int fd)
{
	(void)t, (void)fd;
	return 0;
}

/* --- A recording backend --- */

#define MAX_SENT 300
static struct fake_backend {
	struct net_backend be;
	net_receive_fn receive;
	void *opaque;
	int resumes;
	unsigned offloads_set;
	int nsent;
	size_t sent_len[MAX_SENT];
	uint8_t *sent[MAX_SENT];
} fb;

static int fb_start(struct net_backend *be, net_receive_fn receive, void *opaque)
{
	(void)be;
	fb.receive = receive;
	fb.opaque = opaque;
	return 0;
}

static int fb_send(struct net_backend *be, const struct iovec *iov, unsigned cnt)
{
	(void)be;
	assert_true(fb.nsent < MAX_SENT);
	size_t len = 0;
	for (unsigned i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	for (size_t i = 0, at = 0; i < cnt; at += iov[i].iov_len, i++)
		memcpy(copy + at, iov[i].iov_base, iov[i].iov_len);
	fb.sent[fb.nsent] = copy;
	fb.sent_len[fb.nsent++] = len;
	return 0;
}

static void fb_resume(struct net_backend *be)
{
	(void)be;
	fb.resumes++;
}

static int fb_set_offloads(struct net_backend *be, unsigned offloads)
{
	(void)be;
	fb.offloads_set = offloads;
	return 0;
}

static void fb_destroy(struct net_backend *be)
{
	(void)be;
	for (int i = 0; i < fb.nsent; i++)
		free(fb.sent[i]);
}

static const struct net_backend_ops fb_ops = {
	.start = fb_start, .send = fb_send, .resume = fb_resume,
	.set_offloads = fb_set_offloads, .destroy = fb_destroy,
};

static bool fb_vnet_hdr;     /* what the next net_backend_open gives */
static unsigned fb_offloads;

struct net_backend *net_backend_open(struct iothread *io, const struct vm_nic *nic)
{
	(void)io, (void)nic;
	memset(&fb, 0, sizeof(fb));
	fb.be = (struct net_backend){ .ops = &fb_ops, .kind = "fake", .vnet_hdr = fb_vnet_hdr,
				      .offloads = fb_offloads };
	return &fb.be;
}

/* --- The driver's side --- */

static struct guest_mem mem;
/* What the machine gives the device: memory (and no I/O thread: the fakes stand in). */
static struct {
	struct guest_mem mem;
	struct device_ctx ctx;
} vm;
static struct virtio_net *net;
static uint64_t heap;
static uint16_t qsize, next_desc[2], avail_shadow[2];

static void *gp(uint64_t gpa, uint64_t len)
{
	void *p = guest_mem_ptr(&mem, gpa, len);
	assert_non_null(p);
	return p;
}

static uint16_t *avail(int q) { return gp(RING_GPA(q) + 0x4000, 6 + 2ULL * qsize); }
static uint16_t *used(int q) { return gp(RING_GPA(q) + 0x8000, 6 + 8ULL * qsize); }
static uint16_t used_idx(int q) { return used(q)[1]; }
static uint32_t used_id(int q, int i) { return ((uint32_t *)(used(q) + 2))[2 * i]; }
static uint32_t used_len(int q, int i) { return ((uint32_t *)(used(q) + 2))[2 * i + 1]; }
static uint16_t avail_event(int q) { return used(q)[2 + 4 * qsize]; }

static uint64_t alloc(uint64_t len)
{
	uint64_t gpa = heap;
	heap += (len + 15) & ~15ULL;
	assert_true(heap < RAM_SIZE);
	return gpa;
}

static void put_desc(int q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc_raw *d = gp(RING_GPA(q) + 16ULL * i, 16);
	*d = (struct virtq_desc_raw){ .addr = addr, .len = len, .flags = flags, .next = next };
}

static void publish(int q, uint16_t head)
{
	uint16_t *a = avail(q);
	a[2 + (avail_shadow[q] & (qsize - 1))] = head;
	a[1] = ++avail_shadow[q];
}

/* One writable receive buffer of len bytes; returns its guest address. */
static uint64_t add_rx(uint32_t len)
{
	uint64_t gpa = alloc(len);
	uint16_t i = next_desc[Q_RX];
	next_desc[Q_RX] = (uint16_t)((i + 1) & (qsize - 1));
	put_desc(Q_RX, i, gpa, len, VIRTQ_DESC_F_WRITE, 0);
	publish(Q_RX, i);
	return gpa;
}

/* One transmit chain: readable segments of the given lengths filled from data. */
static void add_tx(const uint8_t *data, const uint32_t *lens, int n)
{
	uint16_t head = next_desc[Q_TX];
	for (int k = 0; k < n; k++) {
		uint16_t i = next_desc[Q_TX];
		next_desc[Q_TX] = (uint16_t)((i + 1) & (qsize - 1));
		uint64_t gpa = alloc(lens[k]);
		memcpy(gp(gpa, lens[k]), data, lens[k]);
		data += lens[k];
		put_desc(Q_TX, i, gpa, lens[k], k + 1 < n ? VIRTQ_DESC_F_NEXT : 0, next_desc[Q_TX]);
	}
	publish(Q_TX, head);
}

/* A fresh device on the fake backend, started with the features the driver accepts. */
static void setup_dev(bool vnet_hdr, unsigned offloads, uint16_t size, uint64_t features)
{
	fb_vnet_hdr = vnet_hdr;
	fb_offloads = offloads;
	assert_int_equal(fake_mem_init(&mem, RAM_SIZE), 0);
	memset(&vm, 0, sizeof(vm));
	vm.mem = mem;
	vm.ctx = (struct device_ctx){ .mem = &vm.mem };
	heap = HEAP_GPA;
	qsize = size;
	memset(next_desc, 0, sizeof(next_desc));
	memset(avail_shadow, 0, sizeof(avail_shadow));
	memset(interrupts, 0, sizeof(interrupts));
	queue_errors = broken = 0;
	struct vm_nic nic = { .backend = VM_NIC_USER, .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 } };
	net = virtio_net_ops.realize(&vm.ctx, &nic);
	assert_non_null(net);
	assert_true((dev->device_features & features) == features);
	dev->driver_features = features | (1ULL << VIRTIO_F_VERSION_1);
	for (int q = 0; q < 2; q++) {
		assert_int_equal(virtq_setup(&dev->queues[q].vq, &vm.mem, size, RING_GPA(q),
					     RING_GPA(q) + 0x4000, RING_GPA(q) + 0x8000,
					     features & F_EVENT_IDX, false), 0);
		dev->queues[q].enabled = true;
	}
	assert_int_equal(dev->ops->start(dev), 0);
	atomic_store(&dev->running, true);
}

static void teardown_dev(void)
{
	virtio_net_ops.destroy(net);
	fake_mem_destroy(&mem);
}

/* The backend hands a frame (with a vnet header first when it has one) to the device. */
static bool deliver(const uint8_t *frame, size_t len)
{
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
	return fb.receive(fb.opaque, &iov, 1);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* --- Tests --- */

static void test_features_and_config(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MAC | F_STATUS | F_MRG_RXBUF);
	/* A backend without vnet header (slirp) gets no offloads at all. */
	assert_int_equal(dev->device_features & (F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_GUEST_TSO4), 0);
	assert_int_equal(dev->ops->device_id, VIRTIO_ID_NET);
	assert_int_equal(dev->ops->num_queues, 2);
	uint8_t cfg[8];
	dev->ops->config_read(dev, 0, cfg, sizeof(cfg));
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	assert_memory_equal(cfg, mac, 6);
	assert_int_equal(cfg[6] | cfg[7] << 8, 1); /* LINK_UP */
	teardown_dev();

	/* TAP with offloads: checksum and TSO both ways, and start passes the driver's choice on. */
	setup_dev(true, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6, 16,
		  F_CSUM | F_GUEST_CSUM | F_HOST_TSO4 | F_GUEST_TSO4);
	assert_int_equal(fb.offloads_set, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4);
	teardown_dev();
}

static void test_rx_mergeable(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MRG_RXBUF | F_EVENT_IDX);
	uint64_t b[4];
	for (int i = 0; i < 4; i++)
		b[i] = add_rx(100);
	uint8_t frame[250];
	fill(frame, sizeof(frame), 1);
	assert_true(deliver(frame, sizeof(frame)));
	/* 12 + 250 bytes over three 100-byte buffers. */
	assert_int_equal(used_idx(Q_RX), 3);
	assert_int_equal(used_len(Q_RX, 0), 100);
	assert_int_equal(used_len(Q_RX, 1), 100);
	assert_int_equal(used_len(Q_RX, 2), 62);
	for (int i = 0; i < 3; i++)
		assert_int_equal(used_id(Q_RX, i), i);
	uint8_t *h = gp(b[0], HDR);
	static const uint8_t zero[10];
	assert_memory_equal(h, zero, 10);
	assert_int_equal(h[10] | h[11] << 8, 3); /* num_buffers */
	assert_memory_equal(gp(b[0] + HDR, 88), frame, 88);
	assert_memory_equal(gp(b[1], 100), frame + 88, 100);
	assert_memory_equal(gp(b[2], 62), frame + 188, 62);
	assert_int_equal(interrupts[Q_RX], 1);
	teardown_dev();
}

static void test_rx_single_buffer(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, 0);
	uint64_t b = add_rx(100);
	uint8_t frame[200];
	fill(frame, sizeof(frame), 2);
	/* Without MRG_RXBUF a frame must fit one buffer: dropped, the buffer stays for the next. */
	assert_true(deliver(frame, 200));
	assert_int_equal(used_idx(Q_RX), 0);
	assert_true(deliver(frame, 60));
	assert_int_equal(used_idx(Q_RX), 1);
	assert_int_equal(used_len(Q_RX, 0), HDR + 60);
	uint8_t *h = gp(b, HDR);
	assert_int_equal(h[10] | h[11] << 8, 1); /* num_buffers is 1 without MRG_RXBUF */
	assert_memory_equal(gp(b + HDR, 60), frame, 60);
	teardown_dev();
}

static void test_rx_waits_for_buffers(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MRG_RXBUF | F_EVENT_IDX);
	uint8_t frame[250];
	fill(frame, sizeof(frame), 3);
	/* Empty ring: refused (the backend keeps the frame), a doorbell asked for. */
	assert_false(deliver(frame, sizeof(frame)));
	assert_int_equal(avail_event(Q_RX), 0);
	/* One buffer is not enough: refused again, the buffer given back untouched in the used
	 * ring, and the driver's next buffer (index 1) will ring. */
	add_rx(100);
	assert_false(deliver(frame, sizeof(frame)));
	assert_int_equal(used_idx(Q_RX), 0);
	assert_int_equal(dev->queues[Q_RX].vq.last_avail_idx, 0);
	assert_int_equal(avail_event(Q_RX), 1);
	/* The doorbell resumes the backend, which offers the frame again. */
	add_rx(100);
	add_rx(100);
	dev->ops->queue_notify(dev, Q_RX);
	assert_int_equal(fb.resumes, 1);
	assert_true(deliver(frame, sizeof(frame)));
	assert_int_equal(used_idx(Q_RX), 3);
	assert_int_equal(used_id(Q_RX, 0), 0);
	assert_int_equal(interrupts[Q_RX], 1);
	teardown_dev();
}

static void test_rx_frame_larger_than_ring(void **state)
{
	(void)state;
	setup_dev(false, 0, 8, F_MRG_RXBUF);
	for (int i = 0; i < 8; i++)
		add_rx(20);
	uint8_t frame[1000] = { 0 };
	/* 8 x 20 bytes can never hold it: dropped, not waited for forever. */
	assert_true(deliver(frame, sizeof(frame)));
	assert_int_equal(used_idx(Q_RX), 0);
	/* The buffers are still there for a frame that fits. */
	assert_true(deliver(frame, 100));
	assert_int_equal(used_idx(Q_RX), 6);
	teardown_dev();
}

static void test_rx_bad_sizes_and_states(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MRG_RXBUF);
	add_rx(2000);
	static uint8_t big[NET_MAX_FRAME + 1];
	assert_true(deliver(big, 10));               /* shorter than an Ethernet header */
	assert_true(deliver(big, sizeof(big)));      /* longer than any frame */
	assert_int_equal(used_idx(Q_RX), 0);
	/* A stopped device takes nothing (the backend waits for DRIVER_OK's doorbell). */
	atomic_store(&dev->running, false);
	assert_false(deliver(big, 60));
	atomic_store(&dev->running, true);
	assert_true(deliver(big, 60));
	assert_int_equal(used_idx(Q_RX), 1);
	/* A receive buffer that cannot even hold the header: the device needs a reset. */
	add_rx(8);
	assert_false(deliver(big, 60));
	assert_int_equal(broken, 1);
	assert_false(deliver(big, 60));
	teardown_dev();
}

static void test_rx_vnet_header_rules(void **state)
{
	(void)state;
	uint8_t pkt[HDR + 60];
	memset(pkt, 0, sizeof(pkt));
	/* The driver took no offloads: a frame needing a checksum cannot be given to it, and
	 * DATA_VALID is not ours to pass on. */
	setup_dev(true, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 16, F_MRG_RXBUF);
	assert_int_equal(fb.offloads_set, 0);
	uint64_t b = add_rx(200);
	pkt[0] = 1; /* NEEDS_CSUM */
	assert_true(deliver(pkt, sizeof(pkt)));
	assert_int_equal(used_idx(Q_RX), 0);
	pkt[0] = 2; /* DATA_VALID */
	pkt[10] = 0x55; /* whatever the backend left in num_buffers */
	assert_true(deliver(pkt, sizeof(pkt)));
	assert_int_equal(used_idx(Q_RX), 1);
	assert_int_equal(used_len(Q_RX, 0), sizeof(pkt));
	uint8_t *h = gp(b, HDR);
	assert_int_equal(h[0], 0);
	assert_int_equal(h[10] | h[11] << 8, 1);
	teardown_dev();

	/* With GUEST_CSUM and GUEST_TSO4: partial checksums and TCPv4 GSO pass, TCPv6 GSO not. */
	setup_dev(true, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 16, F_MRG_RXBUF | F_GUEST_CSUM | F_GUEST_TSO4);
	b = add_rx(200);
	memset(pkt, 0, HDR);
	pkt[0] = 1;
	pkt[1] = 4; /* GSO_TCPV6 */
	assert_true(deliver(pkt, sizeof(pkt)));
	assert_int_equal(used_idx(Q_RX), 0);
	pkt[1] = 1; /* GSO_TCPV4 */
	pkt[4] = 0xa8; /* gso_size 1448 */
	pkt[5] = 0x05;
	assert_true(deliver(pkt, sizeof(pkt)));
	assert_int_equal(used_idx(Q_RX), 1);
	h = gp(b, HDR);
	assert_int_equal(h[0], 1);
	assert_int_equal(h[1], 1);
	assert_int_equal(h[4] | h[5] << 8, 1448);
	teardown_dev();
}

static void test_tx_frames(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_EVENT_IDX);
	uint8_t pkt[HDR + 100];
	fill(pkt, sizeof(pkt), 4);
	/* The header split over two descriptors, the frame in a third. */
	static const uint32_t split[] = { 4, 8, 100 };
	add_tx(pkt, split, 3);
	/* A chain shorter than the header, and one with a header but no Ethernet header. */
	static const uint32_t shorter[] = { 8 };
	add_tx(pkt, shorter, 1);
	static const uint32_t tiny[] = { HDR + 4 };
	add_tx(pkt, tiny, 1);
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(fb.nsent, 1);
	assert_int_equal(fb.sent_len[0], 100);
	assert_memory_equal(fb.sent[0], pkt + HDR, 100);
	/* Every chain goes back, the dropped ones too, with nothing written. */
	assert_int_equal(used_idx(Q_TX), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(used_len(Q_TX, i), 0);
	assert_int_equal(interrupts[Q_TX], 1);
	assert_int_equal(queue_errors + broken, 0);
	teardown_dev();
}

static void test_tx_size_limit(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, 0);
	static uint8_t pkt[HDR + NET_MAX_FRAME + 1];
	uint32_t at_limit[] = { HDR + NET_MAX_FRAME };
	uint32_t over[] = { HDR, NET_MAX_FRAME + 1 };
	add_tx(pkt, at_limit, 1);
	add_tx(pkt, over, 2);
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(fb.nsent, 1);
	assert_int_equal(fb.sent_len[0], NET_MAX_FRAME);
	assert_int_equal(used_idx(Q_TX), 2);
	teardown_dev();
}

static void test_tx_vnet_header_rules(void **state)
{
	(void)state;
	uint8_t pkt[HDR + 60];
	memset(pkt, 0, sizeof(pkt));
	static const uint32_t one[] = { HDR + 60 };
	/* Without CSUM the backend gets a zero header whatever the driver wrote. */
	setup_dev(true, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 16, 0);
	pkt[0] = 1;
	pkt[1] = 1;
	add_tx(pkt, one, 1);
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(fb.nsent, 1);
	assert_int_equal(fb.sent_len[0], sizeof(pkt));
	static const uint8_t zero[HDR];
	assert_memory_equal(fb.sent[0], zero, HDR);
	teardown_dev();

	/* With CSUM and HOST_TSO4: TCPv4 GSO goes through as written; TCPv6 GSO is dropped. */
	setup_dev(true, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4, 16, F_CSUM | F_HOST_TSO4);
	pkt[1] = 4;
	add_tx(pkt, one, 1);
	pkt[1] = 1;
	pkt[4] = 0xa8;
	pkt[5] = 0x05;
	add_tx(pkt, one, 1);
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(fb.nsent, 1);
	assert_memory_equal(fb.sent[0], pkt, sizeof(pkt));
	assert_int_equal(used_idx(Q_TX), 2);
	teardown_dev();
}

static void test_tx_broken_ring(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, 0);
	avail(Q_TX)[1] = 100; /* more entries than the ring has */
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(queue_errors, 1);
	assert_int_equal(fb.nsent, 0);
	teardown_dev();
}

static void test_tx_budget(void **state)
{
	(void)state;
	setup_dev(false, 0, 256, F_EVENT_IDX);
	uint8_t pkt[HDR + 60] = { 0 };
	static const uint32_t one[] = { HDR + 60 };
	for (int i = 0; i < 256; i++)
		add_tx(pkt, one, 1);
	/* One doorbell serves a budget, then rings again for the rest instead of hogging the
	 * I/O thread. */
	dev->ops->queue_notify(dev, Q_TX);
	assert_int_equal(fb.nsent, 256);
	uint64_t count = 0;
	assert_int_equal(read(dev->queues[Q_TX].notify_fd, &count, 8), 8);
	assert_int_equal(count, 1);
	teardown_dev();
}

static void test_reset_starts_clean(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MRG_RXBUF | F_EVENT_IDX);
	uint8_t frame[60] = { 0 };
	add_rx(100);
	assert_true(deliver(frame, sizeof(frame)));
	/* The driver resets the device (nothing stays in flight) and sets the rings up anew. */
	atomic_store(&dev->running, false);
	dev->ops->stop(dev);
	assert_false(deliver(frame, sizeof(frame)));
	memset(gp(RING_GPA(Q_RX), 0x10000), 0, 0x10000);
	memset(next_desc, 0, sizeof(next_desc));
	memset(avail_shadow, 0, sizeof(avail_shadow));
	assert_int_equal(virtq_setup(&dev->queues[Q_RX].vq, &vm.mem, qsize, RING_GPA(Q_RX),
				     RING_GPA(Q_RX) + 0x4000, RING_GPA(Q_RX) + 0x8000, true, false), 0);
	assert_int_equal(dev->ops->start(dev), 0);
	atomic_store(&dev->running, true);
	/* The first frame finds the empty new ring and asks for a doorbell... */
	assert_false(deliver(frame, sizeof(frame)));
	assert_int_equal(avail_event(Q_RX), 0);
	/* ...which comes with the driver's first buffer. */
	uint64_t b = add_rx(100);
	dev->ops->queue_notify(dev, Q_RX);
	assert_true(deliver(frame, sizeof(frame)));
	assert_int_equal(used_idx(Q_RX), 1);
	assert_int_equal(used_len(Q_RX, 0), HDR + 60);
	uint8_t *h = gp(b, HDR);
	assert_int_equal(h[10] | h[11] << 8, 1);
	teardown_dev();
}

/* The device's own state (its configuration) in a section, loaded back into dev. */
static int state_round_trip(const uint8_t *patch_mac, uint32_t version)
{
	struct stream w, r;
	stream_init_mem_writer(&w);
	stream_write_header(&w, "KVMKITUT", 1);
	stream_begin_section(&w, 1, 0, version);
	virtio_net_ops.save(net, &w);
	stream_end_section(&w);
	stream_flush(&w);
	size_t len;
	const uint8_t *data = stream_mem_data(&w, &len);
	uint8_t *copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, data, len);
	stream_close(&w);
	if (patch_mac) { /* the MAC is the payload's first bytes: fix the CRC after it */
		memcpy(copy + 12 + 16, patch_mac, 6);
		uint32_t crc = (uint32_t)crc32(0, copy + 12, 16 + 10);
		memcpy(copy + 12 + 16 + 10, &crc, 4);
	}
	struct stream_section sec;
	uint32_t v;
	stream_init_mem_reader(&r, copy, len);
	assert_int_equal(stream_read_header(&r, "KVMKITUT", 1, &v), 0);
	assert_int_equal(stream_next_section(&r, &sec), 0);
	int ret = virtio_net_ops.load(net, &r, sec.version);
	stream_close(&r);
	free(copy);
	return ret;
}

/* After a restore: five RARP frames from the NIC's MAC, ever further apart (QEMU's
 * self-announce). A file with another MAC or version is refused. */
static void test_state_and_announce(void **state)
{
	(void)state;
	setup_dev(false, 0, 16, F_MAC | F_STATUS);
	static const uint8_t other[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x57 };
	assert_int_equal(state_round_trip(other, VIRTIO_NET_STATE_VERSION), -EBADMSG);
	assert_int_equal(state_round_trip(NULL, VIRTIO_NET_STATE_VERSION + 1), -EBADMSG);
	assert_int_equal(fb.nsent, 0);
	assert_int_equal(state_round_trip(NULL, VIRTIO_NET_STATE_VERSION), 0);
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	for (int i = 0; i < 5; i++) {
		struct pollfd p = { .fd = timer_fd, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 2000), 1);
		timer_fn(timer_opaque, POLLIN);
		assert_int_equal(fb.nsent, i + 1);
		const uint8_t *f = fb.sent[i];
		assert_int_equal(fb.sent_len[i], 60);
		static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
		static const uint8_t rarp[10] = { 0x80, 0x35, 0, 1, 0x08, 0, 6, 4, 0, 3 };
		assert_memory_equal(f, bcast, 6);
		assert_memory_equal(f + 6, mac, 6);
		assert_memory_equal(f + 12, rarp, 10);
		assert_memory_equal(f + 22, mac, 6);
		assert_memory_equal(f + 32, mac, 6);
	}
	struct pollfd p = { .fd = timer_fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 600), 0); /* no sixth round */
	teardown_dev();
}

/* --- hostfwd rules --- */

static void expect_fwd(const char *spec, bool udp, const char *haddr, int hport,
		       const char *gaddr, int gport)
{
	struct net_hostfwd f;
	const char *why = NULL;
	assert_int_equal(net_hostfwd_parse(spec, &f, &why), 0);
	assert_int_equal(f.udp, udp);
	char a[INET_ADDRSTRLEN];
	assert_string_equal(inet_ntop(AF_INET, &f.host_addr, a, sizeof(a)), haddr);
	assert_int_equal(f.host_port, hport);
	assert_string_equal(inet_ntop(AF_INET, &f.guest_addr, a, sizeof(a)), gaddr);
	assert_int_equal(f.guest_port, gport);
}

static void test_hostfwd_parse(void **state)
{
	(void)state;
	expect_fwd("tcp::2222-:22", false, "0.0.0.0", 2222, "0.0.0.0", 22);
	expect_fwd("udp:127.0.0.1:5353-10.0.2.15:53", true, "127.0.0.1", 5353, "10.0.2.15", 53);
	expect_fwd(":127.0.0.1:8080-:80", false, "127.0.0.1", 8080, "0.0.0.0", 80);
	expect_fwd("tcp::65535-:1", false, "0.0.0.0", 65535, "0.0.0.0", 1);

	static const char *bad[] = {
		"", "tcp", "tcp::2222", "tcp::2222-22", "tcp:2222-:22", "icmp::1-:2", "TCP::1-:2",
		"tcp::0-:22", "tcp::65536-:22", "tcp::22-:0", "tcp::22-:", "tcp::-:22", "tcp::+22-:22",
		"tcp:: 22-:22", "tcp::22-:22x", "tcp::123456-:22", "tcp:1.2.3:22-:22",
		"tcp:localhost:22-:22", "tcp::22-10.0.2.256:22", "tcp:[::1]:22-:22",
		"tcp::22-:22-:23", "tcp:::22-:22",
		"tcp::1-:1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct net_hostfwd f;
		const char *why = NULL;
		if (net_hostfwd_parse(bad[i], &f, &why) == 0)
			fail_msg("'%s' was accepted", bad[i]);
		assert_non_null(why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_features_and_config),
		cmocka_unit_test(test_rx_mergeable),
		cmocka_unit_test(test_rx_single_buffer),
		cmocka_unit_test(test_rx_waits_for_buffers),
		cmocka_unit_test(test_rx_frame_larger_than_ring),
		cmocka_unit_test(test_rx_bad_sizes_and_states),
		cmocka_unit_test(test_rx_vnet_header_rules),
		cmocka_unit_test(test_tx_frames),
		cmocka_unit_test(test_tx_size_limit),
		cmocka_unit_test(test_tx_vnet_header_rules),
		cmocka_unit_test(test_tx_broken_ring),
		cmocka_unit_test(test_tx_budget),
		cmocka_unit_test(test_reset_starts_clean),
		cmocka_unit_test(test_state_and_announce),
		cmocka_unit_test(test_hostfwd_parse),
	};
	return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
