/* kvmkit's ACPI tables for firmware: fw_cfg files plus the table-loader script SeaBIOS and
 * OVMF run (QEMU's bios-linker-loader): allocate each file, add the allocated address of the
 * tables to every pointer field, recompute every checksum those additions changed. */
#include "firmware/acpi_loader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *loader_entry(uint8_t *script, unsigned *n, uint32_t command)
{
	uint8_t *e = script + (size_t)(*n)++ * ACPI_LOADER_ENTRY_SIZE;
	memset(e, 0, ACPI_LOADER_ENTRY_SIZE);
	for (unsigned i = 0; i < 4; i++)
		e[i] = (uint8_t)(command >> (8 * i));
	return e;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_name(uint8_t *p, const char *name)
{
	strncpy((char *)p, name, FW_CFG_NAME_SIZE - 1);
}

static void loader_allocate(uint8_t *script, unsigned *n, const char *file, uint32_t align,
			    uint8_t zone)
{
	uint8_t *e = loader_entry(script, n, ACPI_LOADER_ALLOCATE);
	put_name(e + 4, file);
	put_le32(e + 4 + FW_CFG_NAME_SIZE, align);
	e[4 + FW_CFG_NAME_SIZE + 4] = zone;
}

int acpi_loader_add(struct fw_cfg *fw, const struct acpi_blob *blob)
{
	if (!blob->tables || !blob->tables_len)
		return -EINVAL;
	/* Two allocations, then one entry per pointer and per checksum. */
	unsigned max = 2 + blob->npointers + blob->nchecksums, n = 0;
	uint8_t *script = calloc(max, ACPI_LOADER_ENTRY_SIZE);
	if (!script)
		return -ENOMEM;
	/* The tables anywhere in 32-bit RAM (the RSDT holds 32-bit pointers); the RSDP in the
	 * F segment, on the 16-byte boundary the ACPI spec's search needs. */
	loader_allocate(script, &n, ACPI_LOADER_TABLES_FILE, 64, ACPI_LOADER_ZONE_HIGH);
	loader_allocate(script, &n, ACPI_LOADER_RSDP_FILE, 16, ACPI_LOADER_ZONE_FSEG);
	for (unsigned i = 0; i < blob->npointers; i++) {
		const struct acpi_blob_pointer *p = &blob->pointers[i];
		uint8_t *e = loader_entry(script, &n, ACPI_LOADER_ADD_POINTER);
		put_name(e + 4, p->in_rsdp ? ACPI_LOADER_RSDP_FILE : ACPI_LOADER_TABLES_FILE);
		put_name(e + 4 + FW_CFG_NAME_SIZE, ACPI_LOADER_TABLES_FILE);
		put_le32(e + 4 + 2 * FW_CFG_NAME_SIZE, p->offset);
		e[4 + 2 * FW_CFG_NAME_SIZE + 4] = p->size;
	}
	for (unsigned i = 0; i < blob->nchecksums; i++) {
		const struct acpi_blob_checksum *c = &blob->checksums[i];
		uint8_t *e = loader_entry(script, &n, ACPI_LOADER_ADD_CHECKSUM);
		put_name(e + 4, c->in_rsdp ? ACPI_LOADER_RSDP_FILE : ACPI_LOADER_TABLES_FILE);
		put_le32(e + 4 + FW_CFG_NAME_SIZE, c->at);
		put_le32(e + 4 + FW_CFG_NAME_SIZE + 4, c->start);
		put_le32(e + 4 + FW_CFG_NAME_SIZE + 8, c->length);
	}
	int r = fw_cfg_add_file(fw, ACPI_LOADER_TABLES_FILE, blob->tables, blob->tables_len);
	if (r == 0)
		r = fw_cfg_add_file(fw, ACPI_LOADER_RSDP_FILE, blob->rsdp, sizeof(blob->rsdp));
	if (r == 0)
		r = fw_cfg_add_file(fw, ACPI_LOADER_SCRIPT_FILE, script,
				    (size_t)n * ACPI_LOADER_ENTRY_SIZE);
	free(script);
	return r;
}
