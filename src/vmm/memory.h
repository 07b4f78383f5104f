/* Guest physical memory: anonymous host mappings split around the 32-bit PCI hole, and the one
 * checked helper through which every guest address is turned into a host pointer. */
#ifndef KVMKIT_VMM_MEMORY_H
#define KVMKIT_VMM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem_region {
	uint64_t gpa;   /* guest physical start */
	uint64_t size;  /* bytes */
	uint8_t *host;  /* host mapping */
};

struct guest_mem {
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
	int nregions;
	uint64_t ram_size; /* total RAM in bytes */
	uint8_t *mapping;  /* one reservation holding all regions back to back */
	size_t mapping_size;
	/* Live migration's log of RAM written by device emulation (KVM's dirty log sees only the
	 * vCPUs' writes): one bit per page of mapping, or NULL when no migration runs. */
	uint64_t *device_writes;
};

/* RAM below this guest address; RAM beyond it continues at 4 GiB (the PCI hole lies between). */
#define GUEST_MEM_LOW_LIMIT 0xc0000000ULL
#define GUEST_MEM_HIGH_START 0x100000000ULL
/* Host alignment of guest RAM: the x86 transparent huge page size. */
#define GUEST_MEM_HUGE_ALIGN (2u << 20)

/* Maps ram_size bytes of anonymous memory laid out around the PCI hole. Returns 0 or -errno. */
int guest_mem_init(struct guest_mem *mem, uint64_t ram_size);
void guest_mem_destroy(struct guest_mem *mem);
/* Replaces all RAM with a private mapping of fd (a snapshot's memory file holding at least the
 * RAM's size in bytes: the image of regions back to back). Returns 0 or -errno. */
int guest_mem_map_file(struct guest_mem *mem, int fd);

/* The host pointer for [gpa, gpa+len) if that whole range is RAM inside one region, else NULL.
 * Catches overflow of gpa+len. Every access to guest memory goes through this. */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Copies to/from guest memory; return 0 or -EFAULT when the range is not RAM. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, size_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, size_t len);

/* Installs (bitmap) or removes (NULL) the device write log; the bitmap covers mapping_size /
 * 4096 pages and outlives its installation. */
void guest_mem_log_device_writes(struct guest_mem *mem, uint64_t *bitmap);
/* Called by device emulation for guest RAM it writes or is about to write (host pointer into
 * mapping): sets the pages' bits while a log is installed, else does nothing. */
void guest_mem_mark_device_write(const struct guest_mem *mem, const volatile void *host,
				 size_t len);

/* Bytes of RAM below 4 GiB (the size of region 0). */
uint64_t guest_mem_low_size(const struct guest_mem *mem);

#endif
