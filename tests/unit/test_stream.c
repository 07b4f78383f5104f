/* Unit tests of the migration stream (src/lib/stream.c) and the snapshot configuration
 * section (config.c): round trips, and damaged input (flipped bytes, truncation, fields out of
 * range behind a valid CRC) that must give a clean error, never a crash or a wrong success. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migration/config.h"
#include "lib/stream.h"
#include "vmm/vm.h"

#define MAGIC "KVMKITUT"
#define TAG_A STREAM_TAG('A', 'A', 'A', 'A')
#define TAG_B STREAM_TAG('B', 'B', 'B', 'B')

/* A stream of two sections with every field type, then END; *len gets its size. */
static uint8_t *make_stream(size_t *len)
{
	struct stream s;
	stream_init_mem_writer(&s);
	stream_write_header(&s, MAGIC, 1);
	stream_begin_section(&s, TAG_A, 7, 3);
	stream_put_u8(&s, 0x12);
	stream_put_u16(&s, 0x3456);
	stream_put_u32(&s, 0x789abcde);
	stream_put_u64(&s, 0x0123456789abcdefULL);
	stream_put_str(&s, "hello");
	stream_put_str(&s, NULL);
	stream_end_section(&s);
	stream_begin_section(&s, TAG_B, 0, 1);
	uint8_t blob[300];
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)i;
	stream_put_bytes(&s, blob, sizeof(blob));
	stream_end_section(&s);
	stream_begin_section(&s, STREAM_TAG_END, 0, 1);
	stream_end_section(&s);
	stream_flush(&s);
	assert_int_equal(stream_error(&s), 0);
	const uint8_t *data = stream_mem_data(&s, len);
	uint8_t *copy = malloc(*len);
	memcpy(copy, data, *len);
	stream_close(&s);
	return copy;
}

/* Reads a stream made by make_stream; returns 0 or the first error. Checks values on success. */
static int read_stream(const uint8_t *buf, size_t len)
{
	struct stream s;
	struct stream_section sec;
	uint32_t version;
	stream_init_mem_reader(&s, buf, len);
	int r = stream_read_header(&s, MAGIC, 1, &version);
	if (r == 0 && (r = stream_next_section(&s, &sec)) == 0) {
		if (sec.tag != TAG_A || sec.instance != 7 || sec.version != 3)
			stream_fail(&s, -EBADMSG);
		uint8_t a = stream_get_u8(&s);
		uint16_t b = stream_get_u16(&s);
		uint32_t c = stream_get_u32(&s);
		uint64_t d = stream_get_u64(&s);
		bool is_null;
		char *str = stream_get_str(&s, 100, &is_null);
		char *none = stream_get_str(&s, 100, &is_null);
		if (!stream_error(&s) && (a != 0x12 || b != 0x3456 || c != 0x789abcde ||
					  d != 0x0123456789abcdefULL || !str || strcmp(str, "hello") ||
					  none || !is_null))
			stream_fail(&s, -EBADMSG);
		free(str);
		r = stream_end_read(&s);
	}
	if (r == 0 && (r = stream_next_section(&s, &sec)) == 0) {
		uint8_t blob[300];
		stream_get_bytes(&s, blob, sizeof(blob));
		for (size_t i = 0; i < sizeof(blob) && !stream_error(&s); i++)
			if (blob[i] != (uint8_t)i)
				stream_fail(&s, -EBADMSG);
		r = stream_end_read(&s);
	}
	if (r == 0 && (r = stream_next_section(&s, &sec)) == 0 && sec.tag != STREAM_TAG_END)
		r = -EBADMSG;
	stream_close(&s);
	return r;
}

static void test_round_trip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = make_stream(&len);
	assert_int_equal(read_stream(buf, len), 0);
	free(buf);
}

static void test_crc32_known_value(void **state)
{
	(void)state;
	/* The standard check value of CRC-32 (zlib's crc32("123456789")). */
	assert_int_equal(stream_crc32(0, "123456789", 9), 0xcbf43926);
}

/* Reading past a section's end, or leaving bytes unread, is an error with zeros returned. */
static void test_section_bounds(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = make_stream(&len);
	struct stream s;
	struct stream_section sec;
	uint32_t version;
	stream_init_mem_reader(&s, buf, len);
	assert_int_equal(stream_read_header(&s, MAGIC, 1, &version), 0);
	assert_int_equal(stream_next_section(&s, &sec), 0);
	stream_get_u8(&s);
	assert_int_equal(stream_end_read(&s), -EBADMSG); /* unread bytes */
	stream_close(&s);

	stream_init_mem_reader(&s, buf, len);
	stream_read_header(&s, MAGIC, 1, &version);
	stream_next_section(&s, &sec);
	uint8_t big[4096];
	memset(big, 0xaa, sizeof(big));
	stream_get_bytes(&s, big, sizeof(big));
	assert_int_equal(stream_error(&s), -EBADMSG);
	for (size_t i = 0; i < sizeof(big); i++)
		assert_int_equal(big[i], 0);
	assert_int_equal(stream_get_u64(&s), 0); /* sticky */
	stream_close(&s);
	free(buf);
}

static void test_header(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = make_stream(&len);
	struct stream s;
	uint32_t version;
	stream_init_mem_reader(&s, buf, len);
	assert_int_equal(stream_read_header(&s, "OTHERMAG", 1, &version), -EBADMSG);
	stream_close(&s);
	buf[8] = 2; /* a newer format */
	stream_init_mem_reader(&s, buf, len);
	assert_int_equal(stream_read_header(&s, MAGIC, 1, &version), -EPROTONOSUPPORT);
	stream_close(&s);
	free(buf);
}

/* Every truncation fails: -ENODATA, never a success or a crash. */
static void test_truncation(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = make_stream(&len);
	for (size_t cut = 0; cut < len; cut++) {
		int r = read_stream(buf, cut);
		if (r != -ENODATA)
			fail_msg("a stream cut to %zu of %zu bytes gave %d, want -ENODATA", cut, len, r);
	}
	free(buf);
}

/* Every single flipped byte is caught (CRC, magic, version, or an absurd length). */
static void test_flipped_bytes(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = make_stream(&len);
	srand(1234);
	for (size_t i = 0; i < len; i++) {
		uint8_t old = buf[i];
		buf[i] ^= (uint8_t)(1 + rand() % 255);
		int r = read_stream(buf, len);
		if (r != -EPROTO && r != -EBADMSG && r != -ENODATA && r != -EPROTONOSUPPORT)
			fail_msg("flipping byte %zu gave %d, want a clean error", i, r);
		buf[i] = old;
	}
	/* Several random bytes at once. */
	for (int round = 0; round < 2000; round++) {
		uint8_t *copy = malloc(len);
		memcpy(copy, buf, len);
		for (int k = 0; k < 4; k++)
			copy[rand() % len] ^= (uint8_t)(1 + rand() % 255);
		int r = read_stream(copy, len);
		assert_true(r < 0);
		free(copy);
	}
	free(buf);
}

/* A section declaring more than STREAM_MAX_SECTION is refused before anything is allocated. */
static void test_huge_length(void **state)
{
	(void)state;
	uint8_t buf[12 + 16] = { 'K', 'V', 'M', 'K', 'I', 'T', 'U', 'T', 1, 0, 0, 0,
				 'A', 'A', 'A', 'A', 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f };
	assert_int_equal(read_stream(buf, sizeof(buf)), -EBADMSG);
}

static void sample_config(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->kernel = "/boot/vmlinuz";
	c->cmdline = "console=ttyS0";
	c->ram_size = 256ULL << 20;
	c->ncpus = 2;
	c->testdev = true;
	c->ndisks = 1;
	c->disks[0].block.path = "/img/root.qcow2";
	c->disks[0].block.format = "qcow2";
	c->disks[0].block.cache = BLOCK_CACHE_NONE;
	c->disks[0].serial = "disk0";
	c->nnics = 1;
	c->nics[0].backend = VM_NIC_USER;
	c->nics[0].nhostfwd = 1;
	c->nics[0].hostfwd[0] = "tcp::2222-:22";
	memcpy(c->nics[0].mac, "\x52\x54\x00\x12\x34\x56", 6);
}

/* The CONF body of sample_config, framed in a section with a valid CRC after `mutate`. */
static int load_config_body(uint8_t *body, size_t len, struct vm_config *out)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, CONFIG_TAG, 0, CONFIG_VERSION);
	stream_put_bytes(&w, body, len);
	stream_end_section(&w);
	stream_flush(&w);
	size_t n;
	const uint8_t *framed = stream_mem_data(&w, &n);
	struct stream s;
	struct stream_section sec;
	stream_init_mem_reader(&s, framed, n);
	memset(out, 0, sizeof(*out));
	int r = stream_next_section(&s, &sec);
	if (r == 0)
		r = config_load(out, &s, sec.version);
	stream_close(&s);
	stream_close(&w);
	return r;
}

/* The CONF body config_save writes for c (malloc'd). */
static uint8_t *config_body_of(const struct vm_config *c, size_t *len)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, CONFIG_TAG, 0, CONFIG_VERSION);
	config_save(c, &w);
	/* The body is what end_section would frame: take it from the section buffer. */
	*len = w.sec_len;
	uint8_t *body = malloc(*len);
	memcpy(body, w.sec_buf, *len);
	stream_close(&w);
	return body;
}

static uint8_t *config_body(size_t *len)
{
	struct vm_config c;
	sample_config(&c);
	return config_body_of(&c, len);
}

static void test_config_round_trip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *body = config_body(&len);
	struct vm_config c;
	assert_int_equal(load_config_body(body, len, &c), 0);
	assert_string_equal(c.cmdline, "console=ttyS0");
	assert_int_equal(c.ram_size, 256ULL << 20);
	assert_int_equal(c.ncpus, 2);
	assert_true(c.testdev);
	assert_int_equal(c.ndisks, 1);
	assert_string_equal(c.disks[0].block.format, "qcow2");
	assert_int_equal(c.disks[0].block.cache, BLOCK_CACHE_NONE);
	assert_string_equal(c.nics[0].hostfwd[0], "tcp::2222-:22");
	assert_null(c.initrd);
	config_release(&c);
	free(body);
}

/* A firmware-booted machine (no kernel) round-trips; one with both or neither is refused. */
static void test_config_firmware(void **state)
{
	(void)state;
	struct vm_config c, out;
	for (int both = 0; both < 3; both++) {
		sample_config(&c);
		c.kernel = both == 1 ? NULL : c.kernel;
		c.firmware = both == 2 ? NULL : "/firmware.bin";
		if (both == 2)
			c.kernel = NULL;
		size_t len;
		uint8_t *body = config_body_of(&c, &len);
		int r = load_config_body(body, len, &out);
		if (both == 1) {
			assert_int_equal(r, 0);
			assert_null(out.kernel);
			assert_string_equal(out.firmware, "/firmware.bin");
		} else {
			assert_int_equal(r, -EBADMSG);
		}
		config_release(&out);
		free(body);
	}
}

/* --uuid round-trips; UUID bytes without the flag that says there is one are refused. */
static void test_config_uuid(void **state)
{
	(void)state;
	static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
					  1, 2, 3, 4, 5, 6, 7, 8 };
	for (int flag = 0; flag < 2; flag++) {
		struct vm_config c, out;
		sample_config(&c);
		memcpy(c.uuid, uuid, sizeof(uuid));
		c.uuid_set = flag;
		size_t len;
		uint8_t *body = config_body_of(&c, &len);
		int r = load_config_body(body, len, &out);
		if (flag) {
			assert_int_equal(r, 0);
			assert_true(out.uuid_set);
			assert_memory_equal(out.uuid, uuid, sizeof(uuid));
		} else {
			assert_int_equal(r, -EBADMSG);
		}
		config_release(&out);
		free(body);
	}
}

/* Fields behind a valid CRC: any damage either loads a configuration within the limits or is
 * refused with -EBADMSG; every truncation is refused. */
static void test_config_damage(void **state)
{
	(void)state;
	size_t len;
	uint8_t *body = config_body(&len);
	struct vm_config c;
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(load_config_body(body, cut, &c), -EBADMSG);
		config_release(&c);
	}
	srand(99);
	for (int round = 0; round < 5000; round++) {
		uint8_t *copy = malloc(len);
		memcpy(copy, body, len);
		for (int k = 0; k < 1 + round % 3; k++)
			copy[rand() % len] ^= (uint8_t)(1 + rand() % 255);
		int r = load_config_body(copy, len, &c);
		if (r == 0) {
			assert_true(c.ram_size >= (4ULL << 20) && c.ram_size % 4096 == 0);
			assert_true(c.ncpus >= 1 && c.ncpus <= 1024);
			assert_true(c.ndisks <= VM_MAX_DISKS && c.nnics <= VM_MAX_NICS);
			assert_true(!c.kernel != !c.firmware); /* booted one way */
			assert_non_null(c.cmdline);
		} else {
			assert_int_equal(r, -EBADMSG);
		}
		config_release(&c);
		free(copy);
	}
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_crc32_known_value),
		cmocka_unit_test(test_section_bounds),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_huge_length),
		cmocka_unit_test(test_config_round_trip),
		cmocka_unit_test(test_config_damage),
		cmocka_unit_test(test_config_firmware),
		cmocka_unit_test(test_config_uuid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
