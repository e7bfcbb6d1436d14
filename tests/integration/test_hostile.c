/* A misbehaving guest beside good ones: whatever one VM asks of its
 * devices, ferry neither crashes nor hangs, refuses (and counts) what is
 * wrong, and the work it does for one request is bounded, so the other VMs
 * are still served on time with intact data. The guest app `hostile`
 * (guest/apps/hostile.c) attacks every device it finds. Deadlines here are
 * generous (this host is shared and slow); the failures they catch are
 * crashes, corruption and stalls of seconds. scripts/run-tests.sh runs this
 * against the ASan+UBSan build too. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define tmp test_dir
static char kernel[PATH_MAX];

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	return 0;
}

static struct cmd_result run_config_timeout(const char *json, double timeout_s)
{
	char *cfg = xasprintf("%s/config.json", tmp), *summary = xasprintf("%s/summary.json", tmp);
	char *logs = xasprintf("%s/logs", tmp);
	write_file(cfg, json);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--console", "--summary", summary, "--log-dir", logs, NULL };
	struct cmd_result r = run_cmd(argv, timeout_s);
	free(cfg);
	free(summary);
	free(logs);
	return r;
}

static struct cmd_result run_config(const char *json)
{
	return run_config_timeout(json, 120);
}

static double num(const char *vm, const char *path)
{
	return json_num(test_summary_vm(vm), path);
}

static void expect_poweroff_ok(const char *vm)
{
	cJSON *v = test_summary_vm(vm);
	cJSON *reason = cJSON_GetObjectItem(v, "exit_reason");
	if (!cJSON_IsString(reason) || strcmp(reason->valuestring, "poweroff") || json_num(v, "exit_code") != 0)
		fail_msg("%s did not power off with status 0 (%s, %g)", vm, cJSON_IsString(reason) ? reason->valuestring : "?",
			 json_num(v, "exit_code"));
}

/* A counter of the hostile VM that must show refusals. */
static void expect_refused(const char *path)
{
	double v = num("evil", path);
	if (v <= 0)
		fail_msg("evil: %s is %g: the attack was not seen as refused", path, v);
}

/* A good VM's device saw no misbehaviour of its own. */
static void expect_clean(const char *vm, const char *device)
{
	char *path = xasprintf("counters.%s.rejected", device);
	double v = num(vm, path);
	if (v != 0)
		fail_msg("%s: %s is %g", vm, path, v);
	free(path);
}

#define EVIL_MAC "02:00:00:00:00:0e"
#define VICTIM_MAC "02:00:00:00:00:2b"

/* The hostile guest's every attack, beside VMs doing real work: a message
 * stream checked byte by byte, a working set that grows under a memory
 * budget (the memory comes from an idle VM's balloon), and a UDP stream
 * with every datagram verified, on the network the hostile VM is on (it
 * spoofs the receiver's MAC; it sends a victim VM frames until a zero-copy
 * channel binds them, then lies in that channel's ring; the victim stays
 * up until the hostile VM releases it over msgq). ferry must run them all
 * to the end, and its summary must show each attack refused. */
static void hostile_beside_good_vms(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"memory_budget_mib\": 900 }, \"networks\": { \"lan\": { \"mtu\": 1500 } },"
		"  \"vms\": ["
		" { \"name\": \"evil\", \"memory_mib\": 128, \"vcpus\": 2, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=hostile ms=700 victim_mac=" VICTIM_MAC " release=victim flood_kib=512\","
		"   \"devices\": [ { \"type\": \"virtio-rng\" }, { \"type\": \"virtio-balloon\" }, { \"type\": \"cpu-reserve\" },"
		"                { \"type\": \"msgq\", \"peers\": [\"mrx\", \"victim\"] } ],"
		"   \"nics\": [ { \"network\": \"lan\", \"mac\": \"" EVIL_MAC "\" } ] },"
		" { \"name\": \"mtx\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=msgbulk role=send peer=mrx sizes=64,4K,64K count=150 check=full\","
		"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"mrx\"] } ] },"
		" { \"name\": \"mrx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","
		"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"mtx\"] } ] },"
		" { \"name\": \"hog\", \"memory_mib\": 512, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=memhog phases=64M,256M,128M,384M,32M phase_ms=500\","
		"   \"devices\": [ { \"type\": \"virtio-balloon\" } ] },"
		" { \"name\": \"idler\", \"memory_mib\": 512, \"kernel\": \"%s\", \"cmdline\": \"app=idle ms=4000\","
		"   \"devices\": [ { \"type\": \"virtio-balloon\" } ] },"
		" { \"name\": \"victim\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgping role=pong wait=irq\","
		"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"evil\"] } ],"
		"   \"nics\": [ { \"network\": \"lan\", \"mac\": \"" VICTIM_MAC "\" } ] },"
		" { \"name\": \"nrx\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=udpbulk role=recv ip=10.0.0.2/24\","
		"   \"nics\": [ { \"network\": \"lan\" } ] },"
		" { \"name\": \"ntx\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 count=3000\","
		"   \"nics\": [ { \"network\": \"lan\" } ] } ],"
		"  \"links\": [ { \"vms\": [\"evil\", \"idler\"], \"size_mib\": 2 } ] }",
		kernel, kernel, kernel, kernel, kernel, kernel, kernel, kernel);
	struct cmd_result r = run_config_timeout(json, 600);
	free(json);
	if (r.status != 0)
		fail_msg("ferry exited %d:\n%s\n%s", r.status, r.out, r.err);
	/* The hostile VM got through every phase (so every attack was made). */
	if (!strstr(r.out, "[evil] hostile: finished"))
		fail_msg("the hostile guest did not finish:\n%s", r.out);
	/* The good VMs: verified data, and done. */
	const char *want[] = { "[mrx] msgbulk: ", "[hog] memhog: done", "[nrx] udpbulk: role=recv", NULL };
	for (int i = 0; want[i]; i++)
		if (!strstr(r.out, want[i]))
			fail_msg("no \"%s\" in:\n%s", want[i], r.out);
	if (strstr(r.out, "CORRUPT"))
		fail_msg("memhog found corrupt pages:\n%s", r.out);
	const char *bulk = strstr(r.out, "[nrx] udpbulk: role=recv");
	const char *eol = strchr(bulk, '\n');
	const char *clean = strstr(bulk, "received=3000 lost=0 duplicated=0");
	if (!clean || (eol && clean > eol) || !strstr(bulk, "corrupt=0"))
		fail_msg("the UDP stream beside the hostile VM was not clean:\n%.*s", eol ? (int)(eol - bulk) : 300, bulk);
	/* The victim was released by the hostile VM once its attack on the
	 * zero-copy channel was over (so the channel was bound, not refused
	 * for a receiver already gone). */
	if (!strstr(r.out, "[evil] hostile: net: lied on zero-copy channel") ||
	    !strstr(r.out, "[evil] hostile: net: released victim (status 0)"))
		fail_msg("the hostile VM never lied on a bound zero-copy channel:\n%s", r.out);
	cmd_result_free(&r);
	const char *good[] = { "mtx", "mrx", "hog", "idler", "victim", "nrx", "ntx", NULL };
	for (int i = 0; good[i]; i++)
		expect_poweroff_ok(good[i]);
	expect_poweroff_ok("evil");
	/* The good pair's sends: refusals other than "not up yet" (the sender
	 * probes until the receiver's driver runs) and "full" (backpressure). */
	static const char *const misuse[] = { "denied", "no_dest", "bad_addr", "unaligned", "too_long", "bad_chain", "host", NULL };
	for (int i = 0; misuse[i]; i++) {
		char *path = xasprintf("counters.msgq.rejected_by.%s", misuse[i]);
		if (num("mtx", path) != 0 || num("mrx", path) != 0)
			fail_msg("the good msgq pair: %s is %g / %g", path, num("mtx", path), num("mrx", path));
		free(path);
	}
	/* The good VMs' balloons saw no misbehaviour (a driver that overshoots a
	 * target the scheduler lowered mid-inflate is not misbehaving: those
	 * pages are taken and counted as inflated_over_target), and no page
	 * given was written afterwards. */
	if (num("hog", "counters.balloon.touched_after_inflate") != 0)
		fail_msg("hog wrote %g pages it had given to the balloon", num("hog", "counters.balloon.touched_after_inflate"));
	expect_clean("hog", "balloon");
	expect_clean("idler", "balloon");
	expect_clean("ntx", "net");
	expect_clean("victim", "net");
	/* Every kind of attack, refused and counted. */
	expect_refused("counters.virtio-rng.rejected");
	expect_refused("counters.balloon.rejected");
	expect_refused("counters.msgq.rejected_by.bad_addr");
	expect_refused("counters.msgq.rejected_by.unaligned");
	expect_refused("counters.msgq.rejected_by.too_long");
	expect_refused("counters.msgq.rejected_by.no_dest");
	expect_refused("counters.net.rejected");
	expect_refused("counters.net.dropped.spoofed_source");
	expect_refused("counters.net.dropped.oversize");
	expect_refused("counters.net.writes_to_receive_areas");
	expect_refused("counters.ivshmem.doorbells_rejected");
	expect_refused("counters.cpu-reserve.rejected");
	expect_refused("counters.pci.rejected");
	if (num("idler", "counters.balloon.inflated") == 0)
		fail_msg("the idle VM gave nothing: the budget was not enforced through its balloon");
}

/* The bound on one guest's worst chains, as another guest's message round
 * trip sees it: msgping between two VMs, first alone, then beside a VM
 * posting the longest chains every device accepts as fast as they complete
 * (msgq returns of 256 bad entries under the lock all msgq VMs share,
 * 4096-frame balloon lists, 64 x 64 MiB entropy chains, 128-segment
 * frames). Stated bound: the median round trip stays within 3 x the one
 * measured alone plus 1 ms, and the 99th percentile under 100 ms (this
 * 2-core host is shared, so CPU contention alone costs milliseconds; work
 * that grows with the guest's request costs seconds). */
#define PING_CFG(extra_vm, pong_peers)                                                                         \
	"{ \"networks\": { \"lan\": {} }, \"vms\": [" extra_vm                                                     \
	" { \"name\": \"ping\", \"memory_mib\": 64, \"kernel\": \"%s\","                                       \
	"   \"cmdline\": \"app=msgping role=ping peer=pong count=1000 size=256 wait=irq\","                      \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"pong\"] } ] },"                                    \
	" { \"name\": \"pong\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgping role=pong wait=irq\"," \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [" pong_peers "] } ] } ] }"

static void ping_result(const char *out, double *median_ns, double *p99_ns)
{
	const char *m = strstr(out, "[ping] msgping: result");
	const char *med = m ? strstr(m, "\"rtt_ns_median\": ") : NULL, *p99 = m ? strstr(m, "\"rtt_ns_p99\": ") : NULL;
	if (!med || !p99)
		fail_msg("no msgping result in:\n%s", out);
	*median_ns = atof(med + strlen("\"rtt_ns_median\": "));
	*p99_ns = atof(p99 + strlen("\"rtt_ns_p99\": "));
}

static void worst_chains_bound_message_rtt(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(PING_CFG("", "\"ping\""), kernel, kernel);
	struct cmd_result r = run_config(json);
	free(json);
	if (r.status != 0)
		fail_msg("baseline: ferry exited %d:\n%s\n%s", r.status, r.out, r.err);
	double base_med, base_p99, med, p99;
	ping_result(r.out, &base_med, &base_p99);
	cmd_result_free(&r);

	json = xasprintf(PING_CFG(" { \"name\": \"evil\", \"memory_mib\": 256, \"kernel\": \"%s\","
				  "   \"cmdline\": \"app=hostile phases=worst ms=3000\","
				  "   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"pong\"] },"
				  "                { \"type\": \"virtio-balloon\" }, { \"type\": \"virtio-rng\" } ],"
				  "   \"nics\": [ { \"network\": \"lan\" } ] },",
				  "\"ping\", \"evil\""),
			 kernel, kernel, kernel);
	r = run_config(json);
	free(json);
	if (r.status != 0)
		fail_msg("beside the hostile VM: ferry exited %d:\n%s\n%s", r.status, r.out, r.err);
	if (!strstr(r.out, "[evil] hostile: worst: ") || !strstr(r.out, "msgq return chains"))
		fail_msg("the hostile VM did not post its chains:\n%s", r.out);
	ping_result(r.out, &med, &p99);
	print_message("msgping median %.0f us alone, %.0f us beside worst-case chains; p99 %.0f / %.0f us\n",
		      base_med / 1000, med / 1000, base_p99 / 1000, p99 / 1000);
	if (med > 3 * base_med + 1e6 || p99 > 100e6)
		fail_msg("worst-case chains stretched the round trip: median %.0f us (alone %.0f us), p99 %.0f us:\n%s",
			 med / 1000, base_med / 1000, p99 / 1000, r.out);
	if (num("evil", "counters.balloon.rejected") == 0)
		fail_msg("the hostile VM's balloon lists were not refused");
	cmd_result_free(&r);
}

/* One VM posts virtio-rng chains of 8 x 64 MiB (512 MiB of random bytes
 * asked for at a time) while another reads 64 bytes every 10 ms. ferry
 * used to fill every byte on the event loop that all VMs share, stalling
 * the reader for seconds (its driver gave up after 1 s); now a chain gets
 * at most 64 KiB and a pass a bounded number of chains. */
static void rng_flood_does_not_stall_others(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"vms\": ["
		" { \"name\": \"flood\", \"memory_mib\": 256, \"kernel\": \"%s\", \"cmdline\": \"app=rngflood ms=3000\","
		"   \"devices\": [ { \"type\": \"virtio-rng\" } ] },"
		" { \"name\": \"good\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=rngflood role=measure count=150 interval_ms=10 delay_ms=300\","
		"   \"devices\": [ { \"type\": \"virtio-rng\" } ] } ] }",
		kernel, kernel);
	struct cmd_result r = run_config(json);
	free(json);
	if (r.status != 0)
		fail_msg("ferry exited %d:\n%s\n%s", r.status, r.out, r.err);
	const char *m = strstr(r.out, "[good] rngflood: measure:");
	const char *max = m ? strstr(m, "max_us=") : NULL;
	if (!max || !strstr(r.out, "[flood] rngflood: flood:"))
		fail_msg("no measurement in:\n%s", r.out);
	long max_us = atol(max + 7);
	/* Bounded work keeps this to milliseconds; a stall is >= 1 s. */
	if (max_us > 500000)
		fail_msg("the good VM waited %ld us for 64 random bytes:\n%s", max_us, r.out);
	cmd_result_free(&r);
	cJSON *flood = test_summary_vm("flood");
	if (json_num(flood, "counters.virtio-rng.bytes") <= 0)
		fail_msg("the flooding VM got no bytes at all");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(rng_flood_does_not_stall_others, setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(hostile_beside_good_vms, setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(worst_chains_bound_message_rtt, setup, test_dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
