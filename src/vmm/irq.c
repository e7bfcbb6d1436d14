#include "vmm/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "ferry/layout.h"

static int irq_commit(struct irq_chip *irq)
{
	if (irq->vm_fd < 0)
		return 0;
	struct kvm_irq_routing *table =
		malloc(sizeof(*table) + irq->nr_routes * sizeof(struct kvm_irq_routing_entry));
	if (!table)
		return -1;
	table->nr = irq->nr_routes;
	table->flags = 0;
	memcpy(table->entries, irq->routes, irq->nr_routes * sizeof(struct kvm_irq_routing_entry));
	int ret = ioctl(irq->vm_fd, KVM_SET_GSI_ROUTING, table);
	free(table);
	return ret;
}

static void add_irqchip_route(struct irq_chip *irq, uint32_t gsi, uint32_t chip, uint32_t pin)
{
	struct kvm_irq_routing_entry *e = &irq->routes[irq->nr_routes++];
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

int irq_init(struct irq_chip *irq, int vm_fd, char *err, size_t errlen)
{
	memset(irq, 0, sizeof(*irq));
	irq->vm_fd = vm_fd;
	pthread_mutex_init(&irq->lock, NULL);
	irq->routes = calloc(IRQ_MAX_ROUTES, sizeof(*irq->routes));
	if (!irq->routes) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (vm_fd < 0) {
		irq->recorded_irqfd = malloc(IRQ_MAX_ROUTES * sizeof(*irq->recorded_irqfd));
		if (!irq->recorded_irqfd) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (unsigned i = 0; i < IRQ_MAX_ROUTES; i++)
			irq->recorded_irqfd[i] = -1;
	} else if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -1;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (vm_fd >= 0 && ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
		return -1;
	}
	/* The PC wiring QEMU also uses: ISA IRQs 0-15 reach both 8259s and the
	 * IOAPIC, except that the timer (IRQ 0) is IOAPIC pin 2, as the MADT's
	 * interrupt source override says; GSIs 16-23 are IOAPIC-only. */
	for (uint32_t gsi = 0; gsi < IRQ_IOAPIC_PINS; gsi++) {
		if (gsi < 16 && gsi != 2)
			add_irqchip_route(irq, gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
		add_irqchip_route(irq, gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi);
	}
	irq->next_gsi = IRQ_IOAPIC_PINS;
	if (irq_commit(irq) < 0) {
		snprintf(err, errlen, "KVM_SET_GSI_ROUTING: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void irq_destroy(struct irq_chip *irq)
{
	free(irq->routes);
	irq->routes = NULL;
	free(irq->recorded_irqfd);
	irq->recorded_irqfd = NULL;
	pthread_mutex_destroy(&irq->lock);
}

int irq_msi_alloc(struct irq_chip *irq)
{
	pthread_mutex_lock(&irq->lock);
	int gsi = -1;
	if (irq->nr_routes < IRQ_MAX_ROUTES)
		gsi = (int)irq->next_gsi++;
	pthread_mutex_unlock(&irq->lock);
	return gsi;
}

bool irq_msi_address_valid(uint64_t address)
{
	return (address >> 20) == (FERRY_LAPIC_GPA >> 20);
}

int irq_msi_set(struct irq_chip *irq, uint32_t gsi, uint64_t address, uint32_t data)
{
	if (!irq_msi_address_valid(address))
		return -1;
	pthread_mutex_lock(&irq->lock);
	struct kvm_irq_routing_entry *e = NULL;
	for (unsigned i = 0; i < irq->nr_routes; i++) {
		if (irq->routes[i].gsi == gsi && irq->routes[i].type == KVM_IRQ_ROUTING_MSI) {
			e = &irq->routes[i];
			break;
		}
	}
	if (!e) {
		if (irq->nr_routes == IRQ_MAX_ROUTES) {
			pthread_mutex_unlock(&irq->lock);
			return -1;
		}
		e = &irq->routes[irq->nr_routes++];
		memset(e, 0, sizeof(*e));
		e->gsi = gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
	} else if (e->u.msi.address_lo == (uint32_t)address && e->u.msi.data == data) {
		pthread_mutex_unlock(&irq->lock);
		return 0; /* unchanged: spare KVM a table rebuild */
	}
	e->u.msi.address_lo = (uint32_t)address;
	e->u.msi.address_hi = (uint32_t)(address >> 32);
	e->u.msi.data = data;
	int ret = irq_commit(irq);
	pthread_mutex_unlock(&irq->lock);
	return ret;
}

int irq_irqfd(struct irq_chip *irq, int efd, uint32_t gsi, bool assign)
{
	if (irq->vm_fd < 0) {
		if (gsi >= IRQ_MAX_ROUTES || !irq->recorded_irqfd)
			return -1;
		irq->recorded_irqfd[gsi] = assign ? efd : -1;
		return 0;
	}
	struct kvm_irqfd req = {
		.fd = (uint32_t)efd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};
	return ioctl(irq->vm_fd, KVM_IRQFD, &req);
}

int irq_line(struct irq_chip *irq, uint32_t gsi, int level)
{
	if (irq->vm_fd < 0) {
		if (gsi >= IRQ_IOAPIC_PINS)
			return -1;
		if (level)
			__atomic_fetch_add(&irq->recorded_line_raises[gsi], 1, __ATOMIC_RELAXED);
		return 0;
	}
	struct kvm_irq_level l = { .irq = gsi, .level = level };
	return ioctl(irq->vm_fd, KVM_IRQ_LINE, &l);
}
