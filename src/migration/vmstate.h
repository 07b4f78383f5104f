/* The VM's in-kernel state in the migration stream: every vCPU ("CPU "), the irqchip ("IRQC":
 * both 8259s and the IOAPIC), the PIT ("PIT ") and the kvmclock ("CLCK"). */
#ifndef KVMKIT_MIGRATION_VMSTATE_H
#define KVMKIT_MIGRATION_VMSTATE_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct stream;
struct stream_section;

/* Writes the sections of all vCPUs, the irqchip, the PIT and the clock. Every vCPU thread must
 * have stopped. Returns 0 or -errno after printing one sentence saying what failed. */
int vmstate_save(struct vm *vm, struct stream *s);

/* Restore: which of vmstate's sections have been loaded (each exactly once). */
struct vmstate_loader {
	struct vm *vm;
	const char *source; /* the state file's name, for messages */
	bool *cpu_loaded; /* one per vCPU */
	bool irqchip, pit, clock;
};

int vmstate_loader_init(struct vmstate_loader *l, struct vm *vm, const char *source);
/* Loads the section just read if it is one of vmstate's (*handled set); 0 or -errno after
 * printing one sentence. */
int vmstate_load_section(struct vmstate_loader *l, const struct stream_section *sec,
			 struct stream *s, bool *handled);
/* After all sections, with check: every vCPU, the irqchip, the PIT and the clock must have been
 * loaded (else -EBADMSG, printed). Frees the loader either way. */
int vmstate_loader_finish(struct vmstate_loader *l, bool check);

#endif
