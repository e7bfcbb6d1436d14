/* ferry run end to end: VMs boot ferry-guest, power off with a status, and
 * the summary, console logs and exit code say what happened - including
 * when the guest, the kernel image, the config or the host is at fault. */
#include "helpers.h"

#include <limits.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/sandbox.h"

#define tmp test_dir

static struct cmd_result ferry_run(const char *const *args, double timeout)
{
	return ferry_run_in(tmp, args, timeout);
}

static cJSON *summary_vm(const char *name)
{
	return test_summary_vm(name);
}

static double num(cJSON *obj, const char *path)
{
	return json_num(obj, path);
}

static const char *str(cJSON *obj, const char *key)
{
	cJSON *v = cJSON_GetObjectItem(obj, key);
	if (!cJSON_IsString(v))
		fail_msg("summary lacks string %s", key);
	return v->valuestring;
}

static char *console_log(const char *vm)
{
	return test_console_log(vm);
}

static void hello_two_vms(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "examples/hello.json", NULL };
	struct cmd_result r = ferry_run(args, 60);
	if (r.status != 0)
		fail_msg("ferry exited %d:\n%s", r.status, r.err);
	const char *names[] = { "alpha", "beta" };
	for (int i = 0; i < 2; i++) {
		cJSON *vm = summary_vm(names[i]);
		assert_int_equal(num(vm, "exit_code"), 0);
		assert_string_equal(str(vm, "exit_reason"), "poweroff");
		assert_true(num(vm, "boot_ms") > 0);
		assert_true(num(vm, "counters.serial.bytes") > 0);
		assert_true(num(vm, "counters.debug-exit.exits") == 1);
		char *log = console_log(names[i]);
		char *want = xasprintf("hello from %s", names[i]);
		expect_contains(log, want);
		free(want);
		free(log);
	}
	cmd_result_free(&r);
}

/* A guest that prints without end cannot fill the disk: the log stops at
 * console_log_max_kib, says so, and the rest is counted. */
static void console_log_is_capped(void **state)
{
	(void)state;
	require_kvm();
	char kernel[PATH_MAX];
	if (!realpath(guest_image(), kernel))
		fail_msg("no guest image");
	char *cfg = xasprintf("%s/capped.json", tmp);
	char *json = xasprintf("{\"vms\": [{\"name\": \"chatty\", \"memory_mib\": 64, \"kernel\": \"%s\","
			       " \"cmdline\": \"app=chatter lines=200\", \"console_log_max_kib\": 1}]}", kernel);
	write_file(cfg, json);
	const char *args[] = { cfg, NULL };
	struct cmd_result r = ferry_run(args, 60);
	if (r.status != 0)
		fail_msg("ferry exited %d:\n%s", r.status, r.err);
	expect_contains(r.err, "console output reached 1 KiB");
	cJSON *vm = summary_vm("chatty");
	assert_true(num(vm, "counters.serial.dropped_bytes") > 0);
	assert_true(num(vm, "counters.serial.logged_bytes") <= 1024);
	char *log = console_log("chatty");
	assert_true(strlen(log) <= 1024 + 64);
	expect_contains(log, "console output past 1 KiB is dropped");
	free(log);
	free(json);
	free(cfg);
	cmd_result_free(&r);
}

static void selftest_with_virtio_rng(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "--kernel", guest_image(), "--mem", "128M", "--cpus", "2", "--name", "st",
			       "--cmdline", "app=selftest require=virtio-rng", "--device", "virtio-rng", NULL };
	struct cmd_result r = ferry_run(args, 60);
	char *log = console_log("st");
	if (r.status != 0)
		fail_msg("selftest failed (ferry exit %d):\n%s\n%s", r.status, log, r.err);
	expect_contains(log, " 0 failed");
	cJSON *vm = summary_vm("st");
	assert_true(num(vm, "counters.virtio-rng.bytes") >= 8192);
	assert_true(num(vm, "counters.virtio-rng.interrupts") >= 1);
	assert_true(num(vm, "counters.virtio-rng.notifications") >= 1);
	assert_int_equal(num(vm, "counters.virtio-rng.rejected"), 0);
	free(log);
	cmd_result_free(&r);
}

static void console_lines_prefixed(void **state)
{
	(void)state;
	require_kvm();
	const char *args[] = { "--kernel", guest_image(), "--cmdline", "app=hello", "--name", "pfx", "--console", NULL };
	struct cmd_result r = ferry_run(args, 60);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "[pfx] hello from pfx");
	cmd_result_free(&r);
}

static void guest_status_is_exit_code(void **state)
{
	(void)state;
	require_kvm();
	/* An unknown app makes ferry-guest power off with status 2. */
	const char *args[] = { "--kernel", guest_image(), "--cmdline", "app=no-such-app", "--name", "bad", NULL };
	struct cmd_result r = ferry_run(args, 60);
	assert_int_equal(r.status, 1);
	cJSON *vm = summary_vm("bad");
	assert_int_equal(num(vm, "exit_code"), 2);
	assert_string_equal(str(vm, "exit_reason"), "poweroff");
	cmd_result_free(&r);
}

static void timeout_stops_only_the_hung_vm(void **state)
{
	(void)state;
	require_kvm();
	char *cfg = xasprintf("%s/t.json", tmp);
	char *text = xasprintf("{\"vms\": ["
			       "{\"name\": \"hung\", \"memory_mib\": 64, \"kernel\": \"%s/%s\", \"cmdline\": \"app=idle\"},"
			       "{\"name\": \"fine\", \"memory_mib\": 64, \"kernel\": \"%s/%s\", \"cmdline\": \"app=hello\"}]}",
			       getenv("PWD"), guest_image(), getenv("PWD"), guest_image());
	write_file(cfg, text);
	const char *args[] = { cfg, "--timeout", "2", NULL };
	struct cmd_result r = ferry_run(args, 60);
	assert_int_equal(r.status, 1);
	cJSON *hung = summary_vm("hung");
	assert_string_equal(str(hung, "exit_reason"), "timeout");
	assert_true(num(hung, "exit_code") < 0);
	cJSON *fine = summary_vm("fine");
	assert_int_equal(num(fine, "exit_code"), 0);
	expect_contains(r.err, "hung");
	free(cfg);
	free(text);
	cmd_result_free(&r);
}

static void guest_crashes_are_reported(void **state)
{
	(void)state;
	require_kvm();
	/* An exception the guest does not expect: its handler prints the
	 * registers and powers off with status 3. */
	const char *panic[] = { "--kernel", guest_image(), "--cmdline", "app=crash mode=ud", "--name", "c1", NULL };
	struct cmd_result r = ferry_run(panic, 60);
	assert_int_equal(r.status, 1);
	assert_int_equal(num(summary_vm("c1"), "exit_code"), 3);
	char *log = console_log("c1");
	expect_contains(log, "RIP");
	free(log);
	cmd_result_free(&r);

	/* No IDT at all: the CPU triple-faults and ferry says where. */
	const char *triple[] = { "--kernel", guest_image(), "--cmdline", "app=crash mode=triple", "--name", "c2", NULL };
	r = ferry_run(triple, 60);
	assert_int_equal(r.status, 1);
	cJSON *vm = summary_vm("c2");
	assert_string_equal(str(vm, "exit_reason"), "triple-fault");
	expect_contains(str(vm, "detail"), "RIP 0x");
	expect_contains(r.err, "triple fault");
	cmd_result_free(&r);
}

static void bad_kernel_images(void **state)
{
	(void)state;
	require_kvm();
	char *junk = xasprintf("%s/junk.elf", tmp);
	write_file(junk, "this is not an ELF file\n");
	const char *a1[] = { "--kernel", junk, NULL };
	struct cmd_result r = ferry_run(a1, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "not an ELF file");
	assert_string_equal(str(summary_vm("vm0"), "exit_reason"), "create-failed");
	cmd_result_free(&r);

	/* A real ELF program, but not a PVH kernel. */
	const char *a2[] = { "--kernel", ferry_bin(), NULL };
	r = ferry_run(a2, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "no PVH entry note");
	cmd_result_free(&r);
	free(junk);
}

static void memory_the_host_cannot_give(void **state)
{
	(void)state;
	require_kvm();
	/* Far more than any machine this runs on: refused with the numbers, and
	 * the run reports it like any VM that could not be built. */
	const char *args[] = { "--kernel", guest_image(), "--mem", "900G", "--name", "huge", NULL };
	struct cmd_result r = ferry_run(args, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "921600 MiB of guest RAM is more than the host's");
	assert_string_equal(str(summary_vm("huge"), "exit_reason"), "create-failed");
	cmd_result_free(&r);
}

static void bad_configs(void **state)
{
	(void)state;
	const char *missing[] = { "/no/such/config.json", NULL };
	struct cmd_result r = ferry_run(missing, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "/no/such/config.json: cannot open");
	cmd_result_free(&r);

	char *cfg = xasprintf("%s/bad.json", tmp);
	write_file(cfg, "{\"vms\": [{\"name\": \"x\", \"memory_mib\": 64, \"vcpu\": 2}]}");
	const char *unknown[] = { cfg, NULL };
	r = ferry_run(unknown, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "vms[0]: unknown key \"vcpu\"");
	cmd_result_free(&r);

	write_file(cfg, "{\"vms\": [\n{\"name\": \"x\"\n");
	r = ferry_run(unknown, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "invalid JSON");
	cmd_result_free(&r);
	free(cfg);
}

static void bad_cli(void **state)
{
	(void)state;
	char *bad_mem[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--mem", "lots", NULL };
	struct cmd_result r = run_cmd(bad_mem, 10);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "--mem: expected a size");
	cmd_result_free(&r);

	char *nothing[] = { (char *)ferry_bin(), "run", NULL };
	r = run_cmd(nothing, 10);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "nothing to run");
	cmd_result_free(&r);

	char *unknown_cmd[] = { (char *)ferry_bin(), "fly", NULL };
	r = run_cmd(unknown_cmd, 10);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "unknown command 'fly'");
	cmd_result_free(&r);

	char *help[] = { (char *)ferry_bin(), "run", "--help", NULL };
	r = run_cmd(help, 10);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "--summary FILE");
	expect_contains(r.out, "--timeout SECONDS");
	cmd_result_free(&r);
}

static void missing_kvm(void **state)
{
	(void)state;
	setenv("FERRY_KVM_DEV", "/nonexistent/kvm", 1);
	const char *args[] = { "--kernel", guest_image(), NULL };
	struct cmd_result r = ferry_run(args, 30);
	unsetenv("FERRY_KVM_DEV");
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "/nonexistent/kvm does not exist");
	cmd_result_free(&r);
}

static struct cmd_result ctl(const char *sock, const char *a, const char *b, const char *c)
{
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", (char *)sock, "--json", (char *)a, (char *)b, (char *)c,
			 NULL };
	return run_cmd(argv, 10);
}

static void control_socket(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp), *summary = xasprintf("%s/summary.json", tmp);
	char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--mem", "256M", "--device",
			 "virtio-balloon", "--cmdline", "app=idle", "--control", sock, "--summary", summary,
			 "--log-dir", tmp, NULL };
	int pid = spawn_background(argv);
	struct cmd_result r = { 0 };
	for (int i = 0; i < 100; i++) { /* until the socket answers and the driver is up */
		cmd_result_free(&r);
		r = ctl(sock, "status", NULL, NULL);
		if (r.status == 0 && strstr(r.out, "\"driver_ok\":\ttrue"))
			break;
		usleep(50000);
	}
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);

	r = ctl(sock, "balloon", "vm0", "64M");
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	bool reached = false;
	for (int i = 0; i < 100 && !reached; i++) {
		r = ctl(sock, "status", NULL, NULL);
		reached = strstr(r.out, "\"actual_pages\":\t16384") != NULL;
		cmd_result_free(&r);
		usleep(50000);
	}
	assert_true(reached);

	r = ctl(sock, "balloon", "vm0", "1G"); /* more than the VM has */
	assert_int_equal(r.status, 1);
	expect_contains(r.out, "target_mib");
	cmd_result_free(&r);
	r = ctl(sock, "cpu-reserve", "vm0", "1"); /* no such device */
	assert_int_equal(r.status, 1);
	expect_contains(r.out, "no cpu-reserve device");
	cmd_result_free(&r);
	r = ctl(sock, "stop", "vm0", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);

	assert_int_equal(wait_background(pid, 30), 1);
	assert_string_equal(str(summary_vm("vm0"), "exit_reason"), "interrupted");
	assert_int_equal(num(summary_vm("vm0"), "counters.balloon.held_pages"), 16384);
	free(sock);
	free(summary);
}

/* The seccomp mode of ferry's thread named `comm` (2: filtered), or -1. */
static int seccomp_mode_of(int pid, const char *comm)
{
	for (int tries = 0; tries < 100; tries++) {
		char *dir = xasprintf("/proc/%d/task", pid);
		char *argv[] = { "sh", "-c", NULL, NULL };
		argv[2] = xasprintf("for t in %s/*; do [ \"$(cat $t/comm)\" = \"%s\" ] && grep Seccomp: $t/status; done", dir, comm);
		struct cmd_result r = run_cmd(argv, 5);
		int mode = -1;
		const char *p = strstr(r.out, "Seccomp:");
		if (p)
			mode = atoi(p + 8);
		cmd_result_free(&r);
		free(argv[2]);
		free(dir);
		if (mode >= 0)
			return mode;
		usleep(20000);
	}
	return -1;
}

static void threads_are_sandboxed(void **state)
{
	(void)state;
	require_kvm();
	for (int off = 0; off < 2; off++) {
		char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline", "app=idle ms=1500",
				 "--name", "sb", "--log-dir", tmp, off ? "--no-seccomp" : NULL, NULL };
		int pid = spawn_background(argv);
		int vcpu = seccomp_mode_of(pid, "vcpu0/sb"), events = seccomp_mode_of(pid, "ferry-events");
		int control = seccomp_mode_of(pid, "ferry-control");
		/* The main thread loads its filter once the VM runs. */
		int main_thread = -1;
		for (int tries = 0; tries < 50 && main_thread != (off ? 0 : 2); tries++) {
			main_thread = seccomp_mode_of(pid, "ferry");
			usleep(20000);
		}
		assert_int_equal(wait_background(pid, 30), 0);
		/* Sanitizer builds leave threads unconfined (their runtimes need calls of their own). */
		if (getenv("FERRY_BIN") && strstr(getenv("FERRY_BIN"), "asan"))
			continue;
		assert_int_equal(vcpu, off ? 0 : 2);
		assert_int_equal(events, off ? 0 : 2);
		assert_int_equal(control, off ? 0 : 2);
		assert_int_equal(main_thread, off ? 0 : 2);
	}
}

/* With a control socket the main thread loads the builder's list (it builds
 * added VMs): it runs filtered, and a VM added through the socket, with
 * two vCPUs and devices, is built under that filter and runs to its end
 * (a forbidden call would stop ferry with status 70). */
static void added_vm_runs_sandboxed(void **state)
{
	(void)state;
	require_kvm();
	char kernel[PATH_MAX];
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	char *sock = xasprintf("%s/ctl.sock", tmp), *summary = xasprintf("%s/summary.json", tmp);
	char *frag = xasprintf("%s/add.json", tmp);
	char *text = xasprintf("{ \"name\": \"late\", \"memory_mib\": 64, \"vcpus\": 2, \"kernel\": \"%s\","
			       " \"cmdline\": \"app=selftest require=virtio-rng\","
			       " \"devices\": [ { \"type\": \"virtio-rng\" }, { \"type\": \"virtio-balloon\" } ] }", kernel);
	write_file(frag, text);
	char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline", "app=idle ms=1000000",
			 "--name", "vm0", "--control", sock, "--summary", summary, "--log-dir", tmp, NULL };
	int pid = spawn_background(argv);
	int main_thread = -1;
	for (int tries = 0; tries < 100 && main_thread != 2; tries++) {
		main_thread = seccomp_mode_of(pid, "ferry");
		usleep(20000);
	}
	struct cmd_result r = { 0 };
	for (int i = 0; i < 200; i++) { /* until the socket answers */
		cmd_result_free(&r);
		r = ctl(sock, "list", NULL, NULL);
		if (r.status == 0)
			break;
		usleep(50000);
	}
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	r = ctl(sock, "add", frag, NULL);
	if (r.status != 0)
		fail_msg("ferry ctl add: status %d: %s%s", r.status, r.out, r.err);
	cmd_result_free(&r);
	bool done = false;
	for (int i = 0; i < 600 && !done; i++) { /* until late powers off */
		r = ctl(sock, "status", "late", NULL);
		done = r.status == 0 && strstr(r.out, "\"poweroff\"");
		cmd_result_free(&r);
		if (!done)
			usleep(50000);
	}
	r = ctl(sock, "stop", "vm0", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	int status = wait_background(pid, 60);
	if (status == SANDBOX_EXIT_STATUS) {
		char *out = read_file(xasprintf("%s/ferry.out", tmp));
		fail_msg("ferry was stopped by its seccomp filter:\n%s", out ? out : "");
	}
	assert_int_equal(status, 1); /* vm0 was interrupted */
	assert_string_equal(str(summary_vm("late"), "exit_reason"), "poweroff");
	assert_int_equal(num(summary_vm("late"), "exit_code"), 0);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(summary_vm("late"), "added")));
	if (!(getenv("FERRY_BIN") && strstr(getenv("FERRY_BIN"), "asan")))
		assert_int_equal(main_thread, 2);
	free(text);
	free(frag);
	free(sock);
	free(summary);
}

/* make demo (scripts/demo.sh): eleven VMs, one added and removed through
 * the control socket, and an account whose figures come from the run. */
static void demo_tells_the_story(void **state)
{
	(void)state;
	require_kvm();
	char *fbin = xasprintf("FERRY=%s", ferry_bin()), *dir = xasprintf("DEMO_DIR=%s/demo", tmp);
	char *argv[] = { "env", fbin, dir, "sh", "scripts/demo.sh", NULL };
	struct cmd_result r = run_cmd(argv, 180);
	if (r.status != 0)
		fail_msg("make demo's script: status %d\n%s%s", r.status, r.out, r.err);
	expect_contains(r.out, "11 VMs started");
	expect_contains(r.out, "added: late");
	expect_contains(r.out, "late removed");
	expect_contains(r.out, "11 of 11 VMs powered off with status 0");
	expect_contains(r.out, "4 of 4 runs verified intact");
	expect_contains(r.out, "4000 messages of 64 and 512 bytes, 4000 of them copied (1152000 bytes)");
	/* 2 MiB messages go by remap, unless the host had no huge pages. */
	if (!strstr(r.out, "gave no 2 MiB pages"))
		expect_contains(r.out, "400 messages of 1 and 2 MiB on 2 MiB pages, 400 of them remapped, 0 bytes copied");
	expect_contains(r.out, "db: received=20000 lost=0 duplicated=0");
	expect_contains(r.out, "cross-talk detected ");
	if (strstr(r.out, "cross-talk detected 0 time"))
		fail_msg("no cross-talk detected between web and db:\n%s", r.out);
	if (strstr(r.out, ": 0 on the zero-copy path"))
		fail_msg("no frame took the zero-copy path:\n%s", r.out);
	expect_contains(r.out, "Where to look next:");
	cmd_result_free(&r);
	free(fbin);
	free(dir);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_dir_setup, test_dir_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(hello_two_vms),     T(selftest_with_virtio_rng), T(console_lines_prefixed),
		T(guest_status_is_exit_code), T(timeout_stops_only_the_hung_vm), T(guest_crashes_are_reported),
		T(bad_kernel_images), T(memory_the_host_cannot_give), T(bad_configs), T(bad_cli), T(missing_kvm),
		T(control_socket), T(threads_are_sandboxed), T(added_vm_runs_sandboxed), T(console_log_is_capped),
		T(demo_tells_the_story),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
