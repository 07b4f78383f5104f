/* fw_cfg_fuzz: a libFuzzer target for fw_cfg's guest side (src/firmware/fw_cfg.c): selector,
 * data and DMA ports and DMA descriptors over a small fake RAM, with the saved state loaded
 * back in between. Each DMA transfer is checked against a model of docs/specs/fw_cfg.rst:
 * what it wrote to RAM (the buffer and the control word, nothing else), the selection and the
 * offset after it; a refused one (ERROR) changes nothing but the control word.
 * Input: operations, each an opcode byte and its operands (struct fw_cfg_fuzz_dma for DMA).
 * Built and run by tests/fuzz/fw_cfg_run.sh; the unit suite replays fw_cfg_corpus/. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_memory.h"
#include "firmware/fw_cfg.h"
#include "lib/le.h"
#include "lib/stream.h"

#define RAM_SIZE 0x4000u
#define MAX_OPS 512

enum { OP_SELECT, OP_READ, OP_DMA, OP_POKE, OP_PORT, OP_SAVE_LOAD, OP_LOAD, OP_RESET, OP_COUNT };

/* A transfer: the descriptor goes at desc (its bytes where that is RAM), then the register
 * is written as SeaBIOS does (high half, low half) or in one 8-byte write. */
struct fw_cfg_fuzz_dma {
	uint64_t desc;
	uint32_t control, length;
	uint64_t address;
	uint8_t wide;
} __attribute__((packed));

static struct bus pio;
static struct guest_mem mem;
static struct fw_cfg *fw;
static uint8_t model[RAM_SIZE];

struct fw_cfg_pos {
	uint16_t selector;
	uint32_t offset;
	uint64_t dma_addr;
};

static struct fw_cfg_pos pos_save(void)
{
	struct stream w, r;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, fw_cfg_ops.tag, 0, fw_cfg_ops.version);
	fw_cfg_ops.save(fw, &w);
	if (stream_end_section(&w) || stream_flush(&w))
		abort();
	size_t len;
	const uint8_t *p = stream_mem_data(&w, &len);
	struct stream_section sec;
	stream_init_mem_reader(&r, p, len);
	if (stream_next_section(&r, &sec))
		abort();
	struct fw_cfg_pos pos;
	pos.selector = stream_get_u16(&r);
	pos.offset = stream_get_u32(&r);
	pos.dma_addr = stream_get_u64(&r);
	if (stream_end_read(&r))
		abort();
	stream_close(&r);
	/* What the device saved, it loads back. */
	stream_init_mem_reader(&r, p, len);
	if (stream_next_section(&r, &sec) || fw_cfg_ops.load(fw, &r, sec.version) ||
	    stream_end_read(&r))
		abort();
	stream_close(&r);
	stream_close(&w);
	return pos;
}

static bool pos_equal(const struct fw_cfg_pos *a, const struct fw_cfg_pos *b)
{
	return a->selector == b->selector && a->offset == b->offset && a->dma_addr == b->dma_addr;
}

static const uint8_t *item(uint16_t key, uint32_t *len)
{
	const uint8_t *p = fw_cfg_item(fw, key, len);
	if (!p)
		*len = 0;
	return p;
}

static bool in_ram(uint64_t gpa, uint64_t len)
{
	return gpa <= RAM_SIZE && len <= RAM_SIZE - gpa;
}

/* The transfer as the spec has it, on model[] and the position. */
static void dma_model(const struct fw_cfg_fuzz_dma *d, struct fw_cfg_pos *pos)
{
	uint32_t control = FW_CFG_DMA_CTL_ERROR;
	if (in_ram(d->desc, FW_CFG_DMA_DESC_SIZE)) {
		uint16_t sel = pos->selector;
		uint32_t off = pos->offset, len;
		if (d->control & FW_CFG_DMA_CTL_SELECT) {
			sel = (uint16_t)(d->control >> 16);
			off = 0;
		}
		const uint8_t *data = item(sel, &len);
		uint32_t n = d->length < len - off ? d->length : len - off;
		bool read = d->control & FW_CFG_DMA_CTL_READ;
		if (read && d->length && !in_ram(d->address, d->length))
			goto done;
		if (!read && (d->control & FW_CFG_DMA_CTL_WRITE))
			goto done;
		if (read && d->length) {
			if (n)
				memcpy(model + d->address, data + off, n);
			memset(model + d->address + n, 0, d->length - n);
		} else if (!read && !(d->control & FW_CFG_DMA_CTL_SKIP)) {
			n = 0;
		}
		pos->selector = sel;
		pos->offset = off + n;
		control = 0;
	}
done:
	if (in_ram(d->desc, 4))
		fw_cfg_be_put(model + d->desc, 4, control);
}

static void do_dma(const struct fw_cfg_fuzz_dma *d)
{
	uint8_t desc[FW_CFG_DMA_DESC_SIZE];
	fw_cfg_be_put(desc, 4, d->control);
	fw_cfg_be_put(desc + 4, 4, d->length);
	fw_cfg_be_put(desc + 8, 8, d->address);
	for (unsigned i = 0; i < sizeof(desc); i++)
		if (in_ram(d->desc + i, 1) && d->desc + i >= d->desc)
			model[d->desc + i] = desc[i];
	memcpy(mem.mapping, model, RAM_SIZE);
	struct fw_cfg_pos pos = pos_save();
	dma_model(d, &pos);
	uint8_t reg[8];
	if (d->wide) {
		fw_cfg_be_put(reg, 8, d->desc);
		bus_dispatch(&pio, FW_CFG_PORT_DMA, reg, 8, true);
	} else {
		fw_cfg_be_put(reg, 4, d->desc >> 32);
		bus_dispatch(&pio, FW_CFG_PORT_DMA, reg, 4, true);
		fw_cfg_be_put(reg, 4, d->desc);
		bus_dispatch(&pio, FW_CFG_PORT_DMA + 4, reg, 4, true);
	}
	struct fw_cfg_pos after = pos_save();
	pos.dma_addr = 0;   /* the register clears when a transfer starts */
	if (memcmp(mem.mapping, model, RAM_SIZE) || !pos_equal(&after, &pos))
		abort();
}

/* Reads n bytes through the data port and checks them against the item, and where the
 * offset stops (at the item's end). */
static void do_read(unsigned n)
{
	struct fw_cfg_pos pos = pos_save();
	uint32_t len;
	const uint8_t *data = item(pos.selector, &len);
	for (unsigned i = 0; i < n; i++) {
		uint8_t want = pos.offset < len ? data[pos.offset++] : 0, got = 0x5a;
		bus_dispatch(&pio, FW_CFG_PORT_DATA, &got, 1, false);
		if (got != want)
			abort();
	}
	struct fw_cfg_pos after = pos_save();
	if (!pos_equal(&after, &pos))
		abort();
}

/* Loads a state from the input: refused, or it is what the device then saves. */
static void do_load(const uint8_t *p)
{
	struct fw_cfg_pos before = pos_save();
	struct stream w, r;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, fw_cfg_ops.tag, 0, fw_cfg_ops.version);
	stream_put_bytes(&w, p, 14);
	if (stream_end_section(&w) || stream_flush(&w))
		abort();
	size_t len;
	struct stream_section sec;
	const uint8_t *saved = stream_mem_data(&w, &len);
	stream_init_mem_reader(&r, saved, len);
	if (stream_next_section(&r, &sec))
		abort();
	int err = fw_cfg_ops.load(fw, &r, sec.version);
	stream_close(&r);
	stream_close(&w);
	struct fw_cfg_pos after = pos_save();
	struct fw_cfg_pos loaded = { (uint16_t)le_get(p, 2), (uint32_t)le_get(p + 2, 4),
				     le_get(p + 6, 8) };
	if (!pos_equal(&after, err ? &before : &loaded))
		abort();
}

static void setup(void)
{
	static const struct fw_cfg_e820_entry e820[] = {
		{ 0, 0x9fc00, 1 }, { 0x100000, RAM_SIZE, 1 },
	};
	static const struct fw_cfg_machine m = {
		.ncpus = 2, .ram_size = RAM_SIZE, .e820 = e820, .e820_count = 2,
		.boot_menu_wait_ms = 0, .boot_fail_wait_ms = -1,
		.bootorder = "/pci@i0cf8/pci8086,2922@1f,2/drive@0/disk@0", .sercon_port = 0x3f8,
	};
	if (fake_mem_init(&mem, RAM_SIZE))
		abort();
	const struct device_ctx ctx = { .pio = &pio, .mem = &mem };
	fw = fw_cfg_ops.realize(&ctx, &m);
	/* One item larger than RAM, an empty one, an architecture-local one. */
	uint8_t *big = malloc(3 * RAM_SIZE / 2);
	if (!fw || !big)
		abort();
	for (uint32_t i = 0; i < 3 * RAM_SIZE / 2; i++)
		big[i] = (uint8_t)(i * 13 + (i >> 8));
	if (fw_cfg_add_file(fw, "etc/big", big, 3 * RAM_SIZE / 2) ||
	    fw_cfg_add_file(fw, "etc/empty", NULL, 0) ||
	    fw_cfg_add_bytes(fw, FW_CFG_ARCH_LOCAL + 3, big, 100))
		abort();
	free(big);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fw)
		setup();
	memset(model, 0, sizeof(model));
	memset(mem.mapping, 0, RAM_SIZE);
	fw_cfg_ops.reset(fw);
	size_t at = 0;
	for (int ops = 0; ops < MAX_OPS && at < size; ops++) {
		uint8_t op = data[at++] % OP_COUNT;
		const uint8_t *p = data + at;
		size_t left = size - at;
		if (op == OP_SELECT && left >= 2) {
			uint8_t key[2] = { p[0], p[1] };
			bus_dispatch(&pio, FW_CFG_PORT_SEL, key, 2, true);
			at += 2;
		} else if (op == OP_READ && left >= 1) {
			do_read(p[0] % 80);
			at += 1;
		} else if (op == OP_DMA && left >= sizeof(struct fw_cfg_fuzz_dma)) {
			struct fw_cfg_fuzz_dma d;
			memcpy(&d, p, sizeof(d));
			do_dma(&d);
			at += sizeof(d);
		} else if (op == OP_POKE && left >= 3) {
			uint32_t gpa = (p[0] | p[1] << 8) % RAM_SIZE, n = p[2];
			n = n < left - 3 ? n : (uint32_t)(left - 3);
			n = n < RAM_SIZE - gpa ? n : RAM_SIZE - gpa;
			memcpy(model + gpa, p + 3, n);
			at += 3 + n;
		} else if (op == OP_PORT && left >= 10) {
			/* Any width anywhere on 0x510-0x51b: the bus and the device sort it out. */
			static const uint8_t widths[4] = { 1, 2, 4, 8 };
			uint8_t buf[8];
			memcpy(buf, p + 2, 8);
			memcpy(mem.mapping, model, RAM_SIZE);
			bus_dispatch(&pio, FW_CFG_PORT_SEL + p[0] % 12, buf, widths[p[1] & 3],
				     p[1] & 4);
			memcpy(model, mem.mapping, RAM_SIZE);   /* it may have run a transfer */
			pos_save();
			at += 10;
		} else if (op == OP_SAVE_LOAD) {
			pos_save();
		} else if (op == OP_LOAD && left >= 14) {
			do_load(p);
			at += 14;
		} else if (op == OP_RESET) {
			fw_cfg_ops.reset(fw);
		} else {
			break;
		}
	}
	return 0;
}
