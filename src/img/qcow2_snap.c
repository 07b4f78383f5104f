/* Internal snapshots of a qcow2 file: the snapshot table and the crash-safe refcount
 * transaction the snapshot operations are built on (see qcow2_snap.h for why). */
#include "img/qcow2_snap.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/img.h"

/* Refcount blocks held in memory by a transaction: bounded. */
#define MAX_LOADED_BLOCKS_BYTES (256ull << 20)
#define SNAP_ENTRY_HEADER 40u

static int fail(const struct img_q2 *q, const char *what)
{
	img_error("'%s': %s", q->path, what);
	return -1;
}

/* ---- The snapshot table ---- */

static char *strndup_checked(const uint8_t *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* Fills s from one entry at *at (advanced past it); false if it is not inside the file and the
 * table's bounds or is otherwise invalid. */
static bool read_entry(const struct img_q2 *q, uint64_t *at, struct img_snap *s)
{
	uint8_t h[SNAP_ENTRY_HEADER];
	uint64_t end_max = q->snap_offset + IMG_SNAP_MAX_TABLE;
	if (*at + sizeof(h) > end_max || *at + sizeof(h) > q->fsize ||
	    img_q2_read(q, h, sizeof(h), *at) < 0)
		return false;
	s->l1_offset = img_q2_be64(h);
	s->l1_size = img_q2_be32(h + 8);
	uint32_t id_len = img_q2_be16(h + 12), name_len = img_q2_be16(h + 14);
	s->date_sec = img_q2_be32(h + 16);
	s->date_nsec = img_q2_be32(h + 20);
	s->vm_clock_nsec = img_q2_be64(h + 24);
	s->vm_state_size = img_q2_be32(h + 32);
	s->extra_len = img_q2_be32(h + 36);
	if (s->extra_len > IMG_SNAP_MAX_EXTRA)
		return false;
	uint64_t var = (uint64_t)s->extra_len + id_len + name_len;
	uint64_t len = (sizeof(h) + var + 7) & ~7ull;
	if (*at + len > end_max || *at + sizeof(h) + var > q->fsize)
		return false;
	uint8_t *buf = malloc(var ? var : 1);
	if (!buf || img_q2_read(q, buf, var, *at + sizeof(h)) < 0) {
		free(buf);
		return false;
	}
	s->extra = malloc(s->extra_len ? s->extra_len : 1);
	s->id = strndup_checked(buf + s->extra_len, id_len);
	s->name = strndup_checked(buf + s->extra_len + id_len, name_len);
	if (s->extra)
		memcpy(s->extra, buf, s->extra_len);
	free(buf);
	if (!s->extra || !s->id || !s->name)
		return false;
	s->disk_size = q->size;
	s->icount = UINT64_MAX;
	if (s->extra_len >= 8)
		s->vm_state_size = img_q2_be64(s->extra);
	if (s->extra_len >= 16)
		s->disk_size = img_q2_be64(s->extra + 8);
	if (s->extra_len >= 24)
		s->icount = img_q2_be64(s->extra + 16);
	*at += len;
	/* The L1 table is read whole by apply and delete: bound it here for every user. */
	uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
	return l1_bytes <= QCOW2_MAX_TABLE_BYTES && !(s->l1_offset & (q->cluster_size - 1)) &&
	       s->l1_offset <= q->fsize && l1_bytes <= q->fsize - s->l1_offset &&
	       s->disk_size <= (1ull << 62);
}

int img_snap_read(const struct img_q2 *q, struct img_snap_table *t)
{
	memset(t, 0, sizeof(*t));
	if (!q->nb_snapshots)
		return 0;
	if (q->nb_snapshots > IMG_SNAP_MAX || (q->snap_offset & (q->cluster_size - 1)) ||
	    q->snap_offset >= q->fsize)
		return fail(q, "the snapshot table is outside the file, misaligned or too large");
	t->s = calloc(q->nb_snapshots, sizeof(*t->s));
	if (!t->s)
		return fail(q, "out of memory for the snapshot table");
	uint64_t at = q->snap_offset;
	for (uint32_t i = 0; i < q->nb_snapshots; i++) {
		t->n = i + 1; /* so img_snap_free releases this entry too */
		if (!read_entry(q, &at, &t->s[i])) {
			img_error("'%s': snapshot table entry %u is invalid or outside the file",
				  q->path, i);
			img_snap_free(t);
			return -1;
		}
	}
	t->bytes = at - q->snap_offset;
	return 0;
}

void img_snap_free(struct img_snap_table *t)
{
	for (uint32_t i = 0; i < t->n; i++) {
		free(t->s[i].id);
		free(t->s[i].name);
		free(t->s[i].extra);
	}
	free(t->s);
	memset(t, 0, sizeof(*t));
}

int img_snap_find(const struct img_snap_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->n; i++)
		if (strcmp(t->s[i].id, name) == 0)
			return (int)i;
	for (uint32_t i = 0; i < t->n; i++)
		if (strcmp(t->s[i].name, name) == 0)
			return (int)i;
	return -1;
}

static uint64_t entry_bytes(const struct img_snap *s)
{
	return (SNAP_ENTRY_HEADER + s->extra_len + strlen(s->id) + strlen(s->name) + 7) & ~7ull;
}

static void put_entry(uint8_t *p, const struct img_snap *s)
{
	size_t id_len = strlen(s->id), name_len = strlen(s->name);
	memset(p, 0, entry_bytes(s));
	img_q2_put_be64(p, s->l1_offset);
	img_q2_put_be32(p + 8, s->l1_size);
	p[12] = (uint8_t)(id_len >> 8);
	p[13] = (uint8_t)id_len;
	p[14] = (uint8_t)(name_len >> 8);
	p[15] = (uint8_t)name_len;
	img_q2_put_be32(p + 16, s->date_sec);
	img_q2_put_be32(p + 20, s->date_nsec);
	img_q2_put_be64(p + 24, s->vm_clock_nsec);
	img_q2_put_be32(p + 32, s->vm_state_size > UINT32_MAX ? 0 : (uint32_t)s->vm_state_size);
	img_q2_put_be32(p + 36, s->extra_len);
	memcpy(p + SNAP_ENTRY_HEADER, s->extra, s->extra_len);
	memcpy(p + SNAP_ENTRY_HEADER + s->extra_len, s->id, id_len);
	memcpy(p + SNAP_ENTRY_HEADER + s->extra_len + id_len, s->name, name_len);
}

static void date_str(uint32_t sec, char *buf, size_t len)
{
	time_t t = (time_t)sec;
	struct tm tm;
	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "?");
}

void img_snap_print(const struct img_snap_table *t)
{
	/* Column widths as qemu-img prints them (the date is local time). */
	printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
	       "VM CLOCK", "ICOUNT");
	for (uint32_t i = 0; i < t->n; i++) {
		const struct img_snap *s = &t->s[i];
		char size[32], date[64], clock[64], icount[32] = "";
		img_size_str(s->vm_state_size, size, sizeof(size));
		date_str(s->date_sec, date, sizeof(date));
		uint64_t secs = s->vm_clock_nsec / 1000000000u;
		snprintf(clock, sizeof(clock), "%02llu:%02llu:%02llu.%03llu",
			 (unsigned long long)(secs / 3600), (unsigned long long)(secs / 60 % 60),
			 (unsigned long long)(secs % 60),
			 (unsigned long long)(s->vm_clock_nsec / 1000000 % 1000));
		if (s->icount != UINT64_MAX)
			snprintf(icount, sizeof(icount), "%lld", (long long)s->icount);
		printf("%-9s %-16s %8s%20s%13s%11s\n", s->id, s->name, size, date, clock, icount);
	}
}

void img_snap_print_json(const struct img_snap_table *t, int indent)
{
	/* qemu-img's keys, in its order. */
	printf("%*s\"snapshots\": [\n", indent, "");
	for (uint32_t i = 0; i < t->n; i++) {
		const struct img_snap *s = &t->s[i];
		int in = indent + 8;
		printf("%*s{\n", indent + 4, "");
		if (s->icount != UINT64_MAX)
			printf("%*s\"icount\": %lld,\n", in, "", (long long)s->icount);
		printf("%*s\"vm-clock-nsec\": %llu,\n%*s\"name\": ", in, "",
		       (unsigned long long)(s->vm_clock_nsec % 1000000000u), in, "");
		img_json_str(s->name);
		printf(",\n%*s\"date-sec\": %u,\n%*s\"date-nsec\": %u,\n"
		       "%*s\"vm-clock-sec\": %llu,\n%*s\"id\": ", in, "", s->date_sec, in, "",
		       s->date_nsec, in, "", (unsigned long long)(s->vm_clock_nsec / 1000000000u),
		       in, "");
		img_json_str(s->id);
		printf(",\n%*s\"vm-state-size\": %llu\n%*s}%s\n", in, "",
		       (unsigned long long)s->vm_state_size, indent + 4, "",
		       i + 1 < t->n ? "," : "");
	}
	printf("%*s],\n", indent, "");
}

/* ---- The refcount transaction ---- */

struct img_q2_rb {
	uint64_t old;      /* the block's location in the image; 0 = none yet */
	uint64_t moved;    /* its new location once one is allocated; 0 = not yet */
	uint8_t *buf;      /* its content, once loaded */
	bool dirty;
};

/* Test hook for the crash tests: KVMKIT_IMG_CRASH_AT=N kills the process at point N of a
 * commit, as a power cut or kill -9 would. */
static void crash_point(int n)
{
	const char *at = getenv("KVMKIT_IMG_CRASH_AT");
	if (at && atoi(at) == n)
		raise(SIGKILL);
}

static bool cluster_in_file(const struct img_q2 *q, uint64_t off)
{
	return off && !(off & (q->cluster_size - 1)) && off <= q->fsize &&
	       q->cluster_size <= q->fsize - off;
}

int img_q2_tx_begin(struct img_q2 *q, struct img_q2_tx *t)
{
	memset(t, 0, sizeof(*t));
	t->q = q;
	uint64_t cs = q->cluster_size, n = (uint64_t)q->rt_clusters * cs / 8;
	if (!cluster_in_file(q, q->rt_offset) || n * 8 > q->fsize - q->rt_offset)
		return fail(q, "the refcount table is outside the file");
	uint8_t *rt = malloc(n * 8);
	t->rb = calloc(n ? n : 1, sizeof(*t->rb));
	t->l2 = malloc(cs);
	if (!rt || !t->rb || !t->l2) {
		free(rt);
		return fail(q, "out of memory");
	}
	t->rb_n = n;
	if (img_q2_read(q, rt, n * 8, q->rt_offset) < 0) {
		free(rt);
		return fail(q, "the refcount table cannot be read");
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = img_q2_be64(rt + i * 8) & QCOW2_REFTABLE_MASK;
		if (off && !cluster_in_file(q, off)) {
			free(rt);
			return fail(q, "a refcount block is outside the file; run 'kvmkit-img check'");
		}
		t->rb[i].old = off;
	}
	free(rt);
	t->next = (q->fsize + cs - 1) / cs;
	return 0;
}

void img_q2_tx_end(struct img_q2_tx *t)
{
	for (uint64_t i = 0; t->rb && i < t->rb_n; i++)
		free(t->rb[i].buf);
	free(t->rb);
	free(t->l2);
	free(t->freed);
	memset(t, 0, sizeof(*t));
}

void img_q2_tx_abort(struct img_q2_tx *t)
{
	if (t->q && !t->switching && ftruncate(t->q->fd, (off_t)t->q->fsize) < 0)
		img_error("'%s': the unused clusters past the old end of the file remain: %s",
			  t->q->path, strerror(errno));
}

/* The refcount block of table index idx, loaded; with create, made (zeroed) where there is
 * none, growing the table. *out = NULL (refcounts all 0) without create. */
static int rb_get(struct img_q2_tx *t, uint64_t idx, bool create, struct img_q2_rb **out)
{
	const struct img_q2 *q = t->q;
	*out = NULL;
	if (idx >= t->rb_n) {
		if (!create)
			return 0;
		if ((idx + 1) * 8 > QCOW2_MAX_TABLE_BYTES)
			return fail(q, "the refcount table would grow too large");
		struct img_q2_rb *rb = realloc(t->rb, (idx + 1) * sizeof(*rb));
		if (!rb)
			return fail(q, "out of memory");
		memset(rb + t->rb_n, 0, (idx + 1 - t->rb_n) * sizeof(*rb));
		t->rb = rb;
		t->rb_n = idx + 1;
	}
	struct img_q2_rb *b = &t->rb[idx];
	if (!b->buf && (b->old || create)) {
		if (t->loaded + q->cluster_size > MAX_LOADED_BLOCKS_BYTES)
			return fail(q, "too many refcount blocks to update at once");
		b->buf = calloc(1, q->cluster_size);
		if (!b->buf)
			return fail(q, "out of memory");
		t->loaded += q->cluster_size;
		if (b->old && img_q2_read(q, b->buf, q->cluster_size, b->old) < 0)
			return fail(q, "a refcount block cannot be read");
		b->dirty = !b->old; /* a new block must be written */
	}
	if (b->buf)
		*out = b;
	return 0;
}

static uint64_t rc_per_block(const struct img_q2 *q)
{
	return (q->cluster_size * 8) >> q->refcount_order;
}

int img_q2_tx_rc(struct img_q2_tx *t, uint64_t cluster, uint64_t *v)
{
	struct img_q2_rb *b;
	uint64_t per = rc_per_block(t->q);
	if (rb_get(t, cluster / per, false, &b) < 0)
		return -1;
	*v = b ? img_q2_rc_get(t->q, b->buf, cluster % per) : 0;
	return 0;
}

/* Remembers a freed cluster for the holes punched after the commit; contiguous clusters,
 * the common case, extend one range. */
static int note_freed(struct img_q2_tx *t, uint64_t c)
{
	struct img_q2_range *last = t->freed_n ? &t->freed[t->freed_n - 1] : NULL;
	if (last && last->first + last->n == c) {
		last->n++;
		return 0;
	}
	if (t->freed_n == t->freed_cap) {
		uint64_t cap = t->freed_cap ? t->freed_cap * 2 : 64;
		struct img_q2_range *r = realloc(t->freed, cap * sizeof(*r));
		if (!r)
			return fail(t->q, "out of memory");
		t->freed = r;
		t->freed_cap = cap;
	}
	t->freed[t->freed_n++] = (struct img_q2_range){ c, 1 };
	return 0;
}

/* Punches holes where clusters freed by the commit are (still free: a refcount may have
 * risen again after dropping to 0); best effort, the image is correct without it. */
static void punch_freed(struct img_q2_tx *t)
{
	const struct img_q2 *q = t->q;
	for (uint64_t i = 0; i < t->freed_n; i++) {
		uint64_t end = t->freed[i].first + t->freed[i].n;
		for (uint64_t c = t->freed[i].first, run = c; c <= end; c++) {
			uint64_t v = 1;
			if (c < end && img_q2_tx_rc(t, c, &v) < 0)
				return;
			if (v == 0)
				continue;
			/* [run, c) is still free. */
			if (c > run && fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						 (off_t)(run << q->cluster_bits),
						 (off_t)((c - run) << q->cluster_bits)) < 0)
				return; /* not supported here: nothing to gain from retrying */
			run = c + 1;
		}
	}
}

static int rc_add1(struct img_q2_tx *t, uint64_t c, int delta)
{
	const struct img_q2 *q = t->q;
	uint64_t per = rc_per_block(q);
	uint64_t max = q->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << q->refcount_order)) - 1;
	struct img_q2_rb *b;
	if (rb_get(t, c / per, true, &b) < 0)
		return -1;
	uint64_t v = img_q2_rc_get(q, b->buf, c % per);
	if (delta < 0 && v == 0)
		return fail(q, "a refcount would drop below zero: the image is corrupt; run "
			       "'kvmkit-img check'");
	if (delta > 0 && v == max)
		return fail(q, "a refcount would overflow the image's refcount width");
	img_q2_rc_set(q, b->buf, c % per, delta < 0 ? v - 1 : v + 1);
	b->dirty = true;
	return delta < 0 && v == 1 ? note_freed(t, c) : 0;
}

int img_q2_tx_rc_add(struct img_q2_tx *t, uint64_t off, uint64_t len, int delta)
{
	if (!len)
		return 0;
	uint32_t bits = t->q->cluster_bits;
	for (uint64_t c = off >> bits; c <= (off + len - 1) >> bits; c++)
		if (rc_add1(t, c, delta) < 0)
			return -1;
	return 0;
}

/* Allocates n contiguous clusters past the old end of the file (refcount 1): never a cluster
 * the old state may still use, so nothing is overwritten before the header switch. */
static int alloc(struct img_q2_tx *t, uint64_t n, uint64_t *first)
{
	for (uint64_t c = t->next; c < t->next + n; c++) {
		uint64_t v;
		if (img_q2_tx_rc(t, c, &v) < 0)
			return -1;
		if (v)
			return fail(t->q, "clusters past the end of the file are in use; run "
					  "'kvmkit-img check'");
		if (rc_add1(t, c, +1) < 0)
			return -1;
	}
	*first = t->next;
	t->next += n;
	return 0;
}

int img_q2_tx_write_new(struct img_q2_tx *t, const void *buf, uint64_t len, uint64_t *off)
{
	const struct img_q2 *q = t->q;
	uint64_t cs = q->cluster_size, n = (len + cs - 1) / cs, first;
	if (alloc(t, n, &first) < 0)
		return -1;
	*off = first * cs;
	uint64_t pad = n * cs - len;
	uint8_t *zero = pad ? calloc(1, pad) : NULL;
	if ((pad && !zero) || img_q2_write(q, buf, len, *off) < 0 ||
	    (pad && img_q2_write(q, zero, pad, *off + len) < 0)) {
		free(zero);
		return fail(q, "cannot write new metadata");
	}
	free(zero);
	return 0;
}

/* The host range an L2 entry maps (len 0: none); -1 if it points outside the file. */
static int l2_entry_range(const struct img_q2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
	*len = 0;
	if (e & QCOW2_COMPRESSED) {
		img_q2_compressed_range(q, e, off, len);
		if (*off >= q->fsize)
			return -1;
		/* The last compressed cluster may end past the file end, as check counts it. */
		if (*len > q->fsize - *off)
			*len = q->fsize - *off;
		return 0;
	}
	*off = e & QCOW2_OFFSET_MASK;
	if (!*off)
		return 0;
	*len = q->cluster_size;
	return cluster_in_file(q, *off) ? 0 : -1;
}

static int read_l2(struct img_q2_tx *t, uint64_t off)
{
	if (!cluster_in_file(t->q, off))
		return fail(t->q, "an L2 table is outside the file; run 'kvmkit-img check'");
	if (img_q2_read(t->q, t->l2, t->q->cluster_size, off) < 0)
		return fail(t->q, "an L2 table cannot be read");
	return 0;
}

int img_q2_tx_ref_tree(struct img_q2_tx *t, const uint64_t *l1, uint32_t n, int delta)
{
	const struct img_q2 *q = t->q;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK;
		if (!l2off)
			continue;
		if (read_l2(t, l2off) < 0 || img_q2_tx_rc_add(t, l2off, q->cluster_size, delta) < 0)
			return -1;
		for (uint64_t j = 0; j < img_q2_l2_entries(q); j++) {
			uint64_t off, len;
			if (l2_entry_range(q, img_q2_be64(t->l2 + j * 8), &off, &len) < 0)
				return fail(q, "an L2 entry points outside the file; run "
					       "'kvmkit-img check'");
			if (img_q2_tx_rc_add(t, off, len, delta) < 0)
				return -1;
		}
	}
	return 0;
}

/* Sets the COPIED flags of the L2 table in t->l2 from the refcounts; true if any changed. */
static int fix_l2_flags(struct img_q2_tx *t, bool *changed)
{
	const struct img_q2 *q = t->q;
	*changed = false;
	for (uint64_t j = 0; j < img_q2_l2_entries(q); j++) {
		uint64_t e = img_q2_be64(t->l2 + j * 8), off = e & QCOW2_OFFSET_MASK, rc;
		if ((e & QCOW2_COMPRESSED) || !off)
			continue;
		if (img_q2_tx_rc(t, off >> q->cluster_bits, &rc) < 0)
			return -1;
		uint64_t want = rc == 1 ? e | QCOW2_COPIED : e & ~QCOW2_COPIED;
		if (want != e) {
			img_q2_put_be64(t->l2 + j * 8, want);
			*changed = true;
		}
	}
	return 0;
}

int img_q2_tx_fix_copied(struct img_q2_tx *t, uint64_t *l1, uint32_t n, bool *changed)
{
	const struct img_q2 *q = t->q;
	*changed = false;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK, rc;
		bool l2_changed;
		if (!l2off)
			continue;
		if (read_l2(t, l2off) < 0 || fix_l2_flags(t, &l2_changed) < 0)
			return -1;
		if (l2_changed) {
			/* Copy-on-write: the active table moves, the old one keeps its other
			 * references (a snapshot's) or is freed. */
			uint64_t copy;
			if (img_q2_tx_write_new(t, t->l2, q->cluster_size, &copy) < 0 ||
			    img_q2_tx_rc_add(t, l2off, q->cluster_size, -1) < 0)
				return -1;
			l2off = copy;
		}
		if (img_q2_tx_rc(t, l2off >> q->cluster_bits, &rc) < 0)
			return -1;
		uint64_t want = l2off | (rc == 1 ? QCOW2_COPIED : 0);
		if (want != l1[i]) {
			l1[i] = want;
			*changed = true;
		}
	}
	return 0;
}

int img_q2_tx_write_l1(struct img_q2_tx *t, const uint64_t *l1, uint32_t n, uint64_t *off)
{
	*off = 0;
	if (!n)
		return 0;
	uint8_t *buf = malloc((uint64_t)n * 8);
	if (!buf)
		return fail(t->q, "out of memory");
	for (uint32_t i = 0; i < n; i++)
		img_q2_put_be64(buf + (uint64_t)i * 8, l1[i]);
	int r = img_q2_tx_write_new(t, buf, (uint64_t)n * 8, off);
	free(buf);
	return r;
}

int img_q2_tx_write_snaps(struct img_q2_tx *t, const struct img_snap_table *s, uint64_t *off)
{
	*off = 0;
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < s->n; i++)
		bytes += entry_bytes(&s->s[i]);
	if (!bytes)
		return 0;
	if (bytes > IMG_SNAP_MAX_TABLE)
		return fail(t->q, "the snapshot table would be too large");
	uint8_t *buf = malloc(bytes);
	if (!buf)
		return fail(t->q, "out of memory");
	for (uint64_t i = 0, at = 0; i < s->n; at += entry_bytes(&s->s[i]), i++)
		put_entry(buf + at, &s->s[i]);
	int r = img_q2_tx_write_new(t, buf, bytes, off);
	free(buf);
	return r;
}

/* Gives every changed refcount block a new location and allocates the new refcount table;
 * each allocation may change (or create) a block in turn, so this runs to a fixed point. */
static int place_refcounts(struct img_q2_tx *t, uint64_t *rt_at, uint64_t *rt_len)
{
	const struct img_q2 *q = t->q;
	uint64_t cs = q->cluster_size;
	bool old_freed = false;
	*rt_at = *rt_len = 0;
	for (;;) {
		bool moved = false;
		for (uint64_t i = 0; i < t->rb_n; i++) {
			if (!t->rb[i].dirty || t->rb[i].moved)
				continue;
			uint64_t c;
			if (alloc(t, 1, &c) < 0)
				return -1;
			t->rb[i].moved = c * cs; /* t->rb may have been reallocated by alloc */
			if (t->rb[i].old && img_q2_tx_rc_add(t, t->rb[i].old, cs, -1) < 0)
				return -1;
			moved = true;
		}
		if (moved)
			continue;
		uint64_t need = (t->rb_n * 8 + cs - 1) / cs;
		if (need < q->rt_clusters)
			need = q->rt_clusters;
		if (*rt_len >= need)
			return 0;
		/* A table allocated too small is dropped (never written) for a larger one. */
		if (*rt_len && img_q2_tx_rc_add(t, *rt_at, *rt_len * cs, -1) < 0)
			return -1;
		if (!old_freed && img_q2_tx_rc_add(t, q->rt_offset, q->rt_clusters * cs, -1) < 0)
			return -1;
		old_freed = true;
		uint64_t first;
		if (need > UINT32_MAX || alloc(t, need, &first) < 0)
			return -1;
		*rt_at = first * cs;
		*rt_len = need;
	}
}

static int write_refcounts(struct img_q2_tx *t, uint64_t rt_at, uint64_t rt_len)
{
	const struct img_q2 *q = t->q;
	for (uint64_t i = 0; i < t->rb_n; i++)
		if (t->rb[i].dirty &&
		    img_q2_write(q, t->rb[i].buf, q->cluster_size, t->rb[i].moved) < 0)
			return fail(q, "cannot write a refcount block");
	uint8_t *rt = calloc(rt_len, q->cluster_size);
	if (!rt)
		return fail(q, "out of memory");
	for (uint64_t i = 0; i < t->rb_n; i++)
		img_q2_put_be64(rt + i * 8, t->rb[i].moved ? t->rb[i].moved : t->rb[i].old);
	int r = img_q2_write(q, rt, rt_len * q->cluster_size, rt_at);
	free(rt);
	return r < 0 ? fail(q, "cannot write the refcount table") : 0;
}

int img_q2_tx_commit(struct img_q2_tx *t)
{
	struct img_q2 *q = t->q;
	uint64_t rt_at, rt_len;
	crash_point(1);
	if (place_refcounts(t, &rt_at, &rt_len) < 0 || write_refcounts(t, rt_at, rt_len) < 0)
		return -1;
	crash_point(2);
	if (fdatasync(q->fd) < 0)
		return fail(q, "cannot flush the new metadata");
	crash_point(3);
	/* Bytes 24..71: size, encryption (none), L1 size and offset, refcount table offset and
	 * clusters, snapshot count and offset. One write inside the first sector. */
	uint8_t h[48];
	img_q2_put_be64(h, q->size);
	img_q2_put_be32(h + 8, 0);
	img_q2_put_be32(h + 12, q->l1_size);
	img_q2_put_be64(h + 16, q->l1_offset);
	img_q2_put_be64(h + 24, rt_at);
	img_q2_put_be32(h + 32, (uint32_t)rt_len);
	img_q2_put_be32(h + 36, q->nb_snapshots);
	img_q2_put_be64(h + 40, q->snap_offset);
	t->switching = true;
	if (img_q2_write(q, h, sizeof(h), 24) < 0)
		return fail(q, "cannot update the header");
	crash_point(4);
	if (fdatasync(q->fd) < 0)
		return fail(q, "cannot flush the header");
	q->rt_offset = rt_at;
	q->rt_clusters = (uint32_t)rt_len;
	punch_freed(t);
	return 0;
}
