/* ferry-guest's reservation drivers under ferry: the virtio-balloon driver
 * (selftest check with a host target, deflate-on-OOM, two VMs under the
 * memory scheduler, the user-level balloonapp) and the cpu-reserve driver
 * under the CPU scheduler. Every check is about what happened (exit codes,
 * verified memory, counters), never about how fast; the time limits are
 * generous deadlines. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#define tmp test_dir
static char kernel[4096];   /* absolute: configs are read relative to their directory */

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	return 0;
}

#define teardown test_dir_teardown

/* Writes the config (with %s for the kernel, once per VM) and runs it. */
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

#define vm_summary test_summary_vm
#define num_at json_num

static void expect_ok(struct cmd_result *r, const char *const *texts)
{
	if (r->status != 0)
		fail_msg("ferry exited %d:\n%s\n%s", r->status, r->out, r->err);
	for (; *texts; texts++)
		if (!strstr(r->out, *texts))
			fail_msg("expected \"%s\" in:\n%s", *texts, r->out);
}

/* The host's checks of what the guest gave it: nothing refused, no page
 * written after it was given. */
static void expect_clean_balloon(const char *vm)
{
	cJSON *v = vm_summary(vm);
	if (num_at(v, "counters.balloon.rejected") != 0 || num_at(v, "counters.balloon.touched_after_inflate") != 0)
		fail_msg("%s: balloon rejected %.0f frames, %.0f pages touched after inflate", vm,
			 num_at(v, "counters.balloon.rejected"), num_at(v, "counters.balloon.touched_after_inflate"));
}

/* The host asks for 64 MiB (max_mib 192 of 256): the selftest's balloon
 * check waits for the request (balloon_wait_target) and for the driver to
 * fulfil it, then moves 256 pages out and back through the device and checks
 * the allocator's counts. */
static void selftest_with_target(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"memory_budget_mib\": 4096 }, \"vms\": [ { \"name\": \"st\", \"memory_mib\": 256,"
		" \"vcpus\": 2, \"cmdline\": \"app=selftest require=virtio-balloon balloon_wait_target\", \"kernel\": \"%s\","
		" \"memory\": { \"max_mib\": 192 }, \"devices\": [ { \"type\": \"virtio-balloon\" } ] } ] }",
		kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "selftest: balloon ok", "512 pages moved through the device", "selftest: smp_park ok",
			       " 0 failed", NULL };
	expect_ok(&r, want);
	cmd_result_free(&r);
	expect_clean_balloon("st");
	cJSON *v = vm_summary("st");
	if (num_at(v, "counters.balloon.held_pages") != 16384 || num_at(v, "counters.balloon.deflated") < 256)
		fail_msg("balloon holds %.0f pages (want 16384), deflated %.0f",
			 num_at(v, "counters.balloon.held_pages"), num_at(v, "counters.balloon.deflated"));
}

/* memhog needs more than the host left it: allocations that would fail
 * deflate the balloon (DEFLATE_ON_OOM) and the pattern stays intact. */
static void deflate_on_oom(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"memory_budget_mib\": 4096 }, \"vms\": [ { \"name\": \"oom\", \"memory_mib\": 256,"
		" \"vcpus\": 2, \"cmdline\": \"app=memhog wait_balloon phases=32M,200M,64M,220M phase_ms=400\", \"kernel\": \"%s\","
		" \"memory\": { \"max_mib\": 128 }, \"devices\": [ { \"type\": \"virtio-balloon\" } ] } ] }",
		kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "balloon at the host's target of 128 MiB", "phase 2: 200 MiB", "phase 4: 220 MiB",
			       "memhog: done", NULL };
	expect_ok(&r, want);
	if (strstr(r.out, "CORRUPT"))
		fail_msg("memhog found corrupt pages:\n%s", r.out);
	cmd_result_free(&r);
	expect_clean_balloon("oom");
	cJSON *v = vm_summary("oom");
	if (num_at(v, "counters.balloon.deflated") == 0 || num_at(v, "counters.balloon.guest_stats.major_faults") == 0)
		fail_msg("no deflate on OOM: deflated %.0f, failed allocations %.0f",
			 num_at(v, "counters.balloon.deflated"), num_at(v, "counters.balloon.guest_stats.major_faults"));
}

/* Two VMs, 600 MiB for 1 GiB of guest RAM: the memory scheduler moves memory
 * from the idle VM to the one whose working set grows, through both
 * drivers; every phase is reached and verified. */
static void two_vms_under_budget(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"memory_budget_mib\": 600 }, \"vms\": ["
		" { \"name\": \"hog\", \"memory_mib\": 512, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=memhog phases=64M,256M,128M,384M,32M phase_ms=500\","
		"   \"devices\": [ { \"type\": \"virtio-balloon\" } ] },"
		" { \"name\": \"idler\", \"memory_mib\": 512, \"kernel\": \"%s\", \"cmdline\": \"app=idle ms=3000\","
		"   \"devices\": [ { \"type\": \"virtio-balloon\" } ] } ] }",
		kernel, kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "phase 4: 384 MiB", "memhog: done", "[idler] virtio-balloon: inflated", NULL };
	expect_ok(&r, want);
	if (strstr(r.out, "CORRUPT"))
		fail_msg("memhog found corrupt pages:\n%s", r.out);
	cmd_result_free(&r);
	expect_clean_balloon("hog");
	expect_clean_balloon("idler");
	if (num_at(vm_summary("idler"), "counters.balloon.inflated") == 0)
		fail_msg("the idle VM gave nothing");
}

/* balloon=app: the kernel driver is passive and the user-level balloonapp
 * reserves the 64 MiB the host asks for. */
static void user_level_balloon(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"memory_budget_mib\": 4096 }, \"vms\": [ { \"name\": \"app\", \"memory_mib\": 256,"
		" \"cmdline\": \"app=balloonapp balloon=app ms=2000\", \"kernel\": \"%s\","
		" \"memory\": { \"max_mib\": 192 }, \"devices\": [ { \"type\": \"virtio-balloon\" } ] } ] }",
		kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "passive (balloon=app)", "balloonapp: reserved 64 MiB", "holding 64 MiB", NULL };
	expect_ok(&r, want);
	cmd_result_free(&r);
	expect_clean_balloon("app");
	if (num_at(vm_summary("app"), "counters.balloon.held_pages") != 16384)
		fail_msg("the host holds %.0f pages, not 16384", num_at(vm_summary("app"), "counters.balloon.held_pages"));
}

/* examples/overcommit.json: three 512 MiB VMs on a 700 MiB budget. Two use
 * 256 MiB and then idle; the worker then grows to 400 MiB. Everyone exits 0,
 * the host never holds more than the budget plus 64 MiB (guest kernels and
 * pages in flight), and the scheduler's targets move memory to the worker. */
#define OVERCOMMIT_SLACK_MIB 64

static void overcommit_example(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "examples/overcommit.json", "--timeout", "90", NULL };
	struct cmd_result r = ferry_run_in(tmp, args, 120);
	if (r.status != 0)
		fail_msg("overcommit example failed (%d):\n%s", r.status, r.err);
	cmd_result_free(&r);
	char *path = xasprintf("%s/summary.json", tmp);
	cJSON *root = load_json(path);
	free(path);
	cJSON *mem = cJSON_GetObjectItem(root, "memory");
	double budget = json_num(mem, "budget_mib"), peak = json_num(mem, "peak_resident_mib");
	if (peak > budget + OVERCOMMIT_SLACK_MIB)
		fail_msg("peak resident %.1f MiB exceeds the budget %.0f MiB + %d MiB", peak, budget, OVERCOMMIT_SLACK_MIB);
	double worker_max = 0, idle_min = 1e9;
	cJSON *sample;
	cJSON_ArrayForEach(sample, cJSON_GetObjectItem(mem, "series")) {
		cJSON *vms = cJSON_GetObjectItem(sample, "vms");
		double w = json_num(cJSON_GetObjectItem(vms, "worker"), "target_mib");
		double i1 = json_num(cJSON_GetObjectItem(vms, "idle-1"), "target_mib");
		worker_max = w > worker_max ? w : worker_max;
		idle_min = i1 < idle_min && i1 > 0 ? i1 : idle_min;
	}
	assert_true(worker_max >= 400);  /* it got what its working set needed */
	assert_true(idle_min <= 150);    /* taken from an idle VM */
	/* And the host's own accounting followed the targets. */
	cJSON *per = cJSON_GetObjectItem(mem, "vms"), *v;
	cJSON_ArrayForEach(v, per)
		assert_int_equal(json_num(v, "host_lagged_target_ms"), 0);
	cJSON_Delete(root);
	const char *vms[] = { "worker", "idle-1", "idle-2" };
	for (int i = 0; i < 3; i++)
		expect_clean_balloon(vms[i]);
}

/* Three vCPUs for two 2-vCPU VMs: the CPU scheduler parks one vCPU of the
 * VM with fewer shares while the other runs, and unparks it when that one
 * powers off; cpuburn keeps running on the rest. */
static void cpu_reserve_parks(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"vcpu_budget\": 3 }, \"vms\": ["
		" { \"name\": \"x\", \"memory_mib\": 64, \"vcpus\": 2, \"cpu_shares\": 1000, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=cpuburn ms=2500\", \"devices\": [ { \"type\": \"cpu-reserve\" } ] },"
		" { \"name\": \"y\", \"memory_mib\": 64, \"vcpus\": 2, \"cpu_shares\": 2000, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=cpuburn ms=1000\", \"devices\": [ { \"type\": \"cpu-reserve\" } ] } ] }",
		kernel, kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "[x] cpu-reserve: 2 vCPUs", "[x] cpuburn: cpu 1 (apic 1)", NULL };
	expect_ok(&r, want);
	const char *line = strstr(r.out, "[x] cpuburn: cpu 1 (apic 1)");
	const char *parked = line ? strstr(line, "parked ") : NULL;
	if (!parked || atoi(parked + 7) <= 0)
		fail_msg("x's vCPU 1 was never parked:\n%s", r.out);
	cmd_result_free(&r);
	cJSON *x = vm_summary("x");
	if (num_at(x, "counters.cpu-reserve.rejected") != 0 || num_at(x, "counters.cpu-reserve.acknowledged") < 2)
		fail_msg("cpu-reserve: %.0f rejected, %.0f acknowledged", num_at(x, "counters.cpu-reserve.rejected"),
			 num_at(x, "counters.cpu-reserve.acknowledged"));
}

/* A vCPU budget below the VM's vCPUs on a host with CPUs to spare: the
 * scheduler pins running vCPUs to host CPUs of their own and unpins the one
 * the guest parks, from the sandboxed event loop (unpinning once opened a
 * file there, which the seccomp filter answered by stopping ferry). */
static void vcpu_budget_pins_and_unpins(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"host\": { \"vcpu_budget\": 1 }, \"vms\": ["
		" { \"name\": \"batch\", \"memory_mib\": 64, \"vcpus\": 2, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=cpuburn ms=3000\", \"devices\": [ { \"type\": \"cpu-reserve\" } ] } ] }",
		kernel);
	struct cmd_result r = run_config(json);
	free(json);
	const char *want[] = { "[batch] cpuburn: cpu 1 (apic 1)", NULL };
	expect_ok(&r, want);
	cmd_result_free(&r);
	char *path = xasprintf("%s/summary.json", tmp);
	cJSON *doc = load_json(path);
	free(path);
	/* Two vCPUs pinned while both run, then the parked one unpinned. */
	if (!doc || json_num(doc, "cpu.affinity_changes") < 3 || json_num(doc, "cpu.parked_vcpus_that_ran") != 0)
		fail_msg("expected >= 3 affinity changes and no parked vCPU running");
	cJSON_Delete(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(selftest_with_target, setup, teardown),
		cmocka_unit_test_setup_teardown(deflate_on_oom, setup, teardown),
		cmocka_unit_test_setup_teardown(two_vms_under_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(user_level_balloon, setup, teardown),
		cmocka_unit_test_setup_teardown(cpu_reserve_parks, setup, teardown),
		cmocka_unit_test_setup_teardown(vcpu_budget_pins_and_unpins, setup, teardown),
		cmocka_unit_test_setup_teardown(overcommit_example, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
