/* virtio_fuzz: a libFuzzer target for the guest-facing request parsers of virtio-blk,
 * virtio-net, virtio-console and virtio-rng: the real device model (virtio.c), split rings
 * (virtqueue.c) and devices, driven as a driver drives them (features, queue layout,
 * DRIVER_OK, doorbells served by an I/O loop), over a fuzzed guest memory: descriptor table,
 * available ring and buffers. A guest that breaks the rules must leave its device in
 * NEEDS_RESET (or be refused), never crash it. The disk is an in-memory stand-in, the network
 * backend takes every frame and offers one, the console has no client.
 * Input: struct virtio_fuzz_head, then chunks {u32 gpa, u16 len, len bytes} written to guest
 * memory (tests/fuzz/virtio_seeds.py makes the seeds from the rings of a real guest's snapshot).
 * Built and run by tests/fuzz/virtio_run.sh. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/log.h"
#include "net/net.h"
#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/device.h"
#include "vmm/iothread.h"
#include "vmm/vm.h"

#define RAM_SIZE (128ULL << 20) /* as the test guests: their ring addresses fit */

struct virtio_fuzz_head {
	uint8_t device;           /* 0 blk, 1 net, 2 console, 3 rng (modulo 4) */
	uint8_t queue;            /* modulo the device's queues */
	uint16_t size;
	uint64_t features;        /* the driver's, masked with the device's */
	uint64_t desc, avail, used;
} __attribute__((packed));

/* Stand-ins for the rest of kvmkit. */
bool log_verbose;
void log_start_clock(void) {}
void log_error(const char *fmt, ...) { (void)fmt; }
void log_warn(const char *fmt, ...) { (void)fmt; }
void log_debug(const char *fmt, ...) { (void)fmt; }

/* The I/O thread: the watched fds, served by fuzz_io_round. */
struct fuzz_watch {
	int fd;
	iothread_fn fn;
	void *opaque;
};
static struct fuzz_watch watches[64];
static int nwatches;
int iothread_add(struct iothread *t, int fd, uint32_t events, iothread_fn fn, void *opaque)
{
	(void)t;
	if (nwatches == 64)
		abort();
	watches[nwatches++] = (struct fuzz_watch){ fd, fn, opaque };
	(void)events;
	return 0;
}
int iothread_remove(struct iothread *t, int fd)
{
	(void)t;
	for (int i = 0; i < nwatches; i++)
		if (watches[i].fd == fd)
			watches[i--] = watches[--nwatches];
	return 0;
}
void iothread_sync(struct iothread *t) { (void)t; }

static void fuzz_io_round(void)
{
	for (int i = 0; i < nwatches; i++) {
		struct pollfd p = { .fd = watches[i].fd, .events = POLLIN };
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN))
			watches[i].fn(watches[i].opaque, EPOLLIN);
	}
}

/* The transport: only the device it carries. */
static struct virtio_device *created;
struct virtio_transport *virtio_transport_create(const struct device_ctx *ctx,
						 struct virtio_device *vdev)
{
	(void)ctx;
	created = vdev;
	return (struct virtio_transport *)vdev;
}
int virtio_transport_register(const struct device_ctx *ctx, struct virtio_transport *t)
{
	(void)ctx, (void)t;
	return 0;
}
void virtio_transport_destroy(struct virtio_transport *t) { (void)t; }

/* A 1 MiB disk in memory; requests complete at the next I/O round. */
struct block_dev {
	uint8_t data[1 << 20];
	int efd;
	struct block_request *done;
};
int block_open(const struct block_options *opts, struct block_dev **out)
{
	(void)opts;
	struct block_dev *bd = calloc(1, sizeof(*bd));
	if (!bd || (bd->efd = eventfd(0, EFD_NONBLOCK)) < 0)
		abort();
	*out = bd;
	return 0;
}
void block_close(struct block_dev *bd) { close(bd->efd); free(bd); }
uint64_t block_size(const struct block_dev *bd) { return sizeof(bd->data); }
bool block_readonly(const struct block_dev *bd) { (void)bd; return false; }
const char *block_engine_name(const struct block_dev *bd) { (void)bd; return "fuzz"; }
void block_plug(struct block_dev *bd) { (void)bd; }
void block_unplug(struct block_dev *bd) { (void)bd; }
int block_completion_fd(const struct block_dev *bd) { return bd->efd; }
int block_submit(struct block_dev *bd, struct block_request *req)
{
	uint64_t len = req->len;
	if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) {
		len = 0;
		for (int i = 0; i < req->iovcnt; i++)
			len += req->iov[i].iov_len;
	}
	int r = 0;
	if (req->offset > sizeof(bd->data) || len > sizeof(bd->data) - req->offset) {
		r = -EINVAL;
	} else if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) {
		uint8_t *p = bd->data + req->offset;
		for (int i = 0; i < req->iovcnt; p += req->iov[i].iov_len, i++)
			if (req->op == BLOCK_OP_READ)
				memcpy(req->iov[i].iov_base, p, req->iov[i].iov_len);
			else
				memcpy(p, req->iov[i].iov_base, req->iov[i].iov_len);
	} else if (req->op == BLOCK_OP_WRITE_ZEROES || req->op == BLOCK_OP_DISCARD) {
		memset(bd->data + req->offset, 0, len);
	}
	req->result = r;
	req->next_done = bd->done;
	bd->done = req;
	uint64_t one = 1;
	if (write(bd->efd, &one, sizeof(one)) != sizeof(one))
		abort();
	return 0;
}
void block_process_completions(struct block_dev *bd)
{
	uint64_t n;
	if (read(bd->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		abort();
	while (bd->done) {
		struct block_request *req = bd->done;
		bd->done = req->next_done;
		req->done(req, req->result);
	}
}

/* A network backend that takes every frame; the target offers it one after the doorbells. */
static net_receive_fn net_receive;
static void *net_opaque;
static int be_start(struct net_backend *be, net_receive_fn fn, void *opaque)
{
	(void)be;
	net_receive = fn;
	net_opaque = opaque;
	return 0;
}
static int be_send(struct net_backend *be, const struct iovec *iov, unsigned cnt)
{
	(void)be, (void)iov, (void)cnt;
	return 0;
}
static void be_resume(struct net_backend *be) { (void)be; }
static void be_destroy(struct net_backend *be) { (void)be; }
static const struct net_backend_ops be_ops = {
	.start = be_start, .send = be_send, .resume = be_resume, .destroy = be_destroy,
};
static struct net_backend backend = { .ops = &be_ops, .kind = "fuzz" };
struct net_backend *net_backend_open(struct iothread *io, const struct vm_nic *nic)
{
	(void)io, (void)nic;
	return &backend;
}

static struct guest_mem mem;
static struct virtio_device *devices[4];

static void fuzz_setup(void)
{
	void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		abort();
	mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = RAM_SIZE, .host = ram };
	mem.nregions = 1;
	mem.ram_size = mem.mapping_size = RAM_SIZE;
	mem.mapping = ram;
	/* The devices are realized straight from their ops (no registry: nothing is saved). */
	static const struct device_ctx ctx = { .mem = &mem };
	static const struct vm_disk disk = { .block = { .path = "fuzz" }, .serial = "fuzz-serial" };
	static const struct vm_nic nic = { .backend = VM_NIC_USER };
	static char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/kvmkit-virtio-fuzz-%d.sock", (int)getpid());
	const struct vm_vconsole con = { .path = sock, .name = "fuzz" };
	const struct device_ops *ops[] = { &virtio_blk_ops, &virtio_net_ops, &virtio_console_ops,
					   &virtio_rng_ops };
	const void *args[] = { &disk, &nic, &con, NULL };
	for (int i = 0; i < 4; i++) {
		created = NULL;
		if (!ops[i]->realize(&ctx, args[i]) || !(devices[i] = created))
			abort();
	}
	unlink(sock);
}

/* One frame from the network: an ARP request for the guest. */
static void fuzz_offer_frame(void)
{
	uint8_t frame[NET_VNET_HDR_LEN + 42] = { 0 };
	memset(frame + NET_VNET_HDR_LEN, 0xff, 6);
	frame[NET_VNET_HDR_LEN + 12] = 0x08, frame[NET_VNET_HDR_LEN + 13] = 0x06;
	struct iovec iov = { frame + NET_VNET_HDR_LEN, sizeof(frame) - NET_VNET_HDR_LEN };
	if (net_receive)
		net_receive(net_opaque, &iov, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devices[0])
		fuzz_setup();
	struct virtio_fuzz_head h;
	if (size < sizeof(h))
		return 0;
	memcpy(&h, data, sizeof(h));
	struct virtio_device *d = devices[h.device % 4];
	uint16_t q = h.queue % d->ops->num_queues;
	for (size_t off = sizeof(h); size - off >= 6;) {
		uint32_t gpa;
		uint16_t len;
		memcpy(&gpa, data + off, 4);
		memcpy(&len, data + off + 4, 2);
		off += 6;
		len = size - off < len ? (uint16_t)(size - off) : len;
		uint8_t *p = guest_mem_ptr(&mem, gpa, len);
		if (p)
			memcpy(p, data + off, len);
		off += len;
	}
	/* The driver's set-up, as virtio-pci's registers would make it. */
	pthread_mutex_lock(&d->lock);
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	d->driver_features = h.features & d->device_features;
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			     VIRTIO_STATUS_FEATURES_OK);
	struct virtio_queue *vq = &d->queues[q];
	vq->size = h.size;
	vq->desc = h.desc, vq->driver = h.avail, vq->device = h.used;
	if (h.size && h.size <= d->ops->queue_size)
		virtio_queue_enable(d, q);
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&d->lock);
	/* The doorbell rings twice (the second finds what the first left), the I/O loop serves. */
	for (int round = 0; round < 2; round++) {
		uint64_t one = 1;
		if (vq->enabled && write(vq->notify_fd, &one, sizeof(one)) != sizeof(one))
			abort();
		fuzz_io_round();
		if (h.device % 4 == 1)
			fuzz_offer_frame();
		fuzz_io_round();
	}
	/* A queue the guest broke must show in the device status. */
	if (vq->vq.broken && !(virtio_get_status(d) & VIRTIO_STATUS_NEEDS_RESET))
		abort();
	pthread_mutex_lock(&d->lock);
	virtio_set_status(d, 0);
	pthread_mutex_unlock(&d->lock);
	fuzz_io_round();
	madvise(mem.mapping, RAM_SIZE, MADV_DONTNEED); /* the next input starts from zeroes */
	return 0;
}
