/* A stand-in guest memory for unit tests: guest_mem_ptr over calloc'd regions, compiled instead of
 * src/vmm/memory.c so the code under test is linked without mmap or KVM. */
#include "fake_memory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fake_mem_init(struct guest_mem *mem, uint64_t size)
{
	memset(mem, 0, sizeof(*mem));
	uint8_t *host = calloc(1, size);
	if (!host)
		return -ENOMEM;
	mem->regions[0] = (struct guest_mem_region){.gpa = 0, .size = size, .host = host};
	mem->nregions = 1;
	mem->ram_size = size;
	mem->mapping = host;
	mem->mapping_size = size;
	return 0;
}

void fake_mem_destroy(struct guest_mem *mem)
{
	free(mem->mapping);
	memset(mem, 0, sizeof(*mem));
}

/* The same contract as the real one: the whole range inside one region, no overflow. */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < mem->nregions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

/* No live migration in unit tests: device writes need no log. */
void guest_mem_mark_device_write(const struct guest_mem *mem, const volatile void *host,
				 size_t len)
{
	(void)mem, (void)host, (void)len;
}
