/* Tier A probe: does this /dev/kvm run int3 in ring 0? Prints "PROBE: full" if a #BP handler ran. */
#include "lib/intr.h"

const char guest_name[] = "probe";

static volatile bool bp_seen;

static void bp_handler(struct intr_frame *f)
{
    (void)f;
    bp_seen = true;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    intr_set_handler(3, bp_handler);
    kprintf("PROBE: int3 in ring 0\n");
    /* On a /dev/kvm whose ring-0 emulator cannot run int3 the VMM stops here with an internal
     * error, which is exactly what the probe is for: a stock Linux kernel would die the same way. */
    __asm__ volatile("int3" : : : "memory");
    kprintf(bp_seen ? "PROBE: full\n" : "PROBE: int3 returned without the handler\n");
    return bp_seen ? 0 : 1;
}
