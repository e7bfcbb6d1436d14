/* Local APIC in xAPIC (MMIO) mode (kernel/lapic.c). */
#ifndef GUEST_LAPIC_H
#define GUEST_LAPIC_H

#include <stdint.h>

/* Records the LAPIC base (from IA32_APIC_BASE; the MADT's value if that MSR
 * disagrees is reported) and enables the BSP's LAPIC. */
void lapic_init(uint64_t madt_base);
/* Enables this CPU's LAPIC: spurious vector, LINT0 masked, LINT1 NMI, error vector. */
void lapic_init_cpu(void);
uint64_t lapic_base(void);
uint32_t lapic_id(void);
void lapic_eoi(void);

void lapic_send_ipi(uint32_t apic_id, uint8_t vector);
void lapic_send_self_ipi(uint8_t vector);
void lapic_send_init(uint32_t apic_id);
void lapic_send_sipi(uint32_t apic_id, uint8_t page);

/* One-shot timer in bus clocks divided by LAPIC_TIMER_DIVIDE; 0 stops it. */
#define LAPIC_TIMER_DIVIDE 16
void lapic_timer_oneshot(uint8_t vector, uint32_t count);
uint32_t lapic_timer_remaining(void);

#endif
