/* The I/O thread: an epoll loop that runs device back-ends (virtqueue doorbells, disk
 * completions, network sockets) off the vCPU threads. */
#ifndef KVMKIT_VMM_IOTHREAD_H
#define KVMKIT_VMM_IOTHREAD_H

#include <stdint.h>

struct iothread;

/* Called on the I/O thread with the epoll events that fired. */
typedef void (*iothread_fn)(void *opaque, uint32_t events);

/* Creates the loop and starts its thread. Returns NULL after printing why. */
struct iothread *iothread_create(void);
/* Stops and joins the thread, then frees it; handlers are not called any more afterwards. */
void iothread_destroy(struct iothread *t);

/* Watches fd for `events` (EPOLLIN, ...). Any thread. Returns 0 or -errno. */
int iothread_add(struct iothread *t, int fd, uint32_t events, iothread_fn fn, void *opaque);
/* Stops watching fd. When called from another thread it returns after any running handler
 * of this fd has finished, so the caller may free its state. Returns 0 or -errno. */
int iothread_remove(struct iothread *t, int fd);

/* Returns once no handler is running (one that starts later sees what the caller changed
 * before calling this). Not from a handler. */
void iothread_sync(struct iothread *t);

/* Pause: no handler runs until iothread_resume (events that arrive meanwhile stay pending in
 * epoll, so nothing is lost; in-flight disk requests complete in the kernel and are picked up
 * after the resume). Returns once no handler is running. Any thread but the I/O thread. */
void iothread_pause(struct iothread *t);
void iothread_resume(struct iothread *t);

#endif
