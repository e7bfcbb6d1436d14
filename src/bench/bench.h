/* Benchmark targets of `ferry bench`, and what they share: running child
 * processes, reading their memory use, and order statistics. */
#ifndef FERRY_BENCH_H
#define FERRY_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QEMU_BIN "qemu-system-x86_64"

int bench_boot(int argc, char **argv);
int bench_msg(int argc, char **argv);
int bench_balloon(int argc, char **argv);
int bench_net(int argc, char **argv);

/* A child process whose stdout we read. */
struct child {
	pid_t pid;
	int out;          /* read end of its stdout */
	uint64_t t_spawn; /* clock_ns() just before fork */
	char buf[65536];  /* everything it printed so far (truncated) */
	size_t len;
};

int child_spawn(struct child *c, char *const argv[]);
/* The same, with the child (every thread it will have) on CPU `cpu` (-1:
 * wherever the bench may run). */
int child_spawn_on(struct child *c, char *const argv[], int cpu);
/* The first `max` CPUs this process may run on; how many there are. */
int bench_cpus(int cpus[], int max);
/* A pair's placement: with want_pin and two CPUs, cpus[0] for the sender
 * and cpus[1] for the receiver (true); `affinity` says how it will run,
 * for the JSON and the table. */
bool bench_pin_pair(bool want_pin, int cpus[2], char *affinity, size_t len);
/* Waits up to timeout_s for threads of `pid` named names[i] (their comm)
 * and pins each to cpus[i] (at most 16). How many were pinned. */
unsigned pin_threads(pid_t pid, const char *const names[], const int cpus[], unsigned n, double timeout_s);
/* Reads output until `needle` appears (NULL: any byte). Returns the time of
 * that read in ns since spawn, or 0 on EOF/timeout. */
uint64_t child_wait_output(struct child *c, const char *needle, double timeout_s);
/* Waits up to timeout_s for more output; false on EOF or timeout. */
bool child_read_more(struct child *c, double timeout_s);
/* Drains output and reaps; returns the exit status (128+sig if killed). */
int child_finish(struct child *c, double timeout_s);

/* Resident memory of a process, from /proc/PID/status, in KiB. */
struct rss {
	uint64_t total, anon, file, shmem;
};
bool read_rss(pid_t pid, struct rss *out);

/* What every bench starts from: `self`, this ferry binary (VMs run as its
 * children); `kernel`, resolved in place to an absolute path (it goes into
 * configs written elsewhere); `dir`, a mkdtemp template made into a fresh
 * scratch directory. 0, or 1 after saying what failed. */
int bench_workspace(const char *bench, char *self, size_t self_len, char *kernel, char *dir);
/* rm -rf a scratch directory made by bench_workspace (or mkdtemp). */
void bench_remove_dir(const char *bench, const char *dir);
/* Whether QEMU_BIN is installed; if not, says the QEMU figures are skipped. */
bool bench_qemu_installed(const char *bench);

/* Order statistics of n values (the array is sorted in place). */
double stat_median(double *v, size_t n);
double stat_p95(double *v, size_t n);

#endif
