// SPDX-License-Identifier: GPL-2.0
/*
 * ferry_virtio_pci: the virtio-over-PCI transport for ferry's own device
 * types, so that ferry_msgq and ferry_cpu_reserve are ordinary virtio
 * drivers.
 *
 * Why this exists: ferry gives its own devices (msgq, type 0xf7, and
 * cpu-reserve, type 0xf8) the PCI device ID 0x1040 + type, 0x1137 and
 * 0x1138. The virtio specification (4.1.2.1) makes only IDs 0x1000-0x107f
 * virtio devices, and Linux's virtio_pci leaves every other ID alone
 * ("We only own devices >= 0x1000 and <= 0x107f"), so a stock kernel binds
 * no driver to them. This module binds those two IDs and does what
 * virtio_pci does for a modern device, with the same helpers
 * (virtio_pci_modern_dev, built into any kernel with virtio_pci): map the
 * capabilities, one MSI-X vector for configuration changes and one per
 * queue, split rings. Modern devices only (ferry has no legacy interface).
 * Should ferry move its types into the specification's range, virtio_pci
 * binds them and this module has nothing to do.
 */
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci_modern.h>
#include <linux/virtio_ring.h>

#include <ferry/cpu_reserve.h>
#include <ferry/msgq.h>

/* Modern virtio devices: PCI device ID 0x1040 + virtio type. */
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040
#define MAX_VQS 16

struct fvp {
	struct virtio_device vdev;
	struct virtio_pci_modern_device mdev;
	struct pci_dev *pci;
	bool vectors;               /* MSI-X vectors allocated */
	bool config_irq;            /* vector 0 requested */
	unsigned int nvqs;
	struct virtqueue *vqs[MAX_VQS];
	int vq_vector[MAX_VQS];     /* -1: none */
	char config_name[48];
	char vq_name[MAX_VQS][48];
};

static struct fvp *to_fvp(struct virtio_device *vdev)
{
	return container_of(vdev, struct fvp, vdev);
}

/* Device configuration: natural-width accesses only, inside the mapped
 * capability. */
static void fvp_get(struct virtio_device *vdev, unsigned int offset, void *buf, unsigned int len)
{
	struct fvp *f = to_fvp(vdev);
	void __iomem *d = f->mdev.device;
	u32 lo, hi;
	u16 w;

	if (!d || offset + len > f->mdev.device_len) {
		dev_err_ratelimited(&vdev->dev, "config read of %u at %u is outside the device's %zu bytes\n", len,
				    offset, f->mdev.device_len);
		memset(buf, 0, len);
		return;
	}
	switch (len) {
	case 1:
		*(u8 *)buf = ioread8(d + offset);
		break;
	case 2:
		w = ioread16(d + offset);
		memcpy(buf, &w, 2);
		break;
	case 4:
		lo = ioread32(d + offset);
		memcpy(buf, &lo, 4);
		break;
	case 8:
		lo = ioread32(d + offset);
		hi = ioread32(d + offset + 4);
		memcpy(buf, &lo, 4);
		memcpy((u8 *)buf + 4, &hi, 4);
		break;
	default:
		memset(buf, 0, len);
		WARN_ON_ONCE(1);
	}
}

static void fvp_set(struct virtio_device *vdev, unsigned int offset, const void *buf, unsigned int len)
{
	struct fvp *f = to_fvp(vdev);
	void __iomem *d = f->mdev.device;
	u32 v;
	u16 w;

	if (!d || offset + len > f->mdev.device_len) {
		dev_err_ratelimited(&vdev->dev, "config write of %u at %u is outside the device's %zu bytes\n", len,
				    offset, f->mdev.device_len);
		return;
	}
	switch (len) {
	case 1:
		iowrite8(*(const u8 *)buf, d + offset);
		break;
	case 2:
		memcpy(&w, buf, 2);
		iowrite16(w, d + offset);
		break;
	case 4:
		memcpy(&v, buf, 4);
		iowrite32(v, d + offset);
		break;
	case 8:
		memcpy(&v, buf, 4);
		iowrite32(v, d + offset);
		memcpy(&v, (const u8 *)buf + 4, 4);
		iowrite32(v, d + offset + 4);
		break;
	default:
		WARN_ON_ONCE(1);
	}
}

static u32 fvp_generation(struct virtio_device *vdev)
{
	return vp_modern_generation(&to_fvp(vdev)->mdev);
}

static u8 fvp_get_status(struct virtio_device *vdev)
{
	return vp_modern_get_status(&to_fvp(vdev)->mdev);
}

static void fvp_set_status(struct virtio_device *vdev, u8 status)
{
	/* 0 is a reset, which has its own operation. */
	WARN_ON(status == 0);
	vp_modern_set_status(&to_fvp(vdev)->mdev, status);
}

static void fvp_synchronize(struct fvp *f)
{
	unsigned int i;

	if (!f->vectors)
		return;
	if (f->config_irq)
		synchronize_irq(pci_irq_vector(f->pci, 0));
	for (i = 0; i < f->nvqs; i++)
		if (f->vq_vector[i] >= 0)
			synchronize_irq(pci_irq_vector(f->pci, f->vq_vector[i]));
}

static void fvp_reset(struct virtio_device *vdev)
{
	struct fvp *f = to_fvp(vdev);

	vp_modern_set_status(&f->mdev, 0);
	/* The device is reset once status reads 0 (virtio 1.2, 4.1.4.3.2). */
	while (vp_modern_get_status(&f->mdev))
		msleep(1);
	fvp_synchronize(f);
}

static u64 fvp_get_features(struct virtio_device *vdev)
{
	return vp_modern_get_features(&to_fvp(vdev)->mdev);
}

static int fvp_finalize_features(struct virtio_device *vdev)
{
	vring_transport_features(vdev);
	if (!__virtio_test_bit(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vdev->dev, "the device does not offer VIRTIO_F_VERSION_1\n");
		return -EINVAL;
	}
	vp_modern_set_features(&to_fvp(vdev)->mdev, vdev->features);
	return 0;
}

static bool fvp_notify(struct virtqueue *vq)
{
	iowrite16(vq->index, (void __iomem *)vq->priv);
	return true;
}

static irqreturn_t fvp_config_irq(int irq, void *opaque)
{
	virtio_config_changed(opaque);
	return IRQ_HANDLED;
}

static void fvp_del_vqs(struct virtio_device *vdev)
{
	struct fvp *f = to_fvp(vdev);
	unsigned int i;

	for (i = 0; i < f->nvqs; i++) {
		if (!f->vqs[i])
			continue;
		if (f->vq_vector[i] >= 0) {
			vp_modern_queue_vector(&f->mdev, i, VIRTIO_MSI_NO_VECTOR);
			free_irq(pci_irq_vector(f->pci, f->vq_vector[i]), f->vqs[i]);
		}
		if (!f->mdev.notify_base)
			pci_iounmap(f->pci, (void __iomem *)f->vqs[i]->priv);
		vring_del_virtqueue(f->vqs[i]);
		f->vqs[i] = NULL;
		f->vq_vector[i] = -1;
	}
	f->nvqs = 0;
	if (f->config_irq) {
		vp_modern_config_vector(&f->mdev, VIRTIO_MSI_NO_VECTOR);
		free_irq(pci_irq_vector(f->pci, 0), &f->vdev);
		f->config_irq = false;
	}
	if (f->vectors) {
		pci_free_irq_vectors(f->pci);
		f->vectors = false;
	}
}

static struct virtqueue *fvp_setup_vq(struct fvp *f, unsigned int i, vq_callback_t *cb, const char *name, bool ctx)
{
	struct virtio_pci_modern_device *m = &f->mdev;
	struct virtqueue *vq;
	void __iomem *notify;
	u16 num;

	if (i >= vp_modern_get_num_queues(m))
		return ERR_PTR(-ENOENT);
	num = vp_modern_get_queue_size(m, i);
	if (!num || vp_modern_get_queue_enable(m, i))
		return ERR_PTR(-ENOENT);
	vq = vring_create_virtqueue(i, num, SMP_CACHE_BYTES, &f->vdev, true, true, ctx, fvp_notify, cb, name);
	if (!vq)
		return ERR_PTR(-ENOMEM);
	vp_modern_set_queue_size(m, i, virtqueue_get_vring_size(vq));
	vp_modern_queue_address(m, i, virtqueue_get_desc_addr(vq), virtqueue_get_avail_addr(vq),
				virtqueue_get_used_addr(vq));
	notify = vp_modern_map_vq_notify(m, i, NULL);
	if (!notify) {
		vring_del_virtqueue(vq);
		return ERR_PTR(-ENOMEM);
	}
	vq->priv = (void __force *)notify;
	return vq;
}

static int fvp_find_vqs(struct virtio_device *vdev, unsigned int nvqs, struct virtqueue *vqs[],
			vq_callback_t *callbacks[], const char * const names[], const bool *ctx,
			struct irq_affinity *desc)
{
	struct fvp *f = to_fvp(vdev);
	unsigned int i, nvec = 1;
	int err, v;

	if (nvqs > MAX_VQS)
		return -EINVAL;
	for (i = 0; i < nvqs; i++)
		if (names[i] && callbacks[i])
			nvec++;
	/* One vector for configuration changes, one per queue with a
	 * callback: ferry gives every device a vector per queue and one. */
	err = pci_alloc_irq_vectors(f->pci, nvec, nvec, PCI_IRQ_MSIX);
	if (err < 0) {
		dev_err(&vdev->dev, "cannot allocate %u MSI-X vectors: %d\n", nvec, err);
		return err;
	}
	f->vectors = true;
	snprintf(f->config_name, sizeof(f->config_name), "%s-config", dev_name(&vdev->dev));
	err = request_irq(pci_irq_vector(f->pci, 0), fvp_config_irq, 0, f->config_name, vdev);
	if (err)
		goto fail;
	f->config_irq = true;
	if (vp_modern_config_vector(&f->mdev, 0) == VIRTIO_MSI_NO_VECTOR) {
		err = -EBUSY;
		goto fail;
	}
	for (i = 0, v = 1; i < nvqs; i++) {
		struct virtqueue *vq;

		f->vq_vector[i] = -1;
		f->nvqs = i + 1;
		if (!names[i]) {
			vqs[i] = NULL;
			continue;
		}
		vq = fvp_setup_vq(f, i, callbacks[i], names[i], ctx ? ctx[i] : false);
		if (IS_ERR(vq)) {
			err = PTR_ERR(vq);
			goto fail;
		}
		f->vqs[i] = vqs[i] = vq;
		if (!callbacks[i])
			continue;
		snprintf(f->vq_name[i], sizeof(f->vq_name[i]), "%s-%s", dev_name(&vdev->dev), names[i]);
		err = request_irq(pci_irq_vector(f->pci, v), vring_interrupt, 0, f->vq_name[i], vq);
		if (err)
			goto fail;
		f->vq_vector[i] = v;
		if (vp_modern_queue_vector(&f->mdev, i, v) == VIRTIO_MSI_NO_VECTOR) {
			err = -EBUSY;
			goto fail;
		}
		v++;
	}
	for (i = 0; i < nvqs; i++)
		if (vqs[i])
			vp_modern_set_queue_enable(&f->mdev, i, true);
	return 0;
fail:
	fvp_del_vqs(vdev);
	return err;
}

static const char *fvp_bus_name(struct virtio_device *vdev)
{
	return pci_name(to_fvp(vdev)->pci);
}

/* Shared memory regions: vendor capabilities of type 8 (virtio 1.2,
 * 4.1.4.7), found by id. */
static bool fvp_get_shm_region(struct virtio_device *vdev, struct virtio_shm_region *region, u8 id)
{
	struct pci_dev *pci = to_fvp(vdev)->pci;
	int pos;

	for (pos = pci_find_capability(pci, PCI_CAP_ID_VNDR); pos;
	     pos = pci_find_next_capability(pci, pos, PCI_CAP_ID_VNDR)) {
		u8 type, bar, cap_id, cap_len;
		u32 off, off_hi, len, len_hi;
		u64 o, l;

		pci_read_config_byte(pci, pos + offsetof(struct virtio_pci_cap, cfg_type), &type);
		pci_read_config_byte(pci, pos + offsetof(struct virtio_pci_cap, cap_len), &cap_len);
		pci_read_config_byte(pci, pos + offsetof(struct virtio_pci_cap, bar), &bar);
		pci_read_config_byte(pci, pos + offsetof(struct virtio_pci_cap, id), &cap_id);
		if (type != VIRTIO_PCI_CAP_SHARED_MEMORY_CFG || cap_id != id ||
		    cap_len < sizeof(struct virtio_pci_cap64) || bar >= PCI_STD_NUM_BARS)
			continue;
		pci_read_config_dword(pci, pos + offsetof(struct virtio_pci_cap, offset), &off);
		pci_read_config_dword(pci, pos + offsetof(struct virtio_pci_cap, length), &len);
		pci_read_config_dword(pci, pos + offsetof(struct virtio_pci_cap64, offset_hi), &off_hi);
		pci_read_config_dword(pci, pos + offsetof(struct virtio_pci_cap64, length_hi), &len_hi);
		o = (u64)off_hi << 32 | off;
		l = (u64)len_hi << 32 | len;
		if (!(pci_resource_flags(pci, bar) & IORESOURCE_MEM) || o > pci_resource_len(pci, bar) ||
		    l > pci_resource_len(pci, bar) - o) {
			dev_err(&vdev->dev, "shared memory region %u does not fit BAR %u\n", id, bar);
			return false;
		}
		region->addr = pci_resource_start(pci, bar) + o;
		region->len = l;
		return true;
	}
	return false;
}

static const struct virtio_config_ops fvp_config_ops = {
	.get = fvp_get,
	.set = fvp_set,
	.generation = fvp_generation,
	.get_status = fvp_get_status,
	.set_status = fvp_set_status,
	.reset = fvp_reset,
	.find_vqs = fvp_find_vqs,
	.del_vqs = fvp_del_vqs,
	.get_features = fvp_get_features,
	.finalize_features = fvp_finalize_features,
	.bus_name = fvp_bus_name,
	.get_shm_region = fvp_get_shm_region,
};

static void fvp_release(struct device *dev)
{
	kfree(container_of(dev_to_virtio(dev), struct fvp, vdev));
}

static int fvp_probe(struct pci_dev *pci, const struct pci_device_id *id)
{
	unsigned short real = pci->device;
	struct fvp *f;
	int err;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->pci = pci;
	f->mdev.pci_dev = pci;
	f->vdev.dev.parent = &pci->dev;
	f->vdev.dev.release = fvp_release;
	f->vdev.config = &fvp_config_ops;
	pci_set_drvdata(pci, f);
	err = pci_enable_device(pci);
	if (err)
		goto free;
	/* vp_modern_probe maps the capabilities exactly as virtio_pci does,
	 * but first refuses IDs outside the specification's range: for its
	 * duration the function shows an ID inside it. The type comes from
	 * the real ID, by the same rule (0x1040 + type). */
	pci->device = VIRTIO_PCI_DEVICE_ID_BASE;
	err = vp_modern_probe(&f->mdev);
	pci->device = real;
	if (err)
		goto disable;
	f->mdev.id.device = real - VIRTIO_PCI_DEVICE_ID_BASE;
	f->mdev.id.vendor = pci->subsystem_vendor;
	f->vdev.id = f->mdev.id;
	pci_set_master(pci);
	err = register_virtio_device(&f->vdev);
	if (err) {
		vp_modern_remove(&f->mdev);
		pci_disable_device(pci);
		put_device(&f->vdev.dev); /* frees f */
		return err;
	}
	dev_info(&pci->dev, "ferry virtio device type 0x%x as %s\n", f->vdev.id.device, dev_name(&f->vdev.dev));
	return 0;
disable:
	pci_disable_device(pci);
free:
	kfree(f);
	return err;
}

static void fvp_remove(struct pci_dev *pci)
{
	struct fvp *f = pci_get_drvdata(pci);
	struct device *dev = get_device(&f->vdev.dev);

	unregister_virtio_device(&f->vdev);
	vp_modern_remove(&f->mdev);
	pci_disable_device(pci);
	put_device(dev);
}

static const struct pci_device_id fvp_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, VIRTIO_PCI_DEVICE_ID_BASE + VIRTIO_ID_MSGQ) },
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, VIRTIO_PCI_DEVICE_ID_BASE + VIRTIO_ID_VCPU_RESERVE) },
	{ 0 },
};
MODULE_DEVICE_TABLE(pci, fvp_ids);

static struct pci_driver fvp_driver = {
	.name = "ferry-virtio-pci",
	.id_table = fvp_ids,
	.probe = fvp_probe,
	.remove = fvp_remove,
};

module_pci_driver(fvp_driver);
MODULE_DESCRIPTION("virtio over PCI for ferry's own device types (outside the virtio PCI ID range)");
MODULE_LICENSE("GPL");
