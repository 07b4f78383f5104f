/* 16550A UART (COM1): registers, receive FIFO and interrupt logic, output to the console. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hw/devices.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/console.h"
#include "arch/x86/layout.h"
#include "vmm/device.h"

#define UART_RBR 0 /* read: receive buffer; write: THR; DLAB: divisor low */
#define UART_IER 1 /* DLAB: divisor high */
#define UART_IIR 2 /* read: interrupt identification; write: FCR */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI  0x08

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLSI   0x06
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_BI   0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80
#define MSR_DELTA 0x0f

#define RX_FIFO_SIZE 64 /* more than a 16550's 16 bytes: pasted text survives slow guests */

struct serial_8250 {
	pthread_mutex_t lock;
	struct bus *pio;
	struct console *con;
	struct irq_line irq;
	int irq_level;

	uint8_t ier, iir, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	bool thr_ipending;
	bool transmitted; /* the guest has sent a byte (its first one is a start-up milestone) */

	uint8_t rx[RX_FIFO_SIZE];
	unsigned rx_head, rx_count;
};

/* Recomputes IIR and drives the interrupt line. Called with the lock held. */
static void serial_update_irq(struct serial_8250 *s)
{
	uint8_t iir = IIR_NO_INT;
	if ((s->ier & IER_RLSI) && (s->lsr & (LSR_BI | LSR_OE)))
		iir = IIR_RLSI;
	else if ((s->ier & IER_RDI) && (s->lsr & LSR_DR))
		iir = IIR_RDI;
	else if ((s->ier & IER_THRI) && s->thr_ipending)
		iir = IIR_THRI;
	else if ((s->ier & IER_MSI) && (s->msr & MSR_DELTA))
		iir = IIR_MSI;
	s->iir = iir;
	int level = iir != IIR_NO_INT;
	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->irq, level);
	}
}

static void serial_rx_push(struct serial_8250 *s, uint8_t c)
{
	if (s->rx_count == RX_FIFO_SIZE)
		return; /* overrun: the byte is lost, as on hardware */
	s->rx[(s->rx_head + s->rx_count) % RX_FIFO_SIZE] = c;
	s->rx_count++;
	s->lsr |= LSR_DR;
}

static uint8_t serial_rx_pop(struct serial_8250 *s)
{
	if (s->rx_count == 0)
		return 0;
	uint8_t c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % RX_FIFO_SIZE;
	if (--s->rx_count == 0)
		s->lsr &= (uint8_t)~LSR_DR;
	return c;
}

/* In loopback mode the modem inputs mirror the modem outputs (Linux probes this). */
static void serial_update_msr(struct serial_8250 *s)
{
	uint8_t old = s->msr, msr;
	if (s->mcr & MCR_LOOP) {
		msr = (uint8_t)(((s->mcr & MCR_DTR) ? MSR_DSR : 0) | ((s->mcr & MCR_RTS) ? MSR_CTS : 0) |
				((s->mcr & MCR_OUT1) ? MSR_RI : 0) | ((s->mcr & MCR_OUT2) ? MSR_DCD : 0));
	} else {
		msr = MSR_DCD | MSR_DSR | MSR_CTS; /* a connected terminal */
	}
	uint8_t changed = old ^ msr;
	uint8_t delta = old & MSR_DELTA;
	if (changed & MSR_CTS)
		delta |= MSR_DCTS;
	if (changed & MSR_DSR)
		delta |= MSR_DDSR;
	if (changed & MSR_DCD)
		delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(msr & MSR_RI))
		delta |= MSR_TERI;
	s->msr = (uint8_t)((msr & 0xf0) | delta);
}

static uint8_t serial_read(struct serial_8250 *s, unsigned reg)
{
	uint8_t v = 0;
	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		v = serial_rx_pop(s);
		break;
	case UART_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case UART_IIR:
		v = s->iir | ((s->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
		/* Reading IIR acknowledges a THRE interrupt. */
		if ((s->iir & 0x0f) == IIR_THRI)
			s->thr_ipending = false;
		break;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		v = s->lsr;
		s->lsr &= (uint8_t)~(LSR_BI | LSR_OE); /* error bits clear on read */
		break;
	case UART_MSR:
		v = s->msr;
		s->msr &= (uint8_t)~MSR_DELTA;
		break;
	case UART_SCR:
		return s->scr;
	}
	serial_update_irq(s);
	return v;
}

static void serial_write(struct serial_8250 *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_RBR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return;
		}
		if (s->mcr & MCR_LOOP)
			serial_rx_push(s, v);
		else
			console_write(s->con, &v, 1);
		if (!s->transmitted) {
			s->transmitted = true;
			log_debug("the guest's first byte on the serial port");
		}
		/* Transmission is instantaneous: the holding register is empty again. */
		s->thr_ipending = true;
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return;
		}
		/* Enabling the THRE interrupt while THR is empty raises it at once. */
		if (!(s->ier & IER_THRI) && (v & IER_THRI))
			s->thr_ipending = true;
		s->ier = v & 0x0f;
		break;
	case UART_IIR: /* FCR */
		if (v & FCR_CLEAR_RX) {
			s->rx_count = 0;
			s->lsr &= (uint8_t)~LSR_DR;
		}
		s->fcr = v & 0xc9; /* trigger level and enable bits are readable state */
		break;
	case UART_LCR:
		s->lcr = v;
		return;
	case UART_MCR:
		s->mcr = v & 0x1f;
		serial_update_msr(s);
		break;
	case UART_LSR:
	case UART_MSR:
		return; /* read-only */
	case UART_SCR:
		s->scr = v;
		return;
	}
	serial_update_irq(s);
}

static void serial_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			  bool is_write)
{
	struct serial_8250 *s = opaque;
	pthread_mutex_lock(&s->lock);
	/* Wider accesses are treated as byte accesses to consecutive registers. */
	for (uint32_t i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			serial_write(s, (unsigned)(offset + i), data[i]);
		else
			data[i] = serial_read(s, (unsigned)(offset + i));
	}
	pthread_mutex_unlock(&s->lock);
}

size_t serial_8250_receive(struct serial_8250 *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	size_t n = 0;
	/* In loopback mode nothing arrives from outside; the bytes wait. */
	while (n < len && s->rx_count < RX_FIFO_SIZE && !(s->mcr & MCR_LOOP))
		serial_rx_push(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_8250_break(struct serial_8250 *s)
{
	pthread_mutex_lock(&s->lock);
	/* A break arrives as a zero byte with the break flag (Linux reads it as a SysRq). */
	serial_rx_push(s, 0);
	s->lsr |= LSR_BI;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* Registers, the receive FIFO (oldest byte first) and the interrupt line's level. */
static void serial_8250_save(void *opaque, struct stream *st)
{
	struct serial_8250 *s = opaque;
	pthread_mutex_lock(&s->lock);
	const uint8_t regs[] = { s->ier, s->iir, s->fcr, s->lcr, s->mcr, s->lsr, s->msr, s->scr,
				 s->dll, s->dlm, s->thr_ipending, s->transmitted,
				 (uint8_t)s->irq_level };
	stream_put_bytes(st, regs, sizeof(regs));
	stream_put_u8(st, (uint8_t)s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		stream_put_u8(st, s->rx[(s->rx_head + i) % RX_FIFO_SIZE]);
	pthread_mutex_unlock(&s->lock);
}

static int serial_8250_load(void *opaque, struct stream *st, uint32_t version)
{
	struct serial_8250 *s = opaque;
	uint8_t r[13], rx[RX_FIFO_SIZE];
	if (version != SERIAL_8250_STATE_VERSION)
		return -EBADMSG;
	stream_get_bytes(st, r, sizeof(r));
	unsigned count = stream_get_u8(st);
	if (count > RX_FIFO_SIZE)
		return -EBADMSG;
	stream_get_bytes(st, rx, count);
	/* IER and MCR hold only their writable bits; flags are 0 or 1. */
	if (stream_error(st) || (r[0] & ~0x0f) || (r[4] & ~0x1f) || r[10] > 1 || r[11] > 1 ||
	    r[12] > 1)
		return -EBADMSG;
	pthread_mutex_lock(&s->lock);
	s->ier = r[0]; s->iir = r[1]; s->fcr = r[2]; s->lcr = r[3]; s->mcr = r[4];
	s->lsr = r[5]; s->msr = r[6]; s->scr = r[7]; s->dll = r[8]; s->dlm = r[9];
	s->thr_ipending = r[10];
	s->transmitted = r[11];
	/* The in-kernel irqchip's saved state already holds this line's effect. */
	s->irq_level = r[12];
	memcpy(s->rx, rx, count);
	s->rx_head = 0;
	s->rx_count = count;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void serial_8250_destroy(void *opaque)
{
	struct serial_8250 *s = opaque;
	bus_unregister(s->pio, PORT_COM1, s);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* COM1, transmitting to the console arg (may be NULL: output is dropped). */
static void *serial_8250_realize(const struct device_ctx *ctx, const void *arg)
{
	struct serial_8250 *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->pio = ctx->pio;
	s->con = (struct console *)arg;
	s->irq = (struct irq_line){ ctx->irq, IRQ_COM1 };
	s->iir = IIR_NO_INT;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	s->dll = 0x0c; /* 9600 baud, as firmware leaves it */
	if (bus_register(ctx->pio, PORT_COM1, 8, serial_access, s, "serial") < 0) {
		log_error("cannot place the serial port at %#x", PORT_COM1);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return NULL;
	}
	return s;
}

const struct device_ops serial_8250_ops = {
	.name = "serial port",
	.tag = STREAM_TAG('S', 'E', 'R', 'L'),
	.version = SERIAL_8250_STATE_VERSION,
	.realize = serial_8250_realize,
	.destroy = serial_8250_destroy,
	.save = serial_8250_save,
	.load = serial_8250_load,
};
