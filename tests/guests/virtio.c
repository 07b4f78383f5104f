/* Tier A guest: a hostile virtio-pci driver. It breaks the virtqueue rules on a virtio-rng in
 * every way kvmkit must survive, checks the device then reports NEEDS_RESET, that a reset brings
 * it back, and that a virtio-blk disk next to it keeps working throughout. */
#include "lib/guest.h"
#include "lib/virtio_pci.h"

const char guest_name[] = "virtio";

/* --- PCI configuration space (mechanism #1) --- */

static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static void pci_write32(unsigned slot, unsigned off, uint32_t v)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    outl(0xcfc, v);
}

static uint8_t pci_read8(unsigned slot, unsigned off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

/* --- virtio-pci modern registers: lib/virtio_pci.h --- */

#define F_INDIRECT     (1u << 28)   /* low feature word */

#define DESC_NEXT      1
#define DESC_WRITE     2
#define DESC_INDIRECT  4

#define QSIZE 16

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
} __attribute__((packed));

struct ring {
    struct desc desc[QSIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[QSIZE], used_event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t avail_event; }
        used __attribute__((aligned(4)));
};

struct vdev {
    const char *name;
    unsigned slot;
    uintptr_t common, notify, isr;
    uint32_t notify_mult;
    uintptr_t doorbell;
    struct ring *r;
    uint16_t avail_idx, used_seen;
};

static struct ring rng_ring, blk_ring;
static struct desc big_table[1100] __attribute__((aligned(16)));
static struct desc nested_table[2] __attribute__((aligned(16)));
static uint8_t buf[4096] __attribute__((aligned(16)));
static uint8_t sector[512];
static uint8_t blk_hdr[16], blk_status;

static bool find(struct vdev *d, uint16_t device_id)
{
    for (unsigned slot = 0; slot < 32; slot++) {
        uint32_t id = pci_read32(slot, 0);
        if ((id & 0xffff) != PCI_VENDOR_VIRTIO || (id >> 16) != device_id)
            continue;
        d->slot = slot;
        pci_write32(slot, 0x04, pci_read32(slot, 0x04) | 0x6); /* memory decoding, bus master */
        for (unsigned cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
            if (pci_read8(slot, cap) != 0x09)
                continue;
            uint8_t type = pci_read8(slot, cap + 3);
            /* kvmkit uses BAR 0, QEMU a 64-bit BAR 4: take the one the capability names (and
             * only its low half: both place it below 4 GiB). */
            uint32_t bar = pci_read32(slot, 0x10 + 4 * pci_read8(slot, cap + 4)) & ~0xfu;
            uintptr_t at = bar + pci_read32(slot, cap + 8);
            if (type == 1)
                d->common = at;
            else if (type == 2) {
                d->notify = at;
                d->notify_mult = pci_read32(slot, cap + 16);
            } else if (type == 3)
                d->isr = at;
        }
        kprintf("virtio: %s in slot %u, common configuration at 0x%x\n", d->name, slot,
                (unsigned)d->common);
        return d->common && d->notify;
    }
    return false;
}

static uint8_t status(struct vdev *d) { return mmio_read8(d->common + CC_STATUS); }

static void reset(struct vdev *d)
{
    mmio_write8(d->common + CC_STATUS, 0);
    for (int i = 0; i < 1000 && status(d) != 0; i++)
        ;
}

/* Resets and brings up queue 0 with fresh rings; returns false if the device refused. */
static bool setup(struct vdev *d, bool indirect)
{
    reset(d);
    memset(d->r, 0, sizeof(*d->r));
    d->avail_idx = d->used_seen = 0;
    mmio_write8(d->common + CC_STATUS, ST_ACK | ST_DRIVER);
    mmio_write32(d->common + CC_DFSELECT, 1);
    if (!(mmio_read32(d->common + CC_DF) & F_VERSION_1))
        return false;
    mmio_write32(d->common + CC_GFSELECT, 0);
    mmio_write32(d->common + CC_GF, indirect ? F_INDIRECT : 0);
    mmio_write32(d->common + CC_GFSELECT, 1);
    mmio_write32(d->common + CC_GF, F_VERSION_1);
    mmio_write8(d->common + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(status(d) & ST_FEATURES_OK))
        return false;
    mmio_write16(d->common + CC_Q_SELECT, 0);
    mmio_write16(d->common + CC_Q_SIZE, QSIZE);
    mmio_write16(d->common + CC_Q_MSIX, 0xffff); /* no interrupts: this driver polls */
    mmio_write32(d->common + CC_Q_DESC, (uint32_t)(uintptr_t)d->r->desc);
    mmio_write32(d->common + CC_Q_DESC + 4, 0);
    mmio_write32(d->common + CC_Q_DRIVER, (uint32_t)(uintptr_t)&d->r->avail);
    mmio_write32(d->common + CC_Q_DRIVER + 4, 0);
    mmio_write32(d->common + CC_Q_DEVICE, (uint32_t)(uintptr_t)&d->r->used);
    mmio_write32(d->common + CC_Q_DEVICE + 4, 0);
    d->doorbell = d->notify + mmio_read16(d->common + CC_Q_NOFF) * d->notify_mult;
    mmio_write16(d->common + CC_Q_ENABLE, 1);
    mmio_write8(d->common + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    return (status(d) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
}

/* Makes head available (optionally publishing a different avail index) and rings. */
static void kick(struct vdev *d, uint16_t head, int idx_override)
{
    d->r->avail.ring[d->avail_idx % QSIZE] = head;
    __asm__ volatile("" : : : "memory");
    d->avail_idx++;
    d->r->avail.idx = idx_override >= 0 ? (uint16_t)idx_override : d->avail_idx;
    __asm__ volatile("lock; addl $0, (%%esp)" : : : "memory"); /* the device must see the ring */
    mmio_write16(d->doorbell, 0);
}

/* Waits for the next used entry; returns its length, or -1 if none came. */
static int wait_used(struct vdev *d)
{
    for (long i = 0; i < 20000000; i++) {
        if (*(volatile uint16_t *)&d->r->used.idx != d->used_seen) {
            int len = (int)d->r->used.ring[d->used_seen % QSIZE].len;
            d->used_seen++;
            return len;
        }
        __asm__ volatile("pause");
    }
    return -1;
}

static bool wait_needs_reset(struct vdev *d)
{
    for (long i = 0; i < 2000000; i++) {
        if (status(d) & ST_NEEDS_RESET)
            return true;
        __asm__ volatile("pause");
    }
    return false;
}

static struct vdev rng = { .name = "virtio-rng", .r = &rng_ring };
static struct vdev blk = { .name = "virtio-blk", .r = &blk_ring };

/* A good entropy request: a reset device must serve it. */
static bool rng_works(void)
{
    if (!setup(&rng, false))
        return false;
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)buf, 64, DESC_WRITE, 0 };
    kick(&rng, 0, -1);
    return wait_used(&rng) > 0;
}

/* Reads sector 0 of the disk and compares it with what the runner wrote there. */
static bool blk_works(void)
{
    memset(blk_hdr, 0, sizeof(blk_hdr)); /* type IN, sector 0 */
    memset(sector, 0, sizeof(sector));
    blk_status = 0xff;
    struct desc *t = blk.r->desc;
    t[0] = (struct desc){ (uint32_t)(uintptr_t)blk_hdr, 16, DESC_NEXT, 1 };
    t[1] = (struct desc){ (uint32_t)(uintptr_t)sector, 512, DESC_WRITE | DESC_NEXT, 2 };
    t[2] = (struct desc){ (uint32_t)(uintptr_t)&blk_status, 1, DESC_WRITE, 0 };
    kick(&blk, 0, -1);
    int len = wait_used(&blk);
    static const char want[] = "kvmkit tier A disk, sector 0";
    return len == 513 && blk_status == 0 && memcmp(sector, want, sizeof(want) - 1) == 0;
}

static int failures;

/* One hostile case: `attack` breaks the rules on a freshly set-up rng; the rng must report
 * NEEDS_RESET, the disk must go on working, and a reset must bring the rng back. */
static void hostile(const char *what, bool indirect, void (*attack)(void))
{
    if (!setup(&rng, indirect)) {
        kprintf("virtio: BAD %s: the device did not start\n", what);
        failures++;
        return;
    }
    attack();
    bool nr = wait_needs_reset(&rng);
    bool disk = blk_works();
    bool back = rng_works();
    kprintf("virtio: %s %s: %s, disk %s, after reset %s\n", nr && disk && back ? "ok " : "BAD",
            what, nr ? "NEEDS_RESET" : "no NEEDS_RESET", disk ? "works" : "BROKEN",
            back ? "works" : "BROKEN");
    failures += !(nr && disk && back);
}

static void head_out_of_range(void) { kick(&rng, QSIZE + 3, -1); }

static void chain_loop(void)
{
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)buf, 8, DESC_WRITE | DESC_NEXT, 1 };
    rng.r->desc[1] = (struct desc){ (uint32_t)(uintptr_t)buf, 8, DESC_WRITE | DESC_NEXT, 0 };
    kick(&rng, 0, -1);
}

static void outside_ram(void)
{
    rng.r->desc[0] = (struct desc){ 0x20000000u, 64, DESC_WRITE, 0 }; /* 512 MiB: no RAM there */
    kick(&rng, 0, -1);
}

static void indirect_not_negotiated(void)
{
    nested_table[0] = (struct desc){ (uint32_t)(uintptr_t)buf, 8, DESC_WRITE, 0 };
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)nested_table, 16, DESC_INDIRECT, 0 };
    kick(&rng, 0, -1);
}

static void nested_indirect(void)
{
    nested_table[0] = (struct desc){ (uint32_t)(uintptr_t)nested_table, 32, DESC_INDIRECT, 0 };
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)nested_table, 32, DESC_INDIRECT, 0 };
    kick(&rng, 0, -1);
}

static void over_long_chain(void)
{
    unsigned n = sizeof(big_table) / sizeof(big_table[0]);
    for (unsigned i = 0; i < n; i++)
        big_table[i] = (struct desc){ (uint32_t)(uintptr_t)buf, 1,
                                      DESC_WRITE | (i + 1 < n ? DESC_NEXT : 0), (uint16_t)(i + 1) };
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)big_table, sizeof(big_table),
                                    DESC_INDIRECT, 0 };
    kick(&rng, 0, -1);
}

static void avail_idx_jump(void)
{
    rng.r->desc[0] = (struct desc){ (uint32_t)(uintptr_t)buf, 8, DESC_WRITE, 0 };
    kick(&rng, 0, QSIZE + 5);
}

static void size_changed_after_enable(void)
{
    mmio_write16(rng.common + CC_Q_SELECT, 0);
    mmio_write16(rng.common + CC_Q_SIZE, QSIZE / 2);
}

int guest_main(const struct multiboot_info *mbi)
{
    (void)mbi;
    if (!find(&rng, PCI_DEVICE_RNG) || !find(&blk, PCI_DEVICE_BLK))
        guest_fail("no virtio-rng and virtio-blk on PCI bus 0 (run with --rng --disk)");
    if (!setup(&blk, false))
        guest_fail("virtio-blk did not start");
    if (!blk_works())
        guest_fail("virtio-blk: reading sector 0 failed (status %u)", blk_status);
    if (!rng_works())
        guest_fail("virtio-rng: a good request was not served");
    kprintf("virtio: good requests served by both devices\n");

    hostile("head index out of range", false, head_out_of_range);
    hostile("descriptor loop", false, chain_loop);
    hostile("buffer outside RAM", false, outside_ram);
    hostile("indirect without the feature", false, indirect_not_negotiated);
    hostile("nested indirect table", true, nested_indirect);
    hostile("chain of 1100 descriptors", true, over_long_chain);
    hostile("avail index ahead by more than the size", false, avail_idx_jump);
    hostile("queue size changed after enable", false, size_changed_after_enable);
    return failures;
}
