/* The serial console's host side: stdio (raw terminal, Ctrl-A x quits), a file, a unix socket
 * server, or nothing. It outlives VM resets, so a reboot keeps the terminal and connections. */
#ifndef KVMKIT_VMM_CONSOLE_H
#define KVMKIT_VMM_CONSOLE_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

struct console;

/* Opens the backend named by spec: "stdio", "file:PATH", "unix:PATH" or "none". Prints a
 * sentence and returns NULL on failure. */
struct console *console_open(const char *spec);
void console_close(struct console *c);
/* Checks the syntax of a spec without opening anything (for the CLI). */
int console_spec_valid(const char *spec);

/* Guest output. Called from vCPU threads; never fails (output to a gone peer is dropped). */
void console_write(struct console *c, const uint8_t *buf, size_t len);

/* Receiver of user input: receive returns how many bytes it accepted; send_break signals a
 * break on the line (Ctrl-A b). */
struct console_sink {
	size_t (*receive)(void *opaque, const uint8_t *buf, size_t len);
	void (*send_break)(void *opaque);
	void *opaque;
};

#define CONSOLE_MAX_FDS 2
/* Fills up to CONSOLE_MAX_FDS pollfds; returns the count. While bytes wait for the guest to
 * make room, input is not polled and *timeout_ms asks for a retry. */
int console_poll_fds(struct console *c, struct pollfd *pfds, int *timeout_ms);
/* Handles readiness on those fds (and retries waiting input); returns 1 if the user pressed
 * the quit key, else 0. */
int console_handle(struct console *c, const struct pollfd *pfds, int n,
		   const struct console_sink *sink);

#endif
