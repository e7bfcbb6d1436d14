/* ferry-guest's virtio-net driver and network stack against QEMU's
 * virtio-net-pci (modern only), the reference device.
 *
 * Guest to guest: two q35 VMs whose NICs are joined by QEMU's "dgram"
 * netdev, each sending its frames as UDP datagrams to the other's port on
 * 127.0.0.1 (ports picked free for each test): nothing but loopback. ping,
 * udpecho and udpbulk run over it; udpbulk verifies every datagram.
 *
 * Host to guest: a network namespace the test creates, with a TAP device in
 * it that QEMU (started inside the namespace) uses; the host's own ping and
 * socat talk to the guest there. Needs root, iproute2, ping and socat
 * (make test installs them); the namespace and its TAP go away at the end.
 *
 * QEMU reports a guest status s as exit code (s << 1) | 1: 1 means 0. */
#include "helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VMS 4

static int pids[MAX_VMS];
static unsigned npids;
static char netns[64];
static const char *nic_extra = "";   /* more virtio-net-pci properties */

/* A UDP port on 127.0.0.1 that is free right now. */
static int free_udp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), port;

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &len))
		fail_msg("cannot find a free UDP port");
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int setup(void **state)
{
	test_dir_setup(state);
	char *logs = xasprintf("%s/logs", test_dir);
	int made = mkdir(logs, 0700);
	free(logs);
	npids = 0;
	netns[0] = '\0';
	nic_extra = "";
	return made;
}

static int teardown(void **state)
{
	for (unsigned i = 0; i < npids; i++)
		wait_background(pids[i], 0);  /* kills what is still running */
	if (netns[0]) {
		char *argv[] = { "ip", "netns", "del", netns, NULL };
		struct cmd_result r = run_cmd(argv, 10);
		cmd_result_free(&r);
	}
	return test_dir_teardown(state);
}

/* Starts a q35 VM named name with one virtio-net-pci (MAC ...:0N) on the
 * given netdev; its console goes to test_dir/logs/NAME.log. With ns, QEMU
 * runs inside that network namespace. */
static int start_vm(const char *ns, const char *name, unsigned mac, const char *netdev, const char *cmdline)
{
	char *append = xasprintf("%s vm=%s", cmdline, name);
	char *serial = xasprintf("file:%s/logs/%s.log", test_dir, name);
	char *nic = xasprintf("virtio-net-pci,netdev=n0,disable-legacy=on,romfile=,mac=52:54:00:00:00:%02x%s", mac,
			      nic_extra);
	char *argv[40];
	int n = 0;

	if (ns) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = (char *)ns;
	}
	char *qemu[] = { "qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "128M", "-nodefaults",
			 "-no-user-config", "-display", "none", "-serial", serial, "-monitor", "none", "-no-reboot",
			 "-kernel", (char *)guest_image(), "-append", append, "-device", "isa-debug-exit,iobase=0x501",
			 "-netdev", (char *)netdev, "-device", nic, NULL };
	for (char **p = qemu; *p; p++)
		argv[n++] = *p;
	argv[n] = NULL;
	assert_true(npids < MAX_VMS);
	int pid = spawn_background(argv);
	pids[npids++] = pid;
	free(append);
	free(serial);
	free(nic);
	return pid;
}

/* Two VMs on a dgram link; runs both to the end and fails unless both exit
 * with status 0. Their consoles come back in *a_out and *b_out. */
static void run_pair(const char *a_cmd, const char *b_cmd, char **a_out, char **b_out)
{
	int pa = free_udp_port(), pb;

	while ((pb = free_udp_port()) == pa)
		;
	char *na = xasprintf("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,"
			     "remote.type=inet,remote.host=127.0.0.1,remote.port=%d", pa, pb);
	char *nb = xasprintf("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,"
			     "remote.type=inet,remote.host=127.0.0.1,remote.port=%d", pb, pa);
	int a = start_vm(NULL, "a", 1, na, a_cmd), b = start_vm(NULL, "b", 2, nb, b_cmd);
	int sa = wait_background(a, 180), sb = wait_background(b, 60);

	free(na);
	free(nb);
	*a_out = test_console_log("a");
	*b_out = test_console_log("b");
	if (sa != 1 || sb != 1)
		fail_msg("expected exit 1 from both VMs, got a %d, b %d\n--- a:\n%s\n--- b:\n%s", sa, sb, *a_out, *b_out);
}

/* The line of out that starts with prefix (a static copy), or fails. */
static const char *line_of(const char *out, const char *prefix)
{
	static char line[1024];
	const char *p = strstr(out, prefix);

	if (!p)
		fail_msg("no \"%s\" line in:\n%s", prefix, out);
	size_t n = strcspn(p, "\n");
	snprintf(line, sizeof(line), "%.*s", (int)n, p);
	return line;
}

/* A number after "key=" in line, or fails. */
static double field(const char *line, const char *key)
{
	char *k = xasprintf(" %s=", key);
	const char *p = strstr(line, k);

	free(k);
	if (!p)
		fail_msg("no %s= in \"%s\"", key, line);
	return strtod(p + strlen(key) + 2, NULL);
}

static void selftest_lists_the_nic(void **state)
{
	(void)state;
	require_qemu();
	int port = free_udp_port();
	char *nd = xasprintf("dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=%d,remote.type=inet,"
			     "remote.host=127.0.0.1,remote.port=%d", port, port);
	int st = wait_background(start_vm(NULL, "s", 7, nd, "app=selftest require=virtio-net"), 120);
	char *out = test_console_log("s");
	free(nd);
	if (st != 1)
		fail_msg("selftest exited %d:\n%s", st, out);
	expect_contains(out, "selftest: net: eth0 52:54:00:00:00:07 mtu 1500 link up, 1 queue pair, 256+256 buffers, MSI-X");
	expect_contains(out, "virtio-net: eth0 52:54:00:00:00:07 mtu 1500 link up");
	expect_contains(out, "selftest: net ok");
	free(out);
}

static void missing_nic_fails(void **state)
{
	(void)state;
	require_qemu();
	char *argv[] = { "qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-m", "128M", "-nographic", "-no-reboot",
			 "-net", "none", "-kernel", (char *)guest_image(), "-append", "app=selftest require=virtio-net",
			 "-device", "isa-debug-exit,iobase=0x501", NULL };
	struct cmd_result r = run_cmd(argv, 120);
	if (r.status != 3 || !strstr(r.out, "net FAILED: virtio-net required but not present"))
		fail_msg("expected exit 3 and a reason, got %d:\n%s", r.status, r.out);
	cmd_result_free(&r);
}

static void ping_between_guests(void **state)
{
	(void)state;
	require_qemu();
	char *a, *b;
	run_pair("app=ping ip=10.0.0.1/24 peer=10.0.0.2 count=20 interval_ms=20",
		 "app=udpecho ip=10.0.0.2/24 idle_ms=3000", &a, &b);
	const char *l = line_of(a, "ping: peer=10.0.0.2");
	if (field(l, "received") != 20 || field(l, "lost") != 0 || field(l, "corrupt") != 0)
		fail_msg("ping: %s", l);
	expect_contains(a, "ping: 56 bytes from 10.0.0.2: seq=19 rtt_us=");
	printf("# %s\n", l);
	free(a);
	free(b);
}

static void udpecho_between_guests(void **state)
{
	(void)state;
	require_qemu();
	char *a, *b;
	run_pair("app=udpecho ip=10.0.0.1/24 peer=10.0.0.2 port=7000 count=50 size=1000",
		 "app=udpecho ip=10.0.0.2/24 port=7000 count=50", &a, &b);
	const char *l = line_of(a, "udpecho: peer=10.0.0.2");
	if (field(l, "received") != 50 || field(l, "lost") != 0 || field(l, "corrupt") != 0)
		fail_msg("udpecho: %s", l);
	expect_contains(b, "udpecho: echoed=50 bytes=50000 send_failures=0");
	printf("# %s\n", l);
	free(a);
	free(b);
}

/* Both ends print the receiver's verdict; every datagram must be there once,
 * in order and intact. */
static void bulk(unsigned size, unsigned count)
{
	char *send = xasprintf("app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 size=%u count=%u", size, count);
	char *a, *b;

	run_pair(send, "app=udpbulk role=recv ip=10.0.0.2/24", &a, &b);
	for (int side = 0; side < 2; side++) {
		const char *l = line_of(side ? b : a, side ? "udpbulk: role=recv" : "udpbulk: role=send");
		if (field(l, "size") != size || field(l, "sent") != count || field(l, "received") != count ||
		    field(l, "lost") != 0 || field(l, "duplicated") != 0 || field(l, "reordered") != 0 ||
		    field(l, "corrupt") != 0 || field(l, "mbps") <= 0)
			fail_msg("udpbulk: %s", l);
		if (!side)
			printf("# %s\n", l);
	}
	expect_contains(b, "drops: none");
	free(send);
	free(a);
	free(b);
}

static void udpbulk_64(void **state)
{
	(void)state;
	require_qemu();
	bulk(64, 20000);
}

static void udpbulk_1472(void **state)
{
	(void)state;
	require_qemu();
	bulk(1472, 20000);
}

/* QEMU offers VIRTIO_NET_F_MTU with host_mtu: the driver sizes its buffers
 * for 9000-byte frames and udpbulk bounds its window in bytes, so nothing
 * overflows the host's socket buffer on the way. */
static void udpbulk_jumbo_mtu(void **state)
{
	(void)state;
	require_qemu();
	nic_extra = ",host_mtu=9000";
	char *a, *b;
	run_pair("app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 size=8972 count=5000",
		 "app=udpbulk role=recv ip=10.0.0.2/24", &a, &b);
	expect_contains(a, "virtio-net: eth0 52:54:00:00:00:01 mtu 9000 link up, 1 queue pair, 115+115 buffers of 9088 bytes");
	const char *l = line_of(b, "udpbulk: role=recv");
	if (field(l, "received") != 5000 || field(l, "lost") != 0 || field(l, "corrupt") != 0)
		fail_msg("udpbulk: %s", l);
	printf("# %s\n", l);
	free(a);
	free(b);
}

/* --- TAP in a namespace of our own --- */

/* Runs argv inside the test's namespace; the result (caller frees). */
static struct cmd_result in_ns(double timeout_s, char *const *argv)
{
	char *full[32];
	int n = 0;

	full[n++] = "ip";
	full[n++] = "netns";
	full[n++] = "exec";
	full[n++] = netns;
	for (; *argv && n < 31; argv++)
		full[n++] = *argv;
	full[n] = NULL;
	return run_cmd(full, timeout_s);
}

static void must(struct cmd_result r, const char *what)
{
	if (r.status != 0)
		fail_msg("%s failed (%d): %s%s", what, r.status, r.out, r.err);
	cmd_result_free(&r);
}

/* A namespace with tap0 at 10.99.0.1/24, up, for QEMU to attach to. */
static void make_netns(void)
{
	if (geteuid() != 0)
		skip();  /* namespaces and TAP devices need root */
	if (access("/usr/bin/socat", X_OK) || access("/usr/bin/ping", X_OK) ||
	    (access("/usr/sbin/ip", X_OK) && access("/usr/bin/ip", X_OK)))
		fail_msg("ip, ping and socat are needed (make test installs iproute2, iputils-ping and socat)");
	snprintf(netns, sizeof(netns), "ferry-test-%d", (int)getpid());
	char *add[] = { "ip", "netns", "add", netns, NULL };
	must(run_cmd(add, 10), "ip netns add");
	must(in_ns(10, (char *[]){ "ip", "link", "set", "lo", "up", NULL }), "lo up");
	/* No IPv6 on the TAP: its router solicitations would keep the guest's
	 * idle timer from running out. */
	struct cmd_result r = in_ns(10, (char *[]){ "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1", NULL });
	cmd_result_free(&r);
	must(in_ns(10, (char *[]){ "ip", "tuntap", "add", "dev", "tap0", "mode", "tap", NULL }), "ip tuntap add");
	must(in_ns(10, (char *[]){ "ip", "addr", "add", "10.99.0.1/24", "dev", "tap0", NULL }), "ip addr add");
	must(in_ns(10, (char *[]){ "ip", "link", "set", "tap0", "up", NULL }), "tap0 up");
}

#define TAP_NETDEV "tap,id=n0,ifname=tap0,script=no,downscript=no"

/* The host's ping reaches the guest, and socat's datagrams come back. */
static void host_pings_and_echoes_through_tap(void **state)
{
	(void)state;
	require_qemu();
	make_netns();
	int vm = start_vm(netns, "g", 3, TAP_NETDEV, "app=udpecho ip=10.99.0.2/24 idle_ms=4000 ms=120000");

	/* The guest takes a few seconds to boot: ping until it answers. */
	struct cmd_result r = { .status = -1 };
	for (int i = 0; i < 60 && r.status != 0; i++) {
		cmd_result_free(&r);
		r = in_ns(10, (char *[]){ "ping", "-c", "1", "-W", "1", "10.99.0.2", NULL });
	}
	if (r.status != 0)
		fail_msg("the guest never answered a ping: %s%s", r.out, r.err);
	cmd_result_free(&r);
	r = in_ns(30, (char *[]){ "ping", "-c", "10", "-i", "0.05", "-W", "2", "10.99.0.2", NULL });
	if (r.status != 0 || !strstr(r.out, "10 packets transmitted, 10 received"))
		fail_msg("ping: %d\n%s%s", r.status, r.out, r.err);
	const char *rtt = strstr(r.out, "rtt ");
	printf("# host ping of the guest: %.*s\n", rtt ? (int)strcspn(rtt, "\n") : 0, rtt ? rtt : "");
	cmd_result_free(&r);

	/* Three datagrams through socat, each echoed intact. */
	for (int i = 0; i < 3; i++) {
		char *msg = xasprintf("datagram %d from the host", i);
		char *sh = xasprintf("printf '%%s' '%s' | socat -t 3 -T 3 - UDP:10.99.0.2:7", msg);
		r = in_ns(20, (char *[]){ "sh", "-c", sh, NULL });
		if (r.status != 0 || strcmp(r.out, msg))
			fail_msg("socat got \"%s\" (%d) for \"%s\": %s", r.out, r.status, msg, r.err);
		cmd_result_free(&r);
		free(sh);
		free(msg);
	}
	int st = wait_background(vm, 60);
	char *out = test_console_log("g");
	if (st != 1 || !strstr(out, "udpecho: echoed=3 bytes=") || !strstr(out, "send_failures=0"))
		fail_msg("guest exited %d:\n%s", st, out);
	free(out);
}

/* The guest resolves and pings the host's address on the TAP, and its UDP
 * echo client is answered by socat. */
static void guest_pings_host_through_tap(void **state)
{
	(void)state;
	require_qemu();
	make_netns();
	int echo = spawn_background((char *[]){ "ip", "netns", "exec", netns, "socat", "-T", "60",
						"UDP-LISTEN:7777,fork,reuseaddr", "PIPE", NULL });
	pids[npids++] = echo;
	int vm = start_vm(netns, "g", 4, TAP_NETDEV,
			  "app=ping ip=10.99.0.2/24 peer=10.99.0.1 count=20 interval_ms=20");
	int st = wait_background(vm, 120);
	char *out = test_console_log("g");
	if (st != 1)
		fail_msg("guest ping exited %d:\n%s", st, out);
	const char *l = line_of(out, "ping: peer=10.99.0.1");
	if (field(l, "received") != 20)
		fail_msg("%s", l);
	printf("# guest ping of the host: %s\n", l);
	free(out);

	vm = start_vm(netns, "c", 5, TAP_NETDEV,
		      "app=udpecho ip=10.99.0.2/24 peer=10.99.0.1 port=7777 count=20 size=512");
	st = wait_background(vm, 120);
	out = test_console_log("c");
	if (st != 1)
		fail_msg("guest udpecho client exited %d:\n%s", st, out);
	l = line_of(out, "udpecho: peer=10.99.0.1");
	if (field(l, "received") != 20 || field(l, "corrupt") != 0)
		fail_msg("%s", l);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(selftest_lists_the_nic, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_nic_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(ping_between_guests, setup, teardown),
		cmocka_unit_test_setup_teardown(udpecho_between_guests, setup, teardown),
		cmocka_unit_test_setup_teardown(udpbulk_64, setup, teardown),
		cmocka_unit_test_setup_teardown(udpbulk_1472, setup, teardown),
		cmocka_unit_test_setup_teardown(udpbulk_jumbo_mtu, setup, teardown),
		cmocka_unit_test_setup_teardown(host_pings_and_echoes_through_tap, setup, teardown),
		cmocka_unit_test_setup_teardown(guest_pings_host_through_tap, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
