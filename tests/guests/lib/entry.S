/* Multiboot v1 header, 32-bit entry point, boot GDT, stack and the 256 interrupt entry stubs. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003      /* bit 0: page-align modules, bit 1: we want mem_* and the mmap */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text
    .code32
    .global _start
_start:
    /* The loader's GDT may be anywhere (multiboot does not promise a usable one), so load ours
     * before touching a segment register. eax/ebx (magic, info pointer) must survive this. */
    cli
    lgdt gdt_ptr
    ljmp $0x08, $1f
1:  mov $0x10, %cx
    mov %cx, %ds
    mov %cx, %es
    mov %cx, %fs
    mov %cx, %gs
    mov %cx, %ss
    mov $stack_top, %esp
    cld

    /* Zero .bss ourselves rather than trust the loader to honour p_memsz. */
    mov %eax, %esi
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov %esi, %eax

    push %ebx                  /* multiboot info */
    push %eax                  /* multiboot magic */
    call lib_start
    jmp halt_loop

    .global halt_loop
halt_loop:
    cli
    hlt
    jmp halt_loop

/* One 16-byte stub per vector pushes (error code or 0, vector) so that isr_common sees one frame
 * layout; the CPU pushes an error code itself only for these exception vectors. */
#define HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

    .align 16
    .global isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    .align 16
    .if !HAS_ERR(vec)
    push $0
    .endif
    push $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:
    pushal
    push %esp                  /* struct intr_frame * */
    call isr_dispatch
    add $4, %esp
    popal
    add $8, %esp               /* vector, error code */
    /* Return without iret: the CI's /dev/kvm emulates ring 0 and fails on a 32-bit iret with an
     * internal error (seen under QEMU -accel kvm). Interrupts and exceptions here never change
     * privilege or stack, so rewrite [eip, cs, eflags] as [eflags, eip] and popfl; ret. */
    push %eax
    push %ecx
    mov 8(%esp), %eax          /* eip */
    mov 16(%esp), %ecx         /* eflags */
    mov %ecx, 12(%esp)
    mov %eax, 16(%esp)
    pop %ecx
    pop %eax
    add $4, %esp               /* now [eflags, eip] */
    popfl
    ret

    .section .rodata
    .align 8
    .global gdt
gdt:
    .quad 0                    /* null */
    .quad 0x00cf9a000000ffff   /* 0x08: flat 32-bit code, ring 0 */
    .quad 0x00cf92000000ffff   /* 0x10: flat 32-bit data, ring 0 */
gdt_end:
    .align 4
    .word 0                    /* pads gdt_ptr's base to a 4-byte boundary */
    .global gdt_ptr
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .bss
    .align 16
stack:
    .skip 16384
stack_top:

    /* No executable stack wanted (silences ld's deprecation warning). */
    .section .note.GNU-stack, "", @progbits
