#include "devices/virtio.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm.h"

static void virtio_counters_json(struct device *dev, struct cJSON *obj)
{
	struct virtio_device *vd = (struct virtio_device *)dev;
	cJSON_AddNumberToObject(obj, "notifications", (double)atomic_load(&vd->notifications));
	if (vd->vops->counters_json) {
		pthread_mutex_lock(vd->lock);
		vd->vops->counters_json(vd, obj);
		pthread_mutex_unlock(vd->lock);
	}
}

static void virtio_destroy(struct device *dev)
{
	struct virtio_device *vd = (struct virtio_device *)dev;
	if (vd->transport)
		virtio_pci_destroy(vd->transport);
	vd->transport = NULL; /* the device's own teardown may still signal: it goes nowhere */
	pthread_mutex_destroy(&vd->own_lock);
	vd->vops->destroy(vd);
}

static const struct device_ops virtio_device_ops_table = {
	.counters_json = virtio_counters_json,
	.destroy = virtio_destroy,
};

int virtio_device_init(struct virtio_device *vd, struct vm *vm, const char *name,
		       const struct virtio_device_ops *vops, void *config, pthread_mutex_t *shared_lock,
		       char *err, size_t errlen)
{
	if (vops->num_queues > VIRTIO_MAX_QUEUES || (vops->config_size && !config)) {
		snprintf(err, errlen, "%s: %u queues (at most %d), config space %s", name, vops->num_queues,
			 VIRTIO_MAX_QUEUES, config ? "given" : "missing");
		return -1;
	}
	snprintf(vd->dev.name, sizeof(vd->dev.name), "%s", name);
	vd->dev.ops = &virtio_device_ops_table;
	vd->dev.vm = vm;
	vd->vops = vops;
	vd->config = config;
	pthread_mutex_init(&vd->own_lock, NULL);
	vd->lock = shared_lock ? shared_lock : &vd->own_lock;
	for (uint16_t q = 0; q < vops->num_queues; q++)
		vq_init(&vd->vq[q], &vm->mem, &vd->dev, q, vops->queue_size);
	if (virtio_pci_create(vd, err, errlen) < 0) {
		pthread_mutex_destroy(&vd->own_lock);
		return -1;
	}
	vm_add_device(vm, &vd->dev);
	return 0;
}

void virtio_queue_interrupt(struct virtio_device *vd, struct virtqueue *vq)
{
	if (vd->transport && vq_should_interrupt(vq))
		virtio_pci_signal_queue(vd->transport, vq);
}

void virtio_queue_more(struct virtio_device *vd, struct virtqueue *vq)
{
	if (vd->transport)
		virtio_pci_requeue(vd->transport, vq);
}

void virtio_config_changed(struct virtio_device *vd)
{
	vd->config_generation++;
	if (vd->transport)
		virtio_pci_signal_config(vd->transport);
}

void virtio_needs_reset(struct virtio_device *vd)
{
	if (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	vd->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if (vd->transport) /* none in tests of the core alone */
		virtio_pci_signal_config(vd->transport);
}
