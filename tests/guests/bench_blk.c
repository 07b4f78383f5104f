/* Benchmark guest (not a tier A test; bench/blk.sh runs it): virtio-blk throughput and IOPS.
 * Ring 0 finds the disk, negotiates, sets up one queue and switches to long mode (lib/user.h);
 * the measured loops run natively in 64-bit ring 3 (bench_blk_user.c), which fills the avail
 * ring, rings the doorbell, polls the used ring (no interrupts) and refills. One machine-readable
 * line per measurement, times in TSC ticks:
 *   BENCH calibrate tsc_hz=N
 *   BENCH io name=T write=0|1 random=0|1 bs=N qd=N requests=N bytes=N ticks=N kicks=N errors=N bad=N
 *   BENCH kick n=N ticks=N      (doorbell writes with nothing queued: the notification exit)
 *   BENCH pio n=N ticks=N       (writes to the pc-testdev port 0xe0: an exit to the VMM process)
 * Command line (after the kernel path), all optional: ms=N (per test, default 1000),
 * warm_ms=N (an untimed run before each test, default 200), seq_kib=N (default 64), seq_qd=N
 * (default 16), rand_qd=N (default 32), exits=N (the kick and pio loops, default 20000; 0 skips
 * them), tests=LIST (of seqread,seqwrite,randread,randwrite; default all four, in that order).
 * Exits PASS unless a request failed or read data without the disk's pattern (bench_blk.h). */
#include "bench_blk.h"
#include "lib/bench.h"
#include "lib/guest.h"
#include "lib/virtio_pci.h"
#include "lib/user.h"

const char guest_name[] = "bench_blk";

/* Taken when offered, as Linux does: without it a device may (QEMU does) make every write
 * write-through, and the test would measure fdatasync instead of the device. The loop never
 * sends a flush. */
#define F_BLK_FLUSH    (1u << 9)

/* Buffers for the requests: RAM above the image, the ring-3 code (USER_CODE_BASE) and below the
 * smallest --memory the runner uses; not in .bss, whose zeroing in emulated ring 0 is slow. */
#define DATA_BASE 0x01000000u

/* The split ring: descriptors, avail, used (virtio 1.x 2.7: alignments 16, 2, 4). */
static struct {
    struct bench_desc desc[BENCH_QSIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[BENCH_QSIZE], used_event; } avail;
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[BENCH_QSIZE]; uint16_t avail_event; }
        used __attribute__((aligned(4)));
} ring __attribute__((aligned(4096)));
static struct bench_blk_hdr hdrs[BENCH_MAX_QD] __attribute__((aligned(16)));
static uint8_t status[BENCH_MAX_QD];
static struct bench_job job __attribute__((aligned(8)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));

/* Reset, VERSION_1 (and FLUSH), queue 0 of BENCH_QSIZE without interrupts (the loop polls).
 * Returns the queue's doorbell address, 0 if the device refused. */
static uintptr_t setup(const struct bench_virtio *b)
{
    uint32_t low = bench_virtio_begin(b) & F_BLK_FLUSH;
    if (!bench_virtio_features(b, low))
        return 0;
    uintptr_t doorbell = bench_virtio_queue(b, 0, BENCH_QSIZE, ring.desc, &ring.avail, &ring.used);
    if (!doorbell || !bench_virtio_driver_ok(b))
        return 0;
    return doorbell;
}

/* Whether test `name` is selected (tests= absent: all are). */
static bool opt_test(const char *name)
{
    size_t nl = strlen(name);
    const char *t = bench_opt("tests");
    if (!t)
        return true;
    while (*t && *t != ' ') {
        if (!memcmp(t, name, nl) && (t[nl] == ',' || t[nl] == ' ' || !t[nl]))
            return true;
        while (*t && *t != ' ' && *t != ',')
            t++;
        if (*t == ',')
            t++;
    }
    return false;
}

static void run(uint32_t op)
{
    job.op = op;
    uint32_t rc = user_run(&job, user_stack + sizeof(user_stack));
    if (rc)
        guest_fail("ring-3 job %u failed (%u): no completion for a second after %llu requests",
                   op, rc, job.requests);
}

static void reset_results(void)
{
    job.ticks = job.requests = job.kicks = job.errors = job.bad_data = 0;
    job.first_bad_block = job.first_bad_word = job.stalled = 0;
}

static int failures;

static void io_test(const char *name, bool write, bool random, uint32_t bs, uint32_t qd)
{
    if (!opt_test(name))
        return;
    job.write = write;
    job.random = random;
    job.req_bytes = bs;
    job.qd = qd;
    job.duration_ms = bench_opt_num("warm_ms", 200);
    if (job.duration_ms) {
        reset_results();
        run(BENCH_OP_IO);
    }
    job.duration_ms = bench_opt_num("ms", 1000);
    reset_results();
    run(BENCH_OP_IO);
    kprintf("BENCH io name=%s write=%u random=%u bs=%u qd=%u requests=%llu bytes=%llu ticks=%llu "
            "kicks=%llu errors=%llu bad=%llu\n", name, write, random, bs, qd, job.requests,
            job.requests * bs, job.ticks, job.kicks, job.errors, job.bad_data);
    if (job.errors || job.bad_data) {
        kprintf("bench_blk: %s: %llu requests failed, %llu blocks read wrong (first: block %u "
                "began with 0x%x)\n", name, job.errors, job.bad_data, job.first_bad_block,
                job.first_bad_word);
        failures++;
    }
}

int guest_main(const struct multiboot_info *mbi)
{
    bench_cmdline_init(mbi);
    uint32_t seq_bs = bench_opt_num("seq_kib", 64) * 1024, seq_qd = bench_opt_num("seq_qd", 16);
    uint32_t rand_qd = bench_opt_num("rand_qd", 32);
    if (seq_bs < BENCH_BLOCK || seq_bs > BENCH_MAX_REQ || seq_bs % BENCH_BLOCK)
        guest_fail("seq_kib=%u: want a multiple of 4 up to %u", seq_bs / 1024, BENCH_MAX_REQ / 1024);
    if (!seq_qd || seq_qd > BENCH_MAX_QD || !rand_qd || rand_qd > BENCH_MAX_QD)
        guest_fail("queue depths go from 1 to %u", BENCH_MAX_QD);

    struct bench_virtio b = { 0, 0, 0, 0 };
    if (!bench_virtio_find(PCI_DEVICE_BLK, "virtio-blk", &b))
        guest_fail("no modern virtio-blk on PCI bus 0");
    uint64_t sectors = (uint64_t)mmio_read32(b.device + 4) << 32 | mmio_read32(b.device);
    uintptr_t doorbell = setup(&b);
    if (!doorbell)
        guest_fail("virtio-blk did not start");
    if (sectors < 2 * BENCH_MAX_REQ / 512 || sectors > 0xffffffffull)
        guest_fail("disk of %llu sectors: want %u KiB to 2 TiB", sectors, 2 * BENCH_MAX_REQ / 1024);

    job = (struct bench_job){
        .desc = (uint32_t)(uintptr_t)ring.desc, .avail = (uint32_t)(uintptr_t)&ring.avail,
        .used = (uint32_t)(uintptr_t)&ring.used, .doorbell = (uint32_t)doorbell,
        .hdrs = (uint32_t)(uintptr_t)hdrs, .status = (uint32_t)(uintptr_t)status,
        .data = DATA_BASE, .disk_blocks = (uint32_t)(sectors / (BENCH_BLOCK / 512)), .rng = 2463534242u,
    };
    kprintf("bench_blk: disk of %u MiB, sequential %u KiB x %u, random 4 KiB x %u\n",
            (uint32_t)(sectors / 2048), seq_bs / 1024, seq_qd, rand_qd);

    user_init();
    run(BENCH_OP_CALIBRATE);
    kprintf("BENCH calibrate tsc_hz=%llu\n", job.tsc_hz);

    io_test("seqread", false, false, seq_bs, seq_qd);
    io_test("seqwrite", true, false, seq_bs, seq_qd);
    io_test("randread", false, true, BENCH_BLOCK, rand_qd);
    io_test("randwrite", true, true, BENCH_BLOCK, rand_qd);

    job.count = bench_opt_num("exits", 20000);
    if (job.count) {
        reset_results();
        run(BENCH_OP_KICK);
        kprintf("BENCH kick n=%u ticks=%llu\n", job.count, job.ticks);
        reset_results();
        run(BENCH_OP_PIO);
        kprintf("BENCH pio n=%u ticks=%llu\n", job.count, job.ticks);
    }
    return failures;
}
