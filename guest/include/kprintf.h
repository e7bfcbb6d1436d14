/* Formatted output. lib/printf.c formats (no hardware access); kernel/console.c
 * writes to the console. Conversions: %d %i %u %x %X %p %s %c %%, with flags
 * '-', '0' and '#', width and precision (digits or '*'), lengths hh h l ll z. */
#ifndef GUEST_KPRINTF_H
#define GUEST_KPRINTF_H

#include <stdarg.h>
#include <stddef.h>

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Calls put(ctx, s, n) for each piece of output; returns the total length. */
typedef void (*format_put_fn)(void *ctx, const char *s, size_t n);
int kvformat(format_put_fn put, void *ctx, const char *fmt, va_list ap);

/* Like C's snprintf: returns the length the full output would have. */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Console output (kernel/console.c); whole calls are not interleaved between CPUs. */
int kprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
int kvprintf(const char *fmt, va_list ap);

#endif
