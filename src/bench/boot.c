/* ferry bench boot: boots N VMs of 64 MiB one after another with the hello
 * app and reports creation-to-first-console-byte, then the resident memory
 * a VM costs beyond its guest RAM. When QEMU is installed, the same guest
 * under QEMU in the same run, side by side. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "vmm/clock.h"
#include "vmm/config.h"

static const char boot_help[] =
	"usage: ferry bench boot [--count N] [--mem SIZE] [--kernel IMAGE] [--no-qemu] [--json]\n"
	"\n"
	"Boots N VMs (default 20) one after another with app=hello and reports the\n"
	"median and p95 time from VM creation to the first console byte, and the\n"
	"resident memory per VM beyond guest RAM (VmRSS minus the guest's memfd\n"
	"pages, sampled while the guest idles). With qemu-system-x86_64 installed,\n"
	"the same image under QEMU (microvm or q35, whichever boots faster) is\n"
	"measured in the same run; for QEMU, boot time is process start to first\n"
	"console byte, which ferry also reports for itself (ferry_spawn_ms_*).\n"
	"Targets on the project's machines: median <= 50 ms, <= 3 MiB per VM.\n";

#define MEM_SAMPLES 5
#define SHARED_VMS 8

struct opts {
	unsigned count;
	uint64_t mem_mib;
	char kernel[PATH_MAX];
	bool qemu;
	bool json;
};

static char self[PATH_MAX];
static char tmpdir[] = "/tmp/ferry-bench-XXXXXX";

static void ferry_argv(char **argv, char *buf, size_t buflen, const struct opts *o, const char *cmdline,
		       const char *summary)
{
	static char mem[32];
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)o->mem_mib);
	snprintf(buf, buflen, "%s", cmdline);
	int n = 0;
	argv[n++] = self;
	argv[n++] = "run";
	argv[n++] = "--kernel";
	argv[n++] = (char *)o->kernel;
	argv[n++] = "--mem";
	argv[n++] = mem;
	argv[n++] = "--cmdline";
	argv[n++] = buf;
	argv[n++] = "--console";
	argv[n++] = "--quiet";
	argv[n++] = "--log-dir";
	argv[n++] = tmpdir;
	if (summary) {
		argv[n++] = "--summary";
		argv[n++] = (char *)summary;
	}
	argv[n] = NULL;
}

static void qemu_argv(char **argv, const char *machine, const struct opts *o, const char *cmdline)
{
	static char mach[96], mem[32], backend[96];
	snprintf(mach, sizeof(mach), "%s,memory-backend=ram", machine);
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)o->mem_mib);
	snprintf(backend, sizeof(backend), "memory-backend-memfd,id=ram,size=%lluM", (unsigned long long)o->mem_mib);
	const char *a[] = { QEMU_BIN, "-M", mach, "-accel", "kvm", "-m", mem, "-object", backend,
			    "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
			    "-monitor", "none", "-no-reboot", "-kernel", o->kernel, "-append", cmdline,
			    "-device", "isa-debug-exit,iobase=0x501", NULL };
	memcpy(argv, a, sizeof(a));
}

/* Boots once; returns spawn-to-first-byte in ms (<0 on failure). */
static double boot_once(char **argv, int want_status)
{
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return -1;
	uint64_t t = child_wait_output(&c, NULL, 30);
	int st = child_finish(&c, 30);
	return t && st == want_status ? ns_to_ms(t) : -1;
}

static double summary_boot_ms(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char buf[16384];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	cJSON *j = cJSON_Parse(buf);
	double ms = -1;
	cJSON *vm = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "vms"), 0);
	cJSON *b = cJSON_GetObjectItem(vm, "boot_ms");
	if (cJSON_IsNumber(b))
		ms = b->valuedouble;
	cJSON_Delete(j);
	return ms;
}

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Starts a process whose guests idle, waits until `vms` of them said so,
 * and returns its resident memory beyond guest RAM, in MiB. */
static double overhead_mib(char **argv, unsigned vms)
{
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return -1;
	uint64_t deadline = clock_ns() + 30000000000ull;
	while (count_of(c.buf, "idle:") < vms && clock_ns() < deadline)
		if (!child_read_more(&c, 1))
			break;
	usleep(200 * 1000); /* let the process settle after boot */
	struct rss r;
	bool ok = count_of(c.buf, "idle:") >= vms && read_rss(c.pid, &r);
	kill(c.pid, SIGTERM);
	child_finish(&c, 30);
	return ok ? (double)(r.total - r.shmem) / 1024.0 : -1;
}

static double median_of(double (*fn)(char **, unsigned), char **argv, unsigned vms)
{
	double v[MEM_SAMPLES];
	size_t n = 0;
	for (int i = 0; i < MEM_SAMPLES; i++) {
		double x = fn(argv, vms);
		if (x >= 0)
			v[n++] = x;
	}
	return n ? stat_median(v, n) : -1;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "count", required_argument, 0, 'n' }, { "mem", required_argument, 0, 'm' },
		{ "kernel", required_argument, 0, 'k' }, { "no-qemu", no_argument, 0, 'Q' },
		{ "json", no_argument, 0, 'j' },         { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->count = 20;
	o->mem_mib = 64;
	o->qemu = true;
	config_default_kernel(o->kernel, sizeof(o->kernel));
	uint64_t n;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!parse_uint(optarg, 2, 10000, &n))
				return usage_error("bench boot", "--count: expected 2 to 10000, got '%s'", optarg);
			o->count = (unsigned)n;
			break;
		case 'm':
			if (!parse_size_mib(optarg, &o->mem_mib) || o->mem_mib < CFG_MIN_MEMORY_MIB)
				return usage_error("bench boot", "--mem: expected a size like 64M, got '%s'", optarg);
			break;
		case 'k':
			snprintf(o->kernel, sizeof(o->kernel), "%s", optarg);
			break;
		case 'Q':
			o->qemu = false;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			fputs(boot_help, stdout);
			exit(0);
		default:
			return usage_error("bench boot", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("bench boot", "unexpected argument '%s'", argv[optind]);
	return 0;
}

int bench_boot(int argc, char **argv)
{
	struct opts o;
	int ret = parse(argc, argv, &o);
	if (ret)
		return ret;
	if (bench_workspace("boot", self, sizeof(self), o.kernel, tmpdir))
		return 1;
	o.qemu = o.qemu && bench_qemu_installed("boot");

	char *av[40], cmd[256], summary[PATH_MAX + 32];
	double *boot = calloc(o.count, sizeof(double)), *spawn = calloc(o.count, sizeof(double));
	double *qboot = calloc(o.count, sizeof(double));
	size_t nb = 0, nq = 0;
	snprintf(summary, sizeof(summary), "%s/summary.json", tmpdir);
	for (unsigned i = 0; i < o.count; i++) {
		ferry_argv(av, cmd, sizeof(cmd), &o, "app=hello", summary);
		double s = boot_once(av, 0);
		double b = summary_boot_ms(summary);
		if (s < 0 || b < 0) {
			fprintf(stderr, "ferry bench boot: run %u of ferry failed\n", i + 1);
			return 1;
		}
		spawn[nb] = s;
		boot[nb++] = b;
	}
	ferry_argv(av, cmd, sizeof(cmd), &o, "app=idle ms=10000", NULL);
	double ferry_mib = median_of(overhead_mib, av, 1);

	/* Several VMs in one ferry process: what one more VM costs. */
	double shared_mib = -1;
	char cfgpath[PATH_MAX + 32];
	snprintf(cfgpath, sizeof(cfgpath), "%s/shared.json", tmpdir);
	FILE *f = fopen(cfgpath, "w");
	if (f) {
		fprintf(f, "{\"vms\": [");
		for (int i = 0; i < SHARED_VMS; i++)
			fprintf(f, "%s{\"name\": \"vm%d\", \"memory_mib\": %llu, \"kernel\": \"%s\", \"cmdline\": \"app=idle ms=10000\"}",
				i ? "," : "", i, (unsigned long long)o.mem_mib, o.kernel);
		fprintf(f, "]}\n");
		fclose(f);
		char *sv[] = { self, "run", cfgpath, "--console", "--quiet", "--log-dir", tmpdir, NULL };
		double many = median_of(overhead_mib, sv, SHARED_VMS);
		if (many >= 0 && ferry_mib >= 0)
			shared_mib = (many - ferry_mib) / (SHARED_VMS - 1);
	}

	const char *machine = NULL;
	double qemu_mib = -1;
	if (o.qemu) {
		/* microvm skips firmware; q35 runs SeaBIOS first. Take the faster. */
		double best = INFINITY;
		const char *machines[] = { "microvm", "q35" };
		for (int m = 0; m < 2; m++) {
			qemu_argv(av, machines[m], &o, "app=hello");
			double t = boot_once(av, 1);
			if (t >= 0 && t < best) {
				best = t;
				machine = machines[m];
			}
		}
		for (unsigned i = 0; machine && i < o.count; i++) {
			qemu_argv(av, machine, &o, "app=hello");
			double t = boot_once(av, 1);
			if (t >= 0)
				qboot[nq++] = t;
		}
		if (machine) {
			qemu_argv(av, machine, &o, "app=idle ms=10000");
			qemu_mib = median_of(overhead_mib, av, 1);
		}
	}

	double bm = stat_median(boot, nb), bp = stat_p95(boot, nb);
	double sm = stat_median(spawn, nb), sp = stat_p95(spawn, nb);
	double qm = stat_median(qboot, nq), qp = stat_p95(qboot, nq);
	if (o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "runs", o.count);
		cJSON_AddNumberToObject(j, "memory_mib", (double)o.mem_mib);
		cJSON_AddNumberToObject(j, "ferry_boot_ms_median", bm);
		cJSON_AddNumberToObject(j, "ferry_boot_ms_p95", bp);
		cJSON_AddNumberToObject(j, "ferry_spawn_ms_median", sm);
		cJSON_AddNumberToObject(j, "ferry_spawn_ms_p95", sp);
		cJSON_AddNumberToObject(j, "ferry_overhead_mib", ferry_mib);
		cJSON_AddNumberToObject(j, "ferry_overhead_mib_shared", shared_mib);
		if (nq) {
			cJSON_AddStringToObject(j, "qemu_machine", machine);
			cJSON_AddNumberToObject(j, "qemu_boot_ms_median", qm);
			cJSON_AddNumberToObject(j, "qemu_boot_ms_p95", qp);
			cJSON_AddNumberToObject(j, "qemu_overhead_mib", qemu_mib);
		}
		char *text = cJSON_PrintUnformatted(j);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(j);
	} else {
		printf("boot: %u runs, %llu MiB, app=hello                median     p95\n", o.count,
		       (unsigned long long)o.mem_mib);
		printf("  ferry  VM creation -> first console byte   %7.1f ms %7.1f ms   (target: median <= 50 ms)\n", bm, bp);
		printf("  ferry  process start -> first console byte %7.1f ms %7.1f ms\n", sm, sp);
		if (nq)
			printf("  qemu   process start -> first console byte %7.1f ms %7.1f ms   (-M %s)\n", qm, qp, machine);
		printf("memory beyond guest RAM (VmRSS - guest pages), median of %d\n", MEM_SAMPLES);
		printf("  ferry, one VM per process                 %7.2f MiB   (target: <= 3 MiB)\n", ferry_mib);
		printf("  ferry, each further VM in one process     %7.2f MiB\n", shared_mib);
		if (nq)
			printf("  qemu,  one VM per process                 %7.2f MiB\n", qemu_mib);
	}
	bench_remove_dir("boot", tmpdir);
	free(boot);
	free(spawn);
	free(qboot);
	return 0;
}
