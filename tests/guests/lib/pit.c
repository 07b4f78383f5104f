/* 8254 PIT channel 0 as a periodic tick through the 8259: the guests' reference clock. */
#include "intr.h"

volatile uint32_t pit_ticks;

static void pit_irq(struct intr_frame *f)
{
    (void)f;
    pit_ticks++;
    pic_eoi(0);
}

void pit_start(uint32_t hz)
{
    uint32_t div = PIT_HZ / hz;
    intr_set_handler(PIC_VECTOR_BASE + 0, pit_irq);
    outb(0x43, 0x34);                 /* channel 0, lobyte/hibyte, mode 2 (rate generator) */
    outb(0x40, (uint8_t)div);
    outb(0x40, (uint8_t)(div >> 8));
    pic_unmask(0);
}

void pit_stop(void)
{
    pic_mask(0);
    outb(0x43, 0x30);                 /* mode 0 with no count written: the counter stops */
}

void pit_wait_ticks(uint32_t n)
{
    uint32_t start = pit_ticks;
    cli();
    while (pit_ticks - start < n) {
        sti_hlt();
        cli();
    }
}
