/* PCI over configuration mechanism #1, MSI-X (kernel/pci.c). */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_MAX_DEVICES 64

struct pci_bar {
	uint64_t addr, size;      /* size 0: BAR not implemented */
	bool io, mem64, prefetch;
};

struct pci_dev {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint32_t class;           /* class << 16 | subclass << 8 | prog-if */
	uint8_t header_type;      /* without the multi-function bit */
	struct pci_bar bar[6];
	uint8_t msix_cap;         /* config offset of the MSI-X capability, or 0 */
	uint16_t msix_entries;
	uintptr_t msix_table;     /* mapped, once pci_msix_init() succeeded */
};

/* Enumerates bus 0 and the buses behind PCI-PCI bridges, sizes BARs, assigns
 * memory BARs left at 0 and prints one line per function. Returns the count. */
unsigned pci_init(void);
unsigned pci_count(void);
struct pci_dev *pci_get(unsigned index);
/* The nth (from 0) function with this vendor and device ID, or NULL. */
struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned nth);

uint8_t pci_read8(const struct pci_dev *d, unsigned off);
uint16_t pci_read16(const struct pci_dev *d, unsigned off);
uint32_t pci_read32(const struct pci_dev *d, unsigned off);
void pci_write8(const struct pci_dev *d, unsigned off, uint8_t v);
void pci_write16(const struct pci_dev *d, unsigned off, uint16_t v);
void pci_write32(const struct pci_dev *d, unsigned off, uint32_t v);

/* Config offset of the first capability with this ID after `after` (0: from
 * the start of the list), or 0. */
uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after);
/* Enables memory decoding and bus mastering. */
void pci_enable(struct pci_dev *d);
/* Identity-maps a memory BAR uncached; returns its address or 0. */
uintptr_t pci_map_bar(struct pci_dev *d, unsigned bar);

/* MSI-X: pci_msix_init() enables MSI-X with the function masked and every
 * entry masked, disables INTx and returns the number of entries (-1: none).
 * pci_msix_route() points an entry at vector on the CPU with apic_id and
 * unmasks it; pci_msix_unmask_function() then lets messages out. */
int pci_msix_init(struct pci_dev *d);
int pci_msix_route(struct pci_dev *d, unsigned entry, uint8_t vector, uint32_t apic_id);
void pci_msix_mask(struct pci_dev *d, unsigned entry, bool masked);
void pci_msix_unmask_function(struct pci_dev *d);

#endif
