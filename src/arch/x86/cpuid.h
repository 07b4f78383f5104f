/* Guest CPUID: KVM's supported table edited into kvmkit's vCPU topology and hypervisor leaves. */
#ifndef KVMKIT_ARCH_X86_CPUID_H
#define KVMKIT_ARCH_X86_CPUID_H

#include <stdint.h>

#include <linux/kvm.h>

/* Edits, for vCPU cpu_index of ncpus, the table KVM_GET_SUPPORTED_CPUID returned (in place; it
 * may need room for extra entries, so it takes the allocated capacity in entries): topology as
 * one socket of ncpus cores with 1 thread each, APIC ID = cpu_index; the hypervisor bit and the
 * KVM paravirt leaves; no architectural PMU (leaf 0xA zeroed).
 * Pure: no ioctls. Call it on a fresh copy of the supported table for each vCPU (editing an
 * already edited table again gives the same result).
 * Returns 0, -EINVAL (ncpus == 0, cpu_index >= ncpus, nent > capacity) or -ENOSPC (the extra
 * entries do not fit; the table is then left unchanged). */
/* Entries cpuid_setup may add beyond those KVM reported. */
#define CPUID_EXTRA_ENTRIES 8

int cpuid_setup(struct kvm_cpuid2 *cpuid, uint32_t capacity, uint32_t cpu_index, uint32_t ncpus);

/* KVM_GET_SUPPORTED_CPUID never reports the TSC-deadline timer (leaf 1 ECX bit 24): the in-kernel
 * LAPIC emulates it when KVM_CAP_TSC_DEADLINE_TIMER says so, and the VMM must announce it. Linux
 * needs it here: without it, it calibrates the LAPIC timer against the PIT, which fails under
 * nested virtualization, and falls back to PIT broadcast ticks that stall sleeping tasks. */
void cpuid_enable_tsc_deadline(struct kvm_cpuid2 *cpuid);

/* The entry a guest's CPUID(function, index) would read, or NULL: index is only compared for
 * entries flagged KVM_CPUID_FLAG_SIGNIFCANT_INDEX, as KVM does. */
const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t function,
                                          uint32_t index);

#endif
