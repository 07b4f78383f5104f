/* Unit tests of the ACPI tables: walked byte by byte as a guest would, then disassembled by iasl;
 * with and without the PCI host bridge (MCFG, \_SB.PCI0) and virtio-mmio devices (LNRO0005). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"
#include "fake_memory.h"

#define RAM_SIZE   (2u << 20)
#define RAM_FILL   0x5a /* RAM outside the ACPI area must keep this */
#define HDR        36

/* Offsets in the FADT (ACPI 6.0, table 5-34), written out here rather than taken from acpi.c's
 * struct so that a wrong struct layout shows up as a test failure. */
enum {
	FADT_FIRMWARE_CTRL = 36, FADT_DSDT = 40, FADT_SCI_INT = 46, FADT_SMI_CMD = 48,
	FADT_ACPI_ENABLE = 52, FADT_ACPI_DISABLE = 53, FADT_PM1A_EVT = 56, FADT_PM1B_EVT = 60,
	FADT_PM1A_CNT = 64, FADT_PM_TMR = 76, FADT_PM1_EVT_LEN = 88, FADT_PM1_CNT_LEN = 89,
	FADT_PM_TMR_LEN = 91, FADT_CENTURY = 108, FADT_IAPC_BOOT_ARCH = 109, FADT_FLAGS = 112,
	FADT_RESET_REG = 116, FADT_RESET_VALUE = 128, FADT_X_FIRMWARE_CTRL = 132, FADT_X_DSDT = 140,
	FADT_X_PM1A_EVT = 148, FADT_X_PM1A_CNT = 172, FADT_X_PM_TMR = 208,
};

struct tables {
	struct guest_mem mem;
	uint8_t *ram;
	uint32_t ncpus;
	bool pci;
	unsigned nmmio; /* virtio-mmio devices, at the windows and GSIs of layout.h */
	uint64_t rsdp, rsdt, xsdt, fadt, facs, dsdt, madt, mcfg;
};

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

static const uint8_t *memfind(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; m <= n && i <= n - m; i++)
		if (!memcmp(hay + i, needle, m))
			return hay + i;
	return NULL;
}

/* A described table: inside the area, 16-byte aligned, whole, checksummed, ours. */
static const uint8_t *check_table(struct tables *t, uint64_t gpa, const char *sig)
{
	assert_true(gpa >= LAYOUT_ACPI_START && gpa + HDR <= LAYOUT_ACPI_END);
	assert_int_equal(gpa % 16, 0);
	const uint8_t *p = t->ram + gpa;
	assert_memory_equal(p, sig, 4);
	uint32_t len = rd32(p + 4);
	assert_true(len >= HDR && gpa + len <= LAYOUT_ACPI_END);
	assert_int_equal(sum8(p, len), 0);
	assert_memory_equal(p + 10, "KVMKIT", 6);
	return p;
}

/* The n-th virtio-mmio device as kvmkit places it (beyond the devices kvmkit allows, which
 * the tables take all the same, the GSIs wrap around the IOAPIC's pins). */
static struct acpi_virtio_mmio mmio_dev(unsigned n)
{
	return (struct acpi_virtio_mmio){LAYOUT_VIRTIO_MMIO_BASE + n * LAYOUT_VIRTIO_MMIO_SIZE,
	                                 (uint32_t)LAYOUT_VIRTIO_MMIO_SIZE,
	                                 VIRTIO_MMIO_GSI(n) % LAYOUT_IOAPIC_PINS};
}

static void build_full(struct tables *t, uint32_t ncpus, bool pci, unsigned nmmio)
{
	memset(t, 0, sizeof(*t));
	assert_int_equal(fake_mem_init(&t->mem, RAM_SIZE), 0);
	t->ram = t->mem.regions[0].host;
	memset(t->ram, RAM_FILL, RAM_SIZE);
	t->ncpus = ncpus;
	t->pci = pci;
	t->nmmio = nmmio;
	struct acpi_config cfg = {.ncpus = ncpus, .pci = pci, .nvirtio_mmio = nmmio};
	for (unsigned i = 0; i < nmmio; i++)
		cfg.virtio_mmio[i] = mmio_dev(i);
	assert_int_equal(acpi_build(&t->mem, &cfg, &t->rsdp), 0);
}

static void build_with(struct tables *t, uint32_t ncpus, bool pci)
{
	build_full(t, ncpus, pci, 0);
}

static void build(struct tables *t, uint32_t ncpus)
{
	build_with(t, ncpus, false);
}

static void check_outside_untouched(struct tables *t)
{
	for (uint64_t a = 0; a < RAM_SIZE; a++)
		if (a < LAYOUT_ACPI_START || a >= LAYOUT_ACPI_END)
			assert_int_equal(t->ram[a], RAM_FILL);
}

/* Finds the RSDP the way Linux does without a boot-protocol pointer: 16-byte steps through the
 * BIOS area, signature and ACPI 1.0 checksum. */
static void check_rsdp(struct tables *t)
{
	uint64_t found = 0;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		if (!memcmp(t->ram + a, "RSD PTR ", 8) && sum8(t->ram + a, 20) == 0) {
			found = a;
			break;
		}
	}
	assert_int_equal(found, t->rsdp);
	assert_int_equal(t->rsdp, LAYOUT_ACPI_START);
	const uint8_t *r = t->ram + t->rsdp;
	assert_int_equal(r[15], 2); /* revision */
	assert_memory_equal(r + 9, "KVMKIT", 6);
	assert_int_equal(rd32(r + 20), 36); /* length */
	assert_int_equal(sum8(r, 36), 0);   /* extended checksum */
	t->rsdt = rd32(r + 16);
	t->xsdt = rd64(r + 24);
}

/* RSDT and XSDT list the same tables: exactly one FADT and one MADT, and an MCFG with PCI. */
static void check_root_tables(struct tables *t)
{
	const uint8_t *rsdt = check_table(t, t->rsdt, "RSDT");
	const uint8_t *xsdt = check_table(t, t->xsdt, "XSDT");
	uint32_t rn = (rd32(rsdt + 4) - HDR) / 4, xn = (rd32(xsdt + 4) - HDR) / 8;
	assert_int_equal(rd32(rsdt + 4), HDR + 4 * rn);
	assert_int_equal(rd32(xsdt + 4), HDR + 8 * xn);
	assert_int_equal(rn, xn);
	assert_int_equal(rn, t->pci ? 3 : 2);
	for (uint32_t i = 0; i < xn; i++) {
		uint64_t gpa = rd64(xsdt + HDR + 8 * i);
		assert_int_equal(rd32(rsdt + HDR + 4 * i), gpa);
		const uint8_t *p = t->ram + gpa;
		if (!memcmp(p, "FACP", 4)) {
			assert_int_equal(t->fadt, 0);
			t->fadt = gpa;
		} else if (!memcmp(p, "APIC", 4)) {
			assert_int_equal(t->madt, 0);
			t->madt = gpa;
		} else if (!memcmp(p, "MCFG", 4) && t->pci) {
			assert_int_equal(t->mcfg, 0);
			t->mcfg = gpa;
		} else {
			fail_msg("unexpected table %.4s in the XSDT", (const char *)p);
		}
	}
	assert_int_not_equal(t->fadt, 0);
	assert_int_not_equal(t->madt, 0);
	assert_int_equal(t->mcfg != 0, t->pci);
}

/* MCFG: one allocation, the ECAM of segment 0, buses 0-0 (PCI Firmware Spec 3.0, 4.1.2). */
static void check_mcfg(struct tables *t)
{
	if (!t->pci)
		return;
	const uint8_t *m = check_table(t, t->mcfg, "MCFG");
	assert_int_equal(rd32(m + 4), HDR + 8 + 16);
	assert_int_equal(m[8], 1); /* revision */
	for (int i = 0; i < 8; i++)
		assert_int_equal(m[HDR + i], 0);
	const uint8_t *e = m + HDR + 8;
	assert_int_equal(rd64(e), LAYOUT_PCI_ECAM_BASE);
	assert_int_equal(rd16(e + 8), 0);  /* segment */
	assert_int_equal(e[10], 0);        /* start bus */
	assert_int_equal(e[11], 0);        /* end bus: the ECAM is 1 MiB, one bus */
	assert_int_equal(LAYOUT_PCI_ECAM_SIZE, 1u << 20);
	assert_int_equal(rd32(e + 12), 0);
}

static void check_gas_io(const uint8_t *gas, uint8_t bits, uint64_t port)
{
	assert_int_equal(gas[0], 1); /* system I/O */
	assert_int_equal(gas[1], bits);
	assert_int_equal(gas[2], 0); /* bit offset */
	assert_int_equal(rd64(gas + 4), port);
}

static void check_fadt(struct tables *t)
{
	const uint8_t *f = check_table(t, t->fadt, "FACP");
	assert_int_equal(rd32(f + 4), 276);
	assert_true(f[8] == 5 || f[8] == 6);

	t->facs = rd32(f + FADT_FIRMWARE_CTRL);
	assert_int_equal(rd64(f + FADT_X_FIRMWARE_CTRL), t->facs);
	assert_true(t->facs >= LAYOUT_ACPI_START && t->facs + 64 <= LAYOUT_ACPI_END);
	assert_int_equal(t->facs % 64, 0);
	assert_memory_equal(t->ram + t->facs, "FACS", 4);
	assert_int_equal(rd32(t->ram + t->facs + 4), 64);

	t->dsdt = rd32(f + FADT_DSDT);
	assert_int_equal(rd64(f + FADT_X_DSDT), t->dsdt);
	check_table(t, t->dsdt, "DSDT");

	assert_int_equal(rd16(f + FADT_SCI_INT), IRQ_ACPI_SCI);
	assert_int_equal(rd32(f + FADT_SMI_CMD), 0);
	assert_int_equal(f[FADT_ACPI_ENABLE], 0);
	assert_int_equal(f[FADT_ACPI_DISABLE], 0);
	assert_int_equal(rd32(f + FADT_PM1A_EVT), PORT_ACPI_PM1A_EVT);
	assert_int_equal(rd32(f + FADT_PM1B_EVT), 0);
	assert_int_equal(f[FADT_PM1_EVT_LEN], 4);
	assert_int_equal(rd32(f + FADT_PM1A_CNT), PORT_ACPI_PM1A_CNT);
	assert_int_equal(f[FADT_PM1_CNT_LEN], 2);
	/* The PM timer: Linux's acpi_pm clocksource and OVMF need it (24 bits: no TMR_VAL_EXT). */
	assert_int_equal(rd32(f + FADT_PM_TMR), PORT_ACPI_PM_TMR);
	assert_int_equal(f[FADT_PM_TMR_LEN], 4);
	check_gas_io(f + FADT_X_PM1A_EVT, 32, PORT_ACPI_PM1A_EVT);
	check_gas_io(f + FADT_X_PM1A_CNT, 16, PORT_ACPI_PM1A_CNT);
	check_gas_io(f + FADT_X_PM_TMR, 32, PORT_ACPI_PM_TMR);

	uint32_t flags = rd32(f + FADT_FLAGS);
	assert_true(flags & (1u << 0));   /* WBINVD */
	assert_true(flags & (1u << 2));   /* PROC_C1 */
	assert_true(flags & (1u << 5));   /* SLP_BUTTON: no sleep button */
	assert_true(flags & (1u << 10));  /* RESET_REG_SUP */
	assert_false(flags & (1u << 20)); /* not HW_REDUCED_ACPI */
	assert_false(flags & (1u << 8));  /* not TMR_VAL_EXT */
	assert_int_equal(!!(flags & (1u << 19)), t->ncpus > 8); /* FORCE_APIC_PHYSICAL_DEST */
	check_gas_io(f + FADT_RESET_REG, 8, PORT_ACPI_RESET);
	assert_int_equal(f[FADT_RESET_VALUE], ACPI_RESET_VALUE);

	uint16_t boot = rd16(f + FADT_IAPC_BOOT_ARCH);
	/* LEGACY_DEVICES | VGA not present, and no 8042: Linux must not probe for a keyboard */
	assert_int_equal(boot & 0x7, 0x5);
	assert_false(boot & (1u << 5));    /* the CMOS RTC is present */
	assert_int_equal(f[FADT_CENTURY], 0x32);
}

static void check_madt(struct tables *t)
{
	const uint8_t *m = check_table(t, t->madt, "APIC");
	uint32_t len = rd32(m + 4);
	assert_int_equal(rd32(m + 36), LAYOUT_LAPIC_ADDR);
	assert_int_equal(rd32(m + 40) & 1, 1); /* PCAT_COMPAT */

	bool *seen = calloc(t->ncpus, sizeof(*seen));
	assert_non_null(seen);
	uint32_t nproc = 0, nioapic = 0, nnmi = 0, nx2nmi = 0;
	bool iso_pit = false, iso_sci = false;
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;
		assert_true(off + 2 <= len);
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0: /* processor local APIC */
			assert_int_equal(e[1], 8);
			assert_true(e[3] < 255 && e[3] < t->ncpus);
			assert_int_equal(e[2], e[3]); /* UID = APIC ID */
			assert_int_equal(rd32(e + 4) & 1, 1);
			assert_false(seen[e[3]]);
			seen[e[3]] = true;
			nproc++;
			break;
		case 9: { /* processor local x2APIC: only where an xAPIC ID cannot express it */
			assert_int_equal(e[1], 16);
			uint32_t id = rd32(e + 4);
			assert_true(id >= 255 && id < t->ncpus);
			assert_int_equal(rd32(e + 12), id);
			assert_int_equal(rd32(e + 8) & 1, 1);
			assert_false(seen[id]);
			seen[id] = true;
			nproc++;
			break;
		}
		case 1: /* I/O APIC */
			assert_int_equal(e[1], 12);
			assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0); /* GSI base */
			nioapic++;
			break;
		case 2: /* interrupt source override */
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0); /* ISA */
			if (e[3] == 0) {
				assert_int_equal(rd32(e + 4), 2);
				assert_int_equal(rd16(e + 8), 0);
				iso_pit = true;
			} else if (e[3] == IRQ_ACPI_SCI) {
				assert_int_equal(rd32(e + 4), IRQ_ACPI_SCI);
				assert_int_equal(rd16(e + 8), 0x000d); /* active high, level */
				iso_sci = true;
			} else {
				fail_msg("unexpected override of IRQ %u", e[3]);
			}
			break;
		case 4: /* local APIC NMI */
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff); /* all processors */
			assert_int_equal(e[5], 1);    /* LINT1 */
			nnmi++;
			break;
		case 10: /* local x2APIC NMI */
			assert_int_equal(e[1], 12);
			assert_int_equal(rd32(e + 4), 0xffffffffu);
			assert_int_equal(e[8], 1);
			nx2nmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(nproc, t->ncpus);
	for (uint32_t i = 0; i < t->ncpus; i++)
		assert_true(seen[i]);
	free(seen);
	assert_int_equal(nioapic, 1);
	assert_true(iso_pit && iso_sci);
	assert_int_equal(nnmi, 1);
	assert_int_equal(nx2nmi, t->ncpus > 255 ? 1 : 0);
}

/* Decodes one AML integer constant (the forms acpi.c emits for small values). */
static uint64_t aml_int(const uint8_t **pp)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	switch (*p) {
	case 0x00: v = 0; p += 1; break;
	case 0x01: v = 1; p += 1; break;
	case 0x0a: v = p[1]; p += 2; break;
	case 0x0b: v = rd16(p + 1); p += 3; break;
	case 0x0c: v = rd32(p + 1); p += 5; break;
	default: fail_msg("not an integer constant: opcode %#x", *p);
	}
	*pp = p;
	return v;
}

static void check_dsdt(struct tables *t)
{
	const uint8_t *d = t->ram + t->dsdt;
	uint32_t len = rd32(d + 4);
	assert_int_equal(d[8], 2); /* 64-bit AML integers */

	/* Name(\_S5_, Package(4) {5, 5, 0, 0}) */
	const uint8_t *s5 = memfind(d + HDR, len - HDR, "_S5_", 4);
	assert_non_null(s5);
	assert_true(s5[-1] == 0x08 || (s5[-1] == '\\' && s5[-2] == 0x08));
	const uint8_t *p = s5 + 4;
	assert_int_equal(*p++, 0x12); /* PackageOp */
	assert_int_equal(*p & 0xc0, 0); /* a one-byte PkgLength */
	const uint8_t *pkg_end = p + *p;
	p++;
	assert_int_equal(*p++, 4);
	assert_int_equal(aml_int(&p), ACPI_SLP_TYP_S5);
	assert_int_equal(aml_int(&p), ACPI_SLP_TYP_S5);
	assert_int_equal(aml_int(&p), 0);
	assert_int_equal(aml_int(&p), 0);
	assert_ptr_equal(p, pkg_end);

	/* COM1: EisaId("PNP0501"), IO(Decode16, 0x3f8, 0x3f8, 1, 8), IRQNoFlags() {4} */
	static const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
	static const uint8_t com1_io[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};
	static const uint8_t irq4[] = {0x22, 0x10, 0x00};
	assert_non_null(memfind(d, len, "COM1", 4));
	assert_non_null(memfind(d, len, pnp0501, sizeof(pnp0501)));
	const uint8_t *io = memfind(d, len, com1_io, sizeof(com1_io));
	assert_non_null(io);
	assert_memory_equal(io + sizeof(com1_io), irq4, sizeof(irq4));

	/* PCI: EisaId("PNP0A08") and the ECAM reservation only when asked for; a machine without
	 * PCI keeps the DSDT it had. */
	static const uint8_t pnp0a08[] = {0x0c, 0x41, 0xd0, 0x0a, 0x08};
	static const uint8_t pnp0c02[] = {0x0c, 0x41, 0xd0, 0x0c, 0x02};
	assert_int_equal(memfind(d, len, pnp0a08, sizeof(pnp0a08)) != NULL, t->pci);
	assert_int_equal(memfind(d, len, pnp0c02, sizeof(pnp0c02)) != NULL, t->pci);
	assert_int_equal(memfind(d, len, "PCI0", 4) != NULL, t->pci);
	assert_int_equal(memfind(d, len, "_PRT", 4) != NULL, t->pci);
	if (!t->pci)
		return;
	/* Memory32Fixed(ReadWrite, ECAM base, 1 MiB) */
	uint8_t ecam[12] = {0x86, 0x09, 0x00, 0x01};
	uint32_t base = (uint32_t)LAYOUT_PCI_ECAM_BASE, size = (uint32_t)LAYOUT_PCI_ECAM_SIZE;
	memcpy(ecam + 4, &base, 4);
	memcpy(ecam + 8, &size, 4);
	assert_non_null(memfind(d, len, ecam, sizeof(ecam)));
}

/* Each virtio-mmio device: Name(_HID, "LNRO0005") and a _CRS of Memory32Fixed(ReadWrite, base,
 * 0x200) then Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive) {gsi}. */
static void check_dsdt_mmio(struct tables *t)
{
	const uint8_t *d = t->ram + t->dsdt;
	uint32_t len = rd32(d + 4);
	static const uint8_t hid[] = "\x08_HID\x0dLNRO0005"; /* NameOp, name, StringPrefix, text */
	size_t nhid = 0;
	for (const uint8_t *p = d; (p = memfind(p, len - (size_t)(p - d), hid, sizeof(hid))); p++)
		nhid++;
	assert_int_equal(nhid, t->nmmio);
	for (unsigned i = 0; i < t->nmmio; i++) {
		struct acpi_virtio_mmio dev = mmio_dev(i);
		uint8_t crs[21] = {0x86, 0x09, 0x00, 0x01};
		uint32_t base = (uint32_t)dev.base;
		memcpy(crs + 4, &base, 4);
		memcpy(crs + 8, &dev.size, 4);
		const uint8_t irq[5] = {0x89, 0x06, 0x00, 0x01 /* consumer, level, high, exclusive */,
		                        0x01};
		memcpy(crs + 12, irq, 5);
		memcpy(crs + 17, &dev.gsi, 4);
		assert_non_null(memfind(d, len, crs, sizeof(crs)));
		char name[5];
		snprintf(name, sizeof(name), "VR%02X", i & 0xffu);
		assert_non_null(memfind(d, len, name, 4));
	}
}

/* --- iasl: the ACPICA disassembler is the external judge of table and AML syntax --- */

/* A tool from acpica-tools: $ENV_VAR (meson passes the path it found), else PATH, else NULL. */
static const char *find_tool(const char *env_var, const char *name)
{
	const char *env = getenv(env_var);
	if (env && *env)
		return env;
	char *cmd;
	assert_true(asprintf(&cmd, "command -v %s >/dev/null 2>&1", name) > 0);
	int rc = system(cmd);
	free(cmd);
	return rc == 0 ? name : NULL;
}

static const char *find_iasl(void)
{
	return find_tool("IASL", "iasl");
}

static char *path_in(const char *dir, const char *name)
{
	char *path;
	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	return path;
}

/* The whole file, NUL-terminated, or NULL; *lenp (if given) gets its length. */
static char *read_file_len(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while (out && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, out);
	if (out)
		fclose(out);
	fclose(f);
	if (lenp)
		*lenp = len;
	return buf;
}

static char *read_file(const char *path)
{
	return read_file_len(path, NULL);
}

/* Runs tool with args in dir; returns its output, asserts a zero exit status. */
static char *run_tool(const char *tool, const char *dir, const char *args)
{
	char *cmd;
	assert_true(asprintf(&cmd, "cd '%s' && '%s' %s >iasl.log 2>&1 </dev/null", dir, tool,
	                     args) > 0);
	int rc = system(cmd);
	char *log_path = path_in(dir, "iasl.log");
	char *log = read_file(log_path);
	free(log_path);
	assert_non_null(log);
	if (rc != 0)
		fail_msg("'%s' failed (status %d):\n%s", cmd, rc, log);
	free(cmd);
	return log;
}

static void write_blob(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = path_in(dir, name);
	FILE *f = fopen(path, "wb");
	free(path);
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Disassembles one table; iasl must have nothing to complain about. Returns the .dsl text. */
static char *iasl_disassemble(const char *iasl, const char *dir, const char *name,
                              const void *table, size_t len)
{
	char file[64], args[128];
	snprintf(file, sizeof(file), "%s.dat", name);
	write_blob(dir, file, table, len);
	snprintf(args, sizeof(args), "-d %s", file);
	char *log = run_tool(iasl, dir, args);
	/* iasl -d reports bad checksums, lengths and AML as warnings/errors in its log and dsl. */
	static const char *const complaints[] = {"Error", "Warning", "Invalid", "Incorrect",
	                                         "mismatch", "Unknown"};
	snprintf(file, sizeof(file), "%s.dsl", name);
	char *dsl = path_in(dir, file);
	char *text = read_file(dsl);
	if (!text)
		fail_msg("iasl wrote no %s:\n%s", dsl, log);
	for (size_t i = 0; i < sizeof(complaints) / sizeof(complaints[0]); i++) {
		if (strstr(log, complaints[i]) || strstr(text, complaints[i]))
			fail_msg("iasl -d %s: \"%s\"\n--- log:\n%s\n--- dsl:\n%s", dsl, complaints[i], log,
			         text);
	}
	free(dsl);
	free(log);
	return text;
}

static void remove_dir(const char *dir)
{
	char *cmd;
	assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
}

/* What Linux evaluates for the host bridge: _HID/_CID, _CRS (windows), _PRT (INTx routing),
 * and the ECAM reservation's _CRS. */
static void check_pci_with_acpiexec(const char *acpiexec, const char *dir)
{
	char *log = run_tool(acpiexec, dir,
	                     "-b 'evaluate \\_SB.PCI0._HID; evaluate \\_SB.PCI0._CID; "
	                     "evaluate \\_SB.PCI0._CRS; evaluate \\_SB.PCI0._PRT; "
	                     "evaluate \\_SB.ECAM._CRS' dsdt.dat");
	static const char *const expected[] = {
		"[Integer] = 00000000080AD041", /* EisaId("PNP0A08") */
		"[Integer] = 00000000030AD041", /* EisaId("PNP0A03") */
		/* WordBusNumber 0-0; IO 0xCF8 x 8; WordIO 0xC000-0xFFFF; DWordMemory
		 * 0xC0000000-0xDFFFFFFF; end tag */
		"[Buffer] Length 44 = \n"
		"    0000: 88 0D 00 02 0C 00 00 00 00 00 00 00 00 00 01 00",
		"    0010: 47 01 F8 0C F8 0C 01 08 88 0D 00 01 0C 03 00 00",
		"    0020: 00 C0 FF FF 00 00 00 40 87 17 00 00 0C 01 00 00",
		"    0030: 00 00 00 00 00 C0 FF FF FF DF 00 00 00 00 00 00",
		"    0040: 00 20 79 00",
		"[Package] Contains 128 Elements:",
		/* slot 0 INTA# -> GSI 16, slot 1 INTA# -> GSI 17, slot 31 INTD# -> GSI 18 */
		"[Package] Contains 4 Elements:\n"
		"      [Integer] = 000000000000FFFF\n"
		"      [Integer] = 0000000000000000\n"
		"      [Integer] = 0000000000000000\n"
		"      [Integer] = 0000000000000010\n",
		"[Package] Contains 4 Elements:\n"
		"      [Integer] = 000000000001FFFF\n"
		"      [Integer] = 0000000000000000\n"
		"      [Integer] = 0000000000000000\n"
		"      [Integer] = 0000000000000011\n",
		"[Package] Contains 4 Elements:\n"
		"      [Integer] = 00000000001FFFFF\n"
		"      [Integer] = 0000000000000003\n"
		"      [Integer] = 0000000000000000\n"
		"      [Integer] = 0000000000000012\n",
		"Length 0E =     0000: 86 09 00 01 00 00 00 E0 00 00 10 00 79 00",
	};
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (!strstr(log, expected[i]))
			fail_msg("acpiexec: no \"%s\" in:\n%s", expected[i], log);
	if (strstr(log, "AE_") || strstr(log, "Error") || strstr(log, "Warning"))
		fail_msg("acpiexec complained:\n%s", log);
	free(log);
}

/* What Linux evaluates for a virtio-mmio device: _HID (a string: the platform driver's ACPI
 * match), _UID, _CCA, and _CRS (the window and the level-triggered, active-high GSI). */
static void check_mmio_with_acpiexec(const char *acpiexec, const char *dir, unsigned n)
{
	char *args;
	assert_true(asprintf(&args, "-b 'evaluate \\_SB.VR00._HID; evaluate \\_SB.VR00._UID; "
	                     "evaluate \\_SB.VR00._CCA; evaluate \\_SB.VR%02X._UID; "
	                     "evaluate \\_SB.VR%02X._CRS' dsdt.dat", n - 1, n - 1) > 0);
	char *log = run_tool(acpiexec, dir, args);
	free(args);
	struct acpi_virtio_mmio last = mmio_dev(n - 1);
	char uid[64], crs0[128], crs1[64];
	snprintf(uid, sizeof(uid), "[Integer] = %016X", n - 1);
	/* Memory32Fixed(ReadWrite, base, 0x200), Interrupt(...) {gsi}, end tag; line by line, as
	 * acpiexec appends the bytes as characters to each */
	snprintf(crs0, sizeof(crs0),
	         "[Buffer] Length 17 = \n"
	         "    0000: 86 09 00 01 %02X %02X %02X %02X 00 02 00 00 89 06 00 01",
	         (unsigned)(last.base & 0xff), (unsigned)(last.base >> 8 & 0xff),
	         (unsigned)(last.base >> 16 & 0xff), (unsigned)(last.base >> 24 & 0xff));
	snprintf(crs1, sizeof(crs1), "    0010: 01 %02X 00 00 00 79 00", last.gsi & 0xffu);
	const char *const expected[] = {
		"[String] Length 08 = \"LNRO0005\"",
		"[Integer] = 0000000000000000",
		"[Integer] = 0000000000000001",
		uid,
		crs0,
		crs1,
	};
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (!strstr(log, expected[i]))
			fail_msg("acpiexec: no \"%s\" in:\n%s", expected[i], log);
	if (strstr(log, "AE_") || strstr(log, "Error") || strstr(log, "Warning"))
		fail_msg("acpiexec complained:\n%s", log);
	free(log);
}

static void check_with_iasl(struct tables *t)
{
	const char *iasl = find_iasl();
	assert_non_null(iasl);
	const char *tmp = getenv("TMPDIR");
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/kvmkit-acpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));

	/* Not the RSDP: this iasl (20200925) rejects a binary without a 4-character signature
	 * header; check_rsdp covers it. */
	struct { const char *name; uint64_t gpa; size_t len; } tab[] = {
		{"rsdt", t->rsdt, rd32(t->ram + t->rsdt + 4)},
		{"xsdt", t->xsdt, rd32(t->ram + t->xsdt + 4)},
		{"facp", t->fadt, rd32(t->ram + t->fadt + 4)},
		{"facs", t->facs, 64},
		{"apic", t->madt, rd32(t->ram + t->madt + 4)},
		{"dsdt", t->dsdt, rd32(t->ram + t->dsdt + 4)},
		{"mcfg", t->mcfg, t->pci ? rd32(t->ram + t->mcfg + 4) : 0},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (!tab[i].gpa)
			continue;
		char *text = iasl_disassemble(iasl, dir, tab[i].name, t->ram + tab[i].gpa, tab[i].len);
		if (!strcmp(tab[i].name, "dsdt")) {
			assert_non_null(strstr(text, "_S5_"));
			assert_non_null(strstr(text, "EisaId (\"PNP0501\")"));
			assert_non_null(strstr(text, "IRQNoFlags ()"));
			static const char *const pci[] = {
				"EisaId (\"PNP0A08\")", "EisaId (\"PNP0A03\")", "EisaId (\"PNP0C02\")",
				"WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
				"WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
				"DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, "
				"NonCacheable, ReadWrite,",
				"Name (_PRT, Package (0x80)",
			};
			for (size_t k = 0; k < sizeof(pci) / sizeof(pci[0]); k++)
				if ((strstr(text, pci[k]) != NULL) != t->pci)
					fail_msg("DSDT (pci %d): \"%s\" in:\n%s", t->pci, pci[k], text);
			/* the ECAM reservation's window, and the virtio-mmio windows */
			if ((strstr(text, "Memory32Fixed (ReadWrite,") != NULL) != (t->pci || t->nmmio))
				fail_msg("DSDT: Memory32Fixed unexpected or missing in:\n%s", text);
			static const char *const mmio[] = {
				"Name (_HID, \"LNRO0005\")", "Name (_CCA, One)",
				"Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, )",
			};
			for (size_t k = 0; k < sizeof(mmio) / sizeof(mmio[0]); k++)
				if ((strstr(text, mmio[k]) != NULL) != (t->nmmio > 0))
					fail_msg("DSDT (%u virtio-mmio): \"%s\" in:\n%s", t->nmmio, mmio[k],
					         text);
		}
		if (!strcmp(tab[i].name, "mcfg"))
			assert_non_null(strstr(text, "Base Address : 00000000E0000000"));
		if (!strcmp(tab[i].name, "apic")) {
			/* one processor entry per vCPU, counted in iasl's own rendering */
			size_t n = 0;
			for (const char *s = text; (s = strstr(s, "Processor Enabled : 1")); s++)
				n++;
			assert_int_equal(n, t->ncpus);
		}
		free(text);
	}
	/* Round trip: iasl compiles its own disassembly of our DSDT back into the very same AML
	 * (with -oa, which keeps iasl from shortening name paths), so the emitter writes what
	 * iasl would for the same ASL. Only the header's compiler fields differ. */
	char *log = run_tool(iasl, dir, "-oa -p dsdt-again dsdt.dsl");
	if (!strstr(log, "0 Errors"))
		fail_msg("recompiling the DSDT:\n%s", log);
	free(log);
	char *aml_path = path_in(dir, "dsdt-again.aml");
	size_t aml_len;
	char *aml = read_file_len(aml_path, &aml_len);
	free(aml_path);
	assert_non_null(aml);
	uint32_t dsdt_len = rd32(t->ram + t->dsdt + 4);
	assert_int_equal(aml_len, dsdt_len);
	assert_memory_equal(aml + HDR, t->ram + t->dsdt + HDR, dsdt_len - HDR);
	free(aml);

	/* ACPICA's interpreter loads the DSDT into a namespace and evaluates what Linux will. */
	const char *acpiexec = find_tool("ACPIEXEC", "acpiexec");
	if (acpiexec) {
		log = run_tool(acpiexec, dir,
		               "-b 'evaluate \\_S5; evaluate \\_SB.COM1._STA; "
		               "evaluate \\_SB.COM1._CRS' dsdt.dat");
		static const char *const expected[] = {
			"1 ACPI AML tables successfully acquired and loaded",
			"[Package] Contains 4 Elements:\n"
			"    [Integer] = 0000000000000005\n"
			"    [Integer] = 0000000000000005\n"
			"    [Integer] = 0000000000000000\n"
			"    [Integer] = 0000000000000000\n",
			"[Integer] = 000000000000000F",
			"Length 0D =     0000: 47 01 F8 03 F8 03 01 08 22 10 00 79 00",
		};
		for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
			if (!strstr(log, expected[i]))
				fail_msg("acpiexec: no \"%s\" in:\n%s", expected[i], log);
		if (strstr(log, "AE_") || strstr(log, "Error") || strstr(log, "Warning"))
			fail_msg("acpiexec complained:\n%s", log);
		free(log);
		if (t->pci)
			check_pci_with_acpiexec(acpiexec, dir);
		if (t->nmmio)
			check_mmio_with_acpiexec(acpiexec, dir, t->nmmio);
	}
	if (getenv("KVMKIT_TEST_KEEP"))
		printf("iasl output kept in %s\n", dir); /* for a human reading the .dsl files */
	else
		remove_dir(dir);
}

/* Structure checks always; with_iasl adds the disassembler (those tests skip without iasl). */
static void test_tables_full(uint32_t ncpus, bool pci, unsigned nmmio, bool with_iasl)
{
	if (with_iasl && !find_iasl())
		skip(); /* acpica-tools is not installed */
	struct tables t;
	build_full(&t, ncpus, pci, nmmio);
	check_outside_untouched(&t);
	check_rsdp(&t);
	check_root_tables(&t);
	check_fadt(&t);
	check_madt(&t);
	check_mcfg(&t);
	check_dsdt(&t);
	check_dsdt_mmio(&t);
	if (with_iasl)
		check_with_iasl(&t);
	fake_mem_destroy(&t.mem);
}

static void test_tables_with(uint32_t ncpus, bool pci, bool with_iasl)
{
	test_tables_full(ncpus, pci, 0, with_iasl);
}

static void test_tables(uint32_t ncpus, bool with_iasl)
{
	test_tables_with(ncpus, false, with_iasl);
}

static void test_1_cpu(void **state) { (void)state; test_tables(1, false); }
static void test_4_cpus(void **state) { (void)state; test_tables(4, false); }
static void test_255_cpus(void **state) { (void)state; test_tables(255, false); }
static void test_256_cpus(void **state) { (void)state; test_tables(256, false); }
static void test_1024_cpus(void **state) { (void)state; test_tables(1024, false); }
static void test_iasl_1_cpu(void **state) { (void)state; test_tables(1, true); }
static void test_iasl_4_cpus(void **state) { (void)state; test_tables(4, true); }
static void test_iasl_256_cpus(void **state) { (void)state; test_tables(256, true); }
static void test_iasl_1024_cpus(void **state) { (void)state; test_tables(1024, true); }
static void test_pci_1_cpu(void **state) { (void)state; test_tables_with(1, true, false); }
static void test_pci_256_cpus(void **state) { (void)state; test_tables_with(256, true, false); }
static void test_iasl_pci_1_cpu(void **state) { (void)state; test_tables_with(1, true, true); }
static void test_iasl_pci_1024_cpus(void **state) { (void)state; test_tables_with(1024, true, true); }

/* --transport mmio: no PCI, virtio-mmio devices in the DSDT (one, and as many as kvmkit allows,
 * and as many as the tables take). */
static void test_mmio_1(void **state) { (void)state; test_tables_full(2, false, 1, false); }
static void test_mmio_max(void **state)
{
	(void)state;
	test_tables_full(2, false, LAYOUT_VIRTIO_MMIO_COUNT, false);
	test_tables_full(2, false, ACPI_MAX_VIRTIO_MMIO, false);
}
static void test_iasl_mmio_1(void **state) { (void)state; test_tables_full(2, false, 1, true); }
static void test_iasl_mmio_max(void **state)
{
	(void)state;
	test_tables_full(2, false, LAYOUT_VIRTIO_MMIO_COUNT, true);
	test_tables_full(2, false, ACPI_MAX_VIRTIO_MMIO, true);
}
/* Both kinds at once: the DSDT takes them, though kvmkit never builds that machine. */
static void test_iasl_pci_mmio(void **state) { (void)state; test_tables_full(1, true, 2, true); }

static void test_deterministic(void **state)
{
	(void)state;
	struct tables a, b;
	build_with(&a, 8, true);
	build_with(&b, 8, true);
	assert_memory_equal(a.ram + LAYOUT_ACPI_START, b.ram + LAYOUT_ACPI_START,
	                    LAYOUT_ACPI_END - LAYOUT_ACPI_START);
	/* Building again over old tables (fewer CPUs, no PCI) leaves nothing stale behind. */
	struct acpi_config cfg = {.ncpus = 1};
	uint64_t rsdp;
	assert_int_equal(acpi_build(&a.mem, &cfg, &rsdp), 0);
	struct tables c;
	build(&c, 1);
	assert_memory_equal(a.ram + LAYOUT_ACPI_START, c.ram + LAYOUT_ACPI_START,
	                    LAYOUT_ACPI_END - LAYOUT_ACPI_START);
	fake_mem_destroy(&a.mem);
	fake_mem_destroy(&b.mem);
	fake_mem_destroy(&c.mem);
}

static void test_errors(void **state)
{
	(void)state;
	struct guest_mem mem;
	uint64_t rsdp = 0x1234;
	struct acpi_config cfg = {.ncpus = 1};

	assert_int_equal(fake_mem_init(&mem, RAM_SIZE), 0);
	memset(mem.regions[0].host, RAM_FILL, RAM_SIZE);
	cfg.ncpus = 0;
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.ncpus = 1;
	assert_int_equal(acpi_build(NULL, &cfg, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&mem, NULL, &rsdp), -EINVAL);
	assert_int_equal(acpi_build(&mem, &cfg, NULL), -EINVAL);
	/* A MADT larger than the area: -ENOSPC, and guest memory is not touched. */
	cfg.ncpus = 100000;
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -ENOSPC);
	cfg.ncpus = UINT32_MAX;
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -ENOSPC);
	for (uint32_t a = 0; a < RAM_SIZE; a++)
		assert_int_equal(mem.regions[0].host[a], RAM_FILL);
	assert_int_equal(rsdp, 0x1234);

	/* virtio-mmio devices the tables cannot describe: too many, a window beyond 32 bits or
	 * of no size, an interrupt that is no IOAPIC pin. */
	cfg.ncpus = 1;
	cfg.nvirtio_mmio = ACPI_MAX_VIRTIO_MMIO + 1;
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.nvirtio_mmio = 1;
	cfg.virtio_mmio[0] = (struct acpi_virtio_mmio){0xfffffe00, 0x200, 16};
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), 0); /* the last window of 4 GiB fits */
	memset(mem.regions[0].host, RAM_FILL, RAM_SIZE);
	cfg.virtio_mmio[0] = (struct acpi_virtio_mmio){0xffffff00, 0x200, 16};
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.virtio_mmio[0] = (struct acpi_virtio_mmio){0x100000000ULL, 0x200, 16};
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.virtio_mmio[0] = (struct acpi_virtio_mmio){0xfe000000, 0, 16};
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	cfg.virtio_mmio[0] = (struct acpi_virtio_mmio){0xfe000000, 0x200, LAYOUT_IOAPIC_PINS};
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EINVAL);
	for (uint32_t a = 0; a < RAM_SIZE; a++)
		assert_int_equal(mem.regions[0].host[a], RAM_FILL);
	cfg.nvirtio_mmio = 0;
	fake_mem_destroy(&mem);

	/* The area is not RAM. */
	assert_int_equal(fake_mem_init(&mem, LAYOUT_ACPI_START + 0x1000), 0);
	cfg.ncpus = 1;
	assert_int_equal(acpi_build(&mem, &cfg, &rsdp), -EFAULT);
	fake_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_1_cpu),
		cmocka_unit_test(test_4_cpus),
		cmocka_unit_test(test_255_cpus),
		cmocka_unit_test(test_256_cpus),
		cmocka_unit_test(test_1024_cpus),
		cmocka_unit_test(test_iasl_1_cpu),
		cmocka_unit_test(test_iasl_4_cpus),
		cmocka_unit_test(test_iasl_256_cpus),
		cmocka_unit_test(test_iasl_1024_cpus),
		cmocka_unit_test(test_pci_1_cpu),
		cmocka_unit_test(test_pci_256_cpus),
		cmocka_unit_test(test_iasl_pci_1_cpu),
		cmocka_unit_test(test_iasl_pci_1024_cpus),
		cmocka_unit_test(test_mmio_1),
		cmocka_unit_test(test_mmio_max),
		cmocka_unit_test(test_iasl_mmio_1),
		cmocka_unit_test(test_iasl_mmio_max),
		cmocka_unit_test(test_iasl_pci_mmio),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
