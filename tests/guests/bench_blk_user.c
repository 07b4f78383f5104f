/* bench_blk's ring-3 side: 64-bit code (lib/user.h explains why) that runs the hot loops the
 * ring-0 side (bench_blk.c) asks for. No data of its own: everything is behind the job. */
#include "bench_blk.h"
#include "lib/io.h"

#define VIRTIO_BLK_T_IN   0
#define VIRTIO_BLK_T_OUT  1
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY     1
#define PIT_HZ        1193182u
#define PIT_PERIODS   7            /* of 54.9 ms */
#define PORT_TESTDEV  0xe0

struct avail {
    uint16_t flags, idx, ring[BENCH_QSIZE];
};

struct used {
    uint16_t flags, idx;
    struct { uint32_t id, len; } ring[BENCH_QSIZE];
};

static inline void compiler_barrier(void) { __asm__ volatile("" : : : "memory"); }
/* Full fence: the device must see avail->idx before we read used->flags to decide on a kick. */
static inline void full_barrier(void) { __asm__ volatile("lock; addl $0, (%%rsp)" : : : "memory"); }

/* Waits for a rising edge of PIT channel 2's output (port 0x61 bit 5). */
static void pit2_rise(void)
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
static uint64_t calibrate(void)
{
    uint64_t t[PIT_PERIODS + 1], d[PIT_PERIODS];
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));   /* gate on, speaker off */
    outb(0x43, 0xb6);                  /* channel 2, lobyte/hibyte, mode 3, binary */
    outb(0x42, 0);                     /* count 0: 65536 */
    outb(0x42, 0);
    for (int i = 0; i <= PIT_PERIODS; i++) {
        pit2_rise();
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

static uint32_t next_block(struct bench_job *j, uint32_t per)
{
    if (j->random) {
        uint32_t x = j->rng;          /* xorshift32 */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        j->rng = x;
        return x % (j->disk_blocks / per) * per;
    }
    uint32_t b = j->next_block;
    j->next_block = b + 2 * per <= j->disk_blocks ? b + per : 0;
    return b;
}

/* Fills request slot (descriptors 3 slot .. 3 slot + 2) and makes it available. */
static void submit(struct bench_job *j, uint32_t slot)
{
    uint32_t per = j->req_bytes / BENCH_BLOCK;
    uint32_t block = next_block(j, per);
    struct bench_blk_hdr *h = (struct bench_blk_hdr *)(uintptr_t)j->hdrs + slot;
    uint8_t *st = (uint8_t *)(uintptr_t)j->status + slot;
    uint32_t *d = (uint32_t *)(uintptr_t)(j->data + slot * j->req_bytes);
    h->type = j->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    h->reserved = 0;
    h->sector = (uint64_t)block * (BENCH_BLOCK / 512);
    *st = 0xff;
    /* Writes carry the disk's pattern; reads start with it erased, so a request that "succeeds"
     * without the data arriving is caught. */
    for (uint32_t i = 0; i < per; i++, d += BENCH_BLOCK / 4) {
        d[0] = j->write ? block + i : 0;
        d[1] = j->write ? BENCH_MAGIC : 0;
    }
    struct avail *av = (struct avail *)(uintptr_t)j->avail;
    av->ring[j->avail_idx % BENCH_QSIZE] = (uint16_t)(3 * slot);
    j->avail_idx = (uint16_t)(j->avail_idx + 1);
}

static void publish(struct bench_job *j)
{
    struct avail *av = (struct avail *)(uintptr_t)j->avail;
    volatile struct used *u = (volatile struct used *)(uintptr_t)j->used;
    compiler_barrier();               /* x86 keeps stores in order: entries before idx */
    *(volatile uint16_t *)&av->idx = (uint16_t)j->avail_idx;
    full_barrier();
    if (!(u->flags & USED_F_NO_NOTIFY)) {
        mmio_write16(j->doorbell, 0); /* the queue's index */
        j->kicks++;
    }
}

static void complete(struct bench_job *j, uint32_t slot)
{
    struct bench_blk_hdr *h = (struct bench_blk_hdr *)(uintptr_t)j->hdrs + slot;
    uint8_t st = *(volatile uint8_t *)((uint8_t *)(uintptr_t)j->status + slot);
    j->requests++;
    if (st != 0) {
        j->errors++;
        return;
    }
    if (j->write)
        return;
    uint32_t per = j->req_bytes / BENCH_BLOCK, block = (uint32_t)(h->sector / (BENCH_BLOCK / 512));
    const uint32_t *d = (const uint32_t *)(uintptr_t)(j->data + slot * j->req_bytes);
    for (uint32_t i = 0; i < per; i++, d += BENCH_BLOCK / 4) {
        if (d[0] == block + i && d[1] == BENCH_MAGIC)
            continue;
        if (!j->bad_data++) {
            j->first_bad_block = block + i;
            j->first_bad_word = d[0];
        }
    }
}

static void io(struct bench_job *j)
{
    struct bench_desc *desc = (struct bench_desc *)(uintptr_t)j->desc;
    volatile struct used *u = (volatile struct used *)(uintptr_t)j->used;
    uint16_t write_flag = j->write ? 0 : BENCH_DESC_WRITE;
    for (uint32_t s = 0; s < j->qd; s++) {
        desc[3 * s] = (struct bench_desc){ j->hdrs + 16 * s, 16, BENCH_DESC_NEXT, (uint16_t)(3 * s + 1) };
        desc[3 * s + 1] = (struct bench_desc){ j->data + s * j->req_bytes, j->req_bytes,
                                               (uint16_t)(BENCH_DESC_NEXT | write_flag), (uint16_t)(3 * s + 2) };
        desc[3 * s + 2] = (struct bench_desc){ j->status + s, 1, BENCH_DESC_WRITE, 0 };
    }
    ((struct avail *)(uintptr_t)j->avail)->flags = AVAIL_F_NO_INTERRUPT;

    uint64_t duration = j->tsc_hz * j->duration_ms / 1000, stall = j->tsc_hz;
    uint64_t start = rdtsc(), now = start, progress = start;
    for (uint32_t s = 0; s < j->qd; s++)
        submit(j, s);
    publish(j);
    uint32_t inflight = j->qd;
    bool stopping = false;
    while (inflight) {
        uint16_t idx = u->idx;
        if (idx == (uint16_t)j->used_idx) {
            if (rdtsc() - progress > stall) {
                j->stalled = 1;
                break;
            }
            continue;
        }
        compiler_barrier();           /* x86 keeps loads in order: idx before the entries */
        now = progress = rdtsc();
        if (now - start >= duration)
            stopping = true;
        bool added = false;
        while ((uint16_t)j->used_idx != idx) {
            uint32_t slot = u->ring[j->used_idx % BENCH_QSIZE].id / 3;
            j->used_idx = (uint16_t)(j->used_idx + 1);
            complete(j, slot);
            if (stopping) {
                inflight--;
            } else {
                submit(j, slot);
                added = true;
            }
        }
        if (added)
            publish(j);
    }
    j->ticks = now - start;
}

/* The entry point (first in the binary: -ffunction-sections names this .text.user_main). */
uint32_t user_main(struct bench_job *j);
uint32_t user_main(struct bench_job *j)
{
    uint64_t t0;
    switch (j->op) {
    case BENCH_OP_CALIBRATE:
        j->tsc_hz = calibrate();
        return 0;
    case BENCH_OP_IO:
        io(j);
        return j->stalled;
    case BENCH_OP_KICK:
        t0 = rdtsc();
        for (uint32_t i = 0; i < j->count; i++)
            mmio_write16(j->doorbell, 0);
        j->ticks = rdtsc() - t0;
        return 0;
    case BENCH_OP_PIO:
        t0 = rdtsc();
        for (uint32_t i = 0; i < j->count; i++)
            outb(PORT_TESTDEV, (uint8_t)i);
        j->ticks = rdtsc() - t0;
        return 0;
    }
    return 1;
}
