/* Ring-0 helpers shared by the benchmark guests (lib/bench.h): virtio-pci discovery and set-up, the command line. */
#include "bench.h"
#include "io.h"
#include "virtio_pci.h"

static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}

static uint8_t pci_read8(unsigned slot, unsigned off)
{
    return (uint8_t)(pci_read32(slot, off) >> (8 * (off & 3)));
}

bool bench_virtio_find(uint16_t device, const char *what, struct bench_virtio *d)
{
    for (unsigned slot = 0; slot < 32; slot++) {
        uint32_t id = pci_read32(slot, 0);
        if ((id & 0xffff) != PCI_VENDOR_VIRTIO || (id >> 16) != device)
            continue;
        outl(0xcf8, 0x80000000u | (slot << 11) | 0x04);
        outl(0xcfc, inl(0xcfc) | 0x6);    /* memory decoding, bus master */
        for (unsigned cap = pci_read8(slot, 0x34); cap; cap = pci_read8(slot, cap + 1)) {
            if (pci_read8(slot, cap) != 0x09)   /* vendor-specific: a virtio capability */
                continue;
            /* The BAR the capability names (kvmkit: BAR 0; QEMU: 64-bit BAR 4, placed below
             * 4 GiB by SeaBIOS here), low half only. */
            uint32_t bar = pci_read32(slot, 0x10 + 4 * pci_read8(slot, cap + 4)) & ~0xfu;
            uintptr_t at = bar + pci_read32(slot, cap + 8);
            switch (pci_read8(slot, cap + 3)) {
            case 1: d->common = at; break;
            case 2: d->notify = at; d->notify_mult = pci_read32(slot, cap + 16); break;
            case 4: d->device = at; break;
            }
        }
        kprintf("%s: %s in slot %u, common configuration at 0x%x\n", guest_name, what, slot,
                (unsigned)d->common);
        return d->common && d->notify && d->device;
    }
    return false;
}

uint32_t bench_virtio_begin(const struct bench_virtio *d)
{
    uintptr_t c = d->common;
    mmio_write8(c + CC_STATUS, 0);
    for (int i = 0; i < 1000 && mmio_read8(c + CC_STATUS) != 0; i++)
        ;
    mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER);
    mmio_write32(c + CC_DFSELECT, 0);
    return mmio_read32(c + CC_DF);
}

bool bench_virtio_features(const struct bench_virtio *d, uint32_t lo)
{
    uintptr_t c = d->common;
    mmio_write32(c + CC_DFSELECT, 1);
    if (!(mmio_read32(c + CC_DF) & F_VERSION_1))
        return false;
    mmio_write32(c + CC_GFSELECT, 0);
    mmio_write32(c + CC_GF, lo);
    mmio_write32(c + CC_GFSELECT, 1);
    mmio_write32(c + CC_GF, F_VERSION_1);
    mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    return mmio_read8(c + CC_STATUS) & ST_FEATURES_OK;
}

uintptr_t bench_virtio_queue(const struct bench_virtio *d, uint16_t q, uint16_t size,
                             const void *desc, const void *avail, const void *used)
{
    uintptr_t c = d->common;
    mmio_write16(c + CC_Q_SELECT, q);
    if (mmio_read16(c + CC_Q_SIZE) < size)
        return 0;
    mmio_write16(c + CC_Q_SIZE, size);
    mmio_write16(c + CC_Q_MSIX, 0xffff);
    mmio_write32(c + CC_Q_DESC, (uint32_t)(uintptr_t)desc);
    mmio_write32(c + CC_Q_DESC + 4, 0);
    mmio_write32(c + CC_Q_DRIVER, (uint32_t)(uintptr_t)avail);
    mmio_write32(c + CC_Q_DRIVER + 4, 0);
    mmio_write32(c + CC_Q_DEVICE, (uint32_t)(uintptr_t)used);
    mmio_write32(c + CC_Q_DEVICE + 4, 0);
    uintptr_t doorbell = d->notify + mmio_read16(c + CC_Q_NOFF) * d->notify_mult;
    mmio_write16(c + CC_Q_ENABLE, 1);
    return doorbell;
}

bool bench_virtio_driver_ok(const struct bench_virtio *d)
{
    uintptr_t c = d->common;
    mmio_write8(c + CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    return (mmio_read8(c + CC_STATUS) & (ST_DRIVER_OK | ST_NEEDS_RESET)) == ST_DRIVER_OK;
}

static const char *cmdline = "";

void bench_cmdline_init(const struct multiboot_info *mbi)
{
    if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
        cmdline = (const char *)(uintptr_t)mbi->cmdline;
}

const char *bench_opt(const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = cmdline; *p; p++)
        if ((p == cmdline || p[-1] == ' ') && !memcmp(p, key, kl) && p[kl] == '=')
            return p + kl + 1;
    return NULL;
}

uint32_t bench_opt_num(const char *key, uint32_t def)
{
    const char *d = bench_opt(key);
    if (!d || *d < '0' || *d > '9')
        return def;
    uint32_t v = 0;
    for (; *d >= '0' && *d <= '9'; d++)
        v = v * 10 + (uint32_t)(*d - '0');
    return v;
}
