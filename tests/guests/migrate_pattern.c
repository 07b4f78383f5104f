/* Tier A guest for snapshots and migration: like QEMU's migration-test guest it keeps
 * incrementing one byte in every page of a memory range, and checks each byte before it
 * increments it, so RAM lost or mixed up by a save + restore is caught by the guest itself.
 * The LAPIC timer and the PIT tick meanwhile and must keep ticking; a second vCPU, when the
 * MADT lists one, runs the same pattern over its own range with interrupts off; a virtio-rng,
 * when there is one (--rng, on PCI or virtio-mmio), must answer one polled request every pass. */
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
#define STALL_PASSES    8u             /* a timer that does not move in this many passes is dead */

#define LAPIC_VECTOR    0x40
#define LAPIC_COUNT     625000u        /* KVM's 1 GHz APIC bus / 16 / 625000 = 100 Hz */
#define TRAMPOLINE_BASE 0x8000u        /* SIPI vector 0x08 */
#define ICR_INIT        0x00004500u
#define ICR_SIPI        0x00004600u

static volatile uint32_t lapic_ticks;
volatile uint32_t ap_started;          /* set by the AP's start-up code */
static volatile uint32_t ap_passes;
static volatile uint32_t ap_bad_page;  /* non-zero: the AP found this page wrong */
static volatile uint32_t ap_bad_value;
uint8_t ap_stack[4096] __attribute__((aligned(16)));

void ap_main(void);

/* --- a polling virtio-rng driver: one queue of RNG_QSIZE, one 16-byte request a pass --- */
#define RNG_QSIZE 8
static struct {
    struct { uint64_t addr; uint32_t len; uint16_t flags, next; } desc[RNG_QSIZE]
        __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[RNG_QSIZE], used_event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[RNG_QSIZE]; uint16_t ev; } used
        __attribute__((aligned(4)));
} rng_ring;
static uint8_t rng_buf[16];
static uintptr_t rng_common, rng_doorbell;
static bool rng_mmio;                      /* the doorbell is virtio-mmio's 32-bit QueueNotify */
static uint16_t rng_avail_idx;
static uint32_t rng_answers;

static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static uint8_t pci_read8(unsigned slot, unsigned off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

/* Finds the virtio-rng, enables it and its queue 0; false if there is none. */
static bool rng_setup(void)
{
    for (unsigned slot = 0; slot < 32; slot++) {
        if (pci_read32(slot, 0) != (PCI_DEVICE_RNG << 16 | PCI_VENDOR_VIRTIO))
            continue;
        outl(0xcf8, 0x80000000u | (slot << 11) | 0x04);
        outl(0xcfc, inl(0xcfc) | 0x6);                    /* memory decoding, bus master */
        uintptr_t notify = 0;
        uint32_t mult = 0;
        for (unsigned cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
            if (pci_read8(slot, cap) != 0x09)
                continue;
            uintptr_t at = (pci_read32(slot, 0x10 + 4 * pci_read8(slot, cap + 4)) & ~0xfu) +
                           pci_read32(slot, cap + 8);
            if (pci_read8(slot, cap + 3) == 1)
                rng_common = at;
            else if (pci_read8(slot, cap + 3) == 2) {
                notify = at;
                mult = pci_read32(slot, cap + 16);
            }
        }
        uintptr_t c = rng_common;
        mmio_write8(c + CC_STATUS, 0);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER);
        mmio_write32(c + CC_GFSELECT, 1);
        mmio_write32(c + CC_GF, F_VERSION_1);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        mmio_write16(c + CC_Q_SELECT, 0);
        mmio_write16(c + CC_Q_SIZE, RNG_QSIZE);
        mmio_write16(c + CC_Q_MSIX, 0xffff);               /* polled: no interrupts */
        mmio_write32(c + CC_Q_DESC, (uint32_t)(uintptr_t)rng_ring.desc);
        mmio_write32(c + CC_Q_DRIVER, (uint32_t)(uintptr_t)&rng_ring.avail);
        mmio_write32(c + CC_Q_DEVICE, (uint32_t)(uintptr_t)&rng_ring.used);
        rng_doorbell = notify + mmio_read16(c + CC_Q_NOFF) * mult;
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

static bool rng_setup_mmio(void)
{
    for (uintptr_t w = MMIO_WINDOWS; w < MMIO_WINDOWS + MMIO_COUNT * MMIO_SIZE; w += MMIO_SIZE) {
        if (mmio_read32(w) != 0x74726976 || mmio_read32(w + 0x04) != 2 ||
            mmio_read32(w + 0x08) != 4)
            continue;                                   /* not "virt", version 2, entropy */
        mmio_write32(w + 0x070, 0);
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER);
        mmio_write32(w + 0x024, 1);                     /* driver features, high word */
        mmio_write32(w + 0x020, F_VERSION_1);
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        mmio_write32(w + 0x030, 0);                     /* queue 0 */
        mmio_write32(w + 0x038, RNG_QSIZE);
        mmio_write32(w + 0x080, (uint32_t)(uintptr_t)rng_ring.desc);
        mmio_write32(w + 0x090, (uint32_t)(uintptr_t)&rng_ring.avail);
        mmio_write32(w + 0x0a0, (uint32_t)(uintptr_t)&rng_ring.used);
        mmio_write32(w + 0x044, 1);                     /* ready */
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
        rng_doorbell = w + 0x050;
        rng_mmio = true;
        return (mmio_read32(w + 0x070) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
    }
    return false;
}

/* One request: 16 device-writable bytes; waits (bounded) for the device to use it. */
static void rng_request(uint32_t pass)
{
    uint16_t head = rng_avail_idx % RNG_QSIZE;
    rng_ring.desc[head].addr = (uint32_t)(uintptr_t)rng_buf;
    rng_ring.desc[head].len = sizeof(rng_buf);
    rng_ring.desc[head].flags = 2;                       /* device-writable */
    rng_ring.avail.ring[head] = head;
    __asm__ volatile("" : : : "memory");
    rng_ring.avail.idx = ++rng_avail_idx;
    if (rng_mmio)
        mmio_write32(rng_doorbell, 0);              /* the queue's index */
    else
        mmio_write16(rng_doorbell, 0);
    for (uint32_t spin = 0; *(volatile uint16_t *)&rng_ring.used.idx != rng_avail_idx; spin++)
        if (spin > 2000000)
            guest_fail("pass %u: the virtio-rng did not answer request %u (used index %u)", pass,
                       rng_avail_idx, *(volatile uint16_t *)&rng_ring.used.idx);
    if (rng_ring.used.ring[head].len != sizeof(rng_buf))
        guest_fail("pass %u: the virtio-rng wrote %u bytes, want %u", pass,
                   rng_ring.used.ring[head].len, (unsigned)sizeof(rng_buf));
    rng_answers++;
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
    bool ap = start_ap();
    bool rng = rng_setup() || rng_setup_mmio();
    kprintf("migrate_pattern: %s; BSP pages 0x%x-0x%x, %u passes%s\n",
            ap ? "2 vCPUs (the AP dirties 0x800000-0xffffff)" : "1 vCPU", BSP_RANGE_START,
            BSP_RANGE_END, PASSES, !rng ? "" : rng_mmio ? "; a virtio-rng (mmio) answers every pass"
                                                        : "; a virtio-rng answers every pass");

    uint32_t lapic_seen[STALL_PASSES] = { 0 }, pit_seen[STALL_PASSES] = { 0 };
    uint32_t ap_seen[STALL_PASSES] = { 0 };
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
        /* Timers and the AP must move: compare with STALL_PASSES passes ago. */
        unsigned slot = pass % STALL_PASSES;
        if (pass > STALL_PASSES) {
            if (lapic_ticks == lapic_seen[slot])
                guest_fail("the LAPIC timer stopped (%u ticks)", lapic_ticks);
            if (pit_ticks == pit_seen[slot])
                guest_fail("the PIT stopped (%u ticks)", pit_ticks);
            if (ap && ap_passes == ap_seen[slot])
                guest_fail("the AP stopped (%u passes)", ap_passes);
        }
        if (rng)
            rng_request(pass);
        lapic_seen[slot] = lapic_ticks;
        pit_seen[slot] = pit_ticks;
        ap_seen[slot] = ap_passes;
        kprintf("migrate_pattern: pass %u lapic %u pit %u ap %u rng %u\n", pass, lapic_ticks,
                pit_ticks, ap_passes, rng_answers);
    }
    cli();
    for (uint32_t a = BSP_RANGE_START; a < BSP_RANGE_END; a += PAGE)
        if (*(volatile uint8_t *)(uintptr_t)a != (uint8_t)PASSES)
            guest_fail("page 0x%x is wrong after the last pass", a);
    kprintf("migrate_pattern: all %u passes consistent\n", PASSES);
    return 0;
}
