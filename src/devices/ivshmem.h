/* ivshmem: a VM's end of a static shared-memory link (host/link.c), as the
 * PCI device QEMU calls ivshmem-doorbell (1af4:1110, revision 1): BAR 0
 * registers, BAR 1 MSI-X, BAR 2 the link's memory. docs/devices/ivshmem.md */
#ifndef FERRY_DEVICES_IVSHMEM_H
#define FERRY_DEVICES_IVSHMEM_H

#include <stddef.h>

struct vm;

#define IVSHMEM_VECTORS 4   /* MSI-X vectors each device has; doorbells name one */

/* Phase 1, before the irqchip exists: the link's memory as a memory slot of
 * the VM (slot changes are slow once an irqchip exists). Nothing if the VM
 * is in no link. */
int ivshmem_memory_create(struct vm *vm, char *err, size_t errlen);
/* Phase 2: the device on the PCI bus, attached to the link. */
int ivshmem_create(struct vm *vm, char *err, size_t errlen);

#endif
