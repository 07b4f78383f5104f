/* Inside the control plane: the QMP server's state shared by qmp.c (sockets, protocol,
 * events), qmp_commands.c (the command table), monitor.c (the human monitor) and client_io.c
 * (a client's input and output buffers). */
#ifndef KVMKIT_CONTROL_CONTROL_INT_H
#define KVMKIT_CONTROL_CONTROL_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/control.h"

/* The QEMU release whose QMP kvmkit follows: reported in the greeting and query-version, so
 * tools that pick features by QEMU version pick those kvmkit's replies are shaped for. */
#define CONTROL_QEMU_MAJOR 7
#define CONTROL_QEMU_MINOR 2
#define CONTROL_QEMU_MICRO 0

/* A request larger than this is refused with a QMP error (and skipped up to its end). */
#define CONTROL_MAX_REQUEST (1u << 20)
#define CONTROL_MAX_NESTING 1024
/* A client whose unsent replies and events exceed this is dropped (a reader that stopped). */
#define CONTROL_MAX_OUTPUT (4u << 20)
/* Above this much unsent output a client's requests are not read until it catches up. */
#define CONTROL_OUTPUT_HIGH_WATER (256u << 10)

/* Splits a byte stream into JSON texts, as QEMU's streaming parser does: a text ends where its
 * outermost braces or brackets close (or, for a bare scalar, at whitespace). */
struct json_stream {
	char *buf;
	size_t len, cap;
	int depth;
	bool in_string, escape;
	bool skipping;        /* an oversized or too deep text: dropped until it ends */
};
/* Receives each complete text, or (text NULL) a framing error's description. */
typedef void (*json_stream_fn)(void *opaque, const char *text, size_t len, const char *error);
void json_stream_feed(struct json_stream *s, const uint8_t *data, size_t n, json_stream_fn fn,
		      void *opaque);
void json_stream_free(struct json_stream *s);

/* Output waiting for a non-blocking fd. */
struct outbuf {
	char *data;
	size_t len, cap;
};
/* Returns 0, or -ENOBUFS when the buffer would exceed CONTROL_MAX_OUTPUT. */
int outbuf_append(struct outbuf *o, const char *s, size_t n);
int outbuf_printf(struct outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes what the fd takes now. Returns 0, or -errno when the peer is gone. */
int outbuf_flush(struct outbuf *o, int fd);
void outbuf_free(struct outbuf *o);

struct qmp_client {
	int fd;
	bool negotiated;      /* qmp_capabilities done: commands and events allowed */
	bool dead;            /* closed at the end of this round */
	struct json_stream in;
	struct outbuf out;
};

/* QEMU's RunState names for what query-status reports. */
enum control_runstate {
	RUNSTATE_PRELAUNCH,   /* -S, before the first cont */
	RUNSTATE_RUNNING,
	RUNSTATE_PAUSED,
	RUNSTATE_SHUTDOWN,    /* the VM is on its way out */
	RUNSTATE_FINISH_MIGRATE, /* paused by live migration for its last pass */
	RUNSTATE_POSTMIGRATE, /* paused after a completed migration (cont resumes it) */
};

struct control {
	int listen_fd;        /* -1: no QMP socket */
	char *path;
	struct qmp_client *clients[CONTROL_MAX_CLIENTS];
	struct monitor *monitor;       /* the stdio human monitor, or NULL */
	struct vm *vm;                 /* the VM of the current run, NULL between runs */
	enum control_runstate state;
	bool stop_event_sent;          /* SHUTDOWN/RESET of the current stop already emitted */
	struct control_migration_params migration;
	struct migration *mig;         /* the current run's live migration, or NULL */
	struct loop *loop;             /* the main loop the sockets and migration register on */
	bool registered;               /* the sockets are a source of loop */
};

/* A command's failure: QEMU's ErrorClass name and a sentence. */
struct qmp_error {
	const char *cls;
	char desc[256];
};
void qmp_error_set(struct qmp_error *err, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Runs one command (after the protocol checks) and returns its "return" value (a new
 * reference), or NULL with *err filled. */
json_t *qmp_dispatch(struct control *ctl, const char *name, json_t *args, struct qmp_error *err);
/* {"qemu": {"micro", "minor", "major"}, "package"}: the greeting's and query-version's. */
json_t *qmp_version_object(void);

/* Sends an event to every client past negotiation. data may be NULL; it is consumed. */
void control_emit_event(struct control *ctl, const char *name, json_t *data);

/* The actions both monitors offer; each returns 0 or fills err. */
int control_stop(struct control *ctl, struct qmp_error *err);
int control_cont(struct control *ctl, struct qmp_error *err);
int control_quit(struct control *ctl, struct qmp_error *err);
int control_system_reset(struct control *ctl, struct qmp_error *err);
int control_system_powerdown(struct control *ctl, struct qmp_error *err);
const char *control_runstate_name(enum control_runstate s);

/* Runs one human monitor command line (cpu_index: the vCPU `info registers` shows); returns
 * its output ("\n" line ends, malloc'd, never NULL). */
char *hmp_run(struct control *ctl, const char *line, int cpu_index);
/* QEMU's `info registers` text for one parked vCPU. */
struct vcpu;
void hmp_format_registers(struct vcpu *v, struct outbuf *out);

/* Live migration (migration.c): each run of the VM has its migration object, made when the run
 * starts and ended (a running migration cancelled) when it stops; its events become MIGRATION,
 * STOP and RESUME and move the run state. */
struct migrate_info;
void control_migration_attach(struct control *ctl, struct vm *vm);
void control_migration_detach(struct control *ctl);
bool control_migration_completing(struct control *ctl);
void control_migration_query(struct control *ctl, struct migrate_info *info);
/* The actions both monitors offer for migration (block: copy the disks too, QMP's "blk");
 * 0 or err filled. */
int control_migrate(struct control *ctl, const char *uri, bool block, struct qmp_error *err);
void control_migrate_cancel(struct control *ctl);
/* query-migrate's reply (a new reference). */
json_t *control_query_migrate(struct control *ctl);

/* The stdio monitor (monitor.c). */
struct monitor *monitor_open(void);
void monitor_close(struct monitor *m);
int monitor_poll_fds(struct monitor *m, struct pollfd *pfds, int max);
void monitor_handle(struct monitor *m, struct control *ctl, const struct pollfd *pfds, int n);

#endif
