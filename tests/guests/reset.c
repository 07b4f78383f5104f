/* Tier A guest: resets the machine through the i8042 keyboard controller (command 0xfe), the way
 * Linux's reboot=k does; the VMM must restart the guest (or exit, with --no-reboot). */
#include "lib/intr.h"

const char guest_name[] = "reset";

#define I8042_STATUS 0x64
#define I8042_INPUT_FULL 0x02
#define I8042_PULSE_RESET 0xfe

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    kprintf("reset: booting\n");
    for (int i = 0; i < 100000 && (inb(I8042_STATUS) & I8042_INPUT_FULL); i++)
        pause();
    kprintf("reset: pulsing the reset line\n");
    outb(I8042_STATUS, I8042_PULSE_RESET);

    /* As in poweroff.c: wait wall-clock time before calling it a failure. */
    pic_init();
    lapic_init(true);
    pit_start(100);
    pit_wait_ticks(300);
    guest_fail("still running 3 s after the reset command");
}
