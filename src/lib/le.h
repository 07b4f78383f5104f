/* Little-endian byte-array access of 1 to 8 bytes: device registers arrive as such arrays. */
#ifndef KVMKIT_LIB_LE_H
#define KVMKIT_LIB_LE_H

#include <stdint.h>

/* Stores the low n bytes of v at p (n <= 8). */
static inline void le_put(uint8_t *p, unsigned n, uint64_t v)
{
	for (unsigned i = 0; i < n && i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads n bytes at p (n <= 8; more are ignored). */
static inline uint64_t le_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#endif
