/* Unit tests of the block layer, each run on both I/O engines (io_uring and threads): reads and
 * writes split over iovecs, flush, discard, write-zeroes, refusals (read-only, out of range),
 * cache=none with misaligned buffers, more requests in flight than the ring holds, draining on
 * close, and the errors block_open reports. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <liburing.h>

#include "block/block.h"

#define DISK_SIZE (1u << 20)
#define IMAGE_TEMPLATE "/tmp/kvmkit-test-block-XXXXXX"

static const char *engine; /* the engine of the group running: "io_uring" or "threads" */
static unsigned pending;    /* submitted requests whose done() has not run */

/* ---- helpers: images, requests, the event loop ---- */

static uint8_t pattern_byte(unsigned seed, size_t i)
{
	return (uint8_t)(seed * 131u + i * 7u + (i >> 9) + 1u);
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_byte(seed, i);
}

/* Creates a size-byte image in /tmp filled with `fill`; path needs sizeof(IMAGE_TEMPLATE). */
static void make_image(char *path, size_t size, uint8_t fill)
{
	strcpy(path, IMAGE_TEMPLATE);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	uint8_t *buf = malloc(size ? size : 1);
	assert_non_null(buf);
	memset(buf, fill, size);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	free(buf);
	close(fd);
}

/* The image's bytes as the file holds them, read around the block layer. */
static void read_file(const char *path, uint64_t offset, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)offset), (ssize_t)len);
	close(fd);
}

static struct block_dev *open_image(const char *path, bool readonly, enum block_cache cache)
{
	struct block_options opts = { .path = path, .readonly = readonly, .cache = cache };
	struct block_dev *bd;
	pending = 0; /* a new test: forget what a failed one left behind */
	assert_int_equal(block_open(&opts, &bd), 0);
	assert_string_equal(block_engine_name(bd), engine);
	return bd;
}

struct tracked {
	struct block_request req;
	int calls;
	int result;
};

static void tracked_done(struct block_request *req, int result)
{
	struct tracked *t = req->opaque;
	t->calls++;
	t->result = result;
	pending--;
}

static void submit(struct block_dev *bd, struct tracked *t)
{
	t->calls = 0;
	t->result = 1;
	t->req.done = tracked_done;
	t->req.opaque = t;
	assert_int_equal(block_submit(bd, &t->req), 0);
	pending++;
}

/* Runs the event loop until every submitted request has completed. */
static void wait_all(struct block_dev *bd)
{
	while (pending) {
		struct pollfd pfd = { .fd = block_completion_fd(bd), .events = POLLIN };
		/* 10 s: a lost completion fails the test instead of hanging it */
		assert_int_equal(poll(&pfd, 1, 10000), 1);
		block_process_completions(bd);
	}
}

/* One request, submitted and waited for; returns its result. */
static int run(struct block_dev *bd, enum block_op op, uint64_t offset, const struct iovec *iov,
	       int iovcnt, uint64_t len)
{
	struct tracked t = { .req = { .op = op, .offset = offset, .iov = iov, .iovcnt = iovcnt,
				      .len = len } };
	submit(bd, &t);
	wait_all(bd);
	assert_int_equal(t.calls, 1);
	return t.result;
}

/* Reads or writes buf at offset, split into iovecs of the given sizes (summing to len). */
static int run_split(struct block_dev *bd, enum block_op op, uint64_t offset, uint8_t *buf,
		     const size_t *sizes, int nsizes)
{
	struct iovec iov[8];
	assert_true(nsizes <= 8);
	for (int i = 0; i < nsizes; i++) {
		iov[i] = (struct iovec){ buf, sizes[i] };
		buf += sizes[i];
	}
	return run(bd, op, offset, iov, nsizes, 0);
}

static int run_buf(struct block_dev *bd, enum block_op op, uint64_t offset, void *buf, size_t len)
{
	struct iovec iov = { buf, len };
	return run(bd, op, offset, &iov, 1, 0);
}

static void assert_all_bytes(const uint8_t *buf, size_t len, uint8_t value)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != value)
			fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, buf[i], value);
}

/* ---- tests ---- */

/* Writes split one way read back split another way, at aligned and odd offsets. */
static void test_write_read_iovecs(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	assert_int_equal(block_size(bd), DISK_SIZE);
	assert_false(block_readonly(bd));

	const uint64_t offsets[] = { 0, 512, 4096 + 512, 12345, DISK_SIZE - 3000 };
	const size_t write_sizes[] = { 1, 999, 2000 };
	const size_t read_sizes[] = { 1500, 7, 0, 1493 };
	uint8_t data[3000], back[3000], file[3000];
	for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
		fill_pattern(data, sizeof(data), (unsigned)k);
		assert_int_equal(run_split(bd, BLOCK_OP_WRITE, offsets[k], data, write_sizes, 3), 0);
		memset(back, 0, sizeof(back));
		assert_int_equal(run_split(bd, BLOCK_OP_READ, offsets[k], back, read_sizes, 4), 0);
		assert_memory_equal(data, back, sizeof(data));
		read_file(path, offsets[k], file, sizeof(file));
		assert_memory_equal(data, file, sizeof(data));
	}
	block_close(bd);
	unlink(path);
}

/* Flush syncs (writeback) or returns at once (unsafe); either way it succeeds. */
static void test_flush(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	const enum block_cache modes[] = { BLOCK_CACHE_WRITEBACK, BLOCK_CACHE_UNSAFE };
	for (int m = 0; m < 2; m++) {
		struct block_dev *bd = open_image(path, false, modes[m]);
		uint8_t data[4096];
		fill_pattern(data, sizeof(data), 7u + (unsigned)m);
		assert_int_equal(run_buf(bd, BLOCK_OP_WRITE, 8192, data, sizeof(data)), 0);
		assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0, 0), 0);
		block_close(bd);
		uint8_t file[4096];
		read_file(path, 8192, file, sizeof(file));
		assert_memory_equal(data, file, sizeof(data));
	}
	unlink(path);
}

/* A discarded range reads back as old data or zeroes; nothing around it changes. */
static void test_discard(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0xaa);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, 65536, NULL, 0, 65536), 0);
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, 1000, NULL, 0, 3000), 0); /* partial blocks */
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, 0, NULL, 0, 0), 0);
	static uint8_t back[3 * 65536];
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, 0, back, sizeof(back)), 0);
	for (size_t i = 0; i < sizeof(back); i++) {
		bool discarded = (i >= 65536 && i < 2 * 65536) || (i >= 1000 && i < 4000);
		if (discarded ? back[i] != 0xaa && back[i] != 0 : back[i] != 0xaa)
			fail_msg("byte %zu is 0x%02x after discard", i, back[i]);
	}
	block_close(bd);
	unlink(path);
}

/* Write-zeroes reads back zeroes, aligned or not; its neighbours keep their data. */
static void test_write_zeroes(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0xaa);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	const uint64_t ranges[][2] = { { 65536, 65536 }, { 1000, 5000 }, { DISK_SIZE - 777, 777 } };
	static uint8_t back[DISK_SIZE];
	for (size_t k = 0; k < 3; k++) {
		assert_int_equal(run(bd, BLOCK_OP_WRITE_ZEROES, ranges[k][0], NULL, 0, ranges[k][1]),
				 0);
		assert_int_equal(run_buf(bd, BLOCK_OP_READ, 0, back, sizeof(back)), 0);
		for (size_t i = 0; i < sizeof(back); i++) {
			bool zeroed = false;
			for (size_t j = 0; j <= k; j++)
				zeroed |= i >= ranges[j][0] && i < ranges[j][0] + ranges[j][1];
			if (back[i] != (zeroed ? 0 : 0xaa))
				fail_msg("byte %zu is 0x%02x after write-zeroes %zu", i, back[i], k);
		}
	}
	block_close(bd);
	unlink(path);
}

/* A read-only disk reads and flushes, and refuses everything that would change it. */
static void test_readonly_refuses_writes(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0x55);
	struct block_dev *bd = open_image(path, true, BLOCK_CACHE_WRITEBACK);
	assert_true(block_readonly(bd));
	uint8_t buf[4096];
	memset(buf, 0, sizeof(buf));
	assert_int_equal(run_buf(bd, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), -EROFS);
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, 0, NULL, 0, 4096), -EROFS);
	assert_int_equal(run(bd, BLOCK_OP_WRITE_ZEROES, 0, NULL, 0, 4096), -EROFS);
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0, 0), 0);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, 0, buf, sizeof(buf)), 0);
	assert_all_bytes(buf, sizeof(buf), 0x55);
	block_close(bd);
	unlink(path);
}

/* Requests past the end complete with -EINVAL, including ones whose end overflows. */
static void test_out_of_range(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	uint8_t buf[1024];
	memset(buf, 0, sizeof(buf));
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, DISK_SIZE - 512, buf, 512), 0);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, DISK_SIZE - 512, buf, 1024), -EINVAL);
	assert_int_equal(run_buf(bd, BLOCK_OP_WRITE, DISK_SIZE, buf, 1), -EINVAL);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, UINT64_MAX, buf, 1), -EINVAL);
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, DISK_SIZE - 1, NULL, 0, UINT64_MAX), -EINVAL);
	assert_int_equal(run(bd, BLOCK_OP_WRITE_ZEROES, DISK_SIZE, NULL, 0, 1), -EINVAL);
	block_close(bd);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, DISK_SIZE); /* nothing wrote past the end */
	unlink(path);
}

/* A file cut short behind the block layer's back: reads meeting its end fail with -EIO,
 * never succeed with fewer bytes. */
static void test_truncated_file_eio(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0x33);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	assert_int_equal(truncate(path, DISK_SIZE / 2), 0);
	uint8_t buf[8192];
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, DISK_SIZE / 2 - 4096, buf, 4096), 0);
	assert_all_bytes(buf, 4096, 0x33);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, DISK_SIZE / 2 - 4096, buf, 8192), -EIO);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, DISK_SIZE / 2 + 4096, buf, 512), -EIO);
	block_close(bd);
	unlink(path);
}

/* Whether the file system under /tmp takes O_DIRECT (tmpfs before Linux 6.6 does not). */
static bool tmp_allows_direct_io(const char *path)
{
	int fd = open(path, O_RDWR | O_DIRECT);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* cache=none: misaligned buffers, offsets and lengths go through bounce buffers, and writes
 * sharing one block (read-modify-write) do not undo each other. */
static void test_cache_none_misaligned(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0x11);
	if (!tmp_allows_direct_io(path)) {
		unlink(path);
		print_message("the file system of /tmp refuses O_DIRECT: cache=none not tested\n");
		skip();
	}
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_NONE);
	assert_int_equal(block_size(bd), DISK_SIZE);
	uint8_t *mem = aligned_alloc(4096, 4 * 4096);
	assert_non_null(mem);
	uint8_t file[8192];

	/* aligned offset and length, misaligned buffer */
	uint8_t *odd = mem + 1;
	fill_pattern(odd, 4096, 1);
	assert_int_equal(run_buf(bd, BLOCK_OP_WRITE, 0, odd, 4096), 0);
	read_file(path, 0, file, 4096);
	assert_memory_equal(file, odd, 4096);
	memset(mem, 0, 4 * 4096);
	assert_int_equal(run_buf(bd, BLOCK_OP_READ, 0, mem + 3, 4096), 0);
	read_file(path, 0, file, 4096);
	assert_memory_equal(mem + 3, file, 4096);

	/* misaligned offset and lengths, split over iovecs */
	uint8_t data[700], back[700];
	fill_pattern(data, sizeof(data), 2);
	const size_t sizes[] = { 300, 400 };
	assert_int_equal(run_split(bd, BLOCK_OP_WRITE, 8192 + 100, data, sizes, 2), 0);
	read_file(path, 8192, file, 4096);
	assert_all_bytes(file, 100, 0x11);
	assert_memory_equal(file + 100, data, sizeof(data));
	assert_all_bytes(file + 800, 4096 - 800, 0x11);
	const size_t read_sizes[] = { 1, 699 };
	assert_int_equal(run_split(bd, BLOCK_OP_READ, 8192 + 100, back, read_sizes, 2), 0);
	assert_memory_equal(back, data, sizeof(data));

	/* aligned buffer, offset and length: no bounce */
	fill_pattern(mem, 8192, 3);
	assert_int_equal(run_buf(bd, BLOCK_OP_WRITE, 65536, mem, 8192), 0);
	read_file(path, 65536, file, 8192);
	assert_memory_equal(file, mem, 8192);

	/* 16 small writes into one block, all in flight at once */
	struct tracked t[16];
	uint8_t pieces[16][32];
	struct iovec iov[16];
	for (int i = 0; i < 16; i++) {
		memset(pieces[i], 0x40 + i, sizeof(pieces[i]));
		iov[i] = (struct iovec){ pieces[i], sizeof(pieces[i]) };
		t[i] = (struct tracked){ .req = { .op = BLOCK_OP_WRITE, .offset = 131072 + 32 * i,
						  .iov = &iov[i], .iovcnt = 1 } };
		submit(bd, &t[i]);
	}
	wait_all(bd);
	read_file(path, 131072, file, 512);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].result, 0);
		assert_all_bytes(file + 32 * i, 32, (uint8_t)(0x40 + i));
	}

	/* write-zeroes at odd offsets */
	assert_int_equal(run(bd, BLOCK_OP_WRITE_ZEROES, 196608 + 10, NULL, 0, 5000), 0);
	read_file(path, 196608, file, 8192);
	assert_all_bytes(file, 10, 0x11);
	assert_all_bytes(file + 10, 5000, 0);
	assert_all_bytes(file + 5010, 8192 - 5010, 0x11);

	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0, 0), 0);
	free(mem);
	block_close(bd);
	unlink(path);
}

/* Far more requests than the io_uring ring holds: each completes once, and the data lands. */
static void test_many_in_flight(void **state)
{
	(void)state;
	enum { N = 600, LEN = 1024 };
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	struct tracked *t = calloc(N, sizeof(*t));
	struct iovec *iov = calloc(N, sizeof(*iov));
	uint8_t *bufs = malloc((size_t)N * LEN);
	assert_non_null(t);
	assert_non_null(iov);
	assert_non_null(bufs);

	for (int i = 0; i < N; i++) {
		fill_pattern(bufs + (size_t)i * LEN, LEN, (unsigned)i);
		iov[i] = (struct iovec){ bufs + (size_t)i * LEN, LEN };
		/* every 50th a flush, in among the writes */
		t[i].req = i % 50 == 49 ? (struct block_request){ .op = BLOCK_OP_FLUSH }
					: (struct block_request){ .op = BLOCK_OP_WRITE,
								  .offset = (uint64_t)i * LEN,
								  .iov = &iov[i], .iovcnt = 1 };
		submit(bd, &t[i]);
	}
	wait_all(bd);
	block_process_completions(bd); /* nothing more may complete */
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].result, 0);
	}

	/* The reads go in as one plugged batch (nested plugs: only the outer unplug submits), more
	 * than the ring holds, as virtio-blk submits a drained queue. */
	memset(bufs, 0, (size_t)N * LEN);
	block_plug(bd);
	block_plug(bd);
	for (int i = 0; i < N; i++) {
		t[i].req = (struct block_request){ .op = BLOCK_OP_READ, .offset = (uint64_t)i * LEN,
						   .iov = &iov[i], .iovcnt = 1 };
		submit(bd, &t[i]);
	}
	block_unplug(bd);
	block_unplug(bd);
	wait_all(bd);
	uint8_t expect[LEN];
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].result, 0);
		if (i % 50 == 49)
			memset(expect, 0, LEN);
		else
			fill_pattern(expect, LEN, (unsigned)i);
		assert_memory_equal(bufs + (size_t)i * LEN, expect, LEN);
	}
	block_close(bd);
	free(bufs);
	free(iov);
	free(t);
	unlink(path);
}

/* block_close with requests in flight waits for them: each done() runs once before it returns. */
static void test_close_drains(void **state)
{
	(void)state;
	enum { N = 64 };
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	struct block_dev *bd = open_image(path, false, BLOCK_CACHE_WRITEBACK);
	static uint8_t data[N][4096];
	struct iovec iov[N];
	struct tracked t[N];
	for (int i = 0; i < N; i++) {
		fill_pattern(data[i], sizeof(data[i]), (unsigned)i);
		iov[i] = (struct iovec){ data[i], sizeof(data[i]) };
		t[i] = (struct tracked){ .req = { .op = BLOCK_OP_WRITE, .offset = 4096u * i,
						  .iov = &iov[i], .iovcnt = 1 } };
		submit(bd, &t[i]);
	}
	struct tracked bad = { .req = { .op = BLOCK_OP_READ, .offset = DISK_SIZE, .iov = iov,
					.iovcnt = 1 } };
	submit(bd, &bad);
	block_close(bd);
	assert_int_equal(pending, 0);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(bad.result, -EINVAL);
	uint8_t file[4096];
	for (int i = 0; i < N; i++) {
		assert_int_equal(t[i].calls, 1);
		assert_int_equal(t[i].result, 0);
		read_file(path, 4096u * i, file, sizeof(file));
		assert_memory_equal(file, data[i], sizeof(file));
	}
	unlink(path);
}

/* block_open with stderr captured: its result, and the one line it printed. */
static int open_capturing(const struct block_options *opts, char *msg, size_t msg_size)
{
	char log_path[] = "/tmp/kvmkit-test-block-log-XXXXXX";
	int log_fd = mkstemp(log_path);
	assert_true(log_fd >= 0);
	unlink(log_path);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	dup2(log_fd, STDERR_FILENO);
	struct block_dev *bd = NULL;
	int r = block_open(opts, &bd);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(log_fd, msg, msg_size - 1, 0);
	close(log_fd);
	msg[n > 0 ? n : 0] = '\0';
	assert_null(bd);
	return r;
}

static void expect_open_error(const struct block_options *opts, int err, const char *phrase)
{
	char msg[1024];
	assert_int_equal(open_capturing(opts, msg, sizeof(msg)), err);
	/* one line, naming the file and saying what is wrong */
	char *newline = strchr(msg, '\n');
	assert_non_null(newline);
	assert_string_equal(newline + 1, "");
	if (!strstr(msg, opts->path) || !strstr(msg, phrase))
		fail_msg("message \"%s\" should name %s and say \"%s\"", msg, opts->path, phrase);
}

static void test_open_errors(void **state)
{
	(void)state;
	char path[sizeof(IMAGE_TEMPLATE)];
	make_image(path, DISK_SIZE, 0);
	unlink(path);
	expect_open_error(&(struct block_options){ .path = path }, -ENOENT, "does not exist");

	expect_open_error(&(struct block_options){ .path = "/tmp" }, -EISDIR,
			  "not a regular file or block device");
	expect_open_error(&(struct block_options){ .path = "/tmp", .readonly = true }, -EISDIR,
			  "not a regular file or block device");
	expect_open_error(&(struct block_options){ .path = "/dev/null" }, -EINVAL,
			  "not a regular file or block device");

	make_image(path, DISK_SIZE, 0);
	expect_open_error(&(struct block_options){ .path = path, .format = "vmdk" }, -EINVAL,
			  "unknown format \"vmdk\"");
	unlink(path);

	make_image(path, 0, 0);
	expect_open_error(&(struct block_options){ .path = path }, -EINVAL, "is empty");
	unlink(path);
}

/* ---- the two groups ---- */

static int use_io_uring(void **state)
{
	(void)state;
	engine = "io_uring";
	return setenv("KVMKIT_BLOCK_ENGINE", "io_uring", 1);
}

static int use_threads(void **state)
{
	(void)state;
	engine = "threads";
	return setenv("KVMKIT_BLOCK_ENGINE", "threads", 1);
}

/* Whether this host lets us have an io_uring (a kernel without it, the io_uring_disabled sysctl
 * or a seccomp filter say no); the block layer then falls back to threads by itself. */
static bool io_uring_available(void)
{
	struct io_uring ring;
	int r = io_uring_queue_init(8, &ring, 0);
	if (r < 0) {
		print_message("io_uring is not available here (%s): its group is skipped\n",
			      strerror(-r));
		return false;
	}
	io_uring_queue_exit(&ring);
	return true;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read_iovecs),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_write_zeroes),
		cmocka_unit_test(test_readonly_refuses_writes),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_truncated_file_eio),
		cmocka_unit_test(test_cache_none_misaligned),
		cmocka_unit_test(test_many_in_flight),
		cmocka_unit_test(test_close_drains),
		cmocka_unit_test(test_open_errors),
	};
	int failed = 0;
	if (io_uring_available())
		failed += cmocka_run_group_tests_name("block on io_uring", tests, use_io_uring, NULL);
	failed += cmocka_run_group_tests_name("block on threads", tests, use_threads, NULL);
	return failed;
}
