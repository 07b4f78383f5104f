/* The device bus: port-I/O and MMIO ranges mapped to device callbacks, looked up on each exit. */
#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int bus_insert(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access,
		      void *opaque, const char *name)
{
	int pos = 0;
	while (pos < bus->nranges && bus->ranges[pos].base < base)
		pos++;
	/* Neighbours on both sides must not overlap the new range. */
	if (pos > 0) {
		const struct bus_range *prev = &bus->ranges[pos - 1];
		if (prev->base + prev->len > base)
			return -EEXIST;
	}
	if (pos < bus->nranges && base + len > bus->ranges[pos].base)
		return -EEXIST;

	if (bus->nranges == bus->capacity) {
		int cap = bus->capacity ? bus->capacity * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, (size_t)cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		bus->ranges = r;
		bus->capacity = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos],
		(size_t)(bus->nranges - pos) * sizeof(*bus->ranges));
	bus->ranges[pos] = (struct bus_range){ base, len, access, opaque, name };
	bus->nranges++;
	return 0;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access,
		 void *opaque, const char *name)
{
	if (len == 0 || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	int r = bus_insert(bus, base, len, access, opaque, name);
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

int bus_unregister(struct bus *bus, uint64_t base, const void *opaque)
{
	int r = -ENOENT;
	pthread_rwlock_wrlock(&bus->lock);
	for (int i = 0; i < bus->nranges; i++) {
		if (bus->ranges[i].base != base || bus->ranges[i].opaque != opaque)
			continue;
		memmove(&bus->ranges[i], &bus->ranges[i + 1],
			(size_t)(bus->nranges - i - 1) * sizeof(*bus->ranges));
		bus->nranges--;
		r = 0;
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

static const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nranges - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write)
{
	/* The lock is the bus's one mutable part, also behind a const pointer. */
	pthread_rwlock_t *lock = (pthread_rwlock_t *)&bus->lock;
	pthread_rwlock_rdlock(lock);
	const struct bus_range *found = bus_find(bus, addr);
	struct bus_range r = found ? *found : (struct bus_range){ 0 };
	pthread_rwlock_unlock(lock);
	/* An access straddling the end of a range is not the device's: treat as unmapped. */
	if (!found || len > r.len - (addr - r.base)) {
		if (!is_write)
			memset(data, 0xff, len);
		return false;
	}
	r.access(r.opaque, addr - r.base, data, len, is_write);
	return true;
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
	memset(bus, 0, sizeof(*bus));
}
