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

/* The same in pieces (a pseudo-header, then a message): adds the
 * ones' complement sum of data's big-endian 16-bit words to sum. Every
 * piece but the last must have an even length. csum_fold() ends it: the
 * checksum to store, in host order; a message that carries a valid
 * checksum folds to 0. */
uint32_t csum_partial(const void *data, size_t len, uint32_t sum);
uint16_t csum_fold(uint32_t sum);

#endif
