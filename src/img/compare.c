/* `kvmkit-img compare [-f FMT] [-F FMT] [-p] [-q] A B`: exit 0 when the guest views are
 * identical, 1 when they differ (naming the first differing 512-byte sector), 2 on error. An
 * image longer than the other must read as zeroes past the shorter one's end. */
#include "img/img.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMPARE_CHUNK (1u << 20)

static uint64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t n)
{
	uint64_t i = 0;
	while (i < n && a[i] == b[i])
		i++;
	return i;
}

static uint64_t first_nonzero(const uint8_t *a, uint64_t n)
{
	uint64_t i = 0;
	while (i < n && !a[i])
		i++;
	return i;
}

int img_compare(int argc, char **argv)
{
	const char *fa = NULL, *fb = NULL;
	bool quiet = false;
	int c;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	while ((c = getopt_long(argc, argv, ":f:F:pqsUh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fa = optarg; break;
		case 'F': fb = optarg; break;
		case 'q': quiet = true; break;
		case 'p': case 's': case 'U': break;
		case 'h':
			printf("Usage: kvmkit-img compare [-f FMT] [-F FMT] [-q] A B\n");
			return 0;
		case ':': img_error("option -%c needs an argument", optopt); return 2;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 2;
		}
	}
	if (argc - optind != 2) {
		img_error("expecting two image file names");
		return 2;
	}
	const char *pa = argv[optind], *pb = argv[optind + 1];
	if (!fb)
		fb = fa;
	struct block_dev *a = NULL, *b = NULL;
	if (img_open(pa, fa, true, &a) < 0 || img_open(pb, fb, true, &b) < 0) {
		block_close(a);
		return 2;
	}
	uint64_t sa = block_size(a), sb = block_size(b), common = sa < sb ? sa : sb;
	uint8_t *ba = malloc(COMPARE_CHUNK), *bb = malloc(COMPARE_CHUNK);
	int rc = 0;
	if (!ba || !bb) {
		img_error("out of memory");
		rc = 2;
	}
	if (rc == 0 && sa != sb && !quiet)
		printf("Warning: Image size mismatch!\n");
	for (uint64_t off = 0; rc == 0 && off < common; off += COMPARE_CHUNK) {
		uint64_t n = common - off < COMPARE_CHUNK ? common - off : COMPARE_CHUNK;
		if (block_io(a, BLOCK_OP_READ, off, ba, n) < 0 ||
		    block_io(b, BLOCK_OP_READ, off, bb, n) < 0) {
			img_error("error while reading offset %llu", (unsigned long long)off);
			rc = 2;
		} else if (memcmp(ba, bb, n) != 0) {
			uint64_t at = off + first_diff(ba, bb, n);
			if (!quiet)
				printf("Content mismatch at offset %llu!\n",
				       (unsigned long long)(at & ~511ull));
			rc = 1;
		}
	}
	/* The longer image's tail must be zeroes. */
	struct block_dev *longer = sa > sb ? a : b;
	uint64_t end = sa > sb ? sa : sb;
	for (uint64_t off = common; rc == 0 && off < end; off += COMPARE_CHUNK) {
		uint64_t n = end - off < COMPARE_CHUNK ? end - off : COMPARE_CHUNK;
		if (block_io(longer, BLOCK_OP_READ, off, ba, n) < 0) {
			img_error("error while reading offset %llu", (unsigned long long)off);
			rc = 2;
		} else if (!img_all_zero(ba, n)) {
			uint64_t at = off + first_nonzero(ba, n);
			if (!quiet)
				printf("Content mismatch at offset %llu!\n",
				       (unsigned long long)(at & ~511ull));
			rc = 1;
		}
	}
	if (rc == 0 && !quiet)
		printf("Images are identical.\n");
	free(ba);
	free(bb);
	block_close(a);
	block_close(b);
	return rc;
}
