/* ACPI tables for the x86 machine (RSDP, RSDT/XSDT, FADT, FACS, MADT, DSDT), built into guest RAM. */
#ifndef KVMKIT_ARCH_X86_ACPI_H
#define KVMKIT_ARCH_X86_ACPI_H

#include <stdint.h>

#include "vmm/memory.h"

struct acpi_config {
	uint32_t ncpus; /* MADT: one Local APIC (or x2APIC when id > 254) entry per vCPU, APIC IDs 0..ncpus-1 */
	/* room to grow: PCI (MCFG), virtio-mmio devices in the DSDT come in a later issue */
};

/* Writes RSDP, RSDT, XSDT, FADT, FACS, MADT and DSDT into guest RAM in
 * [LAYOUT_ACPI_START, LAYOUT_ACPI_END) and returns 0 and the RSDP's guest address in *rsdp_gpa
 * (always LAYOUT_ACPI_START, where guests scanning the BIOS area find it).
 * The whole area is rewritten (unused bytes zeroed) and only once everything fit, so a failure
 * leaves guest memory untouched.
 * Errors: -EINVAL (ncpus == 0, NULL argument), -ENOSPC (tables do not fit the area),
 * -EFAULT (the area is not guest RAM), -ENOMEM. */
int acpi_build(const struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

#endif
