/* The asynchronous I/O engines under the block layer: io_uring, or a pool of threads making the
 * same system calls. Either way completions run on the event loop thread. */
#ifndef KVMKIT_BLOCK_ENGINE_H
#define KVMKIT_BLOCK_ENGINE_H

#include <stdint.h>
#include <sys/uio.h>

enum block_aio_op {
	BLOCK_AIO_PREADV,
	BLOCK_AIO_PWRITEV,
	BLOCK_AIO_FDATASYNC,
	BLOCK_AIO_FALLOCATE,
};

/* One system call on a host file, made asynchronously. Reads and writes complete only when the
 * whole iovec total has moved (short transfers are continued; end of file is -EIO). */
struct block_aio {
	enum block_aio_op op;
	int fd;
	uint64_t offset;
	const struct iovec *iov; /* PREADV/PWRITEV; must stay valid until complete() */
	int iovcnt;
	uint64_t len;            /* FALLOCATE */
	int mode;                /* FALLOCATE */
	/* Runs inside block_engine_process_completions with 0 or -errno. It may submit more. */
	void (*complete)(struct block_aio *aio, int result);
	void *opaque;

	/* private to the engines */
	struct block_aio *next;
	int result;
	uint64_t total;          /* bytes to move */
	uint64_t moved;          /* bytes moved so far */
	struct iovec *rest;      /* after a short transfer: the iovecs still to move (in rest_buf) */
	int restcnt;
	struct iovec *rest_buf;
};

struct block_aio_list {
	struct block_aio *head;
	struct block_aio **tail;
};

struct block_engine;

/* What an engine implements. */
struct block_engine_ops {
	const char *name;
	/* Starts aio; it finishes later through block_engine_finish. Cannot fail. */
	void (*submit)(struct block_engine *e, struct block_aio *aio);
	/* Finishes whatever the engine has completed (called with the event fd already read). */
	void (*reap)(struct block_engine *e);
	/* Optional: hands over what was queued while plugged (one system call for a batch). */
	void (*unplug)(struct block_engine *e);
	/* Frees the engine; nothing is in flight. Closes nothing of the common part. */
	void (*destroy)(struct block_engine *e);
};

/* The part common to all engines, first member of each engine's own struct. */
struct block_engine {
	const struct block_engine_ops *ops;
	int event_fd;                  /* eventfd: readable when something has completed */
	unsigned inflight;             /* aios submitted whose complete() has not run */
	struct block_aio_list ready;   /* finished without a system call, waiting to be run */
	unsigned plugged;              /* > 0: submissions wait for block_engine_unplug */
};

/* Creates the engine KVMKIT_BLOCK_ENGINE asks for ("threads" or "io_uring"), by default
 * io_uring, falling back to threads when io_uring cannot be set up (old kernel, disabled by
 * sysctl or seccomp). Returns 0 or -errno; prints nothing. */
/* Called first by each worker of the thread-pool engine: kvmkit confines them there
 * (vmm/sandbox.c); NULL (kvmkit-img, tests) does nothing. */
extern void (*block_engine_thread_start)(void);

int block_engine_create(struct block_engine **out);
/* Waits for everything in flight, running the complete() callbacks. */
void block_engine_drain(struct block_engine *e);
/* Drains, then frees the engine. */
void block_engine_destroy(struct block_engine *e);

void block_engine_submit(struct block_engine *e, struct block_aio *aio);
/* Between plug and unplug, submissions are batched (io_uring: one io_uring_enter at unplug). */
void block_engine_plug(struct block_engine *e);
void block_engine_unplug(struct block_engine *e);
/* Completes aio with result from the next block_engine_process_completions, without making a
 * system call: for results known at once (a flush that does nothing, an error). */
void block_engine_complete_later(struct block_engine *e, struct block_aio *aio, int result);
/* Makes the event fd readable, so the event loop comes back to process completions. */
void block_engine_kick(struct block_engine *e);
void block_engine_process_completions(struct block_engine *e);

/* For the engines themselves. */
int block_engine_init_common(struct block_engine *e, const struct block_engine_ops *ops);
void block_engine_finish(struct block_engine *e, struct block_aio *aio, int result);
/* Records n more bytes moved; if the transfer is still short, points aio->rest at what is left.
 * Returns 0 or -ENOMEM. */
int block_aio_advance(struct block_aio *aio, uint64_t n);
/* The iovecs still to move and where: the whole request until a short transfer happened. */
const struct iovec *block_aio_iov(const struct block_aio *aio, int *iovcnt);
uint64_t block_aio_offset(const struct block_aio *aio);

void block_aio_list_init(struct block_aio_list *l);
void block_aio_list_push(struct block_aio_list *l, struct block_aio *aio);
struct block_aio *block_aio_list_pop(struct block_aio_list *l);

int block_engine_uring_create(struct block_engine **out);
int block_engine_threads_create(struct block_engine **out);

#endif
