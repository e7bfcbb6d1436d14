/* Physical page allocator: the kernel's instance of the buddy allocator over
 * the RAM of the PVH memory map (kernel/page_alloc.c). Addresses are physical,
 * which in this identity-mapped kernel are also the virtual ones. */
#ifndef GUEST_PAGE_ALLOC_H
#define GUEST_PAGE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buddy.h"

#define PAGE_ORDER_2M 9
#define PAGE_ORDER_1G 18
#define PAGE_MAX_ORDER BUDDY_MAX_ORDER

/* Before page_alloc_init(): ranges the allocator must never hand out (boot
 * data, ACPI tables). The kernel image is reserved implicitly. */
void page_alloc_reserve(uint64_t addr, uint64_t size);
/* Before page_alloc_init(): one page (not zeroed) taken after the kernel image. */
uint64_t page_alloc_early(void);
/* Builds the allocator from the memory map, minus the first 1 MiB, the
 * reserved ranges, the kernel image and the early pages. */
void page_alloc_init(void);
bool page_alloc_ready(void);

/* 2^order contiguous pages, aligned to their size; NULL if none. */
void *alloc_pages(unsigned order);
void *alloc_pages_zeroed(unsigned order);
void *alloc_page(void);
/* Panics on a block that was not allocated (double free, bad address). */
void free_pages(void *addr, unsigned order);
void free_page(void *addr);

/* Allocates up to npages pages in blocks of at most max_order pages each,
 * largest blocks first, e.g. 2 MiB blocks (max_order 9) for a balloon, and
 * stores them in blocks[0..n). Stops when npages are allocated, max_blocks
 * are filled or memory runs out. Returns n; *pages gets the page count. */
struct page_block {
	uint64_t addr;
	unsigned order;
};
size_t alloc_pages_bulk(uint64_t npages, unsigned max_order,
			struct page_block *blocks, size_t max_blocks, uint64_t *pages);

struct page_alloc_stats {
	uint64_t total_pages;  /* managed by the allocator */
	uint64_t free_pages;
	uint64_t free_blocks[PAGE_MAX_ORDER + 1];
	uint64_t allocations;  /* blocks handed out (alloc_pages, alloc_pages_bulk) */
	uint64_t failures;     /* alloc_pages() calls that found no block (OOM) */
	uint64_t oom_retries;  /* ... that the out-of-memory handler then satisfied */
};
void page_alloc_stats(struct page_alloc_stats *st);

/* Out of memory: when alloc_pages() finds no block of 2^order pages, it calls
 * fn(order) (allocator unlocked, never in an interrupt handler, possibly with
 * the caller's spinlocks held) and, if that returns true (memory was freed),
 * tries again. One handler: the balloon's deflate-on-OOM. NULL removes it.
 * alloc_pages_bulk() does not call it. */
typedef bool (*page_oom_fn)(unsigned order);
void page_alloc_set_oom_handler(page_oom_fn fn);

/* Free page reporting (virtio-balloon): telling the host which free memory
 * it may drop. Each 2 MiB chunk of RAM has a "reported" mark, cleared when
 * any of its pages is allocated. page_report_init() allocates the marks (0,
 * or -1). page_report_take() takes free blocks of order >= min_order (at
 * least PAGE_ORDER_2M) that contain an unreported chunk, largest first, up
 * to max blocks and about max_pages pages, so that nothing allocates them
 * while the host is told; page_report_done() frees them again, marked
 * reported. */
int page_report_init(void);
size_t page_report_take(unsigned min_order, uint64_t max_pages, struct page_block *blocks, size_t max);
void page_report_done(const struct page_block *blocks, size_t n);

#endif
