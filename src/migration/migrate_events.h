/* Live migration's events (status changes, the VM paused or resumed by the migration thread),
 * queued in order for the main thread to report. */
#ifndef KVMKIT_MIGRATION_MIGRATE_EVENTS_H
#define KVMKIT_MIGRATION_MIGRATE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* QEMU's MigrationStatus values that kvmkit goes through. */
enum migrate_status {
	MIGRATE_NONE,        /* no migration yet: query-migrate returns {} */
	MIGRATE_SETUP,
	MIGRATE_ACTIVE,
	MIGRATE_CANCELLING,
	MIGRATE_COMPLETED,
	MIGRATE_FAILED,
	MIGRATE_CANCELLED,
};

/* What happened, in order, for the main thread to report (QMP events, run state). */
enum migrate_event_kind {
	MIGRATE_EVENT_STATUS,      /* the status changed to .status */
	MIGRATE_EVENT_VM_STOPPED,  /* the thread paused the VM for the last pass */
	MIGRATE_EVENT_VM_RESUMED,  /* ... and resumed it after a failure or cancel */
};
struct migrate_event {
	enum migrate_event_kind kind;
	enum migrate_status status;
};

/* A migration posts a handful of events; this many unread means the reader is gone. */
#define MIGRATE_EVENTS_CAP 4096

/* A FIFO; zero-initialised is empty. Not locked: its owner locks. */
struct migrate_events {
	struct migrate_event *ring;
	size_t cap, head, len;
	uint64_t dropped;          /* events lost to the cap (or to a failed allocation) */
};

/* Appends ev; at the cap the oldest event is dropped (logged once). 0 or -ENOMEM (logged). */
int migrate_events_post(struct migrate_events *q, const struct migrate_event *ev);
/* Takes the oldest event; false when there is none. */
bool migrate_events_next(struct migrate_events *q, struct migrate_event *ev);
void migrate_events_free(struct migrate_events *q);

#endif
