/* Pages that move between VMs. One memfd holds every page that can appear
 * in a VM's message window; a page moves from one VM to another by mapping
 * it (mmap MAP_FIXED) into the receiver's window, never by copying.
 *
 * Each free page remembers whose data it holds. A page goes back to a VM
 * without zeroing only if it holds that VM's own data; otherwise it is
 * punched out of the file first, so it reads as zeroes. Pages a VM receives
 * are mapped read-only to it, so a page's data always has a single writer. */
#ifndef FERRY_PAGE_POOL_H
#define FERRY_PAGE_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POOL_NONE      UINT32_MAX
#define POOL_MAX_OWNERS 255   /* writer tags: VM ids 1..254; 0 = clean, 255 = mixed */
#define POOL_CLEAN     0
#define POOL_MIXED     255   /* data from several VMs: zero before reuse */

struct page_pool {
	int fd;
	bool hugepages;
	uint64_t page_size;
	uint32_t nr_pages;        /* data pages [0, nr_pages) */
	uint32_t zero_pages;      /* after them: a never-written area */
	uint8_t *base;            /* ferry's own read-write mapping of the data pages */
	pthread_mutex_t lock;
	uint32_t *next;           /* free-list links */
	uint8_t *writer;          /* per page: whose data it holds (POOL_CLEAN: none) */
	uint32_t clean;           /* free pages with no data */
	uint32_t dirty[POOL_MAX_OWNERS]; /* free pages holding one VM's data */
	uint32_t nr_free;
	uint64_t zeroed;          /* pages punched so a different VM could use them */
	/* Tests: bit i set makes the i-th next pool_map/pool_map_zero fail. */
	uint64_t fail_maps;
};

/* page_size is 4096 or 2 MiB (hugetlb). On failure, a reason in err. */
struct page_pool *pool_create(uint32_t nr_pages, uint32_t zero_pages, uint64_t page_size,
			      char *err, size_t errlen);
void pool_destroy(struct page_pool *pool);

/* A free page that VM `vm` may see: its own old data or zeroes. POOL_NONE
 * if the pool is empty. Pages are handed out holding `vm`'s tag. */
uint32_t pool_alloc(struct page_pool *pool, uint8_t vm);
/* A free page with no data at all (for a copy into another VM). */
uint32_t pool_alloc_clean(struct page_pool *pool);
/* Returns a page; `writer` is the only VM that could have written it. */
void pool_free(struct page_pool *pool, uint32_t page, uint8_t writer);
/* Returns a page that several VMs' data reached: it is zeroed now. */
void pool_free_mixed(struct page_pool *pool, uint32_t page);

/* Maps page at `at` (MAP_FIXED) with prot; the VM sees it on next access. */
int pool_map(struct page_pool *pool, void *at, uint32_t page, int prot);
/* Maps n pages of the zero area, from zero page z, read-only at `at`. */
int pool_map_zero(struct page_pool *pool, void *at, uint32_t z, uint32_t n);
/* ferry's own pointer to a page's bytes. */
static inline uint8_t *pool_page_ptr(struct page_pool *pool, uint32_t page)
{
	return pool->base + (uint64_t)page * pool->page_size;
}


#endif
