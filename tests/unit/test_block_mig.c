/* Unit tests of block migration's receiving side (src/migration/block_mig.c): a peer's BLKS/BLKD
 * sections with lengths and offsets out of range are refused before any byte is written (a
 * DATA section longer than the chunk buffer once overflowed it), and a valid chunk lands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migration/block_mig.h"
#include "lib/stream.h"
#include "vmm/vm.h"

#define DISK_SIZE (4u << 20)

struct fixture {
	char path[64];
	struct vm_config cfg;
	struct vm vm;
	struct block_mig_recv rx;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->path, "/tmp/kvmkit-test-blkmig-XXXXXX");
	int fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
	close(fd);
	f->cfg.ndisks = 1;
	f->cfg.disks[0].block.path = f->path;
	f->cfg.disks[0].block.format = "raw";
	f->vm.cfg = &f->cfg;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	block_mig_recv_finish(&f->rx);
	unlink(f->path);
	free(f);
	return 0;
}

/* Feeds one section (tag, its payload) to block_mig_recv and returns its result. */
static int feed(struct fixture *f, uint32_t tag, const void *payload, size_t len)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_write_header(&w, "KVMKITUT", 1);
	stream_begin_section(&w, tag, 0, 1);
	stream_put_bytes(&w, payload, len);
	stream_end_section(&w);
	stream_flush(&w);
	assert_int_equal(stream_error(&w), 0);
	size_t n;
	const uint8_t *data = stream_mem_data(&w, &n);

	struct stream r;
	struct stream_section sec;
	uint32_t version;
	stream_init_mem_reader(&r, data, n);
	assert_int_equal(stream_read_header(&r, "KVMKITUT", 1, &version), 0);
	assert_int_equal(stream_next_section(&r, &sec), 0);
	int ret = block_mig_recv(&f->rx, &f->vm, &sec, &r, "test");
	stream_close(&r);
	stream_close(&w);
	return ret;
}

static int feed_size(struct fixture *f, uint64_t size)
{
	return feed(f, BLOCK_MIG_SIZE_TAG, &size, sizeof(size));
}

/* A BLKD payload: offset, length, kind, then `have` bytes of 0xab. */
static int feed_data(struct fixture *f, uint64_t off, uint32_t len, uint8_t kind, size_t have)
{
	size_t n = 13 + have;
	uint8_t *p = malloc(n);
	memcpy(p, &off, 8);
	memcpy(p + 8, &len, 4);
	p[12] = kind;
	memset(p + 13, 0xab, have);
	int r = feed(f, BLOCK_MIG_DATA_TAG, p, n);
	free(p);
	return r;
}

/* The image holds only zeros (nothing was written). */
static void assert_image_untouched(struct fixture *f)
{
	FILE *fp = fopen(f->path, "rb");
	assert_non_null(fp);
	static uint8_t buf[DISK_SIZE];
	assert_int_equal(fread(buf, 1, DISK_SIZE, fp), DISK_SIZE);
	fclose(fp);
	for (size_t i = 0; i < DISK_SIZE; i++)
		if (buf[i])
			fail_msg("byte %zu of the image was written", i);
}

/* The regression: a DATA section whose length (48 MiB, carried in full) exceeds the 1 MiB
 * chunk buffer. Before the fix the buffer was filled with len bytes after the check failed. */
static void test_oversized_chunk_refused(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(feed_size(f, DISK_SIZE), 0);
	assert_int_equal(feed_data(f, 0, 48u << 20, 1, 48u << 20), -EBADMSG);
	assert_int_equal(feed_data(f, 0, 48u << 20, 0, 0), -EBADMSG);
	assert_image_untouched(f);
}

static void test_out_of_range_refused(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(feed_size(f, DISK_SIZE), 0);
	/* past the end, straddling the end, empty, unknown kind, a short payload */
	assert_int_equal(feed_data(f, DISK_SIZE, 4096, 1, 4096), -EBADMSG);
	assert_int_equal(feed_data(f, DISK_SIZE - 4096, 8192, 1, 8192), -EBADMSG);
	assert_int_equal(feed_data(f, 0, 0, 1, 0), -EBADMSG);
	assert_int_equal(feed_data(f, 0, 4096, 2, 4096), -EBADMSG);
	assert_true(feed_data(f, 0, 4096, 1, 100) < 0);
	assert_image_untouched(f);
}

static void test_data_before_size_refused(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(feed_data(f, 0, 4096, 1, 4096), -EBADMSG);
	/* a size other than the image's */
	assert_int_equal(feed_size(f, DISK_SIZE * 2), -EINVAL);
	assert_image_untouched(f);
}

static void test_valid_chunk_written(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(feed_size(f, DISK_SIZE), 0);
	assert_int_equal(feed_data(f, BLOCK_MIG_CHUNK, BLOCK_MIG_CHUNK, 1, BLOCK_MIG_CHUNK), 0);
	assert_int_equal(block_mig_recv_finish(&f->rx), 0);
	FILE *fp = fopen(f->path, "rb");
	assert_non_null(fp);
	uint8_t b[2];
	assert_int_equal(fseek(fp, BLOCK_MIG_CHUNK - 1, SEEK_SET), 0);
	assert_int_equal(fread(b, 1, 2, fp), 2);
	fclose(fp);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 0xab);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_oversized_chunk_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_before_size_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_chunk_written, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
