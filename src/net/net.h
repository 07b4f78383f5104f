/* Network backends of virtio-net (user-mode networking through libslirp, or a TAP interface):
 * whole Ethernet frames in and out, run on the VM's I/O thread, with back-pressure toward the
 * backend when the guest has no receive buffers. */
#ifndef KVMKIT_NET_NET_H
#define KVMKIT_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct iothread;
struct vm_nic;

/* struct virtio_net_hdr_v1 (num_buffers included): what precedes every frame in the virtqueues,
 * and on a backend with vnet_hdr (TAP) in both directions too. */
#define NET_VNET_HDR_LEN 12
/* The longest frame either way: a 64 KiB TSO packet with its Ethernet header. */
#define NET_MAX_FRAME 65550
/* The shortest: an Ethernet header. */
#define NET_MIN_FRAME 14

/* Offloads a backend with vnet_hdr can do for received frames (TAP: TUNSETOFFLOAD). Frames it is
 * sent may use the same ones through their header. */
#define NET_OFFLOAD_CSUM    0x1u /* partial checksums */
#define NET_OFFLOAD_TSO4    0x2u
#define NET_OFFLOAD_TSO6    0x4u
#define NET_OFFLOAD_TSO_ECN 0x8u

/* I/O thread: one received frame, preceded by the vnet header if the backend has vnet_hdr.
 * Returns true when the frame was taken (delivered, or dropped for good), false when the
 * receiver has no room now: the backend keeps that frame, offers it again first, and reads
 * nothing more until ops->resume. */
typedef bool (*net_receive_fn)(void *opaque, const struct iovec *iov, unsigned cnt);

struct net_backend;

struct net_backend_ops {
	/* Sets the receive callback and starts reading (registers the backend's fds with the I/O
	 * thread). Once, before anything else but set_offloads. Returns 0 or -errno. */
	int (*start)(struct net_backend *be, net_receive_fn receive, void *opaque);
	/* I/O: sends one frame (vnet header first if vnet_hdr); never blocks. Returns 0, or
	 * -errno when the frame was lost (the caller counts it). */
	int (*send)(struct net_backend *be, const struct iovec *iov, unsigned cnt);
	/* I/O: the receiver has room again: the kept frame first, then reading goes on. */
	void (*resume)(struct net_backend *be);
	/* Any thread: the NET_OFFLOAD_* set the receiver accepts in received frames (a subset of
	 * be->offloads). NULL when offloads is 0. Returns 0 or -errno. */
	int (*set_offloads)(struct net_backend *be, unsigned offloads);
	/* Not from the I/O thread: stops its fds (waiting for a running handler) and frees it. */
	void (*destroy)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	const char *kind;    /* "user", "tap": for messages */
	bool vnet_hdr;       /* frames carry a NET_VNET_HDR_LEN header both ways */
	unsigned offloads;   /* NET_OFFLOAD_* it supports (only with vnet_hdr) */
};

/* Opens the backend nic names, not reading yet. Returns NULL after printing why. */
struct net_backend *net_backend_open(struct iothread *io, const struct vm_nic *nic);

/* The two backends (net_backend_open picks one). */
struct net_backend *net_slirp_open(struct iothread *io, const struct vm_nic *nic);
struct net_backend *net_tap_open(struct iothread *io, const struct vm_nic *nic);

#endif
