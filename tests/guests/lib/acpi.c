/* Finds and parses the ACPI tables the VMM (or QEMU's SeaBIOS) placed in guest memory. */
#include "acpi.h"

struct acpi_rsdp {
    char sig[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length;        /* revision >= 2 from here on */
    uint64_t xsdt;
    uint8_t ext_checksum, reserved[3];
} __attribute__((packed));

static bool sum_ok(const void *p, uint32_t len)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    while (len--)
        s += *b++;
    return s == 0;
}

static const struct acpi_rsdp *find_rsdp(void)
{
    /* The BIOS search area; kvmkit and SeaBIOS both put the RSDP here. */
    for (uintptr_t a = 0xe0000; a < 0x100000; a += 16) {
        const struct acpi_rsdp *r = (const void *)a;
        if (!memcmp(r->sig, "RSD PTR ", 8) && sum_ok(r, 20))
            return r;
    }
    return NULL;
}

static const struct acpi_header *table_ok(uint64_t addr, const char sig[4])
{
    if (!addr || addr >= 0x100000000ull)
        return NULL;   /* paging is off: only the low 4 GiB are reachable */
    const struct acpi_header *h = (const void *)(uintptr_t)addr;
    if (memcmp(h->sig, sig, 4) || h->length < sizeof(*h) || !sum_ok(h, h->length))
        return NULL;
    return h;
}

const struct acpi_header *acpi_find_table(const char sig[4])
{
    const struct acpi_rsdp *r = find_rsdp();
    if (!r)
        return NULL;
    const struct acpi_header *root = NULL;
    uint32_t entry_size = 4;
    if (r->revision >= 2 && sum_ok(r, r->length < 36 ? 36 : r->length))
        root = table_ok(r->xsdt, "XSDT"), entry_size = 8;
    if (!root)
        root = table_ok(r->rsdt, "RSDT"), entry_size = 4;
    if (!root)
        return NULL;
    const uint8_t *e = (const uint8_t *)(root + 1), *end = (const uint8_t *)root + root->length;
    for (; e + entry_size <= end; e += entry_size) {
        uint64_t addr = 0;
        memcpy(&addr, e, entry_size);
        const struct acpi_header *h = table_ok(addr, sig);
        if (h)
            return h;
    }
    return NULL;
}

/* Points *p and *end at the MADT's entries, which follow its local APIC address and flags. */
static const struct acpi_header *madt_entries(const uint8_t **p, const uint8_t **end)
{
    const struct acpi_header *m = acpi_find_table("APIC");
    if (m) {
        *p = (const uint8_t *)m + sizeof(*m) + 8;
        *end = (const uint8_t *)m + m->length;
    }
    return m;
}

int acpi_madt_cpus(uint32_t *ids, int max)
{
    const uint8_t *p, *end;
    if (!madt_entries(&p, &end))
        return -1;
    int n = 0;
    for (; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
        uint32_t flags, id;
        if (p[0] == 0 && p[1] >= 8) {            /* Processor Local APIC */
            memcpy(&flags, p + 4, 4);
            id = p[3];
        } else if (p[0] == 9 && p[1] >= 16) {    /* Processor Local x2APIC */
            memcpy(&flags, p + 8, 4);
            memcpy(&id, p + 4, 4);
        } else {
            continue;
        }
        if ((flags & 1) && n < max)
            ids[n++] = id;
    }
    return n;
}

unsigned acpi_isa_irq_gsi(unsigned irq)
{
    const uint8_t *p, *end;
    if (!madt_entries(&p, &end))
        return irq;
    for (; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
        uint32_t gsi;
        if (p[0] == 2 && p[1] >= 10 && p[2] == 0 && p[3] == irq) {   /* ISA source override */
            memcpy(&gsi, p + 4, 4);
            return gsi;
        }
    }
    return irq;
}

bool acpi_fadt(struct acpi_fadt_info *out)
{
    const struct acpi_header *f = acpi_find_table("FACP");
    if (!f || f->length < 68)
        return false;
    const uint8_t *b = (const uint8_t *)f;
    uint64_t x_dsdt = 0, x_cnt = 0;
    memcpy(&out->dsdt, b + 40, 4);
    memcpy(&out->smi_cmd, b + 48, 4);
    out->acpi_enable = b[52];
    memcpy(&out->pm1a_cnt, b + 64, 4);
    if (f->length >= 148)
        memcpy(&x_dsdt, b + 140, 8);
    if (x_dsdt && x_dsdt < 0x100000000ull)
        out->dsdt = (uint32_t)x_dsdt;
    if (!out->pm1a_cnt && f->length >= 184 && b[172] == 1) {         /* GAS in I/O space */
        memcpy(&x_cnt, b + 176, 8);
        out->pm1a_cnt = (uint32_t)x_cnt;
    }
    out->pm_tmr = 0;
    if (f->length >= 116 && b[91] == 4) {                             /* PM_TMR_LEN */
        memcpy(&out->pm_tmr, b + 76, 4);
        uint32_t flags;
        memcpy(&flags, b + 112, 4);
        out->pm_tmr_32bit = flags & (1u << 8);
    }
    return true;
}

int acpi_s5_slp_typ(const struct acpi_header *dsdt)
{
    const uint8_t *p = (const uint8_t *)(dsdt + 1), *end = (const uint8_t *)dsdt + dsdt->length;
    for (; p + 8 <= end; p++) {
        /* Name(_S5_, Package(){ SLP_TYPa, ... }): "_S5_", PackageOp 0x12, PkgLength (its lead
         * byte's top two bits count the extra length bytes), NumElements, then the element. */
        if (memcmp(p, "_S5_", 4) || p[4] != 0x12)
            continue;
        const uint8_t *e = p + 5 + 1 + (p[5] >> 6) + 1;
        if (e >= end)
            return -1;
        switch (e[0]) {
        case 0x00: return 0;                               /* ZeroOp */
        case 0x01: return 1;                               /* OneOp */
        case 0x0a: return e + 1 < end ? e[1] : -1;         /* BytePrefix */
        default: return -1;
        }
    }
    return -1;
}
