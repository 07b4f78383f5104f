/* The control plane: a QMP server on a unix socket (QEMU's protocol, so tools that drive QEMU
 * drive kvmkit unchanged) and a human monitor with QEMU's `(qemu) ` prompt on stdio. It lives
 * in main() across guest resets; each run of the VM attaches to it for its lifetime. */
#ifndef KVMKIT_CONTROL_CONTROL_H
#define KVMKIT_CONTROL_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

struct control;
struct loop;
struct vm;
struct vm_hook_ops;

/* At most this many QMP clients at once (QEMU allows one per monitor); a further one is told
 * so in a QMP error and dropped. */
#define CONTROL_MAX_CLIENTS 64
/* The pollfds the control plane polls at most: the listening socket, the clients, stdin,
 * stdout. */
#define CONTROL_MAX_FDS (CONTROL_MAX_CLIENTS + 3)

struct control_options {
	const char *qmp_path;   /* unix socket to listen on, or NULL */
	bool monitor_stdio;     /* the human monitor on stdin/stdout */
	bool start_paused;      /* -S: the guest waits for `cont` (status "prelaunch") */
};

/* Opens the socket (mode 0600) and/or the monitor, served on loop. Prints one sentence and
 * returns NULL on failure. */
struct control *control_open(const struct control_options *opts, struct loop *loop);
/* Sends what is still queued (waiting a bounded time), closes every client, removes the
 * socket file. */
void control_close(struct control *ctl);

/* True when the next run of the VM must start paused: -S before the first `cont`, or a
 * `stop` that was in force when the guest reset. */
bool control_wants_paused(const struct control *ctl);

/* The hooks (vm.h) by which each run of the VM attaches to the control plane (opaque: the
 * struct control): while it runs, commands act on it and live migration may move it; when it
 * stops, a running migration ends and SHUTDOWN or RESET is emitted with the cause, as QEMU
 * does. */
extern const struct vm_hook_ops control_vm_hooks;

/* What migrate-set-parameters stored (QEMU's names and units), read by live migration. */
struct control_migration_params {
	uint64_t downtime_limit_ms;    /* "downtime-limit", QEMU's default 300 */
	uint64_t max_bandwidth;        /* "max-bandwidth", bytes/s, QEMU's default 128 MiB/s */
};
const struct control_migration_params *control_migration_params(const struct control *ctl);

#endif
