/* `ferry bench msg --json` as a smoke test: the smallest run (10 messages,
 * no repeats, no QEMU) prints one JSON object with every key, and every
 * figure is a measurement (a failed pair reports -1). What the figures are
 * is the bench's business, not this test's. */
#include "helpers.h"

#include <cjson/cJSON.h>
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
};

static void bench_msg_json(void **state)
{
	(void)state;
	require_kvm();
	char *argv[] = { (char *)ferry_bin(), "bench", "msg", "--count", "10", "--repeat", "1", "--no-qemu",
			 "--kernel", (char *)guest_image(), "--json", NULL };
	struct cmd_result r = run_cmd(argv, 600);
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
	/* --no-qemu: no QEMU column. */
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "qemu_transport"));
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "qemu_copy_4k_mbps"));
	cJSON_Delete(j);
	cmd_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bench_msg_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
