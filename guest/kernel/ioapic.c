/* I/O APICs: indirect registers through IOREGSEL/IOWIN. Redirection entry i
 * occupies registers 0x10 + 2i (low: vector, flags, mask) and 0x11 + 2i
 * (high: destination APIC ID in bits 24-31). */
#include "acpi.h"
#include "ioapic.h"
#include "kernel.h"
#include "spinlock.h"
#include "x86.h"

#define IOREGSEL 0x00
#define IOWIN    0x10
#define IOAPIC_VER 0x01
#define IOAPIC_REDTBL(i) (0x10 + 2 * (i))
#define REDIR_ACTIVE_LOW (1u << 13)
#define REDIR_LEVEL      (1u << 15)
#define REDIR_MASKED     (1u << 16)

/* MPS INTI flags in MADT interrupt source overrides. */
#define INTI_POLARITY_MASK 0x3
#define INTI_ACTIVE_LOW    0x3
#define INTI_TRIGGER_MASK  0xc
#define INTI_LEVEL         0xc

static struct {
	uintptr_t base;
	uint32_t gsi_base;
	unsigned inputs;
} ioapics[ACPI_MAX_IOAPICS];
static unsigned nioapics;
static struct spinlock lock = SPINLOCK_INIT;

static uint32_t ioapic_read(uintptr_t base, uint32_t reg)
{
	mmio_write32(base + IOREGSEL, reg);
	return mmio_read32(base + IOWIN);
}

static void ioapic_write(uintptr_t base, uint32_t reg, uint32_t v)
{
	mmio_write32(base + IOREGSEL, reg);
	mmio_write32(base + IOWIN, v);
}

unsigned ioapic_init(void)
{
	unsigned total = 0;

	for (unsigned i = 0; i < acpi.nioapics; i++) {
		uintptr_t base = acpi.ioapic[i].addr;
		unsigned inputs = ((ioapic_read(base, IOAPIC_VER) >> 16) & 0xff) + 1;

		ioapics[nioapics].base = base;
		ioapics[nioapics].gsi_base = acpi.ioapic[i].gsi_base;
		ioapics[nioapics].inputs = inputs;
		nioapics++;
		for (unsigned e = 0; e < inputs; e++)
			ioapic_write(base, IOAPIC_REDTBL(e), REDIR_MASKED);
		total += inputs;
	}
	return total;
}

/* Finds the I/O APIC serving gsi; returns its index and the input number. */
static int lookup(uint32_t gsi, unsigned *input)
{
	for (unsigned i = 0; i < nioapics; i++) {
		if (gsi >= ioapics[i].gsi_base && gsi < ioapics[i].gsi_base + ioapics[i].inputs) {
			*input = gsi - ioapics[i].gsi_base;
			return (int)i;
		}
	}
	return -1;
}

int ioapic_route_gsi(uint32_t gsi, uint8_t vector, uint32_t apic_id, unsigned flags)
{
	unsigned input;
	int i = lookup(gsi, &input);
	uint32_t lo = vector;
	uint64_t irqflags;

	if (i < 0)
		return -1;
	if (flags & IOAPIC_LEVEL)
		lo |= REDIR_LEVEL;
	if (flags & IOAPIC_ACTIVE_LOW)
		lo |= REDIR_ACTIVE_LOW;
	irqflags = spin_lock_irqsave(&lock);
	/* Mask while the destination changes, then unmask with the new vector. */
	ioapic_write(ioapics[i].base, IOAPIC_REDTBL(input), REDIR_MASKED);
	ioapic_write(ioapics[i].base, IOAPIC_REDTBL(input) + 1, apic_id << 24);
	ioapic_write(ioapics[i].base, IOAPIC_REDTBL(input), lo);
	spin_unlock_irqrestore(&lock, irqflags);
	return 0;
}

int ioapic_mask_gsi(uint32_t gsi)
{
	unsigned input;
	int i = lookup(gsi, &input);
	uint64_t irqflags;

	if (i < 0)
		return -1;
	irqflags = spin_lock_irqsave(&lock);
	ioapic_write(ioapics[i].base, IOAPIC_REDTBL(input),
		     ioapic_read(ioapics[i].base, IOAPIC_REDTBL(input)) | REDIR_MASKED);
	spin_unlock_irqrestore(&lock, irqflags);
	return 0;
}

uint32_t ioapic_isa_irq_to_gsi(unsigned irq, unsigned *flags)
{
	*flags = 0;  /* ISA default: edge-triggered, active high */
	for (unsigned i = 0; i < acpi.nisos; i++) {
		if (acpi.iso[i].irq != irq)
			continue;
		if ((acpi.iso[i].flags & INTI_POLARITY_MASK) == INTI_ACTIVE_LOW)
			*flags |= IOAPIC_ACTIVE_LOW;
		if ((acpi.iso[i].flags & INTI_TRIGGER_MASK) == INTI_LEVEL)
			*flags |= IOAPIC_LEVEL;
		return acpi.iso[i].gsi;
	}
	return irq;
}

int ioapic_route_isa_irq(unsigned irq, uint8_t vector, uint32_t apic_id)
{
	unsigned flags;
	uint32_t gsi = ioapic_isa_irq_to_gsi(irq, &flags);

	return ioapic_route_gsi(gsi, vector, apic_id, flags);
}
