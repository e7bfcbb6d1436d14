/* The checked guest-memory API: every range must lie wholly inside one
 * region; overflowing and straddling ranges are refused and counted. */
#include "helpers.h"

#include <stdint.h>
#include <string.h>

#include "vmm/memory.h"

static struct guest_memory gm;
static char err[256];

static int setup(void **state)
{
	(void)state;
	gm_init(&gm, -1); /* no KVM: regions are only mapped */
	if (gm_add_ram(&gm, "low", 0, 1 << 20, false, err, sizeof(err)) < 0 ||
	    gm_add_ram(&gm, "high", 0x100000000ull, 2 << 20, false, err, sizeof(err)) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gm_destroy(&gm);
	return 0;
}

static void in_range(void **state)
{
	(void)state;
	assert_non_null(gm_ptr(&gm, 0, 1 << 20));
	assert_non_null(gm_ptr(&gm, 0x1000, 8));
	assert_non_null(gm_ptr(&gm, (1 << 20) - 1, 1));
	assert_non_null(gm_ptr(&gm, 0x100000000ull + 5, (2 << 20) - 5));
	assert_ptr_equal((uint8_t *)gm_ptr(&gm, 0x1234, 1), (uint8_t *)gm_ptr(&gm, 0, 1) + 0x1234);
	assert_int_equal(atomic_load(&gm.rejected), 0);
}

static void out_of_range(void **state)
{
	(void)state;
	unsigned long before = atomic_load(&gm.rejected);
	assert_null(gm_ptr(&gm, 1 << 20, 1));                   /* just past the end */
	assert_null(gm_ptr(&gm, (1 << 20) - 4, 8));             /* runs over the end */
	assert_null(gm_ptr(&gm, 0x80000000, 4));                /* in the hole */
	assert_null(gm_ptr(&gm, 0x100000000ull + (2 << 20), 1)); /* past the high region */
	assert_null(gm_ptr(&gm, 0, (1 << 20) + 1));             /* longer than the region */
	assert_int_equal(atomic_load(&gm.rejected), before + 5);
}

static void overflow(void **state)
{
	(void)state;
	/* gpa + len wraps to a small number: a naive "end <= size" check passes. */
	assert_null(gm_ptr(&gm, UINT64_MAX - 3, 8));
	assert_null(gm_ptr(&gm, 0x1000, UINT64_MAX));
	assert_null(gm_ptr(&gm, 0x1000, UINT64_MAX - 0xfff));
	assert_null(gm_ptr(&gm, UINT64_MAX, 1));
}

static void straddle_regions(void **state)
{
	(void)state;
	struct guest_memory two;
	gm_init(&two, -1);
	assert_int_equal(gm_add_ram(&two, "a", 0, 0x10000, false, err, sizeof(err)), 0);
	assert_int_equal(gm_add_ram(&two, "b", 0x10000, 0x10000, false, err, sizeof(err)), 0);
	/* Adjacent regions are separate mappings: one range may not span both. */
	assert_null(gm_ptr(&two, 0xfff0, 0x20));
	assert_non_null(gm_ptr(&two, 0xfff0, 0x10));
	assert_non_null(gm_ptr(&two, 0x10000, 0x10));
	gm_destroy(&two);
}

static void read_write(void **state)
{
	(void)state;
	const char msg[] = "guest memory";
	char back[sizeof(msg)];
	assert_int_equal(gm_write(&gm, 0x2000, msg, sizeof(msg)), 0);
	assert_int_equal(gm_read(&gm, 0x2000, back, sizeof(back)), 0);
	assert_string_equal(back, msg);
	memset(back, 'x', sizeof(back));
	assert_int_equal(gm_read(&gm, (1 << 20) - 4, back, sizeof(back)), -1);
	assert_int_equal(back[0], 'x'); /* nothing copied on failure */
	assert_int_equal(gm_write(&gm, UINT64_MAX - 1, msg, 4), -1);
}

static void zero_length(void **state)
{
	(void)state;
	assert_non_null(gm_ptr(&gm, 0x1000, 0));
	assert_non_null(gm_ptr(&gm, 1 << 20, 0)); /* the end of a region */
	assert_null(gm_ptr(&gm, 0x80000000, 0));
}

static void bad_regions(void **state)
{
	(void)state;
	struct guest_memory m;
	gm_init(&m, -1);
	assert_int_equal(gm_add_ram(&m, "odd", 0, 1000, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "aligned"));
	assert_int_equal(gm_add_ram(&m, "a", 0, 0x2000, false, err, sizeof(err)), 0);
	assert_int_equal(gm_add_ram(&m, "b", 0x1000, 0x2000, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "overlaps"));
	gm_destroy(&m);
}

static void resident_follows_touch(void **state)
{
	(void)state;
	uint64_t before = gm_resident_bytes(&gm);
	uint8_t *p = gm_ptr(&gm, 0x100000000ull, 1 << 20);
	memset(p, 1, 1 << 20);
	assert_true(gm_resident_bytes(&gm) >= before + (1 << 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(in_range),        cmocka_unit_test(out_of_range), cmocka_unit_test(overflow),
		cmocka_unit_test(straddle_regions), cmocka_unit_test(read_write),  cmocka_unit_test(zero_length),
		cmocka_unit_test(bad_regions),     cmocka_unit_test(resident_follows_touch),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
