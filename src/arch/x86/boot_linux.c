/* The Linux x86 boot protocol for bzImage kernels: setup header validation, zero page (boot
 * params) with e820 map, command line and initrd, and the 64-bit entry point. */
#include <errno.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "lib/log.h"

/* Offsets into the bzImage file, which are also offsets into struct boot_params (the setup
 * header sits at 0x1f1 in both); see the kernel's Documentation/arch/x86/boot.rst. */
#define BP_ACPI_RSDP_ADDR   0x070
#define BP_E820_ENTRIES     0x1e8
#define HDR_START           0x1f1
#define HDR_SETUP_SECTS     0x1f1
#define HDR_BOOT_FLAG       0x1fe
#define HDR_JUMP            0x200
#define HDR_MAGIC           0x202
#define HDR_VERSION         0x206
#define HDR_TYPE_OF_LOADER  0x210
#define HDR_LOADFLAGS       0x211
#define HDR_RAMDISK_IMAGE   0x218
#define HDR_RAMDISK_SIZE    0x21c
#define HDR_HEAP_END_PTR    0x224
#define HDR_CMD_LINE_PTR    0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_XLOADFLAGS      0x236
#define HDR_CMDLINE_SIZE    0x238
#define HDR_INIT_SIZE       0x260
#define BP_E820_TABLE       0x2d0
#define BP_E820_MAX         128

#define LOADFLAGS_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64          0x01
#define BOOT_PROTOCOL_MIN      0x020c /* xloadflags, 64-bit entry */
#define LOAD_PHYSICAL_ADDR     0x1000000ULL /* where x86-64 kernels decompress by default */

static uint32_t rd32(const uint8_t *p, size_t off)
{
	uint32_t v;
	memcpy(&v, p + off, 4);
	return v;
}

static uint16_t rd16(const uint8_t *p, size_t off)
{
	uint16_t v;
	memcpy(&v, p + off, 2);
	return v;
}

static void wr32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static void wr16(uint8_t *p, size_t off, uint16_t v) { memcpy(p + off, &v, 2); }
static void wr64(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

int boot_linux_load(const struct guest_mem *mem, const struct boot_config *cfg,
		    const struct boot_file *k, struct boot_entry *entry)
{
	if (k->head_size < 0x1000 || rd16(k->head, HDR_BOOT_FLAG) != 0xaa55 ||
	    memcmp(k->head + HDR_MAGIC, "HdrS", 4) != 0)
		return -ENOEXEC;

	uint16_t version = rd16(k->head, HDR_VERSION);
	if (version < BOOT_PROTOCOL_MIN || !(rd16(k->head, HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
		log_error("kernel '%s' does not support the 64-bit boot protocol (version %u.%02u, "
			  "2.12 or later with a 64-bit entry is required)", k->path,
			  version >> 8, version & 0xff);
		return -EINVAL;
	}
	unsigned setup_sects = k->head[HDR_SETUP_SECTS] ? k->head[HDR_SETUP_SECTS] : 4;
	size_t setup_size = (size_t)(setup_sects + 1) * 512;
	size_t hdr_end = HDR_JUMP + 2 + k->head[HDR_JUMP + 1]; /* the jump skips the header */
	if (setup_size >= k->size || hdr_end > 0x1000 || hdr_end > setup_size) {
		log_error("kernel '%s' has a damaged setup header", k->path);
		return -EINVAL;
	}
	size_t kernel_size = k->size - setup_size;
	uint64_t init_size = rd32(k->head, HDR_INIT_SIZE);
	if (init_size < kernel_size)
		init_size = kernel_size;

	uint8_t *kdst = guest_mem_ptr(mem, LAYOUT_KERNEL, init_size);
	if (!kdst) {
		log_error("kernel '%s' needs %llu MiB above 1 MiB; give the guest more memory "
			  "(--memory)", k->path, (unsigned long long)(init_size >> 20) + 1);
		return -ENOSPC;
	}
	int r = boot_file_read_at(k, setup_size, kdst, kernel_size);
	if (r < 0)
		return r == -ENOEXEC ? -EIO : r;

	uint8_t *zp = guest_mem_ptr(mem, LAYOUT_ZERO_PAGE, 0x1000);
	memset(zp, 0, 0x1000);
	memcpy(zp + HDR_START, k->head + HDR_START, hdr_end - HDR_START);
	zp[HDR_TYPE_OF_LOADER] = 0xff; /* undefined boot loader */
	zp[HDR_LOADFLAGS] |= LOADFLAGS_CAN_USE_HEAP;
	wr16(zp, HDR_HEAP_END_PTR, 0xfe00);

	size_t cmdline_max = rd32(k->head, HDR_CMDLINE_SIZE) + 1; /* the size excludes the NUL */
	r = boot_cmdline_load(mem, cfg->cmdline, cmdline_max);
	if (r < 0)
		return r;
	wr32(zp, HDR_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);

	if (cfg->initrd_path) {
		uint64_t max_end = (uint64_t)rd32(k->head, HDR_INITRD_ADDR_MAX) + 1;
		/* Above where the kernel decompresses itself, so nothing overwrites the initrd. */
		uint64_t min_start = LOAD_PHYSICAL_ADDR + init_size;
		uint64_t gpa, size;
		r = boot_initrd_load(mem, cfg->initrd_path, min_start, max_end, &gpa, &size);
		if (r < 0)
			return r;
		wr32(zp, HDR_RAMDISK_IMAGE, (uint32_t)gpa);
		wr32(zp, HDR_RAMDISK_SIZE, (uint32_t)size);
	}

	struct e820_entry map[E820_MAX_ENTRIES];
	int n = e820_build(mem, map);
	memcpy(zp + BP_E820_TABLE, map, (size_t)n * sizeof(map[0]));
	zp[BP_E820_ENTRIES] = (uint8_t)n;
	wr64(zp, BP_ACPI_RSDP_ADDR, cfg->rsdp_gpa);

	*entry = (struct boot_entry){ .mode = BOOT_MODE_LINUX64, .rip = LAYOUT_KERNEL + 0x200,
				      .rsi = LAYOUT_ZERO_PAGE };
	return 0;
}
