/* Virtio 1.x devices over the modern PCI transport (drivers/virtio_pci.c).
 *
 * A driver's life:
 *     virtio_pci_probe(&vd, VIRTIO_ID_x, 0)      find and map the device
 *     virtio_init(&vd, wanted_features)          reset, negotiate, FEATURES_OK
 *     virtio_setup_queue(&vd, &vq, i, max_size)  for each queue
 *     virtio_driver_ok(&vd)                      device goes live
 * then virtqueue.h to move buffers. Interrupts are per-queue MSI-X vectors on
 * the CPU that set the device up, plus one for configuration changes; without
 * MSI-X, waits poll. */
#ifndef GUEST_VIRTIO_PCI_H
#define GUEST_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/virtio.h>
#include "pci.h"

struct virtio_dev;
typedef void (*virtio_config_fn)(struct virtio_dev *vd, void *arg);

struct virtio_dev {
	struct pci_dev *pci;
	uint16_t type;                  /* VIRTIO_ID_* */
	uintptr_t common, isr, device_cfg, notify;
	uint32_t device_cfg_len, notify_len, notify_off_multiplier;
	uint64_t device_features, features;  /* offered; negotiated */
	uint16_t num_queues;
	bool msix;                      /* MSI-X in use */
	uint32_t irq_apic_id;           /* CPU that takes the interrupts */
	int config_vector;              /* -1: none */
	volatile uint64_t config_changes;
	virtio_config_fn config_fn;     /* called in interrupt context */
	void *config_arg;
};

/* Finds the nth (from 0) virtio PCI device of this type and maps its common,
 * notify, ISR and device configuration structures. Returns 0; -1 if there is
 * no such device; -2 if it is malformed (reason printed). */
int virtio_pci_probe(struct virtio_dev *vd, uint16_t type, unsigned nth);
/* Resets the device, sets ACKNOWLEDGE and DRIVER, accepts the features in
 * wanted (bit numbers as 1ull << VIRTIO_F_*) that the device offers plus
 * VIRTIO_F_VERSION_1, which it must offer, and checks FEATURES_OK. Also sets
 * up MSI-X. Returns 0 or -1 (device marked FAILED, reason printed). */
int virtio_init(struct virtio_dev *vd, uint64_t wanted);
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);
/* Sets up queue `index` (size: the device's, capped at max_size, rounded
 * down to a power of two) with its own MSI-X vector if available. Called
 * between virtio_init() and virtio_driver_ok(). Returns 0 or -1. */
struct virtqueue;
int virtio_setup_queue(struct virtio_dev *vd, struct virtqueue *vq, unsigned index, unsigned max_size);
/* A queue that is a doorbell, not a ring (a device's own extension): its
 * notify address (in *notify_addr) and, with MSI-X, a vector of its own that
 * calls fn(arg) in interrupt context. Returns the vector, -1 if polled
 * (no MSI-X), -2 if there is no such queue. */
int virtio_setup_doorbell(struct virtio_dev *vd, unsigned index, void (*fn)(void *arg), void *arg,
			  uintptr_t *notify_addr);
/* Sets DRIVER_OK. */
void virtio_driver_ok(struct virtio_dev *vd);
/* Marks the device FAILED; virtio_reset() stops it (queues must be set up again). */
void virtio_fail(struct virtio_dev *vd);
void virtio_reset(struct virtio_dev *vd);
uint8_t virtio_status(const struct virtio_dev *vd);

/* Device-specific configuration. Reads repeat until config_generation is
 * stable, so multi-field reads are consistent. Out-of-range accesses read
 * zeros and are reported. */
void virtio_config_read(struct virtio_dev *vd, unsigned offset, void *buf, unsigned len);
uint8_t virtio_config_read8(struct virtio_dev *vd, unsigned offset);
uint16_t virtio_config_read16(struct virtio_dev *vd, unsigned offset);
uint32_t virtio_config_read32(struct virtio_dev *vd, unsigned offset);
uint64_t virtio_config_read64(struct virtio_dev *vd, unsigned offset);
void virtio_config_write8(struct virtio_dev *vd, unsigned offset, uint8_t v);
void virtio_config_write16(struct virtio_dev *vd, unsigned offset, uint16_t v);
void virtio_config_write32(struct virtio_dev *vd, unsigned offset, uint32_t v);
/* fn runs (in interrupt context) when the device signals a configuration change. */
void virtio_set_config_handler(struct virtio_dev *vd, virtio_config_fn fn, void *arg);

#endif
