#include "vmm/sandbox.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool sandbox_enabled = true;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* The lists. docs/SECURITY.md gives the reason for each call; keep the two
 * in step. A 0 ends a list (syscall 0 is read, which every list has first). */

/* Every thread: memory (malloc, and the remapping of message and
 * zero-copy pages), locks, clocks, reads and writes of fds it already has,
 * stdio's fstat/lseek on its first use of a stream, signals it takes
 * (vCPU kicks) and sends (tgkill to kick vCPUs), getrandom (glibc's malloc
 * seeds from it), and ending the thread. */
#define COMMON                                                                                         \
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(close),           \
	SCMP_SYS(futex), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),     \
	SCMP_SYS(sched_yield), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(tgkill),                  \
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(restart_syscall),                  \
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(mremap),     \
	SCMP_SYS(brk), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek), SCMP_SYS(getrandom),   \
	SCMP_SYS(exit), SCMP_SYS(exit_group)

/* What device code needs, on whichever thread runs it (a doorbell by exit
 * on a vCPU, by ioeventfd on the event loop): KVM ioctls (routes, irqfds,
 * ioeventfds and memory slots that follow a moved BAR) and the TAP's
 * ioctls, fallocate (balloon pages, message and zero-copy pages released),
 * timerfd_settime (a device re-arming its timer). */
#define DEVICES SCMP_SYS(ioctl), SCMP_SYS(fallocate), SCMP_SYS(timerfd_settime)

static const int vcpu_calls[] = { COMMON, DEVICES, 0 };

/* The event loop also waits (epoll), adds and removes what it watches,
 * serves the control socket (accept4, sendto, recvfrom, shutdown), and
 * runs the CPU scheduler (thread affinity). */
static const int event_loop_calls[] = {
	COMMON, DEVICES,
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
	SCMP_SYS(accept4), SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(shutdown),
	SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_getaffinity), 0,
};

/* The control thread waits for signals and stops VMs (kicking vCPUs). */
static const int control_calls[] = { COMMON, SCMP_SYS(rt_sigtimedwait), 0 };

/* The main thread, once every VM runs: waits for them, writes the summary
 * (openat: the one file it creates, and the hugepage sysctl it restores
 * under the huge-page file lock, flock),
 * and tears down: joins threads, KVM ioctls that take ioeventfds and
 * irqfds back, event-loop removals, unlink of the control socket's path,
 * the last answers to control clients (sendto on their connected sockets:
 * the answer to the `remove` that ended the run is delivered during the
 * teardown), and the signal it sends its control thread. */
#define MAIN_CALLS                                                                                     \
	COMMON, DEVICES, SCMP_SYS(openat), SCMP_SYS(unlink), SCMP_SYS(epoll_ctl), SCMP_SYS(rt_sigtimedwait), \
	SCMP_SYS(fsync), SCMP_SYS(flock), SCMP_SYS(sendto)
static const int main_calls[] = { MAIN_CALLS, 0 };

/* The main thread of a run with a control socket (or with a VM whose
 * "restart" is "on-failure") also builds the VMs `add` asks for (and VMs
 * restarted after a failure), and takes down those `remove` names (and
 * failed VMs before their restart): it checks their configs
 * (access to the kernel, readlink of ferry's path for the default kernel,
 * sysinfo for the host's memory), reads their kernels and opens their
 * console logs (openat, main's already), makes their memory (memfd_create,
 * ftruncate), doorbells and timers (eventfd2, timerfd_create), and their
 * vCPU threads. A thread is a clone with
 * CLONE_THREAD (no other clone: no processes), named with prctl
 * (PR_SET_NAME only), and, inheriting this filter, sets itself up (robust
 * futex list, rseq) and stacks its own with seccomp
 * (SECCOMP_SET_MODE_FILTER only, after prctl's PR_SET_NO_NEW_PRIVS; a
 * filter can only narrow what is allowed). Still no sockets, programs,
 * processes or tracing. The arguments are checked by the rules below. */
static const int builder_calls[] = {
	MAIN_CALLS,
	SCMP_SYS(access), SCMP_SYS(readlink), SCMP_SYS(sysinfo),
	SCMP_SYS(memfd_create), SCMP_SYS(ftruncate), SCMP_SYS(eventfd2), SCMP_SYS(timerfd_create),
	SCMP_SYS(clone), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(prctl), SCMP_SYS(seccomp), 0,
};

static const struct {
	const char *name;
	const int *calls;
} kinds[SANDBOX_KINDS] = {
	[SANDBOX_VCPU] = { "vCPU", vcpu_calls },
	[SANDBOX_EVENT_LOOP] = { "event loop", event_loop_calls },
	[SANDBOX_CONTROL] = { "control", control_calls },
	[SANDBOX_MAIN] = { "main", main_calls },
	[SANDBOX_BUILDER] = { "builder", builder_calls },
};

/* Calls a list allows only with certain arguments: one row per allowed
 * value (x86-64 argument order; clone's flags are its first). */
static const struct condition {
	enum sandbox_kind kind;
	int nr;
	unsigned arg;
	enum scmp_compare op;
	scmp_datum_t mask, value;
	const char *words;
} conditions[] = {
	{ SANDBOX_BUILDER, SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD,
	  "flags include CLONE_THREAD (a thread, never a process)" },
	{ SANDBOX_BUILDER, SCMP_SYS(prctl), 0, SCMP_CMP_EQ, 0, PR_SET_NAME, "PR_SET_NAME or PR_SET_NO_NEW_PRIVS" },
	{ SANDBOX_BUILDER, SCMP_SYS(prctl), 0, SCMP_CMP_EQ, 0, PR_SET_NO_NEW_PRIVS, "PR_SET_NAME or PR_SET_NO_NEW_PRIVS" },
	{ SANDBOX_BUILDER, SCMP_SYS(seccomp), 0, SCMP_CMP_EQ, 0, SECCOMP_SET_MODE_FILTER, "SECCOMP_SET_MODE_FILTER" },
};
#define NR_CONDITIONS (sizeof(conditions) / sizeof(conditions[0]))

const char *sandbox_condition(enum sandbox_kind kind, int nr)
{
	for (size_t i = 0; i < NR_CONDITIONS; i++)
		if (conditions[i].kind == kind && conditions[i].nr == nr)
			return conditions[i].words;
	return NULL;
}

/* Adds the rule(s) that allow nr to kind's filter: with its conditions if
 * it has any, else whatever its arguments. */
static int allow(scmp_filter_ctx ctx, enum sandbox_kind kind, int nr)
{
	if (!sandbox_condition(kind, nr))
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < NR_CONDITIONS; i++) {
		const struct condition *c = &conditions[i];
		if (c->kind != kind || c->nr != nr)
			continue;
		/* MASKED_EQ compares (arg & datum_a) with datum_b; EQ arg with datum_a. */
		struct scmp_arg_cmp cmp = { .arg = c->arg, .op = c->op, .datum_a = c->value, .datum_b = 0 };
		if (c->op == SCMP_CMP_MASKED_EQ) {
			cmp.datum_a = c->mask;
			cmp.datum_b = c->value;
		}
		rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp);
	}
	return rc;
}

const char *sandbox_kind_name(enum sandbox_kind kind)
{
	return kind < SANDBOX_KINDS ? kinds[kind].name : "?";
}

bool sandbox_allows(enum sandbox_kind kind, int nr)
{
	if (kind >= SANDBOX_KINDS)
		return false;
	const int *c = kinds[kind].calls;
	if (nr == c[0])
		return true;
	for (c++; *c; c++)
		if (*c == nr)
			return true;
	return false;
}

/* For the report, made in a signal handler where nothing may allocate:
 * the thread's name and kind, and system call names resolved up front. */
#define MAX_SYSCALL 512
static const char *syscall_names[MAX_SYSCALL];
static __thread char thread_who[64];
static __thread int thread_kind = -1;

static size_t put(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	buf[at] = 0;
	return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, long v)
{
	char digits[24];
	int n = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
	do
		digits[n++] = (char)('0' + u % 10);
	while ((u /= 10) && n < 23);
	if (v < 0)
		digits[n++] = '-';
	while (n && at + 1 < cap)
		buf[at++] = digits[--n];
	buf[at] = 0;
	return at;
}

/* A forbidden call lands here: say who made which, and stop everything.
 * Only async-signal-safe work, and only calls every list allows. */
static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
	(void)sig;
	(void)ctx;
	char msg[320];
	int nr = info->si_syscall;
	size_t n = put(msg, 0, sizeof(msg), "ferry: seccomp: ");
	n = put(msg, n, sizeof(msg), thread_kind >= 0 ? kinds[thread_kind].name : "?");
	n = put(msg, n, sizeof(msg), " thread ");
	n = put(msg, n, sizeof(msg), thread_who);
	n = put(msg, n, sizeof(msg), " made system call ");
	n = put_num(msg, n, sizeof(msg), nr);
	if (nr >= 0 && nr < MAX_SYSCALL && syscall_names[nr]) {
		n = put(msg, n, sizeof(msg), " (");
		n = put(msg, n, sizeof(msg), syscall_names[nr]);
		n = put(msg, n, sizeof(msg), ")");
	}
	n = put(msg, n, sizeof(msg), ", which its kind may not; refused, stopping ferry (docs/SECURITY.md; --no-seccomp to debug)\n");
	if (write(2, msg, n) < 0)
		_exit(SANDBOX_EXIT_STATUS);
	_exit(SANDBOX_EXIT_STATUS);
}

static void install_sigsys_handler(void)
{
	for (int nr = 0; nr < MAX_SYSCALL; nr++) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		syscall_names[nr] = name; /* kept for the process's life */
	}
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

int sandbox_thread(enum sandbox_kind kind, const char *who, char *err, size_t errlen)
{
	if (!sandbox_enabled || SANITIZED)
		return 0;
	if (kind >= SANDBOX_KINDS) {
		snprintf(err, errlen, "%s: no seccomp list for thread kind %d", who, (int)kind);
		return -1;
	}
	/* Threads start concurrently; the handler and names are set up once. */
	static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
	pthread_once(&handler_once, install_sigsys_handler);
	snprintf(thread_who, sizeof(thread_who), "%s", who);
	thread_kind = (int)kind;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		snprintf(err, errlen, "%s: seccomp_init failed", who);
		return -1;
	}
	int rc = 0;
	for (const int *c = kinds[kind].calls; rc == 0 && (c == kinds[kind].calls || *c); c++)
		rc = allow(ctx, kind, *c);
	/* glibc makes threads with clone3 when it can, whose flags a filter
	 * cannot see; told it is missing, glibc falls back to clone, whose
	 * flags the rule above checks. */
	if (rc == 0 && sandbox_allows(kind, SCMP_SYS(clone)))
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot load its seccomp filter: %s", who, strerror(-rc));
		return -1;
	}
	return 0;
}
