/* SMBIOS tables (DMI) for firmware boot: what dmidecode and /sys/class/dmi show inside the guest,
 * given to SeaBIOS through fw_cfg as QEMU does ("etc/smbios/smbios-anchor" and -tables). */
#ifndef KVMKIT_FIRMWARE_SMBIOS_H
#define KVMKIT_FIRMWARE_SMBIOS_H

#include <stddef.h>
#include <stdint.h>

struct fw_cfg;

/* A 2.x entry point ("_SM_" ... "_DMI_"): the one every SeaBIOS takes from fw_cfg. */
#define SMBIOS_ANCHOR_SIZE 31
#define SMBIOS_MAJOR 2
#define SMBIOS_MINOR 8
#define SMBIOS_MAX_CPUS 1024           /* as the command line and snapshots allow */
#define SMBIOS_UUID_STRLEN 36          /* 8-4-4-4-12 hex digits */

/* Offsets in the 2.x entry point (dmidecode and the tests read them). */
#define SMBIOS_EP_CHECKSUM     0x04
#define SMBIOS_EP_LENGTH       0x05
#define SMBIOS_EP_MAX_STRUCT   0x08
#define SMBIOS_EP_DMI          0x10
#define SMBIOS_EP_DMI_CHECKSUM 0x15
#define SMBIOS_EP_TABLE_LEN    0x16
#define SMBIOS_EP_TABLE_ADDR   0x18
#define SMBIOS_EP_COUNT        0x1c

struct smbios_machine {
	unsigned ncpus;           /* one socket (type 4) each: 1..SMBIOS_MAX_CPUS */
	uint64_t ram_below_4g;    /* bytes of RAM from address 0 */
	uint64_t ram_above_4g;    /* bytes of RAM from 4 GiB */
	const uint8_t *uuid;      /* 16 bytes as written (RFC 4122 order), NULL: all zero as QEMU */
	const char *version;      /* kvmkit's version: type 0's BIOS version, type 1's version */
};

struct smbios_tables {
	uint8_t anchor[SMBIOS_ANCHOR_SIZE];  /* table address 0: the firmware places the table */
	uint8_t *table;                      /* the structures, ending with type 127 */
	size_t len;
};

/* Builds the structures and their entry point. Returns 0, -EINVAL (no CPU, too many, no RAM),
 * -E2BIG (more than a 2.x table holds) or -ENOMEM. smbios_free releases t->table. */
int smbios_build(const struct smbios_machine *m, struct smbios_tables *t);
void smbios_free(struct smbios_tables *t);

/* Sets the entry point's table address and both its checksums (dmidecode's dump files put the
 * table at 32). */
void smbios_set_table_address(uint8_t *anchor, uint32_t addr);

/* Builds the tables and adds both fw_cfg files. Returns 0 or -errno as smbios_build and
 * fw_cfg_add_file. */
int smbios_add_fw_cfg(struct fw_cfg *fw, const struct smbios_machine *m);

/* QEMU's -uuid syntax, 8-4-4-4-12 hex digits, into its 16 bytes (as written). 0 or -EINVAL. */
int smbios_parse_uuid(const char *s, uint8_t uuid[16]);

#endif
