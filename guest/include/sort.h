/* Sorting for measurements (lib/sort.c; no hardware access). */
#ifndef GUEST_SORT_H
#define GUEST_SORT_H

#include <stddef.h>
#include <stdint.h>

/* Sorts v ascending in place (Shell sort: no recursion, no allocation). */
void sort_u64(uint64_t *v, size_t n);
/* The p-th percentile (0..100) of sorted v, nearest rank; 0 if n is 0. */
uint64_t percentile_u64(const uint64_t *v, size_t n, unsigned p);

#endif
