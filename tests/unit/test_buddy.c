/* The guest's buddy allocator (guest/kernel/buddy.c), compiled on the host:
 * it touches only its own metadata. Covers buddy_alloc_match(), with which
 * free page reporting takes only the free blocks it has not reported yet. */
#include "helpers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../guest/kernel/buddy.c"   /* with -Iguest/include (tests.mk) */

#define BASE 512      /* pfn of 2 MiB */
#define NPAGES 4096   /* 16 MiB: eight 2 MiB blocks */

static struct buddy b;
static void *meta;

static int setup(void **state)
{
	(void)state;
	memset(&b, 0, sizeof(b));
	meta = calloc(1, buddy_metadata_bytes(NPAGES));
	if (!meta || buddy_add_region(&b, BASE, NPAGES, meta) || buddy_add_free(&b, BASE, NPAGES))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(meta);
	return 0;
}

/* "Not reported yet": the odd 2 MiB chunks, as single 2 MiB blocks. */
static int odd_chunk(uint64_t pfn, unsigned order, void *arg)
{
	(void)arg;
	return order == 9 && (pfn >> 9) % 2 == 1;
}

static int never(uint64_t pfn, unsigned order, void *arg)
{
	(void)pfn;
	(void)order;
	(void)arg;
	return 0;
}

static int always(uint64_t pfn, unsigned order, void *arg)
{
	(void)pfn;
	(void)order;
	(void)arg;
	return 1;
}

/* Free blocks after setup: 512 (order 9), 1024 (10), 2048 (11), 4096 (9). */
static void largest_first(void **state)
{
	(void)state;
	unsigned order;

	assert_int_equal(buddy_alloc_match(&b, 9, never, NULL, &order), BUDDY_NO_PFN);
	assert_int_equal(buddy_alloc_match(&b, 9, always, NULL, &order), 2048);
	assert_int_equal(order, 11);
	assert_int_equal(buddy_alloc_match(&b, 9, always, NULL, &order), 1024);
	assert_int_equal(order, 10);
	assert_int_equal(b.free_pages, NPAGES - 2048 - 1024);
	/* min_order excludes smaller blocks. */
	assert_int_equal(buddy_alloc_match(&b, 10, always, NULL, &order), BUDDY_NO_PFN);
	assert_int_equal(buddy_free(&b, 2048, 11), 0);
	assert_int_equal(buddy_free(&b, 1024, 10), 0);
	assert_int_equal(b.free_pages, NPAGES);
}

/* Chunk = pfn >> 9: blocks 512, 1536, 2560, 3584 are odd chunks. */
static void takes_only_matching_blocks(void **state)
{
	(void)state;
	uint64_t pfns[8];
	unsigned order;

	for (unsigned i = 0; i < 8; i++)
		assert_int_not_equal(pfns[i] = buddy_alloc(&b, 9), BUDDY_NO_PFN);
	assert_int_equal(b.free_pages, 0);
	/* Free the even chunks: lone 2 MiB blocks, none of them a match. */
	for (unsigned i = 0; i < 8; i++) {
		if ((pfns[i] >> 9) % 2 == 0)
			assert_int_equal(buddy_free(&b, pfns[i], 9), 0);
	}
	assert_int_equal(buddy_alloc_match(&b, 9, odd_chunk, NULL, &order), BUDDY_NO_PFN);
	assert_int_equal(b.free_pages, NPAGES / 2);
	/* Free 512 (its buddy lies outside the region: stays a lone 2 MiB
	 * block) and 1536 (coalesces with 1024): only 512 matches. */
	assert_int_equal(buddy_free(&b, 512, 9), 0);
	assert_int_equal(buddy_free(&b, 1536, 9), 0);
	assert_int_equal(buddy_alloc_match(&b, 9, odd_chunk, NULL, &order), 512);
	assert_int_equal(order, 9);
	assert_int_equal(buddy_alloc_match(&b, 9, odd_chunk, NULL, &order), BUDDY_NO_PFN);
	/* Taken means allocated: freeing it works once, twice is caught. */
	assert_int_equal(buddy_free(&b, 512, 9), 0);
	assert_int_equal(buddy_free(&b, 512, 9), -2);
	for (unsigned i = 0; i < 8; i++) {
		if (pfns[i] != 512 && pfns[i] != 1536 && (pfns[i] >> 9) % 2 == 1)
			assert_int_equal(buddy_free(&b, pfns[i], 9), 0);
	}
	assert_int_equal(b.free_pages, NPAGES);
	assert_int_equal(buddy_alloc(&b, 11), 2048);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(largest_first, setup, teardown),
		cmocka_unit_test_setup_teardown(takes_only_matching_blocks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
