#include "devices/ivshmem.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"
#include "devices/pci_msix.h"
#include "ferry/ivshmem.h"
#include "ferry/layout.h"
#include "host/link.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

/* BAR 1: the MSI-X table from 0, the PBA from half-way, as QEMU lays it out. */
#define MSIX_BAR_SIZE 4096
#define MSIX_TABLE    0
#define MSIX_PBA      (MSIX_BAR_SIZE / 2)

struct ivshmem {
	struct device dev;
	struct pci_device pci;
	struct msix msix;
	struct shm_link *link;
	unsigned peer;               /* this device's id in the link */
	int region;                  /* the guest-memory region BAR 2 maps */
	bool attached;               /* doorbells reach this device */
	pthread_mutex_t lock;        /* the two interrupt registers */
	uint32_t intr_mask, intr_status;
};

/* The link rings this device: MSI-X vector `vector` (checked by the link
 * against IVSHMEM_VECTORS). Link lock held. */
static bool ring(void *opaque, uint16_t vector)
{
	struct ivshmem *s = opaque;
	return msix_notify(&s->msix, vector);
}

static void doorbell(struct ivshmem *s, uint32_t val)
{
	uint32_t dest = val >> 16, vector = val & 0xffff;
	enum link_ring_result r = link_ring(s->link, s->peer, dest, vector);
	if (r != LINK_OK)
		device_reject(&s->dev, "doorbell to peer %u, vector %u refused: %s", dest, vector,
			      link_ring_result_name(r));
}

/* BAR 0. The spec's registers are 32 bits wide; anything else, and the
 * reserved rest of the BAR, is refused (reads see zero). */
static void reg_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct ivshmem *s = opaque;
	uint32_t val = 0;
	if (len != 4 || off % 4) {
		device_reject(&s->dev, "register %s of %u bytes at 0x%llx (registers are aligned 32-bit)",
			      is_write ? "write" : "read", len, (unsigned long long)off);
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write)
		memcpy(&val, data, 4);
	switch (off) {
	case IVSHMEM_INTR_MASK:
	case IVSHMEM_INTR_STATUS:
		/* Reserved bits in revision 1 (interrupts are MSI-X only): kept
		 * as written, and Status clears on read, as in QEMU. */
		pthread_mutex_lock(&s->lock);
		uint32_t *reg = off == IVSHMEM_INTR_MASK ? &s->intr_mask : &s->intr_status;
		if (is_write) {
			*reg = val;
		} else {
			val = *reg;
			if (off == IVSHMEM_INTR_STATUS)
				*reg = 0;
		}
		pthread_mutex_unlock(&s->lock);
		break;
	case IVSHMEM_IV_POSITION:
		if (is_write)
			device_reject(&s->dev, "write of 0x%x to IVPosition, which is read-only", val);
		val = s->peer;
		break;
	case IVSHMEM_DOORBELL:
		if (is_write)
			doorbell(s, val);
		else
			device_reject(&s->dev, "read of Doorbell, which is write-only");
		val = 0;
		break;
	default:
		device_reject(&s->dev, "register %s at reserved offset 0x%llx", is_write ? "write" : "read",
			      (unsigned long long)off);
		val = 0;
		break;
	}
	if (!is_write)
		memcpy(data, &val, 4);
}

static void msix_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct ivshmem *s = opaque;
	if (off < MSIX_PBA)
		msix_table_io(&s->msix, off - MSIX_TABLE, data, len, is_write);
	else
		msix_pba_io(&s->msix, off - MSIX_PBA, data, len, is_write);
}

static void config_written(struct pci_device *pdev, uint32_t off, uint32_t len)
{
	struct ivshmem *s = pdev->opaque;
	if (off < s->msix.cap + 4u && off + len > s->msix.cap)
		msix_control_written(&s->msix);
}

/* The guest moved BAR 2 (or turned it off): the memory slot follows. A
 * failed move leaves it where it was. */
static void bar_mapped(struct pci_device *pdev, unsigned bar, uint64_t addr, bool mapped)
{
	struct ivshmem *s = pdev->opaque;
	struct guest_memory *mem = &s->dev.vm->mem;
	if (bar != IVSHMEM_MEM_BAR)
		return;
	const struct gm_region *r = &mem->region[s->region];
	uint64_t old = r->gpa;
	bool was = r->present;
	if (mapped == was && (!mapped || addr == old))
		return;
	if (gm_move_foreign(mem, (unsigned)s->region, addr, mapped) < 0) {
		if (gm_move_foreign(mem, (unsigned)s->region, old, was) < 0)
			log_error(s->dev.vm->name, "ivshmem: the shared memory could not be put back and is unmapped");
		device_reject(&s->dev, "cannot move the shared memory to 0x%llx; it stays at 0x%llx",
			      (unsigned long long)addr, (unsigned long long)old);
	}
}

static const struct pci_device_ops ivshmem_pci_ops = {
	.bar_mapped = bar_mapped,
	.config_written = config_written,
};

static void ivshmem_counters_json(struct device *dev, cJSON *o)
{
	struct ivshmem *s = (struct ivshmem *)dev;
	const struct link_port_counters *c = &s->link->port[s->peer].ctr;
	cJSON_AddNumberToObject(o, "link", s->link->index);
	cJSON_AddNumberToObject(o, "peer_id", s->peer);
	cJSON_AddNumberToObject(o, "peers", s->link->nr_peers);
	cJSON_AddNumberToObject(o, "size_mib", (double)(s->link->size >> 20));
	cJSON_AddNumberToObject(o, "doorbells_sent", (double)atomic_load(&c->sent));
	cJSON_AddNumberToObject(o, "doorbells_received", (double)atomic_load(&c->received));
	cJSON_AddNumberToObject(o, "doorbells_rejected", (double)atomic_load(&c->rejected));
	cJSON *by = cJSON_AddObjectToObject(o, "doorbells_rejected_by");
	for (int r = LINK_OK + 1; r < LINK_RING_MAX; r++)
		cJSON_AddNumberToObject(by, link_ring_result_name(r), (double)atomic_load(&c->rejected_by[r]));
}

static void ivshmem_free(struct ivshmem *s)
{
	/* First: once detached, no other VM's doorbell reaches this device. */
	if (s->attached)
		link_detach(s->link, s->peer);
	msix_destroy(&s->msix);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void ivshmem_destroy(struct device *dev)
{
	ivshmem_free((struct ivshmem *)dev);
}

static const struct device_ops ivshmem_ops = {
	.counters_json = ivshmem_counters_json,
	.destroy = ivshmem_destroy,
};

int ivshmem_memory_create(struct vm *vm, char *err, size_t errlen)
{
	unsigned peer;
	struct shm_link *l = link_find(vm->vmm->links, vm->id, &peer);
	if (!l)
		return 0;
	vm->ivshmem_gpa = vm_window_gpa(vm, l->size);
	vm->ivshmem_region = gm_add_foreign(&vm->mem, "ivshmem", vm->ivshmem_gpa, l->size, l->hva, false, err, errlen);
	return vm->ivshmem_region < 0 ? -1 : 0;
}

int ivshmem_create(struct vm *vm, char *err, size_t errlen)
{
	unsigned peer;
	struct shm_link *l = link_find(vm->vmm->links, vm->id, &peer);
	if (!l || vm->ivshmem_region < 0)
		return 0;
	struct ivshmem *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "ivshmem: out of memory");
		return -1;
	}
	snprintf(s->dev.name, sizeof(s->dev.name), "ivshmem");
	s->dev.ops = &ivshmem_ops;
	s->dev.vm = vm;
	s->link = l;
	s->peer = peer;
	s->region = vm->ivshmem_region;
	pthread_mutex_init(&s->lock, NULL);

	struct pci_device *pdev = &s->pci;
	pci_device_init(pdev, &s->dev, IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, IVSHMEM_PCI_CLASS,
			PCI_VENDOR_ID_REDHAT_QUMRANET, IVSHMEM_PCI_SUBSYS, IVSHMEM_PCI_REVISION);
	pdev->ops = &ivshmem_pci_ops;
	pdev->opaque = s;
	pci_set_bar(pdev, IVSHMEM_REG_BAR, IVSHMEM_REG_SIZE, false, false, reg_io, s);
	pci_set_bar(pdev, IVSHMEM_MSIX_BAR, MSIX_BAR_SIZE, false, false, msix_io, s);
	pci_set_bar(pdev, IVSHMEM_MEM_BAR, l->size, true, true, NULL, NULL);
	pci_place_bar(pdev, IVSHMEM_MEM_BAR, vm->ivshmem_gpa);
	if (msix_init(&s->msix, pdev, IVSHMEM_VECTORS, IVSHMEM_MSIX_BAR, MSIX_TABLE, MSIX_PBA, err, errlen) < 0)
		goto fail;
	if (link_attach(l, peer, IVSHMEM_VECTORS, ring, s, &vm->stopping) < 0) {
		snprintf(err, errlen, "ivshmem: peer %u of links[%u] is taken", peer, l->index);
		goto fail;
	}
	s->attached = true;
	if (pci_bus_add(vm->pci, pdev, err, errlen) < 0)
		goto fail;
	vm_add_device(vm, &s->dev);
	return 0;
fail:
	ivshmem_free(s);
	return -1;
}
