/* The machine: the table of the devices a VM can have, from which its set-up creates those its
 * configuration asks for. Adding a device: its file, and one line here. */
#include "vmm/machine.h"

#include "hw/devices.h"
#include "firmware/fw_cfg.h"
#include "hw/pci.h"
#include "virtio/devices.h"

extern const struct device_ops debugcon_ops; /* hw/debugcon.c */
extern const struct device_ops port92_ops;   /* hw/port92.c */

/* The virtio devices' back-ends run on an I/O thread. */
bool machine_wants_io(const struct vm_config *cfg)
{
	return cfg->ndisks || cfg->rng || cfg->nnics || cfg->vconsole.path;
}

static unsigned machine_one(const struct vm_config *cfg)
{
	(void)cfg;
	return 1;
}

static unsigned machine_if_firmware(const struct vm_config *cfg)
{
	return cfg->firmware != NULL;
}

static unsigned machine_if_testdev(const struct vm_config *cfg)
{
	return cfg->testdev;
}

/* The PCI bus only when virtio devices sit on it: a VM without them keeps the smaller
 * machine (no PCI probing at boot). */
static unsigned machine_if_pci(const struct vm_config *cfg)
{
	return cfg->firmware || (machine_wants_io(cfg) && cfg->transport == VIRTIO_TRANSPORT_PCI);
}

/* Firmware expects a Q35 chipset (the MCH and ICH9 LPC identities, PCIEXBAR, PMBASE, 0xCF9);
 * direct kernel boot keeps kvmkit's generic host bridge and fixed windows. */
static const void *machine_pci_config(const struct vm_config *cfg, unsigned i)
{
	static const struct pci_bus_config q35 = { .q35 = true, .hole_base = 0 /* 2 GiB */ };
	(void)i;
	return cfg->firmware ? &q35 : NULL;
}

static unsigned machine_ndisks(const struct vm_config *cfg)
{
	return cfg->ndisks;
}

static unsigned machine_if_rng(const struct vm_config *cfg)
{
	return cfg->rng;
}

static unsigned machine_nnics(const struct vm_config *cfg)
{
	return cfg->nnics;
}

static unsigned machine_if_vconsole(const struct vm_config *cfg)
{
	return cfg->vconsole.path != NULL;
}

static const void *machine_console(const struct vm_config *cfg, unsigned i)
{
	(void)i;
	return cfg->console;
}

static const void *machine_firmware_log(const struct vm_config *cfg, unsigned i)
{
	(void)i;
	return cfg->firmware_log_fd > 2 ? &cfg->firmware_log_fd : NULL;
}

static const void *machine_disk(const struct vm_config *cfg, unsigned i)
{
	return &cfg->disks[i];
}

static const void *machine_nic(const struct vm_config *cfg, unsigned i)
{
	return &cfg->nics[i];
}

static const void *machine_vconsole(const struct vm_config *cfg, unsigned i)
{
	(void)i;
	return &cfg->vconsole;
}

/* The machine: every device it can have, how many of each the configuration asks for and the
 * part of it each is given, in creation order. That order is also the devices' stable ids
 * (a section tag's instances are counted in it), the order their sections are saved in, and
 * (reversed) the order they are destroyed in: append new devices at the end of their group. */
const struct machine_device machine_devices[] = {
	{ &serial_8250_ops, machine_one, machine_console },
	{ &rtc_mc146818_ops, machine_one, NULL },
	{ &i8042_ops, machine_one, NULL },
	{ &acpi_pm_ops, machine_one, NULL },
	{ &debug_exit_ops, machine_one, NULL },
	{ &pc_testdev_ops, machine_if_testdev, NULL },
	{ &debugcon_ops, machine_one, machine_firmware_log },
	{ &port92_ops, machine_one, NULL },
	{ &fw_cfg_ops, machine_if_firmware, NULL },  /* items added by vm.c before the boot */
	{ &pci_bus_ops, machine_if_pci, machine_pci_config },
	/* virtio: "VIRT" instances count the disks, the rng, the NICs, the console in this order */
	{ &virtio_blk_ops, machine_ndisks, machine_disk },
	{ &virtio_rng_ops, machine_if_rng, NULL },
	{ &virtio_net_ops, machine_nnics, machine_nic },
	{ &virtio_console_ops, machine_if_vconsole, machine_vconsole },
};

const size_t machine_ndevices = sizeof(machine_devices) / sizeof(machine_devices[0]);

int machine_realize(struct device_registry *reg, const struct device_ctx *ctx,
		    const struct vm_config *cfg)
{
	for (size_t k = 0; k < machine_ndevices; k++) {
		const struct machine_device *m = &machine_devices[k];
		unsigned n = m->count(cfg);
		for (unsigned i = 0; i < n; i++) {
			int r = device_realize(reg, m->ops, ctx, m->arg ? m->arg(cfg, i) : NULL);
			if (r < 0)
				return r;
		}
	}
	return 0;
}
