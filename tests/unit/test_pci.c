/* Unit tests of PCI (hw/pci.c) through the VM's real device buses, as a guest reaches it: config
 * space by ports 0xCF8/0xCFC and by ECAM, BAR sizing and moves, the capability list, MSI-X
 * table, masking and pending bits, INTx, and a hostile guest's accesses. KVM is stood in for by
 * the recording fakes behind the interrupt handle the bus is given (vmm/device.h); MSI-X vectors
 * are real eventfds, so a delivered interrupt is a count read from one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "hw/pci.h"
#include "vmm/device.h"

/* --- Fakes of what pci.c asks of KVM --- */

#define FAKE_GSIS 1024
#define FIRST_MSI_GSI 24

static struct fake_gsi {
	bool allocated;
	bool routed;
	uint64_t addr;
	uint32_t data;
	int route_sets;     /* msi_route_set calls */
	int efd;            /* bound by irqfd, -1 = none */
} gsis[FAKE_GSIS];
static int gsi_limit = FAKE_GSIS;   /* lower it to make allocation fail */
static int irqfd_error;             /* nonzero: irqfd fails with it */
static int route_error;             /* nonzero: msi_route_set fails with it */
static int irq_level[64];           /* last level per GSI from set_line */
static int irq_line_calls;

static void fakes_reset(void)
{
	memset(gsis, 0, sizeof(gsis));
	for (int i = 0; i < FAKE_GSIS; i++)
		gsis[i].efd = -1;
	gsi_limit = FAKE_GSIS;
	irqfd_error = route_error = 0;
	memset(irq_level, 0, sizeof(irq_level));
	irq_line_calls = 0;
}

static int fake_msi_route_alloc(void *opaque)
{
	(void)opaque;
	for (int g = FIRST_MSI_GSI; g < gsi_limit; g++) {
		if (!gsis[g].allocated) {
			gsis[g] = (struct fake_gsi){ .allocated = true, .efd = -1 };
			return g;
		}
	}
	return -ENOSPC;
}

static void fake_msi_route_free(void *opaque, int gsi)
{
	(void)opaque;
	assert_true(gsi >= FIRST_MSI_GSI && gsi < FAKE_GSIS && gsis[gsi].allocated);
	assert_int_equal(gsis[gsi].efd, -1); /* pci.c unbinds the irqfd first */
	gsis[gsi] = (struct fake_gsi){ .efd = -1 };
}

static int fake_msi_route_set(void *opaque, int gsi, uint64_t address, uint32_t data)
{
	(void)opaque;
	assert_true(gsi >= FIRST_MSI_GSI && gsi < FAKE_GSIS && gsis[gsi].allocated);
	if (route_error)
		return -route_error;
	gsis[gsi].routed = true;
	gsis[gsi].addr = address;
	gsis[gsi].data = data;
	gsis[gsi].route_sets++;
	return 0;
}

static int fake_irqfd(void *opaque, int eventfd, int gsi, bool assign)
{
	(void)opaque;
	assert_true(gsi >= FIRST_MSI_GSI && gsi < FAKE_GSIS && gsis[gsi].allocated);
	if (assign && irqfd_error)
		return -irqfd_error;
	assert_int_equal(gsis[gsi].efd, assign ? -1 : eventfd);
	gsis[gsi].efd = assign ? eventfd : -1;
	return 0;
}

static int fake_ioeventfd(void *opaque, uint64_t addr, uint32_t len, bool is_pio,
			  bool datamatch, uint64_t data, int eventfd, bool assign)
{
	(void)opaque, (void)addr, (void)len, (void)is_pio, (void)datamatch, (void)data;
	(void)eventfd, (void)assign;
	return -ENOSYS; /* pci.c has no business with doorbells */
}

static void fake_set_line(void *opaque, uint32_t irq, int level)
{
	(void)opaque;
	assert_true(irq < 64);
	irq_level[irq] = level;
	irq_line_calls++;
}

static const struct irq_ops fake_irq_ops = {
	.set_line = fake_set_line,
	.msi_route_alloc = fake_msi_route_alloc,
	.msi_route_free = fake_msi_route_free,
	.msi_route_set = fake_msi_route_set,
	.irqfd = fake_irqfd,
	.ioeventfd = fake_ioeventfd,
};

/* Interrupts delivered through the vector's irqfd since the last call. */
static uint64_t msi_count(int gsi)
{
	assert_true(gsis[gsi].efd >= 0);
	uint64_t n = 0;
	if (read(gsis[gsi].efd, &n, sizeof(n)) != sizeof(n))
		return 0; /* EAGAIN: none */
	return n;
}

/* --- A VM with the real buses and a test device --- */

/* What the machine gives the bus: its own port and memory buses, and the fakes above. */
static struct test_vm {
	struct bus pio_bus, mmio_bus;
	struct pci_bus *pci;
} *vm;

static int setup(void **state)
{
	(void)state;
	fakes_reset();
	vm = calloc(1, sizeof(*vm));
	assert_non_null(vm);
	const struct device_ctx ctx = { .pio = &vm->pio_bus, .mmio = &vm->mmio_bus,
					.irq = { &fake_irq_ops, NULL } };
	vm->pci = pci_bus_create(&ctx, NULL);
	assert_non_null(vm->pci);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	pci_bus_destroy(vm->pci);
	bus_destroy(&vm->pio_bus);
	bus_destroy(&vm->mmio_bus);
	free(vm);
	/* Every GSI and irqfd went back. */
	for (int g = 0; g < FAKE_GSIS; g++)
		assert_false(gsis[g].allocated);
	return 0;
}

#define DEV_BAR_MAX 0x10000

struct test_dev {
	struct pci_device pdev;
	uint8_t store[PCI_NUM_BARS][DEV_BAR_MAX]; /* what bar_access reads and writes */
	int accesses[PCI_NUM_BARS];
	uint64_t last_off;
	uint32_t last_len;
	int changed[PCI_NUM_BARS];                /* bar_changed calls */
	int hook_calls;
	bool hook_override;                       /* config_access returns 0xAB at 0x80 */
};

static void dev_bar_access(struct pci_device *d, int bar, uint64_t offset, uint8_t *data,
			   uint32_t len, bool is_write)
{
	struct test_dev *t = d->opaque;
	/* pci.c's promise: inside the BAR, 1..8 bytes, never the MSI-X structures. */
	assert_true(bar >= 0 && bar < PCI_NUM_BARS && d->bars[bar].size);
	assert_true(len >= 1 && len <= 8);
	assert_true(offset + len <= d->bars[bar].size && offset + len <= DEV_BAR_MAX);
	t->accesses[bar]++;
	t->last_off = offset;
	t->last_len = len;
	if (is_write)
		memcpy(t->store[bar] + offset, data, len);
	else
		memcpy(data, t->store[bar] + offset, len);
}

static void dev_bar_changed(struct pci_device *d, int bar)
{
	struct test_dev *t = d->opaque;
	assert_true(bar >= 0 && bar < PCI_NUM_BARS);
	t->changed[bar]++;
}

static void dev_config_access(struct pci_device *d, uint32_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	struct test_dev *t = d->opaque;
	assert_true(offset + len <= PCI_CONFIG_SIZE && len >= 1 && len <= 8);
	t->hook_calls++;
	if (!is_write && t->hook_override && offset <= 0x80 && offset + len > 0x80)
		data[0x80 - offset] = 0xab;
}

static struct test_dev *dev_new(void)
{
	struct test_dev *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->pdev.bar_access = dev_bar_access;
	t->pdev.bar_changed = dev_bar_changed;
	t->pdev.config_access = dev_config_access;
	t->pdev.opaque = t;
	return t;
}

static const struct pci_device_info dev_info = {
	.vendor_id = 0x1af4, .device_id = 0x1042,
	.subsystem_vendor_id = 0x1af4, .subsystem_id = 0x0002,
	.revision = 1, .class_code = 0x010000, .interrupt_pin = 1,
};

/* The usual device: BAR0 32-bit 64 KiB memory with 8 MSI-X vectors (table at 0x4000, PBA at
 * 0x5000), BAR1 32-byte I/O, BAR2+3 64-bit 16 KiB memory; two vendor capabilities. */
#define MSIX_TABLE 0x4000
#define MSIX_PBA   0x5000
#define NVEC       8

static struct test_dev *dev_usual(int *first_gsi)
{
	struct test_dev *t = dev_new();
	pci_bar_init(&t->pdev, 0, 0x10000, false, false);
	pci_bar_init(&t->pdev, 1, 32, true, false);
	pci_bar_init(&t->pdev, 2, 0x4000, false, true);
	const uint8_t vndr[6] = { 8, 1, 2, 3, 4, 5 };
	const uint8_t vndr_wmask[6] = { 0, 0, 0xff, 0, 0, 0 };
	assert_int_equal(pci_add_capability(&t->pdev, PCI_CAP_ID_VNDR, vndr, 6, vndr_wmask), 0x40);
	assert_int_equal(pci_msix_init(&t->pdev, NVEC, 0, MSIX_TABLE, MSIX_PBA), 0);
	assert_int_not_equal(pci_add_capability(&t->pdev, PCI_CAP_ID_VNDR, NULL, 14, NULL), 0);
	int gsi = fake_msi_route_alloc(NULL); /* peek at the next GSI, then give it back */
	fake_msi_route_free(NULL, gsi);
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), 0);
	if (first_gsi)
		*first_gsi = gsi;
	return t;
}

static void dev_free(struct test_dev *t)
{
	pci_device_unregister(&t->pdev);
	free(t);
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
	bus_dispatch(&vm->pio_bus, port, b, len, false);
	return get(b, len);
}

static void pio_write(uint16_t port, uint32_t len, uint64_t v)
{
	uint8_t b[8];
	put(b, len, v);
	bus_dispatch(&vm->pio_bus, port, b, len, true);
}

static uint64_t mmio_read(uint64_t addr, uint32_t len)
{
	uint8_t b[8];
	bus_dispatch(&vm->mmio_bus, addr, b, len, false);
	return get(b, len);
}

static void mmio_write(uint64_t addr, uint32_t len, uint64_t v)
{
	uint8_t b[8];
	put(b, len, v);
	bus_dispatch(&vm->mmio_bus, addr, b, len, true);
}

static uint32_t cf8(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

/* Mechanism #1: address, then data at 0xCFC + the low bits of the register. */
static uint64_t conf1_read(unsigned slot, unsigned reg, uint32_t len)
{
	pio_write(0xcf8, 4, cf8(0, slot, 0, reg));
	return pio_read((uint16_t)(0xcfc + (reg & 3)), len);
}

static void conf1_write(unsigned slot, unsigned reg, uint32_t len, uint64_t v)
{
	pio_write(0xcf8, 4, cf8(0, slot, 0, reg));
	pio_write((uint16_t)(0xcfc + (reg & 3)), len, v);
}

static uint64_t ecam_addr(unsigned slot, unsigned fn, unsigned reg)
{
	return LAYOUT_PCI_ECAM_BASE + ((uint64_t)slot << 15) + ((uint64_t)fn << 12) + reg;
}

static uint64_t ecam_read(unsigned slot, unsigned reg, uint32_t len)
{
	return mmio_read(ecam_addr(slot, 0, reg), len);
}

static void ecam_write(unsigned slot, unsigned reg, uint32_t len, uint64_t v)
{
	mmio_write(ecam_addr(slot, 0, reg), len, v);
}

static uint64_t bar_addr(unsigned slot, int bar)
{
	uint32_t lo = (uint32_t)ecam_read(slot, 0x10 + 4 * (unsigned)bar, 4);
	if (lo & 1)
		return lo & ~3u;
	uint64_t a = lo & ~0xfu;
	if ((lo & 6) == 4)
		a |= ecam_read(slot, 0x14 + 4 * (unsigned)bar, 4) << 32;
	return a;
}

static void enable(unsigned slot, uint16_t cmd)
{
	ecam_write(slot, 0x04, 2, cmd);
}

/* --- Tests --- */

static void test_host_bridge(void **state)
{
	(void)state;
	assert_int_equal(conf1_read(0, 0x00, 4), 0x00081b36);  /* Red Hat PCIe host bridge */
	assert_int_equal(conf1_read(0, 0x08, 4) >> 8, 0x060000); /* class: host bridge */
	assert_int_equal(conf1_read(0, 0x0e, 1), 0);            /* header type 0, one function */
	assert_int_equal(conf1_read(0, 0x3d, 1), 0);            /* no INTx */
	for (unsigned bar = 0; bar < 6; bar++)
		assert_int_equal(conf1_read(0, 0x10 + 4 * bar, 4), 0);
	/* Nothing else on the bus yet, nothing on other buses or functions. */
	assert_int_equal(conf1_read(1, 0x00, 4), 0xffffffff);
	assert_int_equal(conf1_read(31, 0x00, 4), 0xffffffff);
	pio_write(0xcf8, 4, cf8(1, 0, 0, 0));
	assert_int_equal(pio_read(0xcfc, 4), 0xffffffff);
	pio_write(0xcf8, 4, cf8(0, 0, 1, 0));
	assert_int_equal(pio_read(0xcfc, 4), 0xffffffff);
	assert_int_equal(mmio_read(ecam_addr(0, 3, 0), 4), 0xffffffff);
	assert_int_equal(mmio_read(ecam_addr(5, 0, 0), 4), 0xffffffff);
}

/* Linux's type-1 probe: a byte to 0xCFB is ignored, 0x80000000 reads back; the enable bit
 * gates the data port; reserved bits read 0. */
static void test_conf1_address_register(void **state)
{
	(void)state;
	pio_write(0xcf8, 4, 0x12345678);
	pio_write(0xcfb, 1, 0x01);
	assert_int_equal(pio_read(0xcf8, 4), 0x12345678 & 0x0ffffffc);
	pio_write(0xcf8, 4, 0x80000000);
	assert_int_equal(pio_read(0xcf8, 4), 0x80000000);
	assert_int_equal(pio_read(0xcfb, 1), 0x80);
	assert_int_equal(pio_read(0xcfa, 2), 0x8000);
	pio_write(0xcf8, 2, 0xffff); /* only dword writes set the address */
	assert_int_equal(pio_read(0xcf8, 4), 0x80000000);
	assert_int_equal(pio_read(0xcfc, 4), 0x00081b36);
	assert_int_equal(pio_read(0xcfe, 2), 0x0008);
	assert_int_equal(pio_read(0xcfd, 1), 0x1b);
	pio_write(0xcf8, 4, 0x7ffffffc); /* disabled: no config cycle */
	assert_int_equal(pio_read(0xcfc, 4), 0xffffffff);
	/* A dword straddling address and data is nobody's. */
	pio_write(0xcf8, 4, 0x80000000);
	assert_int_equal(pio_read(0xcfa, 4), 0xffffffff);
	pio_write(0xcfa, 4, 0);
	assert_int_equal(pio_read(0xcf8, 4), 0x80000000);
	/* AMD's extended register bits (27:24) reach the extended space as ECAM does: register
	 * 0x100 (empty), not 0x00 (the IDs). */
	pio_write(0xcf8, 4, 0x81000000);
	assert_int_equal(pio_read(0xcfc, 4), ecam_read(0, 0x100, 4));
	assert_int_equal(pio_read(0xcfc, 4), 0);
}

static void test_conf1_and_ecam_agree(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	assert_int_equal(s, 1);
	for (unsigned reg = 0; reg < 256; reg += 4)
		assert_int_equal(conf1_read(s, reg, 4), ecam_read(s, reg, 4));
	for (unsigned reg = 0; reg < 256; reg++)
		assert_int_equal(conf1_read(s, reg, 1), ecam_read(s, reg, 1));
	for (unsigned reg = 0; reg < 256; reg += 2)
		assert_int_equal(conf1_read(s, reg, 2), ecam_read(s, reg, 2));
	assert_int_equal(ecam_read(s, 0x00, 4), 0x10421af4);
	assert_int_equal(ecam_read(s, 0x08, 4), 0x01000001); /* class 01 00 00, revision 1 */
	assert_int_equal(ecam_read(s, 0x2c, 4), 0x00021af4);
	assert_int_equal(ecam_read(s, 0x3d, 1), 1);          /* INTA# */
	assert_int_equal(ecam_read(s, 0x3c, 1), pci_slot_gsi((uint8_t)s, 1));
	/* Written one way, read the other: interrupt line, cache line size, a vendor cap byte. */
	conf1_write(s, 0x3c, 1, 0x0b);
	assert_int_equal(ecam_read(s, 0x3c, 1), 0x0b);
	ecam_write(s, 0x0c, 2, 0x4010);
	assert_int_equal(conf1_read(s, 0x0c, 2), 0x4010);
	conf1_write(s, 0x44, 1, 0x77);
	assert_int_equal(ecam_read(s, 0x44, 1), 0x77);
	/* 8-byte ECAM accesses, and one crossing into the next function (absent: all ones). */
	assert_int_equal(mmio_read(ecam_addr(s, 0, 0), 8), ecam_read(s, 0, 4) | ecam_read(s, 4, 4) << 32);
	assert_int_equal(mmio_read(ecam_addr(s, 0, 0xffc), 8), 0xffffffff00000000ull);
	mmio_write(ecam_addr(s, 0, 0xffc), 8, ~0ull); /* harmless */
	/* The extended space exists (ECAM) and is empty. */
	assert_int_equal(ecam_read(s, 0x100, 4), 0);
	assert_int_equal(ecam_read(s, 0xffc, 4), 0);
	dev_free(t);
}

static void test_readonly_fields(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	uint8_t before[256];
	for (unsigned reg = 0; reg < 256; reg++)
		before[reg] = (uint8_t)ecam_read(s, reg, 1);
	/* IDs, status, revision/class, header type, BIST, subsystem, ROM, cap pointer, pin. */
	static const unsigned ro[] = { 0x00, 0x02, 0x06, 0x08, 0x0a, 0x0e, 0x0f, 0x2c, 0x2e, 0x30,
				       0x34, 0x3d, 0x3e };
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++)
		conf1_write(s, ro[i], 2, 0xffff);
	ecam_write(s, 0x30, 4, 0xffffffff);
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++)
		assert_int_equal(ecam_read(s, ro[i], 2), get(before + ro[i], 2));
	assert_int_equal(ecam_read(s, 0x30, 4), 0); /* no expansion ROM */
	/* Command: only I/O, memory, bus master, parity, SERR, INTx disable stick. */
	conf1_write(s, 0x04, 2, 0xffff);
	assert_int_equal(ecam_read(s, 0x04, 2), 0x0547);
	enable(s, 0);
	/* Status: capability list bit set, nothing writable (no RW1C error bits are ever set). */
	assert_int_equal(ecam_read(s, 0x06, 2), 0x0010);
	/* Capability headers and the read-only parts of their bodies. */
	ecam_write(s, 0x40, 8, ~0ull);
	assert_int_equal(ecam_read(s, 0x40, 4), get(before + 0x40, 4));
	assert_int_equal(ecam_read(s, 0x44, 1), 0xff); /* the one writable byte (vndr_wmask) */
	assert_int_equal(ecam_read(s, 0x45, 2), get(before + 0x45, 2));
	ecam_write(s, 0x44, 1, before[0x44]);
	dev_free(t);
}

static void test_bar_sizing(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	uint32_t orig[6];
	for (unsigned b = 0; b < 6; b++)
		orig[b] = (uint32_t)ecam_read(s, 0x10 + 4 * b, 4);
	assert_int_equal(orig[0] & 0xf, 0);             /* 32-bit memory, not prefetchable */
	assert_int_equal(orig[1] & 0x3, 1);             /* I/O */
	assert_int_equal(orig[2] & 0xf, 4);             /* 64-bit memory */
	for (unsigned b = 0; b < 6; b++)
		conf1_write(s, 0x10 + 4 * b, 4, 0xffffffff);
	assert_int_equal(conf1_read(s, 0x10, 4), 0xffff0000);          /* 64 KiB */
	assert_int_equal(conf1_read(s, 0x14, 4), 0x0000ffe1);          /* 32 ports, 16-bit decode */
	assert_int_equal(conf1_read(s, 0x18, 4), 0xffffc004);          /* 16 KiB ... */
	assert_int_equal(conf1_read(s, 0x1c, 4), 0xffffffff);          /* ... high half */
	assert_int_equal(conf1_read(s, 0x20, 4), 0);                    /* unused */
	assert_int_equal(conf1_read(s, 0x24, 4), 0);
	/* Sizing with decoding off moved nothing that decodes; restoring puts them back. */
	for (unsigned b = 0; b < 6; b++)
		conf1_write(s, 0x10 + 4 * b, 4, orig[b]);
	for (unsigned b = 0; b < 6; b++)
		assert_int_equal(conf1_read(s, 0x10 + 4 * b, 4), orig[b]);
	for (int b = 0; b < 6; b++)
		assert_int_equal(t->changed[b], 0);
	/* Byte-wise writes to a BAR keep the size mask and the type bits. */
	ecam_write(s, 0x10, 1, 0xff);
	ecam_write(s, 0x11, 1, 0xff);
	assert_int_equal(ecam_read(s, 0x10, 4), orig[0]);
	dev_free(t);
}

static void test_bars_preassigned(void **state)
{
	(void)state;
	struct test_dev *a = dev_usual(NULL), *b = dev_usual(NULL);
	struct test_dev *devs[2] = { a, b };
	uint64_t lo[6], hi[6];
	int n = 0;
	for (int i = 0; i < 2; i++) {
		unsigned s = devs[i]->pdev.slot;
		assert_int_equal(ecam_read(s, 0x04, 2), 0); /* decoding off until the guest enables it */
		static const int bars[3] = { 0, 1, 2 };
		static const uint64_t sizes[3] = { 0x10000, 32, 0x4000 };
		for (int k = 0; k < 3; k++) {
			uint64_t addr = bar_addr(s, bars[k]);
			assert_int_equal(addr % sizes[k], 0); /* naturally aligned */
			assert_int_equal(devs[i]->pdev.bars[bars[k]].addr, addr);
			assert_false(devs[i]->pdev.bars[bars[k]].active);
			if (bars[k] == 1)
				assert_true(addr >= PORT_PCI_IO_BASE &&
					    addr + 32 <= PORT_PCI_IO_BASE + PORT_PCI_IO_SIZE);
			else
				assert_true(addr >= LAYOUT_PCI_MEM_BASE &&
					    addr + sizes[k] <= LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE);
			if (bars[k] != 1) {
				lo[n] = addr;
				hi[n++] = addr + sizes[k];
			}
		}
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < i; j++)
			assert_true(hi[i] <= lo[j] || hi[j] <= lo[i]);
	assert_int_not_equal(bar_addr(a->pdev.slot, 1), bar_addr(b->pdev.slot, 1));
	dev_free(b);
	dev_free(a);
}

static void test_bar_decode_and_move(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	uint64_t m0 = bar_addr(s, 0), io = bar_addr(s, 1), m2 = bar_addr(s, 2);
	t->store[0][0x10] = 0x5a;
	t->store[2][0x20] = 0xa5;
	t->store[1][4] = 0x3c;

	/* Decoding off: nothing arrives, reads float high. */
	assert_int_equal(mmio_read(m0 + 0x10, 1), 0xff);
	assert_int_equal(pio_read((uint16_t)(io + 4), 1), 0xff);
	assert_int_equal(t->accesses[0] + t->accesses[1] + t->accesses[2], 0);

	enable(s, 0x0002); /* memory only */
	assert_int_equal(t->changed[0], 1);
	assert_int_equal(t->changed[2], 1);
	assert_int_equal(t->changed[1], 0);
	assert_true(t->pdev.bars[0].active && !t->pdev.bars[1].active && t->pdev.bars[2].active);
	assert_int_equal(mmio_read(m0 + 0x10, 1), 0x5a);
	assert_int_equal(t->last_off, 0x10);
	assert_int_equal(mmio_read(m2 + 0x20, 1), 0xa5);
	assert_int_equal(pio_read((uint16_t)(io + 4), 1), 0xff);
	enable(s, 0x0003);
	assert_int_equal(t->changed[1], 1);
	assert_int_equal(pio_read((uint16_t)(io + 4), 1), 0x3c);
	pio_write((uint16_t)(io + 8), 4, 0x11223344);
	assert_int_equal(get(t->store[1] + 8, 4), 0x11223344);
	/* An access running past the BAR's end is nobody's. */
	int before = t->accesses[1];
	assert_int_equal(pio_read((uint16_t)(io + 30), 4), 0xffffffff);
	assert_int_equal(t->accesses[1], before);
	enable(s, 0x0003); /* rewriting the same command changes nothing */
	assert_int_equal(t->changed[0], 1);

	/* Linux moves a 64-bit BAR with memory decoding off, low half then high half. */
	uint64_t m2_new = LAYOUT_PCI_MEM_BASE + 0x10000000;
	enable(s, 0x0001);
	assert_int_equal(t->changed[0], 2);
	assert_int_equal(t->changed[2], 2);
	ecam_write(s, 0x18, 4, (uint32_t)m2_new);
	ecam_write(s, 0x1c, 4, 0);
	assert_int_equal(t->changed[2], 2); /* moved while off: nothing to tell */
	enable(s, 0x0003);
	assert_int_equal(t->changed[2], 3);
	assert_int_equal(t->pdev.bars[2].addr, m2_new);
	assert_int_equal(mmio_read(m2_new + 0x20, 1), 0xa5);
	before = t->accesses[2];
	assert_int_equal(mmio_read(m2 + 0x20, 1), 0xff); /* the old place is empty */
	assert_int_equal(t->accesses[2], before);

	/* Moved while decoding (a guest may): announced, and dispatched at once. */
	uint64_t m0_new = LAYOUT_PCI_MEM_BASE + 0x08000000;
	ecam_write(s, 0x10, 4, (uint32_t)m0_new);
	assert_int_equal(t->changed[0], 4);
	assert_int_equal(mmio_read(m0_new + 0x10, 1), 0x5a);
	assert_int_equal(mmio_read(m0 + 0x10, 1), 0xff);

	/* A BAR outside its window does not decode (sizing with decoding on, or a 64-bit BAR
	 * placed above 4 GiB: only the windows are dispatched), and says so. */
	ecam_write(s, 0x1c, 4, 1);
	assert_false(t->pdev.bars[2].active);
	assert_int_equal(t->changed[2], 4);
	ecam_write(s, 0x1c, 4, 0);
	assert_true(t->pdev.bars[2].active);
	conf1_write(s, 0x10, 4, 0xffffffff);
	assert_false(t->pdev.bars[0].active);
	conf1_write(s, 0x10, 4, (uint32_t)m0_new);
	assert_true(t->pdev.bars[0].active);
	/* The I/O BAR cannot leave 64 KiB: its upper bits are read-only zeroes. */
	ecam_write(s, 0x14, 4, 0xffff0000 | (uint32_t)io);
	assert_int_equal(bar_addr(s, 1), io);
	dev_free(t);
}

static void test_capability_list(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	assert_true(ecam_read(s, 0x06, 2) & 0x10);
	uint8_t ids[8], offs[8];
	int n = 0;
	for (unsigned p = (unsigned)ecam_read(s, 0x34, 1); p; p = (unsigned)ecam_read(s, p + 1, 1)) {
		assert_true(n < 8);
		assert_int_equal(p % 4, 0);
		assert_true(p >= 0x40 && p < 0x100);
		offs[n] = (uint8_t)p;
		ids[n++] = (uint8_t)ecam_read(s, p, 1);
	}
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(ids[2], PCI_CAP_ID_VNDR);
	assert_int_equal(offs[0], 0x40);
	assert_int_equal(offs[1], 0x48); /* 0x40 + 2 + 6, aligned up */
	assert_int_equal(offs[2], 0x54); /* 0x48 + 2 + 10 */
	assert_int_equal(ecam_read(s, 0x42, 4), 0x03020108);
	/* MSI-X: table size N-1, table and PBA offset | BIR 0 */
	assert_int_equal(ecam_read(s, 0x4a, 2), NVEC - 1);
	assert_int_equal(ecam_read(s, 0x4c, 4), MSIX_TABLE);
	assert_int_equal(ecam_read(s, 0x50, 4), MSIX_PBA);
	ecam_write(s, 0x4a, 2, 0xffff);
	assert_int_equal(ecam_read(s, 0x4a, 2), 0xc000 | (NVEC - 1)); /* enable + mask writable */
	ecam_write(s, 0x4c, 4, 0xffffffff);
	assert_int_equal(ecam_read(s, 0x4c, 4), MSIX_TABLE);
	ecam_write(s, 0x4a, 2, 0);

	/* A full config space: capability appends fail cleanly. */
	struct test_dev *u = dev_new();
	int added = 0;
	while (pci_add_capability(&u->pdev, PCI_CAP_ID_VNDR, NULL, 30, NULL))
		added++;
	assert_int_equal(added, (0x100 - 0x40) / 32);
	assert_int_equal(pci_add_capability(&u->pdev, PCI_CAP_ID_VNDR, NULL, 255, NULL), 0);
	free(u);
	dev_free(t);
}

static uint64_t table(const struct test_dev *t, unsigned vec, unsigned field)
{
	return t->pdev.bars[0].addr + MSIX_TABLE + 16 * vec + field;
}

static void test_msix_table(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	/* The table is only there while memory decoding is on. */
	assert_int_equal(mmio_read(bar_addr(s, 0) + MSIX_TABLE + 12, 4), 0xffffffff);
	enable(s, 0x0002);
	for (unsigned v = 0; v < NVEC; v++) {
		assert_int_equal(mmio_read(table(t, v, 0), 8), 0);
		assert_int_equal(mmio_read(table(t, v, 8), 4), 0);
		assert_int_equal(mmio_read(table(t, v, 12), 4), 1); /* masked at reset */
	}
	mmio_write(table(t, 3, 0), 4, 0xfee01000);
	mmio_write(table(t, 3, 4), 4, 0x12);
	mmio_write(table(t, 3, 8), 4, 0x4041);
	assert_int_equal(mmio_read(table(t, 3, 0), 8), 0x12fee01000ull);
	assert_int_equal(mmio_read(table(t, 3, 8), 4), 0x4041);
	mmio_write(table(t, 4, 0), 8, 0xabcdef0012345678ull); /* one qword */
	assert_int_equal(mmio_read(table(t, 4, 0), 4), 0x12345678);
	assert_int_equal(mmio_read(table(t, 4, 4), 4), 0xabcdef00);
	/* Vector control: only the mask bit is writable. */
	mmio_write(table(t, 3, 12), 4, 0xfffffffe);
	assert_int_equal(mmio_read(table(t, 3, 12), 4), 0);
	mmio_write(table(t, 3, 12), 4, 0xffffffff);
	assert_int_equal(mmio_read(table(t, 3, 12), 4), 1);
	/* Odd sizes and offsets. */
	mmio_write(table(t, 5, 1), 2, 0xbeef);
	assert_int_equal(mmio_read(table(t, 5, 0), 4), 0x00beef00);
	assert_int_equal(mmio_read(table(t, 5, 3), 1), 0x00);
	/* A qword across two entries: vector control of 5, address of 6. */
	mmio_write(table(t, 6, 0), 4, 0xfee00000);
	mmio_write(table(t, 5, 12), 8, 0);
	assert_int_equal(mmio_read(table(t, 5, 12), 4), 0);
	assert_int_equal(mmio_read(table(t, 6, 0), 4), 0);
	assert_int_equal(mmio_read(table(t, 6, 12), 4), 1);
	/* The PBA reads zero and ignores writes; nothing reached the device's own handler. */
	assert_int_equal(mmio_read(t->pdev.bars[0].addr + MSIX_PBA, 8), 0);
	mmio_write(t->pdev.bars[0].addr + MSIX_PBA, 8, ~0ull);
	assert_int_equal(mmio_read(t->pdev.bars[0].addr + MSIX_PBA, 8), 0);
	assert_int_equal(t->accesses[0], 0);
	/* Right past the table and the PBA: the device again; an access straddling the table's
	 * start is cut: the device gets its part, the table the rest. */
	mmio_read(t->pdev.bars[0].addr + MSIX_TABLE + 16 * NVEC, 4);
	assert_int_equal(t->accesses[0], 1);
	assert_int_equal(t->last_off, MSIX_TABLE + 16 * NVEC);
	mmio_read(t->pdev.bars[0].addr + MSIX_PBA + 8, 4);
	assert_int_equal(t->last_off, MSIX_PBA + 8);
	t->store[0][MSIX_TABLE - 2] = 0x11;
	t->store[0][MSIX_TABLE - 1] = 0x22;
	mmio_write(table(t, 0, 0), 4, 0xfee0abcd);
	assert_int_equal(mmio_read(t->pdev.bars[0].addr + MSIX_TABLE - 2, 4), 0xabcd2211);
	assert_int_equal(t->last_off, MSIX_TABLE - 2);
	assert_int_equal(t->last_len, 2);
	dev_free(t);
}

static void msix_ctrl(unsigned slot, uint16_t v)
{
	ecam_write(slot, 0x4a, 2, v);
}

static void test_msix_mask_pending(void **state)
{
	(void)state;
	int g0;
	struct test_dev *t = dev_usual(&g0);
	unsigned s = t->pdev.slot;
	uint64_t pba = t->pdev.bars[0].addr + MSIX_PBA;
	for (int v = 0; v < NVEC; v++) {
		assert_true(gsis[g0 + v].allocated);
		assert_true(gsis[g0 + v].efd >= 0);  /* an irqfd per vector from the start */
		assert_false(gsis[g0 + v].routed);   /* routing nowhere until programmed */
	}
	enable(s, 0x0002);
	mmio_write(table(t, 2, 0), 4, 0xfee00000);
	mmio_write(table(t, 2, 8), 4, 0x31);
	assert_false(gsis[g0 + 2].routed); /* written while masked: no route yet */

	/* MSI-X enabled with the function masked: pending, not delivered. */
	msix_ctrl(s, 0xc000);
	assert_true(pci_msix_enabled(&t->pdev));
	mmio_write(table(t, 2, 12), 4, 0); /* vector unmasked, function still masked */
	assert_false(gsis[g0 + 2].routed);
	assert_true(pci_msix_notify(&t->pdev, 2));
	assert_int_equal(msi_count(g0 + 2), 0);
	assert_int_equal(mmio_read(pba, 8), 1u << 2);
	/* Clearing the function mask routes the vector and delivers the pending interrupt once. */
	msix_ctrl(s, 0x8000);
	assert_true(gsis[g0 + 2].routed);
	assert_int_equal(gsis[g0 + 2].addr, 0xfee00000);
	assert_int_equal(gsis[g0 + 2].data, 0x31);
	assert_int_equal(msi_count(g0 + 2), 1);
	assert_int_equal(mmio_read(pba, 8), 0);
	assert_true(pci_msix_notify(&t->pdev, 2));
	assert_true(pci_msix_notify(&t->pdev, 2));
	assert_int_equal(msi_count(g0 + 2), 2);
	assert_int_equal(gsis[g0 + 2].route_sets, 1); /* unchanged message: not routed again */

	/* Vector mask: pending while masked, delivered on unmask; other vectors untouched. */
	mmio_write(table(t, 2, 12), 4, 1);
	assert_true(pci_msix_notify(&t->pdev, 2));
	assert_true(pci_msix_notify(&t->pdev, 5)); /* never unmasked */
	assert_int_equal(msi_count(g0 + 2), 0);
	assert_int_equal(mmio_read(pba, 8), (1u << 2) | (1u << 5));
	mmio_write(table(t, 2, 8), 4, 0x32); /* reprogrammed while masked */
	assert_int_equal(gsis[g0 + 2].data, 0x31);
	mmio_write(table(t, 2, 12), 1, 0);
	assert_int_equal(gsis[g0 + 2].data, 0x32);
	assert_int_equal(msi_count(g0 + 2), 1);
	assert_int_equal(mmio_read(pba, 8), 1u << 5);
	assert_int_equal(msi_count(g0 + 5), 0);

	/* An entry rewritten while unmasked follows at once. */
	mmio_write(table(t, 2, 0), 4, 0xfee01000);
	assert_int_equal(gsis[g0 + 2].addr, 0xfee01000);
	mmio_write(table(t, 2, 4), 4, 0x1);
	assert_int_equal(gsis[g0 + 2].addr, 0x1fee01000ull);

	/* KVM refusing a route: the vector keeps its old one, nothing crashes. */
	route_error = EINVAL;
	mmio_write(table(t, 2, 8), 4, 0x99);
	assert_int_equal(gsis[g0 + 2].data, 0x32);
	route_error = 0;

	/* Out of range */
	assert_false(pci_msix_notify(&t->pdev, NVEC));
	assert_false(pci_msix_notify(&t->pdev, ~0u));

	/* Disabling MSI-X: notify falls back to INTx (asserted until lowered). */
	msix_ctrl(s, 0);
	assert_false(pci_msix_enabled(&t->pdev));
	uint32_t gsi = pci_slot_gsi((uint8_t)s, 1);
	assert_true(pci_msix_notify(&t->pdev, 2));
	assert_int_equal(irq_level[gsi], 1);
	assert_int_equal(msi_count(g0 + 2), 0);
	/* Enabling MSI-X masks INTx; disabling brings the still-asserted line back. */
	msix_ctrl(s, 0x8000);
	assert_int_equal(irq_level[gsi], 0);
	msix_ctrl(s, 0);
	assert_int_equal(irq_level[gsi], 1);
	pci_intx_set(&t->pdev, 0);
	assert_int_equal(irq_level[gsi], 0);
	dev_free(t);
}

static void test_intx(void **state)
{
	(void)state;
	/* The swizzle: INTA# of slot s on GSI 16 + s % 4, INTB-D on the next pins. */
	assert_int_equal(pci_slot_gsi(0, 1), 16);
	assert_int_equal(pci_slot_gsi(1, 1), 17);
	assert_int_equal(pci_slot_gsi(3, 2), 16);
	assert_int_equal(pci_slot_gsi(31, 4), 18);
	assert_int_equal(pci_slot_gsi(2, 0), 18);  /* bad pin: INTA# */
	assert_int_equal(pci_slot_gsi(2, 9), 18);

	struct test_dev *t = dev_new(); /* no MSI-X at all */
	pci_bar_init(&t->pdev, 0, 0x1000, false, false);
	struct pci_device_info info = dev_info;
	info.interrupt_pin = 2;
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &info), 0);
	unsigned s = t->pdev.slot;
	uint32_t gsi = pci_slot_gsi((uint8_t)s, 2);
	assert_int_equal(ecam_read(s, 0x3c, 2), 0x0200 | gsi);
	assert_true(pci_msix_notify(&t->pdev, 0));    /* no MSI-X: INTx */
	assert_false(pci_msix_enabled(&t->pdev));
	assert_int_equal(irq_level[gsi], 1);
	assert_true(ecam_read(s, 0x06, 2) & 0x08);     /* Interrupt Status */
	int calls = irq_line_calls;
	pci_intx_set(&t->pdev, 1);                      /* already asserted: KVM not bothered */
	assert_int_equal(irq_line_calls, calls);
	enable(s, 0x0400);                              /* INTx Disable */
	assert_int_equal(irq_level[gsi], 0);
	assert_true(ecam_read(s, 0x06, 2) & 0x08);     /* still pending inside the device */
	enable(s, 0);
	assert_int_equal(irq_level[gsi], 1);
	pci_intx_set(&t->pdev, 0);
	assert_int_equal(irq_level[gsi], 0);
	assert_false(ecam_read(s, 0x06, 2) & 0x08);
	pci_intx_set(&t->pdev, 1);
	dev_free(t);                                    /* unregistering lowers the line */
	assert_int_equal(irq_level[gsi], 0);

	/* A device without an interrupt pin cannot deliver without MSI-X. */
	t = dev_new();
	info.interrupt_pin = 0;
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &info), 0);
	assert_false(pci_msix_notify(&t->pdev, 0));
	assert_int_equal(ecam_read(t->pdev.slot, 0x3c, 2), 0);
	dev_free(t);
}

static void test_register_errors(void **state)
{
	(void)state;
	struct test_dev *t = dev_new();
	/* Bad BARs are refused at register. */
	static const struct { uint64_t size; bool io, is64; int bar; } bad[] = {
		{ 0x3000, false, false, 0 },   /* not a power of two */
		{ 8, false, false, 0 },        /* memory below 16 bytes */
		{ 512, true, false, 0 },       /* I/O above 256 */
		{ 2, true, false, 0 },         /* I/O below 4 */
		{ 0x1000, true, true, 0 },     /* 64-bit I/O */
		{ 0x1000, false, true, 5 },    /* 64-bit in the last register */
		{ 1ull << 30, false, false, 0 }, /* larger than the window */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(t->pdev.bars, 0, sizeof(t->pdev.bars));
		pci_bar_init(&t->pdev, bad[i].bar, bad[i].size, bad[i].io, bad[i].is64);
		assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), -EINVAL);
	}
	memset(t->pdev.bars, 0, sizeof(t->pdev.bars));
	pci_bar_init(&t->pdev, 0, 0x1000, false, true);
	pci_bar_init(&t->pdev, 1, 0x1000, false, false); /* the high half is taken */
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), -EINVAL);
	pci_bar_init(&t->pdev, 7, 0x1000, false, false); /* no such BAR: ignored */

	/* MSI-X placement */
	memset(t->pdev.bars, 0, sizeof(t->pdev.bars));
	pci_bar_init(&t->pdev, 0, 0x1000, false, false);
	pci_bar_init(&t->pdev, 1, 16, true, false);
	assert_int_equal(pci_msix_init(&t->pdev, 0, 0, 0, 0x800), -EINVAL);
	assert_int_equal(pci_msix_init(&t->pdev, 2049, 0, 0, 0x800), -EINVAL);
	assert_int_equal(pci_msix_init(&t->pdev, 4, 1, 0, 8), -EINVAL);      /* I/O BAR */
	assert_int_equal(pci_msix_init(&t->pdev, 4, 2, 0, 0x800), -EINVAL);  /* no BAR 2 */
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 4, 0x800), -EINVAL);  /* unaligned */
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0, 0x20), -EINVAL);   /* overlap */
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0xff8, 0x800), -EINVAL); /* past the end */
	assert_int_equal(pci_msix_init(&t->pdev, 200, 0, 0, 0xff8), -EINVAL);
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0x800, 0xff8), 0);
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0x800, 0xff8), -EEXIST);

	/* Running out of GSIs or irqfds unwinds everything allocated so far. */
	gsi_limit = FIRST_MSI_GSI + 2;
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), -ENOSPC);
	assert_null(t->pdev.msix);
	assert_null(t->pdev.bus);
	gsi_limit = FAKE_GSIS;
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0x800, 0xff8), 0);
	irqfd_error = EBADF;
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), -EBADF);
	irqfd_error = 0;
	/* Unregistering a never-registered device frees its MSI-X state; twice is harmless. */
	assert_int_equal(pci_msix_init(&t->pdev, 4, 0, 0x800, 0xff8), 0);
	pci_device_unregister(&t->pdev);
	assert_null(t->pdev.msix);
	pci_device_unregister(&t->pdev);
	/* The windows did not move for the failures: the next device gets the first address. */
	assert_int_equal(pci_device_register(vm->pci, &t->pdev, &dev_info), 0);
	assert_int_equal(t->pdev.bars[0].addr, LAYOUT_PCI_MEM_BASE);
	assert_int_equal(t->pdev.bars[1].addr, PORT_PCI_IO_BASE);
	dev_free(t);

	/* The memory window fills up (addresses are not reused: the first 4 KiB stay taken). */
	struct test_dev *big[4];
	for (int i = 0; i < 4; i++) {
		big[i] = dev_new();
		pci_bar_init(&big[i]->pdev, 0, LAYOUT_PCI_MEM_SIZE / 4, false, true);
		assert_int_equal(pci_device_register(vm->pci, &big[i]->pdev, &dev_info),
				 i < 3 ? 0 : -ENOSPC);
	}
	assert_int_equal(big[2]->pdev.bars[0].addr, LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE / 4 * 3);
	for (int i = 0; i < 4; i++)
		dev_free(big[i]);

	/* 31 slots after the host bridge. */
	struct test_dev *many[32];
	for (int i = 0; i < 31; i++) {
		many[i] = dev_new();
		assert_int_equal(pci_device_register(vm->pci, &many[i]->pdev, &dev_info), 0);
		assert_int_equal(many[i]->pdev.slot, 1 + i);
	}
	many[31] = dev_new();
	assert_int_equal(pci_device_register(vm->pci, &many[31]->pdev, &dev_info), -ENOSPC);
	free(many[31]);
	/* Left registered on purpose: pci_bus_destroy (teardown) unregisters them. */
	for (int i = 0; i < 31; i++)
		assert_int_equal(ecam_read((unsigned)i + 1, 0, 2), 0x1af4);
	pci_bus_destroy(vm->pci);
	vm->pci = NULL;
	for (int i = 0; i < 31; i++) {
		assert_null(many[i]->pdev.bus);
		free(many[i]);
	}
}

/* A small deterministic generator for the hostile guest. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Any size, any offset, anywhere PCI answers: nothing may crash (run under ASan/UBSan), the
 * device handler only sees accesses inside its BARs (asserted in dev_bar_access), and the
 * read-only identity of the devices survives. */
static void test_hostile_guest(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	enable(s, 0x0003);
	msix_ctrl(s, 0x8000);
	static const uint32_t sizes[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	for (int i = 0; i < 200000; i++) {
		uint64_t r = rnd();
		uint32_t len = sizes[(r >> 8) % 8];
		bool w = r & 1;
		uint8_t data[8];
		put(data, 8, rnd());
		switch ((r >> 4) % 6) {
		case 0: { /* config ports, including odd sizes bus_dispatch lets through */
			uint16_t port = (uint16_t)(0xcf8 + (r >> 16) % 8);
			uint32_t l = len > 4 ? 4 : len;
			if ((r >> 20) % 4 == 0) {
				uint8_t a[4];
				put(a, 4, cf8(0, (unsigned)(r >> 24) % 3, (unsigned)(r >> 30) % 2,
					      (unsigned)(r >> 32)) | (uint32_t)((r >> 40) & 0xf) << 24);
				bus_dispatch(&vm->pio_bus, 0xcf8, a, 4, true);
			}
			bus_dispatch(&vm->pio_bus, port, data, l, w);
			break;
		}
		case 1: /* ECAM: mostly our device, sometimes anywhere in the 1 MiB */
			if (r & 0x100)
				bus_dispatch(&vm->mmio_bus, ecam_addr(s, 0, (unsigned)(r >> 16) % 4096),
					     data, len, w);
			else
				bus_dispatch(&vm->mmio_bus, LAYOUT_PCI_ECAM_BASE + (r >> 16) % (1 << 20),
					     data, len, w);
			break;
		case 2: /* the memory BARs, wherever they are now, and around them */
		case 3: {
			int bar = (r & 0x100) ? 0 : 2;
			uint64_t base = t->pdev.bars[bar].addr;
			uint64_t off = (r >> 16) % (t->pdev.bars[bar].size + 16);
			if (bar == 0 && (r & 0x200))
				off = MSIX_TABLE - 8 + (r >> 16) % (16 * NVEC + 16);
			if (bar == 0 && (r & 0x400))
				off = MSIX_PBA - 8 + (r >> 16) % 24;
			bus_dispatch(&vm->mmio_bus, base + off, data, len, w);
			break;
		}
		case 4: { /* the I/O BAR and the I/O window */
			uint16_t port = (uint16_t)(PORT_PCI_IO_BASE + (r >> 16) % PORT_PCI_IO_SIZE);
			if (r & 0x100)
				port = (uint16_t)(t->pdev.bars[1].addr + (r >> 16) % 40);
			bus_dispatch(&vm->pio_bus, port, data, len > 4 ? 4 : len, w);
			break;
		}
		case 5: /* the device raising interrupts meanwhile */
			pci_msix_notify(&t->pdev, (unsigned)(r >> 16) % (NVEC + 2));
			if (r & 0x100)
				pci_intx_set(&t->pdev, (r >> 9) & 1);
			break;
		}
		/* Now and then the guest restores sane decoding, so the BARs get hit. */
		if (i % 1000 == 0) {
			ecam_write(s, 0x10, 4, (uint32_t)LAYOUT_PCI_MEM_BASE);
			ecam_write(s, 0x18, 4, (uint32_t)LAYOUT_PCI_MEM_BASE + 0x100000);
			ecam_write(s, 0x1c, 4, 0);
			enable(s, 0x0003);
			msix_ctrl(s, 0x8000);
		}
	}
	assert_int_equal(ecam_read(s, 0, 4), 0x10421af4);
	assert_int_equal(ecam_read(s, 8, 4), 0x01000001);
	assert_int_equal(ecam_read(0, 0, 4), 0x00081b36);
	assert_int_equal(ecam_read(s, 0x4c, 4), MSIX_TABLE);
	assert_true(t->accesses[0] > 0 && t->accesses[1] > 0 && t->accesses[2] > 0);
	dev_free(t);
}

/* The device-side hook sees every config access and can supply read data. */
static void test_config_hook(void **state)
{
	(void)state;
	struct test_dev *t = dev_usual(NULL);
	unsigned s = t->pdev.slot;
	int calls = t->hook_calls;
	conf1_read(s, 0, 4);
	ecam_write(s, 0x3c, 1, 5);
	assert_int_equal(t->hook_calls, calls + 2);
	t->hook_override = true;
	assert_int_equal(ecam_read(s, 0x80, 1), 0xab);
	assert_int_equal(ecam_read(s, 0x7e, 4), 0x00ab0000);
	assert_int_equal(conf1_read(s, 0x80, 4), 0xab);
	dev_free(t);
}

/* vCPUs hammering BARs and the MSI-X table while another moves the BAR and the device raises
 * interrupts: no deadlock, no crash (meaningful under the sanitizers). */
static struct test_dev *thr_dev;
static atomic_bool thr_stop;

static void *thr_access(void *arg)
{
	uint64_t n = (uintptr_t)arg;
	while (!atomic_load(&thr_stop)) {
		uint8_t b[8] = { 0 };
		n = n * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t addr = LAYOUT_PCI_MEM_BASE + (n >> 40) % 0x40000;
		bus_dispatch(&vm->mmio_bus, addr, b, 4, (n >> 8) & 1);
		/* where the main thread moves BAR 0 to: one of four places */
		uint64_t bar0 = LAYOUT_PCI_MEM_BASE + 0x10000 * ((n >> 30) % 4);
		bus_dispatch(&vm->mmio_bus, bar0 + MSIX_TABLE + (n >> 20) % 128, b, 4, (n >> 9) & 1);
	}
	return NULL;
}

static void *thr_notify(void *arg)
{
	(void)arg;
	while (!atomic_load(&thr_stop)) {
		for (unsigned v = 0; v < NVEC; v++)
			pci_msix_notify(&thr_dev->pdev, v);
		pci_intx_set(&thr_dev->pdev, 0);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	thr_dev = dev_usual(NULL);
	unsigned s = thr_dev->pdev.slot;
	/* The bar_access checks use cmocka asserts, which are not for other threads: plain. */
	thr_dev->pdev.bar_access = NULL;
	enable(s, 0x0002);
	msix_ctrl(s, 0x8000);
	atomic_store(&thr_stop, false);
	pthread_t th[3];
	assert_int_equal(pthread_create(&th[0], NULL, thr_access, (void *)1), 0);
	assert_int_equal(pthread_create(&th[1], NULL, thr_access, (void *)2), 0);
	assert_int_equal(pthread_create(&th[2], NULL, thr_notify, NULL), 0);
	for (int i = 0; i < 3000; i++) {
		uint32_t where = (uint32_t)LAYOUT_PCI_MEM_BASE + 0x10000u * (uint32_t)(i % 4);
		enable(s, i % 3 ? 0x0002 : 0);
		ecam_write(s, 0x10, 4, where);
		msix_ctrl(s, i % 5 ? 0x8000 : 0xc000);
	}
	atomic_store(&thr_stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	dev_free(thr_dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf1_address_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf1_and_ecam_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bars_preassigned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_mask_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests_name("pci", tests, NULL, NULL);
}
