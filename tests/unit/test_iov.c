/* Unit tests of the scatter-gather helpers: copies across segment edges and byte-range slices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/iov.h"

static char a[3], b[1], c[5];

static void make(struct iovec iov[3])
{
	memset(a, 0, sizeof(a)), memset(b, 0, sizeof(b)), memset(c, 0, sizeof(c));
	iov[0] = (struct iovec){ a, sizeof(a) };
	iov[1] = (struct iovec){ b, 0 }; /* empty segments happen in virtio chains */
	iov[2] = (struct iovec){ c, sizeof(c) };
}

static void test_copy(void **state)
{
	(void)state;
	struct iovec iov[3];
	make(iov);
	assert_int_equal(iov_size(iov, 3), 8);
	assert_int_equal(iov_from_buf(iov, 3, 2, "WXYZ", 4), 4);
	assert_memory_equal(a, "\0\0W", 3);
	assert_memory_equal(c, "XYZ\0\0", 5);
	char out[8];
	assert_int_equal(iov_to_buf(iov, 3, 1, out, sizeof(out)), 7); /* only 7 bytes from 1 */
	assert_memory_equal(out, "\0WXYZ\0\0", 7);
	assert_int_equal(iov_from_buf(iov, 3, 8, "Q", 1), 0); /* past the end */
	assert_int_equal(iov_to_buf(iov, 3, 100, out, 1), 0);
}

static void test_slice(void **state)
{
	(void)state;
	struct iovec iov[3], out[3];
	make(iov);
	assert_int_equal(iov_slice(iov, 3, 2, 3, out, 3), 2);
	assert_ptr_equal(out[0].iov_base, a + 2);
	assert_int_equal(out[0].iov_len, 1);
	assert_ptr_equal(out[1].iov_base, c);
	assert_int_equal(out[1].iov_len, 2);
	assert_int_equal(iov_slice(iov, 3, 0, 8, out, 3), 2);
	assert_int_equal(iov_slice(iov, 3, 0, 0, out, 3), 0);
	assert_int_equal(iov_slice(iov, 3, 4, 5, out, 3), -1); /* beyond the end */
	assert_int_equal(iov_slice(iov, 3, 0, 8, out, 1), -1); /* not enough room */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_slice),
	};
	return cmocka_run_group_tests_name("iov", tests, NULL, NULL);
}
