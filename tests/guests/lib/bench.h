/* Ring-0 helpers shared by the benchmark guests (bench_*.c): virtio-pci discovery and set-up, the command line. */
#ifndef GUEST_BENCH_H
#define GUEST_BENCH_H

#include "guest.h"

/* The three regions of a modern virtio-pci device the benchmarks use. */
struct bench_virtio {
    uintptr_t common, notify, device;
    uint32_t notify_mult;
};

/* Finds the first modern virtio device with PCI device id `device` on bus 0, turns on its
 * memory decoding and bus mastering and fills d from its capabilities; prints
 * "GUEST: WHAT in slot N, ..." when it finds one. False if none, or one without the regions. */
bool bench_virtio_find(uint16_t device, const char *what, struct bench_virtio *d);

/* Reset, then ACKNOWLEDGE | DRIVER. Returns the device's feature bits 0..31. */
uint32_t bench_virtio_begin(const struct bench_virtio *d);

/* Takes feature bits 0..31 `lo` and VERSION_1, then FEATURES_OK. False if the device does not
 * offer VERSION_1 or refuses the features. */
bool bench_virtio_features(const struct bench_virtio *d, uint32_t lo);

/* Queue q of size entries at desc/avail/used, without interrupts (the loops poll). Returns its
 * doorbell address, 0 if the device cannot have that many entries. */
uintptr_t bench_virtio_queue(const struct bench_virtio *d, uint16_t q, uint16_t size,
                             const void *desc, const void *avail, const void *used);

/* DRIVER_OK. False if the device then wants a reset. */
bool bench_virtio_driver_ok(const struct bench_virtio *d);

/* The command line: "key=value" words after the kernel path (multiboot), "" without one. */
void bench_cmdline_init(const struct multiboot_info *mbi);

/* The value of key= (up to the next space), or NULL when absent. */
const char *bench_opt(const char *key);

/* The value of key= as a number, or def when absent or not a number. */
uint32_t bench_opt_num(const char *key, uint32_t def);

#endif
