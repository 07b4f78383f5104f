/* What pci.c (the bus and its devices) and pci_state.c (their snapshots) share: the register
 * layout, the bus's and MSI-X's state, and the few helpers a restore calls. Not for devices:
 * they use hw/pci.h. */
#ifndef KVMKIT_HW_PCI_INT_H
#define KVMKIT_HW_PCI_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/pci.h"
#include "vmm/device.h"

#define Q35_PAM_COUNT 7

/* Type 0 configuration header */
enum {
	PCI_VENDOR_ID = 0x00,
	PCI_DEVICE_ID = 0x02,
	PCI_COMMAND = 0x04,
	PCI_STATUS = 0x06,
	PCI_REVISION_ID = 0x08,
	PCI_CLASS_PROG = 0x09,        /* prog-if, subclass, class: 3 bytes */
	PCI_CACHE_LINE_SIZE = 0x0c,
	PCI_LATENCY_TIMER = 0x0d,
	PCI_HEADER_TYPE = 0x0e,
	PCI_BASE_ADDRESS_0 = 0x10,
	PCI_SUBSYSTEM_VENDOR_ID = 0x2c,
	PCI_SUBSYSTEM_ID = 0x2e,
	PCI_CAPABILITY_LIST = 0x34,
	PCI_INTERRUPT_LINE = 0x3c,
	PCI_INTERRUPT_PIN = 0x3d,
	PCI_HEADER_END = 0x40,        /* capabilities start here */
	PCI_STD_CONFIG_END = 0x100,   /* capability pointers are 8 bits */
};

#define PCI_COMMAND_IO           0x0001
#define PCI_COMMAND_MEMORY       0x0002
#define PCI_COMMAND_MASTER       0x0004
#define PCI_COMMAND_PARITY       0x0040
#define PCI_COMMAND_SERR         0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400
/* What a guest may change in the command register; the rest (special cycles, MWI, VGA
 * snooping, fast back-to-back) does not exist on a virtual bus and reads 0. */
#define PCI_COMMAND_WMASK (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | \
			   PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)
#define PCI_STATUS_INTERRUPT     0x0008
#define PCI_STATUS_CAP_LIST      0x0010

#define PCI_BAR_IO               0x1
#define PCI_BAR_MEM_TYPE_64      0x4
#define PCI_BAR_IO_MASK          0xfffcu      /* I/O BARs decode 16 bits: x86 has 64 Ki ports */
#define PCI_BAR_MEM_MASK         0xfffffff0u

/* Mechanism #1 address register: enable, bus, device, function, register (bits 7:2), and
 * AMD's extension putting register bits 11:8 in bits 27:24, which Linux uses on AMD hosts
 * when it cannot use the ECAM. Other bits read as 0. */
#define CF8_ENABLE               0x80000000u
#define CF8_MASK                 0x8ffffffcu

/* MSI-X capability body (after ID and next pointer) and table entries */
#define MSIX_CAP_LEN             10          /* message control 2, table 4, PBA 4 */
#define MSIX_CTRL_ENABLE         0x8000
#define MSIX_CTRL_FUNCTION_MASK  0x4000
#define MSIX_MAX_VECTORS         2048
#define MSIX_ENTRY_SIZE          16
#define MSIX_ENTRY_VECTOR_CTRL   12
#define MSIX_ENTRY_CTRL_MASKBIT  0x1

struct msix_vector {
	uint8_t entry[MSIX_ENTRY_SIZE]; /* address lo, address hi, data, vector control */
	int gsi;                        /* -1 until register */
	int efd;                        /* eventfd bound to gsi by an irqfd, -1 until register */
	bool routed;                    /* the GSI's route holds routed_addr/routed_data */
	uint64_t routed_addr;
	uint32_t routed_data;
};

struct pci_msix {
	unsigned n;
	int bar;
	uint64_t table_off, pba_off;
	uint8_t cap;                    /* offset of the capability in config space */
	struct msix_vector *v;
	uint64_t *pba;                  /* pending bits, (n + 63) / 64 words */
};

struct ich9_lpc;

struct pci_bus {
	struct irq_sender irq;          /* INTx lines and MSI-X routes */
	struct pci_bus_config cfg;      /* q35 and its hooks */
	struct bus *pio, *mmio;
	pthread_mutex_t cfg_lock;
	pthread_rwlock_t map_lock;
	uint32_t cf8;                   /* the mechanism #1 address register */
	struct pci_device *slots[PCI_MAX_SLOTS];
	uint64_t next_mem;              /* pre-assignment cursors in the windows */
	uint64_t next_io;
	struct pci_device host;         /* slot 0 */
	uint64_t ecam_base, ecam_size;  /* where the ECAM decodes (size 0: nowhere); map_lock */
	uint64_t io_gap_base, io_gap_end; /* q35: the I/O window's hole, see pci_io_window_gap */
	uint8_t pam_seen[Q35_PAM_COUNT];/* q35: PAM values pam_changed was last told; cfg_lock */
	struct ich9_lpc *lpc;           /* q35: 00:1f.0 */
};

/* Drives the GSI from the device's level, INTx Disable and MSI-X enable. Holds d->lock. */
void pci_intx_update(struct pci_device *d);
/* Whether MSI-X vector i is masked (by its entry, the function mask or MSI-X off). Holds
 * d->lock. */
bool pci_msix_vector_masked(const struct pci_device *d, unsigned i);
/* Points the vector's GSI at the message the guest programmed. Holds d->lock. */
void pci_msix_route(struct pci_device *d, struct msix_vector *v);
/* What bars[] should say, from config space (holds d->lock); then makes bars[] say it and
 * returns the mask of BARs whose decoding changed (holds cfg_lock, not d->lock). */
void pci_bars_decode(const struct pci_device *d, uint64_t *addr, bool *active);
unsigned pci_bars_publish(struct pci_device *d, const uint64_t *addr, const bool *active);

/* Whether [off, off+len) and [reg, reg+n) share a byte. */
static inline bool pci_overlaps(uint64_t off, uint64_t len, uint64_t reg, uint64_t n)
{
	return off < reg + n && reg < off + len;
}

/* Registers d in the given slot (pci_device_register picks the first free one). */
int pci_device_register_slot(struct pci_bus *bus, struct pci_device *d,
			     const struct pci_device_info *info, int slot);
/* Moves the ECAM to [base, base + size), size 0: off. Holds cfg_lock. Returns -EINVAL (and
 * changes nothing) unless it lies wholly in the 32-bit hole, where q35 dispatches it. */
int pci_ecam_move(struct pci_bus *bus, uint64_t base, uint64_t size);

/* Q35's I/O window is [0x6000, 0x10000) less the LPC's ACPI block [base, base + len) when
 * PMBASE puts it there (SeaBIOS's default is 0xb000): the parts below and above it are two
 * ranges. Re-registers them; len 0: no hole, a hole over everything: no window. Holds
 * cfg_lock; like acpi_pm_set_base, it changes the port bus's ranges (see there). Returns 0 or
 * bus_register's -errno. */
int pci_io_window_gap(struct pci_bus *bus, uint64_t base, uint64_t len);

/* Q35 (hw/q35_mch.c): the host bridge's identity and registers in bus->host; sync makes the
 * ECAM and the PAM hook follow config space (after a restore). Holds cfg_lock. */
void q35_mch_init(struct pci_bus *bus, struct pci_device_info *info);
void q35_mch_sync(struct pci_bus *bus);
/* ICH9 LPC (hw/ich9_lpc.c) at 00:1f.0: create at bus creation (finds the ACPI registers in
 * ctx's registry), destroy before the bus's ranges go; sync as above; rst_cnt is the reset
 * control register at port 0xCF9 (a byte, under cfg_lock). */
int ich9_lpc_create(struct pci_bus *bus, const struct device_ctx *ctx);
void ich9_lpc_destroy(struct pci_bus *bus);
void ich9_lpc_sync(struct pci_bus *bus);
void ich9_lpc_rst_cnt(struct pci_bus *bus, uint8_t *data, bool is_write);

#endif
