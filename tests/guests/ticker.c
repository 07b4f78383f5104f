/* Tier A guest for the control socket tests (tests/control/): prints "ticker: tick N" ten times
 * a second, so a pause shows as a gap in the numbering-by-time, and ends with PASS when the
 * ACPI power button (QMP system_powerdown) raises an SCI with PWRBTN_STS set. Gives up after
 * 120 s. Not a run.sh test: it needs a monitor to drive it. */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "ticker";

#define PM1_PWRBTN        0x0100  /* PWRBTN_STS (PM1_STS), PWRBTN_EN (PM1_EN) */
#define FADT_SCI_INT      46      /* byte offsets in the FADT */
#define FADT_PM1A_EVT_BLK 56
#define TICK_HZ           100

static uint16_t pm1a_evt;
static volatile bool button_pressed;

static void sci_irq(struct intr_frame *f)
{
    (void)f;
    uint16_t sts = inw(pm1a_evt);
    if (sts & PM1_PWRBTN) {
        outw(pm1a_evt, PM1_PWRBTN);   /* write one to clear: the SCI line drops */
        button_pressed = true;
    }
    pic_eoi(9);
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    const uint8_t *fadt = (const uint8_t *)acpi_find_table("FACP");
    if (!fadt)
        guest_fail("no FADT");
    pm1a_evt = (uint16_t)(*(const uint32_t *)(fadt + FADT_PM1A_EVT_BLK));
    uint16_t sci = *(const uint16_t *)(fadt + FADT_SCI_INT);
    if (!pm1a_evt || sci != 9)
        guest_fail("FADT PM1a_EVT_BLK 0x%x, SCI %u: want a port and IRQ 9", pm1a_evt, sci);

    pic_init();
    lapic_init(true);
    intr_set_handler(PIC_VECTOR_BASE + 9, sci_irq);
    pic_unmask(9);
    outw((uint16_t)(pm1a_evt + 2), PM1_PWRBTN);   /* PWRBTN_EN */
    pit_start(TICK_HZ);
    kprintf("ticker: ready, PM1a_EVT at 0x%x\n", pm1a_evt);

    for (uint32_t tick = 0; tick < 1200; tick++) {
        pit_wait_ticks(TICK_HZ / 10);
        kprintf("ticker: tick %u\n", tick);
        if (button_pressed) {
            kprintf("ticker: power button pressed\n");
            return 0;
        }
    }
    guest_fail("no power button press in 120 s");
}
