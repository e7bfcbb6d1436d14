/* The AML writer, the ACPI tables built with it, ECAM decoding and the sleep
 * register; the tables also go through ACPICA's disassembler (iasl -d) and
 * back through its compiler. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/acpi_pm.h"
#include "devices/pci.h"
#include "ferry/layout.h"
#include "vmm/acpi.h"
#include "vmm/aml.h"
#include "vmm/vm.h"

static void expect_aml(struct aml *a, const uint8_t *want, size_t len)
{
	assert_true(aml_ok(a));
	assert_int_equal(a->len, len);
	assert_memory_equal(a->buf, want, len);
	aml_free(a);
	aml_init(a);
}

static void aml_encodings(void **state)
{
	(void)state;
	struct aml a;
	aml_init(&a);

	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 0x12);
	aml_integer(&a, 0x1234);
	aml_integer(&a, 0x12345678);
	aml_integer(&a, 0x123456789aull);
	aml_integer(&a, UINT64_MAX);
	static const uint8_t ints[] = { 0x00, 0x01, 0x0a, 0x12, 0x0b, 0x34, 0x12, 0x0c, 0x78, 0x56, 0x34, 0x12,
					0x0e, 0x9a, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0xff };
	expect_aml(&a, ints, sizeof(ints));

	/* EisaId("PNP0A03") is 0x030AD041, as iasl writes it. */
	aml_eisaid(&a, "PNP0A03");
	static const uint8_t eisa[] = { 0x0c, 0x41, 0xd0, 0x0a, 0x03 };
	expect_aml(&a, eisa, sizeof(eisa));

	aml_name(&a, "\\_SB.PCI0");
	aml_name(&a, "COM");
	aml_name(&a, "\\A.B.C");
	static const uint8_t names[] = { 0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'C', 'O', 'M', '_',
					 0x5c, 0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_' };
	expect_aml(&a, names, sizeof(names));

	aml_string(&a, "ab");
	static const uint8_t str[] = { 0x0d, 'a', 'b', 0 };
	expect_aml(&a, str, sizeof(str));

	/* Name(_S5, Package(){5, 0}): a one-byte PkgLength. */
	aml_name_decl(&a, "_S5");
	size_t m = aml_package_begin(&a, 2);
	aml_integer(&a, 5);
	aml_integer(&a, 0);
	aml_end(&a, m);
	static const uint8_t pkg[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00 };
	expect_aml(&a, pkg, sizeof(pkg));

	/* A resource template: Buffer(size){IO(...), end tag}. */
	m = aml_resource_begin(&a);
	aml_res_io(&a, 0x3f8, 8);
	aml_resource_end(&a, m);
	static const uint8_t res[] = { 0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
				       0x79, 0x00 };
	expect_aml(&a, res, sizeof(res));
	aml_free(&a);
}

static void aml_package_lengths(void **state)
{
	(void)state;
	/* Bodies around each PkgLength size boundary encode their own length. */
	static const size_t bodies[] = { 0, 61, 62, 63, 0xffc, 0xffd, 0xffe, 0x10000, 0xffffc, 0xffffd };
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct aml a;
		aml_init(&a);
		size_t m = aml_scope_begin(&a, "");
		/* The scope's name (NullName) is one byte of the body. */
		for (size_t j = 1; j < bodies[i]; j++)
			aml_byte(&a, 0xa3); /* Noop */
		aml_end(&a, m);
		assert_true(aml_ok(&a));
		size_t body = bodies[i] ? bodies[i] : 1;
		uint8_t lead = a.buf[1];
		unsigned n = (lead >> 6) + 1;
		size_t total = n == 1 ? (size_t)(lead & 0x3f) : (size_t)(lead & 0xf);
		for (unsigned k = 1; k < n; k++)
			total |= (size_t)a.buf[1 + k] << (4 + 8 * (k - 1));
		assert_int_equal(total, body + n);
		assert_int_equal(a.len, 1 + n + body);
		if (n > 1)
			assert_int_equal(lead & 0x30, 0); /* bits 5-4 are reserved */
		aml_free(&a);
	}
}

static void aml_refuses(void **state)
{
	(void)state;
	struct aml a;
	aml_init(&a);
	aml_name(&a, "TOOLONG");
	assert_false(aml_ok(&a));
	aml_free(&a);

	aml_init(&a);
	aml_name(&a, "1ABC"); /* a digit cannot lead */
	assert_false(aml_ok(&a));
	aml_free(&a);

	aml_init(&a);
	aml_eisaid(&a, "pnp0a03");
	assert_false(aml_ok(&a));
	aml_free(&a);

	aml_init(&a);
	aml_device_begin(&a, "DEV0"); /* never ended */
	assert_false(aml_ok(&a));
	aml_free(&a);

	aml_init(&a);
	aml_end(&a, 0); /* nothing open */
	assert_false(aml_ok(&a));
	aml_free(&a);

	aml_init(&a);
	aml_res_irq(&a, 16);
	assert_false(aml_ok(&a));
	aml_free(&a);
}

static uint8_t tables[FERRY_ACPI_MAX];

static const uint8_t *find_table(const char sig[4])
{
	uint64_t xsdt;
	memcpy(&xsdt, tables + 24, 8);
	const uint8_t *x = tables + (xsdt - FERRY_ACPI_GPA);
	uint32_t len;
	memcpy(&len, x + 4, 4);
	for (uint32_t off = 36; off + 8 <= len; off += 8) {
		uint64_t addr;
		memcpy(&addr, x + off, 8);
		if (!memcmp(tables + (addr - FERRY_ACPI_GPA), sig, 4))
			return tables + (addr - FERRY_ACPI_GPA);
	}
	if (!memcmp(sig, "DSDT", 4)) {
		const uint8_t *fadt = find_table("FACP");
		uint64_t dsdt;
		memcpy(&dsdt, fadt + 140, 8);
		return tables + (dsdt - FERRY_ACPI_GPA);
	}
	return NULL;
}

static uint32_t table_len(const uint8_t *t)
{
	uint32_t len;
	memcpy(&len, t + 4, 4);
	return len;
}

static bool contains(const uint8_t *hay, size_t len, const void *needle, size_t nlen)
{
	for (size_t i = 0; i + nlen <= len; i++)
		if (!memcmp(hay + i, needle, nlen))
			return true;
	return false;
}

static void acpi_tables_describe_the_machine(void **state)
{
	(void)state;
	size_t used = acpi_build(tables, sizeof(tables), FERRY_ACPI_GPA, 2);
	assert_true(used > 0 && used < sizeof(tables));
	const char *sigs[] = { "FACP", "APIC", "MCFG", "DSDT" };
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *t = find_table(sigs[i]);
		assert_non_null(t);
		assert_memory_equal(t, sigs[i], 4);
		assert_true(t + table_len(t) <= tables + used);
		assert_int_equal(acpi_checksum(t, table_len(t)), 0);
	}

	/* MCFG: one ECAM window, segment 0, bus 0. */
	const uint8_t *mcfg = find_table("MCFG");
	assert_int_equal(table_len(mcfg), 36 + 8 + 16);
	uint64_t base;
	memcpy(&base, mcfg + 44, 8);
	assert_int_equal(base, FERRY_PCI_ECAM_GPA);
	assert_int_equal(mcfg[54], 0);
	assert_int_equal(mcfg[55], FERRY_PCI_ECAM_BUSES - 1);

	/* FADT: hardware-reduced, sleep control and status in I/O space. */
	const uint8_t *fadt = find_table("FACP");
	uint32_t flags;
	memcpy(&flags, fadt + 112, 4);
	assert_true(flags & (1u << 20));
	assert_int_equal(fadt[244], 1); /* sleep control: system I/O */
	uint64_t port;
	memcpy(&port, fadt + 248, 8);
	assert_int_equal(port, FERRY_ACPI_SLEEP_CTL_PORT);
	assert_int_equal(fadt[256], 1);
	memcpy(&port, fadt + 260, 8);
	assert_int_equal(port, FERRY_ACPI_SLEEP_STS_PORT);

	/* DSDT: the names and IDs of what it describes. */
	const uint8_t *dsdt = find_table("DSDT");
	uint32_t dlen = table_len(dsdt);
	assert_true(dlen > 36);
	assert_true(contains(dsdt, dlen, "PCI0", 4));
	assert_true(contains(dsdt, dlen, "COM1", 4));
	assert_true(contains(dsdt, dlen, "_S5_", 4));
	assert_true(contains(dsdt, dlen, "\x41\xd0\x0a\x08", 4)); /* PNP0A08 */
	assert_true(contains(dsdt, dlen, "\x41\xd0\x05\x01", 4)); /* PNP0501 */
	assert_true(contains(dsdt, dlen, "FRRY0001", 8));
	/* The 64-bit window: QWordMemory from 512 GiB. */
	uint64_t w64 = FERRY_PCI_MMIO64_GPA;
	assert_true(contains(dsdt, dlen, &w64, 8));

	assert_int_equal(acpi_build(tables, 300, FERRY_ACPI_GPA, 1), 0); /* too small */
	assert_int_equal(acpi_build(tables, sizeof(tables), FERRY_ACPI_GPA, 0), 0);
}

/* Writes each table to DIR/SIG.dat, disassembles it with iasl -d, and
 * compiles the DSDT's disassembly again. */
static void acpi_tables_pass_iasl(void **state)
{
	(void)state;
	char *const which[] = { "iasl", "-v", NULL };
	struct cmd_result v = run_cmd(which, 30);
	if (v.status != 0)
		fail_msg("iasl is not installed (Debian: acpica-tools; scripts/install-deps.sh installs it)");
	cmd_result_free(&v);

	assert_true(acpi_build(tables, sizeof(tables), FERRY_ACPI_GPA, 2) > 0);
	char *dir = make_temp_dir();
	const char *sigs[] = { "FACP", "APIC", "MCFG", "DSDT" };
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *t = find_table(sigs[i]);
		char *path = xasprintf("%s/%.4s.dat", dir, sigs[i]);
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(t, 1, table_len(t), f), table_len(t));
		assert_int_equal(fclose(f), 0);
		char *const argv[] = { "iasl", "-d", path, NULL };
		struct cmd_result r = run_cmd(argv, 60);
		if (r.status != 0 || strstr(r.out, "Error") || strstr(r.err, "Error"))
			fail_msg("iasl -d %s: status %d\n%s%s", sigs[i], r.status, r.out, r.err);
		cmd_result_free(&r);
		free(path);
	}

	char *dsl_path = xasprintf("%s/DSDT.dsl", dir);
	char *dsl = read_file(dsl_path);
	assert_non_null(dsl);
	const char *want[] = {
		"Device (PCI0)", "EisaId (\"PNP0A08\")", "EisaId (\"PNP0A03\")", "Name (_SEG, Zero)",
		"Name (_BBN, Zero)", "WordBusNumber", "DWordMemory", "QWordMemory", "0x0000008000000000",
		"0x000000FFFFFFFFFF", "0xC0000000", "0xFBFFFFFF", "Device (COM1)", "EisaId (\"PNP0501\")",
		"0x03F8", "IRQNoFlags ()", "{4}", "\"FRRY0001\"", "0x0501", "Memory32Fixed (ReadWrite,",
		"0xFC000000", "Name (\\_S5, Package", "0x05",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!strstr(dsl, want[i])) {
			fprintf(stderr, "%s", dsl); /* cmocka cuts long messages */
			fail_msg("DSDT disassembly lacks \"%s\"", want[i]);
		}
	}
	/* The disassembly compiles back without errors. */
	char *out = xasprintf("%s/again", dir);
	char *const compile[] = { "iasl", "-p", out, dsl_path, NULL };
	struct cmd_result r = run_cmd(compile, 60);
	if (r.status != 0)
		fail_msg("iasl %s: status %d\n%s%s", dsl_path, r.status, r.out, r.err);
	cmd_result_free(&r);

	char *path = xasprintf("%s/MCFG.dsl", dir);
	char *mcfg = read_file(path);
	free(path);
	expect_contains(mcfg, "Base Address : 00000000FC000000");
	path = xasprintf("%s/FACP.dsl", dir);
	char *facp = read_file(path);
	free(path);
	expect_contains(facp, "Hardware Reduced (V5) : 1");
	expect_contains(facp, "Sleep Control Register");
	free(mcfg);
	free(facp);
	free(out);
	free(dsl);
	free(dsl_path);
	remove_tree(dir);
	free(dir);
}

static void ecam_decoding(void **state)
{
	(void)state;
	struct pci_ecam_addr a;
	assert_true(pci_ecam_decode(0, 4, &a));
	assert_int_equal(a.bus, 0);
	assert_int_equal(a.slot, 0);
	assert_int_equal(a.fn, 0);
	assert_int_equal(a.reg, 0);
	/* 00:03.2, register 0x104 */
	assert_true(pci_ecam_decode((3u << 15) | (2u << 12) | 0x104, 2, &a));
	assert_int_equal(a.slot, 3);
	assert_int_equal(a.fn, 2);
	assert_int_equal(a.reg, 0x104);
	assert_true(pci_ecam_decode(FERRY_PCI_ECAM_SIZE - 1, 1, &a));
	assert_int_equal(a.slot, 31);
	assert_int_equal(a.fn, 7);
	assert_int_equal(a.reg, 0xfff);

	assert_false(pci_ecam_decode(FERRY_PCI_ECAM_SIZE, 1, &a)); /* past the window */
	assert_false(pci_ecam_decode(UINT64_MAX, 1, &a));
	assert_false(pci_ecam_decode(2, 4, &a));  /* misaligned */
	assert_false(pci_ecam_decode(1, 2, &a));
	assert_false(pci_ecam_decode(0, 8, &a));  /* not 1, 2 or 4 bytes */
	assert_false(pci_ecam_decode(0, 3, &a));
	assert_false(pci_ecam_decode(0, 0, &a));
}

/* Configuration space through the ECAM window on a VM's MMIO bus (no KVM:
 * the bus alone): the host bridge's ID, zero beyond 256 bytes, all ones for
 * an empty slot, the same register as mechanism #1, refusals counted. */
static void ecam_config_space(void **state)
{
	(void)state;
	struct vm *vm = calloc(1, sizeof(*vm));
	assert_non_null(vm);
	snprintf(vm->name, sizeof(vm->name), "t");
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	char err[200];
	struct pci_bus *bus = pci_bus_create(vm, err, sizeof(err));
	assert_non_null(bus);

	uint8_t d[4];
	uint32_t v;
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA, d, 4, false));
	memcpy(&v, d, 4);
	assert_int_equal(v, 0x0d578086);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 2, d, 2, false));
	assert_int_equal(d[0] | d[1] << 8, 0x0d57);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 0x100, d, 4, false));
	memcpy(&v, d, 4);
	assert_int_equal(v, 0);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 0xffc, d, 4, false));
	memcpy(&v, d, 4);
	assert_int_equal(v, 0);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + (5u << 15), d, 4, false)); /* empty slot */
	memcpy(&v, d, 4);
	assert_int_equal(v, 0xffffffff);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + (1u << 12), d, 4, false)); /* function 1 */
	memcpy(&v, d, 4);
	assert_int_equal(v, 0xffffffff);

	/* A write through ECAM is what mechanism #1 reads back. */
	d[0] = 0x5a;
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + PCI_INTERRUPT_LINE, d, 1, true));
	uint32_t addr = PCI_CONFIG_ENABLE | (PCI_INTERRUPT_LINE & 0xfc);
	memcpy(d, &addr, 4);
	assert_true(bus_dispatch(&vm->pio, PCI_CONFIG_ADDRESS_PORT, d, 4, true));
	assert_true(bus_dispatch(&vm->pio, PCI_CONFIG_DATA_PORT + (PCI_INTERRUPT_LINE & 3), d, 1, false));
	assert_int_equal(d[0], 0x5a);
	/* Writes beyond 256 bytes change nothing. */
	memset(d, 0xab, 4);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 0x200, d, 4, true));
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 0x200, d, 4, false));
	memcpy(&v, d, 4);
	assert_int_equal(v, 0);

	/* Misaligned and 8-byte accesses are refused and counted. */
	struct device *dev = pci_bus_device(bus);
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA + 1, d, 4, false));
	memcpy(&v, d, 4);
	assert_int_equal(v, 0xffffffff);
	uint8_t q[8];
	assert_true(bus_dispatch(&vm->mmio, FERRY_PCI_ECAM_GPA, q, 8, false));
	assert_int_equal(atomic_load(&dev->ctr.rejected), 2);

	dev->ops->destroy(dev);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	free(vm);
}

static void sleep_register(void **state)
{
	(void)state;
	assert_int_equal(acpi_sleep_decode(0), ACPI_SLEEP_NONE);
	assert_int_equal(acpi_sleep_decode(FERRY_ACPI_S5_TYPE << 2), ACPI_SLEEP_NONE); /* no SLP_EN */
	assert_int_equal(acpi_sleep_decode(0x20 | FERRY_ACPI_S5_TYPE << 2), ACPI_SLEEP_S5);
	assert_int_equal(acpi_sleep_decode(0x20 | 3 << 2), ACPI_SLEEP_UNSUPPORTED); /* S3 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(aml_encodings),
		cmocka_unit_test(aml_package_lengths),
		cmocka_unit_test(aml_refuses),
		cmocka_unit_test(acpi_tables_describe_the_machine),
		cmocka_unit_test(acpi_tables_pass_iasl),
		cmocka_unit_test(ecam_decoding),
		cmocka_unit_test(ecam_config_space),
		cmocka_unit_test(sleep_register),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
