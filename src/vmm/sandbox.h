/* Least privilege for kvmkit: a seccomp filter per thread kind and the --runas drop. */
#ifndef KVMKIT_VMM_SANDBOX_H
#define KVMKIT_VMM_SANDBOX_H

/* The kinds of thread kvmkit starts; each installs its own filter when it starts. */
enum sandbox_thread {
	SANDBOX_MAIN,         /* builds the VM (again at each reset), control socket, exec: children */
	SANDBOX_VCPU,         /* KVM_RUN and the device emulation its exits reach */
	SANDBOX_IO,           /* the I/O thread: virtio queues, io_uring, slirp, TAP, sockets */
	SANDBOX_BLOCK_WORKER, /* the block layer's thread pool: positioned reads, writes, flushes */
	SANDBOX_MIGRATION,    /* an outgoing migration: RAM, dirty log, device state to a stream */
	SANDBOX_TIMER,        /* a device's timer (the CMOS clock's): sleeps, raises its IRQ line */
};

enum sandbox_mode {
	SANDBOX_OFF,   /* --sandbox off: no filter */
	SANDBOX_ON,    /* the default: a forbidden system call kills the process (SIGSYS) */
	SANDBOX_DEBUG, /* --sandbox debug: a forbidden call prints its thread and number, exit 1 */
};

/* Called once from the command line, before any thread starts: the mode and the user to run as
 * (NULL: stay who we are). Returns 0, or -1 after printing one sentence (unknown user, not
 * root). */
int sandbox_configure(enum sandbox_mode mode, const char *runas_user);

/* Each thread calls this first: installs the filter of its kind on the calling thread (filters
 * stack: a thread started later also keeps the main thread's). If that fails it prints one
 * sentence and ends the process (status 1): such a thread must not run. */
void sandbox_enter(enum sandbox_thread kind);

/* sandbox_enter(SANDBOX_BLOCK_WORKER), for the block layer's thread-start hook. */
void sandbox_enter_block_worker(void);

/* Called when the VM is built and its vCPUs are about to run: the first call drops to the
 * --runas user (files, /dev/kvm, TAP and sockets are open by now) and installs the main thread's
 * filter; later calls (a guest reset rebuilds the VM) do nothing. Returns 0 or -1 after
 * printing one sentence. */
int sandbox_lockdown(void);

#endif
