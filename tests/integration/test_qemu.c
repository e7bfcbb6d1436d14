/* The same ferry-guest image under QEMU, the independent reference: every
 * guest driver must also work against QEMU's devices. QEMU reports a guest
 * status s as exit code (s << 1) | 1, so 1 means success. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct cmd_result qemu(const char *machine, const char *smp, const char *append, bool rng)
{
	char *argv[40];
	int n = 0;
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-M";
	argv[n++] = (char *)machine;
	argv[n++] = "-accel";
	argv[n++] = "kvm";
	argv[n++] = "-m";
	argv[n++] = "128M";
	argv[n++] = "-smp";
	argv[n++] = (char *)smp;
	argv[n++] = "-nographic";
	argv[n++] = "-no-reboot";
	argv[n++] = "-net";
	argv[n++] = "none";
	argv[n++] = "-kernel";
	argv[n++] = (char *)guest_image();
	argv[n++] = "-append";
	argv[n++] = (char *)append;
	argv[n++] = "-device";
	argv[n++] = "isa-debug-exit,iobase=0x501";
	if (rng) {
		argv[n++] = "-device";
		argv[n++] = "virtio-rng-pci,disable-legacy=on";
	}
	argv[n] = NULL;
	return run_cmd(argv, 120);
}

static void expect(struct cmd_result *r, int status, const char *text)
{
	if (r->status != status || !strstr(r->out, text))
		fail_msg("expected exit %d and \"%s\", got exit %d:\n%s\n%s", status, text, r->status, r->out, r->err);
	cmd_result_free(r);
}

static void selftest_q35_virtio_rng(void **state)
{
	(void)state;
	require_qemu();
	struct cmd_result r = qemu("q35", "2", "app=selftest require=virtio-rng", true);
	expect(&r, 1, " 0 failed");
}

static void selftest_microvm(void **state)
{
	(void)state;
	require_qemu();
	struct cmd_result r = qemu("microvm", "2", "app=selftest", false);
	expect(&r, 1, " 0 failed");
}

static void hello_microvm(void **state)
{
	(void)state;
	require_qemu();
	struct cmd_result r = qemu("microvm", "1", "app=hello vm=q", false);
	expect(&r, 1, "hello from q");
}

static void missing_device_fails(void **state)
{
	(void)state;
	require_qemu();
	/* require=virtio-rng without the device: the virtio check fails, status 1. */
	struct cmd_result r = qemu("q35", "1", "app=selftest require=virtio-rng", false);
	expect(&r, 3, "virtio FAILED");
}

static void exception_report(void **state)
{
	(void)state;
	require_qemu();
	struct cmd_result r = qemu("microvm", "1", "app=crash mode=ud", false);
	expect(&r, 7, "RIP");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(selftest_q35_virtio_rng), cmocka_unit_test(selftest_microvm),
		cmocka_unit_test(hello_microvm), cmocka_unit_test(missing_device_fails),
		cmocka_unit_test(exception_report),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
