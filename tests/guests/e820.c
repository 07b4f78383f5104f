/* Tier A guest: prints the multiboot memory map and checks that it is sane. */
#include "lib/guest.h"

const char guest_name[] = "e820";

#define MAX_ENTRIES 64

static const char *type_name(uint32_t t)
{
    switch (t) {
    case 1: return "usable";
    case 2: return "reserved";
    case 3: return "ACPI data";
    case 4: return "ACPI NVS";
    case 5: return "bad";
    default: return "other";
    }
}

int guest_main(const struct multiboot_info *mbi)
{
    struct multiboot_mmap_entry map[MAX_ENTRIES];
    int n = 0, bad = 0;

    if (mbi->flags & MULTIBOOT_INFO_MEMORY)
        kprintf("e820: mem_lower %u KiB, mem_upper %u KiB\n", mbi->mem_lower, mbi->mem_upper);
    if (!(mbi->flags & MULTIBOOT_INFO_MMAP))
        guest_fail("multiboot flags 0x%x: no memory map (bit 6)", mbi->flags);
    kprintf("e820: map at 0x%x, %u bytes\n", mbi->mmap_addr, mbi->mmap_length);

    /* Entries are variable-sized: each 'size' says how far the next one is. */
    uint32_t off = 0;
    while (off + 4 <= mbi->mmap_length && n < MAX_ENTRIES) {
        const struct multiboot_mmap_entry *e = (const void *)(uintptr_t)(mbi->mmap_addr + off);
        if (e->size < 20)
            guest_fail("map entry %d has size %u (< 20)", n, e->size);
        memcpy(&map[n], e, sizeof(map[n]));
        kprintf("e820: %016llx-%016llx %016llx %s (%u)\n", map[n].addr, map[n].addr + map[n].len,
                map[n].len, type_name(map[n].type), map[n].type);
        off += e->size + 4;
        n++;
    }

    uint64_t usable = 0;
    bool low = false, high = false;
    for (int i = 0; i < n; i++) {
        uint64_t start = map[i].addr, end = map[i].addr + map[i].len;
        if (map[i].len == 0 || end < start) {
            kprintf("e820: BAD entry %d is empty or wraps around\n", i);
            bad++;
        }
        for (int j = i + 1; j < n; j++)
            if (start < map[j].addr + map[j].len && map[j].addr < end) {
                kprintf("e820: BAD entries %d and %d overlap\n", i, j);
                bad++;
            }
        if (map[i].type != MULTIBOOT_MEMORY_AVAILABLE)
            continue;
        usable += map[i].len;
        low |= start == 0;
        high |= start <= 0x100000 && end > 0x100000 + 0x100000;   /* at least 1 MiB from 1 MiB */
    }
    if (!low) {
        kprintf("e820: BAD no usable RAM at address 0\n");
        bad++;
    }
    if (!high) {
        kprintf("e820: BAD no usable RAM from 1 MiB on\n");
        bad++;
    }
    /* The runner compares this line with the --memory it gave the VMM. */
    kprintf("e820: usable RAM: %llu KiB\n", usable >> 10);
    return bad ? 1 : 0;
}
