/* The VM's state other than RAM in the migration stream: every vCPU, the irqchip (8259 pair and
 * IOAPIC), the PIT, the kvmclock, and the devices of the VM's registry by stable id (section tag
 * and instance); each section checked for size and range on loading, and each exactly once. */
#include "migration/vmstate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/vcpu_state.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/vm.h"

#define IRQCHIP_TAG STREAM_TAG('I', 'R', 'Q', 'C')
#define IRQCHIP_VERSION 1
#define PIT_TAG STREAM_TAG('P', 'I', 'T', ' ')
#define PIT_VERSION 1
#define CLOCK_TAG STREAM_TAG('C', 'L', 'C', 'K')
#define CLOCK_VERSION 1

/* The chips of KVM_GET_IRQCHIP, in this order in the section. */
static const uint32_t irqchip_ids[] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					KVM_IRQCHIP_IOAPIC };
#define NCHIPS (sizeof(irqchip_ids) / sizeof(irqchip_ids[0]))

int vmstate_check_supported(struct vm *vm)
{
	(void)vm; /* every device kvmkit has can be saved; the place to refuse one that cannot */
	return 0;
}

void vmstate_stop_devices(struct vm *vm)
{
	device_registry_quiesce(&vm->devices);
}

void vmstate_restart_devices(struct vm *vm)
{
	device_registry_resume(&vm->devices);
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
