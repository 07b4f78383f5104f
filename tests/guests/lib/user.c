/* Long mode, page tables, GDT, TSS and IDT behind user_run (user_entry.S); see user.h. */
#include "user.h"

#define PTE_P   0x001u
#define PTE_W   0x002u
#define PTE_U   0x004u
#define PTE_PS  0x080u   /* in a page directory entry: a 2 MiB page */

#define MSR_EFER  0xc0000080u
#define EFER_LME  (1u << 8)
#define CR0_PG    0x80000000u
#define CR4_PAE   0x20u

/* 64-bit TSS: rsp0 (the ring-0 stack an exception from ring 3 switches to; user_entry.S writes
 * it on every entry to ring 3) and an I/O permission bitmap of zeros: every port is open to ring
 * 3. (IOPL 3 would do the same on hardware, but the kvm-pvm host runs ring 3 with IOPL 0 whatever
 * iretq loads; it does honour the bitmap.) The byte after the map must be all ones. */
struct user_tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
    uint8_t iomap[65536 / 8 + 1];
} __attribute__((packed));

struct idt_gate64 {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, reserved;
} __attribute__((packed));

struct user_tss user_tss;          /* user_entry.S stores rsp0 here */
extern const char user_vectors[];  /* user_entry.S: 32 stubs of USER_VECTOR_STUB bytes, 64-bit code */
extern const char user_blob[], user_blob_end[];   /* user_blob.S: the guest's ring-3 code */
#define USER_VECTOR_STUB 16

/* Identity map of the low 4 GiB in 2 MiB pages, all ring-3 accessible. */
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
/* Writable: ltr sets the busy bit in the TSS descriptor. */
static uint64_t gdt64[8] __attribute__((aligned(8)));
static struct idt_gate64 idt64[32] __attribute__((aligned(16)));

static uint64_t seg(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    return (limit & 0xffffull) | (uint64_t)(base & 0xffffff) << 16 | (uint64_t)access << 40 |
           (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)(flags & 0xf) << 52 |
           (uint64_t)(base >> 24) << 56;
}

static uint32_t read_cr0(void)
{
    uint32_t v;
    __asm__ volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}

static uint32_t read_cr4(void)
{
    uint32_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}


void user_init(void)
{
    size_t code = (size_t)(user_blob_end - user_blob);
    if (code > USER_CODE_MAX)
        guest_fail("ring-3 code of %u bytes, more than the %u at 0x%x", (unsigned)code,
                   USER_CODE_MAX, USER_CODE_BASE);
    memcpy((void *)USER_CODE_BASE, user_blob, code);

    for (uint32_t i = 0; i < 2048; i++)
        pd[i / 512][i % 512] = (uint64_t)i << 21 | PTE_PS | PTE_U | PTE_W | PTE_P;
    for (uint32_t i = 0; i < 4; i++)
        pdpt[i] = (uint32_t)(uintptr_t)pd[i] | PTE_U | PTE_W | PTE_P;
    pml4[0] = (uint32_t)(uintptr_t)pdpt | PTE_U | PTE_W | PTE_P;

    uint32_t tss = (uint32_t)(uintptr_t)&user_tss;
    user_tss.iomap_base = offsetof(struct user_tss, iomap);
    user_tss.iomap[sizeof(user_tss.iomap) - 1] = 0xff;
    gdt64[0] = 0;
    gdt64[1] = seg(0, 0xfffff, 0x9a, 0xc);              /* 0x08 ring-0 code, 32-bit (compat) */
    gdt64[2] = seg(0, 0xfffff, 0x92, 0xc);              /* 0x10 ring-0 data */
    gdt64[3] = seg(0, 0xfffff, 0xfa, 0xa);              /* 0x18 ring-3 code, 64-bit */
    gdt64[4] = seg(0, 0xfffff, 0xf2, 0xc);              /* 0x20 ring-3 data */
    gdt64[5] = seg(tss, sizeof(user_tss) - 1, 0x89, 0); /* 0x28 64-bit TSS (16 bytes) */
    gdt64[6] = 0;                                       /*      its base bits 63:32 */
    gdt64[7] = seg(0, 0xfffff, 0x9a, 0xa);              /* 0x38 ring-0 code, 64-bit */
    for (uint32_t v = 0; v < 32; v++) {
        uint32_t a = (uint32_t)(uintptr_t)user_vectors + v * USER_VECTOR_STUB;
        idt64[v] = (struct idt_gate64){ (uint16_t)a, USER_CS64, 0, 0x8e, (uint16_t)(a >> 16), 0, 0 };
    }

    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) gdtr = {
        sizeof(gdt64) - 1, (uint32_t)(uintptr_t)gdt64 }, idtr = {
        sizeof(idt64) - 1, (uint32_t)(uintptr_t)idt64 };
    /* The selectors in use (0x08, 0x10) mean the same in the new table: no reload needed. */
    __asm__ volatile("lgdt %0" : : "m"(gdtr) : "memory");
    /* Long mode: PAE, the tables, EFER.LME, then paging. Code segment 0x08 stays 32-bit, so
     * execution goes on in compatibility mode with the same code. */
    __asm__ volatile("mov %0, %%cr4" : : "r"(read_cr4() | CR4_PAE) : "memory");
    __asm__ volatile("mov %0, %%cr3" : : "r"(pml4) : "memory");
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_LME);
    __asm__ volatile("mov %0, %%cr0" : : "r"(read_cr0() | CR0_PG) : "memory");
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)USER_TSS) : "memory");
}

/* user_entry.S, for an exception that is not ring 3's way back: in ring 0, compatibility mode. */
__attribute__((noreturn)) void user_fault(uint32_t vector, uint32_t error, uint32_t rip, uint32_t cs);
void user_fault(uint32_t vector, uint32_t error, uint32_t rip, uint32_t cs)
{
    guest_fail("exception %u (error code 0x%x) at rip 0x%x in ring %u (long mode)", vector, error,
               rip, cs & 3);
}
