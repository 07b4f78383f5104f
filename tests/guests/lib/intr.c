/* IDT, dispatch, PIC, local APIC and IOAPIC helpers shared by the interrupt-driven guests. */
#include "intr.h"

struct idt_entry {
    uint16_t off_lo, sel;
    uint8_t zero, type;
    uint16_t off_hi;
} __attribute__((packed));

static struct idt_entry idt[256];
static intr_handler handlers[256];
extern const char isr_stubs[];   /* entry.S: one 16-byte stub per vector */

void isr_dispatch(struct intr_frame *f);

void idt_init(void)
{
    for (int v = 0; v < 256; v++) {
        uint32_t a = (uint32_t)(uintptr_t)(isr_stubs + 16 * v);
        idt[v] = (struct idt_entry){ (uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16) };
    }
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr = {
        sizeof(idt) - 1, (uint32_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void intr_set_handler(uint8_t vector, intr_handler h)
{
    handlers[vector] = h;
}

void isr_dispatch(struct intr_frame *f)
{
    if (handlers[f->vector]) {
        handlers[f->vector](f);
        return;
    }
    /* Spurious interrupts are legal and need no EOI: APIC spurious vector, PIC IRQ 7 and 15. */
    if (f->vector == LAPIC_SPURIOUS_VECTOR || f->vector == PIC_VECTOR_BASE + 7 ||
        f->vector == PIC_VECTOR_BASE + 15)
        return;
    if (f->vector < 32)
        guest_fail("exception %u (error code 0x%x) at eip 0x%x", f->vector, f->error, f->eip);
    guest_fail("unexpected interrupt on vector 0x%x at eip 0x%x", f->vector, f->eip);
}

/* --- 8259 PIC --- */
static uint16_t pic_masks = 0xffff;

static void pic_write_masks(void)
{
    outb(0x21, (uint8_t)pic_masks);
    outb(0xa1, (uint8_t)(pic_masks >> 8));
}

void pic_init(void)
{
    outb(0x20, 0x11);  outb(0xa0, 0x11);                      /* ICW1: edge, cascade, ICW4 */
    outb(0x21, PIC_VECTOR_BASE); outb(0xa1, PIC_VECTOR_BASE + 8); /* ICW2: vector bases */
    outb(0x21, 0x04);  outb(0xa1, 0x02);                      /* ICW3: slave on IRQ 2 */
    outb(0x21, 0x01);  outb(0xa1, 0x01);                      /* ICW4: 8086 mode */
    pic_masks = 0xffff & ~(1u << 2);                          /* cascade open, rest masked */
    pic_write_masks();
}

void pic_unmask(unsigned irq)
{
    pic_masks &= ~(1u << irq);
    pic_write_masks();
}

void pic_mask(unsigned irq)
{
    pic_masks |= 1u << irq;
    pic_write_masks();
}

void pic_eoi(unsigned irq)
{
    if (irq >= 8)
        outb(0xa0, 0x20);
    outb(0x20, 0x20);
}

/* --- Local APIC --- */
uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

void lapic_init(bool extint)
{
    lapic_write(LAPIC_SVR, 0x100 | LAPIC_SPURIOUS_VECTOR);   /* software enable first: LVT writes
                                                               * are forced masked while disabled */
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_LVT_LINT0, extint ? 0x700 : LAPIC_LVT_MASKED);  /* 0x700: ExtINT */
    lapic_write(LAPIC_LVT_LINT1, 0x400);                             /* NMI */
    lapic_write(LAPIC_LVT_ERROR, LAPIC_LVT_MASKED);
    lapic_write(0x080, 0);                                           /* TPR: accept all */
}

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
uint8_t lapic_id(void) { return (uint8_t)(lapic_read(LAPIC_ID) >> 24); }

bool lapic_send_ipi(uint8_t dest, uint32_t icr_lo)
{
    lapic_write(LAPIC_ICR_HI, (uint32_t)dest << 24);
    lapic_write(LAPIC_ICR_LO, icr_lo);
    for (int i = 0; i < 100000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
            return true;
    return false;
}

/* --- IOAPIC (index/data window at +0x00/+0x10) --- */
static void ioapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(IOAPIC_BASE, reg);
    mmio_write32(IOAPIC_BASE + 0x10, v);
}

void ioapic_route(unsigned gsi, uint8_t vector, uint8_t dest_apic_id)
{
    ioapic_write(0x10 + 2 * gsi + 1, (uint32_t)dest_apic_id << 24);
    ioapic_write(0x10 + 2 * gsi, vector);   /* fixed, physical, active high, edge, unmasked */
}

void ioapic_mask(unsigned gsi)
{
    ioapic_write(0x10 + 2 * gsi, LAPIC_LVT_MASKED);
}

void ioapic_route_mode(unsigned gsi, uint8_t vector, uint8_t dest_apic_id, uint32_t flags)
{
    ioapic_write(0x10 + 2 * gsi + 1, (uint32_t)dest_apic_id << 24);
    ioapic_write(0x10 + 2 * gsi, flags | vector);   /* fixed, physical, active high */
}

uint32_t ioapic_redir_lo(unsigned gsi)
{
    mmio_write32(IOAPIC_BASE, 0x10 + 2 * gsi);
    return mmio_read32(IOAPIC_BASE + 0x10);
}
