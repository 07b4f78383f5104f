/* Tier A guest: kvmclock (KVM's paravirtual clock) read on two vCPUs taking turns never goes
 * backwards between readings that carry the TSC-stable flag. That flag is KVM's promise that
 * the vCPUs' clocks agree (Linux then reads kvmclock without a global lock, also in the vDSO);
 * a VMM breaks it by giving vCPUs TSCs that disagree. Without the flag the pvclock ABI leaves
 * cross-vCPU order to the guest (Linux keeps a global maximum), so those readings are counted
 * for information only. */
#include "lib/ap.h"
#include "lib/intr.h"

const char guest_name[] = "kvmclock";

#define MSR_KVM_SYSTEM_TIME_NEW  0x4b564d01u
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define KVM_FEATURE_STABLE_BIT   (1u << 24)
#define PVCLOCK_TSC_STABLE_BIT   0x01
#define ROUNDS                   2000u   /* each hand-off needs both vCPU threads on a core: a few s */
#define TURN_TIMEOUT_TICKS       1000u   /* 10 s: the other vCPU is gone */

/* The pvclock area KVM keeps up to date for one vCPU (the KVM API's "pvclock_vcpu_time_info"). */
struct pvclock {
    uint32_t version, pad0;
    uint64_t tsc_timestamp, system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags, pad[2];
} __attribute__((packed));

static volatile struct pvclock clocks[2] __attribute__((aligned(64)));
static volatile uint32_t turn;          /* 0: the BSP reads next, 1: the AP */
static volatile uint64_t last_ns;       /* the reading the other vCPU made just before */
static volatile uint8_t last_flags;     /* and its flags */
static volatile uint32_t warps, stable_warps, stable_reads[2], timed_out;
static volatile uint64_t worst_warp;
static volatile uint32_t ap_done;
static uint64_t tsc_per_tick;

static uint64_t rdtsc_ordered(void)
{
    /* lfence: the TSC is read after the loads before it (the turn, the pvclock fields). */
    __asm__ volatile("lfence" : : : "memory");
    return rdtsc();
}

/* (delta * mul) >> 32 without a 128-bit product. */
static uint64_t mul_frac(uint64_t delta, uint32_t mul)
{
    uint64_t lo = (uint64_t)(uint32_t)delta * mul, hi = (delta >> 32) * mul;
    return hi + (lo >> 32);
}

static uint64_t pvclock_read(volatile struct pvclock *p, uint8_t *flags)
{
    uint32_t version;
    uint64_t ns;
    do {
        version = p->version;
        __asm__ volatile("" : : : "memory");
        uint64_t delta = rdtsc_ordered() - p->tsc_timestamp;
        int8_t shift = p->tsc_shift;
        delta = shift < 0 ? delta >> -shift : delta << shift;
        ns = p->system_time + mul_frac(delta, p->tsc_to_system_mul);
        *flags = p->flags;
        __asm__ volatile("" : : : "memory");
    } while ((version & 1) || version != p->version);
    return ns;
}

static void clock_enable(unsigned cpu)
{
    wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint32_t)(uintptr_t)&clocks[cpu] | 1u);
}

/* Each round: wait for our turn, read, compare with the other vCPU's reading, pass the turn. */
static void take_turns(unsigned me)
{
    for (uint32_t r = 0; r < ROUNDS && !timed_out; r++) {
        uint64_t t0 = rdtsc();
        while (turn != me) {
            if (timed_out)
                return;
            if (rdtsc() - t0 > TURN_TIMEOUT_TICKS * tsc_per_tick) {
                timed_out = 1;
                return;
            }
            pause();
        }
        uint8_t flags;
        uint64_t now = pvclock_read(&clocks[me], &flags);
        if (now < last_ns) {
            warps++;
            if (flags & last_flags & PVCLOCK_TSC_STABLE_BIT) {
                stable_warps++;
                if (last_ns - now > worst_warp)
                    worst_warp = last_ns - now;
            }
        }
        last_ns = now;
        last_flags = flags;
        stable_reads[me] += flags & PVCLOCK_TSC_STABLE_BIT;
        turn = 1 - me;
    }
}

static void ap_main(void)
{
    clock_enable(1);
    take_turns(1);
    ap_done = 1;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint32_t r[4];
    cpuid(0x40000000u, r);
    if (r[1] != 0x4b4d564bu || r[2] != 0x564b4d56u || r[3] != 0x4du || r[0] < 0x40000001u) {
        kprintf("kvmclock: SKIP: no KVM signature in CPUID leaf 0x40000000 (not a KVM guest)\n");
        return 0;
    }
    cpuid(0x40000001u, r);
    if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
        guest_fail("KVM offers no kvmclock (CPUID 0x40000001 EAX bit 3)");
    kprintf("kvmclock: offered; stable bit %s\n", r[0] & KVM_FEATURE_STABLE_BIT ? "offered" : "not offered");

    pic_init();
    lapic_init(true);
    pit_start(100);
    pit_wait_ticks(1);
    uint64_t t0 = rdtsc();
    pit_wait_ticks(5);
    tsc_per_tick = (rdtsc() - t0) / 5;

    clock_enable(0);
    if (!ap_start(ap_main))
        guest_fail("the second vCPU did not start (run with 2 vCPUs)");
    cli();
    take_turns(0);
    for (uint64_t w = rdtsc(); !ap_done && rdtsc() - w < TURN_TIMEOUT_TICKS * tsc_per_tick;)
        pause();
    if (timed_out || !ap_done)
        guest_fail("the vCPUs stopped taking turns");
    kprintf("kvmclock: %u readings taking turns on 2 vCPUs, %u and %u of them with the TSC-stable "
            "flag\n", 2 * ROUNDS, stable_reads[0], stable_reads[1]);
    kprintf("kvmclock: flagged readings that went backwards: %u (worst by %llu ns)\n", stable_warps,
            worst_warp);
    kprintf("kvmclock: all readings that went backwards: %u (information: without the flag the "
            "guest orders them)\n", warps);
    if (!stable_reads[0] && !stable_reads[1])
        kprintf("kvmclock: no reading carried the TSC-stable flag (KVM has no master clock on "
                "this host): nothing promised to check\n");
    return stable_warps ? 1 : 0;
}
