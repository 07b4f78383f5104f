/* Tier A guest for snapshots and migration: like QEMU's migration-test guest it keeps
 * incrementing one byte in every page of a memory range, and checks each byte before it
 * increments it, so RAM lost or mixed up by a save + restore is caught by the guest itself.
 * The LAPIC timer and the PIT tick meanwhile and must keep ticking; a second vCPU, when the
 * MADT lists one, runs the same pattern over its own range with interrupts off; a virtio-rng
 * and a virtio-blk disk, when there are (--rng, --disk, on PCI or virtio-mmio), must answer
 * polled requests every pass, and the disk must keep what the previous pass wrote. A virtio-net
 * NIC on user-mode networking (--net user) must answer an ARP request for the gateway every
 * pass; a virtio-console (--vconsole) must take the port's output every pass after the
 * MULTIPORT set-up, and its "host open/closed" messages are counted (a restored device sends
 * one, which only a device that kept the port's state can). */
#include "lib/acpi.h"
#include "lib/ap.h"
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
static volatile uint32_t ap_passes;
static volatile uint32_t ap_bad_page;  /* non-zero: the AP found this page wrong */
static volatile uint32_t ap_bad_value;

static void ap_main(void);

/* --- a polling virtio driver (PCI or virtio-mmio): one chain per queue at a time, no
 * interrupts --- */
#define QSIZE 8
#define MAX_QUEUES 4
struct vring {
    struct { uint64_t addr; uint32_t len; uint16_t flags, next; } desc[QSIZE]
        __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[QSIZE], used_event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t ev; } used
        __attribute__((aligned(4)));
};

struct vdev {
    const char *name;
    unsigned nq;
    uint32_t features;          /* the low feature word the driver accepts */
    struct vring *r[MAX_QUEUES];
    uintptr_t doorbell[MAX_QUEUES];
    bool mmio;                  /* the doorbell is virtio-mmio's 32-bit QueueNotify */
    uint16_t avail_idx[MAX_QUEUES];
    uint32_t answers;
};

#define DESC_NEXT  1
#define DESC_WRITE 2

static struct vring rng_ring, blk_ring, net_rings[2], con_rings[4];
static struct vdev rng = { .name = "virtio-rng", .nq = 1, .r = { &rng_ring } };
static struct vdev blk = { .name = "virtio-blk", .nq = 1, .r = { &blk_ring } };
/* Queues: receive, transmit. */
static struct vdev net = { .name = "virtio-net", .nq = 2, .r = { &net_rings[0], &net_rings[1] } };
/* Queues: port 0 receive and transmit, control receive and transmit; MULTIPORT. */
#define PCI_DEVICE_NET     0x1041
#define PCI_DEVICE_CONSOLE 0x1043
#define CON_F_MULTIPORT    (1u << 1)
static struct vdev con = { .name = "virtio-console", .nq = 4, .features = CON_F_MULTIPORT,
                           .r = { &con_rings[0], &con_rings[1], &con_rings[2], &con_rings[3] } };

static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static uint8_t pci_read8(unsigned slot, unsigned off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

/* Finds the PCI function, enables it and its queues; false if there is none. */
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
        mmio_write32(c + CC_GFSELECT, 0);
        mmio_write32(c + CC_GF, d->features);
        mmio_write32(c + CC_GFSELECT, 1);
        mmio_write32(c + CC_GF, F_VERSION_1);
        mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        for (unsigned q = 0; q < d->nq; q++) {
            mmio_write16(c + CC_Q_SELECT, (uint16_t)q);
            mmio_write16(c + CC_Q_SIZE, QSIZE);
            mmio_write16(c + CC_Q_MSIX, 0xffff);           /* polled: no interrupts */
            mmio_write32(c + CC_Q_DESC, (uint32_t)(uintptr_t)d->r[q]->desc);
            mmio_write32(c + CC_Q_DRIVER, (uint32_t)(uintptr_t)&d->r[q]->avail);
            mmio_write32(c + CC_Q_DEVICE, (uint32_t)(uintptr_t)&d->r[q]->used);
            d->doorbell[q] = notify + mmio_read16(c + CC_Q_NOFF) * mult;
            mmio_write16(c + CC_Q_ENABLE, 1);
        }
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
        mmio_write32(w + 0x024, 0);                     /* driver features, low word */
        mmio_write32(w + 0x020, d->features);
        mmio_write32(w + 0x024, 1);                     /* high word */
        mmio_write32(w + 0x020, F_VERSION_1);
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
        for (unsigned q = 0; q < d->nq; q++) {
            mmio_write32(w + 0x030, q);                 /* queue select */
            mmio_write32(w + 0x038, QSIZE);
            mmio_write32(w + 0x080, (uint32_t)(uintptr_t)d->r[q]->desc);
            mmio_write32(w + 0x090, (uint32_t)(uintptr_t)&d->r[q]->avail);
            mmio_write32(w + 0x0a0, (uint32_t)(uintptr_t)&d->r[q]->used);
            mmio_write32(w + 0x044, 1);                 /* ready */
            d->doorbell[q] = w + 0x050;
        }
        mmio_write32(w + 0x070, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
        d->mmio = true;
        return (mmio_read32(w + 0x070) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
    }
    return false;
}

static bool vdev_setup(struct vdev *d, uint16_t pci_device_id, uint32_t virtio_id)
{
    return vdev_setup_pci(d, pci_device_id) || vdev_setup_mmio(d, virtio_id);
}

/* Makes descriptors [0, n) of queue q available as one chain and rings its doorbell. The
 * buffers are described by the caller (vdesc). */
static void vdev_post(struct vdev *d, unsigned q, unsigned n)
{
    struct vring *r = d->r[q];
    for (unsigned i = 0; i + 1 < n; i++) {
        r->desc[i].flags |= DESC_NEXT;
        r->desc[i].next = (uint16_t)(i + 1);
    }
    r->avail.ring[d->avail_idx[q] % QSIZE] = 0;
    __asm__ volatile("" : : : "memory");
    r->avail.idx = ++d->avail_idx[q];
    if (d->mmio)
        mmio_write32(d->doorbell[q], q);                /* the queue's index */
    else
        mmio_write16(d->doorbell[q], (uint16_t)q);
}

/* Whether the device used the chain last posted on queue q. */
static bool vdev_done(struct vdev *d, unsigned q)
{
    return *(volatile uint16_t *)&d->r[q]->used.idx == d->avail_idx[q];
}

/* Waits (bounded) until the device used the chain posted on queue q; returns the bytes it
 * says it wrote. */
static uint32_t vdev_wait(struct vdev *d, unsigned q, uint32_t pass)
{
    uint64_t start = rdtsc();
    while (!vdev_done(d, q))
        if (rdtsc() - start > DEVICE_STALL_TICKS * tsc_per_tick)
            guest_fail("pass %u: the %s did not answer request %u on queue %u (used index %u)",
                       pass, d->name, d->avail_idx[q], q,
                       *(volatile uint16_t *)&d->r[q]->used.idx);
    d->answers++;
    return d->r[q]->used.ring[(d->avail_idx[q] - 1) % QSIZE].len;
}

static uint32_t vdev_request(struct vdev *d, unsigned q, unsigned n, uint32_t pass)
{
    vdev_post(d, q, n);
    return vdev_wait(d, q, pass);
}

static void vdesc(struct vdev *d, unsigned q, unsigned i, void *buf, uint32_t len,
                  uint16_t flags)
{
    d->r[q]->desc[i].addr = (uint32_t)(uintptr_t)buf;
    d->r[q]->desc[i].len = len;
    d->r[q]->desc[i].flags = flags;
}

/* virtio-rng: 16 random bytes. */
static void rng_request(uint32_t pass)
{
    static uint8_t buf[16];
    vdesc(&rng, 0, 0, buf, sizeof(buf), DESC_WRITE);
    uint32_t got = vdev_request(&rng, 0, 1, pass);
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
    vdesc(&blk, 0, 0, &hdr, sizeof(hdr), 0);
    vdesc(&blk, 0, 1, data, 512, type == 0 ? DESC_WRITE : 0);
    vdesc(&blk, 0, 2, &status, 1, DESC_WRITE);
    vdev_request(&blk, 0, 3, pass);
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

static uint32_t vdev_used_len(struct vdev *d, unsigned q)
{
    return d->r[q]->used.ring[(d->avail_idx[q] - 1) % QSIZE].len;
}

/* Fails the test once `what` has not happened for DEVICE_STALL_TICKS. */
static void device_deadline(uint64_t start, const char *what, uint32_t pass)
{
    if (rdtsc() - start > DEVICE_STALL_TICKS * tsc_per_tick)
        guest_fail("pass %u: %s", pass, what);
}

/* virtio-net on user-mode networking: who has 10.0.2.2 (slirp's gateway), tell 10.0.2.15 (the
 * address its DHCP hands out). Without MRG_RXBUF each frame comes in one buffer after the
 * 12-byte virtio_net_hdr_v1. */
#define NET_HDR 12
static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static uint8_t net_rx_buf[NET_HDR + 1514];
static uint32_t net_arp_replies;

static void net_post_rx(void)
{
    vdesc(&net, 0, 0, net_rx_buf, sizeof(net_rx_buf), DESC_WRITE);
    vdev_post(&net, 0, 1);
}

static void net_check(uint32_t pass)
{
    static uint8_t tx[NET_HDR + 42];
    static const uint8_t arp[] = { 0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1 };
    uint8_t *f = tx + NET_HDR;
    memset(f, 0xff, 6);
    memcpy(f + 6, guest_mac, 6);
    memcpy(f + 12, arp, sizeof(arp));
    memcpy(f + 22, guest_mac, 6);
    f[28] = 10, f[29] = 0, f[30] = 2, f[31] = 15;
    f[38] = 10, f[39] = 0, f[40] = 2, f[41] = 2;
    vdesc(&net, 1, 0, tx, sizeof(tx), 0);
    vdev_request(&net, 1, 1, pass);
    /* Other frames (IPv6 router advertisements) may come first. */
    for (uint64_t start = rdtsc();; device_deadline(start, "no ARP reply through virtio-net", pass)) {
        if (!vdev_done(&net, 0))
            continue;
        const uint8_t *g = net_rx_buf + NET_HDR;
        bool reply = vdev_used_len(&net, 0) >= NET_HDR + 42 && g[12] == 0x08 && g[13] == 0x06 &&
                     g[21] == 2 && g[28] == 10 && g[29] == 0 && g[30] == 2 && g[31] == 2;
        net_post_rx();
        if (reply) {
            net_arp_replies++;
            return;
        }
    }
}

/* virtio-console with MULTIPORT: control messages {le32 id, le16 event, le16 value}. */
#define CON_DEVICE_READY 0
#define CON_DEVICE_ADD   1
#define CON_PORT_READY   3
#define CON_PORT_OPEN    6
#define CON_PORT_NAME    7
static uint8_t con_ctrl_in[300];
static bool con_added, con_named;
static uint32_t con_host_msgs;        /* PORT_OPEN: whether a host client is there */

static void con_ctrl_post(void)
{
    vdesc(&con, 2, 0, con_ctrl_in, sizeof(con_ctrl_in), DESC_WRITE);
    vdev_post(&con, 2, 1);
}

static void con_ctrl_send(uint16_t event, uint16_t value, uint32_t pass)
{
    static struct { uint32_t id; uint16_t event, value; } msg;
    msg.id = 0;
    msg.event = event;
    msg.value = value;
    vdesc(&con, 3, 0, &msg, sizeof(msg), 0);
    vdev_request(&con, 3, 1, pass);
}

/* Takes the control messages that came meanwhile. */
static void con_ctrl_poll(void)
{
    while (vdev_done(&con, 2)) {
        uint16_t event = (uint16_t)(con_ctrl_in[4] | con_ctrl_in[5] << 8);
        if (vdev_used_len(&con, 2) >= 8) {
            con_added |= event == CON_DEVICE_ADD;
            con_named |= event == CON_PORT_NAME;
            con_host_msgs += event == CON_PORT_OPEN;
        }
        con_ctrl_post();
    }
}

/* The driver's side of MULTIPORT's set-up: ready, the port added, named and its host end
 * reported; then the guest opens the port. */
static void con_setup(void)
{
    con_ctrl_post();
    con_ctrl_send(CON_DEVICE_READY, 1, 0);
    for (uint64_t start = rdtsc(); !con_added; device_deadline(start, "no DEVICE_ADD", 0))
        con_ctrl_poll();
    con_ctrl_send(CON_PORT_READY, 1, 0);
    for (uint64_t start = rdtsc(); !con_named || !con_host_msgs;
         device_deadline(start, "no PORT_NAME and PORT_OPEN", 0))
        con_ctrl_poll();
    con_ctrl_send(CON_PORT_OPEN, 1, 0);
}

/* Every pass a line to the port (dropped by the device while no client is connected). */
static void con_check(uint32_t pass)
{
    static char line[] = "migrate_pattern: pass ........\n";
    line[22] = (char)('0' + pass / 10 % 10);
    line[23] = (char)('0' + pass % 10);
    con_ctrl_poll();
    vdesc(&con, 1, 0, line, sizeof(line) - 1, 0);
    vdev_request(&con, 1, 1, pass);
}

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

static void ap_main(void)
{
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
    bool ap = ap_start(ap_main);
    bool have_rng = vdev_setup(&rng, PCI_DEVICE_RNG, 4);
    bool have_blk = vdev_setup(&blk, PCI_DEVICE_BLK, 2);
    bool have_net = vdev_setup(&net, PCI_DEVICE_NET, 1);
    bool have_con = vdev_setup(&con, PCI_DEVICE_CONSOLE, 3);
    const char *rng_note = !have_rng ? "" : rng.mmio ? "; a virtio-rng (mmio) answers every pass"
                                                     : "; a virtio-rng answers every pass";
    kprintf("migrate_pattern: %s; BSP pages 0x%x-0x%x, %u passes%s\n",
            ap ? "2 vCPUs (the AP dirties 0x800000-0xffffff)" : "1 vCPU", BSP_RANGE_START,
            BSP_RANGE_END, PASSES, rng_note);
    if (have_blk)
        kprintf("migrate_pattern: a virtio-blk (%s) reads and writes sector 1 every pass\n",
                blk.mmio ? "mmio" : "pci");
    if (have_net) {
        net_post_rx();
        kprintf("migrate_pattern: a virtio-net (%s) gets an ARP reply every pass\n",
                net.mmio ? "mmio" : "pci");
    }
    if (have_con) {
        con_setup();
        kprintf("migrate_pattern: a virtio-console (%s) port takes a line every pass\n",
                con.mmio ? "mmio" : "pci");
    }

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
        if (have_net)
            net_check(pass);
        if (have_con)
            con_check(pass);
        kprintf("migrate_pattern: pass %u lapic %u pit %u ap %u rng %u blk %u arp %u "
                "con_open_msgs %u\n", pass, lapic_ticks, pit_ticks, ap_passes, rng.answers,
                blk.answers, net_arp_replies, con_host_msgs);
    }
    cli();
    for (uint32_t a = BSP_RANGE_START; a < BSP_RANGE_END; a += PAGE)
        if (*(volatile uint8_t *)(uintptr_t)a != (uint8_t)PASSES)
            guest_fail("page 0x%x is wrong after the last pass", a);
    kprintf("migrate_pattern: all %u passes consistent\n", PASSES);
    return 0;
}
