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

uint16_t checksum_inet(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t sum = 0;

	for (; len >= 2; len -= 2, p += 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}
