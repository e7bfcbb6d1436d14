/* Binary buddy allocator over page frame numbers (kernel/buddy.c). Pure
 * bookkeeping: it never touches the pages it manages, only the metadata it is
 * given (9 bytes per page), so freed or ballooned-out pages stay untouched and
 * it can be unit-tested on the host. Blocks of order n are 2^n pages and
 * naturally aligned: an order-9 block is 2 MiB and 2 MiB-aligned. */
#ifndef GUEST_BUDDY_H
#define GUEST_BUDDY_H

#include <stddef.h>
#include <stdint.h>

#define BUDDY_MAX_ORDER   18          /* 2^18 pages of 4 KiB: 1 GiB */
#define BUDDY_MAX_REGIONS 16
#define BUDDY_NO_PFN      UINT64_MAX

struct buddy_link {
	uint32_t next, prev;  /* region-relative page indices */
};

struct buddy_region {
	uint64_t base_pfn, npages;
	struct buddy_link *link;  /* valid for the first page of each free block */
	uint8_t *state;           /* per page: order + 1 if it heads a free block, else 0 */
	uint32_t head[BUDDY_MAX_ORDER + 1];
	uint32_t nonempty;        /* bit n: head[n] is a list */
};

struct buddy {
	struct buddy_region region[BUDDY_MAX_REGIONS];
	unsigned nregions;
	uint64_t total_pages;     /* pages ever given with buddy_add_free() */
	uint64_t free_pages;
	uint64_t free_blocks[BUDDY_MAX_ORDER + 1];
};

/* Metadata bytes buddy_add_region() needs for npages pages. */
size_t buddy_metadata_bytes(uint64_t npages);
/* Adds the pfn range [base_pfn, base_pfn + npages), all of it in use. The
 * metadata must stay valid and untouched by others for the allocator's life.
 * Returns 0, or -1 (too many regions, too large, overlapping). */
int buddy_add_region(struct buddy *b, uint64_t base_pfn, uint64_t npages, void *metadata);
/* Hands pages of a region to the allocator, as free. Returns 0 or -1. */
int buddy_add_free(struct buddy *b, uint64_t pfn, uint64_t npages);

/* First pfn of a free block of 2^order pages, or BUDDY_NO_PFN. */
uint64_t buddy_alloc(struct buddy *b, unsigned order);
/* The largest block available of order <= max_order; its order in *order. */
uint64_t buddy_alloc_largest(struct buddy *b, unsigned max_order, unsigned *order);
/* The first free block, largest orders first, of order >= min_order for
 * which match(pfn, order, arg) is true, taken as buddy_alloc() would; its
 * order in *order. BUDDY_NO_PFN if none. Walks the free lists. */
uint64_t buddy_alloc_match(struct buddy *b, unsigned min_order,
			   int (*match)(uint64_t pfn, unsigned order, void *arg), void *arg,
			   unsigned *order);
/* Returns 0; -1 if the block is not a valid block of a region; -2 if it is
 * free already or lies inside a free block (double free). */
int buddy_free(struct buddy *b, uint64_t pfn, unsigned order);

#endif
