/* ferry-guest's virtio-balloon driver against QEMU's virtio-balloon-pci, the
 * independent reference: QEMU boots the guest (idle app) with
 * deflate-on-oom and free-page-reporting on, and the test drives QEMU's
 * monitor (QMP over a unix socket) as a host operator would: `balloon` to
 * set the target, query-balloon to read what the guest reports, and the
 * guest-stats property for the statistics queue. Deadlines are generous
 * limits, not measurements: nothing here passes or fails on timing. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define RAM_MIB 512

#define tmp test_dir

static void qemu_start(struct qemu *q, const char *append)
{
	char *sock = xasprintf("%s/qmp.sock", tmp);
	q->console = xasprintf("%s/console.log", tmp);
	q->log = xasprintf("%s/qemu.log", tmp);
	char *serial = xasprintf("file:%s", q->console);
	char *qmparg = xasprintf("unix:%s,server=on,wait=off", sock);
	char *argv[] = {
		"qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "512M", "-smp", "2",
		"-display", "none", "-no-reboot", "-net", "none", "-monitor", "none",
		"-serial", serial, "-qmp", qmparg,
		"-kernel", (char *)guest_image(), "-append", (char *)append,
		"-device", "isa-debug-exit,iobase=0x501",
		"-device", "virtio-balloon-pci,id=balloon0,disable-legacy=on,deflate-on-oom=on,free-page-reporting=on",
		NULL,
	};
	qemu_start_qmp(q, argv, sock);
	free(sock);
	free(serial);
	free(qmparg);
}

/* Waits for text on the guest's console; returns the console. */
static char *wait_console(struct qemu *q, const char *text, double timeout_s)
{
	for (double deadline = now_s() + timeout_s;; usleep(50000)) {
		char *c = read_file(q->console);
		if (c && strstr(c, text))
			return c;
		if (now_s() > deadline) {
			qemu_stop(q);
			fail_msg("\"%s\" did not appear on the console:\n%s", text, c ? c : "(nothing)");
		}
		free(c);
	}
}

static double actual_mib(struct qemu *q)
{
	cJSON *root, *ret = qmp(q, "{\"execute\":\"query-balloon\"}", &root);
	cJSON *a = cJSON_GetObjectItem(ret, "actual");
	if (!cJSON_IsNumber(a))
		fail_msg("query-balloon without 'actual'");
	double v = a->valuedouble / MIB;
	cJSON_Delete(root);
	return v;
}

/* Sets the guest's memory to mib and waits until the guest reports it. */
static void balloon_to(struct qemu *q, unsigned mib)
{
	char *cmd = xasprintf("{\"execute\":\"balloon\",\"arguments\":{\"value\":%llu}}",
			      (unsigned long long)mib << 20);
	qmp_do(q, cmd);
	free(cmd);
	double a = 0;
	for (double deadline = now_s() + 30; (a = actual_mib(q)) != mib; usleep(50000)) {
		if (now_s() > deadline) {
			char *c = read_file(q->console);
			qemu_stop(q);
			fail_msg("asked for %u MiB, the guest reports %.1f MiB after 30 s; console:\n%s", mib, a,
				 c ? c : "");
		}
	}
}

static double stat_of(cJSON *stats, const char *name)
{
	cJSON *v = cJSON_GetObjectItem(stats, name);
	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Inflate to half the RAM, statistics through the stats queue, deflate
 * part of the way and back to all of it. */
static void inflate_deflate_stats(void **state)
{
	(void)state;
	require_qemu();
	struct qemu q = { 0 };
	qemu_start(&q, "app=idle ms=120000");
	free(wait_console(&q, "idle: waiting", 30));
	if (actual_mib(&q) != RAM_MIB)
		fail_msg("balloon not empty at start: %.1f MiB", actual_mib(&q));

	balloon_to(&q, 256);
	char *c = wait_console(&q, "inflated 256 MiB", 10);
	free(c);

	/* The driver sends statistics at start-up; QEMU asks for new ones only
	 * once polling is on, by handing the buffer back: wait for two rounds
	 * after that (last-update, in seconds, moves at each). */
	double total = -1, free_mem = -1, avail = -1, first = -1;
	int rounds = 0;
	qmp_do(&q, "{\"execute\":\"qom-set\",\"arguments\":{\"path\":\"/machine/peripheral/balloon0\","
		   "\"property\":\"guest-stats-polling-interval\",\"value\":1}}");
	for (double deadline = now_s() + 30;; usleep(200000)) {
		cJSON *root, *ret = qmp(&q, "{\"execute\":\"qom-get\",\"arguments\":{\"path\":"
					    "\"/machine/peripheral/balloon0\",\"property\":\"guest-stats\"}}", &root);
		cJSON *stats = cJSON_GetObjectItem(ret, "stats");
		cJSON *upd = cJSON_GetObjectItem(ret, "last-update");
		double t = cJSON_IsNumber(upd) ? upd->valuedouble : -1;
		total = stat_of(stats, "stat-total-memory") / MIB;
		free_mem = stat_of(stats, "stat-free-memory") / MIB;
		avail = stat_of(stats, "stat-available-memory") / MIB;
		cJSON_Delete(root);
		if (first < 0)
			first = t;
		else if (t != first) {
			rounds++;
			first = t;
		}
		if (rounds >= 2)
			break;
		if (now_s() > deadline) {
			qemu_stop(&q);
			fail_msg("no statistics from the guest after 30 s");
		}
	}
	/* The guest counts what it can use: not the 256 MiB in the balloon. */
	if (total > 256 || total < 200 || free_mem <= 0 || free_mem > total || avail < free_mem)
		fail_msg("implausible statistics: total %.1f MiB, free %.1f MiB, available %.1f MiB", total,
			 free_mem, avail);

	balloon_to(&q, 400);
	free(wait_console(&q, "deflated 144 MiB", 10));
	balloon_to(&q, RAM_MIB);

	/* QEMU may close the socket before its reply to "quit" arrives. */
	if (send(q.qmp, "{\"execute\":\"quit\"}\n", 19, MSG_NOSIGNAL) != 19)
		fail_msg("QMP quit: %s", strerror(errno));
	waitpid(q.pid, NULL, 0);
	q.pid = 0;
	qemu_stop(&q);
	free(q.console);
	free(q.log);
}

/* The selftest's balloon check finds the device (QEMU sets no target at
 * boot, so it moves no pages) and the rest of the kernel still passes. */
static void selftest_with_balloon(void **state)
{
	(void)state;
	require_qemu();
	char *argv[] = {
		"qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "256M", "-smp", "2",
		"-nographic", "-no-reboot", "-net", "none",
		"-kernel", (char *)guest_image(), "-append", "app=selftest require=virtio-balloon",
		"-device", "isa-debug-exit,iobase=0x501",
		"-device", "virtio-balloon-pci,disable-legacy=on,deflate-on-oom=on,free-page-reporting=on",
		NULL,
	};
	struct cmd_result r = run_cmd(argv, 120);
	if (r.status != 1 || !strstr(r.out, " 0 failed") || !strstr(r.out, "selftest: balloon ok"))
		fail_msg("expected exit 1 and a passing balloon check, got exit %d:\n%s\n%s", r.status, r.out, r.err);
	cmd_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(inflate_deflate_stats, test_dir_setup, test_dir_teardown),
		cmocka_unit_test_setup_teardown(selftest_with_balloon, test_dir_setup, test_dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
