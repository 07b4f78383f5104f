/* bench_net's ring-3 side: 64-bit code (lib/user.h explains why) that runs the hot loops the
 * ring-0 side (bench_net.c) asks for. No data of its own: everything is behind the job. */
#include "bench_net.h"
#include "lib/bench_user.h"

#define Q_RX 0
#define Q_TX 1
#define PORT_COM1     0x3f8
#define HDR_NUM_BUFFERS 10         /* offset of num_buffers in struct virtio_net_hdr_v1 */

struct avail {
    uint16_t flags, idx, ring[NET_QSIZE], used_event;
};

struct used {
    uint16_t flags, idx;
    struct { uint32_t id, len; } ring[NET_QSIZE];
    uint16_t avail_event;
};

/* --- time --- */

/* "BENCH mark c" on COM1, straight from ring 3 (the runner samples the host's counters when it
 * reads it). 13 bytes: they fit the 16550A's FIFO once THR is empty. */
static void mark(char c)
{
    const char line[] = { 'B', 'E', 'N', 'C', 'H', ' ', 'm', 'a', 'r', 'k', ' ', c, '\n' };
    for (int i = 0; i < 100000 && !(inb(PORT_COM1 + 5) & 0x20); i++)
        pause();
    for (unsigned i = 0; i < sizeof(line); i++)
        outb(PORT_COM1, (uint8_t)line[i]);
}

/* --- the rings --- */

static struct avail *avail_of(const struct net_queue *q) { return (struct avail *)(uintptr_t)q->avail; }
static volatile struct used *used_of(const struct net_queue *q) { return (volatile struct used *)(uintptr_t)q->used; }
static uint8_t *buf_of(const struct net_queue *q, uint32_t id) { return (uint8_t *)(uintptr_t)(q->bufs + id * q->buf_len); }

/* Makes buffer id available again (publish() hands it to the device). */
static void post(struct net_queue *q, uint32_t id)
{
    avail_of(q)->ring[q->avail_idx % NET_QSIZE] = (uint16_t)id;
    q->avail_idx = (uint16_t)(q->avail_idx + 1);
}

/* Publishes avail_idx and rings the doorbell if the device wants it: with EVENT_IDX when the
 * new entries pass its avail_event (virtio 1.x 2.7.10), else unless it set NO_NOTIFY. */
static void publish(struct net_job *j, struct net_queue *q, uint16_t qindex)
{
    volatile struct used *u = used_of(q);
    compiler_barrier();               /* x86 keeps stores in order: entries before idx */
    *(volatile uint16_t *)&avail_of(q)->idx = (uint16_t)q->avail_idx;
    full_barrier();
    uint16_t new_idx = (uint16_t)q->avail_idx, old = (uint16_t)q->kick_idx;
    q->kick_idx = new_idx;
    bool kick;
    if (j->event_idx) {
        uint16_t ev = u->avail_event;
        kick = (uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old);
    } else {
        kick = !(u->flags & USED_F_NO_NOTIFY);
    }
    if (kick) {
        mmio_write16(q->doorbell, qindex);
        j->kicks++;
    }
}

/* No interrupts, please: the NO_INTERRUPT flag, and with EVENT_IDX a used_event the used index
 * passes once in 65536 entries (what Linux writes when it polls). */
static void no_interrupts(struct net_queue *q)
{
    struct avail *av = avail_of(q);
    av->flags = AVAIL_F_NO_INTERRUPT;
    av->used_event = 0;
}

/* --- transmit --- */

/* Builds the frames of all NET_QSIZE slots: header (no offloads), the dummy destination
 * 02:6b:76:6d:00:02, the device's MAC, the benchmark's EtherType and magic, the slot number. */
static void tx_frames(struct net_job *j)
{
    static const uint8_t dst[6] = { 0x02, 0x6b, 0x76, 0x6d, 0x00, 0x02 };
    struct net_queue *q = &j->tx;
    struct net_desc *desc = (struct net_desc *)(uintptr_t)q->desc;
    for (uint32_t s = 0; s < NET_QSIZE; s++) {
        uint8_t *b = buf_of(q, s), *f = b + NET_HDR_LEN;
        for (uint32_t i = 0; i < NET_HDR_LEN + j->frame_len; i++)
            b[i] = 0;
        for (int i = 0; i < 6; i++) {
            f[i] = dst[i];
            f[6 + i] = j->mac[i];
        }
        f[12] = NET_ETHERTYPE >> 8;
        f[13] = NET_ETHERTYPE & 0xff;
        *(uint32_t *)(f + 14) = NET_MAGIC;
        *(uint32_t *)(f + 18) = s;
        desc[s] = (struct net_desc){ q->bufs + s * q->buf_len, NET_HDR_LEN + j->frame_len, 0, 0 };
    }
}

/* Keeps the transmit queue full: warm-up, then the measured window (between the marks), then
 * drains what is in flight. */
static uint32_t tx(struct net_job *j)
{
    struct net_queue *q = &j->tx;
    volatile struct used *u = used_of(q);
    tx_frames(j);
    no_interrupts(q);

    uint64_t hz = j->tsc_hz, stall = hz, warm = hz * j->warm_ms / 1000;
    uint64_t duration = hz * j->duration_ms / 1000;
    uint64_t now = rdtsc(), progress = now, start = now;
    uint64_t frames = 0, kicks0 = 0;
    enum { WARM, MEASURE, DRAIN } phase = WARM;
    if (!warm) {
        mark('s');
        now = progress = start = rdtsc();
        phase = MEASURE;
    }
    uint64_t warm_end = now + warm;
    for (uint32_t s = 0; s < NET_QSIZE; s++)
        post(q, s);
    publish(j, q, Q_TX);
    uint32_t inflight = NET_QSIZE;
    while (inflight) {
        int idx = bench_wait_used(&u->idx, q->used_idx, &progress, stall);
        if (idx < 0) {
            j->stalled = 1;
            break;
        }
        now = progress;
        bool added = false;
        while ((uint16_t)q->used_idx != (uint16_t)idx) {
            uint32_t id = u->ring[q->used_idx % NET_QSIZE].id;
            q->used_idx = (uint16_t)(q->used_idx + 1);
            j->total++;
            if (phase != WARM)
                frames++;
            if (id >= NET_QSIZE) {    /* never given: nothing to send again */
                j->bad++;
                inflight--;
            } else if (phase == DRAIN) {
                inflight--;
            } else {
                post(q, id);
                added = true;
            }
        }
        if (added)
            publish(j, q, Q_TX);
        if (phase == WARM && now >= warm_end) {
            mark('s');
            now = progress = start = rdtsc();
            kicks0 = j->kicks;
            phase = MEASURE;
        } else if (phase == MEASURE && now - start >= duration) {
            phase = DRAIN;
        }
    }
    j->ticks = now - start;
    j->frames = frames;
    j->bytes = frames * j->frame_len;
    j->kicks -= kicks0;
    mark('e');
    return j->stalled;
}

/* --- receive --- */

/* Posts every buffer once; they stay posted (each used one is posted again at once). */
static void rx_prime(struct net_job *j)
{
    struct net_queue *q = &j->rx;
    struct net_desc *desc = (struct net_desc *)(uintptr_t)q->desc;
    for (uint32_t s = 0; s < NET_QSIZE; s++) {
        desc[s] = (struct net_desc){ q->bufs + s * q->buf_len, q->buf_len, NET_DESC_WRITE, 0 };
        post(q, s);
    }
    no_interrupts(q);
    q->primed = 1;
    publish(j, q, Q_RX);
}

struct rx_count {
    uint64_t frames, bytes, other;
};

/* Takes the used entries up to idx (more if a frame's buffers are not all there yet), counts
 * the frames and posts the buffers again. Returns the used index it got to. */
static uint16_t rx_batch(struct net_job *j, uint16_t idx, struct rx_count *c)
{
    struct net_queue *q = &j->rx;
    volatile struct used *u = used_of(q);
    while ((uint16_t)q->used_idx != idx) {
        uint32_t id = u->ring[q->used_idx % NET_QSIZE].id, len = u->ring[q->used_idx % NET_QSIZE].len;
        if (id >= NET_QSIZE || len < NET_HDR_LEN || len > q->buf_len) {
            j->bad++;
            q->used_idx = (uint16_t)(q->used_idx + 1);
            if (id < NET_QSIZE)
                post(q, id);
            continue;
        }
        const uint8_t *b = buf_of(q, id);
        uint32_t nbuf = j->mrg_rxbuf ? *(const volatile uint16_t *)(b + HDR_NUM_BUFFERS) : 1;
        if (nbuf == 0 || nbuf > NET_QSIZE) {
            j->bad++;
            nbuf = 1;
        }
        if ((uint16_t)(idx - q->used_idx) < nbuf) {
            /* The device published the first buffers of a frame before the rest (Linux's
             * driver would drop such a frame as "buffers missing"): wait for the rest. */
            j->split++;
            uint64_t t0 = rdtsc();
            while ((uint16_t)((idx = u->idx) - q->used_idx) < nbuf)
                if (rdtsc() - t0 > j->tsc_hz) {
                    j->bad++;
                    return idx;
                }
            compiler_barrier();
        }
        uint64_t frame = len - NET_HDR_LEN;
        bool ours = len >= NET_HDR_LEN + 18 && b[NET_HDR_LEN + 12] == (NET_ETHERTYPE >> 8) &&
                    b[NET_HDR_LEN + 13] == (NET_ETHERTYPE & 0xff) &&
                    *(const uint32_t *)(b + NET_HDR_LEN + 14) == NET_MAGIC;
        post(q, id);
        q->used_idx = (uint16_t)(q->used_idx + 1);
        for (uint32_t k = 1; k < nbuf; k++) {
            uint32_t more = u->ring[q->used_idx % NET_QSIZE].id;
            frame += u->ring[q->used_idx % NET_QSIZE].len;
            if (more < NET_QSIZE)
                post(q, more);
            else
                j->bad++;
            q->used_idx = (uint16_t)(q->used_idx + 1);
        }
        if (ours && frame == j->frame_len) {
            c->frames++;
            c->bytes += frame;
        } else {
            c->other++;
        }
    }
    return idx;
}

/* Keeps every receive buffer posted while the host sends: waits for the first frame, warm-up,
 * then the measured window (between the marks). */
static uint32_t rx(struct net_job *j)
{
    struct net_queue *q = &j->rx;
    volatile struct used *u = used_of(q);
    if (!q->primed)
        rx_prime(j);
    uint64_t hz = j->tsc_hz, stall = hz, warm = hz * j->warm_ms / 1000;
    uint64_t duration = hz * j->duration_ms / 1000, wait = hz * j->wait_ms / 1000;
    uint64_t t0 = rdtsc(), now = t0, progress = t0, start = t0, warm_end = 0;
    struct rx_count warmc = { 0, 0, 0 }, c = { 0, 0, 0 };
    uint64_t kicks0 = 0;
    enum { WAIT, WARM, MEASURE } phase = WAIT;
    for (;;) {
        uint16_t idx = u->idx;
        if (idx == (uint16_t)q->used_idx) {
            uint64_t t = rdtsc();
            if (phase == WAIT && t - t0 > wait) {
                j->stalled = 2;
                return 2;
            }
            if (phase != WAIT && t - progress > stall) {
                j->stalled = 1;
                break;
            }
            continue;
        }
        compiler_barrier();           /* x86 keeps loads in order: idx before the entries */
        now = progress = rdtsc();
        if (phase == WAIT) {
            j->wait_ticks = now - t0;
            warm_end = now + warm;
            phase = WARM;
        }
        rx_batch(j, idx, phase == MEASURE ? &c : &warmc);
        publish(j, q, Q_RX);
        if (phase == WARM && now >= warm_end) {
            mark('s');
            now = progress = start = rdtsc();
            kicks0 = j->kicks;
            phase = MEASURE;
        } else if (phase == MEASURE && now - start >= duration) {
            break;
        }
    }
    j->ticks = now - start;
    j->frames = c.frames;
    j->bytes = c.bytes;
    j->other = c.other;
    j->kicks -= kicks0;
    mark('e');
    return j->stalled;
}

/* The entry point (first in the binary: -ffunction-sections names this .text.user_main). */
uint32_t user_main(struct net_job *j);
uint32_t user_main(struct net_job *j)
{
    switch (j->op) {
    case NET_OP_CALIBRATE:
        j->tsc_hz = bench_calibrate_tsc();
        return 0;
    case NET_OP_TX:
        return tx(j);
    case NET_OP_RX:
        return rx(j);
    case NET_OP_KICK:
        j->ticks = bench_time_kicks(j->tx.doorbell, Q_TX, j->count);
        return 0;
    case NET_OP_PIO:
        j->ticks = bench_time_pio(j->count);
        return 0;
    }
    return 1;
}
