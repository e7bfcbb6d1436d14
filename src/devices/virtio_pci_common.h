/* The virtio-pci common configuration structure: registers and the device
 * state they drive (see virtio_pci_common.c). All calls with vd->lock held. */
#ifndef FERRY_VIRTIO_PCI_COMMON_H
#define FERRY_VIRTIO_PCI_COMMON_H

#include <stdint.h>

#include "devices/virtio.h"

struct virtio_pci_common {
	struct virtio_device *vd;
	uint16_t nr_vectors;      /* MSI-X vectors the function has */
	uint32_t dfselect, gfselect;
	uint16_t queue_select;
	uint16_t config_vector;
	uint8_t isr;              /* ISR status (its own region; cleared by a reset) */
};

void vpci_common_init(struct virtio_pci_common *c, struct virtio_device *vd, uint16_t nr_vectors);
/* An access of len bytes at offset off of the structure. */
void vpci_common_write(struct virtio_pci_common *c, uint64_t off, uint64_t val, uint32_t len);
uint64_t vpci_common_read(struct virtio_pci_common *c, uint64_t off, uint32_t len);

#endif
