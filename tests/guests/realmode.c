/* Tier B guest: a real-mode instruction suite printing one "RM name checksum" line per test. */
#include "lib/guest.h"
#include "lib/intr.h"

const char guest_name[] = "realmode";

/* Must match realmode_rm.S. */
#define RM_SEG      0x1000u
#define RM_BASE     0x10000u
#define RM_MAX      0x8000u          /* the blob must end below the IVT */
#define IVT_BASE    0x18000u
#define ALT_IVT     0x18400u
#define SCRATCH     0x30000u         /* DATA_SEG:0 */
#define SCRATCH_LEN 0x200u
#define HIGH_ADDR   0x400000u
#define HIGH_LEN    0x20u
#define MB_MAGIC    0x1BADB002u

/* rm_in / rm_out in the blob: what a test starts with and what it left. */
struct rm_regs {
    uint32_t gpr[8];                 /* eax ebx ecx edx esi edi ebp esp */
    uint32_t eflags;
    uint16_t seg[5];                 /* ds es fs gs ss */
    uint16_t pad;
};

extern const char rm_blob_start[], rm_blob_end[], rm_stubs[];
extern const char rm_in[], rm_out[], rm_test_ip[], rm_unexp_vec[], rm_unexp_ip[], rm_unexp_cs[];
extern const char rm_cnt_de[], rm_cnt_bp[], rm_cnt_of[], rm_cnt_ud[], rm_cnt_irq[],
    rm_cnt_rtc[], rm_ticks[];
extern const char h_de[], h_int40[], h_bp[], h_of[], h_ud[], h_main41[], h_alt41[], h_irq0[],
    h_rtc[], h_tick[];
extern const char t_mov[], t_xchg[], t_push_pop[], t_add[], t_inc_neg[], t_mul[], t_div[],
    t_div0[], t_div_overflow[], t_shift[], t_string[], t_lea_lds[], t_far[], t_loop[], t_int[],
    t_flags[], t_cli_sti[], t_stack16[], t_cpuid[], t_io[], t_prefix[], t_segovr[], t_misc[],
    t_cr0[], t_fpu[], t_unreal[], t_lgdt_lidt[], t_a20_wrap[], t_a20_port92[], t_irq_hlt[],
    t_rtc_irq8[], t_mmio[];
void realmode_call(void);

/* A symbol's offset in the blob (its IP under CS = RM_SEG) and its copy's address. */
static uint16_t rm_off(const char *sym) { return (uint16_t)(sym - rm_blob_start); }
static void *rm_ptr(const char *sym) { return (void *)(uintptr_t)(RM_BASE + rm_off(sym)); }

/* What a check looks at: a register of rm_out, or a dword of the scratch or high area. */
enum { EAX, EBX, ECX, EDX, ESI, EDI, EBP, ESP, EFL, DS, ES, FS, GS, SS };
#define MEM(off)  (0x100 + (off))
#define HIGH(off) (0x400 + (off))

struct rm_check {
    uint16_t what;
    uint32_t mask, want;             /* mask 0: unused slot */
};

struct rm_test {
    const char *name;
    const char *entry;
    struct rm_check checks[12];
};

#define FULL 0xffffffffu
#define W16  0xffffu
#define FLAGS_ARITH 0x8d5u           /* CF PF AF ZF SF OF */

/* Inputs: EAX..EBP = 0x11111111 * (n + 1), EFLAGS = 0x2; expected values follow from those. */
static const struct rm_test rm_tests[] = {
    { "mov", t_mov, { { EAX, FULL, 0x1234ab78 }, { EBX, FULL, 0x2222ab78 },
        { ECX, FULL, 0xdeadbeef }, { EDX, FULL, 0x4444dead }, { EDI, FULL, 0xdeadbeef },
        { ESI, FULL, 0x55553000 }, { FS, W16, 0x3000 }, { EBP, FULL, 0x7e } } },
    { "xchg", t_xchg, { { EAX, FULL, 0x33333333 }, { EBX, FULL, 0x22221111 },
        { ECX, FULL, 0x11112222 }, { EDX, FULL, 0x4444efbe }, { ESI, FULL, 0x55554444 },
        { MEM(0x30), W16, 0x4444 } } },
    { "push_pop", t_push_pop, { { EAX, FULL, 0x11117777 }, { EBX, FULL, 0x22222000 },
        { ECX, FULL, 0x89abcdef }, { EDX, FULL, 0x44441234 }, { ESI, FULL, 0x55555555 },
        { EDI, FULL, 0x66660000 }, { EBP, FULL, 0x7777ffee }, { DS, W16, 0x3000 },
        { FS, W16, 0x3000 }, { MEM(0x42), W16, 0x7777 } } },
    { "stack_16bit", t_stack16, { { EAX, FULL, 0x1234ffee }, { EBP, FULL, 0x77775678 },
        { EBX, FULL, 0x2222fffe }, { EDX, FULL, 0x4444abcd }, { ECX, FULL, 0x3333abcd },
        { ESI, FULL, 0x5555ffee }, { EDI, FULL, 0 } } },
    { "add_adc_sub_sbb", t_add, { { ESI, FULL, 1 }, { EDI, FULL, 0x76666667 },
        { EBP, FULL, 0x77770002 }, { EBX, FULL, 0x22220057 }, { ECX, FULL, 0x33330896 },
        { EDX, FULL, 0x44440816 }, { EAX, FULL, 0x1111ffff }, { EFL, FLAGS_ARITH, 0x95 } } },
    { "inc_dec_neg", t_inc_neg, { { EDI, FULL, 0x66666667 }, { EBX, FULL, 0x22220897 },
        { ECX, FULL, 0x33330817 }, { EDX, FULL, 0x44440093 }, { EAX, FULL, 0x11118001 },
        { ESI, FULL, 0x55550000 }, { EFL, FLAGS_ARITH, 0x44 } } },
    { "mul_imul", t_mul, { { EAX, FULL, 0x11113400 }, { EDX, FULL, 0x44440012 },
        { ECX, FULL, 0x33330801 }, { ESI, FULL, 0x5555fffd }, { EDI, FULL, 0x6666ffeb },
        { EBP, FULL, 0 }, { EFL, 0x801, 0x801 } } },
    { "div_idiv", t_div, { { ESI, FULL, 0x5555008e }, { EDI, FULL, 0x66660006 },
        { EBP, FULL, 0x7777ff72 }, { ECX, FULL, 0x3333fffa }, { MEM(0x80), W16, 0x020e },
        { EAX, FULL, 0xfffffff2 }, { EDX, FULL, 0xfffffffe }, { EBX, FULL, 7 } } },
    { "div_by_zero", t_div0, { { EAX, FULL, 0x11110012 }, { EDX, FULL, 0x44440010 },
        { EBX, FULL, 0x22220102 }, { ESI, FULL, 0x55550001 }, { EDI, FULL, 0x66660000 },
        { EBP, FULL, 0x77771000 }, { ECX, FULL, 0x33330046 } } },
    { "div_overflow", t_div_overflow, { { MEM(0x80), FULL, 0x00400fe0 },
        { EAX, FULL, 0x111100c0 }, { EBX, FULL, 0x22220102 }, { ESI, FULL, 0x55550002 } } },
    { "shift_rotate", t_shift, { { MEM(0x80), FULL, 0x42180842 }, { EBX, FULL, 0x2222f842 },
        { ECX, FULL, 0x33334210 }, { ESI, FULL, 0x55551842 }, { EDI, FULL, 0x66660421 },
        { EAX, FULL, 0xbeef }, { EDX, FULL, 0xfef00000 } } },
    { "string_rep_df", t_string, { { EAX, FULL, 0xa5a5a5a5 }, { ECX, FULL, 0 },
        { ESI, FULL, 0x44 }, { EDI, FULL, 0x94 }, { MEM(0x40), FULL, 0x18110a03 },
        { MEM(0x64), FULL, 0xa5a5a5a5 }, { MEM(0x78), FULL, 0x5a5a5a5a },
        { MEM(0xa0), FULL, 0x00790007 }, { MEM(0xb0), FULL, 0x18110a03 },
        { MEM(0xc0), FULL, 0x00100000 }, { MEM(0xc4), FULL, 0x00ae003e },
        { MEM(0x90), FULL, 0x18110a03 } } },
    { "lea_lds_les_lfs_lgs", t_lea_lds, { { EAX, FULL, 0x11111264 }, { EDX, FULL, 0x4444dddb },
        { ECX, FULL, 0x777600a0 }, { ESI, FULL, 0x5555beef }, { EDI, FULL, 0x6666beef },
        { EBP, FULL, 0x77775678 }, { EBX, FULL, 0x22225678 }, { DS, W16, 0x1234 },
        { ES, W16, 0x1234 }, { FS, W16, 0x2345 }, { GS, W16, 0x2345 } } },
    { "far_call_ret_jmp", t_far, { { EAX, FULL, 0x11112222 }, { EBX, FULL, 0x2222ffee },
        { ECX, FULL, 0x33331020 }, { EDX, FULL, 0x44440ff0 }, { ESI, FULL, 0x55551010 },
        { EDI, FULL, 0x66661000 }, { EBP, FULL, 0x7777ffe6 } } },
    { "loop_jcxz", t_loop, { { EAX, FULL, 0x1111000f }, { ESI, FULL, 0x5555000f },
        { EBX, FULL, 0x22220004 }, { EDI, FULL, 0x66660006 }, { EDX, FULL, 0x44440002 },
        { EBP, FULL, 0x77770003 }, { ECX, FULL, 0xffff } } },
    { "int_iret_exceptions", t_int, { { EAX, FULL, 0x11112345 }, { EBX, FULL, 0x22220203 },
        { EDX, FULL, 0x44440002 }, { ESI, FULL, 0x55550000 }, { EDI, FULL, 0x66661000 },
        { ECX, W16, 0x0201 }, { EBP, FULL, 0x77770001 } } },
    { "pushf_popf_sahf", t_flags, { { EAX, FULL, 0x1111d7d7 }, { EBX, FULL, 0x22220002 },
        { ECX, FULL, 0x00240cd7 }, { EDX, FULL, 0x00000002 }, { MEM(0x80), 0xff, 0xd7 } } },
    { "cli_sti", t_cli_sti, { { EAX, FULL, 0x11110202 }, { EBX, FULL, 0x22220002 },
        { ECX, FULL, 0x00000002 } } },
    { "in_out_ins_outs", t_io, { { MEM(0x80), W16, 0xada5 }, { EBP, FULL, 0xdeadbeef },
        { MEM(0x90), FULL, 0x1234beef }, { MEM(0x84), FULL, 0xbeefbeef },
        { EBX, FULL, 0x1234be5a }, { EDI, FULL, 0x66660088 }, { ESI, FULL, 0x5555008c } } },
    { "prefix_66_67", t_prefix, { { EAX, FULL, 0x89674523 }, { ECX, FULL, 0xffffff80 },
        { EDX, FULL, 0x80 }, { EDI, FULL, 0xcafef00d }, { EBP, FULL, 0x4242 },
        { EBX, FULL, 4 }, { ESI, FULL, 0x10 } } },
    { "segment_override_wrap", t_segovr, { { EAX, FULL, 0x11111357 },
        { ECX, FULL, 0x33332468 }, { EDX, FULL, 0x44442468 }, { ESI, FULL, 0x55559abc },
        { EDI, FULL, 0x66661357 }, { EBP, FULL, 0x77770a03 }, { EBX, FULL, 0x22220002 },
        { DS, W16, 0x3000 } } },
    { "misc_bcd_bits_xadd_enter", t_misc, { { EAX, FULL, 0xffff000a }, { EBX, FULL, 0x22220100 },
        { ECX, FULL, 0x333300f1 }, { EDX, FULL, 0xffff0001 }, { ESI, FULL, 0x55550004 },
        { EDI, FULL, 0x66660007 }, { EBP, FULL, 0x77770009 }, { MEM(0x110), W16, 0xffff },
        { MEM(0x114), FULL, 0xffffff80 }, { MEM(0x11c), 0xff, 0x26 },
        { MEM(0x120), FULL, 0x003f0603 }, { MEM(0x124), FULL, 0x000c1947 } } },
    { "cr0_smsw_clts", t_cr0, { { EAX, FULL, 0x11110010 }, { EBX, FULL, 0x10 },
        { ECX, FULL, 0x33330018 }, { EDX, FULL, 0x10 }, { ESI, FULL, 0x55550011 },
        { EDI, FULL, 0x10 } } },
    { "cpuid_firmware_features", t_cpuid, { { EDX, FULL, 0x0701b371 } } },
    { "x87", t_fpu, { { MEM(0x80), FULL, 0x037f0000 }, { MEM(0x84), W16, 2 } } },
    { "unreal_mode", t_unreal, { { ECX, FULL, 0x5a5aa5a5 }, { EDX, FULL, 0x01234567 },
        { EAX, FULL, MB_MAGIC }, { ESI, FULL, HIGH_ADDR + 8 }, { EDI, FULL, HIGH_ADDR + 0x18 },
        { HIGH(0), FULL, 0x5a5aa5a5 }, { HIGH(4), FULL, 0x01234567 },
        { HIGH(0x10), FULL, 0x5a5aa5a5 }, { HIGH(0x14), FULL, 0x01234567 },
        { FS, W16, 0 }, { GS, W16, 0 } } },
    { "unreal_mmio", t_mmio, { { EAX, FULL, 0xaabb33cc }, { EDX, FULL, 0x00000896 },
        { EBX, FULL, 0x01020304 }, { ECX, FULL, 0xaa },
        { MEM(0x180), FULL, 0xaabb33cc }, { MEM(0x184), FULL, 0x80000000 },
        { MEM(0x188), FULL, 0x5a5a5a5a }, { MEM(0x18c), FULL, 0 },
        { MEM(0x190), FULL, 0xbeefbeef }, { MEM(0x194), FULL, 0xbeefbeef },
        { ESI, FULL, 0xff000018 }, { EDI, FULL, 0x00030198 } } },
    { "lgdt_lidt", t_lgdt_lidt, { { MEM(0x80), W16, 0x3ff }, { MEM(0x82), FULL, IVT_BASE },
        { MEM(0x88), W16, 0x3ff }, { MEM(0x8a), FULL, ALT_IVT }, { EDX, FULL, 0x4444a141 },
        { EBX, FULL, 0x22220041 }, { MEM(0x90), W16, 0x1234 }, { MEM(0x92), FULL, 0x00345678 },
        { MEM(0x98), W16, 0x1234 }, { MEM(0x9a), FULL, 0x12345678 } } },
    { "a20_wrap", t_a20_wrap, { { ECX, FULL, MB_MAGIC }, { FS, W16, 0 } } },
    { "irq_sti_hlt", t_irq_hlt, { { ESI, FULL, 0x55550003 }, { EBX, 0xff, 1 } } },
    /* Three RTC periodic interrupts (SI) before the PIT's 500 ms timeout (DI = 0). */
    { "rtc_irq8_periodic", t_rtc_irq8, { { ESI, FULL, 0x55550003 }, { EDI, FULL, 0x66660000 } } },
    /* System control port A: bit 1 = A20 (reads back as written), bit 0 = fast reset. */
    { "a20_port92", t_a20_port92, { { EBX, 0x0303, 0x0202 }, { EDX, 0x0303, 0x0200 } } },
};

static uint32_t rm_value(const struct rm_regs *out, uint16_t what)
{
    if (what >= HIGH(0))
        return *(const volatile uint32_t *)(uintptr_t)(HIGH_ADDR + what - HIGH(0));
    if (what >= MEM(0))
        return *(const volatile uint32_t *)(uintptr_t)(SCRATCH + what - MEM(0));
    if (what <= ESP)
        return out->gpr[what];
    if (what == EFL)
        return out->eflags;
    return out->seg[what - DS];
}

static void rm_print_what(uint16_t what)
{
    static const char *const names[] = { "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp",
                                         "eflags", "ds", "es", "fs", "gs", "ss" };
    if (what >= HIGH(0))
        kprintf("high+0x%x", what - HIGH(0));
    else if (what >= MEM(0))
        kprintf("mem+0x%x", what - MEM(0));
    else
        kprintf("%s", names[what]);
}

/* FNV-1a over bytes: the value both VMMs must agree on. */
static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static void rm_set_vector(uint32_t ivt, unsigned vec, const char *handler)
{
    ((volatile uint32_t *)(uintptr_t)ivt)[vec] = (RM_SEG << 16) | rm_off(handler);
}

/* Fresh inputs, scratch areas, counters and IVTs before every test. */
static void rm_prepare(const struct rm_test *t)
{
    struct rm_regs *in = rm_ptr(rm_in);
    memset(in, 0, sizeof(*in));
    for (unsigned i = 0; i < 7; i++)
        in->gpr[i] = 0x11111111u * (i + 1);
    in->eflags = 0x2;
    memset(rm_ptr(rm_out), 0, sizeof(struct rm_regs));
    *(uint16_t *)rm_ptr(rm_test_ip) = rm_off(t->entry);
    *(uint16_t *)rm_ptr(rm_unexp_vec) = 0xffff;
    *(uint8_t *)rm_ptr(rm_cnt_de) = 0;
    *(uint8_t *)rm_ptr(rm_cnt_bp) = 0;
    *(uint8_t *)rm_ptr(rm_cnt_of) = 0;
    *(uint8_t *)rm_ptr(rm_cnt_ud) = 0;
    *(uint8_t *)rm_ptr(rm_cnt_irq) = 0;
    *(uint8_t *)rm_ptr(rm_cnt_rtc) = 0;
    *(uint16_t *)rm_ptr(rm_ticks) = 0;
    /* The 8259 afresh, every line masked: SeaBIOS (under QEMU) left the PIT running on IRQ 0,
     * and t_irq_hlt reprograms it. */
    pic_init();

    volatile uint8_t *scratch = (volatile uint8_t *)(uintptr_t)SCRATCH;
    for (unsigned i = 0; i < SCRATCH_LEN; i++)
        scratch[i] = (uint8_t)(i * 7 + 3);
    volatile uint8_t *high = (volatile uint8_t *)(uintptr_t)HIGH_ADDR;
    for (unsigned i = 0; i < HIGH_LEN; i++)
        high[i] = 0;

    for (unsigned v = 0; v < 256; v++) {
        rm_set_vector(IVT_BASE, v, rm_stubs + 8 * v);
        rm_set_vector(ALT_IVT, v, rm_stubs + 8 * v);
    }
    rm_set_vector(IVT_BASE, 0, h_de);
    rm_set_vector(IVT_BASE, 3, h_bp);
    rm_set_vector(IVT_BASE, 4, h_of);
    rm_set_vector(IVT_BASE, 6, h_ud);
    rm_set_vector(IVT_BASE, 8, h_irq0);
    rm_set_vector(IVT_BASE, 0x40, h_int40);
    rm_set_vector(IVT_BASE, 0x41, h_main41);
    rm_set_vector(IVT_BASE, 0x50, h_tick);
    rm_set_vector(IVT_BASE, 0x70, h_rtc);
    rm_set_vector(ALT_IVT, 0x41, h_alt41);
}

/* Runs one test; prints its checksum line and a line per failed check. Returns the failures. */
static int rm_run(const struct rm_test *t)
{
    rm_prepare(t);
    realmode_call();

    const struct rm_regs *out = rm_ptr(rm_out);
    uint16_t unexp = *(uint16_t *)rm_ptr(rm_unexp_vec);
    uint32_t h = 2166136261u;
    h = fnv(h, out, sizeof(*out));
    h = fnv(h, (const void *)(uintptr_t)SCRATCH, SCRATCH_LEN);
    h = fnv(h, (const void *)(uintptr_t)HIGH_ADDR, HIGH_LEN);
    h = fnv(h, &unexp, sizeof(unexp));
    kprintf("RM %s 0x%08x\n", t->name, h);

    int failures = 0;
    if (unexp != 0xffff) {
        kprintf("RM-FAIL %s unexpected vector 0x%x at %04x:%04x\n", t->name, unexp,
                *(uint16_t *)rm_ptr(rm_unexp_cs), *(uint16_t *)rm_ptr(rm_unexp_ip));
        failures++;
    }
    for (unsigned i = 0; i < sizeof(t->checks) / sizeof(t->checks[0]); i++) {
        const struct rm_check *c = &t->checks[i];
        if (c->mask == 0)
            continue;
        uint32_t got = rm_value(out, c->what) & c->mask;
        if (got != c->want) {
            kprintf("RM-FAIL %s ", t->name);
            rm_print_what(c->what);
            kprintf(": got 0x%x want 0x%x (mask 0x%x)\n", got, c->want, c->mask);
            failures++;
        }
    }
    return failures;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    size_t len = (size_t)(rm_blob_end - rm_blob_start);
    if (len > RM_MAX)
        guest_fail("the real-mode blob is %u bytes, more than the %u below the IVT",
                   (unsigned)len, RM_MAX);
    memcpy((void *)(uintptr_t)RM_BASE, rm_blob_start, len);

    uint32_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    unsigned n = sizeof(rm_tests) / sizeof(rm_tests[0]);
    kprintf("realmode: %u tests; CR0 at entry 0x%x (not compared)\n", n, cr0);
    int failed = 0;
    for (unsigned i = 0; i < n; i++)
        if (rm_run(&rm_tests[i]))
            failed++;
    kprintf("realmode: %u of %u tests failed their own checks\n", (unsigned)failed, n);
    return failed ? 1 : 0;
}
