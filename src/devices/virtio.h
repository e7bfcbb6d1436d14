/* A virtio device, independent of transport: feature negotiation, status,
 * queues, and the ops table each device type fills in (kvmtool's shape). The
 * transport (virtio_pci.c) owns registers and interrupts. */
#ifndef FERRY_VIRTIO_DEV_H
#define FERRY_VIRTIO_DEV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/virtqueue.h"

#define VIRTIO_MAX_QUEUES 18  /* virtio-net: pair 0 and 8 zero-copy channels */

struct vm;
struct virtio_device;
struct virtio_pci;
struct cJSON;
struct pci_device;

struct virtio_device_ops {
	uint16_t type;            /* VIRTIO_ID_* */
	uint16_t num_queues;
	uint16_t queue_size;      /* maximum offered per queue */
	uint64_t features;        /* device-specific bits; the core adds VERSION_1 */
	uint32_t config_size;
	/* All callbacks run with vd->lock held. Config accesses arrive with
	 * off + len already checked against config_size. Reads come from the
	 * device's config image (vd->config); writes need this callback. */
	void (*config_write)(struct virtio_device *vd, uint32_t off, const void *data, uint32_t len);
	/* The driver kicked vq. Runs on the event loop thread. */
	void (*queue_notify)(struct virtio_device *vd, struct virtqueue *vq);
	/* The driver set DRIVER_OK. */
	void (*activate)(struct virtio_device *vd);
	/* The driver reset the device. */
	void (*reset)(struct virtio_device *vd);
	/* Extra counters for the summary. */
	void (*counters_json)(struct virtio_device *vd, struct cJSON *obj);
	/* Frees the device-specific part (the core frees the rest). */
	void (*destroy)(struct virtio_device *vd);
	/* Queues (bit n = queue n) whose doorbell is handled on the vCPU thread
	 * before the guest resumes, instead of by ioeventfd on the event loop. */
	uint32_t sync_notify;
	/* Queues (bit n = queue n) that are doorbells, not rings: their
	 * notifications reach queue_notify whether or not the driver enabled
	 * them (it only gives them an MSI-X vector). */
	uint32_t doorbell_queues;
	/* Optional: BARs and capabilities beyond the transport's BAR 0. */
	int (*pci_setup)(struct virtio_device *vd, struct pci_device *pdev, char *err, size_t errlen);
	/* A BAR other than 0 was mapped at addr, moved or unmapped. */
	void (*bar_mapped)(struct virtio_device *vd, unsigned bar, uint64_t addr, bool mapped);
};

struct virtio_device {
	struct device dev;        /* first: a virtio_device is a device */
	const struct virtio_device_ops *vops;
	void *config;             /* the device config space image, vops->config_size bytes */
	/* Guards the device; devices that talk to each other share one. */
	pthread_mutex_t *lock;
	pthread_mutex_t own_lock;
	uint64_t driver_features; /* accepted at FEATURES_OK */
	uint8_t status;
	uint8_t config_generation;
	struct virtqueue vq[VIRTIO_MAX_QUEUES];
	struct virtio_pci *transport;
	atomic_ulong notifications; /* doorbells, by ioeventfd or by exit */
};

/* Sets up the core and a virtio-pci transport, and registers the device
 * with the VM. `name` is the summary's key for its counters. config: the
 * device's config image (NULL if config_size is 0). shared_lock: a lock to
 * use instead of the device's own (NULL for its own). */
int virtio_device_init(struct virtio_device *vd, struct vm *vm, const char *name,
		       const struct virtio_device_ops *vops, void *config, pthread_mutex_t *shared_lock,
		       char *err, size_t errlen);

/* After pushing buffers to vq: interrupts the driver if it wants it. */
void virtio_queue_interrupt(struct virtio_device *vd, struct virtqueue *vq);
/* The device stopped early on a kicked queue (it bounds the work of one
 * pass so that no guest holds the event loop): run the queue again after
 * the loop has served everything else that is ready. */
void virtio_queue_more(struct virtio_device *vd, struct virtqueue *vq);
/* The device changed its config space: bump the generation, interrupt. */
void virtio_config_changed(struct virtio_device *vd);
/* Marks the device as needing a reset (after a malformed ring). */
void virtio_needs_reset(struct virtio_device *vd);

static inline bool virtio_has_feature(const struct virtio_device *vd, unsigned bit)
{
	return vd->driver_features & (1ull << bit);
}

/* Transport side (virtio_pci.c). */
int virtio_pci_create(struct virtio_device *vd, char *err, size_t errlen);
void virtio_pci_destroy(struct virtio_pci *vp);
void virtio_pci_signal_queue(struct virtio_pci *vp, struct virtqueue *vq);
void virtio_pci_signal_config(struct virtio_pci *vp);
void virtio_pci_requeue(struct virtio_pci *vp, struct virtqueue *vq);

#endif
