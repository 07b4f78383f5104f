/* Unit tests every device of the machine's table (vmm/machine.c) through the device interface
 * alone, as a new device gets tested by being in the table: realized with recording handles
 * (no KVM), every port and MMIO range it registers answers a read without stopping the
 * machine, its saved state loads back and a truncated one is refused, and destroying the
 * registry leaves no bus range behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/stream.h"
#include "vmm/device.h"
#include "vmm/iothread.h"
#include "vmm/machine.h"
#include "vmm/memory.h"

/* --- Recording handles --- */

static int next_gsi = 24, stops, lines;

static void fake_set_line(void *opaque, uint32_t gsi, int level)
{
	(void)opaque, (void)gsi, (void)level;
	lines++;
}

static int fake_msi_route_alloc(void *opaque)
{
	(void)opaque;
	return next_gsi++;
}

static void fake_msi_route_free(void *opaque, int gsi)
{
	(void)opaque, (void)gsi;
}

static int fake_msi_route_set(void *opaque, int gsi, uint64_t address, uint32_t data)
{
	(void)opaque, (void)gsi, (void)address, (void)data;
	return 0;
}

static int fake_irqfd(void *opaque, int eventfd, int gsi, bool assign)
{
	(void)opaque, (void)eventfd, (void)gsi, (void)assign;
	return 0;
}

static int fake_ioeventfd(void *opaque, uint64_t addr, uint32_t len, bool is_pio, bool match,
			  uint64_t data, int eventfd, bool assign)
{
	(void)opaque, (void)addr, (void)len, (void)is_pio, (void)match, (void)data;
	(void)eventfd, (void)assign;
	return 0;
}

static const struct irq_ops fake_irq_ops = {
	.set_line = fake_set_line,
	.msi_route_alloc = fake_msi_route_alloc,
	.msi_route_free = fake_msi_route_free,
	.msi_route_set = fake_msi_route_set,
	.irqfd = fake_irqfd,
	.ioeventfd = fake_ioeventfd,
};

static enum vm_stop_reason last_stop;

static void fake_stop(void *opaque, enum vm_stop_reason reason, int exit_status)
{
	(void)opaque, (void)exit_status;
	last_stop = reason;
	stops++;
}

static uint64_t fake_now_ns; /* the guest clock, moved by the tests */

static uint64_t fake_clock_ns(void *opaque)
{
	(void)opaque;
	return fake_now_ns;
}

/* --- The machine: every device the table has that needs no host resource (no image, no
 * network, no socket), on PCI and on virtio-mmio --- */

static struct bus pio, mmio;
static struct guest_mem mem;
static struct iothread *io;
static struct device_registry reg;

static void machine_up(bool virtio_mmio)
{
	static struct vm_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.testdev = true;
	cfg.rng = true;
	cfg.transport = virtio_mmio ? VIRTIO_TRANSPORT_MMIO : VIRTIO_TRANSPORT_PCI;
	assert_int_equal(guest_mem_init(&mem, 2 << 20), 0);
	io = iothread_create();
	assert_non_null(io);
	const struct device_ctx ctx = {
		.pio = &pio, .mmio = &mmio, .mem = &mem, .io = io,
		.irq = { &fake_irq_ops, NULL }, .machine = { fake_stop, NULL },
		.clock = { fake_clock_ns, NULL }, .virtio_mmio = virtio_mmio, .registry = &reg,
	};
	memset(&reg, 0, sizeof(reg));
	stops = 0;
	assert_int_equal(machine_realize(&reg, &ctx, &cfg), 0);
	/* Each kind the table has without a configured host resource is there. */
	for (size_t k = 0; k < machine_ndevices; k++)
		if (machine_devices[k].count(&cfg) && !machine_devices[k].arg)
			assert_non_null(device_find(&reg, machine_devices[k].ops, 0));
}

static void machine_down(void)
{
	iothread_resume(io);
	device_registry_destroy(&reg);
	iothread_destroy(io);
	/* virtio-mmio windows stay claimed until the bus goes (virtio_mmio.h). */
	for (int i = 0; i < mmio.nranges; i++)
		assert_int_equal(strcmp(mmio.ranges[i].name, "virtio-rng"), 0);
	assert_int_equal(pio.nranges, 0);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	guest_mem_destroy(&mem);
}

/* The first and last byte of every range: a read answers and stops nothing. */
static void read_everything(const struct bus *bus)
{
	for (int i = 0; i < bus->nranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		uint8_t b = 0;
		assert_true(bus_dispatch(bus, r->base, &b, 1, false));
		assert_true(bus_dispatch(bus, r->base + r->len - 1, &b, 1, false));
	}
}

static void test_realize_read_destroy(void **state)
{
	bool virtio_mmio = *(bool *)*state;
	machine_up(virtio_mmio);
	read_everything(&pio);
	read_everything(&mmio);
	assert_int_equal(stops, 0);
	machine_down();
}

/* Saves d's section (or an empty one) and loads it into d, later_ns later on the guest clock:
 * 0 or the load's error. */
static int load_back(const struct device *d, bool with_body, uint64_t later_ns)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_write_header(&w, "KVMKITTS", 1);
	stream_begin_section(&w, d->ops->tag, d->instance, d->ops->version);
	if (with_body)
		d->ops->save(d->state, &w);
	assert_int_equal(stream_end_section(&w), 0);
	assert_int_equal(stream_flush(&w), 0);
	size_t len;
	const uint8_t *data = stream_mem_data(&w, &len);
	fake_now_ns += later_ns; /* loaded this much later, as after a migration */
	struct stream r;
	uint32_t version;
	struct stream_section sec;
	stream_init_mem_reader(&r, data, len);
	assert_int_equal(stream_read_header(&r, "KVMKITTS", 1, &version), 0);
	assert_int_equal(stream_next_section(&r, &sec), 0);
	assert_int_equal(sec.tag, d->ops->tag);
	assert_int_equal(sec.instance, d->instance);
	int err = d->ops->load(d->state, &r, sec.version);
	if (err == 0)
		err = stream_end_read(&r);
	stream_close(&r);
	stream_close(&w);
	return err;
}

/* Every section saves and loads back into the device that saved it; an empty body is refused. */
static void test_save_load(void **state)
{
	bool virtio_mmio = *(bool *)*state;
	machine_up(virtio_mmio);
	unsigned sections = 0;
	for (unsigned k = 0; k < reg.n; k++) {
		const struct device *d = &reg.devs[k];
		if (!d->ops->tag)
			continue;
		sections++;
		assert_int_equal(load_back(d, true, 0), 0);
		assert_true(load_back(d, false, 0) < 0);
	}
	assert_true(sections >= 5); /* SERL, RTC, KBC, ACPI, VIRT (+ PCI) */
	assert_int_equal(stops, 0);
	machine_down();
}

/* QEMU's isa-debugcon: firmware reads 0xe9 back before it logs there; a long line without an
 * end and control characters are taken without harm. */
static void test_debugcon(void **state)
{
	(void)state;
	machine_up(false);
	uint8_t b = 0;
	assert_true(bus_dispatch(&pio, 0x402, &b, 1, false));
	assert_int_equal(b, 0xe9);
	for (int i = 0; i < 1000; i++) {
		b = (uint8_t)(i % 7 == 0 ? '\n' : i % 11 == 0 ? 0x1b : 'a' + i % 26);
		assert_true(bus_dispatch(&pio, 0x402, &b, 1, true));
	}
	for (int i = 0; i < 300; i++) /* longer than a line: logged in pieces */
		assert_true(bus_dispatch(&pio, 0x402, (uint8_t *)"x", 1, true));
	assert_int_equal(stops, 0);
	machine_down();
}

static uint32_t pm_timer_read(void)
{
	uint8_t b[4];
	assert_true(bus_dispatch(&pio, PORT_ACPI_PM_TMR, b, 4, false));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The ACPI PM timer counts the guest clock at 3.579545 MHz in 24 bits, ignores writes, and
 * goes on from its saved count after a restore; the reset register sits after it. */
static void test_pm_timer(void **state)
{
	(void)state;
	fake_now_ns = 7000000000u; /* the guest clock is not 0 when the machine is made */
	machine_up(false);
	assert_int_equal(pm_timer_read(), 0);
	fake_now_ns += 1000000000u;
	assert_int_equal(pm_timer_read(), ACPI_PM_TIMER_HZ);
	uint8_t b = 0;
	assert_true(bus_dispatch(&pio, PORT_ACPI_PM_TMR + 1, &b, 1, false));
	assert_int_equal(b, (ACPI_PM_TIMER_HZ >> 8) & 0xff);
	uint8_t zeros[4] = { 0 };
	assert_true(bus_dispatch(&pio, PORT_ACPI_PM_TMR, zeros, 4, true));
	assert_int_equal(pm_timer_read(), ACPI_PM_TIMER_HZ);
	fake_now_ns += 4000000000u; /* 5 s: past 2^24 ticks, the count wraps */
	assert_int_equal(pm_timer_read(), (5u * ACPI_PM_TIMER_HZ) & 0xffffff);
	fake_now_ns -= 4000000000u;

	struct device *acpi = NULL;
	for (unsigned k = 0; k < reg.n; k++)
		if (reg.devs[k].ops == &acpi_pm_ops)
			acpi = &reg.devs[k];
	assert_non_null(acpi);
	assert_int_equal(load_back(acpi, true, 100000000000u), 0);
	assert_int_equal(pm_timer_read(), ACPI_PM_TIMER_HZ);

	assert_int_equal(stops, 0);
	b = ACPI_RESET_VALUE;
	assert_true(bus_dispatch(&pio, PORT_ACPI_RESET, &b, 1, true));
	assert_int_equal(stops, 1);
	assert_int_equal(last_stop, VM_STOP_RESET);
	stops = 0;
	machine_down();
}

/* Port 0x92: the A20 bit reads back (on at power-on), bit 0 resets and does not stick. */
static void test_port92(void **state)
{
	(void)state;
	machine_up(false);
	uint8_t b = 0;
	assert_true(bus_dispatch(&pio, 0x92, &b, 1, false));
	assert_int_equal(b, 0x02);
	b = 0x00;
	assert_true(bus_dispatch(&pio, 0x92, &b, 1, true));
	assert_true(bus_dispatch(&pio, 0x92, &b, 1, false));
	assert_int_equal(b, 0x00);
	assert_int_equal(stops, 0);
	b = 0x03;
	assert_true(bus_dispatch(&pio, 0x92, &b, 1, true));
	assert_int_equal(stops, 1);
	assert_int_equal(last_stop, VM_STOP_RESET);
	assert_true(bus_dispatch(&pio, 0x92, &b, 1, false));
	assert_int_equal(b, 0x02);
	stops = 0;
	machine_down();
}

int main(void)
{
	static bool on_pci = false, on_mmio = true;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_realize_read_destroy, &on_pci),
		cmocka_unit_test_prestate(test_realize_read_destroy, &on_mmio),
		cmocka_unit_test_prestate(test_save_load, &on_pci),
		cmocka_unit_test_prestate(test_save_load, &on_mmio),
		cmocka_unit_test(test_debugcon),
		cmocka_unit_test(test_pm_timer),
		cmocka_unit_test(test_port92),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
