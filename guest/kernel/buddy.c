/* Binary buddy allocator. Each region keeps one doubly linked free list per
 * order, threaded through an out-of-band link array, and a state byte per page
 * that tells whether the page heads a free block and of which order, so that
 * coalescing never reads the pages themselves. Allocation and free are
 * O(BUDDY_MAX_ORDER). No hardware access: unit-testable on the host. */
#include "buddy.h"
#include "kstring.h"

#define NONE UINT32_MAX

size_t buddy_metadata_bytes(uint64_t npages)
{
	return npages * (sizeof(struct buddy_link) + 1);
}

int buddy_add_region(struct buddy *b, uint64_t base_pfn, uint64_t npages, void *metadata)
{
	struct buddy_region *r;

	if (b->nregions == BUDDY_MAX_REGIONS || !npages || npages >= NONE)
		return -1;
	for (unsigned i = 0; i < b->nregions; i++) {
		const struct buddy_region *o = &b->region[i];
		if (base_pfn < o->base_pfn + o->npages && o->base_pfn < base_pfn + npages)
			return -1;
	}
	r = &b->region[b->nregions++];
	r->base_pfn = base_pfn;
	r->npages = npages;
	r->link = metadata;
	r->state = (uint8_t *)metadata + npages * sizeof(struct buddy_link);
	memset(r->state, 0, npages);
	for (unsigned o = 0; o <= BUDDY_MAX_ORDER; o++)
		r->head[o] = NONE;
	r->nonempty = 0;
	return 0;
}

static struct buddy_region *region_of(struct buddy *b, uint64_t pfn, uint64_t npages)
{
	for (unsigned i = 0; i < b->nregions; i++) {
		struct buddy_region *r = &b->region[i];
		if (pfn >= r->base_pfn && pfn + npages <= r->base_pfn + r->npages)
			return r;
	}
	return NULL;
}

static void push(struct buddy *b, struct buddy_region *r, uint32_t idx, unsigned order)
{
	uint32_t head = r->head[order];

	r->link[idx].next = head;
	r->link[idx].prev = NONE;
	if (head != NONE)
		r->link[head].prev = idx;
	r->head[order] = idx;
	r->state[idx] = (uint8_t)(order + 1);
	r->nonempty |= 1u << order;
	b->free_blocks[order]++;
}

static void unlink(struct buddy *b, struct buddy_region *r, uint32_t idx, unsigned order)
{
	struct buddy_link *l = &r->link[idx];

	if (l->prev != NONE)
		r->link[l->prev].next = l->next;
	else
		r->head[order] = l->next;
	if (l->next != NONE)
		r->link[l->next].prev = l->prev;
	if (r->head[order] == NONE)
		r->nonempty &= ~(1u << order);
	r->state[idx] = 0;
	b->free_blocks[order]--;
}

/* Takes a block of exactly `order` from region r, splitting a larger one. */
static uint64_t take(struct buddy *b, struct buddy_region *r, unsigned order)
{
	unsigned o = order + __builtin_ctz(r->nonempty >> order);
	uint32_t idx = r->head[o];

	unlink(b, r, idx, o);
	while (o > order) {
		o--;
		push(b, r, idx + (1u << o), o);  /* upper half stays free */
	}
	b->free_pages -= 1ull << order;
	return r->base_pfn + idx;
}

uint64_t buddy_alloc(struct buddy *b, unsigned order)
{
	if (order > BUDDY_MAX_ORDER)
		return BUDDY_NO_PFN;
	for (unsigned i = 0; i < b->nregions; i++) {
		struct buddy_region *r = &b->region[i];
		if (r->nonempty >> order)
			return take(b, r, order);
	}
	return BUDDY_NO_PFN;
}

uint64_t buddy_alloc_largest(struct buddy *b, unsigned max_order, unsigned *order)
{
	struct buddy_region *best = NULL;
	unsigned best_order = 0;

	if (max_order > BUDDY_MAX_ORDER)
		max_order = BUDDY_MAX_ORDER;
	for (unsigned i = 0; i < b->nregions; i++) {
		struct buddy_region *r = &b->region[i];
		unsigned top;
		if (!r->nonempty)
			continue;
		top = 31 - __builtin_clz(r->nonempty);
		if (top > max_order)
			top = max_order;
		if (!best || top > best_order) {
			best = r;
			best_order = top;
		}
		if (best_order == max_order)
			break;
	}
	if (!best)
		return BUDDY_NO_PFN;
	*order = best_order;
	return take(b, best, best_order);
}

uint64_t buddy_alloc_match(struct buddy *b, unsigned min_order,
			   int (*match)(uint64_t pfn, unsigned order, void *arg), void *arg,
			   unsigned *order)
{
	for (unsigned o = BUDDY_MAX_ORDER + 1; o-- > min_order;) {
		for (unsigned i = 0; i < b->nregions; i++) {
			struct buddy_region *r = &b->region[i];
			if (!(r->nonempty & (1u << o)))
				continue;
			for (uint32_t idx = r->head[o]; idx != NONE; idx = r->link[idx].next) {
				if (!match(r->base_pfn + idx, o, arg))
					continue;
				unlink(b, r, idx, o);
				b->free_pages -= 1ull << o;
				*order = o;
				return r->base_pfn + idx;
			}
		}
	}
	return BUDDY_NO_PFN;
}

int buddy_free(struct buddy *b, uint64_t pfn, unsigned order)
{
	struct buddy_region *r;
	uint32_t idx;

	if (order > BUDDY_MAX_ORDER || (pfn & ((1ull << order) - 1)))
		return -1;
	r = region_of(b, pfn, 1ull << order);
	if (!r)
		return -1;
	/* Free already, or inside a larger free block? */
	if (r->state[pfn - r->base_pfn])
		return -2;
	for (unsigned o = order + 1; o <= BUDDY_MAX_ORDER; o++) {
		uint64_t head = pfn & ~((1ull << o) - 1);
		if (head >= r->base_pfn && r->state[head - r->base_pfn] == o + 1)
			return -2;
	}

	b->free_pages += 1ull << order;
	idx = (uint32_t)(pfn - r->base_pfn);
	for (; order < BUDDY_MAX_ORDER; order++) {
		uint64_t buddy = (r->base_pfn + idx) ^ (1ull << order);
		uint32_t bidx;
		if (buddy < r->base_pfn || buddy + (1ull << order) > r->base_pfn + r->npages)
			break;
		bidx = (uint32_t)(buddy - r->base_pfn);
		if (r->state[bidx] != order + 1)
			break;
		unlink(b, r, bidx, order);
		if (bidx < idx)
			idx = bidx;
	}
	push(b, r, idx, order);
	return 0;
}

int buddy_add_free(struct buddy *b, uint64_t pfn, uint64_t npages)
{
	uint64_t end = pfn + npages;

	if (!region_of(b, pfn, npages))
		return -1;
	while (pfn < end) {
		unsigned order = pfn ? __builtin_ctzll(pfn) : BUDDY_MAX_ORDER;
		if (order > BUDDY_MAX_ORDER)
			order = BUDDY_MAX_ORDER;
		while ((1ull << order) > end - pfn)
			order--;
		if (buddy_free(b, pfn, order))
			return -1;
		b->total_pages += 1ull << order;
		pfn += 1ull << order;
	}
	return 0;
}
