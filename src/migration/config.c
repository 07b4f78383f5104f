/* The "CONF" section of a snapshot: the machine's options (kernel or firmware, memory, vCPUs,
 * devices and their back-ends) written with absolute file paths, and read back with every
 * count, size and enumeration checked. */
#include "migration/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lib/stream.h"
#include "vmm/vm.h"

#define CONFIG_MAX_STR 4096            /* a path or a command line */
#define CONFIG_MIN_RAM (4ULL << 20)     /* as the command line allows */
#define CONFIG_MAX_RAM (1ULL << 46)     /* as vmm/memory.c allows */
#define CONFIG_MAX_CPUS 1024

#define FLAG_NO_REBOOT 1u
#define FLAG_TESTDEV   2u
#define FLAG_RNG       4u
#define FLAG_UUID      8u

/* A file named relative to the saving process's directory must still be found by a restore
 * started elsewhere. */
static void put_path(struct stream *s, const char *path)
{
	char abs[PATH_MAX];
	stream_put_str(s, path && realpath(path, abs) ? abs : path);
}

void config_save(const struct vm_config *cfg, struct stream *s)
{
	put_path(s, cfg->kernel);
	put_path(s, cfg->initrd);
	stream_put_str(s, cfg->cmdline);
	stream_put_u64(s, cfg->ram_size);
	stream_put_u32(s, cfg->ncpus);
	stream_put_u32(s, (cfg->no_reboot ? FLAG_NO_REBOOT : 0) | (cfg->testdev ? FLAG_TESTDEV : 0) |
			  (cfg->rng ? FLAG_RNG : 0) | (cfg->uuid_set ? FLAG_UUID : 0));
	stream_put_u32(s, cfg->transport);
	stream_put_u32(s, cfg->ndisks);
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		const struct vm_disk *d = &cfg->disks[i];
		put_path(s, d->block.path);
		stream_put_str(s, d->block.format);
		stream_put_u8(s, d->block.readonly);
		stream_put_u32(s, d->block.cache);
		stream_put_str(s, d->serial);
	}
	stream_put_u32(s, cfg->nnics);
	for (unsigned i = 0; i < cfg->nnics; i++) {
		const struct vm_nic *n = &cfg->nics[i];
		stream_put_u32(s, n->backend);
		stream_put_str(s, n->ifname);
		stream_put_u32(s, n->nhostfwd);
		for (unsigned k = 0; k < n->nhostfwd; k++)
			stream_put_str(s, n->hostfwd[k]);
		stream_put_bytes(s, n->mac, sizeof(n->mac));
	}
	put_path(s, cfg->vconsole.path);
	stream_put_str(s, cfg->vconsole.name);
	put_path(s, cfg->firmware);
	stream_put_bytes(s, cfg->uuid, sizeof(cfg->uuid));
}

/* Every string config_load allocated. A loaded configuration lives as long as the process;
 * this global list keeps its strings reachable (leak checkers see them as in use) and lets
 * config_release free them. */
static char **config_strings;
static size_t config_nstrings, config_capacity;

/* A string that may be NULL only if nullable; NULL on an error (recorded in the stream). */
static char *get_str(struct stream *s, bool nullable)
{
	bool is_null;
	char *str = stream_get_str(s, CONFIG_MAX_STR, &is_null);
	if (is_null && !nullable)
		stream_fail(s, -EBADMSG);
	if (!str)
		return NULL;
	if (config_nstrings == config_capacity) {
		size_t cap = config_capacity ? 2 * config_capacity : 16;
		char **p = realloc(config_strings, cap * sizeof(*p));
		if (!p) {
			free(str);
			stream_fail(s, -ENOMEM);
			return NULL;
		}
		config_strings = p;
		config_capacity = cap;
	}
	config_strings[config_nstrings++] = str;
	return str;
}

static void config_load_disks(struct vm_config *cfg, struct stream *s)
{
	cfg->ndisks = stream_get_u32_range(s, 0, VM_MAX_DISKS);
	for (unsigned i = 0; i < cfg->ndisks && !stream_error(s); i++) {
		struct vm_disk *d = &cfg->disks[i];
		memset(d, 0, sizeof(*d));
		d->block.path = get_str(s, false);
		d->block.format = get_str(s, true);
		d->block.readonly = stream_get_u8(s) != 0;
		d->block.cache = stream_get_u32_range(s, BLOCK_CACHE_WRITEBACK, BLOCK_CACHE_UNSAFE);
		d->serial = get_str(s, true);
		if (d->serial && strlen(d->serial) > 20)
			stream_fail(s, -EBADMSG);
	}
}

static void config_load_nics(struct vm_config *cfg, struct stream *s)
{
	cfg->nnics = stream_get_u32_range(s, 0, VM_MAX_NICS);
	for (unsigned i = 0; i < cfg->nnics && !stream_error(s); i++) {
		struct vm_nic *n = &cfg->nics[i];
		memset(n, 0, sizeof(*n));
		n->backend = stream_get_u32_range(s, VM_NIC_USER, VM_NIC_TAP);
		n->ifname = get_str(s, n->backend == VM_NIC_USER);
		n->nhostfwd = stream_get_u32_range(s, 0, VM_MAX_HOSTFWDS);
		for (unsigned k = 0; k < n->nhostfwd && !stream_error(s); k++)
			n->hostfwd[k] = get_str(s, false);
		stream_get_bytes(s, n->mac, sizeof(n->mac));
		if (n->mac[0] & 1) /* multicast: not a NIC's address */
			stream_fail(s, -EBADMSG);
	}
}

int config_load(struct vm_config *cfg, struct stream *s, uint32_t version)
{
	if (version != CONFIG_VERSION) {
		stream_fail(s, -EPROTONOSUPPORT);
		return -EPROTONOSUPPORT;
	}
	cfg->kernel = get_str(s, true);
	cfg->initrd = get_str(s, true);
	cfg->cmdline = get_str(s, false);
	cfg->ram_size = stream_get_u64(s);
	if (cfg->ram_size < CONFIG_MIN_RAM || cfg->ram_size > CONFIG_MAX_RAM ||
	    cfg->ram_size % 4096)
		stream_fail(s, -EBADMSG);
	cfg->ncpus = stream_get_u32_range(s, 1, CONFIG_MAX_CPUS);
	uint32_t flags = stream_get_u32_range(s, 0, FLAG_NO_REBOOT | FLAG_TESTDEV | FLAG_RNG |
							       FLAG_UUID);
	cfg->no_reboot = flags & FLAG_NO_REBOOT;
	cfg->testdev = flags & FLAG_TESTDEV;
	cfg->rng = flags & FLAG_RNG;
	cfg->uuid_set = flags & FLAG_UUID;
	cfg->transport = stream_get_u32_range(s, VIRTIO_TRANSPORT_PCI, VIRTIO_TRANSPORT_MMIO);
	config_load_disks(cfg, s);
	config_load_nics(cfg, s);
	cfg->vconsole.path = get_str(s, true);
	cfg->vconsole.name = get_str(s, true);
	if (cfg->vconsole.path && !cfg->vconsole.name)
		stream_fail(s, -EBADMSG);
	cfg->firmware = get_str(s, true);
	if (!cfg->kernel == !cfg->firmware) /* booted one way: a kernel or firmware */
		stream_fail(s, -EBADMSG);
	stream_get_bytes(s, cfg->uuid, sizeof(cfg->uuid));
	for (size_t i = 0; i < sizeof(cfg->uuid) && !cfg->uuid_set; i++)
		if (cfg->uuid[i]) /* without --uuid it is all zero */
			stream_fail(s, -EBADMSG);
	return stream_end_read(s);
}

void config_release(struct vm_config *cfg)
{
	for (size_t i = 0; i < config_nstrings; i++)
		free(config_strings[i]);
	free(config_strings);
	config_strings = NULL;
	config_nstrings = config_capacity = 0;
	memset(cfg, 0, sizeof(*cfg));
}
