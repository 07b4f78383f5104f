/* A small AML (ACPI Machine Language) emitter for the DSDT: names, integers, strings, scopes,
 * devices, methods, packages and resource templates (I/O, IRQ, extended interrupts, bridge
 * windows, fixed memory), written the way the ASL they stand for reads. */
#ifndef KVMKIT_ARCH_X86_AML_H
#define KVMKIT_ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes into a fixed buffer; the first error sticks and later calls do nothing, so building
 * code reads like the ASL it stands for and checks once at the end. Objects with a PkgLength
 * (Scope, Device, Method, Package, Buffer) are opened with aml_*_begin and closed with aml_end:
 * 4 bytes are reserved for the PkgLength, and on close the body is moved down if the actual
 * length encodes in fewer bytes. */

#define AML_MAX_DEPTH 16

/* Set buf and cap, zero the rest; check err (and depth == 0) once at the end. */
struct aml {
	uint8_t *buf;
	size_t len, cap;
	size_t open[AML_MAX_DEPTH]; /* offsets of the reserved PkgLength of each open object */
	int depth;
	size_t res_size_at;         /* offset of the 3 bytes reserved for the open template's size */
	int err;
};

/* Raw bytes and single bytes of AML, for encodings without a helper. */
void aml_bytes(struct aml *a, const void *data, size_t n);
void aml_byte(struct aml *a, uint8_t b);
/* Closes the innermost object opened by an aml_*_begin. */
void aml_end(struct aml *a);
/* A NameString from ASL-like text: "\\_SB_.COM1", "^FOO", "_HID"; segments shorter than four
 * characters are padded with '_' as iasl does ("_SB" -> "_SB_"). */
void aml_namestring(struct aml *a, const char *path);
/* The shortest encoding of an integer constant. */
void aml_integer(struct aml *a, uint64_t v);
/* Name(path, ...): the caller emits the value object next. */
void aml_name(struct aml *a, const char *path);
void aml_name_integer(struct aml *a, const char *path, uint64_t v);
void aml_name_eisaid(struct aml *a, const char *path, const char *id);
/* A String object: printable ASCII only (an ACPI ID such as "LNRO0005", a description). */
void aml_string(struct aml *a, const char *s);
void aml_name_string(struct aml *a, const char *path, const char *s);
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
/* Package(n) { ... }: the caller emits n data objects, then aml_end. */
void aml_package_begin(struct aml *a, uint8_t nelems);
void aml_return_integer(struct aml *a, uint64_t v);
/* ResourceTemplate() { ... }: a Buffer whose size covers the descriptors and the end tag. Three
 * bytes are reserved for the size and shrunk on close to the encoding iasl would choose, so the
 * AML matches what iasl compiles from the same ASL byte for byte. Only one may be open at a time. */
void aml_res_begin(struct aml *a);
/* IO(Decode16, min, max, align, len) */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
/* IRQNoFlags() {irq}: edge-triggered, active-high, exclusive, as ISA interrupts are. */
void aml_res_irq_noflags(struct aml *a, unsigned irq);
/* Address space descriptors for a bridge's windows, each ResourceProducer, PosDecode, MinFixed,
 * MaxFixed, granularity and translation 0, length max - min + 1 (min <= max):
 *   WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, len)
 *   WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, len)
 *   DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
 *               0, min, max, 0, len) */
void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_memory(struct aml *a, uint32_t min, uint32_t max);
/* Memory32Fixed(ReadWrite, base, len) */
void aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len);
/* Interrupt(ResourceConsumer, Level|Edge, ActiveHigh|ActiveLow, Exclusive|Shared) {gsi}: the
 * extended interrupt descriptor, for GSIs an IRQ() descriptor cannot name (above 15). */
void aml_res_interrupt(struct aml *a, bool level, bool active_low, bool shared, uint32_t gsi);
void aml_res_end(struct aml *a);

#endif
