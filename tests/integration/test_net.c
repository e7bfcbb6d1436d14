/* Networking under ferry with ferry-guest's stack: the one-copy path, the
 * zero-copy path (cross-talk detected, channels bound), the switch-over
 * between them while traffic flows (no datagram lost or duplicated), a NIC
 * without the zero-copy feature beside ones with it, and the TAP port,
 * reached from a network namespace the test makes with the host's own ping
 * and socat. Every datagram is checked by the guests (sequence numbers and
 * checksums); the tests check what happened, never how fast. */
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
static char kernel[PATH_MAX];

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	return 0;
}

#define teardown test_dir_teardown

static char *write_config(const char *json)
{
	char *cfg = xasprintf("%s/config.json", tmp);
	write_file(cfg, json);
	return cfg;
}

static struct cmd_result run_config(const char *json, const char *const *extra)
{
	char *cfg = write_config(json), *summary = xasprintf("%s/summary.json", tmp), *logs = xasprintf("%s/logs", tmp);
	char *argv[16] = { (char *)ferry_bin(), "run", cfg, "--console", "--summary", summary, "--log-dir", logs };
	int n = 8;
	for (; extra && *extra && n < 15; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	struct cmd_result r = run_cmd(argv, 120);
	free(cfg);
	free(summary);
	free(logs);
	return r;
}

static void expect_ok(struct cmd_result *r)
{
	if (r->status != 0)
		fail_msg("ferry exited %d:\n%s\n%s", r->status, r->out, r->err);
}

/* The udpbulk result line of a VM: received=N lost=0 duplicated=0 corrupt=0. */
static void expect_bulk_clean(const char *out, const char *vm, unsigned count)
{
	char *tag = xasprintf("[%s] udpbulk: role=", vm);
	const char *line = strstr(out, tag);
	free(tag);
	if (!line)
		fail_msg("no udpbulk result from %s in:\n%s", vm, out);
	char *want = xasprintf("received=%u lost=0 duplicated=0", count);
	const char *end = strchr(line, '\n');
	if (!strstr(line, want) || !strstr(line, "corrupt=0") || (end && strstr(line, want) > end))
		fail_msg("%s: expected %s, corrupt=0:\n%.*s", vm, want, end ? (int)(end - line) : 200, line);
	free(want);
}

static double net(const char *vm, const char *key)
{
	char *path = xasprintf("counters.net.%s", key);
	double v = json_num(test_summary_vm(vm), path);
	free(path);
	return v;
}

/* Drops other than to a VM that had already powered off (the last frames
 * of a run can be for a peer that finished first). */
static double bad_drops(const char *vm)
{
	return net(vm, "dropped.total") - net(vm, "dropped.receiver_down");
}

#define PAIR(zc, recv_extra, send_args)                                                                      \
	"{ \"networks\": { \"lan0\": { \"zero_copy\": " zc " } }, \"vms\": ["                                  \
	" { \"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=recv ip=10.0.0.2/24" \
	recv_extra "\", \"nics\": [ { \"network\": \"lan0\" } ] },"                                            \
	" { \"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=send ip=10.0.0.1/24" \
	" peer=10.0.0.2 " send_args "\", \"nics\": [ { \"network\": \"lan0\" } ] } ] }"

/* A network without zero copy: every frame is copied once, by ferry, from
 * the sender's buffer into the receiver's. */
static void one_copy_path(void **state)
{
	(void)state;
	require_kvm();
	for (int big = 0; big < 2; big++) {
		char *json = xasprintf(PAIR("false", "", "size=%d count=3000"), kernel, kernel, big ? 1472 : 64);
		struct cmd_result r = run_config(json, NULL);
		free(json);
		expect_ok(&r);
		expect_bulk_clean(r.out, "b", 3000);
		cmd_result_free(&r);
		assert_true(net("a", "frames_one_copy") >= 3000);
		assert_int_equal(net("a", "frames_zero_copy"), 0);
		assert_int_equal(net("a", "crosstalk_detected") + net("b", "crosstalk_detected"), 0);
		assert_true(net("a", "bytes_copied_by_host") >= 3000.0 * (big ? 1472 : 64));
		assert_int_equal(bad_drops("a") + bad_drops("b"), 0);
	}
}

/* Both drivers take the feature: the first unicast frame between them is
 * detected as cross-talk, a channel of each is bound onto shared memory,
 * and from then on frames move without the host copying them. */
static void zero_copy_path(void **state)
{
	(void)state;
	require_kvm();
	for (int big = 0; big < 2; big++) {
		char *json = xasprintf(PAIR("true", "", "size=%d count=5000"), kernel, kernel, big ? 1472 : 64);
		struct cmd_result r = run_config(json, NULL);
		free(json);
		expect_ok(&r);
		expect_bulk_clean(r.out, "b", 5000);
		cmd_result_free(&r);
		assert_true(net("a", "crosstalk_detected") + net("b", "crosstalk_detected") >= 1);
		assert_true(net("a", "remaps") + net("b", "remaps") >= 4);
		/* A handful of frames (ARP, the first probe) before the binding. */
		assert_true(net("a", "frames_zero_copy") >= 4990);
		assert_true(net("a", "frames_one_copy") <= 10);
		assert_true(net("a", "bytes_copied_by_host") < 20000);
		assert_int_equal(bad_drops("a") + bad_drops("b"), 0);
		assert_int_equal(net("b", "writes_to_receive_areas"), 0);
	}
}

/* One VM talks to several peers at once: a channel per peer, each client's
 * echoes checked byte for byte. */
static void one_vm_many_peers(void **state)
{
	(void)state;
	require_kvm();
	char *vms = xasprintf(" { \"name\": \"echo\", \"memory_mib\": 64, \"kernel\": \"%s\","
			      " \"cmdline\": \"app=udpecho ip=10.0.0.1/24 count=1200\", \"nics\": [ { \"network\": \"lan0\" } ] }",
			      kernel);
	for (int i = 0; i < 4; i++) {
		char *more = xasprintf("%s, { \"name\": \"c%d\", \"memory_mib\": 64, \"kernel\": \"%s\","
				       " \"cmdline\": \"app=udpecho peer=10.0.0.1 count=300 size=1000 ip=10.0.0.%d/24\","
				       " \"nics\": [ { \"network\": \"lan0\" } ] }",
				       vms, i, kernel, 10 + i);
		free(vms);
		vms = more;
	}
	char *json = xasprintf("{ \"networks\": { \"lan0\": {} }, \"vms\": [%s ] }", vms);
	free(vms);
	struct cmd_result r = run_config(json, NULL);
	free(json);
	expect_ok(&r);
	cmd_result_free(&r);
	/* A handful of frames (ARP, the frame that revealed each pair) copied. */
	assert_true(net("echo", "frames_zero_copy") >= 1190);
	assert_true(net("echo", "crosstalk_detected") + net("c0", "crosstalk_detected") + net("c1", "crosstalk_detected") +
			    net("c2", "crosstalk_detected") + net("c3", "crosstalk_detected") == 4);
	assert_true(net("c0", "frames_zero_copy") >= 298);
	assert_true(net("c3", "frames_zero_copy") >= 298);
}

/* Detection from configuration ("bind": "at_start", claim 8): the pair is
 * bound when the second driver starts, so even the first unicast frame
 * (the ARP answer) crosses without a copy; only broadcasts are copied. */
static void bound_at_start(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"networks\": { \"lan0\": { \"bind\": \"at_start\" } }, \"vms\": ["
		" { \"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=recv ip=10.0.0.2/24\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] },"
		" { \"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 count=2000\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
		kernel, kernel);
	struct cmd_result r = run_config(json, NULL);
	free(json);
	expect_ok(&r);
	expect_bulk_clean(r.out, "b", 2000);
	cmd_result_free(&r);
	assert_int_equal(net("a", "crosstalk_detected") + net("b", "crosstalk_detected"), 1);
	/* a's ARP request, the only frame it copies; b's answer went on the channel. */
	assert_int_equal(net("a", "frames_one_copy"), 1);
	assert_int_equal(net("b", "frames_one_copy"), 0);
	assert_true(net("a", "frames_zero_copy") >= 2000);
}

/* Ping over a channel the receiver's own first reply (its ARP answer) had
 * bound: every echo comes back (it once halted unseen by its new peer, and
 * the first echoes were lost). Three runs, as the race was timing's; the
 * server runs for a fixed time, so that its waits are long. */
static void ping_over_zero_copy(void **state)
{
	(void)state;
	require_kvm();
	for (int run = 0; run < 3; run++) {
		char *json = xasprintf(
			"{ \"networks\": { \"lan0\": {} }, \"vms\": ["
			" { \"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpecho ip=10.0.0.2/24 ms=2500\","
			"   \"nics\": [ { \"network\": \"lan0\" } ] },"
			" { \"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=ping ip=10.0.0.1/24 peer=10.0.0.2 count=10 interval_ms=0\","
			"   \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
			kernel, kernel);
		struct cmd_result r = run_config(json, NULL);
		free(json);
		expect_ok(&r);
		if (!strstr(r.out, "sent=10 received=10 lost=0 corrupt=0"))
			fail_msg("%s", r.out);
		cmd_result_free(&r);
		assert_true(net("a", "frames_zero_copy") >= 9);
	}
}

/* While a stream flows, the control socket ends the binding: the sender's
 * frames go back to the copy path (frames already posted on the channel
 * are delivered first), the detector binds again on the next frame, and
 * the receiver sees every datagram once. Three times over. */
static void switch_over_while_traffic_flows(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp), *logs = xasprintf("%s/logs", tmp);
	char *summary = xasprintf("%s/summary.json", tmp);
	char *json = xasprintf(PAIR("true", "", "size=1472 count=300000"), kernel, kernel);
	char *cfg = write_config(json);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--console", "--summary", summary, "--log-dir", logs,
			 "--control", sock, NULL };
	int pid = spawn_background(argv);
	int unbound = 0;
	for (int i = 0; i < 400 && unbound < 3; i++) {
		usleep(25000);
		int fd = control_connect(sock);
		if (fd < 0)
			continue;
		cJSON *ans = control_call(fd, "{\"cmd\": \"net-unbind\", \"vm\": \"a\"}");
		close(fd);
		cJSON *n = ans ? cJSON_GetObjectItem(ans, "unbound") : NULL;
		if (cJSON_IsNumber(n) && n->valuedouble > 0) {
			unbound++;
			usleep(50000);
		}
		cJSON_Delete(ans);
	}
	int st = wait_background(pid, 90);
	char *out = read_file(xasprintf("%s/b.log", logs)), *aout = read_file(xasprintf("%s/a.log", logs));
	if (st != 0 || unbound < 3)
		fail_msg("ferry exited %d after %d unbindings; b's console:\n%s\na's console:\n%s", st, unbound, out ? out : "",
			 aout ? aout : "");
	free(aout);
	/* The log has the guest's lines without the [b] prefix. */
	const char *line = out ? strstr(out, "udpbulk: role=recv") : NULL;
	if (!line || !strstr(line, "received=300000 lost=0 duplicated=0") || !strstr(line, "corrupt=0"))
		fail_msg("b's console:\n%s", out ? out : "");
	free(out);
	cJSON *a = summary_find_vm(summary, "a");
	assert_true(json_num(a, "counters.net.unbinds") >= 3);
	assert_true(json_num(a, "counters.net.frames_zero_copy") > 1000);
	assert_true(json_num(a, "counters.net.frames_one_copy") >= 1);
	assert_int_equal(json_num(a, "counters.net.dropped.total") - json_num(a, "counters.net.dropped.receiver_down"), 0);
	free(sock);
	free(logs);
	free(summary);
	free(json);
	free(cfg);
}

/* The receiver stops reading for 1.5 s (as a VM not scheduled would) while
 * its sender streams unpaced: the sender's ring fills, and its driver drops
 * frames (as a NIC with a full queue does) instead of waiting; ferry ends
 * the binding after half a second, and later frames take the copy path,
 * where they wait in the receiver's queue or are dropped there when it is
 * full. Once awake, the receiver reads the frames left in the channel
 * before the copy path's later ones: nothing lost but what the sender's
 * stack and ferry dropped and counted, nothing out of order. */
static void receiver_stops_reading_mid_stream(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(PAIR("true", " stall_at=20000 stall_ms=1500 max_loss=1000000",
				    "size=1472 count=200000 window=0 max_loss=1000000"),
			       kernel, kernel);
	struct cmd_result r = run_config(json, NULL);
	free(json);
	expect_ok(&r);
	const char *line = strstr(r.out, "[b] udpbulk: role=recv"), *sdrop = strstr(r.out, "[a] udpbulk: ");
	unsigned long received = 0, lost = 0, sender_drops = 0;
	if (!line || sscanf(strstr(line, "received="), "received=%lu lost=%lu", &received, &lost) != 2 ||
	    !strstr(line, "duplicated=0 reordered=0 corrupt=0") || !sdrop)
		fail_msg("%s", r.out);
	if (sscanf(sdrop, "[a] udpbulk: %lu datagrams dropped on sending", &sender_drops) != 1)
		sender_drops = 0;
	cmd_result_free(&r);
	double stalls = net("a", "stalls"), unbinds = net("a", "unbinds"), ferry_drops = net("b", "dropped.no_buffer");
	/* Every datagram not received was dropped, by a's stack or by ferry at
	 * b's full queue, and counted (ferry's count may include a's control
	 * messages); b read at least what was left in the channel. */
	if (stalls < 1 || unbinds < 1 || received + lost != 200000 || lost < sender_drops ||
	    lost > sender_drops + ferry_drops || received < 20000 + 254)
		fail_msg("stalls %.0f unbinds %.0f received %lu lost %lu; dropped by a's stack %lu, by ferry %.0f", stalls,
			 unbinds, received, lost, sender_drops, ferry_drops);
}

/* A driver without the feature (net_zc=0) beside two with it: it talks to
 * them over the one-copy path, they talk to each other over a channel. */
static void mixed_drivers(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf(
		"{ \"networks\": { \"lan0\": {} }, \"vms\": ["
		" { \"name\": \"echo\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpecho ip=10.0.0.1/24 idle_ms=3000\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] },"
		" { \"name\": \"zc\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpecho peer=10.0.0.1 count=200 ip=10.0.0.2/24\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] },"
		" { \"name\": \"plain\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=udpecho peer=10.0.0.1 count=200 ip=10.0.0.3/24 net_zc=0\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
		kernel, kernel, kernel);
	struct cmd_result r = run_config(json, NULL);
	free(json);
	expect_ok(&r);
	cmd_result_free(&r);
	assert_true(net("zc", "frames_zero_copy") >= 190);
	assert_int_equal(net("plain", "frames_zero_copy"), 0);
	assert_true(net("plain", "frames_one_copy") >= 200);
	assert_false(json_num(test_summary_vm("plain"), "counters.net.crosstalk_detected") > 0);
}

/* A namespace of the test's own, with ferry's TAP in it: the host's ping
 * reaches the guest, and socat exchanges UDP datagrams with its echo
 * server. Nothing touches the host's own network. */
static void tap_from_a_namespace(void **state)
{
	(void)state;
	require_kvm();
	char ns[32];
	snprintf(ns, sizeof(ns), "ferry-t%d", getpid());
	char *add[] = { "ip", "netns", "add", ns, NULL };
	struct cmd_result r = run_cmd(add, 10);
	if (r.status != 0)
		fail_msg("ip netns add: %s", r.err);
	cmd_result_free(&r);
	char *json = xasprintf("{ \"networks\": { \"lan0\": { \"tap\": \"ferry-t0\", \"address\": \"10.77.0.1/24\" } },"
			       " \"vms\": [ { \"name\": \"g\", \"memory_mib\": 64, \"kernel\": \"%s\","
			       " \"cmdline\": \"app=udpecho ip=10.77.0.2/24 ms=6000\", \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
			       kernel);
	char *cfg = write_config(json), *summary = xasprintf("%s/summary.json", tmp), *logs = xasprintf("%s/logs", tmp);
	char *argv[] = { "ip", "netns", "exec", ns, (char *)ferry_bin(), "run", cfg, "--summary", summary, "--log-dir",
			 logs, NULL };
	int pid = spawn_background(argv);
	/* The TAP first (ferry makes it before the VM starts), then ping,
	 * which waits up to 5 s for the guest. */
	char *show = xasprintf("ip netns exec %s ip -o -4 addr show dev ferry-t0 | grep -q 10.77.0.1", ns);
	char *showv[] = { "sh", "-c", show, NULL };
	for (int i = 0; i < 100; i++) {
		struct cmd_result t = run_cmd(showv, 5);
		int ok = t.status == 0;
		cmd_result_free(&t);
		if (ok)
			break;
		usleep(50000);
	}
	free(show);
	char *ping[] = { "ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "5", "10.77.0.2", NULL };
	struct cmd_result p = run_cmd(ping, 20);
	char *sh = xasprintf("echo ferry-says-hello | ip netns exec %s socat -t 2 - UDP:10.77.0.2:7", ns);
	char *shv[] = { "sh", "-c", sh, NULL };
	struct cmd_result s = run_cmd(shv, 20);
	int st = wait_background(pid, 30);
	char *del[] = { "ip", "netns", "del", ns, NULL };
	struct cmd_result d = run_cmd(del, 10);
	cmd_result_free(&d);
	if (p.status != 0)
		fail_msg("ping from the namespace failed:\n%s%s", p.out, p.err);
	expect_contains(p.out, "3 received");
	if (s.status != 0 || !strstr(s.out, "ferry-says-hello"))
		fail_msg("socat got no echo: %d\n%s%s", s.status, s.out, s.err);
	assert_int_equal(st, 0);
	cJSON *g = summary_find_vm(summary, "g");
	assert_true(json_num(g, "counters.net.frames_external") >= 4);
	/* The summary's networks section: the TAP's side of it (3 pings and
	 * the datagram came in through it). */
	cJSON *root = load_json(summary), *net0 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "networks"), 0);
	assert_non_null(net0);
	assert_string_equal(cJSON_GetObjectItem(net0, "name")->valuestring, "lan0");
	assert_true(json_num(net0, "tap.frames_tx") >= 4);
	assert_true(json_num(net0, "tap.frames_rx") >= 4);
	cJSON_Delete(root);
	cmd_result_free(&p);
	cmd_result_free(&s);
	free(sh);
	free(json);
	free(cfg);
	free(summary);
	free(logs);
}

/* A TAP that cannot be made is a clear error at start-up. */
/* The TAP is deleted under a running network: ferry says so once, drops
 * (and counts) what VMs send outside from then on, and the VMs talking
 * among themselves carry on. */
static void tap_vanishes(void **state)
{
	(void)state;
	require_kvm();
	char ns[32];
	snprintf(ns, sizeof(ns), "ferry-v%d", getpid());
	char *add[] = { "ip", "netns", "add", ns, NULL };
	struct cmd_result r = run_cmd(add, 10);
	if (r.status != 0)
		fail_msg("ip netns add: %s", r.err);
	cmd_result_free(&r);
	char *json = xasprintf(
		"{ \"networks\": { \"lan0\": { \"tap\": \"ferry-v0\", \"address\": \"10.77.0.1/24\" } }, \"vms\": ["
		" { \"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=recv ip=10.77.0.2/24\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] },"
		" { \"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=udpbulk role=send ip=10.77.0.3/24 peer=10.77.0.2 count=200000\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] },"
		" { \"name\": \"p\", \"memory_mib\": 64, \"kernel\": \"%s\","
		"   \"cmdline\": \"app=ping ip=10.77.0.4/24 peer=10.77.0.1 count=60 interval_ms=20 timeout_ms=100\","
		"   \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
		kernel, kernel, kernel);
	char *cfg = write_config(json), *summary = xasprintf("%s/summary.json", tmp), *logs = xasprintf("%s/logs", tmp);
	char *err = xasprintf("%s/ferry.err", tmp);
	char *cmd = xasprintf("ip netns exec %s %s run %s --summary %s --log-dir %s 2>%s", ns, ferry_bin(), cfg, summary,
			      logs, err);
	char *argv[] = { "sh", "-c", cmd, NULL };
	int pid = spawn_background(argv);
	/* Once p has had answers from the host through the TAP, delete it. */
	char *plog = xasprintf("%s/p.log", logs);
	for (int i = 0; i < 200; i++) {
		char *t = read_file(plog);
		bool answered = t && strstr(t, "56 bytes from 10.77.0.1");
		free(t);
		if (answered)
			break;
		usleep(50000);
	}
	char *del_tap[] = { "ip", "netns", "exec", ns, "ip", "link", "del", "ferry-v0", NULL };
	struct cmd_result d = run_cmd(del_tap, 10);
	int st = wait_background(pid, 60);
	char *del[] = { "ip", "netns", "del", ns, NULL };
	struct cmd_result dn = run_cmd(del, 10);
	cmd_result_free(&dn);
	if (d.status != 0)
		fail_msg("ip link del: %s", d.err);
	cmd_result_free(&d);
	char *e = read_file(err);
	/* p's pings after the deletion are lost: its failure is ferry's 1. */
	if (st != 1 || !e || !strstr(e, "net: TAP ferry-v0 failed") || strstr(strstr(e, "failed") + 1, "TAP ferry-v0 failed"))
		fail_msg("ferry exited %d; its messages:\n%s", st, e ? e : "");
	free(e);
	cJSON *p = summary_find_vm(summary, "p");
	assert_int_equal(json_num(p, "exit_code"), 1);
	assert_true(json_num(p, "counters.net.frames_external") >= 1);
	assert_true(json_num(p, "counters.net.dropped.tap") >= 1);
	cJSON *b = summary_find_vm(summary, "b");
	assert_int_equal(json_num(b, "exit_code"), 0);
	char *blog = read_file(xasprintf("%s/b.log", logs));
	if (!blog || !strstr(blog, "received=200000 lost=0 duplicated=0 reordered=0 corrupt=0"))
		fail_msg("b:\n%s", blog ? blog : "");
	free(blog);
	free(plog);
	free(cmd);
	free(err);
	free(json);
	free(cfg);
	free(summary);
	free(logs);
}

static void bad_tap(void **state)
{
	(void)state;
	require_kvm();
	char *json = xasprintf("{ \"networks\": { \"lan0\": { \"tap\": \"lo\" } }, \"vms\": [ { \"name\": \"g\","
			       " \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=hello\","
			       " \"nics\": [ { \"network\": \"lan0\" } ] } ] }",
			       kernel);
	struct cmd_result r = run_config(json, NULL);
	free(json);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "networks.lan0: tap lo: cannot create it");
	cmd_result_free(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(one_copy_path), T(zero_copy_path), T(ping_over_zero_copy), T(bound_at_start), T(one_vm_many_peers), T(switch_over_while_traffic_flows),
		T(receiver_stops_reading_mid_stream), T(mixed_drivers),
		T(tap_from_a_namespace), T(tap_vanishes), T(bad_tap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
