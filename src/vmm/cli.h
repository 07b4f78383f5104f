/* The kvmkit command line: `kvmkit run` options, --help and --version. */
#ifndef KVMKIT_VMM_CLI_H
#define KVMKIT_VMM_CLI_H

#include "control/control.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"

struct cli_options {
	struct vm_config vm;
	const char *serial; /* console spec */
	struct control_options control; /* --control, --monitor, -S */
	enum sandbox_mode sandbox;      /* --sandbox (default on) */
	const char *runas;              /* --runas USER, or NULL */
};

enum cli_result { CLI_RUN, CLI_EXIT_OK, CLI_EXIT_ERROR };

/* Parses argv into *o. Prints help/version (CLI_EXIT_OK) or one sentence on a usage error
 * (CLI_EXIT_ERROR). */
enum cli_result cli_parse(int argc, char **argv, struct cli_options *o);

#endif
