/* Incoming live migration: the target's side of the stream of migrate.h, with one sentence for
 * every way a migration can be refused. */
#include "migration/incoming.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "migration/block_mig.h"
#include "migration/config.h"
#include "migration/migrate.h"
#include "migration/ram.h"
#include "lib/stream.h"
#include "migration/uri.h"
#include "migration/vmstate.h"
#include "vmm/vm.h"

/* One sentence for a stream-level failure (tag: the section being read, or 0). */
static void incoming_stream_error(const char *uri, const struct stream *s, uint32_t tag)
{
	char name[5];
	switch (stream_error(s)) {
	case -ENODATA:
		log_error("the migration stream from %s ended early: the source cancelled the "
			  "migration, failed or was stopped", uri);
		break;
	case -EPROTO:
		log_error("the migration stream from %s was damaged in transit (a section after "
			  "'%s' fails its CRC check)", uri, tag ? stream_tag_name(tag, name) : "none");
		break;
	case -EPROTONOSUPPORT:
		log_error("the migration stream from %s comes from a newer kvmkit", uri);
		break;
	case -EBADMSG:
		if (tag)
			log_error("the migration stream from %s is malformed (section '%s')", uri,
				  stream_tag_name(tag, name));
		else
			log_error("what %s sends is not a kvmkit migration stream", uri);
		break;
	default:
		log_error("cannot receive the migration from %s: %s", uri,
			  strerror(-stream_error(s)));
	}
}

/* The source's machine must be this one: same RAM, vCPUs and devices (files may differ). */
static int incoming_check_config(struct vm *vm, struct stream *s, uint32_t version)
{
	const struct vm_config *ours = vm->cfg;
	struct vm_config theirs = *ours;
	if (config_load(&theirs, s, version) < 0)
		return stream_error(s) ? stream_error(s) : -EBADMSG;
	if (theirs.ram_size != ours->ram_size) {
		log_error("the incoming VM has %llu MiB of RAM but this one %llu MiB: start the "
			  "target with the source's --memory %lluM", (unsigned long long)
			  (theirs.ram_size >> 20), (unsigned long long)(ours->ram_size >> 20),
			  (unsigned long long)(theirs.ram_size >> 20));
		return -EINVAL;
	}
	if (theirs.ncpus != ours->ncpus) {
		log_error("the incoming VM has %u vCPUs but this one %u: start the target with the "
			  "source's --cpus %u", theirs.ncpus, ours->ncpus, theirs.ncpus);
		return -EINVAL;
	}
	if (theirs.ndisks != ours->ndisks || theirs.nnics != ours->nnics ||
	    theirs.rng != ours->rng || theirs.testdev != ours->testdev ||
	    theirs.transport != ours->transport ||
	    (theirs.vconsole.path == NULL) != (ours->vconsole.path == NULL)) {
		log_error("the incoming VM's devices differ from this one's (--disk, --net, --rng, "
			  "--testdev, --vconsole, --transport): start the target with the source's "
			  "options");
		return -EINVAL;
	}
	return 0;
}

/* The RAM image's size, for a check before any page arrives. */
static int incoming_check_ram(struct vm *vm, struct stream *s, const char *uri)
{
	uint64_t size = stream_get_u64(s);
	if (stream_end_read(s) < 0)
		return stream_error(s);
	if (size != vm->mem.mapping_size) {
		log_error("the migration from %s sends a RAM image of %llu bytes, this VM has %llu",
			  uri, (unsigned long long)size, (unsigned long long)vm->mem.mapping_size);
		return -EINVAL;
	}
	return 0;
}

/* Header, then CONF and MRAM in this order. */
static int incoming_begin(struct vm *vm, struct stream *s, const char *uri)
{
	uint32_t version;
	struct stream_section sec;
	if (stream_read_header(s, MIGRATION_MAGIC, MIGRATION_VERSION, &version) < 0) {
		incoming_stream_error(uri, s, 0);
		return stream_error(s);
	}
	if (stream_next_section(s, &sec) < 0 || sec.tag != CONFIG_TAG) {
		stream_fail(s, -EBADMSG);
		incoming_stream_error(uri, s, CONFIG_TAG);
		return stream_error(s);
	}
	int r = incoming_check_config(vm, s, sec.version);
	if (r < 0) {
		if (stream_error(s))
			incoming_stream_error(uri, s, CONFIG_TAG);
		return r;
	}
	if (stream_next_section(s, &sec) < 0 || sec.tag != MIGRATION_RAM_TAG) {
		stream_fail(s, -EBADMSG);
		incoming_stream_error(uri, s, MIGRATION_RAM_TAG);
		return stream_error(s);
	}
	r = incoming_check_ram(vm, s, uri);
	if (r < 0 && stream_error(s))
		incoming_stream_error(uri, s, MIGRATION_RAM_TAG);
	return r;
}

/* RAM pages and vmstate's sections up to END. */
static int incoming_sections(struct vm *vm, struct stream *s, const char *uri,
			     uint64_t *ram_sections)
{
	struct vmstate_loader loader;
	struct block_mig_recv rx = { 0 };
	int r = vmstate_loader_init(&loader, vm, uri);
	if (r < 0)
		return r;
	struct stream_section sec = { .tag = MIGRATION_RAM_TAG };
	for (;;) {
		uint32_t last = sec.tag;
		if (stream_next_section(s, &sec) < 0) {
			incoming_stream_error(uri, s, last);
			r = stream_error(s);
			break;
		}
		if (sec.tag == STREAM_TAG_END)
			break;
		if (sec.tag == RAM_PAGES_TAG) {
			(*ram_sections)++;
			if ((r = ram_recv_pages(s, &vm->mem, sec.version)) < 0) {
				incoming_stream_error(uri, s, sec.tag);
				break;
			}
			continue;
		}
		if (sec.tag == BLOCK_MIG_SIZE_TAG || sec.tag == BLOCK_MIG_DATA_TAG) {
			if ((r = block_mig_recv(&rx, vm, &sec, s, uri)) < 0) {
				if (stream_error(s))
					incoming_stream_error(uri, s, sec.tag);
				break;
			}
			continue;
		}
		bool handled = false;
		if ((r = vmstate_load_section(&loader, &sec, s, &handled)) < 0)
			break;
		if (!handled) {
			char name[5];
			log_error("the migration from %s holds a section '%s' that is repeated or "
				  "unknown to this kvmkit", uri, stream_tag_name(sec.tag, name));
			r = -EBADMSG;
			break;
		}
	}
	int fr = vmstate_loader_finish(&loader, r == 0);
	int br = block_mig_recv_finish(&rx); /* migrated disks durable before the guest runs */
	if (r == 0 && fr == 0 && br < 0)
		log_error("cannot make the migrated disks durable: %s", strerror(-br));
	return r < 0 ? r : fr < 0 ? fr : br;
}

int incoming_load(struct vm *vm)
{
	const char *uri = vm->cfg->incoming_uri;
	int r = vmstate_check_supported(vm);
	if (r < 0)
		return r;
	struct migration_channel ch;
	char why[256];
	log_debug("waiting for the incoming migration on %s", uri);
	if ((r = channel_open(uri, false, &ch, why, sizeof(why))) < 0) {
		log_error("%s", why);
		return r;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct stream s;
	uint64_t ram_sections = 0;
	stream_init_fd(&s, ch.fd, false);
	r = incoming_begin(vm, &s, uri);
	if (r == 0)
		r = incoming_sections(vm, &s, uri, &ram_sections);
	stream_close(&s);
	if (r < 0)
		channel_abort(&ch); /* an exec command writing to us stops too */
	int cr = channel_close(&ch, why, sizeof(why));
	if (r == 0 && cr < 0) {
		log_error("%s", why);
		r = cr;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r == 0)
		log_debug("incoming migration from %s loaded: %llu RAM sections in %.1f ms", uri,
			  (unsigned long long)ram_sections, (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			  (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	return r;
}

static int incoming_hook_load(struct vm *vm, void *opaque)
{
	struct incoming *in = opaque;
	if (!vm->cfg->incoming_uri || in->done)
		return 0;
	in->done = true;
	int r = incoming_load(vm);
	return r < 0 ? r : 1;
}

const struct vm_hook_ops incoming_vm_hooks = { .load = incoming_hook_load };
