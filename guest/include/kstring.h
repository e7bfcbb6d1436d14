/* String and memory functions (lib/string.c; memcpy and memset in
 * kernel/memops.c). The compiler also emits calls to memcpy, memmove, memset
 * and memcmp on its own, hence the standard names. */
#ifndef GUEST_KSTRING_H
#define GUEST_KSTRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
/* Copies at most size - 1 bytes and always terminates (if size > 0); returns strlen(src). */
size_t strlcpy(char *dst, const char *src, size_t size);

/* Parses an unsigned number: decimal, or hex with a 0x prefix. Returns false if
 * no digit was found or the value overflows; *end points past the digits. */
bool parse_u64(const char *s, const char **end, uint64_t *out);

#endif
