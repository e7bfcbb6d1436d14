/* Every `ferry bench` target as a smoke test: its smallest run (tiny
 * counts, no repeats, no QEMU) prints one JSON object with every key, and
 * every figure is a measurement (a failed run reports -1 or null). What
 * the figures are is the bench's business, not this test's. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const msg_keys[] = {
	"remap_2m_mbps", "copy_2m_mbps", "adaptive_2m_mbps", "remap_2m_deferred_mbps", "copy_2m_deferred_mbps",
	"adaptive_4k_mbps", "copy_4k_mbps", "remap_4k_mbps", "copy_64k_mbps", "remap_64k_mbps", "adaptive_64k_mbps",
	"copy_64b_msgs", "deferred_64b_msgs", "immediate_64b_msgs",
	"latency_64b_immediate_us", "latency_64b_deferred_us", "latency_4k_immediate_us", "latency_4k_deferred_us",
	"latency_64k_immediate_us", "latency_64k_deferred_us", "latency_2m_immediate_us", "latency_2m_deferred_us",
	/* The ivshmem transport between ferry VMs of a static link. */
	"ferry_ivshmem_copy_2m_mbps", "ferry_ivshmem_copy_4k_mbps", "ferry_ivshmem_copy_64k_mbps",
	"ferry_ivshmem_copy_64b_msgs", "ferry_ivshmem_64b_msgs", "ferry_ivshmem_latency_64b_us",
	"ferry_ivshmem_latency_4k_us", "ferry_ivshmem_latency_64k_us", "ferry_ivshmem_latency_2m_us",
	/* Tails of the latencies, and direct rings (issue 9). */
	"latency_64b_immediate_p99_us", "latency_64b_deferred_p99_us", "latency_4k_immediate_p99_us",
	"latency_64k_immediate_p99_us", "latency_2m_immediate_p99_us", "latency_2m_deferred_p99_us",
	"latency_64b_ring_us", "latency_64b_ring_p99_us", "latency_4k_ring_us", "latency_64k_ring_us",
	"ferry_ivshmem_latency_64b_p99_us", "ring_64b_msgs", "ring_4k_mbps", "ring_64k_mbps",
	"ring_deferred_64b_msgs", "ring_deferred_4k_mbps", "ring_deferred_64k_mbps", "deferred_4k_mbps",
	"deferred_64k_mbps", "adaptive_2m_deferred_mbps", "best_64b_mbps", "best_4k_mbps", "best_64k_mbps",
	"best_2m_mbps", "adaptive_4k_vs_faster_path", "adaptive_64k_vs_faster_path", "adaptive_2m_vs_faster_path",
	"round_trips",
	/* Linux sender and receiver through ferry_msgq (issue 13). */
	"linux_64b_msgs", "linux_4k_mbps", "linux_64k_mbps", "linux_2m_mbps", "linux_latency_64b_us",
	"linux_latency_64b_p99_us",
};

static void bench_msg_json(void **state)
{
	(void)state;
	require_kvm();
	/* The linux column too (two boots of a Linux pair, make test builds
	 * the kernel): ferry-msg through ferry_msgq at both ends. */
	char *argv[] = { (char *)ferry_bin(), "bench", "msg", "--count", "10", "--repeat", "1", "--no-qemu",
			 "--kernel", (char *)guest_image(), "--linux", (char *)linux_kernel(), "--json", NULL };
	struct cmd_result r = run_cmd(argv, 3000); /* a hang guard: two Linux boots take minutes on a loaded host */
	if (r.status != 0)
		fail_msg("ferry bench msg exited %d:\n%s", r.status, r.err);
	cJSON *j = cJSON_Parse(r.out);
	if (!cJSON_IsObject(j))
		fail_msg("not one JSON object:\n%s", r.out);
	for (size_t i = 0; i < sizeof(msg_keys) / sizeof(msg_keys[0]); i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(j, msg_keys[i]);
		if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
			fail_msg("%s: missing or not a measurement in\n%s\n%s", msg_keys[i], r.out, r.err);
	}
	cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "ferry_ivshmem_transport");
	assert_true(cJSON_IsString(t));
	assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "linux_transport")));
	/* --no-qemu: no QEMU column. */
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "qemu_transport"));
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "qemu_copy_4k_mbps"));
	cJSON_Delete(j);
	cmd_result_free(&r);
}

/* Runs `ferry bench ARGS... --no-qemu --json` and returns its JSON. */
static cJSON *bench_json(char **args)
{
	char *argv[24] = { (char *)ferry_bin(), "bench" };
	int n = 2;
	for (; *args && n < 20; args++)
		argv[n++] = *args;
	argv[n++] = "--kernel";
	argv[n++] = (char *)guest_image();
	argv[n++] = "--no-qemu";
	argv[n++] = "--json";
	argv[n] = NULL;
	struct cmd_result r = run_cmd(argv, 600);
	if (r.status != 0)
		fail_msg("ferry bench %s exited %d:\n%s", argv[2], r.status, r.err);
	cJSON *j = cJSON_Parse(r.out);
	if (!cJSON_IsObject(j))
		fail_msg("ferry bench %s: not one JSON object:\n%s\n%s", argv[2], r.out, r.err);
	cmd_result_free(&r);
	return j;
}

/* Every key in keys is a positive number; every key in absent is null or missing. */
static void expect_measured(cJSON *j, const char *const *keys, const char *const *absent)
{
	char *text = cJSON_PrintUnformatted(j);
	for (; keys && *keys; keys++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(j, *keys);
		if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
			fail_msg("%s: missing or not a measurement in %s", *keys, text);
	}
	for (; absent && *absent; absent++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(j, *absent);
		if (v && !cJSON_IsNull(v))
			fail_msg("%s: measured with --no-qemu in %s", *absent, text);
	}
	free(text);
}

static void bench_boot_json(void **state)
{
	(void)state;
	require_kvm();
	char *args[] = { "boot", "--count", "2", NULL };
	static const char *const keys[] = { "ferry_boot_ms_median", "ferry_boot_ms_p95", "ferry_spawn_ms_median",
					    "ferry_spawn_ms_p95", "ferry_overhead_mib", NULL };
	cJSON *j = bench_json(args);
	expect_measured(j, keys, NULL);
	assert_int_equal(cJSON_GetObjectItem(j, "runs")->valuedouble, 2);
	cJSON_Delete(j);
}

static void bench_balloon_json(void **state)
{
	(void)state;
	require_kvm();
	char *args[] = { "balloon", "--mem", "256M", "--size", "64M", NULL };
	static const char *const keys[] = { "inflate_gibps", "deflate_gibps", "host_release_ms", NULL };
	cJSON *j = bench_json(args);
	expect_measured(j, keys, NULL);
	cJSON_Delete(j);
}

/* The TAP path needs root (a namespace, a bridge): as make test runs. */
static void bench_net_json(void **state)
{
	(void)state;
	require_kvm();
	char *args[] = { "net", "--count", "200", "--pings", "10", "--repeat", "1", NULL };
	static const char *const keys[] = {
		"zc_1472_mbps", "zc_1472_pps", "zc_64_pps", "zc_rtt_us", "zc_rtt_p99_us",
		"onecopy_1472_mbps", "onecopy_64_pps", "onecopy_rtt_us",
		"tap_1472_mbps", "tap_64_pps", "tap_rtt_us", "zc_rtt_poll_us", "zc_rtt_poll_p99_us", "tap_rtt_poll_us", NULL,
	};
	static const char *const absent[] = { "qemu_tap_1472_mbps", "qemu_tap_rtt_us", "qemu_tap_rtt_poll_us", NULL };
	cJSON *j = bench_json(args);
	expect_measured(j, keys, absent);
	/* Pinned like bench msg: each VM on a CPU of its own, said so. */
	const cJSON *aff = cJSON_GetObjectItem(j, "affinity");
	assert_true(cJSON_IsString(aff));
	assert_non_null(strstr(aff->valuestring, "sender on CPU"));
	assert_null(cJSON_GetObjectItem(j, "runs_not_pinned"));
	cJSON_Delete(j);
}

static bool is_png(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char magic[8] = { 0 };
	bool ok = f && fread(magic, 1, 8, f) == 8 && !memcmp(magic, "\x89PNG\r\n\x1a\n", 8);
	if (f)
		fclose(f);
	return ok;
}

/* make bench (scripts/bench.sh) on two small targets: a chart per
 * benchmark and the page that shows them with their figures; a target
 * that fails is shown as not measured and fails the script. */
static void make_bench_draws_charts(void **state)
{
	(void)state;
	require_kvm();
	char *dir = make_temp_dir();
	char *fbin = xasprintf("FERRY=%s", ferry_bin()), *out = xasprintf("BENCH_DIR=%s", dir);
	/* The kernel named: the ASan binary has no guest beside it. */
	char *balloon = xasprintf("BENCH_BALLOON=--mem 256M --size 64M --no-qemu --kernel %s", guest_image());
	char *boot = xasprintf("BENCH_BOOT=--count 2 --no-qemu --kernel %s", guest_image());
	char *argv[] = { "env", fbin, out, "BENCH_TARGETS=balloon boot", balloon, boot, "sh", "scripts/bench.sh", NULL };
	struct cmd_result r = run_cmd(argv, 300);
	if (r.status != 0)
		fail_msg("scripts/bench.sh: status %d\n%s%s", r.status, r.out, r.err);
	cmd_result_free(&r);
	const char *const names[] = { "balloon", "boot" };
	for (int i = 0; i < 2; i++) {
		char *png = xasprintf("%s/%s.png", dir, names[i]), *json = xasprintf("%s/%s.json", dir, names[i]);
		if (!is_png(png))
			fail_msg("%s is not a PNG image", png);
		cJSON *j = load_json(json);
		assert_non_null(j);
		cJSON_Delete(j);
		free(png);
		free(json);
	}
	char *index = xasprintf("%s/index.html", dir), *html = read_file(index);
	assert_non_null(html);
	expect_contains(html, "<img src=\"balloon.png\"");
	expect_contains(html, "<img src=\"boot.png\"");
	expect_contains(html, "<td>inflate_gibps</td>");
	expect_contains(html, "<td>ferry_boot_ms_median</td>");
	expect_contains(html, "CPU: ");
	free(html);

	/* A bench that fails: not measured, and the script says so. */
	char *argv2[] = { "env", fbin, out, "BENCH_TARGETS=boot", "BENCH_BOOT=--count 0", "sh", "scripts/bench.sh", NULL };
	r = run_cmd(argv2, 60);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "bench: failed: boot");
	cmd_result_free(&r);
	html = read_file(index);
	expect_contains(html, "not measured");
	expect_contains(html, "--count");
	free(html);
	free(index);
	free(fbin);
	free(out);
	free(balloon);
	free(boot);
	remove_tree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bench_msg_json),
		cmocka_unit_test(bench_boot_json),
		cmocka_unit_test(bench_balloon_json),
		cmocka_unit_test(bench_net_json),
		cmocka_unit_test(make_bench_draws_charts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
