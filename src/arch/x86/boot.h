/* Loading a kernel into guest memory (bzImage, PVH ELF, multiboot) and the register state in
 * which the boot vCPU starts it. */
#ifndef KVMKIT_ARCH_X86_BOOT_H
#define KVMKIT_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

enum boot_mode {
	BOOT_MODE_LINUX64,     /* Linux 64-bit boot protocol: long mode, rsi = boot_params */
	BOOT_MODE_PVH,         /* PVH: 32-bit flat protected mode, ebx = hvm_start_info */
	BOOT_MODE_MULTIBOOT,   /* multiboot v1: 32-bit flat, eax = magic, ebx = multiboot info */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t rip;
	uint64_t rsi;
	uint64_t rbx;
	uint64_t rax;
};

struct boot_config {
	const char *kernel_path;
	const char *initrd_path; /* NULL: none */
	const char *cmdline;
	uint64_t rsdp_gpa;
};

/* An open kernel file: its first bytes in memory for the loaders to parse, the rest read on
 * demand (big images go from the page cache straight into guest memory, copied once). */
#define BOOT_FILE_HEAD_MAX (64u << 10) /* covers bzImage setup headers, multiboot's 8 KiB search */
struct boot_file {
	const char *path;
	int fd;
	uint64_t size;     /* of the whole file */
	uint8_t *head;     /* its first head_size bytes */
	size_t head_size;  /* min(size, BOOT_FILE_HEAD_MAX) */
};

/* Loads the kernel (and initrd) named in cfg into mem and fills *entry. On failure prints one
 * sentence naming the file and the problem, and returns -errno. */
int boot_load(const struct guest_mem *mem, const struct boot_config *cfg, struct boot_entry *entry);

/* Sets the boot vCPU's registers, segments, and (for 64-bit entry) the GDT and identity page
 * tables in guest memory. Returns 0 or -errno. */
int boot_setup_bsp(int vcpu_fd, const struct guest_mem *mem, const struct boot_entry *entry);

/* Each loader: returns 0 and fills *entry, -ENOEXEC if the file is not of its format (the next
 * loader is tried), or another -errno after printing the reason. */
int boot_linux_load(const struct guest_mem *mem, const struct boot_config *cfg,
		    const struct boot_file *kernel, struct boot_entry *entry);
int boot_pvh_load(const struct guest_mem *mem, const struct boot_config *cfg,
		  const struct boot_file *kernel, struct boot_entry *entry);
int boot_multiboot_load(const struct guest_mem *mem, const struct boot_config *cfg,
			const struct boot_file *kernel, struct boot_entry *entry);

/* Shared helpers for the loaders (boot.c). */
int boot_file_open(const char *path, const char *what, struct boot_file *f);
void boot_file_close(struct boot_file *f);
/* Reads [off, off+len) of the file into buf (host memory or guest RAM). Returns 0, -ENOEXEC if
 * the range lies beyond the end of the file (a damaged header points there), or -errno after
 * printing why the read failed. */
int boot_file_read_at(const struct boot_file *f, uint64_t off, void *buf, size_t len);
/* Loads the initrd as high as possible in low RAM, page-aligned, below max_end (exclusive) and
 * not below min_start. Prints why on failure. */
int boot_initrd_load(const struct guest_mem *mem, const char *path, uint64_t min_start,
		     uint64_t max_end, uint64_t *gpa, uint64_t *size);
/* Copies cmdline (NUL-terminated) to LAYOUT_CMDLINE; fails if longer than max_len - 1. */
int boot_cmdline_load(const struct guest_mem *mem, const char *cmdline, size_t max_len);

/* ELF32/ELF64 program loading shared by PVH and multiboot: copies PT_LOAD segments to their
 * physical addresses. Returns the highest loaded address in *end. */
int boot_elf_load_segments(const struct guest_mem *mem, const struct boot_file *f, uint64_t *end);

#endif
