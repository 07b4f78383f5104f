/* The Q35 MCH host bridge (8086:29C0) at 00:00.0 that SeaBIOS and OVMF look for: PCIEXBAR moves the ECAM, PAM0-6 and SMRAM are stored (PAM's effect on memory is the machine's, through pci_bus_config.pam_changed). */
#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/pci.h"
#include "hw/pci_int.h"
#include "lib/le.h"
#include "lib/log.h"

#define MCH_VENDOR             0x8086
#define MCH_DEVICE             0x29c0
#define MCH_CLASS              0x060000  /* host bridge */
#define QEMU_SUBSYSTEM_VENDOR  0x1af4    /* what QEMU gives its chipset functions */
#define QEMU_SUBSYSTEM         0x1100

/* PCIEXBAR, 64 bits: enable (bit 0), length (bits 2:1: 256, 128 or 64 MiB, 3 reserved) and
 * the base in bits 35:26, of which those below the length are ignored. */
#define MCH_PCIEXBAR           0x60
#define MCH_PCIEXBAR_EN        0x1ULL
#define MCH_PCIEXBAR_LEN_SHIFT 1
#define MCH_PCIEXBAR_LEN_MASK  0x6ULL
#define MCH_PCIEXBAR_ADDR_MASK 0xffc000000ULL     /* bits 35:26 */
#define MCH_PCIEXBAR_256M      (256ULL << 20)

/* PAM0 (0x90) holds only the 0xF0000 segment's enables (bits 5:4); PAM1-6 two segments each. */
#define MCH_PAM0               0x90
#define MCH_PAM0_WMASK         0x30
#define MCH_PAM_WMASK          0x33

/* SMRAM (0x9d): C_BASE_SEG (bits 2:0) reads 010 (A-segment); G_SMRAME, D_LCK, D_CLS, D_OPEN
 * are stored. Once D_LCK is set, D_OPEN reads 0 and only D_CLS may change until reset, and
 * ESMRAMC (0x9e) is frozen too. */
#define MCH_SMRAM              0x9d
#define MCH_SMRAM_DEFAULT      0x02
#define MCH_SMRAM_G_SMRAME     0x08
#define MCH_SMRAM_D_LCK        0x10
#define MCH_SMRAM_D_CLS        0x20
#define MCH_SMRAM_D_OPEN       0x40
#define MCH_SMRAM_WMASK        (MCH_SMRAM_D_OPEN | MCH_SMRAM_D_CLS | MCH_SMRAM_D_LCK | \
				MCH_SMRAM_G_SMRAME)
#define MCH_ESMRAMC            0x9e
#define MCH_ESMRAMC_DEFAULT    0x38
#define MCH_ESMRAMC_WMASK      0x87      /* H_SMRAME, TSEG size, T_EN */

/* Where PCIEXBAR points at power-on: the ECAM of kvmkit's own tables, so a guest that is not
 * started by firmware still finds it (real chipsets start disabled; firmware rewrites it). */
#define MCH_PCIEXBAR_DEFAULT   (LAYOUT_PCI_ECAM_BASE | MCH_PCIEXBAR_EN)

static uint64_t mch_pciexbar(const struct pci_device *d)
{
	return le_get(d->config + MCH_PCIEXBAR, 4) |
	       (uint64_t)le_get(d->config + MCH_PCIEXBAR + 4, 4) << 32;
}

/* The ECAM follows PCIEXBAR. A value it cannot follow (the reserved length, a base outside
 * the 32-bit hole: over RAM, the IOAPIC or LAPIC, or 0) stays in the register as written and
 * decodes nowhere, so a guest cannot put config space over anything else. */
static void mch_pciexbar_apply(struct pci_bus *bus)
{
	pthread_mutex_lock(&bus->host.lock);
	uint64_t v = mch_pciexbar(&bus->host);
	pthread_mutex_unlock(&bus->host.lock);
	uint64_t base = 0, size = 0;
	if (v & MCH_PCIEXBAR_EN) {
		unsigned len = (unsigned)((v & MCH_PCIEXBAR_LEN_MASK) >> MCH_PCIEXBAR_LEN_SHIFT);
		size = len < 3 ? MCH_PCIEXBAR_256M >> len : 0;
		base = v & MCH_PCIEXBAR_ADDR_MASK & ~(size - 1);
	}
	if (size && pci_ecam_move(bus, base, size) == 0)
		return;
	if (v & MCH_PCIEXBAR_EN)
		log_debug("Q35: PCIEXBAR 0x%llx cannot be decoded: the ECAM is off",
			  (unsigned long long)v);
	pci_ecam_move(bus, 0, 0);
}

/* Tells the machine about every PAM register that changed since it was last told. */
static void mch_pam_apply(struct pci_bus *bus)
{
	uint8_t pam[Q35_PAM_COUNT];
	pthread_mutex_lock(&bus->host.lock);
	memcpy(pam, bus->host.config + MCH_PAM0, sizeof(pam));
	pthread_mutex_unlock(&bus->host.lock);
	for (unsigned i = 0; i < Q35_PAM_COUNT; i++) {
		if (pam[i] == bus->pam_seen[i])
			continue;
		bus->pam_seen[i] = pam[i];
		if (bus->cfg.pam_changed)
			bus->cfg.pam_changed(bus->cfg.pam_opaque, i, pam[i]);
	}
}

/* D_LCK: what the guest may still change (see MCH_SMRAM). */
static void mch_smram_apply(struct pci_bus *bus)
{
	struct pci_device *d = &bus->host;
	pthread_mutex_lock(&d->lock);
	if (d->config[MCH_SMRAM] & MCH_SMRAM_D_LCK) {
		d->config[MCH_SMRAM] &= (uint8_t)~MCH_SMRAM_D_OPEN;
		d->wmask[MCH_SMRAM] = MCH_SMRAM_D_CLS;
		d->wmask[MCH_ESMRAMC] = 0;
	}
	pthread_mutex_unlock(&d->lock);
}

static void mch_config_access(struct pci_device *d, uint32_t off, uint8_t *data, uint32_t len,
			      bool is_write)
{
	struct pci_bus *bus = d->opaque;
	(void)data;
	if (!is_write)
		return;
	if (pci_overlaps(off, len, MCH_PCIEXBAR, 8))
		mch_pciexbar_apply(bus);
	if (pci_overlaps(off, len, MCH_PAM0, Q35_PAM_COUNT))
		mch_pam_apply(bus);
	if (pci_overlaps(off, len, MCH_SMRAM, 1))
		mch_smram_apply(bus);
}

void q35_mch_init(struct pci_bus *bus, struct pci_device_info *info)
{
	*info = (struct pci_device_info){
		.vendor_id = MCH_VENDOR,
		.device_id = MCH_DEVICE,
		.subsystem_vendor_id = QEMU_SUBSYSTEM_VENDOR,
		.subsystem_id = QEMU_SUBSYSTEM,
		.revision = 0,
		.class_code = MCH_CLASS,
	};
	/* Above the header, which pci_device_register writes; it keeps these. */
	struct pci_device *d = &bus->host;
	d->config_access = mch_config_access;
	d->opaque = bus;
	le_put(d->config + MCH_PCIEXBAR, 8, MCH_PCIEXBAR_DEFAULT);
	le_put(d->wmask + MCH_PCIEXBAR, 8,
	       MCH_PCIEXBAR_ADDR_MASK | MCH_PCIEXBAR_LEN_MASK | MCH_PCIEXBAR_EN);
	d->wmask[MCH_PAM0] = MCH_PAM0_WMASK;
	memset(d->wmask + MCH_PAM0 + 1, MCH_PAM_WMASK, Q35_PAM_COUNT - 1);
	d->config[MCH_SMRAM] = MCH_SMRAM_DEFAULT;
	d->wmask[MCH_SMRAM] = MCH_SMRAM_WMASK;
	d->config[MCH_ESMRAMC] = MCH_ESMRAMC_DEFAULT;
	d->wmask[MCH_ESMRAMC] = MCH_ESMRAMC_WMASK;
	/* The power-on ECAM: LAYOUT_PCI_ECAM_BASE, 256 MiB (bus 0 is the only one decoded). */
	bus->ecam_base = LAYOUT_PCI_ECAM_BASE;
	bus->ecam_size = MCH_PCIEXBAR_256M;
}

void q35_mch_sync(struct pci_bus *bus)
{
	mch_pciexbar_apply(bus);
	mch_pam_apply(bus);
	mch_smram_apply(bus);
}
