/* QEMU's fw_cfg device (docs/specs/fw_cfg.rst) on x86 ports 0x510/0x511/0x514: keyed and named
 * items, the sorted file directory, byte reads and the DMA interface, for SeaBIOS and OVMF. */
#include "firmware/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"

/* The selector's bit 14 (QEMU's write channel) does not change which item is read. */
#define FW_CFG_ENTRY_MASK 0x3fff
/* The e820 entry as the firmware reads it: le64 address, le64 length, le32 type. */
#define FW_CFG_E820_ENTRY_SIZE 20

struct fw_cfg_item {
	uint8_t *data;   /* NULL when len is 0 */
	uint32_t len;
	bool present;
};

struct fw_cfg_file {
	char name[FW_CFG_NAME_SIZE];
	struct fw_cfg_item item;
};

struct fw_cfg {
	pthread_mutex_t lock;
	struct bus *pio;
	const struct guest_mem *mem;
	/* Keys below FW_CFG_FILE_FIRST, generic [0] and architecture-local [1]. */
	struct fw_cfg_item fixed[2][FW_CFG_FILE_FIRST];
	/* Sorted by name; file i has key FW_CFG_FILE_FIRST + i. */
	struct fw_cfg_file files[FW_CFG_MAX_FILES];
	unsigned nfiles;
	/* The guest-visible state: what the saved state holds. offset never passes the selected
	 * item's end (reads past it return 0 and leave it there, as QEMU's). */
	uint16_t selector;
	uint32_t offset;
	uint64_t dma_addr;   /* the high half of the DMA address register, written first */
	bool ports, dma_port;
};

/* The item a selector names, or NULL (reads 0). */
static const struct fw_cfg_item *fw_cfg_lookup(const struct fw_cfg *fw, uint16_t key)
{
	unsigned idx = key & FW_CFG_ENTRY_MASK;
	bool arch = key & FW_CFG_ARCH_LOCAL;
	if (idx < FW_CFG_FILE_FIRST)
		return &fw->fixed[arch][idx];
	if (!arch && idx - FW_CFG_FILE_FIRST < fw->nfiles)
		return &fw->files[idx - FW_CFG_FILE_FIRST].item;
	return NULL;
}

static uint32_t fw_cfg_item_len(const struct fw_cfg *fw, uint16_t key)
{
	const struct fw_cfg_item *it = fw_cfg_lookup(fw, key);
	return it ? it->len : 0;
}

/* Fills it with a copy of data. */
static int fw_cfg_item_set(struct fw_cfg_item *it, const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	uint8_t *copy = NULL;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	free(it->data);
	*it = (struct fw_cfg_item){ copy, (uint32_t)len, true };
	return 0;
}

/* Rebuilds the directory item: be32 count, then per file be32 size, be16 key, be16 0, name. */
static int fw_cfg_build_dir(struct fw_cfg *fw)
{
	size_t len = 4 + (size_t)fw->nfiles * FW_CFG_DIR_ENTRY_SIZE;
	uint8_t *dir = calloc(1, len);
	if (!dir)
		return -ENOMEM;
	fw_cfg_be_put(dir, 4, fw->nfiles);
	for (unsigned i = 0; i < fw->nfiles; i++) {
		uint8_t *e = dir + 4 + (size_t)i * FW_CFG_DIR_ENTRY_SIZE;
		fw_cfg_be_put(e, 4, fw->files[i].item.len);
		fw_cfg_be_put(e + 4, 2, FW_CFG_FILE_FIRST + i);
		memcpy(e + 8, fw->files[i].name, FW_CFG_NAME_SIZE);
	}
	struct fw_cfg_item *it = &fw->fixed[0][FW_CFG_FILE_DIR];
	free(it->data);
	*it = (struct fw_cfg_item){ dir, (uint32_t)len, true };
	return 0;
}

int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len)
{
	unsigned idx = key & FW_CFG_ENTRY_MASK;
	/* The device's own items, the write channel's aliases and file keys are not the
	 * machine's to set. */
	if (idx >= FW_CFG_FILE_FIRST || (key & 0x4000) ||
	    key == FW_CFG_SIGNATURE || key == FW_CFG_ID || key == FW_CFG_FILE_DIR)
		return -EINVAL;
	pthread_mutex_lock(&fw->lock);
	struct fw_cfg_item *it = &fw->fixed[!!(key & FW_CFG_ARCH_LOCAL)][idx];
	int r = it->present ? -EEXIST : fw_cfg_item_set(it, data, len);
	pthread_mutex_unlock(&fw->lock);
	return r;
}

int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v)
{
	uint8_t b[2];
	le_put(b, sizeof(b), v);
	return fw_cfg_add_bytes(fw, key, b, sizeof(b));
}

int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v)
{
	uint8_t b[4];
	le_put(b, sizeof(b), v);
	return fw_cfg_add_bytes(fw, key, b, sizeof(b));
}

int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t v)
{
	uint8_t b[8];
	le_put(b, sizeof(b), v);
	return fw_cfg_add_bytes(fw, key, b, sizeof(b));
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
	size_t nlen = strnlen(name, FW_CFG_NAME_SIZE);
	if (nlen == 0 || nlen >= FW_CFG_NAME_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&fw->lock);
	unsigned pos = 0;
	int r = 0, c = 1;
	while (pos < fw->nfiles && (c = strcmp(fw->files[pos].name, name)) < 0)
		pos++;
	if (pos < fw->nfiles && c == 0)
		r = -EEXIST;
	else if (fw->nfiles == FW_CFG_MAX_FILES)
		r = -ENOSPC;
	struct fw_cfg_file f = { .name = { 0 } };
	if (!r)
		r = fw_cfg_item_set(&f.item, data, len);
	if (!r) {
		memcpy(f.name, name, nlen);
		memmove(&fw->files[pos + 1], &fw->files[pos],
			(fw->nfiles - pos) * sizeof(fw->files[0]));
		fw->files[pos] = f;
		fw->nfiles++;
		r = fw_cfg_build_dir(fw);
		if (r < 0) { /* take it out again: the directory must list what is there */
			free(f.item.data);
			fw->nfiles--;
			memmove(&fw->files[pos], &fw->files[pos + 1],
				(fw->nfiles - pos) * sizeof(fw->files[0]));
		}
	}
	pthread_mutex_unlock(&fw->lock);
	return r;
}

const uint8_t *fw_cfg_item(const struct fw_cfg *fw, uint16_t key, uint32_t *len)
{
	const struct fw_cfg_item *it = fw_cfg_lookup(fw, key);
	if (!it || !it->present)
		return NULL;
	*len = it->len;
	static const uint8_t empty[1];
	return it->data ? it->data : empty;
}

int fw_cfg_file_key(const struct fw_cfg *fw, const char *name)
{
	for (unsigned i = 0; i < fw->nfiles; i++)
		if (strcmp(fw->files[i].name, name) == 0)
			return FW_CFG_FILE_FIRST + (int)i;
	return -ENOENT;
}

int fw_cfg_add_standard(struct fw_cfg *fw, const struct fw_cfg_machine *m)
{
	static const uint8_t no_uuid[16];
	unsigned max_cpus = m->max_cpus ? m->max_cpus : m->ncpus;
	if (m->ncpus == 0 || max_cpus < m->ncpus || max_cpus > UINT16_MAX ||
	    m->e820_count > SIZE_MAX / FW_CFG_E820_ENTRY_SIZE)
		return -EINVAL;
	int r = fw_cfg_add_bytes(fw, FW_CFG_UUID, m->uuid ? m->uuid : no_uuid, 16);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_NOGRAPHIC, m->nographic);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_BOOT_MENU, m->boot_menu);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, (uint16_t)m->ncpus);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, (uint16_t)max_cpus);
	if (!r)
		r = fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, m->ram_size);
	/* SeaBIOS's MP table routes the timer through IOAPIC pin 2, as on QEMU's x86. */
	if (!r)
		r = fw_cfg_add_u32(fw, FW_CFG_IRQ0_OVERRIDE, 1);
	uint8_t b[4];
	le_put(b, 2, m->ncpus);
	if (!r)
		r = fw_cfg_add_file(fw, "etc/boot-cpus", b, 2);
	le_put(b, 4, (uint32_t)m->boot_fail_wait_ms);
	if (!r)
		r = fw_cfg_add_file(fw, "etc/boot-fail-wait", b, 4);
	le_put(b, 2, (uint32_t)m->boot_menu_wait_ms);
	if (!r && m->boot_menu_wait_ms >= 0 && m->boot_menu_wait_ms <= UINT16_MAX)
		r = fw_cfg_add_file(fw, "etc/boot-menu-wait", b, 2);
	le_put(b, 2, m->sercon_port);
	if (!r && m->sercon_port)
		r = fw_cfg_add_file(fw, "etc/sercon-port", b, 2);
	/* With its NUL, as QEMU's. */
	if (!r && m->bootorder)
		r = fw_cfg_add_file(fw, "bootorder", m->bootorder, strlen(m->bootorder) + 1);
	if (r || !m->e820_count)
		return r;
	uint8_t *e820 = malloc(m->e820_count * FW_CFG_E820_ENTRY_SIZE);
	if (!e820)
		return -ENOMEM;
	for (size_t i = 0; i < m->e820_count; i++) {
		uint8_t *e = e820 + i * FW_CFG_E820_ENTRY_SIZE;
		le_put(e, 8, m->e820[i].addr);
		le_put(e + 8, 8, m->e820[i].size);
		le_put(e + 16, 4, m->e820[i].type);
	}
	r = fw_cfg_add_file(fw, "etc/e820", e820, m->e820_count * FW_CFG_E820_ENTRY_SIZE);
	free(e820);
	return r;
}

/* --- The guest's side --- */

/* Copies the next len bytes of the selected item to out (zeros past its end). */
static void fw_cfg_read(struct fw_cfg *fw, uint8_t *out, uint32_t len)
{
	const struct fw_cfg_item *it = fw_cfg_lookup(fw, fw->selector);
	uint32_t avail = it ? it->len - fw->offset : 0;
	uint32_t n = len < avail ? len : avail;
	if (n)
		memcpy(out, it->data + fw->offset, n);
	memset(out + n, 0, len - n);
	fw->offset += n;
}

/* One transfer as docs/specs/fw_cfg.rst describes it; returns the control word to write
 * back. Everything is checked before anything changes: a refused transfer (a descriptor or
 * buffer outside RAM, a WRITE: items are read-only) leaves the selection, the offset and
 * guest memory as they were. A READ past the item's end fills zeros, as QEMU's; at most the
 * guest's own buffer, checked whole first, so a 4 GiB length costs one pass over RAM. */
static uint32_t fw_cfg_dma_transfer(struct fw_cfg *fw, uint64_t desc_gpa)
{
	const uint8_t *desc = fw->mem ? guest_mem_ptr(fw->mem, desc_gpa, FW_CFG_DMA_DESC_SIZE) :
		NULL;
	if (!desc)
		return FW_CFG_DMA_CTL_ERROR;
	uint8_t d[FW_CFG_DMA_DESC_SIZE];
	memcpy(d, desc, sizeof(d));    /* read once: other vCPUs may be changing it */
	uint32_t control = (uint32_t)fw_cfg_be_get(d, 4);
	uint32_t length = (uint32_t)fw_cfg_be_get(d + 4, 4);
	uint64_t address = fw_cfg_be_get(d + 8, 8);

	uint16_t selector = fw->selector;
	uint32_t offset = fw->offset;
	if (control & FW_CFG_DMA_CTL_SELECT) {
		selector = (uint16_t)(control >> 16);
		offset = 0;
	}
	const struct fw_cfg_item *it = fw_cfg_lookup(fw, selector);
	uint32_t avail = it ? it->len - offset : 0;
	uint32_t n = length < avail ? length : avail;
	if (control & FW_CFG_DMA_CTL_READ) {
		uint8_t *buf = length ? guest_mem_ptr(fw->mem, address, length) : NULL;
		if (length && !buf)
			return FW_CFG_DMA_CTL_ERROR;
		if (n)
			memcpy(buf, it->data + offset, n);
		if (length) {
			memset(buf + n, 0, length - n);
			guest_mem_mark_device_write(fw->mem, buf, length);
		}
	} else if (control & FW_CFG_DMA_CTL_WRITE) {
		return FW_CFG_DMA_CTL_ERROR;
	} else if (!(control & FW_CFG_DMA_CTL_SKIP)) {
		n = 0;         /* SELECT alone */
	}
	fw->selector = selector;
	fw->offset = offset + n;
	return 0;
}

static void fw_cfg_dma(struct fw_cfg *fw, uint64_t desc_gpa)
{
	uint32_t control = fw_cfg_dma_transfer(fw, desc_gpa);
	/* Written back where the control word is, if that much is RAM (QEMU tries too). */
	uint8_t *ctl = fw->mem ? guest_mem_ptr(fw->mem, desc_gpa, 4) : NULL;
	if (ctl) {
		fw_cfg_be_put(ctl, 4, control);
		guest_mem_mark_device_write(fw->mem, ctl, 4);
	}
}

/* 0x510-0x511 as QEMU's x86 "comb" region: a 16-bit write at 0x510 selects, a byte read at
 * either port reads the next byte; data writes are ignored (QEMU >= 2.4) and the wider reads
 * QEMU refuses read 0 and move nothing (x86 firmware reads bytes: rep insb). */
static void fw_cfg_port_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			       bool is_write)
{
	struct fw_cfg *fw = opaque;
	pthread_mutex_lock(&fw->lock);
	if (is_write && len == 2 && offset == 0) {
		fw->selector = (uint16_t)le_get(data, 2);
		fw->offset = 0;
	} else if (!is_write && len == 1) {
		fw_cfg_read(fw, data, 1);
	} else if (!is_write) {
		memset(data, 0, len);
	}
	pthread_mutex_unlock(&fw->lock);
}

/* 0x514-0x51b: the DMA address register, big-endian. Reads return the DMA signature; a write
 * of the low half (or all 8 bytes) starts a transfer and clears the register. */
static void fw_cfg_dma_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	struct fw_cfg *fw = opaque;
	static const char sig[8] = { 'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G' };
	if (!is_write) {
		memcpy(data, sig + offset, len);   /* the bus keeps offset + len within 8 */
		return;
	}
	pthread_mutex_lock(&fw->lock);
	if (len == 4 && offset == 0) {
		fw->dma_addr = fw_cfg_be_get(data, 4) << 32;
	} else if ((len == 4 && offset == 4) || (len == 8 && offset == 0)) {
		uint64_t desc = len == 8 ? fw_cfg_be_get(data, 8) : fw->dma_addr | fw_cfg_be_get(data, 4);
		fw->dma_addr = 0;
		fw_cfg_dma(fw, desc);
	}
	pthread_mutex_unlock(&fw->lock);
}

/* --- The device --- */

static void fw_cfg_reset(void *opaque)
{
	struct fw_cfg *fw = opaque;
	pthread_mutex_lock(&fw->lock);
	fw->selector = FW_CFG_SIGNATURE;
	fw->offset = 0;
	fw->dma_addr = 0;
	pthread_mutex_unlock(&fw->lock);
}

/* Only the guest's position: the items are rebuilt from the configuration. */
static void fw_cfg_save(void *opaque, struct stream *s)
{
	struct fw_cfg *fw = opaque;
	pthread_mutex_lock(&fw->lock);
	stream_put_u16(s, fw->selector);
	stream_put_u32(s, fw->offset);
	stream_put_u64(s, fw->dma_addr);
	pthread_mutex_unlock(&fw->lock);
}

static int fw_cfg_load(void *opaque, struct stream *s, uint32_t version)
{
	struct fw_cfg *fw = opaque;
	if (version != FW_CFG_STATE_VERSION)
		return -EBADMSG;
	uint16_t selector = stream_get_u16(s);
	uint32_t offset = stream_get_u32(s);
	uint64_t dma_addr = stream_get_u64(s);
	pthread_mutex_lock(&fw->lock);
	/* Only a high half can be pending: the low half's write starts the transfer. */
	int r = stream_error(s) || offset > fw_cfg_item_len(fw, selector) ||
		(dma_addr & 0xffffffffu) ? -EBADMSG : 0;
	if (!r) {
		fw->selector = selector;
		fw->offset = offset;
		fw->dma_addr = dma_addr;
	}
	pthread_mutex_unlock(&fw->lock);
	return r;
}

static void fw_cfg_free(struct fw_cfg *fw)
{
	for (int a = 0; a < 2; a++)
		for (int k = 0; k < FW_CFG_FILE_FIRST; k++)
			free(fw->fixed[a][k].data);
	for (unsigned i = 0; i < fw->nfiles; i++)
		free(fw->files[i].item.data);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}

static void fw_cfg_destroy(void *opaque)
{
	struct fw_cfg *fw = opaque;
	if (fw->ports)
		bus_unregister(fw->pio, FW_CFG_PORT_SEL, fw);
	if (fw->dma_port)
		bus_unregister(fw->pio, FW_CFG_PORT_DMA, fw);
	fw_cfg_free(fw);
}

static void *fw_cfg_realize(const struct device_ctx *ctx, const void *arg)
{
	struct fw_cfg *fw = calloc(1, sizeof(*fw));
	if (!fw)
		return NULL;
	pthread_mutex_init(&fw->lock, NULL);
	fw->pio = ctx->pio;
	fw->mem = ctx->mem;
	uint8_t id[4];
	le_put(id, 4, FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	int r = fw_cfg_item_set(&fw->fixed[0][FW_CFG_SIGNATURE], "QEMU", 4);
	if (!r)
		r = fw_cfg_item_set(&fw->fixed[0][FW_CFG_ID], id, 4);
	if (!r)
		r = fw_cfg_build_dir(fw);
	if (!r && arg)
		r = fw_cfg_add_standard(fw, arg);
	if (r < 0) {
		log_error("cannot build the firmware configuration (fw_cfg): %s", strerror(-r));
		fw_cfg_free(fw);
		return NULL;
	}
	fw->ports = bus_register(ctx->pio, FW_CFG_PORT_SEL, 2, fw_cfg_port_access, fw,
				 "fw_cfg") == 0;
	fw->dma_port = fw->ports && bus_register(ctx->pio, FW_CFG_PORT_DMA, 8, fw_cfg_dma_access,
						 fw, "fw_cfg-dma") == 0;
	if (!fw->dma_port) {
		log_error("cannot place the firmware configuration ports at %#x-%#x",
			  FW_CFG_PORT_SEL, FW_CFG_PORT_DMA + 7);
		fw_cfg_destroy(fw);
		return NULL;
	}
	return fw;
}

const struct device_ops fw_cfg_ops = {
	.name = "firmware configuration (fw_cfg)",
	.tag = STREAM_TAG('F', 'W', 'C', 'F'),
	.version = FW_CFG_STATE_VERSION,
	.realize = fw_cfg_realize,
	.destroy = fw_cfg_destroy,
	.reset = fw_cfg_reset,
	.save = fw_cfg_save,
	.load = fw_cfg_load,
};
