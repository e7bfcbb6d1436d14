/* A small AML (ACPI Machine Language) writer: enough to describe devices in
 * a DSDT (scopes, devices, named objects, packages, resource templates).
 * No iasl at build time: ferry writes the bytes itself.
 *
 * Objects that contain others (Scope, Device, Package, Buffer) are opened
 * with *_begin, which returns a mark, and closed with aml_end(mark), which
 * writes their PkgLength once the contents are known. Allocation failures
 * are remembered and reported by aml_ok(), so builders need not check every
 * call. */
#ifndef FERRY_AML_H
#define FERRY_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool failed;      /* out of memory, a bad name, or unbalanced ends */
	unsigned depth;   /* open objects */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
/* True if every call so far succeeded and every object was closed. */
bool aml_ok(const struct aml *a);

void aml_bytes(struct aml *a, const void *p, size_t len);
void aml_byte(struct aml *a, uint8_t b);

/* NameString: "PCI0", "_SB", "\\_SB.PCI0"; segments shorter than four
 * characters are padded with '_'. */
void aml_name(struct aml *a, const char *path);
/* Integer data, in the shortest encoding (Zero, One, Ones, Byte..QWord). */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EISA ID ("PNP0A08") compressed into a DWord, as EisaId() does. */
void aml_eisaid(struct aml *a, const char *id);

/* Name(NAME, ...): the value follows (aml_integer, aml_string, a package...). */
void aml_name_decl(struct aml *a, const char *name);
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *name);
size_t aml_package_begin(struct aml *a, uint8_t count);
/* Method(NAME, nargs, NotSerialized) { Return (...) }: value follows. */
size_t aml_method_return_begin(struct aml *a, const char *name, unsigned nargs);
/* Buffer holding a resource template; end it with aml_resource_end. */
size_t aml_resource_begin(struct aml *a);
void aml_resource_end(struct aml *a, size_t mark);
void aml_end(struct aml *a, size_t mark);

/* Resource descriptors (inside aml_resource_begin/end). Address-space
 * descriptors are producers with fixed min and max, as a host bridge's. */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
void aml_res_irq(struct aml *a, unsigned irq);      /* IRQNoFlags: edge, active high */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len);
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool prefetch);
void aml_res_qword_mem(struct aml *a, uint64_t min, uint64_t max, bool prefetch);

#endif
