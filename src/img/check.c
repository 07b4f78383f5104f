/* `kvmkit-img check [-f qcow2] [--output=human|json] [-r leaks|all] FILE`: walks a qcow2 image's
 * metadata (header, L1 and L2 tables, refcount table and blocks, snapshot table and the
 * snapshots' L1 tables) with every offset checked, counts the references each cluster should
 * have, and compares them with the stored refcounts, reporting corruptions (stored refcount
 * too low, misplaced metadata) and leaks (stored refcount too high) in qemu-img's words and
 * exit codes: 0 clean, 1 the check could not run, 2 corruptions, 3 leaks only.
 *
 * -r leaks lowers the stored refcounts of leaked clusters to the counted references; -r all also
 * raises refcounts that are too low (adding refcount blocks where none cover a referenced
 * cluster), fixes the COPIED flags of L1 and L2 entries and then clears the dirty and corrupt
 * header bits; check_repair.c does the writing, refcounts first, then the flags computed from
 * them, then the header. A repair starts with a silent trial pass: damage that would need
 * guessing (a table outside the file or misaligned) is reported and nothing is changed, where
 * qemu-img drops the unreachable L2 table and frees its data clusters. */
#include <endian.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/check_int.h"
#include "img/img.h"

/* The counted references are kept per cluster of the file: bound that array. */
#define MAX_CLUSTERS (64ull << 20)

/* One finding or repair on stderr, the way qemu-img prints them (silent in a trial pass). */
void ck_msg(const struct ck *k, const char *fmt, ...)
{
	if (k->quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* Misplaced metadata: what it pointed to is unknown, so no repair is attempted. */
static void corrupt(struct ck *k, const char *fmt, unsigned long long v)
{
	if (!k->quiet) {
		fprintf(stderr, fmt, v);
		fputc('\n', stderr);
	}
	k->corruptions++;
	k->unrepairable++;
}

bool ck_in_file(const struct ck *k, uint64_t off, uint64_t len)
{
	return off <= k->q->fsize && len <= k->q->fsize - off;
}

/* Counts one reference to every cluster that [off, off + len) touches. */
static void ref_range(struct ck *k, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	uint64_t first = off >> k->q->cluster_bits, last = (off + len - 1) >> k->q->cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		if (c >= k->nclusters) {
			corrupt(k, "ERROR cluster %llu is referenced but lies beyond the end of the "
				   "file", (unsigned long long)c);
			continue;
		}
		if (k->ref[c] != UINT32_MAX)
			k->ref[c]++;
	}
}

static void walk_l2(struct ck *k, uint64_t l2off, bool active)
{
	const struct img_q2 *q = k->q;
	if (img_q2_read(q, k->l2, q->cluster_size, l2off) < 0) {
		ck_msg(k, "ERROR: I/O error reading the L2 table at offset %llu\n",
		       (unsigned long long)l2off);
		k->check_errors++;
		return;
	}
	k->next_contig = 0; /* fragmentation is counted within each L2 table */
	for (uint64_t i = 0; i < img_q2_l2_entries(q); i++) {
		uint64_t e = img_q2_be64(k->l2 + i * 8);
		if (e & QCOW2_COMPRESSED) {
			uint64_t start, len;
			img_q2_compressed_range(q, e, &start, &len);
			/* The sector count may run past the end of the file (the last
			 * compressed cluster is not padded): only the start must be in it. */
			if (start >= k->q->fsize) {
				corrupt(k, "ERROR compressed cluster at offset %llx lies beyond the "
					   "end of the file; L2 entry corrupted",
					(unsigned long long)start);
				continue;
			}
			ref_range(k, start, len < k->q->fsize - start ? len : k->q->fsize - start);
			if (active) {
				k->allocated++;
				k->compressed++;
				k->fragmented++; /* compressed clusters are fragmented by nature */
			}
			continue;
		}
		uint64_t off = e & QCOW2_OFFSET_MASK;
		if (!off)
			continue;
		if (off & (q->cluster_size - 1)) {
			corrupt(k, "ERROR offset=%llx: Cluster is not properly aligned; L2 entry "
				   "corrupted.", (unsigned long long)off);
			continue;
		}
		if (!ck_in_file(k, off, q->cluster_size)) {
			corrupt(k, "ERROR offset=%llx: Cluster lies beyond the end of the file; L2 "
				   "entry corrupted.", (unsigned long long)off);
			continue;
		}
		ref_range(k, off, q->cluster_size);
		if (active) {
			k->allocated++;
			if (k->next_contig && off != k->next_contig)
				k->fragmented++;
			k->next_contig = off + q->cluster_size;
		}
	}
}

static void walk_l1(struct ck *k, uint64_t l1off, uint32_t l1size, bool active)
{
	const struct img_q2 *q = k->q;
	uint64_t bytes = (uint64_t)l1size * 8;
	if (!l1size)
		return;
	if (l1off & (q->cluster_size - 1)) {
		corrupt(k, "ERROR: L1 table offset %llx is not cluster aligned",
			(unsigned long long)l1off);
		return;
	}
	if (!ck_in_file(k, l1off, bytes)) {
		corrupt(k, "ERROR: L1 table at offset %llx is outside the image file",
			(unsigned long long)l1off);
		return;
	}
	ref_range(k, l1off, bytes);
	uint64_t *l1 = img_q2_read_l1(q, l1off, l1size);
	if (!l1) {
		k->check_errors++;
		return;
	}
	for (uint32_t i = 0; i < l1size; i++) {
		uint64_t off = l1[i] & QCOW2_OFFSET_MASK;
		if (!off)
			continue;
		if (off & (q->cluster_size - 1)) {
			corrupt(k, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry "
				   "corrupted", (unsigned long long)off);
			continue;
		}
		if (!ck_in_file(k, off, q->cluster_size)) {
			corrupt(k, "ERROR l2_offset=%llx: L2 table is outside the image file; L1 "
				   "entry corrupted", (unsigned long long)off);
			continue;
		}
		ref_range(k, off, q->cluster_size);
		walk_l2(k, off, active);
	}
	free(l1);
}

static void walk_snapshots(struct ck *k)
{
	const struct img_q2 *q = k->q;
	if (!q->nb_snapshots)
		return;
	uint64_t at = q->snap_offset, end = at;
	if (at & (q->cluster_size - 1)) {
		corrupt(k, "ERROR: snapshot table offset %llx is not cluster aligned",
			(unsigned long long)at);
		return;
	}
	for (uint32_t i = 0; i < q->nb_snapshots; i++) {
		uint8_t h[40];
		if (!ck_in_file(k, at, sizeof(h)) || img_q2_read(q, h, sizeof(h), at) < 0) {
			corrupt(k, "ERROR: snapshot table entry at offset %llx is outside the "
				   "image file", (unsigned long long)at);
			return;
		}
		uint64_t l1off = img_q2_be64(h);
		uint32_t l1size = img_q2_be32(h + 8);
		uint64_t len = 40 + (uint64_t)img_q2_be32(h + 36) + img_q2_be16(h + 12) +
			       img_q2_be16(h + 14);
		end = at + len;
		at += (len + 7) & ~7ull;
		if ((uint64_t)l1size * 8 > QCOW2_MAX_TABLE_BYTES) {
			corrupt(k, "ERROR: snapshot L1 table of %llu entries is too large",
				(unsigned long long)l1size);
			continue;
		}
		walk_l1(k, l1off, l1size, false);
	}
	/* The padding after the last entry may lie past the end of the file (qemu-img does
	 * not write it). */
	if (!ck_in_file(k, q->snap_offset, end - q->snap_offset)) {
		corrupt(k, "ERROR: snapshot table at offset %llx is outside the image file",
			(unsigned long long)q->snap_offset);
		return;
	}
	ref_range(k, q->snap_offset, (at < q->fsize ? at : q->fsize) - q->snap_offset);
}

/* A refcount table entry that may be followed: aligned and inside the file. */
uint64_t ck_rb_offset(const struct ck *k, uint64_t idx)
{
	if (idx >= k->rt_entries)
		return 0;
	uint64_t off = k->rt[idx] & QCOW2_REFTABLE_MASK;
	if (!off || (off & (k->q->cluster_size - 1)) || !ck_in_file(k, off, k->q->cluster_size))
		return 0;
	return off;
}

int ck_rb_flush(struct ck *k)
{
	if (!k->rb_dirty)
		return 0;
	k->rb_dirty = false;
	return img_q2_write(k->q, k->rb, k->q->cluster_size, ck_rb_offset(k, k->rb_index));
}

/* The stored refcount of cluster c (0 where no refcount block covers it); loads its block. */
int ck_stored_rc(struct ck *k, uint64_t c, uint64_t *v, uint64_t *slot)
{
	uint64_t per = (k->q->cluster_size * 8) >> k->q->refcount_order;
	uint64_t idx = c / per;
	*slot = c % per;
	*v = 0;
	uint64_t off = ck_rb_offset(k, idx);
	if (!off)
		return 0;
	if (k->rb_index != idx) {
		if (ck_rb_flush(k) < 0)
			return -1;
		k->rb_index = UINT64_MAX;
		if (img_q2_read(k->q, k->rb, k->q->cluster_size, off) < 0)
			return -1;
		k->rb_index = idx;
	}
	*v = img_q2_rc_get(k->q, k->rb, *slot);
	return 1;
}

static void walk_reftable(struct ck *k)
{
	const struct img_q2 *q = k->q;
	uint64_t bytes = (uint64_t)q->rt_clusters * q->cluster_size;
	if (q->rt_offset & (q->cluster_size - 1) || !ck_in_file(k, q->rt_offset, bytes)) {
		corrupt(k, "ERROR: the refcount table at offset %llx is misaligned or outside "
			   "the image file", (unsigned long long)q->rt_offset);
		k->rt_entries = 0;
		return;
	}
	ref_range(k, q->rt_offset, bytes);
	for (uint64_t i = 0; i < k->rt_entries; i++) {
		uint64_t off = k->rt[i] & QCOW2_REFTABLE_MASK;
		if (!off)
			continue;
		if (off & (q->cluster_size - 1))
			corrupt(k, "ERROR refcount block %llu is not cluster aligned; refcount "
				   "table entry corrupted", (unsigned long long)i);
		else if (!ck_in_file(k, off, q->cluster_size))
			corrupt(k, "ERROR refcount block %llu is outside image",
				(unsigned long long)i);
		else
			ref_range(k, off, q->cluster_size);
	}
}

/* The largest refcount the image's refcount width can hold. */
uint64_t ck_rc_max(const struct ck *k)
{
	unsigned bits = 1u << k->q->refcount_order;
	return bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
}

/* Compares stored and counted refcounts and reports every difference, as qemu-img does before
 * it repairs anything. A count too low where no refcount block covers the cluster, or too high
 * for the refcount width, cannot be repaired in place. */
static void compare(struct ck *k)
{
	for (uint64_t c = 0; c < k->nclusters; c++) {
		uint64_t stored, slot;
		int r = ck_stored_rc(k, c, &stored, &slot);
		if (r < 0) {
			ck_msg(k, "ERROR: cannot read the refcount of cluster %llu\n",
			       (unsigned long long)c);
			k->check_errors++;
			continue;
		}
		uint64_t counted = k->ref[c];
		if (stored || counted)
			k->highest = c + 1;
		if (stored == counted)
			continue;
		ck_msg(k, "%s cluster %llu refcount=%llu reference=%llu\n",
		       stored < counted ? "ERROR" : "Leaked", (unsigned long long)c,
		       (unsigned long long)stored, (unsigned long long)counted);
		if (stored > counted) {
			k->leaks++;
			continue;
		}
		k->corruptions++;
		if ((r == 0 && !ck_block_addable(k, c)) || counted > ck_rc_max(k))
			k->unrepairable++;
	}
}

/* One full check pass (repairing what fix covers); returns -1 if it could not run (after an
 * error sentence). */
static int run_check(struct img_q2 *q, enum fix fix, bool quiet, struct ck *k)
{
	memset(k, 0, sizeof(*k));
	k->q = q;
	k->fix = fix;
	k->quiet = quiet;
	k->rb_index = UINT64_MAX;
	k->nclusters = (q->fsize + q->cluster_size - 1) >> q->cluster_bits;
	if (k->nclusters > MAX_CLUSTERS) {
		img_error("'%s' is too large to check (%llu clusters)", q->path,
			  (unsigned long long)k->nclusters);
		return -1;
	}
	k->rt_entries = (uint64_t)q->rt_clusters * q->cluster_size / 8;
	k->ref = calloc(k->nclusters ? k->nclusters : 1, sizeof(*k->ref));
	k->l2 = malloc(q->cluster_size);
	k->rb = malloc(q->cluster_size);
	k->rt = calloc(k->rt_entries ? k->rt_entries : 1, 8);
	if (!k->ref || !k->l2 || !k->rb || !k->rt) {
		img_error("out of memory");
		return -1;
	}
	if (k->rt_entries && ck_in_file(k, q->rt_offset, k->rt_entries * 8)) {
		if (img_q2_read(q, k->rt, k->rt_entries * 8, q->rt_offset) < 0) {
			img_error("'%s': the refcount table cannot be read", q->path);
			return -1;
		}
		for (uint64_t i = 0; i < k->rt_entries; i++)
			k->rt[i] = be64toh(k->rt[i]);
	}
	ref_range(k, 0, q->cluster_size); /* the header cluster */
	walk_l1(k, q->l1_offset, q->l1_size, true);
	walk_snapshots(k);
	walk_reftable(k);
	compare(k);
	ck_add_missing_blocks(k);
	ck_fix_refcounts(k);
	ck_check_copied(k);
	if (k->corruptions_fixed && fdatasync(q->fd) < 0) {
		img_error("'%s': cannot flush the repaired metadata", q->path);
		return -1;
	}
	return 0;
}

static void ck_free(struct ck *k)
{
	free(k->ref);
	free(k->l2);
	free(k->rb);
	free(k->rt);
}

/* What a repair pass fixed, for the summary and the JSON keys. */
struct fixed {
	uint64_t leaks, corruptions;
};

static void report(const struct ck *k, const struct img_q2 *q, const char *path, bool json,
		   const struct fixed *fixed)
{
	/* qemu-img counts whole 512-byte sectors of the virtual size */
	unsigned long long total = ((q->size & ~511ull) + q->cluster_size - 1) >> q->cluster_bits;
	unsigned long long end = k->highest << q->cluster_bits;
	if (json) {
		/* qemu-img's key order */
		printf("{\n    \"image-end-offset\": %llu,\n    \"total-clusters\": %llu,\n",
		       end, total);
		if (k->corruptions)
			printf("    \"corruptions\": %llu,\n", (unsigned long long)k->corruptions);
		if (fixed->corruptions)
			printf("    \"corruptions-fixed\": %llu,\n",
			       (unsigned long long)fixed->corruptions);
		printf("    \"check-errors\": %llu,\n", (unsigned long long)k->check_errors);
		if (k->leaks)
			printf("    \"leaks\": %llu,\n", (unsigned long long)k->leaks);
		if (fixed->leaks)
			printf("    \"leaks-fixed\": %llu,\n", (unsigned long long)fixed->leaks);
		if (k->allocated)
			printf("    \"allocated-clusters\": %llu,\n",
			       (unsigned long long)k->allocated);
		if (k->fragmented)
			printf("    \"fragmented-clusters\": %llu,\n",
			       (unsigned long long)k->fragmented);
		if (k->compressed)
			printf("    \"compressed-clusters\": %llu,\n",
			       (unsigned long long)k->compressed);
		printf("    \"filename\": ");
		img_json_str(path);
		printf(",\n    \"format\": \"qcow2\"\n}\n");
		return;
	}
	if (!k->corruptions && !k->leaks && !k->check_errors) {
		printf("No errors were found on the image.\n");
	} else {
		if (k->corruptions)
			printf("\n%llu errors were found on the image.\nData may be corrupted, or "
			       "further writes to the image may corrupt it.\n",
			       (unsigned long long)k->corruptions);
		if (k->leaks)
			printf("\n%llu leaked clusters were found on the image.\nThis means waste of "
			       "disk space, but no harm to data.\n", (unsigned long long)k->leaks);
		if (k->check_errors)
			printf("\n%llu internal errors have occurred during the check.\n",
			       (unsigned long long)k->check_errors);
	}
	if (total && k->allocated)
		printf("%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed "
		       "clusters\n", (unsigned long long)k->allocated, total,
		       100.0 * (double)k->allocated / (double)total,
		       100.0 * (double)k->fragmented / (double)k->allocated,
		       100.0 * (double)k->compressed / (double)k->allocated);
	if (end)
		printf("Image end offset: %llu\n", end);
}

int img_check(int argc, char **argv)
{
	const char *fmt = NULL, *output = "human", *repair = NULL;
	int c;
	enum { OPT_OUTPUT = 256 };
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "format", required_argument, NULL, 'f' },
		{ "repair", required_argument, NULL, 'r' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	optind = 1;
	while ((c = getopt_long(argc, argv, ":f:r:Uqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'r': repair = optarg; break;
		case OPT_OUTPUT: output = optarg; break;
		case 'U': case 'q': break;
		case 'h':
			printf("Usage: kvmkit-img check [-f qcow2] [--output=human|json] "
			       "[-r leaks|all] FILE\n");
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
	}
	bool json = strcmp(output, "json") == 0;
	if (!json && strcmp(output, "human") != 0) {
		img_error("--output must be 'human' or 'json', not '%s'", output);
		return 1;
	}
	if (repair && strcmp(repair, "leaks") != 0 && strcmp(repair, "all") != 0) {
		img_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s", repair);
		return 1;
	}
	if (!img_one_file(argc))
		return 1;
	const char *path = argv[optind];
	if (!img_known_format(path, fmt))
		return 1;
	if (!fmt && !(fmt = img_probe(path)))
		return 1;
	if (strcmp(fmt, "qcow2") != 0) {
		fprintf(stderr, "kvmkit-img: This image format does not support checks\n");
		return 63;
	}
	struct img_q2 q;
	if (img_q2_open(path, repair != NULL, &q) < 0)
		return 1;
	if (q.has_bitmaps) {
		img_error("'%s' has persistent bitmaps, which check does not support", path);
		img_q2_close(&q);
		return 1;
	}
	struct ck k;
	struct fixed fixed = { 0, 0 };
	int rc = 1;
	enum fix fix = !repair ? FIX_NONE : strcmp(repair, "all") == 0 ? FIX_ALL : FIX_LEAKS;
	/* A repair starts with a silent trial pass: nothing is written unless every finding can
	 * be repaired in place. */
	if (run_check(&q, FIX_NONE, fix != FIX_NONE, &k) < 0)
		goto out;
	bool flagged = q.incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	bool repairable = !k.unrepairable && !k.check_errors;
	bool work = fix != FIX_NONE && repairable &&
		    (k.leaks || (fix == FIX_ALL && k.corruptions) || flagged);
	if (fix != FIX_NONE && !work && (k.corruptions || k.leaks || k.check_errors)) {
		/* Nothing to repair, but the trial pass kept its findings to itself. */
		ck_free(&k);
		if (run_check(&q, FIX_NONE, false, &k) < 0)
			goto out;
	}
	if (work) {
		ck_free(&k);
		if (run_check(&q, fix, false, &k) < 0)
			goto out;
		fixed = (struct fixed){ k.leaks_fixed, k.corruptions_fixed };
		if (fixed.leaks || fixed.corruptions) {
			if (!json)
				printf("The following inconsistencies were found and repaired:\n\n"
				       "    %llu leaked clusters\n    %llu corruptions\n\n"
				       "Double checking the fixed image now...\n",
				       (unsigned long long)fixed.leaks,
				       (unsigned long long)fixed.corruptions);
			ck_free(&k);
			if (run_check(&q, FIX_NONE, false, &k) < 0)
				goto out;
		}
		if (!k.corruptions && !k.check_errors && ck_clear_header_bits(&q) < 0)
			goto out;
	}
	report(&k, &q, path, json, &fixed);
	if (fix != FIX_NONE && !repairable)
		img_error("'%s' has damage that check cannot repair; nothing was changed", path);
	if (k.check_errors) {
		img_error("Check failed");
		rc = 1;
	} else {
		rc = k.corruptions ? 2 : k.leaks ? 3 : 0;
	}
out:
	ck_free(&k);
	img_q2_close(&q);
	return rc;
}
