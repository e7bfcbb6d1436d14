/* Message queues between VMs, end to end: pages move by remapping (not
 * copying) above the threshold, every message arrives intact, misuse is
 * refused and counted, and both posting ways are recorded. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define tmp test_dir
#define vm test_summary_vm
#define log_of test_console_log

/* A two-VM config: "tx" sends to "rx" (and rx may answer). */
static char *pair_config(const char *tx_cmdline, const char *rx_cmdline, const char *device_extra, bool huge)
{
	char *path = xasprintf("%s/pair.json", tmp), *pwd = getenv("PWD");
	char *text = xasprintf(
		"{\"vms\": ["
		"{\"name\": \"tx\", \"memory_mib\": 64, \"hugepages\": %s, \"kernel\": \"%s/%s\", \"cmdline\": \"%s\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"rx\"]%s}]},"
		"{\"name\": \"rx\", \"memory_mib\": 64, \"hugepages\": %s, \"kernel\": \"%s/%s\", \"cmdline\": \"%s\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"tx\"]%s}]}]}",
		huge ? "true" : "false", pwd, guest_image(), tx_cmdline, device_extra,
		huge ? "true" : "false", pwd, guest_image(), rx_cmdline, device_extra);
	write_file(path, text);
	free(text);
	return path;
}

static void example_remaps_not_copies(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "examples/msgq.json", "--timeout", "120", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 180);
	if (r.status != 0)
		fail_msg("examples/msgq.json failed (%d):\n%s", r.status, r.err);
	/* Entries are valid until the next vm() call: one VM at a time. */
	assert_int_equal(json_num(vm("receiver"), "counters.msgq.received"), json_num(vm("sender"), "counters.msgq.sent"));
	cJSON *tx = vm("sender");
	json_expect_unique_keys(tx, "the sender's summary");
	double sent = json_num(tx, "counters.msgq.sent");
	assert_true(sent >= 400);
	assert_true(json_num(tx, "counters.msgq.pages_remapped") >= 400);
	assert_int_equal(json_num(tx, "counters.msgq.bytes_copied"), 0);
	/* The only refusals allowed: readiness probes that beat the receiver's driver. */
	assert_int_equal(json_num(tx, "counters.msgq.rejected"), json_num(tx, "counters.msgq.rejected_by.dest_down"));
	/* Refused sends: those, and backpressure from a receiver that has not
	 * returned its slots yet (no misbehaviour, so not in "rejected"). */
	assert_int_equal(json_num(tx, "counters.msgq.rejected_sends"),
			 json_num(tx, "counters.msgq.rejected_by.dest_down") + json_num(tx, "counters.msgq.rejected_by.full"));
	assert_int_equal(json_num(tx, "counters.msgq.immediate") + json_num(tx, "counters.msgq.deferred"), sent);
	char *log = log_of("receiver");
	expect_contains(log, "received run 1: 200 of 200 messages verified, 0 corrupt, 0 duplicated: ok");
	free(log);
	cmd_result_free(&r);
}

static void misuse_is_refused_and_counted(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "examples/msgsecurity.json", "--timeout", "120", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 180);
	char *log = log_of("attacker");
	if (r.status != 0)
		fail_msg("msgsecurity failed (%d):\n%s", r.status, log);
	expect_contains(log, "every misuse was refused");
	assert_true(json_num(vm("victim"), "counters.msgq.writes_to_received_pages") >= 1);
	cJSON *a = vm("attacker");
	assert_true(json_num(a, "counters.msgq.rejected_by.denied") >= 1);
	assert_true(json_num(a, "counters.msgq.rejected_by.no_dest") >= 2);
	assert_true(json_num(a, "counters.msgq.rejected_by.dest_down") >= 1);
	assert_true(json_num(a, "counters.msgq.rejected_by.bad_addr") >= 2);
	assert_true(json_num(a, "counters.msgq.rejected_by.unaligned") >= 1);
	assert_true(json_num(a, "counters.msgq.rejected_by.too_long") >= 3);
	assert_true(json_num(a, "counters.msgq.rejected_by.full") >= 1);
	free(log);
	cmd_result_free(&r);
}

/* Copy, remap and adaptive with 4 KiB pages, every message checksummed. */
static void bulk_modes_verify(void **state)
{
	(void)state;
	require_kvm();
	const char *modes[] = { "copy", "remap", "adaptive" };
	for (int i = 0; i < 3; i++) {
		char *tx = xasprintf("app=msgbulk role=send peer=rx sizes=64,4K,64K,1M count=40 mode=%s check=full", modes[i]);
		char *cfg = pair_config(tx, "app=msgbulk role=recv", "", false);
		const char *args[] = { cfg, "--timeout", "60", NULL };
		struct cmd_result r = ferry_run_in(tmp, args, 120);
		char *log = log_of("rx");
		if (r.status != 0)
			fail_msg("msgbulk mode=%s failed:\n%s\n%s", modes[i], log, r.err);
		expect_contains(log, "received run 3: 40 of 40 messages verified");
		cJSON *t = vm("tx");
		if (!strcmp(modes[i], "copy"))
			assert_int_equal(json_num(t, "counters.msgq.pages_remapped"), 0);
		if (!strcmp(modes[i], "remap"))
			assert_int_equal(json_num(t, "counters.msgq.bytes_copied"), 0);
		free(log);
		free(tx);
		free(cfg);
		cmd_result_free(&r);
	}
}

/* Deferred sends are plain stores: the VMM picks them up without a doorbell
 * and records them as deferred. */
static void deferred_posting_is_recorded(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = pair_config("app=msgbulk role=send peer=rx sizes=64 count=2000 post=deferred",
				"app=msgbulk role=recv", ", \"poll_us\": 500", false);
	const char *args[] = { cfg, "--timeout", "60", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 120);
	assert_int_equal(r.status, 0);
	cJSON *t = vm("tx");
	assert_true(json_num(t, "counters.msgq.deferred") >= 2000);
	/* Doorbells rang only for the control messages. */
	assert_true(json_num(t, "counters.msgq.immediate") <= 4);
	free(cfg);
	cmd_result_free(&r);
}

static void ping_pong_round_trips(void **state)
{
	(void)state;
	require_kvm();
	const char *posts[] = { "immediate", "deferred" };
	for (int i = 0; i < 2; i++) {
		char *tx = xasprintf("app=msgping role=ping peer=rx count=50 size=256 post=%s", posts[i]);
		char *rx = xasprintf("app=msgping role=pong post=%s", posts[i]);
		char *cfg = pair_config(tx, rx, "", false);
		const char *args[] = { cfg, "--timeout", "60", NULL };
		struct cmd_result r = ferry_run_in(tmp, args, 120);
		char *log = log_of("tx");
		if (r.status != 0)
			fail_msg("msgping post=%s failed:\n%s", posts[i], log);
		expect_contains(log, "msgping: result {\"size\": 256, \"count\": 50");
		cJSON *rxvm = vm("rx");
		/* The pong answered every ping to its source, as the VMM named it. */
		assert_true(json_num(rxvm, "counters.msgq.sent") >= 50);
		free(log);
		free(tx);
		free(rx);
		free(cfg);
		cmd_result_free(&r);
	}
}

static void bad_msgq_configs(void **state)
{
	(void)state;
	char *path = xasprintf("%s/bad.json", tmp);
	write_file(path, "{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
			 " \"devices\": [{\"type\": \"msgq\", \"peers\": [\"nobody\"]}]}]}");
	const char *args[] = { path, NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "peer \"nobody\" is not a VM in this file");
	cmd_result_free(&r);
	write_file(path, "{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
			 " \"devices\": [{\"type\": \"msgq\", \"poll_us\": 1}]}]}");
	r = ferry_run_in(tmp, args, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "\"poll_us\" must be between 10 and");
	cmd_result_free(&r);
	/* Windows whose slots could exhaust the process's memory mappings are
	 * refused before anything runs (a remap must never fail for want of
	 * one). */
	write_file(path, "{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"devices\":"
			 " [{\"type\": \"msgq\", \"peers\": [\"b\"], \"send_slots\": 65536, \"recv_slots\": 65536}]},"
			 " {\"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"/dev/null\", \"devices\":"
			 " [{\"type\": \"msgq\", \"send_slots\": 65536, \"recv_slots\": 65536}]}]}");
	r = ferry_run_in(tmp, args, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "memory mappings, and vm.max_map_count allows");
	cmd_result_free(&r);
	free(path);
}

/* Free huge pages in the host's persistent pool (which the test cannot
 * take away from ferry). */
static long persistent_hugepages_free(void)
{
	char *meminfo = read_file("/proc/meminfo");
	const char *f = meminfo ? strstr(meminfo, "HugePages_Free:") : NULL;
	const char *r = meminfo ? strstr(meminfo, "HugePages_Rsvd:") : NULL;
	long n = f && r ? atol(f + 15) - atol(r + 15) : 0;
	free(meminfo);
	return n;
}

/* "hugepages": true on a host that cannot give any (here: a private mount
 * namespace where vm.nr_overcommit_hugepages reads 0 and cannot be written)
 * runs on 4 KiB pages, says so, and still delivers by remapping. */
static void hugepages_fall_back_to_4k(void **state)
{
	(void)state;
	require_kvm();
	long have = persistent_hugepages_free();
	if (have > 0) {
		print_message("the host keeps %ld free persistent huge pages; fallback cannot be forced\n", have);
		skip();
	}
	char *cfg = pair_config("app=msgbulk role=send peer=rx sizes=4K,64K count=40 mode=remap check=full",
				"app=msgbulk role=recv", "", true);
	const char *knob = "/proc/sys/vm/nr_overcommit_hugepages";
	char *zero = xasprintf("%s/zero", tmp);
	write_file(zero, "0\n");
	char *script = xasprintf("mount --bind %s %s && mount -o remount,bind,ro %s && "
				 "exec %s run %s --timeout 60 --summary %s/summary.json --log-dir %s/logs",
				 zero, knob, knob, ferry_bin(), cfg, tmp, tmp);
	char *const argv[] = { "unshare", "-m", "sh", "-c", script, NULL };
	struct cmd_result r = run_cmd(argv, 120);
	char *log = log_of("rx");
	if (r.status != 0)
		fail_msg("fallback run failed (%d):\n%s\n%s", r.status, r.err, log);
	expect_contains(r.err, "msgq: using 4 KiB pages instead of 2 MiB");
	expect_contains(r.err, "ferry-tx-ram: using 4 KiB pages instead of 2 MiB huge pages");
	expect_contains(log, "received run 1: 40 of 40 messages verified");
	cJSON *t = vm("tx");
	assert_int_equal(json_num(t, "counters.msgq.page_size"), 4096);
	assert_true(json_num(t, "counters.msgq.pages_remapped") >= 80);
	free(log);
	free(script);
	free(zero);
	free(cfg);
	cmd_result_free(&r);
}

static long meminfo_value(const char *key)
{
	char *meminfo = read_file("/proc/meminfo");
	const char *at = meminfo ? strstr(meminfo, key) : NULL;
	long n = at ? atol(at + strlen(key)) : -1;
	free(meminfo);
	return n;
}

/* Huge pages are surplus pages: a ferry killed with SIGKILL (no chance to
 * clean up) leaves none of them allocated on the host. */
static void killed_ferry_leaves_no_huge_pages(void **state)
{
	(void)state;
	require_kvm();
	const char *knob = "/proc/sys/vm/nr_overcommit_hugepages";
	char *limit_before = read_file(knob);
	long total_before = meminfo_value("HugePages_Total:");
	assert_non_null(limit_before);
	char *cfg = pair_config("app=msgbulk role=send peer=rx sizes=2M count=1000000 mode=remap check=header",
				"app=msgbulk role=recv", "", true);
	char *summary = xasprintf("%s/summary.json", tmp), *logs = xasprintf("%s/logs", tmp);
	char *const argv[] = { (char *)ferry_bin(), "run", cfg, "--summary", summary, "--log-dir", logs, NULL };
	int pid = spawn_background(argv);
	long during = total_before;
	for (int i = 0; i < 500 && during <= total_before; i++) {
		usleep(20000);
		during = meminfo_value("HugePages_Total:");
	}
	kill(pid, SIGKILL);
	assert_int_equal(wait_background(pid, 10), 128 + SIGKILL);
	long after = meminfo_value("HugePages_Total:");
	for (int i = 0; i < 100 && after != total_before; i++) { /* the kernel frees them as the process goes */
		usleep(20000);
		after = meminfo_value("HugePages_Total:");
	}
	write_file(knob, limit_before); /* the one thing a killed ferry cannot put back */
	if (during <= total_before)
		fail_msg("ferry never allocated huge pages (HugePages_Total stayed %ld)", total_before);
	assert_int_equal(after, total_before);
	free(limit_before);
	free(summary);
	free(logs);
	free(cfg);
}

/* Direct rings: copied messages go between the two drivers without ferry;
 * what does not fit a ring (1 MiB here), and the control messages of the
 * run, go through ferry, and every message arrives intact and once. */
static void rings_carry_copies(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = pair_config("app=msgbulk role=send peer=rx sizes=64,4K,64K,1M count=40 mode=adaptive check=full",
				"app=msgbulk role=recv", ", \"rings\": true", false);
	/* Rings of 1 MiB: messages up to half of that fit. */
	char *text = read_file(cfg);
	assert_non_null(text);
	char *sized = xasprintf("{\"msgq\": {\"ring_kib\": 1024}, %s", text + 1);
	write_file(cfg, sized);
	free(sized);
	free(text);
	const char *args[] = { cfg, "--timeout", "60", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 120);
	char *rx = log_of("rx"), *tx = log_of("tx");
	if (r.status != 0)
		fail_msg("msgbulk over rings failed:\n%s\n%s\n%s", rx, tx, r.err);
	for (int run = 0; run < 4; run++) {
		char *want = xasprintf("received run %d: 40 of 40 messages verified, 0 corrupt, 0 duplicated: ok", run);
		expect_contains(rx, want);
		free(want);
	}
	/* On the ring: every message of the three small runs; the 1 MiB ones
	 * are too long for it and ferry copies them. */
	expect_contains(tx, "\"size\": 64, \"count\": 40");
	expect_contains(tx, "\"copied\": 0, \"ring\": 40");
	expect_contains(tx, "\"size\": 1048576, \"count\": 40, \"transport\": \"msgq\", \"mode\": \"adaptive\"");
	expect_contains(tx, "\"copied\": 40, \"ring\": 0");
	cJSON *t = vm("tx");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(t, "counters"), "msgq"),
						     "rings_driver")));
	/* ferry saw only what went through it: the 1 MiB messages and the
	 * run's control messages. */
	double sent = json_num(t, "counters.msgq.sent");
	assert_true(sent >= 40 && sent <= 50);
	assert_int_equal(json_num(t, "counters.msgq.writes_to_ring_views"), 0);
	free(rx);
	free(tx);
	free(cfg);
	cmd_result_free(&r);
}

/* A receiver that halts for its messages is woken through the rings'
 * doorbell: the sender rings it when it sees the receiver's token, ferry
 * interrupts the receiver. */
static void rings_wake_a_sleeping_receiver(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = pair_config("app=msgping role=ping peer=rx count=50 size=256 wait=irq", "app=msgping role=pong wait=irq",
				", \"rings\": true", false);
	const char *args[] = { cfg, "--timeout", "60", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 120);
	char *log = log_of("tx");
	if (r.status != 0)
		fail_msg("msgping over rings failed (%d):\n%s\n%s", r.status, log, r.err);
	expect_contains(log, "msgping: result {\"size\": 256, \"count\": 50");
	expect_contains(log, "\"ring\": 51");
	assert_true(json_num(vm("tx"), "counters.msgq.ring_doorbells") >= 1);
	assert_true(json_num(vm("rx"), "counters.msgq.ring_wakeups") >= 1);
	free(log);
	free(cfg);
	cmd_result_free(&r);
}

/* A guest that writes where it may only read, breaks its own ring and rings
 * the doorbell in a loop harms nobody: its writes are refused and counted,
 * the receiver stops reading the broken ring and gets the rest through
 * ferry, and nobody is woken who did not ask. */
static void rings_misuse_is_contained(void **state)
{
	(void)state;
	require_kvm();
	char *path = xasprintf("%s/rings.json", tmp), *pwd = getenv("PWD");
	char *text = xasprintf(
		"{\"vms\": ["
		"{\"name\": \"attacker\", \"memory_mib\": 64, \"kernel\": \"%s/%s\","
		" \"cmdline\": \"app=msgrings role=attack peer=victim count=50\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"victim\"], \"rings\": true}]},"
		"{\"name\": \"victim\", \"memory_mib\": 64, \"kernel\": \"%s/%s\","
		" \"cmdline\": \"app=msgrings role=victim peer=attacker\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"attacker\"], \"rings\": true}]}]}",
		pwd, guest_image(), pwd, guest_image());
	write_file(path, text);
	const char *args[] = { path, "--timeout", "60", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 120);
	char *a = log_of("attacker"), *v = log_of("victim");
	if (r.status != 0)
		fail_msg("msgrings failed (%d):\n%s\n%s\n%s", r.status, a, v, r.err);
	expect_contains(a, "msgrings: every misuse was contained");
	expect_contains(v, "bad producer index");
	expect_contains(v, "received 51 messages on the ring and 51 through ferry, 0 bad");
	assert_true(json_num(vm("attacker"), "counters.msgq.writes_to_ring_views") >= 1);
	assert_true(json_num(vm("victim"), "counters.msgq.writes_to_ring_views") >= 2);
	assert_true(json_num(vm("attacker"), "counters.msgq.ring_doorbells") >= 200);
	assert_int_equal(json_num(vm("victim"), "counters.msgq.ring_wakeups"), 0);
	free(a);
	free(v);
	free(text);
	free(path);
	cmd_result_free(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_dir_setup, test_dir_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(example_remaps_not_copies), T(misuse_is_refused_and_counted), T(bulk_modes_verify),
		T(deferred_posting_is_recorded), T(ping_pong_round_trips), T(bad_msgq_configs),
		T(hugepages_fall_back_to_4k), T(killed_ferry_leaves_no_huge_pages), T(rings_carry_copies),
		T(rings_wake_a_sleeping_receiver), T(rings_misuse_is_contained),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
