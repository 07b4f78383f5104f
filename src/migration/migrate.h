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

/* Starts migrating vm to uri (from the main thread). Returns 0, or -errno with one sentence in
 * why: a migration already runs, the URI is wrong or cannot be opened, or the VM has devices
 * whose state cannot be migrated. */
int migrate_start(struct vm *vm, const char *uri, const struct migrate_params *params,
		  char *why, size_t why_len);

/* Cancels a running migration: the thread stops, dirty logging ends and the VM runs on (it is
 * resumed if the migration had paused it). Returns at once; the status goes to "cancelled". */
void migrate_cancel(void);

void migrate_query(struct migrate_info *info);

/* True while the thread holds the VM paused for its last pass: `cont` must not resume it. */
bool migrate_completing(void);

/* An eventfd, readable while migrate_next_event has something; -1 before any migration. */
int migrate_notify_fd(void);
bool migrate_next_event(struct migrate_event *ev);

/* The VM's run ends: cancels a running migration and waits for its thread. */
void migrate_vm_stopped(struct vm *vm);

#endif
