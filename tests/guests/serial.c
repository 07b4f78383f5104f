/* Tier A guest: reads a line from COM1 through the receive interrupt (IOAPIC) and echoes it uppercased. */
#include "lib/acpi.h"
#include "lib/intr.h"

const char guest_name[] = "serial";

#define SERIAL_VECTOR 0x34
#define LINE_MAX 80

static volatile char line[LINE_MAX + 1];
static volatile uint32_t line_len, rx_irqs, rx_bytes;
static volatile bool line_done;

static void serial_irq(struct intr_frame *f)
{
    (void)f;
    rx_irqs++;
    /* Drain everything: the IOAPIC pin is edge-triggered, so a byte left behind would keep the
     * line high and no new edge (no new interrupt) would ever come. */
    while (serial_rx_ready()) {
        char c = (char)serial_rx_byte();
        rx_bytes++;
        if (line_done)
            continue;
        if (c == '\n' || c == '\r')
            line_done = line_len > 0;
        else if (line_len < LINE_MAX)
            line[line_len++] = c;
    }
    lapic_eoi();
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    kprintf("serial: kvmkit tier A serial test (16550A at 0x%x, IRQ %u)\n", PORT_COM1, IRQ_COM1);

    /* Interrupt path: UART -> ISA IRQ 4 -> IOAPIC GSI (per the MADT overrides) -> this CPU's
     * LAPIC. The 8259 keeps IRQ 4 masked so the byte cannot also arrive as ExtINT. */
    unsigned gsi = acpi_isa_irq_gsi(IRQ_COM1);
    pic_init();
    lapic_init(false);
    intr_set_handler(SERIAL_VECTOR, serial_irq);
    ioapic_route(gsi, SERIAL_VECTOR, lapic_id());
    kprintf("serial: IRQ %u -> IOAPIC GSI %u -> vector 0x%x on APIC ID %u\n", IRQ_COM1, gsi,
            SERIAL_VECTOR, lapic_id());
    serial_enable_rx_irq();

    kprintf("serial: ready, type a line\n");
    cli();
    while (!line_done) {
        sti_hlt();   /* only the receive interrupt can end this wait */
        cli();
    }

    char out[LINE_MAX + 1];
    for (uint32_t i = 0; i < line_len; i++) {
        char c = line[i];
        out[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    out[line_len] = '\0';
    kprintf("serial: got %u bytes in %u receive interrupts\n", rx_bytes, rx_irqs);
    kprintf("ECHO: %s\n", out);
    return rx_irqs > 0 ? 0 : 1;
}
