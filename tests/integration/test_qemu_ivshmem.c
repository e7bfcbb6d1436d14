/* ferry-guest's ivshmem transport between two QEMU VMs: the baseline that
 * `ferry bench msg` compares msgq with. Two q35 VMs share a fresh file in
 * /dev/shm through ivshmem-plain and run msgbulk / msgping with
 * transport=ivshmem. QEMU reports a guest status s as exit code
 * (s << 1) | 1, so 1 means success. Nothing here depends on timing beyond
 * generous limits. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_SIZE "64M"

static char shm_path[64];

/* A fresh, zeroed shared-memory file for each test (a ring left from an
 * earlier pair would confuse the guests: guest/include/ivshmem.h). */
static int setup(void **state)
{
	test_dir_setup(state);
	char *logs = xasprintf("%s/logs", test_dir);
	int made = mkdir(logs, 0700);
	free(logs);
	if (made != 0)
		return -1;
	snprintf(shm_path, sizeof(shm_path), "/dev/shm/ferry-test-ivshmem-XXXXXX");
	int fd = mkstemp(shm_path);
	if (fd < 0 || ftruncate(fd, 64 << 20) != 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	unlink(shm_path);
	return test_dir_teardown(state);
}

/* Starts a q35 VM with the ivshmem device; its console goes to
 * test_dir/logs/NAME.log. Returns the pid. */
static int qemu_start(const char *name, const char *cmdline)
{
	char *append = xasprintf("%s vm=%s transport=ivshmem", cmdline, name);
	char *serial = xasprintf("file:%s/logs/%s.log", test_dir, name);
	char *backend = xasprintf("memory-backend-file,id=shm,size=%s,share=on,mem-path=%s", SHM_SIZE, shm_path);
	char *argv[] = { "qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "128M", "-nodefaults",
			 "-no-user-config", "-display", "none", "-serial", serial, "-monitor", "none", "-no-reboot",
			 "-kernel", (char *)guest_image(), "-append", append, "-device", "isa-debug-exit,iobase=0x501",
			 "-object", backend, "-device", "ivshmem-plain,memdev=shm", NULL };
	int pid = spawn_background(argv);
	free(append);
	free(serial);
	free(backend);
	return pid;
}

/* Runs a pair to the end; fails unless both exit with status 0. */
static void run_pair(const char *tx, const char *rx, char **tx_out, char **rx_out)
{
	int rx_pid = qemu_start("rx", rx), tx_pid = qemu_start("tx", tx);
	int tx_st = wait_background(tx_pid, 120), rx_st = wait_background(rx_pid, 60);
	*tx_out = test_console_log("tx");
	*rx_out = test_console_log("rx");
	if (tx_st != 1 || rx_st != 1)
		fail_msg("expected exit 1 from both VMs, got tx %d, rx %d\n--- tx:\n%s\n--- rx:\n%s", tx_st, rx_st, *tx_out,
			 *rx_out);
}

/* Every byte of every message checked (check=full); the 2 MiB run wraps
 * the 32 MiB ring a dozen times. */
static void bulk_full_check(void **state)
{
	(void)state;
	require_qemu();
	char *tx, *rx;
	run_pair("app=msgbulk role=send sizes=64,4K,64K,2M count=200 check=full", "app=msgbulk role=recv", &tx, &rx);
	for (int r = 0; r < 4; r++) {
		char *line = xasprintf("received run %d: 200 of 200 messages verified, 0 corrupt, 0 duplicated: ok", r);
		if (!strstr(rx, line))
			fail_msg("receiver did not verify run %d:\n%s", r, rx);
		free(line);
	}
	expect_contains(rx, "ivshmem: 64 MiB of shared memory");
	if (strstr(rx, "FAILED") || strstr(tx, "FAILED"))
		fail_msg("a run failed:\n%s\n%s", tx, rx);
	const unsigned sizes[] = { 64, 4096, 65536, 2u << 20 };
	for (int r = 0; r < 4; r++) {
		char *result = xasprintf("{\"size\": %u, \"count\": 200, \"transport\": \"ivshmem\", \"mode\": \"copy\", "
					 "\"post\": \"none\", \"check\": \"full\"", sizes[r]);
		expect_contains(tx, result);
		free(result);
	}
	free(tx);
	free(rx);
}

/* The reply comes back over the second ring. */
static void ping_pong(void **state)
{
	(void)state;
	require_qemu();
	char *tx, *rx;
	run_pair("app=msgping role=ping count=50 size=4096", "app=msgping role=pong", &tx, &rx);
	expect_contains(tx, "msgping: result {\"size\": 4096, \"count\": 50, \"transport\": \"ivshmem\"");
	free(tx);
	free(rx);
}

/* A receiver whose peer never comes up gives up with a reason, status 1. */
static void lone_receiver_fails(void **state)
{
	(void)state;
	require_qemu();
	int pid = qemu_start("rx", "app=msgbulk role=recv timeout_ms=1000");
	int st = wait_background(pid, 60);
	char *rx = test_console_log("rx");
	if (st != 3 || !strstr(rx, "the peer did not set up its ring"))
		fail_msg("expected exit 3 and a reason, got %d:\n%s", st, rx);
	free(rx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(bulk_full_check, setup, teardown),
		cmocka_unit_test_setup_teardown(ping_pong, setup, teardown),
		cmocka_unit_test_setup_teardown(lone_receiver_fails, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
