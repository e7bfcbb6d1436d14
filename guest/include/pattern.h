/* Test data that proves itself (lib/pattern.c): a pattern derived from a
 * seed, and a 64-bit checksum to verify a buffer end to end. */
#ifndef GUEST_PATTERN_H
#define GUEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf with a xorshift sequence seeded by seed. */
void pattern_fill(void *buf, size_t len, uint64_t seed);
/* Fletcher-style 64-bit checksum over 8-byte words (and a byte tail). */
uint64_t checksum64(const void *buf, size_t len);

#endif
