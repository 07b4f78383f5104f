/* A flight recorder of each vCPU's last exits to userspace, printed when a VM dies or hangs:
 * a triple fault leaves no useful registers on AMD (KVM resets the vCPU), so what the vCPU did
 * just before (which port, which MMIO address, how long ago) is the evidence left. */
#include "vmm/vcpu_trace.h"

#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"

#define VCPU_TRACE_LEN 32

struct vcpu_trace_entry {
	uint64_t t_ns;
	uint64_t where;    /* port or guest-physical address */
	uint64_t data;     /* the first bytes of a write (or of a read's answer, once handled) */
	uint32_t reason;   /* KVM_EXIT_* */
	uint8_t size;
	bool is_write;
};

struct vcpu_trace {
	struct vcpu_trace_entry e[VCPU_TRACE_LEN];
	uint64_t n;        /* entries recorded so far; the newest is e[(n - 1) % LEN] */
};

void vcpu_trace_init(struct vcpu *v)
{
	v->trace = log_debug_enabled() ? calloc(1, sizeof(*v->trace)) : NULL;
}

void vcpu_trace_free(struct vcpu *v)
{
	free(v->trace);
	v->trace = NULL;
}

void vcpu_trace_exit(struct vcpu *v)
{
	struct vcpu_trace *t = v->trace;
	if (!t)
		return;
	const struct kvm_run *run = v->run;
	struct vcpu_trace_entry *e = &t->e[t->n++ % VCPU_TRACE_LEN];
	*e = (struct vcpu_trace_entry){ .t_ns = clock_mono_ns(), .reason = run->exit_reason };
	if (run->exit_reason == KVM_EXIT_IO) {
		e->where = run->io.port;
		e->size = run->io.size;
		e->is_write = run->io.direction == KVM_EXIT_IO_OUT;
		if (e->is_write && run->io.size <= 8 &&
		    run->io.data_offset <= (uint64_t)v->vm->run_size - run->io.size)
			memcpy(&e->data, (const uint8_t *)run + run->io.data_offset, run->io.size);
	} else if (run->exit_reason == KVM_EXIT_MMIO) {
		e->where = run->mmio.phys_addr;
		e->size = (uint8_t)(run->mmio.len > 8 ? 8 : run->mmio.len);
		e->is_write = run->mmio.is_write;
		if (e->is_write)
			memcpy(&e->data, run->mmio.data, e->size);
	}
}

void vcpu_trace_print(const struct vcpu *v, FILE *out)
{
	const struct vcpu_trace *t = v->trace;
	if (!t || !t->n)
		return;
	uint64_t now = clock_mono_ns();
	uint64_t first = t->n > VCPU_TRACE_LEN ? t->n - VCPU_TRACE_LEN : 0;
	fprintf(out, "kvmkit: vCPU %u's last %llu exits to userspace (of %llu), oldest first:\n",
		v->index, (unsigned long long)(t->n - first), (unsigned long long)t->n);
	for (uint64_t i = first; i < t->n; i++) {
		const struct vcpu_trace_entry *e = &t->e[i % VCPU_TRACE_LEN];
		double ago = (double)(now - e->t_ns) / 1e9;
		if (e->reason == KVM_EXIT_IO || e->reason == KVM_EXIT_MMIO) {
			fprintf(out, "  -%.6f s %s %s %#llx size %u", ago,
				e->reason == KVM_EXIT_IO ? "port" : "mmio",
				e->is_write ? "write" : "read", (unsigned long long)e->where, e->size);
			if (e->is_write)
				fprintf(out, " data %#llx", (unsigned long long)e->data);
			fputc('\n', out);
		} else
			fprintf(out, "  -%.6f s exit reason %u\n", ago, e->reason);
	}
}
