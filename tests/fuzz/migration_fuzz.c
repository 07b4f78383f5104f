/* migration_fuzz: a libFuzzer target for the receiving side of live migration as a whole
 * (migration/incoming.c's incoming_load from a file: URI): the stream framing, the
 * configuration and RAM size checks, RAM pages, block migration's disk sections (into a real
 * image file) and vmstate's device sections, in the VM of fuzz_vm.c. The first byte picks the
 * target VM's configuration (bit 0: with a disk and an rng, as the block-migration seeds need;
 * the VM has no virtio device objects, so their sections are refused),
 * the rest is the stream. Built and run by tests/fuzz/migration_run.sh (STREAM_FUZZING: a wrong
 * CRC does not stop an input before the field checks); seeds from migration_seeds.py. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_vm.h"
#include "migration/config.h"
#include "migration/incoming.h"
#include "virtio/devices.h"

/* Block migration's sending side (linked with its receiving side) logs virtio-blk's writes:
 * the fuzz VM has no virtio device, and never sends. */
const struct device_ops virtio_blk_ops = { .name = "virtio-blk" };
void virtio_blk_log_writes(struct virtio_blk *blk, const struct virtio_blk_write_log *log)
{
	(void)blk, (void)log;
	abort();
}

#define FUZZ_RAM (128ULL << 20) /* the test guests' --memory 128M */
#define FUZZ_DISK (1ULL << 20)

static char dir[64], stream_path[96], disk_path[96], uri[128];
static struct vm_config cfgs[2];
static struct vm *vms[2];

static void fuzz_setup(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/kvmkit-migration-fuzz-XXXXXX", base);
	if (!mkdtemp(dir))
		abort();
	snprintf(stream_path, sizeof(stream_path), "%s/stream", dir);
	snprintf(disk_path, sizeof(disk_path), "%s/disk.img", dir);
	snprintf(uri, sizeof(uri), "file:%s", stream_path);
	int fd = open(disk_path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, FUZZ_DISK) < 0)
		abort();
	close(fd);
	for (int i = 0; i < 2; i++) {
		cfgs[i].ram_size = FUZZ_RAM;
		cfgs[i].ncpus = 1;
		cfgs[i].cmdline = "";
		cfgs[i].incoming_uri = uri;
	}
	cfgs[1].ndisks = 1;
	cfgs[1].disks[0].block.path = disk_path;
	cfgs[1].rng = true;
	for (int i = 0; i < 2; i++)
		vms[i] = fuzz_vm_create(&cfgs[i]);
}

static void fuzz_cleanup(void)
{
	unlink(stream_path);
	unlink(disk_path);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vms[0]) {
		fuzz_setup();
		atexit(fuzz_cleanup);
	}
	if (size < 1)
		return 0;
	struct vm *vm = vms[data[0] & 1];
	FILE *f = fopen(stream_path, "wb");
	if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
		abort();
	incoming_load(vm);
	/* The source's configuration strings stay loaded for the process's life (config.c):
	 * released here so that inputs do not pile them up. */
	struct vm_config spent;
	config_release(&spent);
	fuzz_vm_clear_ram(vm);
	return 0;
}
