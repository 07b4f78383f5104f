/* kvmkit's ACPI tables handed to firmware through fw_cfg, with QEMU's table-loader script. */
#ifndef KVMKIT_FIRMWARE_ACPI_LOADER_H
#define KVMKIT_FIRMWARE_ACPI_LOADER_H

#include "arch/x86/acpi.h"
#include "firmware/fw_cfg.h"

/* The table-loader command (QEMU's BiosLinkerLoaderEntry, SeaBIOS's romfile_loader_entry_s):
 * 128 bytes, little-endian. */
#define ACPI_LOADER_ENTRY_SIZE 128
#define ACPI_LOADER_ALLOCATE 1
#define ACPI_LOADER_ADD_POINTER 2
#define ACPI_LOADER_ADD_CHECKSUM 3
#define ACPI_LOADER_ZONE_HIGH 1
#define ACPI_LOADER_ZONE_FSEG 2

#define ACPI_LOADER_RSDP_FILE "etc/acpi/rsdp"
#define ACPI_LOADER_TABLES_FILE "etc/acpi/tables"
#define ACPI_LOADER_SCRIPT_FILE "etc/table-loader"

/* Adds etc/acpi/tables, etc/acpi/rsdp and the etc/table-loader script that tells the firmware
 * to place them (the tables in high memory, the RSDP in the BIOS area where an OS finds it),
 * link their pointers and fix their checksums. Returns 0 or -errno. */
int acpi_loader_add(struct fw_cfg *fw, const struct acpi_blob *blob);

#endif
