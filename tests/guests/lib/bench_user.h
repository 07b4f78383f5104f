/* Inline helpers shared by the benchmark guests' 64-bit ring-3 sides (bench_*_user.c): barriers, TSC calibration, the exit loops. */
#ifndef GUEST_BENCH_USER_H
#define GUEST_BENCH_USER_H

#include "io.h"

#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY     1
#define PIT_HZ        1193182u
#define PIT_PERIODS   7            /* of 54.9 ms */
#define PORT_TESTDEV  0xe0

static inline void compiler_barrier(void) { __asm__ volatile("" : : : "memory"); }
/* Full fence: the device must see avail->idx before we read its wish for a kick (used->flags
 * or avail_event). */
static inline void full_barrier(void) { __asm__ volatile("lock; addl $0, (%%rsp)" : : : "memory"); }

/* Polls a used ring's idx until it moves from seen (the driver's used index); *progress is the
 * TSC when it last did. Returns the new idx and sets *progress, or -1 when it did not move for
 * stall ticks since *progress (the device stalled). */
static inline int bench_wait_used(const volatile uint16_t *idx_p, uint32_t seen, uint64_t *progress,
                                  uint64_t stall)
{
    uint16_t idx;
    while ((idx = *idx_p) == (uint16_t)seen)
        if (rdtsc() - *progress > stall)
            return -1;
    compiler_barrier();               /* x86 keeps loads in order: idx before the entries */
    *progress = rdtsc();
    return idx;
}

/* Waits for a rising edge of PIT channel 2's output (port 0x61 bit 5). */
static inline void bench_pit2_rise(void)
{
    while (inb(0x61) & 0x20)
        ;
    while (!(inb(0x61) & 0x20))
        ;
}

/* TSC ticks per second against PIT channel 2 as a square wave (mode 3) of 65536 PIT clocks
 * (54.9 ms): the TSC at PIT_PERIODS + 1 rising edges of its output, and the median period. Both
 * ends of a period are seen the same way (a port read that exits to the VMM), so the polling
 * delay cancels out; the median drops a period in which the vCPU was preempted. */
static inline uint64_t bench_calibrate_tsc(void)
{
    uint64_t t[PIT_PERIODS + 1], d[PIT_PERIODS];
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));   /* gate on, speaker off */
    outb(0x43, 0xb6);                  /* channel 2, lobyte/hibyte, mode 3, binary */
    outb(0x42, 0);                     /* count 0: 65536 */
    outb(0x42, 0);
    for (int i = 0; i <= PIT_PERIODS; i++) {
        bench_pit2_rise();
        t[i] = rdtsc();
    }
    outb(0x61, (uint8_t)(inb(0x61) & ~0x03));            /* gate off */
    for (int i = 0; i < PIT_PERIODS; i++) {               /* insertion sort of the periods */
        uint64_t v = t[i + 1] - t[i];
        int k = i;
        for (; k > 0 && d[k - 1] > v; k--)
            d[k] = d[k - 1];
        d[k] = v;
    }
    uint64_t mid2 = d[(PIT_PERIODS - 1) / 2] + d[PIT_PERIODS / 2];   /* twice the median */
    return mid2 * PIT_HZ / (2 * 65536ull);
}

/* TSC ticks of n doorbell writes of value (queue index) with nothing new queued: the
 * notification exit. */
static inline uint64_t bench_time_kicks(uint32_t doorbell, uint16_t value, uint32_t n)
{
    uint64_t t0 = rdtsc();
    for (uint32_t i = 0; i < n; i++)
        mmio_write16(doorbell, value);
    return rdtsc() - t0;
}

/* TSC ticks of n writes to the pc-testdev port: an exit to the VMM process. */
static inline uint64_t bench_time_pio(uint32_t n)
{
    uint64_t t0 = rdtsc();
    for (uint32_t i = 0; i < n; i++)
        outb(PORT_TESTDEV, (uint8_t)i);
    return rdtsc() - t0;
}

#endif
