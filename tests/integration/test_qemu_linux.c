/* The same Linux test guest as test_linux.c (make linux-guest) under QEMU,
 * the independent reference: microvm with ACPI and PCI Express (ECAM only,
 * no configuration ports) and q35 (SeaBIOS, QEMU's full DSDT), with the same
 * init and checks. QEMU's balloon is driven through QMP as ferry's is
 * through its control socket. QEMU reports the guest's status s as exit
 * code (s << 1) | 1. The test prints the times it saw, to compare with
 * ferry's. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define tmp test_dir
/* A hang guard, not a timing check (see test_linux.c). */
#define BOOT_DEADLINE_S 900
#define MIB (1024.0 * 1024.0)

/* microvm's PCI Express ECAM window (QEMU's hw/i386/microvm.c) and q35's
 * (SeaBIOS puts MMCONFIG at 0xb0000000). */
#define MICROVM_ECAM 0xe0000000ull
#define Q35_ECAM     0xb0000000ull

static void start(struct qemu *q, struct guest_watch *w, const char *machine, const char *cmdline)
{
	char *sock = xasprintf("%s/qmp.sock", tmp);
	q->console = xasprintf("%s/console.log", tmp);
	q->log = xasprintf("%s/qemu.log", tmp);
	char *serial = xasprintf("file:%s", q->console);
	char *qmparg = xasprintf("unix:%s,server=on,wait=off", sock);
	char *append = xasprintf("%s %s", LINUX_CMDLINE, cmdline);
	char *argv[] = {
		/* The host's CPUID, as ferry gives (KVM's supported set). With
		 * QEMU's default model Linux sets X86_BUG_FXSAVE_LEAK (no
		 * XSAVEERPTR) and runs fnclex, which this host cannot emulate;
		 * "host" alone fails here setting MSR_IA32_ARCH_CAPABILITIES. */
		"qemu-system-x86_64", "-M", (char *)machine, "-accel", "kvm", "-cpu", "host,-arch-capabilities",
		"-m", "128M", "-smp", "1",
		"-display", "none", "-no-reboot", "-net", "none", "-monitor", "none",
		"-serial", serial, "-qmp", qmparg,
		"-kernel", (char *)linux_kernel(), "-append", append,
		"-device", "isa-debug-exit,iobase=0x501",
		"-device", "virtio-rng-pci,disable-legacy=on",
		"-device", "virtio-balloon-pci,id=balloon0,disable-legacy=on,deflate-on-oom=on,free-page-reporting=on",
		NULL,
	};
	double t0 = now_s();
	qemu_start_qmp(q, argv, sock);
	watch_start(w, q->pid, q->console, t0);
	w->vmm_log = q->log;
	free(sock);
	free(serial);
	free(qmparg);
	free(append);
}

static void fail_with_console(struct qemu *q, struct guest_watch *w, const char *what)
{
	if (!w->exited)
		watch_exit(w, 0);
	q->pid = 0;
	qemu_stop(q);
	char *con = read_file(q->console), *log = read_file(q->log);
	size_t len = con ? strlen(con) : 0;
	fprintf(stderr, "QEMU said:\n%s\nconsole (end):\n%s\n", log ? log : "",
		con ? con + (len > 6000 ? len - 6000 : 0) : "(none)");
	fail_msg("%s (QEMU exit %d, -2 for a KVM internal error; QEMU's output and the console are above)", what,
		 w->status);
}

static double actual_mib(struct qemu *q)
{
	cJSON *root, *ret = qmp(q, "{\"execute\":\"query-balloon\"}", &root);
	cJSON *a = cJSON_GetObjectItem(ret, "actual");
	double v = cJSON_IsNumber(a) ? a->valuedouble / MIB : -1;
	cJSON_Delete(root);
	return v;
}

/* QEMU's target is the guest's memory size, not the balloon's. */
static void balloon_to(struct qemu *q, struct guest_watch *w, unsigned mib)
{
	char *cmd = xasprintf("{\"execute\":\"balloon\",\"arguments\":{\"value\":%llu}}",
			      (unsigned long long)mib << 20);
	qmp_do(q, cmd);
	free(cmd);
	for (double deadline = now_s() + 120; actual_mib(q) != mib; usleep(100000))
		if (now_s() > deadline)
			fail_with_console(q, w, "the guest did not reach the balloon target in 120 s");
}

static void expect_console(struct qemu *q, struct guest_watch *w, const char *const *lines)
{
	char *con = read_file(q->console);
	for (; *lines; lines++)
		if (!con || !strstr(con, *lines)) {
			char *msg = xasprintf("\"%s\" is not on the console", *lines);
			fail_with_console(q, w, msg);
		}
	free(con);
}

static void run(const char *machine, unsigned long long ecam, bool drive_balloon)
{
	require_qemu();
	struct qemu q = { 0 };
	struct guest_watch w;
	char *cl = xasprintf("ferry.expect=rng,balloon ferry.ecam=0x%llx ferry.exit=port%s", ecam,
			     drive_balloon ? " ferry.touch=16 ferry.balloon=24" : "");
	start(&q, &w, machine, cl);
	free(cl);
	if (drive_balloon) {
		if (!watch_for(&w, "virtio-balloon: waiting", BOOT_DEADLINE_S))
			fail_with_console(&q, &w, "the init did not reach the balloon check");
		balloon_to(&q, &w, 128 - 24);
		balloon_to(&q, &w, 128);
	}
	if (watch_exit(&w, BOOT_DEADLINE_S) != 1)
		fail_with_console(&q, &w, "QEMU did not exit with the guest's status 0 (exit code 1)");
	q.pid = 0;
	printf("linux boot under QEMU %s: first console byte %.2f s, user space %.2f s, whole run %.2f s\n", machine,
	       w.t_first, w.t_user, w.t_end);
	fflush(stdout);
	const char *lines[] = {
		"1af4:1044 driver=virtio-pci", "1af4:1045 driver=virtio-pci",
		"virtio-rng ok: rng_current=virtio_rng.0 read 4096 bytes", "ecam ok:", "all checks passed",
		"powering off (port) with status 0", drive_balloon ? "virtio-balloon ok: inflated" : "all checks passed",
		NULL,
	};
	expect_console(&q, &w, lines);
	qemu_stop(&q);
	free(q.console);
	free(q.log);
}

static void microvm(void **state)
{
	(void)state;
	run("microvm,acpi=on,pcie=on,rtc=on", MICROVM_ECAM, true);
}

static void q35(void **state)
{
	(void)state;
	run("q35", Q35_ECAM, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(microvm, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(q35, test_dir_setup, test_dir_teardown),
	};
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
