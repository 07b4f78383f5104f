/* VM snapshots: a stopped VM's complete state saved to a directory (DIR/state: the stream of
 * stream.h; DIR/memory: the RAM image of ram.h) and loaded into a freshly built VM, so that
 * `kvmkit run --restore DIR` resumes the guest in a new process.
 *
 * DIR/state, format version 1: magic "KVMKITSS", then the sections
 *   "CONF" the command-line configuration (config.h)   "RAM " RAM size and the snapshot's id
 *   "CPU " one per vCPU (arch/x86/vcpu_state.h)          "IRQC" "PIT " "CLCK" (vmstate.h)
 *   "SERL" "RTC " "KBC " "ACPI" the platform devices    "PCI " the PCI bus (hw/pci.h)
 *   "VIRT" one per virtio device (virtio/transport.h)    "END "
 * The pair is committed by renaming state.tmp to state after memory.tmp to memory (both
 * fsynced); the RAM trailer's id must match the state's, so a crash between the renames gives
 * a clean refusal, never a mixed guest. */
#ifndef KVMKIT_MIGRATION_SNAPSHOT_H
#define KVMKIT_MIGRATION_SNAPSHOT_H

#include <stdbool.h>

struct vm;
struct vm_config;

#define SNAPSHOT_MAGIC "KVMKITSS"
#define SNAPSHOT_VERSION 1

/* Saves the VM to dir (created if missing; an older snapshot there is replaced). Every vCPU
 * must be stopped: its thread joined, or parked by vm_pause (which also holds the I/O thread;
 * the clock saved is the pause's). The VM can go on afterwards (vm_resume): this is what QMP
 * `migrate "file:DIR"` and HMP savevm call. Returns 0 or -errno after printing one sentence. */
int snapshot_save(struct vm *vm, const char *dir);

/* Fills *cfg from dir's configuration section (for the command line). Returns 0 or -errno after
 * printing one sentence. */
int snapshot_read_config(const char *dir, struct vm_config *cfg);

/* Loads dir into a VM built from the snapshot's configuration, in place of loading a kernel:
 * maps DIR/memory as the guest's RAM, sets every vCPU's and device's state. Returns 0 or
 * -errno after printing one sentence. */
int snapshot_restore(struct vm *vm, const char *dir);

/* Whether a snapshot was restored already: the process's first VM only is restored, so a guest
 * reset after a restore boots afresh. Zero-initialised. */
struct snapshot_run {
	bool restored;
};
/* The hooks (vm.h, opaque: a struct snapshot_run) of --restore and --snapshot-at-exit: the
 * first VM is loaded from cfg->restore_dir instead of booting; when a run ends, the vCPU
 * threads are stopped and, if it ended in VM_STOP_EXIT (debug-exit port, quit key, signal),
 * the VM is saved to cfg->snapshot_at_exit (a failed save makes the exit status
 * VM_EXIT_STATUS_ERROR). */
extern const struct vm_hook_ops snapshot_vm_hooks;

#endif
