/* ferry bench msg: message-queue throughput and latency between two VMs,
 * for copy, remap and adaptive transfer, immediate and deferred posting,
 * through ferry and through direct rings, with 4 KiB and 2 MiB pages. Each
 * measurement is a fresh pair of VMs running msgbulk or msgping
 * (check=header: the guests write and check only a header, so what is timed
 * is the transport, not the guests filling and summing memory;
 * examples/msgq.json checks every byte).
 *
 * The copy measurements run again with the same guest and the same command
 * lines plus transport=ivshmem: a ring in memory two VMs share through an
 * ivshmem device, between two ferry VMs coupled by a static link
 * (docs/devices/ivshmem.md), and, with QEMU installed, between two QEMU VMs
 * through ivshmem-plain, QEMU's way for VMs to exchange data
 * (docs/devices/msgq.md, "Compared with QEMU"). Runs that are compared
 * with each other take turns, repeat after repeat, so that a change in the
 * host's load falls on all of them; and each VM gets a CPU of its own, the
 * same way for ferry and for QEMU.
 *
 * The Linux column: the same transport between two Linux VMs (make
 * linux-guest), ferry's ferry_msgq module and the ferry-msg tool at both ends
 * (docs/GUESTS.md), which speaks msgbulk's and msgping's protocol and prints
 * the same result lines. A Linux boot costs tens of seconds here, so one boot
 * of a pair runs every 4 KiB-page measurement in turn and a second one (2 MiB
 * pages) the 2 MiB messages; the runs are counted, not timed (ferry-msg has no
 * time box), and are not repeated. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "vmm/config.h"

static const char msg_help[] =
	"usage: ferry bench msg [--count N] [--ms MS] [--repeat R] [--kernel IMAGE] [--linux IMAGE] [--no-linux]\n"
	"                       [--no-qemu] [--no-pin] [--json]\n"
	"\n"
	"Runs pairs of VMs passing messages and reports throughput (MB/s, messages/s)\n"
	"for 64 B, 4 KiB, 64 KiB (4 KiB pages) and 2 MiB (2 MiB pages) messages and\n"
	"one-way latency (half the round trip, p50 and p99). Through ferry: copied,\n"
	"remapped and adaptive, posted immediately (doorbell) and deferred; through\n"
	"direct rings (\"rings\": true: copied messages between the two drivers, no\n"
	"ferry on the path). With qemu-system-x86_64 installed (and without\n"
	"--no-qemu), the same guest measures QEMU's ivshmem-plain between two QEMU\n"
	"VMs (q35), a ring in shared memory: the qemu column; the same ring between\n"
	"two ferry VMs of a static link is the ferry ivshmem column.\n"
	"\n"
	"Each throughput run sends as many messages as it can in --ms milliseconds\n"
	"(default 250; at most 1000 x --count); the figure is the median of --repeat\n"
	"runs (default 3), the runs compared with each other taking turns. Each\n"
	"latency run times 10 x --count round trips (default 10000) after an untimed\n"
	"warm-up. Unless --no-pin, the sending VM runs on the first CPU the bench may\n"
	"use and the receiving VM on the second (QEMU: each VM's whole process;\n"
	"ferry: each VM's vCPU thread). Targets on the project's machine: ferry's\n"
	"best at least 0.5x qemu at every size, 1x from 64 KiB, 2x at 2 MiB; 64 B\n"
	"immediate p50 at most 20 us; adaptive within 10% of the faster of its paths.\n"
	"\n"
	"The linux column: adaptive, immediate throughput for 64 B, 4 KiB and 64 KiB\n"
	"(4 KiB pages) and 2 MiB (2 MiB pages), and 64 B latency, between two Linux VMs,\n"
	"sender and receiver being ferry-msg in user space through the ferry_msgq\n"
	"module (docs/GUESTS.md): --count messages per size (2 MiB: a quarter, at least\n"
	"10) and --count round trips (a Linux round trip takes milliseconds here), from\n"
	"two boots of the pair, not repeated. --linux names the kernel; by default\n"
	"make linux-guest's (linux/vmlinux beside the ferry binary or one directory up);\n"
	"without one, or with --no-linux, no linux column.\n";

/* What the test kernel needs on the project's hosts (linux/README.md; the
 * tests' LINUX_CMDLINE). */
#define LINUX_CMDLINE \
	"console=ttyS0 reboot=t rodata=off noxsave clearcpuid=smap,popcnt,erms,fsrm tsc=reliable no-kvm-hypercalls"

#define QEMU_SHM_MIB 64  /* two rings of 32 MiB: 15 messages of 2 MiB each */
#define LINK_MIB QEMU_SHM_MIB  /* ferry's link: the same rings */

static char self[PATH_MAX], kernel[PATH_MAX], linux_kernel[PATH_MAX];
static char tmpdir[] = "/tmp/ferry-bench-msg-XXXXXX";
static char shmdir[] = "/dev/shm/ferry-bench-msg-XXXXXX";

/* FERRY: msgq devices; FERRY_RINGS: msgq devices with direct rings;
 * FERRY_IVSHMEM: a static link, the guests' ivshmem transport; QEMU:
 * ivshmem-plain, the same transport. */
enum vmm { FERRY, FERRY_RINGS, FERRY_IVSHMEM, QEMU };

static int cpus[2];
static bool pinned;       /* each VM on a CPU of its own */
static unsigned pin_failures;

/* The result objects ("...: result {...}" lines) a console printed. */
static cJSON *results_in(char *console)
{
	cJSON *out = cJSON_CreateArray();
	for (char *line = strtok(console, "\n"); line; line = strtok(NULL, "\n")) {
		char *res = strstr(line, ": result ");
		cJSON *o = res ? cJSON_Parse(res + 9) : NULL;
		if (o)
			cJSON_AddItemToArray(out, o);
	}
	return out;
}

/* Why a run failed is in the last lines of its console. */
static const char *tail_of(const char *buf)
{
	size_t len = strlen(buf);
	return buf + (len > 1500 ? len - 1500 : 0);
}

/* A sender/receiver pair in one ferry process, talking through msgq (with
 * direct rings if `rings`), or (`link`) through the ivshmem devices of a
 * static link, with the QEMU pair's command lines. */
static cJSON *run_ferry_pair(bool huge, bool rings, bool link, const char *tx, const char *rx)
{
	char cfg[PATH_MAX + 32];
	snprintf(cfg, sizeof(cfg), "%s/pair.json", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return NULL;
	char dev[160];
	snprintf(dev, sizeof(dev), "%s%s",
		 huge ? ", \"send_slots\": 64, \"recv_slots\": 64, \"max_msg_pages\": 1"
		      : ", \"send_slots\": 1024, \"recv_slots\": 1024",
		 rings ? ", \"rings\": true" : "");
	if (link)
		fprintf(f,
			"{\"vms\": ["
			"{\"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"%s transport=ivshmem\"},"
			"{\"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"%s transport=ivshmem\"}],"
			" \"links\": [{\"vms\": [\"tx\", \"rx\"], \"size_mib\": %d}]}\n",
			kernel, tx, kernel, rx, LINK_MIB);
	else
		fprintf(f,
			"{\"vms\": ["
			"{\"name\": \"tx\", \"memory_mib\": 64, \"hugepages\": %s, \"kernel\": \"%s\", \"cmdline\": \"%s\","
			" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"rx\"]%s}]},"
			"{\"name\": \"rx\", \"memory_mib\": 64, \"hugepages\": %s, \"kernel\": \"%s\", \"cmdline\": \"%s\","
			" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"tx\"]%s}]}]}\n",
			huge ? "true" : "false", kernel, tx, dev, huge ? "true" : "false", kernel, rx, dev);
	if (fclose(f) != 0)
		return NULL;
	char *argv[] = { self, "run", cfg, "--console", "--quiet", "--timeout", "300", "--log-dir", tmpdir, NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return NULL;
	/* One CPU per VM: its vCPU thread (the event loop, shared by both,
	 * stays where the scheduler puts it). The guests take tens of
	 * milliseconds to boot, far longer than this takes. */
	if (pinned) {
		static const char *const names[] = { "vcpu0/tx", "vcpu0/rx" };
		if (pin_threads(c.pid, names, cpus, 2, 10) != 2)
			pin_failures++;
	}
	int st = child_finish(&c, 400);
	if (st != 0) {
		fprintf(stderr, "ferry bench msg: a pair failed (exit %d): tx \"%s\"; the end of its output:\n%s\n", st,
			tx, tail_of(c.buf));
		return NULL;
	}
	return results_in(c.buf);
}

/* One QEMU VM of a pair: q35 (PCI for ivshmem), the guest's console on
 * stdout, the shared memory file `shm` as ivshmem-plain's BAR 2. */
static int qemu_spawn(struct child *c, const char *cmdline, const char *vm, const char *shm, int cpu)
{
	char append[1024], backend[PATH_MAX + 96];
	snprintf(append, sizeof(append), "%s vm=%s transport=ivshmem", cmdline, vm);
	snprintf(backend, sizeof(backend), "memory-backend-file,id=shm,size=%dM,share=on,mem-path=%s", QEMU_SHM_MIB,
		 shm);
	char *argv[] = { QEMU_BIN, "-M", "q35", "-accel", "kvm", "-m", "128M", "-nodefaults", "-no-user-config",
			 "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", kernel,
			 "-append", append, "-device", "isa-debug-exit,iobase=0x501", "-object", backend,
			 "-device", "ivshmem-plain,memdev=shm", NULL };
	return child_spawn_on(c, argv, cpu);
}

/* A sender/receiver pair of QEMU processes, started together, sharing a
 * fresh memory file (a ring left from an earlier pair would mislead the
 * guests: include/ivshmem.h). QEMU exits with 1 when the guest's status is 0.
 * Both consoles are read: the sender's holds the results; the receiver's
 * output waits in its pipe (a few lines) until the sender is done. */
static cJSON *run_qemu_pair(const char *tx, const char *rx)
{
	static struct child c[2]; /* 0: rx, 1: tx */
	char shm[sizeof(shmdir) + 16];
	snprintf(shm, sizeof(shm), "%s/ivshmem", shmdir);
	unlink(shm);
	int fd = open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool ok = fd >= 0 && ftruncate(fd, (off_t)QEMU_SHM_MIB << 20) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok || qemu_spawn(&c[0], rx, "rx", shm, pinned ? cpus[1] : -1) < 0) {
		fprintf(stderr, "ferry bench msg: cannot start QEMU with %s\n", shm);
		unlink(shm);
		return NULL;
	}
	if (qemu_spawn(&c[1], tx, "tx", shm, pinned ? cpus[0] : -1) < 0)
		kill(c[0].pid, SIGKILL);
	int st_tx = c[1].pid > 0 ? child_finish(&c[1], 300) : -1, st_rx = child_finish(&c[0], 60);
	unlink(shm);
	if (st_tx != 1 || st_rx != 1) {
		fprintf(stderr,
			"ferry bench msg: a QEMU pair failed (exit %d and %d): tx \"%s\"; the end of the sender's output:\n"
			"%s\nand of the receiver's:\n%s\n",
			st_tx, st_rx, tx, tail_of(c[1].buf), tail_of(c[0].buf));
		return NULL;
	}
	return results_in(c[1].buf);
}

/* A pair of Linux VMs running `tx` and `rx` (ferry.msg lists: ferry-msg
 * commands separated by ';'), with 2 MiB pages if `huge`; the result
 * objects on the sender's console, or NULL if the run failed. The consoles
 * go to log files: a Linux boot log would crowd a pipe. */
static cJSON *run_linux_pair(bool huge, const char *tx, const char *rx)
{
	char cfg[PATH_MAX + 32], log[PATH_MAX + 32];
	snprintf(cfg, sizeof(cfg), "%s/linux.json", tmpdir);
	snprintf(log, sizeof(log), "%s/tx.log", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f) {
		fprintf(stderr, "ferry bench msg: %s: %s\n", cfg, strerror(errno));
		return NULL;
	}
	/* The same devices as ferry-guest's pairs (run_ferry_pair). */
	const char *dev = huge ? ", \"send_slots\": 64, \"recv_slots\": 64, \"max_msg_pages\": 1"
			       : ", \"send_slots\": 1024, \"recv_slots\": 1024";
	const char *names[2] = { "tx", "rx" }, *cmds[2] = { tx, rx };
	fprintf(f, "{\"vms\": [");
	for (int i = 0; i < 2; i++)
		fprintf(f,
			"%s{\"name\": \"%s\", \"memory_mib\": 128, \"hugepages\": %s, \"kernel\": \"%s\","
			" \"cmdline\": \"%s ferry.expect=msgq ferry.timeout=1200 ferry.msg=\\\"%s\\\"\","
			" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"%s\"]%s}]}",
			i ? ", " : "", names[i], huge ? "true" : "false", linux_kernel, LINUX_CMDLINE, cmds[i],
			names[1 - i], dev);
	fprintf(f, "]}\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "ferry bench msg: %s: %s\n", cfg, strerror(errno));
		return NULL;
	}
	unlink(log);
	char *argv[] = { self, "run", cfg, "--quiet", "--timeout", "1200", "--log-dir", tmpdir, NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0) {
		fprintf(stderr, "ferry bench msg: cannot start ferry: %s\n", strerror(errno));
		return NULL;
	}
	if (pinned) {
		static const char *const vcpus[] = { "vcpu0/tx", "vcpu0/rx" };
		if (pin_threads(c.pid, vcpus, cpus, 2, 10) != 2)
			pin_failures++;
	}
	int st = child_finish(&c, 1300);
	FILE *in = fopen(log, "r");
	static char text[1 << 20];
	size_t n = in ? fread(text, 1, sizeof(text) - 1, in) : 0;
	if (in)
		fclose(in);
	text[n] = '\0';
	if (st != 0 || !in) {
		fprintf(stderr, "ferry bench msg: the Linux pair failed (exit %d): tx \"%s\"; the end of its console:\n%s\n",
			st, tx, tail_of(text));
		return NULL;
	}
	return results_in(text);
}

/* The Linux kernel for the linux column: --linux (which must be readable),
 * or make linux-guest's, beside the ferry binary (build/ferry) or one
 * directory up (build/asan/ferry). False if there is none (said why). */
static bool linux_usable(bool want, bool given)
{
	if (!want)
		return false;
	if (!given) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", self);
		char *d = dirname(dir);
		snprintf(linux_kernel, sizeof(linux_kernel), "%s/linux/vmlinux", d);
		if (access(linux_kernel, R_OK) != 0)
			snprintf(linux_kernel, sizeof(linux_kernel), "%s/../linux/vmlinux", d);
	}
	char abs[PATH_MAX];
	if (access(linux_kernel, R_OK) != 0 || !realpath(linux_kernel, abs)) {
		if (given)
			fprintf(stderr, "ferry bench msg: --linux %s: %s\n", linux_kernel, strerror(errno));
		else
			fprintf(stderr, "ferry bench msg: no Linux kernel at %s (make linux-guest): no linux column\n",
				linux_kernel);
		return false;
	}
	snprintf(linux_kernel, sizeof(linux_kernel), "%s", abs);
	return true;
}

/* A measurement: who runs it, with which pages, and the two command lines. */
struct pair {
	enum vmm vmm;
	bool huge;        /* 2 MiB pages (ferry's msgq) */
	char tx[512], rx[128];
};

/* Runs a pair once; the result objects its consoles printed (an array), or
 * NULL if the run failed. */
static cJSON *run_pair(const struct pair *p)
{
	if (p->vmm == QEMU)
		return run_qemu_pair(p->tx, p->rx);
	return run_ferry_pair(p->vmm != FERRY_IVSHMEM && p->huge, p->vmm == FERRY_RINGS, p->vmm == FERRY_IVSHMEM,
			      p->tx, p->rx);
}

static double field(cJSON *o, const char *k)
{
	cJSON *v = cJSON_GetObjectItem(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The result for message size `size`, or NULL. */
static cJSON *for_size(cJSON *results, double size)
{
	cJSON *r;
	cJSON_ArrayForEach(r, results)
		if (field(r, "size") == size)
			return r;
	return NULL;
}

struct bulk {
	double mbps, msgs;
};

static struct bulk bulk_of(cJSON *results, double size)
{
	cJSON *r = results ? for_size(results, size) : NULL;
	return r ? (struct bulk){ field(r, "mbps"), field(r, "msgs_per_s") } : (struct bulk){ -1, -1 };
}

static unsigned repeat = 3;

#define MAX_REPEAT 15
#define MAX_GROUP  10

/* Runs every pair of a group `repeat` times, taking turns; for each pair and
 * message size, the run with the median throughput. out[i] is pair i's
 * (an array of result objects), NULL if every run of it failed. */
static void run_group(const struct pair *pairs, unsigned n, cJSON *out[])
{
	static cJSON *runs[MAX_GROUP][MAX_REPEAT];
	unsigned got[MAX_GROUP] = { 0 };
	for (unsigned r = 0; r < repeat; r++)
		for (unsigned i = 0; i < n; i++)
			if ((runs[i][got[i]] = run_pair(&pairs[i])) != NULL)
				got[i]++;
	for (unsigned i = 0; i < n; i++) {
		out[i] = NULL;
		if (!got[i])
			continue;
		out[i] = cJSON_CreateArray();
		cJSON *res;
		cJSON_ArrayForEach(res, runs[i][0]) {
			double size = field(res, "size"), v[MAX_REPEAT];
			unsigned k = 0;
			for (unsigned j = 0; j < got[i]; j++)
				v[k++] = bulk_of(runs[i][j], size).mbps;
			double med = stat_median(v, k);
			cJSON *pick = NULL;
			double best = INFINITY;
			/* With an even count the median falls between two runs:
			 * take the run closest to it. */
			for (unsigned j = 0; j < got[i]; j++) {
				cJSON *x = for_size(runs[i][j], size);
				if (x && fabs(field(x, "mbps") - med) < best) {
					best = fabs(field(x, "mbps") - med);
					pick = x;
				}
			}
			if (pick)
				cJSON_AddItemToArray(out[i], cJSON_Duplicate(pick, true));
		}
		for (unsigned j = 0; j < got[i]; j++)
			cJSON_Delete(runs[i][j]);
	}
}

/* One-way latency (half the round trip) in µs: median and p99. */
struct latency {
	double p50, p99;
};

static struct latency ping(const struct pair *p)
{
	cJSON *r = run_pair(p);
	cJSON *o = r ? cJSON_GetArrayItem(r, 0) : NULL;
	struct latency l = { o ? field(o, "rtt_ns_median") / 2000.0 : -1, o ? field(o, "rtt_ns_p99") / 2000.0 : -1 };
	cJSON_Delete(r);
	return l;
}

/* Whether to run the QEMU column: asked for, installed, and a place for
 * the shared memory. Says why not in one line. */
static bool qemu_usable(bool want)
{
	if (!want)
		return false;
	if (!bench_qemu_installed("msg"))
		return false;
	if (!mkdtemp(shmdir)) {
		fprintf(stderr, "ferry bench msg: cannot make a directory in /dev/shm: no QEMU column\n");
		return false;
	}
	return true;
}

static void add_num(cJSON *j, const char *key, double v)
{
	cJSON_AddNumberToObject(j, key, v);
}

static double ratio(double a, double b)
{
	return a > 0 && b > 0 ? a / b : -1;
}

/* The fastest of n throughputs, and which. */
static double best_of(const struct bulk *b, const char *const *names, unsigned n, const char **which)
{
	double best = -1;
	*which = "none";
	for (unsigned i = 0; i < n; i++)
		if (b[i].mbps > best) {
			best = b[i].mbps;
			*which = names[i];
		}
	return best;
}

int bench_msg(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, 0, 'n' }, { "kernel", required_argument, 0, 'k' },
		{ "repeat", required_argument, 0, 'r' }, { "no-qemu", no_argument, 0, 'Q' },
		{ "json", no_argument, 0, 'j' },         { "ms", required_argument, 0, 'm' },
		{ "no-pin", no_argument, 0, 'P' },       { "help", no_argument, 0, 'h' },
		{ "linux", required_argument, 0, 'L' },  { "no-linux", no_argument, 0, 'N' },
		{ 0, 0, 0, 0 },
	};
	uint64_t count = 1000, count_r, ms = 250;
	bool json = false, want_qemu = true, want_pin = true, want_linux = true, linux_given = false;
	config_default_kernel(kernel, sizeof(kernel));
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!parse_uint(optarg, 10, 1000000, &count))
				return usage_error("bench msg", "--count: expected 10 to 1000000, got '%s'", optarg);
			break;
		case 'm':
			if (!parse_uint(optarg, 10, 60000, &ms))
				return usage_error("bench msg", "--ms: expected 10 to 60000, got '%s'", optarg);
			break;
		case 'k':
			snprintf(kernel, sizeof(kernel), "%s", optarg);
			break;
		case 'r':
			if (!parse_uint(optarg, 1, MAX_REPEAT, &count_r))
				return usage_error("bench msg", "--repeat: expected 1 to %d, got '%s'", MAX_REPEAT, optarg);
			repeat = (unsigned)count_r;
			break;
		case 'Q':
			want_qemu = false;
			break;
		case 'P':
			want_pin = false;
			break;
		case 'L':
			snprintf(linux_kernel, sizeof(linux_kernel), "%s", optarg);
			linux_given = true;
			break;
		case 'N':
			want_linux = false;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(msg_help, stdout);
			return 0;
		default:
			return usage_error("bench msg", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("bench msg", "unexpected argument '%s'", argv[optind]);
	if (bench_workspace("msg", self, sizeof(self), kernel, tmpdir))
		return 1;
	bool lx = linux_usable(want_linux, linux_given);
	if (linux_given && want_linux && !lx) {
		bench_remove_dir("msg", tmpdir);
		return 1;
	}
	bool qemu = qemu_usable(want_qemu);
	char affinity[200];
	pinned = bench_pin_pair(want_pin, cpus, affinity, sizeof(affinity));

	unsigned long max = (unsigned long)count * 1000, trips = (unsigned long)count * 10;
	unsigned long warm = (unsigned long)count + 100;

	/* Throughput, 4 KiB pages: every way to move 64 B, 4 KiB and 64 KiB
	 * messages, taking turns. */
	enum { S_COPY, S_REMAP, S_ADAPT, S_ADAPT_DEF, S_RING, S_RING_DEF, S_FIVS, S_QEMU, S_N };
	static const char *const small_names[S_N] = { "copy", "remap", "adaptive", "adaptive deferred",
						       "ring", "ring deferred", "ferry ivshmem", "qemu ivshmem" };
	struct pair small[S_N];
	unsigned nsmall = 0;
	for (int i = 0; i < S_N; i++) {
		static const char *const mode[S_N] = { "copy", "remap", "adaptive", "adaptive", "adaptive", "adaptive",
						       "copy", "copy" };
		static const enum vmm vmm[S_N] = { FERRY, FERRY, FERRY, FERRY, FERRY_RINGS, FERRY_RINGS,
						   FERRY_IVSHMEM, QEMU };
		bool deferred = i == S_ADAPT_DEF || i == S_RING_DEF;
		small[i].vmm = vmm[i];
		small[i].huge = false;
		snprintf(small[i].tx, sizeof(small[i].tx),
			 "app=msgbulk role=send peer=rx sizes=64,4K,64K count=%lu ms=%lu mode=%s post=%s check=header", max,
			 (unsigned long)ms, mode[i], deferred ? "deferred" : "immediate");
		snprintf(small[i].rx, sizeof(small[i].rx), "app=msgbulk role=recv");
		if (i != S_QEMU || qemu)
			nsmall = (unsigned)i + 1;
	}
	cJSON *small_res[S_N] = { NULL };
	run_group(small, nsmall, small_res);

	/* Throughput, 2 MiB pages, 2 MiB messages. */
	enum { L_COPY, L_REMAP, L_ADAPT, L_COPY_DEF, L_REMAP_DEF, L_ADAPT_DEF, L_FIVS, L_QEMU, L_N };
	static const char *const large_names[L_N] = { "copy", "remap", "adaptive", "copy deferred", "remap deferred",
						       "adaptive deferred", "ferry ivshmem", "qemu ivshmem" };
	struct pair large[L_N];
	unsigned nlarge = 0;
	for (int i = 0; i < L_N; i++) {
		static const char *const mode[L_N] = { "copy", "remap", "adaptive", "copy", "remap", "adaptive", "copy",
						       "copy" };
		large[i].vmm = i == L_FIVS ? FERRY_IVSHMEM : i == L_QEMU ? QEMU : FERRY;
		large[i].huge = true;
		snprintf(large[i].tx, sizeof(large[i].tx),
			 "app=msgbulk role=send peer=rx sizes=2M count=%lu ms=%lu mode=%s post=%s check=header", max,
			 (unsigned long)ms, mode[i], i >= L_COPY_DEF && i <= L_ADAPT_DEF ? "deferred" : "immediate");
		snprintf(large[i].rx, sizeof(large[i].rx), "app=msgbulk role=recv");
		if (i != L_QEMU || qemu)
			nlarge = (unsigned)i + 1;
	}
	cJSON *large_res[L_N] = { NULL };
	run_group(large, nlarge, large_res);

	/* Latency: ping-pong, every way, after a warm-up. */
	enum { T_IMM, T_DEF, T_RING, T_FIVS, T_QEMU, T_N };
	static const char *const lat_names[T_N] = { "immediate", "deferred", "ring", "ferry ivshmem", "qemu ivshmem" };
	static const struct {
		uint32_t size;
		const char *name, *key;
		bool huge;
	} lat_sizes[] = { { 64, "64 B", "64b", false }, { 4096, "4 KiB", "4k", false },
			  { 65536, "64 KiB", "64k", false }, { 2u << 20, "2 MiB", "2m", true } };
	struct latency lat[4][T_N];
	for (int s = 0; s < 4; s++) {
		for (int t = 0; t < T_N; t++) {
			lat[s][t] = (struct latency){ -1, -1 };
			/* 2 MiB messages do not fit a ring: they are remapped. */
			if ((t == T_QEMU && !qemu) || (t == T_RING && lat_sizes[s].huge))
				continue;
			struct pair p = { .vmm = t == T_RING ? FERRY_RINGS : t == T_FIVS ? FERRY_IVSHMEM
							      : t == T_QEMU ? QEMU : FERRY,
					  .huge = lat_sizes[s].huge };
			const char *post = t == T_DEF ? "deferred" : "immediate";
			bool ivs = t == T_FIVS || t == T_QEMU;
			snprintf(p.tx, sizeof(p.tx), "app=msgping role=ping peer=rx count=%lu warmup=%lu size=%u post=%s%s",
				 trips, t == T_DEF ? 100ul : warm, lat_sizes[s].size, post, ivs ? " mode=copy" : "");
			snprintf(p.rx, sizeof(p.rx), "app=msgping role=pong post=%s%s", post, ivs ? " mode=copy" : "");
			lat[s][t] = ping(&p);
		}
	}

	/* The linux column: ping first (a pong takes one message per call, so
	 * it never takes the bench sender's), then the bench sender; the
	 * receiver takes its run as one session. */
	struct bulk lxb[4] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };
	struct latency lxlat = { -1, -1 };
	if (lx) {
		char tx[512], rx[256];
		snprintf(tx, sizeof(tx),
			 "ping role=ping peer=rx count=%lu size=64;"
			 "bench role=send peer=rx sizes=64,4K,64K count=%lu mode=adaptive check=header",
			 (unsigned long)count, (unsigned long)count);
		snprintf(rx, sizeof(rx), "ping role=pong;bench role=recv");
		cJSON *r = run_linux_pair(false, tx, rx);
		cJSON *o;
		cJSON_ArrayForEach(o, r) {
			if (cJSON_GetObjectItem(o, "rtt_ns_median"))
				lxlat = (struct latency){ field(o, "rtt_ns_median") / 2000.0, field(o, "rtt_ns_p99") / 2000.0 };
		}
		for (int z = 0; z < 3; z++) {
			static const double sz[3] = { 64, 4096, 65536 };
			cJSON_ArrayForEach(o, r) {
				if (field(o, "size") == sz[z] && cJSON_GetObjectItem(o, "mbps"))
					lxb[z] = (struct bulk){ field(o, "mbps"), field(o, "msgs_per_s") };
			}
		}
		cJSON_Delete(r);
		unsigned long n2m = count / 4 < 10 ? 10 : (unsigned long)count / 4;
		snprintf(tx, sizeof(tx), "bench role=send peer=rx sizes=2M count=%lu mode=adaptive check=header", n2m);
		r = run_linux_pair(true, tx, "bench role=recv");
		cJSON_ArrayForEach(o, r) {
			if (field(o, "size") == 2u << 20 && cJSON_GetObjectItem(o, "mbps"))
				lxb[3] = (struct bulk){ field(o, "mbps"), field(o, "msgs_per_s") };
		}
		cJSON_Delete(r);
	}

	/* The figures. */
	const char *skeys[3] = { "64b", "4k", "64k" };
	const double ssizes[3] = { 64, 4096, 65536 };
	struct bulk sb[S_N][3], lb[L_N];
	for (int i = 0; i < S_N; i++)
		for (int z = 0; z < 3; z++)
			sb[i][z] = bulk_of(small_res[i], ssizes[z]);
	for (int i = 0; i < L_N; i++)
		lb[i] = bulk_of(large_res[i], 2u << 20);
	/* ferry's best per size: any way through msgq (not the link). */
	const char *best_mode[4];
	double best[4];
	for (int z = 0; z < 3; z++) {
		struct bulk v[S_FIVS];
		for (int i = 0; i < S_FIVS; i++)
			v[i] = sb[i][z];
		best[z] = best_of(v, small_names, S_FIVS, &best_mode[z]);
	}
	best[3] = best_of(lb, large_names, L_FIVS, &best_mode[3]);
	double qemu_tp[4] = { sb[S_QEMU][0].mbps, sb[S_QEMU][1].mbps, sb[S_QEMU][2].mbps, lb[L_QEMU].mbps };
	static const double target[4] = { 0.5, 0.5, 1.0, 2.0 };
	/* Adaptive against the faster of its paths: through ferry (copy or
	 * remap), with rings (the ring, or remap), at 2 MiB (copy or remap). */
	double adapt[3][3]; /* [size][0: ferry, 1: rings] */
	for (int z = 0; z < 3; z++) {
		double paths = fmax(sb[S_COPY][z].mbps, sb[S_REMAP][z].mbps);
		adapt[z][0] = ratio(sb[S_ADAPT][z].mbps, paths);
		adapt[z][1] = ratio(sb[S_RING][z].mbps, fmax(sb[S_RING][z].mbps, sb[S_REMAP][z].mbps));
	}
	double adapt2m = ratio(lb[L_ADAPT].mbps, fmax(lb[L_COPY].mbps, lb[L_REMAP].mbps));
	double adapt2m_def = ratio(lb[L_ADAPT_DEF].mbps, fmax(lb[L_COPY_DEF].mbps, lb[L_REMAP_DEF].mbps));

	if (json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "affinity", affinity);
		add_num(j, "round_trips", (double)trips);
		add_num(j, "throughput_ms", (double)ms);
		add_num(j, "remap_2m_mbps", lb[L_REMAP].mbps);
		add_num(j, "copy_2m_mbps", lb[L_COPY].mbps);
		add_num(j, "adaptive_2m_mbps", lb[L_ADAPT].mbps);
		add_num(j, "remap_2m_deferred_mbps", lb[L_REMAP_DEF].mbps);
		add_num(j, "copy_2m_deferred_mbps", lb[L_COPY_DEF].mbps);
		add_num(j, "adaptive_2m_deferred_mbps", lb[L_ADAPT_DEF].mbps);
		add_num(j, "adaptive_4k_mbps", sb[S_ADAPT][1].mbps);
		add_num(j, "copy_4k_mbps", sb[S_COPY][1].mbps);
		add_num(j, "remap_4k_mbps", sb[S_REMAP][1].mbps);
		add_num(j, "copy_64k_mbps", sb[S_COPY][2].mbps);
		add_num(j, "remap_64k_mbps", sb[S_REMAP][2].mbps);
		add_num(j, "adaptive_64k_mbps", sb[S_ADAPT][2].mbps);
		add_num(j, "copy_64b_msgs", sb[S_COPY][0].msgs);
		add_num(j, "deferred_64b_msgs", sb[S_ADAPT_DEF][0].msgs);
		add_num(j, "immediate_64b_msgs", sb[S_ADAPT][0].msgs);
		add_num(j, "deferred_4k_mbps", sb[S_ADAPT_DEF][1].mbps);
		add_num(j, "deferred_64k_mbps", sb[S_ADAPT_DEF][2].mbps);
		/* Direct rings (adaptive: every message of these sizes takes the
		 * ring with 4 KiB pages). */
		add_num(j, "ring_64b_msgs", sb[S_RING][0].msgs);
		add_num(j, "ring_4k_mbps", sb[S_RING][1].mbps);
		add_num(j, "ring_64k_mbps", sb[S_RING][2].mbps);
		add_num(j, "ring_deferred_64b_msgs", sb[S_RING_DEF][0].msgs);
		add_num(j, "ring_deferred_4k_mbps", sb[S_RING_DEF][1].mbps);
		add_num(j, "ring_deferred_64k_mbps", sb[S_RING_DEF][2].mbps);
		for (int s = 0; s < 4; s++) {
			char key[64];
			const char *k = lat_sizes[s].key;
			static const char *const tname[3] = { "immediate", "deferred", "ring" };
			for (int t = T_IMM; t <= T_RING; t++) {
				if (t == T_RING && lat_sizes[s].huge)
					continue;
				snprintf(key, sizeof(key), "latency_%s_%s_us", k, tname[t]);
				add_num(j, key, lat[s][t].p50);
				snprintf(key, sizeof(key), "latency_%s_%s_p99_us", k, tname[t]);
				add_num(j, key, lat[s][t].p99);
			}
		}
		/* The same runs as the qemu_* keys, between ferry VMs of a link. */
		cJSON_AddStringToObject(j, "ferry_ivshmem_transport", "ivshmem, ferry static link");
		add_num(j, "ferry_ivshmem_copy_2m_mbps", lb[L_FIVS].mbps);
		add_num(j, "ferry_ivshmem_copy_4k_mbps", sb[S_FIVS][1].mbps);
		add_num(j, "ferry_ivshmem_copy_64k_mbps", sb[S_FIVS][2].mbps);
		add_num(j, "ferry_ivshmem_copy_64b_msgs", sb[S_FIVS][0].msgs);
		add_num(j, "ferry_ivshmem_64b_msgs", sb[S_FIVS][0].msgs);
		for (int s = 0; s < 4; s++) {
			char key[64];
			snprintf(key, sizeof(key), "ferry_ivshmem_latency_%s_us", lat_sizes[s].key);
			add_num(j, key, lat[s][T_FIVS].p50);
			snprintf(key, sizeof(key), "ferry_ivshmem_latency_%s_p99_us", lat_sizes[s].key);
			add_num(j, key, lat[s][T_FIVS].p99);
		}
		if (qemu) {
			cJSON_AddStringToObject(j, "qemu_transport", "ivshmem-plain, q35");
			add_num(j, "qemu_copy_2m_mbps", lb[L_QEMU].mbps);
			add_num(j, "qemu_copy_4k_mbps", sb[S_QEMU][1].mbps);
			add_num(j, "qemu_copy_64k_mbps", sb[S_QEMU][2].mbps);
			add_num(j, "qemu_copy_64b_msgs", sb[S_QEMU][0].msgs);
			add_num(j, "qemu_64b_msgs", sb[S_QEMU][0].msgs);
			for (int s = 0; s < 4; s++) {
				char key[64];
				snprintf(key, sizeof(key), "qemu_latency_%s_us", lat_sizes[s].key);
				add_num(j, key, lat[s][T_QEMU].p50);
				snprintf(key, sizeof(key), "qemu_latency_%s_p99_us", lat_sizes[s].key);
				add_num(j, key, lat[s][T_QEMU].p99);
			}
		}
		if (lx) {
			/* Linux sender and receiver: ferry-msg through ferry_msgq,
			 * adaptive, immediate. */
			cJSON_AddStringToObject(j, "linux_transport", "msgq, Linux ferry_msgq + ferry-msg, adaptive");
			add_num(j, "linux_64b_msgs", lxb[0].msgs);
			add_num(j, "linux_4k_mbps", lxb[1].mbps);
			add_num(j, "linux_64k_mbps", lxb[2].mbps);
			add_num(j, "linux_2m_mbps", lxb[3].mbps);
			add_num(j, "linux_latency_64b_us", lxlat.p50);
			add_num(j, "linux_latency_64b_p99_us", lxlat.p99);
		}
		const char *bkeys[4] = { "64b", "4k", "64k", "2m" };
		for (int z = 0; z < 4; z++) {
			char key[64];
			snprintf(key, sizeof(key), "best_%s_mbps", bkeys[z]);
			add_num(j, key, best[z]);
			snprintf(key, sizeof(key), "best_%s_mode", bkeys[z]);
			cJSON_AddStringToObject(j, key, best_mode[z]);
			if (qemu) {
				snprintf(key, sizeof(key), "best_%s_vs_qemu", bkeys[z]);
				add_num(j, key, ratio(best[z], qemu_tp[z]));
			}
		}
		for (int z = 0; z < 3; z++) {
			char key[64];
			snprintf(key, sizeof(key), "adaptive_%s_vs_faster_path", skeys[z]);
			add_num(j, key, adapt[z][0]);
			snprintf(key, sizeof(key), "adaptive_rings_%s_vs_faster_path", skeys[z]);
			add_num(j, key, adapt[z][1]);
		}
		add_num(j, "adaptive_2m_vs_faster_path", adapt2m);
		add_num(j, "adaptive_2m_deferred_vs_faster_path", adapt2m_def);
		if (pin_failures)
			add_num(j, "pairs_not_pinned", pin_failures);
		char *text = cJSON_PrintUnformatted(j);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(j);
	} else {
		printf("affinity: %s\n", affinity);
		if (pin_failures)
			printf("  (%u ferry pairs could not be pinned)\n", pin_failures);
		printf("throughput, 4 KiB pages, median of %u runs of %lu ms (MB/s, messages/s)\n", repeat, (unsigned long)ms);
		printf("  %-18s %22s %22s %22s\n", "", "64 B", "4 KiB", "64 KiB");
		for (unsigned i = 0; i < nsmall; i++) {
			printf("  %-18s", small_names[i]);
			for (int z = 0; z < 3; z++)
				printf(" %9.1f %10.0f/s", sb[i][z].mbps, sb[i][z].msgs);
			printf("\n");
		}
		printf("throughput, 2 MiB pages, 2 MiB messages\n");
		for (unsigned i = 0; i < nlarge; i++)
			printf("  %-18s %9.0f MB/s %7.0f/s\n", large_names[i], lb[i].mbps, lb[i].msgs);
		printf("one-way latency (half the round trip), p50 / p99 over %lu round trips, in us\n", trips);
		printf("  %-8s", "");
		for (int t = 0; t < T_N; t++)
			if (t != T_QEMU || qemu)
				printf(" %21s", lat_names[t]);
		printf("\n");
		for (int s = 0; s < 4; s++) {
			printf("  %-8s", lat_sizes[s].name);
			for (int t = 0; t < T_N; t++)
				if (t != T_QEMU || qemu)
					printf("   %8.1f / %8.1f", lat[s][t].p50, lat[s][t].p99);
			printf("\n");
		}
		if (lx) {
			printf("linux (ferry-msg through ferry_msgq, adaptive, immediate; %lu messages a size) beside\n"
			       "ferry-guest (adaptive)%s\n", (unsigned long)count, qemu ? " and qemu ivshmem" : "");
			printf("  %-8s %22s %22s%s\n", "", "linux", "ferry-guest", qemu ? "            qemu ivshmem" : "");
			printf("  %-8s %13.0f msgs/s %13.0f msgs/s", "64 B", lxb[0].msgs, sb[S_ADAPT][0].msgs);
			if (qemu)
				printf(" %17.0f msgs/s", sb[S_QEMU][0].msgs);
			printf("\n");
			const char *zn[3] = { "4 KiB", "64 KiB", "2 MiB" };
			for (int z = 0; z < 3; z++) {
				double fg = z < 2 ? sb[S_ADAPT][z + 1].mbps : lb[L_ADAPT].mbps;
				printf("  %-8s %14.1f MB/s %14.1f MB/s", zn[z], lxb[z + 1].mbps, fg);
				if (qemu)
					printf(" %18.1f MB/s", z < 2 ? sb[S_QEMU][z + 1].mbps : lb[L_QEMU].mbps);
				printf("\n");
			}
			printf("  64 B latency p50 / p99: linux %.1f / %.1f us, ferry-guest %.1f / %.1f us", lxlat.p50, lxlat.p99,
			       lat[0][T_IMM].p50, lat[0][T_IMM].p99);
			if (qemu)
				printf(", qemu ivshmem %.1f / %.1f us", lat[0][T_QEMU].p50, lat[0][T_QEMU].p99);
			printf("\n");
		}
		printf("targets\n");
		const char *tnames[4] = { "64 B", "4 KiB", "64 KiB", "2 MiB" };
		for (int z = 0; z < 4; z++) {
			double r = ratio(best[z], qemu_tp[z]);
			if (qemu)
				printf("  %-6s ferry's best (%s) / qemu: %.2fx   (target: >= %.1fx)%s\n", tnames[z], best_mode[z],
				       r, target[z], r >= target[z] ? "" : "   MISSED");
			else
				printf("  %-6s ferry's best: %s\n", tnames[z], best_mode[z]);
		}
		printf("  64 B immediate latency p50: %.1f us   (target: <= 20 us)%s\n", lat[0][T_IMM].p50,
		       lat[0][T_IMM].p50 <= 20 ? "" : "   MISSED");
		for (int z = 0; z < 3; z++)
			printf("  adaptive at %s: %.0f%% of the faster of copy and remap, %.0f%% with rings   (target: >= 90%%)\n",
			       tnames[z], 100 * adapt[z][0], 100 * adapt[z][1]);
		printf("  adaptive at 2 MiB: %.0f%% immediate, %.0f%% deferred   (target: >= 90%%)\n", 100 * adapt2m,
		       100 * adapt2m_def);
	}
	for (int i = 0; i < S_N; i++)
		cJSON_Delete(small_res[i]);
	for (int i = 0; i < L_N; i++)
		cJSON_Delete(large_res[i]);
	bench_remove_dir("msg", tmpdir);
	if (qemu)
		bench_remove_dir("msg", shmdir);
	return 0;
}
