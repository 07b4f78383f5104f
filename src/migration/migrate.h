/* Outgoing live migration (QMP migrate): a thread that copies the running guest's RAM over a
 * channel (migration/uri.h) in passes, first all of it, then what the guest dirtied meanwhile,
 * until the rest fits in the allowed downtime; then it pauses the VM, sends the last dirty
 * pages and the VM's state (vmstate.h), and the source stays paused ("postmigrate").
 *
 * The stream: magic "KVMKITLM", format version 1, then the sections
 *   "CONF" the configuration (config.h), compared by the target with its own
 *   "MRAM" the size of the RAM image (u64)
 *   "BLKS", "BLKD" with block migration: the disks' content (block_mig.h)
 *   "RAMP" RAM pages (ram.h), as many as the passes need
 *   vmstate's sections (vCPUs, irqchip, PIT, clock, devices), "END " */
#ifndef KVMKIT_MIGRATION_MIGRATE_H
#define KVMKIT_MIGRATION_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/migrate_events.h"
#include "lib/stream.h"

struct loop;
struct migration;
struct vm;

#define MIGRATION_MAGIC "KVMKITLM"
#define MIGRATION_VERSION 1
#define MIGRATION_RAM_TAG STREAM_TAG('M', 'R', 'A', 'M')

const char *migrate_status_name(enum migrate_status s);

struct migrate_params {
	uint64_t downtime_limit_ms;   /* the most the VM may stay paused at the end */
	uint64_t max_bandwidth;       /* bytes/s while the guest runs; 0: unlimited */
	bool block;                   /* copy the disks too (block_mig.h), else they are shared */
};

/* What query-migrate reports (QEMU's MigrationInfo and its "ram" member). */
struct migrate_info {
	enum migrate_status status;
	uint64_t total_time_ms, setup_time_ms, downtime_ms, expected_downtime_ms;
	uint64_t transferred, remaining, total;   /* bytes */
	uint64_t duplicate, normal, normal_bytes; /* zero pages, data pages sent */
	uint64_t dirty_pages_rate, dirty_sync_count, pages_per_second;
	uint64_t precopy_bytes, downtime_bytes;
	double mbps;
	char error[256];                          /* for "failed" */
};

/* Receives the migration's events, in order, on the main thread. */
struct migrate_listener_ops {
	void (*event)(void *opaque, const struct migrate_event *ev);
};

/* A VM's outgoing migrations (one at a time): made for each run of the VM, from the main
 * thread, with the loop its progress is reported on. NULL when out of memory or eventfds. */
struct migration *migrate_create(struct vm *vm, struct loop *loop,
				 const struct migrate_listener_ops *ops, void *opaque);
/* The VM's run ends: cancels a running migration, waits for its thread, frees it all. */
void migrate_destroy(struct migration *m);

/* Starts migrating the VM to uri. Returns 0, or -errno with one sentence in why: a migration
 * already runs, the URI is wrong or cannot be opened, or the VM has devices whose state cannot
 * be migrated. */
int migrate_start(struct migration *m, const char *uri, const struct migrate_params *params,
		  char *why, size_t why_len);

/* Cancels a running migration: the thread stops, dirty logging ends and the VM runs on (it is
 * resumed if the migration had paused it). Returns at once; the status goes to "cancelled". */
void migrate_cancel(struct migration *m);

/* NULL m: no migration (status MIGRATE_NONE). */
void migrate_query(struct migration *m, struct migrate_info *info);

/* True while the thread holds the VM paused for its last pass: `cont` must not resume it. */
bool migrate_completing(struct migration *m);

/* Hands the queued events to the listener now (they also go from the loop): a setup failure's
 * events come before the command's reply, as QEMU sends them. */
void migrate_dispatch_events(struct migration *m);

#endif
