/* Checksums (lib/checksum.c). */
#ifndef GUEST_CHECKSUM_H
#define GUEST_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Sum of all bytes modulo 256: 0 for a valid ACPI table. */
uint8_t checksum8(const void *data, size_t len);

/* Internet checksum (RFC 1071): the ones' complement of the ones' complement
 * sum of 16-bit big-endian words, returned in host order. */
uint16_t checksum_inet(const void *data, size_t len);

#endif
