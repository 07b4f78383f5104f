/* bench_blk's ring-3 side: 64-bit code (lib/user.h explains why) that runs the hot loops the
 * ring-0 side (bench_blk.c) asks for. No data of its own: everything is behind the job. */
#include "bench_blk.h"
#include "lib/bench_user.h"

#define VIRTIO_BLK_T_IN   0
#define VIRTIO_BLK_T_OUT  1

struct avail {
    uint16_t flags, idx, ring[BENCH_QSIZE];
};

struct used {
    uint16_t flags, idx;
    struct { uint32_t id, len; } ring[BENCH_QSIZE];
};

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
        int idx = bench_wait_used(&u->idx, j->used_idx, &progress, stall);
        if (idx < 0) {
            j->stalled = 1;
            break;
        }
        now = progress;
        if (now - start >= duration)
            stopping = true;
        bool added = false;
        while ((uint16_t)j->used_idx != (uint16_t)idx) {
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
    switch (j->op) {
    case BENCH_OP_CALIBRATE:
        j->tsc_hz = bench_calibrate_tsc();
        return 0;
    case BENCH_OP_IO:
        io(j);
        return j->stalled;
    case BENCH_OP_KICK:
        j->ticks = bench_time_kicks(j->doorbell, 0, j->count);
        return 0;
    case BENCH_OP_PIO:
        j->ticks = bench_time_pio(j->count);
        return 0;
    }
    return 1;
}
