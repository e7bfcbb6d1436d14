/* ACPI discovery. Only what the kernel needs: the table directory (for lookups
 * and so the page allocator can keep its hands off the tables) and the MADT's
 * processors, I/O APICs and interrupt source overrides. Every table's checksum
 * is verified before use. */
#include "acpi.h"
#include "checksum.h"
#include "kernel.h"
#include "kstring.h"

struct acpi_info acpi;

struct rsdp {
	char signature[8];      /* "RSD PTR " */
	uint8_t checksum;       /* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;       /* 0: ACPI 1.0, RSDT only; 2+: XSDT */
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t extended_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

#define MADT_LAPIC          0
#define MADT_IOAPIC         1
#define MADT_ISO            2
#define MADT_LAPIC_OVERRIDE 5
#define MADT_X2APIC         9
#define MADT_ENABLED        1u

/* Tables are read through the boot identity map, which covers the first 4 GiB. */
static bool mapped(uint64_t addr, uint64_t len)
{
	return addr && addr + len <= 4 * GiB && addr + len > addr;
}

static const struct rsdp *rsdp_check(uint64_t addr)
{
	const struct rsdp *r = phys_to_virt(addr);

	if (!mapped(addr, sizeof(*r)) || memcmp(r->signature, "RSD PTR ", 8) || checksum8(r, 20))
		return NULL;
	if (r->revision >= 2 && (r->length < sizeof(*r) || checksum8(r, r->length)))
		return NULL;
	return r;
}

static const struct rsdp *rsdp_find(uint64_t hint)
{
	const struct rsdp *r;

	if (hint && (r = rsdp_check(hint)))
		return r;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		if ((r = rsdp_check(a)))
			return r;
	}
	return NULL;
}

static bool checksum_ok(const struct acpi_sdt_header *h)
{
	if (checksum8(h, h->length) == 0)
		return true;
	kprintf("acpi: %.4s at %p has a bad checksum, ignored\n", h->signature, (const void *)h);
	return false;
}

/* Records a table. Checksums are verified when a table is used, not here:
 * at emulated speed, summing a DSDT nobody reads costs tens of milliseconds. */
static const struct acpi_sdt_header *add_table(uint64_t addr)
{
	const struct acpi_sdt_header *h = phys_to_virt(addr);

	if (!mapped(addr, sizeof(*h)) || h->length < sizeof(*h) || h->length > 16 * MiB ||
	    !mapped(addr, h->length)) {
		kprintf("acpi: table at %#lx is out of reach, skipped\n", addr);
		return NULL;
	}
	if (acpi.ntables == ACPI_MAX_TABLES) {
		kprintf("acpi: more than %d tables, %.4s skipped\n", ACPI_MAX_TABLES, h->signature);
		return NULL;
	}
	memcpy(acpi.table[acpi.ntables].sig, h->signature, 4);
	acpi.table[acpi.ntables].addr = addr;
	acpi.table[acpi.ntables].len = h->length;
	acpi.ntables++;
	return h;
}

const struct acpi_sdt_header *acpi_find_table(const char *sig)
{
	for (unsigned i = 0; i < acpi.ntables; i++) {
		const struct acpi_sdt_header *h = phys_to_virt(acpi.table[i].addr);
		if (!memcmp(acpi.table[i].sig, sig, 4) && checksum_ok(h))
			return h;
	}
	return NULL;
}

static void madt_add_cpu(uint32_t apic_id, uint32_t flags)
{
	if (!(flags & MADT_ENABLED))
		return;
	for (unsigned i = 0; i < acpi.ncpus; i++) {
		if (acpi.cpu_apic_id[i] == apic_id)
			return;  /* listed both as LAPIC and x2APIC */
	}
	if (apic_id >= 255) {
		kprintf("acpi: CPU with APIC ID %u needs x2APIC, skipped\n", apic_id);
		return;
	}
	if (acpi.ncpus == MAX_CPUS) {
		kprintf("acpi: more than %d CPUs, APIC ID %u skipped\n", MAX_CPUS, apic_id);
		return;
	}
	acpi.cpu_apic_id[acpi.ncpus++] = apic_id;
}

static void madt_parse(const struct acpi_sdt_header *madt)
{
	const uint8_t *p = (const uint8_t *)madt + sizeof(*madt) + 8;
	const uint8_t *end = (const uint8_t *)madt + madt->length;

	if (madt->length < sizeof(*madt) + 8)
		return;
	acpi.have_madt = true;
	acpi.lapic_base = *(const uint32_t *)((const uint8_t *)madt + sizeof(*madt));
	for (; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
		uint8_t type = p[0], len = p[1];

		if (type == MADT_LAPIC && len >= 8) {
			madt_add_cpu(p[3], *(const uint32_t *)(p + 4));
		} else if (type == MADT_X2APIC && len >= 16) {
			madt_add_cpu(*(const uint32_t *)(p + 4), *(const uint32_t *)(p + 8));
		} else if (type == MADT_IOAPIC && len >= 12 && acpi.nioapics < ACPI_MAX_IOAPICS) {
			acpi.ioapic[acpi.nioapics].id = p[2];
			acpi.ioapic[acpi.nioapics].addr = *(const uint32_t *)(p + 4);
			acpi.ioapic[acpi.nioapics].gsi_base = *(const uint32_t *)(p + 8);
			acpi.nioapics++;
		} else if (type == MADT_ISO && len >= 10 && acpi.nisos < ACPI_MAX_ISOS) {
			acpi.iso[acpi.nisos].irq = p[3];
			acpi.iso[acpi.nisos].gsi = *(const uint32_t *)(p + 4);
			acpi.iso[acpi.nisos].flags = *(const uint16_t *)(p + 8);
			acpi.nisos++;
		} else if (type == MADT_LAPIC_OVERRIDE && len >= 12) {
			acpi.lapic_base = *(const uint64_t *)(p + 4);
		}
	}
}

int acpi_init(uint64_t rsdp_hint)
{
	const struct rsdp *r = rsdp_find(rsdp_hint);
	const struct acpi_sdt_header *root, *fadt, *madt;
	bool xsdt;
	unsigned n;

	if (!r) {
		kprintf("acpi: no RSDP found\n");
		return -1;
	}
	acpi.rsdp = virt_to_phys(r);
	xsdt = r->revision >= 2 && r->xsdt;
	root = add_table(xsdt ? r->xsdt : r->rsdt);
	if (!root || !checksum_ok(root))
		return -1;
	n = (root->length - sizeof(*root)) / (xsdt ? 8 : 4);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *entry = (const uint8_t *)(root + 1) + i * (xsdt ? 8 : 4);
		add_table(xsdt ? *(const uint64_t *)entry : *(const uint32_t *)entry);
	}
	/* The DSDT is reached through the FADT, not the root table. */
	fadt = acpi_find_table("FACP");
	if (fadt && fadt->length >= 148 && *(const uint64_t *)((const uint8_t *)fadt + 140))
		add_table(*(const uint64_t *)((const uint8_t *)fadt + 140));
	else if (fadt && fadt->length >= 44 && *(const uint32_t *)((const uint8_t *)fadt + 40))
		add_table(*(const uint32_t *)((const uint8_t *)fadt + 40));

	madt = acpi_find_table("APIC");
	if (madt)
		madt_parse(madt);
	else
		kprintf("acpi: no MADT\n");
	return 0;
}
