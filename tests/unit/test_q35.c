/* Unit tests of the Q35 identity (hw/q35_mch.c, hw/ich9_lpc.c and pci.c's q35 option) through
 * the VM's real buses, as firmware reaches it: both IDs by 0xCF8/0xCFC (and the old identity
 * with q35 off), PCIEXBAR moving the ECAM, PAM/SMRAM/PIRQ/RCBA read back, PMBASE moving the
 * ACPI registers, reset through 0xCF9, BARs honoured where SeaBIOS and OVMF put them (a
 * virtio-pci doorbell's ioeventfd follows its BAR), a snapshot, and hostile values. KVM and the
 * machine are recording fakes behind the device handles. */
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
#include "hw/pci.h"
#include "lib/stream.h"
#include "virtio/devices.h"
#include "vmm/device.h"
#include "vmm/iothread.h"
#include "vmm/memory.h"

/* --- Fakes: interrupts, doorbells, the machine's stop requests --- */

#define MAX_DOORBELLS 16

static int next_gsi = 24;
static int stops;
static enum vm_stop_reason last_stop;
static uint64_t doorbells[MAX_DOORBELLS]; /* guest addresses with an ioeventfd */
static int ndoorbells;
static int pam_calls;
static uint8_t pam_last[7];

static void fake_set_line(void *opaque, uint32_t gsi, int level)
{
	(void)opaque, (void)gsi, (void)level;
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
	(void)opaque, (void)len, (void)match, (void)data, (void)eventfd;
	assert_false(is_pio);
	if (assign) {
		assert_true(ndoorbells < MAX_DOORBELLS);
		doorbells[ndoorbells++] = addr;
		return 0;
	}
	for (int i = 0; i < ndoorbells; i++) {
		if (doorbells[i] == addr) {
			doorbells[i] = doorbells[--ndoorbells];
			return 0;
		}
	}
	fail_msg("ioeventfd at 0x%llx removed but never added", (unsigned long long)addr);
	return -ENOENT;
}

static const struct irq_ops fake_irq_ops = {
	.set_line = fake_set_line,
	.msi_route_alloc = fake_msi_route_alloc,
	.msi_route_free = fake_msi_route_free,
	.msi_route_set = fake_msi_route_set,
	.irqfd = fake_irqfd,
	.ioeventfd = fake_ioeventfd,
};

static void fake_stop(void *opaque, enum vm_stop_reason reason, int exit_status)
{
	(void)opaque, (void)exit_status;
	last_stop = reason;
	stops++;
}

static void fake_pam_changed(void *opaque, unsigned pam_index, uint8_t value)
{
	assert_ptr_equal(opaque, &pam_calls);
	assert_true(pam_index < 7);
	pam_last[pam_index] = value;
	pam_calls++;
}

/* --- The machine: the ACPI registers, the PCI bus (q35 or not) and a virtio-rng on it --- */

#define HOLE_BASE 0x80000000ULL

static struct bus pio, mmio;
static struct guest_mem mem;
static struct iothread *io;
static struct device_registry reg;
static struct pci_bus *pci;

static void machine_up(bool q35)
{
	next_gsi = 24;
	stops = ndoorbells = pam_calls = 0;
	memset(pam_last, 0, sizeof(pam_last));
	assert_int_equal(guest_mem_init(&mem, 2 << 20), 0);
	io = iothread_create();
	assert_non_null(io);
	const struct device_ctx ctx = {
		.pio = &pio, .mmio = &mmio, .mem = &mem, .io = io,
		.irq = { &fake_irq_ops, NULL }, .machine = { fake_stop, NULL }, .registry = &reg,
	};
	const struct pci_bus_config cfg = {
		.q35 = q35, .hole_base = HOLE_BASE,
		.pam_changed = fake_pam_changed, .pam_opaque = &pam_calls,
	};
	memset(&reg, 0, sizeof(reg));
	assert_int_equal(device_realize(&reg, &acpi_pm_ops, &ctx, NULL), 0);
	assert_int_equal(device_realize(&reg, &pci_bus_ops, &ctx, &cfg), 0);
	assert_int_equal(device_realize(&reg, &virtio_rng_ops, &ctx, NULL), 0);
	pci = device_find(&reg, &pci_bus_ops, 0);
	assert_non_null(pci);
}

static void machine_down(void)
{
	iothread_resume(io);
	device_registry_destroy(&reg);
	iothread_destroy(io);
	assert_int_equal(pio.nranges, 0);
	assert_int_equal(mmio.nranges, 0);
	assert_int_equal(ndoorbells, 0);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	guest_mem_destroy(&mem);
}

/* --- Guest accesses --- */

static uint64_t get(const uint8_t *p, uint32_t len)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put(uint8_t *p, uint32_t len, uint64_t v)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t pio_read(uint16_t port, uint32_t len)
{
	uint8_t b[8];
	bus_dispatch(&pio, port, b, len, false);
	return get(b, len);
}

static void pio_write(uint16_t port, uint32_t len, uint64_t v)
{
	uint8_t b[8];
	put(b, len, v);
	bus_dispatch(&pio, port, b, len, true);
}

static uint64_t mmio_read(uint64_t addr, uint32_t len)
{
	uint8_t b[8];
	bus_dispatch(&mmio, addr, b, len, false);
	return get(b, len);
}

static void mmio_write(uint64_t addr, uint32_t len, uint64_t v)
{
	uint8_t b[8];
	put(b, len, v);
	bus_dispatch(&mmio, addr, b, len, true);
}

static uint64_t cfg_read(unsigned slot, unsigned reg_off, uint32_t len)
{
	pio_write(0xcf8, 4, 0x80000000u | slot << 11 | (reg_off & 0xfc));
	return pio_read((uint16_t)(0xcfc + (reg_off & 3)), len);
}

static void cfg_write(unsigned slot, unsigned reg_off, uint32_t len, uint64_t v)
{
	pio_write(0xcf8, 4, 0x80000000u | slot << 11 | (reg_off & 0xfc));
	pio_write((uint16_t)(0xcfc + (reg_off & 3)), len, v);
}

/* The vendor and device ID dword of slot 0 through an ECAM at base. */
static uint32_t ecam_id(uint64_t base, unsigned slot)
{
	return (uint32_t)mmio_read(base + ((uint64_t)slot << 15), 4);
}

#define MCH_ID   0x29c08086u
#define LPC_ID   0x29188086u
#define LPC_SLOT 31
#define RNG_SLOT 1

/* --- Tests --- */

static void test_identity_off(void **state)
{
	(void)state;
	machine_up(false);
	assert_int_equal(cfg_read(0, 0x00, 4), 0x00081b36);  /* Red Hat's generic host bridge */
	assert_int_equal(cfg_read(LPC_SLOT, 0x00, 4), 0xffffffff);
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), 0x00081b36);
	/* 0xCF9 is a byte of the address register, as before: no reset. */
	pio_write(0xcf9, 1, 0x06);
	assert_int_equal(stops, 0);
	pio_write(0xcf8, 4, 0x80000000u);
	assert_int_equal(pio_read(0xcf9, 1), 0x00);
	/* BARs outside the fixed window decode nothing. */
	cfg_write(RNG_SLOT, 0x10, 4, 0xfebf0000);
	cfg_write(RNG_SLOT, 0x04, 2, 0x0002);
	assert_int_equal(ndoorbells, 0);
	machine_down();
}

static void test_identity_q35(void **state)
{
	(void)state;
	machine_up(true);
	assert_int_equal(cfg_read(0, 0x00, 4), MCH_ID);
	assert_int_equal(cfg_read(0, 0x08, 4), 0x06000000);           /* host bridge, rev 0 */
	assert_int_equal(cfg_read(0, 0x2c, 4), 0x11001af4);           /* QEMU's subsystem */
	assert_int_equal(cfg_read(LPC_SLOT, 0x00, 4), LPC_ID);
	assert_int_equal(cfg_read(LPC_SLOT, 0x08, 4), 0x06010002);    /* ISA bridge, rev 2 */
	assert_int_equal(cfg_read(LPC_SLOT, 0x0e, 1), 0x80);          /* multifunction */
	assert_int_equal(cfg_read(LPC_SLOT, 0x3d, 1), 0);             /* no INTx */
	/* The virtio device still gets the first free slot. */
	assert_int_equal(cfg_read(RNG_SLOT, 0x00, 4), 0x10441af4);
	/* The same through the power-on ECAM. */
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), MCH_ID);
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, LPC_SLOT), LPC_ID);
	uint64_t base, size;
	pci_bus_ecam(pci, &base, &size);
	assert_int_equal(base, LAYOUT_PCI_ECAM_BASE);
	assert_int_equal(size, 256u << 20);
	machine_down();
}

/* PCIEXBAR as SeaBIOS writes it (low dword 0, high, low with enable), then other lengths. */
static void test_pciexbar(void **state)
{
	(void)state;
	machine_up(true);
	cfg_write(0, 0x60, 4, 0);
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), 0xffffffff);
	uint64_t base, size;
	pci_bus_ecam(pci, &base, &size);
	assert_int_equal(size, 0);
	cfg_write(0, 0x64, 4, 0);
	cfg_write(0, 0x60, 4, 0xb0000001);
	assert_int_equal(cfg_read(0, 0x60, 4), 0xb0000001);
	assert_int_equal(ecam_id(0xb0000000, 0), MCH_ID);
	assert_int_equal(ecam_id(0xb0000000, LPC_SLOT), LPC_ID);
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), 0xffffffff); /* the old place: gone */
	/* A config write through the new place lands (the host bridge's PAM0). */
	mmio_write(0xb0000000 + 0x90, 1, 0x30);
	assert_int_equal(cfg_read(0, 0x90, 1), 0x30);
	pci_bus_ecam(pci, &base, &size);
	assert_int_equal(base, 0xb0000000);
	assert_int_equal(size, 256u << 20);
	/* 64 MiB at 0xe4000000: bus 0 only is decoded; 0xe8000000 is outside it. */
	cfg_write(0, 0x60, 4, 0xe4000005);
	assert_int_equal(ecam_id(0xe4000000, 0), MCH_ID);
	assert_int_equal(ecam_id(0xb0000000, 0), 0xffffffff);
	assert_int_equal(mmio_read(0xe4000000 + (1u << 20), 4), 0xffffffff); /* bus 1 */
	assert_int_equal(ecam_id(0xe8000000, 0), 0xffffffff);
	/* 128 MiB: base bit 26 is ignored. */
	cfg_write(0, 0x60, 4, 0xc4000003);
	assert_int_equal(ecam_id(0xc0000000, 0), MCH_ID);
	/* Disabled: nowhere. */
	cfg_write(0, 0x60, 4, 0xc0000002);
	assert_int_equal(ecam_id(0xc0000000, 0), 0xffffffff);
	assert_int_equal(cfg_read(0, 0x00, 4), MCH_ID); /* 0xCF8 still works */
	machine_down();
}

/* Values no chipset would decode: the register keeps them, nothing decodes, nothing breaks. */
static void test_pciexbar_hostile(void **state)
{
	(void)state;
	machine_up(true);
	static const struct {
		uint32_t lo, hi;
	} bad[] = {
		{ 0x00000001, 0 },          /* base 0: over low RAM */
		{ 0x40000001, 0 },          /* over low RAM (the hole starts at 2 GiB) */
		{ 0xf8000001, 0 },          /* 256 MiB from 0xf0000000: over the IOAPIC and LAPIC */
		{ 0xfc000005, 0 },          /* 64 MiB at 0xfc000000: over the IOAPIC */
		{ 0xb0000007, 0 },          /* reserved length */
		{ 0xb0000001, 0xf },        /* above 4 GiB */
		{ 0xffffffff, 0xffffffff },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg_write(0, 0x60, 4, 0);
		cfg_write(0, 0x64, 4, bad[i].hi);
		cfg_write(0, 0x60, 4, bad[i].lo);
		uint64_t base, size;
		pci_bus_ecam(pci, &base, &size);
		assert_int_equal(size, 0);
		assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), 0xffffffff);
		assert_int_equal(ecam_id(0xb0000000, 0), 0xffffffff);
		assert_int_equal(cfg_read(0, 0x00, 4), MCH_ID);
	}
	/* Only the defined bits are stored. */
	assert_int_equal(cfg_read(0, 0x60, 4), 0xfc000007);
	assert_int_equal(cfg_read(0, 0x64, 4), 0xf);
	/* Read-only identity. */
	cfg_write(0, 0x00, 4, 0x12345678);
	cfg_write(LPC_SLOT, 0x00, 4, 0x12345678);
	assert_int_equal(cfg_read(0, 0x00, 4), MCH_ID);
	assert_int_equal(cfg_read(LPC_SLOT, 0x00, 4), LPC_ID);
	machine_down();
}

static void test_pam_smram(void **state)
{
	(void)state;
	machine_up(true);
	for (unsigned i = 0; i < 7; i++)
		assert_int_equal(cfg_read(0, 0x90 + i, 1), 0);
	cfg_write(0, 0x90, 4, 0x33333333);  /* PAM0-3: PAM0 has only the high segment */
	cfg_write(0, 0x94, 2, 0x1111);
	cfg_write(0, 0x96, 1, 0xff);
	assert_int_equal(cfg_read(0, 0x90, 4), 0x33333330);
	assert_int_equal(cfg_read(0, 0x94, 4) & 0xffffff, 0x331111);
	assert_int_equal(pam_calls, 7);
	static const uint8_t want[7] = { 0x30, 0x33, 0x33, 0x33, 0x11, 0x11, 0x33 };
	assert_memory_equal(pam_last, want, 7);
	cfg_write(0, 0x90, 4, 0x33333330);  /* unchanged: the hook is not called again */
	assert_int_equal(pam_calls, 7);
	/* SMRAM: power-on value, stored bits, then D_LCK freezes D_OPEN and ESMRAMC. */
	assert_int_equal(cfg_read(0, 0x9d, 1), 0x02);
	assert_int_equal(cfg_read(0, 0x9e, 1), 0x38);
	cfg_write(0, 0x9d, 1, 0x4a);
	assert_int_equal(cfg_read(0, 0x9d, 1), 0x4a);
	cfg_write(0, 0x9e, 1, 0x81);
	assert_int_equal(cfg_read(0, 0x9e, 1), 0xb9);
	cfg_write(0, 0x9d, 1, 0x5a);
	assert_int_equal(cfg_read(0, 0x9d, 1), 0x1a);
	cfg_write(0, 0x9d, 1, 0x4a);
	cfg_write(0, 0x9e, 1, 0x00);
	assert_int_equal(cfg_read(0, 0x9d, 1), 0x1a);
	assert_int_equal(cfg_read(0, 0x9e, 1), 0xb9);
	machine_down();
}

static void test_lpc_registers(void **state)
{
	(void)state;
	machine_up(true);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(cfg_read(LPC_SLOT, 0x60 + i, 1), 0x80);
		assert_int_equal(cfg_read(LPC_SLOT, 0x68 + i, 1), 0x80);
	}
	/* As SeaBIOS routes them: PIRQA-D and E-H to 10, 10, 11, 11. */
	cfg_write(LPC_SLOT, 0x60, 4, 0x0b0b0a0a);
	cfg_write(LPC_SLOT, 0x68, 4, 0x0b0b0a0a);
	assert_int_equal(cfg_read(LPC_SLOT, 0x60, 4), 0x0b0b0a0a);
	assert_int_equal(cfg_read(LPC_SLOT, 0x68, 4), 0x0b0b0a0a);
	cfg_write(LPC_SLOT, 0x61, 1, 0xff);
	assert_int_equal(cfg_read(LPC_SLOT, 0x61, 1), 0x8f);
	cfg_write(LPC_SLOT, 0x64, 4, 0xffffffff);   /* between the two groups: nothing */
	assert_int_equal(cfg_read(LPC_SLOT, 0x64, 4), 0);
	assert_int_equal(cfg_read(LPC_SLOT, 0xf0, 4), 0);
	cfg_write(LPC_SLOT, 0xf0, 4, 0xfed1c001);
	assert_int_equal(cfg_read(LPC_SLOT, 0xf0, 4), 0xfed1c001);
	cfg_write(LPC_SLOT, 0xf0, 4, 0xffffffff);
	assert_int_equal(cfg_read(LPC_SLOT, 0xf0, 4), 0xffffc001);
	machine_down();
}

/* PM1a CNT reads SCI_EN (1) where the ACPI registers decode. */
static bool pm_at(uint16_t base)
{
	return pio_read((uint16_t)(base + 4), 2) == 1;
}

static void other_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			 bool is_write)
{
	(void)opaque, (void)offset, (void)data, (void)len, (void)is_write;
}

static void test_pmbase(void **state)
{
	(void)state;
	machine_up(true);
	assert_true(pm_at(0x600));
	assert_int_equal(cfg_read(LPC_SLOT, 0x40, 4), 0x1);
	/* PMBASE alone moves nothing; ACPI_EN does. */
	cfg_write(LPC_SLOT, 0x40, 4, 0xb001);
	assert_true(pm_at(0x600));
	assert_false(pm_at(0xb000));
	cfg_write(LPC_SLOT, 0x44, 1, 0x80);
	assert_true(pm_at(0xb000));
	assert_false(pm_at(0x600));
	assert_int_equal(pio_read(0x604, 2), 0xffff);
	uint32_t t0 = (uint32_t)pio_read(0xb008, 4);   /* the PM timer came along */
	assert_true(t0 < (1u << 24));
	assert_int_equal(cfg_read(LPC_SLOT, 0x40, 4), 0xb001);
	assert_int_equal(cfg_read(LPC_SLOT, 0x44, 1), 0x80);
	/* Moving while enabled; the low bits are not an address. */
	cfg_write(LPC_SLOT, 0x40, 2, 0x067f);
	assert_int_equal(cfg_read(LPC_SLOT, 0x40, 4), 0x601);
	assert_true(pm_at(0x600));
	assert_false(pm_at(0xb000));
	/* Refused: 0, and over another device's ports: they stay at 0x600. */
	cfg_write(LPC_SLOT, 0x40, 4, 0x0);
	assert_true(pm_at(0x600));
	static int other;
	assert_int_equal(bus_register(&pio, 0x708, 4, other_access, &other, "other"), 0);
	cfg_write(LPC_SLOT, 0x40, 4, 0x701);
	assert_true(pm_at(0x600));
	assert_false(pm_at(0x700));
	assert_int_equal(bus_unregister(&pio, 0x708, &other), 0);
	assert_int_equal(cfg_read(0, 0x00, 4), MCH_ID);
	/* Power-off still works where they are. */
	cfg_write(LPC_SLOT, 0x40, 4, 0x1001);
	assert_true(pm_at(0x1000));
	pio_write(0x1004, 2, (5 << 10) | 0x2000);
	assert_int_equal(stops, 1);
	assert_int_equal(last_stop, VM_STOP_POWEROFF);
	machine_down();
}

static void test_reset_cf9(void **state)
{
	(void)state;
	machine_up(true);
	assert_int_equal(pio_read(0xcf9, 1), 0);
	pio_write(0xcf9, 1, 0x02);
	assert_int_equal(stops, 0);
	assert_int_equal(pio_read(0xcf9, 1), 0x02);
	pio_write(0xcf9, 1, 0x06);
	assert_int_equal(stops, 1);
	assert_int_equal(last_stop, VM_STOP_RESET);
	pio_write(0xcf9, 1, 0x0e);
	assert_int_equal(stops, 2);
	pio_write(0xcf9, 1, 0x08);
	assert_int_equal(stops, 2);
	assert_int_equal(pio_read(0xcf9, 1), 0x08);
	/* Other accesses in 0xCF8-0xCFF are the config mechanism's, as before. */
	pio_write(0xcf8, 4, 0x80000000u);
	assert_int_equal(pio_read(0xcf8, 4), 0x80000000u);
	assert_int_equal(pio_read(0xcfc, 4), MCH_ID);
	pio_write(0xcf8, 2, 0x0006);
	assert_int_equal(stops, 2);
	machine_down();
}

/* The virtio device's 32 KiB BAR 0: its doorbell (one queue, at +0x3000) follows each move. */
static void test_bar_moves(void **state)
{
	(void)state;
	machine_up(true);
	static const uint32_t places[] = {
		0xfebf8000,  /* SeaBIOS: the top of the hole */
		0x80000000,  /* OVMF: the hole's base */
		0xe0008000,  /* where the ECAM was before firmware moved it */
		0xc0000000,
	};
	cfg_write(0, 0x60, 4, 0xb0000001);   /* the ECAM out of the way, as SeaBIOS does */
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		cfg_write(RNG_SLOT, 0x04, 2, 0);
		assert_int_equal(ndoorbells, 0);
		cfg_write(RNG_SLOT, 0x10, 4, 0xffffffff);
		assert_int_equal(cfg_read(RNG_SLOT, 0x10, 4), 0xffff8000);
		cfg_write(RNG_SLOT, 0x10, 4, places[i]);
		cfg_write(RNG_SLOT, 0x04, 2, 0x0006);
		assert_int_equal(ndoorbells, 1);
		assert_int_equal(doorbells[0], places[i] + 0x3000ULL);
		/* The common configuration answers there: num_queues (0x12) is 1. */
		assert_int_equal(mmio_read(places[i] + 0x12, 2), 1);
	}
	/* Moving while decoding moves the doorbell too. */
	cfg_write(RNG_SLOT, 0x10, 4, 0xfe000000);
	assert_int_equal(ndoorbells, 1);
	assert_int_equal(doorbells[0], 0xfe003000ULL);
	/* Over the IOAPIC or below the hole: not decoding, no doorbell. */
	cfg_write(RNG_SLOT, 0x10, 4, 0xfec00000);
	assert_int_equal(ndoorbells, 0);
	cfg_write(RNG_SLOT, 0x10, 4, 0x7fff8000);
	assert_int_equal(ndoorbells, 0);
	cfg_write(RNG_SLOT, 0x10, 4, 0xf9000000);
	assert_int_equal(ndoorbells, 1);
	assert_int_equal(mmio_read(0xf9000000 + 0x12, 2), 1);
	/* The ECAM wins over a BAR under it. */
	cfg_write(0, 0x60, 4, 0xf8000005);   /* 64 MiB at 0xf8000000: covers the BAR */
	assert_int_equal(mmio_read(0xf8000000, 4), MCH_ID);
	assert_int_equal(mmio_read(0xf9000000 + 0x12, 2), 0xffff); /* bus 16: no device */
	machine_down();
}

/* I/O BARs from 0x6000 (OVMF) and 64-bit BARs above 4 GiB are honoured on q35. */
static void bar_test_access(struct pci_device *d, int bar, uint64_t offset, uint8_t *data,
			    uint32_t len, bool is_write)
{
	(void)d, (void)offset;
	if (!is_write)
		memset(data, 0x40 + bar, len);
}

static void test_bar_windows(void **state)
{
	(void)state;
	machine_up(true);
	struct pci_device *d = calloc(1, sizeof(*d));
	assert_non_null(d);
	d->bar_access = bar_test_access;
	pci_bar_init(d, 0, 0x100, true, false);
	pci_bar_init(d, 2, 1ULL << 20, false, true);
	const struct pci_device_info info = { .vendor_id = 0x1234, .device_id = 0x5678 };
	assert_int_equal(pci_device_register(pci, d, &info), 0);
	unsigned slot = d->slot;
	cfg_write(slot, 0x10, 4, 0x6001);
	cfg_write(slot, 0x18, 4, 0x0000000c);
	cfg_write(slot, 0x1c, 4, 0x00000080);   /* 512 GiB */
	cfg_write(slot, 0x04, 2, 0x0003);
	assert_int_equal(pio_read(0x6010, 1), 0x40);
	assert_int_equal(mmio_read(0x8000000000ULL + 0x10, 4), 0x42424242);
	assert_int_equal(mmio_read(0x8000100000ULL, 4), 0xffffffff);
	/* Below 0x6000 and over RAM below 4 GiB is nobody's. */
	cfg_write(slot, 0x10, 4, 0x5f01);
	assert_int_equal(pio_read(0x5f10, 1), 0xff);
	cfg_write(slot, 0x1c, 4, 0);
	cfg_write(slot, 0x18, 4, 0x4000000c);
	assert_int_equal(mmio_read(0x40000000, 4), 0xffffffff);
	pci_device_unregister(d);
	free(d);
	machine_down();
}

/* A snapshot keeps what firmware programmed: the restored VM decodes the ECAM and the ACPI
 * registers where the saved one did, and tells the machine the PAM values. */
static void test_snapshot(void **state)
{
	(void)state;
	machine_up(true);
	cfg_write(0, 0x60, 4, 0);
	cfg_write(0, 0x60, 4, 0xb0000001);
	cfg_write(0, 0x90, 4, 0x33333330);
	cfg_write(LPC_SLOT, 0x40, 4, 0xb001);
	cfg_write(LPC_SLOT, 0x44, 1, 0x80);
	struct stream s;
	stream_init_mem_writer(&s);
	stream_write_header(&s, "KVMKITTS", 1);
	stream_begin_section(&s, pci_bus_ops.tag, 0, pci_bus_ops.version);
	pci_bus_ops.save(pci, &s);
	assert_int_equal(stream_end_section(&s), 0);
	assert_int_equal(stream_flush(&s), 0);
	size_t len;
	const uint8_t *p = stream_mem_data(&s, &len);
	uint8_t *copy = malloc(len);
	assert_non_null(copy);
	memcpy(copy, p, len);
	stream_close(&s);
	machine_down();

	machine_up(true);
	assert_true(pm_at(0x600));
	uint32_t version;
	struct stream_section sec;
	stream_init_mem_reader(&s, copy, len);
	assert_int_equal(stream_read_header(&s, "KVMKITTS", 1, &version), 0);
	assert_int_equal(stream_next_section(&s, &sec), 0);
	assert_int_equal(pci_bus_ops.load(pci, &s, sec.version), 0);
	assert_int_equal(stream_end_read(&s), 0);
	stream_close(&s);
	free(copy);
	assert_int_equal(ecam_id(0xb0000000, 0), MCH_ID);
	assert_int_equal(ecam_id(LAYOUT_PCI_ECAM_BASE, 0), 0xffffffff);
	assert_true(pm_at(0xb000));
	assert_int_equal(pam_last[1], 0x33);
	assert_int_equal(pam_calls, 4);
	machine_down();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_off),
		cmocka_unit_test(test_identity_q35),
		cmocka_unit_test(test_pciexbar),
		cmocka_unit_test(test_pciexbar_hostile),
		cmocka_unit_test(test_pam_smram),
		cmocka_unit_test(test_lpc_registers),
		cmocka_unit_test(test_pmbase),
		cmocka_unit_test(test_reset_cf9),
		cmocka_unit_test(test_bar_moves),
		cmocka_unit_test(test_bar_windows),
		cmocka_unit_test(test_snapshot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
