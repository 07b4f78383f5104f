/* Unit tests the SMBIOS tables (firmware/smbios.c) read as dmidecode reads them: the entry
 * point's checksums and counts, every structure walked by its length and string set, the
 * UUID's byte order, the RAM sizes, hostile machine descriptions, and dmidecode itself on a
 * dump file when it is installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_memory.h"
#include "firmware/fw_cfg.h"
#include "firmware/smbios.h"

static const uint8_t test_uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
				       0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
#define TEST_UUID "12345678-9abc-def0-0123-456789abcdef"

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

/* What the walk found: each structure's offset (type 127 last), the count and largest size. */
struct walk {
	size_t off[2048];
	unsigned count;
	size_t max;
};

/* dmidecode's walk: a header of at least 4 bytes, the formatted area, then strings up to a
 * double NUL; every string set must end inside the table, and type 127 must end it. */
static void walk_table(const struct smbios_tables *t, struct walk *w)
{
	const uint8_t *p = t->table;
	size_t off = 0;
	memset(w, 0, sizeof(*w));
	for (;;) {
		assert_true(off + 4 <= t->len);
		uint8_t len = p[off + 1];
		assert_true(len >= 4);
		assert_true(off + len + 2 <= t->len);
		size_t e = off + len;
		while (!(p[e] == 0 && p[e + 1] == 0)) {
			e++;
			assert_true(e + 1 < t->len);
		}
		size_t n = e + 2 - off;
		assert_true(w->count < 2048);
		w->off[w->count++] = off;
		if (n > w->max)
			w->max = n;
		off += n;
		if (p[w->off[w->count - 1]] == 127)
			break;
	}
	assert_int_equal(off, t->len);
}

/* String `index` (1-based) of the structure at off, or NULL. */
static const char *get_string(const struct smbios_tables *t, size_t off, uint8_t index)
{
	if (!index)
		return NULL;
	const char *s = (const char *)t->table + off + t->table[off + 1];
	while (--index) {
		if (!*s)
			return NULL;
		s += strlen(s) + 1;
	}
	return *s ? s : NULL;
}

/* The first structure of `type` from the walk, or -1. */
static long find_type(const struct smbios_tables *t, const struct walk *w, uint8_t type, unsigned nth)
{
	for (unsigned i = 0; i < w->count; i++)
		if (t->table[w->off[i]] == type && nth-- == 0)
			return (long)w->off[i];
	return -1;
}

static void check_entry_point(const struct smbios_tables *t, const struct walk *w)
{
	const uint8_t *ep = t->anchor;
	assert_memory_equal(ep, "_SM_", 4);
	assert_int_equal(ep[SMBIOS_EP_LENGTH], SMBIOS_ANCHOR_SIZE);
	assert_int_equal(sum(ep, SMBIOS_ANCHOR_SIZE), 0);
	assert_memory_equal(ep + SMBIOS_EP_DMI, "_DMI_", 5);
	assert_int_equal(sum(ep + SMBIOS_EP_DMI, SMBIOS_ANCHOR_SIZE - SMBIOS_EP_DMI), 0);
	assert_int_equal(ep[6], 2);
	assert_int_equal(ep[7], 8);
	assert_int_equal(get_le(ep + SMBIOS_EP_TABLE_LEN, 2), t->len);
	assert_int_equal(get_le(ep + SMBIOS_EP_COUNT, 2), w->count);
	assert_int_equal(get_le(ep + SMBIOS_EP_MAX_STRUCT, 2), w->max);
	assert_int_equal(get_le(ep + SMBIOS_EP_TABLE_ADDR, 4), 0);
}

static void build(struct smbios_tables *t, struct walk *w, unsigned ncpus, uint64_t below,
		  uint64_t above, const uint8_t *uuid)
{
	const struct smbios_machine m = { .ncpus = ncpus, .ram_below_4g = below,
					  .ram_above_4g = above, .uuid = uuid, .version = "0.10.0" };
	assert_int_equal(smbios_build(&m, t), 0);
	walk_table(t, w);
	check_entry_point(t, w);
}

static void test_structures(void **state)
{
	(void)state;
	struct smbios_tables t;
	static struct walk w;
	build(&t, &w, 2, 128u << 20, 0, test_uuid);
	/* 0, 1, 3, 4 x2, 16, 17, 19, 32, 127 */
	static const uint8_t types[] = { 0, 1, 3, 4, 4, 16, 17, 19, 32, 127 };
	assert_int_equal(w.count, sizeof(types));
	for (unsigned i = 0; i < w.count; i++) {
		assert_int_equal(t.table[w.off[i]], types[i]);
		for (unsigned k = 0; k < i; k++)   /* handles are unique */
			assert_true(get_le(t.table + w.off[i] + 2, 2) != get_le(t.table + w.off[k] + 2, 2));
	}
	long t0 = find_type(&t, &w, 0, 0), t1 = find_type(&t, &w, 1, 0);
	assert_string_equal(get_string(&t, t0, t.table[t0 + 4]), "kvmkit");
	assert_string_equal(get_string(&t, t0, t.table[t0 + 5]), "0.10.0");
	assert_string_equal(get_string(&t, t0, t.table[t0 + 8]), "12/01/2026");
	assert_string_equal(get_string(&t, t1, t.table[t1 + 4]), "kvmkit");
	assert_string_equal(get_string(&t, t1, t.table[t1 + 5]), "kvmkit");
	assert_string_equal(get_string(&t, t1, t.table[t1 + 6]), "0.10.0");
	/* SMBIOS 2.6+: time_low, time_mid, time_hi little-endian, the rest as written. */
	static const uint8_t smbios_order[16] = { 0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde,
						  0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
	assert_memory_equal(t.table + t1 + 8, smbios_order, 16);
	long c1 = find_type(&t, &w, 4, 1);
	assert_string_equal(get_string(&t, c1, t.table[c1 + 4]), "CPU 1");
	/* Type 17 and 19 point at the type 16 array. */
	long a = find_type(&t, &w, 16, 0), d = find_type(&t, &w, 17, 0), m = find_type(&t, &w, 19, 0);
	assert_int_equal(get_le(t.table + d + 4, 2), get_le(t.table + a + 2, 2));
	assert_int_equal(get_le(t.table + m + 0x0c, 2), get_le(t.table + a + 2, 2));
	smbios_free(&t);

	/* Without a UUID: all zero, as QEMU without -uuid. */
	build(&t, &w, 1, 128u << 20, 0, NULL);
	t1 = find_type(&t, &w, 1, 0);
	static const uint8_t zero[16];
	assert_memory_equal(t.table + t1 + 8, zero, 16);
	smbios_free(&t);
}

/* Types 16, 17 and 19 for several RAM sizes: the sum of the DIMMs is the RAM, the ranges are
 * where it is mapped. */
static void test_memory_sizes(void **state)
{
	(void)state;
	static const struct { uint64_t below, above; } cases[] = {
		{ 128ULL << 20, 0 }, { 3ULL << 30, 0 }, { 2ULL << 30, 0 },
		{ 3ULL << 30, 1ULL << 30 }, { 3ULL << 30, 61ULL << 30 },
		{ 3ULL << 30, (1ULL << 46) - (3ULL << 30) },      /* 64 TiB */
		{ (128ULL << 20) + 4096, 0 },                      /* not whole MiB */
	};
	static struct walk w;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct smbios_tables t;
		uint64_t ram = cases[c].below + cases[c].above;
		build(&t, &w, 1, cases[c].below, cases[c].above, NULL);
		long a = find_type(&t, &w, 16, 0);
		uint64_t cap = get_le(t.table + a + 7, 4);
		if (cap == 0x80000000)
			cap = get_le(t.table + a + 0x0f, 8) >> 10;
		assert_int_equal(cap, (ram + 1023) >> 10);
		unsigned ndimms = (unsigned)get_le(t.table + a + 0x0d, 2);
		assert_true(ndimms >= 1 && ndimms <= 64);
		uint64_t mib = 0;
		for (unsigned i = 0; i < ndimms; i++) {
			long d = find_type(&t, &w, 17, i);
			assert_true(d >= 0);
			uint64_t size = get_le(t.table + d + 0x0c, 2);
			if (size == 0x7fff)
				size = get_le(t.table + d + 0x1c, 4);
			assert_true(size > 0);
			mib += size;
		}
		assert_int_equal(find_type(&t, &w, 17, ndimms), -1);
		assert_int_equal(mib, (ram + (1ULL << 20) - 1) >> 20);
		if (c == 0)
			assert_int_equal(get_le(t.table + find_type(&t, &w, 17, 0) + 0x0c, 2), 128);
		if (c == 1)
			assert_int_equal(get_le(t.table + find_type(&t, &w, 17, 0) + 0x0c, 2), 3072);
		/* Ranges: KiB fields, inclusive ends. */
		long r0 = find_type(&t, &w, 19, 0), r1 = find_type(&t, &w, 19, 1);
		assert_int_equal(get_le(t.table + r0 + 4, 4), 0);
		assert_int_equal(get_le(t.table + r0 + 8, 4), (cases[c].below >> 10) - 1);
		if (!cases[c].above) {
			assert_int_equal(r1, -1);
		} else {
			uint64_t start = get_le(t.table + r1 + 4, 4), end = get_le(t.table + r1 + 8, 4);
			if (start == 0xffffffff) {
				start = get_le(t.table + r1 + 0x0f, 8) >> 10;
				end = get_le(t.table + r1 + 0x17, 8) >> 10;
			}
			assert_int_equal(start, 4ULL << 20);
			assert_int_equal(end, ((4ULL << 30) + cases[c].above - 1) >> 10);
		}
		smbios_free(&t);
	}
}

/* 0 CPUs, too many, no RAM, RAM that overflows are refused; 1024 CPUs fit a 2.x table. */
static void test_hostile(void **state)
{
	(void)state;
	struct smbios_tables t;
	static struct walk w;
	const struct smbios_machine bad[] = {
		{ .ncpus = 0, .ram_below_4g = 128u << 20 },
		{ .ncpus = SMBIOS_MAX_CPUS + 1, .ram_below_4g = 128u << 20 },
		{ .ncpus = 1, .ram_below_4g = 0 },
		{ .ncpus = 1, .ram_below_4g = 5ULL << 30 },
		{ .ncpus = 1, .ram_below_4g = 1u << 30, .ram_above_4g = UINT64_MAX - 10 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(smbios_build(&bad[i], &t), -EINVAL);
		assert_null(t.table);
	}
	build(&t, &w, SMBIOS_MAX_CPUS, 3ULL << 30, (1ULL << 46) - (3ULL << 30), test_uuid);
	long last = find_type(&t, &w, 4, SMBIOS_MAX_CPUS - 1);
	assert_string_equal(get_string(&t, last, t.table[last + 4]), "CPU 1023");
	assert_int_equal(find_type(&t, &w, 4, SMBIOS_MAX_CPUS), -1);
	smbios_free(&t);
	/* A long version string is cut, not overflowed. */
	char longv[300];
	memset(longv, '9', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = 0;
	const struct smbios_machine m = { .ncpus = 1, .ram_below_4g = 4u << 20, .version = longv };
	assert_int_equal(smbios_build(&m, &t), 0);
	walk_table(&t, &w);
	check_entry_point(&t, &w);
	smbios_free(&t);
}

static void test_parse_uuid(void **state)
{
	(void)state;
	uint8_t u[16];
	assert_int_equal(smbios_parse_uuid(TEST_UUID, u), 0);
	assert_memory_equal(u, test_uuid, 16);
	assert_int_equal(smbios_parse_uuid("12345678-9ABC-DEF0-0123-456789ABCDEF", u), 0);
	assert_memory_equal(u, test_uuid, 16);
	static const char *bad[] = {
		"", "12345678-9abc-def0-0123-456789abcde", "12345678-9abc-def0-0123-456789abcdef0",
		"123456789abcdef00123456789abcdef", "12345678-9abc-def0-0123_456789abcdef",
		"1234567-89abc-def0-0123-456789abcdef", "12345678-9abc-def0-0123-456789abcdeg",
		"{2345678-9abc-def0-0123-456789abcde}", "12345678-9abc-def0-0123-456789abcd f",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(smbios_parse_uuid(bad[i], u), -EINVAL);
}

/* fw_cfg gets both files, the anchor 31 bytes and the tables as long as it says. */
static void test_fw_cfg_files(void **state)
{
	(void)state;
	static struct bus pio, mmio;
	static struct guest_mem mem;
	struct device_registry registry = { 0 };
	assert_int_equal(fake_mem_init(&mem, 1u << 20), 0);
	const struct device_ctx ctx = { .pio = &pio, .mmio = &mmio, .mem = &mem };
	assert_int_equal(device_realize(&registry, &fw_cfg_ops, &ctx, NULL), 0);
	struct fw_cfg *fw = device_find(&registry, &fw_cfg_ops, 0);
	assert_non_null(fw);
	const struct smbios_machine m = { .ncpus = 2, .ram_below_4g = 128u << 20,
					  .uuid = test_uuid, .version = "0.10.0" };
	assert_int_equal(smbios_add_fw_cfg(fw, &m), 0);
	int ka = fw_cfg_file_key(fw, "etc/smbios/smbios-anchor");
	int kt = fw_cfg_file_key(fw, "etc/smbios/smbios-tables");
	assert_true(ka >= FW_CFG_FILE_FIRST && kt >= FW_CFG_FILE_FIRST);
	uint32_t la, lt;
	const uint8_t *a = fw_cfg_item(fw, (uint16_t)ka, &la);
	assert_non_null(fw_cfg_item(fw, (uint16_t)kt, &lt));
	assert_int_equal(la, SMBIOS_ANCHOR_SIZE);
	assert_int_equal(lt, get_le(a + SMBIOS_EP_TABLE_LEN, 2));
	device_registry_destroy(&registry);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	fake_mem_destroy(&mem);
}

/* dmidecode --from-dump reads what --dump-bin writes: the entry point with the table address
 * 32 (checksums fixed) at offset 0, the table at offset 32. */
static void test_dmidecode(void **state)
{
	(void)state;
	const char *dmidecode = getenv("DMIDECODE");
	if (!dmidecode || access(dmidecode, X_OK) != 0) {
		print_message("dmidecode is not installed: 1 skipped\n");
		skip();
	}
	struct smbios_tables t;
	const struct smbios_machine m = { .ncpus = 4, .ram_below_4g = 3ULL << 30,
					  .ram_above_4g = 1ULL << 30, .uuid = test_uuid,
					  .version = "0.10.0" };
	assert_int_equal(smbios_build(&m, &t), 0);
	smbios_set_table_address(t.anchor, 32);
	char path[] = "/tmp/kvmkit-smbios-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	uint8_t head[32] = { 0 };
	memcpy(head, t.anchor, sizeof(t.anchor));
	assert_int_equal(write(fd, head, sizeof(head)), sizeof(head));
	assert_int_equal(write(fd, t.table, t.len), (ssize_t)t.len);
	close(fd);
	smbios_free(&t);

	char cmd[512], out[65536];
	snprintf(cmd, sizeof(cmd), "'%s' --from-dump '%s' 2>&1", dmidecode, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	int status = pclose(p);
	unlink(path);
	if (status != 0 || !strstr(out, "Manufacturer: kvmkit") || !strcasestr(out, "UUID: " TEST_UUID) ||
	    strstr(out, "Invalid") || strstr(out, "<OUT OF SPEC>") || strstr(out, "Bad"))
		print_message("%s", out);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "SMBIOS 2.8 present."));
	assert_non_null(strstr(out, "Vendor: kvmkit"));
	assert_non_null(strstr(out, "Manufacturer: kvmkit"));
	assert_non_null(strstr(out, "Product Name: kvmkit"));
	assert_non_null(strcasestr(out, "UUID: " TEST_UUID));
	assert_non_null(strstr(out, "Socket Designation: CPU 3"));
	assert_non_null(strstr(out, "Maximum Capacity: 4 GB"));
	assert_non_null(strstr(out, "Size: 4 GB"));
	assert_non_null(strstr(out, "End Of Table"));
	assert_null(strstr(out, "<OUT OF SPEC>"));
	assert_null(strstr(out, "Invalid"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structures),
		cmocka_unit_test(test_memory_sizes),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_parse_uuid),
		cmocka_unit_test(test_fw_cfg_files),
		cmocka_unit_test(test_dmidecode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
