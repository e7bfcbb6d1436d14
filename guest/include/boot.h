/* What the boot code hands to C, and the boot information kept for later. */
#ifndef GUEST_BOOT_H
#define GUEST_BOOT_H

#include <stdint.h>
#include <ferry/pvh.h>

/* From the PVH loader; valid for the kernel's lifetime (their pages are reserved). */
extern const struct hvm_start_info *boot_info;
extern const struct hvm_memmap_table_entry *boot_memmap;
extern unsigned boot_memmap_entries;

/* Bytes of RAM in the memory map. */
uint64_t boot_ram_bytes(void);

void kernel_main(uint32_t start_info_pa);
void ap_main(void);

/* boot/pvh_entry.S and boot/ap_trampoline.S */
extern uint64_t boot_pml4[512];
extern uint64_t ap_boot_stack;  /* stack top for the AP being started */
extern const char ap_trampoline_start[], ap_trampoline_end[];

#endif
