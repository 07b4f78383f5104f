/* Where a migration stream goes to or comes from, in QEMU's URI syntax:
 *   tcp:HOST:PORT   the source connects, the target (--incoming) listens and accepts one peer
 *   unix:PATH       the same over a unix socket
 *   exec:CMD        sh -c CMD with the stream on its stdin (source) or stdout (target)
 *   file:PATH       the source writes the stream to PATH, the target reads it back */
#ifndef KVMKIT_MIGRATION_URI_H
#define KVMKIT_MIGRATION_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct migration_channel {
	int fd;        /* the stream's fd */
	pid_t child;   /* exec: the shell, else 0 */
	bool sync;     /* file: written here: made durable (fsync) at channel_close */
	int dir_fd;    /* file: the directory of a file channel_open created (fsynced too), or -1 */
};
#define MIGRATION_CHANNEL_NONE ((struct migration_channel){ .fd = -1, .dir_fd = -1 })

/* Checks the URI's syntax only; 0 or -EINVAL with the reason in why. */
int channel_check_uri(const char *uri, char *why, size_t why_len);

/* Opens the source's end (outgoing) or the target's (waits for the peer). Returns 0 or -errno
 * with one sentence in why. */
int channel_open(const char *uri, bool outgoing, struct migration_channel *ch, char *why,
		 size_t why_len);

/* Wakes a thread blocked on the channel (from any thread): the socket is shut down, the exec
 * child killed, so its reads and writes fail now. An aborted file is not made durable. */
void channel_abort(struct migration_channel *ch);

/* Closes the fd and reaps the child; a file written here is fsynced first, with its directory
 * when it was created, so "completed" means durable. Returns 0, or -errno with why filled when
 * the file cannot be made durable or the exec command failed (its stream may be incomplete). */
int channel_close(struct migration_channel *ch, char *why, size_t why_len);

#endif
