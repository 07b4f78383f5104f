/* virtio-net (virtio 1.x 5.1): one receive and one transmit queue over a network backend
 * (src/net/: libslirp or TAP). Every frame is preceded by struct virtio_net_hdr_v1; a received
 * frame spreads over several buffers when the driver accepts MRG_RXBUF. Checksum and TSO
 * offloads are offered only when the backend does them (TAP's vnet header). Everything runs on
 * the I/O thread and completes there: a reset leaves nothing in flight. When the receive ring
 * is empty the backend is paused (its frame kept) until the driver adds buffers.
 *
 * Snapshots and migration: the core saves features, status and the queues; the device adds its
 * configuration (MAC, link status) in a section of its own. Nothing else is pending between
 * two I/O-thread handlers: a received frame is copied and published whole (one used-index
 * update, MRG_RXBUF's buffers included) inside one handler, and a transmit buffer is sent and
 * pushed inside one. The frame a backend keeps while the receive ring is full stays in the
 * source's backend (a target drops it, as a full ring would have). The backend is the host's
 * and is not migrated: the target opens its own (the TAP named by its own --net; a fresh
 * libslirp, where the guest's NAT connections are gone and its DHCP lease is simply renewed).
 * After a restore the device sends RARP announcements, as QEMU's self-announce does, so that
 * switches learn the MAC's new port. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "lib/iov.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "net/net.h"
#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

/* Linux posts one buffer per entry (about 1.5 KiB with MRG_RXBUF): 256 hold several 64 KiB frames. */
#define NET_QUEUE_SIZE 256
/* Transmit buffers one doorbell handles before the rest waits for another round. */
#define NET_TX_BUDGET NET_QUEUE_SIZE

enum { Q_RX, Q_TX, NET_NUM_QUEUES };

/* Feature bits (5.1.3) */
#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN  9
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_HOST_ECN   13
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16
#define F(bit) (1ULL << (bit))

/* struct virtio_net_hdr_v1: flags, gso_type, le16 hdr_len, gso_size, csum_start, csum_offset,
 * num_buffers */
#define HDR_FLAGS       0
#define HDR_GSO_TYPE    1
#define HDR_NUM_BUFFERS 10
#define HDR_F_NEEDS_CSUM 1
#define HDR_F_DATA_VALID 2
#define HDR_GSO_NONE  0
#define HDR_GSO_TCPV4 1
#define HDR_GSO_TCPV6 4
#define HDR_GSO_ECN   0x80

/* struct virtio_net_config: mac[6], le16 status, le16 max_virtqueue_pairs */
#define CFG_MAC          0
#define CFG_STATUS       6
#define CFG_MAX_VQ_PAIRS 8
#define CFG_SIZE         10
#define VIRTIO_NET_S_LINK_UP 1

/* Self-announcement after a restore: QEMU's defaults (5 rounds, 50 ms then 100 ms more each). */
#define ANNOUNCE_ROUNDS 5
#define ANNOUNCE_FIRST_MS 50
#define ANNOUNCE_STEP_MS 100
#define RARP_FRAME_LEN 60 /* the 42 bytes of Ethernet + RARP, padded to the minimum frame */

struct rx_used {
	uint16_t head;
	uint32_t len;
};

struct virtio_net {
	struct virtio_device vdev;
	struct virtio_transport *transport;
	struct net_backend *be;
	uint8_t config[CFG_SIZE];
	/* Written by start before the device runs, read on the I/O thread while it runs. */
	uint64_t features;
	/* I/O thread only */
	bool rx_notify_off;                 /* the RX queue's doorbell is not wanted now */
	struct virtq_elem rx_first, rx_more, tx_elem;
	struct rx_used rx_used[NET_QUEUE_SIZE];
	struct iovec tx_iov[VIRTQ_MAX_SEGS + 1];
	uint64_t rx_frames, rx_dropped, tx_frames, tx_dropped, tx_errors;
	int announce_fd;                    /* timerfd of the self-announcement, -1 if none */
	atomic_uint announce_left;          /* rounds still to send (set by a restore) */
};

/* Copies len bytes from src (from byte soff) into dst (from byte doff); returns the count. */
static size_t iov_copy(const struct iovec *dst, unsigned dcnt, size_t doff,
		       const struct iovec *src, unsigned scnt, size_t soff, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < dcnt && done < len; i++) {
		if (doff >= dst[i].iov_len) {
			doff -= dst[i].iov_len;
			continue;
		}
		size_t n = dst[i].iov_len - doff;
		if (n > len - done)
			n = len - done;
		size_t got = iov_to_buf(src, scnt, soff + done, (uint8_t *)dst[i].iov_base + doff, n);
		done += got;
		if (got < n)
			break;
		doff = 0;
	}
	return done;
}

/* --- receive -------------------------------------------------------------------------------- */

/* Makes a received frame's header one the driver agreed to. False when the frame needs an
 * offload the driver did not accept (a frame the backend read before a reset, say). */
static bool rx_hdr_fixup(uint64_t features, uint8_t *hdr)
{
	uint8_t gso = hdr[HDR_GSO_TYPE] & (uint8_t)~HDR_GSO_ECN;
	if (!(features & F(VIRTIO_NET_F_GUEST_CSUM))) {
		if ((hdr[HDR_FLAGS] & HDR_F_NEEDS_CSUM) || hdr[HDR_GSO_TYPE] != HDR_GSO_NONE)
			return false;
		memset(hdr, 0, NET_VNET_HDR_LEN); /* DATA_VALID is not ours to say either */
		return true;
	}
	if ((gso == HDR_GSO_TCPV4 && !(features & F(VIRTIO_NET_F_GUEST_TSO4))) ||
	    (gso == HDR_GSO_TCPV6 && !(features & F(VIRTIO_NET_F_GUEST_TSO6))) ||
	    (gso != HDR_GSO_NONE && gso != HDR_GSO_TCPV4 && gso != HDR_GSO_TCPV6) ||
	    ((hdr[HDR_GSO_TYPE] & HDR_GSO_ECN) && !(features & F(VIRTIO_NET_F_GUEST_ECN))))
		return false;
	hdr[HDR_FLAGS] &= HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID;
	return true;
}

enum rx_result { RX_DELIVERED, RX_DROPPED, RX_NO_ROOM };

/* Copies hdr and frame (frame_len bytes of src from byte soff) into the receive ring. */
static enum rx_result rx_deliver(struct virtio_net *net, uint8_t *hdr, const struct iovec *src,
				 unsigned scnt, size_t soff, size_t frame_len)
{
	struct virtio_device *d = &net->vdev;
	struct virtqueue *vq = &d->queues[Q_RX].vq;
	bool mrg = net->features & F(VIRTIO_NET_F_MRG_RXBUF);
	size_t copied = 0;
	unsigned popped = 0;

	/* No doorbells while buffers are there; asked for again when they run out. */
	if (!net->rx_notify_off) {
		virtq_disable_notify(vq);
		net->rx_notify_off = true;
	}
	for (;;) {
		if (popped == vq->size) {
			/* The whole ring cannot hold it: buffers too small for this frame. */
			virtq_unpop(vq, popped);
			return RX_DROPPED;
		}
		struct virtq_elem *e = popped ? &net->rx_more : &net->rx_first;
		int r = virtq_pop(vq, e);
		if (r < 0) {
			virtio_queue_error(d, Q_RX, r);
			return RX_NO_ROOM;
		}
		if (r == 0) {
			/* Ask for a doorbell when the driver adds buffers, then look once more. */
			net->rx_notify_off = false;
			if (virtq_enable_notify(vq)) {
				virtq_disable_notify(vq);
				net->rx_notify_off = true;
				continue;
			}
			virtq_unpop(vq, popped);
			return RX_NO_ROOM;
		}
		const struct iovec *in = &e->iov[e->out_num];
		size_t room = e->in_len, at = 0;
		if (popped == 0) {
			if (room < NET_VNET_HDR_LEN) {
				virtio_device_broken(d, "a receive buffer is smaller than the header");
				return RX_NO_ROOM;
			}
			at = NET_VNET_HDR_LEN; /* the header goes in last, with num_buffers */
		}
		size_t n = room - at < frame_len - copied ? room - at : frame_len - copied;
		n = iov_copy(in, e->in_num, at, src, scnt, soff + copied, n);
		net->rx_used[popped++] = (struct rx_used){ .head = e->head, .len = (uint32_t)(at + n) };
		copied += n;
		if (copied == frame_len)
			break;
		if (!mrg) {
			/* Without MRG_RXBUF a frame must fit one buffer. */
			virtq_unpop(vq, popped);
			return RX_DROPPED;
		}
	}
	le_put(hdr + HDR_NUM_BUFFERS, 2, popped);
	iov_from_buf(&net->rx_first.iov[net->rx_first.out_num], net->rx_first.in_num, 0, hdr,
		     NET_VNET_HDR_LEN);
	/* All of the frame's buffers become visible together (one used-index update). */
	for (unsigned i = 0; i < popped; i++)
		virtq_fill(vq, (uint16_t)i, net->rx_used[i].head, net->rx_used[i].len);
	virtq_flush(vq, (uint16_t)popped);
	virtio_queue_interrupt(d, Q_RX);
	return RX_DELIVERED;
}

/* The backend's receive callback (I/O thread). */
static bool net_receive(void *opaque, const struct iovec *iov, unsigned cnt)
{
	struct virtio_net *net = opaque;
	struct virtio_device *d = &net->vdev;
	/* A stopped or broken device takes nothing: the backend waits (the doorbell rung at
	 * DRIVER_OK resumes it). */
	if (!atomic_load(&d->running) || atomic_load(&d->needs_reset))
		return false;
	uint8_t hdr[NET_VNET_HDR_LEN] = { 0 };
	size_t total = iov_size(iov, cnt), skip = 0;
	if (net->be->vnet_hdr) {
		if (total < NET_VNET_HDR_LEN) {
			net->rx_dropped++;
			return true;
		}
		iov_to_buf(iov, cnt, 0, hdr, NET_VNET_HDR_LEN);
		skip = NET_VNET_HDR_LEN;
		if (!rx_hdr_fixup(net->features, hdr)) {
			net->rx_dropped++;
			return true;
		}
	}
	size_t frame_len = total - skip;
	if (frame_len < NET_MIN_FRAME || frame_len > NET_MAX_FRAME) {
		net->rx_dropped++;
		return true;
	}
	switch (rx_deliver(net, hdr, iov, cnt, skip, frame_len)) {
	case RX_DELIVERED:
		net->rx_frames++;
		return true;
	case RX_DROPPED:
		net->rx_dropped++;
		return true;
	default:
		return false;
	}
}

/* --- transmit ------------------------------------------------------------------------------- */

/* Makes a transmitted frame's header fit what was negotiated. False: the frame asks for an
 * offload the driver did not accept, and is dropped. */
static bool tx_hdr_fixup(uint64_t features, uint8_t *hdr)
{
	if (!(features & F(VIRTIO_NET_F_CSUM))) {
		memset(hdr, 0, NET_VNET_HDR_LEN);
		return true;
	}
	uint8_t gso = hdr[HDR_GSO_TYPE] & (uint8_t)~HDR_GSO_ECN;
	if ((gso == HDR_GSO_TCPV4 && !(features & F(VIRTIO_NET_F_HOST_TSO4))) ||
	    (gso == HDR_GSO_TCPV6 && !(features & F(VIRTIO_NET_F_HOST_TSO6))) ||
	    (gso != HDR_GSO_NONE && gso != HDR_GSO_TCPV4 && gso != HDR_GSO_TCPV6) ||
	    ((hdr[HDR_GSO_TYPE] & HDR_GSO_ECN) && !(features & F(VIRTIO_NET_F_HOST_ECN))))
		return false;
	hdr[HDR_FLAGS] &= HDR_F_NEEDS_CSUM;
	le_put(hdr + HDR_NUM_BUFFERS, 2, 0);
	return true;
}

/* Sends the frame of one transmit buffer; a bad one is dropped and counted. */
static void tx_one(struct virtio_net *net, const struct virtq_elem *e)
{
	struct net_backend *be = net->be;
	/* Shorter than the header, no Ethernet header, or longer than any frame: dropped. */
	if (e->out_len < NET_VNET_HDR_LEN + NET_MIN_FRAME ||
	    e->out_len > NET_VNET_HDR_LEN + NET_MAX_FRAME) {
		net->tx_dropped++;
		return;
	}
	size_t frame_len = (size_t)e->out_len - NET_VNET_HDR_LEN;
	uint8_t hdr[NET_VNET_HDR_LEN];
	unsigned n = 0;
	if (be->vnet_hdr) {
		/* A copy: the driver could change its header while the backend reads it. */
		iov_to_buf(e->iov, e->out_num, 0, hdr, sizeof(hdr));
		if (!tx_hdr_fixup(net->features, hdr)) {
			net->tx_dropped++;
			return;
		}
		net->tx_iov[n++] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	}
	int k = iov_slice(e->iov, e->out_num, NET_VNET_HDR_LEN, frame_len, &net->tx_iov[n],
			  VIRTQ_MAX_SEGS);
	if (k < 0) {
		net->tx_dropped++;
		return;
	}
	if (be->ops->send(be, net->tx_iov, n + (unsigned)k) < 0)
		net->tx_errors++;
	else
		net->tx_frames++;
}

static void net_tx(struct virtio_net *net)
{
	struct virtio_device *d = &net->vdev;
	struct virtqueue *vq = &d->queues[Q_TX].vq;
	bool pushed = false;
	virtq_disable_notify(vq);
	for (int n = 0;; n++) {
		if (n == NET_TX_BUDGET) {
			/* More next round (notifications stay off): ring our own doorbell. */
			virtio_queue_kick_later(d, Q_TX);
			break;
		}
		int r = virtq_pop(vq, &net->tx_elem);
		if (r < 0) {
			virtio_queue_error(d, Q_TX, r);
			break;
		}
		if (r == 0) {
			if (virtq_enable_notify(vq)) {
				virtq_disable_notify(vq);
				continue;
			}
			break;
		}
		tx_one(net, &net->tx_elem);
		virtq_push(vq, net->tx_elem.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(d, Q_TX);
}

/* --- device --------------------------------------------------------------------------------- */

static void net_notify(struct virtio_device *d, uint16_t q)
{
	struct virtio_net *net = d->opaque;
	if (q == Q_TX)
		net_tx(net);
	else if (q == Q_RX)
		net->be->ops->resume(net->be); /* new buffers: the backend's waiting frame first */
}

static void net_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, uint32_t len)
{
	struct virtio_net *net = d->opaque;
	memcpy(data, net->config + off, len);
}

/* The receive offloads the driver accepted, as the backend names them. */
static unsigned guest_offloads(uint64_t f)
{
	if (!(f & F(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	return NET_OFFLOAD_CSUM | ((f & F(VIRTIO_NET_F_GUEST_TSO4)) ? NET_OFFLOAD_TSO4 : 0) |
	       ((f & F(VIRTIO_NET_F_GUEST_TSO6)) ? NET_OFFLOAD_TSO6 : 0) |
	       ((f & F(VIRTIO_NET_F_GUEST_ECN)) ? NET_OFFLOAD_TSO_ECN : 0);
}

static int net_start(struct virtio_device *d)
{
	struct virtio_net *net = d->opaque;
	net->features = d->driver_features;
	net->rx_notify_off = false;
	if (net->be->ops->set_offloads) {
		int r = net->be->ops->set_offloads(net->be, guest_offloads(net->features));
		if (r < 0) /* frames then come fully checksummed and unsegmented: still correct */
			log_warn("virtio-net: cannot set the %s backend's offloads: %s", net->be->kind,
				 strerror(-r));
	}
	return 0;
}

static void net_stop(struct virtio_device *d)
{
	(void)d; /* frames are handled wholly inside the I/O thread's handlers: none in flight */
}

/* --- snapshots ------------------------------------------------------------------------------ */

/* A RARP "reverse request" from our MAC for our MAC (QEMU's announce frame): switches learn
 * the port, nobody answers. */
static void announce_send(struct virtio_net *net)
{
	uint8_t hdr[NET_VNET_HDR_LEN] = { 0 }, f[RARP_FRAME_LEN] = { 0 };
	const uint8_t *mac = net->config + CFG_MAC;
	memset(f, 0xff, 6);                    /* broadcast */
	memcpy(f + 6, mac, 6);
	/* EtherType RARP; Ethernet, IPv4, their address lengths; op 3: reverse request */
	static const uint8_t rarp[] = { 0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03 };
	memcpy(f + 12, rarp, sizeof(rarp));
	memcpy(f + 22, mac, 6);                /* sender's hardware address; IP 0 */
	memcpy(f + 32, mac, 6);                /* target's hardware address; IP 0 */
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { f, sizeof(f) } };
	bool h = net->be->vnet_hdr;
	if (net->be->ops->send(net->be, h ? iov : iov + 1, h ? 2 : 1) < 0)
		net->tx_errors++;
}

static int announce_arm(struct virtio_net *net, unsigned ms)
{
	struct itimerspec t = { .it_value = { .tv_sec = ms / 1000,
					      .tv_nsec = (long)(ms % 1000) * 1000000 } };
	return timerfd_settime(net->announce_fd, 0, &t, NULL) < 0 ? -errno : 0;
}

/* I/O thread: one round of the announcement, and the next one armed. */
static void announce_fired(void *opaque, uint32_t events)
{
	(void)events;
	struct virtio_net *net = opaque;
	uint64_t n;
	if (read(net->announce_fd, &n, sizeof(n)) != sizeof(n) ||
	    atomic_load(&net->announce_left) == 0)
		return;
	announce_send(net);
	/* Ever further apart, in case the first ones went out before the network was ready. */
	unsigned left = atomic_fetch_sub(&net->announce_left, 1) - 1;
	if (left > 0)
		announce_arm(net, ANNOUNCE_FIRST_MS + ANNOUNCE_STEP_MS * (ANNOUNCE_ROUNDS - left));
}

/* Its own section ("VNET", instance: the NIC's index), loaded before its transport's. */
static void virtio_net_save(void *opaque, struct stream *s)
{
	struct virtio_net *net = opaque;
	stream_put_bytes(s, net->config, CFG_SIZE);
}

static int virtio_net_load(void *opaque, struct stream *s, uint32_t version)
{
	struct virtio_net *net = opaque;
	uint8_t config[CFG_SIZE];
	if (version != VIRTIO_NET_STATE_VERSION)
		return -EBADMSG;
	stream_get_bytes(s, config, CFG_SIZE);
	/* Nothing in the configuration changes at run time: the MAC is the one this VM was given
	 * (another one means the file belongs to another VM), the link is up. */
	if (stream_error(s) || memcmp(config, net->config, CFG_SIZE) != 0)
		return -EBADMSG;
	/* The VM does not run yet: the first round goes out once it has for a little while. */
	atomic_store(&net->announce_left, ANNOUNCE_ROUNDS);
	if (announce_arm(net, ANNOUNCE_FIRST_MS) < 0)
		log_warn("virtio-net: cannot announce the MAC's new place to the network");
	return 0;
}

/* --- device setup --------------------------------------------------------------------------- */

static const struct virtio_device_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = NET_NUM_QUEUES,
	.queue_size = NET_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.config_read = net_config_read,
	.start = net_start,
	.queue_notify = net_notify,
	.stop = net_stop,
};

/* The device's features for what the backend can do. */
static uint64_t net_features(const struct net_backend *be)
{
	uint64_t f = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MRG_RXBUF);
	unsigned o = be->vnet_hdr ? be->offloads : 0;
	if (!(o & NET_OFFLOAD_CSUM))
		return f; /* slirp wants whole frames with valid checksums */
	f |= F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM);
	if (o & NET_OFFLOAD_TSO4)
		f |= F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO4);
	if (o & NET_OFFLOAD_TSO6)
		f |= F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO6);
	if ((o & NET_OFFLOAD_TSO_ECN) && (o & (NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)))
		f |= F(VIRTIO_NET_F_HOST_ECN) | F(VIRTIO_NET_F_GUEST_ECN);
	return f;
}

static void virtio_net_destroy(void *opaque);

/* arg: the struct vm_nic. */
static void *virtio_net_realize(const struct device_ctx *ctx, const void *arg)
{
	const struct vm_nic *nic = arg;
	struct virtio_net *net = calloc(1, sizeof(*net));
	if (!net) {
		log_error("virtio-net: out of memory");
		return NULL;
	}
	net->announce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (net->announce_fd < 0) {
		log_error("virtio-net: cannot create a timer: %s", strerror(errno));
		goto fail;
	}
	net->be = net_backend_open(ctx->io, nic);
	if (!net->be)
		goto fail;
	memcpy(net->config + CFG_MAC, nic->mac, 6);
	le_put(net->config + CFG_STATUS, 2, VIRTIO_NET_S_LINK_UP);
	le_put(net->config + CFG_MAX_VQ_PAIRS, 2, 1);
	if (virtio_device_init(&net->vdev, ctx, &net_ops, net, net_features(net->be)) < 0)
		goto fail_be;
	int r = net->be->ops->start(net->be, net_receive, net);
	if (r < 0) {
		log_error("virtio-net: cannot start the %s backend: %s", net->be->kind, strerror(-r));
		goto fail_vdev;
	}
	if (iothread_add(ctx->io, net->announce_fd, EPOLLIN, announce_fired, net) < 0) {
		log_error("virtio-net: cannot watch its timer");
		goto fail_vdev;
	}
	net->transport = virtio_transport_create(ctx, &net->vdev);
	if (!net->transport)
		goto fail_timer;
	if (virtio_transport_register(ctx, net->transport) < 0) {
		virtio_net_destroy(net);
		return NULL;
	}
	log_debug("virtio-net: %s backend, mac %02x:%02x:%02x:%02x:%02x:%02x", net->be->kind,
		  nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4], nic->mac[5]);
	return net;

fail_timer:
	iothread_remove(ctx->io, net->announce_fd);
fail_vdev:
	virtio_device_destroy(&net->vdev);
fail_be:
	net->be->ops->destroy(net->be);
fail:
	if (net->announce_fd >= 0)
		close(net->announce_fd);
	free(net);
	return NULL;
}

static void virtio_net_destroy(void *opaque)
{
	struct virtio_net *net = opaque;
	virtio_transport_destroy(net->transport);
	/* The device stops first (no more doorbells); the backend's handlers then find it stopped
	 * until the backend is gone. */
	iothread_remove(net->vdev.io, net->announce_fd); /* before the backend it sends to */
	close(net->announce_fd);
	virtio_device_destroy(&net->vdev);
	net->be->ops->destroy(net->be);
	log_debug("virtio-net: received %llu frames (%llu dropped), sent %llu (%llu dropped, "
		  "%llu backend errors)", (unsigned long long)net->rx_frames,
		  (unsigned long long)net->rx_dropped, (unsigned long long)net->tx_frames,
		  (unsigned long long)net->tx_dropped, (unsigned long long)net->tx_errors);
	free(net);
}

const struct device_ops virtio_net_ops = {
	.name = "virtio-net",
	.tag = STREAM_TAG('V', 'N', 'E', 'T'),
	.version = VIRTIO_NET_STATE_VERSION,
	.realize = virtio_net_realize,
	.destroy = virtio_net_destroy,
	.save = virtio_net_save,
	.load = virtio_net_load,
};
