/* `kvmkit-img info [-f FMT] [--output=human|json] FILE`: format, sizes, cluster size, backing
 * file, internal snapshots and the qcow2 header's features, in qemu-img's human and JSON
 * layouts. */
#include "img/img.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img/qcow2_meta.h"
#include "img/qcow2_snap.h"

static void json_key_str(const char *key, const char *val, bool comma)
{
	printf("    \"%s\": ", key);
	img_json_str(val);
	printf("%s\n", comma ? "," : "");
}

/* The header's snapshot count (bytes 60..63); 0 if it cannot be read. */
static uint32_t header_nb_snapshots(const char *path)
{
	uint8_t be[4] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, be, sizeof(be), 60) != (ssize_t)sizeof(be))
			memset(be, 0, sizeof(be));
		close(fd);
	}
	return img_q2_be32(be);
}

/* The internal snapshot table (empty for raw images); -1 after an error sentence. Images
 * without snapshots skip the metadata view, which refuses features info still describes
 * (extended L2 entries, external data files). */
static int read_snapshots(const char *path, bool qcow2, struct img_snap_table *st)
{
	struct img_q2 q;
	memset(st, 0, sizeof(*st));
	if (!qcow2 || !header_nb_snapshots(path))
		return 0;
	if (img_q2_open(path, false, &q) < 0)
		return -1;
	int r = img_snap_read(&q, st);
	img_q2_close(&q);
	return r;
}

int img_info(int argc, char **argv)
{
	const char *fmt = NULL;
	bool json;
	int r = img_parse_fmt_output(argc, argv, "info", &fmt, &json);
	if (r >= 0)
		return r;
	const char *path = argv[optind];
	if (!img_known_format(path, fmt))
		return 1;
	if (!fmt && !(fmt = img_probe(path)))
		return 1;
	bool qcow2 = strcmp(fmt, "qcow2") == 0;
	struct img_qcow2_info q;
	uint64_t vsize;
	if (qcow2) {
		if (img_qcow2_read_info(path, &q) < 0)
			return 1;
		vsize = q.size;
	} else {
		struct block_dev *bd;
		if (img_open(path, "raw", true, &bd) < 0)
			return 1;
		vsize = block_size(bd);
		block_close(bd);
	}
	struct stat st;
	if (stat(path, &st) < 0) {
		img_error("could not stat '%s'", path);
		return 1;
	}
	uint64_t actual = (uint64_t)st.st_blocks * 512;
	char full[PATH_MAX + 1024] = "";
	if (qcow2 && q.backing[0]) {
		const char *slash = strrchr(path, '/');
		if (q.backing[0] == '/' || !slash)
			snprintf(full, sizeof(full), "%s", q.backing);
		else
			snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - path), path, q.backing);
	}
	const char *compression = qcow2 && q.compression == 1 ? "zstd" : "zlib";
	struct img_snap_table snaps;
	if (read_snapshots(path, qcow2, &snaps) < 0)
		return 1;
	if (json) {
		printf("{\n");
		if (qcow2 && q.backing[0] && q.backing_fmt[0])
			json_key_str("backing-filename-format", q.backing_fmt, true);
		if (snaps.n)
			img_snap_print_json(&snaps, 4);
		printf("    \"virtual-size\": %llu,\n", (unsigned long long)vsize);
		json_key_str("filename", path, true);
		if (qcow2)
			printf("    \"cluster-size\": %u,\n", q.cluster_size);
		json_key_str("format", fmt, true);
		printf("    \"actual-size\": %llu,\n", (unsigned long long)actual);
		if (qcow2) {
			printf("    \"format-specific\": {\n        \"type\": \"qcow2\",\n"
			       "        \"data\": {\n            \"compat\": \"%s\",\n"
			       "            \"compression-type\": \"%s\",\n",
			       q.version == 3 ? "1.1" : "0.10", compression);
			if (q.version == 3)
				printf("            \"lazy-refcounts\": %s,\n",
				       q.lazy_refcounts ? "true" : "false");
			printf("            \"refcount-bits\": %u", q.refcount_bits);
			if (q.version == 3)
				printf(",\n            \"corrupt\": %s,\n"
				       "            \"extended-l2\": %s", q.corrupt ? "true" : "false",
				       q.extended_l2 ? "true" : "false");
			printf("\n        }\n    },\n");
			if (q.backing[0]) {
				json_key_str("full-backing-filename", full, true);
				json_key_str("backing-filename", q.backing, true);
			}
		}
		printf("    \"dirty-flag\": %s\n}\n", qcow2 && q.dirty ? "true" : "false");
		img_snap_free(&snaps);
		return 0;
	}
	char vs[32], as[32];
	img_size_str(vsize, vs, sizeof(vs));
	img_size_str(actual, as, sizeof(as));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%llu bytes)\ndisk size: %s\n", path,
	       fmt, vs, (unsigned long long)vsize, as);
	if (!qcow2)
		return 0;
	printf("cluster_size: %u\n", q.cluster_size);
	if (q.backing[0]) {
		printf("backing file: %s", q.backing);
		if (strcmp(full, q.backing) != 0)
			printf(" (actual path: %s)", full);
		printf("\n");
		if (q.backing_fmt[0])
			printf("backing file format: %s\n", q.backing_fmt);
	}
	if (snaps.n)
		img_snap_print(&snaps);
	img_snap_free(&snaps);
	printf("Format specific information:\n    compat: %s\n    compression type: %s\n",
	       q.version == 3 ? "1.1" : "0.10", compression);
	if (q.version == 3)
		printf("    lazy refcounts: %s\n", q.lazy_refcounts ? "true" : "false");
	printf("    refcount bits: %u\n", q.refcount_bits);
	if (q.version == 3)
		printf("    corrupt: %s\n    extended l2: %s\n", q.corrupt ? "true" : "false",
		       q.extended_l2 ? "true" : "false");
	return 0;
}
