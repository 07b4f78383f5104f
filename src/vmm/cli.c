/* The kvmkit command line: `kvmkit run` options, --help and --version, with one clear
 * sentence for every input it refuses. */
#include "vmm/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "firmware/bios_rom.h"
#include "firmware/smbios.h"
#include "lib/size.h"
#include "migration/snapshot.h"
#include "migration/uri.h"
#include "vmm/console.h"

#define DEFAULT_RAM (512ULL << 20)
#define MIN_RAM     (4ULL << 20)
#define MAX_CPUS    1024 /* KVM's own limit is checked when the VM is created */

static const char usage_text[] =
	"Usage: kvmkit run --kernel FILE [options]\n"
	"       kvmkit run [options] IMAGE      (boots IMAGE, the first disk, through the BIOS)\n"
	"       kvmkit --help | --version\n"
	"\n"
	"Runs one virtual machine in the foreground through /dev/kvm.\n"
	"\n"
	"Options of 'run':\n"
	"  --kernel FILE      Linux bzImage, ELF vmlinux with a PVH note, or multiboot kernel\n"
	"  --firmware bios|FILE\n"
	"                     boot through firmware instead of --kernel: bios is Debian's SeaBIOS\n"
	"                     (" BIOS_ROM_DEFAULT_PATH "); the default when no --kernel\n"
	"                     is given\n"
	"  --boot [order=LETTERS][,menu=on|off]\n"
	"                     firmware boot order as QEMU's -boot: c the first disk, d the CD-ROM,\n"
	"                     n the network (up to 3, default c); menu=on shows the boot menu\n"
	"  --firmware-log FILE\n"
	"                     the firmware's debug output (port 0x402, QEMU's isa-debugcon) goes\n"
	"                     to FILE (truncated); without it, to the KVMKIT_DEBUG log\n"
	"  --uuid UUID        the machine's UUID (8-4-4-4-12 hex digits) in the SMBIOS tables and\n"
	"                     fw_cfg of firmware boot, as QEMU's -uuid; without it, all zeros\n"
	"  --initrd FILE      initial ramdisk (for multiboot kernels: the first module)\n"
	"  --append CMDLINE   kernel command line\n"
	"  --memory SIZE      guest RAM, e.g. 512M or 2G (a bare number is MiB; default 512M)\n"
	"  --cpus N           number of vCPUs (default 1)\n"
	"  --serial BACKEND   COM1: stdio (default), file:PATH, unix:PATH (a socket to connect\n"
	"                     to) or none\n"
	"  --no-reboot        exit (status 2) when the guest resets instead of restarting it\n"
	"  --testdev          add QEMU's pc-testdev (ports 0xe0, 0x2000+IRQ, MMIO 0xff000000) for test kernels\n"
	"  --stats            print VM exit counts when the guest stops\n"
	"  --disk path=FILE[,format=raw][,readonly=on][,cache=writeback|none|unsafe][,serial=ID]\n"
	"                     a virtio-blk disk (repeatable; /dev/vda, vdb, ... in order). A bare\n"
	"                     FILE means path=FILE. cache: writeback (default), none (O_DIRECT),\n"
	"                     unsafe (flushes ignored)\n"
	"  --rng              a virtio-rng device fed from the host's getrandom()\n"
	"  --net user[,hostfwd=tcp::HOSTPORT-:GUESTPORT]...[,mac=MAC]\n"
	"                     a virtio-net NIC with user-mode networking (no root needed: DHCP,\n"
	"                     DNS, outbound TCP/UDP, inbound forwards), repeatable\n"
	"  --net tap,ifname=NAME[,mac=MAC]\n"
	"                     a virtio-net NIC on the TAP interface NAME\n"
	"  --vconsole PATH[,name=NAME]\n"
	"                     a virtio-console port (default name org.kvmkit.port.0) carried over\n"
	"                     the unix socket PATH, which kvmkit listens on\n"
	"  --control unix:PATH\n"
	"                     a QMP server (QEMU's machine protocol) on the unix socket PATH\n"
	"                     (mode 0600, removed at exit); QEMU's -qmp unix:PATH,server,nowait\n"
	"                     is accepted too\n"
	"  --monitor stdio    the human monitor, QEMU's '(qemu)' prompt, on stdin/stdout; the\n"
	"                     serial console then defaults to none\n"
	"  -S, --paused       start with the vCPUs paused until the monitor's cont\n"
	"  --restore DIR      resume the VM saved in DIR (its configuration comes from there:\n"
	"                     machine options such as --memory cannot be given with it)\n"
	"  --incoming URI     wait for a live migration on URI (tcp:HOST:PORT, unix:PATH,\n"
	"                     exec:COMMAND or file:PATH) and run the VM it brings; the other\n"
	"                     options must describe the source's machine (--memory, --cpus, ...)\n"
	"  --snapshot-at-exit DIR\n"
	"                     when the run ends by the debug-exit port, Ctrl-A x or a signal, save\n"
	"                     the VM to DIR (DIR/state, DIR/memory) for --restore (testing aid)\n"
	"  --transport pci|mmio\n"
	"                     how virtio devices are attached (default pci; mmio: virtio-mmio\n"
	"                     windows announced in ACPI and on the kernel command line)\n"
	"  --sandbox on|off|debug\n"
	"                     seccomp filters per thread (default on: a forbidden system call\n"
	"                     kills kvmkit with SIGSYS; debug: it prints the thread and the call's\n"
	"                     number, and kvmkit exits with status 1); QEMU's -sandbox\n"
	"  --runas USER       once /dev/kvm, images, TAP and sockets are open, run as USER (needs\n"
	"                     root; USER must be able to reopen them if the guest resets)\n"
	"  -h, --help         show this help\n"
	"  -V, --version      show the version\n"
	"\n"
	"On the serial console (stdio), Ctrl-A x quits, Ctrl-A b sends a break, Ctrl-A a sends\n"
	"Ctrl-A.\n"
	"Exit status: 0 guest powered off (or Ctrl-A x, or SIGTERM), 1 error, 2 guest reset with\n"
	"--no-reboot, (v << 1) | 1 when a test guest writes v to the debug-exit port 0xf4.\n";

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_APPEND, OPT_MEMORY, OPT_CPUS, OPT_SERIAL,
       OPT_NO_REBOOT, OPT_TESTDEV, OPT_STATS, OPT_DISK, OPT_RNG, OPT_NET,
       OPT_VCONSOLE, OPT_TRANSPORT, OPT_RESTORE, OPT_SNAPSHOT_AT_EXIT, OPT_CONTROL, OPT_QMP,
       OPT_MONITOR, OPT_INCOMING, OPT_SANDBOX, OPT_RUNAS, OPT_FIRMWARE, OPT_FIRMWARE_LOG,
       OPT_UUID, OPT_BOOT };

static const struct option run_options[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "firmware", required_argument, NULL, OPT_FIRMWARE },
	{ "firmware-log", required_argument, NULL, OPT_FIRMWARE_LOG },
	{ "uuid", required_argument, NULL, OPT_UUID },
	{ "boot", required_argument, NULL, OPT_BOOT },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "append", required_argument, NULL, OPT_APPEND },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
	{ "testdev", no_argument, NULL, OPT_TESTDEV },
	{ "stats", no_argument, NULL, OPT_STATS },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "net", required_argument, NULL, OPT_NET },
	{ "vconsole", required_argument, NULL, OPT_VCONSOLE },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "snapshot-at-exit", required_argument, NULL, OPT_SNAPSHOT_AT_EXIT },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "qmp", required_argument, NULL, OPT_QMP },
	{ "monitor", required_argument, NULL, OPT_MONITOR },
	{ "incoming", required_argument, NULL, OPT_INCOMING },
	{ "sandbox", required_argument, NULL, OPT_SANDBOX },
	{ "runas", required_argument, NULL, OPT_RUNAS },
	{ "paused", no_argument, NULL, 'S' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int parse_memory(const char *text, uint64_t *out)
{
	int r = size_parse(text, 1ULL << 20, out);
	if (r == -EINVAL) {
		log_error("cannot understand memory size '%s' (use a size such as 512M or 2G)", text);
		return -1;
	}
	uint64_t host = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	if (r == 0 && *out < MIN_RAM) {
		log_error("memory size '%s' is too small: a guest needs at least %llu MiB", text,
			  (unsigned long long)(MIN_RAM >> 20));
		return -1;
	}
	/* KVM maps RAM in pages and the e820 map and migration count it in MiB: a size that is
	 * not a whole MiB would be silently rounded somewhere. */
	if (r == 0 && *out % (1ULL << 20) != 0) {
		log_error("memory size '%s' is not a whole number of MiB (use a size such as 64M)",
			  text);
		return -1;
	}
	if (r == -ERANGE || *out > host) {
		log_error("memory size '%s' is more than this host's %llu MiB of RAM", text,
			  (unsigned long long)(host >> 20));
		return -1;
	}
	return 0;
}

static int parse_cpus(const char *text, uint32_t *out)
{
	char *end;
	errno = 0;
	long n = strtol(text, &end, 10);
	if (errno || *end || end == text || n < 1) {
		log_error("cannot understand vCPU count '%s' (use a whole number from 1)", text);
		return -1;
	}
	if (n > MAX_CPUS) {
		log_error("%ld vCPUs requested; kvmkit supports at most %d", n, MAX_CPUS);
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

/* "on"/"off" (and yes/no, true/false, 1/0, as QEMU accepts). */
static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true", "1" };
	static const char *const no[] = { "off", "no", "false", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, yes[i]) == 0) { *out = true; return 0; }
		if (strcmp(v, no[i]) == 0) { *out = false; return 0; }
	}
	return -1;
}

/* --disk path=FILE,format=raw,readonly=on,cache=none,serial=ID (or a bare FILE). The values
 * point into `spec`, which is modified (commas become NULs); argv outlives the VM. */
static int parse_disk(char *spec, struct vm_disk *d)
{
	memset(d, 0, sizeof(*d));
	d->block.cache = BLOCK_CACHE_WRITEBACK;
	const char *orig = strdup(spec);
	for (char *save = NULL, *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq && !d->block.path && kv == spec) {
			d->block.path = kv;
			continue;
		}
		if (!eq) {
			log_error("--disk '%s': '%s' is not KEY=VALUE", orig ? orig : "", kv);
			goto bad;
		}
		*eq = '\0';
		const char *k = kv, *v = eq + 1;
		if (strcmp(k, "path") == 0 || strcmp(k, "file") == 0) {
			d->block.path = v;
		} else if (strcmp(k, "format") == 0) {
			d->block.format = v;
		} else if (strcmp(k, "readonly") == 0) {
			if (parse_bool(v, &d->block.readonly) < 0) {
				log_error("--disk: readonly wants on or off, not '%s'", v);
				goto bad;
			}
		} else if (strcmp(k, "cache") == 0) {
			if (strcmp(v, "writeback") == 0)
				d->block.cache = BLOCK_CACHE_WRITEBACK;
			else if (strcmp(v, "none") == 0)
				d->block.cache = BLOCK_CACHE_NONE;
			else if (strcmp(v, "unsafe") == 0)
				d->block.cache = BLOCK_CACHE_UNSAFE;
			else {
				log_error("--disk: cache wants writeback, none or unsafe, not '%s'", v);
				goto bad;
			}
		} else if (strcmp(k, "serial") == 0) {
			if (strlen(v) > 20) {
				log_error("--disk: serial '%s' is longer than 20 characters", v);
				goto bad;
			}
			d->serial = v;
		} else {
			log_error("--disk: unknown key '%s' (path, format, readonly, cache, serial)", k);
			goto bad;
		}
	}
	if (!d->block.path || !*d->block.path) {
		log_error("--disk '%s' names no image: use --disk path=FILE", orig ? orig : "");
		goto bad;
	}
	free((void *)orig);
	return 0;
bad:
	free((void *)orig);
	return -1;
}

/* "52:54:00:12:34:56" */
static int parse_mac(const char *v, uint8_t mac[6])
{
	unsigned b[6];
	char tail;
	if (sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return (mac[0] & 1) ? -1 : 0; /* a multicast address cannot be a NIC's */
}

/* --net user[,hostfwd=...][,mac=...] | tap,ifname=NAME[,mac=...]; values point into spec. */
static int parse_net(char *spec, unsigned index, struct vm_nic *n)
{
	memset(n, 0, sizeof(*n));
	static const uint8_t base_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	memcpy(n->mac, base_mac, 6);
	n->mac[5] = (uint8_t)(base_mac[5] + index);
	char *save = NULL;
	char *kind = strtok_r(spec, ",", &save);
	if (kind && strcmp(kind, "user") == 0) {
		n->backend = VM_NIC_USER;
	} else if (kind && strcmp(kind, "tap") == 0) {
		n->backend = VM_NIC_TAP;
	} else {
		log_error("--net wants user or tap first, not '%s'", kind ? kind : "");
		return -1;
	}
	for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			log_error("--net: '%s' is not KEY=VALUE", kv);
			return -1;
		}
		*eq = '\0';
		const char *k = kv, *v = eq + 1;
		if (strcmp(k, "mac") == 0) {
			if (parse_mac(v, n->mac) < 0) {
				log_error("--net: '%s' is not a unicast MAC address like 52:54:00:12:34:56", v);
				return -1;
			}
		} else if (strcmp(k, "ifname") == 0 && n->backend == VM_NIC_TAP) {
			n->ifname = v;
		} else if (strcmp(k, "hostfwd") == 0 && n->backend == VM_NIC_USER) {
			if (n->nhostfwd == VM_MAX_HOSTFWDS) {
				log_error("--net: at most %d hostfwd rules", VM_MAX_HOSTFWDS);
				return -1;
			}
			n->hostfwd[n->nhostfwd++] = v;
		} else {
			log_error("--net %s: unknown key '%s'", n->backend == VM_NIC_TAP ? "tap" : "user", k);
			return -1;
		}
	}
	if (n->backend == VM_NIC_TAP && (!n->ifname || !*n->ifname)) {
		log_error("--net tap needs ifname=NAME");
		return -1;
	}
	return 0;
}

static int parse_vconsole(char *spec, struct vm_vconsole *c)
{
	char *save = NULL;
	c->path = strtok_r(spec, ",", &save);
	c->name = "org.kvmkit.port.0";
	for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		if (strncmp(kv, "name=", 5) == 0 && kv[5]) {
			c->name = kv + 5;
		} else {
			log_error("--vconsole: unknown option '%s' (name=NAME)", kv);
			return -1;
		}
	}
	if (!c->path || !*c->path) {
		log_error("--vconsole needs a socket path");
		return -1;
	}
	return 0;
}

/* --control unix:PATH, or QEMU's -qmp unix:PATH[,server[=on]][,nowait|,wait=off] (kvmkit never
 * waits for a client before starting the guest). PATH points into spec, which is modified. */
static int parse_control(char *spec, bool qemu_spelling, const char **path)
{
	const char *opt = qemu_spelling ? "-qmp" : "--control";
	if (strncmp(spec, "unix:", 5) != 0 || !spec[5]) {
		log_error("%s wants unix:PATH, not '%s'", opt, spec);
		return -1;
	}
	char *save = NULL;
	*path = strtok_r(spec + 5, ",", &save);
	for (char *o = strtok_r(NULL, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		bool known = qemu_spelling && (strcmp(o, "server") == 0 || strcmp(o, "server=on") == 0 ||
					       strcmp(o, "nowait") == 0 || strcmp(o, "wait=off") == 0);
		if (!known) {
			log_error("%s: option '%s' is not supported (kvmkit always listens and never "
				  "waits: unix:PATH%s)", opt, o, qemu_spelling ? ",server,nowait" : "");
			return -1;
		}
	}
	return 0;
}

/* The options that describe the machine (and so come from the snapshot with --restore). */
/* --boot order=cdn,menu=on (QEMU's -boot; a bare "order" value as in `-boot d` too). */
static int parse_boot(char *spec, struct vm_config *cfg)
{
	for (char *save = NULL, *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		const char *k = eq ? kv : "order", *v = eq ? eq + 1 : kv;
		if (eq)
			*eq = '\0';
		if (strcmp(k, "order") == 0) {
			size_t n = strlen(v);
			if (n == 0 || n >= sizeof(cfg->boot_order) || strspn(v, "cdn") != n) {
				log_error("--boot order wants up to %zu of c (disk), d (CD-ROM), n (network), "
					  "not '%s'", sizeof(cfg->boot_order) - 1, v);
				return -1;
			}
			memcpy(cfg->boot_order, v, n + 1);
		} else if (strcmp(k, "menu") == 0) {
			if (parse_bool(v, &cfg->boot_menu) < 0) {
				log_error("--boot menu wants on or off, not '%s'", v);
				return -1;
			}
		} else {
			log_error("--boot: unknown key '%s' (order, menu)", k);
			return -1;
		}
	}
	return 0;
}

/* --firmware-log FILE: opened (truncated) once here, so every boot of the run appends to it;
 * the descriptor stays above 2 (the VM takes fds 0-2 for the standard streams). */
static int cli_open_firmware_log(struct cli_options *o, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0 && fd <= 2) {
		int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		close(fd);
		fd = high;
	}
	if (fd < 0) {
		log_error("cannot open the firmware log '%s': %s", path, strerror(errno));
		return -1;
	}
	if (o->vm.firmware_log_fd >= 0)
		close(o->vm.firmware_log_fd);
	o->vm.firmware_log_fd = fd;
	return 0;
}

/* `kvmkit run IMAGE`: IMAGE becomes the first disk, before any --disk. */
static int cli_add_image(struct cli_options *o, const char *image)
{
	if (o->vm.ndisks == VM_MAX_DISKS) {
		log_error("at most %d disks (--disk and the image)", VM_MAX_DISKS);
		return -1;
	}
	memmove(&o->vm.disks[1], &o->vm.disks[0], o->vm.ndisks * sizeof(o->vm.disks[0]));
	memset(&o->vm.disks[0], 0, sizeof(o->vm.disks[0]));
	o->vm.disks[0].block.path = image;
	o->vm.disks[0].block.cache = BLOCK_CACHE_WRITEBACK;
	o->vm.ndisks++;
	return 0;
}

static bool is_machine_option(int opt)
{
	switch (opt) {
	case OPT_FIRMWARE: case OPT_KERNEL: case OPT_INITRD: case OPT_APPEND: case OPT_MEMORY:
	case OPT_CPUS:
	case OPT_NO_REBOOT: case OPT_TESTDEV: case OPT_DISK: case OPT_RNG: case OPT_NET:
	case OPT_VCONSOLE: case OPT_TRANSPORT: case OPT_UUID:
		return true;
	default:
		return false;
	}
}

/* --restore DIR: the configuration is the snapshot's; a machine option beside it would be
 * either redundant or a different machine than the saved guest expects, so it is refused. */
static int restore_config(struct cli_options *o, const char *dir, int machine_opt)
{
	for (const struct option *opt = run_options; machine_opt && opt->name; opt++) {
		if (opt->val == machine_opt) {
			log_error("--restore rebuilds the machine from the snapshot's configuration: "
				  "leave out --%s", opt->name);
			return -1;
		}
	}
	if (snapshot_read_config(dir, &o->vm) < 0)
		return -1;
	o->vm.restore_dir = dir;
	return 0;
}

static int check_readable(const char *path, const char *what)
{
	if (access(path, R_OK) < 0) {
		log_error("cannot read %s '%s': %s", what, path, strerror(errno));
		return -1;
	}
	return 0;
}

enum cli_result cli_parse(int argc, char **argv, struct cli_options *o)
{
	memset(o, 0, sizeof(*o));
	o->vm.cmdline = "";
	o->vm.firmware_log_fd = -1;
	o->vm.ram_size = DEFAULT_RAM;
	o->vm.ncpus = 1;
	o->sandbox = SANDBOX_ON;
	o->serial = NULL; /* stdio unless --monitor stdio takes stdio */

	if (argc < 2) {
		fputs(usage_text, stderr);
		return CLI_EXIT_ERROR;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("kvmkit %s\n", KVMKIT_VERSION);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "run") != 0) {
		log_error("unknown command '%s' (try 'kvmkit --help')", cmd);
		return CLI_EXIT_ERROR;
	}

	/* QEMU's single-dash -qmp, as the long option --qmp. */
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "-qmp") == 0)
			argv[i] = (char *)"--qmp";

	const char *restore_dir = NULL;
	int machine_opt = 0; /* the last machine option given (for --restore's refusal) */
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc - 1, argv + 1, ":hVS", run_options, NULL)) != -1) {
		if (is_machine_option(c))
			machine_opt = c;
		switch (c) {
		case OPT_KERNEL: o->vm.kernel = optarg; break;
		case OPT_FIRMWARE:
			if (strcmp(optarg, "uefi") == 0) {
				log_error("--firmware uefi is not there yet: use bios");
				return CLI_EXIT_ERROR;
			}
			o->vm.firmware = strcmp(optarg, "bios") == 0 ? BIOS_ROM_DEFAULT_PATH : optarg;
			break;
		case OPT_BOOT:
			if (parse_boot(optarg, &o->vm) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_FIRMWARE_LOG:
			if (cli_open_firmware_log(o, optarg) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_UUID:
			if (smbios_parse_uuid(optarg, o->vm.uuid) < 0) {
				log_error("--uuid '%s' is not a UUID: give 32 hex digits as "
					  "8-4-4-4-12, e.g. 12345678-9abc-def0-1234-56789abcdef0", optarg);
				return CLI_EXIT_ERROR;
			}
			o->vm.uuid_set = true;
			break;
		case OPT_INITRD: o->vm.initrd = optarg; break;
		case OPT_APPEND: o->vm.cmdline = optarg; break;
		case OPT_MEMORY:
			if (parse_memory(optarg, &o->vm.ram_size) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_CPUS:
			if (parse_cpus(optarg, &o->vm.ncpus) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_SERIAL:
			if (console_spec_valid(optarg) < 0) {
				log_error("unknown serial backend '%s' (use stdio, file:PATH, "
					  "unix:PATH or none)", optarg);
				return CLI_EXIT_ERROR;
			}
			o->serial = optarg;
			break;
		case OPT_NO_REBOOT: o->vm.no_reboot = true; break;
		case OPT_TESTDEV: o->vm.testdev = true; break;
		case OPT_STATS: o->vm.stats = true; break;
		case OPT_DISK:
			if (o->vm.ndisks == VM_MAX_DISKS) {
				log_error("at most %d disks (--disk)", VM_MAX_DISKS);
				return CLI_EXIT_ERROR;
			}
			if (parse_disk(optarg, &o->vm.disks[o->vm.ndisks]) < 0)
				return CLI_EXIT_ERROR;
			o->vm.ndisks++;
			break;
		case OPT_RNG: o->vm.rng = true; break;
		case OPT_NET:
			if (o->vm.nnics == VM_MAX_NICS) {
				log_error("at most %d NICs (--net)", VM_MAX_NICS);
				return CLI_EXIT_ERROR;
			}
			if (parse_net(optarg, o->vm.nnics, &o->vm.nics[o->vm.nnics]) < 0)
				return CLI_EXIT_ERROR;
			o->vm.nnics++;
			break;
		case OPT_VCONSOLE:
			if (parse_vconsole(optarg, &o->vm.vconsole) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_TRANSPORT:
			if (strcmp(optarg, "pci") == 0) {
				o->vm.transport = VIRTIO_TRANSPORT_PCI;
			} else if (strcmp(optarg, "mmio") == 0) {
				o->vm.transport = VIRTIO_TRANSPORT_MMIO;
			} else {
				log_error("--transport wants pci or mmio, not '%s'", optarg);
				return CLI_EXIT_ERROR;
			}
			break;
		case OPT_CONTROL:
		case OPT_QMP:
			if (parse_control(optarg, c == OPT_QMP, &o->control.qmp_path) < 0)
				return CLI_EXIT_ERROR;
			break;
		case OPT_MONITOR:
			if (strcmp(optarg, "stdio") != 0) {
				log_error("--monitor wants stdio, not '%s'", optarg);
				return CLI_EXIT_ERROR;
			}
			o->control.monitor_stdio = true;
			break;
		case 'S': o->control.start_paused = true; break;
		case OPT_RESTORE: restore_dir = optarg; break;
		case OPT_SNAPSHOT_AT_EXIT: o->vm.snapshot_at_exit = optarg; break;
		case OPT_SANDBOX:
			if (strcmp(optarg, "on") == 0)
				o->sandbox = SANDBOX_ON;
			else if (strcmp(optarg, "off") == 0)
				o->sandbox = SANDBOX_OFF;
			else if (strcmp(optarg, "debug") == 0)
				o->sandbox = SANDBOX_DEBUG;
			else {
				log_error("unknown --sandbox value '%s' (use on, off or debug)", optarg);
				return CLI_EXIT_ERROR;
			}
			break;
		case OPT_RUNAS: o->runas = optarg; break;
		case OPT_INCOMING: {
			char why[256];
			if (channel_check_uri(optarg, why, sizeof(why)) < 0) {
				log_error("--incoming: %s", why);
				return CLI_EXIT_ERROR;
			}
			o->vm.incoming_uri = optarg;
			break;
		}
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		case 'V': printf("kvmkit %s\n", KVMKIT_VERSION); return CLI_EXIT_OK;
		case ':':
			log_error("option '%s' needs a value (see 'kvmkit --help')", argv[optind]);
			return CLI_EXIT_ERROR;
		default:
			log_error("unknown option '%s' (see 'kvmkit --help')", argv[optind]);
			return CLI_EXIT_ERROR;
		}
	}
	/* argv + 1 was parsed: a word left over is the image QEMU's `qemu-system-x86_64 disk.img`
	 * boots, the first disk. */
	if (optind < argc - 2) {
		log_error("unexpected argument '%s' (see 'kvmkit --help')", argv[optind + 2]);
		return CLI_EXIT_ERROR;
	}
	if (optind == argc - 2 && cli_add_image(o, argv[optind + 1]) < 0)
		return CLI_EXIT_ERROR;
	if (o->control.monitor_stdio && o->serial && strcmp(o->serial, "stdio") == 0) {
		log_error("--monitor stdio and --serial stdio cannot share the terminal: give the "
			  "serial console file:PATH, unix:PATH or none");
		return CLI_EXIT_ERROR;
	}
	if (!o->serial)
		o->serial = o->control.monitor_stdio ? "none" : "stdio";
	if (o->control.start_paused && !o->control.qmp_path && !o->control.monitor_stdio) {
		log_error("-S starts the guest paused: it needs --control or --monitor to resume it");
		return CLI_EXIT_ERROR;
	}
	if (restore_dir && o->vm.incoming_uri) {
		log_error("--restore and --incoming both bring a saved VM: give one of them");
		return CLI_EXIT_ERROR;
	}
	if (restore_dir)
		return restore_config(o, restore_dir, machine_opt) < 0 ? CLI_EXIT_ERROR : CLI_RUN;
	if (o->vm.kernel && o->vm.firmware) {
		log_error("--kernel and --firmware are two ways to boot: give one of them");
		return CLI_EXIT_ERROR;
	}
	if (!o->vm.kernel && !o->vm.firmware && o->vm.ndisks)
		o->vm.firmware = BIOS_ROM_DEFAULT_PATH; /* an image and no kernel: the BIOS boots it */
	if (o->vm.firmware && (o->vm.initrd || o->vm.cmdline[0])) {
		log_error("--initrd and --append go with --kernel, not with firmware boot");
		return CLI_EXIT_ERROR;
	}
	if (o->vm.firmware)
		return CLI_RUN;
	if (!o->vm.kernel) {
		log_error("no kernel given: use --kernel FILE, or give a disk image to boot");
		return CLI_EXIT_ERROR;
	}
	if (check_readable(o->vm.kernel, "kernel") < 0 ||
	    (o->vm.initrd && check_readable(o->vm.initrd, "initrd") < 0))
		return CLI_EXIT_ERROR;
	return CLI_RUN;
}
