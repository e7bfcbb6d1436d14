#include "vmm/aml.h"

#include <stdlib.h>
#include <string.h>

/* Opcodes and prefixes (ACPI 6.x, section 20). */
enum {
	AML_ZERO = 0x00,
	AML_ONE = 0x01,
	AML_NAME = 0x08,
	AML_BYTE_PREFIX = 0x0a,
	AML_WORD_PREFIX = 0x0b,
	AML_DWORD_PREFIX = 0x0c,
	AML_STRING_PREFIX = 0x0d,
	AML_QWORD_PREFIX = 0x0e,
	AML_SCOPE = 0x10,
	AML_BUFFER = 0x11,
	AML_PACKAGE = 0x12,
	AML_METHOD = 0x14,
	AML_DUAL_NAME = 0x2e,
	AML_MULTI_NAME = 0x2f,
	AML_EXT_PREFIX = 0x5b,
	AML_EXT_DEVICE = 0x82,
	AML_ROOT = 0x5c,
	AML_RETURN = 0xa4,
	AML_ONES = 0xff,
};

/* A PkgLength is reserved at its widest and shrunk when the object ends. */
#define PKGLEN_MAX 4

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

bool aml_ok(const struct aml *a)
{
	return !a->failed && a->depth == 0;
}

static bool reserve(struct aml *a, size_t more)
{
	if (a->failed)
		return false;
	if (more > SIZE_MAX / 2 - a->len) {
		a->failed = true;
		return false;
	}
	if (a->len + more <= a->cap)
		return true;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + more)
		cap *= 2;
	uint8_t *p = realloc(a->buf, cap);
	if (!p) {
		a->failed = true;
		return false;
	}
	a->buf = p;
	a->cap = cap;
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t len)
{
	if (!reserve(a, len))
		return;
	memcpy(a->buf + a->len, p, len);
	a->len += len;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void le(struct aml *a, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

static bool lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

void aml_name(struct aml *a, const char *path)
{
	char seg[16][4];
	unsigned n = 0;
	const char *p = path;
	if (*p == '\\') {
		aml_byte(a, AML_ROOT);
		p++;
	}
	while (*p) {
		size_t l = strcspn(p, ".");
		if (l == 0 || l > 4 || n == 16 || !lead_char(p[0])) {
			a->failed = true;
			return;
		}
		for (size_t i = 0; i < 4; i++) {
			char c = i < l ? p[i] : '_';
			if (!lead_char(c) && !(c >= '0' && c <= '9')) {
				a->failed = true;
				return;
			}
			seg[n][i] = c;
		}
		n++;
		p += l;
		if (*p == '.')
			p++;
	}
	if (n == 0) {
		aml_byte(a, AML_ZERO); /* NullName */
	} else if (n == 2) {
		aml_byte(a, AML_DUAL_NAME);
	} else if (n > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)n);
	}
	for (unsigned i = 0; i < n; i++)
		aml_bytes(a, seg[i], 4);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v == UINT64_MAX) {
		aml_byte(a, AML_ONES);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

void aml_eisaid(struct aml *a, const char *id)
{
	/* Three letters of five bits each, then four hex digits; stored so that
	 * the bytes read in that order. */
	if (strlen(id) != 7) {
		a->failed = true;
		return;
	}
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			a->failed = true;
			return;
		}
		v |= (uint32_t)(id[i] - 0x40) << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d;
		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else {
			a->failed = true;
			return;
		}
		v |= d << (4 * (6 - i));
	}
	aml_byte(a, AML_DWORD_PREFIX);
	le(a, __builtin_bswap32(v), 4);
}

void aml_name_decl(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME);
	aml_name(a, name);
}

static size_t pkg_begin(struct aml *a)
{
	size_t mark = a->len;
	static const uint8_t zero[PKGLEN_MAX];
	aml_bytes(a, zero, PKGLEN_MAX);
	a->depth++;
	return mark;
}

void aml_end(struct aml *a, size_t mark)
{
	if (a->failed)
		return;
	if (a->depth == 0 || mark + PKGLEN_MAX > a->len) {
		a->failed = true;
		return;
	}
	a->depth--;
	size_t body = a->len - mark - PKGLEN_MAX;
	unsigned n;
	if (body + 1 <= 0x3f)
		n = 1;
	else if (body + 2 <= 0xfff)
		n = 2;
	else if (body + 3 <= 0xfffff)
		n = 3;
	else if (body + 4 <= 0xfffffff)
		n = 4;
	else {
		a->failed = true;
		return;
	}
	size_t total = body + n;
	uint8_t *p = a->buf + mark;
	memmove(p + n, p + PKGLEN_MAX, body);
	a->len -= PKGLEN_MAX - n;
	if (n == 1) {
		p[0] = (uint8_t)total;
	} else {
		/* Byte 0: count of following bytes in bits 7-6, low nibble in 3-0. */
		p[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE);
	size_t mark = pkg_begin(a);
	aml_name(a, path);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *name)
{
	aml_byte(a, AML_EXT_PREFIX);
	aml_byte(a, AML_EXT_DEVICE);
	size_t mark = pkg_begin(a);
	aml_name(a, name);
	return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t count)
{
	aml_byte(a, AML_PACKAGE);
	size_t mark = pkg_begin(a);
	aml_byte(a, count);
	return mark;
}

size_t aml_method_return_begin(struct aml *a, const char *name, unsigned nargs)
{
	aml_byte(a, AML_METHOD);
	size_t mark = pkg_begin(a);
	aml_name(a, name);
	aml_byte(a, (uint8_t)(nargs & 7)); /* NotSerialized, SyncLevel 0 */
	aml_byte(a, AML_RETURN);
	return mark;
}

size_t aml_resource_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER);
	return pkg_begin(a);
}

void aml_resource_end(struct aml *a, size_t mark)
{
	static const uint8_t end_tag[2] = { 0x79, 0x00 }; /* checksum 0: "not computed" */
	aml_bytes(a, end_tag, sizeof(end_tag));
	if (a->failed || mark + PKGLEN_MAX > a->len) {
		a->failed = true;
		return;
	}
	/* The buffer's size comes before its bytes: insert it now they are known. */
	size_t data = a->len - mark - PKGLEN_MAX;
	struct aml size;
	aml_init(&size);
	aml_integer(&size, data);
	if (!aml_ok(&size) || !reserve(a, size.len)) {
		a->failed = true;
		aml_free(&size);
		return;
	}
	uint8_t *p = a->buf + mark + PKGLEN_MAX;
	memmove(p + size.len, p, data);
	memcpy(p, size.buf, size.len);
	a->len += size.len;
	aml_free(&size);
	aml_end(a, mark);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	aml_byte(a, 0x47); /* I/O port descriptor */
	aml_byte(a, 0x01); /* decodes 16 bits */
	le(a, base, 2);
	le(a, base, 2);
	aml_byte(a, 1);    /* alignment */
	aml_byte(a, len);
}

void aml_res_irq(struct aml *a, unsigned irq)
{
	aml_byte(a, 0x22); /* IRQ descriptor, 2 bytes: edge, active high */
	le(a, irq < 16 ? 1u << irq : 0, 2);
	if (irq >= 16)
		a->failed = true;
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	aml_byte(a, 0x86);
	le(a, 9, 2);
	aml_byte(a, 0x01); /* read-write */
	le(a, base, 4);
	le(a, len, 4);
}

/* General flags of an address-space descriptor: producer, positive decode,
 * minimum and maximum fixed. */
#define ADDR_PRODUCER_FIXED 0x0c

static void address_space(struct aml *a, uint8_t tag, unsigned width, uint8_t type, uint8_t type_flags,
			  uint64_t min, uint64_t max)
{
	aml_byte(a, tag);
	le(a, 3 + 5 * width, 2);
	aml_byte(a, type);
	aml_byte(a, ADDR_PRODUCER_FIXED);
	aml_byte(a, type_flags);
	le(a, 0, width);             /* granularity */
	le(a, min, width);
	le(a, max, width);
	le(a, 0, width);             /* translation offset */
	le(a, max - min + 1, width); /* length */
	if (max < min)
		a->failed = true;
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	address_space(a, 0x88, 2, 2, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	address_space(a, 0x88, 2, 1, 0x03 /* entire range */, min, max);
}

/* Memory type flags: read-write, non-cacheable or prefetchable. */
static uint8_t mem_flags(bool prefetch)
{
	return prefetch ? 0x07 : 0x01;
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool prefetch)
{
	address_space(a, 0x87, 4, 0, mem_flags(prefetch), min, max);
}

void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, bool prefetch)
{
	address_space(a, 0x8a, 8, 0, mem_flags(prefetch), min, max);
}
