/* The KVM GSI routing table kept in kvmkit (KVM_SET_GSI_ROUTING replaces it whole): the
 * irqchip's default routes plus one MSI route per allocated GSI; and the irqfd/ioeventfd
 * wrappers through which devices raise interrupts and receive doorbells. */
#include "vmm/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/layout.h"
#include "lib/log.h"
#include "vmm/vm.h"

/* KVM on x86 allows 4096 routes; a VM with a handful of PCI devices needs tens, and each commit
 * copies the whole table into the kernel, so the table is capped well below that. */
#define IRQ_MAX_GSIS       1024
#define IRQ_FIRST_MSI_GSI  LAYOUT_IOAPIC_PINS
/* The default routes: 16 GSIs on both the PIC and the IOAPIC, 8 on the IOAPIC only. */
#define IRQ_PIC_GSIS       16
#define IRQ_DEFAULT_ROUTES (IRQ_PIC_GSIS + LAYOUT_IOAPIC_PINS)

struct msi_route {
	bool allocated;
	bool set;          /* in the table KVM has; until then the GSI routes nowhere */
	uint64_t address;
	uint32_t data;
};

struct irq_routing {
	pthread_mutex_t lock;       /* the MSI routes and commits */
	uint32_t nr_gsis;           /* GSIs 0 .. nr_gsis-1 exist */
	struct msi_route *msi;      /* index gsi - IRQ_FIRST_MSI_GSI */
	struct kvm_irq_routing *table; /* the buffer handed to KVM, rebuilt on every commit */
};

static uint32_t irq_nr_msi(const struct irq_routing *r)
{
	return r->nr_gsis - IRQ_FIRST_MSI_GSI;
}

static struct kvm_irq_routing_entry irqchip_route(uint32_t gsi, uint32_t chip, uint32_t pin)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi,
		.type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};
}

/* Sends the whole table to KVM. The ioctl either installs all of it or keeps the old table,
 * so on failure KVM still routes what it routed before. Caller holds r->lock. */
static int irq_commit(struct vm *vm)
{
	struct irq_routing *r = vm->irq;
	struct kvm_irq_routing_entry *e = r->table->entries;
	uint32_t n = 0;
	/* The same routes KVM_CREATE_IRQCHIP installs (the kernel's default table), so replacing
	 * the table changes nothing for the legacy devices: GSIs 0-15 reach both the 8259 pair and
	 * the IOAPIC, GSIs 16-23 only the IOAPIC. */
	for (uint32_t gsi = 0; gsi < LAYOUT_IOAPIC_PINS; gsi++) {
		e[n++] = irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi);
		if (gsi < IRQ_PIC_GSIS)
			e[n++] = irqchip_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER :
						   KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
	}
	for (uint32_t i = 0; i < irq_nr_msi(r); i++) {
		const struct msi_route *m = &r->msi[i];
		if (!m->set)
			continue;
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = IRQ_FIRST_MSI_GSI + i,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = {
				.address_lo = (uint32_t)m->address,
				.address_hi = (uint32_t)(m->address >> 32),
				.data = m->data,
			},
		};
	}
	r->table->nr = n;
	r->table->flags = 0;
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r->table) < 0)
		return -errno;
	return 0;
}

int irq_routing_init(struct vm *vm)
{
	if (vm->irq)
		return -EEXIST;
	int max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
	if (max <= IRQ_FIRST_MSI_GSI) {
		log_debug("KVM_CAP_IRQ_ROUTING reports %d GSIs", max);
		return -ENOTSUP;
	}
	struct irq_routing *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->nr_gsis = max > IRQ_MAX_GSIS ? IRQ_MAX_GSIS : (uint32_t)max;
	r->msi = calloc(irq_nr_msi(r), sizeof(*r->msi));
	r->table = calloc(1, sizeof(*r->table) +
			     (IRQ_DEFAULT_ROUTES + irq_nr_msi(r)) * sizeof(r->table->entries[0]));
	if (!r->msi || !r->table) {
		free(r->msi);
		free(r->table);
		free(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	vm->irq = r;
	int ret = irq_commit(vm);
	if (ret < 0)
		irq_routing_destroy(vm);
	return ret;
}

void irq_routing_destroy(struct vm *vm)
{
	struct irq_routing *r = vm->irq;
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->msi);
	free(r->table);
	free(r);
	vm->irq = NULL;
}

int irq_msi_route_alloc(struct vm *vm)
{
	struct irq_routing *r = vm->irq;
	if (!r)
		return -ENODEV;
	int gsi = -ENOSPC;
	pthread_mutex_lock(&r->lock);
	for (uint32_t i = 0; i < irq_nr_msi(r); i++) {
		if (!r->msi[i].allocated) {
			r->msi[i] = (struct msi_route){ .allocated = true };
			gsi = (int)(IRQ_FIRST_MSI_GSI + i);
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return gsi;
}

/* The allocated MSI route of gsi, or NULL. Caller holds r->lock. */
static struct msi_route *irq_msi_route(struct irq_routing *r, int gsi)
{
	if (gsi < IRQ_FIRST_MSI_GSI || (uint32_t)gsi >= r->nr_gsis)
		return NULL;
	struct msi_route *m = &r->msi[gsi - IRQ_FIRST_MSI_GSI];
	return m->allocated ? m : NULL;
}

int irq_msi_route_set(struct vm *vm, int gsi, uint64_t address, uint32_t data)
{
	struct irq_routing *r = vm->irq;
	if (!r)
		return -ENODEV;
	pthread_mutex_lock(&r->lock);
	struct msi_route *m = irq_msi_route(r, gsi);
	int ret = -EINVAL;
	if (m) {
		struct msi_route old = *m;
		m->set = true;
		m->address = address;
		m->data = data;
		ret = irq_commit(vm);
		/* KVM kept its old table (it may refuse a route the guest made up): so do we. */
		if (ret < 0)
			*m = old;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void irq_msi_route_free(struct vm *vm, int gsi)
{
	struct irq_routing *r = vm->irq;
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	struct msi_route *m = irq_msi_route(r, gsi);
	if (m) {
		bool was_set = m->set;
		*m = (struct msi_route){ 0 };
		int ret = was_set ? irq_commit(vm) : 0;
		if (ret < 0)
			log_debug("cannot remove the route of GSI %d: %s", gsi, strerror(-ret));
	}
	pthread_mutex_unlock(&r->lock);
}

int irq_irqfd(struct vm *vm, int eventfd, int gsi, bool assign)
{
	if (eventfd < 0 || gsi < 0)
		return -EINVAL;
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)eventfd,
		.gsi = (uint32_t)gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	return 0;
}

static int irq_ioeventfd_flags(struct vm *vm, uint64_t addr, uint32_t len, int eventfd,
			       uint32_t flags, uint64_t datamatch)
{
	if (eventfd < 0 || (len != 0 && len != 1 && len != 2 && len != 4 && len != 8))
		return -EINVAL;
	struct kvm_ioeventfd io = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = eventfd,
		.flags = flags,
	};
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	return 0;
}

int irq_ioeventfd(struct vm *vm, uint64_t addr, uint32_t len, bool is_pio, int eventfd,
		  bool assign)
{
	return irq_ioeventfd_flags(vm, addr, len, eventfd,
				   (is_pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
				   (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN), 0);
}

int irq_ioeventfd_datamatch(struct vm *vm, uint64_t addr, uint32_t len, bool is_pio,
			    uint64_t datamatch, int eventfd, bool assign)
{
	if (len == 0)
		return -EINVAL; /* KVM compares len bytes: "any length" has nothing to match */
	return irq_ioeventfd_flags(vm, addr, len, eventfd,
				   KVM_IOEVENTFD_FLAG_DATAMATCH |
				   (is_pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
				   (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN), datamatch);
}
