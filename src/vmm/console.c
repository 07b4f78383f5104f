/* The serial console's host side: stdio (raw terminal, Ctrl-A x quits), a file, a unix socket
 * server, or nothing. It outlives VM resets, so a reboot keeps the terminal and connections. */
#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "lib/log.h"

enum console_kind { CONSOLE_STDIO, CONSOLE_FILE, CONSOLE_UNIX, CONSOLE_NONE };

#define ESCAPE_KEY 0x01 /* Ctrl-A, as QEMU */

struct console {
	enum console_kind kind;
	int out_fd;        /* guest output goes here (-1: dropped) */
	int in_fd;         /* user input comes from here (-1: none) */
	int listen_fd;     /* unix: the listening socket */
	char *socket_path; /* unix: removed on close */
	bool raw_tty;      /* stdio: terminal switched to raw mode */
	struct termios saved_tty;
	bool escape;       /* the previous input byte was the escape key */
	uint8_t pending[256]; /* input the guest had no room for yet */
	size_t pending_len;
};

static int console_parse(const char *spec, enum console_kind *kind, const char **path)
{
	*path = NULL;
	if (strcmp(spec, "stdio") == 0)
		*kind = CONSOLE_STDIO;
	else if (strcmp(spec, "none") == 0)
		*kind = CONSOLE_NONE;
	else if (strncmp(spec, "file:", 5) == 0 && spec[5])
		*kind = CONSOLE_FILE, *path = spec + 5;
	else if (strncmp(spec, "unix:", 5) == 0 && spec[5])
		*kind = CONSOLE_UNIX, *path = spec + 5;
	else
		return -EINVAL;
	return 0;
}

int console_spec_valid(const char *spec)
{
	enum console_kind kind;
	const char *path;
	return console_parse(spec, &kind, &path);
}

/* Raw mode: every key goes to the guest (Ctrl-C included); output post-processing off so the
 * guest's own CR/LF reach the terminal unchanged. */
static void console_tty_raw(struct console *c)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &c->saved_tty) < 0)
		return;
	struct termios t = c->saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		c->raw_tty = true;
}

static int console_open_unix(struct console *c, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("serial socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* a stale socket from an earlier run */
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
		int err = errno;
		log_error("cannot listen on serial socket '%s': %s", path, strerror(err));
		close(fd);
		return -err;
	}
	c->listen_fd = fd;
	c->socket_path = strdup(path);
	return 0;
}

struct console *console_open(const char *spec)
{
	enum console_kind kind;
	const char *path;
	if (console_parse(spec, &kind, &path) < 0) {
		log_error("unknown serial backend '%s' (use stdio, file:PATH, unix:PATH or none)", spec);
		return NULL;
	}
	struct console *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = kind;
	c->out_fd = c->in_fd = c->listen_fd = -1;
	switch (kind) {
	case CONSOLE_STDIO:
		c->out_fd = STDOUT_FILENO;
		c->in_fd = STDIN_FILENO;
		console_tty_raw(c);
		break;
	case CONSOLE_FILE:
		c->out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0) {
			log_error("cannot open serial output file '%s': %s", path, strerror(errno));
			free(c);
			return NULL;
		}
		break;
	case CONSOLE_UNIX:
		if (console_open_unix(c, path) < 0) {
			free(c);
			return NULL;
		}
		break;
	case CONSOLE_NONE:
		break;
	}
	return c;
}

void console_close(struct console *c)
{
	if (!c)
		return;
	if (c->raw_tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved_tty);
	if (c->kind == CONSOLE_FILE && c->out_fd >= 0)
		close(c->out_fd);
	if (c->kind == CONSOLE_UNIX) {
		if (c->in_fd >= 0)
			close(c->in_fd);
		if (c->listen_fd >= 0)
			close(c->listen_fd);
		if (c->socket_path)
			unlink(c->socket_path);
		free(c->socket_path);
	}
	free(c);
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	int fd = __atomic_load_n(&c->out_fd, __ATOMIC_ACQUIRE);
	while (fd >= 0 && len > 0) {
		ssize_t n = c->kind == CONSOLE_UNIX ? send(fd, buf, len, MSG_NOSIGNAL)
						    : write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && c->kind == CONSOLE_UNIX)
			return; /* a slow socket client loses output rather than stalling the guest */
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

int console_poll_fds(struct console *c, struct pollfd *pfds, int *timeout_ms)
{
	int n = 0;
	if (c->pending_len) {
		*timeout_ms = 10; /* retry when the guest has drained its receive FIFO */
	} else if (c->in_fd >= 0) {
		pfds[n++] = (struct pollfd){ .fd = c->in_fd, .events = POLLIN };
	}
	if (c->listen_fd >= 0)
		pfds[n++] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
	return n;
}

static void console_drop_client(struct console *c)
{
	if (c->kind == CONSOLE_UNIX) {
		__atomic_store_n(&c->out_fd, -1, __ATOMIC_RELEASE);
		close(c->in_fd);
	}
	c->in_fd = -1; /* stdio at EOF: stop reading, keep writing */
}

/* Hands waiting input to the guest, as much as it takes. */
static void console_flush_pending(struct console *c, const struct console_sink *sink)
{
	size_t took = sink->receive(sink->opaque, c->pending, c->pending_len);
	memmove(c->pending, c->pending + took, c->pending_len - took);
	c->pending_len -= took;
}

/* Filters the escape sequences out of freshly read input into c->pending. On stdio they work
 * whether or not it is a terminal (as QEMU's), so scripts can send them too. */
static int console_filter(struct console *c, const uint8_t *buf, size_t len,
			  const struct console_sink *sink)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = buf[i];
		if (c->kind == CONSOLE_STDIO) {
			if (c->escape) {
				c->escape = false;
				if (b == 'x' || b == 'X') {
					fprintf(stderr, "\r\nkvmkit: terminated by Ctrl-A x\r\n");
					return 1;
				}
				if (b == 'h' || b == 'H') {
					fprintf(stderr, "\r\nCtrl-A x  quit kvmkit\r\n"
							"Ctrl-A b  send a break (Linux: SysRq)\r\n"
							"Ctrl-A a  send Ctrl-A to the guest\r\n");
					continue;
				}
				if (b == 'b' || b == 'B') {
					/* Bytes typed before the break reach the guest first. */
					console_flush_pending(c, sink);
					sink->send_break(sink->opaque);
					continue;
				}
				if (b != 'a' && b != ESCAPE_KEY)
					continue;
				b = ESCAPE_KEY;
			} else if (b == ESCAPE_KEY) {
				c->escape = true;
				continue;
			}
		}
		if (c->pending_len < sizeof(c->pending))
			c->pending[c->pending_len++] = b;
	}
	return 0;
}

int console_handle(struct console *c, const struct pollfd *pfds, int n,
		   const struct console_sink *sink)
{
	int quit = 0;
	for (int i = 0; i < n; i++) {
		if (!pfds[i].revents)
			continue;
		if (pfds[i].fd == c->listen_fd) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd < 0)
				continue;
			if (c->in_fd >= 0) {
				close(fd); /* one client at a time */
				continue;
			}
			c->in_fd = fd;
			__atomic_store_n(&c->out_fd, fd, __ATOMIC_RELEASE);
		} else if (pfds[i].fd == c->in_fd) {
			uint8_t buf[sizeof(c->pending)];
			ssize_t r = read(c->in_fd, buf, sizeof(buf) - c->pending_len);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0) {
				console_drop_client(c);
				continue;
			}
			quit |= console_filter(c, buf, (size_t)r, sink);
		}
	}
	if (c->pending_len)
		console_flush_pending(c, sink);
	return quit;
}
