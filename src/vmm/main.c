/* kvmkit's entry point: parse the command line, open the console and the control socket, set up
 * the main loop and the hooks of each run (incoming migration, snapshots, the control plane),
 * run the VM (again after each guest reset), and exit with the status the guest's way of
 * stopping calls for. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/engine.h"
#include "control/control.h"
#include "lib/log.h"
#include "migration/incoming.h"
#include "migration/snapshot.h"
#include "vmm/cli.h"
#include "vmm/console.h"
#include "vmm/loop.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/sandbox.h"

/* The VM of the current run, for the signal handler. */
struct main_run {
	struct vm *vm;
	int signal_fd;
};

static void main_run_started(struct vm *vm, void *opaque)
{
	((struct main_run *)opaque)->vm = vm;
}

static void main_run_ended(struct vm *vm, void *opaque)
{
	(void)vm;
	((struct main_run *)opaque)->vm = NULL;
}

static const struct vm_hook_ops main_run_hooks = {
	.started = main_run_started,
	.ended = main_run_ended,
};

/* SIGINT, SIGTERM, SIGHUP: the run ends as with the quit key. */
static void main_signal(void *opaque, int fd, short revents)
{
	struct main_run *run = opaque;
	(void)revents;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) != sizeof(si) || !run->vm)
		return;
	fprintf(stderr, "\r\nkvmkit: terminating on signal %u\r\n", si.ssi_signo);
	run->vm->dump_vcpus = getenv("KVMKIT_DEBUG") != NULL;
	vm_stop_because(run->vm, VM_STOP_EXIT, 0, "host-signal");
}

int main(int argc, char **argv)
{
	log_start_clock();
	struct cli_options opts;
	switch (cli_parse(argc, argv, &opts)) {
	case CLI_EXIT_OK: return 0;
	case CLI_EXIT_ERROR: return VM_EXIT_STATUS_ERROR;
	case CLI_RUN: break;
	}
	if (sandbox_configure(opts.sandbox, opts.runas) < 0)
		return VM_EXIT_STATUS_ERROR;
	block_engine_thread_start = sandbox_enter_block_worker;

	/* Termination signals are read from a signalfd by the main loop; blocking them before
	 * any thread starts keeps them away from vCPU threads. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	struct main_run run = { .signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK) };
	if (run.signal_fd < 0) {
		/* with the signals blocked and nobody reading them, only SIGKILL could stop us */
		log_error("cannot create the descriptor kvmkit reads SIGINT and SIGTERM from: %s "
			  "(raise the open-file limit, ulimit -n)", strerror(errno));
		return VM_EXIT_STATUS_ERROR;
	}
	signal(SIGPIPE, SIG_IGN);
	vcpu_init_signals();

	struct loop *loop = loop_create();
	if (!loop || loop_add(loop, run.signal_fd, POLLIN, main_signal, &run) < 0) {
		log_error("cannot set up the main loop: %s", strerror(ENOMEM));
		return VM_EXIT_STATUS_ERROR;
	}
	opts.vm.console = console_open(opts.serial);
	if (!opts.vm.console)
		return VM_EXIT_STATUS_ERROR;
	/* The control socket and monitor outlive guest resets, as the console does. */
	struct control *ctl = NULL;
	if (opts.control.qmp_path || opts.control.monitor_stdio) {
		ctl = control_open(&opts.control, loop);
		if (!ctl) {
			console_close(opts.vm.console);
			return VM_EXIT_STATUS_ERROR;
		}
	}
	opts.vm.start_paused = opts.control.start_paused;

	/* In this order: a migration or a snapshot loads the first VM instead of its kernel; at
	 * the end of a run the snapshot at exit is saved before the control plane reports it. */
	struct incoming incoming = { 0 };
	struct snapshot_run snapshot = { 0 };
	struct vm_hooks hooks = { 0 };
	vm_hooks_add(&hooks, &main_run_hooks, &run);
	vm_hooks_add(&hooks, &incoming_vm_hooks, &incoming);
	vm_hooks_add(&hooks, &snapshot_vm_hooks, &snapshot);
	if (ctl)
		vm_hooks_add(&hooks, &control_vm_hooks, ctl);

	int status;
	enum vm_stop_reason reason;
	while ((reason = vm_run(&opts.vm, loop, &hooks, &status)) == VM_STOP_RESET &&
	       !opts.vm.no_reboot) {
		/* a guest reset: build a fresh VM with the same configuration, still paused if a
		 * monitor's stop was in force */
		opts.vm.start_paused = ctl && control_wants_paused(ctl);
	}

	control_close(ctl);
	console_close(opts.vm.console);
	loop_destroy(loop);
	close(run.signal_fd);
	return status;
}
