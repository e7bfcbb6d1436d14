/* PCI enumeration and configuration through ports 0xcf8/0xcfc. Each access is
 * two VM exits, so enumeration reads only what it keeps. */
#include <ferry/ivshmem.h>
#include <ferry/layout.h>
#include <ferry/pci_regs.h>
#include <ferry/virtio.h>
#include "boot.h"
#include "kernel.h"
#include "paging.h"
#include "pci.h"
#include "spinlock.h"
#include "x86.h"

#define PCI_HEADER_MULTIFUNCTION 0x80
#define PCI_HEADER_BRIDGE        0x01
#define PCI_SECONDARY_BUS        0x19
#define PCI_CLASS_BRIDGE_PCI     0x0604
#define MSI_ADDRESS_BASE         0xfee00000u
#define MMIO32_LIMIT             0xfec00000ull  /* IOAPIC, LAPIC, firmware above */

static struct pci_dev devices[PCI_MAX_DEVICES];
static unsigned ndevices;
static struct spinlock cfg_lock = SPINLOCK_INIT;
static uint64_t mmio32_next, mmio64_next;  /* where unassigned BARs go */

static uint32_t cfg_address(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off)
{
	return PCI_CONFIG_ENABLE | (uint32_t)bus << 16 | (uint32_t)dev << 11 |
	       (uint32_t)fn << 8 | (off & 0xfc);
}

static uint32_t cfg_read(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off)
{
	uint64_t flags = spin_lock_irqsave(&cfg_lock);
	uint32_t v;

	outl(PCI_CONFIG_ADDRESS_PORT, cfg_address(bus, dev, fn, off));
	v = inl(PCI_CONFIG_DATA_PORT);
	spin_unlock_irqrestore(&cfg_lock, flags);
	return v >> (8 * (off & 3));
}

static void cfg_write(uint8_t bus, uint8_t dev, uint8_t fn, unsigned off, uint32_t v, unsigned size)
{
	uint64_t flags = spin_lock_irqsave(&cfg_lock);
	uint16_t port = PCI_CONFIG_DATA_PORT + (off & 3);

	outl(PCI_CONFIG_ADDRESS_PORT, cfg_address(bus, dev, fn, off));
	if (size == 1)
		outb(port, (uint8_t)v);
	else if (size == 2)
		outw(port, (uint16_t)v);
	else
		outl(port, v);
	spin_unlock_irqrestore(&cfg_lock, flags);
}

uint8_t pci_read8(const struct pci_dev *d, unsigned off) { return (uint8_t)cfg_read(d->bus, d->dev, d->fn, off); }
uint16_t pci_read16(const struct pci_dev *d, unsigned off) { return (uint16_t)cfg_read(d->bus, d->dev, d->fn, off); }
uint32_t pci_read32(const struct pci_dev *d, unsigned off) { return cfg_read(d->bus, d->dev, d->fn, off); }
void pci_write8(const struct pci_dev *d, unsigned off, uint8_t v) { cfg_write(d->bus, d->dev, d->fn, off, v, 1); }
void pci_write16(const struct pci_dev *d, unsigned off, uint16_t v) { cfg_write(d->bus, d->dev, d->fn, off, v, 2); }
void pci_write32(const struct pci_dev *d, unsigned off, uint32_t v) { cfg_write(d->bus, d->dev, d->fn, off, v, 4); }

unsigned pci_count(void) { return ndevices; }
struct pci_dev *pci_get(unsigned index) { return index < ndevices ? &devices[index] : NULL; }

struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned nth)
{
	for (unsigned i = 0; i < ndevices; i++) {
		if (devices[i].vendor == vendor && devices[i].device == device && nth-- == 0)
			return &devices[i];
	}
	return NULL;
}

uint8_t pci_find_cap(const struct pci_dev *d, uint8_t id, uint8_t after)
{
	uint8_t off;

	if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = after ? pci_read8(d, after + 1) : pci_read8(d, PCI_CAPABILITY_LIST);
	/* At most 48 capabilities fit in 256 bytes: bounds a looping list. */
	for (int n = 0; n < 48 && off >= 0x40; n++) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
		off = pci_read8(d, off + 1);
	}
	return 0;
}

void pci_enable(struct pci_dev *d)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);

	pci_write16(d, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

uintptr_t pci_map_bar(struct pci_dev *d, unsigned bar)
{
	struct pci_bar *b = &d->bar[bar];

	if (bar >= 6 || b->io || !b->size || !b->addr)
		return 0;
	if (!paging_is_mapped(b->addr, b->size) && paging_map(b->addr, b->size, PAGING_UNCACHED))
		return 0;
	return (uintptr_t)b->addr;
}

/* Reads and sizes BAR i (decoding must be off); returns how many slots it uses. */
static unsigned read_bar(struct pci_dev *d, unsigned i)
{
	unsigned off = PCI_BAR0 + 4 * i;
	uint32_t lo = pci_read32(d, off), mask_lo, hi = 0, mask_hi = 0xffffffff;
	struct pci_bar *b = &d->bar[i];

	pci_write32(d, off, 0xffffffff);
	mask_lo = pci_read32(d, off);
	pci_write32(d, off, lo);
	if (lo & PCI_BAR_IO) {
		b->io = true;
		b->addr = lo & ~3u;
		mask_lo &= ~3u;
		b->size = mask_lo ? (uint16_t)(~mask_lo + 1) : 0;
		return 1;
	}
	b->prefetch = lo & PCI_BAR_PREFETCH;
	b->mem64 = ((lo >> 1) & 3) == 2 && i < 5;
	if (b->mem64) {
		hi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, 0xffffffff);
		mask_hi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, hi);
	}
	b->addr = (uint64_t)hi << 32 | (lo & ~0xfu);
	mask_lo &= ~0xfu;
	b->size = (mask_lo || (b->mem64 && mask_hi)) ? ~((uint64_t)mask_hi << 32 | mask_lo) + 1 : 0;
	if (!b->mem64)
		b->size &= 0xffffffff;
	return b->mem64 ? 2 : 1;
}

/* Gives a memory BAR left at 0 an address from the windows above RAM. */
static void assign_bar(struct pci_dev *d, unsigned i)
{
	struct pci_bar *b = &d->bar[i];
	uint64_t a = ALIGN_UP(mmio32_next, b->size);

	if (a + b->size <= MMIO32_LIMIT) {
		mmio32_next = a + b->size;
	} else if (b->mem64) {
		a = ALIGN_UP(mmio64_next, b->size);
		mmio64_next = a + b->size;
	} else {
		kprintf("pci %02x:%02x.%x: no room for BAR%u (%lu KiB)\n",
			d->bus, d->dev, d->fn, i, b->size >> 10);
		return;
	}
	b->addr = a;
	pci_write32(d, PCI_BAR0 + 4 * i, (uint32_t)a | (pci_read32(d, PCI_BAR0 + 4 * i) & 0xf));
	if (b->mem64)
		pci_write32(d, PCI_BAR0 + 4 * i + 4, (uint32_t)(a >> 32));
}

static const char *describe(const struct pci_dev *d)
{
	static const struct { uint32_t class; const char *name; } classes[] = {
		{ 0x0100, "SCSI" }, { 0x0101, "IDE" }, { 0x0106, "SATA" },
		{ 0x0200, "ethernet" }, { 0x0300, "VGA" }, { 0x0500, "RAM" },
		{ 0x0600, "host bridge" }, { 0x0601, "ISA bridge" }, { 0x0604, "PCI bridge" },
		{ 0x0c03, "USB" }, { 0x0c05, "SMBus" },
	};
	static const char *const virtio[] = {
		[VIRTIO_ID_NET] = "virtio-net", [VIRTIO_ID_BLOCK] = "virtio-blk",
		[VIRTIO_ID_CONSOLE] = "virtio-console", [VIRTIO_ID_RNG] = "virtio-rng",
		[VIRTIO_ID_BALLOON] = "virtio-balloon",
	};

	/* ivshmem's ID falls in the range virtio's device types map to. */
	if (d->vendor == PCI_VENDOR_ID_REDHAT_QUMRANET && d->device == IVSHMEM_PCI_DEVICE)
		return "ivshmem";
	if (d->vendor == PCI_VENDOR_ID_REDHAT_QUMRANET && d->device >= VIRTIO_PCI_DEVICE_ID_BASE) {
		unsigned type = d->device - VIRTIO_PCI_DEVICE_ID_BASE;
		return type < ARRAY_SIZE(virtio) && virtio[type] ? virtio[type] : "virtio";
	}
	for (unsigned i = 0; i < ARRAY_SIZE(classes); i++) {
		if (classes[i].class == d->class >> 8)
			return classes[i].name;
	}
	return "";
}

static void scan_bus(uint8_t bus, unsigned depth);

static unsigned bar_count(const struct pci_dev *d)
{
	return d->header_type == 0 ? 6 : d->header_type == PCI_HEADER_BRIDGE ? 2 : 0;
}

/* Records a function with its BARs and MSI-X capability; recurses into bridges. */
static void add_function(uint8_t bus, uint8_t dev, uint8_t fn, uint32_t id, unsigned depth)
{
	struct pci_dev *d;
	uint16_t cmd;

	if (ndevices == PCI_MAX_DEVICES) {
		kprintf("pci: more than %d functions, %02x:%02x.%x ignored\n", PCI_MAX_DEVICES, bus, dev, fn);
		return;
	}
	d = &devices[ndevices++];
	d->bus = bus;
	d->dev = dev;
	d->fn = fn;
	d->vendor = (uint16_t)id;
	d->device = (uint16_t)(id >> 16);
	d->class = pci_read32(d, PCI_REVISION_ID) >> 8;
	d->header_type = pci_read8(d, PCI_HEADER_TYPE) & ~PCI_HEADER_MULTIFUNCTION;

	if (bar_count(d)) {
		/* Sizing writes all-ones to the BARs: decoding stays off meanwhile. */
		cmd = pci_read16(d, PCI_COMMAND);
		pci_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
		for (unsigned i = 0; i < bar_count(d);)
			i += read_bar(d, i);
		pci_write16(d, PCI_COMMAND, cmd);
	}
	d->msix_cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	if (d->msix_cap)
		d->msix_entries = (pci_read16(d, d->msix_cap + PCI_MSIX_CTRL) & PCI_MSIX_CTRL_SIZE_MASK) + 1;

	if (d->header_type == PCI_HEADER_BRIDGE && depth < 8) {
		uint8_t secondary = pci_read8(d, PCI_SECONDARY_BUS);
		if (secondary > bus)  /* 0 or backwards: not configured */
			scan_bus(secondary, depth + 1);
	}
}

static void scan_bus(uint8_t bus, unsigned depth)
{
	for (uint8_t dev = 0; dev < 32; dev++) {
		uint32_t id = cfg_read(bus, dev, 0, PCI_VENDOR_ID);
		unsigned nfn;

		if ((uint16_t)id == 0xffff)
			continue;
		nfn = cfg_read(bus, dev, 0, PCI_HEADER_TYPE) & PCI_HEADER_MULTIFUNCTION ? 8 : 1;
		for (uint8_t fn = 0; fn < nfn; fn++) {
			if (fn)
				id = cfg_read(bus, dev, fn, PCI_VENDOR_ID);
			if ((uint16_t)id != 0xffff)
				add_function(bus, dev, fn, id, depth);
		}
	}
}

/* Unassigned BARs go above everything already there: the memory map's ranges
 * below 0xfec00000 (RAM and reserved alike, e.g. an ECAM window) and the BARs
 * the firmware or VMM assigned. 64-bit BARs that do not fit below 4 GiB go
 * above all memory, from 512 GiB up. */
static void init_windows(void)
{
	mmio32_next = FERRY_MMIO_HOLE_GPA;
	mmio64_next = FERRY_PCI_MMIO64_GPA;
	for (unsigned i = 0; i < boot_memmap_entries; i++) {
		uint64_t end = boot_memmap[i].addr + boot_memmap[i].size;
		if (end <= MMIO32_LIMIT)
			mmio32_next = MAX(mmio32_next, end);
		mmio64_next = MAX(mmio64_next, ALIGN_UP(end, GiB));
	}
	for (unsigned i = 0; i < ndevices; i++) {
		for (unsigned b = 0; b < 6; b++) {
			const struct pci_bar *bar = &devices[i].bar[b];
			uint64_t end = bar->addr + bar->size;
			if (bar->io || !bar->addr)
				continue;
			if (end <= MMIO32_LIMIT)
				mmio32_next = MAX(mmio32_next, end);
			else
				mmio64_next = MAX(mmio64_next, ALIGN_UP(end, GiB));
		}
	}
}

static void assign_bars(struct pci_dev *d)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);
	bool decode_off = false;

	for (unsigned i = 0; i < bar_count(d); i++) {
		if (d->bar[i].io || !d->bar[i].size || d->bar[i].addr)
			continue;
		if (!decode_off) {
			pci_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO));
			decode_off = true;
		}
		assign_bar(d, i);
	}
	if (decode_off)
		pci_write16(d, PCI_COMMAND, cmd);
}

unsigned pci_init(void)
{
	/* Every PCI bus has a host bridge at 00:00.0; without one (e.g. QEMU's
	 * microvm) the ports read all-ones and there is nothing to scan. */
	if ((uint16_t)cfg_read(0, 0, 0, PCI_VENDOR_ID) == 0xffff) {
		pr_info("pci: no host bridge at 00:00.0, no PCI\n");
		return 0;
	}
	scan_bus(0, 0);
	init_windows();
	for (unsigned i = 0; i < ndevices; i++) {
		struct pci_dev *d = &devices[i];
		char msix[16] = "";

		assign_bars(d);
		if (d->msix_cap)
			ksnprintf(msix, sizeof(msix), " msix %u", d->msix_entries);
		pr_info("pci %02x:%02x.%x %04x:%04x class %06x %s%s\n", d->bus, d->dev, d->fn,
			d->vendor, d->device, d->class, describe(d), msix);
	}
	return ndevices;
}

int pci_msix_init(struct pci_dev *d)
{
	uint32_t table;
	unsigned bir;
	uint64_t offset;
	uintptr_t base;

	if (!d->msix_cap)
		return -1;
	table = pci_read32(d, d->msix_cap + PCI_MSIX_TABLE);
	bir = table & 7;
	offset = table & ~7u;
	if (bir >= 6 || d->bar[bir].io ||
	    offset + (uint64_t)d->msix_entries * PCI_MSIX_ENTRY_SIZE > d->bar[bir].size) {
		kprintf("pci %02x:%02x.%x: MSI-X table outside BAR%u\n", d->bus, d->dev, d->fn, bir);
		return -1;
	}
	base = pci_map_bar(d, bir);
	if (!base)
		return -1;
	d->msix_table = base + offset;
	pci_enable(d);
	pci_write16(d, PCI_COMMAND, pci_read16(d, PCI_COMMAND) | PCI_COMMAND_INTX_DISABLE);
	pci_write16(d, d->msix_cap + PCI_MSIX_CTRL, PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL);
	for (unsigned i = 0; i < d->msix_entries; i++)
		pci_msix_mask(d, i, true);
	return d->msix_entries;
}

void pci_msix_mask(struct pci_dev *d, unsigned entry, bool masked)
{
	uintptr_t ctrl = d->msix_table + entry * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_CTRL;

	if (d->msix_table && entry < d->msix_entries)
		mmio_write32(ctrl, masked ? PCI_MSIX_ENTRY_CTRL_MASK : 0);
}

int pci_msix_route(struct pci_dev *d, unsigned entry, uint8_t vector, uint32_t apic_id)
{
	uintptr_t e = d->msix_table + entry * PCI_MSIX_ENTRY_SIZE;

	if (!d->msix_table || entry >= d->msix_entries)
		return -1;
	mmio_write32(e + PCI_MSIX_ENTRY_CTRL, PCI_MSIX_ENTRY_CTRL_MASK);
	mmio_write32(e + PCI_MSIX_ENTRY_ADDR_LO, MSI_ADDRESS_BASE | apic_id << 12);
	mmio_write32(e + PCI_MSIX_ENTRY_ADDR_HI, 0);
	mmio_write32(e + PCI_MSIX_ENTRY_DATA, vector);  /* fixed delivery, edge */
	mmio_write32(e + PCI_MSIX_ENTRY_CTRL, 0);
	return 0;
}

void pci_msix_unmask_function(struct pci_dev *d)
{
	pci_write16(d, d->msix_cap + PCI_MSIX_CTRL, PCI_MSIX_CTRL_ENABLE);
}
