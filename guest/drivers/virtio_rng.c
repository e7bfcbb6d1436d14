/* virtio-rng: one queue of device-writable buffers that come back filled
 * with entropy (virtio 1.2, section 5.4). The device may fill fewer bytes
 * than offered, so reads loop. */
#include "kernel.h"
#include "spinlock.h"
#include "timer.h"
#include "virtio_pci.h"
#include "virtio_rng.h"
#include "virtqueue.h"

#define RNG_QUEUE_SIZE 8
#define RNG_TIMEOUT_NS 1000000000ull

static struct virtio_dev dev;
static struct virtqueue vq;
static bool present;
static struct spinlock lock = SPINLOCK_INIT;

int virtio_rng_init(void)
{
	int err = virtio_pci_probe(&dev, VIRTIO_ID_RNG, 0);

	if (err)
		return err;
	if (virtio_init(&dev, 0) || virtio_setup_queue(&dev, &vq, 0, RNG_QUEUE_SIZE))
		return -2;
	virtio_driver_ok(&dev);
	present = true;
	pr_info("virtio-rng: queue size %u, %s\n", vq.size, vq.vector >= 0 ? "MSI-X" : "polled");
	return 0;
}

bool virtio_rng_present(void)
{
	return present;
}

struct virtqueue *virtio_rng_queue(void)
{
	return present ? &vq : NULL;
}

int virtio_rng_read(void *buf, size_t len)
{
	uint8_t *p = buf;
	int ret = 0;

	if (!present)
		return -1;
	spin_lock(&lock);
	for (size_t done = 0, empty = 0; done < len && ret == 0;) {
		struct vq_seg seg = { p + done, (uint32_t)MIN(len - done, 65536) };
		uint32_t got = 0;

		if (vq_add(&vq, &seg, 0, 1, p + done)) {
			ret = -1;
			break;
		}
		vq_kick(&vq);
		if (vq_wait(&vq, &got, RNG_TIMEOUT_NS) != p + done) {
			/* The buffer is still the device's: stop the device before
			 * handing the memory back to the caller. */
			kprintf("virtio-rng: no answer, device reset\n");
			virtio_reset(&dev);
			present = false;
			ret = -1;
		} else if (!got && ++empty == 16) {
			kprintf("virtio-rng: device returns no data\n");
			ret = -1;
		}
		done += got;
	}
	spin_unlock(&lock);
	return ret;
}
