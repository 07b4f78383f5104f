/* The QMP server: a unix socket with any number of clients (up to CONTROL_MAX_CLIENTS), QEMU's
 * greeting, capabilities negotiation, request checks, replies with the request's id, and
 * events. No client can stop the VMM: input is bounded, output is non-blocking and bounded. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control/control_int.h"
#include "lib/log.h"
#include "vmm/loop.h"
#include "vmm/vm.h"

void qmp_error_set(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	err->cls = cls;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
}

/* Queues one message; a client that cannot take it any more is dropped. Consumes msg. */
static void qmp_send(struct qmp_client *c, json_t *msg)
{
	/* QEMU's separators (", " and ": "), ASCII only, and "\r\n" after each message. */
	char *text = json_dumps(msg, JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(msg);
	if (!text || outbuf_append(&c->out, text, strlen(text)) < 0 ||
	    outbuf_append(&c->out, "\r\n", 2) < 0) {
		if (!c->dead)
			log_warn("QMP client dropped: it does not read its replies");
		c->dead = true;
	}
	free(text);
}

static void qmp_send_error(struct qmp_client *c, json_t *id, const char *cls, const char *desc)
{
	json_t *msg = json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
	if (id)
		json_object_set(msg, "id", id);
	qmp_send(c, msg);
}

json_t *qmp_version_object(void)
{
	return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", CONTROL_QEMU_MICRO, "minor",
			 CONTROL_QEMU_MINOR, "major", CONTROL_QEMU_MAJOR, "package",
			 "kvmkit " KVMKIT_VERSION);
}

void control_emit_event(struct control *ctl, const char *name, json_t *data)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct qmp_client *c = ctl->clients[i];
		if (!c || c->dead || !c->negotiated)
			continue; /* QEMU sends no events during capabilities negotiation */
		json_t *msg = json_pack("{s:{s:I,s:I},s:s}", "timestamp", "seconds",
					(json_int_t)tv.tv_sec, "microseconds", (json_int_t)tv.tv_usec,
					"event", name);
		if (data)
			json_object_set(msg, "data", data);
		qmp_send(c, msg);
	}
	json_decref(data);
}

/* The protocol-level checks of a request, in QEMU's words; returns the command name. */
static const char *qmp_check_request(json_t *req, json_t **args, struct qmp_error *err)
{
	if (!json_is_object(req)) {
		qmp_error_set(err, "GenericError", "QMP input must be a JSON object");
		return NULL;
	}
	const char *key;
	json_t *val;
	json_object_foreach(req, key, val) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id")) {
			if (strcmp(key, "exec-oob") == 0)
				qmp_error_set(err, "GenericError",
					      "Out-of-band execution is not supported by kvmkit");
			else
				qmp_error_set(err, "GenericError", "QMP input member '%s' is unexpected",
					      key);
			return NULL;
		}
	}
	json_t *exec = json_object_get(req, "execute");
	if (!exec) {
		qmp_error_set(err, "GenericError", "QMP input lacks member 'execute'");
		return NULL;
	}
	if (!json_is_string(exec)) {
		qmp_error_set(err, "GenericError", "QMP input member 'execute' must be a string");
		return NULL;
	}
	*args = json_object_get(req, "arguments");
	if (*args && !json_is_object(*args)) {
		qmp_error_set(err, "GenericError", "QMP input member 'arguments' must be an object");
		return NULL;
	}
	return json_string_value(exec);
}

/* Whose input json_stream_feed is splitting. */
struct qmp_reader {
	struct control *ctl;
	struct qmp_client *c;
};

/* Runs one request text of a client and queues the reply. */
static void qmp_handle_text(void *opaque, const char *text, size_t len, const char *error)
{
	const struct qmp_reader *rd = opaque;
	struct qmp_client *c = rd->c;
	struct control *ctl = rd->ctl;
	if (c->dead)
		return;
	if (error) {
		qmp_send_error(c, NULL, "GenericError", error);
		return;
	}
	json_error_t jerr;
	json_t *req = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
	if (!req) {
		char desc[256];
		snprintf(desc, sizeof(desc), "JSON parse error, %s", jerr.text);
		qmp_send_error(c, NULL, "GenericError", desc);
		return;
	}
	struct qmp_error err = { 0 };
	json_t *args = NULL;
	json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
	const char *name = qmp_check_request(req, &args, &err);
	json_t *ret = NULL;
	if (name && !c->negotiated && strcmp(name, "qmp_capabilities") != 0) {
		qmp_error_set(&err, "CommandNotFound",
			      "Expecting capabilities negotiation with 'qmp_capabilities'");
	} else if (name && c->negotiated && strcmp(name, "qmp_capabilities") == 0) {
		qmp_error_set(&err, "CommandNotFound",
			      "Capabilities negotiation is already complete, command ignored");
	} else if (name) {
		ret = qmp_dispatch(ctl, name, args, &err);
		if (ret && strcmp(name, "qmp_capabilities") == 0)
			c->negotiated = true;
	}
	if (ret) {
		json_t *msg = json_pack("{s:o}", "return", ret);
		if (id)
			json_object_set(msg, "id", id);
		qmp_send(c, msg);
	} else {
		qmp_send_error(c, id, err.cls ? err.cls : "GenericError", err.desc);
	}
	json_decref(req);
}

static void qmp_client_free(struct qmp_client *c)
{
	close(c->fd);
	json_stream_free(&c->in);
	outbuf_free(&c->out);
	free(c);
}

static void qmp_accept(struct control *ctl)
{
	int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	int slot = 0;
	while (slot < CONTROL_MAX_CLIENTS && ctl->clients[slot])
		slot++;
	struct qmp_client *c = slot < CONTROL_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		static const char busy[] = "{\"error\": {\"class\": \"GenericError\", \"desc\": "
					   "\"too many QMP clients\"}}\r\n";
		if (write(fd, busy, sizeof(busy) - 1) < 0)
			log_debug("QMP: cannot refuse a client: %s", strerror(errno));
		close(fd);
		return;
	}
	c->fd = fd;
	ctl->clients[slot] = c;
	qmp_send(c, json_pack("{s:{s:o,s:[]}}", "QMP", "version", qmp_version_object(),
			      "capabilities"));
}

static void qmp_client_read(struct control *ctl, struct qmp_client *c)
{
	uint8_t buf[16384];
	struct qmp_reader rd = { ctl, c };
	/* A few reads per round: one busy client does not starve the others or the VM. */
	for (int i = 0; i < 4 && !c->dead && c->out.len < CONTROL_OUTPUT_HIGH_WATER; i++) {
		ssize_t r = read(c->fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			c->dead = true; /* gone, maybe in the middle of a request: dropped with it */
			return;
		}
		if (r < 0)
			return;
		json_stream_feed(&c->in, buf, (size_t)r, qmp_handle_text, &rd);
	}
}

/* The loop's source: the listening socket, the clients (POLLOUT while output waits, no POLLIN
 * above the high-water mark) and the stdio monitor. */
static int control_prepare(void *opaque, struct pollfd *pfds, int max, int *timeout_ms)
{
	struct control *ctl = opaque;
	(void)timeout_ms;
	int n = 0;
	if (ctl->listen_fd >= 0 && n < max)
		pfds[n++] = (struct pollfd){ .fd = ctl->listen_fd, .events = POLLIN };
	for (int i = 0; i < CONTROL_MAX_CLIENTS && n < max; i++) {
		struct qmp_client *c = ctl->clients[i];
		if (!c)
			continue;
		short ev = c->out.len ? POLLOUT : 0;
		if (c->out.len < CONTROL_OUTPUT_HIGH_WATER)
			ev |= POLLIN;
		pfds[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
	}
	if (ctl->monitor)
		n += monitor_poll_fds(ctl->monitor, pfds + n, max - n);
	return n;
}

/* Writes what the clients take and closes the dead ones. */
static void qmp_flush_clients(struct control *ctl)
{
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct qmp_client *c = ctl->clients[i];
		if (!c)
			continue;
		if (!c->dead && outbuf_flush(&c->out, c->fd) < 0)
			c->dead = true;
		if (c->dead) {
			qmp_client_free(c);
			ctl->clients[i] = NULL;
		}
	}
}

static void control_dispatch(void *opaque, const struct pollfd *pfds, int n)
{
	struct control *ctl = opaque;
	for (int i = 0; i < n; i++) {
		if (!pfds[i].revents)
			continue;
		if (pfds[i].fd == ctl->listen_fd) {
			qmp_accept(ctl);
			continue;
		}
		for (int k = 0; k < CONTROL_MAX_CLIENTS; k++) {
			struct qmp_client *c = ctl->clients[k];
			if (c && c->fd == pfds[i].fd && (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				qmp_client_read(ctl, c);
		}
	}
	if (ctl->monitor)
		monitor_handle(ctl->monitor, ctl, pfds, n);
	qmp_flush_clients(ctl);
}

static const struct loop_source_ops control_source = {
	.prepare = control_prepare,
	.dispatch = control_dispatch,
};

/* ---- the hooks of a run of the VM ---- */

static void control_vm_started(struct vm *vm, void *opaque)
{
	struct control *ctl = opaque;
	ctl->vm = vm;
	control_migration_attach(ctl, vm);
}

/* An outgoing migration ends with the run. */
static void control_vm_ending(struct vm *vm, void *opaque)
{
	(void)vm;
	control_migration_detach(opaque);
}

/* SHUTDOWN or RESET with the cause, as QEMU emits them. */
static void control_vm_ended(struct vm *vm, void *opaque)
{
	struct control *ctl = opaque;
	if (!ctl->stop_event_sent) {
		bool reset = vm->stop_reason == VM_STOP_RESET && !vm->cfg->no_reboot;
		const char *cause = vm->stop_cause;
		if (!cause) {
			switch (vm->stop_reason) {
			case VM_STOP_RESET: cause = "guest-reset"; break;
			case VM_STOP_ERROR: cause = "host-error"; break;
			default: cause = "guest-shutdown"; break;
			}
		}
		bool guest = strncmp(cause, "guest-", 6) == 0;
		control_emit_event(ctl, reset ? "RESET" : "SHUTDOWN",
				   json_pack("{s:b,s:s}", "guest", guest, "reason", cause));
	}
	ctl->stop_event_sent = false;
	if (!(vm->stop_reason == VM_STOP_RESET && !vm->cfg->no_reboot))
		ctl->state = RUNSTATE_SHUTDOWN;
	ctl->vm = NULL;
	qmp_flush_clients(ctl); /* the replies and events of the last round, before a rebuild */
}

const struct vm_hook_ops control_vm_hooks = {
	.started = control_vm_started,
	.ending = control_vm_ending,
	.ended = control_vm_ended,
};

static int qmp_listen(struct control *ctl, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("QMP socket path '%s' is longer than %zu bytes", path,
			  sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* a stale socket of an earlier run, as QEMU's server=on replaces it */
	/* umask for the bind makes the socket 0600 from its first moment: no window for others.
	 * (umask is per process: this runs in main() before any thread starts.) */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (r < 0 || listen(fd, 64) < 0) {
		int err = errno;
		log_error("cannot listen on the QMP socket '%s': %s", path, strerror(err));
		close(fd);
		return -err;
	}
	ctl->listen_fd = fd;
	ctl->path = strdup(path);
	return 0;
}

struct control *control_open(const struct control_options *opts, struct loop *loop)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return NULL;
	ctl->listen_fd = -1;
	ctl->loop = loop;
	ctl->state = opts->start_paused ? RUNSTATE_PRELAUNCH : RUNSTATE_RUNNING;
	ctl->migration.downtime_limit_ms = 300;
	ctl->migration.max_bandwidth = 128ULL << 20;
	if (opts->qmp_path && qmp_listen(ctl, opts->qmp_path) < 0) {
		control_close(ctl);
		return NULL;
	}
	if (opts->monitor_stdio && !(ctl->monitor = monitor_open())) {
		control_close(ctl);
		return NULL;
	}
	if (loop_add_source(loop, &control_source, CONTROL_MAX_FDS, ctl) < 0) {
		log_error("cannot add the control socket to the main loop: %s", strerror(ENOMEM));
		control_close(ctl);
		return NULL;
	}
	ctl->registered = true;
	return ctl;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	if (ctl->registered)
		loop_remove_source(ctl->loop, &control_source, ctl);
	/* The last replies (quit's) and the SHUTDOWN event, to clients that read them soon. */
	for (int round = 0; round < 50; round++) {
		struct pollfd pfds[CONTROL_MAX_CLIENTS];
		int n = 0;
		for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
			if (ctl->clients[i] && !ctl->clients[i]->dead && ctl->clients[i]->out.len)
				pfds[n++] = (struct pollfd){ .fd = ctl->clients[i]->fd, .events = POLLOUT };
		if (n == 0 || poll(pfds, (nfds_t)n, 20) < 0)
			break;
		qmp_flush_clients(ctl);
	}
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (ctl->clients[i])
			qmp_client_free(ctl->clients[i]);
	if (ctl->listen_fd >= 0) {
		close(ctl->listen_fd);
		unlink(ctl->path);
	}
	free(ctl->path);
	monitor_close(ctl->monitor);
	free(ctl);
}

bool control_wants_paused(const struct control *ctl)
{
	return ctl->state == RUNSTATE_PRELAUNCH || ctl->state == RUNSTATE_PAUSED;
}

const struct control_migration_params *control_migration_params(const struct control *ctl)
{
	return &ctl->migration;
}
