/* Benchmark guest (not a tier A test; bench/net.sh runs it): virtio-net frames per second both
 * ways. Ring 0 finds the NIC, negotiates, sets up the receive and transmit queues and switches
 * to long mode (lib/user.h); the measured loops run natively in 64-bit ring 3
 * (bench_net_user.c), which keeps a queue full, polls its used ring (no interrupts) and
 * refills. One machine-readable line per measurement, times in TSC ticks:
 *   BENCH calibrate tsc_hz=N
 *   BENCH setup features=0xHI:LO mrg_rxbuf=0|1 event_idx=0|1 rx_buf=N mac=M
 *   BENCH begin name=T dir=tx|rx size=N          (before each test: the runner's cue)
 *   BENCH mark s / BENCH mark e                  (ring 3, right at the ends of the window)
 *   BENCH net name=T dir=tx|rx size=N frames=N bytes=N ticks=N kicks=N other=N split=N bad=N
 *             wait_ticks=N
 *   BENCH txtotal frames=N                       (every frame sent, warm-ups included)
 *   BENCH kick n=N ticks=N   (transmit doorbell writes with nothing queued: the notification exit)
 *   BENCH pio n=N ticks=N    (writes to the pc-testdev port 0xe0: an exit to the VMM process)
 * TX tests (txN): frames of N bytes (60..1514, Ethernet header included, no FCS) from the
 * device's MAC to 02:6b:76:6d:00:02, EtherType 0x88b5, one descriptor each (header and frame
 * together, as Linux sends a linear frame). RX tests (rxN): N tells the runner what to send;
 * the guest counts the N-byte frames with the benchmark's EtherType and magic (bench_net.h),
 * anything else as other (such as frames of the previous RX test still queued in the tap).
 * Command line (after the kernel path), all optional: ms=N (measured window per test, default
 * 1000), warm_ms=N (steady state before it, default 200), wait_ms=N (RX: the first frame must
 * come within this, default 5000), rx_buf=N (receive buffer bytes, 64..4096, default 1536),
 * exits=N (the kick and pio loops, default 10000; 0 skips them), tests=LIST (of txN and rxN;
 * default tx64,tx1514,rx64,rx1514). Exits PASS unless a loop stalled, no frame came, or the
 * device completed something it was never given. */
#include "bench_net.h"
#include "lib/bench.h"
#include "lib/guest.h"
#include "lib/virtio_pci.h"
#include "lib/user.h"

const char guest_name[] = "bench_net";

#define PCI_DEVICE_NET 0x1041

/* Feature bits (virtio 1.x 5.1.3 and 6). The guest takes what Linux's virtio_net would of
 * what it can use: the offloads (harmless: it never sends GSO frames and counts whatever
 * arrives), MAC, STATUS, MRG_RXBUF, and the ring's EVENT_IDX and INDIRECT_DESC; not the
 * control queue or multiqueue, which need queues this driver does not have. */
#define F_CSUM        (1u << 0)
#define F_GUEST_CSUM  (1u << 1)
#define F_MAC         (1u << 5)
#define F_GUEST_TSO4  (1u << 7)
#define F_GUEST_TSO6  (1u << 8)
#define F_GUEST_ECN   (1u << 9)
#define F_HOST_TSO4   (1u << 11)
#define F_HOST_TSO6   (1u << 12)
#define F_HOST_ECN    (1u << 13)
#define F_MRG_RXBUF   (1u << 15)
#define F_STATUS      (1u << 16)
#define F_INDIRECT    (1u << 28)
#define F_EVENT_IDX   (1u << 29)

/* Buffers: RAM above the image and the ring-3 code (USER_CODE_BASE), below the runner's
 * --memory; not in .bss, whose zeroing in emulated ring 0 is slow. */
#define TX_BUFS 0x01000000u   /* NET_QSIZE * NET_TX_BUF = 512 KiB */
#define RX_BUFS 0x01100000u   /* NET_QSIZE * NET_RX_BUF_MAX = 1 MiB */

/* A split ring (virtio 1.x 2.7: alignments 16, 2, 4). */
struct ring {
    struct net_desc desc[NET_QSIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[NET_QSIZE], used_event; } avail;
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[NET_QSIZE]; uint16_t avail_event; }
        used __attribute__((aligned(4)));
};
static struct ring rings[2] __attribute__((aligned(4096)));   /* queue 0 receive, 1 transmit */
static struct net_job job __attribute__((aligned(8)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));

/* Reset, features, both queues, DRIVER_OK. Returns false if the device refused. */
static bool setup(const struct bench_virtio *n, uint32_t *features_lo)
{
    uint32_t lo = bench_virtio_begin(n) & (F_CSUM | F_GUEST_CSUM | F_MAC | F_GUEST_TSO4 |
        F_GUEST_TSO6 | F_GUEST_ECN | F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN | F_MRG_RXBUF |
        F_STATUS | F_INDIRECT | F_EVENT_IDX);
    /* The spec's dependencies, and big receive frames only into mergeable buffers. */
    if (!(lo & F_GUEST_CSUM) || !(lo & F_MRG_RXBUF))
        lo &= ~(F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_ECN);
    if (!(lo & F_CSUM))
        lo &= ~(F_HOST_TSO4 | F_HOST_TSO6 | F_HOST_ECN);
    if (!(lo & (F_GUEST_TSO4 | F_GUEST_TSO6)))
        lo &= ~F_GUEST_ECN;
    if (!(lo & (F_HOST_TSO4 | F_HOST_TSO6)))
        lo &= ~F_HOST_ECN;
    if (!bench_virtio_features(n, lo))
        return false;
    /* Queue 0 receive, 1 transmit, of NET_QSIZE entries. */
    for (uint16_t q = 0; q < 2; q++) {
        uintptr_t doorbell = bench_virtio_queue(n, q, NET_QSIZE, rings[q].desc, &rings[q].avail,
                                                &rings[q].used);
        if (!doorbell)
            return false;
        (q ? &job.tx : &job.rx)->doorbell = (uint32_t)doorbell;
    }
    if (!bench_virtio_driver_ok(n))
        return false;
    *features_lo = lo;
    return true;
}

/* The test list: tests=... from the command line, or the default. */
static const char *opt_tests(void)
{
    const char *t = bench_opt("tests");
    return t ? t : "tx64,tx1514,rx64,rx1514";
}

static void run(uint32_t op)
{
    job.op = op;
    job.ticks = job.frames = job.bytes = job.kicks = job.other = job.split = job.wait_ticks = 0;
    job.bad = job.stalled = 0;
    uint32_t rc = user_run(&job, user_stack + sizeof(user_stack));
    if (rc && op != NET_OP_RX)
        guest_fail("ring-3 job %u failed (%u): no progress for a second after %llu frames", op,
                   rc, job.frames);
}

static int failures;

/* One test named by the list entry at t (len characters, "txN" or "rxN"). */
static void net_test(const char *t, size_t len)
{
    char name[16];
    uint32_t size = 0;
    bool tx = len > 2 && !memcmp(t, "tx", 2), rx = len > 2 && !memcmp(t, "rx", 2);
    for (size_t i = 2; i < len && (tx || rx); i++) {
        if (t[i] < '0' || t[i] > '9' || size > 100000)
            tx = rx = false;
        else
            size = size * 10 + (uint32_t)(t[i] - '0');
    }
    if ((!tx && !rx) || len >= sizeof(name) || size < NET_MIN_FRAME || size > NET_MAX_FRAME)
        guest_fail("tests=: '%s' is not txN or rxN with N from %u to %u", t, NET_MIN_FRAME,
                   NET_MAX_FRAME);
    memcpy(name, t, len);
    name[len] = 0;
    const char *dir = tx ? "tx" : "rx";

    kprintf("BENCH begin name=%s dir=%s size=%u\n", name, dir, size);
    job.frame_len = size;
    run(tx ? NET_OP_TX : NET_OP_RX);
    kprintf("BENCH net name=%s dir=%s size=%u frames=%llu bytes=%llu ticks=%llu kicks=%llu "
            "other=%llu split=%llu bad=%u wait_ticks=%llu\n", name, dir, size, job.frames,
            job.bytes, job.ticks, job.kicks, job.other, job.split, job.bad, job.wait_ticks);
    if (job.stalled == 2) {
        kprintf("bench_net: %s: no frame came within %u ms\n", name, job.wait_ms);
        failures++;
    } else if (job.stalled) {
        kprintf("bench_net: %s: no frame for a second, the loop gave up\n", name);
        failures++;
    }
    if (job.bad) {
        kprintf("bench_net: %s: %u used entries the driver cannot make sense of\n", name, job.bad);
        failures++;
    }
}

int guest_main(const struct multiboot_info *mbi)
{
    bench_cmdline_init(mbi);
    uint32_t rx_buf = bench_opt_num("rx_buf", 1536);
    if (rx_buf < 64 || rx_buf > NET_RX_BUF_MAX)
        guest_fail("rx_buf=%u: want 64 to %u", rx_buf, NET_RX_BUF_MAX);

    struct bench_virtio n = { 0, 0, 0, 0 };
    if (!bench_virtio_find(PCI_DEVICE_NET, "virtio-net", &n))
        guest_fail("no modern virtio-net on PCI bus 0");
    uint32_t lo = 0;
    if (!setup(&n, &lo))
        guest_fail("virtio-net did not start (it needs VERSION_1 and queues of %u)", NET_QSIZE);
    for (unsigned i = 0; i < 6; i++)
        job.mac[i] = (lo & F_MAC) ? mmio_read8(n.device + i) : (uint8_t)(i ? 0x11 * i : 0x02);
    job.event_idx = !!(lo & F_EVENT_IDX);
    job.mrg_rxbuf = !!(lo & F_MRG_RXBUF);
    if (!job.mrg_rxbuf && rx_buf < NET_HDR_LEN + NET_MAX_FRAME)
        guest_fail("rx_buf=%u: without MRG_RXBUF a buffer must hold %u bytes", rx_buf,
                   NET_HDR_LEN + NET_MAX_FRAME);
    job.rx = (struct net_queue){ .desc = (uint32_t)(uintptr_t)rings[0].desc,
        .avail = (uint32_t)(uintptr_t)&rings[0].avail, .used = (uint32_t)(uintptr_t)&rings[0].used,
        .doorbell = job.rx.doorbell, .bufs = RX_BUFS, .buf_len = rx_buf };
    job.tx = (struct net_queue){ .desc = (uint32_t)(uintptr_t)rings[1].desc,
        .avail = (uint32_t)(uintptr_t)&rings[1].avail, .used = (uint32_t)(uintptr_t)&rings[1].used,
        .doorbell = job.tx.doorbell, .bufs = TX_BUFS, .buf_len = NET_TX_BUF };
    job.warm_ms = bench_opt_num("warm_ms", 200);
    job.duration_ms = bench_opt_num("ms", 1000);
    job.wait_ms = bench_opt_num("wait_ms", 5000);
    if (!job.duration_ms)
        guest_fail("ms=0: the measured window must be at least 1 ms");
    kprintf("BENCH setup features=0x1:%x mrg_rxbuf=%u event_idx=%u rx_buf=%u "
            "mac=%02x:%02x:%02x:%02x:%02x:%02x\n", lo, job.mrg_rxbuf, job.event_idx, rx_buf,
            job.mac[0], job.mac[1], job.mac[2], job.mac[3], job.mac[4], job.mac[5]);

    user_init();
    run(NET_OP_CALIBRATE);
    kprintf("BENCH calibrate tsc_hz=%llu\n", job.tsc_hz);

    const char *t = opt_tests();
    while (*t && *t != ' ') {
        size_t len = 0;
        while (t[len] && t[len] != ' ' && t[len] != ',')
            len++;
        if (len)
            net_test(t, len);
        t += len;
        if (*t == ',')
            t++;
    }
    kprintf("BENCH txtotal frames=%llu\n", job.total);

    job.count = bench_opt_num("exits", 10000);
    if (job.count) {
        run(NET_OP_KICK);
        kprintf("BENCH kick n=%u ticks=%llu\n", job.count, job.ticks);
        run(NET_OP_PIO);
        kprintf("BENCH pio n=%u ticks=%llu\n", job.count, job.ticks);
    }
    return failures;
}
