/* `kvmkit-img snapshot [-l | -c NAME | -a NAME | -d NAME] FILE`: lists, creates, applies and
 * deletes internal snapshots of a qcow2 image, in qemu-img's syntax and on-disk format (a
 * snapshot is a copy of the active L1 table plus one more reference to every cluster it
 * reaches). Each change is one refcount transaction (qcow2_snap.h): everything is written to
 * new clusters and one header write switches to it, so a crash leaves the old or the new
 * image, never a mix. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2.h"
#include "img/img.h"
#include "img/qcow2_meta.h"
#include "img/qcow2_snap.h"

enum action { LIST, CREATE, APPLY, DELETE };

static const char *const verbs[] = { "list", "create", "apply", "delete" };

/* An image opened for one change: header, snapshot table, transaction. */
struct snap_op {
	struct img_q2 q;
	struct img_snap_table st;
	struct img_q2_tx tx;
	uint64_t *l1;              /* the active L1 table */
};

static void op_close(struct snap_op *o)
{
	free(o->l1);
	img_q2_tx_end(&o->tx);
	img_snap_free(&o->st);
	img_q2_close(&o->q);
}

static int op_open(const char *path, struct snap_op *o)
{
	memset(o, 0, sizeof(*o));
	o->q.fd = -1;
	if (img_q2_open(path, true, &o->q) < 0)
		return -1;
	if (o->q.incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)) {
		img_error("'%s' is marked dirty or corrupt: run 'kvmkit-img check' first", path);
		return -1;
	}
	if (o->q.has_bitmaps) {
		img_error("'%s' has persistent bitmaps, which snapshot does not support", path);
		return -1;
	}
	if (o->q.l1_size && (o->q.l1_offset & (o->q.cluster_size - 1) ||
			     o->q.l1_offset > o->q.fsize ||
			     (uint64_t)o->q.l1_size * 8 > o->q.fsize - o->q.l1_offset)) {
		img_error("'%s': the L1 table is misaligned or outside the file", path);
		return -1;
	}
	if (img_snap_read(&o->q, &o->st) < 0 || img_q2_tx_begin(&o->q, &o->tx) < 0)
		return -1;
	o->l1 = img_q2_read_l1(&o->q, o->q.l1_offset, o->q.l1_size);
	return o->l1 ? 0 : -1;
}

/* The active L1 table is replaced by l1 (n entries): written to new clusters, the old
 * table's clusters freed. */
static int replace_active_l1(struct snap_op *o, const uint64_t *l1, uint32_t n)
{
	uint64_t off;
	if (img_q2_tx_write_l1(&o->tx, l1, n, &off) < 0 ||
	    img_q2_tx_rc_add(&o->tx, o->q.l1_offset, (uint64_t)o->q.l1_size * 8, -1) < 0)
		return -1;
	o->q.l1_offset = off;
	o->q.l1_size = n;
	return 0;
}

/* Writes the (changed) snapshot table to new clusters and frees the old one. */
static int replace_table(struct snap_op *o)
{
	uint64_t off;
	if (img_q2_tx_write_snaps(&o->tx, &o->st, &off) < 0 ||
	    (o->q.nb_snapshots &&
	     img_q2_tx_rc_add(&o->tx, o->q.snap_offset, o->st.bytes, -1) < 0))
		return -1;
	o->q.snap_offset = off;
	o->q.nb_snapshots = o->st.n;
	return 0;
}

/* Makes the active tables' COPIED flags match the new refcounts, moving the L1 table if an
 * entry changed. */
static int fix_active_flags(struct snap_op *o)
{
	bool changed;
	if (img_q2_tx_fix_copied(&o->tx, o->l1, o->q.l1_size, &changed) < 0)
		return -1;
	return changed ? replace_active_l1(o, o->l1, o->q.l1_size) : 0;
}

/* A copy of an L1 table without COPIED flags: they only mean something in the active one. */
static uint64_t *unflagged_copy(const uint64_t *l1, uint32_t n, uint32_t size)
{
	uint64_t *c = calloc(size ? size : 1, 8);
	if (!c) {
		img_error("out of memory");
		return NULL;
	}
	for (uint32_t i = 0; i < n && i < size; i++)
		c[i] = l1[i] & ~QCOW2_COPIED;
	return c;
}

/* The smallest numeric ID above every numeric ID in use, as qemu numbers snapshots. */
static void next_id(const struct img_snap_table *st, char *buf, size_t len)
{
	unsigned long long max = 0;
	for (uint32_t i = 0; i < st->n; i++) {
		char *end;
		unsigned long long v = strtoull(st->s[i].id, &end, 10);
		if (*end == '\0' && v > max)
			max = v;
	}
	snprintf(buf, len, "%llu", max + 1);
}

/* The new entry: now, no VM state, clock 0, icount 0, disk size; 24 bytes of extra data. */
static int new_entry(struct snap_op *o, const char *name, uint64_t l1_offset)
{
	struct img_snap *s = realloc(o->st.s, (o->st.n + 1) * sizeof(*s));
	if (!s) {
		img_error("out of memory");
		return -1;
	}
	o->st.s = s;
	s = &o->st.s[o->st.n];
	memset(s, 0, sizeof(*s));
	char id[32];
	next_id(&o->st, id, sizeof(id));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	s->l1_offset = l1_offset;
	s->l1_size = o->q.l1_size;
	s->date_sec = (uint32_t)now.tv_sec;
	s->date_nsec = (uint32_t)now.tv_nsec;
	s->disk_size = o->q.size;
	s->extra_len = 24;
	s->id = strdup(id);
	s->name = strdup(name);
	s->extra = calloc(1, 24);
	o->st.n++; /* counted now so that img_snap_free releases it */
	if (!s->id || !s->name || !s->extra) {
		img_error("out of memory");
		return -1;
	}
	img_q2_put_be64(s->extra + 8, s->disk_size);
	return 0;
}

static int do_create(struct snap_op *o, const char *name)
{
	if (!name[0] || strlen(name) > IMG_SNAP_MAX_NAME) {
		img_error("a snapshot tag must be 1 to %u bytes long", IMG_SNAP_MAX_NAME);
		return -1;
	}
	for (uint32_t i = 0; i < o->st.n; i++)
		if (strcmp(o->st.s[i].name, name) == 0) {
			img_error("Could not create snapshot '%s': a snapshot with this tag exists "
				  "(ID %s)", name, o->st.s[i].id);
			return -1;
		}
	if (o->st.n >= IMG_SNAP_MAX) {
		img_error("Could not create snapshot '%s': the image has the most snapshots "
			  "qcow2 allows (%u)", name, IMG_SNAP_MAX);
		return -1;
	}
	uint64_t *copy = unflagged_copy(o->l1, o->q.l1_size, o->q.l1_size);
	uint64_t off;
	int r = -1;
	if (copy && img_q2_tx_ref_tree(&o->tx, o->l1, o->q.l1_size, +1) == 0 &&
	    img_q2_tx_write_l1(&o->tx, copy, o->q.l1_size, &off) == 0 && fix_active_flags(o) == 0 &&
	    new_entry(o, name, off) == 0 && replace_table(o) == 0)
		r = img_q2_tx_commit(&o->tx);
	free(copy);
	return r;
}

static int do_apply(struct snap_op *o, const struct img_snap *s)
{
	uint64_t need = img_q2_l1_needed(&o->q, s->disk_size);
	if (need < s->l1_size)
		need = s->l1_size;
	if (need * 8 > QCOW2_MAX_TABLE_BYTES) {
		img_error("'%s': snapshot '%s' needs an L1 table that is too large", o->q.path,
			  s->name);
		return -1;
	}
	uint32_t n = (uint32_t)need;
	uint64_t *sl1 = img_q2_read_l1(&o->q, s->l1_offset, s->l1_size);
	uint64_t *l1 = sl1 ? unflagged_copy(sl1, s->l1_size, n) : NULL;
	int r = -1;
	/* References to the snapshot's clusters are added before the old active's are
	 * dropped, so a cluster both use never reaches 0. */
	if (l1 && img_q2_tx_ref_tree(&o->tx, l1, n, +1) == 0 &&
	    img_q2_tx_ref_tree(&o->tx, o->l1, o->q.l1_size, -1) == 0) {
		free(o->l1);
		o->l1 = l1;
		l1 = NULL;
		bool changed;
		o->q.size = s->disk_size;
		if (img_q2_tx_fix_copied(&o->tx, o->l1, n, &changed) == 0 &&
		    replace_active_l1(o, o->l1, n) == 0)
			r = img_q2_tx_commit(&o->tx);
	}
	free(sl1);
	free(l1);
	return r;
}

static int do_delete(struct snap_op *o, uint32_t idx)
{
	struct img_snap *s = &o->st.s[idx];
	uint64_t *sl1 = img_q2_read_l1(&o->q, s->l1_offset, s->l1_size);
	int r = -1;
	if (sl1 && img_q2_tx_ref_tree(&o->tx, sl1, s->l1_size, -1) == 0 &&
	    img_q2_tx_rc_add(&o->tx, s->l1_offset, (uint64_t)s->l1_size * 8, -1) == 0 &&
	    fix_active_flags(o) == 0) {
		free(s->id);
		free(s->name);
		free(s->extra);
		memmove(s, s + 1, (o->st.n - idx - 1) * sizeof(*s));
		o->st.n--;
		if (replace_table(o) == 0)
			r = img_q2_tx_commit(&o->tx);
	}
	free(sl1);
	return r;
}

static int list(const char *path)
{
	struct img_q2 q;
	struct img_snap_table st;
	if (img_q2_open(path, false, &q) < 0)
		return 1;
	int rc = img_snap_read(&q, &st) < 0 ? 1 : 0;
	if (rc == 0 && st.n)
		img_snap_print(&st);
	img_snap_free(&st);
	img_q2_close(&q);
	return rc;
}

static int change(const char *path, enum action act, const char *name)
{
	struct snap_op o;
	int r = op_open(path, &o);
	bool opened = r == 0;
	if (r == 0 && act == CREATE) {
		r = do_create(&o, name);
	} else if (r == 0) {
		int idx = img_snap_find(&o.st, name);
		if (idx < 0) {
			img_error("Could not %s snapshot '%s': snapshot not found", verbs[act], name);
			r = -1;
		} else {
			r = act == APPLY ? do_apply(&o, &o.st.s[idx]) : do_delete(&o, (uint32_t)idx);
		}
	}
	if (r < 0 && opened)
		img_q2_tx_abort(&o.tx);
	op_close(&o);
	return r < 0 ? 1 : 0;
}

static int set_action(enum action *act, bool *seen, enum action a)
{
	if (*seen) {
		img_error("Cannot mix '-l', '-a', '-c', '-d'");
		return -1;
	}
	*seen = true;
	*act = a;
	return 0;
}

int img_snapshot(int argc, char **argv)
{
	const char *fmt = NULL, *name = NULL;
	enum action act = LIST;
	bool seen = false;
	int c;
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 } };
	optind = 1;
	while ((c = getopt_long(argc, argv, ":f:lc:a:d:qUh", longopts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'l': r = set_action(&act, &seen, LIST); break;
		case 'c': r = set_action(&act, &seen, CREATE); name = optarg; break;
		case 'a': r = set_action(&act, &seen, APPLY); name = optarg; break;
		case 'd': r = set_action(&act, &seen, DELETE); name = optarg; break;
		case 'q': case 'U': break;
		case 'h':
			printf("Usage: kvmkit-img snapshot [-f FMT] [-l | -c NAME | -a NAME | "
			       "-d NAME] FILE\n");
			return 0;
		case ':': img_error("option '%s' needs an argument", argv[optind - 1]); return 1;
		default: img_error("unknown option '%s'", argv[optind - 1]); return 1;
		}
		if (r < 0)
			return 1;
	}
	if (!img_one_file(argc))
		return 1;
	const char *path = argv[optind];
	if (!img_known_format(path, fmt) || (!fmt && !(fmt = img_probe(path))))
		return 1;
	if (strcmp(fmt, "qcow2") != 0) {
		/* As qemu-img: a raw image has no snapshots to list, and cannot have any. */
		if (act == LIST)
			return 0;
		img_error("Could not %s snapshot '%s': Operation not supported (snapshots are "
			  "only supported by qcow2)", verbs[act], name);
		return 1;
	}
	return act == LIST ? list(path) : change(path, act, name);
}
