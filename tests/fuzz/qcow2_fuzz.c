/* qcow2_fuzz: a libFuzzer target for kvmkit's qcow2 header and table parser (src/block/qcow2.c).
 * Each input is written to IMG in a private temp directory (next to BASE, a small raw file a
 * backing-file name "base.raw" reaches), opened with block_open(format "qcow2") read-only and
 * then read-write; a few ranges are read synchronously (and, read-write, one small write and a
 * flush), then the device is closed. Built and run by tests/fuzz/run.sh.
 * QCOW2_FUZZ_VERBOSE=1 prints the block layer's error messages (quiet by default: speed). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "lib/log.h"

/* Stand-ins for src/lib/log.c: the parser reports every rejected input, which would flood
 * the fuzzer's output. */
bool log_verbose;
static bool fuzz_verbose;
void log_start_clock(void) {}
static void vlog(const char *fmt, va_list ap)
{
	if (!fuzz_verbose)
		return;
	fputs("kvmkit: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}
void log_error(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vlog(fmt, ap); va_end(ap); }
void log_warn(const char *fmt, ...) { va_list ap; va_start(ap, fmt); vlog(fmt, ap); va_end(ap); }
void log_debug(const char *fmt, ...) { (void)fmt; }

static char img_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_verbose = getenv("QCOW2_FUZZ_VERBOSE") != NULL;
	const char *tmp = getenv("TMPDIR");
	char dir[200];
	snprintf(dir, sizeof(dir), "%s/kvmkit-qcow2-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("qcow2_fuzz: mkdtemp");
		abort();
	}
	snprintf(img_path, sizeof(img_path), "%s/img.qcow2", dir);
	/* The backing file the seeds name: 1 MiB of a pattern. */
	char base[256];
	snprintf(base, sizeof(base), "%s/base.raw", dir);
	int fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	static uint8_t pat[1 << 20];
	for (size_t i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 7 + (i >> 9));
	if (fd < 0 || write(fd, pat, sizeof(pat)) != (ssize_t)sizeof(pat)) {
		perror("qcow2_fuzz: base.raw");
		abort();
	}
	close(fd);
	return 0;
}

static uint64_t hash(const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h;
}

static void one(const uint8_t *data, size_t size, bool readonly)
{
	int fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) {
		perror("qcow2_fuzz: write image");
		abort();
	}
	close(fd);
	struct block_options o = { .path = img_path, .format = "qcow2", .readonly = readonly,
				   .cache = BLOCK_CACHE_UNSAFE };
	struct block_dev *bd;
	if (block_open(&o, &bd) < 0)
		return;
	uint64_t dsize = block_size(bd);
	static uint8_t buf[192 << 10];
	uint64_t h = hash(data, size);
	/* The start, the end, a point the input picks, and a range across a cluster (L2) edge. */
	struct { uint64_t off, len; } rr[5] = {
		{ 0, 4096 },
		{ dsize > 4096 ? dsize - 4096 : 0, 4096 },
		{ h % dsize, 512 + (h >> 40) % (64 << 10) },
		{ dsize > (1 << 16) ? (1 << 16) - 700 : 0, 1400 },
		{ 0, 192 << 10 },
	};
	for (unsigned i = 0; i < 5; i++) {
		uint64_t off = rr[i].off, len = rr[i].len;
		if (off >= dsize)
			continue;
		if (len > dsize - off)
			len = dsize - off;
		block_io(bd, BLOCK_OP_READ, off, buf, len);
	}
	if (!readonly) {
		memset(buf, 0xa5, 4096);
		uint64_t off = (h >> 8) % dsize, len = 4096;
		if (len > dsize - off)
			len = dsize - off;
		block_io(bd, BLOCK_OP_WRITE, off, buf, len);
		block_io(bd, BLOCK_OP_WRITE_ZEROES, 0, NULL, dsize < 8192 ? dsize : 8192);
		block_io(bd, BLOCK_OP_READ, off, buf, len);
		block_io(bd, BLOCK_OP_FLUSH, 0, NULL, 0);
	}
	block_close(bd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size, true);
	one(data, size, false);
	return 0;
}
