/* The identity map (kernel/paging.c): one set of page tables, shared by all
 * CPUs, with 2 MiB pages. */
#ifndef GUEST_PAGING_H
#define GUEST_PAGING_H

#include <stdint.h>

#define PAGING_UNCACHED 1u  /* MMIO: PCD | PWT */

/* Maps the memory-map ranges above the boot map's 4 GiB (RAM cached, the
 * rest uncached). Uses early pages for new tables, so it runs before
 * page_alloc_init(). */
void paging_init(void);
/* Identity-maps [phys, phys + size), widened to 2 MiB boundaries. Adding
 * mappings is safe at any time; changing the caching of an existing mapping
 * is not shot down on other CPUs. Returns 0, or -1 if out of memory. */
int paging_map(uint64_t phys, uint64_t size, unsigned flags);
/* True if every byte of [phys, phys + size) is mapped. */
bool paging_is_mapped(uint64_t phys, uint64_t size);

#endif
