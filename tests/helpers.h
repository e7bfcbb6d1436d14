/* Shared by the tests: run a command with a timeout and capture its output,
 * read files and JSON, and gate tests that need /dev/kvm. */
#ifndef FERRY_TEST_HELPERS_H
#define FERRY_TEST_HELPERS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <sys/types.h>
#include <cmocka.h>

struct cJSON;

struct cmd_result {
	int status;        /* exit code, or 128 + signal, or -1 if it timed out */
	char *out;         /* stdout, NUL-terminated */
	char *err;         /* stderr */
};

/* Starts argv in the background (output to /dev/null); returns its pid. */
int spawn_background(char *const argv[]);
/* The same with stdout and stderr going to out_path. */
int spawn_background_log(char *const argv[], const char *out_path);
/* Waits up to timeout_s for pid; its exit status, or -1 (then killed). */
int wait_background(int pid, double timeout_s);

/* Runs argv (NULL-terminated) and waits up to timeout_s seconds. */
struct cmd_result run_cmd(char *const argv[], double timeout_s);
void cmd_result_free(struct cmd_result *r);

char *read_file(const char *path);
void write_file(const char *path, const char *text);
struct cJSON *load_json(const char *path);

/* Fixtures for tests that want a scratch directory: test_dir is a fresh
 * directory under /tmp for the duration of each test. */
extern char *test_dir;
int test_dir_setup(void **state);
int test_dir_teardown(void **state);
/* The summary entry of a VM of the run that wrote test_dir/summary.json. */
struct cJSON *test_summary_vm(const char *name);
/* test_dir/logs/NAME.log, or fails the test (caller frees). */
char *test_console_log(const char *name);

/* A fresh directory under /tmp, removed by the caller with remove_tree(). */
char *make_temp_dir(void);
void remove_tree(const char *dir);

/* Fails the test unless /dev/kvm can be opened; with FERRY_ALLOW_NO_KVM=1 it
 * skips instead. */
void require_kvm(void);
/* Skips the test if qemu-system-x86_64 is not installed. */
bool have_qemu(void);
/* require_kvm(), and fails the test unless QEMU is installed. */
void require_qemu(void);

/* A QEMU driven through its monitor (QMP over a unix socket), as a host
 * operator would. */
struct qemu {
	pid_t pid;
	int qmp;
	char *console;   /* path of the guest's serial output, if the caller keeps one */
	char *log;       /* if set: QEMU's own stdout and stderr go here */
	char buf[65536];
	size_t len;
};
/* Starts argv (a QEMU whose -qmp listens at qmp_sock), connects and
 * negotiates capabilities; fails the test if it cannot. */
void qemu_start_qmp(struct qemu *q, char *const argv[], const char *qmp_sock);
/* Kills QEMU if it still runs. */
void qemu_stop(struct qemu *q);
/* One JSON line from QMP (a reply or an event); NULL after timeout. */
struct cJSON *qmp_read(struct qemu *q, double timeout_s);
/* Sends a command and returns its "return" value (owned by *root, which the
 * caller deletes); fails the test on an error reply. */
struct cJSON *qmp(struct qemu *q, const char *cmd, struct cJSON **root);
void qmp_do(struct qemu *q, const char *cmd);

/* Monotonic seconds. */
double now_s(void);

/* Paths of the built artefacts (overridable: FERRY_BIN, FERRY_GUEST). */
const char *ferry_bin(void);
const char *guest_image(void);

/* A VM's entry in a summary file, or fails the test. The document is kept
 * until the next call. */
struct cJSON *summary_find_vm(const char *summary_path, const char *name);
/* A number at a dotted path ("counters.msgq.sent"), or fails the test. */
double json_num(struct cJSON *obj, const char *path);
/* Fails the test if an object in obj (at any depth) names a key twice
 * (cJSON keeps both; a reader finds one of them, which one depends on the
 * reader). */
void json_expect_unique_keys(struct cJSON *obj, const char *where);
/* Fails the test unless needle is in haystack. */
void expect_contains(const char *haystack, const char *needle);
/* Runs `ferry run ARGS... --summary DIR/summary.json --log-dir DIR/logs`. */
struct cmd_result ferry_run_in(const char *dir, const char *const *args, double timeout_s);

/* The Linux test guest (make linux-guest; FERRY_LINUX overrides); fails the
 * test if it has not been built. */
const char *linux_kernel(void);
/* What that kernel needs on this project's hosts (linux/README.md). */
#define LINUX_CMDLINE "console=ttyS0 reboot=t rodata=off noxsave clearcpuid=smap,popcnt,erms,fsrm tsc=reliable no-kvm-hypercalls rcupdate.rcu_cpu_stall_suppress=1"

/* A VMM process whose guest console goes to a file, watched by polling:
 * when the first byte and the first line of the Linux test init
 * ("linux-init: ") appeared, and when the process exited, in seconds after
 * t0 (taken just before the VMM was started). */
struct guest_watch {
	int pid;
	const char *console;
	double t0, t_first, t_user, t_end;  /* -1 until seen */
	int status;                         /* exit status once exited; -2: KVM internal error */
	bool exited;
	const char *vmm_log;                /* optional: QEMU's output, checked for "KVM internal error" */
};
void watch_start(struct guest_watch *w, int pid, const char *console, double t0);
/* True once text is on the console; false if the VMM exited or timeout_s passed first. */
bool watch_for(struct guest_watch *w, const char *text, double timeout_s);
/* The VMM's exit status; -1 if it was still running after timeout_s (it is killed). */
int watch_exit(struct guest_watch *w, double timeout_s);

/* printf into a new string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
