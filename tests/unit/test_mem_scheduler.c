/* The memory scheduler's division of a budget: mins first, active memory
 * next (by shares when it does not fit), idle memory taxed, surplus by
 * shares up to max; uncooperative VMs are worked around. */
#include "helpers.h"

#include <math.h>

#include "host/mem_scheduler.h"

static struct memsched_vm vm(uint64_t ram, uint64_t min, uint64_t shares, double used, double alloc)
{
	return (struct memsched_vm){ .ram_mib = ram, .min_mib = min, .max_mib = ram, .shares = shares,
				     .cooperative = true, .have_stats = true, .used_mib = used,
				     .alloc_mib = alloc, .resident_mib = used };
}

static double total(const struct memsched_vm *v, unsigned n)
{
	double t = 0;
	for (unsigned i = 0; i < n; i++)
		t += v[i].new_alloc_mib;
	return t;
}

static void ample_budget_covers_everyone(void **state)
{
	(void)state;
	struct memsched_vm v[2] = { vm(256, 32, 1000, 100, 256), vm(256, 32, 1000, 50, 256) };
	memsched_divide(v, 2, 1024);
	assert_true(v[0].new_alloc_mib >= 100 + 8);
	assert_true(v[1].new_alloc_mib >= 50 + 8);
	assert_true(v[0].new_alloc_mib <= 256 && v[1].new_alloc_mib <= 256);
	assert_true(total(v, 2) <= 1024 + 1e-6);
}

static void memory_moves_to_the_active_vm(void **state)
{
	(void)state;
	/* 3 x 512 MiB of RAM on a 512 MiB budget: one VM works, two idle. */
	struct memsched_vm v[3] = { vm(512, 32, 1000, 300, 170), vm(512, 32, 1000, 20, 170), vm(512, 32, 1000, 20, 170) };
	memsched_divide(v, 3, 512);
	assert_true(total(v, 3) <= 512 + 1e-6);
	assert_true(v[0].new_alloc_mib >= 300 + 8);   /* its working set and headroom */
	assert_true(v[1].new_alloc_mib >= 32);        /* never below min */
	assert_true(v[0].new_alloc_mib > v[1].new_alloc_mib + 100);
}

static void shares_split_a_shortage(void **state)
{
	(void)state;
	/* Both want ~440 MiB, 500 MiB to give: beyond the mins, 2:1 by shares. */
	struct memsched_vm v[2] = { vm(512, 50, 2000, 400, 400), vm(512, 50, 1000, 400, 400) };
	memsched_divide(v, 2, 500);
	assert_true(fabs(total(v, 2) - 500) < 1e-6);
	double a = v[0].new_alloc_mib - 50, b = v[1].new_alloc_mib - 50;
	assert_true(fabs(a / b - 2.0) < 0.01);
}

static void idle_memory_is_taxed(void **state)
{
	(void)state;
	/* Same shares and activity; one holds 300 MiB idle. Short on memory,
	 * the idle one keeps only the untaxed quarter of its idle memory. */
	struct memsched_vm v[2] = { vm(512, 16, 1000, 100, 400), vm(512, 16, 1000, 100, 120) };
	memsched_divide(v, 2, 300);
	double want0 = 100 + 10 + 0.25 * 300, want1 = 100 + 10 + 0.25 * 20;
	assert_true(v[0].new_alloc_mib <= want0 + 1e-6);
	assert_true(v[1].new_alloc_mib >= fmin(want1, 150) - 1e-6);
	assert_true(total(v, 2) <= 300 + 1e-6);
}

static void uncooperative_vm_is_worked_around(void **state)
{
	(void)state;
	struct memsched_vm v[2] = { vm(512, 32, 1000, 100, 512), vm(512, 32, 1000, 100, 512) };
	v[1].cooperative = false;
	v[1].resident_mib = 400; /* holds 400 and will not give it back */
	memsched_divide(v, 2, 512);
	assert_true(v[1].new_alloc_mib >= 400);
	assert_true(v[0].new_alloc_mib <= 112 + 1e-6);
	assert_true(v[0].new_alloc_mib >= 32);
}

static void max_is_respected(void **state)
{
	(void)state;
	struct memsched_vm v[1] = { vm(512, 32, 1000, 10, 512) };
	v[0].max_mib = 200;
	memsched_divide(v, 1, 4096);
	assert_true(v[0].new_alloc_mib <= 200 + 1e-6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ample_budget_covers_everyone), cmocka_unit_test(memory_moves_to_the_active_vm),
		cmocka_unit_test(shares_split_a_shortage),      cmocka_unit_test(idle_memory_is_taxed),
		cmocka_unit_test(uncooperative_vm_is_worked_around), cmocka_unit_test(max_is_respected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
