/* Unit tests of RAM over the migration stream (src/migration/ram.c): all pages and a dirty
 * subset arrive intact with zero pages sent as flags only, and damaged batches (a page beyond
 * the RAM, an unknown kind, a truncated page, too many pages) are refused without writing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/le.h"
#include "migration/ram.h"
#include "lib/stream.h"
#include "vmm/memory.h"

#define RAM_SIZE (8u << 20)
#define NPAGES (RAM_SIZE / RAM_PAGE_SIZE)

/* Every third page holds a pattern, the others stay zero. */
static void fill(struct guest_mem *mem)
{
	for (uint32_t p = 0; p < NPAGES; p += 3)
		memset(mem->mapping + (uint64_t)p * RAM_PAGE_SIZE, (int)(p % 251) + 1, RAM_PAGE_SIZE);
}

/* Sends with `dirty` and receives every section into dst; returns the receive result. */
static int transfer(const struct guest_mem *src, const struct guest_mem *dst,
		    const uint64_t *dirty, uint64_t *sent, size_t *bytes)
{
	struct stream w, r;
	stream_init_mem_writer(&w);
	assert_int_equal(ram_send_pages(&w, src, 0, NPAGES, dirty, sent), 0);
	stream_flush(&w);
	size_t len;
	const uint8_t *data = stream_mem_data(&w, &len);
	*bytes = len;
	stream_init_mem_reader(&r, data, len);
	struct stream_section sec;
	int rc = 0;
	while (rc == 0 && stream_next_section(&r, &sec) == 0) {
		assert_int_equal(sec.tag, RAM_PAGES_TAG);
		rc = ram_recv_pages(&r, dst, sec.version);
	}
	stream_close(&r);
	stream_close(&w);
	return rc;
}

static void test_all_pages(void **state)
{
	(void)state;
	struct guest_mem a, b;
	assert_int_equal(guest_mem_init(&a, RAM_SIZE), 0);
	assert_int_equal(guest_mem_init(&b, RAM_SIZE), 0);
	fill(&a);
	memset(b.mapping + 5 * RAM_PAGE_SIZE, 0x77, RAM_PAGE_SIZE); /* must become zero */
	uint64_t sent;
	size_t bytes;
	assert_int_equal(transfer(&a, &b, NULL, &sent, &bytes), 0);
	assert_int_equal(sent, NPAGES);
	assert_memory_equal(a.mapping, b.mapping, RAM_SIZE);
	/* Zero pages cost 9 bytes: about a third of the RAM travels. */
	assert_true(bytes < RAM_SIZE / 3 + NPAGES * 16);
	guest_mem_destroy(&a);
	guest_mem_destroy(&b);
}

static void test_dirty_pages(void **state)
{
	(void)state;
	struct guest_mem a, b;
	assert_int_equal(guest_mem_init(&a, RAM_SIZE), 0);
	assert_int_equal(guest_mem_init(&b, RAM_SIZE), 0);
	fill(&a);
	uint64_t dirty[NPAGES / 64] = { 0 };
	dirty[0] = 0x8000000000000001ULL; /* pages 0 and 63 */
	dirty[10] = 1;                    /* page 640 */
	uint64_t sent;
	size_t bytes;
	assert_int_equal(transfer(&a, &b, dirty, &sent, &bytes), 0);
	assert_int_equal(sent, 3);
	assert_memory_equal(a.mapping, b.mapping, RAM_PAGE_SIZE);
	assert_memory_equal(a.mapping + 63 * RAM_PAGE_SIZE, b.mapping + 63 * RAM_PAGE_SIZE,
			    RAM_PAGE_SIZE);
	assert_memory_equal(a.mapping + 640 * RAM_PAGE_SIZE, b.mapping + 640 * RAM_PAGE_SIZE,
			    RAM_PAGE_SIZE);
	assert_true(ram_page_is_zero(b.mapping + 3 * RAM_PAGE_SIZE)); /* not sent */
	guest_mem_destroy(&a);
	guest_mem_destroy(&b);
}

/* A hand-made RAMP section body, framed; returns what ram_recv_pages says. */
static int recv_body(const struct guest_mem *mem, const uint8_t *body, size_t len)
{
	struct stream w, r;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, RAM_PAGES_TAG, 0, RAM_PAGES_VERSION);
	stream_put_bytes(&w, body, len);
	stream_end_section(&w);
	stream_flush(&w);
	size_t n;
	const uint8_t *data = stream_mem_data(&w, &n);
	stream_init_mem_reader(&r, data, n);
	struct stream_section sec;
	assert_int_equal(stream_next_section(&r, &sec), 0);
	int rc = ram_recv_pages(&r, mem, sec.version);
	stream_close(&r);
	stream_close(&w);
	return rc;
}

static void test_damaged(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, RAM_SIZE), 0);
	uint8_t body[9 + RAM_PAGE_SIZE];
	memset(body, 0xab, sizeof(body));
	/* a page beyond the RAM */
	le_put(body, 8, NPAGES);
	body[8] = 1;
	assert_int_equal(recv_body(&m, body, sizeof(body)), -EBADMSG);
	/* an unknown kind */
	le_put(body, 8, 1);
	body[8] = 7;
	assert_int_equal(recv_body(&m, body, sizeof(body)), -EBADMSG);
	/* a data page cut short: nothing written */
	body[8] = 1;
	assert_int_equal(recv_body(&m, body, 9 + 100), -EBADMSG);
	assert_true(ram_page_is_zero(m.mapping + RAM_PAGE_SIZE));
	/* the whole page: accepted */
	assert_int_equal(recv_body(&m, body, sizeof(body)), 0);
	assert_int_equal(m.mapping[RAM_PAGE_SIZE], 0xab);
	/* more zero pages than a batch holds */
	size_t n = (RAM_BATCH_PAGES + 1) * 9;
	uint8_t *many = calloc(1, n);
	for (unsigned i = 0; i <= RAM_BATCH_PAGES; i++)
		many[i * 9] = (uint8_t)i;
	assert_int_equal(recv_body(&m, many, n), -EBADMSG);
	free(many);
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_pages),
		cmocka_unit_test(test_dirty_pages),
		cmocka_unit_test(test_damaged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
