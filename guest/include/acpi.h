/* ACPI tables: RSDP, RSDT/XSDT and the MADT (kernel/acpi.c). */
#ifndef GUEST_ACPI_H
#define GUEST_ACPI_H

#include <stdbool.h>
#include <stdint.h>
#include "smp.h"

#define ACPI_MAX_IOAPICS 8
#define ACPI_MAX_ISOS    16
#define ACPI_MAX_TABLES  32

struct acpi_sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	uint32_t creator_id;
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_info {
	uint64_t rsdp;                   /* 0: no ACPI found */
	bool have_madt;
	uint64_t lapic_base;             /* MADT's LAPIC address */
	unsigned ncpus;                  /* enabled processors */
	uint32_t cpu_apic_id[MAX_CPUS];
	unsigned nioapics;
	struct { uint8_t id; uint32_t addr, gsi_base; } ioapic[ACPI_MAX_IOAPICS];
	unsigned nisos;                  /* interrupt source overrides */
	struct { uint8_t irq; uint32_t gsi; uint16_t flags; } iso[ACPI_MAX_ISOS];
	unsigned ntables;                /* every table found; checksums verified on use */
	struct { char sig[5]; uint64_t addr; uint32_t len; } table[ACPI_MAX_TABLES];
};
extern struct acpi_info acpi;

/* Finds the RSDP (start_info's, else a scan of 0xe0000-0xfffff), walks the
 * XSDT or RSDT and parses the MADT. Returns 0, or -1 if no ACPI was found. */
int acpi_init(uint64_t rsdp_hint);
/* A table by signature, checksum verified; NULL if absent. */
const struct acpi_sdt_header *acpi_find_table(const char *sig);

#endif
