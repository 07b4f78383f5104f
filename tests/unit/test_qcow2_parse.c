/* Unit tests of the one qcow2 header parser (src/block/qcow2_parse.c) on crafted header
 * clusters: each case the driver and kvmkit-img's three old parsers judged differently
 * (maximum size, table limits, extension overrun, backing name bounds) and QEMU's limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/qcow2.h"
#include "block/qcow2_parse.h"

#define CS 65536u /* the crafted images' cluster size */

static uint8_t buf[CS];
static struct qcow2_header h;

static void be32(uint64_t off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		buf[off + i] = (uint8_t)(v >> (24 - 8 * i));
}

static void be64(uint64_t off, uint64_t v)
{
	be32(off, (uint32_t)(v >> 32));
	be32(off + 4, (uint32_t)v);
}

/* A valid version 3 header of a 1 GiB disk with 64 KiB clusters, as qemu-img lays it out:
 * refcount table at 64 KiB, L1 at 192 KiB, no extensions but the end marker. */
static void base(void)
{
	memset(buf, 0, sizeof(buf));
	be32(0, QCOW2_MAGIC);
	be32(4, 3);
	be32(20, 16);
	be64(24, 1ull << 30);
	be32(36, 2);
	be64(40, 3 * CS);
	be64(48, CS);
	be32(56, 1);
	be32(96, 4);
	be32(100, 112);
}

/* An extension at off: type, length, data (padded). Returns the offset after it. */
static uint64_t ext(uint64_t off, uint32_t type, const char *data, uint32_t len)
{
	be32(off, type);
	be32(off + 4, len);
	if (data)
		memcpy(buf + off + 8, data, len);
	return off + 8 + ((len + 7ull) & ~7ull);
}

static void expect(int err, const char *phrase)
{
	int r = qcow2_parse(buf, sizeof(buf), &h);
	if (r != err || (phrase && !strstr(h.error, phrase))) {
		print_error("got %d \"%s\", expected %d \"%s\"\n", r, r ? h.error : "",
			    err, phrase ? phrase : "");
		fail();
	}
}

static void test_valid(void **state)
{
	(void)state;
	base();
	expect(0, NULL);
	assert_int_equal(h.version, 3);
	assert_int_equal(h.cluster_size, CS);
	assert_int_equal(h.size, 1ull << 30);
	assert_int_equal(h.header_len, 112);
	assert_int_equal(h.ext_end, 120);
	assert_string_equal(h.backing, "");
	assert_null(qcow2_parse_unsupported(&h));

	/* Version 2: 72-byte header, 16-bit refcounts, the v3 fields ignored. */
	base();
	be32(4, 2);
	be32(96, 99);
	be32(100, 0);
	expect(0, NULL);
	assert_int_equal(h.refcount_order, 4);
	assert_int_equal(h.header_len, 72);

	/* A backing file name after the format extension and the end marker. */
	base();
	uint64_t at = ext(112, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
	at = ext(at, 0x12345678, "unknown", 7); /* unknown extensions are skipped */
	at += 8;
	memcpy(buf + at, "base.qcow2", 10);
	be64(8, at);
	be32(16, 10);
	expect(0, NULL);
	assert_string_equal(h.backing, "base.qcow2");
	assert_string_equal(h.backing_fmt, "qcow2");

	/* A header shorter than a cluster (what lies past the buffer reads as zeroes). */
	base();
	assert_int_equal(qcow2_parse(buf, 120, &h), 0);
	assert_int_equal(qcow2_parse(buf, 50, &h), -EINVAL);
	assert_non_null(strstr(h.error, "too small"));
}

static void test_fixed_fields(void **state)
{
	(void)state;
	base();
	be32(0, 0x514649fa);
	expect(-EINVAL, "bad magic");
	base();
	be32(4, 4);
	expect(-ENOTSUP, "version 4");
	static const uint32_t bad_bits[] = { 0, 8, 22, 31, 64, 0xffffffffu };
	for (unsigned i = 0; i < sizeof(bad_bits) / sizeof(bad_bits[0]); i++) {
		base();
		be32(20, bad_bits[i]);
		expect(-EINVAL, "cluster_bits");
	}
	base();
	be32(100, 100);
	expect(-EINVAL, "below 104");
	base();
	be32(100, CS + 8);
	expect(-EINVAL, "exceeds the cluster size");
	base();
	be32(96, 7);
	expect(-EINVAL, "refcount_order 7");
	base();
	be64(72, 1ull << 20);
	expect(-ENOTSUP, "incompatible bits 0x100000");
	/* The compression type and its feature bit must agree; types past zstd are unknown. */
	base();
	buf[104] = 1;
	expect(-EINVAL, "disagree");
	base();
	be64(72, QCOW2_INCOMPAT_COMPRESSION);
	expect(-EINVAL, "disagree");
	base();
	be64(72, QCOW2_INCOMPAT_COMPRESSION);
	buf[104] = 2;
	expect(-ENOTSUP, "compression type 2");
	/* Extended L2 entries need 32 subclusters of at least 512 bytes. */
	base();
	be32(20, 13);
	be32(36, 1024);
	be64(40, 3 << 13);
	be64(48, 1 << 13);
	be64(72, QCOW2_INCOMPAT_EXTL2);
	expect(-EINVAL, "16 KiB");
	base();
	be64(72, QCOW2_INCOMPAT_EXTL2);
	be32(36, 4); /* 16-byte L2 entries: an L2 table covers half as much */
	expect(0, NULL);
	assert_non_null(qcow2_parse_unsupported(&h));
	base();
	be32(32, 2);
	expect(0, NULL);
	assert_non_null(strstr(qcow2_parse_unsupported(&h), "encrypted"));
}

/* Sizes and tables: QEMU's limits (32 MiB L1, 8 MiB refcount table, 65536 snapshots). The
 * driver allowed virtual sizes up to 2^61 and a 32 MiB refcount table, kvmkit-img up to 2^62
 * and info any size. */
static void test_limits(void **state)
{
	(void)state;
	base();
	be64(24, 1ull << 40);
	expect(-EINVAL, "too small for the virtual size");
	base();
	be64(24, 1ull << 62); /* more than INT_MAX L1 entries, as QEMU counts */
	base();
	be64(24, UINT64_MAX);
	expect(-EFBIG, "too large");
	base();
	be32(36, (32u << 20) / 8 + 1);
	expect(-EFBIG, "larger than kvmkit's limit");
	base();
	be32(36, (32u << 20) / 8);
	be64(24, (32ull << 20) / 8 * (CS / 8) * CS); /* the largest disk a 32 MiB L1 covers */
	expect(0, NULL);
	base();
	be32(56, (8u << 20) / CS + 1);
	expect(-EFBIG, "refcount table is larger");
	base();
	be32(56, 0);
	expect(-EINVAL, "no refcount table");
	base();
	be64(48, CS + 512);
	expect(-EINVAL, "refcount table offset");
	base();
	be64(40, 3 * CS + 8);
	expect(-EINVAL, "L1 table offset");
	base();
	be64(40, UINT64_MAX & ~(uint64_t)(CS - 1));
	expect(-EINVAL, "L1 table offset");
	base();
	be32(60, 65537);
	expect(-EFBIG, "snapshot table");
	base();
	be32(60, 65536);
	be64(64, 4 * CS);
	expect(0, NULL);
	base();
	be32(60, 1);
	be64(64, 4 * CS + 40);
	expect(-EINVAL, "snapshot table offset");
}

/* Extensions must fit before the backing name (or the cluster end): the driver refused an
 * overrun, kvmkit-img's parsers stopped reading silently and went on. */
static void test_extensions(void **state)
{
	(void)state;
	base();
	be32(112, QCOW2_EXT_BACKING_FORMAT);
	be32(116, CS);
	expect(-EINVAL, "runs past the header");
	base();
	be32(112, 0x12345678);
	be32(116, 0xffffffffu);
	expect(-EINVAL, "runs past the header");
	/* An extension running into the backing file name. */
	base();
	ext(112, 0x12345678, "0123456789abcdef", 16);
	memcpy(buf + 136, "base", 4);
	be64(8, 136);
	be32(16, 4);
	expect(0, NULL); /* it ends exactly where the name starts (no end marker: allowed) */
	be64(8, 132);
	memcpy(buf + 132, "base", 4);
	expect(-EINVAL, "runs past the header");
	/* Half an extension header before the name. */
	base();
	be64(8, 116);
	be32(16, 4);
	memcpy(buf + 116, "base", 4);
	expect(-EINVAL, "runs past the header");
	/* The backing format: at most 15 bytes (QEMU's), no NUL byte. */
	base();
	ext(112, QCOW2_EXT_BACKING_FORMAT, "0123456789abcdef", 16);
	expect(-EINVAL, "backing format name is too long");
	base();
	ext(112, QCOW2_EXT_BACKING_FORMAT, "0123456789abcde", 15);
	expect(0, NULL);
	assert_string_equal(h.backing_fmt, "0123456789abcde");
	base();
	ext(112, QCOW2_EXT_BACKING_FORMAT, "raw\0x", 5);
	expect(-EINVAL, "NUL");
	/* Bitmaps: 24 bytes; checked when the autoclear bit says they are consistent. */
	base();
	ext(112, QCOW2_EXT_BITMAPS, NULL, 16);
	expect(-EINVAL, "bitmaps");
	base();
	ext(112, QCOW2_EXT_BITMAPS, NULL, 24);
	expect(0, NULL);
	assert_true(h.has_bitmaps);
	be64(88, QCOW2_AUTOCLEAR_BITMAPS);
	expect(-EINVAL, "bitmaps"); /* zero bitmaps */
	be32(120, 1);
	be64(136, 4 * CS);
	expect(0, NULL);
	/* An encryption header extension without LUKS encryption. */
	base();
	ext(112, QCOW2_EXT_CRYPTO, NULL, 16);
	expect(-EINVAL, "encryption");
}

/* The backing file name lies inside the header cluster and is at most 1023 bytes: the old
 * parsers accepted any offset inside the file. */
static void test_backing_name(void **state)
{
	(void)state;
	base();
	be64(8, CS + 512);
	be32(16, 4);
	expect(-EINVAL, "outside the header cluster");
	base();
	be64(8, CS - 4);
	be32(16, 8);
	memset(buf + CS - 4, 'a', 4);
	expect(-EINVAL, "backing file name");
	base();
	be64(8, 1024);
	be32(16, 1024);
	memset(buf + 1024, 'a', 1024);
	expect(-EINVAL, "backing file name");
	be32(16, 1023);
	expect(0, NULL);
	assert_int_equal(strlen(h.backing), 1023);
	base();
	be64(8, 1024);
	be32(16, 8);
	memcpy(buf + 1024, "ba\0e.raw", 8);
	expect(-EINVAL, "NUL");
	/* A zero length reads as "no backing file", as in QEMU. */
	base();
	be64(8, 1024);
	be32(16, 0);
	expect(0, NULL);
	assert_string_equal(h.backing, "");
}

/* qcow2_parse_fd: a file shorter than its cluster, and one too short for a header. */
static void test_fd(void **state)
{
	(void)state;
	char path[] = "/tmp/kvmkit-test-qcow2-parse-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	base();
	assert_int_equal(pwrite(fd, buf, 512, 0), 512);
	assert_int_equal(qcow2_parse_fd(fd, 512, &h), 0);
	assert_int_equal(h.l1_size, 2);
	assert_int_equal(qcow2_parse_fd(fd, 40, &h), -EINVAL);
	assert_non_null(strstr(h.error, "too small"));
	be32(20, 40);
	assert_int_equal(pwrite(fd, buf, 512, 0), 512);
	assert_int_equal(qcow2_parse_fd(fd, 512, &h), -EINVAL);
	assert_non_null(strstr(h.error, "cluster_bits 40"));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_fixed_fields),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_extensions),
		cmocka_unit_test(test_backing_name),
		cmocka_unit_test(test_fd),
	};
	return cmocka_run_group_tests_name("qcow2_parse", tests, NULL, NULL);
}
