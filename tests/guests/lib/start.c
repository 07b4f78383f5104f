/* C entry of every guest: sets up the console and exception handling, runs the test, exits. */
#include "guest.h"
#include "intr.h"

void lib_start(uint32_t magic, const struct multiboot_info *mbi);

void guest_exit(uint8_t value)
{
    outb(PORT_DEBUG_EXIT, value);
    /* Reached only if the VMM has no debug-exit device; the runner's timeout catches that. */
    kprintf("%s: debug-exit port 0x%x did not stop the VM\n", guest_name, PORT_DEBUG_EXIT);
    halt_forever();
}

void guest_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kprintf("%s: FAIL: ", guest_name);
    kvprintf(fmt, ap);
    kprintf("\n");
    va_end(ap);
    guest_exit(GUEST_EXIT_FAIL);
}

void lib_start(uint32_t magic, const struct multiboot_info *mbi)
{
    serial_init();
    idt_init();
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        guest_fail("eax is 0x%x, not the multiboot magic 0x%x", magic, MULTIBOOT_BOOTLOADER_MAGIC);
    int rc = guest_main(mbi);
    kprintf("%s: %s\n", guest_name, rc == 0 ? "PASS" : "FAIL");
    guest_exit(rc == 0 ? GUEST_EXIT_PASS : GUEST_EXIT_FAIL);
}
