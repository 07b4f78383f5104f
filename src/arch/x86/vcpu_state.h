/* One x86 vCPU's complete KVM state (registers, FPU/XSAVE, XCRs, the MSRs QEMU migrates, LAPIC,
 * pending events, MP state, debug registers, TSC frequency) to and from a migration stream. */
#ifndef KVMKIT_ARCH_X86_VCPU_STATE_H
#define KVMKIT_ARCH_X86_VCPU_STATE_H

#include <stdint.h>

struct kvm_run;
struct stream;

#define VCPU_STATE_TAG     0x20555043u /* "CPU " */
#define VCPU_STATE_VERSION 1

/* Lets KVM finish an instruction whose port-I/O or MMIO exit userspace has handled but that
 * was not re-entered (an IN's data still sits in the run area): one KVM_RUN with immediate_exit,
 * as QEMU does before it reads state. The vCPU's thread must have stopped. Returns 0 or -errno. */
int vcpu_state_complete_io(int vcpu_fd, struct kvm_run *run);

/* Writes the body of a "CPU " section (the caller frames it, instance = vCPU index) for a
 * stopped vCPU. kvm_fd is /dev/kvm's fd (for the MSR list and the XSAVE size). Returns 0 or
 * -errno. */
int vcpu_state_save(int kvm_fd, int vcpu_fd, struct stream *s);

/* Reads the body of a "CPU " section that stream_next_section has just loaded, checks every
 * size and field, and sets it into the vCPU. Returns 0 or -errno; on an error, *what names the
 * part that failed ("the MSRs", ...) for the message at the edge. */
int vcpu_state_load(int kvm_fd, int vcpu_fd, uint32_t version, struct stream *s,
		    const char **what);

#endif
