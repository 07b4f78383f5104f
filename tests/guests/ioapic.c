/* Tier A guest: IOAPIC edge and level delivery, Remote IRR and EOI, coalescing, masking, the 8259
 * path and the STI interrupt shadow, raising lines through pc-testdev's port 0x2000 + line. */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "ioapic";

/* pc-testdev (QEMU's, and kvmkit's --testdev): a byte write of V to 0x2000 + N sets line N's
 * level to V != 0. Line 14 is free on kvmkit and, with no IDE disk, on QEMU's pc machine; line 5
 * is free on both, for the 8259 check. */
#define PORT_IRQ_LINE  0x2000
#define LINE           14
#define PIC_LINE       5
#define SAFETY_VECTOR  0x5f
/* Ring 0 is emulated on the CI's /dev/kvm (~2M instructions/s): the settle spin gives a late
 * delivery a few milliseconds to show up; the wait bounds a delivery that never comes. */
#define SETTLE_SPINS   2000
#define WAIT_SPINS     200000
/* The LAPIC timer (1 GHz bus on KVM and QEMU, divide by 1) as a watchdog for `sti; hlt`. */
#define SAFETY_COUNT   200000000u

static unsigned line = LINE, pin;     /* the line under test and its IOAPIC pin */
static uint8_t apic_id;
static volatile uint32_t hits;        /* deliveries of the vector under test */
static volatile uint32_t hold_eoi_at; /* the delivery that returns without EOI (0: none) */
static volatile uint32_t lower_at;    /* the delivery that lowers the line (0: none) */
static volatile bool irr_in_handler;  /* Remote IRR as the last handler saw it */
static volatile bool isr_missed;      /* a handler found its vector not in service */
static volatile uint32_t shadow_a, shadow_b, seen_a, seen_b;
static volatile bool safety_fired;
static int failures;

/* The runner puts "kvm-pvm" on the command line on the CI's /dev/kvm (shared/PLATFORM.md), which
 * breaks two things QEMU (TCG) and real KVM do: a check that fails there with exactly the
 * platform's symptom is reported as skipped, with the reason; any other failure still fails. */
static bool on_kvm_pvm;
#define PVM_AUTO_EOI "kvm-pvm EOIs an interrupt as it delivers it (the LAPIC in-service bit is " \
    "never set, Remote IRR clears at once; QEMU -accel kvm there sees the same)"
#define PVM_LATE_IRQ "kvm-pvm takes a pending interrupt only later, not right after the " \
    "instruction in the sti shadow (QEMU -accel kvm there sees the same)"

static void set_line(unsigned n, int level)
{
    outb(PORT_IRQ_LINE + n, (uint8_t)level);
}

/* Sets the level of the line under test. */
static void drive(int level)
{
    set_line(line, level);
}

static void line_irq(struct intr_frame *f)
{
    uint32_t n = ++hits;
    irr_in_handler = ioapic_redir_lo(pin) & IOAPIC_REMOTE_IRR;
    if (!(lapic_read(0x100 + (f->vector / 32) * 16) & (1u << (f->vector % 32))))
        isr_missed = true;
    seen_a = shadow_a;
    seen_b = shadow_b;
    if (n == lower_at)
        drive(0);
    if (n != hold_eoi_at)
        lapic_eoi();
}

static void pic_irq(struct intr_frame *f)
{
    (void)f;
    hits++;
    pic_eoi(PIC_LINE);
}

static void safety_irq(struct intr_frame *f)
{
    (void)f;
    safety_fired = true;
    lapic_eoi();
}

static void spin(uint32_t n)
{
    for (volatile uint32_t i = 0; i < n; i++)
        pause();
}

/* Waits (bounded) for hits to reach want, then gives an extra delivery time to arrive. */
static uint32_t hits_after(uint32_t want)
{
    for (uint32_t i = 0; i < WAIT_SPINS && hits < want; i++)
        pause();
    spin(SETTLE_SPINS);
    return hits;
}

static bool remote_irr(void)
{
    return ioapic_redir_lo(pin) & IOAPIC_REMOTE_IRR;
}

/* One line per check: ok, BAD, or skip (failed on kvm-pvm with its symptom: pvm_why), the
 * runner collects the skip reasons (up to " (") after "; reason: ". */
__attribute__((format(printf, 3, 4)))
static void check(bool ok, const char *pvm_why, const char *fmt, ...)
{
    bool skip = !ok && on_kvm_pvm && pvm_why;
    va_list ap;
    va_start(ap, fmt);
    kprintf("ioapic: %s ", ok ? "ok " : skip ? "skip" : "BAD");
    kvprintf(fmt, ap);
    if (skip)
        kprintf("; reason: %s", pvm_why);
    kprintf("\n");
    va_end(ap);
    if (!ok && !skip)
        failures++;
}

/* The reason to skip a check that depends on the in-service bit, if that is what failed. */
static const char *eoi_why(void)
{
    return isr_missed ? PVM_AUTO_EOI : NULL;
}

static bool cmdline_has(const struct multiboot_info *mbi, const char *word)
{
    if (!(mbi->flags & MULTIBOOT_INFO_CMDLINE) || !mbi->cmdline)
        return false;
    size_t n = strlen(word);
    for (const char *p = (const char *)(uintptr_t)mbi->cmdline; *p; p++)
        if ((p == (const char *)(uintptr_t)mbi->cmdline || p[-1] == ' ') &&
            memcmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* Routes the line's pin to vector (flags: IOAPIC_LEVEL, IOAPIC_MASKED) with a fresh count. */
static void begin(uint8_t vector, uint32_t flags, uint32_t hold, uint32_t lower)
{
    hits = 0;
    hold_eoi_at = hold;
    lower_at = lower;
    irr_in_handler = false;
    isr_missed = false;
    intr_set_handler(vector, line_irq);
    ioapic_route_mode(pin, vector, apic_id, flags);
}

/* Leaves the line low and the pin masked; a late delivery on vector is then a failure. */
static void end(uint8_t vector)
{
    drive(0);
    ioapic_route_mode(pin, vector, apic_id, IOAPIC_MASKED);
    spin(SETTLE_SPINS);
    intr_set_handler(vector, NULL);
}

/* QEMU's IOAPIC takes every write of 1 to an edge pin as an edge, whatever the level was, so
 * only what a real line can do is checked: rising edges deliver, falling ones do not. */
static void test_edge(void)
{
    begin(0x50, 0, 0, 0);
    drive(1);
    uint32_t raised = hits_after(1);
    drive(0);
    uint32_t lowered = hits_after(1);
    drive(1);
    uint32_t second = hits_after(2);
    drive(0);
    uint32_t end_low = hits_after(2);
    check(raised == 1 && lowered == 1 && second == 2 && end_low == 2, NULL,
          "edge: line %u, pin %u: one delivery per rising edge (after raise, lower, raise, lower: "
          "%u %u %u %u, want 1 1 2 2)", line, pin, raised, lowered, second, end_low);
    end(0x50);
}

/* The first delivery returns without EOI; the second lowers the line and EOIs. */
static void test_level(void)
{
    begin(0x51, IOAPIC_LEVEL, 1, 2);
    drive(1);
    uint32_t first = hits_after(1);
    check(first >= 1 && irr_in_handler && !isr_missed, eoi_why(), "level: delivered in service "
          "with Remote IRR set (%u deliveries; in the handler: in service %d, Remote IRR %d)",
          first, !isr_missed, irr_in_handler);
    bool held = remote_irr();
    check(first == 1 && held, eoi_why(), "level: line high, no EOI yet: not redelivered (%u "
          "deliveries), Remote IRR %d", first, held);
    lapic_eoi();
    uint32_t after_eoi = hits_after(2);
    bool cleared = !remote_irr();
    check(after_eoi == 2, eoi_why(), "level: redelivered after the EOI while the line is high (%u "
          "deliveries, want 2)", after_eoi);
    check(after_eoi == 2 && cleared, eoi_why(), "level: line lowered and EOI: no more "
          "deliveries (%u), Remote IRR clear %d", after_eoi, cleared);
    end(0x51);
}

/* Two edges while the vector is in service set the LAPIC's IRR once: one delivery after EOI. */
static void test_edge_coalesce(void)
{
    begin(0x52, 0, 1, 0);
    drive(1);
    drive(0);
    uint32_t first = hits_after(1);
    for (int i = 0; i < 2; i++) {
        drive(1);
        drive(0);
    }
    uint32_t in_service = hits_after(1);
    lapic_eoi();
    uint32_t after_eoi = hits_after(2);
    check(first == 1 && in_service == 1 && after_eoi == 2, eoi_why(),
          "edge: two edges while the vector is in service give one more delivery after EOI "
          "(%u %u %u, want 1 1 2)", first, in_service, after_eoi);
    end(0x52);
}

/* Pulses while Remote IRR is set are not remembered once the line is low at the EOI. */
static void test_level_coalesce(void)
{
    begin(0x53, IOAPIC_LEVEL, 1, 0);
    drive(1);
    uint32_t first = hits_after(1);
    drive(0);
    drive(1);
    drive(0);
    uint32_t pulsed = hits_after(1);
    lapic_eoi();
    uint32_t after_eoi = hits_after(1);
    check(first == 1 && pulsed == 1 && after_eoi == 1, eoi_why(),
          "level: pulses while Remote IRR is set, line low at EOI: no second delivery "
          "(%u %u %u, want 1 1 1)", first, pulsed, after_eoi);
    end(0x53);
}

static void test_level_masked(void)
{
    begin(0x54, IOAPIC_LEVEL | IOAPIC_MASKED, 0, 1);
    drive(1);
    drive(0);
    drive(1);
    uint32_t masked = hits_after(0);
    ioapic_route_mode(pin, 0x54, apic_id, IOAPIC_LEVEL);
    uint32_t unmasked = hits_after(1);
    check(masked == 0 && unmasked == 1, eoi_why(),
          "level: masked pin pulsed twice and left high: one delivery when unmasked "
          "(%u %u, want 0 1)", masked, unmasked);
    end(0x54);
}

/* The 82093AA ignores edges on a masked pin (they are not held pending). */
static void test_edge_masked(void)
{
    begin(0x55, IOAPIC_MASKED, 0, 0);
    drive(1);
    drive(0);
    uint32_t masked = hits_after(0);
    ioapic_route_mode(pin, 0x55, apic_id, 0);
    uint32_t unmasked = hits_after(0);
    drive(1);
    drive(0);
    uint32_t next = hits_after(1);
    check(masked == 0 && unmasked == 0 && next == 1, NULL,
          "edge: an edge on a masked pin is dropped, the next after unmasking is delivered "
          "(%u %u %u, want 0 0 1)", masked, unmasked, next);
    end(0x55);
}

/* An interrupt that became pending while IF=0 must end `sti; hlt` (the shadow makes the pair
 * atomic, it does not hide the interrupt); the LAPIC timer turns a hang into a failure. */
static void test_sti_hlt(void)
{
    begin(0x56, 0, 0, 0);
    safety_fired = false;
    intr_set_handler(SAFETY_VECTOR, safety_irq);
    cli();
    drive(1);
    drive(0);
    spin(SETTLE_SPINS);
    uint32_t before = hits;
    lapic_write(LAPIC_TIMER_DIV, 0xb);                 /* divide by 1 */
    lapic_write(LAPIC_LVT_TIMER, SAFETY_VECTOR);       /* one-shot */
    lapic_write(LAPIC_TIMER_INIT, SAFETY_COUNT);
    sti_hlt();
    cli();
    uint32_t woken = hits;
    bool timer = safety_fired;
    lapic_write(LAPIC_TIMER_INIT, 0);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
    sti();
    check(before == 0 && woken == 1 && !timer, NULL,
          "sti; hlt with an interrupt pending since IF=0: taken, hlt woken (%u %u, want 0 1; "
          "woken by the watchdog timer %d)", before, woken, timer);
    end(0x56);
}

/* The instruction after sti runs before a pending interrupt is taken, the next one after it. */
static void test_sti_shadow(void)
{
    begin(0x58, 0, 0, 0);
    cli();
    drive(1);
    drive(0);
    spin(SETTLE_SPINS);
    shadow_a = shadow_b = 0;
    seen_a = seen_b = 99;
    __asm__ volatile("sti; incl %0; incl %1; cli" : "+m"(shadow_a), "+m"(shadow_b) : : "memory");
    uint32_t taken = hits;
    sti();
    bool late = hits_after(1) == 1 && taken == 0;
    check(taken == 1 && seen_a == 1 && seen_b == 0, late ? PVM_LATE_IRQ : NULL,
          "sti shadow: one instruction runs after sti, then the pending interrupt (handler saw "
          "%u %u, want 1 0; %u deliveries before cli, want 1)", seen_a, seen_b, taken);
    end(0x58);
}

/* Lines 0-15 also reach the 8259: line 5 through the master PIC and LINT0 ExtINT. */
static void test_pic(void)
{
    hits = 0;
    intr_set_handler(PIC_VECTOR_BASE + PIC_LINE, pic_irq);
    lapic_write(LAPIC_LVT_LINT0, 0x700);
    pic_unmask(PIC_LINE);
    set_line(PIC_LINE, 1);
    uint32_t first = hits_after(1);
    set_line(PIC_LINE, 0);
    set_line(PIC_LINE, 1);
    uint32_t second = hits_after(2);
    set_line(PIC_LINE, 0);
    pic_mask(PIC_LINE);
    lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
    spin(SETTLE_SPINS);
    intr_set_handler(PIC_VECTOR_BASE + PIC_LINE, NULL);
    check(first == 1 && second == 2, NULL, "8259: line %u through LINT0 ExtINT, one delivery per "
          "edge (%u %u, want 1 2)", PIC_LINE, first, second);
}

int guest_main(const struct multiboot_info *mbi)
{
    on_kvm_pvm = cmdline_has(mbi, "kvm-pvm");
    if (on_kvm_pvm)
        kprintf("ioapic: kvm-pvm on the command line: its known faults are skipped\n");
    pin = acpi_isa_irq_gsi(LINE);
    pic_init();
    lapic_init(false);
    apic_id = lapic_id();
    ioapic_mask(pin);
    ioapic_mask(acpi_isa_irq_gsi(PIC_LINE));
    kprintf("ioapic: pc-testdev line %u -> IOAPIC pin %u, APIC ID %u\n", LINE, pin, apic_id);
    sti();
    test_edge();
    test_level();
    test_edge_coalesce();
    test_level_coalesce();
    test_level_masked();
    test_edge_masked();
    test_sti_hlt();
    test_sti_shadow();
    test_pic();
    /* GSIs 16-23 reach only the IOAPIC. kvmkit's pc-testdev drives them (the runner says so);
     * QEMU's accepts ISA lines 0-15 only and aborts on the others. */
    line = pin = 23;
    if (cmdline_has(mbi, "lines24"))
        test_edge();
    else
        kprintf("ioapic: skip edge: line %u, pin %u; reason: the VMM's pc-testdev drives ISA lines "
                "0-15 only (QEMU's aborts on the others)\n", line, pin);
    return failures ? 1 : 0;
}
