/* kvmkit-img's helpers: errors, format probing, opening, synchronous I/O, -o parsing. */
#include "img/img.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/size.h"

bool img_quiet;

void img_error(const char *fmt, ...)
{
	if (img_quiet)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kvmkit-img: %s\n", line);
}

const char *img_probe(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		img_error("could not open '%s': %s", path, strerror(errno));
		return NULL;
	}
	uint8_t m[4] = { 0 };
	ssize_t n = pread(fd, m, 4, 0);
	close(fd);
	if (n < 0) {
		img_error("could not read '%s': %s", path, strerror(errno));
		return NULL;
	}
	return n == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb ? "qcow2"
										     : "raw";
}

bool img_known_format(const char *path, const char *fmt)
{
	if (!fmt || strcmp(fmt, "raw") == 0 || strcmp(fmt, "qcow2") == 0)
		return true;
	img_error("%s: unknown file format '%s' (raw and qcow2 are supported)", path, fmt);
	return false;
}

int img_open(const char *path, const char *fmt, bool readonly, struct block_dev **out)
{
	if (!img_known_format(path, fmt))
		return -EINVAL;
	if (!fmt && !(fmt = img_probe(path)))
		return -ENOENT;
	struct block_options o = { .path = path, .format = fmt, .readonly = readonly,
				   .cache = BLOCK_CACHE_WRITEBACK };
	return block_open(&o, out);
}

void img_progress(bool on, uint64_t done, uint64_t total, int *last)
{
	int pct100 = total ? (int)(done * 10000 / total) : 10000;
	if (!on || pct100 / 100 == *last / 100)
		return;
	*last = pct100;
	printf("    (%d.%02d/100%%)\r", pct100 / 100, pct100 % 100);
	fflush(stdout);
}

bool img_all_zero(const uint8_t *p, size_t len)
{
	/* Word-at-a-time once aligned; the buffers here are malloc'ed and whole sectors. */
	size_t i = 0;
	for (; i < len && ((uintptr_t)(p + i) & 7); i++)
		if (p[i])
			return false;
	for (; i + 8 <= len; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		if (v)
			return false;
	}
	for (; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static bool parse_on_off(const char *key, const char *v, bool *out)
{
	if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0)
		*out = true;
	else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0)
		*out = false;
	else {
		img_error("parameter '%s' expects 'on' or 'off', not '%s'", key, v);
		return false;
	}
	return true;
}

bool img_parse_create_options(char *text, struct block_create_options *o, uint64_t *size)
{
	char *save = NULL;
	for (char *kv = strtok_r(text, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		if (!v) {
			img_error("invalid option '%s': expected key=value", kv);
			return false;
		}
		*v++ = '\0';
		uint64_t n;
		bool b;
		if (strcmp(kv, "cluster_size") == 0) {
			if (size_parse(v, 1, &n) < 0 || n > UINT32_MAX) {
				img_error("invalid cluster_size '%s'", v);
				return false;
			}
			o->cluster_size = (uint32_t)n;
		} else if (strcmp(kv, "size") == 0) {
			if (size_parse(v, 1, &n) < 0) {
				img_error("invalid image size '%s'", v);
				return false;
			}
			*size = n;
		} else if (strcmp(kv, "lazy_refcounts") == 0) {
			if (!parse_on_off(kv, v, &b))
				return false;
			o->lazy_refcounts = b;
		} else if (strcmp(kv, "preallocation") == 0) {
			o->preallocation = v;
		} else if (strcmp(kv, "backing_file") == 0) {
			o->backing_file = v;
		} else if (strcmp(kv, "backing_fmt") == 0) {
			o->backing_format = v;
		} else if (strcmp(kv, "compression_type") == 0) {
			o->compression_type = v;
		} else if (strcmp(kv, "compat") == 0) {
			if (strcmp(v, "1.1") != 0 && strcmp(v, "v3") != 0) {
				img_error("compat '%s' is not supported (only 1.1)", v);
				return false;
			}
		} else if (strcmp(kv, "refcount_bits") == 0) {
			if (strcmp(v, "16") != 0) {
				img_error("refcount_bits '%s' is not supported (only 16)", v);
				return false;
			}
		} else if (strcmp(kv, "extended_l2") == 0) {
			if (!parse_on_off(kv, v, &b))
				return false;
			if (b) {
				img_error("extended_l2=on is not supported");
				return false;
			}
		} else {
			img_error("invalid parameter '%s'", kv);
			return false;
		}
	}
	return true;
}

void img_size_str(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	/* The unit changes at 1000 of the smaller one, as qemu-img shows sizes. */
	unsigned i = 0;
	double d = (double)v;
	while (i < 6 && d * 1.024 >= 1024.0) {
		d /= 1024.0;
		i++;
	}
	snprintf(buf, len, "%0.3g %s", d, units[i]);
}

/* Prints s as a JSON string (quotes, backslashes and control characters escaped). */
bool img_one_file(int argc)
{
	if (optind == argc - 1)
		return true;
	img_error(optind >= argc ? "expecting one image file name"
				 : "expecting only one image file name");
	return false;
}

void img_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

int img_parse_fmt_output(int argc, char **argv, const char *cmd, const char **fmt, bool *json)
{
	const char *output = "human";
	int c;
	enum { OPT_OUTPUT = 256 };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "format", required_argument, NULL, 'f' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	optind = 1;
	while ((c = getopt_long(argc, argv, ":f:Uh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': *fmt = optarg; break;
		case OPT_OUTPUT: output = optarg; break;
		case 'U': break; /* qemu-img's force-share: kvmkit-img takes no locks */
		case 'h':
			printf("Usage: kvmkit-img %s [-f FMT] [--output=human|json] FILE\n", cmd);
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	*json = strcmp(output, "json") == 0;
	if (!*json && strcmp(output, "human") != 0) {
		img_error("--output must be 'human' or 'json', not '%s'", output);
		return 1;
	}
	if (!img_one_file(argc))
		return 1;
	return -1;
}
