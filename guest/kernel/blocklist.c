/* Page-block lists: see include/blocklist.h. A chunk is one page: a link, a
 * count and 510 entries of (pfn << 6 | order). */
#include "blocklist.h"
#include "kernel.h"

#define ORDER_BITS 6
#define CHUNK_ENTRIES ((PAGE_SIZE - 16) / 8)

struct blocklist_chunk {
	struct blocklist_chunk *prev;
	uint32_t count;
	uint32_t reserved;
	uint64_t entry[CHUNK_ENTRIES];
};
_Static_assert(sizeof(struct blocklist_chunk) == PAGE_SIZE, "one page per chunk");

int blocklist_push(struct blocklist *l, uint64_t addr, unsigned order)
{
	struct blocklist_chunk *c = l->top;

	if (!c || c->count == CHUNK_ENTRIES) {
		c = l->spare;
		if (c) {
			l->spare = NULL;
		} else {
			c = alloc_page();
			if (!c)
				return -1;
			l->chunks++;
		}
		c->prev = l->top;
		c->count = 0;
		l->top = c;
	}
	c->entry[c->count++] = (addr >> PAGE_SHIFT) << ORDER_BITS | order;
	l->pages += 1ull << order;
	l->blocks++;
	return 0;
}

bool blocklist_pop(struct blocklist *l, struct page_block *b)
{
	struct blocklist_chunk *c;
	uint64_t e;

	/* Empty chunks become the spare (one kept, so that a push right after
	 * a pop never allocates). */
	while ((c = l->top) && !c->count) {
		l->top = c->prev;
		if (l->spare) {
			free_page(l->spare);
			l->chunks--;
		}
		l->spare = c;
	}
	if (!c)
		return false;
	e = c->entry[--c->count];
	b->addr = (e >> ORDER_BITS) << PAGE_SHIFT;
	b->order = (unsigned)(e & ((1u << ORDER_BITS) - 1));
	l->pages -= 1ull << b->order;
	l->blocks--;
	return true;
}

/* Whether `order` more entries fit without allocating, after trying to
 * get a spare chunk. */
static bool split_room(struct blocklist *l, unsigned order)
{
	uint64_t room = l->top ? CHUNK_ENTRIES - l->top->count : 0;

	if (!l->spare && room < order) {
		l->spare = alloc_page();
		if (l->spare)
			l->chunks++;
	}
	return room >= order || l->spare;
}

size_t blocklist_take(struct blocklist *l, uint64_t pages, struct page_block *out, size_t max,
		      uint64_t *got)
{
	uint64_t taken = 0;
	size_t n = 0;
	struct page_block b;

	while (n < max && taken < pages && blocklist_pop(l, &b)) {
		/* Split until it fits, the upper halves going back, if there is
		 * room for them without allocating; else it is taken whole. */
		while ((1ull << b.order) > pages - taken && split_room(l, b.order)) {
			b.order--;
			blocklist_push(l, b.addr + (PAGE_SIZE << b.order), b.order);
		}
		out[n++] = b;
		taken += 1ull << b.order;
	}
	*got = taken;
	return n;
}

void blocklist_for_each(const struct blocklist *l, bool (*fn)(const struct page_block *b, void *arg),
			void *arg)
{
	for (const struct blocklist_chunk *c = l->top; c; c = c->prev) {
		for (uint32_t i = c->count; i--;) {
			struct page_block b = {
				(c->entry[i] >> ORDER_BITS) << PAGE_SHIFT,
				(unsigned)(c->entry[i] & ((1u << ORDER_BITS) - 1)),
			};
			if (!fn(&b, arg))
				return;
		}
	}
}

void blocklist_release(struct blocklist *l, bool free_blocks)
{
	struct page_block b;

	while (free_blocks && blocklist_pop(l, &b))
		free_pages(phys_to_virt(b.addr), b.order);
	while (l->top) {
		struct blocklist_chunk *c = l->top;
		l->top = c->prev;
		free_page(c);
	}
	if (l->spare)
		free_page(l->spare);
	*l = (struct blocklist){ 0 };
}
