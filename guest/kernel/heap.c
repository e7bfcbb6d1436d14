/* kmalloc: size classes of 32 B .. 2 KiB, each carved from whole pages, and
 * page blocks for anything larger. Every object carries a 16-byte header with
 * a magic value, its class and size, which is how kfree finds its way back
 * and detects misuse. */
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "smp.h"
#include "spinlock.h"

#define HEADER      16
#define MIN_SHIFT   5                 /* 32-byte class */
#define MAX_SHIFT   11                /* 2 KiB class */
#define NCLASSES    (MAX_SHIFT - MIN_SHIFT + 1)
#define MAGIC_USED  0x6b6d616c6c6f6321ull  /* "kmalloc!" */
#define MAGIC_FREE  0x6b667265656421ddull
#define LARGE       0xff              /* class of a page-block allocation */

struct header {
	uint64_t magic;
	uint32_t size;        /* requested */
	uint8_t class;        /* shift, or LARGE */
	uint8_t order;        /* page order of a LARGE allocation */
	uint16_t reserved;
};

struct free_obj {
	struct header h;
	struct free_obj *next;
};

static struct free_obj *free_list[NCLASSES];
static struct heap_stats stats;
/* Does not disable interrupts (so ring-3 code keeps running natively):
 * interrupt handlers must not use the heap. */
static struct spinlock lock = SPINLOCK_INIT;

static void lock_heap(void)
{
	BUG_ON(in_interrupt());
	spin_lock(&lock);
}

_Static_assert(sizeof(struct header) == HEADER, "header keeps objects 16-byte aligned");

static bool refill(unsigned shift)
{
	char *page = alloc_page();
	size_t size = (size_t)1 << shift;

	if (!page)
		return false;
	stats.pages++;
	for (size_t off = 0; off + size <= PAGE_SIZE; off += size) {
		struct free_obj *o = (struct free_obj *)(page + off);
		o->h.magic = MAGIC_FREE;
		o->h.class = (uint8_t)shift;
		o->next = free_list[shift - MIN_SHIFT];
		free_list[shift - MIN_SHIFT] = o;
	}
	return true;
}

void *kmalloc(size_t size)
{
	size_t total = size + HEADER;
	struct header *h;

	if (size > UINT32_MAX)
		return NULL;
	lock_heap();
	if (total <= (1u << MAX_SHIFT)) {
		unsigned shift = MIN_SHIFT;
		while ((1u << shift) < total)
			shift++;
		if (!free_list[shift - MIN_SHIFT] && !refill(shift)) {
			spin_unlock(&lock);
			return NULL;
		}
		h = &free_list[shift - MIN_SHIFT]->h;
		free_list[shift - MIN_SHIFT] = free_list[shift - MIN_SHIFT]->next;
		h->class = (uint8_t)shift;
	} else {
		unsigned order = 0;
		while ((PAGE_SIZE << order) < total)
			order++;
		h = alloc_pages(order);
		if (!h) {
			spin_unlock(&lock);
			return NULL;
		}
		h->class = LARGE;
		h->order = (uint8_t)order;
		stats.pages += 1ull << order;
	}
	h->magic = MAGIC_USED;
	h->size = (uint32_t)size;
	stats.bytes_in_use += size;
	stats.allocations++;
	spin_unlock(&lock);
	return (char *)h + HEADER;
}

void *kzalloc(size_t size)
{
	void *p = kmalloc(size);

	if (p)
		memset(p, 0, size);
	return p;
}

void kfree(void *p)
{
	struct header *h;

	if (!p)
		return;
	h = (struct header *)((char *)p - HEADER);
	if (((uintptr_t)p & 15) || h->magic != MAGIC_USED)
		panic("kfree(%p): %s", p, h->magic == MAGIC_FREE ? "double free" : "not from kmalloc");
	lock_heap();
	stats.bytes_in_use -= h->size;
	stats.allocations--;
	h->magic = MAGIC_FREE;
	if (h->class == LARGE) {
		stats.pages -= 1ull << h->order;
		free_pages(h, h->order);
	} else if (h->class >= MIN_SHIFT && h->class <= MAX_SHIFT) {
		struct free_obj *o = (struct free_obj *)h;
		o->next = free_list[h->class - MIN_SHIFT];
		free_list[h->class - MIN_SHIFT] = o;
	} else {
		panic("kfree(%p): corrupt header", p);
	}
	spin_unlock(&lock);
}

void heap_stats(struct heap_stats *st)
{
	lock_heap();
	*st = stats;
	spin_unlock(&lock);
}
