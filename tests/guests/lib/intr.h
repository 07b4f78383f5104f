/* Interrupt plumbing for the guests: IDT and handlers, 8259 PIC, local APIC, IOAPIC, 8254 PIT. */
#ifndef GUEST_INTR_H
#define GUEST_INTR_H

#include "guest.h"

struct intr_frame {
    uint32_t edi, esi, ebp, esp0, ebx, edx, ecx, eax;  /* pushal */
    uint32_t vector, error;
    uint32_t eip, cs, eflags;                         /* pushed by the CPU */
};

typedef void (*intr_handler)(struct intr_frame *f);

/* Every vector gets a stub; a vector without a handler is a test failure (an exception, or an
 * interrupt the VMM delivered on a vector nobody programmed), except spurious APIC/PIC vectors. */
void idt_init(void);
void intr_set_handler(uint8_t vector, intr_handler h);

/* 8259 pair remapped to vectors 0x20-0x2f, all lines masked until pic_unmask. */
#define PIC_VECTOR_BASE 0x20
void pic_init(void);
void pic_unmask(unsigned irq);
void pic_mask(unsigned irq);
void pic_eoi(unsigned irq);

/* Local APIC (xAPIC MMIO). lapic_init software-enables it; with extint, LINT0 passes the 8259's
 * interrupts through (what a BIOS does on the BSP; a VMM without a BIOS may leave LINT0 masked). */
#define LAPIC_BASE          0xfee00000u
#define LAPIC_ID            0x020
#define LAPIC_EOI           0x0b0
#define LAPIC_SVR           0x0f0
#define LAPIC_ICR_LO        0x300
#define LAPIC_ICR_HI        0x310
#define LAPIC_LVT_TIMER     0x320
#define LAPIC_LVT_LINT0     0x350
#define LAPIC_LVT_LINT1     0x360
#define LAPIC_LVT_ERROR     0x370
#define LAPIC_TIMER_INIT    0x380
#define LAPIC_TIMER_CUR     0x390
#define LAPIC_TIMER_DIV     0x3e0
#define LAPIC_LVT_MASKED    (1u << 16)
#define LAPIC_TIMER_PERIODIC (1u << 17)
#define LAPIC_SPURIOUS_VECTOR 0xff

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
void lapic_init(bool extint);
void lapic_eoi(void);
uint8_t lapic_id(void);
/* Sends an IPI and waits (bounded) for the ICR's delivery status to clear; false on timeout. */
bool lapic_send_ipi(uint8_t dest, uint32_t icr_lo);

/* IOAPIC: route a GSI as an edge-triggered, active-high, fixed interrupt to one APIC ID. */
#define IOAPIC_BASE 0xfec00000u
void ioapic_route(unsigned gsi, uint8_t vector, uint8_t dest_apic_id);
void ioapic_mask(unsigned gsi);
/* The low half of a redirection entry: ioapic_route_mode writes the whole entry (flags: trigger
 * mode, mask; the vector goes in bits 0-7), ioapic_redir_lo reads it back (Remote IRR). */
#define IOAPIC_REMOTE_IRR (1u << 14)
#define IOAPIC_LEVEL      (1u << 15)
#define IOAPIC_MASKED     (1u << 16)
void ioapic_route_mode(unsigned gsi, uint8_t vector, uint8_t dest_apic_id, uint32_t flags);
uint32_t ioapic_redir_lo(unsigned gsi);

/* 8254 channel 0 as a periodic tick on IRQ 0 through the PIC (needs pic_init and, on the BSP,
 * lapic_init(true)); pit_ticks counts the interrupts. */
#define PIT_HZ 1193182u
extern volatile uint32_t pit_ticks;
void pit_start(uint32_t hz);
void pit_stop(void);
/* Halts until pit_ticks advanced by n (interrupts enabled meanwhile, disabled on return). */
void pit_wait_ticks(uint32_t n);

#endif
