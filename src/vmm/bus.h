/* The device bus: port-I/O and MMIO ranges mapped to device callbacks, looked up on each exit. */
#ifndef KVMKIT_VMM_BUS_H
#define KVMKIT_VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Called on a guest access to [base+offset, +len). For reads the callback fills data; for
 * writes data holds the value (little-endian). Devices do their own locking: callbacks run on
 * vCPU threads concurrently. */
typedef void (*bus_access_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_access_fn access;
	void *opaque;
	const char *name;
};

/* A sorted array of non-overlapping ranges. Mostly filled before the vCPUs start, but a
 * chipset register can move a device's range while they run (Q35's PMBASE), so lookups take
 * the lock for reading and changes for writing. A zero-filled bus is ready: glibc's
 * PTHREAD_RWLOCK_INITIALIZER is all zeros. */
struct bus {
	struct bus_range *ranges;
	int nranges;
	int capacity;
	pthread_rwlock_t lock;
};

/* Adds a range; -EEXIST if it overlaps another, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_access_fn access,
		 void *opaque, const char *name);
/* Removes the range registered at base for opaque (what bus_register was given), so a device
 * that fails half-way through its set-up, or goes away, leaves nothing behind that points at
 * it. A device may move its own ranges while vCPUs run (unregister, register again); it may
 * be freed only once no vCPU runs, as a callback may still be on its way to it. Returns 0 or
 * -ENOENT. */
int bus_unregister(struct bus *bus, uint64_t base, const void *opaque);
/* Dispatches an access; returns false if nothing is mapped there (reads then see all ones).
 * The callback runs without the bus's lock, so it may itself move ranges. */
bool bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len,
		  bool is_write);
void bus_destroy(struct bus *bus);

#endif
