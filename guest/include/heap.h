/* Small-object heap on top of the page allocator (kernel/heap.c). Memory is
 * 16-byte aligned. kfree() panics on a pointer it did not hand out or one
 * freed twice. */
#ifndef GUEST_HEAP_H
#define GUEST_HEAP_H

#include <stddef.h>

void *kmalloc(size_t size);
void *kzalloc(size_t size);
void kfree(void *p);

struct heap_stats {
	size_t bytes_in_use;   /* as requested by callers */
	size_t allocations;    /* live */
	size_t pages;          /* pages held by the heap, including large blocks */
};
void heap_stats(struct heap_stats *st);

#endif
