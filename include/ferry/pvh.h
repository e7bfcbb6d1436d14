/* x86-64 PVH boot ABI (Xen's hvm_start_info, as used by QEMU, Firecracker and
 * Cloud Hypervisor). Shared by ferry (writer) and ferry-guest (reader). */
#ifndef FERRY_PVH_H
#define FERRY_PVH_H

#include <stdint.h>

/* ELF note (owner "Xen") whose descriptor is the 32-bit physical entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;        /* 1: memmap fields are valid */
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;  /* NUL-terminated */
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* array of hvm_memmap_table_entry */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* E820 types, as in the memory map. */
#define HVM_MEMMAP_TYPE_RAM      1
#define HVM_MEMMAP_TYPE_RESERVED 2
#define HVM_MEMMAP_TYPE_ACPI     3

#endif
