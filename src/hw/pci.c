/* PCI bus 0 behind one host bridge: configuration space (mechanism #1 and ECAM), BARs
 * pre-assigned in fixed windows and dispatched to whichever device decodes an address, the
 * capability list, MSI-X (table and PBA emulated here, vectors raised through irqfds) and INTx.
 * Snapshots of it are in pci_state.c.
 *
 * Locking, outermost first:
 *   bus->cfg_lock   every config access (the 0xCF8 address register is shared state), BAR
 *                   publication, device (un)registration; bar_changed/config_access run under it
 *   d->lock         a device's config[], MSI-X table/PBA, INTx state; taken from any thread
 *   bus->map_lock   (rwlock) slots[] and every bars[].addr/active; window lookups read it and
 *                   drop it before calling anything, so it never nests around another lock
 * irq.c's routing lock is taken under d->lock (route updates); it is a leaf. */
#include "hw/pci.h"
#include "hw/pci_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/device.h"
#include "vmm/memory.h"

_Static_assert(LAYOUT_PCI_MEM_BASE >= GUEST_MEM_LOW_LIMIT, "BAR window overlaps low RAM");
_Static_assert(LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE <= LAYOUT_PCI_ECAM_BASE,
	       "BAR window overlaps the ECAM");
_Static_assert(LAYOUT_PCI_ECAM_BASE + LAYOUT_PCI_ECAM_SIZE <= LAYOUT_IOAPIC_ADDR,
	       "ECAM overlaps the IOAPIC");
_Static_assert(LAYOUT_PCI_ECAM_SIZE == PCI_MAX_SLOTS * 8 * PCI_CONFIG_SIZE, "ECAM of bus 0");
_Static_assert(PORT_PCI_IO_BASE + PORT_PCI_IO_SIZE <= 0x10000, "I/O window beyond 64 KiB");

/* The host bridge: Red Hat's generic "QEMU PCIe host bridge" ID, which no Linux quirk keys
 * on (an Intel chipset ID would invite chipset quirks for hardware that is not there). */
#define HOST_BRIDGE_VENDOR       0x1b36
#define HOST_BRIDGE_DEVICE       0x0008
#define PCI_CLASS_HOST_BRIDGE    0x060000

/* Q35 (pci_bus_config.q35): BARs are honoured wherever firmware puts them, as on QEMU's q35:
 * anywhere in the 32-bit hole below the IOAPIC (SeaBIOS fills it from the top down, OVMF from
 * its base), above 4 GiB up to the largest physical address x86 has, and I/O BARs from 0x6000
 * (OVMF's choice; SeaBIOS starts at 0xc000). The hole holds the movable ECAM too. */
#define Q35_HOLE_DEFAULT         0x80000000ULL
#define Q35_MEM64_BASE           0x100000000ULL
#define Q35_MEM64_END            (1ULL << 52)
#define Q35_IO_BASE              0x6000
#define PCI_IO_END               0x10000

/* --- little helpers --- */

static uint16_t cfg16(const struct pci_device *d, unsigned off)
{
	return (uint16_t)le_get(d->config + off, 2);
}

static uint32_t cfg32(const struct pci_device *d, unsigned off)
{
	return le_get(d->config + off, 4);
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static unsigned msix_pba_len(unsigned n)
{
	return (n + 63) / 64 * 8;
}

/* --- INTx --- */

static uint8_t intx_pin(const struct pci_device *d)
{
	return d->config[PCI_INTERRUPT_PIN];
}

static bool msix_enabled_locked(const struct pci_device *d)
{
	return d->msix && (cfg16(d, d->msix->cap + 2) & MSIX_CTRL_ENABLE);
}

/* Drives the GSI from the device's level, INTx Disable and MSI-X enable. Holds d->lock, so
 * concurrent raise/lower calls reach KVM in the order they took effect. */
void pci_intx_update(struct pci_device *d)
{
	bool line = d->intx_level && intx_pin(d) &&
		    !(cfg16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) && !msix_enabled_locked(d);
	if (line != d->intx_line && d->bus) {
		const struct irq_sender *irq = &d->bus->irq;
		irq->ops->set_line(irq->opaque, pci_slot_gsi(d->slot, intx_pin(d)), line);
		d->intx_line = line;
	}
}

void pci_intx_set(struct pci_device *d, int level)
{
	pthread_mutex_lock(&d->lock);
	d->intx_level = level != 0;
	uint16_t status = cfg16(d, PCI_STATUS) & (uint16_t)~PCI_STATUS_INTERRUPT;
	le_put(d->config + PCI_STATUS, 2, status | (d->intx_level ? PCI_STATUS_INTERRUPT : 0));
	pci_intx_update(d);
	pthread_mutex_unlock(&d->lock);
}

uint32_t pci_slot_gsi(uint8_t slot, uint8_t pin)
{
	unsigned p = pin >= 1 && pin <= PCI_INTX_PINS ? pin - 1u : 0;
	return PCI_INTX_GSI(slot, p);
}

/* --- MSI-X vectors (all under d->lock) --- */

bool pci_msix_vector_masked(const struct pci_device *d, unsigned i)
{
	uint16_t ctrl = cfg16(d, d->msix->cap + 2);
	return !(ctrl & MSIX_CTRL_ENABLE) || (ctrl & MSIX_CTRL_FUNCTION_MASK) ||
	       (d->msix->v[i].entry[MSIX_ENTRY_VECTOR_CTRL] & MSIX_ENTRY_CTRL_MASKBIT);
}

static void msix_fire(struct msix_vector *v)
{
	uint64_t one = 1;
	if (v->efd >= 0 && write(v->efd, &one, sizeof(one)) != sizeof(one))
		log_debug("cannot signal an MSI-X irqfd: %s", strerror(errno));
}

/* Points the vector's GSI at the message the guest programmed, if it is not there already. */
void pci_msix_route(struct pci_device *d, struct msix_vector *v)
{
	uint64_t addr = le_get(v->entry, 4) | (uint64_t)le_get(v->entry + 4, 4) << 32;
	uint32_t data = le_get(v->entry + 8, 4);
	if (v->gsi < 0 || (v->routed && v->routed_addr == addr && v->routed_data == data))
		return;
	int r = d->bus->irq.ops->msi_route_set(d->bus->irq.opaque, v->gsi, addr, data);
	if (r < 0) {
		log_debug("PCI %02x.0: cannot route MSI-X address 0x%llx data 0x%x: %s", d->slot,
			  (unsigned long long)addr, data, strerror(-r));
		return;
	}
	v->routed = true;
	v->routed_addr = addr;
	v->routed_data = data;
}

/* After a change that may have unmasked vector i (or rewritten it while unmasked): the route
 * follows the entry, and an interrupt that arrived while masked is delivered now. */
static void msix_vector_update(struct pci_device *d, unsigned i, bool was_masked)
{
	if (pci_msix_vector_masked(d, i))
		return;
	struct msix_vector *v = &d->msix->v[i];
	pci_msix_route(d, v);
	uint64_t bit = 1ULL << (i % 64);
	if (was_masked && (d->msix->pba[i / 64] & bit)) {
		d->msix->pba[i / 64] &= ~bit;
		msix_fire(v);
	}
}

/* An access to [off, off+len) of the table, within one entry (bar_dispatch cuts it so). */
static void msix_table_access(struct pci_device *d, uint64_t off, uint8_t *data, uint32_t len,
			      bool is_write)
{
	unsigned vec = (unsigned)(off / MSIX_ENTRY_SIZE), field = (unsigned)(off % MSIX_ENTRY_SIZE);
	uint8_t *entry = d->msix->v[vec].entry;
	if (!is_write) {
		memcpy(data, entry + field, len);
		return;
	}
	bool was_masked = pci_msix_vector_masked(d, vec);
	for (uint32_t i = 0; i < len; i++, field++) {
		if (field < MSIX_ENTRY_VECTOR_CTRL)
			entry[field] = data[i];
		else if (field == MSIX_ENTRY_VECTOR_CTRL) /* the rest of vector control is reserved */
			entry[field] = data[i] & MSIX_ENTRY_CTRL_MASKBIT;
	}
	msix_vector_update(d, vec, was_masked);
}

static void msix_pba_read(struct pci_device *d, uint64_t off, uint8_t *data, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(d->msix->pba[(off + i) / 8] >> (8 * ((off + i) % 8)));
}

/* Message control was written: enabling MSI-X or clearing the function mask may unmask vectors. */
static void msix_control_written(struct pci_device *d, uint16_t old_ctrl)
{
	uint16_t ctrl = cfg16(d, d->msix->cap + 2);
	if (ctrl == old_ctrl)
		return;
	bool was_all_masked = !(old_ctrl & MSIX_CTRL_ENABLE) || (old_ctrl & MSIX_CTRL_FUNCTION_MASK);
	for (unsigned i = 0; i < d->msix->n; i++) {
		bool was_masked = was_all_masked ||
				  (d->msix->v[i].entry[MSIX_ENTRY_VECTOR_CTRL] & MSIX_ENTRY_CTRL_MASKBIT);
		msix_vector_update(d, i, was_masked);
	}
}

bool pci_msix_enabled(struct pci_device *d)
{
	pthread_mutex_lock(&d->lock);
	bool on = msix_enabled_locked(d);
	pthread_mutex_unlock(&d->lock);
	return on;
}

bool pci_msix_notify(struct pci_device *d, unsigned vector)
{
	pthread_mutex_lock(&d->lock);
	if (d->msix && vector >= d->msix->n) {
		pthread_mutex_unlock(&d->lock);
		return false;
	}
	if (!msix_enabled_locked(d)) {
		bool has_pin = intx_pin(d) != 0;
		pthread_mutex_unlock(&d->lock);
		if (has_pin)
			pci_intx_set(d, 1);
		return has_pin;
	}
	/* Under the lock, so a vector the guest masks is never signalled after the mask. */
	if (pci_msix_vector_masked(d, vector))
		d->msix->pba[vector / 64] |= 1ULL << (vector % 64);
	else
		msix_fire(&d->msix->v[vector]);
	pthread_mutex_unlock(&d->lock);
	return true;
}

/* --- BARs --- */

/* Whether [addr, addr + size) lies in [base, end). */
static bool range_within(uint64_t addr, uint64_t size, uint64_t base, uint64_t end)
{
	return addr >= base && addr <= end && size <= end - addr;
}

static uint64_t io_window_base(const struct pci_bus *bus)
{
	return bus->cfg.q35 ? Q35_IO_BASE : PORT_PCI_IO_BASE;
}

static bool bar_in_window(const struct pci_bus *bus, const struct pci_bar *b, uint64_t addr)
{
	if (b->is_io)
		return range_within(addr, b->size, io_window_base(bus),
				    bus->cfg.q35 ? PCI_IO_END : PORT_PCI_IO_BASE + PORT_PCI_IO_SIZE);
	if (!bus->cfg.q35)
		return range_within(addr, b->size, LAYOUT_PCI_MEM_BASE,
				    LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE);
	return range_within(addr, b->size, bus->cfg.hole_base, LAYOUT_IOAPIC_ADDR) ||
	       range_within(addr, b->size, Q35_MEM64_BASE, Q35_MEM64_END);
}

/* The address BAR register i holds now. */
static uint64_t bar_reg_addr(const struct pci_device *d, int i)
{
	const struct pci_bar *b = &d->bars[i];
	uint32_t lo = cfg32(d, PCI_BASE_ADDRESS_0 + 4 * i);
	if (b->is_io)
		return lo & PCI_BAR_IO_MASK;
	uint64_t addr = lo & PCI_BAR_MEM_MASK;
	if (b->is_64)
		addr |= (uint64_t)cfg32(d, PCI_BASE_ADDRESS_0 + 4 * (i + 1)) << 32;
	return addr;
}

/* Makes bars[] follow the BAR and command registers (read under d->lock by the caller into
 * addr[]/active[]); returns the mask of BARs whose decoding changed. Holds cfg_lock. */
unsigned pci_bars_publish(struct pci_device *d, const uint64_t *addr, const bool *active)
{
	unsigned changed = 0;
	pthread_rwlock_wrlock(&d->bus->map_lock);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		if (b->active != active[i] || (active[i] && b->addr != addr[i]))
			changed |= 1u << i;
		b->addr = addr[i];
		b->active = active[i];
	}
	pthread_rwlock_unlock(&d->bus->map_lock);
	return changed;
}

/* What bars[] should say, from config space. Holds d->lock. */
void pci_bars_decode(const struct pci_device *d, uint64_t *addr, bool *active)
{
	uint16_t cmd = cfg16(d, PCI_COMMAND);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &d->bars[i];
		addr[i] = 0;
		active[i] = false;
		if (!b->size)
			continue;
		addr[i] = bar_reg_addr(d, i);
		/* Only the windows are dispatched, so a BAR elsewhere (0, or the sizing pattern left
		 * by a guest that did not disable decoding) receives nothing: not active. */
		active[i] = (cmd & (b->is_io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)) &&
			    bar_in_window(d->bus, b, addr[i]);
	}
}

/* An access inside BAR `bar`: the MSI-X table and PBA are emulated here, everything else goes
 * to the device. An access may straddle those regions, so it is cut at their edges. */
static void bar_dispatch(struct pci_device *d, int bar, uint64_t off, uint8_t *data, uint32_t len,
			 bool is_write)
{
	struct pci_msix *m = d->msix && d->msix->bar == bar ? d->msix : NULL;
	while (len) {
		uint32_t seg = len;
		int region = 0; /* 0 device, 1 table, 2 PBA */
		if (m) {
			uint64_t t0 = m->table_off, t1 = t0 + (uint64_t)m->n * MSIX_ENTRY_SIZE;
			uint64_t p0 = m->pba_off, p1 = p0 + msix_pba_len(m->n);
			uint64_t end = off + len;
			if (off >= t0 && off < t1) {
				/* one table entry at a time */
				uint64_t entry_end = off + MSIX_ENTRY_SIZE - (off - t0) % MSIX_ENTRY_SIZE;
				region = 1;
				end = end < entry_end ? end : entry_end;
			} else if (off >= p0 && off < p1) {
				region = 2;
				end = end < p1 ? end : p1;
			} else {
				if (t0 > off && t0 < end)
					end = t0;
				if (p0 > off && p0 < end)
					end = p0;
			}
			seg = (uint32_t)(end - off);
		}
		if (region == 0) {
			if (d->bar_access)
				d->bar_access(d, bar, off, data, seg, is_write);
			else if (!is_write)
				memset(data, 0xff, seg);
		} else {
			pthread_mutex_lock(&d->lock);
			if (region == 1)
				msix_table_access(d, off - m->table_off, data, seg, is_write);
			else if (!is_write)
				msix_pba_read(d, off - m->pba_off, data, seg); /* the PBA is read-only */
			pthread_mutex_unlock(&d->lock);
		}
		off += seg;
		data += seg;
		len -= seg;
	}
}

/* A guest access in one of the windows: find the BAR decoding it now. The map lock is dropped
 * before the access, so a device callback may take any lock; an access racing a BAR move may
 * still reach the old place, as it could on real hardware. */
static void window_access(struct pci_bus *bus, bool is_io, uint64_t addr, uint8_t *data,
			  uint32_t len, bool is_write)
{
	struct pci_device *found = NULL;
	int bar = 0;
	uint64_t off = 0;
	pthread_rwlock_rdlock(&bus->map_lock);
	for (int s = 0; s < PCI_MAX_SLOTS && !found; s++) {
		struct pci_device *d = bus->slots[s];
		for (int i = 0; d && i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &d->bars[i];
			if (!b->active || b->is_io != is_io || addr < b->addr || addr - b->addr >= b->size)
				continue;
			/* One that runs past the BAR's end is nobody's, as on the device bus. */
			if (len <= b->size - (addr - b->addr)) {
				found = d;
				bar = i;
				off = addr - b->addr;
			}
			break;
		}
	}
	pthread_rwlock_unlock(&bus->map_lock);
	if (found)
		bar_dispatch(found, bar, off, data, len, is_write);
	else if (!is_write)
		memset(data, 0xff, len);
}

static void mem_window_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	window_access(opaque, false, LAYOUT_PCI_MEM_BASE + offset, data, len, is_write);
}

static void io_window_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	window_access(opaque, true, io_window_base(opaque) + offset, data, len, is_write);
}

/* The part of Q35's I/O window above the ACPI block (see pci_io_window_gap). */
static void io_window_hi_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
				bool is_write)
{
	struct pci_bus *bus = opaque;
	pthread_rwlock_rdlock(&bus->map_lock);
	uint64_t base = bus->io_gap_end;
	pthread_rwlock_unlock(&bus->map_lock);
	window_access(bus, true, base + offset, data, len, is_write);
}

int pci_io_window_gap(struct pci_bus *bus, uint64_t base, uint64_t len)
{
	if (bus->io_gap_base > Q35_IO_BASE)
		bus_unregister(bus->pio, Q35_IO_BASE, bus);
	if (bus->io_gap_end < PCI_IO_END)
		bus_unregister(bus->pio, bus->io_gap_end, bus);
	uint64_t gap = PCI_IO_END, gap_end = PCI_IO_END;
	if (len && base < PCI_IO_END && base + len > Q35_IO_BASE) {
		gap = base > Q35_IO_BASE ? base : Q35_IO_BASE;
		gap_end = base + len < PCI_IO_END ? base + len : PCI_IO_END;
	}
	pthread_rwlock_wrlock(&bus->map_lock);
	bus->io_gap_base = gap;
	bus->io_gap_end = gap_end;
	pthread_rwlock_unlock(&bus->map_lock);
	int r = 0;
	if (gap > Q35_IO_BASE)
		r = bus_register(bus->pio, Q35_IO_BASE, gap - Q35_IO_BASE, io_window_access, bus,
				 "pci-io");
	if (r == 0 && gap_end < PCI_IO_END)
		r = bus_register(bus->pio, gap_end, PCI_IO_END - gap_end, io_window_hi_access, bus,
				 "pci-io");
	return r;
}

static void mem64_window_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
				bool is_write)
{
	window_access(opaque, false, Q35_MEM64_BASE + offset, data, len, is_write);
}

static void ecam_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			bool is_write);

/* Q35's 32-bit hole: the ECAM where PCIEXBAR puts it, BARs elsewhere. The ECAM moves here
 * under the map lock rather than on the device bus, whose ranges cannot change while vCPUs
 * run. An access running past the ECAM's end is nobody's. */
static void hole_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			bool is_write)
{
	struct pci_bus *bus = opaque;
	uint64_t addr = bus->cfg.hole_base + offset;
	pthread_rwlock_rdlock(&bus->map_lock);
	uint64_t base = bus->ecam_base, size = bus->ecam_size;
	pthread_rwlock_unlock(&bus->map_lock);
	if (!size || addr < base || addr - base >= size)
		window_access(bus, false, addr, data, len, is_write);
	else if (len <= size - (addr - base))
		ecam_access(bus, addr - base, data, len, is_write);
	else if (!is_write)
		memset(data, 0xff, len);
}

int pci_ecam_move(struct pci_bus *bus, uint64_t base, uint64_t size)
{
	if (size && (!bus->cfg.q35 || !is_pow2(size) || size < LAYOUT_PCI_ECAM_SIZE ||
		     base & (size - 1) || !range_within(base, size, bus->cfg.hole_base,
							 LAYOUT_IOAPIC_ADDR)))
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->map_lock);
	bus->ecam_base = size ? base : 0;
	bus->ecam_size = size;
	pthread_rwlock_unlock(&bus->map_lock);
	return 0;
}

void pci_bus_ecam(struct pci_bus *bus, uint64_t *base, uint64_t *size)
{
	pthread_rwlock_rdlock(&bus->map_lock);
	*base = bus->ecam_base;
	*size = bus->ecam_size;
	pthread_rwlock_unlock(&bus->map_lock);
}

/* --- configuration space --- */

/* A guest access to [off, off+len) of d's config space, inside the 4 KiB. Holds cfg_lock. */
static void cfg_access(struct pci_device *d, uint32_t off, uint8_t *data, uint32_t len,
		       bool is_write)
{
	if (!is_write) {
		pthread_mutex_lock(&d->lock);
		memcpy(data, d->config + off, len);
		pthread_mutex_unlock(&d->lock);
		if (d->config_access)
			d->config_access(d, off, data, len, false);
		return;
	}

	pthread_mutex_lock(&d->lock);
	uint16_t old_cmd = cfg16(d, PCI_COMMAND);
	uint16_t old_msix_ctrl = d->msix ? cfg16(d, d->msix->cap + 2) : 0;
	for (uint32_t i = 0; i < len; i++) {
		uint8_t w = d->wmask[off + i];
		d->config[off + i] = (uint8_t)((d->config[off + i] & ~w) | (data[i] & w));
	}
	bool msix_ctrl = d->msix && pci_overlaps(off, len, d->msix->cap + 2u, 2);
	if (msix_ctrl)
		msix_control_written(d, old_msix_ctrl);
	if (msix_ctrl || cfg16(d, PCI_COMMAND) != old_cmd)
		pci_intx_update(d);
	bool bars = pci_overlaps(off, len, PCI_COMMAND, 2) ||
		    pci_overlaps(off, len, PCI_BASE_ADDRESS_0, 4 * PCI_NUM_BARS);
	uint64_t addr[PCI_NUM_BARS];
	bool active[PCI_NUM_BARS];
	if (bars)
		pci_bars_decode(d, addr, active);
	pthread_mutex_unlock(&d->lock);

	if (bars) {
		unsigned changed = pci_bars_publish(d, addr, active);
		for (int i = 0; i < PCI_NUM_BARS; i++)
			if ((changed & (1u << i)) && d->bar_changed)
				d->bar_changed(d, i);
	}
	if (d->config_access)
		d->config_access(d, off, data, len, true);
}

/* A config access addressed by bus/device/function; only function 0 of bus 0 exists. */
static void cfg_dispatch(struct pci_bus *bus, unsigned busnr, unsigned devfn, uint32_t reg,
			 uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_device *d = busnr == 0 && (devfn & 7) == 0 ? bus->slots[devfn >> 3] : NULL;
	if (d)
		cfg_access(d, reg, data, len, is_write);
	else if (!is_write)
		memset(data, 0xff, len); /* no device: the master abort reads all ones */
}

/* Ports 0xCF8-0xCFF: the address register (dword accesses only, as on Intel chipsets; Linux's
 * probe writes a byte to 0xCFB and expects it ignored) and the data window at 0xCFC. On Q35 a
 * byte at 0xCF9 is the LPC's reset control register, as Intel chipsets decode it. */
static void conf1_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			 bool is_write)
{
	struct pci_bus *bus = opaque;
	pthread_mutex_lock(&bus->cfg_lock);
	if (bus->lpc && offset == 1 && len == 1) {
		ich9_lpc_rst_cnt(bus, data, is_write);
	} else if (offset + len <= 4) {
		if (!is_write)
			le_put(data, len, bus->cf8 >> (8 * offset));
		else if (offset == 0 && len == 4)
			bus->cf8 = le_get(data, 4) & CF8_MASK;
	} else if (offset >= 4 && (bus->cf8 & CF8_ENABLE)) {
		uint32_t reg = (bus->cf8 & 0xfc) | ((bus->cf8 >> 16) & 0xf00);
		cfg_dispatch(bus, (bus->cf8 >> 16) & 0xff, (bus->cf8 >> 8) & 0xff,
			     reg + (uint32_t)(offset - 4), data, len, is_write);
	} else if (!is_write) {
		memset(data, 0xff, len); /* disabled, or straddling address and data */
	}
	pthread_mutex_unlock(&bus->cfg_lock);
}

/* The ECAM: offset = bus << 20 | device << 15 | function << 12 | register. An access that
 * crosses into the next function's 4 KiB is split there. */
static void ecam_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	pthread_mutex_lock(&bus->cfg_lock);
	while (len) {
		uint32_t reg = (uint32_t)(offset % PCI_CONFIG_SIZE);
		uint32_t seg = PCI_CONFIG_SIZE - reg < len ? PCI_CONFIG_SIZE - reg : len;
		cfg_dispatch(bus, (unsigned)(offset >> 20), (unsigned)(offset >> 12) & 0xff, reg,
			     data, seg, is_write);
		offset += seg;
		data += seg;
		len -= seg;
	}
	pthread_mutex_unlock(&bus->cfg_lock);
}

/* --- building devices --- */

void pci_bar_init(struct pci_device *d, int bar, uint64_t size, bool is_io, bool is_64)
{
	if (bar < 0 || bar >= PCI_NUM_BARS) {
		log_error("PCI: BAR %d does not exist", bar);
		return;
	}
	d->bars[bar] = (struct pci_bar){ .size = size, .is_io = is_io, .is_64 = is_64 };
}

uint8_t pci_add_capability(struct pci_device *d, uint8_t cap_id, const void *body, uint8_t len,
			   const void *wmask_body)
{
	unsigned off = d->cap_end ? d->cap_end : PCI_HEADER_END;
	off = (off + 3) & ~3u; /* the low two bits of capability pointers are reserved */
	if (off + 2 + len > PCI_STD_CONFIG_END)
		return 0;
	d->config[off] = cap_id;
	d->config[off + 1] = 0;
	d->wmask[off] = d->wmask[off + 1] = 0;
	if (body)
		memcpy(d->config + off + 2, body, len);
	else
		memset(d->config + off + 2, 0, len);
	if (wmask_body)
		memcpy(d->wmask + off + 2, wmask_body, len);
	else
		memset(d->wmask + off + 2, 0, len);
	if (d->last_cap)
		d->config[d->last_cap + 1] = (uint8_t)off;
	else
		d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
	d->last_cap = (uint8_t)off;
	d->cap_end = (uint16_t)(off + 2 + len);
	return (uint8_t)off;
}

int pci_msix_init(struct pci_device *d, unsigned nvectors, int bar, uint32_t table_offset,
		  uint32_t pba_offset)
{
	if (d->msix)
		return -EEXIST;
	if (nvectors == 0 || nvectors > MSIX_MAX_VECTORS || bar < 0 || bar >= PCI_NUM_BARS ||
	    !d->bars[bar].size || d->bars[bar].is_io || (table_offset | pba_offset) & 7)
		return -EINVAL;
	uint64_t size = d->bars[bar].size;
	uint64_t table_len = (uint64_t)nvectors * MSIX_ENTRY_SIZE, pba_len = msix_pba_len(nvectors);
	if (table_offset > size || table_len > size - table_offset || pba_offset > size ||
	    pba_len > size - pba_offset || pci_overlaps(table_offset, table_len, pba_offset, pba_len))
		return -EINVAL;

	struct pci_msix *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->v = calloc(nvectors, sizeof(*m->v));
	m->pba = calloc(pba_len / 8, sizeof(*m->pba));
	if (!m->v || !m->pba) {
		free(m->v);
		free(m->pba);
		free(m);
		return -ENOMEM;
	}
	m->n = nvectors;
	m->bar = bar;
	m->table_off = table_offset;
	m->pba_off = pba_offset;
	for (unsigned i = 0; i < nvectors; i++) {
		/* Reset state: every vector masked, no message. */
		m->v[i].entry[MSIX_ENTRY_VECTOR_CTRL] = MSIX_ENTRY_CTRL_MASKBIT;
		m->v[i].gsi = m->v[i].efd = -1;
	}
	uint8_t body[MSIX_CAP_LEN], wmask[MSIX_CAP_LEN] = { 0 };
	le_put(body, 2, nvectors - 1);                  /* table size, N - 1 */
	le_put(body + 2, 4, table_offset | (uint32_t)bar); /* offset | BIR */
	le_put(body + 6, 4, pba_offset | (uint32_t)bar);
	le_put(wmask, 2, MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK);
	m->cap = pci_add_capability(d, PCI_CAP_ID_MSIX, body, sizeof(body), wmask);
	if (!m->cap) {
		free(m->v);
		free(m->pba);
		free(m);
		return -ENOSPC;
	}
	d->msix = m;
	return 0;
}

/* Unbinds and frees the MSI-X state; irq may be NULL when nothing was bound yet. */
static void msix_free(struct pci_device *d, const struct irq_sender *irq)
{
	struct pci_msix *m = d->msix;
	if (!m)
		return;
	for (unsigned i = 0; i < m->n; i++) {
		struct msix_vector *v = &m->v[i];
		if (v->efd >= 0) {
			if (irq && v->gsi >= 0)
				irq->ops->irqfd(irq->opaque, v->efd, v->gsi, false);
			close(v->efd);
		}
		if (irq && v->gsi >= 0)
			irq->ops->msi_route_free(irq->opaque, v->gsi);
	}
	free(m->v);
	free(m->pba);
	free(m);
	d->msix = NULL;
}

/* One GSI and one eventfd bound to it per vector. */
static int msix_bind(struct pci_device *d, const struct irq_sender *irq)
{
	struct pci_msix *m = d->msix;
	for (unsigned i = 0; m && i < m->n; i++) {
		struct msix_vector *v = &m->v[i];
		v->gsi = irq->ops->msi_route_alloc(irq->opaque);
		if (v->gsi < 0) {
			int r = v->gsi;
			v->gsi = -1;
			return r;
		}
		v->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (v->efd < 0)
			return -errno;
		int r = irq->ops->irqfd(irq->opaque, v->efd, v->gsi, true);
		if (r < 0) {
			close(v->efd);
			v->efd = -1;
			return r;
		}
	}
	return 0;
}

static int bars_check(const struct pci_device *d)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		bool ok = is_pow2(b->size);
		if (b->is_io)
			ok = ok && !b->is_64 && b->size >= 4 && b->size <= 256;
		else
			ok = ok && b->size >= 16 && b->size <= LAYOUT_PCI_MEM_SIZE &&
			     (!b->is_64 || (i + 1 < PCI_NUM_BARS && !d->bars[i + 1].size));
		if (!ok)
			return -EINVAL;
		if (b->is_64)
			i++;
	}
	return 0;
}

/* Addresses for the device's BARs, largest first (each naturally aligned, so this wastes the
 * least of the window), from the bus's cursors; the cursors move only if all of them fit. */
static int bars_assign(struct pci_bus *bus, const struct pci_device *d, uint64_t *addr)
{
	uint64_t mem = bus->next_mem, io = bus->next_io;
	bool done[PCI_NUM_BARS] = { false };
	for (;;) {
		int pick = -1;
		for (int i = 0; i < PCI_NUM_BARS; i++)
			if (d->bars[i].size && !done[i] &&
			    (pick < 0 || d->bars[i].size > d->bars[pick].size))
				pick = i;
		if (pick < 0)
			break;
		done[pick] = true;
		const struct pci_bar *b = &d->bars[pick];
		uint64_t *cursor = b->is_io ? &io : &mem;
		uint64_t end = b->is_io ? PORT_PCI_IO_BASE + PORT_PCI_IO_SIZE
					: LAYOUT_PCI_MEM_BASE + LAYOUT_PCI_MEM_SIZE;
		uint64_t a = (*cursor + b->size - 1) & ~(b->size - 1);
		if (a > end || b->size > end - a)
			return -ENOSPC;
		addr[pick] = a;
		*cursor = a + b->size;
	}
	bus->next_mem = mem;
	bus->next_io = io;
	return 0;
}

/* The type 0 header: IDs, class, BARs at addr[], interrupt pin/line, and what the guest may
 * write. Leaves the capabilities (and their pointer) as pci_add_capability built them. */
static void header_init(struct pci_device *d, const struct pci_device_info *info,
			const uint64_t *addr)
{
	memset(d->config, 0, PCI_CAPABILITY_LIST);
	memset(d->config + PCI_CAPABILITY_LIST + 1, 0, PCI_HEADER_END - PCI_CAPABILITY_LIST - 1);
	memset(d->wmask, 0, PCI_HEADER_END);
	le_put(d->config + PCI_VENDOR_ID, 2, info->vendor_id);
	le_put(d->config + PCI_DEVICE_ID, 2, info->device_id);
	le_put(d->config + PCI_STATUS, 2, d->last_cap ? PCI_STATUS_CAP_LIST : 0);
	d->config[PCI_REVISION_ID] = info->revision;
	le_put(d->config + PCI_CLASS_PROG, 3, info->class_code);
	d->config[PCI_HEADER_TYPE] = info->multifunction ? 0x80 : 0; /* type 0 */
	le_put(d->config + PCI_SUBSYSTEM_VENDOR_ID, 2, info->subsystem_vendor_id);
	le_put(d->config + PCI_SUBSYSTEM_ID, 2, info->subsystem_id);
	uint8_t pin = info->interrupt_pin <= PCI_INTX_PINS ? info->interrupt_pin : 0;
	d->config[PCI_INTERRUPT_PIN] = pin;
	/* The line register is the firmware's note of the routing, read by guests without ACPI. */
	d->config[PCI_INTERRUPT_LINE] = pin ? (uint8_t)pci_slot_gsi(d->slot, pin) : 0;

	le_put(d->wmask + PCI_COMMAND, 2, PCI_COMMAND_WMASK);
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	/* BAR registers: the guest may write the address bits above the size, so writing all
	 * ones reads back the size mask; the type bits are read-only. */
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *b = &d->bars[i];
		if (!b->size)
			continue;
		unsigned reg = PCI_BASE_ADDRESS_0 + 4 * (unsigned)i;
		uint64_t mask = ~(b->size - 1);
		if (b->is_io) {
			le_put(d->config + reg, 4, (addr[i] & PCI_BAR_IO_MASK) | PCI_BAR_IO);
			le_put(d->wmask + reg, 4, mask & PCI_BAR_IO_MASK);
		} else {
			le_put(d->config + reg, 4,
			       (addr[i] & PCI_BAR_MEM_MASK) | (b->is_64 ? PCI_BAR_MEM_TYPE_64 : 0));
			le_put(d->wmask + reg, 4, mask & PCI_BAR_MEM_MASK);
			if (b->is_64) {
				le_put(d->config + reg + 4, 4, addr[i] >> 32);
				le_put(d->wmask + reg + 4, 4, mask >> 32);
				i++;
			}
		}
	}
}

int pci_device_register_slot(struct pci_bus *bus, struct pci_device *d,
			     const struct pci_device_info *info, int slot)
{
	int r = bars_check(d);
	pthread_mutex_lock(&bus->cfg_lock);
	if (slot < 0) {
		for (int s = 1; s < PCI_MAX_SLOTS && slot < 0; s++)
			if (!bus->slots[s])
				slot = s;
	}
	if (r == 0 && (slot < 0 || bus->slots[slot]))
		r = -ENOSPC;
	uint64_t addr[PCI_NUM_BARS] = { 0 };
	uint64_t saved_mem = bus->next_mem, saved_io = bus->next_io;
	if (r == 0)
		r = bars_assign(bus, d, addr);
	if (r == 0)
		r = msix_bind(d, &bus->irq);
	if (r < 0) {
		bus->next_mem = saved_mem;
		bus->next_io = saved_io;
		pthread_mutex_unlock(&bus->cfg_lock);
		msix_free(d, &bus->irq);
		return r;
	}
	pthread_mutex_init(&d->lock, NULL);
	d->bus = bus;
	d->slot = (uint8_t)slot;
	d->intx_level = 0;
	d->intx_line = false;
	header_init(d, info, addr);
	bool active[PCI_NUM_BARS] = { false };
	pthread_rwlock_wrlock(&bus->map_lock);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		d->bars[i].addr = addr[i];
		d->bars[i].active = active[i];
	}
	bus->slots[slot] = d;
	pthread_rwlock_unlock(&bus->map_lock);
	pthread_mutex_unlock(&bus->cfg_lock);
	return 0;
}

int pci_device_register(struct pci_bus *bus, struct pci_device *d,
			const struct pci_device_info *info)
{
	return pci_device_register_slot(bus, d, info, -1);
}

void pci_device_unregister(struct pci_device *d)
{
	struct pci_bus *bus = d->bus;
	if (!bus) {
		msix_free(d, NULL);
		return;
	}
	pthread_mutex_lock(&bus->cfg_lock);
	pthread_rwlock_wrlock(&bus->map_lock);
	if (bus->slots[d->slot] == d)
		bus->slots[d->slot] = NULL;
	for (int i = 0; i < PCI_NUM_BARS; i++)
		d->bars[i].active = false;
	pthread_rwlock_unlock(&bus->map_lock);
	pthread_mutex_unlock(&bus->cfg_lock);
	if (d->intx_line)
		bus->irq.ops->set_line(bus->irq.opaque, pci_slot_gsi(d->slot, intx_pin(d)), 0);
	d->intx_line = false;
	msix_free(d, &bus->irq);
	pthread_mutex_destroy(&d->lock);
	d->bus = NULL;
}

/* --- the bus --- */

/* Unregisters whichever of either machine's ranges are there. */
static void pci_bus_unregister_ranges(struct pci_bus *bus)
{
	bus_unregister(bus->pio, PORT_PCI_CONFIG, bus);
	bus_unregister(bus->mmio, LAYOUT_PCI_ECAM_BASE, bus);
	bus_unregister(bus->mmio, LAYOUT_PCI_MEM_BASE, bus);
	bus_unregister(bus->pio, PORT_PCI_IO_BASE, bus);
	bus_unregister(bus->mmio, bus->cfg.hole_base, bus);
	bus_unregister(bus->mmio, Q35_MEM64_BASE, bus);
	if (bus->cfg.q35)
		pci_io_window_gap(bus, 0, PCI_IO_END); /* all gap: no I/O window */
}

/* The ranges of Q35: the hole (ECAM and 32-bit BARs), the 64-bit window, the I/O window. */
static int pci_bus_register_q35(struct pci_bus *bus)
{
	uint64_t hole = bus->cfg.hole_base;
	if (hole < LAYOUT_PCI_ECAM_SIZE || hole > LAYOUT_PCI_MEM_BASE || hole % LAYOUT_PCI_ECAM_SIZE)
		return -EINVAL;
	int r = bus_register(bus->mmio, hole, LAYOUT_IOAPIC_ADDR - hole, hole_access, bus,
			     "pci-hole");
	if (r == 0)
		r = bus_register(bus->mmio, Q35_MEM64_BASE, Q35_MEM64_END - Q35_MEM64_BASE,
				 mem64_window_access, bus, "pci-mem64");
	if (r == 0)
		r = pci_io_window_gap(bus, 0, 0);
	return r;
}

struct pci_bus *pci_bus_create(const struct device_ctx *ctx, const struct pci_bus_config *cfg)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	if (!bus) {
		log_error("cannot allocate the PCI bus");
		return NULL;
	}
	bus->irq = ctx->irq;
	bus->pio = ctx->pio;
	bus->mmio = ctx->mmio;
	bus->next_mem = LAYOUT_PCI_MEM_BASE;
	bus->next_io = PORT_PCI_IO_BASE;
	bus->ecam_base = LAYOUT_PCI_ECAM_BASE;
	bus->ecam_size = LAYOUT_PCI_ECAM_SIZE;
	bus->io_gap_base = bus->io_gap_end = PCI_IO_END;
	if (cfg)
		bus->cfg = *cfg;
	if (bus->cfg.q35 && !bus->cfg.hole_base)
		bus->cfg.hole_base = Q35_HOLE_DEFAULT;
	pthread_mutex_init(&bus->cfg_lock, NULL);
	pthread_rwlock_init(&bus->map_lock, NULL);

	int r = bus_register(ctx->pio, PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN, conf1_access, bus,
			     "pci-conf1");
	if (r == 0 && bus->cfg.q35) {
		r = pci_bus_register_q35(bus);
	} else if (r == 0) {
		r = bus_register(ctx->mmio, LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE,
				 ecam_access, bus, "pci-ecam");
		if (r == 0)
			r = bus_register(ctx->mmio, LAYOUT_PCI_MEM_BASE, LAYOUT_PCI_MEM_SIZE,
					 mem_window_access, bus, "pci-mem");
		if (r == 0)
			r = bus_register(ctx->pio, PORT_PCI_IO_BASE, PORT_PCI_IO_SIZE,
					 io_window_access, bus, "pci-io");
	}
	struct pci_device_info host_info = {
		.vendor_id = HOST_BRIDGE_VENDOR,
		.device_id = HOST_BRIDGE_DEVICE,
		.class_code = PCI_CLASS_HOST_BRIDGE,
	};
	if (bus->cfg.q35)
		q35_mch_init(bus, &host_info);
	if (r == 0)
		r = pci_device_register_slot(bus, &bus->host, &host_info, 0);
	if (r == 0 && bus->cfg.q35)
		r = ich9_lpc_create(bus, ctx);
	if (r < 0) {
		log_error("cannot set up the PCI bus: %s", strerror(-r));
		if (bus->slots[0])
			pci_device_unregister(&bus->host);
		pci_bus_unregister_ranges(bus);
		pthread_rwlock_destroy(&bus->map_lock);
		pthread_mutex_destroy(&bus->cfg_lock);
		free(bus);
		return NULL;
	}
	return bus;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	if (!bus)
		return;
	for (int s = PCI_MAX_SLOTS - 1; s >= 0; s--)
		if (bus->slots[s])
			pci_device_unregister(bus->slots[s]);
	ich9_lpc_destroy(bus);
	pci_bus_unregister_ranges(bus);
	pthread_rwlock_destroy(&bus->map_lock);
	pthread_mutex_destroy(&bus->cfg_lock);
	free(bus);
}

void pci_acpi_info(struct pci_acpi_info *info)
{
	*info = (struct pci_acpi_info){
		.ecam_base = LAYOUT_PCI_ECAM_BASE,
		.bus_start = 0,
		.bus_end = 0,
		.mem_base = LAYOUT_PCI_MEM_BASE,
		.mem_size = LAYOUT_PCI_MEM_SIZE,
		.io_base = PORT_PCI_IO_BASE,
		.io_size = PORT_PCI_IO_SIZE,
	};
}

static void *pci_bus_realize(const struct device_ctx *ctx, const void *arg)
{
	return pci_bus_create(ctx, arg);
}

static void pci_bus_destroy_dev(void *bus)
{
	pci_bus_destroy(bus);
}

static void pci_bus_save_dev(void *bus, struct stream *s)
{
	pci_bus_save(bus, s);
}

static int pci_bus_load_dev(void *bus, struct stream *s, uint32_t version)
{
	return pci_bus_load(bus, s, version);
}

/* Before the devices on it in the machine's table: their load starts them, which needs the
 * MSI-X routes the bus's load sets. */
const struct device_ops pci_bus_ops = {
	.name = "PCI bus",
	.tag = STREAM_TAG('P', 'C', 'I', ' '),
	.version = PCI_BUS_STATE_VERSION,
	.realize = pci_bus_realize,
	.destroy = pci_bus_destroy_dev,
	.save = pci_bus_save_dev,
	.load = pci_bus_load_dev,
};
