/* kvmkit's entry point: parse the command line, open the console and the control socket, run
 * the VM (again after each guest reset), and exit with the status the guest's way of stopping
 * calls for. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "block/engine.h"
#include "control/control.h"
#include "lib/log.h"
#include "vmm/cli.h"
#include "vmm/console.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/sandbox.h"

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
	opts.vm.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (opts.vm.signal_fd < 0) {
		/* with the signals blocked and nobody reading them, only SIGKILL could stop us */
		log_error("cannot create the descriptor kvmkit reads SIGINT and SIGTERM from: %s "
			  "(raise the open-file limit, ulimit -n)", strerror(errno));
		return VM_EXIT_STATUS_ERROR;
	}
	signal(SIGPIPE, SIG_IGN);
	vcpu_init_signals();

	opts.vm.console = console_open(opts.serial);
	if (!opts.vm.console)
		return VM_EXIT_STATUS_ERROR;
	/* The control socket and monitor outlive guest resets, as the console does. */
	if (opts.control.qmp_path || opts.control.monitor_stdio) {
		opts.vm.control = control_open(&opts.control);
		if (!opts.vm.control) {
			console_close(opts.vm.console);
			return VM_EXIT_STATUS_ERROR;
		}
	}
	opts.vm.start_paused = opts.control.start_paused;

	int status;
	enum vm_stop_reason reason;
	while ((reason = vm_run(&opts.vm, &status)) == VM_STOP_RESET && !opts.vm.no_reboot) {
		/* a guest reset: build a fresh VM with the same configuration, still paused if a
		 * monitor's stop was in force */
		opts.vm.start_paused = opts.vm.control && control_wants_paused(opts.vm.control);
	}

	control_close(opts.vm.control);
	console_close(opts.vm.console);
	if (opts.vm.signal_fd >= 0)
		close(opts.vm.signal_fd);
	return status;
}
