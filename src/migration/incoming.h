/* Incoming live migration: `kvmkit run <the source's options> --incoming URI` builds the VM,
 * receives the stream migrate.h describes instead of booting the kernel, and then runs the
 * guest from where the source stopped it. */
#ifndef KVMKIT_MIGRATION_INCOMING_H
#define KVMKIT_MIGRATION_INCOMING_H

#include <stdbool.h>

struct vm;
struct vm_config;

/* Whether vm_run must receive the VM rather than boot: true for the first VM of the process
 * only, so a guest reset after a migration boots afresh. */
bool incoming_pending(const struct vm_config *cfg);

/* Waits for the source on cfg->incoming_uri and loads what it sends into vm (built, vCPUs not
 * started). A source whose configuration differs from this VM's is refused. Returns 0 or
 * -errno after printing one sentence. */
int incoming_load(struct vm *vm);

#endif
