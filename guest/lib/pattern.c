#include "pattern.h"

#include "kstring.h"

void pattern_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	uint8_t *p = buf;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		__builtin_memcpy(p + i, &x, 8); /* inlined: -ffreestanding makes memcpy a call */
	}
	for (; i < len; i++)
		p[i] = (uint8_t)(x >> (8 * (i % 8)));
}

uint64_t checksum64(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t a = 1, b = 0, w;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		__builtin_memcpy(&w, p + i, 8);
		a += w;
		b += a;
	}
	for (; i < len; i++) {
		a += p[i];
		b += a;
	}
	return a ^ (b << 1) ^ len;
}
