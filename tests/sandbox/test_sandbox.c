/* The seccomp sandbox's own test: each thread kind, with its real filter, dies by SIGSYS on a
 * system call outside its list, lives through the calls on it, and --sandbox debug names the
 * call instead. Each case runs in a child process, since a filter cannot be removed. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/sandbox.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_TEST_SANITIZED 1
#endif
#endif

enum action { ALLOWED, EXECVE, OPEN, UNLINK, SOCKET, MOUNT };

struct child_case {
	enum sandbox_thread kind;
	enum action action;
};

static const char *const action_names[] = { "allowed calls", "execve", "openat", "unlinkat",
					    "socket", "mount" };
static const char *const kind_names[] = { "main", "vCPU", "I/O", "block worker", "migration",
					   "timer" };

/* In the confined thread: the calls every kind makes (memory, time, locks, stdio), then the
 * action under test. */
static void *child_thread(void *arg)
{
	const struct child_case *c = arg;
	if (c->kind == SANDBOX_MAIN) {
		if (sandbox_lockdown() < 0)
			_exit(3);
	} else {
		sandbox_enter(c->kind);
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char *p = strdup("allocated after the filter");
	free(p);
	if (write(STDOUT_FILENO, "", 0) < 0)
		_exit(4);
	switch (c->action) {
	case ALLOWED:
		if (c->kind == SANDBOX_MIGRATION) { /* its disks, read-only */
			int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				_exit(7);
			close(fd);
		}
		break;
	case EXECVE: {
		char *argv[] = { (char *)"/bin/true", NULL };
		execve("/bin/true", argv, argv + 1);
		break;
	}
	case OPEN: /* for writing: the migration thread may open its disks read-only */
		syscall(SYS_openat, AT_FDCWD, "/nonexistent/kvmkit-sandbox-test", O_WRONLY | O_CREAT,
			0600);
		break;
	case UNLINK:
		syscall(SYS_unlinkat, AT_FDCWD, "/nonexistent/kvmkit-sandbox-test", 0);
		break;
	case SOCKET:
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		break;
	case MOUNT:
		syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
		break;
	}
	return NULL;
}

/* Runs one case in a child; returns its wait status, and its stderr in err. */
static int run_case(enum sandbox_mode mode, const struct child_case *c, char *err, size_t errlen)
{
	int pfd[2];
	if (pipe(pfd) < 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], STDERR_FILENO);
		close(pfd[0]);
		if (sandbox_configure(mode, NULL) < 0)
			_exit(5);
		pthread_t t;
		if (pthread_create(&t, NULL, child_thread, (void *)c) != 0)
			_exit(6);
		pthread_join(t, NULL);
		_exit(0); /* no atexit work: the leak checker would run under the filter */
	}
	close(pfd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < errlen && (r = read(pfd[0], err + n, errlen - 1 - n)) > 0)
		n += (size_t)r;
	err[n] = '\0';
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

static int failed, passed, skipped;

static void check(bool ok, const char *what, const struct child_case *c, int status,
		  const char *err)
{
	if (ok) {
		passed++;
		return;
	}
	failed++;
	printf("FAIL %s: %s thread, %s: wait status 0x%x, stderr: %s\n", what, kind_names[c->kind],
	       action_names[c->action], status, err);
}

int main(void)
{
	char err[512];
	/* the calls each kind must not make: guest-facing threads never start programs or open
	 * files; the vCPU and workers have no sockets; nothing mounts */
	static const struct child_case denied[] = {
		{ SANDBOX_VCPU, EXECVE }, { SANDBOX_VCPU, OPEN }, { SANDBOX_VCPU, UNLINK },
		{ SANDBOX_VCPU, SOCKET },
		{ SANDBOX_IO, EXECVE }, { SANDBOX_IO, OPEN }, { SANDBOX_IO, UNLINK },
		{ SANDBOX_BLOCK_WORKER, EXECVE }, { SANDBOX_BLOCK_WORKER, OPEN },
		{ SANDBOX_BLOCK_WORKER, UNLINK }, { SANDBOX_BLOCK_WORKER, SOCKET },
		{ SANDBOX_MIGRATION, EXECVE }, { SANDBOX_MIGRATION, OPEN },
		{ SANDBOX_MIGRATION, UNLINK }, { SANDBOX_MAIN, MOUNT },
		{ SANDBOX_TIMER, EXECVE }, { SANDBOX_TIMER, OPEN }, { SANDBOX_TIMER, UNLINK },
		{ SANDBOX_TIMER, SOCKET },
	};
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
#ifdef SANDBOX_TEST_SANITIZED
		if (denied[i].action == OPEN) {
			printf("SKIP %s thread, openat: a sanitizer build allows it (its reports read "
			       "/proc/self/maps)\n", kind_names[denied[i].kind]);
			skipped++;
			continue;
		}
#endif
		int st = run_case(SANDBOX_ON, &denied[i], err, sizeof(err));
		check(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "killed by SIGSYS",
		      &denied[i], st, err);
	}
	for (int k = SANDBOX_MAIN; k <= SANDBOX_TIMER; k++) {
		struct child_case c = { (enum sandbox_thread)k, ALLOWED };
		int st = run_case(SANDBOX_ON, &c, err, sizeof(err));
		check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "lives", &c, st, err);
		c.action = EXECVE; /* off: nothing is filtered */
		st = run_case(SANDBOX_OFF, &c, err, sizeof(err));
		check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "--sandbox off", &c, st, err);
	}
	/* --sandbox debug: the same death, with the thread and the call's number on stderr */
	struct child_case c = { SANDBOX_VCPU, EXECVE };
	int st = run_case(SANDBOX_DEBUG, &c, err, sizeof(err));
	char want[128];
	snprintf(want, sizeof(want), "the vCPU thread made forbidden system call %d", SYS_execve);
	check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(err, want), "debug mode",
	      &c, st, err);

	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
