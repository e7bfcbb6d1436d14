/* The ivshmem device as QEMU defines it (docs/specs/ivshmem-spec.rst) and
 * ferry offers it for static links (docs/devices/ivshmem.md): shared by
 * ferry and ferry-guest. */
#ifndef FERRY_IVSHMEM_H
#define FERRY_IVSHMEM_H

#include <stdint.h>

#define IVSHMEM_PCI_VENDOR   0x1af4
#define IVSHMEM_PCI_DEVICE   0x1110
#define IVSHMEM_PCI_CLASS    0x050000   /* memory controller: RAM */
#define IVSHMEM_PCI_REVISION 1
#define IVSHMEM_PCI_SUBSYS   0x1100

#define IVSHMEM_REG_BAR  0              /* registers, 256 bytes of MMIO */
#define IVSHMEM_MSIX_BAR 1              /* MSI-X table and PBA */
#define IVSHMEM_MEM_BAR  2              /* the shared memory, 64-bit prefetchable */
#define IVSHMEM_REG_SIZE 256

/* Registers in BAR 0: 32-bit accesses. */
#define IVSHMEM_INTR_MASK   0x00        /* read/write; reserved in revision 1 */
#define IVSHMEM_INTR_STATUS 0x04        /* read/write; reserved in revision 1 */
#define IVSHMEM_IV_POSITION 0x08        /* read-only: this device's peer id */
#define IVSHMEM_DOORBELL    0x0c        /* write-only: peer id << 16 | MSI-X vector */

#define IVSHMEM_DOORBELL_VALUE(peer, vector) ((uint32_t)(peer) << 16 | (uint16_t)(vector))

#endif
