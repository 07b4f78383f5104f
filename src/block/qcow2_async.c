/* The qcow2 driver's request path: reads and in-place writes whose clusters the cached L2
 * tables map go from the event loop thread straight to the I/O engine, as raw's do; whatever
 * needs metadata work (a table not cached, allocation, copy-on-write, compressed clusters, the
 * backing file, zeroes, discards, flushes) runs on the image's worker thread, so that the event
 * loop, which also serves the network and the console, never waits for the disk.
 *
 * Why this is safe without more locking: clusters are only ever appended, never reused, so data
 * I/O in flight to a cluster that a concurrent request releases lands in space nothing points at
 * (as for any two overlapping requests, either order is a valid result); the event loop reads
 * the tables only with the metadata lock, taken with trylock so that it never waits for the
 * worker (a request that finds the lock busy goes to the worker's queue instead); requests
 * that allocate run one at a time on the worker, which serialises allocating writes to one
 * cluster; and a fast write only goes to a cluster whose data and refcount were already
 * written before its L2 entry, so the on-disk order qcow2.c keeps is unchanged. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "block/engine.h"
#include "block/qcow2_io.h"
#include "lib/log.h"

/* A fast request has at most this many host ranges and iovec pieces; larger ones go to the
 * worker (virtio-blk requests of up to a few clusters fit easily). */
#define QA_SEGS 8
#define QA_IOVS 64

/* One guest request whose data the engine moves. */
struct qa_fast {
	struct qcow2_async *a;
	struct block_request *req;
	unsigned pending; /* aios not yet complete */
	int result;
	struct block_aio aio[QA_SEGS];
	struct iovec iov[QA_IOVS];
	struct qa_fast *next_free;
};

/* A contiguous guest piece of a request: zeroes, or host bytes at host. */
struct qa_seg {
	uint64_t pos, n, host;
	bool zero;
};

struct qcow2_async {
	struct block_dev *bd;
	struct qcow2 *s;
	pthread_mutex_t lock;  /* struct qcow2: the worker, or the event loop for a moment */
	pthread_mutex_t qlock; /* the two lists and stop */
	pthread_cond_t work;
	struct block_request *todo, **todo_tail; /* for the worker, linked by next_done */
	struct block_request *done, **done_tail; /* finished by it, result in req->result */
	bool stop;
	pthread_t thread;
	struct qa_fast *free_list; /* event loop only */
};

int qcow2_fault(struct qcow2 *s, enum block_fault_point point, uint64_t off, uint64_t len)
{
	const struct block_fault *f = s->async ? &s->async->bd->fault : NULL;
	return f && f->hook ? f->hook(f->opaque, point, off, len) : 0;
}

/* The request's length in bytes (block.c checked it). */
static uint64_t qa_len(const struct block_request *req)
{
	if (req->op != BLOCK_OP_READ && req->op != BLOCK_OP_WRITE)
		return req->op == BLOCK_OP_FLUSH ? 0 : req->len;
	uint64_t len = 0;
	for (int i = 0; i < req->iovcnt; i++)
		len += req->iov[i].iov_len;
	return len;
}

/* ---- the worker ---- */

static int qa_run(struct qcow2_async *a, struct block_request *req)
{
	pthread_mutex_lock(&a->lock);
	int r = req->op == BLOCK_OP_FLUSH ? qcow2_flush_meta(a->s)
					  : qcow2_run(a->bd, req, qa_len(req));
	pthread_mutex_unlock(&a->lock);
	/* A flush with no metadata to write back: the sync alone, without the lock, so that the
	 * event loop's reads and writes go on meanwhile. */
	if (req->op == BLOCK_OP_FLUSH)
		r = r == 0 ? qcow2_sync(a->s) : (r < 0 ? r : 0);
	return r;
}

static void *qa_worker(void *arg)
{
	struct qcow2_async *a = arg;
	if (block_engine_thread_start)
		block_engine_thread_start(); /* confined as the engine's workers are */
	pthread_mutex_lock(&a->qlock);
	for (;;) {
		while (!a->todo && !a->stop)
			pthread_cond_wait(&a->work, &a->qlock);
		struct block_request *req = a->todo;
		if (!req)
			break; /* stopping, and nothing left */
		a->todo = req->next_done;
		if (!a->todo)
			a->todo_tail = &a->todo;
		pthread_mutex_unlock(&a->qlock);
		req->result = qa_run(a, req);
		pthread_mutex_lock(&a->qlock);
		req->next_done = NULL;
		*a->done_tail = req;
		a->done_tail = &req->next_done;
		block_engine_kick(a->bd->engine);
	}
	pthread_mutex_unlock(&a->qlock);
	return NULL;
}

static void qa_queue(struct qcow2_async *a, struct block_request *req)
{
	pthread_mutex_lock(&a->qlock);
	req->next_done = NULL;
	*a->todo_tail = req;
	a->todo_tail = &req->next_done;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->qlock);
}

/* On the event loop: hands what the worker finished to the block layer. */
static void qa_process(struct block_dev *bd)
{
	struct qcow2 *s = bd->driver_state;
	struct qcow2_async *a = s->async;
	pthread_mutex_lock(&a->qlock);
	struct block_request *req = a->done;
	a->done = NULL;
	a->done_tail = &a->done;
	pthread_mutex_unlock(&a->qlock);
	while (req) {
		struct block_request *next = req->next_done;
		block_request_complete(bd, req, req->result);
		req = next;
	}
}

/* ---- the fast path ---- */

/* The pieces of [off, off + len) from the cached tables, merged where contiguous: their
 * count, or -EAGAIN when metadata work is needed or they are too many. */
static int qa_plan(struct qcow2_async *a, const struct block_request *req, uint64_t len,
		   struct qa_seg *seg)
{
	struct qcow2 *s = a->s;
	bool write = req->op == BLOCK_OP_WRITE;
	int nseg = 0;
	for (uint64_t pos = 0; pos < len;) {
		uint64_t g = req->offset + pos, in = g & (s->cluster_size - 1);
		uint64_t n = s->cluster_size - in < len - pos ? s->cluster_size - in : len - pos;
		uint64_t host = 0;
		int r = qcow2_map_cached(s, a->bd, g, n, write, &host);
		if (r < 0)
			return r;
		struct qa_seg *last = nseg ? &seg[nseg - 1] : NULL;
		if (last && last->zero == (r == 0) && (r == 0 || last->host + last->n == host)) {
			last->n += n;
		} else {
			if (nseg == QA_SEGS)
				return -EAGAIN;
			seg[nseg++] = (struct qa_seg){ pos, n, host, r == 0 };
		}
		pos += n;
	}
	return nseg;
}

/* out[] = bytes [pos, pos + n) of iov: the count, or -1 if more than cap pieces. */
static int qa_slice(const struct iovec *iov, int iovcnt, uint64_t pos, uint64_t n,
		    struct iovec *out, int cap)
{
	int k = 0;
	for (int i = 0; i < iovcnt && n; i++) {
		if (pos >= iov[i].iov_len) {
			pos -= iov[i].iov_len;
			continue;
		}
		if (k == cap)
			return -1;
		uint64_t m = iov[i].iov_len - pos < n ? iov[i].iov_len - pos : n;
		out[k++] = (struct iovec){ (char *)iov[i].iov_base + pos, m };
		n -= m;
		pos = 0;
	}
	return k;
}

static void qa_put(struct qcow2_async *a, struct qa_fast *f)
{
	f->next_free = a->free_list;
	a->free_list = f;
}

static void qa_aio_done(struct block_aio *aio, int result)
{
	struct qa_fast *f = aio->opaque;
	if (result < 0 && f->result == 0)
		f->result = result;
	if (--f->pending)
		return;
	struct qcow2_async *a = f->a;
	block_request_complete(a->bd, f->req, f->result);
	qa_put(a, f);
}

/* Starts req on the engine if the cached tables map all of it: 1 if started, 0 if it needs
 * the worker, -ENOMEM. */
static int qa_fast(struct qcow2_async *a, struct block_request *req, uint64_t len)
{
	struct qa_seg seg[QA_SEGS];
	if (pthread_mutex_trylock(&a->lock) != 0)
		return 0;
	int nseg = qa_plan(a, req, len, seg);
	pthread_mutex_unlock(&a->lock);
	if (nseg < 0)
		return 0;
	struct qa_fast *f = a->free_list;
	if (f)
		a->free_list = f->next_free;
	else if (!(f = malloc(sizeof(*f))))
		return -ENOMEM;
	/* Every piece sliced first: a request that does not fit leaves no trace. */
	int used = 0, cnt[QA_SEGS];
	for (int i = 0; i < nseg; i++) {
		cnt[i] = qa_slice(req->iov, req->iovcnt, seg[i].pos, seg[i].n, f->iov + used,
				  QA_IOVS - used);
		if (cnt[i] < 0) {
			qa_put(a, f);
			return 0;
		}
		used += cnt[i];
	}
	f->a = a;
	f->req = req;
	f->result = 0;
	f->pending = 1; /* held until every aio is submitted */
	for (int i = 0, at = 0; i < nseg; at += cnt[i++]) {
		struct iovec *iov = f->iov + at;
		if (seg[i].zero) {
			for (int k = 0; k < cnt[i]; k++)
				memset(iov[k].iov_base, 0, iov[k].iov_len);
			continue;
		}
		struct block_aio *aio = &f->aio[i];
		*aio = (struct block_aio){
			.op = req->op == BLOCK_OP_WRITE ? BLOCK_AIO_PWRITEV : BLOCK_AIO_PREADV,
			.fd = a->s->fd, .offset = seg[i].host, .iov = iov, .iovcnt = cnt[i],
			.complete = qa_aio_done, .opaque = f,
		};
		f->pending++;
		block_engine_submit(a->bd->engine, aio);
	}
	if (--f->pending == 0) { /* zeroes only */
		block_request_complete(a->bd, req, 0);
		block_engine_kick(a->bd->engine);
		qa_put(a, f);
	}
	return 1;
}

/* ---- the driver ---- */

static int qa_submit(struct block_dev *bd, struct block_request *req, uint64_t len)
{
	struct qcow2 *s = bd->driver_state;
	struct qcow2_async *a = s->async;
	if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) {
		int r = qa_fast(a, req, len);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	qa_queue(a, req);
	return 0;
}

/* Nothing is in flight (block_extent's contract): the lock is free at once. */
static int qa_extent(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *n)
{
	struct qcow2 *s = bd->driver_state;
	pthread_mutex_lock(&s->async->lock);
	int r = qcow2_extent(bd, off, len, n);
	pthread_mutex_unlock(&s->async->lock);
	return r;
}

static void qa_free(struct qcow2_async *a)
{
	while (a->free_list) {
		struct qa_fast *f = a->free_list;
		a->free_list = f->next_free;
		free(f);
	}
	pthread_cond_destroy(&a->work);
	pthread_mutex_destroy(&a->qlock);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

static int qa_open(struct block_dev *bd)
{
	int r = qcow2_open(bd);
	if (r < 0)
		return r;
	struct qcow2 *s = bd->driver_state;
	struct qcow2_async *a = calloc(1, sizeof(*a));
	if (!a) {
		log_error("disk image '%s': out of memory", bd->path);
		r = -ENOMEM;
		goto fail;
	}
	a->bd = bd;
	a->s = s;
	a->todo_tail = &a->todo;
	a->done_tail = &a->done;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->qlock, NULL);
	pthread_cond_init(&a->work, NULL);
	/* The worker blocks every signal, so signals meant for the VMM never land on it. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&a->thread, NULL, qa_worker, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		log_error("disk image '%s': cannot start its worker thread: %s", bd->path,
			  strerror(-r));
		qa_free(a);
		goto fail;
	}
	s->async = a;
	return 0;
fail:
	qcow2_free(s);
	bd->driver_state = NULL;
	return r;
}

static void qa_close(struct block_dev *bd)
{
	struct qcow2 *s = bd->driver_state;
	struct qcow2_async *a = s->async;
	pthread_mutex_lock(&a->qlock);
	a->stop = true;
	pthread_cond_signal(&a->work);
	pthread_mutex_unlock(&a->qlock);
	pthread_join(a->thread, NULL);
	qcow2_close_meta(s);
	s->async = NULL;
	qa_free(a);
	qcow2_free(s);
	bd->driver_state = NULL;
}

const struct block_driver block_driver_qcow2 = {
	.format = "qcow2",
	.open = qa_open,
	.close = qa_close,
	.submit = qa_submit,
	.extent = qa_extent,
	.process = qa_process,
};
