/* ferry bench msg: message-queue throughput and latency between two VMs,
 * for copy, remap and adaptive transfer, immediate and deferred posting,
 * with 4 KiB and 2 MiB pages. Each measurement is a fresh pair of VMs
 * running msgbulk or msgping (check=header: the guests write and check only
 * a header, so what is timed is the transport, not the guests filling and
 * summing memory; examples/msgq.json checks every byte).
 *
 * The copy measurements run again with the same guest and the same command
 * lines plus transport=ivshmem: a ring in memory two VMs share through an
 * ivshmem device, between two ferry VMs coupled by a static link
 * (docs/devices/ivshmem.md), and, with QEMU installed, between two QEMU VMs
 * through ivshmem-plain, QEMU's way for VMs to exchange data
 * (docs/devices/msgq.md, "Compared with QEMU").
 *
 * The Linux column: two Linux VMs (make linux-guest) with ferry's ferry_msgq
 * module, the sender and receiver being ferry-msg in user space, which
 * speaks msgbulk's and msgping's protocol (docs/GUESTS.md). One boot of the
 * pair runs every Linux measurement in turn: a Linux boot costs a minute or
 * more on the project's hosts. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "vmm/config.h"

static const char msg_help[] =
	"usage: ferry bench msg [--count N] [--repeat R] [--kernel IMAGE] [--linux IMAGE] [--no-linux]\n"
	"                       [--no-qemu] [--json]\n"
	"\n"
	"Runs pairs of VMs passing messages through their msgq devices and reports\n"
	"throughput (MB/s, messages/s) for 64 B, 4 KiB, 64 KiB (4 KiB pages) and 2 MiB\n"
	"(2 MiB pages) messages, copied, remapped and adaptive, posted immediately\n"
	"(doorbell) and deferred; and one-way latency (half the round trip). --count\n"
	"scales the number of messages (default 1000 per measurement); each throughput\n"
	"is the median of --repeat runs (default 3). With qemu-system-x86_64 installed\n"
	"(and without --no-qemu), the copy throughputs, the 64 B message rate and the\n"
	"latencies are measured again between two QEMU VMs (q35) running the same guest\n"
	"over ivshmem shared memory (transport=ivshmem): the qemu column. The same runs\n"
	"between two ferry VMs coupled by a static link (an ivshmem device each) make\n"
	"the ferry ivshmem column. Targets on the project's machines: at 2 MiB remap\n"
	">= 10x copy; at 4 KiB adaptive within 10% of the faster of copy and remap;\n"
	"deferred >= 5x immediate for 64 B.\n"
	"\n"
	"The linux column: the 64 B-64 KiB throughputs, the 64 B posting rates and the\n"
	"64 B-64 KiB latencies again between two Linux VMs, sender and receiver being\n"
	"ferry-msg in user space through the ferry_msgq module (docs/GUESTS.md), from\n"
	"one boot of the pair (--count / 5 messages per measurement, at least 20).\n"
	"--linux names the kernel (default: linux/vmlinux beside the ferry binary, from\n"
	"make linux-guest); without one, or with --no-linux, there is no linux column.\n";

/* What the test kernel needs on the project's hosts (linux/README.md; the
 * tests' LINUX_CMDLINE). */
#define LINUX_CMDLINE "console=ttyS0 reboot=t rodata=off noxsave clearcpuid=smap,popcnt,erms,fsrm tsc=reliable no-kvm-hypercalls"

#define QEMU_SHM_MIB 64  /* two rings of 32 MiB: 15 messages of 2 MiB each */
#define LINK_MIB QEMU_SHM_MIB  /* ferry's link: the same rings */

static char self[PATH_MAX], kernel[PATH_MAX], linux_kernel[PATH_MAX];
static char tmpdir[] = "/tmp/ferry-bench-msg-XXXXXX";
static char shmdir[] = "/dev/shm/ferry-bench-msg-XXXXXX";

/* FERRY: msgq devices; FERRY_IVSHMEM: a static link, the guests' ivshmem
 * transport; QEMU: ivshmem-plain, the same transport. */
enum vmm { FERRY, FERRY_IVSHMEM, QEMU };

/* The result objects ("...: result {...}" lines) a console printed. */
static cJSON *results_in(char *console)
{
	cJSON *out = cJSON_CreateArray();
	for (char *line = strtok(console, "\n"); line; line = strtok(NULL, "\n")) {
		char *res = strstr(line, ": result ");
		if (res)
			cJSON_AddItemToArray(out, cJSON_Parse(res + 9));
	}
	return out;
}

/* A sender/receiver pair in one ferry process, talking through msgq, or
 * (`link`) through the ivshmem devices of a static link, with the QEMU
 * pair's command lines. */
static cJSON *run_ferry_pair(bool huge, bool link, const char *tx, const char *rx)
{
	char cfg[PATH_MAX + 32];
	snprintf(cfg, sizeof(cfg), "%s/pair.json", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return NULL;
	const char *dev = huge ? ", \"send_slots\": 64, \"recv_slots\": 64, \"max_msg_pages\": 1"
			       : ", \"send_slots\": 1024, \"recv_slots\": 1024";
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
	int st = child_finish(&c, 400);
	if (st != 0) {
		fprintf(stderr, "ferry bench msg: a pair failed (exit %d): tx \"%s\"\n", st, tx);
		return NULL;
	}
	return results_in(c.buf);
}

/* One QEMU VM of a pair: q35 (PCI for ivshmem), the guest's console on
 * stdout, the shared memory file `shm` as ivshmem-plain's BAR 2. */
static int qemu_spawn(struct child *c, const char *cmdline, const char *vm, const char *shm)
{
	char append[1024], backend[PATH_MAX + 96];
	snprintf(append, sizeof(append), "%s vm=%s transport=ivshmem", cmdline, vm);
	snprintf(backend, sizeof(backend), "memory-backend-file,id=shm,size=%dM,share=on,mem-path=%s", QEMU_SHM_MIB,
		 shm);
	char *argv[] = { QEMU_BIN, "-M", "q35", "-accel", "kvm", "-m", "128M", "-nodefaults", "-no-user-config",
			 "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", kernel,
			 "-append", append, "-device", "isa-debug-exit,iobase=0x501", "-object", backend,
			 "-device", "ivshmem-plain,memdev=shm", NULL };
	return child_spawn(c, argv);
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
	if (!ok || qemu_spawn(&c[0], rx, "rx", shm) < 0) {
		fprintf(stderr, "ferry bench msg: cannot start QEMU with %s\n", shm);
		unlink(shm);
		return NULL;
	}
	if (qemu_spawn(&c[1], tx, "tx", shm) < 0)
		kill(c[0].pid, SIGKILL);
	int st_tx = c[1].pid > 0 ? child_finish(&c[1], 300) : -1, st_rx = child_finish(&c[0], 60);
	unlink(shm);
	if (st_tx != 1 || st_rx != 1) {
		fprintf(stderr, "ferry bench msg: a QEMU pair failed (exit %d and %d): tx \"%s\"\n", st_tx, st_rx, tx);
		return NULL;
	}
	return results_in(c[1].buf);
}

/* A pair of Linux VMs running `tx` and `rx` (ferry.msg lists: ferry-msg
 * commands separated by ';'); returns the result objects on the sender's
 * console, or NULL if the run failed. The console is read from its log
 * file: a Linux boot log would crowd a pipe's buffer. */
static cJSON *run_linux_pair(const char *tx, const char *rx)
{
	char cfg[PATH_MAX + 32], log[PATH_MAX + 32];
	snprintf(cfg, sizeof(cfg), "%s/linux.json", tmpdir);
	snprintf(log, sizeof(log), "%s/tx.log", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return NULL;
	const char *dev = ", \"send_slots\": 1024, \"recv_slots\": 1024";
	fprintf(f,
		"{\"vms\": ["
		"{\"name\": \"tx\", \"memory_mib\": 128, \"kernel\": \"%s\","
		" \"cmdline\": \"%s ferry.expect=msgq ferry.timeout=1500 ferry.msg=\\\"%s\\\"\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"rx\"]%s}]},"
		"{\"name\": \"rx\", \"memory_mib\": 128, \"kernel\": \"%s\","
		" \"cmdline\": \"%s ferry.expect=msgq ferry.timeout=1500 ferry.msg=\\\"%s\\\"\","
		" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"tx\"]%s}]}]}\n",
		linux_kernel, LINUX_CMDLINE, tx, dev, linux_kernel, LINUX_CMDLINE, rx, dev);
	if (fclose(f) != 0)
		return NULL;
	unlink(log);
	char *argv[] = { self, "run", cfg, "--quiet", "--timeout", "1500", "--log-dir", tmpdir, NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return NULL;
	int st = child_finish(&c, 1600);
	if (st != 0) {
		fprintf(stderr, "ferry bench msg: the Linux pair failed (exit %d); consoles in %s\n", st, tmpdir);
		return NULL;
	}
	FILE *in = fopen(log, "r");
	if (!in) {
		fprintf(stderr, "ferry bench msg: no console log %s: %s\n", log, strerror(errno));
		return NULL;
	}
	static char text[1 << 20];
	size_t n = fread(text, 1, sizeof(text) - 1, in);
	fclose(in);
	text[n] = '\0';
	return results_in(text);
}

/* The Linux run's result for (size, mode, post, kind: "mbps" or
 * "rtt_ns_median"), or NULL. */
static cJSON *linux_result(cJSON *results, double size, const char *mode, const char *post, const char *kind)
{
	cJSON *r;
	cJSON_ArrayForEach(r, results) {
		cJSON *m = cJSON_GetObjectItem(r, "mode"), *p = cJSON_GetObjectItem(r, "post");
		if (cJSON_GetNumberValue(cJSON_GetObjectItem(r, "size")) == size && cJSON_IsString(m) &&
		    !strcmp(m->valuestring, mode) && cJSON_IsString(p) && !strcmp(p->valuestring, post) &&
		    cJSON_GetObjectItem(r, kind))
			return r;
	}
	return NULL;
}

/* Runs a sender/receiver pair (`huge`: 2 MiB pages, for ferry's msgq);
 * returns the result objects their consoles printed (an array), or NULL if
 * the run failed. */
static cJSON *run_pair(enum vmm vmm, bool huge, const char *tx, const char *rx)
{
	if (vmm == QEMU)
		return run_qemu_pair(tx, rx);
	return run_ferry_pair(vmm == FERRY && huge, vmm == FERRY_IVSHMEM, tx, rx);
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

/* Runs a pair `repeat` times; for each message size, the run with the
 * median throughput (this kind of host is noisy). */
static cJSON *run_pair_median(enum vmm vmm, bool huge, const char *tx, const char *rx)
{
	cJSON *runs[16];
	unsigned n = 0;
	for (unsigned i = 0; i < repeat && i < 16; i++)
		if ((runs[n] = run_pair(vmm, huge, tx, rx)) != NULL)
			n++;
	if (!n)
		return NULL;
	cJSON *out = cJSON_CreateArray(), *r;
	cJSON_ArrayForEach(r, runs[0]) {
		double size = field(r, "size"), v[16];
		unsigned k = 0;
		for (unsigned i = 0; i < n; i++)
			v[k++] = bulk_of(runs[i], size).mbps;
		double med = stat_median(v, k);
		for (unsigned i = 0; i < n; i++) {
			cJSON *x = for_size(runs[i], size);
			if (x && field(x, "mbps") == med) {
				cJSON_AddItemToArray(out, cJSON_Duplicate(x, true));
				break;
			}
		}
	}
	for (unsigned i = 0; i < n; i++)
		cJSON_Delete(runs[i]);
	return out;
}

/* One-way latency (half the round trip) in µs: median and p99. */
struct latency {
	double median, p99;
};

static struct latency ping_pair(enum vmm vmm, bool huge, const char *tx, const char *rx)
{
	cJSON *r = run_pair(vmm, huge, tx, rx);
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

int bench_msg(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, 0, 'n' }, { "kernel", required_argument, 0, 'k' },
		{ "repeat", required_argument, 0, 'r' }, { "no-qemu", no_argument, 0, 'Q' },
		{ "json", no_argument, 0, 'j' },         { "help", no_argument, 0, 'h' },
		{ "linux", required_argument, 0, 'L' },  { "no-linux", no_argument, 0, 'N' },
		{ 0, 0, 0, 0 },
	};
	uint64_t count = 1000, count_r;
	bool json = false, want_qemu = true, want_linux = true, linux_given = false;
	config_default_kernel(kernel, sizeof(kernel));
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!parse_uint(optarg, 10, 1000000, &count))
				return usage_error("bench msg", "--count: expected 10 to 1000000, got '%s'", optarg);
			break;
		case 'k':
			snprintf(kernel, sizeof(kernel), "%s", optarg);
			break;
		case 'r':
			if (!parse_uint(optarg, 1, 15, &count_r))
				return usage_error("bench msg", "--repeat: expected 1 to 15, got '%s'", optarg);
			repeat = (unsigned)count_r;
			break;
		case 'Q':
			want_qemu = false;
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
	bool qemu = qemu_usable(want_qemu);
	/* The Linux kernel: given (it must be readable), or make linux-guest's
	 * beside this binary (its absence only drops the column). */
	if (want_linux && !linux_given) {
		char exe[PATH_MAX];
		snprintf(exe, sizeof(exe), "%s", self);
		snprintf(linux_kernel, sizeof(linux_kernel), "%s/linux/vmlinux", dirname(exe));
	}
	char labs[PATH_MAX];
	bool lx = want_linux && access(linux_kernel, R_OK) == 0 && realpath(linux_kernel, labs);
	if (want_linux && !lx) {
		fprintf(stderr, "ferry bench msg: cannot read Linux kernel %s (make linux-guest): no linux column\n",
			linux_kernel);
		if (linux_given) {
			bench_remove_dir("msg", tmpdir);
			return 1;
		}
	}
	if (lx)
		snprintf(linux_kernel, sizeof(linux_kernel), "%s", labs);

	/* The QEMU runs take the copy runs' command lines as they are. */
	const char *modes[3] = { "copy", "remap", "adaptive" };
	char tx[512];
	cJSON *small[3], *large[2][3], *qsmall = NULL, *qlarge = NULL, *fsmall = NULL, *flarge = NULL;
	unsigned long cnt = (unsigned long)count;
	for (int m = 0; m < 3; m++) {
		snprintf(tx, sizeof(tx), "app=msgbulk role=send peer=rx sizes=64,4K,64K count=%lu mode=%s check=header", cnt,
			 modes[m]);
		small[m] = run_pair_median(FERRY, false, tx, "app=msgbulk role=recv");
		if (m == 0)
			fsmall = run_pair_median(FERRY_IVSHMEM, false, tx, "app=msgbulk role=recv");
		if (qemu && m == 0)
			qsmall = run_pair_median(QEMU, false, tx, "app=msgbulk role=recv");
		for (int p = 0; p < 2; p++) {
			snprintf(tx, sizeof(tx), "app=msgbulk role=send peer=rx sizes=2M count=%lu mode=%s post=%s check=header",
				 cnt, modes[m], p ? "deferred" : "immediate");
			large[p][m] = run_pair_median(FERRY, true, tx, "app=msgbulk role=recv");
			if (m == 0 && p == 0)
				flarge = run_pair_median(FERRY_IVSHMEM, true, tx, "app=msgbulk role=recv");
			if (qemu && m == 0 && p == 0)
				qlarge = run_pair_median(QEMU, true, tx, "app=msgbulk role=recv");
		}
	}
	cJSON *post[2], *qpost = NULL, *fpost = NULL;
	for (int p = 0; p < 2; p++) {
		snprintf(tx, sizeof(tx), "app=msgbulk role=send peer=rx sizes=64 count=%lu post=%s check=header",
			 cnt * 20, p ? "deferred" : "immediate");
		post[p] = run_pair_median(FERRY, false, tx, "app=msgbulk role=recv");
		if (p == 0)
			fpost = run_pair_median(FERRY_IVSHMEM, false, tx, "app=msgbulk role=recv");
		if (qemu && p == 0)
			qpost = run_pair_median(QEMU, false, tx, "app=msgbulk role=recv");
	}
	/* Latency: ping-pong, both posting ways. */
	const struct {
		uint32_t size;
		bool huge;
	} lat_sizes[] = { { 64, false }, { 4096, false }, { 65536, false }, { 2u << 20, true } };
	struct latency lat[4][2], qlat[4], flat[4]; /* [size][post] */
	for (int s = 0; s < 4; s++) {
		for (int p = 0; p < 2; p++) {
			snprintf(tx, sizeof(tx), "app=msgping role=ping peer=rx count=%lu size=%u post=%s",
				 cnt / 5 < 20 ? 20 : cnt / 5, lat_sizes[s].size, p ? "deferred" : "immediate");
			char rx[128];
			snprintf(rx, sizeof(rx), "app=msgping role=pong post=%s", p ? "deferred" : "immediate");
			lat[s][p] = ping_pair(FERRY, lat_sizes[s].huge, tx, rx);
			if (p == 0) {
				flat[s] = ping_pair(FERRY_IVSHMEM, false, tx, rx);
				qlat[s] = qemu ? ping_pair(QEMU, false, tx, rx) : (struct latency){ -1, -1 };
			}
		}
	}

	/* The Linux column: one boot of the pair, every measurement in turn
	 * (the receiver runs one ferry-msg per sender run). */
	cJSON *lres = NULL;
	if (lx) {
		unsigned long lcnt = cnt / 5 < 20 ? 20 : cnt / 5;
		/* Pings first: a pong takes one message per call, so it never
		 * takes the next sender's; the bench receiver takes the four
		 * sender runs as sessions of one process, for the same reason. */
		char ltx[1600], lrx[512];
		int w = 0;
		lrx[0] = '\0';
		for (int s = 0; s < 3; s++) {
			w += snprintf(ltx + w, sizeof(ltx) - (size_t)w, "ping role=ping peer=rx count=%lu size=%u;", lcnt,
				      lat_sizes[s].size);
			strcat(lrx, "ping role=pong;");
		}
		snprintf(ltx + w, sizeof(ltx) - (size_t)w,
			 "bench role=send peer=rx sizes=64,4K,64K count=%lu mode=copy check=header;"
			 "bench role=send peer=rx sizes=64,4K,64K count=%lu mode=remap check=header;"
			 "bench role=send peer=rx sizes=64,4K,64K count=%lu mode=adaptive check=header;"
			 "bench role=send peer=rx sizes=64 count=%lu post=deferred check=header",
			 lcnt, lcnt, lcnt, lcnt * 5);
		strcat(lrx, "bench role=recv sessions=4");
		lres = run_linux_pair(ltx, lrx);
	}
	struct bulk l64[3], l4k[3], l64k[3], lrate[2];
	struct latency llat[3];
	const char *lmodes[3] = { "copy", "remap", "adaptive" };
	for (int m = 0; m < 3; m++) {
		cJSON *r;
		r = linux_result(lres, 64, lmodes[m], "immediate", "mbps");
		l64[m] = r ? (struct bulk){ field(r, "mbps"), field(r, "msgs_per_s") } : (struct bulk){ -1, -1 };
		r = linux_result(lres, 4096, lmodes[m], "immediate", "mbps");
		l4k[m] = r ? (struct bulk){ field(r, "mbps"), field(r, "msgs_per_s") } : (struct bulk){ -1, -1 };
		r = linux_result(lres, 65536, lmodes[m], "immediate", "mbps");
		l64k[m] = r ? (struct bulk){ field(r, "mbps"), field(r, "msgs_per_s") } : (struct bulk){ -1, -1 };
	}
	lrate[0] = l64[2];
	{
		cJSON *r = linux_result(lres, 64, "adaptive", "deferred", "mbps");
		lrate[1] = r ? (struct bulk){ field(r, "mbps"), field(r, "msgs_per_s") } : (struct bulk){ -1, -1 };
	}
	for (int s = 0; s < 3; s++) {
		cJSON *r = linux_result(lres, lat_sizes[s].size, "adaptive", "immediate", "rtt_ns_median");
		llat[s] = r ? (struct latency){ field(r, "rtt_ns_median") / 2000.0, field(r, "rtt_ns_p99") / 2000.0 }
			    : (struct latency){ -1, -1 };
	}

	struct bulk s64[3], s4k[3], s64k[3], s2m[2][3];
	for (int m = 0; m < 3; m++) {
		s64[m] = bulk_of(small[m], 64);
		s4k[m] = bulk_of(small[m], 4096);
		s64k[m] = bulk_of(small[m], 65536);
		for (int p = 0; p < 2; p++)
			s2m[p][m] = bulk_of(large[p][m], 2u << 20);
	}
	struct bulk imm = bulk_of(post[0], 64), def = bulk_of(post[1], 64);
	struct bulk q64 = bulk_of(qsmall, 64), q4k = bulk_of(qsmall, 4096), q64k = bulk_of(qsmall, 65536);
	struct bulk q2m = bulk_of(qlarge, 2u << 20), qrate = bulk_of(qpost, 64);
	struct bulk f64 = bulk_of(fsmall, 64), f4k = bulk_of(fsmall, 4096), f64k = bulk_of(fsmall, 65536);
	struct bulk f2m = bulk_of(flarge, 2u << 20), frate = bulk_of(fpost, 64);
	const char *names[4] = { "64b", "4k", "64k", "2m" };
	if (json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "remap_2m_mbps", s2m[0][1].mbps);
		cJSON_AddNumberToObject(j, "copy_2m_mbps", s2m[0][0].mbps);
		cJSON_AddNumberToObject(j, "adaptive_2m_mbps", s2m[0][2].mbps);
		cJSON_AddNumberToObject(j, "remap_2m_deferred_mbps", s2m[1][1].mbps);
		cJSON_AddNumberToObject(j, "copy_2m_deferred_mbps", s2m[1][0].mbps);
		cJSON_AddNumberToObject(j, "adaptive_4k_mbps", s4k[2].mbps);
		cJSON_AddNumberToObject(j, "copy_4k_mbps", s4k[0].mbps);
		cJSON_AddNumberToObject(j, "remap_4k_mbps", s4k[1].mbps);
		cJSON_AddNumberToObject(j, "copy_64k_mbps", s64k[0].mbps);
		cJSON_AddNumberToObject(j, "remap_64k_mbps", s64k[1].mbps);
		cJSON_AddNumberToObject(j, "adaptive_64k_mbps", s64k[2].mbps);
		cJSON_AddNumberToObject(j, "copy_64b_msgs", s64[0].msgs);
		cJSON_AddNumberToObject(j, "deferred_64b_msgs", def.msgs);
		cJSON_AddNumberToObject(j, "immediate_64b_msgs", imm.msgs);
		for (int s = 0; s < 4; s++) {
			char key[64];
			snprintf(key, sizeof(key), "latency_%s_immediate_us", names[s]);
			cJSON_AddNumberToObject(j, key, lat[s][0].median);
			snprintf(key, sizeof(key), "latency_%s_deferred_us", names[s]);
			cJSON_AddNumberToObject(j, key, lat[s][1].median);
		}
		/* The same runs as the qemu_* keys, between ferry VMs of a link. */
		cJSON_AddStringToObject(j, "ferry_ivshmem_transport", "ivshmem, ferry static link");
		cJSON_AddNumberToObject(j, "ferry_ivshmem_copy_2m_mbps", f2m.mbps);
		cJSON_AddNumberToObject(j, "ferry_ivshmem_copy_4k_mbps", f4k.mbps);
		cJSON_AddNumberToObject(j, "ferry_ivshmem_copy_64k_mbps", f64k.mbps);
		cJSON_AddNumberToObject(j, "ferry_ivshmem_copy_64b_msgs", f64.msgs);
		cJSON_AddNumberToObject(j, "ferry_ivshmem_64b_msgs", frate.msgs);
		for (int s = 0; s < 4; s++) {
			char key[64];
			snprintf(key, sizeof(key), "ferry_ivshmem_latency_%s_us", names[s]);
			cJSON_AddNumberToObject(j, key, flat[s].median);
		}
		if (qemu) {
			cJSON_AddStringToObject(j, "qemu_transport", "ivshmem-plain, q35");
			cJSON_AddNumberToObject(j, "qemu_copy_2m_mbps", q2m.mbps);
			cJSON_AddNumberToObject(j, "qemu_copy_4k_mbps", q4k.mbps);
			cJSON_AddNumberToObject(j, "qemu_copy_64k_mbps", q64k.mbps);
			cJSON_AddNumberToObject(j, "qemu_copy_64b_msgs", q64.msgs);
			cJSON_AddNumberToObject(j, "qemu_64b_msgs", qrate.msgs);
			for (int s = 0; s < 4; s++) {
				char key[64];
				snprintf(key, sizeof(key), "qemu_latency_%s_us", names[s]);
				cJSON_AddNumberToObject(j, key, qlat[s].median);
			}
		}
		if (lx) {
			/* Linux sender and receiver, ferry-msg through ferry_msgq. */
			cJSON_AddStringToObject(j, "linux_transport", "msgq, Linux ferry_msgq + ferry-msg");
			for (int m = 0; m < 3; m++) {
				char key[64];
				snprintf(key, sizeof(key), "linux_%s_64b_msgs", lmodes[m]);
				cJSON_AddNumberToObject(j, key, l64[m].msgs);
				snprintf(key, sizeof(key), "linux_%s_4k_mbps", lmodes[m]);
				cJSON_AddNumberToObject(j, key, l4k[m].mbps);
				snprintf(key, sizeof(key), "linux_%s_64k_mbps", lmodes[m]);
				cJSON_AddNumberToObject(j, key, l64k[m].mbps);
			}
			cJSON_AddNumberToObject(j, "linux_immediate_64b_msgs", lrate[0].msgs);
			cJSON_AddNumberToObject(j, "linux_deferred_64b_msgs", lrate[1].msgs);
			for (int s = 0; s < 3; s++) {
				char key[64];
				snprintf(key, sizeof(key), "linux_latency_%s_us", names[s]);
				cJSON_AddNumberToObject(j, key, llat[s].median);
			}
		}
		char *text = cJSON_PrintUnformatted(j);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(j);
	} else {
		printf("throughput, 4 KiB pages, immediate      copy                remap               adaptive"
		       "            ferry ivshmem (copy)%s\n", qemu ? " qemu ivshmem (copy)" : "");
		struct bulk *rows[3] = { s64, s4k, s64k }, qrows[3] = { q64, q4k, q64k }, frows[3] = { f64, f4k, f64k };
		const char *rnames[3] = { "64 B", "4 KiB", "64 KiB" };
		for (int r = 0; r < 3; r++) {
			printf("  %-8s %8.1f MB/s %7.0f/s %8.1f MB/s %7.0f/s %8.1f MB/s %7.0f/s", rnames[r], rows[r][0].mbps,
			       rows[r][0].msgs, rows[r][1].mbps, rows[r][1].msgs, rows[r][2].mbps, rows[r][2].msgs);
			printf(" %8.1f MB/s %7.0f/s", frows[r].mbps, frows[r].msgs);
			if (qemu)
				printf(" %8.1f MB/s %7.0f/s", qrows[r].mbps, qrows[r].msgs);
			printf("\n");
		}
		if (lx) {
			printf("  linux: the same between two Linux VMs (ferry-msg through ferry_msgq)\n");
			struct bulk *lrows[3] = { l64, l4k, l64k };
			for (int r = 0; r < 3; r++)
				printf("  %-8s %8.1f MB/s %7.0f/s %8.1f MB/s %7.0f/s %8.1f MB/s %7.0f/s\n", rnames[r],
				       lrows[r][0].mbps, lrows[r][0].msgs, lrows[r][1].mbps, lrows[r][1].msgs,
				       lrows[r][2].mbps, lrows[r][2].msgs);
		}
		printf("throughput, 2 MiB pages, 2 MiB messages\n");
		for (int p = 0; p < 2; p++)
			printf("  %-9s %9.0f MB/s %6.0f/s %8.0f MB/s %6.0f/s %8.0f MB/s %6.0f/s\n",
			       p ? "deferred" : "immediate", s2m[p][0].mbps, s2m[p][0].msgs, s2m[p][1].mbps, s2m[p][1].msgs,
			       s2m[p][2].mbps, s2m[p][2].msgs);
		printf("  %-9s %9.0f MB/s %6.0f/s   (ferry ivshmem, copy; remap / ferry ivshmem: %.1fx)\n", "ivshmem",
		       f2m.mbps, f2m.msgs, s2m[0][1].mbps / f2m.mbps);
		if (qemu)
			printf("  %-9s %9.0f MB/s %6.0f/s   (qemu ivshmem, copy; remap / qemu: %.1fx)\n", "qemu", q2m.mbps,
			       q2m.msgs, s2m[0][1].mbps / q2m.mbps);
		printf("  remap / copy at 2 MiB: %.1fx immediate, %.1fx deferred   (target: >= 10x)\n",
		       s2m[0][1].mbps / s2m[0][0].mbps, s2m[1][1].mbps / s2m[1][0].mbps);
		double best4k = s4k[0].mbps > s4k[1].mbps ? s4k[0].mbps : s4k[1].mbps;
		printf("  adaptive at 4 KiB: %.0f%% of the faster of copy and remap   (target: >= 90%%)\n",
		       100.0 * s4k[2].mbps / best4k);
		printf("posting 64 B messages: immediate %.0f/s, deferred %.0f/s: %.1fx   (target: >= 5x)\n", imm.msgs, def.msgs,
		       def.msgs / imm.msgs);
		printf("  ferry ivshmem: %.0f/s\n", frate.msgs);
		if (qemu)
			printf("  qemu ivshmem: %.0f/s\n", qrate.msgs);
		if (lx)
			printf("  linux: immediate %.0f/s, deferred %.0f/s\n", lrate[0].msgs, lrate[1].msgs);
		printf("one-way latency (half the round trip), median / p99\n");
		const char *lnames[4] = { "64 B", "4 KiB", "64 KiB", "2 MiB" };
		for (int s = 0; s < 4; s++) {
			printf("  %-8s immediate %8.1f / %8.1f us   deferred %8.1f / %8.1f us", lnames[s], lat[s][0].median,
			       lat[s][0].p99, lat[s][1].median, lat[s][1].p99);
			printf("   ferry ivshmem %8.1f / %8.1f us", flat[s].median, flat[s].p99);
			if (qemu)
				printf("   qemu ivshmem %8.1f / %8.1f us", qlat[s].median, qlat[s].p99);
			if (lx && s < 3)
				printf("   linux %8.1f / %8.1f us", llat[s].median, llat[s].p99);
			printf("\n");
		}
	}
	for (int m = 0; m < 3; m++) {
		cJSON_Delete(small[m]);
		cJSON_Delete(large[0][m]);
		cJSON_Delete(large[1][m]);
	}
	cJSON_Delete(post[0]);
	cJSON_Delete(post[1]);
	cJSON_Delete(qsmall);
	cJSON_Delete(qlarge);
	cJSON_Delete(qpost);
	cJSON_Delete(fsmall);
	cJSON_Delete(flarge);
	cJSON_Delete(fpost);
	cJSON_Delete(lres);
	bench_remove_dir("msg", tmpdir);
	if (qemu)
		bench_remove_dir("msg", shmdir);
	return 0;
}
