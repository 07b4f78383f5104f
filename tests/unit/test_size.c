/* Unit tests of size_parse, the parser behind "-m 512M" and every other size on the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "lib/size.h"

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static void expect_ok(const char *text, uint64_t unit, uint64_t want)
{
	uint64_t out = 0xdeadbeef;
	int r = size_parse(text, unit, &out);
	if (r != 0)
		fail_msg("size_parse(\"%s\") = %d, expected success", text, r);
	if (out != want)
		fail_msg("size_parse(\"%s\") gave %llu, expected %llu", text, (unsigned long long)out,
		         (unsigned long long)want);
}

/* A failure reports err and leaves *out alone. */
static void expect_err(const char *text, uint64_t unit, int err)
{
	uint64_t out = 0xdeadbeef;
	int r = size_parse(text, unit, &out);
	if (r != err)
		fail_msg("size_parse(\"%s\") = %d, expected %d", text ? text : "(null)", r, err);
	assert_int_equal(out, 0xdeadbeef);
}

static void test_suffixes(void **state)
{
	(void)state;
	expect_ok("512M", MiB, 512 * MiB);
	expect_ok("2G", MiB, 2 * GiB);
	expect_ok("64K", MiB, 64 * KiB);
	expect_ok("1T", MiB, TiB);
	expect_ok("2g", MiB, 2 * GiB);        /* case-insensitive */
	expect_ok("512MB", MiB, 512 * MiB);   /* optional B ... */
	expect_ok("512MiB", MiB, 512 * MiB);  /* ... or iB */
	expect_ok("512mib", MiB, 512 * MiB);
	expect_ok("4096B", MiB, 4096);        /* bytes, whatever the default unit */
	expect_ok("2G", 1, 2 * GiB);          /* a suffix overrides the default unit */
}

static void test_default_unit(void **state)
{
	(void)state;
	expect_ok("4096", MiB, 4096 * MiB);   /* as QEMU's -m: a bare number is MiB */
	expect_ok("4096", 1, 4096);
	expect_ok("0", MiB, 0);
	expect_ok("007", MiB, 7 * MiB);
}

static void test_invalid(void **state)
{
	(void)state;
	expect_err("1.5G", MiB, -EINVAL);
	expect_err("", MiB, -EINVAL);
	expect_err("M", MiB, -EINVAL);
	expect_err("10X", MiB, -EINVAL);
	expect_err(NULL, MiB, -EINVAL);
	expect_err("-1", MiB, -EINVAL);
	expect_err("+1", MiB, -EINVAL);
	expect_err(" 1", MiB, -EINVAL);
	expect_err("1 M", MiB, -EINVAL);
	expect_err("1MX", MiB, -EINVAL);
	expect_err("1MBB", MiB, -EINVAL);
	expect_err("1iB", MiB, -EINVAL);
	expect_err("1GiBs", MiB, -EINVAL);
}

static void test_overflow(void **state)
{
	(void)state;
	expect_ok("18446744073709551615", 1, UINT64_MAX);
	expect_err("18446744073709551616", 1, -ERANGE);          /* does not fit strtoull */
	expect_err("99999999999999999999999", MiB, -ERANGE);
	expect_err("18446744073709551615", MiB, -ERANGE);        /* fits, but not in MiB */
	expect_ok("17592186044415M", MiB, 17592186044415ULL * MiB); /* 2^64 - 1 MiB */
	expect_err("17592186044416M", MiB, -ERANGE);             /* 2^64 exactly */
	expect_ok("16777215T", MiB, 16777215ULL * TiB);
	expect_err("16777216T", MiB, -ERANGE);
	expect_err("17179869184G", MiB, -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suffixes),
		cmocka_unit_test(test_default_unit),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests_name("size", tests, NULL, NULL);
}
