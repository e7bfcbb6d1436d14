/* Interrupts into one VM: KVM's in-kernel irqchip (PIC, IOAPIC, LAPICs) and
 * PIT, a GSI routing table, MSI routes, and irqfds so that any host thread can
 * raise an interrupt with one eventfd write. */
#ifndef FERRY_IRQ_H
#define FERRY_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define IRQ_IOAPIC_PINS 24
#define IRQ_MAX_ROUTES  1024

struct kvm_irq_routing_entry;

struct irq_chip {
	int vm_fd;
	pthread_mutex_t lock;
	struct kvm_irq_routing_entry *routes;  /* whole table as given to KVM */
	unsigned nr_routes;
	uint32_t next_gsi;                     /* first free GSI for MSI routes */
	/* Without KVM (vm_fd < 0: a test VM, tests/testvm.h) nothing is
	 * injected; irqfds and line changes are recorded here instead, so tests
	 * and fuzzers see what a guest would have received. */
	int *recorded_irqfd;                   /* per GSI: the eventfd bound to it, or -1 */
	uint64_t recorded_line_raises[IRQ_IOAPIC_PINS];
};

/* Creates the irqchip and PIT and installs the PC routing for GSIs 0-23.
 * With vm_fd < 0 there is no KVM: the table is kept and checked as usual,
 * and what would reach KVM is recorded (see recorded_*). */
int irq_init(struct irq_chip *irq, int vm_fd, char *err, size_t errlen);
void irq_destroy(struct irq_chip *irq);

/* Allocates a GSI for an MSI route (not yet routed anywhere); -1 if full. */
int irq_msi_alloc(struct irq_chip *irq);
/* Points an MSI GSI at (address, data). The address must be in the LAPIC
 * window 0xfee00000-0xfeefffff; returns -1 otherwise. */
int irq_msi_set(struct irq_chip *irq, uint32_t gsi, uint64_t address, uint32_t data);
/* Binds an eventfd to a GSI: each write to it raises the interrupt in KVM. */
int irq_irqfd(struct irq_chip *irq, int efd, uint32_t gsi, bool assign);
/* Drives a legacy (IOAPIC/PIC) interrupt line. */
int irq_line(struct irq_chip *irq, uint32_t gsi, int level);
/* True if (address, data) is an MSI that x86 can deliver. */
bool irq_msi_address_valid(uint64_t address);

#endif
