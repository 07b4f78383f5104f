/* What the I/O engines share: choosing one, the completion eventfd, in-flight counting, results
 * known without a system call, and continuing short transfers. */
#include "block/engine.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"

void block_aio_list_init(struct block_aio_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

void block_aio_list_push(struct block_aio_list *l, struct block_aio *aio)
{
	aio->next = NULL;
	*l->tail = aio;
	l->tail = &aio->next;
}

struct block_aio *block_aio_list_pop(struct block_aio_list *l)
{
	struct block_aio *aio = l->head;
	if (aio) {
		l->head = aio->next;
		if (!l->head)
			l->tail = &l->head;
	}
	return aio;
}

int block_engine_init_common(struct block_engine *e, const struct block_engine_ops *ops)
{
	e->ops = ops;
	e->inflight = 0;
	block_aio_list_init(&e->ready);
	e->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return e->event_fd < 0 ? -errno : 0;
}

int block_engine_create(struct block_engine **out)
{
	const char *want = getenv("KVMKIT_BLOCK_ENGINE");
	if (want && strcmp(want, "threads") == 0)
		return block_engine_threads_create(out);
	if (want && *want && strcmp(want, "io_uring") != 0)
		log_warn("KVMKIT_BLOCK_ENGINE=%s is neither io_uring nor threads; using the default",
			 want);
	int r = block_engine_uring_create(out);
	if (r == 0)
		return 0;
	log_debug("block: io_uring is not available (%s); disk I/O goes through threads",
		  strerror(-r));
	return block_engine_threads_create(out);
}

void block_engine_drain(struct block_engine *e)
{
	while (e->inflight) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };
		if (!e->ready.head)
			poll(&pfd, 1, -1);
		block_engine_process_completions(e);
	}
}

void block_engine_destroy(struct block_engine *e)
{
	if (!e)
		return;
	block_engine_drain(e);
	int fd = e->event_fd;
	e->ops->destroy(e);
	if (fd >= 0)
		close(fd);
}

void block_engine_kick(struct block_engine *e)
{
	uint64_t one = 1;
	/* Only fails with EAGAIN when the counter is near 2^64: it is readable then anyway. */
	ssize_t n = write(e->event_fd, &one, sizeof(one));
	(void)n;
}

void block_engine_submit(struct block_engine *e, struct block_aio *aio)
{
	aio->result = 0;
	aio->moved = 0;
	aio->rest = aio->rest_buf = NULL;
	aio->restcnt = 0;
	aio->total = 0;
	if (aio->op == BLOCK_AIO_PREADV || aio->op == BLOCK_AIO_PWRITEV) {
		for (int i = 0; i < aio->iovcnt; i++)
			aio->total += aio->iov[i].iov_len;
		if (aio->total == 0) {
			block_engine_complete_later(e, aio, 0);
			return;
		}
	}
	e->inflight++;
	e->ops->submit(e, aio);
}

void block_engine_complete_later(struct block_engine *e, struct block_aio *aio, int result)
{
	aio->result = result;
	aio->rest = aio->rest_buf = NULL;
	e->inflight++;
	block_aio_list_push(&e->ready, aio);
	block_engine_kick(e);
}

void block_engine_finish(struct block_engine *e, struct block_aio *aio, int result)
{
	free(aio->rest_buf);
	aio->rest = aio->rest_buf = NULL;
	e->inflight--;
	aio->complete(aio, result);
}

void block_engine_plug(struct block_engine *e)
{
	e->plugged++;
}

void block_engine_unplug(struct block_engine *e)
{
	if (e->plugged > 0 && --e->plugged == 0 && e->ops->unplug)
		e->ops->unplug(e);
}

void block_engine_process_completions(struct block_engine *e)
{
	uint64_t count;
	/* Read first: anything completing after this makes the fd readable again. */
	ssize_t n = read(e->event_fd, &count, sizeof(count));
	(void)n;
	e->ops->reap(e);
	/* Callbacks may complete more at once; those are run in this same pass. */
	struct block_aio *aio;
	while ((aio = block_aio_list_pop(&e->ready)))
		block_engine_finish(e, aio, aio->result);
}

const struct iovec *block_aio_iov(const struct block_aio *aio, int *iovcnt)
{
	if (aio->rest) {
		*iovcnt = aio->restcnt;
		return aio->rest;
	}
	*iovcnt = aio->iovcnt;
	return aio->iov;
}

uint64_t block_aio_offset(const struct block_aio *aio)
{
	return aio->offset + aio->moved;
}

int block_aio_advance(struct block_aio *aio, uint64_t n)
{
	aio->moved += n;
	if (aio->moved >= aio->total)
		return 0;
	/* The caller's iovecs are not ours to change: continue from a copy. */
	if (!aio->rest_buf) {
		aio->rest_buf = malloc(sizeof(*aio->rest_buf) * (size_t)aio->iovcnt);
		if (!aio->rest_buf)
			return -ENOMEM;
		memcpy(aio->rest_buf, aio->iov, sizeof(*aio->rest_buf) * (size_t)aio->iovcnt);
		aio->rest = aio->rest_buf;
		aio->restcnt = aio->iovcnt;
	}
	while (n > 0 && aio->restcnt > 0) {
		if (n < aio->rest->iov_len) {
			aio->rest->iov_base = (char *)aio->rest->iov_base + n;
			aio->rest->iov_len -= n;
			n = 0;
		} else {
			n -= aio->rest->iov_len;
			aio->rest++;
			aio->restcnt--;
		}
	}
	/* Skip empty iovecs so the next call does not see a zero-length request. */
	while (aio->restcnt > 0 && aio->rest->iov_len == 0) {
		aio->rest++;
		aio->restcnt--;
	}
	return 0;
}
