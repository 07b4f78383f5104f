/* The e820 memory map the guest sees, derived from the guest RAM layout. */
#include "arch/x86/e820.h"

#include "arch/x86/layout.h"

int e820_build(const struct guest_mem *mem, struct e820_entry *out)
{
	int n = 0;
	uint64_t low = guest_mem_low_size(mem);

	/* Conventional memory up to the EBDA, then the legacy BIOS hole, where the ACPI tables
	 * live: reserved, as on a PC, so the guest never allocates over the tables. */
	out[n++] = (struct e820_entry){ 0, LAYOUT_EBDA_START, E820_TYPE_RAM };
	out[n++] = (struct e820_entry){ LAYOUT_EBDA_START, 0xa0000 - LAYOUT_EBDA_START,
					E820_TYPE_RESERVED };
	out[n++] = (struct e820_entry){ LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START,
					E820_TYPE_RESERVED };
	if (low > LAYOUT_KERNEL)
		out[n++] = (struct e820_entry){ LAYOUT_KERNEL, low - LAYOUT_KERNEL, E820_TYPE_RAM };
	for (int i = 1; i < mem->nregions; i++)
		out[n++] = (struct e820_entry){ mem->regions[i].gpa, mem->regions[i].size,
						E820_TYPE_RAM };
	return n;
}
