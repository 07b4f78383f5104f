/* A stand-in guest memory for unit tests: one region backed by a calloc'd buffer, no mmap, no KVM. */
#ifndef KVMKIT_TESTS_UNIT_FAKE_MEMORY_H
#define KVMKIT_TESTS_UNIT_FAKE_MEMORY_H

#include <stdint.h>

#include "vmm/memory.h"

/* RAM [0, size) in one zeroed region; returns 0 or -ENOMEM. */
int fake_mem_init(struct guest_mem *mem, uint64_t size);
void fake_mem_destroy(struct guest_mem *mem);

#endif
