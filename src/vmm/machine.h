/* The machine's table of devices (machine.c): which devices a VM has, created into its registry
 * (vmm/device.h) in the table's order, which is also their stable ids' order. */
#ifndef KVMKIT_VMM_MACHINE_H
#define KVMKIT_VMM_MACHINE_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/device.h"
#include "vmm/vm.h"

struct machine_device {
	const struct device_ops *ops;
	unsigned (*count)(const struct vm_config *cfg);              /* how many cfg asks for */
	const void *(*arg)(const struct vm_config *cfg, unsigned i); /* NULL: realize gets none */
};

extern const struct machine_device machine_devices[];
extern const size_t machine_ndevices;

/* Whether cfg asks for devices that need the VM's I/O thread (ctx->io). */
bool machine_wants_io(const struct vm_config *cfg);
/* Realizes every device cfg asks for into r, in the table's order. Returns 0 or -errno
 * (printed); the devices realized so far stay in r for device_registry_destroy. */
int machine_realize(struct device_registry *r, const struct device_ctx *ctx,
		    const struct vm_config *cfg);

#endif
