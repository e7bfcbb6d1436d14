/* "restart": "on-failure": a VM that powers off with a failure status,
 * triple-faults or hangs past its watchdog is reported and restarted with
 * its config; its message peers see it go (dest_down) and come back; VMs
 * without the policy are reported and left stopped; a VM that keeps failing
 * is given up on after max_restarts. All with the seccomp filters on (ferry
 * runs sandboxed unless told otherwise, and no test here tells it). */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/control_client.h"

#define tmp test_dir

static int ferry_pid = -1;

static int teardown(void **state)
{
	if (ferry_pid > 0) {
		kill(ferry_pid, SIGKILL);
		wait_background(ferry_pid, 10);
		ferry_pid = -1;
	}
	return test_dir_teardown(state);
}

/* Writes the config (each %1$s: the guest kernel) and starts ferry on it
 * with a control socket; returns once the socket answers. */
static const char *start(const char *json)
{
	static char sock[PATH_MAX];
	snprintf(sock, sizeof(sock), "%s/ctl.sock", tmp);
	char kernel[PATH_MAX];
	if (!realpath(guest_image(), kernel)) /* the config's paths start at its directory */
		fail_msg("no guest image at %s", guest_image());
	char *text = xasprintf(json, kernel);
	char *cfg = xasprintf("%s/config.json", tmp), *summary = xasprintf("%s/summary.json", tmp),
	     *logs = xasprintf("%s/logs", tmp), *out = xasprintf("%s/ferry.out", tmp);
	write_file(cfg, text);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--control", sock, "--summary", summary, "--log-dir", logs,
			 "--timeout", "120", NULL };
	ferry_pid = spawn_background_log(argv, out);
	for (int i = 0; i < 1000; i++) {
		if (i == 999 || kill(ferry_pid, 0) < 0) {
			char *o = xasprintf("%s/ferry.out", tmp), *log = read_file(o);
			fail_msg("the control socket never answered; ferry said:\n%s", log ? log : "");
		}
		int fd = control_connect(sock);
		if (fd >= 0) {
			close(fd);
			break;
		}
		usleep(20000);
	}
	free(text);
	free(cfg);
	free(summary);
	free(logs);
	free(out);
	return sock;
}

/* A subscriber that first gets the events ferry kept (so none is missed
 * between the start and the subscription). */
static int subscribe(const char *sock)
{
	int fd = control_connect(sock);
	assert_true(fd >= 0);
	cJSON *ans = control_call(fd, "{\"cmd\": \"events\", \"replay\": true}");
	assert_non_null(ans);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "ok")));
	cJSON_Delete(ans);
	return fd;
}

/* Reads events until one of type `event` for `vm` (60 s at most); the
 * event (caller frees) or NULL. */
static cJSON *wait_event(int fd, const char *event, const char *vm)
{
	double end = now_s() + 60;
	while (now_s() < end) {
		bool timed_out;
		cJSON *e = control_read(fd, end - now_s(), &timed_out);
		if (!e)
			return NULL;
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "event");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "vm");
		if (cJSON_IsString(t) && !strcmp(t->valuestring, event) && cJSON_IsString(v) &&
		    !strcmp(v->valuestring, vm))
			return e;
		cJSON_Delete(e);
	}
	return NULL;
}

/* Every event ferry kept, as one text (for checking what did not happen). */
static char *all_events(const char *sock)
{
	int fd = subscribe(sock);
	size_t cap = 1 << 16, len = 0;
	char *all = calloc(1, cap);
	assert_non_null(all);
	for (;;) {
		bool timed_out;
		cJSON *e = control_read(fd, 1.0, &timed_out);
		if (!e)
			break;
		char *s = cJSON_PrintUnformatted(e);
		cJSON_Delete(e);
		size_t n = strlen(s);
		if (len + n + 2 > cap) {
			cap = (len + n + 2) * 2;
			all = realloc(all, cap);
			assert_non_null(all);
		}
		memcpy(all + len, s, n);
		len += n;
		all[len++] = '\n';
		all[len] = '\0';
		free(s);
	}
	close(fd);
	return all;
}

static int finish(void)
{
	int status = wait_background(ferry_pid, 120);
	ferry_pid = -1;
	return status;
}

static cJSON *vm_of(const char *name)
{
	char *path = xasprintf("%s/summary.json", tmp);
	cJSON *vm = summary_find_vm(path, name);
	free(path);
	return vm;
}

static double run_restarts(void)
{
	char *path = xasprintf("%s/summary.json", tmp);
	cJSON *doc = load_json(path);
	free(path);
	assert_non_null(doc);
	double n = json_num(doc, "restarts");
	cJSON_Delete(doc);
	return n;
}

static const char *str(cJSON *obj, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!cJSON_IsString(v))
		fail_msg("summary entry lacks string %s", key);
	return v->valuestring;
}

static char *out_log(void)
{
	char *path = xasprintf("%s/ferry.out", tmp);
	char *text = read_file(path);
	free(path);
	assert_non_null(text);
	return text;
}

/* The victim powers off with status 1 1.2 s into its first run; restarted,
 * it runs on. The peer sends to it all along: delivered, then dest_down,
 * then delivered again (msgsoak's expect_down makes the guest check that,
 * and every message either side delivered arrived once and intact). */
static void crashed_vm_comes_back_to_its_peer(void **state)
{
	(void)state;
	require_kvm();
	const char *sock = start(
		"{\"vms\": ["
		"{\"name\": \"victim\", \"kernel\": \"%1$s\", \"memory_mib\": 32, \"restart\": \"on-failure\","
		" \"cmdline\": \"app=msgsoak ms=3000 fail=exit fail_ms=1200\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"peer\"]}]},"
		"{\"name\": \"peer\", \"kernel\": \"%1$s\", \"memory_mib\": 32,"
		" \"cmdline\": \"app=msgsoak ms=60000 stop_after_down=200 expect_down=1\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"victim\"]}]}]}");
	int ev = subscribe(sock);
	cJSON *e = wait_event(ev, "vm-restarted", "victim");
	if (!e)
		fail_msg("no vm-restarted event for victim");
	assert_int_equal((int)json_num(e, "restarts"), 1);
	assert_string_equal(str(e, "reason"), "poweroff with status 1");
	cJSON_Delete(e);
	close(ev);
	/* status says so too (the VM may have ended already: it is kept). */
	int fd = control_connect(sock);
	if (fd >= 0) {
		cJSON *ans = control_call(fd, "{\"cmd\": \"status\", \"vm\": \"victim\"}");
		close(fd);
		if (ans && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "ok"))) {
			cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ans, "vms"), 0);
			assert_int_equal((int)json_num(v, "restarts"), 1);
		}
		cJSON_Delete(ans);
	}
	int status = finish();
	char *out = out_log();
	if (status != 0)
		fail_msg("ferry exited with %d:\n%s", status, out);
	expect_contains(out, "victim: restarted after poweroff with status 1 (restart 1 of at most 5)");
	free(out);
	assert_int_equal((int)run_restarts(), 1);
	cJSON *victim = vm_of("victim");
	assert_int_equal((int)json_num(victim, "restarts"), 1);
	assert_int_equal((int)json_num(victim, "exit_code"), 0);
	assert_string_equal(str(victim, "last_failure"), "poweroff with status 1");
	assert_int_equal((int)json_num(vm_of("peer"), "exit_code"), 0);
	/* The console log keeps both runs. */
	char *log = test_console_log("victim");
	expect_contains(log, "failing on purpose (fail=exit)");
	expect_contains(log, "run 1, fail_runs=1: not failing");
	expect_contains(log, "msgsoak: result");
	free(log);
	log = test_console_log("peer");
	expect_contains(log, "\"lost\": 0, \"dup\": 0, \"bad\": 0");
	free(log);
}

/* A triple fault, and a hang (interrupts off in ring 0: the heartbeat
 * stops, so the watchdog fires); both come back once. A bystander with the
 * same watchdog that heartbeats is never taken for hung. */
static void triple_fault_and_hang_are_restarted(void **state)
{
	(void)state;
	require_kvm();
	const char *sock = start(
		"{\"vms\": ["
		"{\"name\": \"tf\", \"kernel\": \"%1$s\", \"memory_mib\": 16, \"restart\": \"on-failure\","
		" \"cmdline\": \"app=idle ms=1500 fail=triple fail_ms=300\"},"
		"{\"name\": \"hang\", \"kernel\": \"%1$s\", \"memory_mib\": 16, \"restart\": \"on-failure\","
		" \"watchdog_ms\": 3000, \"cmdline\": \"app=idle ms=1500 heartbeat_ms=100 fail=hang fail_ms=300\"},"
		"{\"name\": \"calm\", \"kernel\": \"%1$s\", \"memory_mib\": 16, \"watchdog_ms\": 3000,"
		" \"cmdline\": \"app=idle ms=10000 heartbeat_ms=100\"}]}");
	int ev = subscribe(sock);
	cJSON *e = wait_event(ev, "vm-crashed", "hang");
	if (!e)
		fail_msg("no vm-crashed event for the hung VM");
	assert_string_equal(str(e, "reason"), "hung");
	expect_contains(str(e, "detail"), "watchdog");
	cJSON_Delete(e);
	close(ev);
	int status = finish();
	char *out = out_log();
	if (status != 0)
		fail_msg("ferry exited with %d:\n%s", status, out);
	free(out);
	assert_int_equal((int)run_restarts(), 2);
	cJSON *tf = vm_of("tf");
	assert_int_equal((int)json_num(tf, "restarts"), 1);
	assert_string_equal(str(tf, "last_failure"), "triple-fault");
	cJSON *hang = vm_of("hang");
	assert_int_equal((int)json_num(hang, "restarts"), 1);
	assert_string_equal(str(hang, "last_failure"), "hung");
	assert_int_equal((int)json_num(hang, "exit_code"), 0);
	cJSON *calm = vm_of("calm");
	assert_int_equal((int)json_num(calm, "exit_code"), 0);
	assert_null(cJSON_GetObjectItemCaseSensitive(calm, "restarts"));
}

/* Without the policy a failure is final; with it, max_restarts ends a VM
 * that fails every time. A VM beside them runs to its end (8 s: ferry must
 * outlive the subscription, which can only start once every VM is built,
 * slowly under a sanitizer on a loaded host). */
static void no_policy_and_restart_limit(void **state)
{
	(void)state;
	require_kvm();
	const char *sock = start(
		"{\"vms\": ["
		"{\"name\": \"never\", \"kernel\": \"%1$s\", \"memory_mib\": 16,"
		" \"cmdline\": \"app=idle ms=2000 fail=exit fail_ms=100 fail_status=7\"},"
		"{\"name\": \"loop\", \"kernel\": \"%1$s\", \"memory_mib\": 16, \"restart\": \"on-failure\","
		" \"max_restarts\": 2, \"cmdline\": \"app=idle ms=2000 fail=exit fail_ms=100 fail_runs=1000\"},"
		"{\"name\": \"steady\", \"kernel\": \"%1$s\", \"memory_mib\": 16, \"cmdline\": \"app=idle ms=8000\"}]}");
	int ev = subscribe(sock);
	cJSON *e = wait_event(ev, "vm-restart-given-up", "loop");
	if (!e) {
		finish();
		char *out = out_log();
		fail_msg("no vm-restart-given-up event for loop; ferry said:\n%s", out);
	}
	assert_int_equal((int)json_num(e, "restarts"), 2);
	cJSON_Delete(e);
	close(ev);
	/* never: started and stopped (exit code 7), never restarted. */
	char *events = all_events(sock);
	bool stopped = false;
	for (char *line = strtok(events, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "\"vm\":\"never\""))
			continue;
		if (strstr(line, "\"event\":\"vm-restarted\""))
			fail_msg("never was restarted: %s", line);
		stopped |= strstr(line, "\"event\":\"vm-stopped\"") && strstr(line, "\"exit_code\":7");
	}
	free(events);
	if (!stopped)
		fail_msg("no vm-stopped event with exit code 7 for never");
	int status = finish();
	assert_int_equal(status, 1); /* two VMs failed for good */
	char *out = out_log();
	expect_contains(out, "loop: failed (poweroff with status 1) after 2 restarts, its max_restarts");
	if (strstr(out, "never: restarted") || strstr(out, "never: failed ("))
		fail_msg("a VM without \"restart\" was treated as restartable:\n%s", out);
	free(out);
	assert_int_equal((int)run_restarts(), 2);
	cJSON *never = vm_of("never");
	assert_int_equal((int)json_num(never, "exit_code"), 7);
	assert_null(cJSON_GetObjectItemCaseSensitive(never, "restarts"));
	cJSON *loop = vm_of("loop");
	assert_int_equal((int)json_num(loop, "restarts"), 2);
	assert_int_equal((int)json_num(loop, "exit_code"), 1);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(loop, "restart_given_up")));
	assert_int_equal((int)json_num(vm_of("steady"), "exit_code"), 0);
}

/* On a network (zero-copy channels bound by traffic) and in a link with
 * its peer: the echo server fails 2 s into its first run; the pinger loses
 * echoes while it is away and gets answers again from its new run, whose
 * NIC and link end joined the network and the link again. */
static void network_and_link_peer_sees_it_return(void **state)
{
	(void)state;
	require_kvm();
	start("{\"networks\": {\"lan\": {}}, \"links\": [{\"vms\": [\"srv\", \"cli\"], \"size_mib\": 2}], \"vms\": ["
	      "{\"name\": \"srv\", \"kernel\": \"%1$s\", \"memory_mib\": 32, \"restart\": \"on-failure\","
	      " \"cmdline\": \"app=udpecho ip=10.0.0.1/24 ms=20000 fail=exit fail_ms=2000\", \"nics\": [{\"network\": \"lan\"}]},"
	      "{\"name\": \"cli\", \"kernel\": \"%1$s\", \"memory_mib\": 32,"
	      " \"cmdline\": \"app=ping ip=10.0.0.2/24 peer=10.0.0.1 count=150 interval_ms=100 timeout_ms=300\","
	      " \"nics\": [{\"network\": \"lan\"}]}]}");
	int status = finish();
	char *out = out_log();
	if (status < 0)
		fail_msg("ferry did not end:\n%s", out);
	expect_contains(out, "srv: restarted after poweroff with status 1");
	free(out);
	cJSON *srv = vm_of("srv");
	assert_int_equal((int)json_num(srv, "restarts"), 1);
	assert_int_equal((int)json_num(srv, "exit_code"), 0);
	/* The counters are its second run's: it answered on the network. */
	if (json_num(srv, "counters.net.frames_tx") < 1)
		fail_msg("the restarted server sent no frame");
	assert_non_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(srv, "counters"), "ivshmem"));
	char *log = test_console_log("cli");
	const char *lost = strstr(log, "ping: no reply to echo");
	if (!lost)
		fail_msg("the pinger never missed the server:\n%s", log);
	const char *last_lost = lost;
	while ((lost = strstr(last_lost + 1, "ping: no reply to echo")))
		last_lost = lost;
	if (!strstr(last_lost, "bytes from 10.0.0.1"))
		fail_msg("no echo came back after the server's restart:\n%s", log);
	free(log);
}

/* Bad values: one line naming the VM's path and the key, a non-zero exit,
 * nothing started. */
static void bad_restart_configs(void **state)
{
	(void)state;
	static const struct {
		const char *vm, *says;
	} bad[] = {
		{ "\"restart\": \"always\"", "vms[0]: \"restart\" must be \"never\" or \"on-failure\" (got \"always\")" },
		{ "\"restart\": true", "vms[0]: \"restart\" must be a string" },
		{ "\"max_restarts\": 0", "vms[0]: \"max_restarts\" must be between 1 and 1000 (got 0)" },
		{ "\"watchdog_ms\": 50", "vms[0]: \"watchdog_ms\" must be between 100 and 3600000 (got 50)" },
		{ "\"watchdog_ms\": -1", "vms[0]: \"watchdog_ms\" must be a non-negative integer" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *cfg = xasprintf("%s/bad.json", tmp);
		char *text = xasprintf("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 16, \"kernel\": \"%s\", %s}]}", guest_image(), bad[i].vm);
		write_file(cfg, text);
		char *argv[] = { (char *)ferry_bin(), "run", cfg, NULL };
		struct cmd_result r = run_cmd(argv, 30);
		if (r.status == 0 || !strstr(r.err, bad[i].says) || strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
			fail_msg("%s: exit %d, stderr:\n%s", bad[i].vm, r.status, r.err);
		cmd_result_free(&r);
		free(cfg);
		free(text);
	}
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_dir_setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(crashed_vm_comes_back_to_its_peer),
		T(triple_fault_and_hang_are_restarted),
		T(no_policy_and_restart_limit),
		T(network_and_link_peer_sees_it_return),
		T(bad_restart_configs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
