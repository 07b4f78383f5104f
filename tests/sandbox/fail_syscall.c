/* Test helper: runs a command with one system call failing with a given errno (a seccomp
 * filter inherited across execve), to reach error paths no ordinary set-up can reach. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fail_syscall SYSCALL ERRNO COMMAND [ARGS...]\n");
		return 2;
	}
	int nr = seccomp_syscall_resolve_name(argv[1]);
	int err = atoi(argv[2]);
	if (nr == __NR_SCMP_ERROR || err <= 0) {
		fprintf(stderr, "fail_syscall: unknown system call '%s' or bad errno '%s'\n", argv[1],
			argv[2]);
		return 2;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int r = ctx ? seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0) : -ENOMEM;
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0) {
		fprintf(stderr, "fail_syscall: cannot install the filter: %s\n", strerror(-r));
		return 2;
	}
	execvp(argv[3], argv + 3);
	fprintf(stderr, "fail_syscall: cannot run %s: %s\n", argv[3], strerror(errno));
	return 2;
}
