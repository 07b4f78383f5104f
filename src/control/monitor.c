/* The human monitor: QEMU's HMP commands (info status/cpus/registers/migrate/..., stop, cont,
 * quit, system_reset, system_powerdown, migrate, migrate_cancel, savevm), run for QMP's human-monitor-command and for the `(qemu) `
 * prompt on stdin/stdout (--monitor stdio). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/control_int.h"
#include "migration/migrate.h"
#include "migration/snapshot.h"
#include "vmm/vm.h"

#define MONITOR_LINE_MAX 4096

struct monitor {
	char line[MONITOR_LINE_MAX];
	size_t len;
	bool overlong;        /* the current line outgrew the buffer: refused at its end */
	bool eof;             /* stdin closed: the monitor stops reading, the VM goes on */
};

struct hmp_registers_request {
	struct outbuf *out;
	int cpu;              /* -1: all */
};

static void hmp_registers_parked(struct vm *vm, void *opaque)
{
	struct hmp_registers_request *req = opaque;
	for (uint32_t i = 0; i < vm->ncpus; i++)
		if (req->cpu < 0 || (uint32_t)req->cpu == i)
			hmp_format_registers(&vm->vcpus[i], req->out);
}

/* QEMU's `info migrate` lines for what query-migrate reports. */
static void hmp_info_migrate(struct control *ctl, struct outbuf *o)
{
	struct migrate_info in;
	control_migration_query(ctl, &in);
	if (in.status == MIGRATE_NONE)
		return;
	outbuf_printf(o, "Migration status: %s\n", migrate_status_name(in.status));
	if (in.status == MIGRATE_FAILED) {
		outbuf_printf(o, "error description: %s\n", in.error);
		return;
	}
	outbuf_printf(o, "total time: %llu ms\n", (unsigned long long)in.total_time_ms);
	if (in.status == MIGRATE_COMPLETED)
		outbuf_printf(o, "downtime: %llu ms\n", (unsigned long long)in.downtime_ms);
	else
		outbuf_printf(o, "expected downtime: %llu ms\n",
			      (unsigned long long)in.expected_downtime_ms);
	outbuf_printf(o, "setup: %llu ms\ntransferred ram: %llu kbytes\nthroughput: %.2f mbps\n"
		      "remaining ram: %llu kbytes\ntotal ram: %llu kbytes\nduplicate: %llu pages\n"
		      "normal: %llu pages\nnormal bytes: %llu kbytes\ndirty sync count: %llu\n",
		      (unsigned long long)in.setup_time_ms, (unsigned long long)in.transferred >> 10,
		      in.mbps, (unsigned long long)in.remaining >> 10,
		      (unsigned long long)in.total >> 10, (unsigned long long)in.duplicate,
		      (unsigned long long)in.normal, (unsigned long long)in.normal_bytes >> 10,
		      (unsigned long long)in.dirty_sync_count);
}

/* savevm DIR: the VM saved as `kvmkit run --restore DIR` resumes it (a snapshot directory, not
 * QEMU's internal snapshot in a qcow2 image: a bare NAME is the directory NAME in kvmkit's
 * working directory). The guest is paused meanwhile, as QEMU's savevm pauses it. */
static void hmp_savevm(struct control *ctl, const char *dir, struct outbuf *o)
{
	if (!dir) {
		outbuf_printf(o, "Error: savevm needs a directory: savevm DIR (then kvmkit run "
			      "--restore DIR)\n");
		return;
	}
	struct migrate_info in;
	control_migration_query(ctl, &in);
	if (in.status == MIGRATE_SETUP || in.status == MIGRATE_ACTIVE ||
	    in.status == MIGRATE_CANCELLING) {
		outbuf_printf(o, "Error: a migration is in progress\n");
		return;
	}
	bool was_paused = vm_is_paused(ctl->vm);
	if (vm_pause(ctl->vm) < 0) {
		outbuf_printf(o, "Error: the VM is shutting down\n");
		return;
	}
	if (snapshot_save(ctl->vm, dir) < 0)
		outbuf_printf(o, "Error: the snapshot could not be saved to %s (see kvmkit's "
			      "error output)\n", dir);
	if (!was_paused)
		vm_resume(ctl->vm);
}

static void hmp_info(struct control *ctl, const char *what, const char *arg, int cpu,
		     struct outbuf *o)
{
	struct vm *vm = ctl->vm;
	if (strcmp(what, "status") == 0) {
		/* QEMU: "paused" plus the reason when it is not a plain stop. */
		bool running = ctl->state == RUNSTATE_RUNNING;
		outbuf_printf(o, "VM status: %s", running ? "running" : "paused");
		if (!running && ctl->state != RUNSTATE_PAUSED)
			outbuf_printf(o, " (%s)", control_runstate_name(ctl->state));
		outbuf_printf(o, "\n");
	} else if (strcmp(what, "cpus") == 0) {
		for (uint32_t i = 0; i < vm->ncpus; i++)
			outbuf_printf(o, "%c CPU #%u: thread_id=%d\n", (int)i == cpu ? '*' : ' ', i,
				      __atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_ACQUIRE));
	} else if (strcmp(what, "registers") == 0) {
		struct hmp_registers_request req = { o, arg && strcmp(arg, "-a") == 0 ? -1 : cpu };
		if (vm_with_vcpus_parked(vm, hmp_registers_parked, &req) < 0)
			outbuf_printf(o, "the VM is shutting down\n");
	} else if (strcmp(what, "version") == 0) {
		outbuf_printf(o, "%d.%d.%d (kvmkit %s)\n", CONTROL_QEMU_MAJOR, CONTROL_QEMU_MINOR,
			      CONTROL_QEMU_MICRO, KVMKIT_VERSION);
	} else if (strcmp(what, "kvm") == 0) {
		outbuf_printf(o, "kvm support: enabled\n");
	} else if (strcmp(what, "migrate") == 0) {
		hmp_info_migrate(ctl, o);
	} else if (strcmp(what, "block") == 0) {
		for (unsigned i = 0; i < vm->cfg->ndisks; i++) {
			const struct block_options *b = &vm->cfg->disks[i].block;
			outbuf_printf(o, "virtio%u: %s (%s%s)\n", i, b->path,
				      b->format ? b->format : "raw", b->readonly ? ", read-only" : "");
		}
	} else {
		outbuf_printf(o, "info: unknown subcommand '%s' (try 'help info')\n", what);
	}
}

static const char hmp_help[] =
	"cont|c -- resume emulation\n"
	"help|? [info] -- show the commands\n"
	"info status|cpus|registers [-a]|version|kvm|block|migrate -- show the state of the VM\n"
	"loadvm tag -- restore a VM snapshot (not supported: kvmkit run --restore DIR)\n"
	"migrate [-d] [-b] uri -- migrate to URI (tcp:HOST:PORT, unix:PATH, exec:CMD,\n"
	"    file:PATH), -b with the disks' content; returns at once, as with -d: follow it\n"
	"    with info migrate\n"
	"migrate_cancel -- cancel the current migration\n"
	"quit|q -- quit kvmkit\n"
	"savevm DIR -- save the VM to the directory DIR (kvmkit run --restore DIR resumes it)\n"
	"stop -- stop emulation\n"
	"system_powerdown -- send the ACPI power button event\n"
	"system_reset -- reset the system\n";

char *hmp_run(struct control *ctl, const char *line, int cpu)
{
	struct outbuf o = { 0 };
	char *copy = strdup(line ? line : "");
	char *save = NULL;
	const char *cmd = copy ? strtok_r(copy, " \t\r\n", &save) : NULL;
	const char *arg = cmd ? strtok_r(NULL, " \t\r\n", &save) : NULL;
	const char *arg2 = arg ? strtok_r(NULL, " \t\r\n", &save) : NULL;
	struct qmp_error err = { 0 };
	int r = 0;
	if (!cmd) {
		/* an empty line does nothing */
	} else if (strcmp(cmd, "help") == 0 || strcmp(cmd, "?") == 0) {
		outbuf_printf(&o, "%s", hmp_help);
	} else if (strcmp(cmd, "info") == 0) {
		if (arg)
			hmp_info(ctl, arg, arg2, cpu, &o);
		else
			outbuf_printf(&o, "info status|cpus|registers|version|kvm|block|migrate\n");
	} else if (strcmp(cmd, "stop") == 0) {
		r = control_stop(ctl, &err);
	} else if (strcmp(cmd, "cont") == 0 || strcmp(cmd, "c") == 0) {
		r = control_cont(ctl, &err);
	} else if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "q") == 0) {
		r = control_quit(ctl, &err);
	} else if (strcmp(cmd, "system_reset") == 0) {
		r = control_system_reset(ctl, &err);
	} else if (strcmp(cmd, "system_powerdown") == 0) {
		r = control_system_powerdown(ctl, &err);
	} else if (strcmp(cmd, "migrate") == 0) {
		/* QEMU's flags: -d (kvmkit's migrate never waits anyway) and -b (copy the disks) */
		const char *words[3] = { arg, arg2, strtok_r(NULL, " \t\r\n", &save) };
		const char *uri = NULL;
		bool block = false;
		for (int i = 0; i < 3 && words[i] && !uri; i++) {
			if (strcmp(words[i], "-b") == 0)
				block = true;
			else if (strcmp(words[i], "-d") != 0)
				uri = words[i];
		}
		if (!uri)
			outbuf_printf(&o, "Error: migrate needs a URI\n");
		else
			r = control_migrate(ctl, uri, block, &err);
	} else if (strcmp(cmd, "migrate_cancel") == 0) {
		control_migrate_cancel(ctl);
	} else if (strcmp(cmd, "savevm") == 0) {
		hmp_savevm(ctl, arg, &o);
	} else if (strcmp(cmd, "loadvm") == 0) {
		outbuf_printf(&o, "Error: loadvm is not supported: start kvmkit run --restore DIR\n");
	} else {
		outbuf_printf(&o, "unknown command: '%s'\n", cmd);
	}
	if (r < 0)
		outbuf_printf(&o, "Error: %s\n", err.desc);
	free(copy);
	if (outbuf_append(&o, "", 1) < 0 || !o.data) /* the terminating NUL */
		return strdup("");
	return o.data;
}

static void monitor_write(const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t w = write(STDOUT_FILENO, s, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* stdout gone: the monitor goes on without output */
		s += w;
		len -= (size_t)w;
	}
}

struct monitor *monitor_open(void)
{
	struct monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	char banner[128];
	snprintf(banner, sizeof(banner), "kvmkit %s monitor - type 'help' for more information\n"
		 "(qemu) ", KVMKIT_VERSION);
	monitor_write(banner);
	return m;
}

void monitor_close(struct monitor *m)
{
	free(m);
}

int monitor_poll_fds(struct monitor *m, struct pollfd *pfds, int max)
{
	if (m->eof || max < 1)
		return 0;
	pfds[0] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
	return 1;
}

static void monitor_run_line(struct monitor *m, struct control *ctl)
{
	if (m->overlong) {
		monitor_write("Error: the command line is too long\n");
	} else {
		m->line[m->len] = '\0';
		char *out = hmp_run(ctl, m->line, 0);
		monitor_write(out);
		free(out);
	}
	m->len = 0;
	m->overlong = false;
	if (ctl->state != RUNSTATE_SHUTDOWN) /* no prompt after quit */
		monitor_write("(qemu) ");
}

void monitor_handle(struct monitor *m, struct control *ctl, const struct pollfd *pfds, int n)
{
	bool ready = false;
	for (int i = 0; i < n; i++)
		ready |= pfds[i].fd == STDIN_FILENO && pfds[i].revents;
	if (!ready || m->eof)
		return;
	char buf[1024];
	ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
	if (r <= 0) {
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			m->eof = true;
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] == '\n') {
			monitor_run_line(m, ctl);
		} else if (m->len + 1 < sizeof(m->line)) {
			m->line[m->len++] = buf[i];
		} else {
			m->overlong = true;
		}
	}
}
