#include "devices/pci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/layout.h"
#include "vmm/vm.h"

struct pci_bus {
	struct device dev;       /* the host bridge; counts config-space exits */
	struct vm *vm;
	pthread_mutex_t lock;    /* config space of every device on the bus */
	uint32_t config_address; /* last value written to 0xcf8 */
	struct pci_device *slot[PCI_MAX_SLOTS];
	struct pci_device host_bridge;
	uint64_t next_mmio32;
	uint64_t next_mmio64;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void pci_device_init(struct pci_device *pdev, struct device *owner, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id, uint8_t revision)
{
	memset(pdev->cfg, 0, sizeof(pdev->cfg));
	memset(pdev->wmask, 0, sizeof(pdev->wmask));
	pdev->dev = owner;
	put16(pdev->cfg + PCI_VENDOR_ID, vendor);
	put16(pdev->cfg + PCI_DEVICE_ID, device);
	pdev->cfg[PCI_REVISION_ID] = revision;
	pdev->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	put16(pdev->cfg + PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	put16(pdev->cfg + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	put16(pdev->cfg + PCI_SUBSYSTEM_ID, subsys_id);
	put16(pdev->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	pdev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	pdev->cap_end = 0x40;
}

void pci_set_bar(struct pci_device *pdev, unsigned bar, uint64_t size, bool is_64, bool prefetch,
		 io_handler_fn fn, void *opaque)
{
	struct pci_bar *b = &pdev->bar[bar];
	b->size = size;
	b->is_64 = is_64;
	b->prefetch = prefetch;
	b->fn = fn;
	b->opaque = opaque;
	uint8_t flags = (is_64 ? PCI_BAR_MEM_64 : 0) | (prefetch ? PCI_BAR_PREFETCH : 0);
	uint32_t off = PCI_BAR0 + 4 * bar;
	put32(pdev->cfg + off, flags);
	/* Address bits below the size read as zero: that is how sizing works. */
	put32(pdev->wmask + off, (uint32_t)~(size - 1) & ~0xfu);
	if (is_64)
		put32(pdev->wmask + off + 4, (uint32_t)(~(size - 1) >> 32));
}

void pci_place_bar(struct pci_device *pdev, unsigned bar, uint64_t addr)
{
	pdev->bar[bar].preset = addr;
}

uint8_t pci_add_cap(struct pci_device *pdev, const void *cap, uint8_t len)
{
	uint8_t at = (uint8_t)((pdev->cap_end + 3) & ~3);
	if (len < 2 || at + len > PCI_CFG_SIZE)
		return 0;
	memcpy(pdev->cfg + at, cap, len);
	/* Link at the end of the list. */
	pdev->cfg[at + 1] = 0;
	if (!(pdev->cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST)) {
		pdev->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
		pdev->cfg[PCI_CAPABILITY_LIST] = at;
	} else {
		uint8_t p = pdev->cfg[PCI_CAPABILITY_LIST];
		while (pdev->cfg[p + 1])
			p = pdev->cfg[p + 1];
		pdev->cfg[p + 1] = at;
	}
	pdev->cap_end = (uint8_t)(at + len);
	return at;
}

static uint64_t bar_address(const struct pci_device *pdev, unsigned bar)
{
	uint32_t off = PCI_BAR0 + 4 * bar;
	uint64_t addr = get32(pdev->cfg + off) & ~0xfull;
	if (pdev->bar[bar].is_64)
		addr |= (uint64_t)get32(pdev->cfg + off + 4) << 32;
	return addr;
}

/* Sizing writes all ones to a BAR's address bits, one dword at a time. */
static bool is_probe(const struct pci_device *pdev, unsigned i)
{
	const struct pci_bar *b = &pdev->bar[i];
	uint32_t lo = get32(pdev->cfg + PCI_BAR0 + 4 * i) & ~0xfu, lo_mask = (uint32_t)~(b->size - 1) & ~0xfu;
	if (lo_mask && lo == lo_mask)
		return true;
	if (b->is_64) {
		uint32_t hi = get32(pdev->cfg + PCI_BAR0 + 4 * i + 4), hi_mask = (uint32_t)(~(b->size - 1) >> 32);
		return hi_mask && hi == hi_mask;
	}
	return false;
}

static void set_decoding(struct pci_device *pdev, unsigned i, bool on)
{
	struct pci_bar *b = &pdev->bar[i];
	if (!b->fn || b->decoding == on)
		return;
	if (on && bus_register(&pdev->bus->vm->mmio, b->addr, b->size, b->fn, b->opaque, pdev->dev) < 0) {
		device_reject(pdev->dev, "BAR%u at 0x%llx+0x%llx overlaps another device; left unmapped", i,
			      (unsigned long long)b->addr, (unsigned long long)b->size);
		return;
	}
	if (!on)
		bus_unregister(&pdev->bus->vm->mmio, b->addr, b->opaque);
	b->decoding = on;
}

/* Follows the guest's BAR and command registers. Telling a device that its
 * BAR moved is expensive (KVM memory slots and ioeventfds each wait for an
 * SRCU grace period), so it happens only when an address really changes:
 * memory decoding switched off and on around BAR sizing, as guests do, only
 * takes the MMIO handler off ferry's bus and puts it back. */
static void update_bars(struct pci_device *pdev)
{
	bool decode = pci_cfg_read16(pdev, PCI_COMMAND) & PCI_COMMAND_MEMORY;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &pdev->bar[i];
		if (!b->size)
			continue;
		if (!is_probe(pdev, i)) {
			uint64_t addr = bar_address(pdev, i);
			bool placeable = addr != 0 && addr + b->size > addr && addr + b->size <= (1ull << 52);
			if (b->mapped && (!placeable || addr != b->addr)) {
				set_decoding(pdev, i, false);
				b->mapped = false;
				if (pdev->ops && pdev->ops->bar_mapped)
					pdev->ops->bar_mapped(pdev, i, b->addr, false);
			}
			if (!b->mapped && placeable && decode) {
				b->addr = addr;
				b->mapped = true;
				if (pdev->ops && pdev->ops->bar_mapped)
					pdev->ops->bar_mapped(pdev, i, addr, true);
			}
		}
		set_decoding(pdev, i, b->mapped && decode && !is_probe(pdev, i));
		if (b->is_64)
			i++;
	}
}

static void config_write(struct pci_device *pdev, uint32_t off, uint32_t len, uint32_t val)
{
	for (uint32_t i = 0; i < len; i++) {
		uint8_t m = pdev->wmask[off + i];
		pdev->cfg[off + i] = (uint8_t)((pdev->cfg[off + i] & ~m) | ((val >> (8 * i)) & m));
	}
	if ((off < PCI_BAR0 + 24 && off + len > PCI_BAR0) || (off < PCI_COMMAND + 2 && off + len > PCI_COMMAND))
		update_bars(pdev);
	if (pdev->ops && pdev->ops->config_written)
		pdev->ops->config_written(pdev, off, len);
}

static uint32_t config_read(struct pci_device *pdev, uint32_t off, uint32_t len)
{
	uint32_t v = 0;
	if (pdev->ops && pdev->ops->config_read && pdev->ops->config_read(pdev, off, len, &v))
		return v;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint32_t)pdev->cfg[off + i] << (8 * i);
	return v;
}

static void config_address_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	if (off != 0 || len != 4) {
		/* Byte accesses at 0xcf8-0xcfb are not mechanism #1; ignore. */
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	if (is_write)
		bus->config_address = get32(data);
	else
		put32(data, bus->config_address);
	pthread_mutex_unlock(&bus->lock);
}

/* One access with bus->lock held. */
static void config_access_locked(struct pci_bus *bus, unsigned busnr, unsigned slot, unsigned fn, uint32_t reg,
				 uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_device *pdev = busnr == 0 && slot < PCI_MAX_SLOTS && fn == 0 ? bus->slot[slot] : NULL;
	if (!pdev || (len != 1 && len != 2 && len != 4) || reg % len || reg + len > PCI_EXT_CFG_SIZE) {
		if (!is_write)
			memset(data, 0xff, len); /* no device: all ones, as on hardware */
	} else if (reg >= PCI_CFG_SIZE) {
		/* Extended configuration space exists (ECAM) but holds nothing. */
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		uint32_t v = 0;
		memcpy(&v, data, len);
		config_write(pdev, reg, len, v);
	} else {
		uint32_t v = config_read(pdev, reg, len);
		memcpy(data, &v, len);
	}
}

void pci_bus_config_access(struct pci_bus *bus, unsigned busnr, unsigned slot, unsigned fn, uint32_t reg,
			   uint8_t *data, uint32_t len, bool is_write)
{
	pthread_mutex_lock(&bus->lock);
	config_access_locked(bus, busnr, slot, fn, reg, data, len, is_write);
	pthread_mutex_unlock(&bus->lock);
}

static void config_data_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	pthread_mutex_lock(&bus->lock);
	uint32_t a = bus->config_address;
	if (a & PCI_CONFIG_ENABLE)
		config_access_locked(bus, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7,
				     (a & 0xfc) + (uint32_t)off, data, len, is_write);
	else if (!is_write)
		memset(data, 0xff, len);
	pthread_mutex_unlock(&bus->lock);
}

struct device *pci_bus_device(struct pci_bus *bus)
{
	return &bus->dev;
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *pdev, char *err, size_t errlen)
{
	pthread_mutex_lock(&bus->lock);
	unsigned slot = 0;
	while (slot < PCI_MAX_SLOTS && bus->slot[slot])
		slot++;
	if (slot == PCI_MAX_SLOTS) {
		pthread_mutex_unlock(&bus->lock);
		snprintf(err, errlen, "PCI bus is full (%d slots)", PCI_MAX_SLOTS);
		return -1;
	}
	pdev->bus = bus;
	pdev->slot = slot;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &pdev->bar[i];
		if (!b->size)
			continue;
		uint64_t *next = b->is_64 ? &bus->next_mmio64 : &bus->next_mmio32;
		uint64_t addr = b->preset ? b->preset : (*next + b->size - 1) & ~(b->size - 1);
		/* BARs stay inside the host bridge's windows (the DSDT's _CRS), or an
		 * ACPI guest would move them. */
		if (!b->is_64 && addr + b->size > FERRY_PCI_MMIO32_GPA + FERRY_PCI_MMIO32_SIZE) {
			pthread_mutex_unlock(&bus->lock);
			snprintf(err, errlen, "PCI: no room for BAR%u of %llu bytes below 4 GiB", i,
				 (unsigned long long)b->size);
			return -1;
		}
		if (b->is_64 && (addr < FERRY_PCI_MMIO64_GPA ||
				 addr + b->size > FERRY_PCI_MMIO64_GPA + FERRY_PCI_MMIO64_SIZE)) {
			pthread_mutex_unlock(&bus->lock);
			snprintf(err, errlen, "PCI: no room for BAR%u of %llu bytes in the 64-bit window", i,
				 (unsigned long long)b->size);
			return -1;
		}
		if (addr + b->size > *next)
			*next = addr + b->size;
		uint32_t off = PCI_BAR0 + 4 * i;
		put32(pdev->cfg + off, (get32(pdev->cfg + off) & 0xf) | (uint32_t)addr);
		if (b->is_64) {
			put32(pdev->cfg + off + 4, (uint32_t)(addr >> 32));
			i++;
		}
	}
	/* ferry plays firmware: BARs assigned and decoding on, as SeaBIOS leaves them. */
	put16(pdev->cfg + PCI_COMMAND, pci_cfg_read16(pdev, PCI_COMMAND) | PCI_COMMAND_MEMORY);
	bus->slot[slot] = pdev;
	update_bars(pdev);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

static void pci_bus_destroy(struct device *dev)
{
	struct pci_bus *bus = (struct pci_bus *)dev;
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

static const struct device_ops pci_bus_ops = {
	.destroy = pci_bus_destroy,
};

struct pci_bus *pci_bus_create(struct vm *vm, char *err, size_t errlen)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	if (!bus) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(bus->dev.name, sizeof(bus->dev.name), "pci");
	bus->dev.ops = &pci_bus_ops;
	bus->dev.vm = vm;
	bus->vm = vm;
	pthread_mutex_init(&bus->lock, NULL);
	bus->next_mmio32 = FERRY_PCI_MMIO32_GPA;
	bus->next_mmio64 = vm->next_window_gpa; /* above the device windows */

	/* 00:00.0 host bridge (the ID Firecracker also uses). */
	pci_device_init(&bus->host_bridge, &bus->dev, PCI_VENDOR_ID_INTEL, 0x0d57, 0x060000, 0, 0, 0);
	bus->host_bridge.bus = bus;
	bus->slot[0] = &bus->host_bridge;

	if (bus_register(&vm->pio, PCI_CONFIG_ADDRESS_PORT, 4, config_address_io, bus, &bus->dev) < 0 ||
	    bus_register(&vm->pio, PCI_CONFIG_DATA_PORT, 4, config_data_io, bus, &bus->dev) < 0) {
		snprintf(err, errlen, "PCI: ports 0xcf8-0xcff already taken");
		pci_bus_destroy(&bus->dev);
		return NULL;
	}
	if (pci_ecam_register(bus, &vm->mmio) < 0) {
		snprintf(err, errlen, "PCI: the ECAM window at 0x%llx is already taken",
			 (unsigned long long)FERRY_PCI_ECAM_GPA);
		pci_bus_destroy(&bus->dev);
		return NULL;
	}
	vm_add_device(vm, &bus->dev);
	return bus;
}
