/* VM snapshots: saving a stopped VM to DIR/memory + DIR/state and loading them into a new VM,
 * with one sentence for every way a snapshot can be refused (format in snapshot.h). */
#include "migration/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "migration/config.h"
#include "migration/ram.h"
#include "lib/stream.h"
#include "migration/vmstate.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define RAM_TAG STREAM_TAG('R', 'A', 'M', ' ')
#define RAM_VERSION 1

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static char *path_in(const char *dir, const char *name)
{
	char *p;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* ---- saving ---- */

/* Writes the state file; *reported tells whether a failure was already explained (by vmstate,
 * which names the part that failed) or is the file's (the caller says so). */
static int snapshot_write_state(struct vm *vm, int fd, uint64_t id, bool *reported)
{
	struct stream s;
	stream_init_fd(&s, fd, true);
	stream_write_header(&s, SNAPSHOT_MAGIC, SNAPSHOT_VERSION);
	stream_begin_section(&s, CONFIG_TAG, 0, CONFIG_VERSION);
	config_save(vm->cfg, &s);
	stream_end_section(&s);
	stream_begin_section(&s, RAM_TAG, 0, RAM_VERSION);
	stream_put_u64(&s, vm->mem.ram_size);
	stream_put_u64(&s, id);
	stream_end_section(&s);
	int r = stream_error(&s);
	if (r == 0) {
		r = vmstate_save(vm, &s);
		*reported = r < 0 && !stream_error(&s);
	}
	stream_begin_section(&s, STREAM_TAG_END, 0, 1);
	stream_end_section(&s);
	int cr = stream_close(&s);
	return r < 0 ? r : cr;
}

int snapshot_save(struct vm *vm, const char *dir)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = vmstate_check_supported(vm);
	if (r < 0)
		return r;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_error("cannot create the snapshot directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	char *mem_tmp = path_in(dir, "memory.tmp"), *mem_path = path_in(dir, "memory");
	char *state_tmp = path_in(dir, "state.tmp"), *state_path = path_in(dir, "state");
	uint64_t id = 0, written = 0;
	bool devices_stopped = false;
	if (!mem_tmp || !mem_path || !state_tmp || !state_path) {
		r = -ENOMEM;
		log_error("cannot save a snapshot to %s: %s", dir, strerror(-r));
		goto out;
	}
	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
		id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	vmstate_stop_devices(vm); /* nothing in flight, nothing writing RAM while it is saved */
	devices_stopped = true;
	/* A new file renamed over the old: the old memory file may be the very one this VM's RAM
	 * is privately mapped from (a VM restored from dir), which must not change under it. */
	r = ram_save_file(&vm->mem, mem_tmp, id, &written);
	if (r < 0) {
		log_error("cannot write the guest's memory to %s: %s", mem_tmp, strerror(-r));
		goto out;
	}
	double ram_ms = ms_since(&t0);
	int fd = open(state_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		log_error("cannot create %s: %s", state_tmp, strerror(-r));
		goto out;
	}
	bool reported = false;
	r = snapshot_write_state(vm, fd, id, &reported);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	off_t state_size = lseek(fd, 0, SEEK_CUR);
	close(fd);
	if (r < 0) {
		if (!reported)
			log_error("cannot write the VM's state to %s: %s", state_tmp, strerror(-r));
		goto out;
	}
	if (rename(mem_tmp, mem_path) < 0 || rename(state_tmp, state_path) < 0) {
		r = -errno;
		log_error("cannot put the snapshot in place in %s: %s", dir, strerror(-r));
		goto out;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd); /* the renames are durable too */
		close(dfd);
	}
	fprintf(stderr, "kvmkit: snapshot saved to %s: %llu of %llu MiB of RAM written (the rest "
		"is zero), %lld KiB of state, in %.1f ms (RAM %.1f ms)\n", dir,
		(unsigned long long)(written >> 20), (unsigned long long)(vm->mem.ram_size >> 20),
		(long long)(state_size >> 10), ms_since(&t0), ram_ms);
out:
	if (devices_stopped)
		vmstate_restart_devices(vm);
	if (r < 0 && mem_tmp)
		unlink(mem_tmp);
	if (r < 0 && state_tmp)
		unlink(state_tmp);
	free(mem_tmp);
	free(mem_path);
	free(state_tmp);
	free(state_path);
	return r;
}

static void snapshot_at_exit(struct vm *vm, void *opaque)
{
	(void)opaque;
	if (!vm->cfg->snapshot_at_exit || !vm->vcpus)
		return; /* not asked for, or the VM was never built */
	for (uint32_t i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (uint32_t i = 0; i < vm->ncpus; i++)
		vcpu_join(&vm->vcpus[i]);
	/* With every vCPU joined the reason is final. */
	pthread_mutex_lock(&vm->stop_lock);
	bool save = vm->stop_reason == VM_STOP_EXIT;
	pthread_mutex_unlock(&vm->stop_lock);
	if (save && snapshot_save(vm, vm->cfg->snapshot_at_exit) < 0)
		vm->exit_status = VM_EXIT_STATUS_ERROR;
}

/* ---- loading ---- */

/* Names a section for messages: "'CPU '" for the one being read, "after 'CPU '" for the one
 * following it (whose header or CRC failed), "after the header" before any. */
static const char *section_where(const struct stream_section *sec, bool after, char buf[32])
{
	char tag[5];
	if (!sec)
		snprintf(buf, 32, "after the header");
	else
		snprintf(buf, 32, "%s'%s'", after ? "after " : "", stream_tag_name(sec->tag, tag));
	return buf;
}

/* One sentence for a stream-level failure while reading path; where: section_where(), or NULL
 * while reading the file header. */
static void snapshot_stream_error(const char *path, const struct stream *s, const char *where)
{
	switch (stream_error(s)) {
	case -ENODATA:
		log_error("%s ends early: the snapshot is truncated", path);
		break;
	case -EPROTO:
		log_error("%s: the section %s fails its CRC check: the snapshot is damaged", path,
			  where);
		break;
	case -EPROTONOSUPPORT:
		log_error("%s is a snapshot from a newer kvmkit (the version of %s is not supported)",
			  path, where ? where : "its format");
		break;
	case -EBADMSG:
		if (!where)
			log_error("%s is not a kvmkit snapshot state file", path);
		else
			log_error("%s: the section %s is malformed: the snapshot is damaged", path,
				  where);
		break;
	default:
		log_error("cannot read %s: %s", path, strerror(-stream_error(s)));
	}
}

/* Opens path and reads its header; the fd is returned for closing. */
static int snapshot_open_state(const char *path, struct stream *s, int *fd)
{
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		int err = -errno;
		log_error("cannot open the snapshot state %s: %s", path, strerror(-err));
		return err;
	}
	stream_init_fd(s, *fd, false);
	uint32_t version;
	if (stream_read_header(s, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, &version) < 0) {
		snapshot_stream_error(path, s, NULL);
		int err = stream_close(s);
		close(*fd);
		return err;
	}
	return 0;
}

int snapshot_read_config(const char *dir, struct vm_config *cfg)
{
	char *path = path_in(dir, "state");
	if (!path)
		return -ENOMEM;
	struct stream s;
	int fd;
	int r = snapshot_open_state(path, &s, &fd);
	if (r < 0) {
		free(path);
		return r;
	}
	struct stream_section sec;
	char where[32];
	r = stream_next_section(&s, &sec);
	if (r == 0 && (sec.tag != CONFIG_TAG || sec.instance != 0))
		stream_fail(&s, -EBADMSG);
	if (stream_error(&s))
		snapshot_stream_error(path, &s, section_where(NULL, true, where));
	else if (config_load(cfg, &s, sec.version) < 0)
		snapshot_stream_error(path, &s, section_where(&sec, false, where));
	r = stream_close(&s);
	close(fd);
	free(path);
	return r;
}

/* The RAM section: map DIR/memory as the guest's RAM. */
static int snapshot_load_ram(struct vm *vm, const char *dir, struct stream *s,
			     const struct stream_section *sec, const char *state_path)
{
	uint64_t size = stream_get_u64(s), id = stream_get_u64(s);
	if (stream_end_read(s) < 0 || sec->version != RAM_VERSION) {
		char where[32];
		stream_fail(s, -EBADMSG);
		snapshot_stream_error(state_path, s, section_where(sec, false, where));
		return -EBADMSG;
	}
	if (size != vm->mem.ram_size) {
		log_error("%s describes %llu bytes of RAM but its configuration %llu bytes: the "
			  "snapshot is damaged", state_path, (unsigned long long)size,
			  (unsigned long long)vm->mem.ram_size);
		return -EBADMSG;
	}
	char *mem_path = path_in(dir, "memory");
	if (!mem_path)
		return -ENOMEM;
	int fd = ram_open_file(mem_path, size, id);
	int r = fd < 0 ? fd : guest_mem_map_file(&vm->mem, fd);
	if (fd == -EBADMSG)
		log_error("%s does not belong to %s (another snapshot's memory, or damaged): the "
			  "snapshot cannot be restored", mem_path, state_path);
	else if (r < 0)
		log_error("cannot map the snapshot memory %s: %s", mem_path, strerror(-r));
	if (fd >= 0)
		close(fd); /* the mapping keeps the file */
	free(mem_path);
	return r;
}

static int snapshot_load_sections(struct vm *vm, const char *dir, struct stream *s,
				  const char *path)
{
	struct vmstate_loader loader;
	bool have_ram = false;
	int r = vmstate_loader_init(&loader, vm, path);
	if (r < 0)
		return r;
	struct stream_section sec;
	bool have_sec = false;
	while (r == 0) {
		if (stream_next_section(s, &sec) < 0) {
			char where[32];
			snapshot_stream_error(path, s, section_where(have_sec ? &sec : NULL, true, where));
			r = stream_error(s);
			break;
		}
		have_sec = true;
		bool handled = true;
		char tag[5];
		if (sec.tag == STREAM_TAG_END) {
			break;
		} else if (sec.tag == CONFIG_TAG) {
			stream_skip_rest(s); /* read by snapshot_read_config before the VM was built */
			stream_end_read(s);
		} else if (sec.tag == RAM_TAG && !have_ram) {
			r = snapshot_load_ram(vm, dir, s, &sec, path);
			have_ram = true;
		} else if ((r = vmstate_load_section(&loader, &sec, s, &handled)) < 0 || handled) {
			continue;
		}
		if (!handled) {
			log_error("%s holds a section '%s' that is repeated or unknown to this kvmkit: "
				  "the snapshot is damaged or from a newer kvmkit", path,
				  stream_tag_name(sec.tag, tag));
			r = -EBADMSG;
		}
	}
	/* Only a complete read can lack something; after an error, one sentence is enough. */
	int fr = vmstate_loader_finish(&loader, r == 0);
	if (r == 0)
		r = fr;
	if (r == 0 && !have_ram) {
		log_error("%s lacks its RAM description: the snapshot is damaged", path);
		r = -EBADMSG;
	}
	return r;
}

int snapshot_restore(struct vm *vm, const char *dir)
{
	int r = vmstate_check_supported(vm);
	if (r < 0)
		return r;
	char *path = path_in(dir, "state");
	if (!path)
		return -ENOMEM;
	log_debug("restoring the snapshot in %s", dir);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct stream s;
	int fd;
	r = snapshot_open_state(path, &s, &fd);
	if (r == 0) {
		r = snapshot_load_sections(vm, dir, &s, path);
		stream_close(&s);
		close(fd);
	}
	if (r == 0)
		log_debug("snapshot state loaded in %.3f ms", ms_since(&t0));
	free(path);
	return r;
}

static int snapshot_hook_load(struct vm *vm, void *opaque)
{
	struct snapshot_run *run = opaque;
	if (!vm->cfg->restore_dir || run->restored)
		return 0;
	run->restored = true;
	int r = snapshot_restore(vm, vm->cfg->restore_dir);
	return r < 0 ? r : 1;
}

const struct vm_hook_ops snapshot_vm_hooks = {
	.load = snapshot_hook_load,
	.ended = snapshot_at_exit,
};
