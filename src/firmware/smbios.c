/* SMBIOS 2.8 structures and their 2.x entry point for a kvmkit machine (DMI Type 0, 1, 3, 4,
 * 16, 17, 19, 32, 127), added to fw_cfg where SeaBIOS copies them from. */
#include "firmware/smbios.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firmware/fw_cfg.h"

#define SMBIOS_BIOS_DATE "12/01/2026"      /* mm/dd/yyyy, as the specification asks */
#define SMBIOS_VENDOR "kvmkit"
#define SMBIOS_MAX_FORMATTED 48            /* the longest formatted area below: type 4's 0x2a */
#define SMBIOS_MAX_STR 64                  /* each of our strings is cut there */
#define SMBIOS_MAX_STRINGS 4
#define SMBIOS_TABLE_MAX 0xffff            /* a 2.x entry point's table length is 16 bits */
/* RAM is described as DIMMs of 16 GiB as QEMU does, or larger ones so there are at most
 * this many (the table must stay within 64 KiB). */
#define SMBIOS_DIMM_SIZE (16ULL << 30)
#define SMBIOS_MAX_DIMMS 64
#define GIB4 (1ULL << 32)

/* One structure being filled: its formatted area and its string set. */
struct smbios_rec {
	uint8_t f[SMBIOS_MAX_FORMATTED];
	uint8_t len;
	char s[SMBIOS_MAX_STRINGS * (SMBIOS_MAX_STR + 1)];
	size_t slen;
	uint8_t nstr;
};

struct smbios_builder {
	uint8_t *p;
	size_t len, cap;
	unsigned count;
	size_t max_struct;
	uint16_t handle;       /* the next structure's handle */
	int err;
};

static void smbios_put(uint8_t *p, unsigned n, uint64_t v)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A new structure with the builder's next handle; returns that handle. */
static uint16_t smbios_rec_init(struct smbios_builder *b, struct smbios_rec *r, uint8_t type,
				uint8_t len)
{
	memset(r, 0, sizeof(*r));
	r->f[0] = type;
	r->f[1] = len;
	r->len = len;
	smbios_put(&r->f[2], 2, b->handle);
	return b->handle++;
}

/* String fields hold 1-based indices into the string set; 0 (no string) for NULL or "". */
static void smbios_rec_str(struct smbios_rec *r, unsigned off, const char *str)
{
	if (!str || !*str || r->nstr == SMBIOS_MAX_STRINGS)
		return;
	size_t n = strnlen(str, SMBIOS_MAX_STR);
	memcpy(r->s + r->slen, str, n);
	r->slen += n + 1;       /* the NUL is there: memset */
	r->f[off] = ++r->nstr;
}

static void smbios_emit(struct smbios_builder *b, const struct smbios_rec *r)
{
	/* The string set ends with an extra NUL; an empty one is two NULs. */
	size_t n = r->len + (r->slen ? r->slen + 1 : 2);
	if (b->err)
		return;
	if (b->len + n > SMBIOS_TABLE_MAX) {
		b->err = -E2BIG;
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 1024;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	uint8_t *d = b->p + b->len;
	memcpy(d, r->f, r->len);
	memset(d + r->len, 0, n - r->len);
	memcpy(d + r->len, r->s, r->slen);
	b->len += n;
	b->count++;
	if (n > b->max_struct)
		b->max_struct = n;
}

/* Type 0, BIOS information: SeaBIOS adds its own only when there is none. */
static void smbios_type0(struct smbios_builder *b, const struct smbios_machine *m)
{
	struct smbios_rec r;
	unsigned major = 0, minor = 0;
	if (m->version)
		sscanf(m->version, "%u.%u", &major, &minor);
	smbios_rec_init(b, &r, 0, 0x18);
	smbios_rec_str(&r, 0x04, SMBIOS_VENDOR);
	smbios_rec_str(&r, 0x05, m->version);
	smbios_put(&r.f[0x06], 2, 0xe800);       /* the BIOS's segment, as SeaBIOS says */
	smbios_rec_str(&r, 0x08, SMBIOS_BIOS_DATE);
	r.f[0x0a] = 0x08;                        /* characteristics not supported */
	r.f[0x13] = 0x04 | 0x10;                 /* targeted content distribution; a VM */
	r.f[0x14] = (uint8_t)(major > 0xfe ? 0xfe : major);
	r.f[0x15] = (uint8_t)(minor > 0xfe ? 0xfe : minor);
	r.f[0x16] = r.f[0x17] = 0xff;            /* no embedded controller */
	smbios_emit(b, &r);
}

/* Type 1, system information. SMBIOS 2.6 and later store the UUID's first three fields
 * little-endian (dmidecode and Linux swap them back), the rest as written. */
static void smbios_type1(struct smbios_builder *b, const struct smbios_machine *m)
{
	static const uint8_t zero[16];
	const uint8_t *u = m->uuid ? m->uuid : zero;
	struct smbios_rec r;
	smbios_rec_init(b, &r, 1, 0x1b);
	smbios_rec_str(&r, 0x04, SMBIOS_VENDOR);
	smbios_rec_str(&r, 0x05, "kvmkit");
	smbios_rec_str(&r, 0x06, m->version);
	uint8_t *d = &r.f[0x08];
	static const uint8_t order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	for (int i = 0; i < 16; i++)
		d[i] = u[order[i]];
	r.f[0x18] = 0x06;                        /* woken by the power switch */
	smbios_emit(b, &r);
}

/* Type 3, the chassis. */
static void smbios_type3(struct smbios_builder *b)
{
	struct smbios_rec r;
	smbios_rec_init(b, &r, 3, 0x15);
	smbios_rec_str(&r, 0x04, SMBIOS_VENDOR);
	r.f[0x05] = 0x01;                        /* other */
	r.f[0x09] = r.f[0x0a] = r.f[0x0b] = 0x03;  /* boot-up, power, thermal: safe */
	r.f[0x0c] = 0x02;                        /* security: unknown */
	smbios_emit(b, &r);
}

/* Type 4, one per socket: each vCPU is a socket of one core and one thread. */
static void smbios_type4(struct smbios_builder *b, unsigned i)
{
	struct smbios_rec r;
	char name[16];
	snprintf(name, sizeof(name), "CPU %u", i);
	smbios_rec_init(b, &r, 4, 0x2a);
	smbios_rec_str(&r, 0x04, name);
	r.f[0x05] = 0x03;                        /* central processor */
	r.f[0x06] = 0x01;                        /* family: other */
	smbios_rec_str(&r, 0x07, SMBIOS_VENDOR);
	smbios_put(&r.f[0x14], 2, 2000);         /* max and current speed, MHz (as QEMU) */
	smbios_put(&r.f[0x16], 2, 2000);
	r.f[0x18] = 0x41;                        /* socket populated, CPU enabled */
	r.f[0x19] = 0x01;                        /* upgrade: other */
	smbios_put(&r.f[0x1a], 2, 0xffff);       /* no cache structures */
	smbios_put(&r.f[0x1c], 2, 0xffff);
	smbios_put(&r.f[0x1e], 2, 0xffff);
	r.f[0x23] = r.f[0x24] = r.f[0x25] = 1;   /* cores, enabled cores, threads */
	smbios_put(&r.f[0x26], 2, 0x04);         /* 64-bit capable */
	smbios_put(&r.f[0x28], 2, 0x01);
	smbios_emit(b, &r);
}

/* Type 17, one DIMM of `size` bytes: MiB in 15 bits, else 0x7fff and the extended size. */
static void smbios_type17(struct smbios_builder *b, uint16_t array, unsigned i, uint64_t size)
{
	struct smbios_rec r;
	char name[16];
	uint64_t mib = (size + (1ULL << 20) - 1) >> 20;
	snprintf(name, sizeof(name), "DIMM %u", i);
	smbios_rec_init(b, &r, 17, 0x28);
	smbios_put(&r.f[0x04], 2, array);
	smbios_put(&r.f[0x06], 2, 0xfffe);       /* no error information */
	smbios_put(&r.f[0x08], 2, 64);           /* total and data width, bits */
	smbios_put(&r.f[0x0a], 2, 64);
	if (mib < 0x7fff) {
		smbios_put(&r.f[0x0c], 2, mib);
	} else {
		smbios_put(&r.f[0x0c], 2, 0x7fff);
		smbios_put(&r.f[0x1c], 4, mib);
	}
	r.f[0x0e] = 0x09;                        /* DIMM */
	smbios_rec_str(&r, 0x10, name);
	r.f[0x12] = 0x07;                        /* RAM */
	smbios_put(&r.f[0x13], 2, 0x02);         /* type detail: other */
	smbios_rec_str(&r, 0x17, SMBIOS_VENDOR);
	smbios_emit(b, &r);
}

/* Type 19, one mapped range: KiB in 32 bits below 4 TiB, else the extended byte fields. */
static void smbios_type19(struct smbios_builder *b, uint16_t array, uint64_t start, uint64_t size)
{
	struct smbios_rec r;
	uint64_t end = start + size - 1;
	smbios_rec_init(b, &r, 19, 0x1f);
	if ((end >> 10) < 0xffffffffULL) {
		smbios_put(&r.f[0x04], 4, start >> 10);
		smbios_put(&r.f[0x08], 4, end >> 10);
	} else {
		smbios_put(&r.f[0x04], 4, 0xffffffff);
		smbios_put(&r.f[0x08], 4, 0xffffffff);
		smbios_put(&r.f[0x0f], 8, start);
		smbios_put(&r.f[0x17], 8, end);
	}
	smbios_put(&r.f[0x0c], 2, array);
	r.f[0x0e] = 1;                           /* partition width: one device per row */
	smbios_emit(b, &r);
}

/* Types 16, 17 and 19: one array of all RAM, its DIMMs and the ranges it is mapped at. */
static void smbios_memory(struct smbios_builder *b, const struct smbios_machine *m)
{
	uint64_t ram = m->ram_below_4g + m->ram_above_4g;
	uint64_t dimm = SMBIOS_DIMM_SIZE;
	if ((ram + dimm - 1) / dimm > SMBIOS_MAX_DIMMS)
		dimm = ((ram + SMBIOS_MAX_DIMMS - 1) / SMBIOS_MAX_DIMMS + (1ULL << 20) - 1) &
		       ~((1ULL << 20) - 1);
	unsigned ndimms = (unsigned)((ram + dimm - 1) / dimm);
	uint64_t kib = (ram + 1023) >> 10;

	struct smbios_rec r;
	uint16_t array = smbios_rec_init(b, &r, 16, 0x17);
	r.f[0x04] = 0x01;                        /* location: other */
	r.f[0x05] = 0x03;                        /* system memory */
	r.f[0x06] = 0x06;                        /* multi-bit ECC, as QEMU says */
	if (kib < 0x80000000ULL) {
		smbios_put(&r.f[0x07], 4, kib);
	} else {
		smbios_put(&r.f[0x07], 4, 0x80000000);
		smbios_put(&r.f[0x0f], 8, ram);
	}
	smbios_put(&r.f[0x0b], 2, 0xfffe);
	smbios_put(&r.f[0x0d], 2, ndimms);
	smbios_emit(b, &r);

	for (unsigned i = 0; i < ndimms; i++)
		smbios_type17(b, array, i, i + 1 < ndimms ? dimm : ram - (uint64_t)i * dimm);
	if (m->ram_below_4g)
		smbios_type19(b, array, 0, m->ram_below_4g);
	if (m->ram_above_4g)
		smbios_type19(b, array, GIB4, m->ram_above_4g);
}

static void smbios_type32_127(struct smbios_builder *b)
{
	struct smbios_rec r;
	smbios_rec_init(b, &r, 32, 0x0b);        /* boot status 0: no errors */
	smbios_emit(b, &r);
	smbios_rec_init(b, &r, 127, 0x04);
	smbios_emit(b, &r);
}

static uint8_t smbios_checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

void smbios_set_table_address(uint8_t *ep, uint32_t addr)
{
	smbios_put(&ep[SMBIOS_EP_TABLE_ADDR], 4, addr);
	ep[SMBIOS_EP_DMI_CHECKSUM] = 0;
	ep[SMBIOS_EP_DMI_CHECKSUM] = smbios_checksum(&ep[SMBIOS_EP_DMI],
						     SMBIOS_ANCHOR_SIZE - SMBIOS_EP_DMI);
	ep[SMBIOS_EP_CHECKSUM] = 0;
	ep[SMBIOS_EP_CHECKSUM] = smbios_checksum(ep, SMBIOS_ANCHOR_SIZE);
}

int smbios_build(const struct smbios_machine *m, struct smbios_tables *t)
{
	memset(t, 0, sizeof(*t));
	uint64_t ram = m->ram_below_4g + m->ram_above_4g;
	if (m->ncpus == 0 || m->ncpus > SMBIOS_MAX_CPUS || ram == 0 || ram < m->ram_below_4g ||
	    m->ram_below_4g > GIB4 || m->ram_above_4g > UINT64_MAX - GIB4)
		return -EINVAL;
	struct smbios_builder b = { 0 };
	smbios_type0(&b, m);
	smbios_type1(&b, m);
	smbios_type3(&b);
	for (unsigned i = 0; i < m->ncpus; i++)
		smbios_type4(&b, i);
	smbios_memory(&b, m);
	smbios_type32_127(&b);
	if (b.err) {
		free(b.p);
		return b.err;
	}
	uint8_t *ep = t->anchor;
	memcpy(ep, "_SM_", 4);
	ep[SMBIOS_EP_LENGTH] = SMBIOS_ANCHOR_SIZE;
	ep[0x06] = SMBIOS_MAJOR;
	ep[0x07] = SMBIOS_MINOR;
	smbios_put(&ep[SMBIOS_EP_MAX_STRUCT], 2, b.max_struct);
	memcpy(&ep[SMBIOS_EP_DMI], "_DMI_", 5);
	smbios_put(&ep[SMBIOS_EP_TABLE_LEN], 2, b.len);
	smbios_put(&ep[SMBIOS_EP_COUNT], 2, b.count);
	ep[0x1e] = SMBIOS_MAJOR << 4 | SMBIOS_MINOR;  /* BCD revision */
	smbios_set_table_address(ep, 0);
	t->table = b.p;
	t->len = b.len;
	return 0;
}

void smbios_free(struct smbios_tables *t)
{
	free(t->table);
	t->table = NULL;
	t->len = 0;
}

int smbios_add_fw_cfg(struct fw_cfg *fw, const struct smbios_machine *m)
{
	struct smbios_tables t;
	int r = smbios_build(m, &t);
	if (r < 0)
		return r;
	r = fw_cfg_add_file(fw, "etc/smbios/smbios-tables", t.table, t.len);
	if (r == 0)
		r = fw_cfg_add_file(fw, "etc/smbios/smbios-anchor", t.anchor, sizeof(t.anchor));
	smbios_free(&t);
	return r;
}

static int smbios_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int smbios_parse_uuid(const char *s, uint8_t uuid[16])
{
	if (strlen(s) != SMBIOS_UUID_STRLEN)
		return -EINVAL;
	unsigned n = 0;
	for (int i = 0; i < SMBIOS_UUID_STRLEN; i += 2) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
		}
		int hi = smbios_hex(s[i]), lo = smbios_hex(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		uuid[n++] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
