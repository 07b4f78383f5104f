/* The virtio 1.x PCI transport (virtio 1.x 4.1): capabilities pointing into one BAR, the
 * common configuration registers, ISR, doorbells (ioeventfds) and MSI-X. */
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/pci.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "virtio/virtio.h"
#include "vmm/device.h"

#define VIRTIO_PCI_VENDOR   0x1af4
#define VIRTIO_PCI_DEVICE0  0x1040 /* + device ID: modern devices */

/* The BAR: one region per structure, 4 KiB apart so each can grow. */
#define VPCI_BAR            0
#define VPCI_BAR_SIZE       0x8000
#define VPCI_COMMON         0x0000
#define VPCI_COMMON_LEN     0x0040
#define VPCI_ISR            0x1000
#define VPCI_ISR_LEN        0x0004
#define VPCI_DEVICE         0x2000
#define VPCI_DEVICE_LEN     0x1000
#define VPCI_NOTIFY         0x3000
#define VPCI_NOTIFY_MULT    4      /* each queue its own doorbell: ioeventfds need no data match */
#define VPCI_MSIX_TABLE     0x4000
#define VPCI_MSIX_PBA       0x5000

/* virtio_pci_cap.cfg_type */
#define VPCI_CAP_COMMON 1
#define VPCI_CAP_NOTIFY 2
#define VPCI_CAP_ISR    3
#define VPCI_CAP_DEVICE 4

/* Common configuration register offsets (struct virtio_pci_common_cfg) */
#define CC_DFSELECT     0x00
#define CC_DF           0x04
#define CC_GFSELECT     0x08
#define CC_GF           0x0c
#define CC_MSIX_CONFIG  0x10
#define CC_NUM_QUEUES   0x12
#define CC_STATUS       0x14
#define CC_CFG_GEN      0x15
#define CC_Q_SELECT     0x16
#define CC_Q_SIZE       0x18
#define CC_Q_MSIX       0x1a
#define CC_Q_ENABLE     0x1c
#define CC_Q_NOFF       0x1e
#define CC_Q_DESC       0x20
#define CC_Q_DRIVER     0x28
#define CC_Q_DEVICE     0x30

struct virtio_pci {
	struct pci_device pdev;
	struct virtio_device *vdev;
	struct irq_sender irq;         /* the doorbells' ioeventfds */
	unsigned nvectors;             /* config + one per queue */
	uint32_t dfselect, gfselect;
	uint16_t q_select;
	uint64_t doorbells_at;         /* guest address of the registered ioeventfds, 0 = none */
	pthread_mutex_t doorbell_lock;
};

/* (Un)binds a queue's 16-bit doorbell write at addr to its eventfd. */
static int vpci_doorbell(struct virtio_pci *vp, uint64_t addr, int fd, bool assign)
{
	return vp->irq.ops->ioeventfd(vp->irq.opaque, addr, 2, false, false, 0, fd, assign);
}



static void common_image(struct virtio_pci *vp, uint8_t img[VPCI_COMMON_LEN])
{
	struct virtio_device *d = vp->vdev;
	memset(img, 0, VPCI_COMMON_LEN);
	le_put(img + CC_DFSELECT, 4, vp->dfselect);
	if (vp->dfselect < 2)
		le_put(img + CC_DF, 4, d->device_features >> (32 * vp->dfselect));
	le_put(img + CC_GFSELECT, 4, vp->gfselect);
	if (vp->gfselect < 2)
		le_put(img + CC_GF, 4, d->driver_features >> (32 * vp->gfselect));
	le_put(img + CC_MSIX_CONFIG, 2, d->config_vector);
	le_put(img + CC_NUM_QUEUES, 2, d->ops->num_queues);
	img[CC_STATUS] = virtio_get_status(d);
	img[CC_CFG_GEN] = d->config_generation;
	le_put(img + CC_Q_SELECT, 2, vp->q_select);
	if (vp->q_select < d->ops->num_queues) {
		const struct virtio_queue *q = &d->queues[vp->q_select];
		le_put(img + CC_Q_SIZE, 2, q->size);
		le_put(img + CC_Q_MSIX, 2, q->vector);
		le_put(img + CC_Q_ENABLE, 2, q->enabled);
		le_put(img + CC_Q_NOFF, 2, vp->q_select);
		le_put(img + CC_Q_DESC, 8, q->desc);
		le_put(img + CC_Q_DRIVER, 8, q->driver);
		le_put(img + CC_Q_DEVICE, 8, q->device);
	}
}

/* A vector the driver may use, or VIRTIO_NO_VECTOR (which tells it the assignment failed). */
static uint16_t checked_vector(struct virtio_pci *vp, uint64_t v)
{
	return v < vp->nvectors ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

/* Updates one half (or all) of a 64-bit ring address of a queue that is not enabled yet. */
static void set_addr(uint64_t *field, unsigned part_off, const uint8_t *data, uint32_t len)
{
	if (len == 8 && part_off == 0)
		*field = le_get(data, 8);
	else if (len == 4 && part_off == 0)
		*field = (*field & ~0xffffffffULL) | le_get(data, 4);
	else if (len == 4 && part_off == 4)
		*field = (*field & 0xffffffffULL) | (le_get(data, 4) << 32);
}

static void common_write(struct virtio_pci *vp, uint32_t off, const uint8_t *data, uint32_t len)
{
	struct virtio_device *d = vp->vdev;
	uint64_t v = le_get(data, len);
	struct virtio_queue *q = vp->q_select < d->ops->num_queues ? &d->queues[vp->q_select] : NULL;
	bool features_locked = d->status & VIRTIO_STATUS_FEATURES_OK;
	switch (off) {
	case CC_DFSELECT: if (len == 4) vp->dfselect = (uint32_t)v; return;
	case CC_GFSELECT: if (len == 4) vp->gfselect = (uint32_t)v; return;
	case CC_GF:
		if (len == 4 && vp->gfselect < 2 && !features_locked) {
			unsigned sh = 32 * vp->gfselect;
			d->driver_features = (d->driver_features & ~(0xffffffffULL << sh)) | (v << sh);
		}
		return;
	case CC_MSIX_CONFIG: if (len == 2) d->config_vector = checked_vector(vp, v); return;
	case CC_STATUS: if (len == 1) virtio_set_status(d, (uint8_t)v); return;
	case CC_Q_SELECT: if (len == 2) vp->q_select = (uint16_t)v; return;
	}
	if (!q)
		return; /* queue registers of a queue that does not exist: ignored */
	if (off == CC_Q_MSIX && len == 2) {
		q->vector = checked_vector(vp, v);
		return;
	}
	if (q->enabled) {
		/* The layout of an enabled queue is fixed until reset (virtio 1.x 4.1.4.3.2). */
		if (off == CC_Q_SIZE || (off >= CC_Q_DESC && off < CC_Q_DEVICE + 8))
			virtio_device_broken(d, "the guest changed an enabled queue");
		return;
	}
	if (off == CC_Q_SIZE && len == 2)
		/* Above the device's maximum is refused like a bad size: enabling then fails and the
		 * device reports NEEDS_RESET (virtq_setup rejects size 0). */
		q->size = v <= d->ops->queue_size ? (uint16_t)v : 0;
	else if (off == CC_Q_ENABLE && len == 2 && v == 1)
		virtio_queue_enable(d, vp->q_select);
	else if (off >= CC_Q_DESC && off < CC_Q_DESC + 8)
		set_addr(&q->desc, off - CC_Q_DESC, data, len);
	else if (off >= CC_Q_DRIVER && off < CC_Q_DRIVER + 8)
		set_addr(&q->driver, off - CC_Q_DRIVER, data, len);
	else if (off >= CC_Q_DEVICE && off < CC_Q_DEVICE + 8)
		set_addr(&q->device, off - CC_Q_DEVICE, data, len);
}

static void virtio_pci_bar_access(struct pci_device *pdev, int bar, uint64_t offset,
				  uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pci *vp = pdev->opaque;
	struct virtio_device *d = vp->vdev;
	(void)bar;
	if (!is_write)
		memset(data, 0, len);
	if (len == 0 || len > 8)
		return;
	if (offset >= VPCI_NOTIFY &&
	    offset < VPCI_NOTIFY + (uint64_t)VPCI_NOTIFY_MULT * d->ops->num_queues) {
		/* Reached when the doorbell has no ioeventfd, or for writes of other widths. */
		if (is_write) {
			uint64_t one = 1;
			unsigned q = (unsigned)(offset - VPCI_NOTIFY) / VPCI_NOTIFY_MULT;
			if (write(d->queues[q].notify_fd, &one, sizeof(one)) != sizeof(one))
				log_debug("%s: doorbell of queue %u lost", d->ops->name, q);
		}
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (offset < VPCI_COMMON + VPCI_COMMON_LEN && offset + len <= VPCI_COMMON_LEN) {
		if (is_write) {
			common_write(vp, (uint32_t)offset, data, len);
		} else {
			uint8_t img[VPCI_COMMON_LEN];
			common_image(vp, img);
			memcpy(data, img + offset, len);
		}
	} else if (offset >= VPCI_ISR && offset < VPCI_ISR + VPCI_ISR_LEN) {
		if (!is_write) {
			/* Reading the ISR acknowledges it and lowers INTx (virtio 1.x 4.1.4.5). */
			data[0] = (uint8_t)atomic_exchange(&d->isr, 0);
			pci_intx_set(&vp->pdev, 0);
		}
	} else if (offset >= VPCI_DEVICE && offset - VPCI_DEVICE + len <= d->ops->config_size) {
		uint32_t off = (uint32_t)(offset - VPCI_DEVICE);
		if (!is_write)
			d->ops->config_read(d, off, data, len);
		else if (d->ops->config_write)
			d->ops->config_write(d, off, data, len);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Moves the doorbells' ioeventfds to where the BAR decodes now (or removes them). */
static void virtio_pci_bar_changed(struct pci_device *pdev, int bar)
{
	struct virtio_pci *vp = pdev->opaque;
	struct virtio_device *d = vp->vdev;
	if (bar != VPCI_BAR)
		return;
	pthread_mutex_lock(&vp->doorbell_lock);
	uint64_t want = pdev->bars[bar].active ? pdev->bars[bar].addr + VPCI_NOTIFY : 0;
	if (want != vp->doorbells_at) {
		for (uint16_t q = 0; q < d->ops->num_queues; q++) {
			int fd = d->queues[q].notify_fd;
			if (vp->doorbells_at)
				vpci_doorbell(vp, vp->doorbells_at + q * VPCI_NOTIFY_MULT, fd, false);
			/* If KVM refuses, the doorbell still works through an exit to kvmkit. */
			if (want && vpci_doorbell(vp, want + q * VPCI_NOTIFY_MULT, fd, true) < 0)
				log_debug("%s: queue %u doorbell without ioeventfd", d->ops->name, q);
		}
		vp->doorbells_at = want;
	}
	pthread_mutex_unlock(&vp->doorbell_lock);
}

static void virtio_pci_raise(struct virtio_device *d, uint16_t vector)
{
	struct virtio_pci *vp = d->transport;
	if (pci_msix_enabled(&vp->pdev)) {
		if (vector != VIRTIO_NO_VECTOR)
			pci_msix_notify(&vp->pdev, vector);
	} else {
		pci_intx_set(&vp->pdev, 1); /* until the driver reads the ISR */
	}
}

static void add_cap(struct pci_device *pdev, uint8_t type, uint32_t offset, uint32_t length,
		    const uint32_t *notify_mult)
{
	uint8_t body[18] = { 0 };
	uint8_t len = notify_mult ? 18 : 14;
	body[0] = (uint8_t)(len + 2); /* cap_len counts the ID and next bytes too */
	body[1] = type;
	body[2] = VPCI_BAR;
	le_put(body + 6, 4, offset);
	le_put(body + 10, 4, length);
	if (notify_mult)
		le_put(body + 14, 4, *notify_mult);
	pci_add_capability(pdev, PCI_CAP_ID_VNDR, body, len, NULL);
}

static uint32_t class_of(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET: return 0x020000;     /* Ethernet controller */
	case VIRTIO_ID_BLOCK: return 0x010000;   /* SCSI storage controller, as QEMU says */
	case VIRTIO_ID_CONSOLE: return 0x078000; /* communication controller */
	default: return 0x00ff00;                /* unclassified */
	}
}

struct virtio_pci *virtio_pci_create(const struct device_ctx *ctx, struct virtio_device *vdev)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return NULL;
	vp->vdev = vdev;
	vp->irq = ctx->irq;
	vp->nvectors = 1u + vdev->ops->num_queues;
	pthread_mutex_init(&vp->doorbell_lock, NULL);
	vdev->transport = vp;
	vdev->raise = virtio_pci_raise;

	struct pci_device *pdev = &vp->pdev;
	pdev->bar_access = virtio_pci_bar_access;
	pdev->bar_changed = virtio_pci_bar_changed;
	pdev->opaque = vp;
	pci_bar_init(pdev, VPCI_BAR, VPCI_BAR_SIZE, false, false);
	const uint32_t mult = VPCI_NOTIFY_MULT;
	add_cap(pdev, VPCI_CAP_COMMON, VPCI_COMMON, VPCI_COMMON_LEN, NULL);
	add_cap(pdev, VPCI_CAP_ISR, VPCI_ISR, VPCI_ISR_LEN, NULL);
	if (vdev->ops->config_size) /* optional; a zero-length one would confuse drivers */
		add_cap(pdev, VPCI_CAP_DEVICE, VPCI_DEVICE, vdev->ops->config_size, NULL);
	add_cap(pdev, VPCI_CAP_NOTIFY, VPCI_NOTIFY, VPCI_NOTIFY_MULT * vdev->ops->num_queues, &mult);
	int r = pci_msix_init(pdev, vp->nvectors, VPCI_BAR, VPCI_MSIX_TABLE, VPCI_MSIX_PBA);
	const struct pci_device_info info = {
		.vendor_id = VIRTIO_PCI_VENDOR,
		.device_id = (uint16_t)(VIRTIO_PCI_DEVICE0 + vdev->ops->device_id),
		.subsystem_vendor_id = VIRTIO_PCI_VENDOR,
		.subsystem_id = (uint16_t)vdev->ops->device_id,
		.revision = 1, /* modern-only devices have revision >= 1 */
		.class_code = class_of(vdev->ops->device_id),
		.interrupt_pin = 1,
	};
	/* The machine's table puts the bus before the devices on it. */
	struct pci_bus *bus = device_find(ctx->registry, &pci_bus_ops, 0);
	if (r == 0)
		r = bus ? pci_device_register(bus, pdev, &info) : -ENODEV;
	if (r < 0) {
		log_error("%s: cannot add the PCI device: %s", vdev->ops->name, strerror(-r));
		pthread_mutex_destroy(&vp->doorbell_lock);
		free(vp);
		return NULL;
	}
	return vp;
}

/* The common configuration's select registers (the device and PCI state travel separately). */
void virtio_pci_save(struct virtio_pci *vp, struct stream *s)
{
	pthread_mutex_lock(&vp->vdev->lock);
	stream_put_u32(s, vp->dfselect);
	stream_put_u32(s, vp->gfselect);
	stream_put_u16(s, vp->q_select);
	pthread_mutex_unlock(&vp->vdev->lock);
}

int virtio_pci_load(struct virtio_pci *vp, struct stream *s)
{
	uint32_t dfselect = stream_get_u32(s), gfselect = stream_get_u32(s);
	uint16_t q_select = stream_get_u16(s);
	if (stream_error(s))
		return -EBADMSG;
	/* Any value is one a guest could have written: out-of-range selects read as zero. */
	pthread_mutex_lock(&vp->vdev->lock);
	vp->dfselect = dfselect;
	vp->gfselect = gfselect;
	vp->q_select = q_select;
	pthread_mutex_unlock(&vp->vdev->lock);
	return 0;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	pci_device_unregister(&vp->pdev);
	vp->vdev->raise = NULL; /* the device is stopped (virtio_transport_destroy) */
	pthread_mutex_lock(&vp->doorbell_lock);
	for (uint16_t q = 0; vp->doorbells_at && q < vp->vdev->ops->num_queues; q++)
		vpci_doorbell(vp, vp->doorbells_at + q * VPCI_NOTIFY_MULT,
			      vp->vdev->queues[q].notify_fd, false);
	pthread_mutex_unlock(&vp->doorbell_lock);
	pthread_mutex_destroy(&vp->doorbell_lock);
	free(vp);
}
