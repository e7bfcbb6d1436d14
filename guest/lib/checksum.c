/* Checksums over byte buffers; no hardware access. */
#include "checksum.h"

uint8_t checksum8(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return sum;
}

/* Sums native (little-endian) 32-bit words into 64 bits and folds: the
 * ones' complement sum does not depend on byte order (RFC 1071, 2(B)), so
 * one byte swap at the end gives the big-endian sum. Eight bytes a step
 * rather than two: this runs over every UDP payload sent and received. */
uint32_t csum_partial(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;
	uint64_t acc = 0;
	uint64_t w8;
	uint32_t w4;
	uint16_t w2;

	for (; len >= 8; len -= 8, p += 8) {
		__builtin_memcpy(&w8, p, 8);  /* inlined: -ffreestanding makes memcpy a call */
		acc += (w8 & 0xffffffffu) + (w8 >> 32);
	}
	if (len >= 4) {
		__builtin_memcpy(&w4, p, 4);
		acc += w4;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		__builtin_memcpy(&w2, p, 2);
		acc += w2;
		p += 2;
		len -= 2;
	}
	if (len)
		acc += p[0];  /* the low byte of a little-endian word: the high one once swapped */
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return sum + (uint32_t)__builtin_bswap16((uint16_t)acc);
}

uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint16_t checksum_inet(const void *data, size_t len)
{
	return csum_fold(csum_partial(data, len, 0));
}
