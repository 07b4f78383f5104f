/* The realmode guest's 16-bit side: the switch to real mode and back, IVT stubs, the tests. */

/* Everything between rm_blob_start and rm_blob_end is copied to RM_BASE and runs there as
 * RM_SEG:offset, so absolute references inside it are written R(label); relative jumps and
 * calls need nothing. The layout constants must match realmode.c. */
#define RM_SEG      0x1000
#define RM_BASE     0x10000
#define STACK_SEG   0x2000
#define STACK_TOP   0xfff0          /* a test starts with SP = STACK_TOP - 2 (the harness's call) */
#define DATA_SEG    0x3000          /* ES at a test's start: the scratch area realmode.c checks */
#define IVT_BASE    0x18000         /* RM_BASE + 0x8000: the IVT the harness loads with lidt */
#define ALT_IVT     0x18400         /* a second IVT, for the lidt test */
#define HIGH_ADDR   0x400000        /* above 1 MiB: reached in unreal mode only */
#define MB_MAGIC    0x1BADB002      /* the first dword of the image at 1 MiB (lib/entry.S) */

#define SEL_CODE32  0x08
#define SEL_DATA32  0x10
#define SEL_CODE16  0x18
#define SEL_DATA16  0x20
#define SEL_BIG     0x28

#define R(x) x - rm_blob_start

/* Offsets in rm_in / rm_out (struct rm_regs in realmode.c). */
#define O_EAX 0
#define O_EBX 4
#define O_ECX 8
#define O_EDX 12
#define O_ESI 16
#define O_EDI 20
#define O_EBP 24
#define O_ESP 28
#define O_EFL 32
#define O_DS  36
#define O_ES  38
#define O_FS  40
#define O_GS  42
#define O_SS  44

/* ---------------------------------------------------------------------------------------------
 * Protected-mode side (linked at 1 MiB like the rest of the guest).
 * void realmode_call(void): runs the test whose offset is in rm_test_ip, inputs in rm_in,
 * outputs in rm_out (all inside the copied blob). */
    .section .text
    .code32
    .global realmode_call
realmode_call:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov %esp, rm_pm_esp
    sidt rm_pm_idtr
    lgdt RM_BASE + R(rm_gdtr)
    ljmp $SEL_CODE16, $R(rm_from_pm)

rm_back32:
    mov $SEL_DATA32, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov rm_pm_esp, %esp
    lgdt gdt_ptr                    /* the library's GDT again (same 0x08/0x10 layout) */
    ljmp $SEL_CODE32, $1f
1:  lidt rm_pm_idtr
    pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

    .section .data
    .align 4
rm_pm_esp:
    .long 0
rm_pm_idtr:
    .word 0
    .long 0

/* ---------------------------------------------------------------------------------------------
 * The blob: copied to RM_BASE by realmode.c. */
    .section .data.realmode, "aw"
    .balign 16
    .global rm_blob_start, rm_blob_end
rm_blob_start:
    .code16

/* Reached from realmode_call in 16-bit protected mode (CS base RM_BASE): load 64 KiB data
 * segments so that real mode starts with real-mode limits, then clear PE. */
rm_from_pm:
    mov $SEL_DATA16, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov %cr0, %eax
    and $0xfffffffe, %eax
    mov %eax, %cr0
    ljmp $RM_SEG, $R(rm_real)

rm_real:
    mov $STACK_SEG, %ax
    mov %ax, %ss
    mov $STACK_TOP, %sp
    mov $RM_SEG, %ax
    mov %ax, %ds
    lidtw R(rm_idtr)
    mov $DATA_SEG, %ax
    mov %ax, %es
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    pushl R(rm_in) + O_EFL
    mov R(rm_in) + O_EAX, %eax
    mov R(rm_in) + O_EBX, %ebx
    mov R(rm_in) + O_ECX, %ecx
    mov R(rm_in) + O_EDX, %edx
    mov R(rm_in) + O_ESI, %esi
    mov R(rm_in) + O_EDI, %edi
    mov R(rm_in) + O_EBP, %ebp
    popfl
    call *R(rm_test_ip)

/* The test returned (or rm_unexpected jumped here): save what it left, DS and EAX first. */
rm_after:
    pushfl
    push %ds
    push %eax
    mov $RM_SEG, %ax
    mov %ax, %ds
    popl R(rm_out) + O_EAX
    popw R(rm_out) + O_DS
    popl R(rm_out) + O_EFL
    mov %ebx, R(rm_out) + O_EBX
    mov %ecx, R(rm_out) + O_ECX
    mov %edx, R(rm_out) + O_EDX
    mov %esi, R(rm_out) + O_ESI
    mov %edi, R(rm_out) + O_EDI
    mov %ebp, R(rm_out) + O_EBP
    mov %esp, R(rm_out) + O_ESP
    mov %es, R(rm_out) + O_ES
    mov %fs, R(rm_out) + O_FS
    mov %gs, R(rm_out) + O_GS
    mov %ss, R(rm_out) + O_SS
    cli
    cld
    lgdtl R(rm_gdtr)                /* a test may have loaded another GDT */
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $rm_back32

/* An interrupt or exception nobody expected: the stub pushed its vector. Record it with the
 * interrupted CS:IP and end the test as if it had returned. */
rm_unexpected:
    mov %sp, %bp
    mov (%bp), %ax
    mov 2(%bp), %bx
    mov 4(%bp), %cx
    mov $RM_SEG, %dx
    mov %dx, %ds
    mov %ax, R(rm_unexp_vec)
    mov %bx, R(rm_unexp_ip)
    mov %cx, R(rm_unexp_cs)
    mov $STACK_SEG, %ax
    mov %ax, %ss
    mov $STACK_TOP - 2, %sp
    jmp rm_after

/* One 8-byte stub per vector; realmode.c points every IVT entry at its stub, then the
 * vectors a test expects at that test's handler. */
    .balign 8
    .global rm_stubs
rm_stubs:
    .set vec, 0
    .rept 256
    .balign 8
    pushw $vec
    jmp rm_unexpected
    .set vec, vec + 1
    .endr

/* --- handlers (all end with a 16-bit iret) ------------------------------------------------ */
/* Counts one event in the byte at R(\cnt) without assuming DS. */
.macro COUNT cnt
    push %ds
    pushw $RM_SEG
    pop %ds
    incb R(\cnt)
    pop %ds
.endm

/* #DE: records the pushed CS:IP and FLAGS (those of the faulting div), then makes the divisor
 * (BX) 0x0102 so that the restarted div succeeds. */
    .global h_de
h_de:
    push %bp
    mov %sp, %bp
    push %ds
    push %ax
    pushw $RM_SEG
    pop %ds
    incb R(rm_cnt_de)
    mov 2(%bp), %ax
    mov %ax, R(rm_de_ip)
    mov 4(%bp), %ax
    mov %ax, R(rm_de_cs)
    mov 6(%bp), %ax
    mov %ax, R(rm_de_flags)
    pop %ax
    pop %ds
    pop %bp
    mov $0x0102, %bx
    iret

/* int $0x40: AX += 0x1111, DX = the flags inside the handler, SI:DI = the pushed IP and CS,
 * and CF set in the flags iret restores. */
    .global h_int40
h_int40:
    push %bp
    mov %sp, %bp
    pushf
    pop %dx
    add $0x1111, %ax
    mov 2(%bp), %si
    mov 4(%bp), %di
    orw $1, 6(%bp)
    pop %bp
    iret

    .global h_bp, h_of, h_ud
h_bp:                               /* int3: a trap, the pushed IP is past it */
    COUNT rm_cnt_bp
    iret
h_of:                               /* into with OF=1 */
    COUNT rm_cnt_of
    iret
h_ud:                               /* ud2 faults: skip its two bytes */
    COUNT rm_cnt_ud
    push %bp
    mov %sp, %bp
    addw $2, 2(%bp)
    pop %bp
    iret

    .global h_irq0
h_irq0:                             /* PIT IRQ 0 through the 8259 at vector 8 (the BIOS's base) */
    COUNT rm_cnt_irq
    push %ax
    push %ds
    pushw $RM_SEG
    pop %ds
    cmpb $3, R(rm_cnt_irq)
    jb 1f
    mov $0xff, %al                  /* the third: mask IRQ 0, so that ticks that piled up while */
    out %al, $0x21                  /* the (slow, nested) guest ran cannot make a fourth */
1:  mov $0x20, %al
    out %al, $0x20                  /* non-specific EOI */
    pop %ds
    pop %ax
    iret

/* t_rtc_irq8's two interrupts: the RTC on IRQ 8 (vector 0x70, the BIOS's) and the PIT on IRQ 0
 * moved to vector 0x50, counting a timeout. */
    .global h_rtc, h_tick
h_rtc:
    COUNT rm_cnt_rtc
    push %ax
    mov $0x0c, %al
    out %al, $0x70
    in $0x71, %al                   /* reading register C acknowledges the RTC's interrupt */
    push %ds
    pushw $RM_SEG
    pop %ds
    cmpb $3, R(rm_cnt_rtc)
    jb 1f
    mov $0xff, %al
    out %al, $0xa1                  /* the third: IRQ 8 masked (see h_irq0) */
1:  mov $0x20, %al
    out %al, $0xa0
    out %al, $0x20
    pop %ds
    pop %ax
    iret
h_tick:
    push %ds
    pushw $RM_SEG
    pop %ds
    incw R(rm_ticks)
    pop %ds
    push %ax
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret

    .global h_main41, h_alt41
h_main41:                           /* vector 0x41 in the harness's IVT */
    mov $0x0041, %bx
    iret
h_alt41:                            /* vector 0x41 in the IVT at ALT_IVT */
    mov $0xa141, %dx
    iret

/* --- far call / jump targets --------------------------------------------------------------- */
f_target:                           /* AX = the CS it was called with */
    mov %cs, %ax
    lret
f_target2:                          /* AX = the word pushed before the far call; lret pops it */
    mov %sp, %bp
    mov 4(%bp), %ax
    lret $4
f_jmp1:
    mov %cs, %cx
    ljmp $RM_SEG, $R(f_back1)
f_jmp2:
    mov %cs, %dx
    ljmp $RM_SEG, $R(f_back2)
n_ret2:                             /* near ret with an immediate */
    ret $2

/* --- the tests: entered by a near call with DS = RM_SEG, ES = DATA_SEG, FS = GS = 0,
 * SS:SP = STACK_SEG:STACK_TOP-2, registers from rm_in; each returns with a near ret on a
 * balanced stack. realmode.c lists each one's expected results. ------------------------------ */
    .global t_mov
t_mov:
    mov $0x12345678, %eax
    mov $0xab, %ah
    mov %ax, %bx
    movl $0xdeadbeef, %es:0x10
    mov %es:0x10, %ecx
    mov %es:0x12, %dx
    mov $DATA_SEG, %si
    mov %si, %fs
    mov %fs:0x10, %edi
    mov %fs, %si
    movb $0x7e, %es:0x14
    movsbl %es:0x14, %ebp
    ret

    .global t_xchg
t_xchg:
    mov $0x1111, %ax
    mov $0x2222, %bx
    xchg %ax, %bx
    xchg %eax, %ecx
    movw $0xbeef, %es:0x30
    xchg %dx, %es:0x30
    mov %es:0x30, %si
    xchg %dl, %dh
    ret

    .global t_push_pop
t_push_pop:
    mov %sp, %bp
    pushw $0x1234
    pushl $0x89abcdef
    push %es
    pop %ds
    popl %ecx
    pop %dx
    push %ds
    pop %fs
    movw $0x7777, %es:0x40
    pushw %es:0x40
    popw %es:0x42
    mov %es:0x42, %ax
    pushaw
    mov $0, %ax
    mov $0, %si
    popaw
    pushal
    xor %edi, %edi
    popal
    push %ss
    pop %bx
    mov %sp, %di
    sub %bp, %di                    /* 0: the stack is balanced */
    ret

/* A 16-bit stack (SS.B = 0) uses SP alone: ESP's high half stays, SP wraps from 0 to 0xfffe. */
    .global t_stack16
t_stack16:
    mov %esp, %edi
    or $0x12340000, %esp
    pushw $0x5678
    pop %bp
    mov %esp, %eax
    mov %edi, %esp
    mov %sp, %si
    xor %sp, %sp
    pushw $0xabcd
    mov %sp, %bx
    pop %dx
    mov %si, %sp
    mov %ss:0xfffe, %cx
    xor %edi, %edi
    ret

    .global t_add
t_add:
    mov $0xffffffff, %esi
    add $2, %esi
    adc $0x10000000, %edi
    pushf
    pop %bp
    mov $0xffff, %ax
    add $1, %ax
    pushf
    pop %bx
    adc $0x7fff, %ax
    pushf
    pop %cx
    sub $1, %ax
    pushf
    pop %dx
    stc
    sbb $0x7fff, %ax
    ret

    .global t_inc_neg
t_inc_neg:
    incl %edi
    stc
    mov $0x7fff, %ax
    inc %ax
    pushf
    pop %bx
    dec %ax
    pushf
    pop %cx
    neg %ax
    pushf
    pop %dx
    xor %si, %si
    neg %si
    ret

    .global t_mul
t_mul:
    mov $0x1234, %ax
    mov $0x100, %bx
    mul %bx
    pushf
    pop %cx
    and $0x801, %cx
    mov $-3, %si
    imul $7, %si, %di
    mov $0x10000, %ebp
    imul %ebp, %ebp
    ret

    .global t_div
t_div:
    xor %dx, %dx
    mov $1000, %ax
    mov $7, %bx
    div %bx
    mov %ax, %si
    mov %dx, %di
    mov $-1000, %ax
    cwd
    idiv %bx
    mov %ax, %bp
    mov %dx, %cx
    mov $100, %ax
    mov $7, %bl
    div %bl
    mov %ax, %es:0x80
    mov $-100, %eax
    cdq
    mov $7, %ebx
    idiv %ebx
    ret

    .global t_div0, t_div0_insn
t_div0:
    xor %dx, %dx
    mov $0x1234, %ax
    xor %bx, %bx
t_div0_insn:
    div %bx
    movzbw R(rm_cnt_de), %si
    mov R(rm_de_ip), %di
    sub $R(t_div0_insn), %di        /* 0: the pushed IP is the div itself (a fault) */
    mov R(rm_de_cs), %bp
    mov R(rm_de_flags), %cx
    ret

    .global t_div_overflow
t_div_overflow:
    mov $0x10, %dx
    xor %ax, %ax
    mov $1, %bx
    div %bx                         /* quotient 0x100000 does not fit: #DE, BX becomes 0x102 */
    mov %ax, %es:0x80
    mov %dx, %es:0x82
    mov $0xff80, %ax
    mov $0xff, %bl
    idiv %bl                        /* -128 / -1 = 128 does not fit: #DE, BL becomes 2 */
    movzbw R(rm_cnt_de), %si
    ret

    .global t_shift
t_shift:
    mov $0x8421, %ax
    shl $1, %ax
    mov %ax, %es:0x80
    mov $0x8421, %bx
    sar $4, %bx
    mov $0x21, %cl                  /* counts are taken mod 32: a shift by one */
    mov $0x8421, %bp
    shr %cl, %bp
    mov %bp, %cx
    mov $0x8421, %dx
    rol $4, %dx
    mov %dx, %es:0x82
    mov $0x8421, %si
    ror $4, %si
    stc
    mov $0x8421, %di
    rcl $1, %di
    clc
    rcr $1, %di
    mov $0xbe, %eax
    mov $0xef000000, %edx
    shld $8, %edx, %eax
    shrd $4, %eax, %edx
    mov $0x77777777, %ebp
    ret

    .global t_string
t_string:
    push %es
    pop %ds
    cld
    xor %si, %si
    mov $0x40, %di
    mov $16, %cx
    rep movsb
    mov $0xa5a5, %ax
    mov $0x60, %di
    mov $4, %cx
    rep stosw
    std
    mov $0x7f, %di
    mov $0x5a, %al
    mov $8, %cx
    rep stosb
    cld
    xor %si, %si
    mov $0x40, %di
    mov $16, %cx
    repe cmpsb
    mov %cx, 0xc0
    mov %si, 0xc2
    mov $0x70, %di
    mov $0x10, %cx
    mov $0x5a, %al
    repne scasb
    mov %cx, 0xa0
    mov %di, 0xa2
    std
    mov $0x4e, %si
    mov $0xbe, %di
    mov $8, %cx
    rep movsw
    mov %si, 0xc4
    mov %di, 0xc6
    cld
    mov $0x60, %si
    lodsl
    mov $0x40, %esi
    mov $0x90, %edi
    mov $4, %ecx
    addr32 rep movsb
    ret

    .global t_lea_lds
t_lea_lds:
    mov $0x10, %bx
    mov $0x20, %si
    lea 0x1234(%bx,%si), %ax
    lea -2(%bp,%di), %dx
    lea 0x10(%ebx,%esi,4), %ecx
    movw $0xbeef, %es:0xc0
    movw $0x1234, %es:0xc2
    lds %es:0xc0, %si
    les %es:0xc0, %di
    lfs %cs:R(rm_farptr), %bp
    lgs %cs:R(rm_farptr), %bx
    ret

    .global t_far
t_far:
    lcall $RM_SEG + 0x10, $R(f_target) - 0x100
    mov %ax, %si
    movw $R(f_target), %es:0xd0
    movw $RM_SEG, %es:0xd2
    lcall *%es:0xd0
    mov %ax, %di
    pushw $0x1111
    pushw $0x2222
    lcall $RM_SEG, $R(f_target2)
    pushw $0x3333
    call n_ret2
    mov %sp, %bx
    ljmp $RM_SEG + 0x20, $R(f_jmp1) - 0x200
f_back1:
    movw $R(f_jmp2) + 0x100, %es:0xd4
    movw $RM_SEG - 0x10, %es:0xd6
    ljmp *%es:0xd4
f_back2:
    ret

    .global t_loop
t_loop:
    xor %ax, %ax
    mov $5, %cx
1:  add $3, %ax
    loop 1b
    mov %ax, %si
    mov $10, %cx
    xor %bx, %bx
2:  inc %bx
    cmp $4, %bx
    loopne 2b
    mov %cx, %di
    xor %cx, %cx
    xor %dx, %dx
    jcxz 3f
    mov $1, %dx
3:  mov $0x10000, %ecx
    jecxz 4f
    or $2, %dx
4:  jcxz 5f
    or $4, %dx
5:  mov $0x10001, %ecx
    xor %bp, %bp
6:  inc %bp
    cmp $3, %bp
    je 7f
    addr32 loop 6b
7:  ret

    .global t_int, t_int_after
t_int:
    mov $0x1234, %ax
    sti
    int $0x40
t_int_after:
    pushf
    pop %bx
    cli
    sub $R(t_int_after), %si        /* 0: the pushed IP is the next instruction */
    int3
    mov $0x7f, %cl
    add $1, %cl
    into
    clc
    into                            /* clc leaves OF set: a second #OF */
    mov $0, %cl
    add $1, %cl
    into                            /* OF=0: nothing */
    ud2
    mov R(rm_cnt_bp), %cl
    mov R(rm_cnt_of), %ch
    movzbw R(rm_cnt_ud), %bp
    ret

    .global t_flags
t_flags:
    pushw $0x7cd5
    popf
    pushf
    pop %ax
    pushw $0
    popf
    pushf
    pop %bx
    pushl $0x00240cd5
    popfl
    pushfl
    popl %ecx
    pushl $0x00030000               /* VM and RF: popf sets neither */
    popfl
    pushfl
    popl %edx
    mov $0xd5, %ah
    sahf
    mov $0, %ah
    lahf
    mov %ah, %es:0x80
    ret

    .global t_cli_sti
t_cli_sti:
    sti
    pushf
    pop %ax
    cli
    pushf
    pop %bx
    sti
    nop
    cli
    pushfl
    popl %ecx
    ret

    .global t_io
t_io:
    mov $0xa5, %al
    out %al, $0xe0
    xor %al, %al
    in $0xe0, %al
    mov %al, %es:0x80
    mov $0xe0, %dx
    mov $0xdeadbeef, %eax
    out %eax, %dx
    xor %eax, %eax
    in %dx, %eax
    mov %eax, %ebp
    in $0xe2, %al
    mov %al, %es:0x81
    mov $0x1234, %ax
    out %ax, $0xe2
    in $0xe0, %eax
    mov %eax, %es:0x90
    mov $0xe0, %dx
    mov $0x84, %di
    mov $2, %cx
    rep insw                        /* es:0x84 = two copies of the low word */
    movl $0x5a6b7c8d, %es:0x88
    push %es
    pop %ds
    mov $0x88, %si
    mov $4, %cx
    rep outsb                       /* the last byte written stays: 0x5a in lane 0 */
    in %dx, %eax
    mov %eax, %ebx
    ret

    .global t_prefix
t_prefix:
    movl $0x12345678, %eax
    addl $0x11111111, %eax
    bswap %eax
    mov $0x80, %bl
    movsbl %bl, %ecx
    movzbl %bl, %edx
    mov $4, %ebx
    mov $0x10, %esi
    movl $0xcafef00d, %es:0x20(%esi,%ebx,4)
    mov %es:0x40, %edi
    mov $0x100, %ebp
    movw $0x4242, (%ebp)            /* EBP as base: SS, not DS */
    mov %ss:0x100, %bp
    ret

    .global t_segovr
t_segovr:
    mov $0x100, %bp
    movw $0x1357, %ss:0x100
    mov (%bp), %ax                  /* BP as base: SS */
    mov $0x100, %bx
    movw $0x2468, %es:0x100
    mov %es:(%bx), %cx
    push %es
    pop %ds
    mov (%bx), %dx
    mov %cs:R(rm_const), %si
    mov %ss:(%bx), %di
    mov $2, %bx
    mov %es:0xfffe(%bx), %bp        /* 16-bit effective addresses wrap at 64 KiB */
    ret

    .global t_misc
t_misc:
    mov $0x80, %al
    cbw
    cwd
    mov %dx, %es:0x110
    cwde
    cdq
    mov %eax, %es:0x114
    mov %edx, %es:0x118
    push %es
    pop %ds
    xor %bx, %bx
    mov $5, %al
    xlat
    mov %al, 0x11c
    mov $63, %ax
    aam
    mov %ax, 0x120
    aad
    mov %ax, 0x122
    mov $0x19, %al
    add $0x28, %al
    daa
    mov %al, 0x124
    sub $0x28, %al
    das
    mov %al, 0x125
    mov $0xf0, %cx
    bsf %cx, %si
    bsr %cx, %di
    bts $0, %cx
    setc %bl
    bt $4, %cx
    setc %bh
    movw $5, 0x126
    mov $5, %ax
    mov $9, %dx
    cmpxchg %dx, 0x126
    setz %dl
    mov $3, %bp
    xadd %bp, 0x126
    mov %sp, %ax
    enter $8, $0
    sub %sp, %ax                    /* 10: BP pushed and 8 bytes */
    leave
    mov %ax, 0x128
    ret

    .global t_cr0
t_cr0:
    smsw %ax
    mov %cr0, %ebx
    mov %ebx, %edx
    or $8, %edx
    mov %edx, %cr0                  /* CR0.TS set and cleared from real mode */
    smsw %cx
    clts
    smsw %dx
    smsw %si
    or $1, %si
    lmsw %si                        /* lmsw can set PE (never clear it): protected mode */
    jmp 1f
1:  smsw %si
    mov %cr0, %edi
    and $0xfffffffe, %edi
    mov %edi, %cr0                  /* and back */
    jmp 2f
2:  and $0x19, %si
    smsw %di
    and $0x19, %edi                 /* EDI held CR0: its high half is the firmware's */
    and $0x19, %ax
    and $0x19, %ebx
    and $0x19, %cx
    and $0x19, %edx                 /* CR0's high half is the firmware's: left out */
    ret

/* The CPUID bits firmware relies on (leaf 1 EDX) and the vendor (leaf 0 EBX, EDX, ECX). */
    .global t_cpuid
t_cpuid:
    xor %eax, %eax
    cpuid
    mov %ebx, %es:0x80
    mov %edx, %es:0x84
    mov %ecx, %es:0x88
    mov $1, %eax
    cpuid
    and $0x0701b371, %edx           /* FPU TSC MSR PAE CX8 APIC MTRR PGE CMOV PAT FXSR SSE SSE2 */
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    ret

    .global t_fpu
t_fpu:
    fninit
    fnstsw %es:0x80
    fnstcw %es:0x82
    fld1
    fld1
    faddp
    fistps %es:0x84
    fninit
    ret

/* Big real mode as SeaBIOS uses it: ES, FS and GS get 4 GiB limits on a trip to protected
 * mode and are reloaded with 0 back in real mode, which keeps the limits. Clobbers EAX, BX. */
enter_unreal:
    cli
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0                  /* protected mode, CS still the real-mode one */
    jmp 1f
1:  mov $SEL_BIG, %bx
    mov %bx, %es
    mov %bx, %fs
    mov %bx, %gs
    and $0xfffffffe, %eax
    mov %eax, %cr0
    jmp 2f
2:  xor %bx, %bx
    mov %bx, %es
    mov %bx, %fs
    mov %bx, %gs
    ret

    .global t_unreal
t_unreal:
    call enter_unreal
    mov $HIGH_ADDR, %esi
    movl $0x5a5aa5a5, %fs:(%esi)
    movl $0x01234567, %gs:4(%esi)
    mov $HIGH_ADDR + 0x10, %edi
    mov $8, %ecx
    rep movsb %fs:(%esi), %es:(%edi)
    addr32 mov %fs:HIGH_ADDR, %ecx
    addr32 mov %gs:HIGH_ADDR + 0x14, %edx
    addr32 mov %fs:0x100000, %eax   /* the guest image itself: the multiboot header */
    mov $DATA_SEG, %bx
    mov %bx, %es
    ret

/* MMIO from big real mode (pc-testdev's scratch memory at 4 GiB - 16 MiB): KVM's emulator runs
 * these instructions and the VMM serves each access: partial writes, a read-modify-write, xchg,
 * rep stos into MMIO and rep movs out of it. */
#define TESTDEV_MMIO 0xff000000
    .global t_mmio
t_mmio:
    call enter_unreal
    mov $TESTDEV_MMIO, %esi
    movl $0x11223344, %fs:(%esi)
    movw $0xaabb, %fs:2(%esi)
    movb $0xcc, %fs:(%esi)
    mov %fs:(%esi), %eax
    movl $0x7fffffff, %fs:4(%esi)
    addl $1, %fs:4(%esi)
    pushfl
    popl %edx
    mov $0x5a5a5a5a, %ebx
    movl $0x01020304, %fs:8(%esi)
    xchg %ebx, %fs:8(%esi)
    movl $0, %fs:12(%esi)
    push %eax
    mov $0xbeef, %ax
    mov $TESTDEV_MMIO + 0x10, %edi
    mov $4, %ecx
    rep stosw %ax, %es:(%edi)
    mov $0x30180, %edi              /* the scratch area, DATA_SEG:0x180 */
    mov $6, %ecx
    rep movsl %fs:(%esi), %es:(%edi)
    pop %eax
    addr32 movzbl %fs:TESTDEV_MMIO + 3, %ecx
    ret

    .global t_lgdt_lidt
t_lgdt_lidt:
    /* Stored with a 32-bit operand: a 16-bit sgdt/sidt may drop the base's top byte (TCG
     * does), a 32-bit one stores all of it. */
    sidtl %es:0x80
    lidtw R(rm_alt_idtr)
    int $0x41
    sidtl %es:0x88
    lidtw R(rm_idtr)
    int $0x41
    lgdtw R(rm_odd_gdtr)            /* 16-bit operand size: only 24 bits of the base */
    sgdtl %es:0x90
    lgdtl R(rm_odd_gdtr)
    sgdtl %es:0x98
    lgdtl R(rm_gdtr)
    ret

    .global t_a20_wrap
t_a20_wrap:
    mov $0xffff, %ax
    mov %ax, %fs
    mov %fs:0x10, %ecx              /* FFFF:0010 = 1 MiB: the image's header, not the IVT */
    xor %ax, %ax
    mov %ax, %fs
    ret

    .global t_a20_port92
t_a20_port92:
    in $0x92, %al
    mov %al, %bl
    and $0xfe, %al                  /* bit 0 is the fast reset: never write it set */
    or $2, %al
    out %al, $0x92
    in $0x92, %al
    mov %al, %bh
    and $0xfc, %al
    out %al, $0x92                  /* A20 off (KVM ignores the gate itself) */
    in $0x92, %al
    mov %al, %dl
    or $2, %al
    and $0xfe, %al
    out %al, $0x92
    in $0x92, %al
    mov %al, %dh
    ret

/* A hardware interrupt in real mode: the 8259 programmed as a BIOS does (vectors 8-15), the PIT
 * at ~1 kHz, and `sti; hlt` until three IRQ 0s came through the IVT. */
    .global t_irq_hlt
t_irq_hlt:
    mov $0x11, %al
    out %al, $0x20                  /* ICW1: edge, cascade, ICW4 follows */
    mov $0x08, %al
    out %al, $0x21                  /* ICW2: IRQ 0 -> vector 8 */
    mov $0x04, %al
    out %al, $0x21                  /* ICW3: slave on IRQ 2 */
    mov $0x01, %al
    out %al, $0x21                  /* ICW4: 8086 mode */
    mov $0xfe, %al
    out %al, $0x21                  /* IRQ 0 only */
    mov $0x34, %al
    out %al, $0x43                  /* channel 0, lo/hi byte, mode 2 (rate generator) */
    mov $0xa9, %al
    out %al, $0x40
    mov $0x04, %al
    out %al, $0x40                  /* 1193 ticks of 1.193 MHz */
    xor %cx, %cx
1:  inc %cx
    sti
    hlt
    cli
    cmpb $3, R(rm_cnt_irq)
    jb 1b
    mov $0x30, %al
    out %al, $0x43                  /* mode 0 with no count written: channel 0 stops */
    movzbw R(rm_cnt_irq), %si
    cmp $3, %cx                     /* hlt woke for IRQs, at most 3 times (fewer if two came */
    setbe %bl                       /* in one wake: how many depends on timing, so not CX) */
    xor %cx, %cx
    ret

/* The RTC's periodic interrupt (BIOS waits such as int 15h AH=86h use it): 1024 Hz on IRQ 8
 * through the slave 8259, `sti; hlt` until three came or the PIT counted 500 ms. */
    .global t_rtc_irq8
t_rtc_irq8:
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0                  /* ICW1 to both */
    mov $0x50, %al
    out %al, $0x21                  /* master: IRQ 0 -> vector 0x50 (the timeout tick) */
    mov $0x70, %al
    out %al, $0xa1                  /* slave: IRQ 8 -> vector 0x70 */
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xfa, %al
    out %al, $0x21                  /* IRQ 0 and the cascade */
    mov $0xfe, %al
    out %al, $0xa1                  /* IRQ 8 */
    mov $0x0a, %al
    out %al, $0x70
    mov $0x26, %al
    out %al, $0x71                  /* register A: 32.768 kHz time base, rate 6 = 1024 Hz */
    mov $0x0b, %al
    out %al, $0x70
    in $0x71, %al
    or $0x40, %al
    mov %al, %ah
    mov $0x0b, %al
    out %al, $0x70
    mov %ah, %al
    out %al, $0x71                  /* register B: periodic interrupt enable */
    mov $0x0c, %al
    out %al, $0x70
    in $0x71, %al                   /* register C: nothing pending from before */
    mov $0x34, %al
    out %al, $0x43
    mov $0xa9, %al
    out %al, $0x40
    mov $0x04, %al
    out %al, $0x40                  /* PIT at ~1 kHz */
    xor %di, %di
1:  sti
    hlt
    cli
    cmpb $3, R(rm_cnt_rtc)
    jae 2f
    cmpw $500, R(rm_ticks)
    jb 1b
    inc %di                         /* timed out */
2:  mov $0x30, %al
    out %al, $0x43                  /* PIT stopped */
    mov $0x0b, %al
    out %al, $0x70
    in $0x71, %al
    and $0xbf, %al
    mov %al, %ah
    mov $0x0b, %al
    out %al, $0x70
    mov %ah, %al
    out %al, $0x71                  /* periodic interrupt off */
    mov $0x0c, %al
    out %al, $0x70
    in $0x71, %al
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    movzbw R(rm_cnt_rtc), %si
    xor %ax, %ax
    xor %cx, %cx
    ret

/* --- data the harness and the tests use ----------------------------------------------------- */
    .balign 8
rm_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        /* 0x08: flat 32-bit code */
    .quad 0x00cf93000000ffff        /* 0x10: flat 32-bit data */
    .quad 0x00009b010000ffff        /* 0x18: 16-bit code, base RM_BASE, 64 KiB */
    .quad 0x000093000000ffff        /* 0x20: 16-bit data, base 0, 64 KiB */
    .quad 0x008f93000000ffff        /* 0x28: data, base 0, 4 GiB (unreal mode) */
rm_gdt_end:
    .balign 4
    .word 0
rm_gdtr:
    .word rm_gdt_end - rm_gdt - 1
    .long RM_BASE + R(rm_gdt)
    .word 0
rm_idtr:
    .word 0x3ff
    .long IVT_BASE
    .word 0
rm_alt_idtr:
    .word 0x3ff
    .long ALT_IVT
    .word 0
rm_odd_gdtr:
    .word 0x1234
    .long 0x12345678
rm_farptr:
    .word 0x5678, 0x2345
rm_const:
    .word 0x9abc

    .balign 4
    .global rm_in, rm_out, rm_test_ip, rm_unexp_vec, rm_unexp_ip, rm_unexp_cs
    .global rm_cnt_de, rm_cnt_bp, rm_cnt_of, rm_cnt_ud, rm_cnt_irq, rm_cnt_rtc, rm_ticks
rm_in:
    .skip 48
rm_out:
    .skip 48
rm_test_ip:
    .word 0
rm_unexp_vec:
    .word 0
rm_unexp_ip:
    .word 0
rm_unexp_cs:
    .word 0
rm_de_ip:
    .word 0
rm_de_cs:
    .word 0
rm_de_flags:
    .word 0
rm_cnt_de:
    .byte 0
rm_cnt_bp:
    .byte 0
rm_cnt_of:
    .byte 0
rm_cnt_ud:
    .byte 0
rm_cnt_irq:
    .byte 0
rm_cnt_rtc:
    .byte 0
    .balign 2
rm_ticks:
    .word 0
rm_blob_end:

    .section .note.GNU-stack, "", @progbits
