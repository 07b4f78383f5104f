/* virtio-console (virtio 1.x 5.3) with one named port for a guest agent channel: MULTIPORT's
 * control protocol names the port, and its bytes travel over a unix stream socket kvmkit
 * listens on, one client at a time. Everything runs on the I/O thread and never blocks it:
 * the socket is read only into receive buffers the guest gave, and a transmit buffer the
 * socket cannot take yet waits (with the ones behind it) until the socket is writable.
 *
 * Snapshots and migration: the core saves the queues; the device adds its MULTIPORT control
 * state (port announced, ready, opened by the guest, messages owed) and how much of the next
 * transmit buffer the socket already took. Stopping for a save gives the buffers a handler
 * holds back to the ring, so that the saved indices and the restarted device agree. The
 * socket's client is the host's and is not migrated: a restored VM listens again, and the
 * guest is told the host end is closed (PORT_OPEN 0, host_connected false) until a client
 * connects. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/iov.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

/* Linux fills every queue with page-sized buffers: 64 of them is 256 KiB of guest RAM each. */
#define CON_QUEUE_SIZE 64
/* Buffers one doorbell or socket event handles before the rest waits for another round (the
 * queue's doorbell is rung again), so a busy port cannot keep the I/O thread from the others. */
#define CON_BUDGET CON_QUEUE_SIZE
/* PORT_NAME travels in one control buffer (a page in Linux) after the 8-byte header. */
#define CON_NAME_MAX 255

#define VIRTIO_CONSOLE_F_MULTIPORT 1

/* Queues with max_nr_ports = 1: port 0's pair, then the control pair (5.3.2). */
enum { Q_RX, Q_TX, Q_CTRL_RX, Q_CTRL_TX, CON_NUM_QUEUES };

/* struct virtio_console_control {le32 id; le16 event; le16 value} and its events (5.3.6.2) */
#define CTRL_SIZE 8
#define VIRTIO_CONSOLE_DEVICE_READY 0
#define VIRTIO_CONSOLE_DEVICE_ADD   1
#define VIRTIO_CONSOLE_PORT_READY   3
#define VIRTIO_CONSOLE_PORT_OPEN    6
#define VIRTIO_CONSOLE_PORT_NAME    7

/* struct virtio_console_config: cols, rows (without F_SIZE: 0), max_nr_ports, emerg_wr */
#define CFG_MAX_NR_PORTS 4
#define CFG_SIZE 12

struct virtio_console {
	struct virtio_device vdev;
	struct virtio_transport *transport;
	struct iothread *io;
	char *path;
	char *name;
	size_t name_len;
	int listen_fd;
	dev_t sock_dev;             /* the socket file we made: removed at exit only if still ours */
	ino_t sock_ino;
	uint8_t config[CFG_SIZE];

	/* Everything below: the I/O thread's handlers against start/stop on a vCPU thread. */
	pthread_mutex_t lock;
	int client_fd;              /* -1 while no client is connected */
	bool client_eof;            /* it shut down its sending side: nothing more to read */
	/* Control protocol, forgotten at reset. */
	bool port_added;            /* DEVICE_ADD went out */
	bool port_ready;            /* the driver set the port up (PORT_READY 1) */
	bool guest_open;            /* a guest program has the port open */
	/* Control messages owed to the driver, sent in this order as control buffers come. Flags,
	 * not a queue: a driver repeating itself cannot make the device hoard messages. */
	bool send_add, send_name, send_open;
	/* A receive buffer popped and waiting for socket bytes, and a transmit buffer part of
	 * which the socket has not taken yet (tx_seg: its first segment not fully written). */
	bool rx_held, tx_held;
	uint32_t tx_seg;
	uint32_t tx_skip;           /* bytes of the next transmit buffer sent before a snapshot */
	bool hold;                  /* start and stop are a snapshot's: keep the driver's state */
	struct virtq_elem rx, tx, ctl;
};

static bool con_live(struct virtio_console *con)
{
	return atomic_load(&con->vdev.running) && !atomic_load(&con->vdev.needs_reset);
}

/* Leaves the rest of queue q's work to another round of the I/O thread's loop. */
static void kick_later(struct virtio_console *con, uint16_t q)
{
	virtio_queue_kick_later(&con->vdev, q);
}

/* The client is gone (or broke): stop watching it; the driver hears the port closed. */
static void client_drop(struct virtio_console *con)
{
	iothread_remove(con->io, con->client_fd);
	close(con->client_fd);
	con->client_fd = -1;
	con->client_eof = false;
	if (con->port_ready)
		con->send_open = true;
	log_debug("virtio-console: client of %s left", con->path);
}

/* Sends the control messages owed while the driver has control buffers for them. */
static void ctrl_send(struct virtio_console *con)
{
	struct virtio_device *d = &con->vdev;
	struct virtqueue *vq = &d->queues[Q_CTRL_RX].vq;
	bool pushed = false;
	while (con_live(con) && (con->send_add || con->send_name || con->send_open)) {
		int r = virtq_pop(vq, &con->ctl);
		if (r < 0)
			virtio_queue_error(d, Q_CTRL_RX, r);
		if (r <= 0)
			break;
		uint8_t msg[CTRL_SIZE + CON_NAME_MAX];
		size_t len = CTRL_SIZE;
		uint16_t event, value = 1;
		if (con->send_add) {
			con->send_add = false;
			con->port_added = true;
			event = VIRTIO_CONSOLE_DEVICE_ADD;
		} else if (con->send_name) {
			con->send_name = false;
			event = VIRTIO_CONSOLE_PORT_NAME;
			memcpy(msg + CTRL_SIZE, con->name, con->name_len); /* no NUL (5.3.6.2) */
			len += con->name_len;
		} else {
			con->send_open = false;
			event = VIRTIO_CONSOLE_PORT_OPEN;
			value = con->client_fd >= 0; /* the host end is open while a client is there */
		}
		le_put(msg, 4, 0); /* port 0 */
		le_put(msg + 4, 2, event);
		le_put(msg + 6, 2, value);
		uint32_t written = 0;
		if (con->ctl.in_len >= len)
			written = (uint32_t)iov_from_buf(&con->ctl.iov[con->ctl.out_num], con->ctl.in_num,
							 0, msg, len);
		else /* lost: Linux's buffers are pages, this is not a driver worth more effort */
			log_debug("virtio-console: control buffer too small for event %u", event);
		virtq_push(vq, con->ctl.head, written);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(d, Q_CTRL_RX);
}

/* One message from the driver. Events for other ports, or that make no sense now, are
 * ignored: only the driver's own port 0 exists. */
static void ctrl_handle(struct virtio_console *con, uint32_t id, uint16_t event, uint16_t value)
{
	switch (event) {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if (value == 1) /* 0: the driver failed to set up */
			con->send_add = true;
		break;
	case VIRTIO_CONSOLE_PORT_READY:
		if (id != 0 || !con->port_added)
			break;
		con->port_ready = value == 1; /* 0: adding the port failed in the guest */
		if (con->port_ready)
			con->send_name = con->send_open = true;
		break;
	case VIRTIO_CONSOLE_PORT_OPEN:
		if (id == 0 && con->port_ready)
			con->guest_open = value != 0;
		break;
	default:
		log_debug("virtio-console: control event %u for port %u ignored", event, id);
	}
}

static void ctrl_receive(struct virtio_console *con)
{
	struct virtio_device *d = &con->vdev;
	struct virtqueue *vq = &d->queues[Q_CTRL_TX].vq;
	bool pushed = false;
	for (unsigned n = 0; con_live(con); n++) {
		if (n == CON_BUDGET) {
			kick_later(con, Q_CTRL_TX);
			break;
		}
		int r = virtq_pop(vq, &con->ctl);
		if (r < 0)
			virtio_queue_error(d, Q_CTRL_TX, r);
		if (r <= 0)
			break;
		uint8_t msg[CTRL_SIZE];
		if (iov_to_buf(con->ctl.iov, con->ctl.out_num, 0, msg, sizeof(msg)) == sizeof(msg))
			ctrl_handle(con, (uint32_t)le_get(msg, 4), (uint16_t)le_get(msg + 4, 2),
				    (uint16_t)le_get(msg + 6, 2));
		virtq_push(vq, con->ctl.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(d, Q_CTRL_TX);
}

/* Socket to guest, only into buffers the guest gave for a port it has open (as Linux discards
 * bytes for a closed port); without buffers the socket is left alone until the next doorbell,
 * and the client's writes back up in its socket. */
static void rx_pump(struct virtio_console *con)
{
	struct virtio_device *d = &con->vdev;
	struct virtqueue *vq = &d->queues[Q_RX].vq;
	bool pushed = false;
	unsigned n = 0;
	while (con_live(con) && con->client_fd >= 0 && !con->client_eof && con->guest_open) {
		if (!con->rx_held) {
			if (n++ == CON_BUDGET) {
				kick_later(con, Q_RX);
				break;
			}
			int r = virtq_pop(vq, &con->rx);
			if (r < 0)
				virtio_queue_error(d, Q_RX, r);
			if (r <= 0)
				break;
			if (con->rx.in_len == 0) { /* would read as the client's end of file */
				virtio_device_broken(d, "a receive buffer without writable space");
				break;
			}
			con->rx_held = true;
		}
		ssize_t got = readv(con->client_fd, &con->rx.iov[con->rx.out_num], (int)con->rx.in_num);
		if (got > 0) {
			/* A socket read is far below 4 GiB, whatever the buffer's size. */
			virtq_push(vq, con->rx.head, (uint32_t)got);
			con->rx_held = false;
			pushed = true;
		} else if (got == 0) {
			con->client_eof = true; /* it may still read what the guest sends */
		} else if (errno != EINTR) {
			if (errno != EAGAIN)
				client_drop(con);
			break; /* the held buffer waits for the socket to become readable */
		}
	}
	if (pushed)
		virtio_queue_interrupt(d, Q_RX);
}

/* Writes what the socket takes of the held transmit buffer. Returns true when it is done
 * (all written, or the client failed and the rest is dropped), false if the socket is full. */
static bool tx_write(struct virtio_console *con)
{
	struct virtq_elem *e = &con->tx;
	while (con->tx_seg < e->out_num) {
		if (e->iov[con->tx_seg].iov_len == 0) {
			con->tx_seg++;
			continue;
		}
		struct msghdr mh = { .msg_iov = &e->iov[con->tx_seg],
				     .msg_iovlen = e->out_num - con->tx_seg };
		ssize_t n = sendmsg(con->client_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return false;
			client_drop(con);
			return true;
		}
		/* Partial write: skip what went out; the rest stays for the next try. */
		size_t left = (size_t)n;
		while (left > 0 && left >= e->iov[con->tx_seg].iov_len)
			left -= e->iov[con->tx_seg++].iov_len;
		if (left > 0) {
			e->iov[con->tx_seg].iov_base = (uint8_t *)e->iov[con->tx_seg].iov_base + left;
			e->iov[con->tx_seg].iov_len -= left;
		}
	}
	return true;
}

/* A transmit buffer given back at a snapshot's stop, popped again: what went out before is
 * not sent twice. */
static void tx_skip_sent(struct virtio_console *con)
{
	struct virtq_elem *e = &con->tx;
	size_t skip = con->tx_skip;
	con->tx_skip = 0;
	while (skip > 0 && con->tx_seg < e->out_num) {
		struct iovec *io = &e->iov[con->tx_seg];
		size_t n = skip < io->iov_len ? skip : io->iov_len;
		io->iov_base = (uint8_t *)io->iov_base + n;
		io->iov_len -= n;
		skip -= n;
		if (io->iov_len == 0)
			con->tx_seg++;
	}
}

/* Guest to socket, in order. Without a client the bytes are dropped (as QEMU does for a
 * disconnected chardev); a socket that is full stops the queue until it is writable again. */
static void tx_pump(struct virtio_console *con)
{
	struct virtio_device *d = &con->vdev;
	struct virtqueue *vq = &d->queues[Q_TX].vq;
	bool pushed = false;
	unsigned n = 0;
	while (con_live(con)) {
		if (!con->tx_held) {
			if (n++ == CON_BUDGET) {
				kick_later(con, Q_TX);
				break;
			}
			int r = virtq_pop(vq, &con->tx);
			if (r < 0)
				virtio_queue_error(d, Q_TX, r);
			if (r <= 0)
				break;
			con->tx_held = true;
			con->tx_seg = 0;
			tx_skip_sent(con);
		}
		if (con->client_fd >= 0 && !tx_write(con))
			break; /* the client's EPOLLOUT resumes */
		virtq_push(vq, con->tx.head, 0);
		con->tx_held = false;
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(d, Q_TX);
}

/* Moves whatever can move now. Every event runs all of it: a client lost while receiving
 * must release a waiting transmit buffer, and both make a PORT_OPEN due. */
static void con_service(struct virtio_console *con)
{
	rx_pump(con);
	tx_pump(con);
	ctrl_send(con);
}

static void con_notify(struct virtio_device *d, uint16_t q)
{
	struct virtio_console *con = d->opaque;
	pthread_mutex_lock(&con->lock);
	if (q == Q_CTRL_TX)
		ctrl_receive(con);
	con_service(con);
	pthread_mutex_unlock(&con->lock);
}

/* The client socket (edge-triggered: every state change that lets bytes move again calls the
 * pumps, which go on until the socket says EAGAIN). */
static void con_client_event(void *opaque, uint32_t events)
{
	(void)events; /* may be stale (for a client already gone): ask the socket itself */
	struct virtio_console *con = opaque;
	pthread_mutex_lock(&con->lock);
	if (con->client_fd >= 0) {
		struct pollfd p = { .fd = con->client_fd, .events = POLLIN | POLLOUT };
		bool hup = poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
		/* Bytes it sent before hanging up still go to the guest if it can take them now. */
		rx_pump(con);
		if (hup && con->client_fd >= 0)
			client_drop(con);
		con_service(con);
	}
	pthread_mutex_unlock(&con->lock);
}

static void con_accept(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_console *con = opaque;
	pthread_mutex_lock(&con->lock);
	for (;;) {
		int fd = accept4(con->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		if (con->client_fd >= 0) {
			close(fd); /* one client at a time */
			continue;
		}
		if (iothread_add(con->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 con_client_event, con) < 0) {
			log_warn("virtio-console: cannot watch a client of %s", con->path);
			close(fd);
			continue;
		}
		con->client_fd = fd;
		con->client_eof = false;
		if (con->port_ready)
			con->send_open = true;
		log_debug("virtio-console: client connected to %s", con->path);
	}
	con_service(con);
	pthread_mutex_unlock(&con->lock);
}

static void con_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_console *con = d->opaque;
	memcpy(data, con->config + off, len);
}

/* A fresh driver (after a reset) starts the control protocol from scratch; the client stays
 * connected. A snapshot's restart, or a restore, goes on with the state it had. */
static int con_start(struct virtio_device *d)
{
	struct virtio_console *con = d->opaque;
	pthread_mutex_lock(&con->lock);
	if (!con->hold) {
		con->port_added = con->port_ready = con->guest_open = false;
		con->send_add = con->send_name = con->send_open = false;
		con->tx_skip = 0;
	}
	pthread_mutex_unlock(&con->lock);
	return 0;
}

/* Nothing is in flight outside the handlers. The buffers they hold go back to the ring, to be
 * popped again at the next start: a receive buffer has nothing in it yet, and of a transmit
 * buffer only the part the socket has not taken will be sent (a reset forgets even that). */
static void con_stop(struct virtio_device *d)
{
	struct virtio_console *con = d->opaque;
	pthread_mutex_lock(&con->lock);
	if (con->rx_held)
		virtq_unpop(&d->queues[Q_RX].vq, 1);
	if (con->tx_held) {
		const struct virtq_elem *e = &con->tx;
		size_t left = iov_size(&e->iov[con->tx_seg], e->out_num - con->tx_seg);
		con->tx_skip = (uint32_t)(e->out_len - left);
		virtq_unpop(&d->queues[Q_TX].vq, 1);
	}
	con->rx_held = con->tx_held = false;
	pthread_mutex_unlock(&con->lock);
}

/* --- snapshots --- */

enum {
	ST_PORT_ADDED = 1 << 0,
	ST_PORT_READY = 1 << 1,
	ST_GUEST_OPEN = 1 << 2,
	ST_SEND_ADD = 1 << 3,
	ST_SEND_NAME = 1 << 4,
	ST_SEND_OPEN = 1 << 5,
	ST_ALL = (1 << 6) - 1,
};

/* The virtio_device_ops hold: see virtio.h. */
static void con_hold(struct virtio_device *d, bool hold)
{
	struct virtio_console *con = d->opaque;
	pthread_mutex_lock(&con->lock);
	con->hold = hold;
	pthread_mutex_unlock(&con->lock);
}

/* Its own section ("VCON"), loaded before its transport's. */
static void virtio_console_save(void *opaque, struct stream *s)
{
	struct virtio_console *con = opaque;
	pthread_mutex_lock(&con->lock);
	uint8_t flags = (con->port_added ? ST_PORT_ADDED : 0) | (con->port_ready ? ST_PORT_READY : 0) |
			(con->guest_open ? ST_GUEST_OPEN : 0) | (con->send_add ? ST_SEND_ADD : 0) |
			(con->send_name ? ST_SEND_NAME : 0) | (con->send_open ? ST_SEND_OPEN : 0);
	stream_put_u8(s, flags);
	stream_put_u32(s, con->tx_skip);
	pthread_mutex_unlock(&con->lock);
}

static int virtio_console_load(void *opaque, struct stream *s, uint32_t version)
{
	struct virtio_console *con = opaque;
	if (version != VIRTIO_CONSOLE_STATE_VERSION)
		return -EBADMSG;
	uint8_t flags = stream_get_u8(s);
	uint32_t tx_skip = stream_get_u32(s); /* any: as if the guest had shortened its buffer */
	if (stream_error(s) || (flags & ~ST_ALL))
		return -EBADMSG;
	pthread_mutex_lock(&con->lock);
	con->port_added = flags & ST_PORT_ADDED;
	con->port_ready = flags & ST_PORT_READY;
	con->guest_open = flags & ST_GUEST_OPEN;
	con->send_add = flags & ST_SEND_ADD;
	con->send_name = flags & ST_SEND_NAME;
	/* The saved VM's client did not come along: the driver hears whether one is here. */
	con->send_open = (flags & ST_SEND_OPEN) || con->port_ready;
	con->tx_skip = tx_skip;
	pthread_mutex_unlock(&con->lock);
	return 0;
}

/* --- setup --- */

static const struct virtio_device_ops con_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.num_queues = CON_NUM_QUEUES,
	.queue_size = CON_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.config_read = con_config_read,
	/* emerg_wr is only writable with VIRTIO_CONSOLE_F_EMERG_WRITE, not offered */
	.start = con_start,
	.queue_notify = con_notify,
	.stop = con_stop,
	.hold = con_hold,
};

/* Whether a program listens on the socket at addr (else it is a stale one, safe to replace). */
static bool socket_in_use(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	/* EAGAIN: a listener whose backlog is full */
	bool in_use = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 ||
		      errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return in_use;
}

static int con_listen(struct virtio_console *con)
{
	const char *path = con->path;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("--vconsole: socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("--vconsole: '%s' exists and is not a socket", path);
			return -EEXIST;
		}
		if (socket_in_use(&addr)) {
			log_error("--vconsole: another program listens on '%s'", path);
			return -EADDRINUSE;
		}
		unlink(path); /* left behind by an earlier run */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0 ||
	    stat(path, &st) < 0) {
		int err = errno;
		log_error("--vconsole: cannot listen on '%s': %s", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	con->listen_fd = fd;
	con->sock_dev = st.st_dev;
	con->sock_ino = st.st_ino;
	return 0;
}

static void con_unlink(struct virtio_console *con)
{
	struct stat st;
	if (lstat(con->path, &st) == 0 && st.st_dev == con->sock_dev && st.st_ino == con->sock_ino)
		unlink(con->path);
}

static void con_free(struct virtio_console *con)
{
	pthread_mutex_destroy(&con->lock);
	free(con->path);
	free(con->name);
	free(con);
}

static void virtio_console_destroy(void *opaque);

/* arg: the struct vm_vconsole. */
static void *virtio_console_realize(const struct device_ctx *ctx, const void *arg)
{
	const struct vm_vconsole *c = arg;
	size_t name_len = strlen(c->name);
	if (name_len == 0 || name_len > CON_NAME_MAX) {
		log_error("--vconsole: the port name must have 1 to %d bytes", CON_NAME_MAX);
		return NULL;
	}
	struct virtio_console *con = calloc(1, sizeof(*con));
	if (!con)
		return NULL;
	con->io = ctx->io;
	con->listen_fd = con->client_fd = -1;
	con->name_len = name_len;
	pthread_mutex_init(&con->lock, NULL);
	con->path = strdup(c->path);
	con->name = strdup(c->name);
	if (!con->path || !con->name) {
		con_free(con);
		return NULL;
	}
	le_put(con->config + CFG_MAX_NR_PORTS, 4, 1);
	if (con_listen(con) < 0) {
		con_free(con);
		return NULL;
	}
	if (virtio_device_init(&con->vdev, ctx, &con_ops, con, 1ULL << VIRTIO_CONSOLE_F_MULTIPORT) < 0)
		goto fail_sock;
	con->transport = virtio_transport_create(ctx, &con->vdev);
	if (!con->transport)
		goto fail_vdev;
	/* Last: from here on clients can come, and only virtio_console_destroy undoes that. */
	if (iothread_add(ctx->io, con->listen_fd, EPOLLIN, con_accept, con) < 0) {
		log_error("virtio-console: cannot watch '%s'", con->path);
		goto fail_transport;
	}
	if (virtio_transport_register(ctx, con->transport) < 0) {
		virtio_console_destroy(con);
		return NULL;
	}
	log_debug("virtio-console: port '%s' on %s", con->name, con->path);
	return con;

fail_transport:
	virtio_transport_destroy(con->transport);
fail_vdev:
	virtio_device_destroy(&con->vdev);
fail_sock:
	close(con->listen_fd);
	con_unlink(con);
	con_free(con);
	return NULL;
}

static void virtio_console_destroy(void *opaque)
{
	struct virtio_console *con = opaque;
	virtio_transport_destroy(con->transport);
	virtio_device_destroy(&con->vdev);
	/* No new client after this; a handler of the current one that runs before its watch is
	 * gone finds client_fd -1 and does nothing. */
	iothread_remove(con->io, con->listen_fd);
	pthread_mutex_lock(&con->lock);
	int fd = con->client_fd;
	con->client_fd = -1;
	pthread_mutex_unlock(&con->lock);
	if (fd >= 0) {
		iothread_remove(con->io, fd);
		close(fd);
	}
	close(con->listen_fd);
	con_unlink(con);
	con_free(con);
}

const struct device_ops virtio_console_ops = {
	.name = "virtio-console",
	.tag = STREAM_TAG('V', 'C', 'O', 'N'),
	.version = VIRTIO_CONSOLE_STATE_VERSION,
	.realize = virtio_console_realize,
	.destroy = virtio_console_destroy,
	.save = virtio_console_save,
	.load = virtio_console_load,
};
