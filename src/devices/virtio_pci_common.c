/* The virtio-pci common configuration structure (virtio 1.x, 4.1.4.3) as
 * a state machine of its own: feature negotiation, device status and reset,
 * queue selection and setup, MSI-X vector assignment. It touches no PCI
 * and no KVM, so it is tested on its own (tests/unit/test_virtio_pci_common.c);
 * virtio_pci.c maps it at the start of the device's BAR. Every access is
 * checked: an offset or width the structure does not have is refused and
 * counted. */
#include "devices/virtio_pci_common.h"

#include <string.h>

#include "ferry/virtio.h"

static uint64_t offered_features(const struct virtio_device *vd)
{
	return vd->vops->features | (1ull << VIRTIO_F_VERSION_1);
}

static void reset_device(struct virtio_pci_common *c)
{
	struct virtio_device *vd = c->vd;
	if (vd->vops->reset)
		vd->vops->reset(vd);
	for (unsigned i = 0; i < vd->vops->num_queues; i++)
		vq_reset(&vd->vq[i]);
	vd->status = 0;
	vd->driver_features = 0;
	c->dfselect = c->gfselect = 0;
	c->queue_select = 0;
	c->config_vector = VIRTIO_MSI_NO_VECTOR;
	c->isr = 0;
}

void vpci_common_init(struct virtio_pci_common *c, struct virtio_device *vd, uint16_t nr_vectors)
{
	memset(c, 0, sizeof(*c));
	c->vd = vd;
	c->nr_vectors = nr_vectors;
	c->config_vector = VIRTIO_MSI_NO_VECTOR;
}

static void write_status(struct virtio_pci_common *c, uint8_t status)
{
	struct virtio_device *vd = c->vd;
	if (status == 0) {
		reset_device(c);
		return;
	}
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* Refusing FEATURES_OK is how a device says no; the driver reads it back. */
		if ((vd->driver_features & ~offered_features(vd)) ||
		    !(vd->driver_features & (1ull << VIRTIO_F_VERSION_1))) {
			device_reject(&vd->dev, "driver accepted features 0x%llx, not a subset of 0x%llx with VERSION_1",
				      (unsigned long long)vd->driver_features, (unsigned long long)offered_features(vd));
			status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		}
	}
	bool driver_ok = (status & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_DRIVER_OK);
	vd->status = (uint8_t)(status | (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
	if (driver_ok && vd->vops->activate)
		vd->vops->activate(vd);
}

static struct virtqueue *selected(struct virtio_pci_common *c)
{
	return c->queue_select < c->vd->vops->num_queues ? &c->vd->vq[c->queue_select] : NULL;
}

static uint16_t checked_vector(struct virtio_pci_common *c, uint16_t v)
{
	/* A vector the device does not have reads back as NO_VECTOR, which is
	 * how the spec tells the driver the assignment failed. */
	return v < c->nr_vectors ? v : VIRTIO_MSI_NO_VECTOR;
}

void vpci_common_write(struct virtio_pci_common *c, uint64_t off, uint64_t val, uint32_t len)
{
	struct virtio_device *vd = c->vd;
	struct virtqueue *vq = selected(c);
	bool queue_live = vq && vq->enabled;
	switch (off | (uint64_t)len << 32) {
	case VIRTIO_PCI_COMMON_DFSELECT | 4ull << 32:
		c->dfselect = (uint32_t)val;
		return;
	case VIRTIO_PCI_COMMON_GFSELECT | 4ull << 32:
		c->gfselect = (uint32_t)val;
		return;
	case VIRTIO_PCI_COMMON_GF | 4ull << 32:
		if (vd->status & VIRTIO_STATUS_FEATURES_OK)
			break; /* frozen after FEATURES_OK */
		if (c->gfselect < 2) {
			unsigned shift = 32 * c->gfselect;
			vd->driver_features = (vd->driver_features & ~(0xffffffffull << shift)) | (val << shift);
		}
		return;
	case VIRTIO_PCI_COMMON_MSIX | 2ull << 32:
		c->config_vector = checked_vector(c, (uint16_t)val);
		return;
	case VIRTIO_PCI_COMMON_STATUS | 1ull << 32:
		write_status(c, (uint8_t)val);
		return;
	case VIRTIO_PCI_COMMON_Q_SELECT | 2ull << 32:
		c->queue_select = (uint16_t)val;
		return;
	case VIRTIO_PCI_COMMON_Q_SIZE | 2ull << 32:
		if (vq && !queue_live)
			vq->size = (uint16_t)val; /* checked at enable */
		return;
	case VIRTIO_PCI_COMMON_Q_MSIX | 2ull << 32:
		if (vq)
			vq->msix_vector = checked_vector(c, (uint16_t)val);
		return;
	case VIRTIO_PCI_COMMON_Q_ENABLE | 2ull << 32:
		if (vq && val == 1 && !queue_live && vq_enable(vq) < 0)
			virtio_needs_reset(vd);
		return;
	case VIRTIO_PCI_COMMON_Q_DESCLO | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_DESCHI | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_AVAILLO | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_AVAILHI | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_USEDLO | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_USEDHI | 4ull << 32:
	case VIRTIO_PCI_COMMON_Q_DESCLO | 8ull << 32:
	case VIRTIO_PCI_COMMON_Q_AVAILLO | 8ull << 32:
	case VIRTIO_PCI_COMMON_Q_USEDLO | 8ull << 32: {
		if (!vq || queue_live)
			return; /* addresses of a running queue are fixed */
		uint64_t base = off & ~7ull;
		uint64_t *field = base == VIRTIO_PCI_COMMON_Q_DESCLO ? &vq->desc_gpa :
				  base == VIRTIO_PCI_COMMON_Q_AVAILLO ? &vq->avail_gpa : &vq->used_gpa;
		if (len == 8)
			*field = val;
		else if (off & 4)
			*field = (*field & 0xffffffffull) | val << 32;
		else
			*field = (*field & ~0xffffffffull) | val;
		return;
	}
	default:
		break;
	}
	device_reject(&vd->dev, "write of %u bytes to common config offset 0x%llx", len, (unsigned long long)off);
}

uint64_t vpci_common_read(struct virtio_pci_common *c, uint64_t off, uint32_t len)
{
	struct virtio_device *vd = c->vd;
	struct virtqueue *vq = selected(c);
	switch (off | (uint64_t)len << 32) {
	case VIRTIO_PCI_COMMON_DFSELECT | 4ull << 32:
		return c->dfselect;
	case VIRTIO_PCI_COMMON_DF | 4ull << 32:
		return c->dfselect < 2 ? (uint32_t)(offered_features(vd) >> (32 * c->dfselect)) : 0;
	case VIRTIO_PCI_COMMON_GFSELECT | 4ull << 32:
		return c->gfselect;
	case VIRTIO_PCI_COMMON_GF | 4ull << 32:
		return c->gfselect < 2 ? (uint32_t)(vd->driver_features >> (32 * c->gfselect)) : 0;
	case VIRTIO_PCI_COMMON_MSIX | 2ull << 32:
		return c->config_vector;
	case VIRTIO_PCI_COMMON_NUMQ | 2ull << 32:
		return vd->vops->num_queues;
	case VIRTIO_PCI_COMMON_STATUS | 1ull << 32:
		return vd->status;
	case VIRTIO_PCI_COMMON_CFGGENERATION | 1ull << 32:
		return vd->config_generation;
	case VIRTIO_PCI_COMMON_Q_SELECT | 2ull << 32:
		return c->queue_select;
	case VIRTIO_PCI_COMMON_Q_SIZE | 2ull << 32:
		return vq ? vq->size : 0; /* 0: no such queue */
	case VIRTIO_PCI_COMMON_Q_MSIX | 2ull << 32:
		return vq ? vq->msix_vector : VIRTIO_MSI_NO_VECTOR;
	case VIRTIO_PCI_COMMON_Q_ENABLE | 2ull << 32:
		return vq ? vq->enabled : 0;
	case VIRTIO_PCI_COMMON_Q_NOFF | 2ull << 32:
		return c->queue_select;
	case VIRTIO_PCI_COMMON_Q_DESCLO | 4ull << 32:
		return vq ? (uint32_t)vq->desc_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_DESCHI | 4ull << 32:
		return vq ? vq->desc_gpa >> 32 : 0;
	case VIRTIO_PCI_COMMON_Q_AVAILLO | 4ull << 32:
		return vq ? (uint32_t)vq->avail_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_AVAILHI | 4ull << 32:
		return vq ? vq->avail_gpa >> 32 : 0;
	case VIRTIO_PCI_COMMON_Q_USEDLO | 4ull << 32:
		return vq ? (uint32_t)vq->used_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_USEDHI | 4ull << 32:
		return vq ? vq->used_gpa >> 32 : 0;
	case VIRTIO_PCI_COMMON_Q_DESCLO | 8ull << 32:
		return vq ? vq->desc_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_AVAILLO | 8ull << 32:
		return vq ? vq->avail_gpa : 0;
	case VIRTIO_PCI_COMMON_Q_USEDLO | 8ull << 32:
		return vq ? vq->used_gpa : 0;
	default:
		device_reject(&vd->dev, "read of %u bytes at common config offset 0x%llx", len, (unsigned long long)off);
		return 0;
	}
}

