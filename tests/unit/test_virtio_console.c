/* Unit tests of virtio-console (src/virtio/virtio_console.c) as a driver and a socket client see
 * it: the device runs on the real device model, virtqueues, guest memory and I/O thread; the
 * test plays the transport (a stand-in that counts interrupts), the guest's driver (rings in
 * guest RAM, doorbells through the queues' eventfds) and the client on the unix socket. Covers
 * the control protocol, data both ways, flow control both ways, one client at a time, reset,
 * a hostile driver, and the socket file's life. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

#define RAM_SIZE (16ULL << 20)
#define QSIZE 16
#define RINGS_GPA 0x10000ULL  /* queue q's rings in the page at RINGS_GPA + q * 0x1000 */
#define HEAP_GPA 0x100000ULL  /* buffers */
#define FAR_GPA (1ULL << 40)  /* not RAM */
#define NAME "org.kvmkit.test.0"
#define WAIT_MS 5000          /* for what must happen */
#define QUIET_MS 100          /* for what must not */

enum { Q_RX, Q_TX, Q_CTRL_RX, Q_CTRL_TX, NQ };
enum { DEVICE_READY = 0, DEVICE_ADD = 1, PORT_READY = 3, PORT_OPEN = 6, PORT_NAME = 7 };
#define F_MULTIPORT (1ULL << 1)

/* --- The stand-in transport: remembers the device and counts its interrupts --- */

struct virtio_transport {
	struct virtio_device *vdev;
};
static struct virtio_transport transport;
static atomic_uint interrupts;

static void fake_raise(struct virtio_device *d, uint16_t vector)
{
	(void)d, (void)vector;
	atomic_fetch_add(&interrupts, 1);
}

struct virtio_transport *virtio_transport_create(const struct device_ctx *ctx,
						 struct virtio_device *vdev)
{
	(void)ctx;
	transport.vdev = vdev;
	vdev->raise = fake_raise;
	return &transport;
}

int virtio_transport_register(const struct device_ctx *ctx, struct virtio_transport *t)
{
	(void)ctx, (void)t;
	return 0;
}

void virtio_transport_destroy(struct virtio_transport *t)
{
	t->vdev = NULL;
}

/* --- The guest's driver --- */

struct drvq {
	uint16_t avail;     /* avail->idx as last published */
	uint16_t used_seen; /* used entries consumed */
};

/* What the machine gives the device: memory and an I/O thread. */
static struct {
	struct guest_mem mem;
	struct iothread *io;
	struct device_ctx ctx;
} vm;
static struct virtio_console *con;
static struct virtio_device *dev;
static struct drvq dq[NQ];
static uint64_t heap;
static char dir[64], path[96];

static uint64_t desc_gpa(int q) { return RINGS_GPA + 0x1000ULL * q; }
static uint64_t avail_gpa(int q) { return desc_gpa(q) + 0x100; }
static uint64_t used_gpa(int q) { return desc_gpa(q) + 0x200; }

static void w16(uint64_t gpa, uint16_t v) { assert_int_equal(guest_mem_write(&vm.mem, gpa, &v, 2), 0); }

static uint64_t alloc(uint64_t len)
{
	uint64_t gpa = heap;
	heap += (len + 15) & ~15ULL;
	assert_true(heap < RAM_SIZE);
	return gpa;
}

/* One descriptor per buffer, in the slot of its avail entry (a queue never has QSIZE out). */
static void give(int q, uint64_t addr, uint32_t len, bool writable)
{
	uint16_t slot = dq[q].avail % QSIZE;
	struct virtq_desc_raw d = { .addr = addr, .len = len,
				    .flags = writable ? VIRTQ_DESC_F_WRITE : 0 };
	assert_int_equal(guest_mem_write(&vm.mem, desc_gpa(q) + 16ULL * slot, &d, sizeof(d)), 0);
	w16(avail_gpa(q) + 4 + 2ULL * slot, slot);
	atomic_thread_fence(memory_order_release); /* entry before index */
	w16(avail_gpa(q) + 2, ++dq[q].avail);
}

static void kick(int q)
{
	uint64_t one = 1;
	assert_int_equal(write(dev->queues[q].notify_fd, &one, 8), 8);
}

static uint64_t give_in(int q, uint32_t len)
{
	uint64_t gpa = alloc(len);
	give(q, gpa, len, true);
	return gpa;
}

static void give_out(int q, const void *data, uint32_t len)
{
	uint64_t gpa = alloc(len);
	assert_int_equal(guest_mem_write(&vm.mem, gpa, data, len), 0);
	give(q, gpa, len, false);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to ms for the next used entry of q; fills the buffer's address and length. */
static bool next_used(int q, long ms, uint64_t *addr, uint32_t *len)
{
	long end = now_ms() + ms;
	uint16_t idx;
	for (;;) {
		assert_int_equal(guest_mem_read(&vm.mem, used_gpa(q) + 2, &idx, 2), 0);
		if (idx != dq[q].used_seen)
			break;
		if (now_ms() >= end)
			return false;
		usleep(1000);
	}
	atomic_thread_fence(memory_order_acquire);
	uint32_t elem[2];
	uint64_t slot = dq[q].used_seen++ % QSIZE;
	assert_int_equal(guest_mem_read(&vm.mem, used_gpa(q) + 4 + 8 * slot, elem, 8), 0);
	assert_true(elem[0] < QSIZE);
	struct virtq_desc_raw d;
	assert_int_equal(guest_mem_read(&vm.mem, desc_gpa(q) + 16ULL * elem[0], &d, sizeof(d)), 0);
	if (addr)
		*addr = d.addr;
	if (len)
		*len = elem[1];
	return true;
}

static void expect_used(int q, uint64_t *addr, uint32_t *len)
{
	assert_true(next_used(q, WAIT_MS, addr, len));
}

static void expect_no_used(int q)
{
	assert_false(next_used(q, QUIET_MS, NULL, NULL));
}

/* Sends one control message and waits for the device to take it. */
static void ctrl_out(uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8];
	memcpy(m, &id, 4);
	memcpy(m + 4, &event, 2);
	memcpy(m + 6, &value, 2);
	give_out(Q_CTRL_TX, m, sizeof(m));
	kick(Q_CTRL_TX);
	uint32_t len;
	expect_used(Q_CTRL_TX, NULL, &len);
	assert_int_equal(len, 0);
}

/* Waits for the next control message from the device and checks it. */
static void ctrl_expect(uint16_t event, uint16_t value, const char *payload)
{
	uint64_t gpa;
	uint32_t len;
	expect_used(Q_CTRL_RX, &gpa, &len);
	size_t want = 8 + (payload ? strlen(payload) : 0);
	assert_int_equal(len, want);
	uint8_t m[64];
	assert_int_equal(guest_mem_read(&vm.mem, gpa, m, len), 0);
	uint32_t id;
	uint16_t ev, val;
	memcpy(&id, m, 4);
	memcpy(&ev, m + 4, 2);
	memcpy(&val, m + 6, 2);
	assert_int_equal(id, 0);
	assert_int_equal(ev, event);
	if (event == PORT_OPEN)
		assert_int_equal(val, value);
	if (payload)
		assert_memory_equal(m + 8, payload, strlen(payload));
}

static void ctrl_expect_none(void)
{
	expect_no_used(Q_CTRL_RX);
}

/* The driver's set-up up to DRIVER_OK, as the transport would run it on a vCPU thread. */
static void drv_start(void)
{
	memset(dq, 0, sizeof(dq));
	for (int q = 0; q < NQ; q++) /* the driver zeroes its rings */
		for (uint64_t off = 0; off < 0x1000; off += 2)
			w16(desc_gpa(q) + off, 0);
	pthread_mutex_lock(&dev->lock);
	virtio_set_status(dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	dev->driver_features = (1ULL << VIRTIO_F_VERSION_1) | F_MULTIPORT;
	uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	virtio_set_status(dev, st);
	assert_true(virtio_get_status(dev) & VIRTIO_STATUS_FEATURES_OK);
	for (int q = 0; q < NQ; q++) {
		dev->queues[q].size = QSIZE;
		dev->queues[q].desc = desc_gpa(q);
		dev->queues[q].driver = avail_gpa(q);
		dev->queues[q].device = used_gpa(q);
		virtio_queue_enable(dev, (uint16_t)q);
		assert_true(dev->queues[q].enabled);
	}
	virtio_set_status(dev, st | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&dev->lock);
}

static void drv_reset(void)
{
	pthread_mutex_lock(&dev->lock);
	virtio_set_status(dev, 0);
	pthread_mutex_unlock(&dev->lock);
}

/* What Linux's probe does: control buffers, DEVICE_READY; then the port's buffers and
 * PORT_READY once the device added it. Leaves PORT_NAME and PORT_OPEN(host_open) checked. */
static void drv_handshake(bool host_open)
{
	for (int i = 0; i < 6; i++)
		give_in(Q_CTRL_RX, 256);
	kick(Q_CTRL_RX);
	ctrl_out(0xffffffff, DEVICE_READY, 1);
	ctrl_expect(DEVICE_ADD, 1, NULL);
	ctrl_out(0, PORT_READY, 1);
	ctrl_expect(PORT_NAME, 1, NAME);
	ctrl_expect(PORT_OPEN, host_open, NULL);
}

static bool dev_broken(void)
{
	return atomic_load(&dev->needs_reset);
}

/* --- The client --- */

static int client_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void client_send(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Reads exactly len bytes (fails on timeout or end of file). */
static void client_recv(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
}

static bool client_quiet(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, QUIET_MS) == 0;
}

/* Connects once the port is set up; the driver hears the host end open. */
static int client_connect_open(void)
{
	int fd = client_connect();
	ctrl_expect(PORT_OPEN, 1, NULL);
	return fd;
}

/* Reads whatever the device sent until the socket stays quiet. */
static void client_drain(int fd)
{
	static uint8_t sink[64 << 10];
	while (!client_quiet(fd))
		assert_true(read(fd, sink, sizeof(sink)) > 0);
}

/* --- Fixture: a fresh device on a fresh socket path --- */

static struct virtio_console *make(void)
{
	const struct vm_vconsole c = { .path = path, .name = NAME };
	return virtio_console_ops.realize(&vm.ctx, &c);
}

static int setup(void **state)
{
	(void)state;
	if (guest_mem_init(&vm.mem, RAM_SIZE) < 0 || !(vm.io = iothread_create()))
		return -1;
	vm.ctx = (struct device_ctx){ .mem = &vm.mem, .io = vm.io };
	heap = HEAP_GPA;
	strcpy(dir, "/tmp/kvmkit-vcon-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/port.sock", dir);
	con = make();
	dev = transport.vdev;
	return con && dev ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (con) /* a test may have destroyed it */
		virtio_console_ops.destroy(con);
	con = NULL;
	iothread_destroy(vm.io);
	guest_mem_destroy(&vm.mem);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* --- Tests --- */

static void test_config(void **state)
{
	(void)state;
	assert_int_equal(dev->ops->device_id, VIRTIO_ID_CONSOLE);
	assert_int_equal(dev->ops->num_queues, 4);
	assert_true(dev->device_features & F_MULTIPORT);
	uint8_t c[12];
	dev->ops->config_read(dev, 0, c, sizeof(c));
	uint32_t ports;
	memcpy(&ports, c + 4, 4);
	assert_int_equal(ports, 1);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
}

/* DEVICE_READY -> DEVICE_ADD; PORT_READY -> PORT_NAME, PORT_OPEN; the host end's PORT_OPEN
 * follows clients coming and going. */
static void test_handshake(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	ctrl_expect_none();
	int fd = client_connect();
	ctrl_expect(PORT_OPEN, 1, NULL);
	close(fd);
	ctrl_expect(PORT_OPEN, 0, NULL);
	/* Nothing for ports that do not exist, nor for events the device does not take. */
	ctrl_out(5, PORT_READY, 1);
	ctrl_out(0, 5 /* RESIZE */, 0);
	ctrl_expect_none();
	assert_false(dev_broken());
}

/* Control messages wait for control buffers instead of being lost. */
static void test_control_waits_for_buffers(void **state)
{
	(void)state;
	drv_start();
	ctrl_out(0xffffffff, DEVICE_READY, 1);
	ctrl_expect_none();
	give_in(Q_CTRL_RX, 256);
	kick(Q_CTRL_RX);
	ctrl_expect(DEVICE_ADD, 1, NULL);
	ctrl_out(0, PORT_READY, 1);
	give_in(Q_CTRL_RX, 256);
	kick(Q_CTRL_RX);
	ctrl_expect(PORT_NAME, 1, NAME);
	ctrl_expect_none(); /* PORT_OPEN still owed */
	give_in(Q_CTRL_RX, 256);
	kick(Q_CTRL_RX);
	ctrl_expect(PORT_OPEN, 0, NULL);
}

static void test_data_both_ways(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	int fd = client_connect_open();
	ctrl_out(0, PORT_OPEN, 1);
	uint64_t gpa = give_in(Q_RX, 64);
	kick(Q_RX);
	client_send(fd, "ping\n");
	uint32_t len;
	uint64_t at;
	expect_used(Q_RX, &at, &len);
	assert_int_equal(at, gpa);
	assert_int_equal(len, 5);
	char buf[8];
	assert_int_equal(guest_mem_read(&vm.mem, gpa, buf, 5), 0);
	assert_memory_equal(buf, "ping\n", 5);

	give_out(Q_TX, "pong\n", 5);
	kick(Q_TX);
	expect_used(Q_TX, NULL, &len);
	assert_int_equal(len, 0);
	client_recv(fd, buf, 5);
	assert_memory_equal(buf, "pong\n", 5);
	close(fd);
	assert_true(interrupts > 0);
}

/* Socket bytes wait in the socket while the guest has no buffer or the port closed. */
static void test_rx_flow_control(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	int fd = client_connect_open();
	client_send(fd, "early");
	give_in(Q_RX, 64);
	kick(Q_RX);
	expect_no_used(Q_RX); /* the guest has not opened the port */
	ctrl_out(0, PORT_OPEN, 1);
	uint64_t gpa;
	uint32_t len;
	expect_used(Q_RX, &gpa, &len);
	assert_int_equal(len, 5);

	client_send(fd, "abc");
	expect_no_used(Q_RX); /* no buffer */
	gpa = give_in(Q_RX, 2);
	kick(Q_RX);
	expect_used(Q_RX, NULL, &len);
	assert_int_equal(len, 2);
	char b[4];
	assert_int_equal(guest_mem_read(&vm.mem, gpa, b, 2), 0);
	assert_memory_equal(b, "ab", 2);
	gpa = give_in(Q_RX, 64);
	kick(Q_RX);
	expect_used(Q_RX, NULL, &len);
	assert_int_equal(len, 1);

	ctrl_out(0, PORT_OPEN, 0); /* the guest closes its end: bytes wait for it */
	client_send(fd, "xyz");
	give_in(Q_RX, 64);
	kick(Q_RX);
	expect_no_used(Q_RX);
	ctrl_out(0, PORT_OPEN, 1);
	expect_used(Q_RX, NULL, &len);
	assert_int_equal(len, 3);
	close(fd);
}

/* A client that does not read: the device keeps the rest of a buffer and takes no more until
 * the socket is writable again; everything arrives in order. */
static void test_tx_backpressure(void **state)
{
	(void)state;
	enum { CHUNK = 256 << 10, CHUNKS = 8 };
	drv_start();
	drv_handshake(false);
	int fd = client_connect_open();
	static uint8_t data[CHUNK];
	for (int i = 0; i < CHUNKS; i++) {
		for (size_t j = 0; j < CHUNK; j++)
			data[j] = (uint8_t)(i * 31 + j % 251);
		give_out(Q_TX, data, CHUNK);
	}
	kick(Q_TX);
	/* 2 MiB do not fit in a unix socket's buffers: some buffers stay with the device. */
	int done = 0;
	while (next_used(Q_TX, QUIET_MS, NULL, NULL))
		done++;
	assert_true(done < CHUNKS);
	static uint8_t got[CHUNK];
	for (int i = 0; i < CHUNKS; i++) {
		client_recv(fd, got, CHUNK);
		for (size_t j = 0; j < CHUNK; j++)
			if (got[j] != (uint8_t)(i * 31 + j % 251))
				fail_msg("chunk %d byte %zu: %u", i, j, got[j]);
	}
	for (; done < CHUNKS; done++)
		expect_used(Q_TX, NULL, NULL);
	close(fd);
}

/* Without a client the guest's bytes are dropped, not kept for the next client. */
static void test_no_client_drops(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	give_out(Q_TX, "lost\n", 5);
	kick(Q_TX);
	expect_used(Q_TX, NULL, NULL);
	int fd = client_connect_open();
	assert_true(client_quiet(fd));
	close(fd);
}

/* A second client is turned away; after the first left, the next one is served. */
static void test_one_client_at_a_time(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	int a = client_connect_open();
	int b = client_connect();
	char c;
	assert_int_equal(read(b, &c, 1), 0); /* closed by the device */
	close(b);
	give_out(Q_TX, "A", 1);
	kick(Q_TX);
	client_recv(a, &c, 1);
	assert_int_equal(c, 'A');
	close(a);
	ctrl_expect(PORT_OPEN, 0, NULL);
	int d = client_connect_open();
	give_out(Q_TX, "D", 1);
	kick(Q_TX);
	client_recv(d, &c, 1);
	assert_int_equal(c, 'D');
	close(d);
}

/* A client that shut down its sending side still gets the guest's bytes. */
static void test_half_close(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	int fd = client_connect_open();
	ctrl_out(0, PORT_OPEN, 1);
	client_send(fd, "bye");
	shutdown(fd, SHUT_WR);
	give_in(Q_RX, 64);
	kick(Q_RX);
	uint32_t len;
	expect_used(Q_RX, NULL, &len);
	assert_int_equal(len, 3);
	give_out(Q_TX, "ok", 2);
	kick(Q_TX);
	char b[2];
	client_recv(fd, b, 2);
	assert_memory_equal(b, "ok", 2);
	ctrl_expect_none(); /* still connected */
	close(fd);
	ctrl_expect(PORT_OPEN, 0, NULL);
}

/* A reset with a transmit buffer half written: the driver starts over, the client stays. */
static void test_reset(void **state)
{
	(void)state;
	drv_start();
	drv_handshake(false);
	int fd = client_connect_open();
	static uint8_t big[1 << 20];
	give_out(Q_TX, big, sizeof(big));
	kick(Q_TX);
	expect_no_used(Q_TX); /* the socket is full */
	drv_reset();
	drv_start();
	drv_handshake(true); /* the client is still there */
	client_drain(fd); /* what went out of the big buffer before the reset */
	give_out(Q_TX, "x", 1);
	kick(Q_TX);
	expect_used(Q_TX, NULL, NULL);
	char c;
	client_recv(fd, &c, 1);
	assert_int_equal(c, 'x');
	assert_false(dev_broken());
	close(fd);
}

/* A driver breaking the rules gets NEEDS_RESET, and a reset brings the device back. */
static void test_hostile_driver(void **state)
{
	(void)state;
	drv_start();
	give(Q_CTRL_TX, FAR_GPA, 8, false);
	kick(Q_CTRL_TX);
	long end = now_ms() + WAIT_MS;
	while (!dev_broken() && now_ms() < end)
		usleep(1000);
	assert_true(dev_broken());
	drv_reset();
	assert_false(dev_broken());

	drv_start();
	give_out(Q_CTRL_TX, "shrt", 4); /* too short for a message: ignored */
	kick(Q_CTRL_TX);
	expect_used(Q_CTRL_TX, NULL, NULL);
	drv_handshake(false);
	int fd = client_connect_open();
	ctrl_out(0, PORT_OPEN, 1);
	give_out(Q_RX, "ro", 2); /* a receive buffer the device cannot write */
	kick(Q_RX);
	end = now_ms() + WAIT_MS;
	while (!dev_broken() && now_ms() < end)
		usleep(1000);
	assert_true(dev_broken());
	/* The client may go on talking: nothing reaches the broken queues. */
	client_send(fd, "more");
	give_in(Q_RX, 64);
	kick(Q_RX);
	expect_no_used(Q_RX);
	close(fd);
}

/* The socket file: a stale one is replaced, a live one or another file is an error, and the
 * device removes its own at exit. */
static void test_socket_file(void **state)
{
	(void)state;
	virtio_console_ops.destroy(con);
	con = NULL;
	assert_int_equal(access(path, F_OK), -1);

	/* A stale socket: bound, nobody listening. */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, path);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	close(s);
	con = make();
	assert_non_null(con);
	/* A second device on the same path finds it live. */
	assert_null(make());
	virtio_console_ops.destroy(con);
	con = NULL;

	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_null(make());
	assert_int_equal(access(path, F_OK), 0); /* not removed */
	unlink(path);

	const struct vm_vconsole bad = { .path = path, .name = "" };
	assert_null(virtio_console_ops.realize(&vm.ctx, &bad));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
		cmocka_unit_test_setup_teardown(test_control_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_flow_control, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_client_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_client_at_a_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_driver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
