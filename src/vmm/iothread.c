/* The I/O thread: one epoll loop running device back-ends off the vCPU threads. */
#include "vmm/iothread.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"
#include "vmm/sandbox.h"

#define IOTHREAD_MAX_EVENTS 32

struct iothread_watch {
	int fd;
	iothread_fn fn;
	void *opaque;
	struct iothread_watch *next;
};

struct iothread {
	int epoll_fd;
	int stop_fd;        /* eventfd: ends the loop */
	pthread_t thread;
	bool started;
	/* Watches are looked up by the loop and changed by other threads. `lock` is held while a
	 * handler runs, so iothread_remove from another thread waits for it to finish. */
	pthread_mutex_t lock;
	struct iothread_watch *watches;
	bool paused;            /* under lock: handlers wait on `resumed` */
	pthread_cond_t resumed;
};

static void *iothread_main(void *arg)
{
	struct iothread *t = arg;
	sandbox_enter(SANDBOX_IO);
	struct epoll_event ev[IOTHREAD_MAX_EVENTS];
	for (;;) {
		int n = epoll_wait(t->epoll_fd, ev, IOTHREAD_MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("the I/O thread's event loop failed: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == NULL)
				return NULL; /* stop_fd */
			pthread_mutex_lock(&t->lock);
			while (t->paused)
				pthread_cond_wait(&t->resumed, &t->lock);
			/* The watch may have been removed since epoll_wait returned: look it up. (A new
			 * watch at a recycled address may then see one spurious call: handlers read
			 * their fds non-blocking and tolerate that.) */
			struct iothread_watch *w = t->watches;
			while (w && w != ev[i].data.ptr)
				w = w->next;
			if (w)
				w->fn(w->opaque, ev[i].events);
			pthread_mutex_unlock(&t->lock);
		}
	}
}

struct iothread *iothread_create(void)
{
	struct iothread *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	/* Handlers run with the lock held and may add or remove watches themselves. */
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_cond_init(&t->resumed, NULL);
	t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (t->epoll_fd < 0 || t->stop_fd < 0 ||
	    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->stop_fd, &ev) < 0) {
		log_error("cannot create the I/O thread's event loop: %s", strerror(errno));
		iothread_destroy(t);
		return NULL;
	}
	int r = pthread_create(&t->thread, NULL, iothread_main, t);
	if (r != 0) {
		log_error("cannot start the I/O thread: %s", strerror(r));
		iothread_destroy(t);
		return NULL;
	}
	t->started = true;
	return t;
}

void iothread_destroy(struct iothread *t)
{
	if (!t)
		return;
	if (t->started) {
		iothread_resume(t);
		uint64_t one = 1;
		if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("cannot stop the I/O thread: %s", strerror(errno));
		pthread_join(t->thread, NULL);
	}
	while (t->watches) {
		struct iothread_watch *w = t->watches;
		t->watches = w->next;
		free(w);
	}
	if (t->epoll_fd >= 0)
		close(t->epoll_fd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->resumed);
	free(t);
}

int iothread_add(struct iothread *t, int fd, uint32_t events, iothread_fn fn, void *opaque)
{
	struct iothread_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct iothread_watch){ .fd = fd, .fn = fn, .opaque = opaque };
	pthread_mutex_lock(&t->lock);
	struct epoll_event ev = { .events = events, .data.ptr = w };
	int r = epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
	if (r == 0) {
		w->next = t->watches;
		t->watches = w;
	} else {
		free(w);
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

int iothread_remove(struct iothread *t, int fd)
{
	/* Taking the lock waits for a running handler (unless we are that handler). */
	pthread_mutex_lock(&t->lock);
	struct iothread_watch **p = &t->watches;
	while (*p && (*p)->fd != fd)
		p = &(*p)->next;
	int r = -ENOENT;
	if (*p) {
		struct iothread_watch *w = *p;
		*p = w->next;
		free(w);
		r = epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

void iothread_sync(struct iothread *t)
{
	pthread_mutex_lock(&t->lock);
	pthread_mutex_unlock(&t->lock);
}

void iothread_pause(struct iothread *t)
{
	/* Holding the lock means no handler is running; the flag keeps the next one waiting. */
	pthread_mutex_lock(&t->lock);
	t->paused = true;
	pthread_mutex_unlock(&t->lock);
}

void iothread_resume(struct iothread *t)
{
	pthread_mutex_lock(&t->lock);
	t->paused = false;
	pthread_cond_broadcast(&t->resumed);
	pthread_mutex_unlock(&t->lock);
}
