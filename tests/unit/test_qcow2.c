/* Unit tests of the qcow2 driver and block_create, without qemu-img: random writes to a qcow2
 * image and a raw one side by side, read back before and after reopening; reads through a
 * backing file; zero clusters; and hostile images (truncated, tables outside the file or too
 * large, unknown feature bits, looping backing chains, random corruption) that must fail with a
 * clear message and never crash. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "block/block_int.h" /* bd->fault */

#define DISK (8u << 20)

static char dir[] = "/tmp/kvmkit-test-qcow2-XXXXXX";
/* cache=unsafe skips the fdatasync at each cluster allocation: the tests stay fast, and one
 * case in test_random_writes runs with writeback to cover the syncing path. */
static enum block_cache cache = BLOCK_CACHE_UNSAFE;

static void img(char *out, const char *name)
{
	snprintf(out, 256, "%s/%s", dir, name);
}

/* ---- requests ---- */

static bool finished;
static int status;

static void done(struct block_request *req, int result)
{
	(void)req;
	finished = true;
	status = result;
}

static int run(struct block_dev *bd, enum block_op op, uint64_t off, void *buf, uint64_t len)
{
	struct iovec iov[2] = { { buf, len / 3 }, { (uint8_t *)buf + len / 3, len - len / 3 } };
	struct block_request req = { .op = op, .offset = off, .iov = iov, .iovcnt = 2,
				     .len = len, .done = done };
	finished = false;
	assert_int_equal(block_submit(bd, &req), 0);
	while (!finished) {
		struct pollfd pfd = { .fd = block_completion_fd(bd), .events = POLLIN };
		assert_int_equal(poll(&pfd, 1, 10000), 1);
		block_process_completions(bd);
	}
	return status;
}

static struct block_dev *open_fmt(const char *path, const char *fmt, bool readonly)
{
	struct block_options o = { .path = path, .format = fmt, .readonly = readonly,
				   .cache = cache };
	struct block_dev *bd = NULL;
	assert_int_equal(block_open(&o, &bd), 0);
	return bd;
}

static void create(const char *path, const char *fmt, uint64_t size, uint32_t cs,
		   const char *backing)
{
	struct block_create_options o = { .path = path, .format = fmt, .size = size,
					  .cluster_size = cs, .backing_file = backing };
	assert_int_equal(block_create(&o), 0);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Both devices read the same over the whole disk. */
static void assert_same(struct block_dev *a, struct block_dev *b)
{
	static uint8_t x[1 << 20], y[1 << 20];
	assert_int_equal(block_size(a), block_size(b));
	for (uint64_t off = 0; off < block_size(a); off += sizeof(x)) {
		uint64_t n = block_size(a) - off < sizeof(x) ? block_size(a) - off : sizeof(x);
		assert_int_equal(run(a, BLOCK_OP_READ, off, x, n), 0);
		assert_int_equal(run(b, BLOCK_OP_READ, off, y, n), 0);
		if (memcmp(x, y, n) != 0)
			fail_msg("contents differ in [%llu, +%llu)", (unsigned long long)off,
				 (unsigned long long)n);
	}
}

/* Random writes and write-zeroes, the same to both devices. */
static void random_writes(struct block_dev *a, struct block_dev *b, uint64_t seed, int count)
{
	static uint8_t buf[300000];
	uint64_t size = block_size(a);
	for (int i = 0; i < count; i++) {
		uint64_t len = rnd(&seed) % sizeof(buf) + 1;
		uint64_t off = rnd(&seed) % (size - len + 1);
		bool zero = rnd(&seed) % 4 == 0;
		if (rnd(&seed) % 3 == 0) { /* whole clusters, the zero-flag path */
			off &= ~(uint64_t)0xffff;
			len = len < 0x10000 ? 0x10000 : len & ~(uint64_t)0xffff;
		}
		uint8_t v = (uint8_t)rnd(&seed);
		for (uint64_t k = 0; k < len; k++)
			buf[k] = zero ? 0 : (uint8_t)(v + k * 13 + (k >> 10));
		enum block_op op = zero ? BLOCK_OP_WRITE_ZEROES : BLOCK_OP_WRITE;
		assert_int_equal(run(a, op, off, buf, len), 0);
		assert_int_equal(run(b, op, off, buf, len), 0);
	}
	assert_int_equal(run(a, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
}

/* ---- tests ---- */

static void test_random_writes(void **state)
{
	(void)state;
	static const uint32_t sizes[] = { 512, 4096, 65536, 1u << 21 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char q[256], r[256];
		img(q, "rw.qcow2");
		img(r, "rw.raw");
		cache = sizes[i] == 65536 ? BLOCK_CACHE_WRITEBACK : BLOCK_CACHE_UNSAFE;
		create(q, "qcow2", DISK, sizes[i], NULL);
		create(r, "raw", DISK, 0, NULL);
		struct block_dev *a = open_fmt(q, "qcow2", false), *b = open_fmt(r, "raw", false);
		assert_int_equal(block_size(a), DISK);
		assert_same(a, b); /* a new image reads as zeroes */
		random_writes(a, b, 1 + i, 60);
		assert_same(a, b);
		block_close(a);
		a = open_fmt(q, "qcow2", true);
		assert_same(a, b);
		block_close(a);
		block_close(b);
		unlink(q);
		unlink(r);
	}
	cache = BLOCK_CACHE_UNSAFE;
}

/* An overlay reads its backing file where it has nothing; writes (partial clusters copy the
 * rest from the backing file) and zeroes (zero flag) go to the overlay only. */
/* A new cluster the file does not reach yet, written only at its end with write-zeroes (no
 * data to write): the file must still reach the cluster's end before the L2 entry points
 * there, or a crash leaves an entry past the end of the file (qemu-img check: corrupt). */
static void test_tail_zeroes_reach_file_end(void **state)
{
	(void)state;
	char path[256];
	img(path, "tail.qcow2");
	create(path, "qcow2", 1 << 20, 65536, NULL);
	struct block_dev *bd = open_fmt(path, "qcow2", false);
	assert_int_equal(run(bd, BLOCK_OP_WRITE_ZEROES, 0x18000, NULL, 0x8000), 0);
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
	/* The data cluster the L2 entry of guest cluster 1 names lies inside the file. */
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint64_t l1, l2, data;
	assert_int_equal(pread(fd, &l1, 8, 40), 8);
	assert_int_equal(pread(fd, &l2, 8, (off_t)be64toh(l1)), 8);
	assert_int_equal(pread(fd, &data, 8, (off_t)(be64toh(l2) & 0x00fffffffffffe00ull) + 8), 8);
	data = be64toh(data) & 0x00fffffffffffe00ull;
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	assert_true(data != 0);
	assert_true(data + 65536 <= (uint64_t)st.st_size);
	static uint8_t buf[65536];
	memset(buf, 0xaa, sizeof(buf));
	assert_int_equal(run(bd, BLOCK_OP_READ, 0x10000, buf, sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	block_close(bd);
	unlink(path);
}

static void test_backing(void **state)
{
	(void)state;
	char base[256], mid[256], top[256], ref[256];
	img(base, "base.raw");
	img(mid, "mid.qcow2");
	img(top, "top.qcow2");
	img(ref, "ref.raw");
	create(base, "raw", DISK, 0, NULL);
	create(ref, "raw", DISK, 0, NULL);
	struct block_dev *b = open_fmt(base, "raw", false), *r = open_fmt(ref, "raw", false);
	random_writes(b, r, 7, 30);
	block_close(b);
	create(mid, "qcow2", 0, 4096, "base.raw"); /* relative: next to the overlay */
	struct block_dev *m = open_fmt(mid, "qcow2", false);
	assert_int_equal(block_size(m), DISK);
	assert_same(m, r);
	random_writes(m, r, 8, 30);
	assert_same(m, r);
	block_close(m);
	create(top, "qcow2", 0, 65536, mid); /* absolute, qcow2 probed */
	struct block_dev *t = open_fmt(top, "qcow2", false);
	assert_same(t, r);
	random_writes(t, r, 9, 40);
	assert_same(t, r);
	/* discard over the backing file: old data or zeroes, never garbage or an error */
	assert_int_equal(run(t, BLOCK_OP_DISCARD, 65536, NULL, 3 * 65536), 0);
	block_close(t);
	block_close(r);
	unlink(base);
	unlink(mid);
	unlink(top);
	unlink(ref);
}

/* block_open with stderr captured: its result and what it printed. */
static int open_capturing(const char *path, bool readonly, char *msg, size_t size)
{
	char log_path[300];
	img(log_path, "log");
	int log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(log_fd >= 0);
	unlink(log_path);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(log_fd, STDERR_FILENO);
	struct block_options o = { .path = path, .format = "qcow2", .readonly = readonly };
	struct block_dev *bd = NULL;
	int r = block_open(&o, &bd);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(log_fd, msg, size - 1, 0);
	close(log_fd);
	msg[n > 0 ? n : 0] = '\0';
	if (bd)
		block_close(bd);
	return r;
}

static void expect_error(const char *path, const char *phrase)
{
	char msg[2048];
	int r = open_capturing(path, true, msg, sizeof(msg));
	assert_true(r < 0);
	if (!strstr(msg, phrase) || !strchr(msg, '\n'))
		fail_msg("message \"%s\" should say \"%s\"", msg, phrase);
}

static void patch(const char *path, uint64_t off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void patch_be32(const char *path, uint64_t off, uint32_t v)
{
	v = htobe32(v);
	patch(path, off, &v, 4);
}

static void patch_be64(const char *path, uint64_t off, uint64_t v)
{
	v = htobe64(v);
	patch(path, off, &v, 8);
}

static void test_hostile_headers(void **state)
{
	(void)state;
	char p[256];
	img(p, "bad.qcow2");

	create(p, "qcow2", DISK, 0, NULL);
	assert_int_equal(truncate(p, 50), 0);
	expect_error(p, "too small");

	create(p, "qcow2", DISK, 0, NULL);
	patch_be64(p, 40, 1ull << 40);
	expect_error(p, "L1 table offset");

	create(p, "qcow2", DISK, 0, NULL);
	patch_be32(p, 36, 0x10000000);
	expect_error(p, "larger than kvmkit's limit");

	create(p, "qcow2", DISK, 0, NULL);
	patch_be64(p, 72, 1ull << 20);
	expect_error(p, "uses qcow2 feature(s) kvmkit does not know (incompatible bits "
			"0x100000)");

	create(p, "qcow2", DISK, 0, NULL);
	patch_be32(p, 20, 30);
	expect_error(p, "cluster_bits 30");

	create(p, "qcow2", DISK, 0, NULL);
	patch_be64(p, 72, 2); /* corrupt: refused for writing, fine for reading */
	char msg[2048];
	assert_int_equal(open_capturing(p, false, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "marked corrupt"));
	assert_int_equal(open_capturing(p, true, msg, sizeof(msg)), 0);

	/* dirty (lazy refcounts, not closed cleanly): opens, writes and reads back */
	create(p, "qcow2", DISK, 0, NULL);
	patch_be64(p, 72, 1);
	struct block_dev *bd = open_fmt(p, "qcow2", false);
	static uint8_t data[70000], back[70000];
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(run(bd, BLOCK_OP_WRITE, 1000, data, sizeof(data)), 0);
	assert_int_equal(run(bd, BLOCK_OP_DISCARD, 0, NULL, 1u << 20), 0);
	assert_int_equal(run(bd, BLOCK_OP_WRITE, 1000, data, sizeof(data)), 0);
	assert_int_equal(run(bd, BLOCK_OP_READ, 1000, back, sizeof(back)), 0);
	assert_memory_equal(data, back, sizeof(data));
	block_close(bd);

	create(p, "qcow2", DISK, 0, NULL);
	patch_be32(p, 0, 0x12345678);
	expect_error(p, "not a qcow2 image");
	unlink(p);
}

static void test_backing_loops(void **state)
{
	(void)state;
	char a[256], b[256], self[256];
	img(a, "a.qcow2");
	img(b, "b.qcow2");
	img(self, "self.qcow2");
	create(a, "qcow2", DISK, 0, NULL);
	create(b, "qcow2", 0, 0, "a.qcow2");
	create(a, "qcow2", 0, 0, "b.qcow2"); /* a -> b -> a */
	expect_error(a, "loop");
	create(self, "qcow2", DISK, 0, NULL);
	create(self, "qcow2", 0, 0, "self.qcow2");
	expect_error(self, "loop");
	unlink(a);
	unlink(b);
	unlink(self);
}

/* Random corruption of the metadata of a written image: opening and reading it all may fail,
 * but must not crash (the sanitizer build checks memory safety). */
static void test_fuzzed_images(void **state)
{
	(void)state;
	char p[256], r[256];
	img(p, "fuzz.qcow2");
	img(r, "fuzz.raw");
	uint64_t seed = 12345;
	for (int round = 0; round < 40; round++) {
		create(p, "qcow2", 2u << 20, round % 2 ? 512 : 4096, NULL);
		create(r, "raw", 2u << 20, 0, NULL);
		struct block_dev *a = open_fmt(p, "qcow2", false), *b = open_fmt(r, "raw", false);
		random_writes(a, b, seed, 5);
		block_close(a);
		block_close(b);
		int fd = open(p, O_RDWR);
		off_t size = lseek(fd, 0, SEEK_END);
		for (int k = 0; k < 8; k++) {
			uint64_t off = rnd(&seed) % (uint64_t)(round < 20 ? 512 : size);
			uint8_t v = (uint8_t)rnd(&seed);
			assert_int_equal(pwrite(fd, &v, 1, (off_t)off), 1);
		}
		close(fd);
		char msg[2048];
		struct block_options o = { .path = p, .format = "qcow2", .readonly = round % 3 == 0,
					   .cache = cache };
		struct block_dev *bd = NULL;
		fflush(stderr);
		int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDERR_FILENO);
		if (block_open(&o, &bd) == 0) {
			static uint8_t buf[65536];
			for (uint64_t off = 0; off < block_size(bd); off += sizeof(buf))
				(void)run(bd, BLOCK_OP_READ, off, buf, sizeof(buf));
			if (!o.readonly)
				(void)run(bd, BLOCK_OP_WRITE, 4096, buf, sizeof(buf));
			block_close(bd);
		}
		fflush(stderr);
		dup2(saved, STDERR_FILENO);
		close(saved);
		close(devnull);
		(void)msg;
	}
	unlink(p);
	unlink(r);
}

static void test_create_errors(void **state)
{
	(void)state;
	char p[256];
	img(p, "never.qcow2");
	struct block_create_options o = { .path = p, .format = "qcow2", .size = DISK,
					  .cluster_size = 1000 };
	fflush(stderr);
	int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, STDERR_FILENO);
	int r1 = block_create(&o);
	o.cluster_size = 0;
	o.backing_file = "does-not-exist";
	int r2 = block_create(&o);
	o.backing_file = NULL;
	o.format = "vmdk";
	int r3 = block_create(&o);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(devnull);
	assert_true(r1 < 0 && r2 < 0 && r3 < 0);
	assert_int_not_equal(access(p, F_OK), 0); /* nothing left behind */
}

/* ---- the event loop is never blocked by the disk ---- */

/* Requests in flight at once, each in its own 512 KiB region (so none overlap and any order of
 * completion is right): reads, writes and write-zeroes, a flush among them, the same to a raw
 * image; the fast path (engine) and the worker serve them together. */
struct batch_req {
	struct block_request req;
	struct iovec iov[3];
	uint8_t *buf;
	bool done;
	int result;
};

static void batch_done(struct block_request *req, int result)
{
	struct batch_req *b = req->opaque;
	b->done = true;
	b->result = result;
}

static void wait_all(struct block_dev *bd, struct batch_req *b, int n)
{
	for (;;) {
		int left = 0;
		for (int i = 0; i < n; i++)
			left += !b[i].done;
		if (!left)
			return;
		struct pollfd pfd = { .fd = block_completion_fd(bd), .events = POLLIN };
		assert_int_equal(poll(&pfd, 1, 10000), 1);
		block_process_completions(bd);
	}
}

static void submit_batch(struct block_dev *bd, struct batch_req *b, int n, uint64_t seed)
{
	uint64_t region = block_size(bd) / (uint64_t)n;
	for (int i = 0; i < n; i++) {
		struct batch_req *r = &b[i];
		uint64_t s = seed + (uint64_t)i * 7919;
		uint64_t len = rnd(&s) % (3 * 65536) + 1, off = rnd(&s) % (region - len);
		unsigned kind = (unsigned)(rnd(&s) % 8);
		enum block_op op = i == n / 2 ? BLOCK_OP_FLUSH : kind < 3 ? BLOCK_OP_READ
				 : kind < 7 ? BLOCK_OP_WRITE : BLOCK_OP_WRITE_ZEROES;
		if (op == BLOCK_OP_WRITE || op == BLOCK_OP_WRITE_ZEROES)
			for (uint64_t k = 0; k < len; k++)
				r->buf[k] = op == BLOCK_OP_WRITE_ZEROES ? 0 : (uint8_t)(seed + k * 31 + i);
		uint64_t cut1 = len / 4, cut2 = len / 2;
		r->iov[0] = (struct iovec){ r->buf, cut1 };
		r->iov[1] = (struct iovec){ r->buf + cut1, cut2 - cut1 };
		r->iov[2] = (struct iovec){ r->buf + cut2, len - cut2 };
		r->req = (struct block_request){ .op = op, .offset = (uint64_t)i * region + off,
						 .iov = r->iov, .iovcnt = 3, .len = len,
						 .done = batch_done, .opaque = r };
		r->done = false;
		assert_int_equal(block_submit(bd, &r->req), 0);
	}
}

static void test_concurrent_requests(void **state)
{
	(void)state;
	enum { N = 16 };
	static const uint32_t sizes[] = { 512, 4096, 65536 };
	struct batch_req qb[N], rb[N];
	for (int i = 0; i < N; i++) {
		assert_non_null(qb[i].buf = malloc(3 * 65536));
		assert_non_null(rb[i].buf = malloc(3 * 65536));
	}
	for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
		char q[256], r[256];
		img(q, "cc.qcow2");
		img(r, "cc.raw");
		create(q, "qcow2", DISK, sizes[c], NULL);
		create(r, "raw", DISK, 0, NULL);
		struct block_dev *a = open_fmt(q, "qcow2", false), *b = open_fmt(r, "raw", false);
		for (uint64_t round = 0; round < 12; round++) {
			block_plug(a);
			submit_batch(a, qb, N, round * 1000003 + c);
			block_unplug(a);
			submit_batch(b, rb, N, round * 1000003 + c);
			wait_all(a, qb, N);
			wait_all(b, rb, N);
			for (int i = 0; i < N; i++) {
				assert_int_equal(qb[i].result, 0);
				assert_int_equal(rb[i].result, 0);
				if (qb[i].req.op == BLOCK_OP_READ &&
				    memcmp(qb[i].buf, rb[i].buf, qb[i].req.iov[0].iov_len +
					   qb[i].req.iov[1].iov_len + qb[i].req.iov[2].iov_len))
					fail_msg("cluster size %u, round %llu: read %d differs", sizes[c],
						 (unsigned long long)round, i);
			}
		}
		assert_same(a, b);
		block_close(a);
		a = open_fmt(q, "qcow2", true);
		assert_same(a, b);
		block_close(a);
		block_close(b);
		unlink(q);
		unlink(r);
	}
	for (int i = 0; i < N; i++) {
		free(qb[i].buf);
		free(rb[i].buf);
	}
}

/* A fault hook that stalls the driver's worker at one kind of I/O (a slow disk), as SQLite's
 * test_vfs does: it signals `entered`, then waits for `release` (at most 10 s, so that a
 * regression fails the test instead of hanging it) and fails the call with `result`. */
struct stall {
	atomic_int armed;             /* the next call at `point` stalls */
	enum block_fault_point point;
	int result;
	int entered[2], release[2];  /* pipes */
};

static int stall_hook(void *opaque, enum block_fault_point point, uint64_t off, uint64_t len)
{
	(void)off;
	(void)len;
	struct stall *st = opaque;
	int one = 1;
	if (point != st->point || !atomic_compare_exchange_strong(&st->armed, &one, 0))
		return 0;
	assert_int_equal(write(st->entered[1], "x", 1), 1);
	struct pollfd pfd = { .fd = st->release[0], .events = POLLIN };
	char c;
	if (poll(&pfd, 1, 10000) == 1)
		assert_int_equal(read(st->release[0], &c, 1), 1);
	return st->result;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits up to ms for the stall hook to be entered. */
static bool stall_entered(struct stall *st, int ms)
{
	struct pollfd pfd = { .fd = st->entered[0], .events = POLLIN };
	char c;
	if (poll(&pfd, 1, ms) != 1)
		return false;
	assert_int_equal(read(st->entered[0], &c, 1), 1);
	return true;
}

/* Serves the "event loop" (the completion fd and another fd, as the I/O thread serves TAP and
 * slirp) until *flag is set or ms pass; returns whether the other fd was seen readable. */
static bool serve(struct block_dev *bd, int other, const bool *flag, int ms)
{
	bool seen = false;
	double end = now_s() + ms / 1000.0;
	while (!*flag && now_s() < end) {
		struct pollfd pfd[2] = { { .fd = block_completion_fd(bd), .events = POLLIN },
					 { .fd = other, .events = POLLIN } };
		if (poll(pfd, 2, 50) < 0)
			break;
		if (pfd[1].revents & POLLIN) {
			char c;
			assert_int_equal(read(other, &c, 1), 1);
			seen = true;
		}
		block_process_completions(bd);
	}
	return seen;
}

static void test_slow_disk_does_not_block_loop(void **state)
{
	(void)state;
	char path[256];
	img(path, "stall.qcow2");
	create(path, "qcow2", DISK, 65536, NULL);
	cache = BLOCK_CACHE_WRITEBACK; /* flushes sync: the hook sees them */
	struct block_dev *bd = open_fmt(path, "qcow2", false);
	cache = BLOCK_CACHE_UNSAFE;
	static uint8_t data[65536], got[65536], more[65536];
	memset(data, 0x5a, sizeof(data));
	memset(more, 0xa5, sizeof(more));
	assert_int_equal(run(bd, BLOCK_OP_WRITE, 0, data, sizeof(data)), 0);
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0), 0);

	struct stall st = { .point = BLOCK_FAULT_SYNC };
	int other[2];
	assert_int_equal(pipe(st.entered), 0);
	assert_int_equal(pipe(st.release), 0);
	assert_int_equal(pipe(other), 0);
	bd->fault = (struct block_fault){ stall_hook, &st };

	/* 1. A flush stalled in fdatasync: another fd is served, and a read and an in-place write
	 * complete meanwhile. */
	struct batch_req fl = { .done = false }, rd = { .done = false }, wr = { .done = false };
	atomic_store(&st.armed, 1);
	fl.req = (struct block_request){ .op = BLOCK_OP_FLUSH, .done = batch_done, .opaque = &fl };
	double t0 = now_s();
	assert_int_equal(block_submit(bd, &fl.req), 0);
	assert_true(now_s() - t0 < 0.5);
	assert_true(stall_entered(&st, 5000));
	assert_int_equal(write(other[1], "p", 1), 1);
	t0 = now_s();
	bool never = false;
	assert_true(serve(bd, other[0], &never, 100));
	rd.iov[0] = (struct iovec){ got, sizeof(got) };
	rd.req = (struct block_request){ .op = BLOCK_OP_READ, .iov = rd.iov, .iovcnt = 1,
					 .done = batch_done, .opaque = &rd };
	wr.iov[0] = (struct iovec){ more, 4096 };
	wr.req = (struct block_request){ .op = BLOCK_OP_WRITE, .offset = 8192, .iov = wr.iov,
					 .iovcnt = 1, .done = batch_done, .opaque = &wr };
	assert_int_equal(block_submit(bd, &rd.req), 0);
	assert_int_equal(block_submit(bd, &wr.req), 0);
	serve(bd, other[0], &rd.done, 2000);
	serve(bd, other[0], &wr.done, 2000);
	assert_true(rd.done && wr.done);
	assert_false(fl.done); /* still stalled: they did not wait for it */
	assert_int_equal(rd.result, 0);
	assert_int_equal(wr.result, 0);
	assert_memory_equal(got, data, sizeof(got));
	assert_true(now_s() - t0 < 5);
	assert_int_equal(write(st.release[1], "r", 1), 1);
	serve(bd, other[0], &fl.done, 10000);
	assert_true(fl.done);
	assert_int_equal(fl.result, 0);

	/* 2. An allocating write stalled at its data write (metadata lock held): block_submit
	 * still returns at once and the other fd is served; the stalled write then completes. */
	st.point = BLOCK_FAULT_WRITE;
	atomic_store(&st.armed, 1);
	struct batch_req al = { .done = false };
	al.iov[0] = (struct iovec){ more, sizeof(more) };
	al.req = (struct block_request){ .op = BLOCK_OP_WRITE, .offset = 5 * 65536, .iov = al.iov,
					 .iovcnt = 1, .done = batch_done, .opaque = &al };
	assert_int_equal(block_submit(bd, &al.req), 0);
	assert_true(stall_entered(&st, 5000));
	rd.done = false;
	t0 = now_s();
	assert_int_equal(block_submit(bd, &rd.req), 0);
	assert_true(now_s() - t0 < 0.5);
	assert_int_equal(write(other[1], "p", 1), 1);
	assert_true(serve(bd, other[0], &never, 100));
	assert_false(al.done);
	assert_int_equal(write(st.release[1], "r", 1), 1);
	serve(bd, other[0], &al.done, 10000);
	serve(bd, other[0], &rd.done, 10000);
	assert_true(al.done && rd.done);
	assert_int_equal(al.result, 0);
	assert_int_equal(rd.result, 0);

	/* 3. A failing sync fails the flush with its error; the next flush succeeds (with the
	 * metadata written back first: a failed write-back would rightly refuse later writes). */
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
	st.point = BLOCK_FAULT_SYNC;
	st.result = -EIO;
	atomic_store(&st.armed, 1);
	assert_int_equal(write(st.release[1], "r", 1), 1); /* no stall this time */
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0), -EIO);
	assert_int_equal(run(bd, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
	assert_true(stall_entered(&st, 0));
	bd->fault.hook = NULL;
	assert_int_equal(run(bd, BLOCK_OP_READ, 5 * 65536, got, sizeof(got)), 0);
	assert_memory_equal(got, more, sizeof(got));
	block_close(bd);
	for (int i = 0; i < 2; i++) {
		close(st.entered[i]);
		close(st.release[i]);
		close(other[i]);
	}
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_writes),
		cmocka_unit_test(test_tail_zeroes_reach_file_end),
		cmocka_unit_test(test_backing),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_backing_loops),
		cmocka_unit_test(test_fuzzed_images),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_concurrent_requests),
		cmocka_unit_test(test_slow_disk_does_not_block_loop),
	};
	return cmocka_run_group_tests_name("qcow2", tests, setup, teardown);
}
