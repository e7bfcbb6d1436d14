/* Boot structures: the ELF/PVH parser on good and hostile images, the PVH
 * memory map, and the ACPI tables (checksums, MADT contents). */
#include "helpers.h"

#include <elf.h>
#include <string.h>

#include "ferry/layout.h"
#include "ferry/pvh.h"
#include "vmm/acpi.h"
#include "vmm/boot_pvh.h"
#include "vmm/elf.h"

/* A minimal ELF64: header, a PT_LOAD and a PT_NOTE with the PVH note. */
struct image {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[2];
	struct {
		Elf64_Nhdr nh;
		char name[4];
		uint64_t entry;
	} note;
	uint8_t payload[64];
};

static struct image make_image(void)
{
	struct image im;
	memset(&im, 0, sizeof(im));
	memcpy(im.eh.e_ident, ELFMAG, SELFMAG);
	im.eh.e_ident[EI_CLASS] = ELFCLASS64;
	im.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im.eh.e_machine = EM_X86_64;
	im.eh.e_phoff = offsetof(struct image, ph);
	im.eh.e_phnum = 2;
	im.eh.e_phentsize = sizeof(Elf64_Phdr);
	im.ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(struct image, payload),
				 .p_paddr = 0x100000, .p_filesz = 64, .p_memsz = 4096 };
	im.ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = offsetof(struct image, note),
				 .p_filesz = sizeof(im.note) };
	im.note.nh = (Elf64_Nhdr){ .n_namesz = 4, .n_descsz = 8, .n_type = XEN_ELFNOTE_PHYS32_ENTRY };
	memcpy(im.note.name, "Xen", 4);
	im.note.entry = 0x100040;
	return im;
}

static char err[256];

static int parse(const struct image *im, size_t len, struct elf_image *out)
{
	return elf_parse((const uint8_t *)im, len, out, err, sizeof(err));
}

static void elf_good(void **state)
{
	(void)state;
	struct image im = make_image();
	struct elf_image out;
	assert_int_equal(parse(&im, sizeof(im), &out), 0);
	assert_int_equal(out.pvh_entry, 0x100040);
	assert_int_equal(out.nr_segments, 1);
	assert_int_equal(out.seg[0].paddr, 0x100000);
	assert_int_equal(out.seg[0].file_size, 64);
	assert_int_equal(out.seg[0].mem_size, 4096);
	im.note.nh.n_descsz = 4; /* a 4-byte entry is accepted too */
	assert_int_equal(parse(&im, sizeof(im), &out), 0);
	assert_int_equal(out.pvh_entry, 0x100040);
}

static void expect_elf_error(const struct image *im, size_t len, const char *fragment)
{
	struct elf_image out;
	assert_int_equal(parse(im, len, &out), -1);
	if (!strstr(err, fragment))
		fail_msg("error \"%s\" does not mention \"%s\"", err, fragment);
}

static void elf_hostile(void **state)
{
	(void)state;
	struct image im = make_image();
	expect_elf_error(&im, 3, "not an ELF");
	expect_elf_error(&im, sizeof(Elf64_Ehdr) - 1, "truncated");

	im = make_image();
	im.note.nh.n_type = 1;
	expect_elf_error(&im, sizeof(im), "no PVH entry note");

	im = make_image();
	im.ph[0].p_offset = sizeof(im) - 8; /* segment runs past the file */
	expect_elf_error(&im, sizeof(im), "outside the file");

	im = make_image();
	im.ph[0].p_filesz = 8192; /* more file bytes than memory */
	im.ph[0].p_offset = 0;
	expect_elf_error(&im, sizeof(im), "outside the file");

	im = make_image();
	im.ph[0].p_memsz = 8;
	expect_elf_error(&im, sizeof(im), "inconsistent sizes");

	im = make_image();
	im.ph[0].p_paddr = UINT64_MAX - 10; /* wraps */
	expect_elf_error(&im, sizeof(im), "inconsistent sizes");

	im = make_image();
	im.eh.e_phoff = UINT64_MAX - 8;
	expect_elf_error(&im, sizeof(im), "program headers");

	im = make_image();
	im.eh.e_phnum = 60000;
	expect_elf_error(&im, sizeof(im), "program headers");

	im = make_image();
	im.note.nh.n_namesz = 0xfffffff0u; /* note length runs past its segment */
	expect_elf_error(&im, sizeof(im), "no PVH entry note");

	im = make_image();
	im.note.nh.n_descsz = 2;
	expect_elf_error(&im, sizeof(im), "malformed PVH entry note");

	im = make_image();
	im.note.entry = 1ull << 40; /* entry must be a 32-bit address */
	expect_elf_error(&im, sizeof(im), "malformed PVH entry note");

	im = make_image();
	im.eh.e_machine = EM_AARCH64;
	expect_elf_error(&im, sizeof(im), "not an x86");
}

static void memmap_layouts(void **state)
{
	(void)state;
	struct hvm_memmap_table_entry m[PVH_MAX_MEMMAP];
	unsigned n = pvh_memmap(64ull << 20, m, PVH_MAX_MEMMAP);
	assert_int_equal(n, 4);
	assert_int_equal(m[0].type, HVM_MEMMAP_TYPE_RAM);
	assert_int_equal(m[0].addr + m[0].size, FERRY_LOW_RESERVED_GPA);
	assert_int_equal(m[1].type, HVM_MEMMAP_TYPE_RESERVED);
	assert_true(m[1].addr <= FERRY_ACPI_GPA && FERRY_ACPI_GPA + FERRY_ACPI_MAX <= m[1].addr + m[1].size);
	assert_int_equal(m[2].addr, 0x100000);
	assert_int_equal(m[2].addr + m[2].size, 64ull << 20);
	assert_int_equal(m[3].type, HVM_MEMMAP_TYPE_RESERVED); /* ECAM */
	assert_int_equal(m[3].addr, FERRY_PCI_ECAM_GPA);
	assert_int_equal(m[3].size, FERRY_PCI_ECAM_SIZE);

	n = pvh_memmap(4ull << 30, m, PVH_MAX_MEMMAP); /* 3 GiB low + 1 GiB high */
	assert_int_equal(n, 5);
	assert_int_equal(m[2].addr + m[2].size, FERRY_MMIO_HOLE_GPA);
	assert_int_equal(m[4].addr, FERRY_HIGH_RAM_GPA);
	assert_int_equal(m[4].size, 1ull << 30);
	uint64_t ram = 0;
	for (unsigned i = 0; i < n; i++)
		if (m[i].type == HVM_MEMMAP_TYPE_RAM)
			ram += m[i].size;
	assert_int_equal(ram, (4ull << 30) - (0x100000 - FERRY_LOW_RESERVED_GPA));
}

static const uint8_t *find_table(const uint8_t *buf, uint64_t base, const char sig[4])
{
	uint64_t xsdt;
	memcpy(&xsdt, buf + 24, 8);
	const uint8_t *x = buf + (xsdt - base);
	uint32_t len;
	memcpy(&len, x + 4, 4);
	for (uint32_t off = 36; off + 8 <= len; off += 8) {
		uint64_t addr;
		memcpy(&addr, x + off, 8);
		if (!memcmp(buf + (addr - base), sig, 4))
			return buf + (addr - base);
	}
	return NULL;
}

static void acpi_tables(void **state)
{
	(void)state;
	static uint8_t buf[FERRY_ACPI_MAX];
	size_t used = acpi_build(buf, sizeof(buf), FERRY_ACPI_GPA, 3);
	assert_true(used > 0 && used < sizeof(buf));
	assert_memory_equal(buf, "RSD PTR ", 8);
	assert_int_equal(acpi_checksum(buf, 20), 0);
	assert_int_equal(acpi_checksum(buf, 36), 0);

	const uint8_t *madt = find_table(buf, FERRY_ACPI_GPA, "APIC");
	const uint8_t *fadt = find_table(buf, FERRY_ACPI_GPA, "FACP");
	assert_non_null(madt);
	assert_non_null(fadt);
	uint32_t len;
	memcpy(&len, fadt + 4, 4);
	assert_int_equal(len, 276);
	assert_int_equal(acpi_checksum(fadt, len), 0);
	uint64_t x_dsdt;
	memcpy(&x_dsdt, fadt + 140, 8);
	assert_memory_equal(buf + (x_dsdt - FERRY_ACPI_GPA), "DSDT", 4);

	memcpy(&len, madt + 4, 4);
	assert_int_equal(acpi_checksum(madt, len), 0);
	unsigned cpus = 0, ioapics = 0;
	for (uint32_t off = 44; off + 2 <= len; off += madt[off + 1]) {
		if (madt[off] == 0) {
			assert_int_equal(madt[off + 3], cpus); /* APIC IDs 0..n-1 */
			cpus++;
		} else if (madt[off] == 1) {
			uint32_t addr;
			memcpy(&addr, madt + off + 4, 4);
			assert_int_equal(addr, FERRY_IOAPIC_GPA);
			ioapics++;
		}
		assert_true(madt[off + 1] > 0);
	}
	assert_int_equal(cpus, 3);
	assert_int_equal(ioapics, 1);

	assert_int_equal(acpi_build(buf, 64, FERRY_ACPI_GPA, 1), 0); /* too small */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(elf_good), cmocka_unit_test(elf_hostile), cmocka_unit_test(memmap_layouts),
		cmocka_unit_test(acpi_tables),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
