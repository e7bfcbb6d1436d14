/* A Linux 6.1 kernel with ACPI (make linux-guest, linux/README.md) under
 * ferry, with Linux's own drivers against ferry's devices: it must find the
 * PCI bus through ACPI, bind virtio-rng and virtio-balloon, read entropy,
 * read configuration space through ECAM, inflate and deflate the balloon at
 * the host's request (ferry's counters and the host's resident memory
 * follow), report free pages, and power off with status 0 through the
 * debug-exit port and through ACPI. Anything else (an emulation failure, a
 * missing device) fails with ferry's report (RIP and instruction bytes) and
 * the console. Deadlines are generous limits for this host's interpreted
 * ring 0; the test prints the times it saw. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/layout.h"

#define tmp test_dir
/* A hang guard, not a timing check: an interpreted kernel on a 2-CPU host
 * loaded by other VMs has taken over 300 s to reach user space. */
#define BOOT_DEADLINE_S 900

struct ferry_vm {
	struct guest_watch w;
	char *console, *out, *sock, *summary, *logs;
};

/* Starts `ferry run` for one VM named vm0, in the background. */
static void start(struct ferry_vm *f, const char *cmdline, const char *const *devices)
{
	f->logs = xasprintf("%s/logs", tmp);
	f->console = xasprintf("%s/vm0.log", f->logs);
	f->out = xasprintf("%s/ferry.out", tmp);
	f->sock = xasprintf("%s/ctl.sock", tmp);
	f->summary = xasprintf("%s/summary.json", tmp);
	char *cl = xasprintf("%s %s", LINUX_CMDLINE, cmdline);
	char *argv[32];
	int n = 0;
	argv[n++] = (char *)ferry_bin();
	argv[n++] = "run";
	argv[n++] = "--kernel";
	argv[n++] = (char *)linux_kernel();
	argv[n++] = "--mem";
	argv[n++] = "128M";
	for (; *devices; devices++) {
		argv[n++] = "--device";
		argv[n++] = (char *)*devices;
	}
	argv[n++] = "--cmdline";
	argv[n++] = cl;
	argv[n++] = "--control";
	argv[n++] = f->sock;
	argv[n++] = "--summary";
	argv[n++] = f->summary;
	argv[n++] = "--log-dir";
	argv[n++] = f->logs;
	argv[n++] = "--timeout";
	argv[n++] = "1200"; /* a hang guard, as BOOT_DEADLINE_S */
	argv[n] = NULL;
	double t0 = now_s();
	int pid = spawn_background_log(argv, f->out);
	if (pid < 0)
		fail_msg("cannot start ferry");
	watch_start(&f->w, pid, f->console, t0);
	free(cl);
}

/* Fails the test with what ferry said (an emulation failure's RIP and
 * bytes) and the end of the console. */
static void fail_with_logs(struct ferry_vm *f, const char *what)
{
	if (!f->w.exited)
		watch_exit(&f->w, 0);
	char *out = read_file(f->out), *con = read_file(f->console);
	size_t len = con ? strlen(con) : 0;
	const char *tail = con ? con + (len > 6000 ? len - 6000 : 0) : "(no console)";
	fprintf(stderr, "ferry said:\n%s\nconsole (end):\n%s\n", out ? out : "", tail);
	fail_msg("%s (ferry exit %d; its output and the console are above)", what, f->w.status);
}

static cJSON *status(struct ferry_vm *f, cJSON **root)
{
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", f->sock, "--json", "status", NULL };
	struct cmd_result r = run_cmd(argv, 10);
	*root = r.status == 0 ? cJSON_Parse(r.out) : NULL;
	cmd_result_free(&r);
	cJSON *vms = *root ? cJSON_GetObjectItem(*root, "vms") : NULL;
	cJSON *vm = vms ? cJSON_GetArrayItem(vms, 0) : NULL;
	if (!vm)
		fail_with_logs(f, "ferry ctl status gave no VM");
	return vm;
}

static double balloon_pages(struct ferry_vm *f, const char *field)
{
	cJSON *root, *vm = status(f, &root);
	double v = json_num(vm, field);
	cJSON_Delete(root);
	return v;
}

static double resident_mib(struct ferry_vm *f)
{
	return balloon_pages(f, "resident_mib");
}

static void balloon_to(struct ferry_vm *f, const char *target, double want_pages)
{
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", f->sock, "balloon", "vm0", (char *)target, NULL };
	struct cmd_result r = run_cmd(argv, 10);
	if (r.status != 0)
		fail_msg("ferry ctl balloon vm0 %s: %s%s", target, r.out, r.err);
	cmd_result_free(&r);
	double actual = -1;
	for (double deadline = now_s() + 120; (actual = balloon_pages(f, "balloon.actual_pages")) != want_pages;
	     usleep(100000)) {
		if (now_s() > deadline) {
			char *msg = xasprintf("balloon target %s: the guest holds %.0f pages, not %.0f, after 120 s",
					      target, actual, want_pages);
			fail_with_logs(f, msg);
		}
	}
}

static void expect_console(struct ferry_vm *f, const char *const *lines)
{
	char *con = read_file(f->console);
	for (; *lines; lines++)
		if (!con || !strstr(con, *lines)) {
			char *msg = xasprintf("\"%s\" is not on the console", *lines);
			fail_with_logs(f, msg);
		}
	free(con);
}

static void report_times(struct ferry_vm *f, const char *what)
{
	printf("linux boot under ferry (%s): first console byte %.2f s, user space %.2f s, whole run %.2f s\n", what,
	       f->w.t_first, f->w.t_user, f->w.t_end);
	fflush(stdout);
}

static void free_vm(struct ferry_vm *f)
{
	free(f->console);
	free(f->out);
	free(f->sock);
	free(f->summary);
	free(f->logs);
}

/* The whole tour: ACPI finds the bus, both drivers bind, entropy, ECAM,
 * 24 MiB through the balloon and back, free page reporting, power-off
 * through the debug-exit port. Small amounts: each page the guest touches
 * or moves through the balloon costs milliseconds of interpreted ring 0. */
static void devices_balloon_port_exit(void **state)
{
	(void)state;
	require_kvm();
	struct ferry_vm f;
	const char *devices[] = { "virtio-rng", "virtio-balloon", NULL };
	char *cl = xasprintf("ferry.expect=rng,balloon ferry.touch=16 ferry.balloon=24 ferry.reporting=4 "
			     "ferry.ecam=0x%llx ferry.exit=port", (unsigned long long)FERRY_PCI_ECAM_GPA);
	start(&f, cl, devices);
	free(cl);
	if (!watch_for(&f.w, "virtio-balloon: waiting", BOOT_DEADLINE_S))
		fail_with_logs(&f, "the init did not reach the balloon check");

	/* The init touched 16 MiB and freed it: the host holds those pages
	 * until the balloon takes them or free page reporting returns them.
	 * How much of it the balloon gets back is Linux's allocator's choice
	 * and a race with reporting (which may have returned it all before the
	 * balloon starts, on a loaded host), so what is checked is that taking
	 * 24 MiB costs the host nothing (ballooned pages are punched, not
	 * kept) and, below, that ferry released all 24 MiB. ferry-guest's
	 * balloon tests check that the host's memory follows, byte for byte. */
	double before = resident_mib(&f);
	balloon_to(&f, "24M", 24 * 256);
	double inflated = resident_mib(&f);
	balloon_to(&f, "0", 0);
	printf("resident memory: %.1f MiB before, %.1f MiB with 24 MiB in the balloon\n", before, inflated);
	if (inflated > before + 2)
		fail_with_logs(&f, "the host's resident memory grew while the guest gave it 24 MiB");

	if (watch_exit(&f.w, 120) != 0)
		fail_with_logs(&f, "ferry did not exit with status 0");
	report_times(&f, "rng, balloon, port exit");
	const char *lines[] = {
		"ACPI: PCI Root Bridge [PCI0] (domain 0000 [bus 00])",
		"PCI: MMCONFIG for domain 0000 [bus 00-00] at [mem 0xfc000000-0xfc0fffff]",
		"ACPI: PM: (supports S0 S5)",
		"ttyS0 at I/O 0x3f8",
		"1af4:1044 driver=virtio-pci",
		"1af4:1045 driver=virtio-pci",
		"linux-init: [",
		"virtio-rng ok: rng_current=virtio_rng.0 read 4096 bytes",
		"virtio-balloon ok: inflated",
		"ecam ok: 3 functions match sysfs, empty slots read all ones; extended space of 00:00.0 reads "
		"00000000 at 0x100, 00000000 at 0xffc",
		"all checks passed",
		"powering off (port) with status 0",
		NULL,
	};
	expect_console(&f, lines);

	cJSON *vm = summary_find_vm(f.summary, "vm0");
	cJSON *reason = cJSON_GetObjectItem(vm, "exit_reason");
	if (!cJSON_IsString(reason) || strcmp(reason->valuestring, "poweroff") || json_num(vm, "exit_code") != 0)
		fail_with_logs(&f, "the summary does not say poweroff with status 0");
	if (json_num(vm, "counters.balloon.inflated") < 24 * 256 || json_num(vm, "counters.balloon.deflated") < 24 * 256 ||
	    json_num(vm, "counters.balloon.rejected") != 0 || json_num(vm, "counters.balloon.touched_after_inflate") != 0)
		fail_msg("balloon counters: inflated %.0f, deflated %.0f, rejected %.0f, touched after inflate %.0f",
			 json_num(vm, "counters.balloon.inflated"), json_num(vm, "counters.balloon.deflated"),
			 json_num(vm, "counters.balloon.rejected"),
			 json_num(vm, "counters.balloon.touched_after_inflate"));
	/* host_freed_bytes counts both the balloon's and reporting's releases. */
	double reported = json_num(vm, "counters.balloon.reported_bytes");
	if (json_num(vm, "counters.balloon.host_freed_bytes") - reported < 24 << 20 || reported <= 0)
		fail_msg("ferry released %.0f bytes in all, %.0f of them for free page reporting (want 24 MiB for "
			 "the balloon and some reported)", json_num(vm, "counters.balloon.host_freed_bytes"), reported);
	if (json_num(vm, "counters.virtio-rng.bytes") < 4096)
		fail_msg("virtio-rng moved %.0f bytes", json_num(vm, "counters.virtio-rng.bytes"));
	if (json_num(vm, "counters.pci.rejected") != 0 || json_num(vm, "counters.guest_memory_rejected") != 0)
		fail_msg("ferry refused guest requests: pci %.0f, guest memory %.0f", json_num(vm, "counters.pci.rejected"),
			 json_num(vm, "counters.guest_memory_rejected"));
	printf("free page reporting: %.1f MiB reported\n", json_num(vm, "counters.balloon.reported_bytes") / (1 << 20));
	free_vm(&f);
}

/* The kernel's own power-off: ACPI S5 through the FADT's sleep control
 * register, which ferry turns into a power-off with status 0. */
static void acpi_poweroff(void **state)
{
	(void)state;
	require_kvm();
	struct ferry_vm f;
	const char *devices[] = { NULL };
	start(&f, "ferry.exit=acpi", devices);
	if (watch_exit(&f.w, BOOT_DEADLINE_S) != 0)
		fail_with_logs(&f, "ferry did not exit with status 0");
	report_times(&f, "no devices, ACPI power-off");
	const char *lines[] = { "all checks passed", "powering off (acpi) with status 0", "reboot: Power down", NULL };
	expect_console(&f, lines);
	cJSON *vm = summary_find_vm(f.summary, "vm0");
	if (json_num(vm, "exit_code") != 0 || json_num(vm, "counters.acpi-pm.exits") < 1)
		fail_msg("exit code %.0f, %.0f accesses to the sleep registers", json_num(vm, "exit_code"),
			 json_num(vm, "counters.acpi-pm.exits"));
	free_vm(&f);
}

/* The init finds no balloon although the command line expects one: a
 * failed check is status 1, and the console says what was missing. */
static void missing_device_fails(void **state)
{
	(void)state;
	require_kvm();
	struct ferry_vm f;
	const char *devices[] = { "virtio-rng", NULL };
	start(&f, "ferry.expect=rng,balloon", devices);
	if (watch_exit(&f.w, BOOT_DEADLINE_S) != 1)
		fail_with_logs(&f, "ferry did not exit with status 1");
	const char *lines[] = { "FAIL virtio-balloon: no virtio device of type 5", "powering off (port) with status 1",
				NULL };
	expect_console(&f, lines);
	free_vm(&f);
}

/* ---- ferry's own devices from Linux (linux/modules, linux/tools) -------- */

/* `ferry run CONFIG` in the background with a control socket, watching the
 * console of VM `watch`. */
static void start_config(struct ferry_vm *f, const char *json, const char *watch)
{
	char *cfg = xasprintf("%s/config.json", tmp);
	write_file(cfg, json);
	f->logs = xasprintf("%s/logs", tmp);
	f->console = xasprintf("%s/%s.log", f->logs, watch);
	f->out = xasprintf("%s/ferry.out", tmp);
	f->sock = xasprintf("%s/ctl.sock", tmp);
	f->summary = xasprintf("%s/summary.json", tmp);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--control", f->sock, "--summary", f->summary,
			 "--log-dir", f->logs, "--timeout", "1200", NULL };
	double t0 = now_s();
	int pid = spawn_background_log(argv, f->out);
	if (pid < 0)
		fail_msg("cannot start ferry");
	watch_start(&f->w, pid, f->console, t0);
	free(cfg);
}

static char *console_of(const char *name)
{
	char *path = xasprintf("%s/logs/%s.log", tmp, name), *text = read_file(path);
	free(path);
	return text ? text : xasprintf("(no console log for %s)", name);
}

static void expect_lines(struct ferry_vm *f, const char *vm, const char *const *lines)
{
	char *con = console_of(vm);
	for (; *lines; lines++)
		if (!strstr(con, *lines)) {
			fprintf(stderr, "%s's console:\n%s\n", vm, con);
			char *msg = xasprintf("\"%s\" is not on %s's console", *lines, vm);
			fail_with_logs(f, msg);
		}
	free(con);
}

/* Two Linux VMs and three ferry-guest VMs pass messages through msgq, Linux
 * side through ferry_virtio_pci + ferry_msgq and ferry-msg:
 *  - lxa attacks lxb as ferry-guest's msgsecurity does (every misuse the
 *    driver lets through refused by ferry with the right status, the
 *    mapping rules of the driver, a full receiver, and a remapped probe
 *    whose pages the sender no longer sees and cannot change; lxb writes
 *    into the received page behind its driver's back, through /dev/mem,
 *    and ferry ignores it);
 *  - lxa streams remapped messages to ferry-guest's msgbulk receiver (fgr),
 *    which checks every byte with its own code: the two implementations
 *    agree on the device;
 *  - lxa streams to lxb, remapped and then copied and deferred, every
 *    message checksummed by the receiver.
 * ferry's counters must show the pages moved by remapping. */
static void msgq_from_linux_user_space(void **state)
{
	(void)state;
	require_kvm();
	char lk[PATH_MAX], gk[PATH_MAX];
	if (!realpath(linux_kernel(), lk) || !realpath(guest_image(), gk))
		fail_msg("cannot resolve the kernels' paths");
	char *json = xasprintf(
		"{\"vms\": ["
		"{\"name\": \"lxa\", \"memory_mib\": 128, \"kernel\": \"%s\", \"cmdline\": \"%s ferry.expect=msgq "
		"ferry.timeout=900 ferry.msg=\\\"security role=attack peer=lxb gone=gone denied_id=5;"
		"bench role=send peer=fgr sizes=64,4K,64K count=40 mode=remap;"
		"bench role=send peer=lxb sizes=64,4K,64K count=40 mode=remap;"
		"bench role=send peer=lxb sizes=64,4K count=40 mode=copy post=deferred\\\"\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"lxb\", \"fgr\", \"gone\"], \"max_msg_pages\": 16}]},"
		"{\"name\": \"lxb\", \"memory_mib\": 128, \"kernel\": \"%s\", \"cmdline\": \"%s ferry.expect=msgq "
		"ferry.timeout=900 ferry.msg=\\\"security role=victim peer=lxa;bench role=recv sessions=2\\\"\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"lxa\"], \"recv_slots\": 64}]},"
		"{\"name\": \"fgr\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv "
		"timeout_ms=900000\", \"devices\": [{\"type\": \"msgq\"}]},"
		"{\"name\": \"gone\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=hello\","
		" \"devices\": [{\"type\": \"msgq\"}]},"
		"{\"name\": \"stranger\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=hello\","
		" \"devices\": [{\"type\": \"msgq\"}]}]}",
		lk, LINUX_CMDLINE, lk, LINUX_CMDLINE, gk, gk, gk);
	struct ferry_vm f;
	start_config(&f, json, "lxa");
	free(json);
	int st = watch_exit(&f.w, 1500);
	if (st != 0) {
		/* The other side's story too: lxa's alone does not say why. */
		char *con = console_of("lxb");
		fprintf(stderr, "lxb's console:\n%s\n", con);
		free(con);
		fail_with_logs(&f, "ferry did not exit with status 0");
	}
	printf("linux msgq run: lxa reached user space at %.1f s, the run took %.1f s\n", f.w.t_user, f.w.t_end);
	const char *lxa[] = {
		"module ferry_virtio_pci loaded",
		"virtio-msgq: virtio0 bound to ferry_msgq",
		"send to a VM that is not a peer: denied, want denied: ok",
		"send to an id no VM has: no_dest, want no_dest: ok",
		"send to a peer that has stopped: dest_down, want dest_down: ok",
		"send from a slot past the send region (driver): EINVAL, want EINVAL: ok",
		"send longer than max_msg_pages: too_long, want too_long: ok",
		"send of length 0: too_long, want too_long: ok",
		"send past the end of the send region: too_long, want too_long: ok",
		"mapping the receive region writable: EPERM, want EPERM: ok",
		"making the received pages writable (mprotect): EACCES, want EACCES: ok",
		"a second open of the device: EBUSY, want EBUSY: ok",
		"send into a full receiver: full, want full: ok",
		"the probe travelled remapped",
		"after sending, 0 of 4092 probe bytes still in the sender's slot: ok",
		"victim says the probe kept its contents after the sender's writes: ok",
		"ferry-msg: every misuse was refused",
		"\"size\": 65536, \"count\": 40, \"transport\": \"msgq\", \"kernel\": \"linux\", \"mode\": \"remap\"",
		"all checks passed",
		NULL,
	};
	expect_lines(&f, "lxa", lxa);
	const char *lxb[] = {
		"victim got the probe remapped from vm 1",
		"victim's write into a received page through /dev/mem: ignored, ok",
		"received run 0: 40 of 40 messages verified (40 remapped), 0 corrupt, 0 duplicated: ok",
		"received run 2: 40 of 40 messages verified (40 remapped), 0 corrupt, 0 duplicated: ok",
		"received run 1: 40 of 40 messages verified (0 remapped), 0 corrupt, 0 duplicated: ok",
		"all checks passed",
		NULL,
	};
	expect_lines(&f, "lxb", lxb);
	const char *fgr[] = { "msgbulk: received run 2: 40 of 40 messages verified, 0 corrupt, 0 duplicated: ok", NULL };
	expect_lines(&f, "fgr", fgr);

	cJSON *a = summary_find_vm(f.summary, "lxa");
	/* 40 + 40 + 40 * 16 pages to each of two receivers, remapped. */
	double remapped = json_num(a, "counters.msgq.pages_remapped"), copied = json_num(a, "counters.msgq.bytes_copied");
	printf("lxa: %.0f pages remapped, %.0f bytes copied, %.0f sent\n", remapped, copied,
	       json_num(a, "counters.msgq.sent"));
	if (remapped < 2 * (40 + 40 + 40 * 16) || copied < 40 * (64 + 4096))
		fail_msg("lxa remapped %.0f pages and copied %.0f bytes", remapped, copied);
	if (json_num(a, "counters.msgq.rejected_by.denied") < 1 || json_num(a, "counters.msgq.rejected_by.no_dest") < 2 ||
	    json_num(a, "counters.msgq.rejected_by.dest_down") < 1 ||
	    json_num(a, "counters.msgq.rejected_by.too_long") < 3 || json_num(a, "counters.msgq.rejected_by.full") < 1)
		fail_msg("lxa's refusals were not all counted");
	/* The driver never lets an address outside the window through. */
	if (json_num(a, "counters.msgq.rejected_by.bad_addr") + json_num(a, "counters.msgq.rejected_by.bad_chain") != 0)
		fail_msg("ferry refused chains of lxa's driver as malformed or outside the window");
	cJSON *b = summary_find_vm(f.summary, "lxb");
	if (json_num(b, "counters.msgq.writes_to_received_pages") < 1)
		fail_msg("ferry did not see lxb's write into a received page");
	if (json_num(b, "counters.msgq.returned_pages") < json_num(b, "counters.msgq.received"))
		fail_msg("lxb received %.0f messages and returned %.0f pages", json_num(b, "counters.msgq.received"),
			 json_num(b, "counters.msgq.returned_pages"));
	free_vm(&f);
}

static cJSON *vcpu_thread(cJSON *vm, int index)
{
	cJSON *cpu = cJSON_GetObjectItem(cJSON_GetObjectItem(vm, "counters"), "cpu");
	return cJSON_GetArrayItem(cJSON_GetObjectItem(cpu, "vcpu_threads"), index);
}

/* A two-vCPU Linux under ferry's CPU scheduler, and on a network with two
 * ferry-guest VMs. The budget (4 vCPUs for 5) makes the scheduler ask the
 * Linux VM, the only one with cpu-reserve, to park a vCPU: ferry_cpu_reserve
 * takes CPU 1 offline (the init sees it in /sys/devices/system/cpu) and
 * acknowledges, and the scheduler checks that the parked vCPU's thread uses
 * no CPU. When the test stops the VM that holds the budget, the vCPU comes
 * back. Then Linux's own virtio-net driver, which does not take ferry's
 * zero-copy feature, pings a ferry-guest VM and exchanges UDP datagrams with
 * its echo server, and a third VM pings Linux: all over the one-copy path. */
static void cpu_reserve_and_network(void **state)
{
	(void)state;
	require_kvm();
	char lk[PATH_MAX], gk[PATH_MAX];
	if (!realpath(linux_kernel(), lk) || !realpath(guest_image(), gk))
		fail_msg("cannot resolve the kernels' paths");
	char *json = xasprintf(
		"{\"host\": {\"vcpu_budget\": 4}, \"networks\": {\"lan0\": {}}, \"vms\": ["
		"{\"name\": \"lx\", \"memory_mib\": 128, \"vcpus\": 2, \"kernel\": \"%s\", \"cmdline\": \"%s "
		"ferry.expect=cpu-reserve,net ferry.cpus=2 ferry.reserve=1 ferry.net=10.0.0.2/24 ferry.ping=10.0.0.1 "
		"ferry.udp=10.0.0.1:7 ferry.pinged=10 ferry.timeout=900\","
		" \"devices\": [{\"type\": \"cpu-reserve\"}], \"nics\": [{\"network\": \"lan0\"}]},"
		"{\"name\": \"holder\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=idle\"},"
		"{\"name\": \"echo\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpecho ip=10.0.0.1/24 count=20\","
		" \"nics\": [{\"network\": \"lan0\"}]},"
		"{\"name\": \"pinger\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=ping ip=10.0.0.3/24 "
		"peer=10.0.0.2 count=10 wait_ms=900000 timeout_ms=10000\", \"nics\": [{\"network\": \"lan0\"}]}]}",
		lk, LINUX_CMDLINE, gk, gk, gk);
	struct ferry_vm f;
	start_config(&f, json, "lx");
	free(json);
	if (!watch_for(&f.w, "cpu-reserve: parked after", 900))
		fail_with_logs(&f, "Linux did not park a CPU");
	/* The budget frees up: the scheduler asks for the CPU back. */
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", f.sock, "stop", "holder", NULL };
	struct cmd_result r = run_cmd(argv, 10);
	if (r.status != 0)
		fail_msg("ferry ctl stop holder: %s%s", r.out, r.err);
	cmd_result_free(&r);
	int st = watch_exit(&f.w, 900);
	/* holder was stopped: ferry's status is not 0; each VM's is below. */
	printf("linux cpu-reserve and network run: user space at %.1f s, the run took %.1f s (ferry exit %d)\n",
	       f.w.t_user, f.w.t_end, st);
	const char *lx[] = {
		"smp: 2 CPUs online",
		"module ferry_cpu_reserve loaded",
		"bound to ferry_cpu_reserve",
		"offline: cpu1",
		"cpu-reserve ok: released after",
		"ping ok: 10.0.0.1 answered 10 of 10, payloads intact",
		"udp ok: 10.0.0.1:7 echoed 20 datagrams of 1-1472 bytes intact",
		"pinged ok: this kernel answered",
		"all checks passed",
		NULL,
	};
	expect_lines(&f, "lx", lx);
	const char *pinger[] = { "sent=10 received=10 lost=0 corrupt=0", NULL };
	expect_lines(&f, "pinger", pinger);
	const char *vms[] = { "lx", "echo", "pinger" };
	for (int i = 0; i < 3; i++) {
		cJSON *v = summary_find_vm(f.summary, vms[i]);
		cJSON *reason = cJSON_GetObjectItem(v, "exit_reason");
		if (!cJSON_IsString(reason) || strcmp(reason->valuestring, "poweroff") || json_num(v, "exit_code") != 0)
			fail_with_logs(&f, "a VM other than holder did not power off with status 0");
	}
	cJSON *lxv = summary_find_vm(f.summary, "lx");
	double requests = json_num(lxv, "counters.cpu-reserve.requests");
	double acks = json_num(lxv, "counters.cpu-reserve.acknowledged");
	cJSON *t1 = vcpu_thread(lxv, 1);
	double parked_ms = t1 ? json_num(t1, "parked_ms") : 0, used_ms = t1 ? json_num(t1, "cpu_ms_while_parked") : -1;
	printf("cpu-reserve: %.0f requests, %.0f acknowledged, vCPU 1 parked %.0f ms using %.1f ms of CPU\n", requests,
	       acks, parked_ms, used_ms);
	if (requests < 2 || acks < 2 || parked_ms <= 0 || used_ms < 0 || used_ms > 0.1 * parked_ms)
		fail_msg("cpu-reserve: %.0f requests, %.0f acknowledged; vCPU 1 parked %.0f ms, using %.1f ms", requests,
			 acks, parked_ms, used_ms);
	cJSON *root = load_json(f.summary);
	double ran = root ? json_num(root, "cpu.parked_vcpus_that_ran") : -1;
	cJSON_Delete(root);
	if (ran != 0)
		fail_msg("the scheduler saw %.0f parked vCPUs run", ran);
	lxv = summary_find_vm(f.summary, "lx");
	double one = json_num(lxv, "counters.net.frames_one_copy"), zc = json_num(lxv, "counters.net.frames_zero_copy");
	printf("lx's NIC: %.0f frames over the one-copy path, %.0f zero-copy\n", one, zc);
	if (one < 10 + 20 + 10 || zc != 0)
		fail_msg("lx's NIC: %.0f frames one-copy, %.0f zero-copy", one, zc);
	free_vm(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(devices_balloon_port_exit, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(acpi_poweroff, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(missing_device_fails, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(msgq_from_linux_user_space, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(cpu_reserve_and_network, test_dir_setup, test_dir_teardown),
	};
	/* One test by name, while working on it: TEST_FILTER=acpi_poweroff */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
