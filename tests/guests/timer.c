/* Tier A guest: PIT ticks via the 8259 and LAPIC timer ticks, each measured against the CMOS RTC;
 * the FADT's ACPI PM timer against the PIT. */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "timer";

#define TICK_HZ      100
#define LAPIC_VECTOR 0x40
/* Lenient on purpose: ring 0 is emulated slowly on the CI's /dev/kvm; this catches a dead,
 * stuck or wildly wrong clock (e.g. a 1000 Hz or 10 Hz tick), not a 5% drift. */
#define MIN_PER_SEC  40
#define MAX_PER_SEC  250

static volatile uint32_t lapic_ticks;

static void lapic_timer_irq(struct intr_frame *f)
{
    (void)f;
    lapic_ticks++;
    lapic_eoi();
}

static uint8_t rtc_seconds(void)
{
    outb(0x70, 0x00);
    return inb(0x71);
}

/* Counts how far *counter moves during one RTC second, boundary to boundary, halting between
 * interrupts. Each wait is bounded by the counter itself so a frozen RTC cannot hang the test. */
static bool per_rtc_second(volatile uint32_t *counter, uint32_t *ticks, uint64_t *tsc)
{
    uint8_t s0 = rtc_seconds();
    uint32_t start = *counter;
    cli();
    while (rtc_seconds() == s0) {
        if (*counter - start > 3 * MAX_PER_SEC)
            return false;
        sti_hlt();
        cli();
    }
    uint8_t s1 = rtc_seconds();
    uint32_t t1 = *counter;
    uint64_t tsc1 = rdtsc();
    while (rtc_seconds() == s1) {
        if (*counter - t1 > 3 * MAX_PER_SEC)
            return false;
        sti_hlt();
        cli();
    }
    *ticks = *counter - t1;
    *tsc = rdtsc() - tsc1;
    return true;
}

static bool plausible(const char *what, uint32_t n)
{
    bool ok = n >= MIN_PER_SEC && n <= MAX_PER_SEC;
    kprintf("timer: %s ticks in one RTC second: %u (programmed %u Hz, accepted %u..%u) %s\n", what,
            n, TICK_HZ, MIN_PER_SEC, MAX_PER_SEC, ok ? "ok" : "BAD");
    return ok;
}

/* The ACPI PM timer (3.579545 MHz; Linux's acpi_pm clocksource, OVMF's delays) over 10 PIT
 * ticks: about 357954 counts, read across its 24-bit (or 32-bit) wrap. */
static bool pm_timer_plausible(void)
{
    struct acpi_fadt_info fadt;
    if (!acpi_fadt(&fadt) || !fadt.pm_tmr || fadt.pm_tmr > 0xffff) {
        kprintf("timer: the FADT has no PM timer (PM_TMR_BLK 0 or PM_TMR_LEN not 4) BAD\n");
        return false;
    }
    uint32_t mask = fadt.pm_tmr_32bit ? 0xffffffffu : 0xffffffu;
    pit_wait_ticks(1);
    uint32_t t0 = inl((uint16_t)fadt.pm_tmr) & mask, total = 0, prev = t0;
    for (uint32_t n = 0; n < 10; n++) {
        pit_wait_ticks(1);
        uint32_t t = inl((uint16_t)fadt.pm_tmr) & mask;
        total += (t - prev) & mask; /* one tick is far shorter than a wrap (4.7 s) */
        prev = t;
    }
    /* Same leniency as the tick counts (MIN_PER_SEC..MAX_PER_SEC of TICK_HZ). */
    const uint32_t want = 357954, lo = want / TICK_HZ * MIN_PER_SEC, hi = want / TICK_HZ * MAX_PER_SEC;
    bool ok = total >= lo && total <= hi;
    kprintf("timer: ACPI PM timer at port 0x%x (%u bits) counted %u in 10 PIT ticks (want ~%u, "
            "accepted %u..%u) %s\n", fadt.pm_tmr, fadt.pm_tmr_32bit ? 32 : 24, total, want, lo,
            hi, ok ? "ok" : "BAD");
    return ok;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint32_t n;
    uint64_t tsc;
    int bad = 0;

    kprintf("timer: PIT channel 0 at %u Hz on IRQ 0 via the 8259, then the LAPIC timer\n", TICK_HZ);
    pic_init();
    lapic_init(true);   /* LINT0 = ExtINT: the 8259's output reaches this CPU */
    pit_start(TICK_HZ);

    pit_wait_ticks(2);
    kprintf("timer: PIT ticks arrive (%u so far)\n", pit_ticks);
    if (!per_rtc_second(&pit_ticks, &n, &tsc))
        guest_fail("RTC seconds (CMOS register 0) did not advance within %u PIT ticks",
                   3 * MAX_PER_SEC);
    bad += !plausible("PIT", n);
    kprintf("timer: TSC advanced %llu in that second (information only)\n", tsc);
    bad += !pm_timer_plausible();

    /* Calibrate the LAPIC timer (its input clock is the VMM's choice) over 10 PIT ticks, then
     * run it periodic at TICK_HZ on its own vector with the PIT silenced. */
    intr_set_handler(LAPIC_VECTOR, lapic_timer_irq);
    lapic_write(LAPIC_TIMER_DIV, 0x3);                        /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | LAPIC_VECTOR);
    pit_wait_ticks(1);
    lapic_write(LAPIC_TIMER_INIT, 0xffffffff);
    pit_wait_ticks(10);
    uint32_t per_tick = (0xffffffff - lapic_read(LAPIC_TIMER_CUR)) / 10;
    pit_stop();
    kprintf("timer: LAPIC timer counts %u per 10 ms (divide by 16)\n", per_tick);
    if (per_tick == 0)
        guest_fail("LAPIC timer current count does not move");

    lapic_write(LAPIC_TIMER_INIT, 0);                         /* stop before reprogramming */
    lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | LAPIC_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, per_tick);
    if (!per_rtc_second(&lapic_ticks, &n, &tsc))
        guest_fail("RTC seconds did not advance within %u LAPIC ticks", 3 * MAX_PER_SEC);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | LAPIC_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, 0);
    bad += !plausible("LAPIC", n);
    return bad ? 1 : 0;
}
