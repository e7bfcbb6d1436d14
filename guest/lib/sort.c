#include "sort.h"

void sort_u64(uint64_t *v, size_t n)
{
	/* Ciura's gaps, extended by 2.25x: O(n^1.3)-ish, fine for the 10^4-10^5
	 * samples apps collect. */
	static const size_t gaps[] = { 1750071, 777809, 345693, 153641, 68285, 30349, 13489, 5995, 2664, 1184,
				       701, 301, 132, 57, 23, 10, 4, 1 };

	for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
		size_t gap = gaps[g];
		for (size_t i = gap; i < n; i++) {
			uint64_t x = v[i];
			size_t j = i;
			while (j >= gap && v[j - gap] > x) {
				v[j] = v[j - gap];
				j -= gap;
			}
			v[j] = x;
		}
	}
}

uint64_t percentile_u64(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank;

	if (!n)
		return 0;
	rank = (n * p + 99) / 100;  /* nearest rank: ceil(p/100 * n), 1-based */
	return v[rank ? rank - 1 : 0];
}
