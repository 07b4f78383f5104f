/* The system firmware image: read from Debian's seabios (or the user's file), mapped read-only
 * below 4 GiB by the VM, its last 128 KiB copied to the ISA BIOS area at every power-on. */
#include "firmware/bios_rom.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

int bios_rom_load(struct bios_rom *rom, const char *path)
{
	memset(rom, 0, sizeof(*rom));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		log_error("cannot open the firmware '%s': %s%s", path, strerror(err),
			  err == ENOENT && !strcmp(path, BIOS_ROM_DEFAULT_PATH) ?
			  " (install Debian's seabios package)" : "");
		return -err;
	}
	struct stat st;
	int r = fstat(fd, &st) < 0 ? -errno : 0;
	/* The reset vector is the image's last 16 bytes, so the image must end at 4 GiB: a size the
	 * chipset can decode (64 KiB granules, as QEMU asks of -bios) and not absurdly large. */
	if (r == 0 && (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size % 0x10000 ||
		       (uint64_t)st.st_size > BIOS_ROM_MAX_SIZE)) {
		log_error("the firmware '%s' is not a BIOS image: want a file of 64 KiB to 16 MiB in "
			  "whole 64 KiB (it has %lld bytes)", path, (long long)st.st_size);
		close(fd);
		return -EINVAL;
	}
	if (r < 0) {
		log_error("cannot read the firmware '%s': %s", path, strerror(-r));
		close(fd);
		return r;
	}
	size_t size = (size_t)st.st_size;
	void *image = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (image == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = pread(fd, (uint8_t *)image + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			log_error("cannot read the firmware '%s': %s", path,
				  n < 0 ? strerror(errno) : "it got shorter while being read");
			munmap(image, size);
			close(fd);
			return r;
		}
		done += (size_t)n;
	}
	close(fd);
	rom->image = image;
	rom->size = size;
	rom->gpa = 0x100000000ULL - size;
	return 0;
}

int bios_rom_copy_isa(const struct bios_rom *rom, const struct guest_mem *mem)
{
	size_t n = rom->size < BIOS_ROM_ISA_SIZE ? rom->size : BIOS_ROM_ISA_SIZE;
	return guest_mem_write(mem, BIOS_ROM_ISA_START + BIOS_ROM_ISA_SIZE - n,
			       (const uint8_t *)rom->image + rom->size - n, n);
}

void bios_rom_free(struct bios_rom *rom)
{
	if (rom->image)
		munmap(rom->image, rom->size);
	memset(rom, 0, sizeof(*rom));
}
