/* Static links under ferry: each VM of a link gets an ivshmem device whose
 * BAR 2 is the link's memory. ferry-guest's ivshmem transport runs on it
 * unchanged (the same apps and checks as test_qemu_ivshmem.c under QEMU),
 * IVPosition is the VM's place in the link, a doorbell raises an interrupt
 * in the peer it names, and doorbells the device must refuse are counted by
 * reason. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define tmp test_dir
#define vm test_summary_vm
#define log_of test_console_log

/* Writes test_dir/NAME.json: `vms` (VM objects without a kernel: each
 * gets ferry-guest) and the rest of the top level after it. */
static char *config(const char *name, const char *vms, const char *rest)
{
	char *path = xasprintf("%s/%s.json", tmp, name), *pwd = getenv("PWD");
	char *kernel = xasprintf("\"kernel\": \"%s/%s\", ", pwd, guest_image());
	/* Every VM object starts with {"name": put the kernel in front. */
	size_t n = 0;
	for (const char *p = vms; (p = strstr(p, "{\"name\"")); p++)
		n++;
	char *expanded = calloc(1, strlen(vms) + n * strlen(kernel) + 1);
	for (const char *p = vms, *q; *p; p = q) {
		q = strstr(p, "{\"name\"");
		if (!q) {
			strcat(expanded, p);
			break;
		}
		strncat(expanded, p, (size_t)(q - p) + 1);
		strcat(expanded, kernel);
		q++;
	}
	char *text = xasprintf("{\"vms\": [%s]%s}", expanded, rest);
	write_file(path, text);
	free(text);
	free(expanded);
	free(kernel);
	return path;
}

/* A pair "tx", "rx" in one link of `mib` MiB, with these command lines. */
static char *pair(const char *tx, const char *rx, unsigned mib)
{
	char *vms = xasprintf("{\"name\": \"tx\", \"memory_mib\": 64, \"cmdline\": \"%s\"},"
			      "{\"name\": \"rx\", \"memory_mib\": 64, \"cmdline\": \"%s\"}", tx, rx);
	char *links = xasprintf(", \"links\": [{\"vms\": [\"tx\", \"rx\"], \"size_mib\": %u}]", mib);
	char *path = config("pair", vms, links);
	free(vms);
	free(links);
	return path;
}

static void run_ok(const char *cfg, const char *what)
{
	const char *args[] = { cfg, "--timeout", "120", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 180);
	if (r.status != 0)
		fail_msg("%s: ferry exited %d:\n%s", what, r.status, r.err);
	cmd_result_free(&r);
}

static void expect_no_refusals(const char *name)
{
	cJSON *v = vm(name);
	assert_int_equal(json_num(v, "counters.ivshmem.rejected"), 0);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected"), 0);
}

/* The example: every message of every size arrives intact. */
static void example_runs(void **state)
{
	(void)state;
	require_kvm();
	run_ok("examples/links.json", "examples/links.json");
	char *rx = log_of("receiver");
	for (int r = 0; r < 4; r++) {
		char *line = xasprintf("received run %d: 200 of 200 messages verified, 0 corrupt, 0 duplicated: ok", r);
		expect_contains(rx, line);
		free(line);
	}
	free(rx);
	assert_int_equal(json_num(vm("sender"), "counters.ivshmem.peer_id"), 0);
	assert_int_equal(json_num(vm("receiver"), "counters.ivshmem.peer_id"), 1);
	assert_int_equal(json_num(vm("receiver"), "counters.ivshmem.size_mib"), 32);
	expect_no_refusals("sender");
	expect_no_refusals("receiver");
}

/* The same run as under QEMU (test_qemu_ivshmem.c): every byte checked;
 * 2 MiB messages wrap the 32 MiB ring a dozen times. */
static void bulk_full_check(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = pair("app=msgbulk role=send sizes=64,4K,64K,2M count=200 check=full transport=ivshmem",
			 "app=msgbulk role=recv transport=ivshmem", 64);
	run_ok(cfg, "msgbulk");
	char *tx = log_of("tx"), *rx = log_of("rx");
	for (int r = 0; r < 4; r++) {
		char *line = xasprintf("received run %d: 200 of 200 messages verified, 0 corrupt, 0 duplicated: ok", r);
		if (!strstr(rx, line))
			fail_msg("receiver did not verify run %d:\n%s", r, rx);
		free(line);
	}
	/* The first device memory window of a VM without msgq or NICs. */
	expect_contains(rx, "ivshmem: 64 MiB of shared memory at 0x8000000000, position 1");
	expect_contains(tx, "ivshmem: 64 MiB of shared memory at 0x8000000000, position 0");
	const unsigned sizes[] = { 64, 4096, 65536, 2u << 20 };
	for (int r = 0; r < 4; r++) {
		char *result = xasprintf("{\"size\": %u, \"count\": 200, \"transport\": \"ivshmem\", \"mode\": \"copy\", "
					 "\"post\": \"none\", \"check\": \"full\"", sizes[r]);
		expect_contains(tx, result);
		free(result);
	}
	/* The data path is plain loads and stores: the device saw only the
	 * driver reading IVPosition once. */
	assert_int_equal(json_num(vm("tx"), "counters.ivshmem.exits"), 1);
	expect_no_refusals("tx");
	free(tx);
	free(rx);
	free(cfg);
}

/* The reply comes back over the second ring. */
static void ping_pong(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = pair("app=msgping role=ping count=50 size=4096 transport=ivshmem",
			 "app=msgping role=pong transport=ivshmem", 16);
	run_ok(cfg, "msgping");
	char *tx = log_of("tx");
	expect_contains(tx, "msgping: result {\"size\": 4096, \"count\": 50, \"transport\": \"ivshmem\"");
	free(tx);
	free(cfg);
}

/* Three VMs on an "shm" network share one link in VM order; a fourth VM,
 * elsewhere, has no device. Doorbells go both ways and to oneself; the
 * refused ones (no such peer, no such vector) raise nothing and are counted
 * on the VM that rang, as is a write to IVPosition. */
static void doorbells_and_positions(void **state)
{
	(void)state;
	require_kvm();
	const char *nic = "\"nics\": [{\"network\": \"lan\"}]";
	char *vms = xasprintf(
		"{\"name\": \"a\", \"memory_mib\": 32, %s, \"cmdline\": \"app=ivshmemtest peers=3 rounds=20 position=0 bad=1\"},"
		"{\"name\": \"other\", \"memory_mib\": 32, \"cmdline\": \"app=hello\"},"
		"{\"name\": \"b\", \"memory_mib\": 32, %s, \"cmdline\": \"app=ivshmemtest peers=3 rounds=20 position=1 bad=1\"},"
		"{\"name\": \"c\", \"memory_mib\": 32, %s, \"cmdline\": \"app=ivshmemtest peers=3 rounds=20 position=2\"}",
		nic, nic, nic);
	char *cfg = config("net", vms, ", \"networks\": {\"lan\": {\"shm\": true}}");
	run_ok(cfg, "ivshmemtest");
	const char *names[] = { "a", "b", "c" };
	for (int i = 0; i < 3; i++) {
		char *log = log_of(names[i]), *line = xasprintf("ivshmemtest: position %d\n", i);
		expect_contains(log, line);
		expect_contains(log, "ivshmemtest: ok");
		free(line);
		free(log);
	}
	char *a = log_of("a");
	expect_contains(a, "ivshmemtest: result {\"peers\": 3, \"rounds\": 20, \"doorbell_rtt_ns_median\": ");
	free(a);
	/* a rang b and c 20 times each and itself once; each rang a 20 times and itself once. */
	cJSON *v = vm("a");
	assert_int_equal(json_num(v, "counters.ivshmem.peer_id"), 0);
	assert_int_equal(json_num(v, "counters.ivshmem.peers"), 3);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_sent"), 41);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_received"), 41);
	assert_int_equal(json_num(v, "counters.ivshmem.interrupts"), 41);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected"), 2);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.no_peer"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.bad_vector"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.rejected"), 3); /* and the IVPosition write */
	v = vm("b");
	assert_int_equal(json_num(v, "counters.ivshmem.peer_id"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_sent"), 21);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_received"), 21);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.no_peer"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.bad_vector"), 1);
	v = vm("c");
	assert_int_equal(json_num(v, "counters.ivshmem.peer_id"), 2);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_received"), 21);
	expect_no_refusals("c");
	v = vm("other");
	if (cJSON_GetObjectItem(cJSON_GetObjectItem(v, "counters"), "ivshmem"))
		fail_msg("a VM in no link has an ivshmem device");
	free(vms);
	free(cfg);
}

/* Doorbells to peers that cannot take them: one whose driver never turned
 * MSI-X on (not_ready) and one whose VM has powered off (peer_down). */
static void doorbells_to_peers_not_up(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = config("down",
			   "{\"name\": \"a\", \"memory_mib\": 32, \"cmdline\": \"app=ivshmemtest solo=1\"},"
			   "{\"name\": \"idle\", \"memory_mib\": 32, \"cmdline\": \"app=idle ms=3000\"},"
			   "{\"name\": \"c\", \"memory_mib\": 32, \"cmdline\": \"app=ivshmemtest solo=1 delay_ms=3000\"},"
			   "{\"name\": \"gone\", \"memory_mib\": 32, \"cmdline\": \"app=hello\"}",
			   ", \"links\": [{\"vms\": [\"a\", \"idle\"], \"size_mib\": 2}, {\"vms\": [\"c\", \"gone\"]}]");
	run_ok(cfg, "solo doorbells");
	cJSON *v = vm("a");
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_sent"), 0);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.not_ready"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.size_mib"), 2);
	v = vm("c");
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_sent"), 0);
	assert_int_equal(json_num(v, "counters.ivshmem.doorbells_rejected_by.peer_down"), 1);
	assert_int_equal(json_num(v, "counters.ivshmem.size_mib"), 16);
	assert_int_equal(json_num(vm("idle"), "counters.ivshmem.interrupts"), 0);
	free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(example_runs, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(bulk_full_check, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(ping_pong, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(doorbells_and_positions, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(doorbells_to_peers_not_up, test_dir_setup, test_dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
