/* Migration channels: the tcp:, unix:, exec: and file: URIs QEMU's migrate and -incoming take,
 * opened as one fd for the stream (lib/stream.h). */
#include "migration/uri.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum uri_kind { URI_TCP, URI_UNIX, URI_EXEC, URI_FILE };

static const struct { const char *prefix; enum uri_kind kind; } uri_kinds[] = {
	{ "tcp:", URI_TCP }, { "unix:", URI_UNIX }, { "exec:", URI_EXEC }, { "file:", URI_FILE },
};

/* The kind and what follows the prefix; NULL for an unknown scheme or an empty rest. */
static const char *uri_split(const char *uri, enum uri_kind *kind)
{
	for (size_t i = 0; i < sizeof(uri_kinds) / sizeof(uri_kinds[0]); i++) {
		size_t n = strlen(uri_kinds[i].prefix);
		if (strncmp(uri, uri_kinds[i].prefix, n) == 0 && uri[n]) {
			*kind = uri_kinds[i].kind;
			return uri + n;
		}
	}
	return NULL;
}

/* "HOST:PORT" or "[V6HOST]:PORT" into host (may come out empty: any address) and port. */
static int tcp_split(const char *rest, char *host, size_t host_len, const char **port)
{
	const char *colon = strrchr(rest, ':');
	if (!colon || !colon[1])
		return -EINVAL;
	const char *h = rest;
	size_t n = (size_t)(colon - rest);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n >= host_len)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = colon + 1;
	return 0;
}

int channel_check_uri(const char *uri, char *why, size_t why_len)
{
	enum uri_kind kind;
	const char *rest = uri_split(uri, &kind);
	char host[256];
	const char *port;
	if (!rest) {
		snprintf(why, why_len, "'%s' is not a migration URI (tcp:HOST:PORT, unix:PATH, "
			 "exec:COMMAND or file:PATH)", uri);
		return -EINVAL;
	}
	if (kind == URI_TCP && tcp_split(rest, host, sizeof(host), &port) < 0) {
		snprintf(why, why_len, "'%s' lacks a port: use tcp:HOST:PORT", uri);
		return -EINVAL;
	}
	if (kind == URI_UNIX && strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(why, why_len, "the socket path in '%s' is too long", uri);
		return -EINVAL;
	}
	return 0;
}

static int tcp_open(const char *rest, bool outgoing, char *why, size_t why_len)
{
	char host[256];
	const char *port;
	tcp_split(rest, host, sizeof(host), &port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = outgoing ? 0 : AI_PASSIVE };
	struct addrinfo *res;
	int gr = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (gr != 0) {
		snprintf(why, why_len, "cannot resolve tcp:%s: %s", rest, gai_strerror(gr));
		return -EHOSTUNREACH;
	}
	int fd = -1, err = 0;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int r = outgoing ? connect(fd, ai->ai_addr, ai->ai_addrlen)
				 : bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -1 : listen(fd, 1);
		if (r < 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, why_len, "cannot %s tcp:%s: %s", outgoing ? "connect to" : "listen on",
			 rest, strerror(err));
		return -err;
	}
	return fd;
}

static int unix_open(const char *path, bool outgoing, char *why, size_t why_len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, path); /* length checked by channel_check_uri */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!outgoing)
		unlink(path); /* a socket left by an earlier target */
	int r = outgoing ? connect(fd, (struct sockaddr *)&addr, sizeof(addr))
			 : bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -1 : listen(fd, 1);
	if (r < 0) {
		int err = errno;
		snprintf(why, why_len, "cannot %s unix:%s: %s", outgoing ? "connect to" : "listen on",
			 path, strerror(err));
		close(fd);
		return -err;
	}
	return fd;
}

/* The target waits for its one source, then listens no more. */
static int accept_one(int listen_fd, const char *uri, char *why, size_t why_len)
{
	int fd;
	do
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	int err = errno;
	close(listen_fd);
	if (fd < 0) {
		snprintf(why, why_len, "cannot accept the migration on %s: %s", uri, strerror(err));
		return -err;
	}
	return fd;
}

/* sh -c CMD with our end of a pipe as its stdin (outgoing) or stdout (incoming). The child
 * gets default signal handling and an empty mask: kvmkit blocks and ignores some. */
static int exec_open(const char *cmd, bool outgoing, pid_t *child, char *why, size_t why_len)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	int ours = outgoing ? p[1] : p[0], theirs = outgoing ? p[0] : p[1];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, theirs, outgoing ? STDIN_FILENO : STDOUT_FILENO);
	posix_spawnattr_init(&attr);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	int r = posix_spawn(child, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(theirs);
	if (r != 0) {
		snprintf(why, why_len, "cannot run exec:%s: %s", cmd, strerror(r));
		close(ours);
		return -r;
	}
	return ours;
}

/* The source's file: created or truncated. A new file's name lives in its directory, which
 * channel_close fsyncs too: the directory is opened now, while the path means what it did. */
static int file_create(const char *path, struct migration_channel *ch, char *why, size_t why_len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		snprintf(why, why_len, "cannot open %s: %s", path, strerror(err));
		return -err;
	}
	char *copy = created ? strdup(path) : NULL;
	if (created && (!copy || (ch->dir_fd = open(dirname(copy), O_RDONLY | O_DIRECTORY |
						     O_CLOEXEC)) < 0)) {
		int err = copy ? errno : ENOMEM;
		snprintf(why, why_len, "cannot open the directory of %s: %s", path, strerror(err));
		free(copy);
		close(fd);
		unlink(path);
		return -err;
	}
	free(copy);
	ch->sync = true;
	return fd;
}

int channel_open(const char *uri, bool outgoing, struct migration_channel *ch, char *why,
		 size_t why_len)
{
	*ch = MIGRATION_CHANNEL_NONE;
	int r = channel_check_uri(uri, why, why_len);
	if (r < 0)
		return r;
	enum uri_kind kind;
	const char *rest = uri_split(uri, &kind);
	if (!rest)
		return -EINVAL; /* channel_check_uri said why */
	switch (kind) {
	case URI_TCP:
	case URI_UNIX:
		r = kind == URI_TCP ? tcp_open(rest, outgoing, why, why_len)
				    : unix_open(rest, outgoing, why, why_len);
		if (r >= 0 && !outgoing) {
			r = accept_one(r, uri, why, why_len);
			if (kind == URI_UNIX)
				unlink(rest);
		}
		break;
	case URI_EXEC:
		r = exec_open(rest, outgoing, &ch->child, why, why_len);
		break;
	case URI_FILE:
		r = outgoing ? file_create(rest, ch, why, why_len) : open(rest, O_RDONLY | O_CLOEXEC);
		if (r < 0 && !outgoing) {
			r = -errno;
			snprintf(why, why_len, "cannot open %s: %s", rest, strerror(-r));
		}
		break;
	}
	if (r < 0)
		return r;
	ch->fd = r;
	if (kind == URI_TCP) {
		int one = 1; /* the last small sections go out at once: they are the downtime */
		setsockopt(ch->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return 0;
}

void channel_abort(struct migration_channel *ch)
{
	if (ch->fd >= 0)
		shutdown(ch->fd, SHUT_RDWR); /* fails harmlessly on pipes and files */
	if (ch->child > 0)
		kill(ch->child, SIGKILL);
	ch->sync = false;
}

/* fsync of the file, then of the directory that holds its new name. */
static int channel_sync(struct migration_channel *ch, char *why, size_t why_len)
{
	if (fsync(ch->fd) < 0) {
		int err = errno;
		snprintf(why, why_len, "cannot make the migration file durable: %s", strerror(err));
		return -err;
	}
	if (ch->dir_fd >= 0 && fsync(ch->dir_fd) < 0) {
		int err = errno;
		snprintf(why, why_len, "cannot make the migration file's directory durable: %s",
			 strerror(err));
		return -err;
	}
	return 0;
}

/* How the exec command ended: 0, or -errno with why. */
static int channel_reap(pid_t child, char *why, size_t why_len)
{
	int status, w;
	while ((w = waitpid(child, &status, 0)) < 0 && errno == EINTR)
		;
	if (w < 0) {
		/* e.g. ECHILD when SIGCHLD is ignored: nobody can tell whether it took it all */
		int err = errno;
		snprintf(why, why_len, "cannot learn how the migration command ended: %s",
			 strerror(err));
		return -err;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	snprintf(why, why_len, "the migration command %s %d", WIFEXITED(status) ?
		 "exited with status" : "was killed by signal", WIFEXITED(status) ?
		 WEXITSTATUS(status) : WTERMSIG(status));
	return -EIO;
}

int channel_close(struct migration_channel *ch, char *why, size_t why_len)
{
	int r = 0;
	if (ch->fd >= 0 && ch->sync)
		r = channel_sync(ch, why, why_len);
	if (ch->fd >= 0)
		close(ch->fd);
	if (ch->dir_fd >= 0)
		close(ch->dir_fd);
	ch->fd = ch->dir_fd = -1;
	ch->sync = false;
	if (ch->child > 0) {
		int cr = channel_reap(ch->child, r < 0 ? NULL : why, r < 0 ? 0 : why_len);
		r = r < 0 ? r : cr;
	}
	ch->child = 0;
	return r;
}
