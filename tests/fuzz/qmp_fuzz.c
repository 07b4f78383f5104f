/* qmp_fuzz: a libFuzzer target for the QMP request path: one client's bytes through the
 * stream splitter, the JSON parser, the protocol checks, capabilities negotiation, the command
 * table's argument checks and the commands themselves (human-monitor-command's line parser
 * too), on a VM with no vCPUs. Every reply must be one JSON object per "\r\n" line. The VM,
 * migration and snapshot calls are stand-ins that do nothing (a fuzzed "migrate exec:..." or
 * "savevm DIR" must not run anything). Built and run by tests/fuzz/qmp_run.sh. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* qmp.c's client handling is static (the socket loop is its only caller): the target is
 * compiled together with it to reach qmp_handle_text without a socket. */
#include "../../src/control/qmp.c"

#include "hw/devices.h"
#include "migration/migrate.h"
#include "migration/snapshot.h"

/* Stand-ins for the rest of kvmkit. */
bool log_verbose;
void log_start_clock(void) {}
void log_error(const char *fmt, ...) { (void)fmt; }
void log_warn(const char *fmt, ...) { (void)fmt; }
void log_debug(const char *fmt, ...) { (void)fmt; }
static bool fuzz_paused;
int vm_pause(struct vm *vm) { (void)vm; fuzz_paused = true; return 0; }
int vm_resume(struct vm *vm) { (void)vm; fuzz_paused = false; return 0; }
bool vm_is_paused(struct vm *vm) { (void)vm; return fuzz_paused; }
int vm_with_vcpus_parked(struct vm *vm, void (*fn)(struct vm *vm, void *opaque), void *opaque)
{
	fn(vm, opaque); /* the VM has no vCPUs: nothing to read */
	return 0;
}
void vm_stop_because(struct vm *vm, enum vm_stop_reason reason, int status, const char *cause)
{
	(void)vm, (void)reason, (void)status, (void)cause;
}
void hmp_format_registers(struct vcpu *v, struct outbuf *out) { (void)v, (void)out; abort(); }
/* The VM has no devices: system_powerdown finds no ACPI PM to press the button of. */
const struct device_ops acpi_pm_ops = { .name = "ACPI PM" };
void *device_find(const struct device_registry *r, const struct device_ops *ops, uint32_t i)
{
	(void)r, (void)ops, (void)i;
	return NULL;
}
void acpi_pm_power_button(struct acpi_pm *pm) { (void)pm; }
int snapshot_save(struct vm *vm, const char *dir) { (void)vm, (void)dir; return -EPERM; }
const char *migrate_status_name(enum migrate_status s) { (void)s; return "none"; }
int migrate_start(struct migration *m, const char *uri, const struct migrate_params *params,
		  char *why, size_t why_len)
{
	(void)m, (void)uri, (void)params;
	snprintf(why, why_len, "not in the fuzz target");
	return -EPERM;
}
struct migration *migrate_create(struct vm *vm, struct loop *loop,
				 const struct migrate_listener_ops *ops, void *opaque)
{
	(void)vm, (void)loop, (void)ops, (void)opaque;
	return NULL;
}
void migrate_destroy(struct migration *m) { (void)m; }
void migrate_dispatch_events(struct migration *m) { (void)m; }
void migrate_cancel(struct migration *m) { (void)m; }
void migrate_query(struct migration *m, struct migrate_info *info)
{
	(void)m;
	memset(info, 0, sizeof(*info));
}
bool migrate_completing(struct migration *m) { (void)m; return false; }
/* No main loop: the client is fed directly. */
int loop_add_source(struct loop *l, const struct loop_source_ops *ops, int max_fds, void *opaque)
{
	(void)l, (void)ops, (void)max_fds, (void)opaque;
	return 0;
}
void loop_remove_source(struct loop *l, const struct loop_source_ops *ops, void *opaque)
{
	(void)l, (void)ops, (void)opaque;
}

/* Each output line must be a JSON object (a reply or an event). */
static void qmp_fuzz_check_output(const struct outbuf *o)
{
	if (!o->len)
		return;
	const char *p = o->data, *end = o->data + o->len;
	while (p < end) {
		const char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!nl)
			abort(); /* a message without its line end */
		json_t *msg = json_loadb(p, (size_t)(nl - p), 0, NULL);
		if (!json_is_object(msg))
			abort();
		json_decref(msg);
		p = nl + 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm_config cfg = { .ndisks = 1 };
	static struct vm vm = { .cfg = &cfg };
	cfg.disks[0].block.path = "/nonexistent/kvmkit-qmp-fuzz.qcow2";
	cfg.disks[0].block.format = "qcow2";
	fuzz_paused = false;
	struct control_options opts = { 0 };
	struct control *ctl = control_open(&opts, NULL);
	struct qmp_client *c = calloc(1, sizeof(*c));
	if (!ctl || !c)
		abort();
	c->fd = -1;
	ctl->clients[0] = c;
	ctl->vm = &vm;
	struct qmp_reader rd = { ctl, c };
	/* In pieces, as reads deliver them: requests cross the pieces' boundaries. */
	size_t piece = 1 + size % 61;
	for (size_t off = 0; off < size && !c->dead; off += piece)
		json_stream_feed(&c->in, data + off, size - off < piece ? size - off : piece,
				 qmp_handle_text, &rd);
	qmp_fuzz_check_output(&c->out);
	ctl->clients[0] = NULL;
	json_stream_free(&c->in);
	outbuf_free(&c->out);
	free(c);
	control_close(ctl);
	return 0;
}
