#include "host/page_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/log.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

struct page_pool *pool_create(uint32_t nr_pages, uint32_t zero_pages, uint64_t page_size,
			      char *err, size_t errlen)
{
	bool huge = page_size == (2ull << 20);
	if (!huge && page_size != 4096) {
		snprintf(err, errlen, "page pool: page size %llu is neither 4 KiB nor 2 MiB", (unsigned long long)page_size);
		return NULL;
	}
	struct page_pool *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->fd = -1;
	p->hugepages = huge;
	p->page_size = page_size;
	p->nr_pages = nr_pages;
	p->zero_pages = zero_pages;
	pthread_mutex_init(&p->lock, NULL);
	uint64_t size = ((uint64_t)nr_pages + zero_pages) * page_size;
	p->fd = memfd_create("ferry-page-pool", MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	if (p->fd < 0 || ftruncate(p->fd, (off_t)size) < 0) {
		snprintf(err, errlen, "page pool: cannot create %llu MiB%s: %s", (unsigned long long)(size >> 20),
			 huge ? " of huge pages" : "", strerror(errno));
		goto fail;
	}
	/* ferry's own mapping covers the whole file; for huge pages it also
	 * reserves them, so a guest touching a window never finds none left. */
	p->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | (huge ? 0 : MAP_NORESERVE), p->fd, 0);
	p->next = calloc(nr_pages, sizeof(*p->next));
	p->writer = calloc(nr_pages, sizeof(*p->writer));
	if (p->base == MAP_FAILED || !p->next || !p->writer) {
		snprintf(err, errlen, "page pool: cannot map %llu MiB: %s", (unsigned long long)(size >> 20), strerror(errno));
		if (p->base == MAP_FAILED)
			p->base = NULL;
		goto fail;
	}
	for (unsigned i = 0; i < POOL_MAX_OWNERS; i++)
		p->dirty[i] = POOL_NONE;
	p->clean = POOL_NONE;
	for (uint32_t i = nr_pages; i-- > 0;) {
		p->next[i] = p->clean;
		p->clean = i;
	}
	p->nr_free = nr_pages;
	return p;
fail:
	pool_destroy(p);
	return NULL;
}

void pool_destroy(struct page_pool *p)
{
	if (!p)
		return;
	if (p->base)
		munmap(p->base, ((uint64_t)p->nr_pages + p->zero_pages) * p->page_size);
	if (p->fd >= 0)
		close(p->fd);
	free(p->next);
	free(p->writer);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static uint32_t pop(struct page_pool *p, uint32_t *head)
{
	uint32_t page = *head;
	if (page != POOL_NONE) {
		*head = p->next[page];
		p->nr_free--;
	}
	return page;
}

/* Gives the page's memory back to the host; it reads as zeroes after. */
static void zero_page(struct page_pool *p, uint32_t page)
{
	if (fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)((uint64_t)page * p->page_size),
		      (off_t)p->page_size) < 0)
		memset(pool_page_ptr(p, page), 0, p->page_size); /* never leak, even if punching fails */
	p->writer[page] = POOL_CLEAN;
	p->zeroed++;
}

/* Lock held. Any free page, zeroed. */
static uint32_t take_clean(struct page_pool *p)
{
	uint32_t page = pop(p, &p->clean);
	if (page != POOL_NONE)
		return page;
	for (unsigned owner = 1; owner < POOL_MAX_OWNERS; owner++) {
		page = pop(p, &p->dirty[owner]);
		if (page != POOL_NONE) {
			zero_page(p, page);
			return page;
		}
	}
	return POOL_NONE;
}

uint32_t pool_alloc(struct page_pool *p, uint8_t vm)
{
	pthread_mutex_lock(&p->lock);
	uint32_t page = vm != POOL_CLEAN ? pop(p, &p->dirty[vm]) : POOL_NONE;
	if (page == POOL_NONE)
		page = take_clean(p);
	if (page != POOL_NONE)
		p->writer[page] = vm;
	pthread_mutex_unlock(&p->lock);
	return page;
}

uint32_t pool_alloc_clean(struct page_pool *p)
{
	pthread_mutex_lock(&p->lock);
	uint32_t page = take_clean(p);
	pthread_mutex_unlock(&p->lock);
	return page;
}

void pool_free(struct page_pool *p, uint32_t page, uint8_t writer)
{
	if (page >= p->nr_pages)
		return;
	if (writer == POOL_MIXED) {
		pool_free_mixed(p, page);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->writer[page] = writer;
	uint32_t *head = writer == POOL_CLEAN ? &p->clean : &p->dirty[writer];
	p->next[page] = *head;
	*head = page;
	p->nr_free++;
	pthread_mutex_unlock(&p->lock);
}

void pool_free_mixed(struct page_pool *p, uint32_t page)
{
	if (page >= p->nr_pages)
		return;
	pthread_mutex_lock(&p->lock);
	zero_page(p, page);
	p->next[page] = p->clean;
	p->clean = page;
	p->nr_free++;
	pthread_mutex_unlock(&p->lock);
}

/* Fault injection for tests: does the next mapping fail? */
static bool injected_failure(struct page_pool *p)
{
	bool fail = p->fail_maps & 1;
	p->fail_maps >>= 1;
	if (fail)
		errno = ENOMEM;
	return fail;
}

int pool_map(struct page_pool *p, void *at, uint32_t page, int prot)
{
	if (injected_failure(p))
		return -1;
	/* MAP_POPULATE: the host page tables are filled here, so the guest's
	 * first touch costs KVM a shadow fault only (about twice the throughput
	 * of remapped 2 MiB messages, measured). */
	void *r = mmap(at, p->page_size, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE | MAP_POPULATE, p->fd,
		       (off_t)((uint64_t)page * p->page_size));
	return r == MAP_FAILED ? -1 : 0;
}

int pool_map_zero(struct page_pool *p, void *at, uint32_t z, uint32_t n)
{
	if ((uint64_t)z + n > p->zero_pages || injected_failure(p))
		return -1;
	off_t off = (off_t)(((uint64_t)p->nr_pages + z) * p->page_size);
	void *r = mmap(at, (uint64_t)n * p->page_size, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, p->fd, off);
	return r == MAP_FAILED ? -1 : 0;
}
