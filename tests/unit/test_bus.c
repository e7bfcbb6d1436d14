/* The I/O bus and the CLI's argument parsers. */
#include "helpers.h"

#include <string.h>

#include "cli/cli.h"
#include "devices/bus.h"

static unsigned hits;
static uint64_t last_off;

static void handler(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	(void)opaque;
	(void)is_write;
	hits++;
	last_off = off;
	memset(data, 0x5a, len);
}

static void bus_dispatch_rules(void **state)
{
	(void)state;
	struct io_bus bus;
	bus_init(&bus, "test");
	int a, b;
	assert_int_equal(bus_register(&bus, 0x100, 0x10, handler, &a, NULL), 0);
	assert_int_equal(bus_register(&bus, 0x200, 0x10, handler, &b, NULL), 0);
	assert_int_equal(bus_register(&bus, 0x108, 0x10, handler, &b, NULL), -1); /* overlaps */
	assert_int_equal(bus_register(&bus, 0x0f8, 0x10, handler, &b, NULL), -1);
	assert_int_equal(bus_register(&bus, UINT64_MAX - 4, 0x10, handler, &b, NULL), -1); /* wraps */
	assert_int_equal(bus_register(&bus, 0x300, 0, handler, &b, NULL), -1);

	uint8_t data[8];
	hits = 0;
	assert_true(bus_dispatch(&bus, 0x104, data, 4, false));
	assert_int_equal(hits, 1);
	assert_int_equal(last_off, 4);
	assert_int_equal(data[0], 0x5a);
	/* Straddling the end of a range reaches nobody; reads see all ones. */
	assert_false(bus_dispatch(&bus, 0x10e, data, 4, false));
	assert_int_equal(data[0], 0xff);
	assert_false(bus_dispatch(&bus, 0x150, data, 1, true));
	assert_int_equal(hits, 1);
	assert_int_equal(atomic_load(&bus.unhandled), 2);

	assert_int_equal(bus_unregister(&bus, 0x100, &b), -1); /* not its owner */
	assert_int_equal(bus_unregister(&bus, 0x100, &a), 0);
	assert_false(bus_dispatch(&bus, 0x104, data, 4, false));
	assert_true(bus_dispatch(&bus, 0x20f, data, 1, false));
	bus_destroy(&bus);
}

static void size_and_number_parsing(void **state)
{
	(void)state;
	uint64_t v;
	assert_true(parse_size_mib("64", &v) && v == 64);
	assert_true(parse_size_mib("64M", &v) && v == 64);
	assert_true(parse_size_mib("2G", &v) && v == 2048);
	assert_true(parse_size_mib("1GiB", &v) && v == 1024);
	assert_false(parse_size_mib("", &v));
	assert_false(parse_size_mib("-1", &v));
	assert_false(parse_size_mib("12K", &v));
	assert_false(parse_size_mib("64 M", &v));
	assert_false(parse_size_mib("99999999999999999999G", &v));
	assert_true(parse_uint("3", 1, 4, &v) && v == 3);
	assert_false(parse_uint("5", 1, 4, &v));
	assert_false(parse_uint("0x3", 1, 4, &v));
	double s;
	assert_true(parse_seconds("1.5", &s) && s == 1.5);
	assert_false(parse_seconds("0", &s));
	assert_false(parse_seconds("nan", &s));
	assert_false(parse_seconds("3s", &s));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bus_dispatch_rules),
		cmocka_unit_test(size_and_number_parsing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
