/* A flight recorder of each vCPU's last exits to userspace, printed when a VM dies or hangs. */
#ifndef KVMKIT_VMM_VCPU_TRACE_H
#define KVMKIT_VMM_VCPU_TRACE_H

#include <stdio.h>

#include "vmm/vm.h"

/* Allocates v's recorder when debug logging is on (KVMKIT_DEBUG); otherwise records nothing. */
void vcpu_trace_init(struct vcpu *v);
void vcpu_trace_free(struct vcpu *v);
/* Records the exit in v->run (called by v's own thread before it handles the exit). */
void vcpu_trace_exit(struct vcpu *v);
/* Prints v's recorded exits, oldest first, with their age at the time of the call. Only safe
 * once v's thread no longer records (it stopped, or it is the caller). */
void vcpu_trace_print(const struct vcpu *v, FILE *out);

#endif
