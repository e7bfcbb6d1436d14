/* PCI bus 0 behind configuration mechanism #1 (ports 0xcf8/0xcfc) and ECAM
 * (devices/pci_ecam.c), with a host bridge at 00:00.0. Devices describe their config space, BARs and
 * capabilities; the bus maps BARs where the guest puts them. */
#ifndef FERRY_PCI_H
#define FERRY_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/device.h"
#include "ferry/pci_regs.h"

#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS  6
#define PCI_CFG_SIZE  256
#define PCI_EXT_CFG_SIZE 4096   /* per function, through ECAM */

struct vm;
struct pci_device;

struct pci_bar {
	uint64_t size;         /* power of two; 0 = unused */
	bool is_64;
	bool prefetch;
	io_handler_fn fn;      /* MMIO handler; NULL for a BAR backed by RAM */
	void *opaque;
	uint64_t addr;         /* where it is mapped now, if mapped */
	bool mapped;           /* placed at addr (the device has been told) */
	bool decoding;         /* its MMIO handler is on the bus */
	uint64_t preset;       /* if non-zero: the address to assign (see pci_place_bar) */
};

struct pci_device_ops {
	/* The BAR moved or was (un)mapped: move ioeventfds, memory slots, ... */
	void (*bar_mapped)(struct pci_device *pdev, unsigned bar, uint64_t addr, bool mapped);
	/* Called after a config write that touched [off, off + len). */
	void (*config_written)(struct pci_device *pdev, uint32_t off, uint32_t len);
	/* Optional: produce a config read (for windows like VIRTIO_PCI_CAP_PCI_CFG);
	 * returns false to use the stored bytes. */
	bool (*config_read)(struct pci_device *pdev, uint32_t off, uint32_t len, uint32_t *val);
};

struct pci_device {
	struct device *dev;       /* owner: counts exits and rejections */
	const struct pci_device_ops *ops;
	void *opaque;
	struct pci_bus *bus;
	unsigned slot;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];  /* guest-writable bits */
	struct pci_bar bar[PCI_NUM_BARS];
	uint8_t cap_end;              /* next free config offset for a capability */
};

struct pci_bus *pci_bus_create(struct vm *vm, char *err, size_t errlen);

/* Fills the type-0 header identity fields. */
void pci_device_init(struct pci_device *pdev, struct device *owner, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id, uint8_t revision);
/* Declares a memory BAR (before pci_bus_add). */
void pci_set_bar(struct pci_device *pdev, unsigned bar, uint64_t size, bool is_64, bool prefetch,
		 io_handler_fn fn, void *opaque);
/* Asks for a BAR at a fixed address, for memory the VMM registers with KVM
 * before the bus exists. */
void pci_place_bar(struct pci_device *pdev, unsigned bar, uint64_t addr);
/* Appends a capability (whose first byte is its ID) and links it; returns
 * its config offset, or 0 if config space is full. */
uint8_t pci_add_cap(struct pci_device *pdev, const void *cap, uint8_t len);
/* Puts the device in a free slot, assigns its BARs and maps them. */
int pci_bus_add(struct pci_bus *bus, struct pci_device *pdev, char *err, size_t errlen);

/* One configuration access, from mechanism #1 or ECAM. Functions that do not
 * exist read as all ones; offsets 256-4095 of one that does read as zero and
 * ignore writes. len must be 1, 2 or 4 and reg aligned to it. */
void pci_bus_config_access(struct pci_bus *bus, unsigned busnr, unsigned slot, unsigned fn, uint32_t reg,
			   uint8_t *data, uint32_t len, bool is_write);
/* The bus's own device (the host bridge): counts its exits and rejections. */
struct device *pci_bus_device(struct pci_bus *bus);

/* ECAM (devices/pci_ecam.c). An offset into the window decodes to a
 * function and register; false if the access is not one ECAM allows
 * (outside the window, a width other than 1, 2 or 4, misaligned). */
struct pci_ecam_addr {
	unsigned bus, slot, fn;
	uint32_t reg;
};
bool pci_ecam_decode(uint64_t offset, uint32_t len, struct pci_ecam_addr *out);
/* Puts the window at FERRY_PCI_ECAM_GPA on an MMIO bus. */
int pci_ecam_register(struct pci_bus *bus, struct io_bus *mmio);

static inline uint16_t pci_cfg_read16(const struct pci_device *pdev, uint32_t off)
{
	return (uint16_t)(pdev->cfg[off] | pdev->cfg[off + 1] << 8);
}

#endif
