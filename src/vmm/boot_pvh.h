/* PVH boot: load an ELF kernel, write hvm_start_info, the memory map and the
 * command line into guest memory, and point the boot vCPU at the entry. */
#ifndef FERRY_BOOT_PVH_H
#define FERRY_BOOT_PVH_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/pvh.h"

struct vm;
struct guest_memory;

#define PVH_MAX_MEMMAP 8

/* The guest RAM layout for `ram` bytes: below the 3 GiB hole, then above
 * 4 GiB. Returns the number of memmap entries written (RAM and reserved). */
unsigned pvh_memmap(uint64_t ram, struct hvm_memmap_table_entry *out, unsigned max);

/* Loads the kernel image and boot data; sets *entry. */
int pvh_load(struct guest_memory *mem, const char *kernel, const char *cmdline,
	     uint64_t rsdp_gpa, uint32_t *entry, char *err, size_t errlen);

#endif
