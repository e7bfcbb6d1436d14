/* PCI Express enhanced configuration access (ECAM): configuration space as
 * memory, 4 KiB per function, at the address the ACPI MCFG gives. Linux uses
 * it for offsets beyond 256 and mechanism #1 for the rest. */
#include "devices/pci.h"

#include <string.h>

#include "ferry/layout.h"

bool pci_ecam_decode(uint64_t offset, uint32_t len, struct pci_ecam_addr *out)
{
	if (offset >= FERRY_PCI_ECAM_SIZE || (len != 1 && len != 2 && len != 4) || offset % len)
		return false;
	/* Aligned and at most 4 bytes: the access stays inside one register. */
	out->bus = (unsigned)(offset >> 20);
	out->slot = (unsigned)(offset >> 15) & 0x1f;
	out->fn = (unsigned)(offset >> 12) & 7;
	out->reg = (uint32_t)offset & 0xfff;
	return true;
}

static void ecam_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	struct pci_ecam_addr a;
	if (!pci_ecam_decode(offset, len, &a)) {
		if (!is_write)
			memset(data, 0xff, len);
		device_reject(pci_bus_device(bus), "ECAM: %u-byte access at offset 0x%llx", len,
			      (unsigned long long)offset);
		return;
	}
	pci_bus_config_access(bus, a.bus, a.slot, a.fn, a.reg, data, len, is_write);
}

int pci_ecam_register(struct pci_bus *bus, struct io_bus *mmio)
{
	return bus_register(mmio, FERRY_PCI_ECAM_GPA, FERRY_PCI_ECAM_SIZE, ecam_io, bus, pci_bus_device(bus));
}
