#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "vmm/clock.h"

int child_spawn(struct child *c, char *const argv[])
{
	return child_spawn_on(c, argv, -1);
}

int child_spawn_on(struct child *c, char *const argv[], int cpu)
{
	memset(c, 0, sizeof(*c));
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	c->t_spawn = clock_ns();
	c->pid = fork();
	if (c->pid < 0)
		return -1;
	if (c->pid == 0) {
		if (cpu >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				_exit(126);
		}
		dup2(p[1], 1);
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	c->out = p[0];
	return 0;
}

/* One read; false at EOF. */
static bool read_some(struct child *c)
{
	char tmp[4096];
	ssize_t n = read(c->out, tmp, sizeof(tmp));
	if (n <= 0)
		return false;
	size_t room = sizeof(c->buf) - 1 - c->len;
	size_t take = (size_t)n < room ? (size_t)n : room;
	memcpy(c->buf + c->len, tmp, take);
	c->len += take;
	c->buf[c->len] = '\0';
	return true;
}

bool child_read_more(struct child *c, double timeout_s)
{
	struct pollfd p = { c->out, POLLIN, 0 };
	int r = poll(&p, 1, (int)(timeout_s * 1000));
	return r > 0 && read_some(c);
}

uint64_t child_wait_output(struct child *c, const char *needle, double timeout_s)
{
	uint64_t deadline = clock_ns() + (uint64_t)(timeout_s * 1e9);
	for (;;) {
		if (c->len && (!needle || strstr(c->buf, needle)))
			return clock_ns() - c->t_spawn;
		uint64_t now = clock_ns();
		if (now >= deadline)
			return 0;
		struct pollfd p = { c->out, POLLIN, 0 };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (r < 0 && errno != EINTR)
			return 0;
		if (r > 0) {
			uint64_t t = clock_ns() - c->t_spawn;
			if (!read_some(c))
				return 0;
			if (!needle || strstr(c->buf, needle))
				return t;
		}
	}
}

int child_finish(struct child *c, double timeout_s)
{
	uint64_t deadline = clock_ns() + (uint64_t)(timeout_s * 1e9);
	for (;;) {
		uint64_t now = clock_ns();
		if (now >= deadline) {
			kill(c->pid, SIGKILL);
			break;
		}
		struct pollfd p = { c->out, POLLIN, 0 };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
		if (r > 0 && !read_some(c))
			break;
	}
	close(c->out);
	int st = 0;
	waitpid(c->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool read_rss(pid_t pid, struct rss *out)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	memset(out, 0, sizeof(*out));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "VmRSS: %llu", &v) == 1)
			out->total = v;
		else if (sscanf(line, "RssAnon: %llu", &v) == 1)
			out->anon = v;
		else if (sscanf(line, "RssFile: %llu", &v) == 1)
			out->file = v;
		else if (sscanf(line, "RssShmem: %llu", &v) == 1)
			out->shmem = v;
	}
	fclose(f);
	return out->total > 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double stat_median(double *v, size_t n)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double stat_p95(double *v, size_t n)
{
	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	size_t idx = (size_t)ceil(0.95 * (double)n) - 1;
	return v[idx];
}

int bench_workspace(const char *bench, char *self, size_t self_len, char *kernel, char *dir)
{
	char abs[PATH_MAX];
	if (access(kernel, R_OK) != 0 || !realpath(kernel, abs)) {
		fprintf(stderr, "ferry bench %s: cannot read kernel %s: %s\n", bench, kernel, strerror(errno));
		return 1;
	}
	snprintf(kernel, PATH_MAX, "%s", abs);
	ssize_t n = readlink("/proc/self/exe", self, self_len - 1);
	if (n <= 0) {
		fprintf(stderr, "ferry bench %s: cannot find the ferry binary: %s\n", bench, strerror(errno));
		return 1;
	}
	self[n] = '\0';
	if (!mkdtemp(dir)) {
		fprintf(stderr, "ferry bench %s: cannot make a directory from %s: %s\n", bench, dir, strerror(errno));
		return 1;
	}
	return 0;
}

void bench_remove_dir(const char *bench, const char *dir)
{
	char rm[PATH_MAX + 16];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
	if (system(rm) != 0)
		fprintf(stderr, "ferry bench %s: could not remove %s\n", bench, dir);
}

bool bench_qemu_installed(const char *bench)
{
	if (system("command -v " QEMU_BIN " >/dev/null 2>&1") == 0)
		return true;
	fprintf(stderr, "ferry bench %s: %s is not installed: no QEMU figures\n", bench, QEMU_BIN);
	return false;
}

int bench_cpus(int cpus[], int max)
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	return n;
}

bool bench_pin_pair(bool want_pin, int cpus[2], char *affinity, size_t len)
{
	bool pinned = want_pin && bench_cpus(cpus, 2) == 2;
	if (pinned)
		snprintf(affinity, len,
			 "sender on CPU %d, receiver on CPU %d (qemu: each VM's process; ferry: each VM's vCPU thread)",
			 cpus[0], cpus[1]);
	else
		snprintf(affinity, len, "%s", want_pin ? "not pinned: fewer than 2 CPUs" : "not pinned (--no-pin)");
	return pinned;
}

/* Pins the thread of process `pid` called `name` (its comm) to `cpu`, if it
 * exists now. */
static bool pin_thread(pid_t pid, const char *name, int cpu)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	bool done = false;
	struct dirent *e;
	while (d && !done && (e = readdir(d)) != NULL) {
		char path[400], comm[64] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
		if (strcmp(comm, name))
			continue;
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		done = sched_setaffinity((pid_t)atoi(e->d_name), sizeof(set), &set) == 0;
	}
	if (d)
		closedir(d);
	return done;
}

unsigned pin_threads(pid_t pid, const char *const names[], const int cpus[], unsigned n, double timeout_s)
{
	uint64_t deadline = clock_ns() + (uint64_t)(timeout_s * 1e9);
	bool pinned[16] = { false };
	unsigned done = 0;
	while (done < n && n <= 16 && clock_ns() < deadline) {
		for (unsigned i = 0; i < n; i++)
			if (!pinned[i] && pin_thread(pid, names[i], cpus[i])) {
				pinned[i] = true;
				done++;
			}
		if (done < n)
			usleep(1000);
	}
	return done;
}
