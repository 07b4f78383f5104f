/* Live migration in the control plane: QMP's migrate, migrate_cancel and query-migrate (QEMU's
 * MigrationInfo), and the MIGRATION, STOP and RESUME events and run states the migration
 * thread's progress calls for, reported from the main thread. */
#include <stdio.h>
#include <string.h>

#include "control/control_int.h"
#include "migration/migrate.h"
#include "vmm/vm.h"

int control_migrate(struct control *ctl, const char *uri, bool block, struct qmp_error *err)
{
	const struct control_migration_params *p = &ctl->migration;
	struct migrate_params params = { p->downtime_limit_ms, p->max_bandwidth, block };
	char why[256];
	if (ctl->state == RUNSTATE_SHUTDOWN || !ctl->vm) {
		qmp_error_set(err, "GenericError", "the VM is shutting down");
		return -1;
	}
	if (!ctl->mig) {
		qmp_error_set(err, "GenericError", "live migration is unavailable (see kvmkit's "
			      "error output)");
		return -1;
	}
	if (migrate_start(ctl->mig, uri, &params, why, sizeof(why)) < 0) {
		qmp_error_set(err, "GenericError", "%s", why);
		/* the events of a migration that failed at setup, before the reply as QEMU */
		migrate_dispatch_events(ctl->mig);
		return -1;
	}
	return 0;
}

void control_migrate_cancel(struct control *ctl)
{
	if (ctl->mig)
		migrate_cancel(ctl->mig);
}

json_t *control_query_migrate(struct control *ctl)
{
	struct migrate_info in;
	migrate_query(ctl->mig, &in);
	if (in.status == MIGRATE_NONE)
		return json_object(); /* QEMU's empty MigrationInfo before any migration */
	json_t *ret = json_pack("{s:s}", "status", migrate_status_name(in.status));
	if (in.status == MIGRATE_FAILED) {
		json_object_set_new(ret, "error-desc", json_string(in.error));
		return ret;
	}
	if (in.status == MIGRATE_SETUP)
		return ret;
	json_object_set_new(ret, "total-time", json_integer((json_int_t)in.total_time_ms));
	json_object_set_new(ret, "setup-time", json_integer((json_int_t)in.setup_time_ms));
	if (in.status == MIGRATE_COMPLETED)
		json_object_set_new(ret, "downtime", json_integer((json_int_t)in.downtime_ms));
	else
		json_object_set_new(ret, "expected-downtime",
				    json_integer((json_int_t)in.expected_downtime_ms));
	json_t *ram = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
				"s:I,s:I}",
		"transferred", (json_int_t)in.transferred, "remaining", (json_int_t)in.remaining,
		"total", (json_int_t)in.total, "duplicate", (json_int_t)in.duplicate,
		"normal", (json_int_t)in.normal, "normal-bytes", (json_int_t)in.normal_bytes,
		"dirty-pages-rate", (json_int_t)in.dirty_pages_rate, "mbps", in.mbps,
		"dirty-sync-count", (json_int_t)in.dirty_sync_count,
		"pages-per-second", (json_int_t)in.pages_per_second,
		"precopy-bytes", (json_int_t)in.precopy_bytes,
		"downtime-bytes", (json_int_t)in.downtime_bytes, "postcopy-bytes", (json_int_t)0,
		"multifd-bytes", (json_int_t)0, "skipped", (json_int_t)0,
		"page-size", (json_int_t)4096, "postcopy-requests", (json_int_t)0,
		"dirty-sync-missed-zero-copy", (json_int_t)0);
	json_object_set_new(ret, "ram", ram);
	return ret;
}

/* The run state follows the migration as QEMU's does: finish-migrate while the last pass
 * holds the VM, postmigrate once it completed, running again after a failure or cancel. */
static void control_migration_event(void *opaque, const struct migrate_event *ev)
{
	struct control *ctl = opaque;
	switch (ev->kind) {
	case MIGRATE_EVENT_VM_STOPPED:
		if (ctl->state == RUNSTATE_RUNNING) {
			ctl->state = RUNSTATE_FINISH_MIGRATE;
			control_emit_event(ctl, "STOP", NULL);
		}
		break;
	case MIGRATE_EVENT_VM_RESUMED:
		if (ctl->state == RUNSTATE_FINISH_MIGRATE) {
			ctl->state = RUNSTATE_RUNNING;
			control_emit_event(ctl, "RESUME", NULL);
		}
		break;
	case MIGRATE_EVENT_STATUS:
		if (ev->status == MIGRATE_COMPLETED && (ctl->state == RUNSTATE_FINISH_MIGRATE ||
							 ctl->state == RUNSTATE_PAUSED))
			ctl->state = RUNSTATE_POSTMIGRATE;
		control_emit_event(ctl, "MIGRATION", json_pack("{s:s}", "status",
							       migrate_status_name(ev->status)));
		break;
	}
}

static const struct migrate_listener_ops control_migration_listener = {
	.event = control_migration_event,
};

void control_migration_attach(struct control *ctl, struct vm *vm)
{
	ctl->mig = migrate_create(vm, ctl->loop, &control_migration_listener, ctl);
}

void control_migration_detach(struct control *ctl)
{
	migrate_destroy(ctl->mig);
	ctl->mig = NULL;
}

bool control_migration_completing(struct control *ctl)
{
	return migrate_completing(ctl->mig);
}

void control_migration_query(struct control *ctl, struct migrate_info *info)
{
	migrate_query(ctl->mig, info);
}
