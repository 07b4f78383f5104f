/* ACPI tables for the x86 machine: fixed tables as packed structs, the DSDT through aml.h. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

/*
 * Layout of the area (all offsets from LAYOUT_ACPI_START):
 *   0x00  RSDP   - first, on a 16-byte boundary, so the BIOS-area scan finds it
 *   0x40  FACS   - the spec wants it 64-byte aligned
 *   then  DSDT, FADT, MADT, (MCFG), XSDT, RSDT, each 16-byte aligned
 * Tables are built bottom-up (a table is written after everything it points to), into a host
 * buffer that is copied to the guest only when all of it fit.
 */

#define ACPI_OEM_ID          "KVMKIT"
#define ACPI_OEM_TABLE_ID    "KVMKIT  "
#define ACPI_OEM_REVISION    1
#define ACPI_CREATOR_ID      "KVMK"
#define ACPI_CREATOR_REVISION 1
#define ACPI_TABLE_ALIGN     16
#define ACPI_FACS_ALIGN      64

/* --- Fixed table layouts (ACPI 6.0); x86 is little-endian like ACPI, so plain stores work. --- */

struct acpi_rsdp {
	char signature[8];         /* "RSD PTR " */
	uint8_t checksum;          /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;          /* 2: ACPI 2.0+ layout with the XSDT */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "ACPI table header layout");

/* Generic Address Structure */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS layout");

#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1
#define ACPI_GAS_ACCESS_WORD 2
#define ACPI_GAS_ACCESS_DWORD 3

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT (revision 6) layout");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags offset");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT offset");

#define FADT_F_WBINVD            (1u << 0)
#define FADT_F_PROC_C1           (1u << 2)
#define FADT_F_SLP_BUTTON        (1u << 5)
#define FADT_F_RESET_REG_SUP     (1u << 10)
#define FADT_F_FORCE_APIC_PHYS   (1u << 19)
#define FADT_BOOT_LEGACY_DEVICES (1u << 0)
#define FADT_BOOT_8042           (1u << 1) /* not set: see build_fadt */
#define FADT_BOOT_NO_VGA         (1u << 2)
#define RTC_CENTURY_INDEX        0x32

struct acpi_facs {
	char signature[4];
	uint32_t length;
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version;
	uint8_t reserved0[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS layout");

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT layout");

#define MADT_PCAT_COMPAT 1u
#define MADT_ENABLED     1u

enum {
	MADT_LAPIC = 0,
	MADT_IOAPIC = 1,
	MADT_INT_OVERRIDE = 2,
	MADT_LAPIC_NMI = 4,
	MADT_X2APIC = 9,
	MADT_X2APIC_NMI = 10,
};

struct madt_lapic {
	uint8_t type, length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));

struct madt_int_override {
	uint8_t type, length;
	uint8_t bus;    /* 0: ISA */
	uint8_t source; /* ISA IRQ */
	uint32_t gsi;
	uint16_t flags; /* MPS INTI flags */
} __attribute__((packed));

struct madt_lapic_nmi {
	uint8_t type, length;
	uint8_t processor_uid; /* 0xff: all processors */
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

struct madt_x2apic {
	uint8_t type, length;
	uint16_t reserved;
	uint32_t x2apic_id;
	uint32_t flags;
	uint32_t processor_uid;
} __attribute__((packed));

struct madt_x2apic_nmi {
	uint8_t type, length;
	uint16_t flags;
	uint32_t processor_uid; /* 0xffffffff: all processors */
	uint8_t lint;
	uint8_t reserved[3];
} __attribute__((packed));

_Static_assert(sizeof(struct madt_lapic) == 8, "MADT LAPIC entry");
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC entry");
_Static_assert(sizeof(struct madt_int_override) == 10, "MADT override entry");
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT LAPIC NMI entry");
_Static_assert(sizeof(struct madt_x2apic) == 16, "MADT x2APIC entry");
_Static_assert(sizeof(struct madt_x2apic_nmi) == 12, "MADT x2APIC NMI entry");

/* MCFG (PCI Firmware Specification 3.0): the ECAM of each segment's bus range. */
struct acpi_mcfg {
	struct acpi_header h;
	uint8_t reserved[8];
} __attribute__((packed));

struct mcfg_allocation {
	uint64_t base_address;
	uint16_t segment;
	uint8_t start_bus;
	uint8_t end_bus;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg) == 44, "MCFG layout");
_Static_assert(sizeof(struct mcfg_allocation) == 16, "MCFG allocation entry");

/* xAPIC IDs are 8 bits and 0xff is the broadcast ID, so CPUs from ID 255 up need x2APIC entries. */
#define MADT_MAX_XAPIC_ID 254u
#define MPS_INTI_POLARITY_HIGH 0x1
#define MPS_INTI_TRIGGER_LEVEL 0xc
#define IOAPIC_ID 0 /* what KVM's in-kernel IOAPIC reports in its ID register after reset */

#define PCI_SLOTS         32          /* devices on bus 0 */
#define PCI_ECAM_BUS_SIZE (1u << 20)  /* 32 devices x 8 functions x 4 KiB */

static uint64_t acpi_ecam_base(const struct acpi_config *cfg)
{
	return cfg->ecam_base ? cfg->ecam_base : LAYOUT_PCI_ECAM_BASE;
}

/* --- The area: a bump allocator over a host buffer whose byte 0 the guest sees at `base`
 * ([LAYOUT_ACPI_START, LAYOUT_ACPI_END) for direct boot; 0 for firmware, whose loader adds
 * where it put the tables to every pointer the area recorded). --- */

struct acpi_area {
	uint8_t *buf;
	size_t size;
	size_t used;
	uint64_t base;
	struct acpi_blob *blob;   /* firmware: where pointers and tables are recorded, else NULL */
};

static int area_alloc(struct acpi_area *area, size_t len, size_t align, size_t *off)
{
	size_t start = (area->used + align - 1) & ~(align - 1);
	if (start > area->size || len > area->size - start)
		return -ENOSPC;
	area->used = start + len;
	*off = start;
	return 0;
}

static uint64_t area_gpa(const struct acpi_area *area, size_t off)
{
	return area->base + off;
}

/* Writes the guest address of the table at `target` into a pointer field of `size` bytes at
 * buf + `at` (little-endian), and records the field for the firmware's loader. */
static void area_pointer(struct acpi_area *area, size_t at, unsigned size, size_t target)
{
	uint64_t gpa = area_gpa(area, target);
	memcpy(area->buf + at, &gpa, size);
	struct acpi_blob *b = area->blob;
	if (b && b->npointers < ACPI_BLOB_MAX_FIXUPS - 2) /* 2 left for the RSDP's */
		b->pointers[b->npointers++] = (struct acpi_blob_pointer){ (uint32_t)at, (uint8_t)size,
									   false };
	else if (b)
		b->overflow = true;
}

static uint8_t acpi_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)(0 - sum);
}

static void header_init(struct acpi_header *h, const char sig[4], uint8_t revision)
{
	memcpy(h->signature, sig, 4);
	h->revision = revision;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = ACPI_OEM_REVISION;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = ACPI_CREATOR_REVISION;
}

/* Sets length and checksum last, once the table's contents are final. */
static void header_finish(struct acpi_area *area, struct acpi_header *h, size_t length)
{
	h->length = (uint32_t)length;
	h->checksum = 0;
	h->checksum = acpi_checksum(h, length);
	struct acpi_blob *b = area->blob;
	if (b && b->nchecksums >= ACPI_BLOB_MAX_FIXUPS - 2) {
		b->overflow = true;
	} else if (b) {
		uint32_t start = (uint32_t)((uint8_t *)h - area->buf);
		b->checksums[b->nchecksums++] = (struct acpi_blob_checksum){
			start, (uint32_t)length, start + (uint32_t)offsetof(struct acpi_header, checksum),
			false };
	}
}

/* --- DSDT --- */

struct isa_io {
	uint16_t port;
	uint8_t len;
};

/* Device(name) { _HID EisaId(hid), _UID uid, _STA 0xF, _CRS: IO ranges + one ISA IRQ } */
static void dsdt_isa_device(struct aml *a, const char *name, const char *hid, uint64_t uid,
                            const struct isa_io *io, size_t nio, unsigned irq)
{
	aml_device_begin(a, name);
	aml_name_eisaid(a, "_HID", hid);
	aml_name_integer(a, "_UID", uid);
	aml_method_begin(a, "_STA", 0, false);
	aml_return_integer(a, 0x0f); /* present, enabled, shown in UI, functioning */
	aml_end(a);
	aml_name(a, "_CRS");
	aml_res_begin(a);
	for (size_t i = 0; i < nio; i++)
		aml_res_io(a, io[i].port, io[i].port, 1, io[i].len);
	aml_res_irq_noflags(a, irq);
	aml_res_end(a);
	aml_end(a);
}

/* \_SB.PCI0, the host bridge of hw/pci.c. Linux binds it as PNP0A08 (PCI Express: extended
 * config space through the MCFG's ECAM), takes the windows of _CRS as the only places BARs may
 * be (so it keeps the addresses kvmkit pre-assigned, which lie inside them), and routes INTx
 * through _PRT. */
static void dsdt_pci_host_bridge(struct aml *a, const struct acpi_config *cfg)
{
	aml_device_begin(a, "PCI0");
	aml_name_eisaid(a, "_HID", "PNP0A08");
	aml_name_eisaid(a, "_CID", "PNP0A03"); /* a plain PCI bus, for OSes without PCIe support */
	aml_name_integer(a, "_SEG", 0);
	aml_name_integer(a, "_BBN", 0);
	aml_name_integer(a, "_UID", 0);

	aml_name(a, "_CRS");
	aml_res_begin(a);
	aml_res_word_bus_number(a, 0, 0);
	/* The config ports are the bridge's own (Linux drops them from the windows). */
	aml_res_io(a, PORT_PCI_CONFIG, PORT_PCI_CONFIG, 1, PORT_PCI_CONFIG_LEN);
	aml_res_word_io(a, PORT_PCI_IO_BASE, PORT_PCI_IO_BASE + PORT_PCI_IO_SIZE - 1);
	uint64_t mem_base = cfg->pci_mem_base ? cfg->pci_mem_base : LAYOUT_PCI_MEM_BASE;
	uint64_t mem_end = cfg->pci_mem_base ? cfg->pci_mem_end :
			   LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE;
	aml_res_dword_memory(a, (uint32_t)mem_base, (uint32_t)(mem_end - 1));
	aml_res_end(a);

	/* _PRT: Package { address (slot << 16 | 0xFFFF: any function), pin (0 = INTA#), source
	 * (0: the last field is a GSI, no link device), GSI }. Level-triggered, active-low, as
	 * the spec says for GSIs without a link; KVM's IOAPIC takes the level as asserted/not. */
	aml_name(a, "_PRT");
	aml_package_begin(a, PCI_SLOTS * PCI_INTX_PINS);
	for (unsigned slot = 0; slot < PCI_SLOTS; slot++) {
		for (unsigned pin = 0; pin < PCI_INTX_PINS; pin++) {
			aml_package_begin(a, 4);
			aml_integer(a, (uint64_t)slot << 16 | 0xffff);
			aml_integer(a, pin);
			aml_integer(a, 0);
			aml_integer(a, PCI_INTX_GSI(slot, pin));
			aml_end(a);
		}
	}
	aml_end(a);
	aml_end(a);

	/* Linux uses an MCFG region only if firmware reserved it: as a motherboard resource
	 * ("reserved as ACPI motherboard resource"; e820.c reserves it too, for the early check). */
	aml_device_begin(a, "ECAM");
	aml_name_eisaid(a, "_HID", "PNP0C02");
	aml_name_integer(a, "_UID", 1);
	aml_name(a, "_CRS");
	aml_res_begin(a);
	aml_res_memory32_fixed(a, (uint32_t)acpi_ecam_base(cfg), (uint32_t)LAYOUT_PCI_ECAM_SIZE);
	aml_res_end(a);
	aml_end(a);
}

/* A virtio-mmio device as QEMU's microvm describes one: Linux binds its virtio_mmio driver to
 * LNRO0005 through the ACPI platform-device path and takes the window and the interrupt (with
 * its trigger and polarity, which the IOAPIC pin is programmed with) from _CRS. */
static void dsdt_virtio_mmio(struct aml *a, unsigned index, const struct acpi_virtio_mmio *dev)
{
	char name[5];
	snprintf(name, sizeof(name), "VR%02X", index & 0xffu);
	aml_device_begin(a, name);
	aml_name_string(a, "_HID", "LNRO0005");
	aml_name_integer(a, "_UID", index);
	aml_name_integer(a, "_CCA", 1); /* DMA is cache-coherent */
	aml_name(a, "_CRS");
	aml_res_begin(a);
	aml_res_memory32_fixed(a, (uint32_t)dev->base, dev->size);
	/* Level-triggered, as InterruptStatus stays set until the driver acknowledges it. */
	aml_res_interrupt(a, true, false, false, dev->gsi);
	aml_res_end(a);
	aml_end(a);
}

static void dsdt_body(struct aml *a, const struct acpi_config *cfg)
{
	/* \_S5: the SLP_TYP values Linux writes to PM1a_CNT to power off (PM1b unused). */
	aml_name(a, "\\_S5");
	aml_package_begin(a, 4);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a);

	aml_scope_begin(a, "\\_SB");
	static const struct isa_io com1[] = {{PORT_COM1, 8}};
	dsdt_isa_device(a, "COM1", "PNP0501", 1, com1, 1, IRQ_COM1);
	static const struct isa_io rtc[] = {{PORT_RTC, 2}};
	dsdt_isa_device(a, "RTC", "PNP0B00", 0, rtc, 1, IRQ_RTC);
	/* No PNP0303 for the i8042, for the reason given at the FADT's boot flags. */
	if (cfg->pci)
		dsdt_pci_host_bridge(a, cfg);
	for (unsigned i = 0; i < cfg->nvirtio_mmio; i++)
		dsdt_virtio_mmio(a, i, &cfg->virtio_mmio[i]);
	aml_end(a);
}

static int build_dsdt(struct acpi_area *area, const struct acpi_config *cfg, size_t *off)
{
	int ret = area_alloc(area, sizeof(struct acpi_header), ACPI_TABLE_ALIGN, off);
	if (ret)
		return ret;
	struct aml a = {
		.buf = area->buf + area->used,
		.cap = area->size - area->used,
	};
	dsdt_body(&a, cfg);
	if (!a.err && a.depth != 0)
		a.err = -EINVAL; /* an aml_*_begin without its aml_end */
	if (a.err)
		return a.err;
	area->used += a.len;

	struct acpi_header *h = (struct acpi_header *)(area->buf + *off);
	header_init(h, "DSDT", 2); /* revision 2: AML integers are 64 bits */
	header_finish(area, h, sizeof(*h) + a.len);
	return 0;
}

/* --- Fixed tables --- */

static struct acpi_gas gas_io(uint16_t port, uint8_t bits, uint8_t access)
{
	return (struct acpi_gas){
		.space_id = ACPI_GAS_SYSTEM_IO,
		.bit_width = bits,
		.access_size = access,
		.address = port,
	};
}

static int build_fadt(struct acpi_area *area, const struct acpi_config *cfg, size_t dsdt,
                      size_t facs, size_t *off)
{
	int ret = area_alloc(area, sizeof(struct acpi_fadt), ACPI_TABLE_ALIGN, off);
	if (ret)
		return ret;
	struct acpi_fadt *f = (struct acpi_fadt *)(area->buf + *off);
	header_init(&f->h, "FACP", 6);
	f->minor_version = 0;

	/* 32-bit and 64-bit pointers agree, so neither ACPICA nor older OSes see a mismatch. */
	area_pointer(area, *off + offsetof(struct acpi_fadt, firmware_ctrl), 4, facs);
	area_pointer(area, *off + offsetof(struct acpi_fadt, x_firmware_ctrl), 8, facs);
	area_pointer(area, *off + offsetof(struct acpi_fadt, dsdt), 4, dsdt);
	area_pointer(area, *off + offsetof(struct acpi_fadt, x_dsdt), 8, dsdt);

	f->sci_int = IRQ_ACPI_SCI;
	/* SMI_CMD = 0: no SMM handover; the platform is always in ACPI mode (SCI_EN reads 1). */
	f->smi_cmd = 0;

	f->pm1a_evt_blk = PORT_ACPI_PM1A_EVT;
	f->pm1_evt_len = 4;
	f->x_pm1a_evt_blk = gas_io(PORT_ACPI_PM1A_EVT, 32, ACPI_GAS_ACCESS_WORD);
	f->pm1a_cnt_blk = PORT_ACPI_PM1A_CNT;
	f->pm1_cnt_len = 2;
	f->x_pm1a_cnt_blk = gas_io(PORT_ACPI_PM1A_CNT, 16, ACPI_GAS_ACCESS_WORD);
	/* The 24-bit PM timer (no TMR_VAL_EXT): Linux's acpi_pm clocksource and OVMF's delays use
	 * it. No GPE blocks, no PM2. */
	f->pm_tmr_blk = PORT_ACPI_PM_TMR;
	f->pm_tmr_len = 4;
	f->x_pm_tmr_blk = gas_io(PORT_ACPI_PM_TMR, 32, ACPI_GAS_ACCESS_DWORD);

	/* C2/C3 are not supported: latencies above 100 / 1000 us say so. */
	f->p_lvl2_lat = 101;
	f->p_lvl3_lat = 1001;
	f->century = RTC_CENTURY_INDEX;
	/* No 8042 flag: with it Linux probes for a PS/2 keyboard that does not exist, and the
	 * probe holds a device lock that blocks power-off. The reset line works without it. */
	f->iapc_boot_arch = FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_NO_VGA;

	/* No sleep button; the power button stays a fixed feature (PM1 PWRBTN) so a monitor can
	 * ask the guest to shut down through PM1a_EVT. */
	f->flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_RESET_REG_SUP;
	/* Flat logical APIC mode addresses 8 CPUs at most; tell the OS to use physical mode. */
	if (cfg->ncpus > 8)
		f->flags |= FADT_F_FORCE_APIC_PHYS;
	f->reset_reg = gas_io(PORT_ACPI_RESET, 8, ACPI_GAS_ACCESS_BYTE);
	f->reset_value = ACPI_RESET_VALUE;

	header_finish(area, &f->h, sizeof(*f));
	return 0;
}

static int build_facs(struct acpi_area *area, size_t *off)
{
	int ret = area_alloc(area, sizeof(struct acpi_facs), ACPI_FACS_ALIGN, off);
	if (ret)
		return ret;
	struct acpi_facs *facs = (struct acpi_facs *)(area->buf + *off);
	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 2;
	return 0; /* the FACS has no checksum */
}

static int build_madt(struct acpi_area *area, const struct acpi_config *cfg, size_t *off)
{
	uint64_t n = cfg->ncpus;
	uint64_t nx = n > MADT_MAX_XAPIC_ID + 1 ? n - (MADT_MAX_XAPIC_ID + 1) : 0; /* x2APIC entries */
	uint64_t size = sizeof(struct acpi_madt) + (n - nx) * sizeof(struct madt_lapic) +
	                nx * sizeof(struct madt_x2apic) + sizeof(struct madt_ioapic) +
	                2 * sizeof(struct madt_int_override) + sizeof(struct madt_lapic_nmi) +
	                (nx ? sizeof(struct madt_x2apic_nmi) : 0);
	if (size > area->size)
		return -ENOSPC;
	int ret = area_alloc(area, (size_t)size, ACPI_TABLE_ALIGN, off);
	if (ret)
		return ret;

	uint8_t *base = area->buf + *off;
	struct acpi_madt *m = (struct acpi_madt *)base;
	header_init(&m->h, "APIC", 4);
	m->lapic_address = (uint32_t)LAYOUT_LAPIC_ADDR;
	m->flags = MADT_PCAT_COMPAT; /* dual 8259s are present and must be masked when using APICs */
	uint8_t *p = base + sizeof(*m);

	/* ACPI processor UIDs equal APIC IDs equal vCPU indexes. */
	for (uint32_t id = 0; id < cfg->ncpus; id++) {
		if (id <= MADT_MAX_XAPIC_ID) {
			struct madt_lapic *e = (struct madt_lapic *)p;
			*e = (struct madt_lapic){MADT_LAPIC, sizeof(*e), (uint8_t)id, (uint8_t)id,
			                         MADT_ENABLED};
			p += sizeof(*e);
		} else {
			struct madt_x2apic *e = (struct madt_x2apic *)p;
			*e = (struct madt_x2apic){MADT_X2APIC, sizeof(*e), 0, id, MADT_ENABLED, id};
			p += sizeof(*e);
		}
	}

	struct madt_ioapic *io = (struct madt_ioapic *)p;
	*io = (struct madt_ioapic){MADT_IOAPIC, sizeof(*io), IOAPIC_ID, 0,
	                           (uint32_t)LAYOUT_IOAPIC_ADDR, 0};
	p += sizeof(*io);

	/* As QEMU: the PIT's IRQ0 is wired to IOAPIC pin 2 (pin 0 carries the 8259's INTR),
	 * and the SCI is a level-triggered, active-high ISA interrupt. */
	struct madt_int_override *iso = (struct madt_int_override *)p;
	*iso = (struct madt_int_override){MADT_INT_OVERRIDE, sizeof(*iso), 0, 0, 2, 0};
	p += sizeof(*iso);
	iso = (struct madt_int_override *)p;
	*iso = (struct madt_int_override){MADT_INT_OVERRIDE, sizeof(*iso), 0, IRQ_ACPI_SCI,
	                                  IRQ_ACPI_SCI,
	                                  MPS_INTI_POLARITY_HIGH | MPS_INTI_TRIGGER_LEVEL};
	p += sizeof(*iso);

	/* NMIs arrive on LINT1 of every local APIC (the x2APIC form covers UIDs above 254). */
	struct madt_lapic_nmi *nmi = (struct madt_lapic_nmi *)p;
	*nmi = (struct madt_lapic_nmi){MADT_LAPIC_NMI, sizeof(*nmi), 0xff, 0, 1};
	p += sizeof(*nmi);
	if (nx) {
		struct madt_x2apic_nmi *xnmi = (struct madt_x2apic_nmi *)p;
		*xnmi = (struct madt_x2apic_nmi){MADT_X2APIC_NMI, sizeof(*xnmi), 0, 0xffffffffu, 1,
		                                 {0}};
		p += sizeof(*xnmi);
	}

	header_finish(area, &m->h, (size_t)(p - base));
	return 0;
}

static int build_mcfg(struct acpi_area *area, const struct acpi_config *cfg, size_t *off)
{
	size_t len = sizeof(struct acpi_mcfg) + sizeof(struct mcfg_allocation);
	int ret = area_alloc(area, len, ACPI_TABLE_ALIGN, off);
	if (ret)
		return ret;
	struct acpi_mcfg *m = (struct acpi_mcfg *)(area->buf + *off);
	header_init(&m->h, "MCFG", 1);
	struct mcfg_allocation *e = (struct mcfg_allocation *)(m + 1);
	*e = (struct mcfg_allocation){
		.base_address = acpi_ecam_base(cfg), /* of bus 0 */
		.segment = 0,
		.start_bus = 0,
		.end_bus = (uint8_t)(LAYOUT_PCI_ECAM_SIZE / PCI_ECAM_BUS_SIZE - 1),
	};
	header_finish(area, &m->h, len);
	return 0;
}

/* RSDT (4-byte entries, for 32-bit OSes) or XSDT (8-byte entries). */
static int build_sdt(struct acpi_area *area, const char sig[4], size_t entry_size,
                     const size_t *tables, size_t ntables, size_t *off)
{
	size_t len = sizeof(struct acpi_header) + ntables * entry_size;
	int ret = area_alloc(area, len, ACPI_TABLE_ALIGN, off);
	if (ret)
		return ret;
	struct acpi_header *h = (struct acpi_header *)(area->buf + *off);
	header_init(h, sig, 1);
	for (size_t i = 0; i < ntables; i++)
		area_pointer(area, *off + sizeof(*h) + i * entry_size, (unsigned)entry_size, tables[i]);
	header_finish(area, h, len);
	return 0;
}

/* Every table but the RSDP; *rsdt and *xsdt are their offsets in the area. */
static int build_all(struct acpi_area *area, const struct acpi_config *cfg, size_t *rsdt,
		     size_t *xsdt)
{
	size_t facs, dsdt, fadt, madt, mcfg = 0;
	int ret;
	if ((ret = build_facs(area, &facs)) ||
	    (ret = build_dsdt(area, cfg, &dsdt)) ||
	    (ret = build_fadt(area, cfg, dsdt, facs, &fadt)) ||
	    (ret = build_madt(area, cfg, &madt)) ||
	    (cfg->pci && (ret = build_mcfg(area, cfg, &mcfg))))
		return ret;
	size_t tables[3] = {fadt, madt}, ntables = 2;
	if (cfg->pci)
		tables[ntables++] = mcfg;
	return build_sdt(area, "XSDT", 8, tables, ntables, xsdt) ||
	       build_sdt(area, "RSDT", 4, tables, ntables, rsdt) ? -ENOSPC : 0;
}

static void fill_rsdp(struct acpi_rsdp *r, uint64_t rsdt, uint64_t xsdt)
{
	memset(r, 0, sizeof(*r));
	memcpy(r->signature, "RSD PTR ", 8);
	memcpy(r->oem_id, ACPI_OEM_ID, 6);
	r->revision = 2;
	r->rsdt_address = (uint32_t)rsdt;
	r->length = sizeof(*r);
	r->xsdt_address = xsdt;
	r->checksum = acpi_checksum(r, 20);
	r->extended_checksum = acpi_checksum(r, sizeof(*r));
}

static int check_config(const struct acpi_config *cfg)
{
	if (!cfg || cfg->ncpus == 0 || cfg->nvirtio_mmio > ACPI_MAX_VIRTIO_MMIO ||
	    cfg->ecam_base > 0xffffffffULL - LAYOUT_PCI_ECAM_SIZE ||
	    (cfg->pci_mem_base && (cfg->pci_mem_end <= cfg->pci_mem_base ||
				   cfg->pci_mem_end > 0x100000000ULL)))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nvirtio_mmio; i++) {
		const struct acpi_virtio_mmio *v = &cfg->virtio_mmio[i];
		/* Memory32Fixed holds a 32-bit window; the interrupt is an IOAPIC pin. */
		if (v->size == 0 || v->base > 0xffffffffULL - (v->size - 1) ||
		    v->gsi >= LAYOUT_IOAPIC_PINS)
			return -EINVAL;
	}
	return 0;
}

int acpi_build(const struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	_Static_assert(LAYOUT_ACPI_START % ACPI_FACS_ALIGN == 0, "ACPI area alignment");
	_Static_assert(LAYOUT_ACPI_END <= 0xffffffffULL, "RSDT holds 32-bit addresses");
	if (!mem || !rsdp_gpa || check_config(cfg) < 0)
		return -EINVAL;
	struct acpi_area area = {.size = LAYOUT_ACPI_END - LAYOUT_ACPI_START,
				 .base = LAYOUT_ACPI_START};
	uint8_t *dst = guest_mem_ptr(mem, LAYOUT_ACPI_START, area.size);
	if (!dst)
		return -EFAULT;
	area.buf = calloc(1, area.size);
	if (!area.buf)
		return -ENOMEM;

	/* The RSDP first, where the OS's search of the BIOS area starts. */
	size_t rsdp, rsdt, xsdt;
	int ret = area_alloc(&area, sizeof(struct acpi_rsdp), ACPI_TABLE_ALIGN, &rsdp);
	if (!ret)
		ret = build_all(&area, cfg, &rsdt, &xsdt);
	if (!ret) {
		fill_rsdp((struct acpi_rsdp *)(area.buf + rsdp), area_gpa(&area, rsdt),
			  area_gpa(&area, xsdt));
		memcpy(dst, area.buf, area.size);
		*rsdp_gpa = area_gpa(&area, rsdp);
	}
	free(area.buf);
	return ret;
}

int acpi_build_blob(const struct acpi_config *cfg, struct acpi_blob *out)
{
	memset(out, 0, sizeof(*out));
	if (check_config(cfg) < 0)
		return -EINVAL;
	struct acpi_area area = {.size = ACPI_BLOB_MAX_TABLES, .base = 0, .blob = out};
	area.buf = calloc(1, area.size);
	if (!area.buf)
		return -ENOMEM;
	size_t rsdt, xsdt;
	int ret = build_all(&area, cfg, &rsdt, &xsdt);
	if (!ret && out->overflow)
		ret = -ENOSPC; /* a fixup was dropped: never hand out such tables */
	if (ret) {
		free(area.buf);
		memset(out, 0, sizeof(*out));
		return ret;
	}
	out->tables = area.buf;
	out->tables_len = area.used;
	fill_rsdp((struct acpi_rsdp *)out->rsdp, rsdt, xsdt);
	out->pointers[out->npointers++] = (struct acpi_blob_pointer){
		offsetof(struct acpi_rsdp, rsdt_address), 4, true };
	out->pointers[out->npointers++] = (struct acpi_blob_pointer){
		offsetof(struct acpi_rsdp, xsdt_address), 8, true };
	out->checksums[out->nchecksums++] = (struct acpi_blob_checksum){
		0, 20, offsetof(struct acpi_rsdp, checksum), true };
	out->checksums[out->nchecksums++] = (struct acpi_blob_checksum){
		0, sizeof(struct acpi_rsdp), offsetof(struct acpi_rsdp, extended_checksum), true };
	return 0;
}

void acpi_blob_free(struct acpi_blob *b)
{
	free(b->tables);
	memset(b, 0, sizeof(*b));
}
