/* ACPI tables for a hardware-reduced PC: RSDP, XSDT, FADT (with sleep
 * registers for power-off), a DSDT describing the PCI host bridge, COM1, the
 * debug-exit port and reserved motherboard resources, a MADT listing the
 * vCPUs' local APICs and the IOAPIC, and an MCFG for ECAM. */
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
