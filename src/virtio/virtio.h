/* The virtio device model shared by the transports (PCI now, MMIO next): feature negotiation,
 * the status state machine, queue set-up, doorbells (ioeventfds read on the I/O thread) and
 * interrupts, and NEEDS_RESET for a guest that breaks the rules. */
#ifndef KVMKIT_VIRTIO_VIRTIO_H
#define KVMKIT_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtqueue.h"

struct device_ctx;
struct guest_mem;
struct iothread;

/* Device status bits (virtio 1.x 2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER      0x02
#define VIRTIO_STATUS_DRIVER_OK   0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

/* Transport-independent feature bits */
#define VIRTIO_F_VERSION_1 32

/* ISR bits (legacy interrupts) */
#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_MAX_QUEUES 8

/* Device IDs (virtio 1.x 5) */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4

struct virtio_device;

/* What a device type provides. Callbacks marked "vCPU" run on a vCPU thread with the device
 * lock held; "I/O" ones on the I/O thread without it. */
struct virtio_device_ops {
	const char *name;          /* for messages: "virtio-blk" */
	uint32_t device_id;
	uint16_t num_queues;
	uint16_t queue_size;       /* the largest size a queue may be given */
	uint32_t config_size;      /* bytes of device-specific configuration */
	/* vCPU: reads/writes of the device configuration, offset + len <= config_size. */
	void (*config_read)(struct virtio_device *d, uint32_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(struct virtio_device *d, uint32_t offset, const uint8_t *data,
			     uint32_t len); /* may be NULL: writes are ignored */
	/* vCPU: the driver set DRIVER_OK; the enabled queues are mapped. Returns 0 or -errno
	 * (the device then reports NEEDS_RESET). */
	int (*start)(struct virtio_device *d);
	/* I/O: queue q's doorbell rang (after DRIVER_OK, while the device is not broken). */
	void (*queue_notify)(struct virtio_device *d, uint16_t q);
	/* vCPU: the driver reset the device or kvmkit is stopping: finish or cancel in-flight
	 * work; after this returns no queue may be touched until the next start. */
	void (*stop)(struct virtio_device *d);
	/* May be NULL. Between hold(true) and hold(false), stop and start are a snapshot's (or
	 * a restore's), not a driver's reset: the device keeps the driver's state it has. */
	void (*hold)(struct virtio_device *d, bool hold);
};

struct virtio_queue {
	uint16_t size;         /* chosen by the driver (<= ops->queue_size) */
	bool enabled;
	uint64_t desc, driver, device; /* guest addresses of the three rings */
	uint16_t vector;       /* MSI-X vector, or VIRTIO_NO_VECTOR */
	int notify_fd;         /* eventfd the doorbell signals (ioeventfd, or written by kvmkit) */
	struct virtqueue vq;   /* valid while the device runs */
	struct virtio_device *owner;
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	void *opaque;              /* the device type's state */
	struct guest_mem *mem;     /* the rings and buffers, through its checked helpers */
	struct iothread *io;       /* serves the doorbells and the device back-end */
	pthread_mutex_t lock;      /* everything below, and the transport's registers */

	uint64_t device_features;  /* offered: the device's and the transport's */
	uint64_t driver_features;  /* accepted by the driver */
	uint8_t status;
	uint8_t config_generation;
	uint16_t config_vector;
	atomic_uint isr;           /* VIRTIO_ISR_* until the driver reads the ISR */
	atomic_bool running;       /* DRIVER_OK and not reset: doorbells are served */
	atomic_bool needs_reset;   /* the guest broke the rules (reported in the status) */
	struct virtio_queue queues[VIRTIO_MAX_QUEUES];

	/* Set by the transport: raises `vector` (MSI-X), or the legacy interrupt after the ISR
	 * bits were set. Any thread. */
	void (*raise)(struct virtio_device *d, uint16_t vector);
	void *transport;
};

/* Sets up the common state; device_features are the device type's own bits (the transport
 * adds VERSION_1 and the ring features). Returns 0 or -errno. */
int virtio_device_init(struct virtio_device *d, const struct device_ctx *ctx,
		       const struct virtio_device_ops *ops,
		       void *opaque, uint64_t device_features);
/* Stops a running device (ops->stop) so that nothing is in flight; idempotent. */
void virtio_device_stop(struct virtio_device *d);
/* Stops the device (ops->stop if running) and releases the doorbell eventfds. */
void virtio_device_destroy(struct virtio_device *d);

/* Transport helpers, called with d->lock held on a vCPU thread. */
void virtio_set_status(struct virtio_device *d, uint8_t status);
uint8_t virtio_get_status(struct virtio_device *d);
/* Enables queue q as the driver configured it (size, ring addresses). */
void virtio_queue_enable(struct virtio_device *d, uint16_t q);
/* The guest did something the spec forbids: report NEEDS_RESET, stop serving the queues. */
void virtio_device_broken(struct virtio_device *d, const char *why);

/* Snapshots (the VM stopped, the device's own and the transport's state saved around it):
 * features, status, config generation and vector, ISR, NEEDS_RESET and every queue's layout,
 * vector and ring indices. Stop the device first (virtio_device_stop drains its requests, so
 * none is in flight in the saved state) and restart it after (virtio_device_restart).
 * Loading checks each field against the device as created, maps enabled queues again and
 * starts a device the driver had started. Returns 0 or -EBADMSG. */
#define VIRTIO_DEVICE_STATE_VERSION 1
struct stream;
void virtio_device_save(struct virtio_device *d, struct stream *s);
int virtio_device_load(struct virtio_device *d, struct stream *s, uint32_t version);
/* After virtio_device_stop for a save: a device the driver had started runs again (its rings
 * are served from where they were). Returns 0 or -errno (ops->start failed). */
int virtio_device_restart(struct virtio_device *d);

/* Device helpers (I/O thread). After pushing used entries to queue q: interrupts the driver
 * if it asked for it. */
void virtio_queue_interrupt(struct virtio_device *d, uint16_t q);
/* Rings queue q's doorbell from the device side: a device that stops after its budget of
 * requests (a guest can keep a ring full forever, even by aliasing it with the used ring so
 * each completion looks like a new request) comes back to the rest after the I/O thread has
 * served everyone else. */
void virtio_queue_kick_later(struct virtio_device *d, uint16_t q);
/* A virtq_pop error: the queue's device needs a reset (logged once, config interrupt). */
void virtio_queue_error(struct virtio_device *d, uint16_t q, int err);

#endif
