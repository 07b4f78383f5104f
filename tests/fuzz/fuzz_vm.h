/* fuzz_vm: the VM the snapshot and migration fuzz targets load state into (fuzz_vm.c). */
#ifndef KVMKIT_TESTS_FUZZ_FUZZ_VM_H
#define KVMKIT_TESTS_FUZZ_FUZZ_VM_H

#include "vmm/vm.h"

/* A VM of cfg (which must outlive it) without KVM: RAM of cfg->ram_size in memory, the
 * platform devices as real objects, no vCPUs (KVM's sections are refused) and no virtio
 * devices, whatever cfg names (they have their own target, virtio_fuzz.c). Aborts on
 * failure. */
struct vm *fuzz_vm_create(struct vm_config *cfg);
/* Zeroes the VM's RAM again (cheaply: only pages an input wrote cost anything). */
void fuzz_vm_clear_ram(struct vm *vm);

#endif
