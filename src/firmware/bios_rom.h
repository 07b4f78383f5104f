/* The system firmware image (SeaBIOS's bios.bin and friends): mapped read-only below 4 GiB where
 * the reset vector points, its last 128 KiB also in RAM at 0xe0000 (the ISA BIOS area). */
#ifndef KVMKIT_FIRMWARE_BIOS_ROM_H
#define KVMKIT_FIRMWARE_BIOS_ROM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

/* Debian's SeaBIOS for QEMU (package seabios): what `--firmware bios` loads. The 128 KiB build,
 * which lies wholly in the ISA BIOS area: the 256 KiB one (QEMU's default) copies part of itself
 * below 0xe0000 through the chipset's PAM registers, which kvmkit does not emulate yet. */
#define BIOS_ROM_DEFAULT_PATH "/usr/share/seabios/bios.bin"
#define BIOS_ROM_MAX_SIZE (16u << 20)      /* QEMU's limit for -bios */
#define BIOS_ROM_ISA_START 0xe0000ULL      /* the ISA BIOS area the last 128 KiB are copied to */
#define BIOS_ROM_ISA_SIZE 0x20000ULL

struct bios_rom {
	void *image;       /* page-aligned host copy of the file, size bytes */
	size_t size;       /* a multiple of 64 KiB, at most BIOS_ROM_MAX_SIZE */
	uint64_t gpa;      /* 4 GiB - size */
};

/* Reads the firmware file. Returns 0 or -errno after printing one sentence naming the file. */
int bios_rom_load(struct bios_rom *rom, const char *path);
/* Copies the image's last 128 KiB (less if it is smaller) to its place below 1 MiB, as the
 * chipset's ISA BIOS alias shows them at power-on; done again at every reset. */
int bios_rom_copy_isa(const struct bios_rom *rom, const struct guest_mem *mem);
void bios_rom_free(struct bios_rom *rom);

#endif
