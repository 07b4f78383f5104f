/* The QMP command table: each command's arguments (checked as QEMU checks them) and its
 * implementation, and the VM actions (stop, cont, quit, reset, power button) that the QMP and
 * human monitors share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control/control_int.h"
#include "hw/devices.h"
#include "lib/log.h"
#include "migration/migrate.h"
#include "vmm/vm.h"

const char *control_runstate_name(enum control_runstate s)
{
	switch (s) {
	case RUNSTATE_PRELAUNCH: return "prelaunch";
	case RUNSTATE_RUNNING: return "running";
	case RUNSTATE_PAUSED: return "paused";
	case RUNSTATE_SHUTDOWN: return "shutdown";
	case RUNSTATE_FINISH_MIGRATE: return "finish-migrate";
	case RUNSTATE_POSTMIGRATE: return "postmigrate";
	}
	return "running";
}

int control_stop(struct control *ctl, struct qmp_error *err)
{
	if (ctl->state != RUNSTATE_RUNNING)
		return 0; /* as QEMU: nothing to stop, no event */
	if (vm_pause(ctl->vm) < 0) {
		qmp_error_set(err, "GenericError", "the VM is shutting down");
		return -1;
	}
	ctl->state = RUNSTATE_PAUSED;
	control_emit_event(ctl, "STOP", NULL);
	return 0;
}

int control_cont(struct control *ctl, struct qmp_error *err)
{
	if (ctl->state == RUNSTATE_RUNNING)
		return 0;
	if (control_migration_completing(ctl)) { /* its last pass holds the VM: the state is being sent */
		qmp_error_set(err, "GenericError", "the VM is being migrated: it cannot resume "
			      "until the migration completes or is cancelled");
		return -1;
	}
	if (ctl->state == RUNSTATE_SHUTDOWN || vm_resume(ctl->vm) < 0) {
		qmp_error_set(err, "GenericError", "the VM is shutting down");
		return -1;
	}
	ctl->state = RUNSTATE_RUNNING;
	control_emit_event(ctl, "RESUME", NULL);
	return 0;
}

/* Ends the run with a SHUTDOWN (or, for a reset that restarts, RESET) event sent now, before
 * the command's reply, in QEMU's order. */
static void control_end_run(struct control *ctl, enum vm_stop_reason reason, int status,
			    const char *cause)
{
	bool restarts = reason == VM_STOP_RESET && !ctl->vm->cfg->no_reboot;
	control_emit_event(ctl, restarts ? "RESET" : "SHUTDOWN",
			   json_pack("{s:b,s:s}", "guest", false, "reason", cause));
	ctl->stop_event_sent = true;
	vm_stop_because(ctl->vm, reason, status, cause);
}

int control_quit(struct control *ctl, struct qmp_error *err)
{
	(void)err;
	control_end_run(ctl, VM_STOP_EXIT, 0, "host-qmp-quit");
	return 0;
}

int control_system_reset(struct control *ctl, struct qmp_error *err)
{
	(void)err;
	control_end_run(ctl, VM_STOP_RESET, VM_EXIT_STATUS_RESET, "host-qmp-system-reset");
	return 0;
}

int control_system_powerdown(struct control *ctl, struct qmp_error *err)
{
	(void)err;
	/* The ACPI power button: the guest's OS decides what to do (Linux powers off). */
	acpi_pm_power_button(device_find(&ctl->vm->devices, &acpi_pm_ops, 0));
	control_emit_event(ctl, "POWERDOWN", NULL);
	return 0;
}

static json_t *qmp_capabilities(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)ctl;
	size_t i;
	json_t *cap;
	json_array_foreach(json_object_get(args, "enable"), i, cap) {
		qmp_error_set(err, "GenericError", "Capability '%s' not available",
			      json_is_string(cap) ? json_string_value(cap) : "?");
		return NULL;
	}
	return json_object();
}

static json_t *qmp_query_version(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)ctl, (void)args, (void)err;
	return qmp_version_object();
}

static json_t *qmp_query_status(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args, (void)err;
	return json_pack("{s:s,s:b,s:b}", "status", control_runstate_name(ctl->state),
			 "singlestep", false, "running", ctl->state == RUNSTATE_RUNNING);
}

static json_t *qmp_query_kvm(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)ctl, (void)args, (void)err;
	return json_pack("{s:b,s:b}", "enabled", true, "present", true);
}

static json_t *qmp_query_cpus_fast(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args, (void)err;
	json_t *list = json_array();
	struct vm *vm = ctl->vm;
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++) {
		char qom[64];
		snprintf(qom, sizeof(qom), "/machine/unattached/device[%u]", i);
		int tid = __atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_ACQUIRE);
		/* One socket of single-thread cores (arch/x86/cpuid.c's topology). */
		json_array_append_new(list, json_pack("{s:i,s:{s:i,s:i,s:i},s:s,s:i,s:s}",
			"thread-id", tid, "props", "core-id", (int)i, "thread-id", 0, "socket-id", 0,
			"qom-path", qom, "cpu-index", (int)i, "target", "x86_64"));
	}
	return list;
}

/* The size the guest sees: a raw file's size, or a qcow2 header's (big-endian at 24). */
static uint64_t qmp_disk_virtual_size(const struct vm_disk *d, uint64_t file_size)
{
	if (!d->block.format || strcmp(d->block.format, "qcow2") != 0)
		return file_size;
	uint8_t hdr[32];
	FILE *f = fopen(d->block.path, "rb");
	uint64_t size = 0;
	if (f && fread(hdr, 1, sizeof(hdr), f) == sizeof(hdr))
		for (int i = 24; i < 32; i++)
			size = size << 8 | hdr[i];
	if (f)
		fclose(f);
	return size;
}

static json_t *qmp_query_block(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args, (void)err;
	const struct vm_config *cfg = ctl->vm->cfg;
	json_t *list = json_array();
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		const struct vm_disk *d = &cfg->disks[i];
		const char *fmt = d->block.format ? d->block.format : "raw";
		struct stat st;
		uint64_t file_size = 0, actual = 0;
		if (stat(d->block.path, &st) == 0) {
			file_size = (uint64_t)st.st_size;
			actual = (uint64_t)st.st_blocks * 512;
		}
		char device[32], node[32], qdev[80];
		/* QEMU's names for -drive if=virtio: virtio0, virtio1, ... */
		snprintf(device, sizeof(device), "virtio%u", i);
		snprintf(node, sizeof(node), "#block%u", 100 + i);
		snprintf(qdev, sizeof(qdev), "/machine/peripheral-anon/device[%u]/virtio-backend", i);
		json_t *image = json_pack("{s:I,s:s,s:s,s:I,s:b}", "virtual-size",
			(json_int_t)qmp_disk_virtual_size(d, file_size), "filename", d->block.path,
			"format", fmt, "actual-size", (json_int_t)actual, "dirty-flag", false);
		json_t *cache = json_pack("{s:b,s:b,s:b}", "no-flush",
			d->block.cache == BLOCK_CACHE_UNSAFE, "direct", d->block.cache == BLOCK_CACHE_NONE,
			"writeback", true);
		json_t *inserted = json_pack(
			"{s:i,s:s,s:o,s:i,s:b,s:s,s:i,s:s,s:i,s:i,s:i,s:b,s:i,s:i,s:o,s:s}",
			"iops_rd", 0, "detect_zeroes", "off", "image", image, "iops_wr", 0,
			"ro", d->block.readonly, "node-name", node, "backing_file_depth", 0,
			"drv", fmt, "iops", 0, "bps_wr", 0, "write_threshold", 0, "encrypted", false,
			"bps", 0, "bps_rd", 0, "cache", cache, "file", d->block.path);
		json_array_append_new(list, json_pack("{s:s,s:s,s:b,s:b,s:o,s:s,s:s}",
			"io-status", "ok", "device", device, "locked", false, "removable", false,
			"inserted", inserted, "qdev", qdev, "type", "unknown"));
	}
	return list;
}

static json_t *qmp_simple(int (*action)(struct control *, struct qmp_error *),
			  struct control *ctl, struct qmp_error *err)
{
	return action(ctl, err) == 0 ? json_object() : NULL;
}

static json_t *qmp_stop(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args;
	return qmp_simple(control_stop, ctl, err);
}

static json_t *qmp_cont(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args;
	return qmp_simple(control_cont, ctl, err);
}

static json_t *qmp_quit(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args;
	return qmp_simple(control_quit, ctl, err);
}

static json_t *qmp_system_reset(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args;
	return qmp_simple(control_system_reset, ctl, err);
}

static json_t *qmp_system_powerdown(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args;
	return qmp_simple(control_system_powerdown, ctl, err);
}

static json_t *qmp_human_monitor_command(struct control *ctl, json_t *args,
					 struct qmp_error *err)
{
	json_t *cpu = json_object_get(args, "cpu-index");
	if (cpu && (json_integer_value(cpu) < 0 ||
		    json_integer_value(cpu) >= (json_int_t)ctl->vm->ncpus)) {
		qmp_error_set(err, "GenericError", "Parameter 'cpu-index' is out of range");
		return NULL;
	}
	char *out = hmp_run(ctl, json_string_value(json_object_get(args, "command-line")),
			    cpu ? (int)json_integer_value(cpu) : 0);
	/* QEMU's monitor ends lines with "\r\n". */
	struct outbuf crlf = { 0 };
	for (const char *p = out; p && *p; p++) {
		if (*p == '\n')
			outbuf_append(&crlf, "\r", 1);
		outbuf_append(&crlf, p, 1);
	}
	free(out);
	json_t *ret = json_stringn(crlf.data ? crlf.data : "", crlf.len);
	outbuf_free(&crlf);
	return ret;
}

static json_t *qmp_migrate(struct control *ctl, json_t *args, struct qmp_error *err)
{
	if (json_is_true(json_object_get(args, "inc"))) {
		qmp_error_set(err, "GenericError", "incremental block migration (shared backing "
			      "files) is not supported: use blk alone, or shared storage");
		return NULL;
	}
	const char *uri = json_string_value(json_object_get(args, "uri"));
	bool blk = json_is_true(json_object_get(args, "blk"));
	return control_migrate(ctl, uri, blk, err) == 0 ? json_object() : NULL;
}

static json_t *qmp_migrate_cancel(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args, (void)err;
	control_migrate_cancel(ctl);
	return json_object();
}

static json_t *qmp_query_migrate(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)args, (void)err;
	return control_query_migrate(ctl);
}

static json_t *qmp_migrate_set_parameters(struct control *ctl, json_t *args,
					  struct qmp_error *err)
{
	json_t *dl = json_object_get(args, "downtime-limit");
	json_t *bw = json_object_get(args, "max-bandwidth");
	/* QEMU's bound for downtime-limit: 2000 seconds. */
	if (dl && (json_integer_value(dl) < 0 || json_integer_value(dl) > 2000000)) {
		qmp_error_set(err, "GenericError", "Parameter 'downtime_limit' expects an integer "
			      "in the range of 0 to 2000000 milliseconds");
		return NULL;
	}
	if (bw && json_integer_value(bw) < 0) {
		qmp_error_set(err, "GenericError", "Parameter 'max_bandwidth' expects a "
			      "non-negative number of bytes per second");
		return NULL;
	}
	if (dl)
		ctl->migration.downtime_limit_ms = (uint64_t)json_integer_value(dl);
	if (bw)
		ctl->migration.max_bandwidth = (uint64_t)json_integer_value(bw);
	return json_object();
}

static json_t *qmp_query_migrate_parameters(struct control *ctl, json_t *args,
					    struct qmp_error *err)
{
	(void)args, (void)err;
	return json_pack("{s:I,s:I}", "downtime-limit",
			 (json_int_t)ctl->migration.downtime_limit_ms, "max-bandwidth",
			 (json_int_t)ctl->migration.max_bandwidth);
}

enum qmp_arg_type { ARG_STRING, ARG_INT, ARG_BOOL, ARG_ARRAY };

struct qmp_arg {
	const char *name;
	enum qmp_arg_type type;
	bool required;
};

struct qmp_command {
	const char *name;
	json_t *(*fn)(struct control *ctl, json_t *args, struct qmp_error *err);
	struct qmp_arg args[6];   /* ends with a NULL name */
};

static json_t *qmp_query_commands(struct control *ctl, json_t *args, struct qmp_error *err);

static const struct qmp_command qmp_commands[] = {
	{ "qmp_capabilities", qmp_capabilities, { { "enable", ARG_ARRAY, false } } },
	{ "query-version", qmp_query_version, { { 0 } } },
	{ "query-commands", qmp_query_commands, { { 0 } } },
	{ "query-status", qmp_query_status, { { 0 } } },
	{ "query-kvm", qmp_query_kvm, { { 0 } } },
	{ "query-cpus-fast", qmp_query_cpus_fast, { { 0 } } },
	{ "query-block", qmp_query_block, { { 0 } } },
	{ "stop", qmp_stop, { { 0 } } },
	{ "cont", qmp_cont, { { 0 } } },
	{ "system_powerdown", qmp_system_powerdown, { { 0 } } },
	{ "system_reset", qmp_system_reset, { { 0 } } },
	{ "quit", qmp_quit, { { 0 } } },
	{ "human-monitor-command", qmp_human_monitor_command,
	  { { "command-line", ARG_STRING, true }, { "cpu-index", ARG_INT, false } } },
	/* Live migration (migration/migrate.h, control/migration.c). */
	{ "migrate", qmp_migrate, { { "uri", ARG_STRING, true }, { "blk", ARG_BOOL, false },
				    { "inc", ARG_BOOL, false }, { "detach", ARG_BOOL, false },
				    { "resume", ARG_BOOL, false } } },
	{ "migrate_cancel", qmp_migrate_cancel, { { 0 } } },
	{ "query-migrate", qmp_query_migrate, { { 0 } } },
	{ "migrate-set-parameters", qmp_migrate_set_parameters,
	  { { "downtime-limit", ARG_INT, false }, { "max-bandwidth", ARG_INT, false } } },
	{ "query-migrate-parameters", qmp_query_migrate_parameters, { { 0 } } },
};

#define QMP_NCOMMANDS (sizeof(qmp_commands) / sizeof(qmp_commands[0]))

static json_t *qmp_query_commands(struct control *ctl, json_t *args, struct qmp_error *err)
{
	(void)ctl, (void)args, (void)err;
	json_t *list = json_array();
	for (size_t i = 0; i < QMP_NCOMMANDS; i++)
		json_array_append_new(list, json_pack("{s:s}", "name", qmp_commands[i].name));
	return list;
}

static bool qmp_arg_type_ok(const json_t *v, enum qmp_arg_type t)
{
	switch (t) {
	case ARG_STRING: return json_is_string(v);
	case ARG_INT: return json_is_integer(v);
	case ARG_BOOL: return json_is_boolean(v);
	case ARG_ARRAY: return json_is_array(v);
	}
	return false;
}

/* QEMU's argument errors: unexpected, missing, or of the wrong type. */
static int qmp_check_args(const struct qmp_command *cmd, json_t *args, struct qmp_error *err)
{
	static const char *const type_names[] = { "string", "integer", "boolean", "array" };
	const char *key;
	json_t *val;
	json_object_foreach(args, key, val) {
		const struct qmp_arg *a = cmd->args;
		while (a->name && strcmp(a->name, key) != 0)
			a++;
		if (!a->name) {
			qmp_error_set(err, "GenericError", "Parameter '%s' is unexpected", key);
			return -1;
		}
		if (!qmp_arg_type_ok(val, a->type)) {
			qmp_error_set(err, "GenericError", "Invalid parameter type for '%s', expected: %s",
				      key, type_names[a->type]);
			return -1;
		}
	}
	for (const struct qmp_arg *a = cmd->args; a->name; a++) {
		if (a->required && !json_object_get(args, a->name)) {
			qmp_error_set(err, "GenericError", "Parameter '%s' is missing", a->name);
			return -1;
		}
	}
	return 0;
}

json_t *qmp_dispatch(struct control *ctl, const char *name, json_t *args, struct qmp_error *err)
{
	for (size_t i = 0; i < QMP_NCOMMANDS; i++) {
		const struct qmp_command *cmd = &qmp_commands[i];
		if (strcmp(cmd->name, name) != 0)
			continue;
		json_t *empty = NULL;
		if (!args)
			args = empty = json_object();
		json_t *ret = qmp_check_args(cmd, args, err) == 0 ? cmd->fn(ctl, args, err) : NULL;
		json_decref(empty);
		return ret;
	}
	qmp_error_set(err, "CommandNotFound", "The command %s has not been found", name);
	return NULL;
}
