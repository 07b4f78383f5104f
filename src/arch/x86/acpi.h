/* ACPI tables for the x86 machine (RSDP, RSDT/XSDT, FADT, FACS, MADT, MCFG, DSDT), built into guest RAM. */
#ifndef KVMKIT_ARCH_X86_ACPI_H
#define KVMKIT_ARCH_X86_ACPI_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"

/* One virtio-mmio device: its register window (32-bit address) and level-triggered GSI. */
struct acpi_virtio_mmio {
	uint64_t base;
	uint32_t size;
	uint32_t gsi;
};
#define ACPI_MAX_VIRTIO_MMIO 16

struct acpi_config {
	uint32_t ncpus; /* MADT: one Local APIC (or x2APIC when id > 254) entry per vCPU, APIC IDs 0..ncpus-1 */
	/* The PCI host bridge of hw/pci.c (layout in arch/x86/layout.h): an MCFG for its ECAM, and
	 * in the DSDT \_SB.PCI0 (PNP0A08: bus 0, the I/O and memory windows, a _PRT sending each
	 * slot's INTA-D to GSIs 16-19) plus a PNP0C02 device reserving the ECAM. */
	bool pci;
	/* Where the ECAM and the 32-bit BAR window are: 0 for kvmkit's own layout (layout.h's
	 * LAYOUT_PCI_*); under firmware, where it programs them (Q35: LAYOUT_Q35_*). */
	uint64_t ecam_base;
	uint64_t pci_mem_base, pci_mem_end;   /* [base, end) */
	/* In the DSDT, \_SB.VRnn for each (nn the index in hex): _HID "LNRO0005", _UID n, _CCA 1,
	 * _CRS { Memory32Fixed(ReadWrite, base, size), Interrupt(ResourceConsumer, Level,
	 * ActiveHigh, Exclusive) { gsi } }, as QEMU's microvm describes its virtio-mmio devices. */
	struct acpi_virtio_mmio virtio_mmio[ACPI_MAX_VIRTIO_MMIO];
	unsigned nvirtio_mmio;
};

/* Writes RSDP, RSDT, XSDT, FADT, FACS, MADT, DSDT (and with pci the MCFG) into guest RAM in
 * [LAYOUT_ACPI_START, LAYOUT_ACPI_END) and returns 0 and the RSDP's guest address in *rsdp_gpa
 * (always LAYOUT_ACPI_START, where guests scanning the BIOS area find it).
 * The whole area is rewritten (unused bytes zeroed) and only once everything fit, so a failure
 * leaves guest memory untouched.
 * Errors: -EINVAL (ncpus == 0, NULL argument, more than ACPI_MAX_VIRTIO_MMIO virtio-mmio
 * devices, one whose window is empty or not within 32 bits or whose GSI is no IOAPIC pin),
 * -ENOSPC (tables do not fit the area), -EFAULT (the area is not guest RAM), -ENOMEM. */
int acpi_build(const struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

/* The same tables for firmware to place (QEMU's etc/acpi/tables and etc/acpi/rsdp): built at
 * address 0, with every pointer field and every checksum listed, so the firmware's table
 * loader can add where it put the tables and fix the checksums (firmware/acpi_loader.c). */
#define ACPI_BLOB_MAX_TABLES (64u << 10)
#define ACPI_BLOB_MAX_FIXUPS 32
#define ACPI_RSDP_SIZE 36

struct acpi_blob_pointer {
	uint32_t offset;   /* of the field, in the tables (or in the RSDP) */
	uint8_t size;      /* 4 or 8 */
	bool in_rsdp;      /* the field is in the RSDP; it points into the tables either way */
};

struct acpi_blob_checksum {
	uint32_t start, length, at;   /* the bytes summed, and the checksum byte among them */
	bool in_rsdp;
};

struct acpi_blob {
	uint8_t *tables;
	size_t tables_len;
	uint8_t rsdp[ACPI_RSDP_SIZE];
	struct acpi_blob_pointer pointers[ACPI_BLOB_MAX_FIXUPS];
	unsigned npointers;
	struct acpi_blob_checksum checksums[ACPI_BLOB_MAX_FIXUPS];
	unsigned nchecksums;
	bool overflow;     /* more fixups than fit: acpi_build_blob fails */
};

int acpi_build_blob(const struct acpi_config *cfg, struct acpi_blob *out);
void acpi_blob_free(struct acpi_blob *b);

#endif
