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

/* The --snapshot-at-exit hook, called when the main loop has ended: stops the vCPU threads and,
 * if the run ended in VM_STOP_EXIT (debug-exit port, quit key, signal), saves the VM to
 * cfg->snapshot_at_exit. A failed save makes the exit status VM_EXIT_STATUS_ERROR. */
void snapshot_at_exit(struct vm *vm);

/* Whether vm_run must restore cfg->restore_dir rather than boot the kernel: true for the first
 * VM of the process only, so a guest reset after a restore boots afresh. */
bool snapshot_pending(const struct vm_config *cfg);

/* Fills *cfg from dir's configuration section (for the command line). Returns 0 or -errno after
 * printing one sentence. */
int snapshot_read_config(const char *dir, struct vm_config *cfg);

/* Loads dir into a VM built from the snapshot's configuration, in place of loading a kernel:
 * maps DIR/memory as the guest's RAM, sets every vCPU's and device's state. Returns 0 or
 * -errno after printing one sentence. */
int snapshot_restore(struct vm *vm, const char *dir);

#endif
