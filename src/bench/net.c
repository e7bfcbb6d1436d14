/* ferry bench net: UDP throughput and ping round trips between two VMs of
 * the same guest (ferry-guest's udpbulk and ping, every datagram verified),
 * over four paths in one run:
 *   zc       ferry, both drivers with the zero-copy feature (cross-talk
 *            detected, channels bound: the host copies nothing);
 *   onecopy  ferry, the network without zero copy: ferry copies each frame
 *            once, from one guest's buffer into the other's;
 *   tap      ferry, each VM on a network of its own whose TAP is a port of
 *            one Linux bridge: frames go through the host kernel;
 *   qemu_tap QEMU (q35, virtio-net-pci on TAPs in the same bridge), when
 *            qemu-system-x86_64 is installed.
 * The TAP paths run in a network namespace the bench makes and deletes:
 * nothing touches the host's own network. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "vmm/config.h"

static const char net_help[] =
	"usage: ferry bench net [--count N] [--pings N] [--repeat R] [--kernel IMAGE] [--no-qemu] [--no-pin] [--json]\n"
	"\n"
	"Two VMs exchange UDP datagrams of 1472 and 64 bytes (udpbulk: N datagrams,\n"
	"default 20000, each sequenced and checksummed, 192 in flight) and ping each\n"
	"other back to back (--pings, default 1000 round trips; twice: with the\n"
	"guests' default 50 us of polling before they halt for an interrupt, and\n"
	"polling 2 ms, keys *_rtt_poll_us), over ferry's zero-copy path, ferry's one-copy path,\n"
	"two TAPs in a Linux bridge (in a network namespace the bench makes), and, with\n"
	"qemu-system-x86_64 installed, QEMU's virtio-net on TAPs in the same bridge.\n"
	"Throughputs are the median of --repeat runs (default 3). Unless --no-pin,\n"
	"the sender runs on the first CPU the bench may use and the receiver on the\n"
	"second (ferry: each VM's vCPU thread; QEMU: each VM's process), the same\n"
	"for every path; the JSON's \"affinity\" says how it ran. Targets on the\n"
	"project's machines: zero copy >= 3x the TAP path's throughput at 1472 B and\n"
	"<= 0.5x its round trip; zero copy >= 3x QEMU's TAP path at 1472 B.\n";

static char self[PATH_MAX], kernel[PATH_MAX];
static char tmpdir[] = "/tmp/ferry-bench-net-XXXXXX";
static char ns[48];
static unsigned repeat = 3;
static bool pinned;      /* sender and receiver each on a CPU of its own */
static int cpus[2];      /* 0: the sender's, 1: the receiver's */
static unsigned pin_failures;
/* Datagrams in flight: enough that no path waits for acknowledgements (every
 * path has at least 256 receive buffers), the same for all. */
#define WINDOW 192

/* A number after `key` on the line that starts with `prefix`; -1 if none. */
static double number_after(const char *out, const char *prefix, const char *key)
{
	const char *line = strstr(out, prefix);
	if (!line)
		return -1;
	const char *end = strchr(line, '\n'), *k = strstr(line, key);
	if (!k || (end && k > end))
		return -1;
	return atof(k + strlen(key));
}

static int run_quiet(const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return -1;
	return child_finish(&c, 30);
}

/* The namespace, its bridge, and (for QEMU) two TAPs already in it. */
static bool ns_setup(void)
{
	snprintf(ns, sizeof(ns), "ferry-bench-%d", getpid());
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "ip netns add %s && ip -n %s link set lo up && ip -n %s link add fbr0 type bridge && "
		 "ip -n %s link set fbr0 up && "
		 "for t in fqa fqb; do ip -n %s tuntap add dev $t mode tap && ip -n %s link set $t master fbr0 && "
		 "ip -n %s link set $t up; done",
		 ns, ns, ns, ns, ns, ns, ns);
	if (run_quiet(cmd) != 0) {
		fprintf(stderr, "ferry bench net: cannot make network namespace %s (iproute2, root): no TAP paths\n", ns);
		snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns);
		run_quiet(cmd);
		ns[0] = '\0';
		return false;
	}
	return true;
}

static void ns_teardown(void)
{
	if (!ns[0])
		return;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	run_quiet(cmd);
}

enum path { ZC, ONECOPY, TAP, QEMU_TAP };
/* Round trips again with guests that poll this long before halting: what
 * a path costs when no interrupt into the guest is on the way. */
#define POLL_SPIN_US 2000

static const char *const path_names[] = { "zc", "onecopy", "tap", "qemu_tap" };

/* One ferry run of a receiver and a sender; returns the sender's console. */
static bool run_ferry(enum path p, const char *rx, const char *tx, struct child *c)
{
	char cfg[PATH_MAX + 32];
	snprintf(cfg, sizeof(cfg), "%s/net.json", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return false;
	if (p == TAP)
		fprintf(f, "{\"networks\": {\"na\": {\"tap\": \"fta\", \"bridge\": \"fbr0\"},"
			   " \"nb\": {\"tap\": \"ftb\", \"bridge\": \"fbr0\"}},");
	else
		fprintf(f, "{\"networks\": {\"na\": {\"zero_copy\": %s}},", p == ZC ? "true" : "false");
	fprintf(f,
		" \"vms\": [{\"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"%s ip=10.9.0.2/24\","
		" \"nics\": [{\"network\": \"%s\"}]},"
		" {\"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"%s ip=10.9.0.1/24\","
		" \"nics\": [{\"network\": \"na\"}]}]}\n",
		kernel, rx, p == TAP ? "nb" : "na", kernel, tx);
	fclose(f);
	char *plain[] = { self, "run", cfg, "--console", "--quiet", "--timeout", "300", "--log-dir", tmpdir, NULL };
	char *in_ns[] = { "ip", "netns", "exec", ns, self, "run", cfg, "--console", "--quiet", "--timeout", "300",
			  "--log-dir", tmpdir, NULL };
	if (child_spawn(c, p == TAP ? in_ns : plain) < 0)
		return false;
	/* The vCPU threads appear within milliseconds; the guests boot for
	 * tens of them before they send. In the namespace, `ip` execs ferry,
	 * so the pid is ferry's. */
	if (pinned) {
		static const char *const names[] = { "vcpu0/tx", "vcpu0/rx" };
		if (pin_threads(c->pid, names, cpus, 2, 10) != 2)
			pin_failures++;
	}
	int st = child_finish(c, 400);
	if (st != 0) {
		/* Why, from the consoles: their last lines. */
		size_t len = strlen(c->buf);
		const char *tail = c->buf + (len > 1500 ? len - 1500 : 0);
		fprintf(stderr, "ferry bench net: a %s run failed (exit %d): \"%s\"; the end of its output:\n%s\n",
			path_names[p], st, tx, tail);
	}
	return st == 0;
}

static int qemu_vm(struct child *c, const char *cmdline, const char *vm, const char *tap, const char *mac, int cpu)
{
	char append[512], netdev[128], device[160];
	snprintf(append, sizeof(append), "%s vm=%s", cmdline, vm);
	snprintf(netdev, sizeof(netdev), "tap,id=n0,ifname=%s,script=no,downscript=no", tap);
	snprintf(device, sizeof(device), "virtio-net-pci,netdev=n0,disable-legacy=on,mac=%s", mac);
	char *argv[] = { "ip", "netns", "exec", ns, QEMU_BIN, "-M", "q35", "-accel", "kvm", "-m", "128M",
			 "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
			 "-no-reboot", "-kernel", kernel, "-append", append, "-device", "isa-debug-exit,iobase=0x501",
			 "-netdev", netdev, "-device", device, NULL };
	return child_spawn_on(c, argv, cpu);
}

/* Two QEMU VMs on the namespace's TAPs; the sender's console in *tx_out. */
static bool run_qemu(const char *rx, const char *tx, struct child *tx_out)
{
	static struct child crx;
	char rxl[512], txl[512];
	snprintf(rxl, sizeof(rxl), "%s ip=10.9.0.2/24", rx);
	snprintf(txl, sizeof(txl), "%s ip=10.9.0.1/24", tx);
	if (qemu_vm(&crx, rxl, "rx", "fqb", "02:00:00:00:09:02", pinned ? cpus[1] : -1) < 0)
		return false;
	if (qemu_vm(tx_out, txl, "tx", "fqa", "02:00:00:00:09:01", pinned ? cpus[0] : -1) < 0) {
		kill(crx.pid, SIGKILL);
		child_finish(&crx, 5);
		return false;
	}
	int st_tx = child_finish(tx_out, 400), st_rx = child_finish(&crx, 60);
	if (st_tx != 1 || st_rx != 1) /* QEMU: (status << 1) | 1 */
		fprintf(stderr, "ferry bench net: a QEMU run failed (exit %d and %d): \"%s\"\n", st_tx, st_rx, tx);
	return st_tx == 1 && st_rx == 1;
}

static bool run_path(enum path p, const char *rx, const char *tx, struct child *c)
{
	return p == QEMU_TAP ? run_qemu(rx, tx, c) : run_ferry(p, rx, tx, c);
}

struct bulk {
	double mbps, pps;
};

/* udpbulk at `size`: the median of `repeat` runs. udpbulk reports payload
 * Mb/s; packets/s follow from it. */
static struct bulk bulk(enum path p, unsigned size, unsigned long count)
{
	double mbps[16];
	unsigned n = 0;
	char tx[256];
	snprintf(tx, sizeof(tx), "app=udpbulk role=send peer=10.9.0.2 size=%u count=%lu window=%u window_bytes=%u", size,
		 count, WINDOW, WINDOW * 1500);
	for (unsigned i = 0; i < repeat && i < 16; i++) {
		static struct child c;
		if (!run_path(p, "app=udpbulk role=recv", tx, &c))
			continue;
		double m = number_after(c.buf, "udpbulk: role=send", "mbps=");
		if (m > 0 && strstr(c.buf, "lost=0 duplicated=0"))
			mbps[n++] = m;
	}
	if (!n)
		return (struct bulk){ -1, -1 };
	double med = stat_median(mbps, n);
	return (struct bulk){ med, med * 1e6 / 8.0 / size };
}

struct rtt {
	double p50, p99;
};

/* Ping round trips. spin_us: how long both guests poll before they halt
 * for an interrupt (0: ferry-guest's default, 50 us). */
static struct rtt rtt(enum path p, unsigned long pings, unsigned spin_us)
{
	char tx[256], rx[128] = "app=udpecho idle_ms=3000";
	/* A late reply is a measurement (the p99 shows it), not a loss: on a
	 * loaded host a pinned guest can wait for its CPU past ping's 1 s. */
	snprintf(tx, sizeof(tx), "app=ping peer=10.9.0.2 count=%lu interval_ms=0 timeout_ms=10000", pings);
	if (spin_us) {
		size_t l = strlen(tx), m = strlen(rx);
		snprintf(tx + l, sizeof(tx) - l, " net_spin_us=%u", spin_us);
		snprintf(rx + m, sizeof(rx) - m, " net_spin_us=%u", spin_us);
	}
	static struct child c;
	if (!run_path(p, rx, tx, &c))
		return (struct rtt){ -1, -1 };
	return (struct rtt){ number_after(c.buf, "ping: peer=", "p50_us="), number_after(c.buf, "ping: peer=", "p99_us=") };
}

static void put(cJSON *o, const char *key, double v)
{
	if (v >= 0)
		cJSON_AddNumberToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

int bench_net(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, 0, 'n' }, { "pings", required_argument, 0, 'p' },
		{ "kernel", required_argument, 0, 'k' }, { "repeat", required_argument, 0, 'r' },
		{ "no-qemu", no_argument, 0, 'Q' },      { "json", no_argument, 0, 'j' },
		{ "no-pin", no_argument, 0, 'P' },       { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	uint64_t count = 20000, pings = 1000, r;
	bool json = false, want_qemu = true, want_pin = true;
	config_default_kernel(kernel, sizeof(kernel));
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!parse_uint(optarg, 10, 10000000, &count))
				return usage_error("bench net", "--count: expected 10 to 10000000, got '%s'", optarg);
			break;
		case 'p':
			if (!parse_uint(optarg, 2, 1000000, &pings))
				return usage_error("bench net", "--pings: expected 2 to 1000000, got '%s'", optarg);
			break;
		case 'k':
			snprintf(kernel, sizeof(kernel), "%s", optarg);
			break;
		case 'r':
			if (!parse_uint(optarg, 1, 15, &r))
				return usage_error("bench net", "--repeat: expected 1 to 15, got '%s'", optarg);
			repeat = (unsigned)r;
			break;
		case 'Q':
			want_qemu = false;
			break;
		case 'P':
			want_pin = false;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(net_help, stdout);
			return 0;
		default:
			return usage_error("bench net", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("bench net", "unexpected argument '%s'", argv[optind]);
	if (bench_workspace("net", self, sizeof(self), kernel, tmpdir))
		return 1;
	bool tap = ns_setup();
	bool qemu = tap && want_qemu && bench_qemu_installed("net");

	char affinity[200];
	pinned = bench_pin_pair(want_pin, cpus, affinity, sizeof(affinity));

	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "affinity", affinity);
	cJSON_AddNumberToObject(o, "count", (double)count);
	cJSON_AddNumberToObject(o, "pings", (double)pings);
	cJSON_AddNumberToObject(o, "repeat", repeat);
	const enum path paths[] = { ZC, ONECOPY, TAP, QEMU_TAP };
	for (unsigned i = 0; i < 4; i++) {
		enum path p = paths[i];
		char key[64];
		bool run = p < TAP || (p == TAP && tap) || (p == QEMU_TAP && qemu);
		struct bulk big = run ? bulk(p, 1472, (unsigned long)count) : (struct bulk){ -1, -1 };
		struct bulk small = run ? bulk(p, 64, (unsigned long)count) : (struct bulk){ -1, -1 };
		struct rtt t = run ? rtt(p, (unsigned long)pings, 0) : (struct rtt){ -1, -1 };
		struct rtt tp = run ? rtt(p, (unsigned long)pings, POLL_SPIN_US) : (struct rtt){ -1, -1 };
		snprintf(key, sizeof(key), "%s_1472_mbps", path_names[p]);
		put(o, key, big.mbps);
		snprintf(key, sizeof(key), "%s_1472_pps", path_names[p]);
		put(o, key, big.pps);
		snprintf(key, sizeof(key), "%s_64_mbps", path_names[p]);
		put(o, key, small.mbps);
		snprintf(key, sizeof(key), "%s_64_pps", path_names[p]);
		put(o, key, small.pps);
		snprintf(key, sizeof(key), "%s_rtt_us", path_names[p]);
		put(o, key, t.p50);
		snprintf(key, sizeof(key), "%s_rtt_p99_us", path_names[p]);
		put(o, key, t.p99);
		snprintf(key, sizeof(key), "%s_rtt_poll_us", path_names[p]);
		put(o, key, tp.p50);
		snprintf(key, sizeof(key), "%s_rtt_poll_p99_us", path_names[p]);
		put(o, key, tp.p99);
	}
	ns_teardown();
	bench_remove_dir("net", tmpdir);
	if (pin_failures)
		cJSON_AddNumberToObject(o, "runs_not_pinned", pin_failures);

	if (json) {
		char *s = cJSON_Print(o);
		printf("%s\n", s);
		free(s);
	} else {
		printf("%-10s %12s %12s %12s %12s %12s %12s %12s\n", "path", "1472B Mb/s", "1472B pkt/s", "64B pkt/s",
		       "RTT p50 us", "RTT p99 us", "polled p50", "polled p99");
		for (unsigned i = 0; i < 4; i++) {
			char key[64];
			double v[7];
			const char *suffix[7] = { "1472_mbps", "1472_pps", "64_pps", "rtt_us", "rtt_p99_us", "rtt_poll_us",
						  "rtt_poll_p99_us" };
			for (int k = 0; k < 7; k++) {
				snprintf(key, sizeof(key), "%s_%s", path_names[i], suffix[k]);
				cJSON *x = cJSON_GetObjectItem(o, key);
				v[k] = cJSON_IsNumber(x) ? x->valuedouble : -1;
			}
			printf("%-10s %12.1f %12.0f %12.0f %12.1f %12.1f %12.1f %12.1f\n", path_names[i], v[0], v[1], v[2],
			       v[3], v[4], v[5], v[6]);
		}
		printf("(polled: both guests poll %u us before they halt, instead of 50)\n", POLL_SPIN_US);
		printf("affinity: %s\n", affinity);
		if (pin_failures)
			printf("runs whose vCPU threads could not be pinned: %u\n", pin_failures);
	}
	cJSON_Delete(o);
	return 0;
}
