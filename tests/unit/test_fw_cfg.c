/* Unit tests fw_cfg (firmware/fw_cfg.c) as SeaBIOS and OVMF drive it: the ports, the file
 * directory, byte and DMA reads, hostile DMA descriptors and its saved state, over a fake RAM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fake_memory.h"
#include "firmware/fw_cfg.h"
#include "lib/le.h"
#include "lib/stream.h"
#include "vmm/device.h"

#define RAM_SIZE 0x100000u
#define DESC 0x1000u     /* where the tests put a DMA descriptor */
#define BUF 0x2000u      /* and its buffer */

static struct bus pio, mmio;
static struct guest_mem mem;
static struct device_registry registry;

static const struct fw_cfg_e820_entry test_e820[] = {
	{ 0, 0x9fc00, 1 }, { 0x100000, RAM_SIZE - 0x100000, 1 }, { 0xfeffc000, 0x4000, 2 },
};
static const uint8_t test_uuid[16] = { 0x12, 0x34, 0x56, 0x78, 9, 10, 11, 12,
				       13, 14, 15, 16, 17, 18, 19, 20 };
static const char test_bootorder[] = "/pci@i0cf8/pci8086,2922@1f,2/drive@0/disk@0\n"
				     "/pci@i0cf8/ethernet@3/ethernet-phy@0";
static const struct fw_cfg_machine test_machine = {
	.ncpus = 2, .max_cpus = 4, .ram_size = RAM_SIZE,
	.e820 = test_e820, .e820_count = 3, .uuid = test_uuid,
	.boot_menu = true, .boot_menu_wait_ms = 0, .boot_fail_wait_ms = 5000,
	.bootorder = test_bootorder, .sercon_port = 0x3f8,
};

/* The device as the machine will create it: through the registry. */
static struct fw_cfg *fw_up(const struct fw_cfg_machine *m)
{
	assert_int_equal(fake_mem_init(&mem, RAM_SIZE), 0);
	const struct device_ctx ctx = { .pio = &pio, .mmio = &mmio, .mem = &mem };
	memset(&registry, 0, sizeof(registry));
	assert_int_equal(device_realize(&registry, &fw_cfg_ops, &ctx, m), 0);
	struct fw_cfg *fw = device_find(&registry, &fw_cfg_ops, 0);
	assert_non_null(fw);
	return fw;
}

/* The teardown of every test (also after a failed assertion). */
static int fw_down(void **state)
{
	(void)state;
	device_registry_destroy(&registry);
	assert_int_equal(pio.nranges, 0);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	fake_mem_destroy(&mem);
	return 0;
}

static void outw(uint16_t port, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	assert_true(bus_dispatch(&pio, port, b, 2, true));
}

static uint8_t inb(uint16_t port)
{
	uint8_t b = 0x5a;
	assert_true(bus_dispatch(&pio, port, &b, 1, false));
	return b;
}


/* Starts a transfer at desc as SeaBIOS does (the 32-bit halves of the big-endian register,
 * high first); the descriptor is written where it is RAM. */
static void dma_kick(uint64_t desc)
{
	uint8_t hi[4], lo[4];
	fw_cfg_be_put(hi, 4, desc >> 32);
	fw_cfg_be_put(lo, 4, desc);
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA, hi, 4, true));
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA + 4, lo, 4, true));
}

static void dma_put_desc(uint64_t desc, uint32_t control, uint32_t length, uint64_t address)
{
	uint8_t d[FW_CFG_DMA_DESC_SIZE];
	fw_cfg_be_put(d, 4, control);
	fw_cfg_be_put(d + 4, 4, length);
	fw_cfg_be_put(d + 8, 8, address);
	for (unsigned i = 0; i < sizeof(d); i++) {
		uint8_t *p = guest_mem_ptr(&mem, desc + i, 1);
		if (p)
			*p = d[i];
	}
}

/* One transfer with the descriptor at DESC; returns the control word written back. */
static uint32_t dma(uint32_t control, uint32_t length, uint64_t address)
{
	dma_put_desc(DESC, control, length, address);
	dma_kick(DESC);
	return (uint32_t)fw_cfg_be_get(guest_mem_ptr(&mem, DESC, 4), 4);
}

static uint8_t *ram(uint64_t gpa)
{
	return guest_mem_ptr(&mem, gpa, 1);
}

/* The device's saved state (selector, offset, DMA high half), for "nothing changed". */
static size_t state_of(struct fw_cfg *fw, uint8_t *out)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, fw_cfg_ops.tag, 0, fw_cfg_ops.version);
	fw_cfg_ops.save(fw, &w);
	assert_int_equal(stream_end_section(&w), 0);
	assert_int_equal(stream_flush(&w), 0);
	size_t len;
	const uint8_t *p = stream_mem_data(&w, &len);
	assert_true(len <= 64);
	memcpy(out, p, len);
	stream_close(&w);
	return len;
}

static int load_state(struct fw_cfg *fw, const uint8_t *buf, size_t len)
{
	struct stream r;
	struct stream_section sec;
	stream_init_mem_reader(&r, buf, len);
	assert_int_equal(stream_next_section(&r, &sec), 0);
	int err = fw_cfg_ops.load(fw, &r, sec.version);
	if (!err)
		err = stream_end_read(&r);
	stream_close(&r);
	return err;
}

/* A section with the given fields; fields < 3 cuts it short. */
static int load_fields(struct fw_cfg *fw, uint32_t version, uint16_t sel, uint32_t off,
		       uint64_t dma_addr, int fields)
{
	struct stream w;
	stream_init_mem_writer(&w);
	stream_begin_section(&w, fw_cfg_ops.tag, 0, version);
	stream_put_u16(&w, sel);
	if (fields > 1)
		stream_put_u32(&w, off);
	if (fields > 2)
		stream_put_u64(&w, dma_addr);
	assert_int_equal(stream_end_section(&w), 0);
	assert_int_equal(stream_flush(&w), 0);
	size_t len;
	const uint8_t *p = stream_mem_data(&w, &len);
	int err = load_state(fw, p, len);
	stream_close(&w);
	return err;
}

/* "QEMU" at key 0 and the feature bits at key 1 through the ports, the DMA signature at
 * 0x514, 0 past an item's end and for unknown keys; a reset selects the signature again. */
static void test_signature_and_id(void **state)
{
	(void)state;
	fw_up(NULL);
	outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');
	assert_int_equal(inb(FW_CFG_PORT_SEL), 'E');   /* QEMU's comb port: both read data */
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'M');
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'U');
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);

	/* A 16-bit read is refused as QEMU's: 0, and the offset stays. */
	outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
	uint8_t w[2] = { 0xff, 0xff };
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_SEL, w, 2, false));
	assert_int_equal(w[0] | w[1], 0);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');
	/* Data writes are ignored (QEMU >= 2.4). */
	uint8_t b = 0x77;
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DATA, &b, 1, true));
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'E');

	outw(FW_CFG_PORT_SEL, FW_CFG_ID);
	uint8_t id[4];
	for (int i = 0; i < 4; i++)
		id[i] = inb(FW_CFG_PORT_DATA);
	assert_int_equal(le_get(id, 4), FW_CFG_VERSION | FW_CFG_VERSION_DMA);

	char sig[9] = { 0 };
	for (int i = 0; i < 8; i++)
		sig[i] = (char)inb(FW_CFG_PORT_DMA + i);
	assert_string_equal(sig, "QEMU CFG");
	uint8_t d4[4];
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA, d4, 4, false));
	assert_int_equal(fw_cfg_be_get(d4, 4), FW_CFG_DMA_SIGNATURE >> 32);
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA + 4, d4, 4, false));
	assert_int_equal(fw_cfg_be_get(d4, 4), FW_CFG_DMA_SIGNATURE & 0xffffffff);

	static const uint16_t unknown[] = { 0x1234, 0x3fff, 0x8000, 0x8123, FW_CFG_FILE_FIRST,
					    FW_CFG_MACHINE_ID, FW_CFG_UUID };
	for (size_t k = 0; k < sizeof(unknown) / sizeof(unknown[0]); k++) {
		outw(FW_CFG_PORT_SEL, unknown[k]);
		for (int i = 0; i < 8; i++)
			assert_int_equal(inb(FW_CFG_PORT_DATA), 0);
	}
	outw(FW_CFG_PORT_SEL, 0x4000);   /* the write channel's bit names the same item */
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');

	outw(FW_CFG_PORT_SEL, FW_CFG_ID);
	device_registry_reset(&registry);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');
}

struct dir_entry {
	uint32_t size;
	uint16_t select;
	char name[FW_CFG_NAME_SIZE];
};

static void dir_entry_parse(const uint8_t *e, struct dir_entry *out)
{
	memset(out, 0, sizeof(*out));   /* its padding too: entries are compared whole */
	out->size = (uint32_t)fw_cfg_be_get(e, 4);
	out->select = (uint16_t)fw_cfg_be_get(e + 4, 2);
	assert_int_equal(fw_cfg_be_get(e + 6, 2), 0);
	memcpy(out->name, e + 8, FW_CFG_NAME_SIZE);
	assert_int_equal(out->name[FW_CFG_NAME_SIZE - 1], 0);
}

static const char *const test_names[] = { "zeta", "etc/e820", "alpha", "bootorder",
					  "opt/org.kvmkit/a-name-of-fifty-five-bytes-long........." };

/* Files added in any order: the directory read as SeaBIOS reads it, by ports and by DMA,
 * lists them sorted with their sizes and keys, and each key reads the file's bytes. */
static void test_file_dir(void **state)
{
	(void)state;
	struct fw_cfg *fw = fw_up(NULL);
	size_t n = sizeof(test_names) / sizeof(test_names[0]);
	for (size_t i = 0; i < n; i++) {
		char data[64];
		memset(data, 'a' + (int)i, sizeof(data));
		assert_int_equal(fw_cfg_add_file(fw, test_names[i], data, 10 + i), 0);
	}
	assert_int_equal(strlen(test_names[4]), FW_CFG_NAME_SIZE - 1);
	assert_int_equal(fw_cfg_add_file(fw, "alpha", "x", 1), -EEXIST);
	assert_int_equal(fw_cfg_add_file(fw, "", "x", 1), -EINVAL);
	char longname[FW_CFG_NAME_SIZE + 1];
	memset(longname, 'n', FW_CFG_NAME_SIZE);
	longname[FW_CFG_NAME_SIZE] = 0;
	assert_int_equal(fw_cfg_add_file(fw, longname, "x", 1), -EINVAL);
	longname[FW_CFG_NAME_SIZE - 1] = 0;     /* 55 bytes fit */
	assert_int_equal(fw_cfg_add_file(fw, longname, NULL, 0), 0);
	n++;
	/* Keyed items: once each, not over the device's own or a file's key. */
	assert_int_equal(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 1), 0);
	assert_int_equal(fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, 2), -EEXIST);
	assert_int_equal(fw_cfg_add_u32(fw, FW_CFG_SIGNATURE, 0), -EINVAL);
	assert_int_equal(fw_cfg_add_u32(fw, FW_CFG_FILE_DIR, 0), -EINVAL);
	assert_int_equal(fw_cfg_add_u32(fw, FW_CFG_FILE_FIRST, 0), -EINVAL);
	assert_int_equal(fw_cfg_add_u32(fw, 0x4000 | FW_CFG_NB_CPUS, 0), -EINVAL);

	/* By ports: qemu_cfg_select, then insb. */
	outw(FW_CFG_PORT_SEL, FW_CFG_FILE_DIR);
	uint8_t cnt[4], e[FW_CFG_DIR_ENTRY_SIZE];
	for (int i = 0; i < 4; i++)
		cnt[i] = inb(FW_CFG_PORT_DATA);
	assert_int_equal(fw_cfg_be_get(cnt, 4), n);
	struct dir_entry ents[8];
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < FW_CFG_DIR_ENTRY_SIZE; k++)
			e[k] = inb(FW_CFG_PORT_DATA);
		dir_entry_parse(e, &ents[i]);
		assert_int_equal(ents[i].select, FW_CFG_FILE_FIRST + i);
		if (i)
			assert_true(strcmp(ents[i - 1].name, ents[i].name) < 0);
		assert_int_equal(fw_cfg_file_key(fw, ents[i].name), ents[i].select);
	}
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);   /* the directory's end */

	/* By DMA: the count with SELECT|READ, then each entry with READ. */
	assert_int_equal(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ |
			     (uint32_t)FW_CFG_FILE_DIR << 16, 4, BUF), 0);
	assert_int_equal(fw_cfg_be_get(ram(BUF), 4), n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(dma(FW_CFG_DMA_CTL_READ, FW_CFG_DIR_ENTRY_SIZE, BUF), 0);
		struct dir_entry d;
		dir_entry_parse(ram(BUF), &d);
		assert_memory_equal(&d, &ents[i], sizeof(d));
	}

	/* Each file's bytes under its key. */
	for (size_t i = 0; i < n; i++) {
		size_t added = 0;
		while (added < n - 1 && strcmp(test_names[added], ents[i].name))
			added++;
		uint32_t size = added < n - 1 ? (uint32_t)(10 + added) : 0;
		assert_int_equal(ents[i].size, size);
		outw(FW_CFG_PORT_SEL, ents[i].select);
		for (uint32_t k = 0; k < size; k++)
			assert_int_equal(inb(FW_CFG_PORT_DATA), 'a' + added);
		assert_int_equal(inb(FW_CFG_PORT_DATA), 0);
	}
}

/* Reads key's item every way the firmware does and checks it against the lookup: byte by
 * byte, one DMA SELECT|READ (zeros past the end), and SKIP then READ. */
static void check_item(uint16_t key)
{
	struct fw_cfg *fw = device_find(&registry, &fw_cfg_ops, 0);
	uint32_t len;
	const uint8_t *want = fw_cfg_item(fw, key, &len);
	assert_non_null(want);
	assert_true(len < 0x1000);
	outw(FW_CFG_PORT_SEL, key);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(inb(FW_CFG_PORT_DATA), want[i]);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);

	memset(ram(BUF), 0xaa, len + 16);
	assert_int_equal(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ | (uint32_t)key << 16,
			     len + 8, BUF), 0);
	assert_memory_equal(ram(BUF), want, len);
	for (uint32_t i = len; i < len + 8; i++)
		assert_int_equal(*ram(BUF + i), 0);
	assert_int_equal(*ram(BUF + len + 8), 0xaa);

	uint32_t skip = len / 2;
	memset(ram(BUF), 0xaa, len + 16);
	/* SeaBIOS's qemu_cfg_skip passes address 0: SKIP touches no memory. */
	assert_int_equal(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP | (uint32_t)key << 16,
			     skip, 0), 0);
	assert_int_equal(dma(FW_CFG_DMA_CTL_READ, len - skip, BUF), 0);
	assert_memory_equal(ram(BUF), want + skip, len - skip);
	assert_int_equal(*ram(BUF + len - skip), 0xaa);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);
}

/* fw_cfg_add_standard's items, as QEMU's x86 machines lay them out, read every way. */
static void test_standard_items(void **state)
{
	(void)state;
	struct fw_cfg *fw = fw_up(&test_machine);
	static const uint16_t keys[] = { FW_CFG_SIGNATURE, FW_CFG_ID, FW_CFG_UUID,
		FW_CFG_RAM_SIZE, FW_CFG_NOGRAPHIC, FW_CFG_NB_CPUS, FW_CFG_BOOT_MENU,
		FW_CFG_MAX_CPUS, FW_CFG_FILE_DIR, FW_CFG_IRQ0_OVERRIDE };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		check_item(keys[i]);
	static const char *const files[] = { "bootorder", "etc/boot-cpus", "etc/boot-fail-wait",
		"etc/boot-menu-wait", "etc/e820", "etc/sercon-port" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		int key = fw_cfg_file_key(fw, files[i]);
		assert_int_equal(key, FW_CFG_FILE_FIRST + (int)i);   /* sorted, nothing else */
		check_item((uint16_t)key);
	}
	uint32_t len;
	const uint8_t *p = fw_cfg_item(fw, FW_CFG_FILE_DIR, &len);
	assert_int_equal(fw_cfg_be_get(p, 4), 6);

	assert_memory_equal(fw_cfg_item(fw, FW_CFG_UUID, &len), test_uuid, 16);
	p = fw_cfg_item(fw, FW_CFG_RAM_SIZE, &len);
	assert_int_equal(len, 8);
	assert_int_equal(le_get(p, 8), RAM_SIZE);
	p = fw_cfg_item(fw, FW_CFG_NB_CPUS, &len);
	assert_int_equal(len, 2);
	assert_int_equal(le_get(p, 2), 2);
	assert_int_equal(le_get(fw_cfg_item(fw, FW_CFG_MAX_CPUS, &len), 2), 4);
	assert_int_equal(le_get(fw_cfg_item(fw, FW_CFG_BOOT_MENU, &len), 2), 1);
	assert_int_equal(le_get(fw_cfg_item(fw, FW_CFG_NOGRAPHIC, &len), 2), 0);
	assert_null(fw_cfg_item(fw, FW_CFG_MACHINE_ID, &len));

	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "etc/e820"), &len);
	assert_int_equal(len, 3 * 20);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(le_get(p + 20 * i, 8), test_e820[i].addr);
		assert_int_equal(le_get(p + 20 * i + 8, 8), test_e820[i].size);
		assert_int_equal(le_get(p + 20 * i + 16, 4), test_e820[i].type);
	}
	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "bootorder"), &len);
	assert_int_equal(len, sizeof(test_bootorder));
	assert_string_equal((const char *)p, test_bootorder);
	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "etc/boot-fail-wait"), &len);
	assert_int_equal(len, 4);
	assert_int_equal(le_get(p, 4), 5000);
	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "etc/sercon-port"), &len);
	assert_int_equal(len, 2);
	assert_int_equal(le_get(p, 2), 0x3f8);
	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "etc/boot-menu-wait"), &len);
	assert_int_equal(len, 2);
	assert_int_equal(le_get(p, 2), 0);
	/* The machine's own files come after; a second standard set is refused. */
	assert_int_equal(fw_cfg_add_file(fw, "etc/table-loader", "t", 1), 0);
	assert_int_equal(fw_cfg_add_standard(fw, &test_machine), -EEXIST);
	fw_down(NULL);

	/* The optional ones stay out; QEMU's defaults (no UUID: zeros, never retry). */
	struct fw_cfg_machine m = { .ncpus = 1, .ram_size = RAM_SIZE, .boot_menu_wait_ms = -1,
				    .boot_fail_wait_ms = -1 };
	fw = fw_up(&m);
	assert_int_equal(fw_cfg_file_key(fw, "etc/boot-menu-wait"), -ENOENT);
	assert_int_equal(fw_cfg_file_key(fw, "etc/sercon-port"), -ENOENT);
	assert_int_equal(fw_cfg_file_key(fw, "bootorder"), -ENOENT);
	assert_int_equal(fw_cfg_file_key(fw, "etc/e820"), -ENOENT);
	p = fw_cfg_item(fw, (uint16_t)fw_cfg_file_key(fw, "etc/boot-fail-wait"), &len);
	assert_int_equal(le_get(p, 4), 0xffffffff);
	static const uint8_t zeros[16];
	assert_memory_equal(fw_cfg_item(fw, FW_CFG_UUID, &len), zeros, 16);
	assert_int_equal(le_get(fw_cfg_item(fw, FW_CFG_MAX_CPUS, &len), 2), 1);
	fw_down(NULL);

	m.ncpus = 0;     /* refused: the realize fails */
	assert_int_equal(fake_mem_init(&mem, RAM_SIZE), 0);
	const struct device_ctx ctx = { .pio = &pio, .mmio = &mmio, .mem = &mem };
	assert_null(fw_cfg_ops.realize(&ctx, &m));
	assert_int_equal(pio.nranges, 0);
}

/* Each hostile transfer sets ERROR (where the control word is RAM) and changes nothing else:
 * not guest memory, not the selection nor the offset. */
static void test_dma_hostile(void **state)
{
	(void)state;
	struct fw_cfg *fw = fw_up(&test_machine);
	int key = fw_cfg_file_key(fw, "etc/e820");
	uint8_t *snap = malloc(RAM_SIZE);
	assert_non_null(snap);
	struct {
		uint64_t desc;
		uint32_t control, length;
		uint64_t address;
	} cases[] = {
		/* the descriptor outside RAM, past its end, above 4 GiB, across its end */
		{ RAM_SIZE + 0x1000, FW_CFG_DMA_CTL_READ, 4, BUF },
		{ RAM_SIZE, FW_CFG_DMA_CTL_READ, 4, BUF },
		{ 1ULL << 40, FW_CFG_DMA_CTL_READ, 4, BUF },
		{ RAM_SIZE - 8, FW_CFG_DMA_CTL_READ, 4, BUF },
		{ UINT64_MAX - 3, FW_CFG_DMA_CTL_READ, 4, BUF },
		/* the buffer across the end of RAM, outside it, overflowing, 4 GiB long */
		{ DESC, FW_CFG_DMA_CTL_READ, 16, RAM_SIZE - 4 },
		{ DESC, FW_CFG_DMA_CTL_READ | FW_CFG_DMA_CTL_SELECT | FW_CFG_ID << 16, 4, RAM_SIZE },
		{ DESC, FW_CFG_DMA_CTL_READ, 0x20, UINT64_MAX - 0xf },
		{ DESC, FW_CFG_DMA_CTL_READ, 0xffffffff, BUF },
		{ DESC, FW_CFG_DMA_CTL_READ, 0xffffffff, 0 },
		{ DESC, FW_CFG_DMA_CTL_READ, 8, 1ULL << 40 },
		/* writes: items are read-only */
		{ DESC, FW_CFG_DMA_CTL_WRITE, 4, BUF },
		{ DESC, FW_CFG_DMA_CTL_WRITE | FW_CFG_DMA_CTL_SELECT | FW_CFG_UUID << 16, 4, BUF },
		{ DESC, FW_CFG_DMA_CTL_WRITE | FW_CFG_DMA_CTL_SKIP, 4, BUF },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		/* Somewhere in the middle of a file first. */
		outw(FW_CFG_PORT_SEL, (uint16_t)key);
		for (int i = 0; i < 3; i++)
			inb(FW_CFG_PORT_DATA);
		for (uint32_t i = 0; i < RAM_SIZE; i++)
			*ram(i) = (uint8_t)(i * 7 + c);
		dma_put_desc(cases[c].desc, cases[c].control, cases[c].length, cases[c].address);
		memcpy(snap, ram(0), RAM_SIZE);
		uint8_t before[64], after[64];
		size_t n = state_of(fw, before);
		dma_kick(cases[c].desc);
		assert_int_equal(state_of(fw, after), n);
		assert_memory_equal(before, after, n);
		uint8_t *ctl = guest_mem_ptr(&mem, cases[c].desc, 4);
		if (ctl) {
			assert_int_equal(fw_cfg_be_get(ctl, 4), FW_CFG_DMA_CTL_ERROR);
			memcpy(ctl, snap + cases[c].desc, 4);
		}
		assert_memory_equal(ram(0), snap, RAM_SIZE);
		uint32_t len;
		assert_int_equal(inb(FW_CFG_PORT_DATA), fw_cfg_item(fw, (uint16_t)key, &len)[3]);
	}

	/* An 8-byte write of the register starts a transfer too; its address is checked. */
	memcpy(snap, ram(0), RAM_SIZE);
	uint8_t a8[8];
	fw_cfg_be_put(a8, 8, RAM_SIZE + 0x100);
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA, a8, 8, true));
	assert_memory_equal(ram(0), snap, RAM_SIZE);
	dma_put_desc(DESC, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ | FW_CFG_SIGNATURE << 16,
		     4, BUF);
	fw_cfg_be_put(a8, 8, DESC);
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA, a8, 8, true));
	assert_int_equal(fw_cfg_be_get(ram(DESC), 4), 0);
	assert_memory_equal(ram(BUF), "QEMU", 4);

	/* Not hostile, but bounded: SKIP and READ of 4 GiB-1 stop at the item's end. */
	assert_int_equal(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP | (uint32_t)key << 16,
			     0xffffffff, 0), 0);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 0);
	assert_int_equal(dma(FW_CFG_DMA_CTL_READ, 0, RAM_SIZE + 0x1000), 0);  /* nothing to copy */
	/* No operation bit: the selection alone. */
	assert_int_equal(dma(FW_CFG_DMA_CTL_SELECT | FW_CFG_SIGNATURE << 16, 100, 1ULL << 40), 0);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');
	free(snap);
}

/* The position survives save and load (also a pending DMA high half); damaged states are
 * refused and change nothing. */
static void test_save_load(void **state)
{
	(void)state;
	struct fw_cfg *fw = fw_up(&test_machine);
	int key = fw_cfg_file_key(fw, "bootorder");
	outw(FW_CFG_PORT_SEL, (uint16_t)key);
	for (int i = 0; i < 3; i++)
		inb(FW_CFG_PORT_DATA);
	uint8_t saved[64];
	size_t n = state_of(fw, saved);
	device_registry_reset(&registry);
	assert_int_equal(inb(FW_CFG_PORT_DATA), 'Q');
	assert_int_equal(load_state(fw, saved, n), 0);
	assert_int_equal(inb(FW_CFG_PORT_DATA), test_bootorder[3]);

	/* A high half written before the snapshot completes after it. */
	dma_put_desc(DESC, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ | FW_CFG_SIGNATURE << 16,
		     4, BUF);
	uint8_t hi[4] = { 0, 0, 0, 1 }, lo[4];
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA, hi, 4, true));
	n = state_of(fw, saved);
	device_registry_reset(&registry);
	assert_int_equal(load_state(fw, saved, n), 0);
	fw_cfg_be_put(lo, 4, DESC);
	assert_true(bus_dispatch(&pio, FW_CFG_PORT_DMA + 4, lo, 4, true)); /* 4 GiB + DESC: not RAM */
	assert_int_equal(fw_cfg_be_get(ram(DESC), 4), FW_CFG_DMA_CTL_READ | FW_CFG_DMA_CTL_SELECT |
				FW_CFG_SIGNATURE << 16);
	dma_kick(DESC);
	assert_int_equal(fw_cfg_be_get(ram(DESC), 4), 0);

	/* Damaged: each refused, the position kept. */
	outw(FW_CFG_PORT_SEL, (uint16_t)key);
	inb(FW_CFG_PORT_DATA);
	uint8_t before[64], after[64];
	n = state_of(fw, before);
	uint32_t len;
	fw_cfg_item(fw, (uint16_t)key, &len);
	assert_int_equal(load_fields(fw, 1, (uint16_t)key, len, 0, 3), 0);   /* at the end: fine */
	assert_int_equal(load_state(fw, before, n), 0);
	assert_int_equal(load_fields(fw, 1, (uint16_t)key, len + 1, 0, 3), -EBADMSG);
	assert_int_equal(load_fields(fw, 1, 0x1234, 1, 0, 3), -EBADMSG);
	assert_int_equal(load_fields(fw, 1, FW_CFG_SIGNATURE, 5, 0, 3), -EBADMSG);
	assert_int_equal(load_fields(fw, 1, FW_CFG_SIGNATURE, 0, 0x100000001ULL, 3), -EBADMSG);
	assert_int_equal(load_fields(fw, 2, FW_CFG_SIGNATURE, 0, 0, 3), -EBADMSG);
	assert_true(load_fields(fw, 1, FW_CFG_SIGNATURE, 0, 0, 2) < 0);
	assert_true(load_fields(fw, 1, FW_CFG_SIGNATURE, 0, 0, 1) < 0);
	assert_int_equal(state_of(fw, after), n);
	assert_memory_equal(before, after, n);
	assert_int_equal(inb(FW_CFG_PORT_DATA), test_bootorder[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_signature_and_id, fw_down),
		cmocka_unit_test_teardown(test_file_dir, fw_down),
		cmocka_unit_test_teardown(test_standard_items, fw_down),
		cmocka_unit_test_teardown(test_dma_hostile, fw_down),
		cmocka_unit_test_teardown(test_save_load, fw_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
