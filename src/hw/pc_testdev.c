/* QEMU's pc-testdev for test kernels: a scratch register at port 0xe0 that reads back what
 * was written, 64 KiB of scratch MMIO at 0xff000000 (exercises MMIO exits), and the IRQ-line
 * ports at 0x2000 + N through which a guest drives interrupt line N (IOAPIC/8259 tests). */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/log.h"
#include "vmm/device.h"

struct pc_testdev {
	pthread_mutex_t lock;
	struct bus *pio, *mmio;
	struct irq_sender irq;
	uint8_t port[4];
	uint8_t iomem[LAYOUT_TESTDEV_MMIO_LEN];
};

static void testdev_access(pthread_mutex_t *lock, uint8_t *store, uint64_t size, uint64_t off,
			   uint8_t *data, uint32_t len, bool is_write)
{
	pthread_mutex_lock(lock);
	for (uint32_t i = 0; i < len; i++) {
		if (off + i >= size) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			store[off + i] = data[i];
		else
			data[i] = store[off + i];
	}
	pthread_mutex_unlock(lock);
}

static void testdev_port_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
				bool is_write)
{
	struct pc_testdev *t = opaque;
	testdev_access(&t->lock, t->port, sizeof(t->port), offset, data, len, is_write);
}

static void testdev_mmio_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
				bool is_write)
{
	struct pc_testdev *t = opaque;
	testdev_access(&t->lock, t->iomem, sizeof(t->iomem), offset, data, len, is_write);
}

/* A byte write of V to port PORT_TESTDEV_IRQ + N sets GSI N's level to V != 0, as QEMU's
 * device does (there only ISA lines 0-15 work; here every IOAPIC pin, 16-23 included). QEMU
 * accepts only byte writes: wider ones are dropped. The ports read as zero there too. */
static void testdev_irq_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			       bool is_write)
{
	struct pc_testdev *t = opaque;
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (len != 1 || offset >= TESTDEV_IRQ_LINES)
		return;
	const struct irq_line line = { t->irq, (uint32_t)offset };
	irq_line_set(&line, data[0] != 0);
}

/* Unregisters what was registered (a failed realize's ranges too) and frees t. */
static void pc_testdev_destroy(void *opaque)
{
	struct pc_testdev *t = opaque;
	bus_unregister(t->pio, PORT_TESTDEV, t);
	bus_unregister(t->pio, PORT_TESTDEV_IRQ, t);
	bus_unregister(t->mmio, LAYOUT_TESTDEV_MMIO, t);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void *pc_testdev_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct pc_testdev *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->pio = ctx->pio;
	t->mmio = ctx->mmio;
	t->irq = ctx->irq;
	if (bus_register(ctx->pio, PORT_TESTDEV, 4, testdev_port_access, t, "pc-testdev") < 0 ||
	    bus_register(ctx->pio, PORT_TESTDEV_IRQ, TESTDEV_IRQ_LINES, testdev_irq_access, t,
			 "pc-testdev-irq") < 0 ||
	    bus_register(ctx->mmio, LAYOUT_TESTDEV_MMIO, LAYOUT_TESTDEV_MMIO_LEN,
			 testdev_mmio_access, t, "pc-testdev-mem") < 0) {
		log_error("cannot place the test device at ports %#x and %#x and at %#llx",
			  PORT_TESTDEV, PORT_TESTDEV_IRQ, (unsigned long long)LAYOUT_TESTDEV_MMIO);
		pc_testdev_destroy(t);
		return NULL;
	}
	return t;
}

const struct device_ops pc_testdev_ops = {
	.name = "test device",
	.realize = pc_testdev_realize,
	.destroy = pc_testdev_destroy,
};
