/* Incoming live migration: `kvmkit run <the source's options> --incoming URI` builds the VM,
 * receives the stream migrate.h describes instead of booting the kernel, and then runs the
 * guest from where the source stopped it. */
#ifndef KVMKIT_MIGRATION_INCOMING_H
#define KVMKIT_MIGRATION_INCOMING_H

#include <stdbool.h>

struct vm;
struct vm_config;

/* Waits for the source on cfg->incoming_uri and loads what it sends into vm (built, vCPUs not
 * started). A source whose configuration differs from this VM's is refused. Returns 0 or
 * -errno after printing one sentence. */
int incoming_load(struct vm *vm);

/* Whether an incoming migration was received already: the process's first VM only receives it,
 * so a guest reset after a migration boots afresh. Zero-initialised. */
struct incoming {
	bool done;
};
/* The hook (vm.h, opaque: a struct incoming) that loads the VM from cfg->incoming_uri instead
 * of booting it. */
extern const struct vm_hook_ops incoming_vm_hooks;

#endif
