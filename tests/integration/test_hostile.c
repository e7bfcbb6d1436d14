/* A misbehaving guest beside a good one: whatever one VM asks of its
 * devices, the work ferry does for one request is bounded, so the other
 * VMs are still served on time. Deadlines here are generous (this host is
 * shared and slow); the failures they catch are stalls of seconds. */
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

static struct cmd_result run_config(const char *json)
{
	char *cfg = xasprintf("%s/config.json", tmp), *summary = xasprintf("%s/summary.json", tmp);
	char *logs = xasprintf("%s/logs", tmp);
	write_file(cfg, json);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--console", "--summary", summary, "--log-dir", logs, NULL };
	struct cmd_result r = run_cmd(argv, 120);
	free(cfg);
	free(summary);
	free(logs);
	return r;
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
