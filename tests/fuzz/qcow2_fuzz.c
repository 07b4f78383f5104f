/* qcow2_fuzz: a libFuzzer target for kvmkit's qcow2 header parser (src/block/qcow2_parse.c) and
 * its users. Each input is written to IMG in a private temp directory (next to BASE, a small raw
 * file a backing-file name "base.raw" reaches). The driver (tests/fuzz/run.sh): IMG is opened
 * with block_open(format "qcow2") read-only and then read-write; a few ranges are read
 * synchronously (and, read-write, one small write and a flush), then the device is closed.
 * Built with -DQCOW2_FUZZ_IMG (tests/fuzz/img_run.sh): kvmkit-img's commands that read an image
 * (info, check, map, snapshot -l) run on IMG, then check -r all repairs it and check runs again.
 * QCOW2_FUZZ_VERBOSE=1 prints the block layer's error messages (quiet_log.c: quiet by default). */
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
#ifdef QCOW2_FUZZ_IMG
#include <getopt.h>

#include "img/img.h"
#endif

static char img_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
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
#ifdef QCOW2_FUZZ_IMG
	/* What the commands print is not looked at; their messages stay quiet unless asked. */
	if (!freopen("/dev/null", "w", stdout))
		abort();
	img_quiet = getenv("QCOW2_FUZZ_VERBOSE") == NULL;
#endif
	return 0;
}

static uint64_t hash(const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h;
}

static uint64_t input_hash;

static void write_image(const uint8_t *data, size_t size)
{
	int fd = open(img_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) {
		perror("qcow2_fuzz: write image");
		abort();
	}
	close(fd);
	input_hash = hash(data, size);
}

static void one(bool readonly)
{
	struct block_options o = { .path = img_path, .format = "qcow2", .readonly = readonly,
				   .cache = BLOCK_CACHE_UNSAFE };
	struct block_dev *bd;
	if (block_open(&o, &bd) < 0)
		return;
	uint64_t dsize = block_size(bd);
	static uint8_t buf[192 << 10];
	uint64_t h = input_hash;
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

#ifdef QCOW2_FUZZ_IMG
/* One kvmkit-img command line on IMG (getopt reset for each). */
static void img_cmd(int (*cmd)(int, char **), const char *a0, const char *a1, const char *a2)
{
	char s0[32], s1[32], s2[32], path[256];
	snprintf(s0, sizeof(s0), "%s", a0);
	snprintf(s1, sizeof(s1), "%s", a1);
	snprintf(s2, sizeof(s2), "%s", a2 ? a2 : "");
	snprintf(path, sizeof(path), "%s", img_path);
	char *argv[] = { s0, s1, a2 ? s2 : path, a2 ? path : NULL, NULL };
	optind = 0;
	cmd(a2 ? 4 : 3, argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	write_image(data, size);
	img_cmd(img_info, "info", "-fqcow2", NULL);
	img_cmd(img_info, "info", "-fqcow2", "--output=json");
	img_cmd(img_check, "check", "-fqcow2", NULL);
	img_cmd(img_map, "map", "-fqcow2", "--output=json");
	img_cmd(img_snapshot, "snapshot", "-l", NULL);
	img_cmd(img_check, "check", "-rall", NULL);
	img_cmd(img_check, "check", "-fqcow2", NULL);
	return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	write_image(data, size);
	one(true);
	one(false);
	return 0;
}
#endif
