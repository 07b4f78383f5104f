/* Unit tests of guest memory: huge-page alignment, the split around the PCI hole, bounds checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/memory.h"

/* The host mapping starts on a 2 MiB boundary, so THP can back guest RAM. */
static void test_aligned(void **state)
{
	(void)state;
	for (uint64_t mib = 1; mib <= 9; mib += 4) {
		struct guest_mem mem;
		assert_int_equal(guest_mem_init(&mem, mib << 20), 0);
		assert_int_equal((uintptr_t)mem.mapping % GUEST_MEM_HUGE_ALIGN, 0);
		assert_int_equal(mem.nregions, 1);
		/* the whole size is usable, first and last byte */
		mem.mapping[0] = 1;
		mem.mapping[(mib << 20) - 1] = 2;
		guest_mem_destroy(&mem);
	}
}

/* RAM above 3 GiB continues at 4 GiB; nothing in the hole is RAM. Nothing is touched, and the
 * mapping is MAP_NORESERVE, so 5 GiB costs no memory here. */
static void test_split(void **state)
{
	(void)state;
	struct guest_mem mem;
	uint64_t size = 5ULL << 30;
	assert_int_equal(guest_mem_init(&mem, size), 0);
	assert_int_equal(mem.nregions, 2);
	assert_int_equal(guest_mem_low_size(&mem), GUEST_MEM_LOW_LIMIT);
	assert_non_null(guest_mem_ptr(&mem, GUEST_MEM_LOW_LIMIT - 4, 4));
	assert_null(guest_mem_ptr(&mem, GUEST_MEM_LOW_LIMIT - 4, 8)); /* runs into the hole */
	assert_null(guest_mem_ptr(&mem, GUEST_MEM_LOW_LIMIT, 1));
	assert_null(guest_mem_ptr(&mem, GUEST_MEM_HIGH_START - 1, 1));
	uint64_t high = size - GUEST_MEM_LOW_LIMIT;
	assert_ptr_equal(guest_mem_ptr(&mem, GUEST_MEM_HIGH_START, 1),
			 mem.mapping + GUEST_MEM_LOW_LIMIT);
	assert_non_null(guest_mem_ptr(&mem, GUEST_MEM_HIGH_START + high - 1, 1));
	assert_null(guest_mem_ptr(&mem, GUEST_MEM_HIGH_START + high, 1));
	guest_mem_destroy(&mem);
}

static void test_bounds(void **state)
{
	(void)state;
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, 1 << 20), 0);
	uint8_t buf[16] = { 1, 2, 3 };
	assert_int_equal(guest_mem_write(&mem, 0x1000, buf, sizeof(buf)), 0);
	uint8_t back[16];
	assert_int_equal(guest_mem_read(&mem, 0x1000, back, sizeof(back)), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(guest_mem_write(&mem, (1 << 20) - 8, buf, sizeof(buf)), -EFAULT);
	assert_int_equal(guest_mem_read(&mem, UINT64_MAX - 4, back, sizeof(back)), -EFAULT);
	assert_null(guest_mem_ptr(&mem, 8, UINT64_MAX));
	guest_mem_destroy(&mem);
	assert_int_equal(guest_mem_init(&mem, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
