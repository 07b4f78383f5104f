/* The virtio-mmio transport (virtio 1.x 4.2, register layout version 2): the device model's
 * registers in one 512-byte window, QueueNotify doorbells as data-matched ioeventfds, and a
 * level-triggered IOAPIC line that follows InterruptStatus. */
#include "virtio/virtio_mmio.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "virtio/virtio.h"
#include "vmm/bus.h"
#include "vmm/device.h"

#define VMMIO_MAGIC          0x74726976 /* "virt" */
#define VMMIO_VERSION        2          /* virtio 1.x ("modern"); 1 is the legacy layout */
#define VMMIO_VENDOR         0x554d4551 /* "QEMU": what Linux sees from QEMU's devices too */

/* Register offsets (virtio 1.x 4.2.2); all 32 bits wide */
#define R_MAGIC              0x000
#define R_VERSION            0x004
#define R_DEVICE_ID          0x008
#define R_VENDOR_ID          0x00c
#define R_DEVICE_FEATURES    0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES    0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL          0x030
#define R_QUEUE_NUM_MAX      0x034
#define R_QUEUE_NUM          0x038
#define R_QUEUE_READY        0x044
#define R_QUEUE_NOTIFY       0x050
#define R_INTERRUPT_STATUS   0x060
#define R_INTERRUPT_ACK      0x064
#define R_STATUS             0x070
#define R_QUEUE_DESC_LOW     0x080
#define R_QUEUE_DESC_HIGH    0x084
#define R_QUEUE_DRIVER_LOW   0x090
#define R_QUEUE_DRIVER_HIGH  0x094
#define R_QUEUE_DEVICE_LOW   0x0a0
#define R_QUEUE_DEVICE_HIGH  0x0a4
#define R_SHM_LEN_LOW        0x0b0 /* virtio 1.2 shared memory regions: this transport has none */
#define R_SHM_LEN_HIGH       0x0b4
#define R_CONFIG_GENERATION  0x0fc
#define R_CONFIG             0x100

_Static_assert(LAYOUT_VIRTIO_MMIO_SIZE > R_CONFIG, "the window holds the config space");
_Static_assert(LAYOUT_VIRTIO_MMIO_BASE + LAYOUT_VIRTIO_MMIO_COUNT * LAYOUT_VIRTIO_MMIO_SIZE <=
	       LAYOUT_IOAPIC_ADDR, "the windows lie below the IOAPIC");
_Static_assert(LAYOUT_VIRTIO_MMIO_BASE >= LAYOUT_PCI_ECAM_BASE + LAYOUT_PCI_ECAM_SIZE,
	       "the windows lie above the PCI ECAM and BAR window");
_Static_assert(VIRTIO_MMIO_GSI(LAYOUT_VIRTIO_MMIO_COUNT - 1) < LAYOUT_IOAPIC_PINS,
	       "every device has an IOAPIC pin");
_Static_assert(LAYOUT_VIRTIO_MMIO_COUNT <= 32, "slots fit the allocation mask");

struct virtio_mmio {
	struct virtio_device *vdev;
	struct bus *bus;           /* the VM's MMIO bus: windows are per bus */
	struct irq_sender irq;
	unsigned slot;
	uint64_t base;
	uint32_t gsi;
	/* Selectors, under vdev->lock */
	uint32_t dfselect, gfselect, q_select;
	/* The line follows "InterruptStatus != 0"; the lock orders the updates of the I/O thread
	 * (raise) and of vCPUs (ack, reset), so the last one to run sets the level that matches. */
	pthread_mutex_t irq_lock;
	bool line;
	uint32_t doorbells;        /* queues whose QueueNotify value has an ioeventfd */
	struct virtio_mmio *next;  /* in the registry */
};

/* The registry of live devices of every VM, for slot allocation and virtio_mmio_windows. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct virtio_mmio *registry;

/* Sets the line to what InterruptStatus says now. Any thread. */
static void irq_update(struct virtio_mmio *m)
{
	pthread_mutex_lock(&m->irq_lock);
	bool level = atomic_load(&m->vdev->isr) != 0;
	if (level != m->line) {
		m->line = level;
		m->irq.ops->set_line(m->irq.opaque, m->gsi, level);
	}
	pthread_mutex_unlock(&m->irq_lock);
}

/* The device model set ISR bits: one line for everything, so the vector does not matter. */
static void virtio_mmio_raise(struct virtio_device *d, uint16_t vector)
{
	(void)vector;
	struct virtio_mmio *m = d->transport;
	if (m) /* NULL: the transport is being destroyed (see virtio_mmio_destroy) */
		irq_update(m);
}

/* The selected queue, or NULL when QueueSel names none. */
static struct virtio_queue *selected_queue(struct virtio_mmio *m)
{
	struct virtio_device *d = m->vdev;
	return m->q_select < d->ops->num_queues ? &d->queues[m->q_select] : NULL;
}

static uint32_t reg_read(struct virtio_mmio *m, uint32_t off)
{
	struct virtio_device *d = m->vdev;
	const struct virtio_queue *q = selected_queue(m);
	switch (off) {
	case R_MAGIC: return VMMIO_MAGIC;
	case R_VERSION: return VMMIO_VERSION;
	case R_DEVICE_ID: return d->ops->device_id;
	case R_VENDOR_ID: return VMMIO_VENDOR;
	case R_DEVICE_FEATURES:
		return m->dfselect < 2 ? (uint32_t)(d->device_features >> (32 * m->dfselect)) : 0;
	case R_QUEUE_NUM_MAX: return q ? d->ops->queue_size : 0; /* 0: no such queue */
	case R_QUEUE_READY: return q ? q->enabled : 0;
	case R_INTERRUPT_STATUS: return atomic_load(&d->isr);
	case R_STATUS: return virtio_get_status(d);
	case R_SHM_LEN_LOW:
	case R_SHM_LEN_HIGH: return 0xffffffff; /* length -1: no region with that ID */
	case R_CONFIG_GENERATION: return d->config_generation;
	}
	/* The queue's layout registers are write-only; reading them back helps debugging. */
	if (!q)
		return 0;
	switch (off) {
	case R_QUEUE_NUM: return q->size;
	case R_QUEUE_DESC_LOW: return (uint32_t)q->desc;
	case R_QUEUE_DESC_HIGH: return (uint32_t)(q->desc >> 32);
	case R_QUEUE_DRIVER_LOW: return (uint32_t)q->driver;
	case R_QUEUE_DRIVER_HIGH: return (uint32_t)(q->driver >> 32);
	case R_QUEUE_DEVICE_LOW: return (uint32_t)q->device;
	case R_QUEUE_DEVICE_HIGH: return (uint32_t)(q->device >> 32);
	}
	return 0;
}

/* Sets the low (high == false) or high half of a ring address. */
static void set_half(uint64_t *field, bool high, uint32_t v)
{
	if (high)
		*field = (*field & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*field = (*field & ~0xffffffffULL) | v;
}

/* QueueReady: 1 maps the rings as configured; 0 takes the queue back, which Linux does when it
 * deletes its queues (normally after a reset, when nothing is enabled any more). */
static void queue_ready_write(struct virtio_mmio *m, struct virtio_queue *q, uint32_t v)
{
	struct virtio_device *d = m->vdev;
	if (v == 1 && !q->enabled) {
		/* A size above QueueNumMax was stored as 0, which virtq_setup refuses. */
		virtio_queue_enable(d, (uint16_t)m->q_select);
	} else if (v == 0 && q->enabled) {
		/* A running device may be using the rings on the I/O thread this very moment:
		 * only a reset can take them away (this transport offers no per-queue reset). */
		if (atomic_load(&d->running)) {
			virtio_device_broken(d, "the guest disabled a queue of a running device");
			return;
		}
		q->enabled = false;
		memset(&q->vq, 0, sizeof(q->vq));
	}
}

static void reg_write(struct virtio_mmio *m, uint32_t off, uint32_t v)
{
	struct virtio_device *d = m->vdev;
	struct virtio_queue *q = selected_queue(m);
	switch (off) {
	case R_DEVICE_FEATURES_SEL: m->dfselect = v; return;
	case R_DRIVER_FEATURES_SEL: m->gfselect = v; return;
	case R_DRIVER_FEATURES:
		/* Features are fixed once FEATURES_OK is set, until reset. */
		if (m->gfselect < 2 && !(d->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * m->gfselect;
			d->driver_features = (d->driver_features & ~(0xffffffffULL << sh)) |
					     ((uint64_t)v << sh);
		}
		return;
	case R_QUEUE_SEL: m->q_select = v; return;
	case R_INTERRUPT_ACK:
		atomic_fetch_and(&d->isr, ~v);
		irq_update(m);
		return;
	case R_STATUS:
		virtio_set_status(d, (uint8_t)v);
		if ((uint8_t)v == 0) {
			/* A reset returns every register to its initial value, and the ISR
			 * bits went with it: lower the line. */
			m->dfselect = m->gfselect = m->q_select = 0;
			irq_update(m);
		}
		return;
	}
	if (!q)
		return; /* queue registers of a queue that does not exist: ignored */
	if (off == R_QUEUE_READY) {
		queue_ready_write(m, q, v);
		return;
	}
	bool layout = off == R_QUEUE_NUM || (off >= R_QUEUE_DESC_LOW && off <= R_QUEUE_DEVICE_HIGH);
	if (layout && q->enabled) {
		/* The layout of an enabled queue is fixed until reset (virtio 1.x 4.2.3.2). */
		virtio_device_broken(d, "the guest changed an enabled queue");
		return;
	}
	switch (off) {
	case R_QUEUE_NUM:
		/* Above QueueNumMax (or beyond 16 bits) the driver broke the rules; 0 makes the
		 * enable fail rather than a truncated size quietly working. */
		q->size = v <= d->ops->queue_size ? (uint16_t)v : 0;
		return;
	case R_QUEUE_DESC_LOW:
	case R_QUEUE_DESC_HIGH: set_half(&q->desc, off == R_QUEUE_DESC_HIGH, v); return;
	case R_QUEUE_DRIVER_LOW:
	case R_QUEUE_DRIVER_HIGH: set_half(&q->driver, off == R_QUEUE_DRIVER_HIGH, v); return;
	case R_QUEUE_DEVICE_LOW:
	case R_QUEUE_DEVICE_HIGH: set_half(&q->device, off == R_QUEUE_DEVICE_HIGH, v); return;
	}
}

/* A QueueNotify write that KVM did not complete: no ioeventfd (or none for this value). */
static void notify(struct virtio_mmio *m, uint32_t v)
{
	struct virtio_device *d = m->vdev;
	if (v >= d->ops->num_queues)
		return; /* no such queue */
	uint64_t one = 1;
	if (write(d->queues[v].notify_fd, &one, sizeof(one)) != sizeof(one))
		log_debug("%s: doorbell of queue %u lost", d->ops->name, v);
}

static void virtio_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			       bool is_write)
{
	struct virtio_mmio *m = opaque;
	struct virtio_device *d = m->vdev;
	if (!is_write)
		memset(data, 0, len);
	if (len == 0 || len > 8)
		return;
	if (offset >= R_CONFIG) {
		/* The device configuration takes any width the driver uses for a field. */
		uint64_t off = offset - R_CONFIG;
		if (off + len > d->ops->config_size)
			return;
		pthread_mutex_lock(&d->lock);
		if (!is_write)
			d->ops->config_read(d, (uint32_t)off, data, len);
		else if (d->ops->config_write)
			d->ops->config_write(d, (uint32_t)off, data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	/* Control registers: 32-bit aligned accesses only (virtio 1.x 4.2.2.2); others are
	 * ignored and read as 0. */
	if (len != 4 || offset % 4)
		return;
	uint32_t off = (uint32_t)offset;
	if (off == R_QUEUE_NOTIFY) {
		if (is_write)
			notify(m, (uint32_t)le_get(data, 4));
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (is_write)
		reg_write(m, off, (uint32_t)le_get(data, 4));
	else
		le_put(data, 4, reg_read(m, off));
	pthread_mutex_unlock(&d->lock);
}

/* Claims the lowest free window on m's MMIO bus and enters m in the registry.
 * A window whose device was destroyed stays claimed (bus ranges are never removed), which
 * bus_register reports as -EEXIST: that one is skipped. Returns 0, -ENOSPC or -errno. */
static int claim_slot(struct virtio_mmio *m)
{
	int r = -ENOSPC;
	pthread_mutex_lock(&registry_lock);
	uint32_t used = 0;
	for (const struct virtio_mmio *o = registry; o; o = o->next)
		if (o->bus == m->bus)
			used |= 1u << o->slot;
	for (unsigned n = 0; n < LAYOUT_VIRTIO_MMIO_COUNT; n++) {
		if (used & (1u << n))
			continue;
		uint64_t base = LAYOUT_VIRTIO_MMIO_BASE + n * LAYOUT_VIRTIO_MMIO_SIZE;
		r = bus_register(m->bus, base, LAYOUT_VIRTIO_MMIO_SIZE, virtio_mmio_access,
				 m, m->vdev->ops->name);
		if (r == -EEXIST) {
			r = -ENOSPC;
			continue;
		}
		if (r == 0) {
			m->slot = n;
			m->base = base;
			m->gsi = VIRTIO_MMIO_GSI(n);
			m->next = registry;
			registry = m;
		}
		break;
	}
	pthread_mutex_unlock(&registry_lock);
	return r;
}

static void registry_remove(struct virtio_mmio *m)
{
	pthread_mutex_lock(&registry_lock);
	for (struct virtio_mmio **p = &registry; *p; p = &(*p)->next) {
		if (*p == m) {
			*p = m->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

/* (Un)binds queue q's value on the shared QueueNotify register to its eventfd. */
static int mmio_doorbell(struct virtio_mmio *m, uint16_t q, bool assign)
{
	return m->irq.ops->ioeventfd(m->irq.opaque, m->base + R_QUEUE_NOTIFY, 4, false, true, q,
				     m->vdev->queues[q].notify_fd, assign);
}

static void unbind_doorbells(struct virtio_mmio *m)
{
	for (uint16_t q = 0; q < m->vdev->ops->num_queues; q++)
		if (m->doorbells & (1u << q))
			mmio_doorbell(m, q, false);
	m->doorbells = 0;
}

struct virtio_mmio *virtio_mmio_create(const struct device_ctx *ctx, struct virtio_device *vdev)
{
	const struct virtio_device_ops *ops = vdev->ops;
	if (ops->config_size > LAYOUT_VIRTIO_MMIO_SIZE - R_CONFIG) {
		log_error("%s: %u bytes of configuration do not fit a virtio-mmio window", ops->name,
			  ops->config_size);
		return NULL;
	}
	struct virtio_mmio *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->vdev = vdev;
	m->bus = ctx->mmio;
	m->irq = ctx->irq;
	pthread_mutex_init(&m->irq_lock, NULL);
	int r = claim_slot(m);
	if (r < 0) {
		if (r == -ENOSPC)
			log_error("%s: virtio-mmio has room for %u devices (one IOAPIC pin each, GSIs "
				  "%u-%u); use --transport pci for more", ops->name,
				  LAYOUT_VIRTIO_MMIO_COUNT, VIRTIO_MMIO_GSI(0),
				  VIRTIO_MMIO_GSI(LAYOUT_VIRTIO_MMIO_COUNT - 1));
		else
			log_error("%s: cannot place a virtio-mmio window: %s", ops->name,
				  strerror(-r));
		pthread_mutex_destroy(&m->irq_lock);
		free(m);
		return NULL;
	}
	vdev->transport = m;
	vdev->raise = virtio_mmio_raise;

	/* One ioeventfd per queue on the shared QueueNotify register, matched on the queue
	 * index written; if KVM refuses, the write exits to kvmkit and notify() rings. */
	for (uint16_t q = 0; q < ops->num_queues; q++) {
		if (mmio_doorbell(m, q, true) == 0)
			m->doorbells |= 1u << q;
		else
			log_debug("%s: queue %u doorbell without ioeventfd", ops->name, q);
	}
	log_debug("%s: virtio-mmio at %#llx, GSI %u", ops->name, (unsigned long long)m->base,
		  m->gsi);
	return m;
}

/* The window's place (checked on loading: the restored VM must have put the device in the same
 * window) and the selectors; the device's state travels in virtio_device_save. */
void virtio_mmio_save(struct virtio_mmio *m, struct stream *s)
{
	pthread_mutex_lock(&m->vdev->lock);
	stream_put_u64(s, m->base);
	stream_put_u32(s, m->gsi);
	stream_put_u32(s, m->dfselect);
	stream_put_u32(s, m->gfselect);
	stream_put_u32(s, m->q_select);
	pthread_mutex_unlock(&m->vdev->lock);
}

int virtio_mmio_load(struct virtio_mmio *m, struct stream *s)
{
	uint64_t base = stream_get_u64(s);
	uint32_t gsi = stream_get_u32(s);
	uint32_t dfselect = stream_get_u32(s), gfselect = stream_get_u32(s);
	uint32_t q_select = stream_get_u32(s);
	if (stream_error(s) || base != m->base || gsi != m->gsi)
		return -EBADMSG;
	pthread_mutex_lock(&m->vdev->lock);
	m->dfselect = dfselect;
	m->gfselect = gfselect;
	m->q_select = q_select;
	pthread_mutex_unlock(&m->vdev->lock);
	return 0;
}

void virtio_mmio_sync_irq(struct virtio_mmio *m)
{
	irq_update(m);
}

/* Stands in for virtio_mmio_raise once the transport is gone. */
static void raise_detached(struct virtio_device *d, uint16_t vector)
{
	(void)d, (void)vector;
}

void virtio_mmio_destroy(struct virtio_mmio *m)
{
	if (!m)
		return;
	struct virtio_device *d = m->vdev;
	/* The device outlives its transport (virtio_device_destroy comes next) but must not
	 * interrupt through it any more: reset it now, which waits for its in-flight work,
	 * and after which nothing raises (doorbells are ignored until DRIVER_OK). */
	pthread_mutex_lock(&d->lock);
	if (atomic_load(&d->running))
		virtio_set_status(d, 0);
	d->raise = raise_detached;
	d->transport = NULL;
	pthread_mutex_unlock(&d->lock);
	unbind_doorbells(m);
	registry_remove(m);
	pthread_mutex_destroy(&m->irq_lock);
	free(m);
}

unsigned virtio_mmio_windows(const struct bus *mmio, struct virtio_mmio_window *out,
			     unsigned max)
{
	unsigned n = 0;
	pthread_mutex_lock(&registry_lock);
	/* Walking the slots in order gives address order whatever the list order is. */
	for (unsigned slot = 0; slot < LAYOUT_VIRTIO_MMIO_COUNT; slot++) {
		for (const struct virtio_mmio *m = registry; m; m = m->next) {
			if (m->bus != mmio || m->slot != slot)
				continue;
			if (n < max)
				out[n] = (struct virtio_mmio_window){ m->base,
					(uint32_t)LAYOUT_VIRTIO_MMIO_SIZE, m->gsi };
			n++;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return n;
}
