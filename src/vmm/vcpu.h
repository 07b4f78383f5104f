/* One vCPU: its KVM fd and shared kvm_run page, its thread, and the exit-dispatch loop. */
#ifndef KVMKIT_VMM_VCPU_H
#define KVMKIT_VMM_VCPU_H

#include <linux/kvm.h>

#include "vmm/vm.h"

/* Creates vCPU `index` with its CPUID (derived from the KVM-supported table) and initial
 * MSR/FPU/LAPIC state. Returns 0 or -errno after printing why. */
int vcpu_create(struct vm *vm, struct vcpu *v, uint32_t index, const struct kvm_cpuid2 *supported,
		uint32_t supported_capacity);
/* Starts the vCPU's thread (it runs until the VM stops). */
int vcpu_start(struct vcpu *v);
/* Forces the vCPU out of KVM_RUN so it sees the stop request. */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

/* Installs the no-op signal handler used to kick vCPUs (once per process). */
void vcpu_init_signals(void);

/* Prints exit counts per reason over all vCPUs (for --stats). */
void vcpu_print_stats(struct vm *vm);

#endif
