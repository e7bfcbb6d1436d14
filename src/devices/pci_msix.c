#include "devices/pci_msix.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devices/pci.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

struct __attribute__((packed)) msix_cap {
	uint8_t id, next;
	uint16_t control;
	uint32_t table;  /* offset | BIR */
	uint32_t pba;
};

static uint16_t control(struct msix *m)
{
	return m->control;
}

/* Lock held. */
static bool enabled(struct msix *m)
{
	return control(m) & PCI_MSIX_CTRL_ENABLE;
}

bool msix_enabled(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	bool on = enabled(m);
	pthread_mutex_unlock(&m->lock);
	return on;
}

static bool masked(struct msix *m, struct msix_vector *v)
{
	return (control(m) & PCI_MSIX_CTRL_MASKALL) || (v->ctrl & PCI_MSIX_ENTRY_CTRL_MASK);
}

static struct irq_chip *irqchip(struct msix *m)
{
	return &m->pdev->dev->vm->irq;
}

/* Delivers a vector now; the route is brought up to date first. Lock held. */
static void fire(struct msix *m, struct msix_vector *v)
{
	if (!v->routed) {
		uint64_t addr = (uint64_t)v->addr_hi << 32 | v->addr_lo;
		if (irq_msi_set(irqchip(m), (uint32_t)v->gsi, addr, v->data) < 0) {
			device_reject(m->pdev->dev, "MSI-X vector %ld: address 0x%llx is not an interrupt address",
				      (long)(v - m->v), (unsigned long long)addr);
			return;
		}
		v->routed = true;
	}
	uint64_t one = 1;
	if (write(v->efd, &one, sizeof(one)) == sizeof(one))
		atomic_fetch_add(&m->pdev->dev->ctr.interrupts, 1);
}

/* Delivers what was held back by a mask that is now gone. Lock held. */
static void deliver_pending(struct msix *m)
{
	if (!enabled(m))
		return;
	for (unsigned i = 0; i < m->nr; i++) {
		struct msix_vector *v = &m->v[i];
		if (v->pending && !masked(m, v)) {
			v->pending = false;
			fire(m, v);
		}
	}
}

int msix_init(struct msix *m, struct pci_device *pdev, unsigned nr, unsigned bar,
	      uint32_t table_off, uint32_t pba_off, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->pdev = pdev;
	pthread_mutex_init(&m->lock, NULL);
	if (nr == 0 || nr > MSIX_MAX_VECTORS) {
		snprintf(err, errlen, "MSI-X: %u vectors requested, at most %d", nr, MSIX_MAX_VECTORS);
		return -1;
	}
	struct msix_cap cap = {
		.id = PCI_CAP_ID_MSIX,
		.control = (uint16_t)(nr - 1),
		.table = table_off | bar,
		.pba = pba_off | bar,
	};
	m->cap = pci_add_cap(pdev, &cap, sizeof(cap));
	if (!m->cap) {
		snprintf(err, errlen, "MSI-X: no room in config space");
		return -1;
	}
	/* Only enable and function-mask are writable. */
	pdev->wmask[m->cap + PCI_MSIX_CTRL + 1] = (PCI_MSIX_CTRL_ENABLE | PCI_MSIX_CTRL_MASKALL) >> 8;
	for (unsigned i = 0; i < nr; i++) {
		struct msix_vector *v = &m->v[i];
		v->ctrl = PCI_MSIX_ENTRY_CTRL_MASK;
		v->efd = -1;
		v->gsi = irq_msi_alloc(irqchip(m));
		if (v->gsi < 0) {
			snprintf(err, errlen, "MSI-X: out of interrupt routes");
			return -1;
		}
		v->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (v->efd < 0 || irq_irqfd(irqchip(m), v->efd, (uint32_t)v->gsi, true) < 0) {
			snprintf(err, errlen, "MSI-X: irqfd: %s", strerror(errno));
			return -1;
		}
		m->nr++;
	}
	return 0;
}

void msix_destroy(struct msix *m)
{
	for (unsigned i = 0; i < m->nr; i++) {
		if (m->v[i].efd >= 0) {
			irq_irqfd(irqchip(m), m->v[i].efd, (uint32_t)m->v[i].gsi, false);
			close(m->v[i].efd);
		}
	}
	m->nr = 0;
	pthread_mutex_destroy(&m->lock);
}

void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	/* The spec allows aligned dword and qword accesses only. */
	if ((len != 4 && len != 8) || off % len || off / PCI_MSIX_ENTRY_SIZE >= m->nr) {
		if (!is_write)
			memset(data, 0xff, len);
		device_reject(m->pdev->dev, "MSI-X table access of %u bytes at offset 0x%llx", len,
			      (unsigned long long)off);
		return;
	}
	pthread_mutex_lock(&m->lock);
	struct msix_vector *v = &m->v[off / PCI_MSIX_ENTRY_SIZE];
	uint32_t *words[4] = { &v->addr_lo, &v->addr_hi, &v->data, &v->ctrl };
	unsigned w = (unsigned)(off % PCI_MSIX_ENTRY_SIZE) / 4;
	for (unsigned i = 0; i < len / 4; i++, w++) {
		if (is_write) {
			uint32_t val;
			memcpy(&val, data + 4 * i, 4);
			if (w == 3)
				val &= PCI_MSIX_ENTRY_CTRL_MASK;
			else
				v->routed = false; /* address or data changed */
			*words[w] = val;
		} else {
			memcpy(data + 4 * i, words[w], 4);
		}
	}
	if (is_write)
		deliver_pending(m);
	pthread_mutex_unlock(&m->lock);
}

void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	if (is_write) /* read-only */
		return;
	pthread_mutex_lock(&m->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint8_t byte = 0;
		for (unsigned bit = 0; bit < 8; bit++) {
			uint64_t vec = (off + i) * 8 + bit;
			if (vec < m->nr && m->v[vec].pending)
				byte |= (uint8_t)(1u << bit);
		}
		data[i] = byte;
	}
	pthread_mutex_unlock(&m->lock);
}

void msix_control_written(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	m->control = pci_cfg_read16(m->pdev, m->cap + PCI_MSIX_CTRL);
	deliver_pending(m);
	pthread_mutex_unlock(&m->lock);
}

bool msix_notify(struct msix *m, uint16_t vector)
{
	if (vector >= m->nr)
		return false;
	pthread_mutex_lock(&m->lock);
	bool ok = enabled(m);
	if (ok) {
		struct msix_vector *v = &m->v[vector];
		if (masked(m, v))
			v->pending = true;
		else
			fire(m, v);
	}
	pthread_mutex_unlock(&m->lock);
	return ok;
}
