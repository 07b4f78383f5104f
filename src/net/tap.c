/* TAP backend: frames with a virtio-net header (IFF_VNET_HDR) to and from a host TAP interface,
 * read non-blocking on the I/O thread; checksum and TSO offloads through TUNSETOFFLOAD. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lib/iov.h"
#include "lib/log.h"
#include "net/net.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

/* Frames read in one go before the loop lets other handlers run (and goes on through kick_fd). */
#define TAP_BUDGET 256
#define TAP_BUF_LEN (NET_VNET_HDR_LEN + NET_MAX_FRAME)

struct net_tap {
	struct net_backend be;
	struct iothread *io;
	int fd;
	int kick_fd;             /* eventfd: more to read after a full budget */
	bool started;
	bool read_failed;        /* a read error was reported once */
	char ifname[IFNAMSIZ];
	net_receive_fn receive;
	void *opaque;
	/* buf holds a frame the receiver could not take yet: reading waits for resume */
	bool held;
	size_t held_len;
	uint64_t rx_dropped, tx_dropped;
	/* One spare byte tells a frame longer than the limit (read truncates it) from one at it. */
	uint8_t buf[TAP_BUF_LEN + 1];
	uint8_t tx_buf[TAP_BUF_LEN]; /* for chains longer than writev takes */
};

/* Reads and delivers frames until the TAP is empty, the receiver is full or the budget is used.
 * The fd is watched edge-triggered, so reading must go on until EAGAIN unless paused. */
static void tap_pump(struct net_tap *tap)
{
	for (int n = 0; n < TAP_BUDGET; n++) {
		if (!tap->held) {
			ssize_t len = read(tap->fd, tap->buf, sizeof(tap->buf));
			if (len < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && !tap->read_failed) {
					tap->read_failed = true;
					log_warn("tap %s: read failed: %s; the guest receives nothing more",
						 tap->ifname, strerror(errno));
				}
				return;
			}
			if ((size_t)len < NET_VNET_HDR_LEN + NET_MIN_FRAME || (size_t)len > TAP_BUF_LEN) {
				tap->rx_dropped++;
				continue;
			}
			tap->held = true;
			tap->held_len = (size_t)len;
		}
		struct iovec iov = { .iov_base = tap->buf, .iov_len = tap->held_len };
		if (!tap->receive(tap->opaque, &iov, 1))
			return; /* no room: resume calls us again */
		tap->held = false;
	}
	uint64_t one = 1;
	if (write(tap->kick_fd, &one, sizeof(one)) != sizeof(one))
		log_debug("tap %s: cannot schedule more reading", tap->ifname);
}

static void tap_readable(void *opaque, uint32_t events)
{
	(void)events;
	tap_pump(opaque);
}

static void tap_kicked(void *opaque, uint32_t events)
{
	(void)events;
	struct net_tap *tap = opaque;
	uint64_t count;
	if (read(tap->kick_fd, &count, sizeof(count)) != sizeof(count))
		return;
	tap_pump(tap);
}

static int tap_start(struct net_backend *be, net_receive_fn receive, void *opaque)
{
	struct net_tap *tap = (struct net_tap *)be;
	tap->receive = receive;
	tap->opaque = opaque;
	int r = iothread_add(tap->io, tap->kick_fd, EPOLLIN, tap_kicked, tap);
	if (r < 0)
		return r;
	r = iothread_add(tap->io, tap->fd, EPOLLIN | EPOLLET, tap_readable, tap);
	if (r < 0) {
		iothread_remove(tap->io, tap->kick_fd);
		return r;
	}
	tap->started = true;
	/* Frames that came before the watch would not raise an edge: read them now. */
	uint64_t one = 1;
	if (write(tap->kick_fd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	return 0;
}

static int tap_send(struct net_backend *be, const struct iovec *iov, unsigned cnt)
{
	struct net_tap *tap = (struct net_tap *)be;
	ssize_t n;
	size_t len = iov_size(iov, cnt);
	if (cnt <= IOV_MAX) {
		n = writev(tap->fd, iov, (int)cnt);
	} else {
		if (len > sizeof(tap->tx_buf)) {
			tap->tx_dropped++;
			return -EMSGSIZE;
		}
		iov_to_buf(iov, cnt, 0, tap->tx_buf, len);
		n = write(tap->fd, tap->tx_buf, len);
	}
	if (n < 0) {
		tap->tx_dropped++;
		return -errno;
	}
	return 0;
}

static void tap_resume(struct net_backend *be)
{
	tap_pump((struct net_tap *)be);
}

static unsigned tun_flags(unsigned offloads)
{
	unsigned f = 0;
	if (offloads & NET_OFFLOAD_CSUM)
		f |= TUN_F_CSUM;
	if (offloads & NET_OFFLOAD_TSO4)
		f |= TUN_F_TSO4;
	if (offloads & NET_OFFLOAD_TSO6)
		f |= TUN_F_TSO6;
	if (offloads & NET_OFFLOAD_TSO_ECN)
		f |= TUN_F_TSO_ECN;
	return f;
}

static int tap_set_offloads(struct net_backend *be, unsigned offloads)
{
	struct net_tap *tap = (struct net_tap *)be;
	/* The kernel refuses TSO without checksum offload; so does the virtio spec. */
	if (!(offloads & NET_OFFLOAD_CSUM))
		offloads = 0;
	if (ioctl(tap->fd, TUNSETOFFLOAD, tun_flags(offloads & be->offloads)) < 0)
		return -errno;
	return 0;
}

static void tap_destroy(struct net_backend *be)
{
	struct net_tap *tap = (struct net_tap *)be;
	if (tap->started) {
		iothread_remove(tap->io, tap->fd);
		iothread_remove(tap->io, tap->kick_fd);
	}
	if (tap->rx_dropped || tap->tx_dropped)
		log_debug("tap %s: %llu received and %llu sent frames dropped", tap->ifname,
			  (unsigned long long)tap->rx_dropped, (unsigned long long)tap->tx_dropped);
	if (tap->fd >= 0)
		close(tap->fd);
	if (tap->kick_fd >= 0)
		close(tap->kick_fd);
	free(tap);
}

static const struct net_backend_ops tap_ops = {
	.start = tap_start,
	.send = tap_send,
	.resume = tap_resume,
	.set_offloads = tap_set_offloads,
	.destroy = tap_destroy,
};

static const char *tapsetiff_hint(int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return " (needs CAP_NET_ADMIN or a tap owned by you)";
	case EBUSY:
		return " (another program has it open)";
	case EINVAL:
		return " (it exists but is not a single-queue TAP interface)";
	default:
		return "";
	}
}

struct net_backend *net_tap_open(struct iothread *io, const struct vm_nic *nic)
{
	const char *name = nic->ifname;
	if (!name || !*name || strlen(name) >= IFNAMSIZ) {
		log_error("--net tap: '%s' is not an interface name (1 to %d characters)",
			  name ? name : "", IFNAMSIZ - 1);
		return NULL;
	}
	struct net_tap *tap = calloc(1, sizeof(*tap));
	if (!tap) {
		log_error("out of memory for TAP interface '%s'", name);
		return NULL;
	}
	tap->io = io;
	tap->kick_fd = -1;
	snprintf(tap->ifname, sizeof(tap->ifname), "%s", name);
	tap->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (tap->fd < 0) {
		int err = errno;
		log_error("cannot open TAP interface '%s': /dev/net/tun: %s%s", name, strerror(err),
			  err == ENOENT ? " (load the tun module)" : tapsetiff_hint(err));
		goto fail;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, tap->ifname, strlen(tap->ifname));
	if (ioctl(tap->fd, TUNSETIFF, &ifr) < 0) {
		int err = errno;
		log_error("cannot open TAP interface '%s': %s%s", name, strerror(err),
			  tapsetiff_hint(err));
		goto fail;
	}
	memcpy(tap->ifname, ifr.ifr_name, sizeof(tap->ifname) - 1);
	int hdr_len = NET_VNET_HDR_LEN;
	if (ioctl(tap->fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		log_error("TAP interface '%s': cannot use a %d-byte virtio-net header: %s", name,
			  hdr_len, strerror(errno));
		goto fail;
	}
	/* Little-endian headers (virtio 1.x); already the default on x86, where this may fail. */
	int le = 1;
	(void)ioctl(tap->fd, TUNSETVNETLE, &le);

	/* Which offloads the kernel's tun takes, then none until a driver accepts some. */
	const unsigned all = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 |
			     NET_OFFLOAD_TSO_ECN;
	if (ioctl(tap->fd, TUNSETOFFLOAD, tun_flags(all)) == 0)
		tap->be.offloads = all;
	else if (ioctl(tap->fd, TUNSETOFFLOAD, tun_flags(NET_OFFLOAD_CSUM)) == 0)
		tap->be.offloads = NET_OFFLOAD_CSUM;
	if (ioctl(tap->fd, TUNSETOFFLOAD, 0u) < 0) {
		log_error("TAP interface '%s': cannot turn offloads off: %s", name, strerror(errno));
		goto fail;
	}
	tap->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (tap->kick_fd < 0) {
		log_error("TAP interface '%s': eventfd: %s", name, strerror(errno));
		goto fail;
	}
	tap->be.ops = &tap_ops;
	tap->be.kind = "tap";
	tap->be.vnet_hdr = true;
	log_debug("tap: %s open, offloads 0x%x", tap->ifname, tap->be.offloads);
	return &tap->be;

fail:
	tap_destroy(&tap->be);
	return NULL;
}
