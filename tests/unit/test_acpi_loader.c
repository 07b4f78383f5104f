/* Unit tests kvmkit's ACPI tables for firmware: the blob and the etc/table-loader script, run
 * by a small loader that does what SeaBIOS's romfile_loader does, give tables whose pointers
 * reach each other at the addresses the "firmware" chose and whose checksums all hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "firmware/acpi_loader.h"
#include "vmm/bus.h"
#include "vmm/device.h"

#define MEM_SIZE (1u << 20)
#define TABLES_AT 0x40000u   /* where this "firmware" puts etc/acpi/tables */
#define RSDP_AT   0xf6700u   /* and etc/acpi/rsdp */

static uint8_t mem[MEM_SIZE];

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Runs the script over `mem` with the two files placed at TABLES_AT and RSDP_AT. */
static void run_loader(const struct fw_cfg *fw)
{
	uint32_t len, tlen, rlen;
	const uint8_t *script = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, ACPI_LOADER_SCRIPT_FILE),
					    &len);
	const uint8_t *tables = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, ACPI_LOADER_TABLES_FILE),
					    &tlen);
	const uint8_t *rsdp = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, ACPI_LOADER_RSDP_FILE),
					  &rlen);
	assert_non_null(script);
	assert_non_null(tables);
	assert_non_null(rsdp);
	assert_int_equal(len % ACPI_LOADER_ENTRY_SIZE, 0);
	assert_int_equal(rlen, 36);
	memcpy(mem + TABLES_AT, tables, tlen);
	memcpy(mem + RSDP_AT, rsdp, rlen);
	unsigned allocs = 0;
	for (uint32_t off = 0; off < len; off += ACPI_LOADER_ENTRY_SIZE) {
		const uint8_t *e = script + off;
		const char *file = (const char *)e + 4;
		uint32_t file_at = strcmp(file, ACPI_LOADER_RSDP_FILE) == 0 ? RSDP_AT : TABLES_AT;
		switch (le32(e)) {
		case ACPI_LOADER_ALLOCATE: {
			uint8_t zone = e[4 + FW_CFG_NAME_SIZE + 4];
			assert_int_equal(zone, file_at == RSDP_AT ? ACPI_LOADER_ZONE_FSEG :
								   ACPI_LOADER_ZONE_HIGH);
			allocs++;
			break;
		}
		case ACPI_LOADER_ADD_POINTER: {
			assert_string_equal((const char *)e + 4 + FW_CFG_NAME_SIZE, ACPI_LOADER_TABLES_FILE);
			uint32_t at = le32(e + 4 + 2 * FW_CFG_NAME_SIZE);
			uint8_t size = e[4 + 2 * FW_CFG_NAME_SIZE + 4];
			assert_true(size == 4 || size == 8);
			uint64_t v = 0;
			memcpy(&v, mem + file_at + at, size);
			v += TABLES_AT;
			memcpy(mem + file_at + at, &v, size);
			break;
		}
		case ACPI_LOADER_ADD_CHECKSUM: {
			uint32_t at = le32(e + 4 + FW_CFG_NAME_SIZE);
			uint32_t start = le32(e + 4 + FW_CFG_NAME_SIZE + 4);
			uint32_t n = le32(e + 4 + FW_CFG_NAME_SIZE + 8);
			mem[file_at + at] = (uint8_t)(mem[file_at + at] - sum(mem + file_at + start, n));
			break;
		}
		default:
			fail_msg("unknown loader command %u", le32(e));
		}
	}
	assert_int_equal(allocs, 2);
}

/* A table at gpa with this signature, its checksum good. */
static const uint8_t *table_at(uint64_t gpa, const char *sig)
{
	assert_true(gpa >= TABLES_AT && gpa < MEM_SIZE - 36);
	const uint8_t *t = mem + gpa;
	assert_memory_equal(t, sig, 4);
	uint32_t len = le32(t + 4);
	assert_true(len >= 36 && gpa + len <= MEM_SIZE);
	assert_int_equal(sum(t, len), 0);
	return t;
}

static void test_tables_linked(void **state)
{
	bool pci = *(bool *)*state;
	struct bus pio = { 0 }, mmio = { 0 };
	struct device_registry reg;
	memset(&reg, 0, sizeof(reg));
	const struct device_ctx ctx = { .pio = &pio, .mmio = &mmio };
	assert_int_equal(device_realize(&reg, &fw_cfg_ops, &ctx, NULL), 0);
	struct fw_cfg *fw = device_find(&reg, &fw_cfg_ops, 0);
	const struct acpi_config cfg = { .ncpus = 3, .pci = pci };
	struct acpi_blob blob;
	assert_int_equal(acpi_build_blob(&cfg, &blob), 0);
	assert_int_equal(acpi_loader_add(fw, &blob), 0);
	acpi_blob_free(&blob);
	memset(mem, 0, sizeof(mem));
	run_loader(fw);

	const uint8_t *r = mem + RSDP_AT;
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(sum(r, 36), 0);
	uint64_t xsdt_gpa;
	memcpy(&xsdt_gpa, r + 24, 8);
	const uint8_t *rsdt = table_at(le32(r + 16), "RSDT");
	const uint8_t *xsdt = table_at(xsdt_gpa, "XSDT");
	unsigned n = (le32(xsdt + 4) - 36) / 8;
	assert_int_equal(n, pci ? 3 : 2);
	assert_int_equal((le32(rsdt + 4) - 36) / 4, n);
	bool fadt = false, madt = false, mcfg = false;
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa;
		memcpy(&gpa, xsdt + 36 + 8 * i, 8);
		assert_int_equal(le32(rsdt + 36 + 4 * i), gpa);
		const uint8_t *t = mem + gpa;
		if (!memcmp(t, "FACP", 4)) {
			table_at(gpa, "FACP");
			uint64_t x_dsdt;
			memcpy(&x_dsdt, t + 140, 8);
			assert_int_equal(le32(t + 40), x_dsdt);
			table_at(x_dsdt, "DSDT");
			assert_memory_equal(mem + le32(t + 36), "FACS", 4);
			fadt = true;
		} else if (!memcmp(t, "APIC", 4)) {
			table_at(gpa, "APIC");
			madt = true;
		} else {
			table_at(gpa, "MCFG");
			mcfg = true;
		}
	}
	assert_true(fadt && madt && mcfg == pci);
	device_registry_destroy(&reg);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

int main(void)
{
	static bool with_pci = true, without_pci = false;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_tables_linked, &with_pci),
		cmocka_unit_test_prestate(test_tables_linked, &without_pci),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
