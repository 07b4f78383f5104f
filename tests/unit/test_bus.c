/* Unit tests of the device bus (vmm/bus.c): registration, overlap, dispatch and unregistration,
 * and a device that fails half-way through registering its ranges (i8042) leaving none behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "vmm/bus.h"
#include "vmm/device.h"

static int accesses;

static void count_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			 bool is_write)
{
	(void)opaque, (void)offset, (void)is_write;
	memset(data, 0x5a, len);
	accesses++;
}

static void no_stop(void *opaque, enum vm_stop_reason reason, int exit_status)
{
	(void)opaque, (void)reason, (void)exit_status;
	fail_msg("the i8042 under test stopped the VM");
}

static void test_unregister(void **state)
{
	(void)state;
	struct bus bus = { 0 };
	int a, b;
	uint8_t data[1];
	assert_int_equal(bus_register(&bus, 0x10, 4, count_access, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x20, 4, count_access, &b, "b"), 0);
	assert_int_equal(bus_register(&bus, 0x12, 4, count_access, &b, "b"), -EEXIST);
	/* Only the owner's range at that base goes. */
	assert_int_equal(bus_unregister(&bus, 0x10, &b), -ENOENT);
	assert_int_equal(bus_unregister(&bus, 0x11, &a), -ENOENT);
	assert_int_equal(bus_unregister(&bus, 0x10, &a), 0);
	assert_int_equal(bus_unregister(&bus, 0x10, &a), -ENOENT);
	accesses = 0;
	assert_false(bus_dispatch(&bus, 0x10, data, 1, false));
	assert_int_equal(data[0], 0xff);
	assert_true(bus_dispatch(&bus, 0x21, data, 1, false));
	assert_int_equal(accesses, 1);
	/* The freed place can be taken again. */
	assert_int_equal(bus_register(&bus, 0x12, 4, count_access, &b, "b"), 0);
	assert_int_equal(bus.nranges, 2);
	bus_destroy(&bus);
}

/* The command port is taken: i8042 fails, and its data port must not stay behind pointing at
 * the freed controller. */
static void test_i8042_partial_failure(void **state)
{
	(void)state;
	struct bus pio = { 0 };
	const struct device_ctx ctx = { .pio = &pio, .machine = { no_stop, NULL } };
	int other;
	assert_int_equal(bus_register(&pio, PORT_I8042_CMD, 1, count_access, &other, "other"), 0);
	assert_null(i8042_ops.realize(&ctx, NULL));
	uint8_t data[1];
	assert_false(bus_dispatch(&pio, PORT_I8042_DATA, data, 1, false));
	assert_int_equal(pio.nranges, 1);
	/* A controller that did come up leaves nothing behind either. */
	assert_int_equal(bus_unregister(&pio, PORT_I8042_CMD, &other), 0);
	void *k = i8042_ops.realize(&ctx, NULL);
	assert_non_null(k);
	assert_int_equal(pio.nranges, 2);
	i8042_ops.destroy(k);
	assert_int_equal(pio.nranges, 0);
	bus_destroy(&pio);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unregister),
		cmocka_unit_test(test_i8042_partial_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
