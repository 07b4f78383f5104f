/* kvmkit-img: disk image tool in qemu-img's role and syntax (create, info, convert,
 * compare, check, map, resize, snapshot, commit, rebase). */
#include <stdio.h>
#include <string.h>

#include "img/img.h"
#include "lib/log.h"

static const char usage_text[] =
	"Usage: kvmkit-img COMMAND [options]\n"
	"\n"
	"Commands:\n"
	"  create [-f raw|qcow2] [-b BACKING [-F FMT]] [-o OPTIONS] FILE [SIZE]\n"
	"  info [-f FMT] [--output=human|json] FILE\n"
	"  convert [-f FMT] [-O raw|qcow2] [-o OPTIONS] [-p] SRC DST\n"
	"  compare [-f FMT] [-F FMT] [-q] A B\n"
	"  check [-f qcow2] [--output=human|json] [-r leaks] FILE\n"
	"  map [-f FMT] [--output=human|json] FILE\n"
	"  resize [-f FMT] [--shrink] FILE [+|-]SIZE\n"
	"  snapshot [-l | -c NAME | -a NAME | -d NAME] FILE\n"
	"  commit [-f FMT] [-d] [-p] FILE\n"
	"  rebase [-f FMT] [-u] -b BACKING [-F FMT] [-p] FILE\n"
	"\n"
	"SIZE is in bytes with an optional k, M, G or T suffix. OPTIONS (-o) is a comma-separated\n"
	"list of cluster_size=N, lazy_refcounts=on|off, preallocation=off|full (raw),\n"
	"backing_file=FILE, backing_fmt=FMT.\n"
	"compare exits 0 when the images are identical, 1 when they differ, 2 on error.\n"
	"check exits 0 when clean, 2 on corruptions, 3 on leaks only, 1 if it cannot run.\n";

int main(int argc, char **argv)
{
	log_start_clock();
	if (argc < 2) {
		fprintf(stderr, "kvmkit-img: not enough arguments (try 'kvmkit-img --help')\n");
		return 1;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("kvmkit-img version %s\n", KVMKIT_VERSION);
		return 0;
	}
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{ "create", img_create },
		{ "info", img_info },
		{ "convert", img_convert },
		{ "compare", img_compare },
		{ "check", img_check },
		{ "map", img_map },
		{ "resize", img_resize },
		{ "snapshot", img_snapshot },
		{ "commit", img_commit },
		{ "rebase", img_rebase },
	};
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kvmkit-img: command '%s' is not known (try 'kvmkit-img --help')\n", cmd);
	return 1;
}
