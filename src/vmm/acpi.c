#include "vmm/acpi.h"

#include <string.h>

#include "devices/serial.h"
#include "ferry/debug_exit.h"
#include "ferry/layout.h"
#include "vmm/aml.h"

struct __attribute__((packed)) acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;
	uint8_t reserved[3];
};

struct __attribute__((packed)) acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
};

struct __attribute__((packed)) acpi_gas {
	uint8_t space_id, bit_width, bit_offset, access_size;
	uint64_t address;
};

/* FADT, revision 6 (ACPI 6.x), 276 bytes. */
struct __attribute__((packed)) acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl, dsdt;
	uint8_t reserved0, preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk;
	uint32_t gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t fadt_minor_version;
	uint64_t x_firmware_ctrl, x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm2_cnt_blk, x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk, x_gpe1_blk, sleep_control_reg, sleep_status_reg;
	uint64_t hypervisor_vendor_identity;
};

_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6 is 276 bytes");

#define FADT_F_HW_REDUCED_ACPI  (1u << 20)
#define FADT_F_PWR_BUTTON       (1u << 4)   /* no power button */
#define FADT_F_SLP_BUTTON       (1u << 5)   /* no sleep button */
#define IAPC_BOOT_ARCH_NO_VGA   (1u << 2)
#define IAPC_BOOT_ARCH_NO_CMOS  (1u << 5)

struct __attribute__((packed)) madt_lapic {
	uint8_t type, length, processor_id, apic_id;
	uint32_t flags;
};
struct __attribute__((packed)) madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address, gsi_base;
};
struct __attribute__((packed)) madt_override {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
};

#define MADT_PCAT_COMPAT 1u

struct __attribute__((packed)) mcfg_entry {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved;
};

#define GAS_SYSTEM_IO   1
#define GAS_ACCESS_BYTE 1

uint8_t acpi_checksum(const void *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += ((const uint8_t *)p)[i];
	return sum;
}

static void header(struct acpi_header *h, const char sig[4], uint32_t length, uint8_t revision)
{
	memcpy(h->signature, sig, 4);
	h->length = length;
	h->revision = revision;
	memcpy(h->oem_id, "FERRY ", 6);
	memcpy(h->oem_table_id, "FERRYVM ", 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "FRRY", 4);
	h->creator_revision = 1;
}

/* Lays tables out one after another, 16-byte aligned. */
struct builder {
	uint8_t *buf;
	size_t len, used;
	uint64_t base;
};

static void *take(struct builder *b, size_t size, uint64_t *gpa)
{
	size_t at = (b->used + 15) & ~(size_t)15;
	if (at > b->len || size > b->len - at)
		return NULL;
	b->used = at + size;
	*gpa = b->base + at;
	return b->buf + at;
}

/* The DSDT's AML: what enumeration cannot find. The PCI host bridge with
 * the bus number, port and memory windows ferry assigns BARs from (its
 * devices use MSI-X only, so there is no _PRT); COM1; the debug-exit port;
 * motherboard resources (ECAM, the sleep registers) so the OS keeps its
 * hands off them; and \_S5 for power-off through the FADT's sleep control
 * register. */
static void build_dsdt(struct aml *a)
{
	size_t sb = aml_scope_begin(a, "\\_SB");

	size_t pci = aml_device_begin(a, "PCI0");
	aml_name_decl(a, "_HID");
	aml_eisaid(a, "PNP0A08"); /* PCI Express root bridge */
	aml_name_decl(a, "_CID");
	aml_eisaid(a, "PNP0A03"); /* PCI root bridge */
	aml_name_decl(a, "_UID");
	aml_integer(a, 0);
	aml_name_decl(a, "_SEG");
	aml_integer(a, 0);
	aml_name_decl(a, "_BBN");
	aml_integer(a, 0);
	aml_name_decl(a, "_CRS");
	size_t crs = aml_resource_begin(a);
	aml_res_word_bus(a, 0, FERRY_PCI_ECAM_BUSES - 1);
	aml_res_io(a, 0xcf8, 8);
	aml_res_word_io(a, 0x0000, 0x0cf7);
	aml_res_word_io(a, 0x0d00, 0xffff);
	aml_res_dword_mem(a, (uint32_t)FERRY_PCI_MMIO32_GPA,
			  (uint32_t)(FERRY_PCI_MMIO32_GPA + FERRY_PCI_MMIO32_SIZE - 1), false);
	aml_res_qword_mem(a, FERRY_PCI_MMIO64_GPA, FERRY_PCI_MMIO64_GPA + FERRY_PCI_MMIO64_SIZE - 1, true);
	aml_resource_end(a, crs);
	aml_end(a, pci);

	size_t com = aml_device_begin(a, "COM1");
	aml_name_decl(a, "_HID");
	aml_eisaid(a, "PNP0501"); /* 16550A-compatible UART */
	aml_name_decl(a, "_UID");
	aml_integer(a, 1);
	aml_name_decl(a, "_CRS");
	crs = aml_resource_begin(a);
	aml_res_io(a, SERIAL_COM1_PORT, 8);
	aml_res_irq(a, SERIAL_COM1_IRQ);
	aml_resource_end(a, crs);
	aml_end(a, com);

	/* ferry's own ID; compatible with "motherboard resources" so an OS that
	 * does not know it still reserves the port. */
	size_t dbg = aml_device_begin(a, "DBGX");
	aml_name_decl(a, "_HID");
	aml_string(a, "FRRY0001");
	aml_name_decl(a, "_CID");
	aml_eisaid(a, "PNP0C02");
	aml_name_decl(a, "_UID");
	aml_integer(a, 1);
	aml_name_decl(a, "_CRS");
	crs = aml_resource_begin(a);
	aml_res_io(a, FERRY_DEBUG_EXIT_PORT, 1);
	aml_resource_end(a, crs);
	aml_end(a, dbg);

	size_t res = aml_device_begin(a, "MRES");
	aml_name_decl(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name_decl(a, "_UID");
	aml_integer(a, 0);
	aml_name_decl(a, "_CRS");
	crs = aml_resource_begin(a);
	aml_res_mem32_fixed(a, (uint32_t)FERRY_PCI_ECAM_GPA, (uint32_t)FERRY_PCI_ECAM_SIZE);
	aml_res_io(a, FERRY_ACPI_SLEEP_CTL_PORT, 2);
	aml_resource_end(a, crs);
	aml_end(a, res);

	aml_end(a, sb);

	aml_name_decl(a, "\\_S5");
	size_t s5 = aml_package_begin(a, 4);
	aml_integer(a, FERRY_ACPI_S5_TYPE); /* SLP_TYPa */
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a, s5);
}

static void sleep_register(struct acpi_gas *g, uint16_t port)
{
	*g = (struct acpi_gas){ GAS_SYSTEM_IO, 8, 0, GAS_ACCESS_BYTE, port };
}

size_t acpi_build(uint8_t *buf, size_t len, uint64_t base, unsigned nr_cpus)
{
	struct builder b = { buf, len, 0, base };
	memset(buf, 0, len);
	uint64_t rsdp_gpa = 0, xsdt_gpa = 0, fadt_gpa = 0, dsdt_gpa = 0, madt_gpa = 0, mcfg_gpa = 0;
	if (nr_cpus == 0 || nr_cpus > 255)
		return 0;

	struct aml aml;
	aml_init(&aml);
	build_dsdt(&aml);
	if (!aml_ok(&aml)) {
		aml_free(&aml);
		return 0;
	}
	size_t dsdt_len = sizeof(struct acpi_header) + aml.len;

	struct acpi_rsdp *rsdp = take(&b, sizeof(*rsdp), &rsdp_gpa);
	uint8_t *dsdt = take(&b, dsdt_len, &dsdt_gpa);
	struct acpi_fadt *fadt = take(&b, sizeof(*fadt), &fadt_gpa);
	size_t madt_len = sizeof(struct acpi_header) + 8 + nr_cpus * sizeof(struct madt_lapic) +
			  sizeof(struct madt_ioapic) + sizeof(struct madt_override);
	uint8_t *madt = take(&b, madt_len, &madt_gpa);
	size_t mcfg_len = sizeof(struct acpi_header) + 8 + sizeof(struct mcfg_entry);
	uint8_t *mcfg = take(&b, mcfg_len, &mcfg_gpa);
	size_t xsdt_len = sizeof(struct acpi_header) + 3 * sizeof(uint64_t);
	uint8_t *xsdt = take(&b, xsdt_len, &xsdt_gpa);
	if (!rsdp || !dsdt || !fadt || !madt || !mcfg || !xsdt) {
		aml_free(&aml);
		return 0;
	}

	struct acpi_header *dh = (struct acpi_header *)dsdt;
	header(dh, "DSDT", (uint32_t)dsdt_len, 2); /* revision 2: 64-bit integers */
	memcpy(dsdt + sizeof(*dh), aml.buf, aml.len);
	aml_free(&aml);
	dh->checksum = (uint8_t)-acpi_checksum(dsdt, dsdt_len);

	header(&fadt->h, "FACP", sizeof(*fadt), 6);
	fadt->fadt_minor_version = 3;
	fadt->flags = FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON;
	fadt->iapc_boot_arch = IAPC_BOOT_ARCH_NO_VGA | IAPC_BOOT_ARCH_NO_CMOS;
	fadt->dsdt = (uint32_t)dsdt_gpa;
	fadt->x_dsdt = dsdt_gpa;
	/* Hardware-reduced ACPI enters S5 by writing SLP_TYP and SLP_EN here. */
	sleep_register(&fadt->sleep_control_reg, FERRY_ACPI_SLEEP_CTL_PORT);
	sleep_register(&fadt->sleep_status_reg, FERRY_ACPI_SLEEP_STS_PORT);
	memcpy(&fadt->hypervisor_vendor_identity, "FERRY\0\0\0", 8);
	fadt->h.checksum = (uint8_t)-acpi_checksum(fadt, sizeof(*fadt));

	struct acpi_header *mh = (struct acpi_header *)madt;
	header(mh, "APIC", (uint32_t)madt_len, 5);
	uint8_t *p = madt + sizeof(*mh);
	uint32_t lapic_addr = (uint32_t)FERRY_LAPIC_GPA, flags = MADT_PCAT_COMPAT;
	memcpy(p, &lapic_addr, 4);
	memcpy(p + 4, &flags, 4);
	p += 8;
	for (unsigned i = 0; i < nr_cpus; i++) {
		struct madt_lapic l = { 0, sizeof(l), (uint8_t)i, (uint8_t)i, 1 /* enabled */ };
		memcpy(p, &l, sizeof(l));
		p += sizeof(l);
	}
	/* IOAPIC ID follows the CPUs' APIC IDs so the two never clash. */
	struct madt_ioapic io = { 1, sizeof(io), (uint8_t)nr_cpus, 0, (uint32_t)FERRY_IOAPIC_GPA, 0 };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	struct madt_override iso = { 2, sizeof(iso), 0, 0, 2, 0 }; /* ISA IRQ 0 -> GSI 2 */
	memcpy(p, &iso, sizeof(iso));
	mh->checksum = (uint8_t)-acpi_checksum(madt, madt_len);

	struct acpi_header *ch = (struct acpi_header *)mcfg;
	header(ch, "MCFG", (uint32_t)mcfg_len, 1);
	struct mcfg_entry ecam = { FERRY_PCI_ECAM_GPA, 0, 0, FERRY_PCI_ECAM_BUSES - 1, 0 };
	memcpy(mcfg + sizeof(*ch) + 8, &ecam, sizeof(ecam));
	ch->checksum = (uint8_t)-acpi_checksum(mcfg, mcfg_len);

	struct acpi_header *xh = (struct acpi_header *)xsdt;
	header(xh, "XSDT", (uint32_t)xsdt_len, 1);
	memcpy(xsdt + sizeof(*xh), &fadt_gpa, 8);
	memcpy(xsdt + sizeof(*xh) + 8, &madt_gpa, 8);
	memcpy(xsdt + sizeof(*xh) + 16, &mcfg_gpa, 8);
	xh->checksum = (uint8_t)-acpi_checksum(xsdt, xsdt_len);

	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, "FERRY ", 6);
	rsdp->revision = 2;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_address = xsdt_gpa;
	rsdp->checksum = (uint8_t)-acpi_checksum(rsdp, 20);
	rsdp->extended_checksum = (uint8_t)-acpi_checksum(rsdp, sizeof(*rsdp));
	return b.used;
}
