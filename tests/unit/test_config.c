/* Config parsing: valid files parse, and every kind of mistake is refused
 * with the JSON path of the offending value in the message. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"

static char err[1024];

/* Parses text; relative paths resolve against /, where "dev/null" exists. */
static int parse(const char *text, struct ferry_config *cfg)
{
	err[0] = '\0';
	return config_parse(text, "test.json", "/", cfg, err, sizeof(err));
}

static void expect_error(const char *text, const char *fragment)
{
	struct ferry_config cfg;
	assert_int_equal(parse(text, &cfg), -1);
	if (!strstr(err, fragment))
		fail_msg("error \"%s\" does not mention \"%s\"", err, fragment);
	assert_non_null(strstr(err, "test.json: "));
}

static void valid_config(void **state)
{
	(void)state;
	struct ferry_config cfg;
	int r = parse("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"cmdline\": \"app=hello\","
		      " \"devices\": [{\"type\": \"virtio-rng\"}]},"
		      " {\"name\": \"b-2\", \"memory_mib\": 128, \"vcpus\": 2, \"kernel\": \"dev/null\"}]}",
		      &cfg);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(cfg.nr_vms, 2);
	assert_string_equal(cfg.vms[0].name, "a");
	assert_int_equal(cfg.vms[0].memory_mib, 64);
	assert_int_equal(cfg.vms[0].vcpus, 1);
	assert_string_equal(cfg.vms[0].cmdline, "app=hello");
	assert_int_equal(cfg.vms[0].nr_devices, 1);
	assert_int_equal(cfg.vms[0].devices[0].type, DEV_VIRTIO_RNG);
	assert_int_equal(cfg.vms[1].vcpus, 2);
	assert_string_equal(cfg.vms[1].kernel, "//dev/null"); /* relative to the config's directory */
	config_free(&cfg);
}

static void restart_keys(void **state)
{
	(void)state;
	struct ferry_config cfg;
	int r = parse("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\"},"
		      " {\"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"restart\": \"on-failure\","
		      " \"max_restarts\": 7, \"watchdog_ms\": 250}]}",
		      &cfg);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(cfg.vms[0].restart, RESTART_NEVER);
	assert_int_equal(cfg.vms[0].max_restarts, CFG_MAX_RESTARTS_DEFAULT);
	assert_int_equal(cfg.vms[0].watchdog_ms, 0);
	assert_int_equal(cfg.vms[1].restart, RESTART_ON_FAILURE);
	assert_int_equal(cfg.vms[1].max_restarts, 7);
	assert_int_equal(cfg.vms[1].watchdog_ms, 250);
	config_free(&cfg);
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"restart\": \"never \"}]}",
		     "vms[0]: \"restart\" must be \"never\" or \"on-failure\"");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"max_restarts\": 1001}]}",
		     "vms[0]: \"max_restarts\" must be between 1 and 1000");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"watchdog_ms\": 99}]}",
		     "vms[0]: \"watchdog_ms\" must be between 100 and 3600000");
}

static void syntax_error_has_position(void **state)
{
	(void)state;
	expect_error("{\n  \"vms\": [\n    {\"name\": \"a\",, }\n  ]\n}", "line 3");
}

static void top_level_mistakes(void **state)
{
	(void)state;
	expect_error("[]", "must be an object");
	expect_error("{}", "missing required key \"vms\"");
	expect_error("{\"vms\": []}", "non-empty array");
	expect_error("{\"vms\": [], \"extra\": 1}", "unknown key \"extra\"");
}

static void vm_mistakes(void **state)
{
	(void)state;
	expect_error("{\"vms\": [{\"memory_mib\": 64, \"kernel\": \"/dev/null\"}]}", "vms[0]: missing required key \"name\"");
	expect_error("{\"vms\": [{\"name\": \"a\", \"kernel\": \"/dev/null\"}]}", "missing required key \"memory_mib\"");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": \"64\", \"kernel\": \"/dev/null\"}]}",
		     "\"memory_mib\" must be a non-negative integer, not a string");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 1, \"kernel\": \"/dev/null\"}]}", "between 2 and");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64.5, \"kernel\": \"/dev/null\"}]}", "integer (got 64.5)");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": -65, \"kernel\": \"/dev/null\"}]}", "integer (got -65)");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 1e300, \"kernel\": \"/dev/null\"}]}", "integer (got 1e+300)");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"vcpus\": 0, \"kernel\": \"/dev/null\"}]}",
		     "\"vcpus\" must be between 1 and 64 (got 0)");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"memroy\": 1}]}",
		     "vms[0]: unknown key \"memroy\"");
	expect_error("{\"vms\": [{\"name\": \"a b\", \"memory_mib\": 64, \"kernel\": \"/dev/null\"}]}", "\"name\" must be");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/no/such/file\"}]}",
		     "vms[0]: \"kernel\": cannot read /no/such/file");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"hugepages\": 1, \"kernel\": \"/dev/null\"}]}",
		     "\"hugepages\" must be true or false");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"memory_mib\": 32, \"kernel\": \"/dev/null\"}]}",
		     "appears twice");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\"},"
		     " {\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\"}]}",
		     "vms[1]: name \"a\" is already used by vms[0]");
}

static void device_mistakes(void **state)
{
	(void)state;
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"devices\": {}}]}",
		     "vms[0].devices: must be an array");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"devices\": [\"rng\"]}]}",
		     "vms[0].devices[0]: a device must be an object");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
		     " \"devices\": [{\"type\": \"floppy\"}]}]}",
		     "vms[0].devices[0]: unknown device type \"floppy\"");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
		     " \"devices\": [{\"type\": \"virtio-rng\", \"speed\": 3}]}]}",
		     "vms[0].devices[0]: unknown key \"speed\"");
	expect_error("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
		     " \"devices\": [{\"type\": \"virtio-rng\"}, {\"type\": \"virtio-rng\"}]}]}",
		     "vms[0].devices[1]: a second virtio-rng");
}

static void names(void **state)
{
	(void)state;
	assert_true(config_name_valid("web-1.prod_a"));
	assert_false(config_name_valid(""));
	assert_false(config_name_valid("has space"));
	assert_false(config_name_valid("slash/"));
	assert_false(config_name_valid("0123456789012345678901234567890123")); /* too long */
}

/* VM ids are positions from 1; the message switch has ids 1..254 only, so
 * a msgq device on the 255th VM is refused here, not at start-up. */
static void msgq_vm_id_limit(void **state)
{
	(void)state;
	for (unsigned n = 254; n <= 255; n++) {
		size_t cap = 256 * 128, len = 0;
		char *text = malloc(cap);
		len += (size_t)snprintf(text + len, cap - len, "{\"vms\": [");
		for (unsigned i = 0; i < n; i++)
			len += (size_t)snprintf(text + len, cap - len,
						"%s{\"name\": \"v%u\", \"memory_mib\": 64, \"kernel\": \"/dev/null\"%s}",
						i ? ", " : "", i, i == n - 1 ? ", \"devices\": [{\"type\": \"msgq\"}]" : "");
		snprintf(text + len, cap - len, "]}");
		struct ferry_config cfg;
		if (n == 254) {
			if (parse(text, &cfg))
				fail_msg("254 VMs: %s", err);
			config_free(&cfg);
		} else {
			expect_error(text, "only the first 254 VMs can have a msgq device");
		}
		free(text);
	}
}

#define NET_VM(name, nics) "{\"name\": \"" name "\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"nics\": " nics "}"

static void networks_and_nics(void **state)
{
	(void)state;
	struct ferry_config cfg;
	int r = parse("{\"networks\": {\"lan0\": {\"tap\": \"ferry0\", \"address\": \"10.77.0.1/24\"},"
		      " \"lan1\": {\"zero_copy\": false, \"mtu\": 9000, \"bind\": \"at_start\"}},"
		      " \"vms\": [" NET_VM("a", "[{\"network\": \"lan0\", \"mac\": \"02:00:00:00:00:0A\"}, {\"network\": \"lan1\"}]") ","
		      NET_VM("b", "[{\"network\": \"lan0\"}]") "]}", &cfg);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(cfg.nr_networks, 2);
	assert_string_equal(cfg.networks[0].tap, "ferry0");
	assert_int_equal(cfg.networks[0].address, 0x0a4d0001);
	assert_int_equal(cfg.networks[0].prefix_len, 24);
	assert_true(cfg.networks[0].zero_copy);
	assert_false(cfg.networks[1].zero_copy);
	assert_int_equal(cfg.networks[1].mtu, 9000);
	assert_false(cfg.networks[0].bind_at_start);
	assert_true(cfg.networks[1].bind_at_start);
	assert_int_equal(cfg.vms[0].nr_nics, 2);
	assert_int_equal(cfg.vms[0].nics[0].mac[5], 0x0a);
	assert_int_equal(cfg.vms[0].nics[1].net, 1);
	/* Generated: locally administered unicast, stable per VM name. */
	uint8_t mac[6];
	config_default_mac("b", 0, mac);
	assert_memory_equal(cfg.vms[1].nics[0].mac, mac, 6);
	assert_int_equal(mac[0] & 3, 2);
	config_default_mac("c", 0, mac);
	assert_memory_not_equal(cfg.vms[1].nics[0].mac, mac, 6);
	assert_int_equal(cfg.nr_links, 0);
	config_free(&cfg);
}

static void network_mistakes(void **state)
{
	(void)state;
	expect_error("{\"vms\": [" NET_VM("a", "[{\"network\": \"nope\"}]") "]}",
		     "vms[0].nics[0]: network \"nope\" is not in \"networks\"");
	expect_error("{\"networks\": {\"n\": {}}, \"vms\": [" NET_VM("a", "[{\"network\": \"n\", \"mac\": \"02:00:00:00:00\"}]") "]}",
		     "vms[0].nics[0]: \"mac\": \"02:00:00:00:00\" is not a MAC address");
	expect_error("{\"networks\": {\"n\": {}}, \"vms\": [" NET_VM("a", "[{\"network\": \"n\", \"mac\": \"01:00:5e:00:00:01\"}]") "]}",
		     "is a multicast address");
	expect_error("{\"networks\": {\"n\": {}}, \"vms\": [" NET_VM("a", "[{\"network\": \"n\", \"mac\": \"02:00:00:00:00:01\"}]") ","
		     NET_VM("b", "[{\"network\": \"n\", \"mac\": \"02:00:00:00:00:01\"}]") "]}",
		     "vms[1].nics[0]: MAC 02:00:00:00:00:01 is already vms[0].nics[0]'s");
	expect_error("{\"networks\": {\"n\": {\"tap\": \"a/b\"}}, \"vms\": [" NET_VM("a", "[]") "]}",
		     "networks.n: \"tap\": \"a/b\" is not an interface name");
	expect_error("{\"networks\": {\"n\": {\"tap\": \"t0\", \"address\": \"10.0.0.300/24\"}}, \"vms\": [" NET_VM("a", "[]") "]}",
		     "networks.n: \"address\": \"10.0.0.300/24\" is not an IPv4 address");
	expect_error("{\"networks\": {\"n\": {\"address\": \"10.0.0.1/24\"}}, \"vms\": [" NET_VM("a", "[]") "]}",
		     "it needs \"tap\"");
	expect_error("{\"networks\": {\"n\": {\"mtu\": 10}}, \"vms\": [" NET_VM("a", "[]") "]}", "networks.n");
	expect_error("{\"networks\": [], \"vms\": [" NET_VM("a", "[]") "]}", "networks: must be an object");
	expect_error("{\"networks\": {\"n\": {\"bogus\": 1}}, \"vms\": [" NET_VM("a", "[]") "]}", "bogus");
	expect_error("{\"networks\": {\"n\": {\"bind\": \"always\"}}, \"vms\": [" NET_VM("a", "[]") "]}",
		     "networks.n: \"bind\": \"always\" must be \"on_traffic\"");
}

static void links(void **state)
{
	(void)state;
	struct ferry_config cfg;
	int r = parse("{\"networks\": {\"s\": {\"shm\": true}}, \"links\": [{\"vms\": [\"a\", \"b\"], \"size_mib\": 4}],"
		      " \"vms\": [" NET_VM("a", "[]") "," NET_VM("b", "[]") "," NET_VM("c", "[{\"network\": \"s\"}]") ","
		      NET_VM("d", "[{\"network\": \"s\"}]") "]}", &cfg);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(cfg.nr_links, 2);
	assert_int_equal(cfg.links[0].nr_vms, 2);
	assert_int_equal(cfg.links[0].vm[1], 1);
	assert_int_equal(cfg.links[0].size_mib, 4);
	assert_int_equal(cfg.links[1].network, 0);
	assert_int_equal(cfg.links[1].vm[0], 2);
	assert_int_equal(cfg.links[1].vm[1], 3);
	config_free(&cfg);
	expect_error("{\"links\": [{\"vms\": [\"a\"]}], \"vms\": [" NET_VM("a", "[]") "]}", "must name the two VMs");
	expect_error("{\"links\": [{\"vms\": [\"a\", \"x\"]}], \"vms\": [" NET_VM("a", "[]") "]}", "x is not a VM");
	expect_error("{\"links\": [{\"vms\": [\"a\", \"a\"]}], \"vms\": [" NET_VM("a", "[]") "]}", "coupled to itself");
	expect_error("{\"links\": [{\"vms\": [\"a\", \"b\"], \"size_mib\": 6}], \"vms\": [" NET_VM("a", "[]") ","
		     NET_VM("b", "[]") "]}", "power of two");
	expect_error("{\"links\": [{\"vms\": [\"a\", \"b\"]}, {\"vms\": [\"b\", \"c\"]}], \"vms\": [" NET_VM("a", "[]") ","
		     NET_VM("b", "[]") "," NET_VM("c", "[]") "]}", "links[1]: VM \"b\" is already coupled by links[0]");
}

/* The VMs of a run, for additions: a msgq receiver "rx" (4 KiB pages), a
 * VM "net" with a NIC on lan0, and networks lan0 and shared ("shm"). */
static void running_run(struct ferry_config *run)
{
	int r = parse("{\"networks\": {\"lan0\": {}, \"shared\": {\"shm\": true}},"
		      " \"vms\": [{\"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
		      " \"devices\": [{\"type\": \"msgq\"}]},"
		      " {\"name\": \"net\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
		      " \"nics\": [{\"network\": \"lan0\", \"mac\": \"02:00:00:00:00:01\"}]}]}",
		      run);
	if (r)
		fail_msg("%s", err);
}

static int add(const struct ferry_config *run, const char *text, struct ferry_config *out)
{
	err[0] = '\0';
	return config_parse_addition(text, "add", "/", run, out, err, sizeof(err));
}

static void expect_add_error(const struct ferry_config *run, const char *text, const char *fragment)
{
	struct ferry_config out;
	assert_int_equal(add(run, text, &out), -1);
	if (!strstr(err, fragment))
		fail_msg("error \"%s\" does not mention \"%s\"", err, fragment);
}

static void additions(void **state)
{
	(void)state;
	struct ferry_config run, out;
	running_run(&run);
	/* One VM object; its msgq may send to a running VM; its NIC joins lan0. */
	if (add(&run, "{\"name\": \"tx\", \"memory_mib\": 32, \"kernel\": \"/dev/null\", \"devices\":"
		      " [{\"type\": \"msgq\", \"peers\": [\"rx\"]}], \"nics\": [{\"network\": \"lan0\"}]}",
		&out))
		fail_msg("%s", err);
	assert_int_equal(out.nr_vms, 1);
	assert_string_equal(out.vms[0].name, "tx");
	assert_int_equal(out.vms[0].nics[0].net, 0);  /* the run's network index */
	assert_int_equal(out.vms[0].devices[0].msgq.poll_us, 1000); /* the same defaults as a file */
	assert_int_equal(out.vms[0].memory.min_mib, 32);
	config_free(&out);
	/* Several VMs and a link between two of them. */
	if (add(&run, "{\"vms\": [{\"name\": \"a\", \"memory_mib\": 32, \"kernel\": \"/dev/null\"},"
		      " {\"name\": \"b\", \"memory_mib\": 32, \"kernel\": \"/dev/null\"}],"
		      " \"links\": [{\"vms\": [\"a\", \"b\"], \"size_mib\": 4}]}",
		&out))
		fail_msg("%s", err);
	assert_int_equal(out.nr_vms, 2);
	assert_int_equal(out.nr_links, 1);
	assert_int_equal(out.links[0].vm[0], 0);
	assert_int_equal(out.links[0].vm[1], 1);
	config_free(&out);

	expect_add_error(&run, "{\"name\": \"rx\", \"memory_mib\": 32, \"kernel\": \"/dev/null\"}",
			 "a VM named \"rx\" is running already");
	expect_add_error(&run, "{\"name\": \"n2\", \"memory_mib\": 32, \"kernel\": \"/dev/null\","
			       " \"nics\": [{\"network\": \"lan0\", \"mac\": \"02:00:00:00:00:01\"}]}",
			 "is already net.nics[0]'s");
	expect_add_error(&run, "{\"name\": \"n2\", \"memory_mib\": 32, \"kernel\": \"/dev/null\","
			       " \"nics\": [{\"network\": \"wan\"}]}",
			 "network \"wan\" is not in \"networks\"");
	expect_add_error(&run, "{\"name\": \"n2\", \"memory_mib\": 32, \"kernel\": \"/dev/null\","
			       " \"nics\": [{\"network\": \"shared\"}]}",
			 "no VM can join it later");
	expect_add_error(&run, "{\"name\": \"t2\", \"memory_mib\": 32, \"kernel\": \"/dev/null\", \"devices\":"
			       " [{\"type\": \"msgq\", \"peers\": [\"net\"]}]}",
			 "peer \"net\" has no msgq device");
	expect_add_error(&run, "{\"name\": \"t2\", \"memory_mib\": 32, \"kernel\": \"/dev/null\", \"devices\":"
			       " [{\"type\": \"msgq\", \"peers\": [\"gone\"]}]}",
			 "peer \"gone\" is not a VM in this run");
	expect_add_error(&run, "{\"name\": \"t2\", \"memory_mib\": 32, \"hugepages\": true, \"kernel\": \"/dev/null\","
			       " \"devices\": [{\"type\": \"msgq\"}]}",
			 "must agree on \"hugepages\" (rx does not)");
	expect_add_error(&run, "{\"vms\": [], \"links\": []}", "must be a non-empty array");
	expect_add_error(&run, "{\"vms\": [{\"name\": \"a\", \"memory_mib\": 32, \"kernel\": \"/dev/null\"}],"
			       " \"links\": [{\"vms\": [\"a\", \"rx\"]}]}",
			 "rx is not a VM in this file");
	expect_add_error(&run, "{\"vms\": [{\"name\": \"a\"}], \"host\": {}}", "unknown key \"host\"");
	expect_add_error(&run, "{\"name\": \"a\", \"memory_mib\": 1}", "\"memory_mib\" must be between");
	expect_add_error(&run, "[1]", "must be a VM object");
	expect_add_error(&run, "{", "invalid JSON");
	config_free(&run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(networks_and_nics), cmocka_unit_test(network_mistakes), cmocka_unit_test(links),
		cmocka_unit_test(msgq_vm_id_limit),   cmocka_unit_test(additions),
		cmocka_unit_test(valid_config), cmocka_unit_test(restart_keys), cmocka_unit_test(syntax_error_has_position),
		cmocka_unit_test(top_level_mistakes), cmocka_unit_test(vm_mistakes),
		cmocka_unit_test(device_mistakes), cmocka_unit_test(names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
