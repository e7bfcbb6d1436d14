/* memcpy and memset with x86 string instructions. On the host this project
 * targets, guest kernel code runs in KVM's instruction emulator at roughly a
 * microsecond per instruction, while one iteration of "rep movsq/stosq" costs
 * about a quarter of that and moves eight bytes: ~30 times faster than a loop.
 * Everything else in lib/string.c stays portable C. */
#include "kstring.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	if ((((uintptr_t)dst | (uintptr_t)src) & 7) == 0) {
		size_t words = n / 8;
		asm volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(words) :: "memory");
		n &= 7;
	}
	asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) :: "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	if (((uintptr_t)dst & 7) == 0) {
		size_t words = n / 8;
		uint64_t v = 0x0101010101010101ull * (unsigned char)c;
		asm volatile("rep stosq" : "+D"(d), "+c"(words) : "a"(v) : "memory");
		n &= 7;
	}
	asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}
