/* virtio-pci, modern (virtio 1.x) transport. One 32 KiB memory BAR holds
 * everything; capabilities tell the driver where:
 *   0x0000 common configuration   0x1000 ISR status   0x2000 device config
 *   0x3000 notifications (4 bytes per queue)
 *   0x4000 MSI-X table            0x5000 MSI-X pending bits
 * Notifications are ioeventfds, handled on the event loop without an exit to
 * ferry; if KVM refuses one, the write exits and is handled the same way. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/pci.h"
#include "devices/pci_msix.h"
#include "devices/virtio.h"
#include "devices/virtio_pci_common.h"
#include "ferry/virtio.h"
#include "host/eventloop.h"
#include "vmm/vm.h"

#define VPCI_COMMON      0x0000
#define VPCI_ISR         0x1000
#define VPCI_DEVICE      0x2000
#define VPCI_NOTIFY      0x3000
#define VPCI_MSIX_TABLE  0x4000
#define VPCI_MSIX_PBA    0x5000
#define VPCI_REGION      0x1000
#define VPCI_BAR_SIZE    0x8000
#define VPCI_NOTIFY_MULT 4

struct __attribute__((packed)) virtio_pci_cfg_cap {
	struct virtio_pci_cap cap;
	uint8_t data[4];
};

struct virtio_pci_queue {
	struct virtio_pci *vp;
	struct virtqueue *vq;
	int efd;
	struct evl_handler *handler;
	bool ioeventfd;          /* registered with KVM at the notify address */
};

struct virtio_pci {
	struct virtio_device *vd;
	struct pci_device pci;
	struct msix msix;
	uint8_t pci_cfg_cap;     /* offset of the VIRTIO_PCI_CAP_PCI_CFG window */
	struct virtio_pci_common common;
	uint64_t bar_addr;
	bool bar_mapped;
	struct virtio_pci_queue q[VIRTIO_MAX_QUEUES];
};

static void signal_vector(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	vp->common.isr |= isr_bit;
	if (vector != VIRTIO_MSI_NO_VECTOR)
		msix_notify(&vp->msix, vector);
}

void virtio_pci_signal_queue(struct virtio_pci *vp, struct virtqueue *vq)
{
	signal_vector(vp, vq->msix_vector, VIRTIO_ISR_QUEUE);
}

void virtio_pci_signal_config(struct virtio_pci *vp)
{
	signal_vector(vp, vp->common.config_vector, VIRTIO_ISR_CONFIG);
}

void virtio_pci_requeue(struct virtio_pci *vp, struct virtqueue *vq)
{
	/* The doorbell's eventfd is watched by the event loop whether or not
	 * KVM signals it: ringing it ourselves puts the queue at the back of
	 * the loop's ready list. */
	uint64_t one = 1;
	int fd = vq->index < VIRTIO_MAX_QUEUES ? vp->q[vq->index].efd : -1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) != sizeof(one))
		device_reject(&vp->vd->dev, "queue %u: cannot schedule the rest of its work", vq->index);
}

/* Runs the device on a kicked queue. vd->lock held. */
static void queue_kicked(struct virtio_pci *vp, struct virtqueue *vq)
{
	struct virtio_device *vd = vp->vd;
	atomic_fetch_add(&vd->notifications, 1);
	bool doorbell = vd->vops->doorbell_queues & (1u << vq->index);
	if ((!vq->enabled && !doorbell) || !(vd->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	vd->vops->queue_notify(vd, vq);
	if (vq->broken)
		virtio_needs_reset(vd);
}

static void ioeventfd_ready(void *arg, uint32_t events)
{
	struct virtio_pci_queue *q = arg;
	(void)events;
	uint64_t count;
	if (read(q->efd, &count, sizeof(count)) != sizeof(count))
		return;
	pthread_mutex_lock(q->vp->vd->lock);
	queue_kicked(q->vp, q->vq);
	pthread_mutex_unlock(q->vp->vd->lock);
}

static void bar_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pci *vp = opaque;
	struct virtio_device *vd = vp->vd;
	uint64_t region = off & ~(uint64_t)(VPCI_REGION - 1), roff = off - region;

	if (region == VPCI_MSIX_TABLE) {
		msix_table_io(&vp->msix, roff, data, len, is_write);
		return;
	}
	if (region == VPCI_MSIX_PBA) {
		msix_pba_io(&vp->msix, roff, data, len, is_write);
		return;
	}

	uint64_t val = 0;
	if (is_write)
		memcpy(&val, data, len);
	pthread_mutex_lock(vd->lock);
	switch (region) {
	case VPCI_COMMON:
		if (is_write)
			vpci_common_write(&vp->common, roff, val, len);
		else
			val = vpci_common_read(&vp->common, roff, len);
		break;
	case VPCI_ISR:
		if (!is_write && roff == 0) {
			val = vp->common.isr;
			vp->common.isr = 0; /* reading acknowledges */
		}
		break;
	case VPCI_DEVICE:
		if (roff >= vd->vops->config_size || len > vd->vops->config_size - roff) {
			device_reject(&vd->dev, "device config access of %u bytes at offset 0x%llx beyond its %u bytes",
				      len, (unsigned long long)roff, vd->vops->config_size);
		} else if (is_write) {
			if (vd->vops->config_write)
				vd->vops->config_write(vd, (uint32_t)roff, data, len);
		} else {
			memcpy(&val, (const uint8_t *)vd->config + roff, len);
		}
		break;
	case VPCI_NOTIFY:
		/* Reached only when the ioeventfd is not in place. */
		if (is_write) {
			uint64_t q = roff / VPCI_NOTIFY_MULT;
			if (q < vd->vops->num_queues)
				queue_kicked(vp, &vd->vq[q]);
			else
				device_reject(&vd->dev, "notification for queue %llu, which does not exist",
					      (unsigned long long)q);
		}
		break;
	default:
		device_reject(&vd->dev, "access to unused BAR offset 0x%llx", (unsigned long long)off);
		break;
	}
	pthread_mutex_unlock(vd->lock);
	if (!is_write)
		memcpy(data, &val, len);
}

static int set_ioeventfd(struct virtio_pci *vp, unsigned q, uint64_t addr, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = addr + VPCI_NOTIFY + q * VPCI_NOTIFY_MULT,
		.len = 2,
		.fd = vp->q[q].efd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	return ioctl(vp->vd->dev.vm->fd, KVM_IOEVENTFD, &io);
}

static void bar_mapped(struct pci_device *pdev, unsigned bar, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = pdev->opaque;
	if (bar != 0) {
		if (vp->vd->vops->bar_mapped)
			vp->vd->vops->bar_mapped(vp->vd, bar, addr, mapped);
		return;
	}
	pthread_mutex_lock(vp->vd->lock);
	for (unsigned q = 0; q < vp->vd->vops->num_queues; q++) {
		struct virtio_pci_queue *pq = &vp->q[q];
		if (pq->ioeventfd) {
			set_ioeventfd(vp, q, vp->bar_addr, false);
			pq->ioeventfd = false;
		}
		/* Synchronous queues keep trapping to the vCPU thread. */
		if (mapped && !(vp->vd->vops->sync_notify & (1u << q)))
			pq->ioeventfd = set_ioeventfd(vp, q, addr, true) == 0;
	}
	vp->bar_addr = addr;
	vp->bar_mapped = mapped;
	pthread_mutex_unlock(vp->vd->lock);
}

/* The VIRTIO_PCI_CAP_PCI_CFG window: config-space access to the BAR. */
static bool cfg_window_access(struct virtio_pci *vp, uint32_t off, uint32_t len, bool is_write, uint32_t *val)
{
	uint32_t data_off = vp->pci_cfg_cap + offsetof(struct virtio_pci_cfg_cap, data);
	if (off != data_off || !len)
		return false;
	struct virtio_pci_cfg_cap cap;
	memcpy(&cap, vp->pci.cfg + vp->pci_cfg_cap, sizeof(cap));
	uint32_t n = cap.cap.length;
	if (cap.cap.bar != 0 || (n != 1 && n != 2 && n != 4) || cap.cap.offset % n ||
	    cap.cap.offset >= VPCI_BAR_SIZE) {
		device_reject(&vp->vd->dev, "PCI config window: bar %u offset 0x%x length %u", cap.cap.bar,
			      cap.cap.offset, n);
		*val = 0;
		return true;
	}
	uint8_t buf[4] = { 0 };
	if (is_write) {
		memcpy(buf, vp->pci.cfg + data_off, 4);
		bar_io(vp, cap.cap.offset, buf, n, true);
	} else {
		bar_io(vp, cap.cap.offset, buf, n, false);
		*val = 0;
		memcpy(val, buf, n);
	}
	return true;
}

static bool config_read(struct pci_device *pdev, uint32_t off, uint32_t len, uint32_t *val)
{
	return cfg_window_access(pdev->opaque, off, len, false, val);
}

static void config_written(struct pci_device *pdev, uint32_t off, uint32_t len)
{
	struct virtio_pci *vp = pdev->opaque;
	uint32_t unused;
	if (off < vp->msix.cap + 4u && off + len > vp->msix.cap)
		msix_control_written(&vp->msix);
	cfg_window_access(vp, off, len, true, &unused);
}

static const struct pci_device_ops virtio_pci_ops = {
	.bar_mapped = bar_mapped,
	.config_written = config_written,
	.config_read = config_read,
};

static uint8_t add_virtio_cap(struct pci_device *pdev, uint8_t type, uint32_t offset, uint32_t length)
{
	struct virtio_pci_cap cap = {
		.cap_vndr = PCI_CAP_ID_VNDR, .cap_len = sizeof(cap), .cfg_type = type,
		.bar = 0, .offset = offset, .length = length,
	};
	return pci_add_cap(pdev, &cap, sizeof(cap));
}

int virtio_pci_create(struct virtio_device *vd, char *err, size_t errlen)
{
	struct vm *vm = vd->dev.vm;
	const struct virtio_device_ops *ops = vd->vops;
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	if (!vp) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	vp->vd = vd;
	vd->transport = vp;
	unsigned nvec = ops->num_queues + 1u;
	vpci_common_init(&vp->common, vd, (uint16_t)nvec);
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->q[q].efd = -1;

	struct pci_device *pdev = &vp->pci;
	/* Modern-only device: ID 0x1040 + type, revision 1, subsystem >= 0x40. */
	pci_device_init(pdev, &vd->dev, PCI_VENDOR_ID_REDHAT_QUMRANET, (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + ops->type),
			0xff0000, PCI_VENDOR_ID_REDHAT_QUMRANET, 0x40, 1);
	pdev->ops = &virtio_pci_ops;
	pdev->opaque = vp;
	pci_set_bar(pdev, 0, VPCI_BAR_SIZE, false, false, bar_io, vp);

	add_virtio_cap(pdev, VIRTIO_PCI_CAP_COMMON_CFG, VPCI_COMMON, VIRTIO_PCI_COMMON_SIZE);
	add_virtio_cap(pdev, VIRTIO_PCI_CAP_ISR_CFG, VPCI_ISR, 1);
	if (ops->config_size)
		add_virtio_cap(pdev, VIRTIO_PCI_CAP_DEVICE_CFG, VPCI_DEVICE, ops->config_size);
	struct virtio_pci_notify_cap ncap = {
		.cap = { .cap_vndr = PCI_CAP_ID_VNDR, .cap_len = sizeof(ncap), .cfg_type = VIRTIO_PCI_CAP_NOTIFY_CFG,
			 .bar = 0, .offset = VPCI_NOTIFY,
			 /* At least one register: Linux's virtio_pci_modern refuses a
			  * device whose notification capability has length 0, which
			  * a device without queues (cpu-reserve) would have. */
			 .length = (ops->num_queues ? ops->num_queues : 1) * VPCI_NOTIFY_MULT },
		.notify_off_multiplier = VPCI_NOTIFY_MULT,
	};
	pci_add_cap(pdev, &ncap, sizeof(ncap));
	struct virtio_pci_cfg_cap ccap = {
		.cap = { .cap_vndr = PCI_CAP_ID_VNDR, .cap_len = sizeof(ccap), .cfg_type = VIRTIO_PCI_CAP_PCI_CFG },
	};
	vp->pci_cfg_cap = pci_add_cap(pdev, &ccap, sizeof(ccap));
	/* The window's bar, offset, length and data are the driver's to write. */
	pdev->wmask[vp->pci_cfg_cap + offsetof(struct virtio_pci_cap, bar)] = 0xff;
	memset(pdev->wmask + vp->pci_cfg_cap + offsetof(struct virtio_pci_cap, offset), 0xff, 8);
	memset(pdev->wmask + vp->pci_cfg_cap + offsetof(struct virtio_pci_cfg_cap, data), 0xff, 4);

	if (msix_init(&vp->msix, pdev, nvec, 0, VPCI_MSIX_TABLE, VPCI_MSIX_PBA, err, errlen) < 0)
		goto fail;
	if (ops->pci_setup && ops->pci_setup(vd, pdev, err, errlen) < 0)
		goto fail;

	for (unsigned q = 0; q < ops->num_queues; q++) {
		struct virtio_pci_queue *pq = &vp->q[q];
		pq->vp = vp;
		pq->vq = &vd->vq[q];
		pq->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (pq->efd < 0) {
			snprintf(err, errlen, "%s: eventfd: %s", vd->dev.name, strerror(errno));
			goto fail;
		}
		pq->handler = evl_add(vm->evl, pq->efd, EPOLLIN, ioeventfd_ready, pq);
		if (!pq->handler) {
			snprintf(err, errlen, "%s: cannot watch doorbell eventfd", vd->dev.name);
			goto fail;
		}
	}
	if (pci_bus_add(vm->pci, pdev, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	virtio_pci_destroy(vp);
	vd->transport = NULL;
	return -1;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	struct vm *vm = vp->vd->dev.vm;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		struct virtio_pci_queue *pq = &vp->q[q];
		if (pq->handler)
			evl_del(vm->evl, pq->handler);
		if (pq->ioeventfd)
			set_ioeventfd(vp, q, vp->bar_addr, false);
		if (pq->efd >= 0)
			close(pq->efd);
	}
	msix_destroy(&vp->msix);
	free(vp);
}
