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
static uint64_t allocations, failures, oom_retries;
static page_oom_fn oom_handler;
/* Free page reporting: a bit per 2 MiB chunk, set while it is reported. */
static uint8_t *reported;
static uint64_t reported_chunks;

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

/* Allocator locked: a block is being handed out, its chunks are no longer
 * reported. */
static void handed_out(uint64_t pfn, unsigned order)
{
	allocations++;
	if (!reported)
		return;
	for (uint64_t c = pfn >> PAGE_ORDER_2M, n = order > PAGE_ORDER_2M ? 1ull << (order - PAGE_ORDER_2M) : 1;
	     n--; c++) {
		if (c < reported_chunks)
			reported[c / 8] &= (uint8_t)~(1u << (c % 8));
	}
}

void *alloc_pages(unsigned order)
{
	uint64_t pfn;

	for (unsigned tries = 0;; tries++) {
		lock_allocator();
		pfn = buddy_alloc(&buddy, order);
		if (pfn != BUDDY_NO_PFN) {
			handed_out(pfn, order);
			if (tries)
				oom_retries++;
		} else if (!tries) {
			failures++;
		}
		spin_unlock(&lock);
		if (pfn != BUDDY_NO_PFN || tries == 64 || !READ_ONCE(oom_handler) || !oom_handler(order))
			break;
	}
	return pfn == BUDDY_NO_PFN ? NULL : phys_to_virt(pfn << PAGE_SHIFT);
}

void page_alloc_set_oom_handler(page_oom_fn fn)
{
	WRITE_ONCE(oom_handler, fn);
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
		handed_out(pfn, order);
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
	st->allocations = allocations;
	st->failures = failures;
	st->oom_retries = oom_retries;
	spin_unlock(&lock);
}

int page_report_init(void)
{
	uint64_t top = 0, bytes;
	unsigned order = 0;
	uint8_t *bits;

	if (reported)
		return 0;
	for (unsigned i = 0; i < buddy.nregions; i++)
		top = MAX(top, buddy.region[i].base_pfn + buddy.region[i].npages);
	bytes = ALIGN_UP(top, 1ull << PAGE_ORDER_2M) >> PAGE_ORDER_2M;
	bytes = (bytes + 7) / 8;
	while ((PAGE_SIZE << order) < bytes)
		order++;
	bits = alloc_pages_zeroed(order);
	if (!bits)
		return -1;
	lock_allocator();
	reported_chunks = bytes * 8;
	WRITE_ONCE(reported, bits);
	spin_unlock(&lock);
	return 0;
}

/* Reported chunks in a block of order >= PAGE_ORDER_2M. */
static uint64_t reported_in(uint64_t pfn, unsigned order)
{
	uint64_t c = pfn >> PAGE_ORDER_2M, n = 1ull << (order - PAGE_ORDER_2M), count = 0;

	for (; n--; c++) {
		if (c < reported_chunks && (reported[c / 8] & (1u << (c % 8))))
			count++;
	}
	return count;
}

/* buddy_alloc_match(): whether the block has a chunk not reported yet. */
static int unreported(uint64_t pfn, unsigned order, void *unused)
{
	(void)unused;
	return reported_in(pfn, order) < 1ull << (order - PAGE_ORDER_2M);
}

size_t page_report_take(unsigned min_order, uint64_t max_pages, struct page_block *blocks, size_t max)
{
	uint64_t pages = 0;
	size_t n = 0;

	min_order = MAX(min_order, (unsigned)PAGE_ORDER_2M);
	if (!reported)
		return 0;
	lock_allocator();
	while (n < max && pages + (1ull << min_order) <= max_pages) {
		struct page_block stack[BUDDY_MAX_ORDER + 2];
		unsigned order, depth = 0;
		uint64_t pfn = buddy_alloc_match(&buddy, min_order, unreported, NULL, &order);

		if (pfn == BUDDY_NO_PFN)
			break;
		/* Keep the parts that are not reported yet (a block coalesced
		 * from reported and fresh halves) and fit what is left; give
		 * the rest back. */
		stack[depth++] = (struct page_block){ pfn, order };
		while (depth) {
			struct page_block p = stack[--depth];
			uint64_t np = 1ull << p.order, rep = reported_in(p.addr, p.order);

			if (rep == np >> PAGE_ORDER_2M || n == max || pages + (1ull << min_order) > max_pages) {
				buddy_free(&buddy, p.addr, p.order);
			} else if (p.order > min_order && (rep || pages + np > max_pages)) {
				stack[depth++] = (struct page_block){ p.addr + np / 2, p.order - 1 };
				stack[depth++] = (struct page_block){ p.addr, p.order - 1 };
			} else {
				blocks[n].addr = p.addr << PAGE_SHIFT;
				blocks[n].order = p.order;
				n++;
				pages += np;
			}
		}
	}
	spin_unlock(&lock);
	return n;
}

void page_report_done(const struct page_block *blocks, size_t n)
{
	lock_allocator();
	for (size_t i = 0; i < n; i++) {
		uint64_t pfn = blocks[i].addr >> PAGE_SHIFT;
		uint64_t c = pfn >> PAGE_ORDER_2M, k = 1ull << (blocks[i].order - PAGE_ORDER_2M);

		if (buddy_free(&buddy, pfn, blocks[i].order))
			panic("page_report_done: %#lx (order %u) was not taken", blocks[i].addr, blocks[i].order);
		for (; k--; c++) {
			if (c < reported_chunks)
				reported[c / 8] |= (uint8_t)(1u << (c % 8));
		}
	}
	spin_unlock(&lock);
}
