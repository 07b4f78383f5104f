/* Tier A guest for snapshots and migration: like QEMU's migration-test guest it keeps
 * incrementing one byte in every page of a memory range, and checks each byte before it
 * increments it, so RAM lost or mixed up by a save + restore is caught by the guest itself.
 * The LAPIC timer and the PIT tick meanwhile and must keep ticking; a second vCPU, when the
 * MADT lists one, runs the same pattern over its own range with interrupts off; a virtio-rng
 * and a virtio-blk disk, when there are (--rng, --disk, on PCI or virtio-mmio), must answer
 * polled requests every pass, and the disk must keep what the previous pass wrote. */
#include "lib/acpi.h"
#include "lib/intr.h"
#include "lib/virtio_pci.h"

const char guest_name[] = "migrate_pattern";

#define BSP_RANGE_START (16u << 20)   /* needs --memory 128M or more */
#define BSP_RANGE_END   (64u << 20)
#define AP_RANGE_START  (8u << 20)
#define AP_RANGE_END    (16u << 20)
#define PAGE            4096u
#define PASSES          60u            /* then a final check and PASS */
/* A timer that does not tick for this many of its periods (TSC time) is dead; the AP and a
 * virtio device get longer (a loaded host may leave a vCPU or the I/O thread unscheduled). */
#define TIMER_STALL_TICKS   100u
#define AP_STALL_TICKS      300u
#define DEVICE_STALL_TICKS  500u

#define LAPIC_VECTOR    0x40
#define LAPIC_COUNT     625000u        /* KVM's 1 GHz APIC bus / 16 / 625000 = 100 Hz */
#define TRAMPOLINE_BASE 0x8000u        /* SIPI vector 0x08 */
#define ICR_INIT        0x00004500u
#define ICR_SIPI        0x00004600u

static volatile uint32_t lapic_ticks;
static uint64_t tsc_per_tick;          /* TSC cycles per 10 ms PIT tick, measured at start */

/* Something that must keep moving: fails the test once it stood still for `limit` ticks. */
struct watch {
    const char *what;
    uint32_t limit;
    uint32_t value;
    uint64_t since;                    /* TSC when value last changed */
};

static void watch_check(struct watch *w, uint32_t value)
{
    uint64_t now = rdtsc();
    if (value != w->value || w->since == 0) {
        w->value = value;
        w->since = now;
    } else if (now - w->since > w->limit * tsc_per_tick) {
        guest_fail("%s stopped at %u", w->what, value);
    }
}
volatile uint32_t ap_started;          /* set by the AP's start-up code */
static volatile uint32_t ap_passes;
static volatile uint32_t ap_bad_page;  /* non-zero: the AP found this page wrong */
static volatile uint32_t ap_bad_value;
uint8_t ap_stack[4096] __attribute__((aligned(16)));

void ap_main(void);

/* --- a polling virtio driver (PCI or virtio-mmio): queue 0 only, no interrupts --- */
#define QSIZE 8
struct vring {
    struct { uint64_t addr; uint32_t len; uint16_t flags, next; } desc[QSIZE]
        __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[QSIZE], used_event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t ev; } used
        __attribute__((aligned(4)));
};

struct vdev {
    const char *name;
    struct vring *r;
    uintptr_t doorbell;
    bool mmio;                  /* the doorbell is virtio-mmio's 32-bit QueueNotify */
    uint16_t avail_idx;
    uint32_t answers;
};

#define DESC_NEXT  1
#define DESC_WRITE 2

static struct vring rng_ring, blk_ring;
static struct vdev rng = { "virtio-rng", &rng_ring, 0, false, 0, 0 };
static struct vdev blk = { "virtio-blk", &blk_ring, 0, false, 0, 0 };

static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static uint8_t pci_read8(unsigned slot, unsigned off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

/* Finds the PCI function, enables it and its queue 0; false if there is none. */
static bool vdev_setup_pci(struct vdev *d, uint16_t pci_device_id)
{
    for (unsigned slot = 0; slot < 32; slot++) {
        if (pci_read32(slot, 0) != ((uint32_t)pci_device_id << 16 | PCI_VENDOR_VIRTIO))
            continue;
        outl(0xcf8, 0x80000000u | (slot << 11) | 0x04);
        outl(0xcfc, inl(0xcfc) | 0x6);                    /* memory decoding, bus master */
        uintptr_t c = 0, notify = 0;
        uint32_t mult = 0;
        for (unsigned cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
            if (pci_read8(slot, cap) != 0x09)
                continue;
            uintptr_t at = (pci_read32(slot, 0x10 + 4 * pci_read8(slot, cap + 4)) & ~0xfu) +
                           pci_read32(slot, cap + 8);
            if (pci_read8(slot, cap + 3) == 1)
                c = at;
            else if (pci_read8(slot, cap + 3) == 2) {
                notify = at;
                mult = pci_read32(slot, cap + 16);
            }
        }
        mmio_write8(c + CC_STATUS, 0);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER);
        mmio_write32(c + CC_GFSELECT, 1);
        mmio_write32(c + CC_GF, F_VERSION_1);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        mmio_write16(c + CC_Q_SELECT, 0);
        mmio_write16(c + CC_Q_SIZE, QSIZE);
        mmio_write16(c + CC_Q_MSIX, 0xffff);               /* polled: no interrupts */
        mmio_write32(c + CC_Q_DESC, (uint32_t)(uintptr_t)d->r->desc);
        mmio_write32(c + CC_Q_DRIVER, (uint32_t)(uintptr_t)&d->r->avail);
        mmio_write32(c + CC_Q_DEVICE, (uint32_t)(uintptr_t)&d->r->used);
        d->doorbell = notify + mmio_read16(c + CC_Q_NOFF) * mult;
        mmio_write16(c + CC_Q_ENABLE, 1);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
        return (mmio_read8(c + CC_STATUS) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
    }
    return false;
}

/* kvmkit's virtio-mmio windows (--transport mmio), virtio 1.x 4.2.2 registers. */
#define MMIO_WINDOWS  0xfe000000u
#define MMIO_SIZE     0x200u
#define MMIO_COUNT    8

static bool vdev_setup_mmio(struct vdev *d, uint32_t virtio_id)
{
    for (uintptr_t w = MMIO_WINDOWS; w < MMIO_WINDOWS + MMIO_COUNT * MMIO_SIZE; w += MMIO_SIZE) {
        if (mmio_read32(w) != 0x74726976 || mmio_read32(w + 0x04) != 2 ||
            mmio_read32(w + 0x08) != virtio_id)
            continue;                                   /* "virt", version 2, the device */
        mmio_write32(w + 0x070, 0);
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER);
        mmio_write32(w + 0x024, 1);                     /* driver features, high word */
        mmio_write32(w + 0x020, F_VERSION_1);
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        mmio_write32(w + 0x030, 0);                     /* queue 0 */
        mmio_write32(w + 0x038, QSIZE);
        mmio_write32(w + 0x080, (uint32_t)(uintptr_t)d->r->desc);
        mmio_write32(w + 0x090, (uint32_t)(uintptr_t)&d->r->avail);
        mmio_write32(w + 0x0a0, (uint32_t)(uintptr_t)&d->r->used);
        mmio_write32(w + 0x044, 1);                     /* ready */
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
        d->doorbell = w + 0x050;
        d->mmio = true;
        return (mmio_read32(w + 0x070) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
    }
    return false;
}

static bool vdev_setup(struct vdev *d, uint16_t pci_device_id, uint32_t virtio_id)
{
    return vdev_setup_pci(d, pci_device_id) || vdev_setup_mmio(d, virtio_id);
}

/* Puts descriptors [0, n) as one chain, rings and waits (bounded) until the device used it;
 * returns the bytes it says it wrote. The buffers are described by the caller in d->r->desc. */
static uint32_t vdev_request(struct vdev *d, unsigned n, uint32_t pass)
{
    for (unsigned i = 0; i + 1 < n; i++) {
        d->r->desc[i].flags |= DESC_NEXT;
        d->r->desc[i].next = (uint16_t)(i + 1);
    }
    d->r->avail.ring[d->avail_idx % QSIZE] = 0;
    __asm__ volatile("" : : : "memory");
    d->r->avail.idx = ++d->avail_idx;
    if (d->mmio)
        mmio_write32(d->doorbell, 0);                   /* the queue's index */
    else
        mmio_write16(d->doorbell, 0);
    uint64_t start = rdtsc();
    while (*(volatile uint16_t *)&d->r->used.idx != d->avail_idx)
        if (rdtsc() - start > DEVICE_STALL_TICKS * tsc_per_tick)
            guest_fail("pass %u: the %s did not answer request %u (used index %u)", pass,
                       d->name, d->avail_idx, *(volatile uint16_t *)&d->r->used.idx);
    d->answers++;
    return d->r->used.ring[(d->avail_idx - 1) % QSIZE].len;
}

static void vdesc(struct vdev *d, unsigned i, void *buf, uint32_t len, uint16_t flags)
{
    d->r->desc[i].addr = (uint32_t)(uintptr_t)buf;
    d->r->desc[i].len = len;
    d->r->desc[i].flags = flags;
}

/* virtio-rng: 16 random bytes. */
static void rng_request(uint32_t pass)
{
    static uint8_t buf[16];
    vdesc(&rng, 0, buf, sizeof(buf), DESC_WRITE);
    uint32_t got = vdev_request(&rng, 1, pass);
    if (got != sizeof(buf))
        guest_fail("pass %u: the virtio-rng wrote %u bytes, want %u", pass, got,
                   (unsigned)sizeof(buf));
}

/* virtio-blk: one sector read or written (type 0 or 1); returns the status byte. */
static uint8_t blk_io(uint32_t type, uint64_t sector, uint8_t *data, uint32_t pass)
{
    static struct { uint32_t type, reserved; uint64_t sector; } hdr;
    static uint8_t status;
    hdr.type = type;
    hdr.sector = sector;
    status = 0xff;
    vdesc(&blk, 0, &hdr, sizeof(hdr), 0);
    vdesc(&blk, 1, data, 512, type == 0 ? DESC_WRITE : 0);
    vdesc(&blk, 2, &status, 1, DESC_WRITE);
    vdev_request(&blk, 3, pass);
    return status;
}

/* Every pass: sector 1 must hold the previous pass's number (written before a save, read after
 * the restore when the save fell between them), then gets this one's, read back at once. */
static void blk_check(uint32_t pass)
{
    static uint8_t sector[512];
    if (blk_io(0, 1, sector, pass) != 0)
        guest_fail("pass %u: virtio-blk read failed", pass);
    uint32_t seen;
    memcpy(&seen, sector, 4);
    if (seen != pass - 1)
        guest_fail("pass %u: disk sector 1 holds pass %u, want %u", pass, seen, pass - 1);
    memcpy(sector, &pass, 4);
    if (blk_io(1, 1, sector, pass) != 0)
        guest_fail("pass %u: virtio-blk write failed", pass);
}

/* The AP's real-mode start: protected mode with the kernel's GDT, a stack, then ap_main. */
__asm__(
    "    .section .rodata\n"
    "    .code16\n"
    "mp_trampoline_start:\n"
    "    cli\n"
    "    mov %cs, %ax\n"
    "    mov %ax, %ds\n"
    "    lgdtl mp_gdtr - mp_trampoline_start\n"
    "    mov %cr0, %eax\n"
    "    or $1, %eax\n"
    "    mov %eax, %cr0\n"
    "    ljmpl $0x08, $(mp_pm32 - mp_trampoline_start + 0x8000)\n"
    "    .code32\n"
    "mp_pm32:\n"
    "    mov $0x10, %ax\n"
    "    mov %ax, %ds\n"
    "    mov %ax, %es\n"
    "    mov %ax, %ss\n"
    "    mov $(ap_stack + 4096), %esp\n"
    "    mov $ap_main, %eax\n"
    "    call *%eax\n"
    "1:  cli\n"
    "    hlt\n"
    "    jmp 1b\n"
    "    .align 4\n"
    "mp_gdtr:\n"
    "    .word 23\n"
    "    .long gdt\n"
    "mp_trampoline_end:\n"
    "    .text\n");
extern const char mp_trampoline_start[], mp_trampoline_end[];

/* One pass over [start, end): every page's first byte must be `pass - 1` (RAM starts zeroed);
 * it becomes `pass`. Returns the first wrong page's address, or 0. */
static uint32_t pattern_pass(uint32_t start, uint32_t end, uint32_t pass, uint8_t *got)
{
    uint8_t want = (uint8_t)(pass - 1);
    for (uint32_t a = start; a < end; a += PAGE) {
        volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)a;
        uint8_t v = *p;
        if (v != want) {
            *got = v;
            return a;
        }
        *p = (uint8_t)pass;
    }
    return 0;
}

void ap_main(void)
{
    ap_started = 1;
    for (uint32_t pass = 1;; pass++) {
        uint8_t got;
        uint32_t bad = pattern_pass(AP_RANGE_START, AP_RANGE_END, pass, &got);
        if (bad) {
            ap_bad_value = got;
            ap_bad_page = bad;
            return;
        }
        ap_passes = pass;
    }
}

static void lapic_timer_irq(struct intr_frame *f)
{
    (void)f;
    lapic_ticks++;
    lapic_eoi();
}

/* Starts the first AP the MADT lists; returns whether one runs. */
static bool start_ap(void)
{
    uint32_t ids[8];
    int n = acpi_madt_cpus(ids, 8);
    uint8_t bsp = lapic_id();
    for (int i = 0; i < n; i++) {
        if (ids[i] == bsp || ids[i] > 0xff)
            continue;
        memcpy((void *)TRAMPOLINE_BASE, mp_trampoline_start,
               (size_t)(mp_trampoline_end - mp_trampoline_start));
        lapic_send_ipi((uint8_t)ids[i], ICR_INIT);
        pit_wait_ticks(2);
        for (int sipi = 0; sipi < 2 && !ap_started; sipi++) {
            lapic_send_ipi((uint8_t)ids[i], ICR_SIPI | (TRAMPOLINE_BASE >> 12));
            for (uint32_t t = pit_ticks; !ap_started && pit_ticks - t < 20;)
                pit_wait_ticks(1);
        }
        return ap_started;
    }
    return false;
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    pic_init();
    lapic_init(true);
    pit_start(100);
    intr_set_handler(LAPIC_VECTOR, lapic_timer_irq);
    lapic_write(LAPIC_TIMER_DIV, 0x3);                       /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | LAPIC_VECTOR);
    lapic_write(LAPIC_TIMER_INIT, LAPIC_COUNT);
    pit_wait_ticks(1);
    uint64_t t0 = rdtsc();
    pit_wait_ticks(5);
    tsc_per_tick = (rdtsc() - t0) / 5;
    bool ap = start_ap();
    bool have_rng = vdev_setup(&rng, PCI_DEVICE_RNG, 4);
    bool have_blk = vdev_setup(&blk, PCI_DEVICE_BLK, 2);
    const char *rng_note = !have_rng ? "" : rng.mmio ? "; a virtio-rng (mmio) answers every pass"
                                                     : "; a virtio-rng answers every pass";
    kprintf("migrate_pattern: %s; BSP pages 0x%x-0x%x, %u passes%s\n",
            ap ? "2 vCPUs (the AP dirties 0x800000-0xffffff)" : "1 vCPU", BSP_RANGE_START,
            BSP_RANGE_END, PASSES, rng_note);
    if (have_blk)
        kprintf("migrate_pattern: a virtio-blk (%s) reads and writes sector 1 every pass\n",
                blk.mmio ? "mmio" : "pci");

    struct watch lapic = { "the LAPIC timer", TIMER_STALL_TICKS, 0, 0 };
    struct watch pit = { "the PIT", TIMER_STALL_TICKS, 0, 0 };
    struct watch ap_progress = { "the AP", AP_STALL_TICKS, 0, 0 };
    sti();
    for (uint32_t pass = 1; pass <= PASSES; pass++) {
        uint8_t got;
        uint32_t bad = pattern_pass(BSP_RANGE_START, BSP_RANGE_END, pass, &got);
        if (bad)
            guest_fail("page 0x%x holds %u in pass %u, want %u: memory was lost or mixed up",
                       bad, got, pass, (pass - 1) & 0xff);
        if (ap_bad_page)
            guest_fail("AP: page 0x%x holds %u, not its pass's value: memory was lost or mixed"
                       " up", ap_bad_page, ap_bad_value);
        /* Timers and the AP must keep moving, across saves and restores too. */
        watch_check(&lapic, lapic_ticks);
        watch_check(&pit, pit_ticks);
        if (ap)
            watch_check(&ap_progress, ap_passes);
        if (have_rng)
            rng_request(pass);
        if (have_blk)
            blk_check(pass);
        kprintf("migrate_pattern: pass %u lapic %u pit %u ap %u rng %u blk %u\n", pass,
                lapic_ticks, pit_ticks, ap_passes, rng.answers, blk.answers);
    }
    cli();
    for (uint32_t a = BSP_RANGE_START; a < BSP_RANGE_END; a += PAGE)
        if (*(volatile uint8_t *)(uintptr_t)a != (uint8_t)PASSES)
            guest_fail("page 0x%x is wrong after the last pass", a);
    kprintf("migrate_pattern: all %u passes consistent\n", PASSES);
    return 0;
}
