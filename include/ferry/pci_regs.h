/* PCI configuration space, type 0 header, and capability IDs used by ferry. */
#ifndef FERRY_PCI_REGS_H
#define FERRY_PCI_REGS_H

#define PCI_CONFIG_ADDRESS_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT    0xcfc
#define PCI_CONFIG_ENABLE       0x80000000u

#define PCI_VENDOR_ID        0x00
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04
#define  PCI_COMMAND_IO      0x0001
#define  PCI_COMMAND_MEMORY  0x0002
#define  PCI_COMMAND_MASTER  0x0004
#define  PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS           0x06
#define  PCI_STATUS_CAP_LIST 0x0010
#define PCI_REVISION_ID      0x08
#define PCI_CLASS_PROG       0x09
#define PCI_CLASS_DEVICE     0x0a  /* 16 bits: class << 8 | subclass */
#define PCI_HEADER_TYPE      0x0e
#define PCI_BAR0             0x10  /* six BARs, 4 bytes each */
#define  PCI_BAR_IO          0x1
#define  PCI_BAR_MEM_64      0x4
#define  PCI_BAR_PREFETCH    0x8
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID     0x2e
#define PCI_CAPABILITY_LIST  0x34
#define PCI_INTERRUPT_LINE   0x3c
#define PCI_INTERRUPT_PIN    0x3d

#define PCI_CAP_ID_MSIX      0x11
#define PCI_CAP_ID_VNDR      0x09

/* MSI-X capability: control word at +2, table at +4, PBA at +8. */
#define PCI_MSIX_CTRL              2
#define  PCI_MSIX_CTRL_ENABLE      0x8000
#define  PCI_MSIX_CTRL_MASKALL     0x4000
#define  PCI_MSIX_CTRL_SIZE_MASK   0x07ff
#define PCI_MSIX_TABLE             4
#define PCI_MSIX_PBA               8
#define PCI_MSIX_ENTRY_SIZE        16
#define  PCI_MSIX_ENTRY_ADDR_LO    0
#define  PCI_MSIX_ENTRY_ADDR_HI    4
#define  PCI_MSIX_ENTRY_DATA       8
#define  PCI_MSIX_ENTRY_CTRL       12
#define  PCI_MSIX_ENTRY_CTRL_MASK  0x1

#define PCI_VENDOR_ID_REDHAT_QUMRANET 0x1af4  /* virtio, ivshmem */
#define PCI_VENDOR_ID_INTEL           0x8086

#endif
