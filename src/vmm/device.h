/* The device interface: the handles a device is given (interrupts, machine requests, buses,
 * guest memory; never struct vm), the ops table each device implements, and the VM's registry
 * that creates, saves, loads, quiesces and destroys devices by stable id (tag + instance). */
#ifndef KVMKIT_VMM_DEVICE_H
#define KVMKIT_VMM_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/memory.h"

struct stream;
struct iothread;

/* How a run ended, in the order of precedence when several threads stop it at once. */
enum vm_stop_reason {
	VM_STOP_NONE = 0,
	VM_STOP_POWEROFF,   /* ACPI power-off: status 0 */
	VM_STOP_RESET,      /* guest reset: restart unless --no-reboot */
	VM_STOP_EXIT,       /* debug-exit port, quit key or signal: the given status */
	VM_STOP_ERROR,      /* vCPU failure or internal error: status 1 */
};

/* Process exit statuses, documented in the README. */
#define VM_EXIT_STATUS_POWEROFF 0
#define VM_EXIT_STATUS_ERROR    1
#define VM_EXIT_STATUS_RESET    2

/* The interrupt controller as a device sees it (as Firecracker's IrqTrigger and Cloud
 * Hypervisor's InterruptSourceGroup): legacy lines, MSI routes fed by irqfds, and doorbell
 * ioeventfds. The VM implements it over KVM (vmm/irq.c); unit tests with recording fakes. All
 * return 0 or -errno as irq.h documents; any thread. */
struct irq_ops {
	void (*set_line)(void *opaque, uint32_t gsi, int level);
	int (*msi_route_alloc)(void *opaque);
	void (*msi_route_free)(void *opaque, int gsi);
	int (*msi_route_set)(void *opaque, int gsi, uint64_t address, uint32_t data);
	int (*irqfd)(void *opaque, int eventfd, int gsi, bool assign);
	/* datamatch: only guest writes of the value `data` signal eventfd (len 1, 2, 4 or 8);
	 * otherwise any write of len bytes (0: any length). */
	int (*ioeventfd)(void *opaque, uint64_t addr, uint32_t len, bool is_pio, bool datamatch,
			 uint64_t data, int eventfd, bool assign);
};

struct irq_sender {
	const struct irq_ops *ops;
	void *opaque;
};

/* One legacy interrupt line (ISA IRQ or IOAPIC pin). */
struct irq_line {
	struct irq_sender irq;
	uint32_t gsi;
};

static inline void irq_line_set(const struct irq_line *l, int level)
{
	l->irq.ops->set_line(l->irq.opaque, l->gsi, level);
}

/* A device's request to the machine: power off, reset, exit with a status (vm_stop's rules:
 * the first request wins, an error overrides). Any thread. */
struct machine_handle {
	void (*stop)(void *opaque, enum vm_stop_reason reason, int exit_status);
	void *opaque;
};

static inline void machine_request_stop(const struct machine_handle *m,
					enum vm_stop_reason reason, int exit_status)
{
	m->stop(m->opaque, reason, exit_status);
}

/* The guest's clock as devices see it (QEMU's QEMU_CLOCK_VIRTUAL): monotonic nanoseconds that
 * stand still while the VM is paused, so a device timer does not jump across `stop`/`cont`.
 * now_ns NULL (unit tests' fake contexts): the host's monotonic clock. Any thread. */
struct guest_clock {
	uint64_t (*now_ns)(void *opaque);
	void *opaque;
};

uint64_t guest_clock_ns(const struct guest_clock *c);

struct device_registry;

/* What a device is given when it is realized; the VM's, valid until the device is destroyed.
 * Bus ranges are registered on pio/mmio and unregistered by the device's destroy. */
struct device_ctx {
	struct bus *pio, *mmio;
	struct guest_mem *mem;        /* reached only through its checked helpers */
	struct iothread *io;          /* the device back-ends' thread, NULL if the VM has none */
	struct irq_sender irq;
	struct machine_handle machine;
	struct guest_clock clock;
	bool virtio_mmio;             /* virtio devices go on virtio-mmio (else on PCI) */
	struct device_registry *registry; /* for parts of a device with a section of their own */
};

/* A device kind. A device is one file: its private struct and a const table of these. */
struct device_ops {
	const char *name;     /* for messages: "serial port" */
	uint32_t tag;         /* its migration-stream section (STREAM_TAG), 0: saves nothing */
	uint32_t version;     /* the section version save writes */
	/* Creates the device from arg (its part of the configuration, or NULL) and registers
	 * its bus ranges. Returns its state, or NULL after printing why. */
	void *(*realize)(const struct device_ctx *ctx, const void *arg);
	/* Stops the device, unregisters its ranges and frees it. May be NULL (a part owned by
	 * another entry). */
	void (*destroy)(void *dev);
	/* The machine's reset as the chip sees it (may be NULL). */
	void (*reset)(void *dev);
	/* The section body; the VM is stopped. Load checks every field and returns 0 or
	 * -EBADMSG (damaged, or an unknown version). */
	void (*save)(void *dev, struct stream *s);
	int (*load)(void *dev, struct stream *s, uint32_t version);
	/* Around a snapshot or migration: nothing in flight and nothing writing guest RAM
	 * between quiesce and resume (both may be NULL). */
	void (*quiesce)(void *dev);
	void (*resume)(void *dev);
};

/* One device in the registry: stable id (ops->tag, instance) where instance counts the
 * devices of the same tag (or, without one, of the same ops) in creation order. */
struct device {
	const struct device_ops *ops;
	void *state;
	uint32_t instance;
	unsigned group;       /* the entries of one device (itself and its parts) share it */
};

#define DEVICE_MAX 96

struct device_registry {
	struct device devs[DEVICE_MAX];
	unsigned n;
	unsigned realizing;   /* the group of a realize in progress */
};

/* Creates a device (ops->realize) and enters it; its parts may enter themselves meanwhile
 * with device_register and follow it in the registry. Returns 0 or -errno (printed). */
int device_realize(struct device_registry *r, const struct device_ops *ops,
		   const struct device_ctx *ctx, const void *arg);
/* Enters a part of the device being realized (e.g. its virtio transport, which saves a
 * section of its own). Call last in the realize, when nothing can fail any more. */
int device_register(struct device_registry *r, const struct device_ops *ops, void *state);
/* The state of instance i of a kind, or NULL. */
void *device_find(const struct device_registry *r, const struct device_ops *ops, uint32_t i);
/* The entry of a section, or NULL. */
struct device *device_find_section(struct device_registry *r, uint32_t tag, uint32_t instance);
/* Resets every device in place. A guest reset today rebuilds the whole VM instead (vm_destroy
 * destroys the registry, vm_run realizes the table again); this is for a machine reset that
 * keeps the VM, as firmware reboots will need. */
void device_registry_reset(struct device_registry *r);
/* quiesce in creation order, resume in the reverse (a part resumes before its device). */
void device_registry_quiesce(struct device_registry *r);
void device_registry_resume(struct device_registry *r);
/* Destroys every device, the last created first. */
void device_registry_destroy(struct device_registry *r);

#endif
