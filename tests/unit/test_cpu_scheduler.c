/* The CPU scheduler's division of a vCPU budget among VMs. */
#include "helpers.h"

#include "host/cpu_scheduler.h"

static void fits_the_budget(void **state)
{
	(void)state;
	unsigned vcpus[2] = { 2, 2 }, running[2];
	uint64_t shares[2] = { 1000, 1000 };
	bool coop[2] = { true, true };
	cpusched_divide(vcpus, shares, coop, 2, 2, running);
	assert_int_equal(running[0], 1);
	assert_int_equal(running[1], 1);
	cpusched_divide(vcpus, shares, coop, 2, 4, running);
	assert_int_equal(running[0] + running[1], 4);
	cpusched_divide(vcpus, shares, coop, 2, 100, running);
	assert_int_equal(running[0], 2); /* never more than it has */
}

static void shares_decide(void **state)
{
	(void)state;
	unsigned vcpus[2] = { 4, 4 }, running[2];
	uint64_t shares[2] = { 3000, 1000 };
	bool coop[2] = { true, true };
	cpusched_divide(vcpus, shares, coop, 2, 5, running);
	assert_int_equal(running[0] + running[1], 5);
	assert_true(running[0] > running[1]);
	assert_true(running[1] >= 1); /* everyone keeps one */
}

static void uncooperative_keeps_all(void **state)
{
	(void)state;
	unsigned vcpus[3] = { 2, 3, 0 }, running[3];
	uint64_t shares[3] = { 1000, 1000, 1000 };
	bool coop[3] = { true, false, true };
	cpusched_divide(vcpus, shares, coop, 3, 3, running);
	assert_int_equal(running[1], 3); /* cannot be asked */
	assert_int_equal(running[0], 1);
	assert_int_equal(running[2], 0); /* a stopped VM: nothing */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fits_the_budget), cmocka_unit_test(shares_decide), cmocka_unit_test(uncooperative_keeps_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
