/* ACPI tables for the x86 machine: fixed tables as packed structs, the DSDT from a small AML emitter. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"

/*
 * Layout of the area (all offsets from LAYOUT_ACPI_START):
 *   0x00  RSDP   - first, on a 16-byte boundary, so the BIOS-area scan finds it
 *   0x40  FACS   - the spec wants it 64-byte aligned
 *   then  DSDT, FADT, MADT, XSDT, RSDT, each 16-byte aligned
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

/* xAPIC IDs are 8 bits and 0xff is the broadcast ID, so CPUs from ID 255 up need x2APIC entries. */
#define MADT_MAX_XAPIC_ID 254u
#define MPS_INTI_POLARITY_HIGH 0x1
#define MPS_INTI_TRIGGER_LEVEL 0xc
#define IOAPIC_ID 0 /* what KVM's in-kernel IOAPIC reports in its ID register after reset */

/* --- The area: a bump allocator over the host copy of [LAYOUT_ACPI_START, LAYOUT_ACPI_END) --- */

struct acpi_area {
	uint8_t *buf;
	size_t size;
	size_t used;
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

static uint64_t area_gpa(size_t off)
{
	return LAYOUT_ACPI_START + off;
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
static void header_finish(struct acpi_header *h, size_t length)
{
	h->length = (uint32_t)length;
	h->checksum = 0;
	h->checksum = acpi_checksum(h, length);
}

/* --- AML emitter ---
 * Writes into a fixed buffer; the first error sticks and later calls do nothing, so building
 * code reads like the ASL it stands for and checks once at the end. Objects with a PkgLength
 * (Scope, Device, Method, Package, Buffer) are opened with aml_*_begin and closed with aml_end:
 * 4 bytes are reserved for the PkgLength, and on close the body is moved down if the actual
 * length encodes in fewer bytes. */

#define AML_MAX_DEPTH 16

struct aml {
	uint8_t *buf;
	size_t len, cap;
	size_t open[AML_MAX_DEPTH]; /* offsets of the reserved PkgLength of each open object */
	int depth;
	size_t res_size_at;         /* offset of the 3 bytes reserved for the open template's size */
	int err;
};

enum {
	AML_ZERO_OP = 0x00,
	AML_ONE_OP = 0x01,
	AML_NAME_OP = 0x08,
	AML_BYTE_PREFIX = 0x0a,
	AML_WORD_PREFIX = 0x0b,
	AML_DWORD_PREFIX = 0x0c,
	AML_STRING_PREFIX = 0x0d,
	AML_QWORD_PREFIX = 0x0e,
	AML_SCOPE_OP = 0x10,
	AML_BUFFER_OP = 0x11,
	AML_PACKAGE_OP = 0x12,
	AML_METHOD_OP = 0x14,
	AML_DUAL_NAME_PREFIX = 0x2e,
	AML_MULTI_NAME_PREFIX = 0x2f,
	AML_EXT_OP_PREFIX = 0x5b,
	AML_DEVICE_OP = 0x82, /* after AML_EXT_OP_PREFIX */
	AML_ROOT_CHAR = '\\',
	AML_PARENT_PREFIX = '^',
	AML_RETURN_OP = 0xa4,
};

static void aml_bytes(struct aml *a, const void *data, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->buf + a->len, data, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, int nbytes)
{
	for (int i = 0; i < nbytes; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

static void aml_pkg_open(struct aml *a)
{
	static const uint8_t reserve[4];
	if (a->depth == AML_MAX_DEPTH) {
		a->err = a->err ? a->err : -EINVAL; /* nesting this deep is a bug in the caller */
		return;
	}
	a->open[a->depth++] = a->len;
	aml_bytes(a, reserve, sizeof(reserve));
}

/* Closes the innermost object opened by an aml_*_begin. */
static void aml_end(struct aml *a)
{
	if (a->depth == 0) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	size_t start = a->open[--a->depth];
	if (a->err)
		return;
	size_t body = a->len - (start + 4);
	/* PkgLength counts itself: 1 byte up to 63, then 2/3/4 bytes holding 12/20/28 bits. */
	size_t n, total = 0;
	for (n = 1; n <= 4; n++) {
		total = body + n;
		if (n == 1 ? total <= 0x3f : total < (1ULL << (4 + 8 * (n - 1))))
			break;
	}
	if (n > 4) {
		a->err = -ENOSPC;
		return;
	}
	uint8_t enc[4];
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (size_t i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(a->buf + start + n, a->buf + start + 4, body);
	memcpy(a->buf + start, enc, n);
	a->len -= 4 - n;
}

static bool aml_name_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* A NameString from ASL-like text: "\\_SB_.COM1", "^FOO", "_HID"; segments shorter than four
 * characters are padded with '_' as iasl does ("_SB" -> "_SB_"). */
static void aml_namestring(struct aml *a, const char *path)
{
	if (*path == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		path++;
	} else {
		while (*path == AML_PARENT_PREFIX) {
			aml_byte(a, AML_PARENT_PREFIX);
			path++;
		}
	}
	if (!*path) {
		aml_byte(a, 0x00); /* NullName: the root itself */
		return;
	}
	size_t nseg = 1;
	for (const char *p = path; *p; p++)
		nseg += *p == '.';
	if (nseg > 255) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nseg);
	}
	while (*path) {
		char seg[4] = {'_', '_', '_', '_'};
		size_t n = 0;
		for (; *path && *path != '.'; path++, n++) {
			if (n == 4 || !aml_name_char(*path, n == 0)) {
				a->err = a->err ? a->err : -EINVAL;
				return;
			}
			seg[n] = *path;
		}
		if (n == 0) {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		aml_bytes(a, seg, 4);
		if (*path == '.')
			path++;
	}
}

/* The shortest encoding of an integer constant. */
static void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

static int aml_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* EisaId("PNP0501"): three letters of 5 bits and four hex digits, stored big-endian in a DWord. */
static void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;
	if (strlen(id) != 7) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		v |= (uint32_t)(id[i] - '@') << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		int d = aml_hex_digit(id[i]);
		if (d < 0) {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		v |= (uint32_t)d << (4 * (6 - i));
	}
	aml_byte(a, AML_DWORD_PREFIX);
	uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	aml_bytes(a, be, 4);
}

/* Name(path, ...): the caller emits the value object next. */
static void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

static void aml_name_integer(struct aml *a, const char *path, uint64_t v)
{
	aml_name(a, path);
	aml_integer(a, v);
}

static void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name(a, path);
	aml_eisaid(a, id);
}

static void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
}

static void aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
}

static void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	aml_byte(a, AML_METHOD_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
}

/* Package(n) { ... }: the caller emits n data objects, then aml_end. */
static void aml_package_begin(struct aml *a, uint8_t nelems)
{
	aml_byte(a, AML_PACKAGE_OP);
	aml_pkg_open(a);
	aml_byte(a, nelems);
}

static void aml_return_integer(struct aml *a, uint64_t v)
{
	aml_byte(a, AML_RETURN_OP);
	aml_integer(a, v);
}

/* ResourceTemplate() { ... }: a Buffer whose size covers the descriptors and the end tag. Three
 * bytes are reserved for the size and shrunk on close to the encoding iasl would choose, so the
 * AML matches what iasl compiles from the same ASL byte for byte. Only one may be open at a time. */
static void aml_res_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER_OP);
	aml_pkg_open(a);
	a->res_size_at = a->len;
	aml_le(a, 0, 3);
}

/* IO(Decode16, min, max, align, len) */
static void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	const uint8_t d[8] = {0x47, 0x01, (uint8_t)min, (uint8_t)(min >> 8),
	                      (uint8_t)max, (uint8_t)(max >> 8), align, len};
	aml_bytes(a, d, sizeof(d));
}

/* IRQNoFlags() {irq}: edge-triggered, active-high, exclusive, as ISA interrupts are. */
static void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	const uint8_t d[3] = {0x22, (uint8_t)(1u << irq), (uint8_t)((1u << irq) >> 8)};
	aml_bytes(a, d, sizeof(d));
}

static void aml_res_end(struct aml *a)
{
	/* End tag; a zero checksum means "treat as valid", which is what iasl emits too. */
	static const uint8_t end_tag[2] = {0x79, 0x00};
	aml_bytes(a, end_tag, sizeof(end_tag));
	if (!a->err) {
		size_t at = a->res_size_at, size = a->len - (at + 3);
		if (size > 0xffff) {
			a->err = -ENOSPC;
		} else if (size > 0xff) {
			const uint8_t enc[3] = {AML_WORD_PREFIX, (uint8_t)size, (uint8_t)(size >> 8)};
			memcpy(a->buf + at, enc, 3);
		} else {
			/* never 0 or 1 (ZeroOp/OneOp): the end tag alone is 2 bytes */
			memmove(a->buf + at + 2, a->buf + at + 3, size);
			a->buf[at] = AML_BYTE_PREFIX;
			a->buf[at + 1] = (uint8_t)size;
			a->len--;
		}
	}
	aml_end(a);
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

static void dsdt_body(struct aml *a, const struct acpi_config *cfg)
{
	(void)cfg; /* virtio-mmio and PCI devices will come from here */

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
	header_finish(h, sizeof(*h) + a.len);
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
	f->firmware_ctrl = (uint32_t)area_gpa(facs);
	f->x_firmware_ctrl = area_gpa(facs);
	f->dsdt = (uint32_t)area_gpa(dsdt);
	f->x_dsdt = area_gpa(dsdt);

	f->sci_int = IRQ_ACPI_SCI;
	/* SMI_CMD = 0: no SMM handover; the platform is always in ACPI mode (SCI_EN reads 1). */
	f->smi_cmd = 0;

	f->pm1a_evt_blk = PORT_ACPI_PM1A_EVT;
	f->pm1_evt_len = 4;
	f->x_pm1a_evt_blk = gas_io(PORT_ACPI_PM1A_EVT, 32, ACPI_GAS_ACCESS_WORD);
	f->pm1a_cnt_blk = PORT_ACPI_PM1A_CNT;
	f->pm1_cnt_len = 2;
	f->x_pm1a_cnt_blk = gas_io(PORT_ACPI_PM1A_CNT, 16, ACPI_GAS_ACCESS_WORD);
	/* No PM timer (optional since ACPI 5.0a), no GPE blocks, no PM2. */

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

	header_finish(&f->h, sizeof(*f));
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

	header_finish(&m->h, (size_t)(p - base));
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
	uint8_t *p = (uint8_t *)(h + 1);
	for (size_t i = 0; i < ntables; i++) {
		uint64_t gpa = area_gpa(tables[i]);
		memcpy(p + i * entry_size, &gpa, entry_size); /* little-endian: the low bytes */
	}
	header_finish(h, len);
	return 0;
}

static int build_all(struct acpi_area *area, const struct acpi_config *cfg)
{
	size_t rsdp, facs, dsdt, fadt, madt, xsdt, rsdt;
	int ret;
	if ((ret = area_alloc(area, sizeof(struct acpi_rsdp), ACPI_TABLE_ALIGN, &rsdp)) ||
	    (ret = build_facs(area, &facs)) ||
	    (ret = build_dsdt(area, cfg, &dsdt)) ||
	    (ret = build_fadt(area, cfg, dsdt, facs, &fadt)) ||
	    (ret = build_madt(area, cfg, &madt)))
		return ret;
	const size_t tables[] = {fadt, madt};
	if ((ret = build_sdt(area, "XSDT", 8, tables, 2, &xsdt)) ||
	    (ret = build_sdt(area, "RSDT", 4, tables, 2, &rsdt)))
		return ret;

	struct acpi_rsdp *r = (struct acpi_rsdp *)(area->buf + rsdp);
	memcpy(r->signature, "RSD PTR ", 8);
	memcpy(r->oem_id, ACPI_OEM_ID, 6);
	r->revision = 2;
	r->rsdt_address = (uint32_t)area_gpa(rsdt);
	r->length = sizeof(*r);
	r->xsdt_address = area_gpa(xsdt);
	r->checksum = acpi_checksum(r, 20);
	r->extended_checksum = acpi_checksum(r, sizeof(*r));
	return 0;
}

int acpi_build(const struct guest_mem *mem, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	_Static_assert(LAYOUT_ACPI_START % ACPI_FACS_ALIGN == 0, "ACPI area alignment");
	_Static_assert(LAYOUT_ACPI_END <= 0xffffffffULL, "RSDT holds 32-bit addresses");
	if (!mem || !cfg || !rsdp_gpa || cfg->ncpus == 0)
		return -EINVAL;

	struct acpi_area area = {.size = LAYOUT_ACPI_END - LAYOUT_ACPI_START};
	uint8_t *dst = guest_mem_ptr(mem, LAYOUT_ACPI_START, area.size);
	if (!dst)
		return -EFAULT;
	area.buf = calloc(1, area.size);
	if (!area.buf)
		return -ENOMEM;

	int ret = build_all(&area, cfg);
	if (!ret) {
		memcpy(dst, area.buf, area.size);
		*rsdp_gpa = LAYOUT_ACPI_START;
	}
	free(area.buf);
	return ret;
}
