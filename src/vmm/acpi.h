/* Minimal ACPI tables for a hardware-reduced PC: RSDP, XSDT, FADT, an empty
 * DSDT, and a MADT listing the vCPUs' local APICs and the IOAPIC. */
#ifndef FERRY_ACPI_H
#define FERRY_ACPI_H

#include <stddef.h>
#include <stdint.h>

/* Builds the tables into buf, to be placed at guest address base (the RSDP
 * comes first, at base). Returns the bytes used, or 0 if buf is too small. */
size_t acpi_build(uint8_t *buf, size_t len, uint64_t base, unsigned nr_cpus);

/* Sum of bytes mod 256; a valid table sums to 0. */
uint8_t acpi_checksum(const void *p, size_t len);

#endif
