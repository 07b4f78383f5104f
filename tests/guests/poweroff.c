/* Tier A guest: powers the machine off through ACPI (FADT PM1a_CNT, SLP_TYP from the DSDT's \_S5). */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "poweroff";

#define SCI_EN  0x0001
#define SLP_EN  0x2000

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    struct acpi_fadt_info fadt;
    if (!acpi_fadt(&fadt))
        guest_fail("no FADT (or bad checksums on the way to it)");
    const struct acpi_header *dsdt = (const void *)(uintptr_t)fadt.dsdt;
    if (!fadt.dsdt || memcmp(dsdt->sig, "DSDT", 4))
        guest_fail("FADT's DSDT pointer 0x%x does not point at a DSDT", fadt.dsdt);
    int slp_typ = acpi_s5_slp_typ(dsdt);
    if (slp_typ < 0)
        guest_fail("no \\_S5_ package found in the DSDT (%u bytes)", dsdt->length);
    if (!fadt.pm1a_cnt || fadt.pm1a_cnt > 0xffff)
        guest_fail("FADT PM1a_CNT_BLK 0x%x is not an I/O port", fadt.pm1a_cnt);
    uint16_t port = (uint16_t)fadt.pm1a_cnt;
    kprintf("poweroff: PM1a_CNT at port 0x%x, \\_S5_ SLP_TYP %d, SMI_CMD 0x%x\n", port, slp_typ,
            fadt.smi_cmd);

    /* As an OS does: if the firmware left the machine in legacy mode, ask it for ACPI mode. */
    if (!(inw(port) & SCI_EN) && fadt.smi_cmd && fadt.acpi_enable) {
        kprintf("poweroff: enabling ACPI mode (0x%x to port 0x%x)\n", fadt.acpi_enable, fadt.smi_cmd);
        outb((uint16_t)fadt.smi_cmd, fadt.acpi_enable);
        for (int i = 0; i < 10000 && !(inw(port) & SCI_EN); i++)
            pause();
    }

    uint16_t v = (uint16_t)((inw(port) & SCI_EN) | ((slp_typ & 7) << 10) | SLP_EN);
    kprintf("poweroff: writing 0x%x to PM1a_CNT\n", v);
    outw(port, v);

    /* A VMM may act on the write asynchronously (QEMU's main loop does), so the failure report
     * waits for wall-clock time, not for a number of instructions that TCG runs in no time. */
    pic_init();
    lapic_init(true);
    pit_start(100);
    pit_wait_ticks(300);
    guest_fail("still running 3 s after the S5 write");
}
