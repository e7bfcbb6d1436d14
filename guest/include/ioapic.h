/* I/O APICs as the MADT lists them (kernel/ioapic.c). */
#ifndef GUEST_IOAPIC_H
#define GUEST_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

#define IOAPIC_LEVEL      1u  /* level-triggered (else edge) */
#define IOAPIC_ACTIVE_LOW 2u  /* active low (else high) */

/* Masks every input of every I/O APIC; returns the number of GSIs covered. */
unsigned ioapic_init(void);
/* Routes gsi to vector on the CPU with apic_id, unmasked. Returns 0 or -1. */
int ioapic_route_gsi(uint32_t gsi, uint8_t vector, uint32_t apic_id, unsigned flags);
/* The same for an ISA IRQ, applying the MADT's interrupt source overrides. */
int ioapic_route_isa_irq(unsigned irq, uint8_t vector, uint32_t apic_id);
int ioapic_mask_gsi(uint32_t gsi);
/* The ISA IRQ's GSI and flags after overrides. */
uint32_t ioapic_isa_irq_to_gsi(unsigned irq, unsigned *flags);

#endif
