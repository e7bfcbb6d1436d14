/* ferry bench balloon: inflate and deflate of 1 GiB in a 2 GiB VM, through
 * the guest's balloon driver (with its rate limit), timed from the host:
 * from setting the target until the driver reports it reached, and until
 * the host's memory (the VM's memfd blocks) has actually dropped. The guest
 * first touches 1.5 GiB and frees it, so there is host memory to give back;
 * free page reporting is off so that what drops is the balloon's doing.
 * With qemu-system-x86_64 installed, the same guest under QEMU's
 * virtio-balloon (QMP balloon / query-balloon) in the same run. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/control_client.h"
#include "bench/bench.h"
#include "cli/cli.h"
#include "vmm/clock.h"
#include "vmm/config.h"

static const char balloon_help[] =
	"usage: ferry bench balloon [--mem SIZE] [--size SIZE] [--kernel IMAGE] [--no-qemu] [--json]\n"
	"\n"
	"Inflates and deflates a balloon of --size (default 1G) in a VM of --mem\n"
	"(default 2G) and reports the rate (GiB/s) from setting the target to the\n"
	"guest driver reaching it, and the time until the host's memory actually\n"
	"drops. The same under QEMU's virtio-balloon when QEMU is installed (QEMU's\n"
	"balloon has no MSI-X and ferry-guest no INTx, so there the driver polls for\n"
	"targets every 5 ms). Target on the project's machines: inflate >= 2 GiB/s.\n";

/* The guest first touches three quarters of its RAM (so that the host has
 * something to get back), then holds 16 MiB while the balloon moves. */
static void guest_cmdline(char *buf, size_t len, uint64_t mem_mib)
{
	snprintf(buf, len, "app=memhog phases=%lluM,16M,16M,16M,16M,16M phase_ms=4000 balloon_report=0",
		 (unsigned long long)(mem_mib * 3 / 4));
}

struct result {
	double inflate_ms, deflate_ms, release_ms;
	bool ok;
};

static char self[PATH_MAX], kernel[PATH_MAX];
static char tmpdir[] = "/tmp/ferry-bench-balloon-XXXXXX";

/* Polls `probe` every 0.5 ms until it returns true; the elapsed ms, or -1. */
static double poll_until(bool (*probe)(void *), void *arg, uint64_t t0, double timeout_s)
{
	while (clock_ns() - t0 < (uint64_t)(timeout_s * 1e9)) {
		if (probe(arg))
			return ns_to_ms(clock_ns() - t0);
		usleep(500);
	}
	return -1;
}

/* ---- ferry, through its control socket ---- */

struct ferry_probe {
	int fd;
	double want_pages, release_below_mib;
	double actual_pages, resident_mib;
};

static void ferry_sample(struct ferry_probe *p)
{
	/* brief: the balloon and resident memory only, for polling fast */
	cJSON *a = control_call(p->fd, "{\"cmd\": \"status\", \"brief\": true}");
	cJSON *vm = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "vms"), 0);
	cJSON *b = cJSON_GetObjectItem(vm, "balloon");
	cJSON *ap = cJSON_GetObjectItem(b, "actual_pages"), *res = cJSON_GetObjectItem(vm, "resident_mib");
	p->actual_pages = cJSON_IsNumber(ap) ? ap->valuedouble : -1;
	p->resident_mib = cJSON_IsNumber(res) ? res->valuedouble : -1;
	cJSON_Delete(a);
}

static bool ferry_reached(void *arg)
{
	struct ferry_probe *p = arg;
	ferry_sample(p);
	return p->actual_pages == p->want_pages;
}

static bool ferry_released(void *arg)
{
	struct ferry_probe *p = arg;
	ferry_sample(p);
	return p->resident_mib >= 0 && p->resident_mib <= p->release_below_mib;
}

static struct result bench_ferry(uint64_t mem_mib, uint64_t size_mib)
{
	struct result r = { -1, -1, -1, false };
	char cfg[PATH_MAX + 32], sock[PATH_MAX + 32], req[128];
	snprintf(cfg, sizeof(cfg), "%s/ferry.json", tmpdir);
	snprintf(sock, sizeof(sock), "%s/ferry.sock", tmpdir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return r;
	char cmdline[160];
	guest_cmdline(cmdline, sizeof(cmdline), mem_mib);
	fprintf(f, "{\"vms\": [{\"name\": \"b\", \"memory_mib\": %llu, \"kernel\": \"%s\", \"cmdline\": \"%s\","
		   " \"devices\": [{\"type\": \"virtio-balloon\"}]}]}\n",
		(unsigned long long)mem_mib, kernel, cmdline);
	fclose(f);
	char *argv[] = { self, "run", cfg, "--console", "--quiet", "--control", sock, "--log-dir", tmpdir, NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return r;
	int fd = -1;
	if (child_wait_output(&c, "memhog: phase 2", 60) && (fd = control_connect(sock)) >= 0) {
		struct ferry_probe p = { .fd = fd };
		ferry_sample(&p);
		double before = p.resident_mib;
		p.want_pages = (double)size_mib * 256;
		p.release_below_mib = before - (double)size_mib + 32;
		uint64_t t0 = clock_ns();
		snprintf(req, sizeof(req), "{\"cmd\": \"balloon\", \"vm\": \"b\", \"target_mib\": %llu}",
			 (unsigned long long)size_mib);
		cJSON_Delete(control_call(fd, req));
		r.inflate_ms = poll_until(ferry_reached, &p, t0, 30);
		r.release_ms = poll_until(ferry_released, &p, t0, 30);
		p.want_pages = 0;
		t0 = clock_ns();
		cJSON_Delete(control_call(fd, "{\"cmd\": \"balloon\", \"vm\": \"b\", \"target_mib\": 0}"));
		r.deflate_ms = poll_until(ferry_reached, &p, t0, 30);
		r.ok = r.inflate_ms > 0 && r.deflate_ms > 0 && r.release_ms > 0;
		cJSON_Delete(control_call(fd, "{\"cmd\": \"stop\", \"vm\": \"b\"}"));
		close(fd);
	}
	kill(c.pid, SIGTERM);
	child_finish(&c, 30);
	return r;
}

/* ---- QEMU, through QMP ---- */

/* Sends a QMP command and returns its answer, skipping events. */
static cJSON *qmp(int fd, const char *cmd)
{
	if (cmd && dprintf(fd, "%s\n", cmd) < 0)
		return NULL;
	for (;;) {
		cJSON *a = control_call(fd, "");
		if (!a || !cJSON_GetObjectItem(a, "event"))
			return a;
		cJSON_Delete(a);
	}
}

struct qemu_probe {
	int fd;
	pid_t pid;
	double want_bytes, release_below_mib;
};

static double qemu_actual(struct qemu_probe *p)
{
	cJSON *a = qmp(p->fd, "{\"execute\": \"query-balloon\"}");
	cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "return"), "actual");
	double actual = cJSON_IsNumber(v) ? v->valuedouble : -1;
	cJSON_Delete(a);
	return actual;
}

static bool qemu_reached(void *arg)
{
	struct qemu_probe *p = arg;
	return qemu_actual(p) == p->want_bytes;
}

static bool qemu_released(void *arg)
{
	struct qemu_probe *p = arg;
	struct rss rss;
	return read_rss(p->pid, &rss) && (double)rss.shmem / 1024.0 <= p->release_below_mib;
}

static struct result bench_qemu(uint64_t mem_mib, uint64_t size_mib)
{
	struct result r = { -1, -1, -1, false };
	char sock[PATH_MAX + 32], qmp_opt[PATH_MAX + 64], mem[32], backend[96], machine[64], append[256], req[160];
	snprintf(sock, sizeof(sock), "%s/qmp.sock", tmpdir);
	snprintf(qmp_opt, sizeof(qmp_opt), "unix:%s,server=on,wait=off", sock);
	snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)mem_mib);
	snprintf(backend, sizeof(backend), "memory-backend-memfd,id=ram,size=%lluM", (unsigned long long)mem_mib);
	snprintf(machine, sizeof(machine), "q35,memory-backend=ram");
	char cmdline[160];
	guest_cmdline(cmdline, sizeof(cmdline), mem_mib);
	snprintf(append, sizeof(append), "%s balloon_poll_ms=5", cmdline);
	char *argv[] = { "qemu-system-x86_64", "-M", machine, "-accel", "kvm", "-m", mem, "-object", backend,
			 "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
			 "-no-reboot", "-qmp", qmp_opt, "-kernel", kernel, "-append", append,
			 "-device", "isa-debug-exit,iobase=0x501",
			 "-device", "virtio-balloon-pci,disable-legacy=on,deflate-on-oom=on", NULL };
	struct child c;
	if (child_spawn(&c, argv) < 0)
		return r;
	int fd = -1;
	if (child_wait_output(&c, "memhog: phase 2", 90) && (fd = control_connect(sock)) >= 0) {
		struct qemu_probe p = { .fd = fd, .pid = c.pid };
		cJSON_Delete(qmp(fd, NULL)); /* greeting */
		cJSON_Delete(qmp(fd, "{\"execute\": \"qmp_capabilities\"}"));
		struct rss rss;
		read_rss(c.pid, &rss);
		p.release_below_mib = (double)rss.shmem / 1024.0 - (double)size_mib + 32;
		double full = (double)mem_mib * 1048576.0;
		p.want_bytes = full - (double)size_mib * 1048576.0;
		uint64_t t0 = clock_ns();
		snprintf(req, sizeof(req), "{\"execute\": \"balloon\", \"arguments\": {\"value\": %.0f}}", p.want_bytes);
		cJSON_Delete(qmp(fd, req));
		r.inflate_ms = poll_until(qemu_reached, &p, t0, 30);
		r.release_ms = poll_until(qemu_released, &p, t0, 30);
		p.want_bytes = full;
		t0 = clock_ns();
		snprintf(req, sizeof(req), "{\"execute\": \"balloon\", \"arguments\": {\"value\": %.0f}}", full);
		cJSON_Delete(qmp(fd, req));
		r.deflate_ms = poll_until(qemu_reached, &p, t0, 30);
		r.ok = r.inflate_ms > 0 && r.deflate_ms > 0 && r.release_ms > 0;
		cJSON_Delete(qmp(fd, "{\"execute\": \"quit\"}"));
		close(fd);
	}
	kill(c.pid, SIGTERM);
	child_finish(&c, 30);
	return r;
}

int bench_balloon(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, 0, 'm' },   { "size", required_argument, 0, 's' },
		{ "kernel", required_argument, 0, 'k' }, { "no-qemu", no_argument, 0, 'Q' },
		{ "json", no_argument, 0, 'j' },         { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	uint64_t mem_mib = 2048, size_mib = 1024;
	bool json = false, qemu = true;
	config_default_kernel(kernel, sizeof(kernel));
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!parse_size_mib(optarg, &mem_mib) || mem_mib < 256)
				return usage_error("bench balloon", "--mem: expected a size of at least 256M, got '%s'", optarg);
			break;
		case 's':
			if (!parse_size_mib(optarg, &size_mib) || size_mib == 0)
				return usage_error("bench balloon", "--size: expected a size like 1G, got '%s'", optarg);
			break;
		case 'k':
			snprintf(kernel, sizeof(kernel), "%s", optarg);
			break;
		case 'Q':
			qemu = false;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(balloon_help, stdout);
			return 0;
		default:
			return usage_error("bench balloon", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("bench balloon", "unexpected argument '%s'", argv[optind]);
	if (size_mib * 2 > mem_mib)
		return usage_error("bench balloon", "--size must be at most half of --mem (the guest first uses 3/4 of it)");
	if (bench_workspace("balloon", self, sizeof(self), kernel, tmpdir))
		return 1;
	qemu = qemu && bench_qemu_installed("balloon");

	struct result f = bench_ferry(mem_mib, size_mib), q = { -1, -1, -1, false };
	if (qemu)
		q = bench_qemu(mem_mib, size_mib);
	double gib = (double)size_mib / 1024.0;
	if (json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "size_mib", (double)size_mib);
		cJSON_AddNumberToObject(j, "inflate_gibps", f.ok ? gib / (f.inflate_ms / 1000) : -1);
		cJSON_AddNumberToObject(j, "deflate_gibps", f.ok ? gib / (f.deflate_ms / 1000) : -1);
		cJSON_AddNumberToObject(j, "host_release_ms", f.release_ms);
		if (q.ok) {
			cJSON_AddNumberToObject(j, "qemu_inflate_gibps", gib / (q.inflate_ms / 1000));
			cJSON_AddNumberToObject(j, "qemu_deflate_gibps", gib / (q.deflate_ms / 1000));
			cJSON_AddNumberToObject(j, "qemu_host_release_ms", q.release_ms);
		}
		char *text = cJSON_PrintUnformatted(j);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(j);
	} else {
		printf("balloon of %llu MiB in a %llu MiB VM           inflate              deflate     host memory dropped\n",
		       (unsigned long long)size_mib, (unsigned long long)mem_mib);
		if (f.ok)
			printf("  ferry   %8.1f ms %6.2f GiB/s  %8.1f ms %6.2f GiB/s   after %.1f ms   (target: inflate >= 2 GiB/s)\n",
			       f.inflate_ms, gib / (f.inflate_ms / 1000), f.deflate_ms, gib / (f.deflate_ms / 1000), f.release_ms);
		else
			printf("  ferry   run failed\n");
		if (q.ok)
			printf("  qemu    %8.1f ms %6.2f GiB/s  %8.1f ms %6.2f GiB/s   after %.1f ms   (q35, driver polling every 5 ms)\n",
			       q.inflate_ms, gib / (q.inflate_ms / 1000), q.deflate_ms, gib / (q.deflate_ms / 1000), q.release_ms);
		else if (qemu)
			printf("  qemu    run failed\n");
	}
	bench_remove_dir("balloon", tmpdir);
	return f.ok ? 0 : 1;
}
