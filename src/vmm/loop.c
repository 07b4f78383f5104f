/* The main thread's event loop (contract in loop.h): poll(2) over the registered fds and the
 * sources' fds of the round. poll rather than epoll: a few dozen fds, sources whose fds change
 * every round, and no kernel-side registration that could outlive an fd its owner closed. */
#include "vmm/loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct loop_fd {
	int fd;
	short events;
	loop_fd_fn fn;
	void *opaque;
	unsigned long id;   /* tells a registration apart from a later one on the same fd */
};

struct loop_source {
	const struct loop_source_ops *ops;
	void *opaque;
	int max_fds;
	unsigned long id;
};

struct loop {
	struct loop_fd *fds;
	size_t nfds, fds_cap;
	struct loop_source *sources;
	size_t nsources, sources_cap;
	unsigned long next_id;
	struct pollfd *pfds;        /* this round's */
	unsigned long *owners;      /* the id of the registration of each of the first pfds */
	size_t pfds_cap;
};

struct loop *loop_create(void)
{
	return calloc(1, sizeof(struct loop));
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	free(l->fds);
	free(l->sources);
	free(l->pfds);
	free(l->owners);
	free(l);
}

/* Makes room for one more element in an array of elem bytes. */
static int loop_grow(void **array, size_t *cap, size_t len, size_t elem)
{
	if (len < *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 16;
	void *p = realloc(*array, n * elem);
	if (!p)
		return -ENOMEM;
	*array = p;
	*cap = n;
	return 0;
}

static struct loop_fd *loop_find(struct loop *l, int fd)
{
	for (size_t i = 0; i < l->nfds; i++)
		if (l->fds[i].fd == fd)
			return &l->fds[i];
	return NULL;
}

int loop_add(struct loop *l, int fd, short events, loop_fd_fn fn, void *opaque)
{
	if (fd < 0 || !fn)
		return -EINVAL;
	if (loop_find(l, fd))
		return -EEXIST;
	if (loop_grow((void **)&l->fds, &l->fds_cap, l->nfds, sizeof(*l->fds)) < 0)
		return -ENOMEM;
	l->fds[l->nfds++] = (struct loop_fd){ fd, events, fn, opaque, ++l->next_id };
	return 0;
}

int loop_modify(struct loop *l, int fd, short events)
{
	struct loop_fd *e = loop_find(l, fd);
	if (!e)
		return -ENOENT;
	e->events = events;
	return 0;
}

int loop_remove(struct loop *l, int fd)
{
	struct loop_fd *e = loop_find(l, fd);
	if (!e)
		return -ENOENT;
	*e = l->fds[--l->nfds];
	return 0;
}

int loop_add_source(struct loop *l, const struct loop_source_ops *ops, int max_fds,
		    void *opaque)
{
	if (!ops || max_fds < 0)
		return -EINVAL;
	if (loop_grow((void **)&l->sources, &l->sources_cap, l->nsources, sizeof(*l->sources)) < 0)
		return -ENOMEM;
	l->sources[l->nsources++] = (struct loop_source){ ops, opaque, max_fds, ++l->next_id };
	return 0;
}

void loop_remove_source(struct loop *l, const struct loop_source_ops *ops, void *opaque)
{
	for (size_t i = 0; i < l->nsources; i++) {
		if (l->sources[i].ops == ops && l->sources[i].opaque == opaque) {
			memmove(&l->sources[i], &l->sources[i + 1],
				(l->nsources - i - 1) * sizeof(l->sources[0]));
			l->nsources--;
			return;
		}
	}
}

/* Room for this round's pollfds. */
static int loop_reserve(struct loop *l, size_t n)
{
	if (n <= l->pfds_cap)
		return 0;
	struct pollfd *p = realloc(l->pfds, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->pfds = p;
	unsigned long *o = realloc(l->owners, n * sizeof(*o));
	if (!o)
		return -ENOMEM;
	l->owners = o;
	l->pfds_cap = n;
	return 0;
}

/* The registration with this id, if a callback of the round has not removed it. */
static struct loop_fd *loop_fd_by_id(struct loop *l, unsigned long id)
{
	for (size_t i = 0; i < l->nfds; i++)
		if (l->fds[i].id == id)
			return &l->fds[i];
	return NULL;
}

static struct loop_source *loop_source_by_id(struct loop *l, unsigned long id)
{
	for (size_t i = 0; i < l->nsources; i++)
		if (l->sources[i].id == id)
			return &l->sources[i];
	return NULL;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	size_t want = l->nfds;
	for (size_t i = 0; i < l->nsources; i++)
		want += (size_t)l->sources[i].max_fds;
	if (loop_reserve(l, want ? want : 1) < 0)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < l->nfds; i++) {
		l->pfds[n] = (struct pollfd){ .fd = l->fds[i].fd, .events = l->fds[i].events };
		l->owners[n++] = l->fds[i].id;
	}
	/* A source's fds are consecutive from src_first. */
	size_t nsrc = l->nsources;
	size_t src_first[nsrc ? nsrc : 1];
	int src_n[nsrc ? nsrc : 1];
	unsigned long src_id[nsrc ? nsrc : 1];
	for (size_t i = 0; i < nsrc; i++) {
		struct loop_source *s = &l->sources[i];
		src_first[i] = n;
		src_id[i] = s->id;
		src_n[i] = s->ops->prepare(s->opaque, l->pfds + n, s->max_fds, &timeout_ms);
		if (src_n[i] < 0 || src_n[i] > s->max_fds)
			src_n[i] = 0;
		n += (size_t)src_n[i];
	}
	if (poll(l->pfds, (nfds_t)n, timeout_ms) < 0)
		return errno == EINTR ? 0 : -errno;
	/* The fd registrations come first in pfds, then each source's. */
	size_t nreg = nsrc ? src_first[0] : n;
	for (size_t i = 0; i < nreg; i++) {
		if (!l->pfds[i].revents)
			continue;
		struct loop_fd *e = loop_fd_by_id(l, l->owners[i]);
		if (e)
			e->fn(e->opaque, e->fd, l->pfds[i].revents);
	}
	/* Sources are dispatched every round (with or without readiness): they also retry what
	 * waited, as the console's input for a full receive FIFO. */
	for (size_t i = 0; i < nsrc; i++) {
		struct loop_source *s = loop_source_by_id(l, src_id[i]);
		if (s)
			s->ops->dispatch(s->opaque, l->pfds + src_first[i], src_n[i]);
	}
	return 0;
}
