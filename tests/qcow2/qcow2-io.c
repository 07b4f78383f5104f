/* qcow2-io: a small driver of kvmkit's block layer for tests/qcow2/run.sh, which compares what
 * it reads and writes with qemu-img's view of the same images.
 *   qcow2-io create IMAGE FORMAT SIZE [CLUSTER_SIZE [BACKING [BACKING_FORMAT]]]
 *   qcow2-io dump IMAGE FORMAT OUT          the guest-visible contents into the raw file OUT
 *   qcow2-io write IMAGE FORMAT REF SEED N  N random writes (and write-zeroes) to IMAGE, the
 *                                           same bytes to the raw file REF
 *   qcow2-io crashwrite IMAGE FORMAT LOG SEED
 *                                           random writes (and write-zeroes) of up to 3 clusters
 *                                           (CLUSTER, default 4096, from QCOW2_IO_CLUSTER) until
 *                                           killed; before each one it appends "P OFF LEN PAT" to
 *                                           LOG (PAT 0: write-zeroes, else the pattern), and every
 *                                           few writes, once a flush has completed, "F" (fsync'd):
 *                                           all writes logged before it are durable
 *   qcow2-io randwrite IMAGE FORMAT SEED N  N writes of 4 KiB at random 4 KiB-aligned offsets
 *                                           (queue depth 1), then a flush; prints the time. The
 *                                           offsets: xorshift64 from SEED * 2654435761 + 1, each
 *                                           next value modulo the number of 4 KiB blocks (bench/
 *                                           img.sh replays them with qemu-io)
 * QCOW2_IO_CACHE=none|unsafe picks the cache mode (default writeback). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The randwrite subcommand: its exit status. */
static int randwrite(struct block_dev *bd, uint64_t seed, long n)
{
	uint64_t blocks = block_size(bd) / 4096;
	uint8_t *buf = malloc(4096);
	if (!buf || blocks == 0)
		return 1;
	seed = seed * 2654435761u + 1;
	double t0 = now();
	int r = 0;
	for (long i = 0; i < n && r >= 0; i++) {
		uint64_t off = rnd(&seed) % blocks * 4096;
		memset(buf, (int)(i % 255) + 1, 4096);
		r = block_io(bd, BLOCK_OP_WRITE, off, buf, 4096);
	}
	if (r >= 0)
		r = block_io(bd, BLOCK_OP_FLUSH, 0, NULL, 0);
	double t = now() - t0;
	free(buf);
	if (r < 0) {
		fprintf(stderr, "qcow2-io: randwrite: %s\n", strerror(-r));
		return 1;
	}
	printf("randwrite n=%ld seconds=%.3f iops=%.0f\n", n, t, t > 0 ? (double)n / t : 0.0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see the top of qcow2-io.c\n");
		return 2;
	}
	const char *cmd = argv[1], *image = argv[2], *fmt = argv[3];
	if (strcmp(cmd, "create") == 0 && argc >= 5) {
		struct block_create_options o = {
			.path = image, .format = fmt, .size = strtoull(argv[4], NULL, 0),
			.cluster_size = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 0) : 0,
			.backing_file = argc > 6 ? argv[6] : NULL,
			.backing_format = argc > 7 ? argv[7] : NULL,
		};
		return block_create(&o) < 0;
	}
	bool writing = strcmp(cmd, "write") == 0 || strcmp(cmd, "crashwrite") == 0 ||
		       strcmp(cmd, "randwrite") == 0;
	const char *cache = getenv("QCOW2_IO_CACHE");
	struct block_options opts = {
		.path = image, .format = fmt, .readonly = !writing,
		.cache = !cache ? BLOCK_CACHE_WRITEBACK
			: strcmp(cache, "none") == 0 ? BLOCK_CACHE_NONE : BLOCK_CACHE_UNSAFE,
	};
	struct block_dev *bd;
	if (block_open(&opts, &bd) < 0)
		return 1;
	uint64_t size = block_size(bd);
	int rc = 0;
	if (strcmp(cmd, "dump") == 0 && argc == 5) {
		int out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		size_t chunk = 1 << 20;
		uint8_t *buf = malloc(chunk);
		for (uint64_t off = 0; out >= 0 && off < size && rc == 0; off += chunk) {
			uint64_t n = size - off < chunk ? size - off : chunk;
			int r = block_io(bd, BLOCK_OP_READ, off, buf, n);
			if (r < 0 || pwrite(out, buf, n, (off_t)off) != (ssize_t)n) {
				fprintf(stderr, "qcow2-io: read at %llu: %s\n",
					(unsigned long long)off, strerror(-r));
				rc = 1;
			}
		}
		free(buf);
		if (out < 0 || close(out) < 0)
			rc = 1;
	} else if (writing && argc == 7) {
		int ref = open(argv[4], O_WRONLY);
		uint64_t seed = strtoull(argv[5], NULL, 0) * 2654435761u + 1;
		long n = strtol(argv[6], NULL, 0);
		uint8_t *buf = malloc(256 << 10);
		for (long i = 0; ref >= 0 && i < n && rc == 0; i++) {
			uint64_t len = rnd(&seed) % (256 << 10) + 1;
			if (len > size)
				len = size;
			uint64_t off = rnd(&seed) % (size - len + 1);
			if (rnd(&seed) % 4 == 0) /* some aligned: whole clusters */
				off &= ~(uint64_t)0xffff, len = (len + 0xffff) & ~(uint64_t)0xffff;
			if (off + len > size)
				len = size - off;
			bool zero = rnd(&seed) % 5 == 0;
			uint8_t v = (uint8_t)rnd(&seed);
			for (uint64_t k = 0; k < len; k++)
				buf[k] = zero ? 0 : (uint8_t)(v + k * 7 + (k >> 9));
			int r = block_io(bd, zero ? BLOCK_OP_WRITE_ZEROES : BLOCK_OP_WRITE, off, buf, len);
			if (r < 0 || pwrite(ref, buf, len, (off_t)off) != (ssize_t)len) {
				fprintf(stderr, "qcow2-io: write at %llu+%llu: %s\n",
					(unsigned long long)off, (unsigned long long)len, strerror(-r));
				rc = 1;
			}
		}
		free(buf);
		if (ref < 0 || close(ref) < 0)
			rc = 1;
		if (rc == 0 && block_io(bd, BLOCK_OP_FLUSH, 0, NULL, 0) < 0)
			rc = 1;
	} else if (strcmp(cmd, "crashwrite") == 0 && argc == 6) {
		FILE *log = fopen(argv[4], "a");
		uint64_t seed = strtoull(argv[5], NULL, 0) * 2654435761u + 1;
		const char *cl = getenv("QCOW2_IO_CLUSTER");
		uint64_t cs = cl ? strtoull(cl, NULL, 0) : 4096;
		uint8_t *buf = malloc(3 * cs + 1);
		for (long i = 1; log && rc == 0; i++) {
			uint64_t len = rnd(&seed) % (3 * cs) + 1;
			uint64_t off = rnd(&seed) % (size - len + 1);
			if (rnd(&seed) % 4 == 0) /* some aligned: whole clusters */
				off &= ~(cs - 1), len = (len + cs - 1) & ~(cs - 1);
			if (off + len > size)
				len = size - off;
			unsigned pat = rnd(&seed) % 6 == 0 ? 0 : (unsigned)(rnd(&seed) % 255) + 1;
			for (uint64_t k = 0; k < len; k++)
				buf[k] = pat ? (uint8_t)(pat + k * 7 + (k >> 9)) : 0;
			fprintf(log, "P %llu %llu %u\n", (unsigned long long)off,
				(unsigned long long)len, pat);
			fflush(log);
			int r = block_io(bd, pat ? BLOCK_OP_WRITE : BLOCK_OP_WRITE_ZEROES, off, buf, len);
			if (r >= 0 && i % 8 == 0) {
				r = block_io(bd, BLOCK_OP_FLUSH, 0, NULL, 0);
				if (r >= 0) {
					fprintf(log, "F\n");
					fflush(log);
					fsync(fileno(log));
				}
			}
			if (r < 0) {
				fprintf(stderr, "qcow2-io: crashwrite at %llu+%llu: %s\n",
					(unsigned long long)off, (unsigned long long)len, strerror(-r));
				rc = 1;
			}
		}
		free(buf);
		if (!log)
			rc = 1;
	} else if (strcmp(cmd, "randwrite") == 0 && argc == 6) {
		rc = randwrite(bd, strtoull(argv[4], NULL, 0), strtol(argv[5], NULL, 0));
	} else {
		fprintf(stderr, "usage: see the top of qcow2-io.c\n");
		rc = 2;
	}
	block_close(bd);
	return rc;
}
