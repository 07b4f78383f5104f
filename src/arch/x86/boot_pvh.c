/* PVH boot of an ELF vmlinux: find the XEN_ELFNOTE_PHYS32_ENTRY note, load the segments, and
 * hand the kernel an hvm_start_info with command line, initrd module, e820 map and RSDP. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "lib/log.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

/* Xen's public hvm/start_info.h, version 1 */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* Bigger note segments are not a kernel's (Linux's are a few hundred bytes). */
#define PVH_NOTES_MAX  (1u << 20)

#define PVH_START_INFO (LAYOUT_BOOT_INFO)
#define PVH_MODLIST    (LAYOUT_BOOT_INFO + 0x40)
#define PVH_MEMMAP     (LAYOUT_BOOT_INFO + 0x80)

/* Walks the notes in [off, off+len) of the file for the PVH entry. Returns 0 and *entry. */
static int pvh_find_note(const struct boot_file *f, uint64_t off, uint64_t len, uint64_t *entry)
{
	if (len > PVH_NOTES_MAX)
		return -ENOENT;
	uint8_t *notes = malloc(len ? len : 1);
	if (!notes)
		return -ENOMEM;
	int r = boot_file_read_at(f, off, notes, len);
	if (r < 0) {
		free(notes);
		return r == -ENOEXEC ? -ENOENT : r;
	}
	r = -ENOENT;
	const uint8_t *p = notes, *end = notes + len;
	while ((size_t)(end - p) >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, p, 4);
		memcpy(&descsz, p + 4, 4);
		memcpy(&type, p + 8, 4);
		uint64_t name_len = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_len = ((uint64_t)descsz + 3) & ~3ULL;
		if (name_len + desc_len > (uint64_t)(end - p) - 12)
			break;
		const uint8_t *name = p + 12, *desc = name + name_len;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && memcmp(name, "Xen", 4) == 0 &&
		    (descsz == 4 || descsz == 8)) {
			uint64_t v = 0;
			memcpy(&v, desc, descsz); /* little-endian: a 4-byte value fills the low half */
			*entry = v;
			r = 0;
			break;
		}
		p = desc + desc_len;
	}
	free(notes);
	return r;
}

/* 0 and *entry; -ENOENT when the file has no PVH note; another -errno on a read error. */
static int pvh_entry_point(const struct boot_file *f, uint64_t *entry)
{
	bool is64 = f->head[EI_CLASS] == ELFCLASS64;
	uint64_t phoff, phnum, phentsize;
	if (is64) {
		Elf64_Ehdr eh;
		memcpy(&eh, f->head, sizeof(eh));
		phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = sizeof(Elf64_Phdr);
	} else {
		Elf32_Ehdr eh;
		memcpy(&eh, f->head, sizeof(eh));
		phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = sizeof(Elf32_Phdr);
	}
	for (uint64_t i = 0; i < phnum; i++) {
		uint32_t type;
		uint64_t off, len;
		int r;
		if (is64) {
			Elf64_Phdr ph;
			r = boot_file_read_at(f, phoff + i * phentsize, &ph, sizeof(ph));
			type = ph.p_type, off = ph.p_offset, len = ph.p_filesz;
		} else {
			Elf32_Phdr ph;
			r = boot_file_read_at(f, phoff + i * phentsize, &ph, sizeof(ph));
			type = ph.p_type, off = ph.p_offset, len = ph.p_filesz;
		}
		if (r < 0)
			return r == -ENOEXEC ? -ENOENT : r;
		if (type != PT_NOTE)
			continue;
		r = pvh_find_note(f, off, len, entry);
		if (r != -ENOENT)
			return r;
	}
	return -ENOENT;
}

int boot_pvh_load(const struct guest_mem *mem, const struct boot_config *cfg,
		  const struct boot_file *k, struct boot_entry *entry)
{
	if (k->head_size < sizeof(Elf64_Ehdr) || memcmp(k->head, ELFMAG, SELFMAG) != 0 ||
	    (k->head[EI_CLASS] != ELFCLASS64 && k->head[EI_CLASS] != ELFCLASS32))
		return -ENOEXEC;
	uint64_t pvh_entry;
	int r = pvh_entry_point(k, &pvh_entry);
	if (r == -ENOENT)
		return -ENOEXEC; /* maybe a multiboot ELF */
	if (r < 0)
		return r;

	uint64_t kernel_end;
	r = boot_elf_load_segments(mem, k, &kernel_end);
	if (r < 0)
		return r;
	r = boot_cmdline_load(mem, cfg->cmdline, LAYOUT_CMDLINE_MAX);
	if (r < 0)
		return r;

	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = LAYOUT_CMDLINE,
		.rsdp_paddr = cfg->rsdp_gpa,
		.memmap_paddr = PVH_MEMMAP,
	};
	if (cfg->initrd_path) {
		struct hvm_modlist_entry mod = { 0 };
		r = boot_initrd_load(mem, cfg->initrd_path, (kernel_end + 0xfff) & ~0xfffULL,
				     GUEST_MEM_LOW_LIMIT, &mod.paddr, &mod.size);
		if (r < 0)
			return r;
		guest_mem_write(mem, PVH_MODLIST, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST;
	}

	struct e820_entry map[E820_MAX_ENTRIES];
	int n = e820_build(mem, map);
	for (int i = 0; i < n; i++) {
		struct hvm_memmap_entry e = { map[i].addr, map[i].size, map[i].type, 0 };
		guest_mem_write(mem, PVH_MEMMAP + (uint64_t)i * sizeof(e), &e, sizeof(e));
	}
	si.memmap_entries = (uint32_t)n;
	guest_mem_write(mem, PVH_START_INFO, &si, sizeof(si));

	*entry = (struct boot_entry){ .mode = BOOT_MODE_PVH, .rip = pvh_entry,
				      .rbx = PVH_START_INFO };
	return 0;
}
