/* Identity page tables. boot/pvh_entry.S maps [0, 4 GiB) with 2 MiB pages and
 * [3 GiB, 4 GiB) uncached; this file extends the same tables (boot_pml4) to
 * whatever else must be reachable: RAM above 4 GiB, 64-bit PCI BARs. */
#include <stdbool.h>
#include "boot.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "paging.h"
#include "spinlock.h"
#include "x86.h"

#define PTE_ADDR_MASK 0x000ffffffffff000ull
#define LARGE_PAGE    (2 * MiB)

static struct spinlock lock = SPINLOCK_INIT;

static uint64_t *table_alloc(void)
{
	uint64_t *t = page_alloc_ready() ? alloc_page() : phys_to_virt(page_alloc_early());

	if (t)
		memset(t, 0, PAGE_SIZE);
	return t;
}

/*
 * Under shadow paging every write to a live page table traps to the
 * hypervisor, so new tables are filled completely before they are linked in,
 * and entries that already hold the wanted value are not rewritten.
 */
static int map_1g_chunk(uint64_t start, uint64_t end, uint64_t attr)
{
	uint64_t *pml4e = &boot_pml4[(start >> 39) & 511];
	uint64_t *pdpt, *pdpte, *pd, link;
	bool new_pd;

	if (*pml4e & PTE_P) {
		pdpt = phys_to_virt(*pml4e & PTE_ADDR_MASK);
	} else {
		pdpt = table_alloc();
		if (!pdpt)
			return -1;
	}
	pdpte = &pdpt[(start >> 30) & 511];
	new_pd = !(*pdpte & PTE_P);
	pd = new_pd ? table_alloc() : phys_to_virt(*pdpte & PTE_ADDR_MASK);
	if (!pd)
		return -1;  /* a fresh, unlinked pdpt page is lost; out of memory anyway */
	for (uint64_t a = start; a < end; a += LARGE_PAGE) {
		uint64_t *pde = &pd[(a >> 21) & 511];
		if (*pde != (a | attr)) {
			bool was_present = *pde & PTE_P;
			*pde = a | attr;
			if (was_present)
				asm volatile("invlpg (%0)" :: "r"(a) : "memory");
		}
	}
	link = PTE_P | PTE_W | PTE_U;
	if (new_pd)
		*pdpte = virt_to_phys(pd) | link;
	if (!(*pml4e & PTE_P))
		*pml4e = virt_to_phys(pdpt) | link;
	return 0;
}

int paging_map(uint64_t phys, uint64_t size, unsigned flags)
{
	uint64_t attr = PTE_P | PTE_W | PTE_U | PTE_PS | (flags & PAGING_UNCACHED ? PTE_PCD | PTE_PWT : 0);
	uint64_t start = ALIGN_DOWN(phys, LARGE_PAGE), end = ALIGN_UP(phys + size, LARGE_PAGE);
	uint64_t irqflags = spin_lock_irqsave(&lock);
	int ret = 0;

	while (start < end && !ret) {
		uint64_t chunk_end = MIN(end, ALIGN_DOWN(start, GiB) + GiB);
		ret = map_1g_chunk(start, chunk_end, attr);
		start = chunk_end;
	}
	spin_unlock_irqrestore(&lock, irqflags);
	return ret;
}

static uint64_t *pd_entry(uint64_t addr)
{
	uint64_t pml4e = boot_pml4[(addr >> 39) & 511], pdpte;

	if (!(pml4e & PTE_P))
		return NULL;
	pdpte = ((uint64_t *)phys_to_virt(pml4e & PTE_ADDR_MASK))[(addr >> 30) & 511];
	if (!(pdpte & PTE_P))
		return NULL;
	return &((uint64_t *)phys_to_virt(pdpte & PTE_ADDR_MASK))[(addr >> 21) & 511];
}

bool paging_is_mapped(uint64_t phys, uint64_t size)
{
	uint64_t end = phys + size;

	for (uint64_t a = ALIGN_DOWN(phys, LARGE_PAGE); a < end; a += LARGE_PAGE) {
		uint64_t *pde = pd_entry(a);
		if (!pde || !(*pde & PTE_P))
			return false;
	}
	return true;
}

static bool is_ram_type(uint32_t type)
{
	return type == HVM_MEMMAP_TYPE_RAM || type == HVM_MEMMAP_TYPE_ACPI;
}

void paging_init(void)
{
	/* The boot map covers the first 4 GiB; add what the memory map has above. */
	for (unsigned i = 0; i < boot_memmap_entries; i++) {
		const struct hvm_memmap_table_entry *e = &boot_memmap[i];
		uint64_t start = MAX(e->addr, 4 * GiB), end = e->addr + e->size;
		if (end > start && paging_map(start, end - start, is_ram_type(e->type) ? 0 : PAGING_UNCACHED))
			panic("paging: cannot map %#lx-%#lx", start, end);
	}
}
