/* QEMU's firmware configuration device (fw_cfg) as SeaBIOS and OVMF read it: the items the
 * machine adds before the guest runs, and the device behind struct device_ops. */
#ifndef KVMKIT_FIRMWARE_FW_CFG_H
#define KVMKIT_FIRMWARE_FW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/device.h"

/* x86 I/O ports (QEMU's docs/specs/fw_cfg.rst). */
#define FW_CFG_PORT_SEL  0x510   /* selector: 16-bit write */
#define FW_CFG_PORT_DATA 0x511   /* data: byte reads */
#define FW_CFG_PORT_DMA  0x514   /* DMA address: 64-bit big-endian, 8 ports */

/* Well-known keys. */
#define FW_CFG_SIGNATURE  0x00
#define FW_CFG_ID         0x01
#define FW_CFG_UUID       0x02
#define FW_CFG_RAM_SIZE   0x03
#define FW_CFG_NOGRAPHIC  0x04
#define FW_CFG_NB_CPUS    0x05
#define FW_CFG_MACHINE_ID 0x06
#define FW_CFG_NUMA       0x0d
#define FW_CFG_BOOT_MENU  0x0e
#define FW_CFG_MAX_CPUS   0x0f
#define FW_CFG_FILE_DIR   0x19
#define FW_CFG_FILE_FIRST 0x20
#define FW_CFG_ARCH_LOCAL 0x8000
#define FW_CFG_IRQ0_OVERRIDE (FW_CFG_ARCH_LOCAL + 2)

/* FW_CFG_ID's feature bits. */
#define FW_CFG_VERSION     0x01
#define FW_CFG_VERSION_DMA 0x02

/* The control word of a DMA descriptor (FWCfgDmaAccess: be32 control, be32 length,
 * be64 address); SELECT's key is in the high 16 bits. */
#define FW_CFG_DMA_CTL_ERROR  0x01
#define FW_CFG_DMA_CTL_READ   0x02
#define FW_CFG_DMA_CTL_SKIP   0x04
#define FW_CFG_DMA_CTL_SELECT 0x08
#define FW_CFG_DMA_CTL_WRITE  0x10
#define FW_CFG_DMA_DESC_SIZE  16

/* What reading the DMA address register returns: "QEMU CFG", big-endian. */
#define FW_CFG_DMA_SIGNATURE 0x51454d5520434647ULL

/* A file name holds at most this many bytes with its NUL; a directory entry is 64 bytes:
 * be32 size, be16 select, be16 reserved, char name[56]. */
#define FW_CFG_NAME_SIZE 56
#define FW_CFG_DIR_ENTRY_SIZE 64
#define FW_CFG_MAX_FILES 256

#define FW_CFG_STATE_VERSION 1

struct fw_cfg;

/* The big-endian fields of the directory, the DMA register and descriptor (n <= 8 bytes). */
static inline void fw_cfg_be_put(uint8_t *p, unsigned n, uint64_t v)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static inline uint64_t fw_cfg_be_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The device (realize's arg: NULL, or a const struct fw_cfg_machine * given to
 * fw_cfg_add_standard). Its state is the struct fw_cfg the functions below take. */
extern const struct device_ops fw_cfg_ops;

/* Adding items: before the guest runs (no lock against the vCPUs). Each copies data and
 * returns 0, -EEXIST (the key or name is taken), -EINVAL (a file's key, a reserved key, an
 * empty or too long name, an item of 4 GiB or more), -ENOSPC (no file key left) or -ENOMEM.
 * Integers are stored little-endian, as QEMU's fw_cfg_add_i16/i32/i64. */
int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len);
int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v);
int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v);
int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t v);
/* A named file (name < 56 bytes); files get keys from FW_CFG_FILE_FIRST in name order, as
 * QEMU's directory is sorted, so an added file can move the keys of those after it. */
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);

/* Lookups (tests, and the machine checking what it added): an item's bytes and length, or
 * NULL; a file's key, or -ENOENT. */
const uint8_t *fw_cfg_item(const struct fw_cfg *fw, uint16_t key, uint32_t *len);
int fw_cfg_file_key(const struct fw_cfg *fw, const char *name);

/* One "etc/e820" entry (stored as le64 address, le64 length, le32 type: 20 bytes). */
struct fw_cfg_e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* What the machine tells the firmware, filled by the lead from the VM's configuration. */
struct fw_cfg_machine {
	unsigned ncpus;              /* NB_CPUS, "etc/boot-cpus" */
	unsigned max_cpus;           /* MAX_CPUS; 0: ncpus */
	uint64_t ram_size;           /* RAM_SIZE: bytes */
	const struct fw_cfg_e820_entry *e820;   /* "etc/e820" */
	size_t e820_count;
	const uint8_t *uuid;         /* 16 bytes, or NULL: all zero, as QEMU without -uuid */
	bool nographic;              /* NOGRAPHIC */
	bool boot_menu;              /* BOOT_MENU: SeaBIOS offers its menu (F12) */
	int boot_menu_wait_ms;       /* "etc/boot-menu-wait" (le16) when 0..65535; -1: none */
	/* "etc/boot-fail-wait" (le32): milliseconds before SeaBIOS retries the boot after no
	 * device booted, as QEMU's reboot-timeout (SeaBIOS reads ms); -1: never (QEMU's default). */
	int32_t boot_fail_wait_ms;
	const char *bootorder;       /* "bootorder": device paths, one a line; NULL: none */
	uint16_t sercon_port;        /* "etc/sercon-port" (le16): 0x3f8 for COM1; 0: none */
};

/* Adds the items QEMU's x86 machines give SeaBIOS and OVMF from m. Returns 0 or -errno as
 * the adders. */
int fw_cfg_add_standard(struct fw_cfg *fw, const struct fw_cfg_machine *m);

#endif
