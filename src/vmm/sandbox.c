/* Least privilege for kvmkit: a libseccomp filter per thread kind, installed by each thread as
 * it starts, and the --runas drop to an unprivileged user once the VM's files are open. */
#include "vmm/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_tun.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif

#define KVMIO 0xAE /* the ioctl type of every KVM request (linux/kvm.h) */

/* Every thread: memory, locks, time, its own signals, stdio on open descriptors, exit. */
static const char *const sandbox_common[] = {
	"read", "write", "readv", "writev", "close", "futex", "mmap", "munmap", "mprotect",
	"madvise", "brk", "mremap", "rt_sigprocmask", "rt_sigreturn",
	"clock_gettime", "clock_nanosleep", "nanosleep", "gettid", "getpid", "sched_yield",
	"restart_syscall", "exit", "exit_group", "newfstatat", "fstat", "lseek", "getrandom",
	"eventfd2", "fcntl", "poll", "ppoll", NULL,
};

/* The vCPU thread: KVM_RUN and the exits it handles (PIO/MMIO devices write the console,
 * ring ioeventfd-less doorbells, stop or pause the VM). ioctl is limited to KVM requests. */
static const char *const sandbox_vcpu[] = {
	"tgkill", NULL,
};

/* The I/O thread: the event loop, virtio queues, io_uring, qcow2's synchronous path, and slirp
 * (which opens sockets for the guest's outbound connections and reads /etc/resolv.conf
 * read-only when the guest asks its DNS), TAP, the vconsole socket. */
static const char *const sandbox_io[] = {
	"epoll_wait", "epoll_pwait", "epoll_ctl", "io_uring_enter", "pread64", "pwrite64", "preadv",
	"pwritev", "preadv2", "pwritev2", "fdatasync", "fsync", "fallocate", "ftruncate", "socket",
	"connect", "bind", "listen", "accept", "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg",
	"setsockopt", "getsockopt", "getsockname", "getpeername", "shutdown", "timerfd_settime",
	"tgkill", NULL,
};

/* The block layer's workers: positioned I/O and flushes on already open images; the qcow2
 * worker also reads a backing file through that image's engine (block_io: its io_uring). */
static const char *const sandbox_block_worker[] = {
	"pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "fdatasync", "fsync",
	"fallocate", "ftruncate", "io_uring_enter", NULL,
};

/* An outgoing migration: the stream (socket, pipe or file), the dirty log and vCPU state
 * (KVM ioctls), block migration's disk reads, the exec: child it waits for, and the kernel's
 * absolute path in the configuration section (realpath: getcwd, readlink). It also opens the
 * disks read-only (to flush shared ones, to send them): openat without write or create flags,
 * see sandbox_build. */
static const char *const sandbox_migration[] = {
	"pread64", "preadv", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "fdatasync",
	"fsync", "wait4", "kill", "tgkill", "getcwd", "readlink", NULL,
};

/* A device's timer thread: sleeps on its lock's condition variable and raises its interrupt
 * line (a KVM ioctl); the common calls are all it needs. */
static const char *const sandbox_timer[] = {
	NULL,
};

/* The main thread keeps what a VM build needs (a guest reset builds it again: /dev/kvm,
 * images, TAP, sockets, threads) and its exec: migration children inherit its filter across
 * execve, so it is a deny-list: what a VMM never does. */
static const char *const sandbox_main_denied[] = {
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
	"swapon", "swapoff", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "setns",
	"unshare", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl",
	"ioperm", "personality", "userfaultfd", "quotactl", "sethostname", "setdomainname",
	"syslog", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "process_vm_readv",
	"process_vm_writev", "kcmp", "uselib", "vhangup", "pciconfig_read", "pciconfig_write",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
	"setfsuid", "setfsgid",
#ifndef SANDBOX_SANITIZED
	"ptrace", /* LeakSanitizer stops the threads with ptrace at exit */
#endif
	NULL,
};

/* What the sanitizer runtimes call in any thread (alternate signal stacks, reading the maps on
 * a report): a sanitizer build keeps the same lists plus these. */
static const char *const sandbox_sanitizer[] = {
	"sigaltstack", "openat", "readlink", "getrlimit", "prlimit64", "sched_getaffinity",
	"rt_sigaction", "getdents64", "tgkill", "getppid", "prctl", "uname", NULL,
};

/* Process-wide, as the user kvmkit runs as is: set once before any thread starts. */
static struct {
	enum sandbox_mode mode;
	bool runas;
	uid_t uid;
	gid_t gid;
	bool locked;
} sandbox;

static _Thread_local enum sandbox_thread sandbox_kind = SANDBOX_MAIN;

static const char *const sandbox_kind_names[] = {
	[SANDBOX_MAIN] = "main", [SANDBOX_VCPU] = "vCPU", [SANDBOX_IO] = "I/O",
	[SANDBOX_BLOCK_WORKER] = "block worker", [SANDBOX_MIGRATION] = "migration",
	[SANDBOX_TIMER] = "timer",
};

/* --sandbox debug: a forbidden call arrives here instead of killing the process. Only
 * async-signal-safe calls, all of them on every list (write, exit_group). */
static void sandbox_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char buf[128], num[12];
	size_t n = 0;
	const char *parts[] = { "kvmkit: sandbox: the ", sandbox_kind_names[sandbox_kind],
				" thread made forbidden system call ", NULL };
	for (int i = 0; parts[i]; i++)
		for (const char *p = parts[i]; *p && n < sizeof(buf) - 16; p++)
			buf[n++] = *p;
	int nr = si->si_syscall, k = 0;
	do {
		num[k++] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr > 0 && k < (int)sizeof(num));
	while (k > 0)
		buf[n++] = num[--k];
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
	_exit(1);
}

void sandbox_enter_block_worker(void)
{
	sandbox_enter(SANDBOX_BLOCK_WORKER);
}

int sandbox_configure(enum sandbox_mode mode, const char *runas_user)
{
	sandbox.mode = mode;
	if (runas_user) {
		if (geteuid() != 0) {
			log_error("--runas %s needs kvmkit to be started as root (it runs as uid %u): "
				  "start it as root or drop --runas", runas_user, (unsigned)geteuid());
			return -1;
		}
		struct passwd *pw = getpwnam(runas_user);
		if (!pw) {
			log_error("--runas: there is no user '%s' on this host", runas_user);
			return -1;
		}
		sandbox.runas = true;
		sandbox.uid = pw->pw_uid;
		sandbox.gid = pw->pw_gid;
	}
	/* glibc loads the time zone file on the first time conversion, even gmtime_r's (the RTC
	 * calls it on a vCPU thread, which may not open files): load it now */
	tzset();
	if (mode == SANDBOX_DEBUG) {
		struct sigaction sa = { .sa_sigaction = sandbox_sigsys, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSYS, &sa, NULL);
	}
	return 0;
}

static int sandbox_add_list(scmp_filter_ctx ctx, uint32_t action, const char *const *names)
{
	for (; *names; names++) {
		int nr = seccomp_syscall_resolve_name(*names);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture (e.g. a call newer libc replaced) */
		int r = seccomp_rule_add(ctx, action, nr, 0);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	return 0;
}

/* A thread started before the --runas drop takes part in it: glibc makes every thread repeat
 * setgroups/setgid/setuid. These three are allowed, to that user's ids only. */
static int sandbox_add_runas(scmp_filter_ctx ctx)
{
	if (!sandbox.runas || sandbox.locked)
		return 0;
	int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setgroups), 0);
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setgid), 1,
				     SCMP_A0(SCMP_CMP_EQ, sandbox.gid));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setuid), 1,
				     SCMP_A0(SCMP_CMP_EQ, sandbox.uid));
	return r;
}

static int sandbox_build(scmp_filter_ctx ctx, enum sandbox_thread kind, uint32_t deny)
{
	if (kind == SANDBOX_MAIN)
		return sandbox_add_list(ctx, deny, sandbox_main_denied);
	static const char *const *const lists[] = {
		[SANDBOX_VCPU] = sandbox_vcpu, [SANDBOX_IO] = sandbox_io,
		[SANDBOX_BLOCK_WORKER] = sandbox_block_worker, [SANDBOX_MIGRATION] = sandbox_migration,
		[SANDBOX_TIMER] = sandbox_timer,
	};
	int r = sandbox_add_list(ctx, SCMP_ACT_ALLOW, sandbox_common);
	if (r == 0)
		r = sandbox_add_list(ctx, SCMP_ACT_ALLOW, lists[kind]);
#ifdef SANDBOX_SANITIZED
	if (r == 0)
		r = sandbox_add_list(ctx, SCMP_ACT_ALLOW, sandbox_sanitizer);
#else
	(void)sandbox_sanitizer;
#endif
	/* ioctl: KVM requests (type byte KVMIO), the TAP offloads a guest's virtio-net features
	 * select, and socket queries; nothing that creates or reconfigures a device */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, KVMIO << 8));
	static const unsigned long ioctls[] = { TUNSETOFFLOAD, FIONBIO, FIONREAD };
	for (size_t i = 0; r == 0 && i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_EQ, ioctls[i]));
	if (r == 0 && (kind == SANDBOX_MIGRATION || kind == SANDBOX_IO))
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND,
					     O_RDONLY));
	if (r == 0)
		r = sandbox_add_runas(ctx);
	return r;
}

static int sandbox_install(enum sandbox_thread kind)
{
	sandbox_kind = kind;
	if (sandbox.mode == SANDBOX_OFF)
		return 0;
	uint32_t deny = sandbox.mode == SANDBOX_DEBUG ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx = seccomp_init(kind == SANDBOX_MAIN ? SCMP_ACT_ALLOW : deny);
	if (!ctx)
		return -ENOMEM;
	int r = sandbox_build(ctx, kind, deny);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0)
		log_error("cannot install the %s thread's seccomp filter: %s (--sandbox off runs "
			  "without it)", sandbox_kind_names[kind], strerror(-r));
	return r;
}

void sandbox_enter(enum sandbox_thread kind)
{
	/* a thread that cannot be confined must not run guest-facing code */
	if (sandbox_install(kind) < 0)
		_exit(1);
}

static int sandbox_drop(void)
{
	gid_t gid = sandbox.gid;
	if (setgroups(1, &gid) < 0 || setgid(sandbox.gid) < 0 || setuid(sandbox.uid) < 0) {
		log_error("--runas: cannot switch to uid %u gid %u: %s", (unsigned)sandbox.uid,
			  (unsigned)sandbox.gid, strerror(errno));
		return -1;
	}
	return 0;
}

int sandbox_lockdown(void)
{
	if (sandbox.locked)
		return 0;
	if (sandbox.runas && sandbox_drop() < 0)
		return -1;
	sandbox.locked = true;
	return sandbox_install(SANDBOX_MAIN) < 0 ? -1 : 0;
}
