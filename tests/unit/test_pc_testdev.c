/* Unit tests pc-testdev (hw/pc_testdev.c) without KVM: its IRQ-line ports drive a recording
 * irq_ops, and its scratch port and MMIO keep what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "vmm/device.h"

/* --- A recording interrupt controller: the level each GSI was last set to, and how often --- */

static int levels[64];
static unsigned sets;

static void fake_set_line(void *opaque, uint32_t gsi, int level)
{
	(void)opaque;
	assert_true(gsi < 64);
	levels[gsi] = level;
	sets++;
}

static int fake_msi_route_alloc(void *opaque)
{
	(void)opaque;
	fail_msg("pc-testdev allocated an MSI route");
	return -1;
}

static const struct irq_ops fake_irq_ops = {
	.set_line = fake_set_line,
	.msi_route_alloc = fake_msi_route_alloc,
};

static struct bus pio, mmio;

static void *testdev_up(void)
{
	memset(levels, 0xff, sizeof(levels));   /* -1: never set */
	sets = 0;
	const struct device_ctx ctx = {
		.pio = &pio, .mmio = &mmio, .irq = { &fake_irq_ops, NULL },
	};
	void *t = pc_testdev_ops.realize(&ctx, NULL);
	assert_non_null(t);
	return t;
}

static void testdev_down(void *t)
{
	pc_testdev_ops.destroy(t);
	assert_int_equal(pio.nranges, 0);
	assert_int_equal(mmio.nranges, 0);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static bool pio_write8(uint16_t port, uint8_t v)
{
	return bus_dispatch(&pio, port, &v, 1, true);
}

/* Every line 0-23: a byte write of V sets it to V != 0, and only that line. */
static void test_irq_lines(void **state)
{
	(void)state;
	void *t = testdev_up();
	for (unsigned n = 0; n < TESTDEV_IRQ_LINES; n++) {
		assert_true(pio_write8(PORT_TESTDEV_IRQ + n, 0x80));
		assert_int_equal(levels[n], 1);
		assert_true(pio_write8(PORT_TESTDEV_IRQ + n, 0));
		assert_int_equal(levels[n], 0);
		assert_true(pio_write8(PORT_TESTDEV_IRQ + n, 1));
		assert_int_equal(levels[n], 1);
	}
	assert_int_equal(sets, 3 * TESTDEV_IRQ_LINES);
	for (unsigned n = TESTDEV_IRQ_LINES; n < 64; n++)
		assert_int_equal(levels[n], -1);
	testdev_down(t);
}

/* As QEMU's: only byte writes act, the ports read as zero, and nothing lies past line 23. */
static void test_irq_hostile(void **state)
{
	(void)state;
	void *t = testdev_up();
	uint8_t buf[4] = { 1, 1, 1, 1 };
	assert_true(bus_dispatch(&pio, PORT_TESTDEV_IRQ, buf, 2, true));
	assert_true(bus_dispatch(&pio, PORT_TESTDEV_IRQ + 4, buf, 4, true));
	assert_true(bus_dispatch(&pio, PORT_TESTDEV_IRQ + 20, buf, 4, true));
	for (uint32_t len = 1; len <= 4; len *= 2) {
		memset(buf, 0xaa, sizeof(buf));
		assert_true(bus_dispatch(&pio, PORT_TESTDEV_IRQ + 8, buf, len, false));
		for (uint32_t i = 0; i < len; i++)
			assert_int_equal(buf[i], 0);
	}
	/* Straddling the end or past it: not the device's. */
	assert_false(bus_dispatch(&pio, PORT_TESTDEV_IRQ + 22, buf, 4, true));
	assert_false(pio_write8(PORT_TESTDEV_IRQ + TESTDEV_IRQ_LINES, 1));
	assert_false(pio_write8(PORT_TESTDEV_IRQ - 1, 1));
	assert_int_equal(sets, 0);
	testdev_down(t);
}

/* The scratch register and memory still read back what was written. */
static void test_scratch(void **state)
{
	(void)state;
	void *t = testdev_up();
	uint8_t w[4] = { 0x78, 0x56, 0x34, 0x12 }, r[4] = { 0 };
	assert_true(bus_dispatch(&pio, PORT_TESTDEV, w, 4, true));
	assert_true(bus_dispatch(&pio, PORT_TESTDEV, r, 4, false));
	assert_memory_equal(r, w, 4);
	assert_true(bus_dispatch(&mmio, LAYOUT_TESTDEV_MMIO + 0x100, w, 4, true));
	memset(r, 0, sizeof(r));
	assert_true(bus_dispatch(&mmio, LAYOUT_TESTDEV_MMIO + 0x100, r, 4, false));
	assert_memory_equal(r, w, 4);
	assert_int_equal(sets, 0);
	testdev_down(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irq_lines),
		cmocka_unit_test(test_irq_hostile),
		cmocka_unit_test(test_scratch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
