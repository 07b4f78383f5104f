/* PCI: one host bridge with bus 0, configuration space through ports 0xCF8/0xCFC and through
 * ECAM (MMCONFIG, described by the ACPI MCFG), BARs in fixed windows, capabilities, MSI-X
 * (vectors raised through KVM irqfds) and legacy INTx on IOAPIC pins. */
#ifndef KVMKIT_HW_PCI_H
#define KVMKIT_HW_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct device_ops;
struct pci_bus;
struct pci_msix;

#define PCI_CONFIG_SIZE   4096 /* extended configuration space (ECAM) */
#define PCI_NUM_BARS      6
#define PCI_MAX_SLOTS     32   /* devices on bus 0, function 0 each; slot 0 is the host bridge */

/* Standard capability IDs used here */
#define PCI_CAP_ID_VNDR   0x09
#define PCI_CAP_ID_MSIX   0x11

struct pci_device_info {
	uint16_t vendor_id, device_id;
	uint16_t subsystem_vendor_id, subsystem_id;
	uint8_t revision;
	uint32_t class_code;   /* class << 16 | subclass << 8 | prog-if */
	uint8_t interrupt_pin; /* 1 = INTA#, 0 = no INTx */
	bool multifunction;    /* the header type's bit 7 (the slot has other functions) */
};

struct pci_bar {
	uint64_t size;   /* a power of two (see pci_bar_init); 0 = unused */
	bool is_io;
	bool is_64;      /* takes two BAR registers (the next one is its high half) */
	uint64_t addr;   /* the guest address the BAR register holds now */
	bool active;     /* decoding enabled (command register) and the BAR inside its window
			  * (only the windows are dispatched): accesses arrive */
};

/* The struct starts zeroed (calloc it, or embed it in a zeroed device struct); the device fills
 * the first group of fields, pci.c owns the rest. */
struct pci_device {
	/* Filled by the device before pci_device_register: */
	/* A guest access inside BAR `bar` at `offset`, len 1..8 bytes, wholly inside the BAR
	 * (already checked; a guest may still use any size and alignment), outside the MSI-X table
	 * and PBA (pci.c handles those). Runs on a vCPU thread, concurrently with other vCPUs and
	 * with no pci.c lock held: the device locks what it shares. */
	void (*bar_access)(struct pci_device *d, int bar, uint64_t offset, uint8_t *data,
			   uint32_t len, bool is_write);
	/* Optional: BAR `bar` started or stopped decoding, or moved while decoding (see
	 * bars[bar].active/addr), e.g. to move ioeventfds. Called on the vCPU thread that wrote the
	 * BAR or command register, with the bus's config lock held (config accesses are serialised,
	 * so bars[] is stable while it runs) and the device lock not held; it must not access
	 * config space itself. */
	void (*bar_changed)(struct pci_device *d, int bar);
	/* Optional: called after every guest config access to this device (offset 0..4095, len
	 * 1..8, within the 4 KiB), once pci.c has handled it: for a write, config[] already holds
	 * the bytes the wmask let through and data what the guest wrote; for a read, data holds
	 * config[] and the hook may replace it. For registers pci.c cannot know, such as virtio's
	 * VIRTIO_PCI_CAP_PCI_CFG window. Same context as bar_changed. */
	void (*config_access)(struct pci_device *d, uint32_t offset, uint8_t *data, uint32_t len,
			      bool is_write);
	void *opaque;

	/* Owned by pci.c: */
	struct pci_bus *bus;
	uint8_t slot;
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];  /* bits the guest may change */
	struct pci_bar bars[PCI_NUM_BARS];
	uint8_t last_cap;                /* offset of the last capability in the list, 0 = none */
	uint16_t cap_end;                /* first byte after the last capability */
	struct pci_msix *msix;
	int intx_level;                  /* what the device asks for (pci_intx_set) */
	bool intx_line;                  /* what is driven on the GSI (after INTx disable, MSI-X) */
	pthread_mutex_t lock;            /* config[], MSI-X state, INTx; bars[].addr/active change
					  * under the bus's locks (see bar_changed) */
};

/* The bus's configuration (pci_bus_ops' realize argument; NULL: all zero, today's machine). */
struct pci_bus_config {
	/* The Q35 identity firmware expects (SeaBIOS, OVMF): the MCH host bridge 8086:29C0 at
	 * 00:00.0 (PCIEXBAR moves the ECAM, PAM and SMRAM are stored) and the ICH9 LPC 8086:2918
	 * at 00:1f.0 (PMBASE moves the ACPI registers, reset control at port 0xCF9). BARs are
	 * then honoured anywhere in the 32-bit hole [hole_base, IOAPIC) and above 4 GiB, I/O BARs
	 * in 0x6000-0xffff. Off: the generic host bridge and fixed windows, as before. */
	bool q35;
	uint64_t hole_base;   /* q35: the end of low RAM, 1 MiB aligned; 0 = 2 GiB */
	/* q35, may be NULL: PAM register pam_index (0..6, config 0x90 + index) now holds value;
	 * called on the vCPU thread that wrote it, with the bus's config lock held. */
	void (*pam_changed)(void *opaque, unsigned pam_index, uint8_t value);
	void *pam_opaque;
};

/* Creates the host bridge and registers its ranges on the VM's buses: ports 0xCF8-0xCFF, the
 * ECAM window, and the BAR windows (memory and I/O) through which BAR accesses are dispatched
 * to whichever device decodes them at the time. Before the vCPUs start (the buses are
 * read-only afterwards); devices with MSI-X also need irq_routing_init first. cfg may be NULL.
 * Returns NULL after printing why (the VM must then not run: ranges may already point at the
 * bus). */
struct device_ctx;
struct pci_bus *pci_bus_create(const struct device_ctx *ctx, const struct pci_bus_config *cfg);
/* The bus as a device of the machine (vmm/device.h): pci_bus_create/destroy, save/load; its
 * realize argument is a struct pci_bus_config (or NULL). */
extern const struct device_ops pci_bus_ops;
/* Where the ECAM decodes now (what the guest programmed in PCIEXBAR on Q35): base and size,
 * size 0 when it is off. For tables built after the firmware ran (fw_cfg's ACPI MCFG). */
void pci_bus_ecam(struct pci_bus *bus, uint64_t *base, uint64_t *size);
/* Unregisters the devices still on the bus (they must still be allocated) and frees it. With
 * the vCPUs stopped. */
void pci_bus_destroy(struct pci_bus *bus);

/* Declares BAR `bar` of size `size`: a power of two, memory 16 bytes..the window (4 KiB or
 * more keeps it on its own pages), I/O 4..256. A 64-bit BAR also takes register bar+1, which
 * must stay unused. Call before pci_device_register, which rejects bad ones (-EINVAL). */
void pci_bar_init(struct pci_device *d, int bar, uint64_t size, bool is_io, bool is_64);

/* Appends a capability: `body` is what follows the ID and next-pointer bytes (len bytes, may be
 * NULL for zeroes); wmask_body (may be NULL) gives the guest-writable bits of it. Returns the
 * capability's offset in config space, or 0 if config space is full. Before register. */
uint8_t pci_add_capability(struct pci_device *d, uint8_t cap_id, const void *body, uint8_t len,
			   const void *wmask_body);

/* Adds an MSI-X capability with `nvectors` (1..2048) vectors whose table (16 bytes a vector)
 * and PBA (8 bytes per 64 vectors) live in memory BAR `bar` (declared first) at the given
 * offsets (8-byte aligned, inside the BAR, not overlapping). Before register, which allocates
 * a GSI and an irqfd per vector. Returns 0 or -errno. */
int pci_msix_init(struct pci_device *d, unsigned nvectors, int bar, uint32_t table_offset,
		  uint32_t pba_offset);

/* Places the device in the next free slot, writes its header (IDs, class, BARs at addresses
 * pre-assigned in the windows, so a guest without firmware keeps them, decoding off until the
 * guest enables it), and makes it visible. Before the vCPUs start. Returns 0 or -errno
 * (-ENOSPC: no free slot or no room in a window; -EINVAL: a bad BAR); on failure the MSI-X
 * state is freed too, and the device may be freed. */
int pci_device_register(struct pci_bus *bus, struct pci_device *d,
			const struct pci_device_info *info);
/* Removes the device from the bus and frees what pci.c allocated for it (MSI-X state, GSIs,
 * irqfds); lowers its INTx line. With the vCPUs stopped. Idempotent, and also frees the MSI-X
 * state of a device that was never registered. */
void pci_device_unregister(struct pci_device *d);

/* Raises MSI-X vector `vector`: through its irqfd when MSI-X is enabled and the vector is
 * unmasked, else sets its pending bit (delivered when unmasked). Falls back to INTx (asserted
 * until the device lowers it) when MSI-X is off or the device has no MSI-X. Any thread, no
 * device lock held (it takes d->lock). Returns false if nothing could be delivered (vector out
 * of range, or MSI-X off and no INTx pin). */
bool pci_msix_notify(struct pci_device *d, unsigned vector);
bool pci_msix_enabled(struct pci_device *d);

/* Drives the device's INTx line (IOAPIC pin given by the slot's _PRT entry). The line is
 * asserted only while the level is 1, the command register's INTx Disable is clear and MSI-X
 * is off; the status register's Interrupt Status shows the level. Any thread. */
void pci_intx_set(struct pci_device *d, int level);

/* Snapshots: every slot's config space, INTx level and MSI-X table and pending bits (the
 * section body; migration/vmstate.c frames it). Loading checks each device against the one the
 * restored VM created (only guest-writable bits may differ), then re-routes unmasked MSI-X
 * vectors and publishes decoding BARs (bar_changed moves doorbells). With the vCPUs stopped.
 * Load returns 0 or -EBADMSG. */
#define PCI_BUS_STATE_VERSION 1
struct stream;
void pci_bus_save(struct pci_bus *bus, struct stream *s);
int pci_bus_load(struct pci_bus *bus, struct stream *s, uint32_t version);

/* For ACPI: the ECAM window, bus range, BAR windows and each slot's INTx GSI. */
struct pci_acpi_info {
	uint64_t ecam_base;
	uint8_t bus_start, bus_end;
	uint64_t mem_base, mem_size;   /* 32-bit memory window */
	uint16_t io_base, io_size;     /* I/O port window */
};
void pci_acpi_info(struct pci_acpi_info *info);
/* IOAPIC pin (GSI) of interrupt pin `pin` of `slot`, pin as in the Interrupt Pin register
 * (1 = INTA# .. 4 = INTD#; other values count as INTA#): INTA# of slot s is GSI 16 + s % 4 and
 * INTB-D are the next pins modulo 4 (PCI_INTX_GSI in arch/x86/layout.h, shared with the _PRT). */
uint32_t pci_slot_gsi(uint8_t slot, uint8_t pin);

#endif
