/* Tier A guest: starts every AP listed in the MADT with INIT + SIPI and counts who checks in. */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "smp";

#define TRAMPOLINE_BASE 0x8000u          /* SIPI vector 0x08; free in kvmkit's and QEMU's layout */
#define MAX_CPUS        64
#define ICR_INIT        0x00004500u      /* INIT, level assert */
#define ICR_SIPI        0x00004600u      /* start-up; low byte = vector (page number) */

extern const char smp_trampoline_start[], smp_trampoline_end[];
volatile uint32_t smp_ap_count;          /* incremented by each AP with a lock prefix */

/* Waits (bounded, in PIT ticks of 10 ms) until at least 'want' APs have checked in. */
static bool wait_count(uint32_t want, uint32_t ticks)
{
    uint32_t start = pit_ticks;
    cli();
    while (smp_ap_count < want && pit_ticks - start < ticks) {
        sti_hlt();
        cli();
    }
    return smp_ap_count >= want;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint32_t ids[MAX_CPUS];
    int ncpus = acpi_madt_cpus(ids, MAX_CPUS);
    if (ncpus < 1)
        guest_fail("no MADT or no enabled CPU in it");

    pic_init();
    lapic_init(true);
    pit_start(100);   /* the clock for the INIT/SIPI delays and the bounded waits */
    uint8_t bsp = lapic_id();
    kprintf("smp: MADT lists %d enabled CPU(s); BSP is APIC ID %u\n", ncpus, bsp);

    memcpy((void *)TRAMPOLINE_BASE, smp_trampoline_start,
           (size_t)(smp_trampoline_end - smp_trampoline_start));

    uint32_t expected = 0;
    for (int i = 0; i < ncpus; i++) {
        if (ids[i] == bsp)
            continue;
        if (ids[i] > 0xff) {
            kprintf("smp: APIC ID %u needs x2APIC, skipped\n", ids[i]);
            continue;
        }
        expected++;
        uint8_t id = (uint8_t)ids[i];
        /* INIT puts the AP into wait-for-SIPI (under QEMU SeaBIOS left it halted, not waiting).
         * A second SIPI is sent only if the first did not take, so no AP runs the trampoline
         * twice and counts itself twice. */
        if (!lapic_send_ipi(id, ICR_INIT))
            kprintf("smp: INIT to APIC ID %u: delivery status stuck\n", id);
        pit_wait_ticks(2);
        for (int sipi = 0; sipi < 2 && smp_ap_count < expected; sipi++) {
            lapic_send_ipi(id, ICR_SIPI | (TRAMPOLINE_BASE >> 12));
            wait_count(expected, 20);
        }
        kprintf("smp: APIC ID %u %s\n", id, smp_ap_count >= expected ? "started" : "did not start");
    }
    wait_count(expected, 300);

    uint32_t started = 1 + smp_ap_count;
    kprintf("smp: cpus started: %u of %d\n", started, ncpus);
    return started == (uint32_t)ncpus ? 0 : 1;
}
