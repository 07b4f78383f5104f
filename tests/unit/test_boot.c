/* Unit tests of the kernel loaders on synthetic bzImage, PVH ELF and multiboot files: where each
 * lands in guest memory, and that truncated or corrupted files are refused without crashing. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "vmm/memory.h"

#define GUEST_RAM (64u << 20)
#define KERNEL_BYTES 8192 /* payload size of every synthetic kernel */

struct image {
	uint8_t *data;
	size_t size;
};

static void put16(uint8_t *p, size_t off, uint16_t v) { memcpy(p + off, &v, 2); }
static void put32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }

/* Recognisable payload bytes: the loader must copy exactly these. */
static void fill_payload(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + 3);
}

/* A bzImage: one setup sector after the boot sector, protocol 2.15, 64-bit entry. */
static struct image make_bzimage(void)
{
	size_t setup = 2 * 512;
	struct image im = { calloc(1, setup + KERNEL_BYTES), setup + KERNEL_BYTES };
	im.data[0x1f1] = 1;                      /* setup_sects */
	put16(im.data, 0x1fe, 0xaa55);           /* boot_flag */
	im.data[0x200] = 0xeb;                   /* jump over the header */
	im.data[0x201] = 0x6a;
	memcpy(im.data + 0x202, "HdrS", 4);
	put16(im.data, 0x206, 0x020f);           /* version */
	put32(im.data, 0x22c, 0x7fffffff);       /* initrd_addr_max */
	put16(im.data, 0x236, 1);                /* xloadflags: XLF_KERNEL_64 */
	put32(im.data, 0x238, 2047);             /* cmdline_size */
	put32(im.data, 0x260, 1 << 20);          /* init_size */
	fill_payload(im.data + setup, KERNEL_BYTES);
	return im;
}

/* A 64-bit ELF with one PT_LOAD at 16 MiB and a PT_NOTE holding the Xen PVH entry note. */
static struct image make_pvh(void)
{
	size_t note_off = 0x200, load_off = 0x1000;
	struct image im = { calloc(1, load_off + KERNEL_BYTES), load_off + KERNEL_BYTES };
	Elf64_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
			  .e_phoff = sizeof(Elf64_Ehdr), .e_ehsize = sizeof(Elf64_Ehdr),
			  .e_phentsize = sizeof(Elf64_Phdr), .e_phnum = 2 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	memcpy(im.data, &eh, sizeof(eh));
	Elf64_Phdr ph[2] = {
		{ .p_type = PT_NOTE, .p_offset = note_off, .p_filesz = 12 + 4 + 4 },
		{ .p_type = PT_LOAD, .p_offset = load_off, .p_paddr = 16 << 20,
		  .p_filesz = KERNEL_BYTES, .p_memsz = KERNEL_BYTES + 4096 },
	};
	memcpy(im.data + sizeof(eh), ph, sizeof(ph));
	uint32_t note[5] = { 4, 4, 18 /* XEN_ELFNOTE_PHYS32_ENTRY */, 0, (16 << 20) + 0x40 };
	memcpy(&note[3], "Xen", 4);
	memcpy(im.data + note_off, note, sizeof(note));
	fill_payload(im.data + load_off, KERNEL_BYTES);
	return im;
}

/* A multiboot kernel with the a.out kludge: header at 0, loaded at 1 MiB, bss after it. */
static struct image make_multiboot(void)
{
	struct image im = { calloc(1, KERNEL_BYTES), KERNEL_BYTES };
	fill_payload(im.data, KERNEL_BYTES);
	uint32_t flags = 1u << 16;
	uint32_t hdr[8] = { 0x1badb002, flags, -(0x1badb002 + flags), 0x100000, 0x100000,
			    0x100000 + KERNEL_BYTES, 0x100000 + KERNEL_BYTES + 4096, 0x100020 };
	memcpy(im.data, hdr, sizeof(hdr));
	return im;
}

static char image_path[] = "/tmp/kvmkit-test-boot-XXXXXX";

static void write_image(const uint8_t *data, size_t size)
{
	FILE *f = fopen(image_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, size, f), size);
	assert_int_equal(fclose(f), 0);
}

static int load(const uint8_t *data, size_t size, struct guest_mem *mem, struct boot_entry *e)
{
	write_image(data, size);
	struct boot_config cfg = { .kernel_path = image_path, .cmdline = "console=ttyS0",
				   .rsdp_gpa = LAYOUT_ACPI_START };
	return boot_load(mem, &cfg, e);
}

static int setup(void **state)
{
	(void)state;
	int fd = mkstemp(image_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(image_path);
	return 0;
}

static void test_bzimage(void **state)
{
	(void)state;
	struct image im = make_bzimage();
	struct guest_mem mem;
	struct boot_entry e;
	assert_int_equal(guest_mem_init(&mem, GUEST_RAM), 0);
	assert_int_equal(load(im.data, im.size, &mem, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_LINUX64);
	assert_int_equal(e.rip, LAYOUT_KERNEL + 0x200);
	assert_int_equal(e.rsi, LAYOUT_ZERO_PAGE);
	assert_memory_equal(guest_mem_ptr(&mem, LAYOUT_KERNEL, KERNEL_BYTES), im.data + 1024,
			    KERNEL_BYTES);
	const uint8_t *zp = guest_mem_ptr(&mem, LAYOUT_ZERO_PAGE, 4096);
	assert_memory_equal(zp + 0x202, "HdrS", 4);
	assert_int_equal(zp[0x210], 0xff); /* type_of_loader */
	uint32_t cmd;
	memcpy(&cmd, zp + 0x228, 4);
	assert_string_equal((const char *)guest_mem_ptr(&mem, cmd, 14), "console=ttyS0");
	guest_mem_destroy(&mem);
	free(im.data);
}

static void test_pvh(void **state)
{
	(void)state;
	struct image im = make_pvh();
	struct guest_mem mem;
	struct boot_entry e;
	assert_int_equal(guest_mem_init(&mem, GUEST_RAM), 0);
	assert_int_equal(load(im.data, im.size, &mem, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_PVH);
	assert_int_equal(e.rip, (16 << 20) + 0x40);
	assert_memory_equal(guest_mem_ptr(&mem, 16 << 20, KERNEL_BYTES), im.data + 0x1000,
			    KERNEL_BYTES);
	uint32_t magic;
	assert_int_equal(guest_mem_read(&mem, e.rbx, &magic, 4), 0);
	assert_int_equal(magic, 0x336ec578);
	guest_mem_destroy(&mem);
	free(im.data);
}

static void test_multiboot(void **state)
{
	(void)state;
	struct image im = make_multiboot();
	struct guest_mem mem;
	struct boot_entry e;
	assert_int_equal(guest_mem_init(&mem, GUEST_RAM), 0);
	assert_int_equal(load(im.data, im.size, &mem, &e), 0);
	assert_int_equal(e.mode, BOOT_MODE_MULTIBOOT);
	assert_int_equal(e.rip, 0x100020);
	assert_int_equal(e.rax, 0x2badb002);
	assert_memory_equal(guest_mem_ptr(&mem, 0x100000, KERNEL_BYTES), im.data, KERNEL_BYTES);
	guest_mem_destroy(&mem);
	free(im.data);
}

/* Every prefix of a valid image, and the image with any single header byte replaced by a few
 * telling values, is loaded or refused with an error: never a crash (the sanitizer build runs
 * this) and never a success that claims a kernel beyond the file. */
static void test_damaged(void **state)
{
	(void)state;
	struct image images[] = { make_bzimage(), make_pvh(), make_multiboot() };
	static const uint8_t values[] = { 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff };
	struct guest_mem mem;
	assert_int_equal(guest_mem_init(&mem, GUEST_RAM), 0);
	/* thousands of refusals, each with its sentence on stderr: keep them out of the test log */
	fflush(stderr);
	int saved_stderr = dup(STDERR_FILENO);
	FILE *devnull = freopen("/dev/null", "w", stderr);
	assert_non_null(devnull);
	for (size_t i = 0; i < sizeof(images) / sizeof(images[0]); i++) {
		struct image *im = &images[i];
		struct boot_entry e;
		for (size_t len = 0; len < im->size; len += len < 1100 ? 1 : 509) {
			int r = load(im->data, len, &mem, &e);
			assert_true(r <= 0);
		}
		uint8_t *copy = malloc(im->size);
		size_t header = im->size < 0x280 ? im->size : 0x280;
		for (size_t off = 0; off < header; off++) {
			for (size_t v = 0; v < sizeof(values); v++) {
				memcpy(copy, im->data, im->size);
				copy[off] = values[v];
				int r = load(copy, im->size, &mem, &e);
				assert_true(r <= 0);
			}
		}
		free(copy);
		free(im->data);
	}
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	guest_mem_destroy(&mem);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct guest_mem mem;
	struct boot_entry e;
	assert_int_equal(guest_mem_init(&mem, GUEST_RAM), 0);
	struct boot_config cfg = { .kernel_path = "/nonexistent/kernel", .cmdline = "" };
	assert_int_equal(boot_load(&mem, &cfg, &e), -ENOENT);
	cfg.kernel_path = "/tmp";
	assert_int_equal(boot_load(&mem, &cfg, &e), -EINVAL);
	guest_mem_destroy(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bzimage),
		cmocka_unit_test(test_pvh),
		cmocka_unit_test(test_multiboot),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests_name("boot", tests, setup, teardown);
}
