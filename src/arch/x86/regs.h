/* vCPU register state: the initial state of the boot vCPU and a readable dump on failures. */
#ifndef KVMKIT_ARCH_X86_REGS_H
#define KVMKIT_ARCH_X86_REGS_H

#include <stdio.h>

#include "vmm/memory.h"

/* Prints general registers, segments, control registers and the code bytes around RIP. */
void regs_dump(int vcpu_fd, const struct guest_mem *mem, FILE *out);

/* The state every vCPU gets before it runs: MSRs, FPU, and the LAPIC's LINT0/LINT1 wired as a
 * BIOS leaves them (ExtINT / NMI) so the 8259 reaches the boot CPU. Returns 0 or -errno. */
int regs_init_vcpu(int vcpu_fd);

#endif
