/* Guest-physical layout that ferry builds and ferry-guest may rely on only where
 * noted: the guest reads everything else from hvm_start_info and ACPI, so the
 * same image also boots under QEMU. */
#ifndef FERRY_LAYOUT_H
#define FERRY_LAYOUT_H

/* Boot data written by ferry below 1 MiB (kernel images load at >= 1 MiB). */
#define FERRY_START_INFO_GPA   0x6000ull   /* struct hvm_start_info */
#define FERRY_MEMMAP_GPA       0x6100ull   /* hvm memmap entries */
#define FERRY_CMDLINE_GPA      0x7000ull
#define FERRY_CMDLINE_MAX      4096
#define FERRY_ACPI_GPA         0xe0000ull  /* RSDP first, then XSDT, MADT, ... */
#define FERRY_ACPI_MAX         0x10000ull
#define FERRY_LOW_RESERVED_GPA 0x9f000ull  /* [this, 1 MiB) is reserved */

/* RAM lives in [0, min(ram, 3 GiB)) and above 4 GiB for the rest. */
#define FERRY_MMIO_HOLE_GPA    0xc0000000ull
#define FERRY_HIGH_RAM_GPA     0x100000000ull

/* 32-bit PCI memory window for BARs ferry assigns. */
#define FERRY_PCI_MMIO32_GPA   0xc0000000ull
#define FERRY_PCI_MMIO32_SIZE  0x3c000000ull  /* up to 0xfc000000 */
/* 64-bit window for large BARs (shared-memory windows), above any RAM. */
#define FERRY_PCI_MMIO64_GPA   0x8000000000ull /* 512 GiB */
#define FERRY_PCI_MMIO64_SIZE  0x8000000000ull /* up to 1 TiB */
/* Device memory windows (the msgq page window, NIC zero-copy areas, shared
 * memory links) are placed from the start of the 64-bit window, each aligned
 * to its size; ferry registers them with KVM before the PCI bus exists. */

/* PCI Express enhanced configuration access (ECAM, the ACPI MCFG): 4 KiB of
 * configuration space per function, bus 0 only. Above the 32-bit window. */
#define FERRY_PCI_ECAM_GPA     0xfc000000ull
#define FERRY_PCI_ECAM_BUSES   1
#define FERRY_PCI_ECAM_SIZE    (FERRY_PCI_ECAM_BUSES * 0x100000ull)

#define FERRY_IOAPIC_GPA       0xfec00000ull
#define FERRY_LAPIC_GPA        0xfee00000ull
/* KVM needs these pages for its own use on VT-x hosts (real-mode TSS, EPT
 * identity map); they sit in the hole, below the IOAPIC. */
#define FERRY_KVM_TSS_GPA      0xfffbd000ull
#define FERRY_KVM_IDMAP_GPA    0xfffbc000ull

/* I/O ports besides the PC's own (COM1 0x3f8, PCI 0xcf8) and debug exit
 * (ferry/debug_exit.h): the FADT's sleep control and status registers, which
 * power the VM off when the guest enters S5 through ACPI. */
#define FERRY_ACPI_SLEEP_CTL_PORT 0x600
#define FERRY_ACPI_SLEEP_STS_PORT 0x601
#define FERRY_ACPI_S5_TYPE        5    /* SLP_TYP of \_S5 */

#endif
