/* The main thread's event loop: components register their fds with a callback (the stop
 * eventfd, signals, live migration's progress), or as a source whose fds change from round to
 * round (the console, the control socket and its clients, as GLib's GSource prepares its fds
 * before each poll); the loop knows none of them. Main thread only. */
#ifndef KVMKIT_VMM_LOOP_H
#define KVMKIT_VMM_LOOP_H

#include <poll.h>

struct loop;

/* Called with the fd's revents (POLLIN, POLLOUT, POLLHUP, POLLERR). May add, modify or remove
 * any registration, its own included. */
typedef void (*loop_fd_fn)(void *opaque, int fd, short revents);

/* A source: prepare fills at most max pollfds (and may lower *timeout_ms, e.g. to retry input
 * later), dispatch gets them back with their revents after the poll. */
struct loop_source_ops {
	int (*prepare)(void *opaque, struct pollfd *pfds, int max, int *timeout_ms);
	void (*dispatch)(void *opaque, const struct pollfd *pfds, int n);
};

struct loop *loop_create(void);
/* Registrations still there are dropped (their fds are their owners' to close). */
void loop_destroy(struct loop *l);

/* Watches fd for events (POLLIN and/or POLLOUT; 0 pauses it). 0, -EEXIST when fd is already
 * registered, -EINVAL, -ENOMEM. */
int loop_add(struct loop *l, int fd, short events, loop_fd_fn fn, void *opaque);
/* Changes what fd is watched for. 0 or -ENOENT. */
int loop_modify(struct loop *l, int fd, short events);
/* Stops watching fd (a callback of this round not yet run is not run). 0 or -ENOENT. */
int loop_remove(struct loop *l, int fd);

/* Adds a source of up to max_fds fds; opaque identifies it for loop_remove_source. 0,
 * -EINVAL or -ENOMEM. */
int loop_add_source(struct loop *l, const struct loop_source_ops *ops, int max_fds,
		    void *opaque);
void loop_remove_source(struct loop *l, const struct loop_source_ops *ops, void *opaque);

/* Polls once (timeout_ms: -1 waits, sources may shorten it) and runs the callbacks of what is
 * ready. 0 (also on EINTR or timeout) or -errno when poll fails. */
int loop_run_once(struct loop *l, int timeout_ms);

#endif
