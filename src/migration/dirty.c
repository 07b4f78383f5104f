/* Dirty page tracking for live migration: KVM's per-slot dirty log merged with the device
 * write log into one bitmap over the RAM image. */
#include "migration/dirty.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/log.h"
#include "migration/ram.h"
#include "vmm/vm.h"

/* Slot i is guest_mem region i, registered by vm_create_machine (vmm/vm.c) with these fields;
 * re-registering it with another flag changes only the flag. */
static int dirty_set_slot_flags(struct vm *vm, int i, uint32_t flags)
{
	const struct guest_mem_region *reg = &vm->mem.regions[i];
	struct kvm_userspace_memory_region region = {
		.slot = (uint32_t)i,
		.flags = flags,
		.guest_phys_addr = reg->gpa,
		.memory_size = reg->size,
		.userspace_addr = (uintptr_t)reg->host,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
}

static int dirty_set_logging(struct vm *vm, bool on)
{
	int r = 0;
	for (int i = 0; i < vm->mem.nregions && r == 0; i++)
		r = dirty_set_slot_flags(vm, i, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
	return r;
}

int dirty_log_start(struct dirty_log *d, struct vm *vm)
{
	/* The device log of an earlier migration is reused (see dirty_log_stop). */
	uint64_t *device_bits = d->device_bits, npages = vm->mem.mapping_size / RAM_PAGE_SIZE;
	if (device_bits && d->npages == npages) {
		memset(device_bits, 0, dirty_words(npages) * sizeof(uint64_t));
	} else {
		free(device_bits);
		device_bits = calloc(dirty_words(npages), sizeof(uint64_t));
	}
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->npages = npages;
	d->device_bits = device_bits;
	d->slot_bits = calloc(dirty_words(npages), sizeof(uint64_t));
	if (!d->slot_bits || !d->device_bits) {
		dirty_log_stop(d);
		return -ENOMEM;
	}
	guest_mem_log_device_writes(&vm->mem, d->device_bits);
	int r = dirty_set_logging(vm, true);
	if (r < 0) {
		dirty_log_stop(d);
		return r;
	}
	d->kvm_logging = true;
	return 0;
}

/* ORs the n bits of src into dst from bit `at` on (slots start anywhere in the image). */
static void dirty_merge(uint64_t *dst, uint64_t at, const uint64_t *src, uint64_t n)
{
	for (uint64_t w = 0; w < dirty_words(n); w++) {
		for (uint64_t bits = src[w]; bits; bits &= bits - 1) {
			uint64_t page = at + w * 64 + (uint64_t)__builtin_ctzll(bits);
			dst[page / 64] |= 1ULL << (page % 64);
		}
	}
}

int dirty_log_sync(struct dirty_log *d, uint64_t *out, bool devices)
{
	struct vm *vm = d->vm;
	uint64_t image_page = 0;
	for (int i = 0; i < vm->mem.nregions; i++) {
		uint64_t pages = vm->mem.regions[i].size / RAM_PAGE_SIZE;
		memset(d->slot_bits, 0, dirty_words(pages) * sizeof(uint64_t));
		struct kvm_dirty_log log = { .slot = (uint32_t)i, .dirty_bitmap = d->slot_bits };
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		dirty_merge(out, image_page, d->slot_bits, pages);
		image_page += pages;
	}
	if (devices) {
		for (uint64_t w = 0; w < dirty_words(d->npages); w++)
			out[w] |= __atomic_load_n(&d->device_bits[w], __ATOMIC_RELAXED);
	}
	return 0;
}

void dirty_log_stop(struct dirty_log *d)
{
	if (d->kvm_logging && dirty_set_logging(d->vm, false) < 0)
		log_debug("cannot turn KVM's dirty log off: %s", strerror(errno));
	d->kvm_logging = false;
	if (d->vm)
		guest_mem_log_device_writes(&d->vm->mem, NULL);
	/* A device thread may still be in guest_mem_mark_device_write with the pointer just
	 * removed: the device log stays allocated, for the next migration to reuse. */
	free(d->slot_bits);
	d->slot_bits = NULL;
}

void dirty_log_free(struct dirty_log *d)
{
	free(d->device_bits);
	d->device_bits = NULL;
}

uint64_t dirty_count(const uint64_t *bits, uint64_t n)
{
	uint64_t c = 0;
	for (uint64_t w = 0; w < dirty_words(n); w++)
		c += (uint64_t)__builtin_popcountll(bits[w]);
	return c;
}
