/* printf-style formatting into a callback. No hardware access: the console
 * and the string versions are thin layers over kvformat(). */
#include <stdbool.h>
#include <stdint.h>
#include "kprintf.h"
#include "kstring.h"

struct spec {
	bool left, zero, alt;
	int width;       /* 0: none */
	int precision;   /* -1: none */
};

static void pad(format_put_fn put, void *ctx, char c, int n)
{
	char buf[16];

	memset(buf, c, sizeof(buf));
	for (; n > 0; n -= (int)sizeof(buf))
		put(ctx, buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf));
}

/* Emits prefix (sign or "0x") and body, padded to the field width. */
static int emit(format_put_fn put, void *ctx, const struct spec *sp,
		const char *prefix, const char *body, int len)
{
	int plen = (int)strlen(prefix), zeros = 0, fill;

	if (sp->precision > len)
		zeros = sp->precision - len;
	fill = sp->width > plen + zeros + len ? sp->width - (plen + zeros + len) : 0;
	if (sp->zero && !sp->left && sp->precision < 0) {
		zeros += fill;
		fill = 0;
	}
	if (!sp->left)
		pad(put, ctx, ' ', fill);
	put(ctx, prefix, plen);
	pad(put, ctx, '0', zeros);
	put(ctx, body, len);
	if (sp->left)
		pad(put, ctx, ' ', fill);
	return plen + zeros + len + fill;
}

static int format_uint(format_put_fn put, void *ctx, struct spec *sp, uint64_t v,
		       unsigned base, bool upper, const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char buf[24];
	int i = sizeof(buf);

	do {
		buf[--i] = digits[v % base];
		v /= base;
	} while (v);
	if (sp->precision == 0 && i == (int)sizeof(buf) - 1 && buf[i] == '0')
		i++;  /* C: zero with precision 0 prints no digits */
	return emit(put, ctx, sp, prefix, buf + i, (int)sizeof(buf) - i);
}

static int parse_int(const char **fmt, va_list *ap)
{
	int v = 0;

	if (**fmt == '*') {
		(*fmt)++;
		return va_arg(*ap, int);
	}
	while (**fmt >= '0' && **fmt <= '9')
		v = v * 10 + *(*fmt)++ - '0';
	return v;
}

int kvformat(format_put_fn put, void *ctx, const char *fmt, va_list ap_in)
{
	va_list ap;
	int total = 0;

	va_copy(ap, ap_in);
	while (*fmt) {
		const char *start = fmt;
		struct spec sp = { .precision = -1 };
		int length = 0;  /* 0 int, 1 long, 2 long long, -1 short, -2 char */
		uint64_t u;
		int64_t s;

		while (*fmt && *fmt != '%')
			fmt++;
		if (fmt != start) {
			put(ctx, start, fmt - start);
			total += fmt - start;
		}
		if (!*fmt)
			break;
		start = fmt++;

		for (;; fmt++) {
			if (*fmt == '-')
				sp.left = true;
			else if (*fmt == '0')
				sp.zero = true;
			else if (*fmt == '#')
				sp.alt = true;
			else
				break;
		}
		sp.width = parse_int(&fmt, &ap);
		if (sp.width < 0) {
			sp.left = true;
			sp.width = -sp.width;
		}
		if (*fmt == '.') {
			fmt++;
			sp.precision = parse_int(&fmt, &ap);
			if (sp.precision < 0)
				sp.precision = -1;
		}
		for (;; fmt++) {
			if (*fmt == 'l')
				length = length == 1 ? 2 : 1;
			else if (*fmt == 'z')
				length = 1;
			else if (*fmt == 'h')
				length = length == -1 ? -2 : -1;
			else
				break;
		}

		switch (*fmt) {
		case 'd':
		case 'i':
			s = length >= 1 ? va_arg(ap, long) : va_arg(ap, int);
			if (length == -1)
				s = (short)s;
			else if (length == -2)
				s = (signed char)s;
			u = s < 0 ? -(uint64_t)s : (uint64_t)s;
			total += format_uint(put, ctx, &sp, u, 10, false, s < 0 ? "-" : "");
			break;
		case 'u':
		case 'x':
		case 'X':
			u = length >= 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			if (length == -1)
				u = (unsigned short)u;
			else if (length == -2)
				u = (unsigned char)u;
			total += format_uint(put, ctx, &sp, u, *fmt == 'u' ? 10 : 16, *fmt == 'X',
					     !sp.alt || !u || *fmt == 'u' ? "" : *fmt == 'x' ? "0x" : "0X");
			break;
		case 'p':
			u = (uintptr_t)va_arg(ap, void *);
			total += format_uint(put, ctx, &sp, u, 16, false, "0x");
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			int len = sp.precision >= 0 ? (int)strnlen(str, sp.precision) : (int)strlen(str);
			sp.precision = -1;
			sp.zero = false;
			total += emit(put, ctx, &sp, "", str, len);
			break;
		}
		case 'c': {
			char c = (char)va_arg(ap, int);
			sp.precision = -1;
			sp.zero = false;
			total += emit(put, ctx, &sp, "", &c, 1);
			break;
		}
		case '%':
			put(ctx, "%", 1);
			total++;
			break;
		default:  /* unknown conversion: print it as written */
			if (!*fmt)
				fmt--;
			put(ctx, start, fmt + 1 - start);
			total += fmt + 1 - start;
			break;
		}
		fmt++;
	}
	va_end(ap);
	return total;
}

struct sbuf {
	char *buf;
	size_t size, len;
};

static void sbuf_put(void *ctx, const char *s, size_t n)
{
	struct sbuf *b = ctx;

	for (size_t i = 0; i < n; i++, b->len++) {
		if (b->len + 1 < b->size)
			b->buf[b->len] = s[i];
	}
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sbuf b = { buf, size, 0 };
	int n = kvformat(sbuf_put, &b, fmt, ap);

	if (size)
		buf[b.len < size ? b.len : size - 1] = 0;
	return n;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}
