/* The AML emitter: encodings of names, integers, PkgLengths and resource descriptors. */
#include "arch/x86/aml.h"

#include <errno.h>
#include <string.h>

enum {
	AML_ZERO_OP = 0x00,
	AML_ONE_OP = 0x01,
	AML_NAME_OP = 0x08,
	AML_BYTE_PREFIX = 0x0a,
	AML_WORD_PREFIX = 0x0b,
	AML_DWORD_PREFIX = 0x0c,
	AML_STRING_PREFIX = 0x0d,
	AML_QWORD_PREFIX = 0x0e,
	AML_SCOPE_OP = 0x10,
	AML_BUFFER_OP = 0x11,
	AML_PACKAGE_OP = 0x12,
	AML_METHOD_OP = 0x14,
	AML_DUAL_NAME_PREFIX = 0x2e,
	AML_MULTI_NAME_PREFIX = 0x2f,
	AML_EXT_OP_PREFIX = 0x5b,
	AML_DEVICE_OP = 0x82, /* after AML_EXT_OP_PREFIX */
	AML_ROOT_CHAR = '\\',
	AML_PARENT_PREFIX = '^',
	AML_RETURN_OP = 0xa4,
};

void aml_bytes(struct aml *a, const void *data, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->buf + a->len, data, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, int nbytes)
{
	for (int i = 0; i < nbytes; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

static void aml_pkg_open(struct aml *a)
{
	static const uint8_t reserve[4];
	if (a->depth == AML_MAX_DEPTH) {
		a->err = a->err ? a->err : -EINVAL; /* nesting this deep is a bug in the caller */
		return;
	}
	a->open[a->depth++] = a->len;
	aml_bytes(a, reserve, sizeof(reserve));
}

/* Closes the innermost object opened by an aml_*_begin. */
void aml_end(struct aml *a)
{
	if (a->depth == 0) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	size_t start = a->open[--a->depth];
	if (a->err)
		return;
	size_t body = a->len - (start + 4);
	/* PkgLength counts itself: 1 byte up to 63, then 2/3/4 bytes holding 12/20/28 bits. */
	size_t n, total = 0;
	for (n = 1; n <= 4; n++) {
		total = body + n;
		if (n == 1 ? total <= 0x3f : total < (1ULL << (4 + 8 * (n - 1))))
			break;
	}
	if (n > 4) {
		a->err = -ENOSPC;
		return;
	}
	uint8_t enc[4];
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (size_t i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(a->buf + start + n, a->buf + start + 4, body);
	memcpy(a->buf + start, enc, n);
	a->len -= 4 - n;
}

static bool aml_name_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* A NameString from ASL-like text: "\\_SB_.COM1", "^FOO", "_HID"; segments shorter than four
 * characters are padded with '_' as iasl does ("_SB" -> "_SB_"). */
void aml_namestring(struct aml *a, const char *path)
{
	if (*path == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		path++;
	} else {
		while (*path == AML_PARENT_PREFIX) {
			aml_byte(a, AML_PARENT_PREFIX);
			path++;
		}
	}
	if (!*path) {
		aml_byte(a, 0x00); /* NullName: the root itself */
		return;
	}
	size_t nseg = 1;
	for (const char *p = path; *p; p++)
		nseg += *p == '.';
	if (nseg > 255) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nseg);
	}
	while (*path) {
		char seg[4] = {'_', '_', '_', '_'};
		size_t n = 0;
		for (; *path && *path != '.'; path++, n++) {
			if (n == 4 || !aml_name_char(*path, n == 0)) {
				a->err = a->err ? a->err : -EINVAL;
				return;
			}
			seg[n] = *path;
		}
		if (n == 0) {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		aml_bytes(a, seg, 4);
		if (*path == '.')
			path++;
	}
}

/* The shortest encoding of an integer constant. */
void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

static int aml_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* EisaId("PNP0501"): three letters of 5 bits and four hex digits, stored big-endian in a DWord. */
static void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;
	if (strlen(id) != 7) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		v |= (uint32_t)(id[i] - '@') << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		int d = aml_hex_digit(id[i]);
		if (d < 0) {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
		v |= (uint32_t)d << (4 * (6 - i));
	}
	aml_byte(a, AML_DWORD_PREFIX);
	uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	aml_bytes(a, be, 4);
}

/* Name(path, ...): the caller emits the value object next. */
void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

void aml_name_integer(struct aml *a, const char *path, uint64_t v)
{
	aml_name(a, path);
	aml_integer(a, v);
}

void aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name(a, path);
	aml_eisaid(a, id);
}

void aml_string(struct aml *a, const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p < 0x20 || *p > 0x7e) {
			a->err = a->err ? a->err : -EINVAL;
			return;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1); /* NUL-terminated */
}

void aml_name_string(struct aml *a, const char *path, const char *s)
{
	aml_name(a, path);
	aml_string(a, s);
}

void aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
}

void aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
}

void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	aml_byte(a, AML_METHOD_OP);
	aml_pkg_open(a);
	aml_namestring(a, path);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
}

/* Package(n) { ... }: the caller emits n data objects, then aml_end. */
void aml_package_begin(struct aml *a, uint8_t nelems)
{
	aml_byte(a, AML_PACKAGE_OP);
	aml_pkg_open(a);
	aml_byte(a, nelems);
}

void aml_return_integer(struct aml *a, uint64_t v)
{
	aml_byte(a, AML_RETURN_OP);
	aml_integer(a, v);
}

/* ResourceTemplate() { ... }: a Buffer whose size covers the descriptors and the end tag. Three
 * bytes are reserved for the size and shrunk on close to the encoding iasl would choose, so the
 * AML matches what iasl compiles from the same ASL byte for byte. Only one may be open at a time. */
void aml_res_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER_OP);
	aml_pkg_open(a);
	a->res_size_at = a->len;
	aml_le(a, 0, 3);
}

/* IO(Decode16, min, max, align, len) */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	const uint8_t d[8] = {0x47, 0x01, (uint8_t)min, (uint8_t)(min >> 8),
	                      (uint8_t)max, (uint8_t)(max >> 8), align, len};
	aml_bytes(a, d, sizeof(d));
}

/* IRQNoFlags() {irq}: edge-triggered, active-high, exclusive, as ISA interrupts are. */
void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	const uint8_t d[3] = {0x22, (uint8_t)(1u << irq), (uint8_t)((1u << irq) >> 8)};
	aml_bytes(a, d, sizeof(d));
}

/* Address space descriptor general flags: bit 0 set = consumer (clear: producer), bit 1
 * subtractive decode, bit 2 MinFixed, bit 3 MaxFixed. */
#define AML_ADDR_PRODUCER_FIXED 0x0c
enum { AML_ADDR_MEMORY = 0, AML_ADDR_IO = 1, AML_ADDR_BUS_NUMBER = 2 };

/* Word Address Space Descriptor (large item 0x08): 13 bytes after the 3-byte header. */
static void aml_res_word_addr(struct aml *a, uint8_t type, uint8_t type_flags, uint16_t min,
			      uint16_t max)
{
	if (min > max) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	const uint8_t hdr[6] = {0x88, 13, 0, type, AML_ADDR_PRODUCER_FIXED, type_flags};
	aml_bytes(a, hdr, sizeof(hdr));
	aml_le(a, 0, 2);             /* granularity */
	aml_le(a, min, 2);
	aml_le(a, max, 2);
	aml_le(a, 0, 2);             /* translation offset */
	aml_le(a, (uint32_t)max - min + 1, 2); /* 0x10000 for the whole range would not fit */
}

void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max)
{
	aml_res_word_addr(a, AML_ADDR_BUS_NUMBER, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	if (min == 0 && max == 0xffff) {
		a->err = a->err ? a->err : -EINVAL; /* length 0x10000 does not fit the word */
		return;
	}
	aml_res_word_addr(a, AML_ADDR_IO, 0x03 /* EntireRange */, min, max);
}

/* DWord Address Space Descriptor (large item 0x07): 23 bytes after the 3-byte header. */
void aml_res_dword_memory(struct aml *a, uint32_t min, uint32_t max)
{
	if (min > max || (min == 0 && max == 0xffffffffu)) {
		a->err = a->err ? a->err : -EINVAL;
		return;
	}
	/* type-specific flags: bit 0 ReadWrite, bits 2:1 caching 0 = NonCacheable */
	const uint8_t hdr[6] = {0x87, 23, 0, AML_ADDR_MEMORY, AML_ADDR_PRODUCER_FIXED, 0x01};
	aml_bytes(a, hdr, sizeof(hdr));
	aml_le(a, 0, 4);             /* granularity */
	aml_le(a, min, 4);
	aml_le(a, max, 4);
	aml_le(a, 0, 4);             /* translation offset */
	aml_le(a, max - min + 1, 4);
}

/* 32-bit Fixed Memory Range Descriptor (large item 0x06) */
void aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	const uint8_t hdr[4] = {0x86, 9, 0, 0x01 /* ReadWrite */};
	aml_bytes(a, hdr, sizeof(hdr));
	aml_le(a, base, 4);
	aml_le(a, len, 4);
}

/* Extended Interrupt Descriptor (large item 0x09) with one interrupt and no resource source:
 * flags bit 0 consumer, bit 1 edge (clear: level), bit 2 active-low, bit 3 shared. */
void aml_res_interrupt(struct aml *a, bool level, bool active_low, bool shared, uint32_t gsi)
{
	const uint8_t hdr[5] = {0x89, 6, 0,
	                        (uint8_t)(0x01 | (level ? 0 : 0x02) | (active_low ? 0x04 : 0) |
	                                  (shared ? 0x08 : 0)),
	                        1 /* interrupt count */};
	aml_bytes(a, hdr, sizeof(hdr));
	aml_le(a, gsi, 4);
}

void aml_res_end(struct aml *a)
{
	/* End tag; a zero checksum means "treat as valid", which is what iasl emits too. */
	static const uint8_t end_tag[2] = {0x79, 0x00};
	aml_bytes(a, end_tag, sizeof(end_tag));
	if (!a->err) {
		size_t at = a->res_size_at, size = a->len - (at + 3);
		if (size > 0xffff) {
			a->err = -ENOSPC;
		} else if (size > 0xff) {
			const uint8_t enc[3] = {AML_WORD_PREFIX, (uint8_t)size, (uint8_t)(size >> 8)};
			memcpy(a->buf + at, enc, 3);
		} else {
			/* never 0 or 1 (ZeroOp/OneOp): the end tag alone is 2 bytes */
			memmove(a->buf + at + 2, a->buf + at + 3, size);
			a->buf[at] = AML_BYTE_PREFIX;
			a->buf[at + 1] = (uint8_t)size;
			a->len--;
		}
	}
	aml_end(a);
}

