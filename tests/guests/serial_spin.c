/* Tier A guest for bench/restore.sh: first writes a word into every page of its RAM above
 * 4 MiB (to the top multiboot reports, 256 MiB with --memory 256M / -m 256), so a saved
 * snapshot holds no zero pages to skip or leave sparse, prints a marker line, then writes a
 * character to COM1 forever, one port-I/O exit each. After a save + restore the first byte
 * the VMM's serial output carries marks the restored guest's first instructions. Never ends:
 * the benchmark kills it. */
#include "lib/guest.h"

const char guest_name[] = "serial_spin";

#define TOUCH_START (4u << 20)     /* above the image, the stack and the multiboot data */
#define PAGE        4096u

int guest_main(const struct multiboot_info *mbi)
{
    if (!(mbi->flags & MULTIBOOT_INFO_MEMORY))
        guest_fail("no mem_upper in the multiboot info");
    uint32_t end = (1u << 20) + mbi->mem_upper * 1024u;
    if (end <= TOUCH_START)
        guest_fail("only %u KiB of RAM above 1 MiB", mbi->mem_upper);
    for (uint32_t a = TOUCH_START; a < end; a += PAGE)
        *(volatile uint32_t *)(uintptr_t)a = a | 0x5a;
    kprintf("serial_spin: touched 0x%x-0x%x (%u MiB), spinning\n", TOUCH_START, end,
            (end - TOUCH_START) >> 20);
    for (uint8_t c = 0;; c = c == 25 ? 0 : c + 1)
        outb(PORT_COM1, (uint8_t)('a' + c));
}
