/* The VM's state other than RAM and configuration, as migration stream sections: every vCPU
 * ("CPU "), the irqchip ("IRQC": both 8259s and the IOAPIC), the PIT ("PIT "), the kvmclock
 * ("CLCK"), then each device of the VM's registry (vmm/device.h) in the machine's table order,
 * by stable id (its ops' tag, instance among that tag's devices): the platform devices ("SERL",
 * "RTC ", "KBC ", "ACPI"), the PCI bus ("PCI ") and the virtio devices, whose transports'
 * "VIRT" instances count the disks, the rng, the NICs, the console in this order, virtio-net's
 * "VNET" (instance: NIC index) and virtio-console's "VCON" preceding their "VIRT". Snapshots
 * write it after the RAM description; live migration sends it after the last RAM pass. */
#ifndef KVMKIT_MIGRATION_VMSTATE_H
#define KVMKIT_MIGRATION_VMSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/vm.h"

struct vm;
struct stream;
struct stream_section;


/* Whether this VM's state can be saved at all: 0, or -ENOTSUP after printing why (every device
 * kvmkit has can be saved today). */
int vmstate_check_supported(struct vm *vm);

/* Around a save (RAM included): stops the virtio devices, draining their requests so that none
 * is in flight in the saved state and none writes guest RAM while it is saved; then lets those
 * the driver had started go on from where their rings are. */
void vmstate_stop_devices(struct vm *vm);
void vmstate_restart_devices(struct vm *vm);

/* Writes the sections of all vCPUs, the irqchip, the PIT, the clock and the devices. Every vCPU
 * must be stopped (joined, or parked by vm_pause). Returns 0 or -errno after printing one
 * sentence saying what failed. */
int vmstate_save(struct vm *vm, struct stream *s);

/* Restore: which of vmstate's sections have been loaded (each exactly once). */
struct vmstate_loader {
	struct vm *vm;
	const char *source; /* the state file's name, for messages */
	bool *cpu_loaded; /* one per vCPU */
	bool irqchip, pit, clock;
	bool device_loaded[DEVICE_MAX]; /* by index in the registry */
};

int vmstate_loader_init(struct vmstate_loader *l, struct vm *vm, const char *source);
/* Loads the section just read if it is one of vmstate's (*handled set); 0 or -errno after
 * printing one sentence. */
int vmstate_load_section(struct vmstate_loader *l, const struct stream_section *sec,
			 struct stream *s, bool *handled);
/* After all sections, with check: every vCPU, the irqchip, the PIT, the clock and every device
 * must have been loaded (else -EBADMSG, printed). Frees the loader either way. */
int vmstate_loader_finish(struct vmstate_loader *l, bool check);

#endif
