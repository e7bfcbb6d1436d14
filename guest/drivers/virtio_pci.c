/* Virtio modern PCI transport (virtio 1.2, section 4.1): vendor capabilities
 * locate the common, notify, ISR and device configuration structures inside
 * the BARs; everything after that is MMIO. */
#include <ferry/pci_regs.h>
#include "interrupt.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "smp.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "x86.h"

#define CAP_CFG_TYPE 3
#define CAP_BAR      4
#define CAP_OFFSET   8
#define CAP_LENGTH   12
#define CAP_NOTIFY_MULTIPLIER 16

static uint8_t common_read8(const struct virtio_dev *vd, unsigned off) { return mmio_read8(vd->common + off); }
static uint16_t common_read16(const struct virtio_dev *vd, unsigned off) { return mmio_read16(vd->common + off); }
static uint32_t common_read32(const struct virtio_dev *vd, unsigned off) { return mmio_read32(vd->common + off); }
static void common_write8(const struct virtio_dev *vd, unsigned off, uint8_t v) { mmio_write8(vd->common + off, v); }
static void common_write16(const struct virtio_dev *vd, unsigned off, uint16_t v) { mmio_write16(vd->common + off, v); }
static void common_write32(const struct virtio_dev *vd, unsigned off, uint32_t v) { mmio_write32(vd->common + off, v); }
static void common_write64(const struct virtio_dev *vd, unsigned off, uint64_t v)
{
	common_write32(vd, off, (uint32_t)v);
	common_write32(vd, off + 4, (uint32_t)(v >> 32));
}

static int probe_error(struct virtio_dev *vd, const char *why)
{
	struct pci_dev *d = vd->pci;

	kprintf("virtio %02x:%02x.%x: %s\n", d->bus, d->dev, d->fn, why);
	return -2;
}

int virtio_pci_probe(struct virtio_dev *vd, uint16_t type, unsigned nth)
{
	struct pci_dev *d = pci_find(PCI_VENDOR_ID_REDHAT_QUMRANET, VIRTIO_PCI_DEVICE_ID_BASE + type, nth);
	uint32_t common_len = 0, isr_len = 0;

	memset(vd, 0, sizeof(*vd));
	vd->config_vector = -1;
	if (!d)
		return -1;
	vd->pci = d;
	vd->type = type;
	/* The first capability of each type is the one to use (spec 4.1.4). */
	for (uint8_t cap = pci_find_cap(d, PCI_CAP_ID_VNDR, 0); cap; cap = pci_find_cap(d, PCI_CAP_ID_VNDR, cap)) {
		uint8_t cfg_type = pci_read8(d, cap + CAP_CFG_TYPE);
		uint8_t bar = pci_read8(d, cap + CAP_BAR);
		uint32_t offset = pci_read32(d, cap + CAP_OFFSET);
		uint32_t length = pci_read32(d, cap + CAP_LENGTH);
		uintptr_t base;

		if (cfg_type < VIRTIO_PCI_CAP_COMMON_CFG || cfg_type > VIRTIO_PCI_CAP_DEVICE_CFG)
			continue;
		if (bar >= 6 || d->bar[bar].io || (uint64_t)offset + length > d->bar[bar].size)
			return probe_error(vd, "capability outside its BAR");
		base = pci_map_bar(d, bar);
		if (!base)
			return probe_error(vd, "cannot map BAR");
		switch (cfg_type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			if (!vd->common) {
				vd->common = base + offset;
				common_len = length;
			}
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			if (!vd->notify) {
				vd->notify = base + offset;
				vd->notify_len = length;
				vd->notify_off_multiplier = pci_read32(d, cap + CAP_NOTIFY_MULTIPLIER);
			}
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			if (!vd->isr) {
				vd->isr = base + offset;
				isr_len = length;
			}
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			if (!vd->device_cfg) {
				vd->device_cfg = base + offset;
				vd->device_cfg_len = length;
			}
			break;
		}
	}
	if (!vd->common || common_len < VIRTIO_PCI_COMMON_SIZE)
		return probe_error(vd, "no usable common configuration");
	if (!vd->notify || !vd->isr || !isr_len)
		return probe_error(vd, "no notify or ISR structure");
	pci_enable(d);
	return 0;
}

uint8_t virtio_status(const struct virtio_dev *vd)
{
	return common_read8(vd, VIRTIO_PCI_COMMON_STATUS);
}

static void add_status(struct virtio_dev *vd, uint8_t bits)
{
	common_write8(vd, VIRTIO_PCI_COMMON_STATUS, virtio_status(vd) | bits);
}

void virtio_fail(struct virtio_dev *vd)
{
	add_status(vd, VIRTIO_STATUS_FAILED);
}

void virtio_reset(struct virtio_dev *vd)
{
	common_write8(vd, VIRTIO_PCI_COMMON_STATUS, 0);
	/* Reset completes when the status reads back 0 (spec 4.1.4.3.2). */
	for (int spin = 0; spin < 1000000 && virtio_status(vd); spin++)
		cpu_relax();
}

static int init_error(struct virtio_dev *vd, const char *why)
{
	struct pci_dev *d = vd->pci;

	kprintf("virtio %02x:%02x.%x: %s\n", d->bus, d->dev, d->fn, why);
	virtio_fail(vd);
	return -1;
}

static void config_interrupt(void *arg)
{
	struct virtio_dev *vd = arg;

	vd->config_changes++;
	if (vd->config_fn)
		vd->config_fn(vd, vd->config_arg);
}

/* MSI-X entry 0 signals configuration changes, entry 1 + i queue i (a
 * device without queues may have entry 0 only). */
static void setup_msix(struct virtio_dev *vd)
{
	int entries = pci_msix_init(vd->pci);

	if (entries < 1)
		return;
	vd->irq_apic_id = this_cpu()->apic_id;
	vd->config_vector = irq_alloc_vector(config_interrupt, vd);
	if (vd->config_vector < 0)
		return;
	pci_msix_route(vd->pci, 0, (uint8_t)vd->config_vector, vd->irq_apic_id);
	common_write16(vd, VIRTIO_PCI_COMMON_MSIX, 0);
	if (common_read16(vd, VIRTIO_PCI_COMMON_MSIX) != 0) {
		kprintf("virtio: device refused MSI-X vector for config changes\n");
		irq_unregister((unsigned)vd->config_vector);
		vd->config_vector = -1;
		return;
	}
	vd->msix = true;
}

int virtio_init(struct virtio_dev *vd, uint64_t wanted)
{
	uint64_t offered;

	virtio_reset(vd);
	add_status(vd, VIRTIO_STATUS_ACKNOWLEDGE);
	add_status(vd, VIRTIO_STATUS_DRIVER);
	common_write32(vd, VIRTIO_PCI_COMMON_DFSELECT, 0);
	offered = common_read32(vd, VIRTIO_PCI_COMMON_DF);
	common_write32(vd, VIRTIO_PCI_COMMON_DFSELECT, 1);
	offered |= (uint64_t)common_read32(vd, VIRTIO_PCI_COMMON_DF) << 32;
	vd->device_features = offered;
	if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
		return init_error(vd, "device does not offer VIRTIO_F_VERSION_1");
	vd->features = offered & (wanted | 1ull << VIRTIO_F_VERSION_1);
	common_write32(vd, VIRTIO_PCI_COMMON_GFSELECT, 0);
	common_write32(vd, VIRTIO_PCI_COMMON_GF, (uint32_t)vd->features);
	common_write32(vd, VIRTIO_PCI_COMMON_GFSELECT, 1);
	common_write32(vd, VIRTIO_PCI_COMMON_GF, (uint32_t)(vd->features >> 32));
	add_status(vd, VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_status(vd) & VIRTIO_STATUS_FEATURES_OK))
		return init_error(vd, "device rejected the features");
	vd->num_queues = common_read16(vd, VIRTIO_PCI_COMMON_NUMQ);
	setup_msix(vd);
	return 0;
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return bit < 64 && (vd->features >> bit) & 1;
}

int virtio_setup_queue(struct virtio_dev *vd, struct virtqueue *vq, unsigned index, unsigned max_size)
{
	uint16_t size;
	uint64_t notify_off;

	if (index >= vd->num_queues)
		return init_error(vd, "no such queue");
	common_write16(vd, VIRTIO_PCI_COMMON_Q_SELECT, (uint16_t)index);
	size = common_read16(vd, VIRTIO_PCI_COMMON_Q_SIZE);
	if (!size)
		return init_error(vd, "queue not available");
	if (size > max_size)
		size = (uint16_t)max_size;
	while (size & (size - 1))
		size &= (uint16_t)(size - 1);  /* round down to a power of two */
	notify_off = (uint64_t)common_read16(vd, VIRTIO_PCI_COMMON_Q_NOFF) * vd->notify_off_multiplier;
	if (notify_off + 2 > vd->notify_len)
		return init_error(vd, "queue notify address outside the notify structure");

	memset(vq, 0, sizeof(*vq));
	if (vq_alloc(vq, size))
		return init_error(vd, "out of memory for a virtqueue");
	vq->vdev = vd;
	vq->index = (uint16_t)index;
	vq->event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
	vq->notify_addr = vd->notify + notify_off;

	common_write16(vd, VIRTIO_PCI_COMMON_Q_SIZE, size);
	common_write64(vd, VIRTIO_PCI_COMMON_Q_DESCLO, virt_to_phys(vq->desc));
	common_write64(vd, VIRTIO_PCI_COMMON_Q_AVAILLO, virt_to_phys(vq->avail));
	common_write64(vd, VIRTIO_PCI_COMMON_Q_USEDLO, virt_to_phys(vq->used));
	if (vd->msix && index + 1 < vd->pci->msix_entries) {
		int vector = irq_alloc_vector(vq_interrupt, vq);
		if (vector >= 0) {
			pci_msix_route(vd->pci, index + 1, (uint8_t)vector, vd->irq_apic_id);
			common_write16(vd, VIRTIO_PCI_COMMON_Q_MSIX, (uint16_t)(index + 1));
			if (common_read16(vd, VIRTIO_PCI_COMMON_Q_MSIX) == index + 1) {
				vq->vector = vector;
			} else {
				kprintf("virtio: device refused MSI-X for queue %u, polling it\n", index);
				irq_unregister((unsigned)vector);
			}
		}
	}
	if (vq->vector < 0)
		common_write16(vd, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	common_write16(vd, VIRTIO_PCI_COMMON_Q_ENABLE, 1);
	return 0;
}

int virtio_setup_doorbell(struct virtio_dev *vd, unsigned index, void (*fn)(void *arg), void *arg,
			  uintptr_t *notify_addr)
{
	uint64_t notify_off;
	int vector = -1;

	if (index >= vd->num_queues)
		return -2;
	common_write16(vd, VIRTIO_PCI_COMMON_Q_SELECT, (uint16_t)index);
	notify_off = (uint64_t)common_read16(vd, VIRTIO_PCI_COMMON_Q_NOFF) * vd->notify_off_multiplier;
	if (notify_off + 2 > vd->notify_len)
		return -2;
	*notify_addr = vd->notify + notify_off;
	if (vd->msix && index + 1 < vd->pci->msix_entries && (vector = irq_alloc_vector(fn, arg)) >= 0) {
		pci_msix_route(vd->pci, index + 1, (uint8_t)vector, vd->irq_apic_id);
		common_write16(vd, VIRTIO_PCI_COMMON_Q_MSIX, (uint16_t)(index + 1));
		if (common_read16(vd, VIRTIO_PCI_COMMON_Q_MSIX) != index + 1) {
			irq_unregister((unsigned)vector);
			vector = -1;
		}
	}
	return vector;
}

void virtio_driver_ok(struct virtio_dev *vd)
{
	if (vd->msix)
		pci_msix_unmask_function(vd->pci);
	add_status(vd, VIRTIO_STATUS_DRIVER_OK);
}

void virtio_set_config_handler(struct virtio_dev *vd, virtio_config_fn fn, void *arg)
{
	uint64_t flags = irq_save();

	vd->config_arg = arg;
	vd->config_fn = fn;
	irq_restore(flags);
}

static bool config_range_ok(struct virtio_dev *vd, unsigned offset, unsigned len)
{
	if (vd->device_cfg && (uint64_t)offset + len <= vd->device_cfg_len)
		return true;
	kprintf("virtio: device config access %u+%u outside %u bytes\n", offset, len, vd->device_cfg_len);
	return false;
}

void virtio_config_read(struct virtio_dev *vd, unsigned offset, void *buf, unsigned len)
{
	uint8_t *out = buf, gen;

	if (!config_range_ok(vd, offset, len)) {
		memset(buf, 0, len);
		return;
	}
	do {
		gen = common_read8(vd, VIRTIO_PCI_COMMON_CFGGENERATION);
		/* Natural widths: a field is read with an access of its own size. */
		for (unsigned i = 0; i < len;) {
			uintptr_t a = vd->device_cfg + offset + i;
			if (len - i >= 4 && !(a & 3)) {
				uint32_t v = mmio_read32(a);
				memcpy(out + i, &v, 4);
				i += 4;
			} else if (len - i >= 2 && !(a & 1)) {
				uint16_t v = mmio_read16(a);
				memcpy(out + i, &v, 2);
				i += 2;
			} else {
				out[i++] = mmio_read8(a);
			}
		}
	} while (gen != common_read8(vd, VIRTIO_PCI_COMMON_CFGGENERATION));
}

uint8_t virtio_config_read8(struct virtio_dev *vd, unsigned offset)
{
	uint8_t v;

	virtio_config_read(vd, offset, &v, sizeof(v));
	return v;
}

uint16_t virtio_config_read16(struct virtio_dev *vd, unsigned offset)
{
	uint16_t v;

	virtio_config_read(vd, offset, &v, sizeof(v));
	return v;
}

uint32_t virtio_config_read32(struct virtio_dev *vd, unsigned offset)
{
	uint32_t v;

	virtio_config_read(vd, offset, &v, sizeof(v));
	return v;
}

uint64_t virtio_config_read64(struct virtio_dev *vd, unsigned offset)
{
	uint64_t v;

	virtio_config_read(vd, offset, &v, sizeof(v));
	return v;
}

void virtio_config_write8(struct virtio_dev *vd, unsigned offset, uint8_t v)
{
	if (config_range_ok(vd, offset, 1))
		mmio_write8(vd->device_cfg + offset, v);
}

void virtio_config_write16(struct virtio_dev *vd, unsigned offset, uint16_t v)
{
	if (config_range_ok(vd, offset, 2))
		mmio_write16(vd->device_cfg + offset, v);
}

void virtio_config_write32(struct virtio_dev *vd, unsigned offset, uint32_t v)
{
	if (config_range_ok(vd, offset, 4))
		mmio_write32(vd->device_cfg + offset, v);
}
