/* Snapshots of the PCI bus (see pci_bus_save in hw/pci.h): the mechanism #1 address register
 * and, per slot, the device's config space, INTx level, MSI-X table and pending bits, checked
 * on loading against the device as created. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pci.h"
#include "hw/pci_int.h"
#include "lib/stream.h"

/* One device: config space, INTx level, MSI-X table and pending bits. */
static void pci_device_save(struct pci_device *d, struct stream *s)
{
	pthread_mutex_lock(&d->lock);
	stream_put_bytes(s, d->config, PCI_CONFIG_SIZE);
	stream_put_u8(s, (uint8_t)d->intx_level);
	unsigned n = d->msix ? d->msix->n : 0;
	stream_put_u32(s, n);
	for (unsigned i = 0; i < n; i++)
		stream_put_bytes(s, d->msix->v[i].entry, MSIX_ENTRY_SIZE);
	for (unsigned w = 0; w < (n + 63) / 64; w++)
		stream_put_u64(s, d->msix->pba[w]);
	pthread_mutex_unlock(&d->lock);
}

/* Reads one device's state and checks it against the device as created: only bits the guest
 * may write (wmask) and the INTx status bit may differ, the vector count must match, vector
 * control has only its mask bit, no pending bit beyond the vectors. Nothing is changed on a
 * failure (-EBADMSG). */
static int pci_device_load(struct pci_device *d, struct stream *s)
{
	uint8_t *config = malloc(PCI_CONFIG_SIZE);
	struct msix_vector *v = NULL;
	uint64_t *pba = NULL;
	if (!config)
		return -ENOMEM;
	stream_get_bytes(s, config, PCI_CONFIG_SIZE);
	uint8_t intx = stream_get_u8(s);
	unsigned n = d->msix ? d->msix->n : 0;
	bool bad = intx > 1 || stream_get_u32(s) != n;
	if (!stream_error(s) && !bad && n) {
		v = calloc(n, sizeof(*v));
		pba = calloc((n + 63) / 64, sizeof(*pba));
		if (!v || !pba)
			stream_fail(s, -ENOMEM);
	}
	for (unsigned i = 0; i < n && !stream_error(s) && !bad; i++) {
		stream_get_bytes(s, v[i].entry, MSIX_ENTRY_SIZE);
		bad = v[i].entry[MSIX_ENTRY_VECTOR_CTRL] & ~MSIX_ENTRY_CTRL_MASKBIT;
	}
	for (unsigned w = 0; w < (n + 63) / 64 && !stream_error(s) && !bad; w++) {
		pba[w] = stream_get_u64(s);
		bad = n < 64 * (w + 1) && (pba[w] >> (n % 64));
	}
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < PCI_CONFIG_SIZE && !bad; i++) {
		uint8_t fixed = (uint8_t)~d->wmask[i];
		if (i == PCI_STATUS)
			fixed &= (uint8_t)~PCI_STATUS_INTERRUPT;
		bad = (config[i] ^ d->config[i]) & fixed;
	}
	int r = stream_error(s) ? stream_error(s) : bad ? -EBADMSG : 0;
	if (r == 0) {
		memcpy(d->config, config, PCI_CONFIG_SIZE);
		d->intx_level = intx;
		for (unsigned i = 0; i < n; i++) {
			memcpy(d->msix->v[i].entry, v[i].entry, MSIX_ENTRY_SIZE);
			if (!pci_msix_vector_masked(d, i))
				pci_msix_route(d, &d->msix->v[i]); /* the GSIs are this process's own */
		}
		if (n)
			memcpy(d->msix->pba, pba, (n + 63) / 64 * sizeof(*pba));
		pci_intx_update(d);
	}
	uint64_t addr[PCI_NUM_BARS];
	bool active[PCI_NUM_BARS];
	pci_bars_decode(d, addr, active);
	pthread_mutex_unlock(&d->lock);
	/* BARs decoding now get their dispatch and the device's doorbells (bar_changed). */
	unsigned changed = r == 0 ? pci_bars_publish(d, addr, active) : 0;
	for (int i = 0; i < PCI_NUM_BARS; i++)
		if ((changed & (1u << i)) && d->bar_changed)
			d->bar_changed(d, i);
	free(config);
	free(v);
	free(pba);
	return r;
}

void pci_bus_save(struct pci_bus *bus, struct stream *s)
{
	pthread_mutex_lock(&bus->cfg_lock);
	stream_put_u32(s, bus->cf8);
	for (int slot = 0; slot < PCI_MAX_SLOTS; slot++) {
		stream_put_u8(s, bus->slots[slot] != NULL);
		if (bus->slots[slot])
			pci_device_save(bus->slots[slot], s);
	}
	pthread_mutex_unlock(&bus->cfg_lock);
}

int pci_bus_load(struct pci_bus *bus, struct stream *s, uint32_t version)
{
	if (version != PCI_BUS_STATE_VERSION)
		return -EBADMSG;
	pthread_mutex_lock(&bus->cfg_lock);
	uint32_t cf8 = stream_get_u32(s);
	int r = cf8 & ~CF8_MASK ? -EBADMSG : 0;
	bus->cf8 = cf8 & CF8_MASK;
	/* The restored VM has the same devices in the same slots, or the file is not its own. */
	for (int slot = 0; slot < PCI_MAX_SLOTS && r == 0; slot++) {
		bool present = stream_get_u8(s) != 0;
		if (stream_error(s) || present != (bus->slots[slot] != NULL))
			r = stream_error(s) ? stream_error(s) : -EBADMSG;
		else if (present)
			r = pci_device_load(bus->slots[slot], s);
	}
	/* Q35's chipset registers act again: the ECAM, the PAM hook, the ACPI registers' base. */
	if (r == 0 && bus->cfg.q35) {
		q35_mch_sync(bus);
		ich9_lpc_sync(bus);
	}
	pthread_mutex_unlock(&bus->cfg_lock);
	return r;
}
