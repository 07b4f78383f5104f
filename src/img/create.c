/* `kvmkit-img create [-f FMT] [-b BACKING [-F FMT]] [-o OPTIONS] FILE [SIZE]`: a new raw or
 * qcow2 image through block_create, announced the way qemu-img announces it. */
#include "img/img.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lib/size.h"

/* The backing file's virtual size, for the announcement when SIZE is left out. */
static uint64_t backing_size(const char *image, const char *backing, const char *fmt)
{
	char path[PATH_MAX];
	const char *slash = strrchr(image, '/');
	if (backing[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", backing);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - image), image, backing);
	struct block_dev *bd;
	if (img_open(path, fmt, true, &bd) < 0)
		return 0;
	uint64_t size = block_size(bd);
	block_close(bd);
	return size;
}

int img_create(int argc, char **argv)
{
	struct block_create_options o = { 0 };
	const char *fmt = "raw";
	uint64_t size = 0;
	bool have_size = false, quiet = false;
	int c;
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	while ((c = getopt_long(argc, argv, ":f:b:F:o:uqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': o.backing_file = optarg; break;
		case 'F': o.backing_format = optarg; break;
		case 'o':
			if (!img_parse_create_options(optarg, &o, &size))
				return 1;
			have_size = size != 0;
			break;
		case 'u': break;
		case 'q': quiet = true; break;
		case 'h':
			printf("Usage: kvmkit-img create [-f raw|qcow2] [-b BACKING [-F FMT]] "
			       "[-o OPTIONS] FILE [SIZE]\n");
			return 0;
		case ':': img_error("option -%c needs an argument", optopt); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	if (!img_known_format("create", fmt) || !img_known_format("create", o.backing_format))
		return 1;
	if (optind >= argc) {
		img_error("expecting an image file name");
		return 1;
	}
	o.path = argv[optind++];
	o.format = fmt;
	if (optind < argc) {
		if (size_parse(argv[optind], 1, &size) < 0 || size == 0) {
			img_error("invalid image size '%s': use a number with an optional k, M, G or "
				  "T suffix", argv[optind]);
			return 1;
		}
		have_size = true;
		optind++;
	}
	if (optind < argc) {
		img_error("unexpected argument '%s'", argv[optind]);
		return 1;
	}
	if (!have_size && !o.backing_file) {
		img_error("image size must be specified (it can only be left out with a backing "
			  "file)");
		return 1;
	}
	if (strcmp(fmt, "qcow2") == 0 && o.cluster_size &&
	    (o.cluster_size < 512 || o.cluster_size > (2u << 20) ||
	     (o.cluster_size & (o.cluster_size - 1)))) {
		img_error("cluster size must be a power of two between 512 and 2M");
		return 1;
	}
	if (!have_size) {
		size = backing_size(o.path, o.backing_file, o.backing_format);
		if (!size)
			return 1;
	}
	o.size = size;
	char line[3072];
	int n;
	if (strcmp(fmt, "qcow2") == 0) {
		/* qemu-img's order of the options */
		n = snprintf(line, sizeof(line), "Formatting '%s', fmt=qcow2 cluster_size=%u "
			     "extended_l2=off%s%s compression_type=%s size=%llu", o.path,
			     o.cluster_size ? o.cluster_size : 65536u,
			     o.preallocation ? " preallocation=" : "",
			     o.preallocation ? o.preallocation : "",
			     o.compression_type ? o.compression_type : "zlib",
			     (unsigned long long)size);
		if (o.backing_file)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " backing_file=%s",
				      o.backing_file);
		if (o.backing_format && n < (int)sizeof(line))
			n += snprintf(line + n, sizeof(line) - (size_t)n, " backing_fmt=%s",
				      o.backing_format);
		if (n < (int)sizeof(line))
			snprintf(line + n, sizeof(line) - (size_t)n, " lazy_refcounts=%s "
				 "refcount_bits=16", o.lazy_refcounts ? "on" : "off");
	} else {
		n = snprintf(line, sizeof(line), "Formatting '%s', fmt=raw size=%llu", o.path,
			     (unsigned long long)size);
		if (o.preallocation && n < (int)sizeof(line))
			snprintf(line + n, sizeof(line) - (size_t)n, " preallocation=%s",
				 o.preallocation);
	}
	if (!quiet)
		printf("%s\n", line);
	fflush(stdout);
	return block_create(&o) < 0 ? 1 : 0;
}
