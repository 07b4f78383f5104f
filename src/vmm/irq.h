/* Interrupt plumbing beyond the ISA lines: the KVM GSI routing table (the irqchip's default
 * pins plus MSI routes), irqfds that let device threads raise interrupts without a vCPU, and
 * ioeventfds that turn guest doorbell writes into eventfd signals without an exit to kvmkit. */
#ifndef KVMKIT_VMM_IRQ_H
#define KVMKIT_VMM_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Installs the default routes, the same table KVM_CREATE_IRQCHIP sets up (GSIs 0-15 to the
 * 8259 pair, pin GSI % 8, and to IOAPIC pin GSI; GSIs 16-23 to the IOAPIC only):
 * KVM_SET_GSI_ROUTING replaces the whole table, so kvmkit keeps its own copy. Call once after
 * the irqchip exists; sets vm->irq. The number of GSIs is what KVM_CAP_IRQ_ROUTING reports,
 * capped at 1024. Returns 0 or -errno (-ENOTSUP: KVM has no GSI routing). */
int irq_routing_init(struct vm *vm);
void irq_routing_destroy(struct vm *vm);

/* Allocates a GSI for an MSI route (>= 24); it routes nowhere until irq_msi_route_set.
 * Returns the GSI, -ENOSPC, or -ENODEV before irq_routing_init. Thread-safe. */
int irq_msi_route_alloc(struct vm *vm);
/* Gives the GSI back (removing its route from KVM's table if it had one). Thread-safe. */
void irq_msi_route_free(struct vm *vm, int gsi);
/* Points an MSI route at (address, data) as the guest programmed them, and commits the table
 * to KVM. Thread-safe (a lock serialises updates). Returns 0 or -errno (-EINVAL: gsi was not
 * allocated; an error from KVM leaves the previous route in place). */
int irq_msi_route_set(struct vm *vm, int gsi, uint64_t address, uint32_t data);

/* Binds (assign) or unbinds an eventfd to a GSI: a write to the eventfd raises the interrupt
 * (edge, as MSI). Returns 0 or -errno. */
int irq_irqfd(struct vm *vm, int eventfd, int gsi, bool assign);

/* Binds (assign) or unbinds an eventfd to guest writes of `len` bytes (1, 2, 4, 8; or 0 for
 * any length) at `addr` in MMIO (or port I/O when is_pio). The write then completes inside
 * KVM and only signals the eventfd. Returns 0 or -errno. */
int irq_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, bool is_pio, int eventfd,
		  bool assign);
/* The same for writes whose value equals `datamatch` only (len 1, 2, 4 or 8; other values still
 * exit to kvmkit), so several doorbells can share one register, as virtio-mmio's QueueNotify
 * does. Unbinding needs the same addr, len, datamatch and eventfd. Returns 0 or -errno. */
int irq_ioeventfd_datamatch(struct vm *vm, uint64_t addr, uint32_t len, bool is_pio,
			    uint64_t datamatch, int eventfd, bool assign);

#endif
