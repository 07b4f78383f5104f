/* The thread-pool I/O engine: a few workers make the blocking system calls (preadv, pwritev,
 * fdatasync, fallocate) and queue the results for the event loop, signalling the eventfd. Used
 * where io_uring is unavailable, and in tests (KVMKIT_BLOCK_ENGINE=threads). */
#include "block/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Enough to keep a disk's queue busy; a request costs a worker only while its syscall blocks. */
#define THREADS_WORKERS 4

struct threads_engine {
	struct block_engine base;
	pthread_mutex_t lock;
	pthread_cond_t work_ready;
	struct block_aio_list todo;   /* waiting for a worker */
	struct block_aio_list done;   /* results waiting for the event loop */
	bool stopping;
	int nworkers;
	pthread_t workers[THREADS_WORKERS];
};

/* Moves the whole of a read or write, continuing short transfers. */
static int threads_transfer(struct block_aio *aio)
{
	while (aio->moved < aio->total) {
		int iovcnt;
		const struct iovec *iov = block_aio_iov(aio, &iovcnt);
		off_t offset = (off_t)block_aio_offset(aio);
		ssize_t n = aio->op == BLOCK_AIO_PREADV ? preadv(aio->fd, iov, iovcnt, offset)
							: pwritev(aio->fd, iov, iovcnt, offset);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* end of file (or a device that takes nothing): never loop */
		int r = block_aio_advance(aio, (uint64_t)n);
		if (r < 0)
			return r;
	}
	return 0;
}

static int threads_run(struct block_aio *aio)
{
	int r;
	switch (aio->op) {
	case BLOCK_AIO_PREADV:
	case BLOCK_AIO_PWRITEV:
		return threads_transfer(aio);
	case BLOCK_AIO_FDATASYNC:
		do
			r = fdatasync(aio->fd);
		while (r < 0 && errno == EINTR);
		return r < 0 ? -errno : 0;
	case BLOCK_AIO_FALLOCATE:
		do
			r = fallocate(aio->fd, aio->mode, (off_t)aio->offset, (off_t)aio->len);
		while (r < 0 && errno == EINTR);
		return r < 0 ? -errno : 0;
	}
	return -EINVAL;
}

void (*block_engine_thread_start)(void);

static void *threads_worker(void *arg)
{
	struct threads_engine *t = arg;
	if (block_engine_thread_start)
		block_engine_thread_start();
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!t->todo.head && !t->stopping)
			pthread_cond_wait(&t->work_ready, &t->lock);
		struct block_aio *aio = block_aio_list_pop(&t->todo);
		if (!aio)
			break; /* stopping, and nothing left */
		pthread_mutex_unlock(&t->lock);
		aio->result = threads_run(aio);
		pthread_mutex_lock(&t->lock);
		block_aio_list_push(&t->done, aio);
		block_engine_kick(&t->base);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void threads_submit(struct block_engine *e, struct block_aio *aio)
{
	struct threads_engine *t = (struct threads_engine *)e;
	pthread_mutex_lock(&t->lock);
	block_aio_list_push(&t->todo, aio);
	pthread_cond_signal(&t->work_ready);
	pthread_mutex_unlock(&t->lock);
}

static void threads_reap(struct block_engine *e)
{
	struct threads_engine *t = (struct threads_engine *)e;
	pthread_mutex_lock(&t->lock);
	struct block_aio_list done = t->done;
	block_aio_list_init(&t->done);
	pthread_mutex_unlock(&t->lock);
	if (!done.head)
		return;
	/* A non-empty list's tail points into its last aio, so the copy is a valid list. */
	struct block_aio *aio;
	while ((aio = block_aio_list_pop(&done)))
		block_engine_finish(e, aio, aio->result);
}

static void threads_stop(struct threads_engine *t)
{
	pthread_mutex_lock(&t->lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->work_ready);
	pthread_mutex_unlock(&t->lock);
	for (int i = 0; i < t->nworkers; i++)
		pthread_join(t->workers[i], NULL);
	pthread_cond_destroy(&t->work_ready);
	pthread_mutex_destroy(&t->lock);
}

static void threads_destroy(struct block_engine *e)
{
	struct threads_engine *t = (struct threads_engine *)e;
	threads_stop(t);
	free(t);
}

static const struct block_engine_ops threads_ops = {
	.name = "threads",
	.submit = threads_submit,
	.reap = threads_reap,
	.destroy = threads_destroy,
};

int block_engine_threads_create(struct block_engine **out)
{
	struct threads_engine *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int r = block_engine_init_common(&t->base, &threads_ops);
	if (r < 0) {
		free(t);
		return r;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->work_ready, NULL);
	block_aio_list_init(&t->todo);
	block_aio_list_init(&t->done);

	/* Workers block every signal, so signals meant for the VMM (vCPU kicks, SIGTERM) never
	 * land on them; they inherit the mask in force at pthread_create. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < THREADS_WORKERS; i++) {
		r = -pthread_create(&t->workers[i], NULL, threads_worker, t);
		if (r < 0)
			break;
		t->nworkers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (t->nworkers == 0) {
		threads_stop(t);
		close(t->base.event_fd);
		free(t);
		return r;
	}
	*out = &t->base;
	return 0;
}
