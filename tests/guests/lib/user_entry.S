/* user_run, the way back from ring 3 and the 64-bit exception stubs (see user.h). */

#define USER_CS     0x1b
#define USER_DS     0x23
#define USER_CS64   0x38
#define KERNEL_CS   0x08
#define KERNEL_DS   0x10
#define EFLAGS_IF   0x200
#define VEC_UD      6
#define USER_CODE_BASE 0x00800000   /* user.h */

    .section .text
    .code32

/* uint32_t user_run(void *arg, void *stack_top): ring 0, compatibility mode. */
    .global user_run
user_run:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov %esp, user_saved_esp
    mov %esp, user_tss + 4       /* rsp0 (bits 31:0; 63:32 stay 0) */
    mov 20(%esp), %eax
    mov %eax, user_arg
    mov 24(%esp), %eax           /* ring-3 stack: a 64-bit return address (user_exit) */
    sub $8, %eax
    movl $user_exit, (%eax)
    movl $0, 4(%eax)
    mov %eax, user_rsp
    ljmp $USER_CS64, $1f

    .code64
    /* In 64-bit mode the upper halves of the registers are undefined after compatibility mode:
     * 32-bit loads (which zero-extend) only. A 32-bit absolute address cannot be a memory
     * displacement here (it would be sign-extended), hence the loads through rax. */
1:  movl $user_arg, %eax
    movl (%rax), %edi            /* the argument */
    pushq $USER_DS               /* ss */
    movl $user_rsp, %eax
    movl (%rax), %eax
    pushq %rax                   /* rsp */
    pushfq                       /* rflags: interrupts off */
    andl $~EFLAGS_IF, (%rsp)
    pushq $USER_CS               /* cs */
    pushq $USER_CODE_BASE        /* rip: user_main */
    iretq

/* Ring 3: the entry function returned here with its result in eax. */
user_exit:
    ud2

/* 64-bit IDT stubs, 16 bytes each: push (error code or 0, vector) as entry.S does. */
#define HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)
    .align 16
    .global user_vectors
user_vectors:
    .set vec, 0
    .rept 32
    .align 16
    .if !HAS_ERR(vec)
    pushq $0
    .endif
    pushq $vec
    jmp user_vector_common
    .set vec, vec + 1
    .endr

/* Frame: vector, error, rip, cs, rflags, rsp, ss. The #UD of user_exit in ring 3 goes back to
 * user_run's caller, anything else to user_fault; both through a far return to the 32-bit
 * ring-0 code segment. */
user_vector_common:
    cmpq $VEC_UD, (%rsp)
    jne 1f
    testb $3, 24(%rsp)
    jz 1f
    movl $user_exit, %ecx
    cmpq %rcx, 16(%rsp)
    jne 1f
    pushq $KERNEL_CS
    pushq $0                     /* rip: a 32-bit absolute address */
    movl $user_back, (%rsp)
    lretq
1:  movl (%rsp), %eax
    movl 8(%rsp), %edx
    movl 16(%rsp), %ecx
    movl 24(%rsp), %ebx
    pushq $KERNEL_CS
    pushq $0
    movl $user_bad, (%rsp)
    lretq

    .code32
/* Back in ring 0, compatibility mode; eax = the entry function's result. An exception from
 * ring 3 left ss null: load it before touching the stack. */
user_back:
    mov $KERNEL_DS, %cx
    mov %cx, %ss
    mov %cx, %ds
    mov %cx, %es
    mov %cx, %fs
    mov %cx, %gs
    mov user_saved_esp, %esp
    pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

/* Any other exception: eax = vector, edx = error code, ecx = rip, ebx = cs. */
user_bad:
    mov $KERNEL_DS, %si
    mov %si, %ss
    mov %si, %ds
    mov %si, %es
    mov $user_fault_stack_top, %esp
    push %ebx
    push %ecx
    push %edx
    push %eax
    call user_fault              /* noreturn */

    .section .bss
    .align 4
user_saved_esp:
    .skip 4
user_arg:
    .skip 4
user_rsp:
    .skip 4
    .align 16
    .skip 2048
user_fault_stack_top:

    .section .note.GNU-stack, "", @progbits
