/* 16550A driver for COM1: polled output, polled or interrupt-driven input. */
#include "guest.h"

#define UART_RBR 0  /* receive buffer (read, DLAB=0) */
#define UART_THR 0  /* transmit holding (write, DLAB=0) */
#define UART_DLL 0  /* divisor latch low (DLAB=1) */
#define UART_IER 1
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5

#define LSR_DR   0x01
#define LSR_THRE 0x20
#define MCR_DTR_RTS_OUT2 0x0b   /* OUT2 gates the UART's IRQ line on a PC */

void serial_init(void)
{
    /* Nothing ran before us on kvmkit (no BIOS), so program the UART fully: 115200 8N1,
     * FIFOs on with a 1-byte receive trigger so every byte raises an interrupt promptly. */
    outb(PORT_COM1 + UART_IER, 0x00);
    outb(PORT_COM1 + UART_LCR, 0x80);
    outb(PORT_COM1 + UART_DLL, 0x01);
    outb(PORT_COM1 + UART_DLM, 0x00);
    outb(PORT_COM1 + UART_LCR, 0x03);
    outb(PORT_COM1 + UART_FCR, 0x07);
    outb(PORT_COM1 + UART_MCR, MCR_DTR_RTS_OUT2);
}

void serial_putc(char c)
{
    /* Bounded wait: a VMM that never reports THRE must not hang the guest silently. */
    for (int i = 0; i < 100000 && !(inb(PORT_COM1 + UART_LSR) & LSR_THRE); i++)
        pause();
    outb(PORT_COM1 + UART_THR, (uint8_t)c);
}

bool serial_rx_ready(void)
{
    return inb(PORT_COM1 + UART_LSR) & LSR_DR;
}

uint8_t serial_rx_byte(void)
{
    return inb(PORT_COM1 + UART_RBR);
}

void serial_enable_rx_irq(void)
{
    (void)inb(PORT_COM1 + UART_IIR);
    outb(PORT_COM1 + UART_MCR, MCR_DTR_RTS_OUT2);
    outb(PORT_COM1 + UART_IER, 0x01);   /* received data available */
}
