/* Outgoing live migration: iterative pre-copy of RAM with KVM's dirty log in a thread of its
 * own, stop-and-copy of the rest and of the VM's state, cancel at any point (format and
 * contract in migrate.h). */
#include "migration/migrate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "migration/block_mig.h"
#include "migration/config.h"
#include "migration/dirty.h"
#include "migration/ram.h"
#include "migration/uri.h"
#include "migration/vmstate.h"
#include "vmm/loop.h"
#include "vmm/vm.h"
#include "vmm/sandbox.h"

/* Pages handed to ram_send_pages at once: one RAMP section, and how often the thread looks at
 * cancel and the bandwidth limit. A multiple of 64 so a chunk starts on a bitmap word. */
#define MIGRATE_CHUNK_PAGES RAM_BATCH_PAGES
/* Passes over the dirty pages before the VM is stopped anyway (a guest that dirties faster
 * than the link carries never converges; QEMU would go on forever without auto-converge). */
#define MIGRATE_MAX_PASSES 30
/* Within the downtime limit, passes go on (at most this many more) while the rest would take
 * longer than this. */
#define MIGRATE_EXTRA_PASSES 6
#define MIGRATE_GOOD_DOWNTIME_MS 2
/* A pass that sent less than this does not measure the bandwidth. */
#define MIGRATE_MEASURE_BYTES (4u << 20)

struct migration {
	pthread_mutex_t lock;           /* guards everything below but the thread's own state */
	struct migrate_info info;
	bool thread_started;
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool completing;
	int notify_fd;                  /* readable while events has something */
	struct migrate_events events;
	struct loop *loop;              /* the main thread's: notify_fd is registered there */
	const struct migrate_listener_ops *listener;
	void *listener_opaque;

	/* The thread's own state (read by others only under lock through info). */
	struct vm *vm;
	struct migrate_params params;
	struct migration_channel ch;
	char *uri;
	struct stream s;
	atomic_uint_fast64_t written;   /* bytes the transport took */
	struct dirty_log dirty;
	struct block_mig blk;           /* with params.block */
	uint64_t *pending;              /* pages to send in the current pass */
	struct timespec start, pass_start;
	uint64_t pass_bytes;            /* stream bytes at pass_start */
	double bytes_per_ms;            /* the link's speed, as the last long enough pass saw it */
};

const char *migrate_status_name(enum migrate_status s)
{
	static const char *const names[] = { "none", "setup", "active", "cancelling", "completed",
					     "failed", "cancelled" };
	return names[s];
}

static uint64_t ms_between(const struct timespec *a, const struct timespec *b)
{
	int64_t ns = (int64_t)(b->tv_sec - a->tv_sec) * 1000000000 + (b->tv_nsec - a->tv_nsec);
	return ns > 0 ? (uint64_t)ns / 1000000 : 0;
}

static uint64_t ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return ms_between(t0, &now);
}

/* Queues an event for the main thread. Caller holds the lock. */
static void migrate_post(struct migration *m, enum migrate_event_kind kind,
			 enum migrate_status status)
{
	migrate_events_post(&m->events, &(struct migrate_event){ kind, status });
	uint64_t one = 1;
	if (write(m->notify_fd, &one, sizeof(one)) < 0)
		log_debug("cannot wake the main loop for a migration event: %s", strerror(errno));
}

static void migrate_set_status(struct migration *m, enum migrate_status s)
{
	pthread_mutex_lock(&m->lock);
	m->info.status = s;
	if (s == MIGRATE_ACTIVE)
		m->info.setup_time_ms = ms_since(&m->start);
	migrate_post(m, MIGRATE_EVENT_STATUS, s);
	pthread_mutex_unlock(&m->lock);
}

/* ---- the stream's transport: the channel's fd, counted ---- */

static long migrate_write(void *opaque, const void *buf, size_t len)
{
	struct migration *m = opaque;
	for (;;) {
		ssize_t n = write(m->ch.fd, buf, len);
		if (n >= 0) {
			atomic_fetch_add(&m->written, (uint64_t)n);
			return n;
		}
		if (errno != EINTR)
			return -errno;
	}
}

static long migrate_no_read(void *opaque, void *buf, size_t len)
{
	(void)opaque, (void)buf, (void)len;
	return -EBADF;
}

static const struct stream_ops migrate_ops = { migrate_no_read, migrate_write };

/* Bytes put into the stream so far, sent or still buffered. */
static uint64_t migrate_bytes(struct migration *m)
{
	return atomic_load(&m->written) + m->s.io_len;
}

/* ---- RAM passes ---- */

/* Waits while this pass is ahead of max_bandwidth, waking for cancel. */
static void migrate_throttle(struct migration *m)
{
	uint64_t bw = m->params.max_bandwidth;
	if (bw == 0)
		return;
	while (!atomic_load(&m->cancel)) {
		uint64_t due_ms = (migrate_bytes(m) - m->pass_bytes) * 1000 / bw;
		uint64_t spent = ms_since(&m->pass_start);
		if (spent >= due_ms)
			return;
		uint64_t wait = due_ms - spent < 50 ? due_ms - spent : 50;
		struct timespec ts = { 0, (long)wait * 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* Sends the pages set in pending (NULL: all) in chunks, accounting for them as query-migrate
 * shows them. Returns 0, -ECANCELED or the stream's error. */
static int migrate_send_pages(struct migration *m, const uint64_t *pending, bool throttle)
{
	const struct guest_mem *mem = &m->vm->mem;
	uint64_t npages = mem->mapping_size / RAM_PAGE_SIZE;
	uint64_t left = pending ? dirty_count(pending, npages) : npages;
	for (uint64_t first = 0; first < npages; first += MIGRATE_CHUNK_PAGES) {
		if (atomic_load(&m->cancel))
			return -ECANCELED;
		uint64_t count = npages - first < MIGRATE_CHUNK_PAGES ? npages - first
								      : MIGRATE_CHUNK_PAGES;
		const uint64_t *bits = pending ? pending + first / 64 : NULL;
		if (bits && dirty_count(bits, count) == 0)
			continue;
		uint64_t before = migrate_bytes(m), sent;
		int r = ram_send_pages(&m->s, mem, first, count, bits, &sent);
		if (r < 0)
			return r;
		/* ram.h's format: one RAMP section (20 bytes of framing) of 9 bytes per page,
		 * plus RAM_PAGE_SIZE for each page that is not all zeros. */
		uint64_t bytes = migrate_bytes(m) - before;
		uint64_t normal = sent ? (bytes - 20 - 9 * sent) / RAM_PAGE_SIZE : 0;
		left -= sent;
		pthread_mutex_lock(&m->lock);
		m->info.normal += normal;
		m->info.duplicate += sent - normal;
		m->info.normal_bytes = m->info.normal * RAM_PAGE_SIZE;
		m->info.remaining = left * RAM_PAGE_SIZE;
		pthread_mutex_unlock(&m->lock);
		if (throttle)
			migrate_throttle(m);
	}
	return 0;
}

/* Block migration: the disk chunks pending in this pass. */
static int migrate_send_disks(struct migration *m, bool throttle)
{
	if (!m->params.block)
		return 0;
	for (bool done = false; !done;) {
		if (atomic_load(&m->cancel))
			return -ECANCELED;
		int r = block_mig_send_one(&m->blk, &m->s, &done);
		if (r < 0)
			return r;
		if (throttle)
			migrate_throttle(m);
	}
	return 0;
}

/* The first pass: all of RAM (and of the disks, with block migration) while the guest runs. */
static int migrate_first_pass(struct migration *m)
{
	clock_gettime(CLOCK_MONOTONIC, &m->pass_start);
	m->pass_bytes = migrate_bytes(m);
	int r = migrate_send_disks(m, true);
	return r < 0 ? r : migrate_send_pages(m, NULL, true);
}

/* Passes over the pages dirtied meanwhile until the rest can be sent within the downtime
 * limit at the bandwidth the last pass measured, or MIGRATE_MAX_PASSES. Within the limit it
 * goes on for up to MIGRATE_EXTRA_PASSES while the rest would take longer than
 * MIGRATE_GOOD_DOWNTIME_MS and keeps shrinking (by a quarter of the smallest set seen, at
 * least every third pass): each pass is shorter than the one before, so the guest dirties less
 * during it, and the downtime becomes as short as the guest allows rather than just under the
 * limit, for a few milliseconds more of total time. Leaves the pages still to send in
 * m->pending. */
static int migrate_dirty_passes(struct migration *m)
{
	uint64_t npages = m->dirty.npages, smallest = UINT64_MAX;
	unsigned extra = 0, stalls = 0;
	for (unsigned pass = 1;; pass++) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		uint64_t pass_ms = ms_between(&m->pass_start, &now);
		uint64_t pass_bytes = migrate_bytes(m) - m->pass_bytes;
		/* A pass of a few pages says little about the link: keep the last real measure. */
		if (pass_bytes >= MIGRATE_MEASURE_BYTES || m->bytes_per_ms == 0)
			m->bytes_per_ms = (double)pass_bytes / (double)(pass_ms ? pass_ms : 1);
		double bytes_per_ms = m->bytes_per_ms;
		memset(m->pending, 0, dirty_words(npages) * sizeof(uint64_t));
		int r = dirty_log_sync(&m->dirty, m->pending, false);
		if (r < 0)
			return r;
		uint64_t dirty = dirty_count(m->pending, npages);
		uint64_t disk_bytes = m->params.block ? block_mig_sync(&m->blk) : 0;
		uint64_t expected = (uint64_t)((double)(dirty * (RAM_PAGE_SIZE + 9) + disk_bytes) /
					       (bytes_per_ms > 0 ? bytes_per_ms : 1));
		pthread_mutex_lock(&m->lock);
		m->info.dirty_sync_count++;
		m->info.remaining = dirty * RAM_PAGE_SIZE;
		m->info.expected_downtime_ms = expected;
		m->info.dirty_pages_rate = dirty * 1000 / (pass_ms ? pass_ms : 1);
		m->info.mbps = bytes_per_ms * 8 / 1000;
		pthread_mutex_unlock(&m->lock);
		log_debug("migration pass %u: %llu dirty pages, %.0f bytes/ms, expected downtime "
			  "%llu ms", pass, (unsigned long long)dirty, bytes_per_ms,
			  (unsigned long long)expected);
		dirty += disk_bytes / RAM_PAGE_SIZE; /* both in pages from here on */
		stalls = smallest == UINT64_MAX || dirty < smallest / 4 * 3 ? 0 : stalls + 1;
		smallest = dirty < smallest ? dirty : smallest;
		bool within = expected <= m->params.downtime_limit_ms;
		if (dirty == 0 || pass > MIGRATE_MAX_PASSES ||
		    (within && (expected <= MIGRATE_GOOD_DOWNTIME_MS || stalls >= 3 ||
				extra >= MIGRATE_EXTRA_PASSES)))
			return 0;
		extra += within;
		m->pass_start = now;
		m->pass_bytes = migrate_bytes(m);
		r = migrate_send_disks(m, true);
		if (r == 0)
			r = migrate_send_pages(m, m->pending, true);
		if (r < 0)
			return r;
	}
}

/* ---- the last pass, with the VM paused ---- */

/* The channel, now the thread's alone: migrate_cancel no longer touches it. */
static struct migration_channel migrate_take_channel(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	struct migration_channel ch = m->ch;
	m->ch = MIGRATION_CHANNEL_NONE;
	pthread_mutex_unlock(&m->lock);
	return ch;
}

static int migrate_stop_and_copy(struct migration *m, bool *paused_here, bool *devices_stopped)
{
	struct vm *vm = m->vm;
	atomic_store(&m->completing, true);
	bool was_paused = vm_is_paused(vm);
	int r = vm_pause(vm);
	if (r < 0)
		return r;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t bytes0 = migrate_bytes(m);
	*paused_here = !was_paused;
	if (*paused_here) {
		pthread_mutex_lock(&m->lock);
		migrate_post(m, MIGRATE_EVENT_VM_STOPPED, MIGRATE_ACTIVE);
		pthread_mutex_unlock(&m->lock);
	}
	vmstate_stop_devices(vm); /* drained: nothing writes RAM or disks from here on */
	*devices_stopped = true;
	if (m->params.block) {
		block_mig_sync(&m->blk);
		r = migrate_send_disks(m, false);
	} else {
		r = block_mig_flush_shared(vm); /* the target reads the same files */
	}
	if (r == 0)
		r = dirty_log_sync(&m->dirty, m->pending, true);
	uint64_t last_pages = dirty_count(m->pending, m->dirty.npages), ram_ms = ms_since(&t0);
	if (r == 0)
		r = migrate_send_pages(m, m->pending, false);
	ram_ms = ms_since(&t0) - ram_ms;
	if (r == 0)
		r = vmstate_save(vm, &m->s);
	log_debug("migration's last pass: %llu pages in %llu ms, state saved at %llu ms",
		  (unsigned long long)last_pages, (unsigned long long)ram_ms,
		  (unsigned long long)ms_since(&t0));
	stream_begin_section(&m->s, STREAM_TAG_END, 0, 1);
	stream_end_section(&m->s);
	if (r == 0)
		r = stream_flush(&m->s);
	if (r == 0)
		r = stream_error(&m->s);
	char why[200] = "";
	if (r == 0) {
		/* Waits for an exec command to take everything; a cancel from here on is too
		 * late (the target may have the whole VM) and is ignored. */
		struct migration_channel ch = migrate_take_channel(m);
		r = channel_close(&ch, why, sizeof(why));
	}
	pthread_mutex_lock(&m->lock);
	if (r < 0 && why[0])
		snprintf(m->info.error, sizeof(m->info.error), "%s", why);
	m->info.downtime_ms = ms_since(&t0);
	m->info.downtime_bytes = migrate_bytes(m) - bytes0;
	m->info.precopy_bytes = bytes0;
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* ---- the thread ---- */

static int migrate_run(struct migration *m, bool *paused_here, bool *devices_stopped)
{
	struct vm *vm = m->vm;
	int r = dirty_log_start(&m->dirty, vm);
	if (r < 0)
		return r;
	m->pending = calloc(dirty_words(m->dirty.npages), sizeof(uint64_t));
	if (!m->pending)
		return -ENOMEM;
	stream_write_header(&m->s, MIGRATION_MAGIC, MIGRATION_VERSION);
	stream_begin_section(&m->s, CONFIG_TAG, 0, CONFIG_VERSION);
	config_save(vm->cfg, &m->s);
	stream_end_section(&m->s);
	stream_begin_section(&m->s, MIGRATION_RAM_TAG, 0, 1);
	stream_put_u64(&m->s, vm->mem.mapping_size);
	stream_end_section(&m->s);
	if ((r = stream_error(&m->s)) < 0)
		return r;
	char why[256];
	if (m->params.block && (r = block_mig_start(&m->blk, vm, &m->s, why, sizeof(why))) < 0) {
		pthread_mutex_lock(&m->lock);
		snprintf(m->info.error, sizeof(m->info.error), "%s", why);
		pthread_mutex_unlock(&m->lock);
		return r;
	}
	migrate_set_status(m, MIGRATE_ACTIVE);
	r = migrate_first_pass(m);
	if (r == 0)
		r = migrate_dirty_passes(m);
	if (r == 0 && atomic_load(&m->cancel))
		r = -ECANCELED;
	if (r == 0)
		r = migrate_stop_and_copy(m, paused_here, devices_stopped);
	return r;
}

/* One sentence for a failure nobody explained yet. */
static void migrate_explain(struct migration *m, int r)
{
	if (m->info.error[0])
		return;
	if (r == -EPIPE || r == -ECONNRESET)
		snprintf(m->info.error, sizeof(m->info.error), "the target closed the migration "
			 "stream (it refused the VM or stopped; see its output)");
	else if (r == -ESHUTDOWN)
		snprintf(m->info.error, sizeof(m->info.error), "the VM stopped during the migration");
	else
		snprintf(m->info.error, sizeof(m->info.error), "the migration to %s failed: %s",
			 m->uri, strerror(-r));
}

static void *migrate_thread(void *arg)
{
	struct migration *m = arg;
	sandbox_enter(SANDBOX_MIGRATION);
	bool paused_here = false, devices_stopped = false;
	int r = migrate_run(m, &paused_here, &devices_stopped);
	if (r < 0 && atomic_load(&m->cancel))
		r = -ECANCELED; /* whatever error the cancel's abort caused */
	dirty_log_stop(&m->dirty);
	if (m->params.block)
		block_mig_stop(&m->blk);
	stream_close(&m->s);
	free(m->pending);
	m->pending = NULL;
	if (r < 0) {
		/* The target gets a truncated stream and refuses it; the source goes on. */
		struct migration_channel ch = migrate_take_channel(m);
		char why[200];
		channel_abort(&ch);
		channel_close(&ch, why, sizeof(why));
	}
	if (devices_stopped)
		vmstate_restart_devices(m->vm);
	bool resumed = r < 0 && paused_here && vm_resume(m->vm) == 0;
	atomic_store(&m->completing, false);
	pthread_mutex_lock(&m->lock);
	m->info.total_time_ms = ms_since(&m->start);
	m->info.remaining = r == 0 ? 0 : m->info.remaining;
	m->info.status = r == 0 ? MIGRATE_COMPLETED : r == -ECANCELED ? MIGRATE_CANCELLED
								      : MIGRATE_FAILED;
	if (m->info.status == MIGRATE_FAILED)
		migrate_explain(m, r);
	if (resumed)
		migrate_post(m, MIGRATE_EVENT_VM_RESUMED, m->info.status);
	migrate_post(m, MIGRATE_EVENT_STATUS, m->info.status);
	pthread_mutex_unlock(&m->lock);
	if (m->info.status == MIGRATE_FAILED)
		log_warn("%s", m->info.error);
	else if (m->info.status == MIGRATE_COMPLETED)
		log_debug("migration to %s completed in %llu ms, downtime %llu ms", m->uri,
			  (unsigned long long)m->info.total_time_ms,
			  (unsigned long long)m->info.downtime_ms);
	return NULL;
}

/* ---- the main thread's side ---- */

static bool migrate_running_locked(const struct migration *m)
{
	return m->info.status == MIGRATE_SETUP || m->info.status == MIGRATE_ACTIVE ||
	       m->info.status == MIGRATE_CANCELLING;
}

/* Joins a thread that has finished (or is about to). */
static void migrate_join(struct migration *m)
{
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	m->thread_started = false;
}

/* A migration that failed before its thread ran: the status, the sentence query-migrate shows
 * and the MIGRATION event a client waits for. */
static void migrate_fail_setup(struct migration *m, const char *why)
{
	pthread_mutex_lock(&m->lock);
	m->info.status = MIGRATE_FAILED;
	snprintf(m->info.error, sizeof(m->info.error), "%s", why);
	migrate_post(m, MIGRATE_EVENT_STATUS, MIGRATE_FAILED);
	pthread_mutex_unlock(&m->lock);
}

int migrate_start(struct migration *m, const char *uri, const struct migrate_params *params,
		  char *why, size_t why_len)
{
	struct vm *vm = m->vm;
	pthread_mutex_lock(&m->lock);
	bool busy = migrate_running_locked(m);
	pthread_mutex_unlock(&m->lock);
	if (busy) {
		snprintf(why, why_len, "There's a migration process in progress");
		return -EBUSY;
	}
	migrate_join(m);
	int r = channel_check_uri(uri, why, why_len);
	if (r < 0)
		return r;
	if (vmstate_check_supported(vm) < 0) {
		snprintf(why, why_len, "this VM has a device whose state cannot be migrated (kvmkit's "
			 "error output names it)");
		return -ENOTSUP;
	}
	r = params->block ? block_mig_check(vm, why, why_len)
			  : block_mig_check_shared(vm, why, why_len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	memset(&m->info, 0, sizeof(m->info));
	m->info.status = MIGRATE_SETUP;
	m->info.total = vm->mem.ram_size;
	migrate_post(m, MIGRATE_EVENT_STATUS, MIGRATE_SETUP);
	pthread_mutex_unlock(&m->lock);
	clock_gettime(CLOCK_MONOTONIC, &m->start);
	r = channel_open(uri, true, &m->ch, why, why_len);
	if (r < 0) {
		migrate_fail_setup(m, why);
		return r;
	}
	free(m->uri);
	m->uri = strdup(uri);
	m->params = *params;
	atomic_store(&m->cancel, false);
	atomic_store(&m->written, 0);
	m->bytes_per_ms = 0;
	stream_init_fd(&m->s, m->ch.fd, true);
	m->s.ops = &migrate_ops;
	m->s.opaque = m;
	r = pthread_create(&m->thread, NULL, migrate_thread, m);
	if (r != 0) {
		snprintf(why, why_len, "cannot start the migration thread: %s", strerror(r));
		stream_close(&m->s);
		channel_abort(&m->ch);
		channel_close(&m->ch, why + strlen(why), 0);
		migrate_fail_setup(m, why);
		log_warn("%s", why);
		return -r;
	}
	m->thread_started = true;
	return 0;
}

void migrate_cancel(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	if (migrate_running_locked(m) && !atomic_load(&m->cancel) && m->ch.fd >= 0) {
		atomic_store(&m->cancel, true);
		/* A write blocked on a slow or stuck target fails now (the thread takes the
		 * channel under the lock before it closes it). */
		channel_abort(&m->ch);
		m->info.status = MIGRATE_CANCELLING;
		migrate_post(m, MIGRATE_EVENT_STATUS, MIGRATE_CANCELLING);
	}
	pthread_mutex_unlock(&m->lock);
}

void migrate_query(struct migration *m, struct migrate_info *info)
{
	if (!m) {
		memset(info, 0, sizeof(*info));
		return;
	}
	pthread_mutex_lock(&m->lock);
	*info = m->info;
	if (migrate_running_locked(m))
		info->total_time_ms = ms_since(&m->start);
	info->transferred = atomic_load(&m->written);
	uint64_t secs_ms = info->total_time_ms ? info->total_time_ms : 1;
	info->pages_per_second = (info->normal + info->duplicate) * 1000 / secs_ms;
	if (info->status == MIGRATE_COMPLETED)
		info->mbps = (double)info->transferred * 8 / 1000 / (double)secs_ms;
	pthread_mutex_unlock(&m->lock);
}

bool migrate_completing(struct migration *m)
{
	return m && atomic_load(&m->completing);
}

/* Takes the oldest event; the eventfd is reset once the queue is empty. */
static bool migrate_next_event(struct migration *m, struct migrate_event *ev)
{
	pthread_mutex_lock(&m->lock);
	bool have = migrate_events_next(&m->events, ev);
	if (m->events.len == 0) {
		uint64_t n;
		if (read(m->notify_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			log_debug("migration eventfd: %s", strerror(errno));
	}
	pthread_mutex_unlock(&m->lock);
	return have;
}

void migrate_dispatch_events(struct migration *m)
{
	struct migrate_event ev;
	while (migrate_next_event(m, &ev))
		m->listener->event(m->listener_opaque, &ev);
}

static void migrate_notified(void *opaque, int fd, short revents)
{
	(void)fd, (void)revents;
	migrate_dispatch_events(opaque);
}

struct migration *migrate_create(struct vm *vm, struct loop *loop,
				 const struct migrate_listener_ops *ops, void *opaque)
{
	struct migration *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->vm = vm;
	m->ch = MIGRATION_CHANNEL_NONE;
	m->loop = loop;
	m->listener = ops;
	m->listener_opaque = opaque;
	m->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->notify_fd < 0 || loop_add(loop, m->notify_fd, POLLIN, migrate_notified, m) < 0) {
		log_error("cannot set up live migration's notifications: %s", strerror(errno));
		if (m->notify_fd >= 0)
			close(m->notify_fd);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	return m;
}

void migrate_destroy(struct migration *m)
{
	if (!m)
		return;
	migrate_cancel(m);
	migrate_join(m);
	migrate_dispatch_events(m); /* the last ones: cancelled, and the VM resumed */
	dirty_log_free(&m->dirty);
	block_mig_free(&m->blk);
	loop_remove(m->loop, m->notify_fd);
	close(m->notify_fd);
	migrate_events_free(&m->events);
	free(m->uri);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
