/* Kernel loading common to all formats: reading files, the initrd and command line, ELF
 * segments, format detection, and the boot vCPU's initial register state. */
#include "arch/x86/boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "lib/log.h"

#define BOOT_FILE_MAX (1ULL << 32) /* no kernel or initrd is bigger than the low 4 GiB */

/* read() until len bytes are in or an error; 0 or -errno (-EIO at an unexpected end of file). */
static int read_full(int fd, uint64_t off, uint8_t *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

int boot_file_open(const char *path, const char *what, struct boot_file *f)
{
	memset(f, 0, sizeof(*f));
	f->path = path;
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		int err = errno;
		log_error("cannot open %s '%s': %s", what, path, strerror(err));
		return -err;
	}
	struct stat st;
	if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s '%s' is not a regular file", what, path);
		boot_file_close(f);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > BOOT_FILE_MAX) {
		log_error("%s '%s' is too large (%lld bytes)", what, path, (long long)st.st_size);
		boot_file_close(f);
		return -EFBIG;
	}
	f->size = (uint64_t)st.st_size;
	f->head_size = f->size < BOOT_FILE_HEAD_MAX ? (size_t)f->size : BOOT_FILE_HEAD_MAX;
	f->head = malloc(f->head_size ? f->head_size : 1);
	if (!f->head) {
		boot_file_close(f);
		return -ENOMEM;
	}
	int r = read_full(f->fd, 0, f->head, f->head_size);
	if (r < 0) {
		log_error("cannot read %s '%s': %s", what, path, strerror(-r));
		boot_file_close(f);
		return r;
	}
	return 0;
}

void boot_file_close(struct boot_file *f)
{
	free(f->head);
	if (f->fd >= 0)
		close(f->fd);
	f->head = NULL;
	f->fd = -1;
	f->size = f->head_size = 0;
}

int boot_file_read_at(const struct boot_file *f, uint64_t off, void *buf, size_t len)
{
	if (off > f->size || len > f->size - off)
		return -ENOEXEC;
	if (len <= f->head_size && off <= f->head_size - len) {
		memcpy(buf, f->head + off, len);
		return 0;
	}
	int r = read_full(f->fd, off, buf, len);
	if (r < 0)
		log_error("cannot read kernel '%s': %s", f->path, strerror(-r));
	return r;
}

int boot_initrd_load(const struct guest_mem *mem, const char *path, uint64_t min_start,
		     uint64_t max_end, uint64_t *gpa, uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		log_error("cannot open initrd '%s': %s", path, strerror(err));
		return -err;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("initrd '%s' is not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	uint64_t len = (uint64_t)st.st_size;
	uint64_t low = guest_mem_low_size(mem);
	if (max_end > low)
		max_end = low;
	if (len > max_end || ((max_end - len) & ~0xfffULL) < min_start) {
		log_error("initrd '%s' (%llu MiB) does not fit in guest memory below %llu MiB "
			  "above the kernel; give the guest more memory (--memory)",
			  path, (unsigned long long)(len >> 20), (unsigned long long)(max_end >> 20));
		close(fd);
		return -ENOSPC;
	}
	uint64_t start = (max_end - len) & ~0xfffULL;
	uint8_t *dst = guest_mem_ptr(mem, start, len);
	int r = dst ? read_full(fd, 0, dst, len) : -EFAULT;
	close(fd);
	if (r < 0) {
		log_error("cannot read initrd '%s': %s", path, strerror(-r));
		return r;
	}
	*gpa = start;
	*size = len;
	return 0;
}

int boot_cmdline_load(const struct guest_mem *mem, const char *cmdline, size_t max_len)
{
	size_t len = strlen(cmdline) + 1;
	if (max_len > LAYOUT_CMDLINE_MAX)
		max_len = LAYOUT_CMDLINE_MAX;
	if (len > max_len) {
		log_error("the kernel command line is %zu bytes; this kernel accepts at most %zu",
			  len - 1, max_len - 1);
		return -E2BIG;
	}
	return guest_mem_write(mem, LAYOUT_CMDLINE, cmdline, len);
}

/* Reads one program header of either class into a 64-bit form, bounds-checked. */
static int elf_phdr(const struct boot_file *f, bool is64, unsigned i, Elf64_Phdr *out)
{
	if (is64) {
		Elf64_Ehdr eh;
		memcpy(&eh, f->head, sizeof(eh));
		if (eh.e_phentsize != sizeof(Elf64_Phdr))
			return -ENOEXEC;
		return boot_file_read_at(f, eh.e_phoff + (uint64_t)i * sizeof(Elf64_Phdr), out,
					 sizeof(*out));
	} else {
		Elf32_Ehdr eh;
		memcpy(&eh, f->head, sizeof(eh));
		Elf32_Phdr p;
		if (eh.e_phentsize != sizeof(Elf32_Phdr))
			return -ENOEXEC;
		int r = boot_file_read_at(f, eh.e_phoff + (uint64_t)i * sizeof(Elf32_Phdr), &p,
					  sizeof(p));
		if (r < 0)
			return r;
		*out = (Elf64_Phdr){ .p_type = p.p_type, .p_flags = p.p_flags, .p_offset = p.p_offset,
				     .p_vaddr = p.p_vaddr, .p_paddr = p.p_paddr,
				     .p_filesz = p.p_filesz, .p_memsz = p.p_memsz,
				     .p_align = p.p_align };
	}
	return 0;
}

/* Validates the ELF header; sets *is64 and *phnum. -ENOEXEC if not an x86 ELF executable. */
static int elf_check(const struct boot_file *f, bool *is64, unsigned *phnum)
{
	if (f->head_size < sizeof(Elf32_Ehdr) || memcmp(f->head, ELFMAG, SELFMAG) != 0)
		return -ENOEXEC;
	*is64 = f->head[EI_CLASS] == ELFCLASS64;
	if (*is64) {
		Elf64_Ehdr eh;
		if (f->head_size < sizeof(eh))
			return -ENOEXEC;
		memcpy(&eh, f->head, sizeof(eh));
		if (eh.e_machine != EM_X86_64)
			return -ENOEXEC;
		*phnum = eh.e_phnum;
	} else {
		Elf32_Ehdr eh;
		memcpy(&eh, f->head, sizeof(eh));
		if (f->head[EI_CLASS] != ELFCLASS32 || eh.e_machine != EM_386)
			return -ENOEXEC;
		*phnum = eh.e_phnum;
	}
	return 0;
}

int boot_elf_load_segments(const struct guest_mem *mem, const struct boot_file *f, uint64_t *end)
{
	bool is64;
	unsigned phnum;
	if (elf_check(f, &is64, &phnum) < 0)
		return -ENOEXEC;
	uint64_t top = 0;
	for (unsigned i = 0; i < phnum; i++) {
		Elf64_Phdr ph;
		int r = elf_phdr(f, is64, i, &ph);
		if (r == -ENOEXEC)
			goto bad;
		if (r < 0)
			return r;
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > f->size ||
		    f->size - ph.p_offset < ph.p_filesz)
			goto bad;
		uint8_t *dst = guest_mem_ptr(mem, ph.p_paddr, ph.p_memsz);
		if (!dst) {
			log_error("kernel '%s' has a segment at 0x%llx-0x%llx outside guest memory; "
				  "give the guest more memory (--memory)", f->path,
				  (unsigned long long)ph.p_paddr,
				  (unsigned long long)(ph.p_paddr + ph.p_memsz));
			return -ENOSPC;
		}
		r = boot_file_read_at(f, ph.p_offset, dst, ph.p_filesz);
		if (r == -ENOEXEC)
			goto bad;
		if (r < 0)
			return r;
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (ph.p_paddr + ph.p_memsz > top)
			top = ph.p_paddr + ph.p_memsz;
	}
	if (top == 0)
		goto bad;
	*end = top;
	return 0;
bad:
	log_error("kernel '%s' is a damaged ELF file (bad program headers)", f->path);
	return -EINVAL;
}

int boot_load(const struct guest_mem *mem, const struct boot_config *cfg, struct boot_entry *entry)
{
	struct boot_file kernel;
	int r = boot_file_open(cfg->kernel_path, "kernel", &kernel);
	if (r < 0)
		return r;
	/* Same order as QEMU's -kernel: Linux bzImage, then ELF with a PVH note, then multiboot. */
	r = boot_linux_load(mem, cfg, &kernel, entry);
	if (r == -ENOEXEC)
		r = boot_pvh_load(mem, cfg, &kernel, entry);
	if (r == -ENOEXEC)
		r = boot_multiboot_load(mem, cfg, &kernel, entry);
	if (r == -ENOEXEC)
		log_error("kernel '%s' is not a Linux bzImage, an ELF vmlinux with a PVH entry note, "
			  "or a multiboot kernel", cfg->kernel_path);
	boot_file_close(&kernel);
	return r;
}
