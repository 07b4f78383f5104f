/* The ICH9 LPC bridge (8086:2918) at 00:1f.0 that Q35 firmware programs: PMBASE and ACPI_CNTL place the ACPI registers, PIRQ routing and RCBA are stored, and the reset control register at port 0xCF9 resets the machine. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "hw/pci.h"
#include "hw/pci_int.h"
#include "lib/le.h"
#include "lib/log.h"
#include "vmm/device.h"

#define LPC_SLOT               31
#define LPC_VENDOR             0x8086
#define LPC_DEVICE             0x2918
#define LPC_REVISION           0x02      /* ICH9 A2, as QEMU's */
#define LPC_CLASS              0x060100  /* ISA bridge */
#define QEMU_SUBSYSTEM_VENDOR  0x1af4
#define QEMU_SUBSYSTEM         0x1100

/* PMBASE (0x40, 32 bits): bits 15:7 the base of the 128-byte ACPI I/O block, bit 0 (resource
 * type: I/O) reads 1. ACPI_CNTL (0x44): ACPI_EN (bit 7) and the SCI's IRQ (bits 2:0, 0 = IRQ
 * 9, the only one the FADT and the DSDT describe). */
#define LPC_PMBASE             0x40
#define LPC_PMBASE_RTE         0x1
#define LPC_PMBASE_MASK        0xff80
#define LPC_PM_BLOCK           0x80      /* what the LPC decodes at PMBASE */
#define LPC_ACPI_CNTL          0x44
#define LPC_ACPI_CNTL_EN       0x80
#define LPC_ACPI_CNTL_WMASK    0x87
/* PIRQA-D (0x60-0x63) and PIRQE-H (0x68-0x6b): IRQEN# (bit 7, set = not routed) and the ISA
 * IRQ (bits 3:0). Stored only: kvmkit's INTx reach the IOAPIC at the GSIs of its _PRT. */
#define LPC_PIRQA              0x60
#define LPC_PIRQE              0x68
#define LPC_PIRQ_DEFAULT       0x80
#define LPC_PIRQ_WMASK         0x8f
/* RCBA (0xf0): the root complex register block's base (bits 31:14) and enable (bit 0). Stored
 * only: nothing kvmkit boots reads the block. */
#define LPC_RCBA               0xf0
#define LPC_RCBA_WMASK         0xffffc001u
/* Reset control (port 0xCF9): SYS_RST (bit 1) and FULL_RST (bit 3) are stored; writing
 * RST_CPU (bit 2) resets the machine, as QEMU's ICH9 does. */
#define RST_CNT_SYS_RST        0x02
#define RST_CNT_RST_CPU        0x04
#define RST_CNT_FULL_RST       0x08

struct ich9_lpc {
	struct pci_device pdev;
	struct pci_bus *bus;
	struct acpi_pm *pm;            /* NULL: a machine without the ACPI registers */
	uint16_t pm_base;              /* where they decode; under the bus's cfg_lock */
	struct machine_handle machine;
	uint8_t rst_cnt;               /* under the bus's cfg_lock */
};

/* With ACPI_EN set, the ACPI registers decode at PMBASE. Clearing ACPI_EN leaves them where
 * they are (kvmkit's FADT always describes them); a base that something else decodes, or 0, is
 * refused and they stay too. Inside the PCI I/O window (SeaBIOS's 0xb000) the window makes
 * room: it steps aside while they move, then comes back around them. */
static void lpc_pm_apply(struct ich9_lpc *l)
{
	pthread_mutex_lock(&l->pdev.lock);
	uint16_t base = (uint16_t)(le_get(l->pdev.config + LPC_PMBASE, 2) & LPC_PMBASE_MASK);
	uint8_t cntl = l->pdev.config[LPC_ACPI_CNTL];
	pthread_mutex_unlock(&l->pdev.lock);
	if (!(cntl & LPC_ACPI_CNTL_EN) || !l->pm)
		return;
	if (cntl & ~LPC_ACPI_CNTL_EN)
		log_debug("ICH9 LPC: SCI on IRQ select %u; it stays on IRQ 9", cntl & 7u);
	if (base == l->pm_base)
		return;
	pci_io_window_gap(l->bus, 0, 0x10000);
	int r = acpi_pm_set_base(l->pm, base);
	if (r < 0)
		log_debug("ICH9 LPC: ACPI registers cannot move to 0x%x: %s", base, strerror(-r));
	else
		l->pm_base = base;
	r = pci_io_window_gap(l->bus, l->pm_base, LPC_PM_BLOCK);
	if (r < 0)
		log_error("ICH9 LPC: the PCI I/O window is lost: %s", strerror(-r));
}

static void lpc_config_access(struct pci_device *d, uint32_t off, uint8_t *data, uint32_t len,
			      bool is_write)
{
	(void)data;
	if (is_write && pci_overlaps(off, len, LPC_PMBASE, LPC_ACPI_CNTL + 1 - LPC_PMBASE))
		lpc_pm_apply(d->opaque);
}

void ich9_lpc_rst_cnt(struct pci_bus *bus, uint8_t *data, bool is_write)
{
	struct ich9_lpc *l = bus->lpc;
	if (!is_write) {
		*data = l->rst_cnt;
		return;
	}
	if (*data & RST_CNT_RST_CPU) {
		l->rst_cnt = 0;
		machine_request_stop(&l->machine, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
		return;
	}
	l->rst_cnt = *data & (RST_CNT_SYS_RST | RST_CNT_FULL_RST);
}

int ich9_lpc_create(struct pci_bus *bus, const struct device_ctx *ctx)
{
	struct ich9_lpc *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->bus = bus;
	l->machine = ctx->machine;
	l->pm_base = PORT_ACPI_PM1A_EVT; /* acpi_pm's power-on place */
	/* The machine's table creates the ACPI registers before the bus. */
	l->pm = ctx->registry ? device_find(ctx->registry, &acpi_pm_ops, 0) : NULL;
	struct pci_device *d = &l->pdev;
	d->config_access = lpc_config_access;
	d->opaque = l;
	/* Above the header, which pci_device_register writes; it keeps these. */
	le_put(d->config + LPC_PMBASE, 4, LPC_PMBASE_RTE);
	le_put(d->wmask + LPC_PMBASE, 4, LPC_PMBASE_MASK);
	d->wmask[LPC_ACPI_CNTL] = LPC_ACPI_CNTL_WMASK;
	for (unsigned i = 0; i < 4; i++) {
		d->config[LPC_PIRQA + i] = d->config[LPC_PIRQE + i] = LPC_PIRQ_DEFAULT;
		d->wmask[LPC_PIRQA + i] = d->wmask[LPC_PIRQE + i] = LPC_PIRQ_WMASK;
	}
	le_put(d->wmask + LPC_RCBA, 4, LPC_RCBA_WMASK);
	static const struct pci_device_info info = {
		.vendor_id = LPC_VENDOR,
		.device_id = LPC_DEVICE,
		.subsystem_vendor_id = QEMU_SUBSYSTEM_VENDOR,
		.subsystem_id = QEMU_SUBSYSTEM,
		.revision = LPC_REVISION,
		.class_code = LPC_CLASS,
		.multifunction = true, /* 00:1f.2 (SATA) and 00:1f.3 (SMBus) on QEMU's q35 */
	};
	int r = pci_device_register_slot(bus, d, &info, LPC_SLOT);
	if (r < 0) {
		free(l);
		return r;
	}
	bus->lpc = l;
	return 0;
}

void ich9_lpc_destroy(struct pci_bus *bus)
{
	if (!bus->lpc)
		return;
	pci_device_unregister(&bus->lpc->pdev);
	free(bus->lpc);
	bus->lpc = NULL;
}

void ich9_lpc_sync(struct pci_bus *bus)
{
	if (bus->lpc)
		lpc_pm_apply(bus->lpc);
}
