/* Sets up the buddy allocator from the boot memory map and wraps it with a
 * lock. Until page_alloc_init() runs, page tables and the buddy metadata come
 * from a bump allocator right after the kernel image ("early pages"). */
#include "boot.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "smp.h"
#include "spinlock.h"

#define MAX_RESERVED 64

static struct buddy buddy;
static struct spinlock lock = SPINLOCK_INIT;
static bool ready;

static struct {
	uint64_t start, end;
} reserved[MAX_RESERVED];
static unsigned nreserved;
static uint64_t early_start, early_next, early_limit;

void page_alloc_reserve(uint64_t addr, uint64_t size)
{
	if (ready)
		panic("page_alloc_reserve after init");
	if (nreserved == MAX_RESERVED)
		panic("page_alloc: more than %d reserved ranges", MAX_RESERVED);
	reserved[nreserved].start = ALIGN_DOWN(addr, PAGE_SIZE);
	reserved[nreserved].end = ALIGN_UP(addr + size, PAGE_SIZE);
	nreserved++;
}

/* The lowest reserved range overlapping [start, end), or NULL. */
static const __typeof__(reserved[0]) *overlap(uint64_t start, uint64_t end)
{
	const __typeof__(reserved[0]) *first = NULL;

	for (unsigned i = 0; i < nreserved; i++) {
		if (reserved[i].start < end && start < reserved[i].end &&
		    (!first || reserved[i].start < first->start))
			first = &reserved[i];
	}
	return first;
}

/* npages contiguous early pages, skipping reserved ranges. */
static uint64_t early_alloc(uint64_t npages)
{
	uint64_t a;

	if (ready)
		panic("page_alloc_early after init");
	if (!early_limit) {
		early_start = early_next = ALIGN_UP((uint64_t)(uintptr_t)_kernel_end, PAGE_SIZE);
		for (unsigned i = 0; i < boot_memmap_entries; i++) {
			const struct hvm_memmap_table_entry *e = &boot_memmap[i];
			if (e->type == HVM_MEMMAP_TYPE_RAM && e->addr <= early_next &&
			    e->addr + e->size > early_next)
				early_limit = ALIGN_DOWN(e->addr + e->size, PAGE_SIZE);
		}
		if (!early_limit)
			panic("page_alloc: the kernel image is not in RAM");
	}
	for (a = early_next;;) {
		const __typeof__(reserved[0]) *r = overlap(a, a + npages * PAGE_SIZE);
		if (!r)
			break;
		a = r->end;
	}
	if (a + npages * PAGE_SIZE > early_limit)
		panic("page_alloc: out of early memory (%lu pages wanted)", npages);
	early_next = a + npages * PAGE_SIZE;
	return a;
}

uint64_t page_alloc_early(void)
{
	return early_alloc(1);
}

bool page_alloc_ready(void)
{
	return ready;
}

/* Adds the part of [start, end) outside every reserved range as free pages. */
static void add_free(uint64_t start, uint64_t end)
{
	while (start < end) {
		const __typeof__(reserved[0]) *r = overlap(start, end);
		uint64_t stop = r ? MAX(r->start, start) : end;

		if (stop > start && buddy_add_free(&buddy, start >> PAGE_SHIFT, (stop - start) >> PAGE_SHIFT))
			panic("page_alloc: cannot add %#lx-%#lx", start, stop);
		if (!r)
			break;
		start = r->end;
	}
}

void page_alloc_init(void)
{
	struct { uint64_t start, end; void *meta; } regions[BUDDY_MAX_REGIONS];
	unsigned n = 0;

	/* RAM above 1 MiB, page-aligned inwards. */
	for (unsigned i = 0; i < boot_memmap_entries; i++) {
		const struct hvm_memmap_table_entry *e = &boot_memmap[i];
		uint64_t start = ALIGN_UP(MAX(e->addr, 1 * MiB), PAGE_SIZE);
		uint64_t end = ALIGN_DOWN(e->addr + e->size, PAGE_SIZE);

		if (e->type != HVM_MEMMAP_TYPE_RAM || end <= start)
			continue;
		if (n == BUDDY_MAX_REGIONS) {
			kprintf("page_alloc: more than %d RAM ranges, %#lx-%#lx unused\n",
				BUDDY_MAX_REGIONS, start, end);
			continue;
		}
		regions[n].start = start;
		regions[n].end = end;
		regions[n].meta = phys_to_virt(early_alloc(
			ALIGN_UP(buddy_metadata_bytes((end - start) >> PAGE_SHIFT), PAGE_SIZE) >> PAGE_SHIFT));
		n++;
	}

	page_alloc_reserve((uintptr_t)_kernel_start, (uintptr_t)_kernel_end - (uintptr_t)_kernel_start);
	if (early_limit)
		page_alloc_reserve(early_start, early_next - early_start);
	for (unsigned i = 0; i < n; i++) {
		if (buddy_add_region(&buddy, regions[i].start >> PAGE_SHIFT,
				     (regions[i].end - regions[i].start) >> PAGE_SHIFT, regions[i].meta))
			panic("page_alloc: bad RAM range %#lx-%#lx", regions[i].start, regions[i].end);
		add_free(regions[i].start, regions[i].end);
	}
	ready = true;
}

/* The lock does not disable interrupts, so that code running in ring 3
 * (native.h) allocates without leaving it; in exchange, interrupt handlers
 * must not allocate (a handler would deadlock on the lock its CPU holds). */
static void lock_allocator(void)
{
	BUG_ON(in_interrupt());
	spin_lock(&lock);
}

void *alloc_pages(unsigned order)
{
	uint64_t pfn;

	lock_allocator();
	pfn = buddy_alloc(&buddy, order);
	spin_unlock(&lock);
	return pfn == BUDDY_NO_PFN ? NULL : phys_to_virt(pfn << PAGE_SHIFT);
}

void *alloc_pages_zeroed(unsigned order)
{
	void *p = alloc_pages(order);

	if (p)
		memset(p, 0, PAGE_SIZE << order);
	return p;
}

void *alloc_page(void)
{
	return alloc_pages(0);
}

void free_pages(void *addr, unsigned order)
{
	uint64_t pa = virt_to_phys(addr);
	int err;

	lock_allocator();
	err = (pa & (PAGE_SIZE - 1)) ? -1 : buddy_free(&buddy, pa >> PAGE_SHIFT, order);
	spin_unlock(&lock);
	if (err == -2)
		panic("free_pages: %#lx (order %u) is already free", pa, order);
	if (err)
		panic("free_pages: %#lx (order %u) is not an allocated block", pa, order);
}

void free_page(void *addr)
{
	free_pages(addr, 0);
}

size_t alloc_pages_bulk(uint64_t npages, unsigned max_order,
			struct page_block *blocks, size_t max_blocks, uint64_t *pages)
{
	uint64_t got = 0;
	size_t n = 0;

	lock_allocator();
	while (got < npages && n < max_blocks) {
		uint64_t want = npages - got;
		unsigned order = MIN(max_order, (unsigned)(63 - __builtin_clzll(want)));
		uint64_t pfn = buddy_alloc_largest(&buddy, order, &order);

		if (pfn == BUDDY_NO_PFN)
			break;
		blocks[n].addr = pfn << PAGE_SHIFT;
		blocks[n].order = order;
		n++;
		got += 1ull << order;
	}
	spin_unlock(&lock);
	*pages = got;
	return n;
}

void page_alloc_stats(struct page_alloc_stats *st)
{
	lock_allocator();
	st->total_pages = buddy.total_pages;
	st->free_pages = buddy.free_pages;
	memcpy(st->free_blocks, buddy.free_blocks, sizeof(st->free_blocks));
	spin_unlock(&lock);
}
