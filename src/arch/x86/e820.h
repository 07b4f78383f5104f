/* The e820 memory map the guest sees, derived from the guest RAM layout. */
#ifndef KVMKIT_ARCH_X86_E820_H
#define KVMKIT_ARCH_X86_E820_H

#include <stdint.h>

#include "vmm/memory.h"

#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2
#define E820_TYPE_ACPI     3

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_MAX_ENTRIES 8

/* Fills out[] (capacity E820_MAX_ENTRIES) and returns the number of entries. */
int e820_build(const struct guest_mem *mem, struct e820_entry *out);

#endif
