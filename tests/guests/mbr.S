/* A boot sector for firmware tests: loaded by the BIOS at 0x7c00 from the first disk, it says so on
 * COM1 and ends the VM through the debug-exit port (PASS, VMM status 33). */
    .code16
    .text
    .global _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov $msg, %si
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, (%dx)
    jmp 1b
2:  mov $0xf4, %dx
    mov $0x10, %al          /* GUEST_EXIT_PASS */
    out %al, (%dx)
3:  hlt
    jmp 3b
msg:
    .asciz "MBR: booted by the BIOS from the first disk\r\n"
    .org 510
    .word 0xaa55

    .section .note.GNU-stack, "", @progbits
