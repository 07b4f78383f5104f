/* Dirty page tracking for live migration: which pages of the RAM image (regions back to back,
 * as ram.h numbers them) were written since the last look. The vCPUs' writes come from KVM's
 * dirty log (KVM_MEM_LOG_DIRTY_PAGES on every RAM slot, KVM_GET_DIRTY_LOG); device emulation's
 * writes, which KVM cannot see, from the log guest_mem keeps for virtqueues (vmm/memory.h). */
#ifndef KVMKIT_MIGRATION_DIRTY_H
#define KVMKIT_MIGRATION_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

struct dirty_log {
	struct vm *vm;
	uint64_t npages;          /* pages of the RAM image */
	uint64_t *slot_bits;      /* KVM_GET_DIRTY_LOG's buffer, large enough for any slot */
	uint64_t *device_bits;    /* installed in guest_mem while logging */
	bool kvm_logging;
};

/* Words of a bitmap of n bits. */
static inline uint64_t dirty_words(uint64_t n)
{
	return (n + 63) / 64;
}

/* Turns logging on; every write from now on is seen. *d must be zeroed before its first
 * start and kept for later ones. Returns 0 or -errno. */
int dirty_log_start(struct dirty_log *d, struct vm *vm);

/* Sets in out (npages bits, not cleared first) the pages the vCPUs wrote since the last sync
 * (or the start), and clears KVM's log. With devices, also every page device emulation wrote
 * or was handed to write since the start: a device may write a page it popped long ago, so
 * these bits are never cleared and only the last pass, with the devices stopped, may rely on
 * them. Returns 0 or -errno. */
int dirty_log_sync(struct dirty_log *d, uint64_t *out, bool devices);

/* Turns logging off and frees KVM's buffer (safe after a failed start). */
void dirty_log_stop(struct dirty_log *d);
/* Frees the device log dirty_log_stop keeps for the next start: when the VM's migrations are
 * over, long after the log was uninstalled (a device thread that loaded the pointer just before
 * has finished marking its page by then). */
void dirty_log_free(struct dirty_log *d);

/* Bits set in a bitmap of n bits. */
uint64_t dirty_count(const uint64_t *bits, uint64_t n);

#endif
