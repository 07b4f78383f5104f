/* ACPI table finder for the guests: RSDP scan, RSDT/XSDT walk, MADT CPUs and overrides, FADT, \_S5. */
#ifndef GUEST_ACPI_H
#define GUEST_ACPI_H

#include "guest.h"

struct acpi_header {
    char sig[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem_id[6], oem_table_id[8];
    uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

/* The FADT fields the guests use (ACPI 6.x offsets; x_* exist only when length allows). */
struct acpi_fadt_info {
    uint32_t dsdt;          /* X_DSDT if present and below 4 GiB, else DSDT */
    uint32_t smi_cmd;
    uint8_t acpi_enable;
    uint32_t pm1a_cnt;      /* I/O port of PM1a_CNT (from X_PM1a_CNT_BLK if the legacy one is 0) */
    uint32_t pm_tmr;        /* I/O port of the PM timer (PM_TMR_LEN 4), 0 if there is none */
    bool pm_tmr_32bit;      /* TMR_VAL_EXT: 32 bits, else 24 */
};

/* Returns the table with this signature (checksum verified) or NULL. */
const struct acpi_header *acpi_find_table(const char sig[4]);
/* Fills ids with the APIC IDs of enabled MADT processors; returns how many (-1: no MADT). */
int acpi_madt_cpus(uint32_t *ids, int max);
/* The GSI an ISA IRQ is wired to, after the MADT's interrupt source overrides. */
unsigned acpi_isa_irq_gsi(unsigned irq);
bool acpi_fadt(struct acpi_fadt_info *out);
/* SLP_TYP value of the DSDT's \_S5_ package (its first element), or -1 if it cannot be found. */
int acpi_s5_slp_typ(const struct acpi_header *dsdt);

#endif
