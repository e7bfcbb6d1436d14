/* The control socket: every command and each of its errors, VMs added and
 * removed while others run and verify their data (removal under traffic on
 * every service that holds a VM: message switch, network switch, static
 * link, both schedulers), and the socket under abuse: clients that hang up
 * before their answer (an immediate one, or one the main thread gives
 * later), idle clients holding every slot, over-long requests, churn while
 * ferry starts and stops. ferry and its VMs must not notice. The same tests
 * run against the ASan+UBSan build (scripts/run-tests.sh), where a
 * use-after-free in a removal or a teardown aborts ferry. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/control.h"
#include "api/control_client.h"

#define tmp test_dir

static char kernel[PATH_MAX];

/* The ferry a test started, killed by the teardown if the test failed
 * before stopping it (so no VM outlives its test). */
static int ferry_pid = -1;

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	return 0;
}

static int teardown(void **state)
{
	if (ferry_pid > 0)
		wait_background(ferry_pid, 0);
	ferry_pid = -1;
	return test_dir_teardown(state);
}

static void wait_for_socket(const char *sock)
{
	for (int i = 0; i < 500; i++) {
		int fd = control_connect(sock);
		if (fd >= 0) {
			close(fd);
			return;
		}
		usleep(20000);
	}
	fail_msg("the control socket %s never answered", sock);
}

/* Starts one VM with a control socket; returns ferry's pid once the socket
 * answers. */
static int start_ferry(const char *sock, const char *cmdline)
{
	char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline", (char *)cmdline,
			 "--control", (char *)sock, "--log-dir", tmp, "--name", "vm0", NULL };
	int pid = spawn_background(argv);
	ferry_pid = pid;
	wait_for_socket(sock);
	return pid;
}

/* Starts ferry on a config text (%s: the kernel, as often as it appears),
 * with its summary and logs in the test directory. */
static int start_config(const char *sock, const char *json)
{
	char *cfg = xasprintf("%s/config.json", tmp), *summary = xasprintf("%s/summary.json", tmp),
	     *logs = xasprintf("%s/logs", tmp), *out = xasprintf("%s/ferry.out", tmp);
	write_file(cfg, json);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--control", (char *)sock, "--summary", summary,
			 "--log-dir", logs, NULL };
	int pid = spawn_background_log(argv, out);
	ferry_pid = pid;
	wait_for_socket(sock);
	free(cfg);
	free(summary);
	free(logs);
	free(out);
	return pid;
}

/* One request on a fresh connection; the parsed answer (caller frees). */
static cJSON *call(const char *sock, const char *req)
{
	int fd = control_connect(sock);
	if (fd < 0)
		return NULL;
	cJSON *ans = control_call(fd, req);
	close(fd);
	return ans;
}

static bool answer_ok(cJSON *ans)
{
	return ans && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "ok"));
}

static bool call_ok(int fd, const char *req)
{
	cJSON *ans = control_call(fd, req);
	bool ok = ans && answer_ok(ans);
	cJSON_Delete(ans);
	return ok;
}

/* The request succeeds; its answer (caller frees). */
static cJSON *expect_ok(int fd, const char *req)
{
	cJSON *ans = control_call(fd, req);
	if (!answer_ok(ans)) {
		char *s = ans ? cJSON_PrintUnformatted(ans) : NULL;
		fail_msg("%s was refused: %s", req, s ? s : "(no answer)");
	}
	return ans;
}

/* The request is refused with this code, and a message. */
static void expect_code(int fd, const char *req, const char *code)
{
	cJSON *ans = control_call(fd, req);
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(ans, "code");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(ans, "error");
	if (!ans || answer_ok(ans) || !cJSON_IsString(c) || strcmp(c->valuestring, code) || !cJSON_IsString(e) ||
	    !e->valuestring[0]) {
		char *s = ans ? cJSON_PrintUnformatted(ans) : NULL;
		fail_msg("%.200s: expected error code %s, got %s", req, code, s ? s : "(no answer)");
	}
	cJSON_Delete(ans);
}

static void stop_vm_and_wait(const char *sock, int pid)
{
	cJSON *ans = call(sock, "{\"cmd\": \"stop\", \"vm\": \"vm0\"}");
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	/* 1: the VM was stopped, not powered off; a signal would be 128 + n. */
	assert_int_equal(wait_background(pid, 30), 1);
	ferry_pid = -1;
}

/* The VM's entry in a status answer, or NULL. */
static const cJSON *status_vm(const cJSON *ans, const char *name)
{
	const cJSON *v;
	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(ans, "vms"))
		if (!strcmp(cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring, name))
			return v;
	return NULL;
}

static const char *state_of(int fd, const char *name)
{
	static char state[32];
	cJSON *ans = control_call(fd, "{\"cmd\": \"list\"}");
	const cJSON *v = status_vm(ans, name);
	const cJSON *st = v ? cJSON_GetObjectItemCaseSensitive(v, "state") : NULL;
	snprintf(state, sizeof(state), "%s", cJSON_IsString(st) ? st->valuestring : "(absent)");
	cJSON_Delete(ans);
	return state;
}

static int vm_count(int fd)
{
	cJSON *ans = control_call(fd, "{\"cmd\": \"list\"}");
	int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "vms"));
	cJSON_Delete(ans);
	return n;
}

/* A number at a dotted path of obj, or -1. */
static double at(const cJSON *obj, const char *path)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "%s", path);
	const cJSON *cur = obj;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
		cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
	return cJSON_IsNumber(cur) ? cur->valuedouble : -1;
}

/* Polls `status VM` until the number at path reaches want (or 20 s). */
static double wait_status(int fd, const char *vm, const char *path, double want)
{
	char *req = xasprintf("{\"cmd\": \"status\", \"vm\": \"%s\"}", vm);
	double v = -1;
	for (int i = 0; i < 400; i++) {
		cJSON *ans = control_call(fd, req);
		v = at(status_vm(ans, vm), path);
		cJSON_Delete(ans);
		if (v >= want)
			break;
		usleep(50000);
	}
	free(req);
	return v;
}

/* Reads pushed events until one of type `event` for `vm` (or 30 s). */
static bool wait_event(int fd, const char *event, const char *vm)
{
	double end = now_s() + 30;
	while (now_s() < end) {
		bool timed_out;
		cJSON *e = control_read(fd, end - now_s(), &timed_out);
		if (!e)
			return false;
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "event");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "vm");
		bool match = cJSON_IsString(t) && !strcmp(t->valuestring, event) &&
			     (!vm || (cJSON_IsString(v) && !strcmp(v->valuestring, vm)));
		cJSON_Delete(e);
		if (match)
			return true;
	}
	return false;
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* --- every command ------------------------------------------------------------- */

/* tx streams messages to rx, which checks every one; both run through the
 * whole test (they spin on their one vCPU). rx has a NIC. */
#define PAIR_CONFIG                                                                                              \
	"{ \"networks\": { \"lan\": {} }, \"msgq\": { \"spare_pages\": 64 }, \"vms\": ["                           \
	" { \"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\","                                             \
	"   \"cmdline\": \"app=msgbulk role=send peer=rx sizes=4K,64K,4K,64K count=%d mode=adaptive\","            \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"rx\"], \"send_slots\": 32, \"recv_slots\": 32 } ] }," \
	" { \"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","      \
	"   \"devices\": [ { \"type\": \"msgq\", \"send_slots\": 32, \"recv_slots\": 32 } ],"                       \
	"   \"nics\": [ { \"network\": \"lan\" } ] } ] }"

/* Added: c idles (so its guest serves its balloon and cpu-reserve drivers
 * at once) with 2 vCPUs; d prints all the time. */
#define ADD_CD                                                                                                   \
	"{\"cmd\": \"add\", \"id\": 7, \"config\": {\"vms\": ["                                                \
	" {\"name\": \"c\", \"memory_mib\": 64, \"vcpus\": 2, \"kernel\": \"%s\", \"cmdline\": \"app=idle\","     \
	"  \"devices\": [{\"type\": \"virtio-balloon\"}, {\"type\": \"cpu-reserve\"}]},"                           \
	" {\"name\": \"d\", \"memory_mib\": 32, \"kernel\": \"%s\", \"cmdline\": \"app=chatter lines=100000000\"}]}}"

/* tx and rx verified every message of the stream: 4 runs of count. */
static void expect_stream_verified(int count)
{
	char *ok = xasprintf("%d of %d messages verified, 0 corrupt, 0 duplicated: ok", count, count);
	char *log = test_console_log("rx");
	int runs = 0;
	for (const char *p = log; (p = strstr(p, ok)); p++)
		runs++;
	if (runs != 4)
		fail_msg("rx verified %d of 4 runs:\n%s", runs, log);
	free(log);
	free(ok);
}

static void every_command_and_its_errors(void **state)
{
	(void)state;
	require_kvm();
	enum { COUNT = 5000 };
	char *sock = xasprintf("%s/ctl.sock", tmp), *json = xasprintf(PAIR_CONFIG, kernel, COUNT, kernel);
	int pid = start_config(sock, json);
	int fd = control_connect(sock);
	assert_true(fd >= 0);

	/* The socket is its owner's only. */
	struct stat st;
	assert_int_equal(stat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Requests that are not requests. */
	expect_code(fd, "not json", "bad_json");
	expect_code(fd, "[1, 2]", "bad_request");
	expect_code(fd, "{}", "bad_request");
	expect_code(fd, "{\"cmd\": 5}", "bad_request");
	expect_code(fd, "{\"cmd\": \"nope\"}", "unknown_command");
	expect_code(fd, "{\"cmd\": \"list\", \"x\": 1}", "bad_argument");
	char *big = malloc(20000);
	memset(big, 'x', 19999);
	big[19999] = '\0';
	expect_code(fd, big, "too_long");
	free(big);
	/* An id comes back with its answer, errors included. */
	cJSON *ans = expect_ok(fd, "{\"cmd\": \"list\", \"id\": 42}");
	assert_int_equal(at(ans, "id"), 42);
	cJSON_Delete(ans);
	ans = control_call(fd, "{\"cmd\": \"nope\", \"id\": \"x\"}");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ans, "id")->valuestring, "x");
	cJSON_Delete(ans);

	/* help, list, status. */
	ans = expect_ok(fd, "{\"cmd\": \"help\"}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "commands")), 16);
	cJSON_Delete(ans);
	assert_int_equal(vm_count(fd), 2);
	assert_string_equal(state_of(fd, "tx"), "running");
	ans = expect_ok(fd, "{\"cmd\": \"status\"}");
	assert_int_equal(at(ans, "host.vms"), 2);
	assert_int_equal(at(status_vm(ans, "tx"), "totals.vcpus"), 1);
	assert_int_equal(at(status_vm(ans, "rx"), "memory_mib"), 64);
	cJSON_Delete(ans);
	/* One VM: every counter; its messages arrive. */
	assert_true(wait_status(fd, "rx", "counters.msgq.received", 10) >= 10);
	expect_code(fd, "{\"cmd\": \"status\", \"vm\": \"nobody\"}", "no_such_vm");
	expect_code(fd, "{\"cmd\": \"status\", \"vm\": 5}", "bad_argument");

	/* Events: a subscription on its own connection. */
	int ev = control_connect(sock);
	assert_true(ev >= 0);
	ans = expect_ok(ev, "{\"cmd\": \"events\"}");
	cJSON_Delete(ans);
	expect_code(ev, "{\"cmd\": \"events\"}", "wrong_state");
	expect_code(fd, "{\"cmd\": \"events\", \"replay\": \"yes\"}", "bad_argument");

	/* add: what is wrong with a fragment is said; a good one runs. */
	expect_code(fd, "{\"cmd\": \"add\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"add\", \"config\": \"c.json\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"add\", \"config\": {\"name\": \"c\"}, \"base_dir\": \"rel\"}", "bad_argument");
	char *req = xasprintf("{\"cmd\": \"add\", \"config\": {\"name\": \"tx\", \"memory_mib\": 32, \"kernel\": \"%s\"}}",
			      kernel);
	expect_code(fd, req, "config"); /* a VM named tx runs */
	free(req);
	req = xasprintf("{\"cmd\": \"add\", \"config\": {\"name\": \"c\", \"memory_mib\": 32, \"kernel\": \"%s\","
			" \"nics\": [{\"network\": \"wan\"}]}}", kernel);
	expect_code(fd, req, "config"); /* no such network */
	free(req);
	expect_code(fd, "{\"cmd\": \"add\", \"config\": {\"name\": \"c\", \"memory_mib\": 32, \"kernel\": \"/nonexistent\"}}",
		    "config");
	req = xasprintf(ADD_CD, kernel, kernel);
	ans = expect_ok(fd, req);
	free(req);
	assert_int_equal(at(ans, "id"), 7);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "added")), 2);
	cJSON_Delete(ans);
	if (!wait_event(ev, "vm-started", "d"))
		fail_msg("no vm-started event for d");
	assert_int_equal(vm_count(fd), 4);
	/* d runs: its console grows. */
	char *dlog = xasprintf("%s/logs/d.log", tmp);
	for (int i = 0; i < 200 && file_size(dlog) < 100; i++)
		usleep(50000);
	assert_true(file_size(dlog) >= 100);
	free(dlog);

	/* pause and resume: tx's stream stops and goes on. */
	expect_code(fd, "{\"cmd\": \"pause\"}", "bad_argument");
	assert_true(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"tx\"}"));
	assert_string_equal(state_of(fd, "tx"), "paused");
	expect_code(fd, "{\"cmd\": \"pause\", \"vm\": \"tx\"}", "wrong_state");
	assert_true(call_ok(fd, "{\"cmd\": \"resume\", \"vm\": \"tx\"}"));
	expect_code(fd, "{\"cmd\": \"resume\", \"vm\": \"tx\"}", "wrong_state");
	assert_string_equal(state_of(fd, "tx"), "running");

	/* balloon: only c has one; its guest reaches the target (an event). */
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"tx\", \"target_mib\": 8}", "no_device");
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"c\", \"target_mib\": 100000}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"c\", \"target_mib\": \"8\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"c\"}", "bad_argument");
	assert_true(call_ok(fd, "{\"cmd\": \"balloon\", \"vm\": \"c\", \"target_mib\": 8}"));
	if (!wait_event(ev, "balloon-target-reached", "c"))
		fail_msg("no balloon-target-reached event for c");
	assert_int_equal(wait_status(fd, "c", "balloon.actual_pages", 2048), 2048);

	/* cpu-reserve: only c has one, and it keeps a vCPU. */
	expect_code(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"rx\", \"count\": 0}", "no_device");
	expect_code(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"c\", \"count\": 2}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"c\", \"count\": -1}", "bad_argument");
	assert_true(call_ok(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"c\", \"count\": 1}"));
	assert_int_equal(wait_status(fd, "c", "cpu_reserve.parked", 1), 1);
	assert_true(call_ok(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"c\", \"count\": 0}"));

	/* networks, net-unbind, links, metrics. */
	ans = expect_ok(fd, "{\"cmd\": \"networks\"}");
	const cJSON *lan = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ans, "networks"), 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(lan, "name")->valuestring, "lan");
	const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(lan, "address_table"), 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(row, "port")->valuestring, "rx");
	cJSON_Delete(ans);
	expect_code(fd, "{\"cmd\": \"networks\", \"vm\": \"rx\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"net-unbind\", \"vm\": \"tx\"}", "no_device");
	ans = expect_ok(fd, "{\"cmd\": \"net-unbind\", \"vm\": \"rx\"}");
	assert_int_equal(at(ans, "unbound"), 0);
	cJSON_Delete(ans);
	ans = expect_ok(fd, "{\"cmd\": \"links\"}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "links")), 0);
	cJSON_Delete(ans);
	ans = expect_ok(fd, "{\"cmd\": \"metrics\"}");
	const char *metrics = cJSON_GetObjectItemCaseSensitive(ans, "text")->valuestring;
	expect_contains(metrics, "# TYPE ferry_vm_exits_total counter\n");
	expect_contains(metrics, "ferry_msgq_messages_sent_total{vm=\"tx\"} ");
	expect_contains(metrics, "ferry_vm_memory_target_bytes{vm=\"c\"} 58720256\n"); /* 64 - 8 MiB */
	cJSON_Delete(ans);

	/* stop: one VM or all, not both, not neither; not twice. */
	expect_code(fd, "{\"cmd\": \"stop\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"stop\", \"vm\": \"tx\", \"all\": true}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"stop\", \"all\": 1}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"stop\", \"vm\": \"nobody\"}", "no_such_vm");
	ans = expect_ok(fd, "{\"cmd\": \"stop\", \"vm\": \"d\"}");
	assert_int_equal(at(ans, "stopped"), 1);
	cJSON_Delete(ans);
	expect_code(fd, "{\"cmd\": \"stop\", \"vm\": \"d\"}", "wrong_state");
	expect_code(fd, "{\"cmd\": \"pause\", \"vm\": \"d\"}", "wrong_state");
	assert_string_equal(state_of(fd, "d"), "interrupted");

	/* remove: a running VM and a stopped one; then they are gone. */
	expect_code(fd, "{\"cmd\": \"remove\", \"vm\": [\"c\"]}", "bad_argument");
	ans = expect_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"c\", \"id\": \"r1\"}");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ans, "id")->valuestring, "r1");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ans, "removed")->valuestring, "c");
	assert_string_equal(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ans, "summary"), "exit_reason")->valuestring,
		"removed");
	cJSON_Delete(ans);
	if (!wait_event(ev, "vm-removed", "c"))
		fail_msg("no vm-removed event for c");
	assert_true(call_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"d\"}"));
	expect_code(fd, "{\"cmd\": \"remove\", \"vm\": \"c\"}", "no_such_vm");
	assert_int_equal(vm_count(fd), 2);

	/* budget: a memory scheduler takes over balloon targets, and lets go. */
	expect_code(fd, "{\"cmd\": \"budget\", \"memory_mib\": \"x\"}", "bad_argument");
	expect_code(fd, "{\"cmd\": \"budget\", \"memory_mib\": 16}", "no_room"); /* below the VMs' min_mib */
	ans = expect_ok(fd, "{\"cmd\": \"budget\", \"memory_mib\": 512}");
	assert_int_equal(at(ans, "budget_mib"), 512);
	cJSON_Delete(ans);
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"rx\", \"target_mib\": 4}", "not_manual");
	ans = expect_ok(fd, "{\"cmd\": \"status\"}");
	assert_int_equal(at(ans, "host.memory_budget_mib"), 512);
	cJSON_Delete(ans);
	assert_true(call_ok(fd, "{\"cmd\": \"budget\", \"memory_mib\": 0}"));
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"rx\", \"target_mib\": 4}", "no_device");

	/* tx and rx were still streaming through all of it, undisturbed:
	 * every message arrived intact. */
	const char *tx = state_of(fd, "tx");
	if (strcmp(tx, "running"))
		fail_msg("tx (%s) should still be streaming: make the stream longer", tx);
	close(ev);
	close(fd);
	int status = wait_background(pid, 120);
	ferry_pid = -1;
	if (status != 0) {
		char *out = xasprintf("%s/ferry.out", tmp);
		char *text = read_file(out);
		fail_msg("ferry exited %d:\n%s", status, text ? text : "");
	}
	expect_stream_verified(COUNT);
	cJSON *c = test_summary_vm("c");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "removed")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "added")));
	free(json);
	free(sock);
}

/* --- removal under traffic ------------------------------------------------------- */

/* The base run: tx streams to rx (verified), on a network with a memory and
 * a vCPU budget, so every service of the run has VMs in it. */
#define BASE_CONFIG                                                                                              \
	"{ \"networks\": { \"lan\": {} }, \"msgq\": { \"spare_pages\": 64 },"                                    \
	"  \"host\": { \"memory_budget_mib\": 1024, \"vcpu_budget\": 6 }, \"vms\": ["                              \
	" { \"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\","                                             \
	"   \"cmdline\": \"app=msgbulk role=send peer=rx sizes=4K,64K,4K,64K count=%d mode=adaptive\","            \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"rx\"], \"send_slots\": 32, \"recv_slots\": 32 } ] }," \
	" { \"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","      \
	"   \"devices\": [ { \"type\": \"msgq\", \"send_slots\": 32, \"recv_slots\": 32 } ] } ] }"

/* Added while tx and rx run: c streams messages to d and shares memory with
 * it (a link); e streams datagrams to f over lan (zero copy once the
 * cross-talk is detected); all have balloons (the memory scheduler takes
 * them) and c has 2 vCPUs and cpu-reserve (the CPU scheduler does). */
#define ADDED_VMS                                                                                                \
	"{\"vms\": ["                                                                                            \
	" {\"name\": \"c\", \"memory_mib\": 64, \"vcpus\": 2, \"kernel\": \"%s\","                                \
	"  \"cmdline\": \"app=msgbulk role=send peer=d sizes=4K count=1000000 mode=remap\","                     \
	"  \"devices\": [{\"type\": \"msgq\", \"peers\": [\"d\"], \"send_slots\": 8, \"recv_slots\": 8},"         \
	"                {\"type\": \"virtio-balloon\"}, {\"type\": \"cpu-reserve\"}]},"                          \
	" {\"name\": \"d\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","      \
	"  \"devices\": [{\"type\": \"msgq\", \"send_slots\": 8, \"recv_slots\": 8}, {\"type\": \"virtio-balloon\"}]}," \
	" {\"name\": \"e\", \"memory_mib\": 64, \"kernel\": \"%s\","                                              \
	"  \"cmdline\": \"app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 size=1472 count=100000000\","       \
	"  \"devices\": [{\"type\": \"virtio-balloon\"}], \"nics\": [{\"network\": \"lan\"}]},"                  \
	" {\"name\": \"f\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=recv ip=10.0.0.2/24\"," \
	"  \"devices\": [{\"type\": \"virtio-balloon\"}], \"nics\": [{\"network\": \"lan\"}]}],"                  \
	" \"links\": [{\"vms\": [\"c\", \"d\"], \"size_mib\": 2}]}"

static void add_and_remove_under_traffic(void **state)
{
	(void)state;
	require_kvm();
	enum { COUNT = 8000 };
	char *sock = xasprintf("%s/ctl.sock", tmp), *json = xasprintf(BASE_CONFIG, kernel, COUNT, kernel);
	int pid = start_config(sock, json);
	int fd = control_connect(sock), ev = control_connect(sock);
	assert_true(fd >= 0 && ev >= 0);
	cJSON_Delete(expect_ok(ev, "{\"cmd\": \"events\"}"));
	/* The schedulers own balloons and parking in this run. */
	expect_code(fd, "{\"cmd\": \"cpu-reserve\", \"vm\": \"tx\", \"count\": 0}", "not_manual");
	expect_code(fd, "{\"cmd\": \"balloon\", \"vm\": \"tx\", \"target_mib\": 0}", "not_manual");

	/* Four more VMs, from a file as an operator would add them. */
	char *frag = xasprintf("%s/added.json", tmp), *add = xasprintf(ADDED_VMS, kernel, kernel, kernel, kernel);
	write_file(frag, add);
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "add", frag, NULL };
	struct cmd_result r = run_cmd(argv, 60);
	if (r.status != 0)
		fail_msg("ferry ctl add: %d\n%s%s", r.status, r.out, r.err);
	expect_contains(r.out, "added: c d e f");
	cmd_result_free(&r);
	assert_int_equal(vm_count(fd), 6);

	/* Traffic on every path before anything is removed: messages c to d,
	 * frames e to f on a bound channel. */
	assert_true(wait_status(fd, "d", "counters.msgq.received", 20) >= 20);
	assert_true(wait_status(fd, "e", "totals.net.frames_zero_copy", 100) >= 100);
	cJSON *ans = expect_ok(fd, "{\"cmd\": \"links\"}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "links")), 1);
	cJSON_Delete(ans);
	/* The schedulers took the new VMs: 7 vCPUs on a budget of 6, so c
	 * parks one. */
	ans = expect_ok(fd, "{\"cmd\": \"status\"}");
	assert_int_equal(at(ans, "host.vms"), 6);
	cJSON_Delete(ans);
	assert_int_equal(wait_status(fd, "c", "totals.vcpus_parked", 1), 1);

	/* Remove the receivers while their senders send. */
	ans = expect_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"d\"}");
	cJSON_Delete(ans);
	ans = expect_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"f\"}");
	cJSON_Delete(ans);
	if (!wait_event(ev, "crosstalk-undone", NULL))
		fail_msg("no crosstalk-undone event after f was removed");
	/* f's port is gone from the switch, e's channel unbound. */
	ans = expect_ok(fd, "{\"cmd\": \"networks\"}");
	const cJSON *lan = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ans, "networks"), 0), *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(lan, "ports")) {
		assert_string_not_equal(cJSON_GetObjectItemCaseSensitive(p, "vm")->valuestring, "f");
		assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "channels")), 0);
	}
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(lan, "address_table")), 1);
	cJSON_Delete(ans);
	/* d's end of the link is marked removed; the link stays for c. */
	ans = expect_ok(fd, "{\"cmd\": \"links\"}");
	const cJSON *link = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ans, "links"), 0);
	const cJSON *peer1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(link, "peers"), 1);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(peer1, "removed")));
	assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(peer1, "up")));
	cJSON_Delete(ans);
	/* The senders are told: c's sends to d fail (dest_down while d stops,
	 * no_dest once it is gone; its msgbulk gives up), e goes on sending
	 * into nothing. Both go. */
	assert_true(wait_status(fd, "c", "counters.msgq.rejected", 1) >= 1);
	assert_true(call_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"c\"}"));
	assert_true(call_ok(fd, "{\"cmd\": \"remove\", \"vm\": \"e\"}"));
	/* The link went with its last VM. */
	ans = expect_ok(fd, "{\"cmd\": \"links\"}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "links")), 0);
	cJSON_Delete(ans);

	/* tx and rx ran through all of it. */
	const char *tx = state_of(fd, "tx"), *rx = state_of(fd, "rx");
	if (strcmp(tx, "running") || strcmp(rx, "running"))
		fail_msg("tx (%s) and rx (%s) should still be streaming: make the stream longer", tx, rx);
	ans = expect_ok(fd, "{\"cmd\": \"metrics\"}");
	expect_contains(cJSON_GetObjectItemCaseSensitive(ans, "text")->valuestring, "ferry_vms_removed_total 4\n");
	cJSON_Delete(ans);
	close(ev);
	close(fd);
	int status = wait_background(pid, 180);
	ferry_pid = -1;
	if (status != 0) {
		char *out = xasprintf("%s/ferry.out", tmp);
		char *text = read_file(out);
		fail_msg("ferry exited %d:\n%s", status, text ? text : "");
	}
	expect_stream_verified(COUNT);
	const char *gone[] = { "c", "d", "e", "f" };
	for (int i = 0; i < 4; i++)
		assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(test_summary_vm(gone[i]), "removed")));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(test_summary_vm("tx"), "exit_reason")->valuestring,
			    "poweroff");
	free(frag);
	free(add);
	free(json);
	free(sock);
}

/* An addition is all or none: the second VM cannot be built (its kernel is
 * not an ELF file), so the first is not kept either, nor its link. */
static void failed_add_leaves_nothing(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	int fd = control_connect(sock);
	assert_true(fd >= 0);
	char *notelf = xasprintf("%s/not.elf", tmp);
	write_file(notelf, "not an ELF file\n");
	char *req = xasprintf("{\"cmd\": \"add\", \"config\": {\"vms\": [{\"name\": \"a\", \"memory_mib\": 32, \"kernel\": \"%s\"},"
			      " {\"name\": \"b\", \"memory_mib\": 32, \"kernel\": \"%s\"}],"
			      " \"links\": [{\"vms\": [\"a\", \"b\"], \"size_mib\": 2}]}}",
			      kernel, notelf);
	cJSON *ans = control_call(fd, req);
	assert_false(answer_ok(ans));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ans, "code")->valuestring, "create_failed");
	expect_contains(cJSON_GetObjectItemCaseSensitive(ans, "error")->valuestring, "not an ELF file");
	cJSON_Delete(ans);
	assert_int_equal(vm_count(fd), 1);
	ans = expect_ok(fd, "{\"cmd\": \"links\"}");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ans, "links")), 0);
	cJSON_Delete(ans);
	/* The names are free again: the same addition with a good kernel works. */
	free(req);
	req = xasprintf("{\"cmd\": \"add\", \"config\": {\"vms\": [{\"name\": \"a\", \"memory_mib\": 32, \"kernel\": \"%s\","
			" \"cmdline\": \"app=idle\"}, {\"name\": \"b\", \"memory_mib\": 32, \"kernel\": \"%s\", \"cmdline\": \"app=idle\"}],"
			" \"links\": [{\"vms\": [\"a\", \"b\"], \"size_mib\": 2}]}}",
			kernel, kernel);
	cJSON_Delete(expect_ok(fd, req));
	assert_int_equal(vm_count(fd), 3);
	/* stop --all ends the run. */
	char *argv[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "stop", "--all", NULL };
	struct cmd_result r = run_cmd(argv, 30);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "stopped 3 VMs");
	cmd_result_free(&r);
	close(fd);
	assert_int_equal(wait_background(pid, 30), 1);
	ferry_pid = -1;
	free(req);
	free(notelf);
	free(sock);
}

/* --- the socket under abuse ---------------------------------------------------- */

struct churn {
	const char *sock;
	atomic_bool stop;
	atomic_ulong connects;
	bool requests_that_wait;   /* also add and remove, answered by the main thread */
};

/* Connects, sends a request, and hangs up: mostly without reading the
 * answer, sometimes before the request is complete. */
static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	static const char *const reqs[] = {
		"{\"cmd\": \"sta", "{\"cmd\": \"status\"}\n", "{\"cmd\": \"metrics\"}\n", "{\"cmd\": \"events\"}\n",
		"{\"cmd\": \"status\", \"vm\": \"vm0\"}\n", "{\"cmd\": \"networks\"}\n",
		/* answered by the main thread, after the client left */
		"{\"cmd\": \"remove\", \"vm\": \"ghost\"}\n", "{\"cmd\": \"budget\", \"memory_mib\": 1}\n",
		"{\"cmd\": \"add\", \"config\": {\"name\": \"vm0\", \"memory_mib\": 32}}\n",
	};
	unsigned n = c->requests_that_wait ? 9 : 6;
	while (!atomic_load(&c->stop)) {
		int fd = control_connect(c->sock);
		if (fd < 0) {
			usleep(1000);
			continue;
		}
		atomic_fetch_add(&c->connects, 1);
		const char *req = reqs[rand_r(&seed) % n];
		if (send(fd, req, strlen(req), MSG_NOSIGNAL) > 0 && rand_r(&seed) % 4 == 0) {
			char buf[256];
			if (read(fd, buf, sizeof(buf)) < 0)
				buf[0] = 0;
		}
		close(fd);
	}
	return NULL;
}

static void run_churn(struct churn *c, pthread_t *threads, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, churn_thread, c), 0);
}

static void end_churn(struct churn *c, pthread_t *threads, unsigned n)
{
	atomic_store(&c->stop, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
}

/* Clients that send and hang up without reading, many at once, and some
 * whose answers come later from the main thread: each write to a gone
 * client used to raise SIGPIPE, which killed ferry and every VM. */
static void clients_that_hang_up(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	struct churn c = { .sock = sock, .requests_that_wait = true };
	pthread_t threads[8];
	run_churn(&c, threads, 8);
	usleep(3000000);
	end_churn(&c, threads, 8);
	assert_true(atomic_load(&c.connects) > 100);
	cJSON *ans = call(sock, "{\"cmd\": \"status\"}");
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

/* Clients that leave while a VM they added is being built, or removed:
 * the work is done all the same, and nothing of the VM is left behind. */
static void clients_vanish_mid_add_and_remove(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	enum { N = 6 };
	for (int i = 0; i < N; i++) {
		char *req = xasprintf("{\"cmd\": \"add\", \"config\": {\"name\": \"v%d\", \"memory_mib\": 32, \"kernel\": \"%s\","
				      " \"cmdline\": \"app=idle\", \"devices\": [{\"type\": \"virtio-balloon\"}]}}\n",
				      i, kernel);
		int fd = control_connect(sock);
		assert_true(fd >= 0);
		assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) > 0);
		close(fd);
		free(req);
	}
	int fd = control_connect(sock);
	for (int i = 0; i < 400 && vm_count(fd) < N + 1; i++)
		usleep(50000);
	assert_int_equal(vm_count(fd), N + 1);
	for (int i = 0; i < N; i++) {
		char *req = xasprintf("{\"cmd\": \"remove\", \"vm\": \"v%d\"}\n", i);
		int c = control_connect(sock);
		assert_true(c >= 0);
		assert_true(send(c, req, strlen(req), MSG_NOSIGNAL) > 0);
		close(c);
		free(req);
	}
	for (int i = 0; i < 400 && vm_count(fd) > 1; i++)
		usleep(50000);
	assert_int_equal(vm_count(fd), 1);
	cJSON *ans = expect_ok(fd, "{\"cmd\": \"status\"}");
	assert_int_equal(at(ans, "host.vms_added"), N);
	assert_int_equal(at(ans, "host.vms_removed"), N);
	cJSON_Delete(ans);
	close(fd);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

/* More idle connections than there are client slots: a new client is still
 * served (the idlest connection makes room). */
static void idle_clients_cannot_lock_others_out(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	enum { IDLE = 40 };
	int fds[IDLE];
	for (int i = 0; i < IDLE; i++) {
		fds[i] = control_connect(sock);
		assert_true(fds[i] >= 0);
	}
	usleep(1200000); /* long enough to count as idle */
	cJSON *ans = call(sock, "{\"cmd\": \"status\"}");
	if (!answer_ok(ans))
		fail_msg("a new client was not served with %d idle connections open", IDLE);
	cJSON_Delete(ans);
	for (int i = 0; i < IDLE; i++)
		close(fds[i]);
	/* Subscribers are not idle, but there are at most 8 of them. */
	int subs[CONTROL_MAX_SUBSCRIBERS + 1];
	for (int i = 0; i <= CONTROL_MAX_SUBSCRIBERS; i++) {
		subs[i] = control_connect(sock);
		assert_true(subs[i] >= 0);
		if (i < CONTROL_MAX_SUBSCRIBERS)
			cJSON_Delete(expect_ok(subs[i], "{\"cmd\": \"events\"}"));
		else
			expect_code(subs[i], "{\"cmd\": \"events\"}", "too_many_subscribers");
	}
	for (int i = 0; i <= CONTROL_MAX_SUBSCRIBERS; i++)
		close(subs[i]);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

/* A paused VM runs no guest code (a guest printing all the time prints
 * nothing), says so in its status, and runs again once resumed. */
static void pause_and_resume(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp), *log = xasprintf("%s/vm0.log", tmp);
	int pid = start_ferry(sock, "app=chatter lines=100000000");
	int fd = control_connect(sock);
	assert_true(fd >= 0);
	assert_string_equal(state_of(fd, "vm0"), "running");
	assert_true(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"vm0\"}"));
	assert_string_equal(state_of(fd, "vm0"), "paused");
	long before = file_size(log);
	usleep(300000);
	assert_int_equal(file_size(log), before);
	assert_true(call_ok(fd, "{\"cmd\": \"resume\", \"vm\": \"vm0\"}"));
	assert_string_equal(state_of(fd, "vm0"), "running");
	for (int i = 0; i < 100 && file_size(log) == before; i++)
		usleep(20000);
	assert_true(file_size(log) > before);
	/* Stopping a paused VM works too. */
	assert_true(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"vm0\"}"));
	close(fd);
	stop_vm_and_wait(sock, pid);
	free(sock);
	free(log);
}

/* Clients connect and hang up all through start-up, the run and shutdown
 * (the VM powers off on its own while they churn). Under ASan this found a
 * use-after-free in the socket's teardown. */
static void churn_through_start_and_shutdown(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	struct churn c = { .sock = sock, .requests_that_wait = true };
	pthread_t threads[4];
	run_churn(&c, threads, 4);
	for (int round = 0; round < 3; round++) {
		char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline",
				 "app=idle ms=300", "--control", sock, "--log-dir", tmp, NULL };
		int pid = spawn_background(argv);
		assert_int_equal(wait_background(pid, 30), 0);
	}
	end_churn(&c, threads, 4);
	assert_true(atomic_load(&c.connects) > 0);
	free(sock);
}

/* `ferry ctl` prints readable text, and JSON with --json; refusals exit 1
 * with the code and message. */
static void ctl_text_and_json(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	char *list[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "list", NULL };
	struct cmd_result r = run_cmd(list, 30);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "vm0");
	expect_contains(r.out, "running");
	cmd_result_free(&r);
	char *json[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "--json", "status", NULL };
	r = run_cmd(json, 30);
	assert_int_equal(r.status, 0);
	cJSON *ans = cJSON_Parse(r.out);
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	cmd_result_free(&r);
	char *bad[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "pause", "nobody", NULL };
	r = run_cmd(bad, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "no VM named \"nobody\" (no_such_vm)");
	cmd_result_free(&r);
	char *usage[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "balloon", "vm0", NULL };
	r = run_cmd(usage, 30);
	assert_int_equal(r.status, 2);
	cmd_result_free(&r);
	char *events[] = { (char *)ferry_bin(), "ctl", "--socket", sock, "events", "--replay", "--count", "1", NULL };
	r = run_cmd(events, 30);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "vm-started");
	cmd_result_free(&r);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	/* A ferry that ends while a test still talks to it is a failed
	 * assertion, not a dead test binary. */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		T(every_command_and_its_errors),
		T(add_and_remove_under_traffic),
		T(failed_add_leaves_nothing),
		T(clients_that_hang_up),
		T(clients_vanish_mid_add_and_remove),
		T(idle_clients_cannot_lock_others_out),
		T(pause_and_resume),
		T(churn_through_start_and_shutdown),
		T(ctl_text_and_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
