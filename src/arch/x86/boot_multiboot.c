/* Multiboot (v1) kernels loaded as QEMU's -kernel loads them, so existing test kernels (and
 * our own tier A guests) run unchanged: ELF32 or a.out-kludge images, a memory map, the
 * command line "<kernel path> <append>", and the initrd as the one module. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "lib/log.h"

#define MB_HEADER_MAGIC     0x1badb002
#define MB_BOOTLOADER_MAGIC 0x2badb002
#define MB_SEARCH           8192
#define MB_FLAG_AOUT_KLUDGE (1u << 16)

#define MBI_MEMORY  (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS    (1u << 3)
#define MBI_MMAP    (1u << 6)
#define MBI_LOADER  (1u << 9)

#define MB_INFO     (LAYOUT_BOOT_INFO)         /* struct multiboot_info, 88 bytes */
#define MB_MODS     (LAYOUT_BOOT_INFO + 0x100) /* one module entry */
#define MB_MMAP     (LAYOUT_BOOT_INFO + 0x200) /* e820 entries, 24 bytes each */
#define MB_LOADER   (LAYOUT_BOOT_INFO + 0x400) /* boot loader name */
#define MB_MODNAME  (LAYOUT_BOOT_INFO + 0x500) /* module command line */

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table;
	uint32_t boot_loader_name, apm_table;
	uint32_t vbe[6];
};

struct mb_mmap_entry {
	uint32_t size; /* of the rest of the entry: 20 */
	uint64_t addr;
	uint64_t len;
	uint32_t type;
} __attribute__((packed));

struct mb_module {
	uint32_t mod_start, mod_end, string, reserved;
};

/* Finds the multiboot header; returns its file offset or -1. */
static long mb_find_header(const struct boot_file *k, uint32_t hdr[8])
{
	size_t limit = k->head_size < MB_SEARCH ? k->head_size : MB_SEARCH;
	for (size_t off = 0; off + 12 <= limit; off += 4) {
		uint32_t h[3];
		memcpy(h, k->head + off, 12);
		if (h[0] == MB_HEADER_MAGIC && h[0] + h[1] + h[2] == 0) {
			memset(hdr, 0, 8 * sizeof(uint32_t));
			size_t have = k->head_size - off < 32 ? k->head_size - off : 32;
			memcpy(hdr, k->head + off, have);
			return (long)off;
		}
	}
	return -1;
}

/* The a.out kludge: the header gives the load addresses explicitly. */
static int mb_load_aout(const struct guest_mem *mem, const struct boot_file *k, long hdr_off,
			const uint32_t hdr[8], uint64_t *end, uint64_t *entry)
{
	uint32_t header_addr = hdr[3], load_addr = hdr[4], load_end = hdr[5], bss_end = hdr[6];
	if (header_addr < load_addr || header_addr - load_addr > (uint64_t)hdr_off)
		goto bad;
	uint64_t file_off = (uint64_t)hdr_off - (header_addr - load_addr);
	uint64_t len = load_end ? (uint64_t)load_end - load_addr : k->size - file_off;
	if (load_end && load_end < load_addr)
		goto bad;
	if (len > k->size - file_off)
		goto bad;
	uint64_t mem_end = bss_end > load_addr + len ? bss_end : load_addr + len;
	uint8_t *dst = guest_mem_ptr(mem, load_addr, mem_end - load_addr);
	if (!dst) {
		log_error("multiboot kernel '%s' does not fit in guest memory", k->path);
		return -ENOSPC;
	}
	int r = boot_file_read_at(k, file_off, dst, len);
	if (r == -ENOEXEC)
		goto bad;
	if (r < 0)
		return r;
	memset(dst + len, 0, mem_end - load_addr - len);
	*end = mem_end;
	*entry = hdr[7];
	return 0;
bad:
	log_error("multiboot kernel '%s' has inconsistent load addresses", k->path);
	return -EINVAL;
}

int boot_multiboot_load(const struct guest_mem *mem, const struct boot_config *cfg,
			const struct boot_file *k, struct boot_entry *entry)
{
	uint32_t hdr[8];
	long hdr_off = mb_find_header(k, hdr);
	if (hdr_off < 0)
		return -ENOEXEC;

	uint64_t kernel_end, rip;
	int r;
	if (hdr[1] & MB_FLAG_AOUT_KLUDGE) {
		r = mb_load_aout(mem, k, hdr_off, hdr, &kernel_end, &rip);
	} else if (k->head_size >= sizeof(Elf32_Ehdr) && memcmp(k->head, ELFMAG, SELFMAG) == 0 &&
		   k->head[EI_CLASS] == ELFCLASS32) {
		const Elf32_Ehdr *eh = (const Elf32_Ehdr *)k->head;
		rip = eh->e_entry;
		r = boot_elf_load_segments(mem, k, &kernel_end);
	} else {
		log_error("multiboot kernel '%s' is neither a 32-bit ELF nor has load addresses "
			  "in its header", k->path);
		return -EINVAL;
	}
	if (r < 0)
		return r;

	/* Test kernels (e.g. kvm-unit-tests) expect argv[0] first, as QEMU passes it. */
	char cmdline[LAYOUT_CMDLINE_MAX];
	int len = snprintf(cmdline, sizeof(cmdline), "%s%s%s", cfg->kernel_path,
			   cfg->cmdline[0] ? " " : "", cfg->cmdline);
	if (len < 0 || (size_t)len >= sizeof(cmdline)) {
		log_error("the kernel command line is too long");
		return -E2BIG;
	}
	r = boot_cmdline_load(mem, cmdline, LAYOUT_CMDLINE_MAX);
	if (r < 0)
		return r;

	uint64_t low = guest_mem_low_size(mem);
	struct mb_info mbi = {
		.flags = MBI_MEMORY | MBI_CMDLINE | MBI_MMAP | MBI_LOADER,
		.mem_lower = (uint32_t)(LAYOUT_EBDA_START >> 10),
		.mem_upper = (uint32_t)((low - LAYOUT_KERNEL) >> 10),
		.cmdline = (uint32_t)LAYOUT_CMDLINE,
		.boot_loader_name = (uint32_t)MB_LOADER,
		.mmap_addr = (uint32_t)MB_MMAP,
	};
	static const char loader_name[] = "kvmkit";
	guest_mem_write(mem, MB_LOADER, loader_name, sizeof(loader_name));

	if (cfg->initrd_path) {
		uint64_t gpa, size;
		r = boot_initrd_load(mem, cfg->initrd_path, (kernel_end + 0xfff) & ~0xfffULL,
				     GUEST_MEM_LOW_LIMIT, &gpa, &size);
		if (r < 0)
			return r;
		struct mb_module mod = { (uint32_t)gpa, (uint32_t)(gpa + size), (uint32_t)MB_MODNAME, 0 };
		guest_mem_write(mem, MB_MODS, &mod, sizeof(mod));
		guest_mem_write(mem, MB_MODNAME, cfg->initrd_path,
				strnlen(cfg->initrd_path, 0xff)); /* the area is zeroed RAM */
		mbi.flags |= MBI_MODS;
		mbi.mods_count = 1;
		mbi.mods_addr = (uint32_t)MB_MODS;
	}

	struct e820_entry map[E820_MAX_ENTRIES];
	int n = e820_build(mem, map);
	for (int i = 0; i < n; i++) {
		struct mb_mmap_entry e = { 20, map[i].addr, map[i].size, map[i].type };
		guest_mem_write(mem, MB_MMAP + (uint64_t)i * sizeof(e), &e, sizeof(e));
	}
	mbi.mmap_length = (uint32_t)(n * sizeof(struct mb_mmap_entry));
	guest_mem_write(mem, MB_INFO, &mbi, sizeof(mbi));

	*entry = (struct boot_entry){ .mode = BOOT_MODE_MULTIBOOT, .rip = rip,
				      .rax = MB_BOOTLOADER_MAGIC, .rbx = MB_INFO };
	return 0;
}
