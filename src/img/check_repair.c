/* What `kvmkit-img check -r leaks|all` writes (see check.c for the checks): refcounts set to
 * the counted references, refcount blocks added where referenced clusters have none, COPIED
 * flags set to follow the refcounts, and the dirty and corrupt header bits cleared. Each write
 * moves one value toward the correct one, and anything new (a refcount block) is written and
 * flushed before the table points at it, so a crash at any point leaves nothing worse than
 * before: at most leaks or the same errors, which a new check repairs. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/check_int.h"
#include "img/img.h"

/* Whether the refcount block for cluster c is simply absent (its table entry is zero) and the
 * table has room for it: then -r all can add one. */
bool ck_block_addable(const struct ck *k, uint64_t c)
{
	uint64_t idx = c / ((k->q->cluster_size * 8) >> k->q->refcount_order);
	return idx < k->rt_entries && !(k->rt[idx] & QCOW2_REFTABLE_MASK);
}

/* The refcount of cluster e, appended to the file for a new refcount block that does not cover
 * itself, is raised in the block that does (and flushed) before anything points at e: a crash
 * then leaves a leak. */
static int count_new_block(struct ck *k, uint64_t e)
{
	uint64_t v, slot;
	if (ck_stored_rc(k, e, &v, &slot) != 1 || v >= ck_rc_max(k))
		return -1;
	img_q2_rc_set(k->q, k->rb, slot, v + 1);
	k->rb_dirty = true;
	return ck_rb_flush(k) < 0 || fdatasync(k->q->fd) < 0 ? -1 : 0;
}

/* Adds refcount block idx at the end of the file, holding the counted references of its
 * clusters: the block is written and flushed before the refcount table entry points at it. */
static int add_block(struct ck *k, uint64_t idx, uint8_t *blk)
{
	struct img_q2 *q = k->q;
	uint64_t per = (q->cluster_size * 8) >> q->refcount_order;
	uint64_t e = (q->fsize + q->cluster_size - 1) >> q->cluster_bits;
	memset(blk, 0, q->cluster_size);
	if (e / per == idx)
		img_q2_rc_set(q, blk, e % per, 1); /* the block counts itself */
	else if (count_new_block(k, e) < 0)
		return -1;
	for (uint64_t j = 0; j < per && idx * per + j < k->nclusters; j++) {
		uint64_t counted = k->ref[idx * per + j];
		if (!counted)
			continue;
		ck_msg(k, "Repairing cluster %llu refcount=0 reference=%llu\n",
		       (unsigned long long)(idx * per + j), (unsigned long long)counted);
		img_q2_rc_set(q, blk, j, counted);
		k->corruptions_fixed++;
	}
	uint8_t be[8];
	img_q2_put_be64(be, e << q->cluster_bits);
	if (img_q2_write(q, blk, q->cluster_size, e << q->cluster_bits) < 0 ||
	    fdatasync(q->fd) < 0 || img_q2_write(q, be, 8, q->rt_offset + idx * 8) < 0 ||
	    fdatasync(q->fd) < 0)
		return -1;
	k->rt[idx] = e << q->cluster_bits;
	q->fsize = (e + 1) << q->cluster_bits;
	return 0;
}

/* With FIX_ALL, adds the refcount blocks that referenced clusters lack (a crash with lazy
 * refcounts can leave them unwritten). */
void ck_add_missing_blocks(struct ck *k)
{
	uint64_t per = (k->q->cluster_size * 8) >> k->q->refcount_order;
	uint8_t *blk = k->fix == FIX_ALL ? malloc(k->q->cluster_size) : NULL;
	if (!blk)
		return;
	for (uint64_t c = 0; c < k->nclusters; c++) {
		if (!k->ref[c] || !ck_block_addable(k, c))
			continue;
		if (add_block(k, c / per, blk) < 0) {
			ck_msg(k, "ERROR: cannot add the refcount block for cluster %llu\n",
			       (unsigned long long)c);
			k->check_errors++;
			break;
		}
	}
	free(blk);
}

/* Sets each stored refcount that k->fix covers to the counted references: leaks are lowered
 * (the count is never below the true references), and with FIX_ALL too-low ones raised. */
void ck_fix_refcounts(struct ck *k)
{
	for (uint64_t c = 0; c < k->nclusters && k->fix != FIX_NONE; c++) {
		uint64_t stored, slot, counted = k->ref[c];
		if (ck_stored_rc(k, c, &stored, &slot) <= 0 || stored == counted)
			continue;
		bool low = stored < counted;
		if (low && (k->fix != FIX_ALL || counted > ck_rc_max(k)))
			continue;
		ck_msg(k, "Repairing cluster %llu refcount=%llu reference=%llu\n",
		       (unsigned long long)c, (unsigned long long)stored,
		       (unsigned long long)counted);
		img_q2_rc_set(k->q, k->rb, slot, counted);
		k->rb_dirty = true;
		if (low)
			k->corruptions_fixed++;
		else
			k->leaks_fixed++;
	}
	if (ck_rb_flush(k) < 0 ||
	    ((k->leaks_fixed || k->corruptions_fixed) && fdatasync(k->q->fd) < 0)) {
		ck_msg(k, "ERROR: cannot write a refcount block\n");
		k->check_errors++;
	}
}

/* A wrong COPIED flag: reported, or with FIX_ALL flipped (the caller writes the table). */
static bool copied_wrong(struct ck *k, const char *what, uint64_t *entry, uint64_t rc,
			 uint32_t l1_index)
{
	if ((rc == 1) == !!(*entry & QCOW2_COPIED))
		return false;
	bool fix = k->fix == FIX_ALL;
	if (l1_index != UINT32_MAX)
		ck_msg(k, "%s OFLAG_COPIED %s: l1_index=%u l1_entry=%llx refcount=%llu\n",
		       fix ? "Repairing" : "ERROR", what, l1_index, (unsigned long long)*entry,
		       (unsigned long long)rc);
	else
		ck_msg(k, "%s OFLAG_COPIED %s: l2_entry=%llx refcount=%llu\n",
		       fix ? "Repairing" : "ERROR", what, (unsigned long long)*entry,
		       (unsigned long long)rc);
	if (!fix) {
		k->corruptions++;
		return false;
	}
	*entry ^= QCOW2_COPIED;
	k->corruptions_fixed++;
	return true;
}

/* Checks (and with FIX_ALL repairs) the COPIED flags of one active L2 table. */
static void copied_l2(struct ck *k, uint64_t l2off)
{
	const struct img_q2 *q = k->q;
	bool changed = false;
	for (uint64_t j = 0; j < img_q2_l2_entries(q); j++) {
		uint64_t e = img_q2_be64(k->l2 + j * 8), d = e & QCOW2_OFFSET_MASK, rc, slot;
		if ((e & QCOW2_COMPRESSED) || !d || (d & (q->cluster_size - 1)) ||
		    !ck_in_file(k, d, q->cluster_size))
			continue;
		if (ck_stored_rc(k, d >> q->cluster_bits, &rc, &slot) < 0) {
			k->check_errors++;
			continue;
		}
		if (copied_wrong(k, "data cluster", &e, rc, UINT32_MAX)) {
			img_q2_put_be64(k->l2 + j * 8, e);
			changed = true;
		}
	}
	if (changed && img_q2_write(q, k->l2, q->cluster_size, l2off) < 0) {
		ck_msg(k, "ERROR: cannot write the L2 table at offset %llu\n",
		       (unsigned long long)l2off);
		k->check_errors++;
	}
}

/* The COPIED flag of active L1 and L2 entries must be set exactly when the stored refcount of
 * what they point to is 1. Runs after the refcounts are repaired, so flags follow them. */
void ck_check_copied(struct ck *k)
{
	const struct img_q2 *q = k->q;
	if (!q->l1_size || (q->l1_offset & (q->cluster_size - 1)) ||
	    !ck_in_file(k, q->l1_offset, (uint64_t)q->l1_size * 8))
		return;
	uint64_t *l1 = img_q2_read_l1(q, q->l1_offset, q->l1_size);
	if (!l1) {
		k->check_errors++;
		return;
	}
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t off = l1[i] & QCOW2_OFFSET_MASK, rc, slot;
		if (!off || (off & (q->cluster_size - 1)))
			continue;
		if (ck_stored_rc(k, off >> q->cluster_bits, &rc, &slot) < 0) {
			k->check_errors++;
			continue;
		}
		/* An L2 table outside the file still has its flag checked, as qemu-img does (the
		 * trial pass has refused to repair such an image). */
		if (!ck_in_file(k, off, q->cluster_size)) {
			copied_wrong(k, "L2 cluster", &l1[i], rc, i);
			continue;
		}
		if (img_q2_read(q, k->l2, q->cluster_size, off) < 0) {
			k->check_errors++;
			continue;
		}
		if (copied_wrong(k, "L2 cluster", &l1[i], rc, i)) {
			uint8_t be[8];
			img_q2_put_be64(be, l1[i]);
			if (img_q2_write(q, be, 8, q->l1_offset + (uint64_t)i * 8) < 0) {
				ck_msg(k, "ERROR: cannot write L1 entry %u\n", i);
				k->check_errors++;
			}
		}
		copied_l2(k, off);
	}
	free(l1);
}

/* After a successful repair the image is consistent again: clear the dirty bit (refcounts
 * are now right, so lazy refcounts have nothing left to recover) and the corrupt bit. */
int ck_clear_header_bits(const struct img_q2 *q)
{
	uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
	if (q->version < 3 || !(q->incompat & bits))
		return 0;
	uint8_t be[8];
	img_q2_put_be64(be, q->incompat & ~bits);
	if (img_q2_write(q, be, 8, 72) < 0 || fdatasync(q->fd) < 0) {
		img_error("'%s': cannot clear the dirty and corrupt bits of the header", q->path);
		return -1;
	}
	return 0;
}
