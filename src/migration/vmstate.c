/* The VM's state other than RAM in the migration stream: every vCPU, the irqchip (8259 pair and
 * IOAPIC), the PIT, the kvmclock, the platform devices, PCI and the virtio devices; each section
 * checked for size and range on loading, and each exactly once. */
#include "migration/vmstate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/vcpu_state.h"
#include "hw/devices.h"
#include "hw/pci.h"
#include "lib/log.h"
#include "migration/stream.h"
#include "virtio/devices.h"
#include "virtio/transport.h"
#include "virtio/virtio.h"
#include "vmm/vm.h"

#define IRQCHIP_TAG STREAM_TAG('I', 'R', 'Q', 'C')
#define IRQCHIP_VERSION 1
#define PIT_TAG STREAM_TAG('P', 'I', 'T', ' ')
#define PIT_VERSION 1
#define CLOCK_TAG STREAM_TAG('C', 'L', 'C', 'K')
#define CLOCK_VERSION 1
#define VIRTIO_TAG STREAM_TAG('V', 'I', 'R', 'T')
#define VIRTIO_NET_TAG STREAM_TAG('V', 'N', 'E', 'T')
#define VIRTIO_CONSOLE_TAG STREAM_TAG('V', 'C', 'O', 'N')

/* The chips of KVM_GET_IRQCHIP, in this order in the section. */
static const uint32_t irqchip_ids[] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					KVM_IRQCHIP_IOAPIC };
#define NCHIPS (sizeof(irqchip_ids) / sizeof(irqchip_ids[0]))

int vmstate_check_supported(struct vm *vm)
{
	(void)vm; /* every device kvmkit has can be saved; the place to refuse one that cannot */
	return 0;
}

/* The virtio devices in a fixed order: disks, the rng, the NICs, the console; instance i of
 * "VIRT" (the newer kinds last, so a VM without them numbers its devices as before). */
enum virtio_kind { VIRTIO_BLK, VIRTIO_RNG, VIRTIO_NET, VIRTIO_CONSOLE };
struct virtio_ref {
	enum virtio_kind kind;
	unsigned index; /* among the devices of its kind */
};

static unsigned vmstate_nvirtio(const struct vm *vm)
{
	return vm->cfg->ndisks + (vm->rng != NULL) + vm->cfg->nnics + (vm->vconsole != NULL);
}

static struct virtio_ref vmstate_virtio_ref(const struct vm *vm, unsigned i)
{
	if (i < vm->cfg->ndisks)
		return (struct virtio_ref){ VIRTIO_BLK, i };
	i -= vm->cfg->ndisks;
	if (vm->rng && i-- == 0)
		return (struct virtio_ref){ VIRTIO_RNG, 0 };
	if (i < vm->cfg->nnics)
		return (struct virtio_ref){ VIRTIO_NET, i };
	return (struct virtio_ref){ VIRTIO_CONSOLE, 0 };
}

static struct virtio_transport *vmstate_virtio(struct vm *vm, unsigned i)
{
	struct virtio_ref r = vmstate_virtio_ref(vm, i);
	switch (r.kind) {
	case VIRTIO_BLK: return virtio_blk_transport(vm->disks[r.index]);
	case VIRTIO_RNG: return virtio_rng_transport(vm->rng);
	case VIRTIO_NET: return virtio_net_transport(vm->nics[r.index]);
	case VIRTIO_CONSOLE: break;
	}
	return virtio_console_transport(vm->vconsole);
}

/* The section of a device's own state, saved before its "VIRT" (tag 0: none). */
static const struct {
	uint32_t tag;
	uint32_t version;
	const char *name;
} virtio_own[] = {
	[VIRTIO_NET] = { VIRTIO_NET_TAG, VIRTIO_NET_STATE_VERSION, "virtio-net" },
	[VIRTIO_CONSOLE] = { VIRTIO_CONSOLE_TAG, VIRTIO_CONSOLE_STATE_VERSION, "virtio-console" },
};

static bool virtio_has_own(struct virtio_ref r)
{
	return r.kind < sizeof(virtio_own) / sizeof(virtio_own[0]) && virtio_own[r.kind].tag;
}

static void virtio_own_save(struct vm *vm, struct virtio_ref r, struct stream *s)
{
	if (r.kind == VIRTIO_NET)
		virtio_net_save(vm->nics[r.index], s);
	else if (r.kind == VIRTIO_CONSOLE)
		virtio_console_save(vm->vconsole, s);
}

static int virtio_own_load(struct vm *vm, struct virtio_ref r, struct stream *s, uint32_t v)
{
	if (r.kind == VIRTIO_NET)
		return virtio_net_load(vm->nics[r.index], s, v);
	if (r.kind == VIRTIO_CONSOLE)
		return virtio_console_load(vm->vconsole, s, v);
	return -EBADMSG;
}

/* The console keeps its driver's state through a snapshot's stop and start (see devices.h). */
static void virtio_hold(struct vm *vm, struct virtio_ref r, bool hold)
{
	if (r.kind == VIRTIO_CONSOLE)
		virtio_console_hold_driver_state(vm->vconsole, hold);
}

void vmstate_stop_devices(struct vm *vm)
{
	for (unsigned i = 0; i < vmstate_nvirtio(vm); i++) {
		virtio_hold(vm, vmstate_virtio_ref(vm, i), true);
		virtio_device_stop(virtio_transport_device(vmstate_virtio(vm, i)));
	}
}

void vmstate_restart_devices(struct vm *vm)
{
	for (unsigned i = 0; i < vmstate_nvirtio(vm); i++) {
		struct virtio_device *d = virtio_transport_device(vmstate_virtio(vm, i));
		if (virtio_device_restart(d) < 0)
			virtio_device_broken(d, "the device could not start again after a snapshot");
		virtio_hold(vm, vmstate_virtio_ref(vm, i), false);
	}
}

static int vmstate_save_vcpus(struct vm *vm, struct stream *s)
{
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int r = vcpu_state_complete_io(v->fd, v->run);
		if (r == 0) {
			stream_begin_section(s, VCPU_STATE_TAG, i, VCPU_STATE_VERSION);
			r = vcpu_state_save(vm->kvm_fd, v->fd, s);
		}
		if (r == 0)
			r = stream_end_section(s);
		if (r < 0) {
			log_error("cannot save the state of vCPU %u: %s", i, strerror(-r));
			return r;
		}
	}
	return 0;
}

int vmstate_save(struct vm *vm, struct stream *s)
{
	int r = vmstate_save_vcpus(vm, s);
	if (r < 0)
		return r;

	stream_begin_section(s, IRQCHIP_TAG, 0, IRQCHIP_VERSION);
	for (size_t i = 0; i < NCHIPS && r == 0; i++) {
		struct kvm_irqchip chip = { .chip_id = irqchip_ids[i] };
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			r = -errno;
		stream_put_bytes(s, &chip, sizeof(chip));
	}
	if (r == 0)
		r = stream_end_section(s);
	if (r < 0) {
		log_error("cannot save the state of the interrupt controllers: %s", strerror(-r));
		return r;
	}

	struct kvm_pit_state2 pit;
	r = ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0 ? -errno : 0;
	stream_begin_section(s, PIT_TAG, 0, PIT_VERSION);
	stream_put_bytes(s, &pit, sizeof(pit));
	if (r == 0)
		r = stream_end_section(s);
	if (r < 0) {
		log_error("cannot save the state of the PIT: %s", strerror(-r));
		return r;
	}

	/* Last: the clock goes on from the moment the vCPUs stopped, which for a VM paused by
	 * vm_pause is the moment of the pause (KVM's clock ran on since; vm_resume winds it back). */
	struct kvm_clock_data clock = { 0 };
	r = 0;
	if (vm_is_paused(vm) && vm->clock_saved)
		clock.clock = vm->paused_clock;
	else if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		r = -errno;
	stream_begin_section(s, CLOCK_TAG, 0, CLOCK_VERSION);
	stream_put_u64(s, clock.clock);
	if (r == 0)
		r = stream_end_section(s);
	if (r < 0) {
		log_error("cannot save the guest clock: %s", strerror(-r));
		return r;
	}
	/* The devices in the registry's order (the machine's table: PCI before the virtio devices,
	 * whose load starts them, which needs their MSI-X routes). */
	for (unsigned k = 0; k < vm->devices.n && r == 0; k++) {
		const struct device *d = &vm->devices.devs[k];
		if (!d->ops->tag)
			continue;
		stream_begin_section(s, d->ops->tag, d->instance, d->ops->version);
		d->ops->save(d->state, s);
		r = stream_end_section(s);
		if (r < 0)
			log_error("cannot save the state of the %s: %s", d->ops->name, strerror(-r));
	}
	for (unsigned i = 0; i < vmstate_nvirtio(vm) && r == 0; i++) {
		struct virtio_ref ref = vmstate_virtio_ref(vm, i);
		if (virtio_has_own(ref)) {
			stream_begin_section(s, virtio_own[ref.kind].tag, ref.index,
					     virtio_own[ref.kind].version);
			virtio_own_save(vm, ref, s);
			r = stream_end_section(s);
			if (r < 0)
				break;
		}
		stream_begin_section(s, VIRTIO_TAG, i, VIRTIO_TRANSPORT_STATE_VERSION);
		virtio_transport_save(vmstate_virtio(vm, i), s);
		r = stream_end_section(s);
	}
	if (r < 0)
		log_error("cannot save the state of the PCI and virtio devices: %s", strerror(-r));
	return r;
}

int vmstate_loader_init(struct vmstate_loader *l, struct vm *vm, const char *source)
{
	memset(l, 0, sizeof(*l));
	l->vm = vm;
	l->source = source;
	l->cpu_loaded = calloc(vm->ncpus, sizeof(bool));
	return l->cpu_loaded ? 0 : -ENOMEM;
}

static int vmstate_load_vcpu(struct vmstate_loader *l, const struct stream_section *sec,
			     struct stream *s)
{
	if (sec->instance >= l->vm->ncpus || l->cpu_loaded[sec->instance]) {
		log_error("%s holds a state for vCPU %u that is repeated or beyond the VM's %u "
			  "vCPUs: the file is damaged", l->source, sec->instance, l->vm->ncpus);
		return -EBADMSG;
	}
	const char *what;
	struct vcpu *v = &l->vm->vcpus[sec->instance];
	int r = vcpu_state_load(l->vm->kvm_fd, v->fd, sec->version, s, &what);
	if (r < 0) {
		if (stream_error(s))
			log_error("%s: %s of vCPU %u are damaged (%s)", l->source, what,
				  sec->instance, strerror(-r));
		else
			log_error("%s: this host's KVM refused %s of vCPU %u: %s", l->source, what,
				  sec->instance, strerror(-r));
		return r;
	}
	l->cpu_loaded[sec->instance] = true;
	return 0;
}

/* The PIT's fields are bounded by the 8254 itself (KVM marks a never-programmed channel's mode
 * 0xff); KVM trusts them. */
static bool pit_state_valid(const struct kvm_pit_state2 *pit)
{
	for (int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &pit->channels[i];
		if (c->count > 0x10000 || (c->mode > 5 && c->mode != 0xff) || c->rw_mode > 3 || c->read_state > 4 ||
		    c->write_state > 4 || c->bcd > 1 || c->gate > 1 || c->count_latched > 3 ||
		    c->status_latched > 1)
			return false;
	}
	return true;
}

/* A device's section: each once, a device's own before its parts' (a virtio transport's load
 * starts the device, with the device's state loaded before). */
static int vmstate_load_device(struct vmstate_loader *l, const struct stream_section *sec,
			       struct stream *s, bool *handled)
{
	struct device_registry *reg = &l->vm->devices;
	struct device *d = device_find_section(reg, sec->tag, sec->instance);
	*handled = d != NULL;
	if (!d)
		return 0;
	unsigned k = (unsigned)(d - reg->devs);
	bool later_part = false;
	for (unsigned j = k + 1; j < reg->n && reg->devs[j].group == d->group; j++)
		later_part |= l->device_loaded[j];
	if (l->device_loaded[k] || later_part) {
		log_error("%s: the %s state (instance %u) is repeated or out of order: the file is "
			  "damaged", l->source, d->ops->name, d->instance);
		return -EBADMSG;
	}
	int r = d->ops->load(d->state, s, sec->version);
	if (r == 0)
		r = stream_end_read(s);
	if (r < 0) {
		log_error("%s: the %s state (instance %u) is damaged, from a newer kvmkit or from a "
			  "VM with other devices", l->source, d->ops->name, d->instance);
		return r;
	}
	l->device_loaded[k] = true;
	return 0;
}

/* "VIRT" sections: each once, and only for what the restored VM has. */
static int vmstate_load_virtio(struct vmstate_loader *l, const struct stream_section *sec,
			       struct stream *s)
{
	struct vm *vm = l->vm;
	bool pci = false;
	unsigned i = sec->instance;
	bool *seen = i < VMSTATE_MAX_VIRTIO ? &l->virtio_loaded[i] : NULL;
	if (!seen || *seen || i >= vmstate_nvirtio(vm)) {
		log_error("%s holds %s state the VM does not have or has twice: the file is damaged",
			  l->source, pci ? "PCI" : "virtio device");
		return -EBADMSG;
	}
	/* A device the saved driver had started starts now, with the state loaded before. */
	if (!pci)
		virtio_hold(vm, vmstate_virtio_ref(vm, i), true);
	int r = virtio_transport_load(vmstate_virtio(vm, i), s, sec->version);
	if (!pci)
		virtio_hold(vm, vmstate_virtio_ref(vm, i), false);
	if (r == 0)
		r = stream_end_read(s);
	if (r < 0) {
		if (pci)
			log_error("%s: the PCI state is damaged, from a newer kvmkit or from a VM with "
				  "other devices", l->source);
		else
			log_error("%s: the state of virtio device %u is damaged or from a newer "
				  "kvmkit", l->source, i);
		return r;
	}
	*seen = true;
	return 0;
}

/* "VNET" and "VCON": a device's own state, once, and before its "VIRT" (which starts it). */
static int vmstate_load_virtio_own(struct vmstate_loader *l, const struct stream_section *sec,
				   struct stream *s)
{
	struct vm *vm = l->vm;
	unsigned n = vmstate_nvirtio(vm), i;
	struct virtio_ref ref = { VIRTIO_BLK, 0 };
	for (i = 0; i < n; i++) {
		ref = vmstate_virtio_ref(vm, i);
		if (virtio_has_own(ref) && virtio_own[ref.kind].tag == sec->tag &&
		    ref.index == sec->instance)
			break;
	}
	const char *name = virtio_own[sec->tag == VIRTIO_NET_TAG ? VIRTIO_NET : VIRTIO_CONSOLE].name;
	if (i == n || l->own_loaded[i] || l->virtio_loaded[i]) {
		log_error("%s holds %s state the VM does not have, has twice or has after the "
			  "device's: the file is damaged", l->source, name);
		return -EBADMSG;
	}
	int r = virtio_own_load(vm, ref, s, sec->version);
	if (r == 0)
		r = stream_end_read(s);
	if (r < 0) {
		log_error("%s: the state of %s device %u is damaged or from a newer kvmkit%s",
			  l->source, name, sec->instance,
			  ref.kind == VIRTIO_NET ? " (or it had another MAC address)" : "");
		return r;
	}
	l->own_loaded[i] = true;
	return 0;
}

int vmstate_load_section(struct vmstate_loader *l, const struct stream_section *sec,
			 struct stream *s, bool *handled)
{
	*handled = true;
	int r;
	bool *seen;
	const char *name;
	switch (sec->tag) {
	case VCPU_STATE_TAG:
		return vmstate_load_vcpu(l, sec, s);
	case VIRTIO_TAG:
		return vmstate_load_virtio(l, sec, s);
	case VIRTIO_NET_TAG:
	case VIRTIO_CONSOLE_TAG:
		return vmstate_load_virtio_own(l, sec, s);
	case IRQCHIP_TAG: seen = &l->irqchip; name = "interrupt controller"; break;
	case PIT_TAG:     seen = &l->pit;     name = "PIT"; break;
	case CLOCK_TAG:   seen = &l->clock;   name = "clock"; break;
	default:
		return vmstate_load_device(l, sec, s, handled);
	}
	if (*seen || sec->instance != 0 || sec->version != 1) {
		log_error("%s: the %s section is repeated or of an unknown version (%u): the file is "
			  "damaged or from a newer kvmkit", l->source, name, sec->version);
		return -EBADMSG;
	}
	*seen = true;
	if (sec->tag == IRQCHIP_TAG) {
		struct kvm_irqchip chips[NCHIPS];
		for (size_t i = 0; i < NCHIPS; i++) {
			stream_get_bytes(s, &chips[i], sizeof(chips[i]));
			if (!stream_error(s) && chips[i].chip_id != irqchip_ids[i])
				stream_fail(s, -EBADMSG);
		}
		r = stream_end_read(s);
		for (size_t i = 0; i < NCHIPS && r == 0; i++)
			if (ioctl(l->vm->vm_fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
				r = -errno;
	} else if (sec->tag == PIT_TAG) {
		struct kvm_pit_state2 pit;
		stream_get_bytes(s, &pit, sizeof(pit));
		if (!stream_error(s) && !pit_state_valid(&pit))
			stream_fail(s, -EBADMSG);
		r = stream_end_read(s);
		if (r == 0 && ioctl(l->vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
			r = -errno;
	} else {
		struct kvm_clock_data clock = { .clock = stream_get_u64(s) };
		r = stream_end_read(s);
		if (r == 0 && ioctl(l->vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
			r = -errno;
	}
	if (r < 0 && stream_error(s))
		log_error("%s: the %s state is damaged (%s)", l->source, name, strerror(-r));
	else if (r < 0)
		log_error("%s: this host's KVM refused the saved %s state: %s", l->source, name,
			  strerror(-r));
	return r;
}

int vmstate_loader_finish(struct vmstate_loader *l, bool check)
{
	int r = 0;
	for (uint32_t i = 0; check && i < l->vm->ncpus && r == 0; i++) {
		if (!l->cpu_loaded[i]) {
			log_error("%s has no state for vCPU %u: the file is damaged", l->source, i);
			r = -EBADMSG;
		}
	}
	if (check && r == 0 && !(l->irqchip && l->pit && l->clock)) {
		log_error("%s lacks the %s state: the file is damaged", l->source,
			  !l->irqchip ? "interrupt controller" : !l->pit ? "PIT" : "clock");
		r = -EBADMSG;
	}
	for (unsigned i = 0; check && i < vmstate_nvirtio(l->vm) && r == 0; i++) {
		struct virtio_ref ref = vmstate_virtio_ref(l->vm, i);
		if (!l->virtio_loaded[i] || (virtio_has_own(ref) && !l->own_loaded[i])) {
			log_error("%s lacks the state of virtio device %u: the file is damaged",
				  l->source, i);
			r = -EBADMSG;
		}
	}
	for (unsigned k = 0; check && k < l->vm->devices.n && r == 0; k++) {
		const struct device *d = &l->vm->devices.devs[k];
		if (d->ops->tag && !l->device_loaded[k]) {
			log_error("%s lacks the %s state (instance %u): the file is damaged",
				  l->source, d->ops->name, d->instance);
			r = -EBADMSG;
		}
	}
	free(l->cpu_loaded);
	l->cpu_loaded = NULL;
	return r;
}
