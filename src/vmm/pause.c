/* Pausing a running VM: every vCPU leaves KVM_RUN and parks on a condition variable, the I/O
 * thread stops running device handlers, and the KVM clock is frozen across the pause (what
 * QEMU's stop/cont do with kvmclock). */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "vmm/iothread.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

static uint32_t vm_started_vcpus(const struct vm *vm)
{
	uint32_t n = 0;
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++)
		n += vm->vcpus[i].thread_started;
	return n;
}

/* Asks every vCPU to park and waits until all running ones have. Caller holds pause_op_lock. */
static int vm_park_vcpus(struct vm *vm)
{
	atomic_store(&vm->pause_requested, true);
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	uint32_t want = vm_started_vcpus(vm);
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->vcpus_parked < want && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	int r = atomic_load(&vm->stopping) ? -ESHUTDOWN : 0;
	pthread_mutex_unlock(&vm->pause_lock);
	return r;
}

static void vm_unpark_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

void vm_park_vcpu(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stopping)) {
		vm->vcpus_parked++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (atomic_load(&vm->pause_requested) && !atomic_load(&vm->stopping))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->vcpus_parked--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_op_lock);
	int r = 0;
	if (!atomic_load(&vm->paused)) {
		r = vm_park_vcpus(vm);
		if (r == 0) {
			/* vCPUs first: a parked vCPU rings no doorbell the held I/O thread would miss. */
			if (vm->io)
				iothread_pause(vm->io);
			struct kvm_clock_data clock;
			memset(&clock, 0, sizeof(clock));
			vm->clock_saved = ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) == 0;
			if (!vm->clock_saved)
				log_debug("KVM_GET_CLOCK: %s", strerror(errno));
			vm->paused_clock = clock.clock;
			atomic_store(&vm->clock_frozen_ns, (int64_t)vm_guest_clock_ns(vm));
			atomic_store(&vm->paused, true);
		}
	}
	pthread_mutex_unlock(&vm->pause_op_lock);
	return r;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_op_lock);
	int r = 0;
	if (atomic_load(&vm->paused)) {
		if (atomic_load(&vm->stopping)) {
			r = -ESHUTDOWN;
		} else {
			if (vm->clock_saved) {
				/* flags 0: the clock goes on from the saved value, not from real time. */
				struct kvm_clock_data clock;
				memset(&clock, 0, sizeof(clock));
				clock.clock = vm->paused_clock;
				if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
					log_debug("KVM_SET_CLOCK: %s", strerror(errno));
			}
			/* The base first: a reader that still sees the frozen value reads that. */
			int64_t frozen = atomic_load(&vm->clock_frozen_ns);
			atomic_store(&vm->clock_base_ns, clock_mono_ns() - (uint64_t)frozen);
			atomic_store(&vm->clock_frozen_ns, -1);
			if (vm->io)
				iothread_resume(vm->io);
			atomic_store(&vm->paused, false);
			vm_unpark_vcpus(vm);
		}
	}
	pthread_mutex_unlock(&vm->pause_op_lock);
	return r;
}

uint64_t vm_guest_clock_ns(void *opaque)
{
	struct vm *vm = opaque;
	int64_t frozen = atomic_load(&vm->clock_frozen_ns);
	if (frozen >= 0)
		return (uint64_t)frozen;
	return clock_mono_ns() - atomic_load(&vm->clock_base_ns);
}

bool vm_is_paused(struct vm *vm)
{
	return atomic_load(&vm->paused);
}

int vm_with_vcpus_parked(struct vm *vm, void (*fn)(struct vm *vm, void *opaque), void *opaque)
{
	pthread_mutex_lock(&vm->pause_op_lock);
	bool was_paused = atomic_load(&vm->paused);
	int r = was_paused ? 0 : vm_park_vcpus(vm);
	if (r == 0)
		fn(vm, opaque);
	if (!was_paused)
		vm_unpark_vcpus(vm);
	pthread_mutex_unlock(&vm->pause_op_lock);
	return r;
}
