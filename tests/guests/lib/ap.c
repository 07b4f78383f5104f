/* Starting the first application processor (AP) into C: a real-mode trampoline at 0x8000. */
#include "acpi.h"
#include "ap.h"
#include "intr.h"

#define TRAMPOLINE_BASE 0x8000u          /* SIPI vector 0x08; free in kvmkit's and QEMU's layout */
#define ICR_INIT        0x00004500u      /* INIT, level assert */
#define ICR_SIPI        0x00004600u      /* start-up; low byte = vector (page number) */

void (*volatile ap_entry)(void);
volatile uint32_t ap_running;
uint8_t ap_stack[4096] __attribute__((aligned(16)));
void ap_main_c(void);

/* Runs on the AP: says it runs, then the guest's function. */
void ap_main_c(void)
{
    ap_running = 1;
    ap_entry();
}

/* The AP's real-mode start: protected mode with the kernel's GDT, a stack, then ap_main_c. */
__asm__(
    "    .section .rodata\n"
    "    .code16\n"
    "ap_trampoline_start:\n"
    "    cli\n"
    "    mov %cs, %ax\n"
    "    mov %ax, %ds\n"
    "    lgdtl ap_gdtr - ap_trampoline_start\n"
    "    mov %cr0, %eax\n"
    "    or $1, %eax\n"
    "    mov %eax, %cr0\n"
    "    ljmpl $0x08, $(ap_pm32 - ap_trampoline_start + 0x8000)\n"
    "    .code32\n"
    "ap_pm32:\n"
    "    mov $0x10, %ax\n"
    "    mov %ax, %ds\n"
    "    mov %ax, %es\n"
    "    mov %ax, %ss\n"
    "    mov $(ap_stack + 4096), %esp\n"
    "    mov $ap_main_c, %eax\n"
    "    call *%eax\n"
    "1:  cli\n"
    "    hlt\n"
    "    jmp 1b\n"
    "    .align 4\n"
    "ap_gdtr:\n"
    "    .word 23\n"                 /* 3 descriptors: null, code 0x08, data 0x10 (entry.S) */
    "    .long gdt\n"
    "ap_trampoline_end:\n"
    "    .text\n");
extern const char ap_trampoline_start[], ap_trampoline_end[];

bool ap_start(void (*fn)(void))
{
    uint32_t ids[8];
    int n = acpi_madt_cpus(ids, 8);
    uint8_t bsp = lapic_id();
    for (int i = 0; i < n; i++) {
        if (ids[i] == bsp || ids[i] > 0xff)
            continue;
        ap_entry = fn;
        memcpy((void *)TRAMPOLINE_BASE, ap_trampoline_start,
               (size_t)(ap_trampoline_end - ap_trampoline_start));
        lapic_send_ipi((uint8_t)ids[i], ICR_INIT);
        pit_wait_ticks(2);
        for (int sipi = 0; sipi < 2 && !ap_running; sipi++) {
            lapic_send_ipi((uint8_t)ids[i], ICR_SIPI | (TRAMPOLINE_BASE >> 12));
            for (uint32_t t = pit_ticks; !ap_running && pit_ticks - t < 20;)
                pit_wait_ticks(1);
        }
        return ap_running;
    }
    return false;
}
