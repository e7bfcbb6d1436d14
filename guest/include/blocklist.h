/* Lists of page blocks (kernel/blocklist.c): what a balloon or a workload
 * holds, kept compactly in pages from the page allocator, 510 blocks per
 * 4 KiB page (a block is one 8-byte entry: its frame number and order), so a
 * 1 GiB balloon of 2 MiB blocks takes one page. A stack: the last block
 * pushed is the first taken. Not locked; allocates no memory to take. */
#ifndef GUEST_BLOCKLIST_H
#define GUEST_BLOCKLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "page_alloc.h"

struct blocklist_chunk;

struct blocklist {
	struct blocklist_chunk *top;
	struct blocklist_chunk *spare;   /* an empty chunk kept for the next push */
	uint64_t pages;                  /* in all listed blocks */
	uint64_t blocks;
	uint64_t chunks;                 /* pages the list itself uses */
};

/* Adds a block; 0, or -1 if a page for the list could not be allocated. */
int blocklist_push(struct blocklist *l, uint64_t addr, unsigned order);
/* Removes the last block pushed into *b; false if the list is empty. */
bool blocklist_pop(struct blocklist *l, struct page_block *b);
/* Removes blocks worth `pages` pages, last pushed first, into out[0..max):
 * a block larger than what is still wanted is split, its upper halves
 * staying in the list (taken whole, so a little more than asked, in the rare
 * case that the list needs a page for them and none is free). Returns the
 * count; *got the pages. */
size_t blocklist_take(struct blocklist *l, uint64_t pages, struct page_block *out, size_t max,
		      uint64_t *got);
/* Calls fn for every block, last pushed first; stops when it returns false. */
void blocklist_for_each(const struct blocklist *l, bool (*fn)(const struct page_block *b, void *arg),
			void *arg);
/* Frees the list's own pages (and, if free_blocks, every listed block). */
void blocklist_release(struct blocklist *l, bool free_blocks);

#endif
