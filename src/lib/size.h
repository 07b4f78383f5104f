/* Parsing of human sizes ("512M", "2G", "4096") as users type them on the command line. */
#ifndef KVMKIT_LIB_SIZE_H
#define KVMKIT_LIB_SIZE_H

#include <stdint.h>

/* Parses a size with an optional K/M/G/T suffix (binary units, case-insensitive, optional
 * trailing "B" or "iB"). A bare number is taken in default_unit bytes (e.g. 1<<20 for MiB, as
 * QEMU's -m). Returns 0 and sets *out, or -EINVAL (syntax) / -ERANGE (overflow). */
int size_parse(const char *text, uint64_t default_unit, uint64_t *out);

#endif
