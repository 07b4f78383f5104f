/* The e820 memory map the guest sees, derived from the guest RAM layout. */
#include "arch/x86/e820.h"

#include "arch/x86/layout.h"

_Static_assert(LAYOUT_PCI_ECAM_BASE >= GUEST_MEM_LOW_LIMIT &&
	       LAYOUT_PCI_ECAM_BASE + LAYOUT_PCI_ECAM_SIZE <= GUEST_MEM_HIGH_START,
	       "the ECAM lies in the hole between low and high RAM, where this map puts it");
_Static_assert(5 + GUEST_MEM_MAX_REGIONS - 1 <= E820_MAX_ENTRIES, "e820 entries");

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
	/* The PCI ECAM: early in boot, before it can read the DSDT, Linux uses the MCFG's region
	 * only if it is reserved here (later the DSDT's PNP0C02 vouches for it). Reserved whether or
	 * not the VM has PCI: it is a fixed part of the address map, and a guest only loses 1 MiB
	 * of address space it would never use as RAM. (Not the BAR window: Linux would then clip
	 * it out of the host bridge's windows.) */
	out[n++] = (struct e820_entry){ LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE,
					E820_TYPE_RESERVED };
	for (int i = 1; i < mem->nregions; i++)
		out[n++] = (struct e820_entry){ mem->regions[i].gpa, mem->regions[i].size,
						E820_TYPE_RAM };
	return n;
}
