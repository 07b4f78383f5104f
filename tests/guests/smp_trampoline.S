/* Real-mode AP start-up code for the smp guest; copied below 1 MiB, where a SIPI can point. */

#define TRAMPOLINE_BASE 0x8000     /* SIPI vector 0x08; must match smp.c */

    .section .rodata
    .global smp_trampoline_start, smp_trampoline_end
    .code16
smp_trampoline_start:
    /* An AP starts here in real mode at CS:IP = 0x0800:0000 after INIT + SIPI. */
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl gdtr_copy - smp_trampoline_start      /* ds-relative; the GDT itself is the kernel's */
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(pm32 - smp_trampoline_start + TRAMPOLINE_BASE)

    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    /* No stack and no C: count ourselves in with one locked add, then stay halted. */
    lock incl smp_ap_count
1:  cli
    hlt
    jmp 1b

    .align 4
gdtr_copy:
    .word 23                   /* 3 descriptors: null, code 0x08, data 0x10 (entry.S) */
    .long gdt
smp_trampoline_end:

    /* No executable stack wanted (silences ld's deprecation warning). */
    .section .note.GNU-stack, "", @progbits
