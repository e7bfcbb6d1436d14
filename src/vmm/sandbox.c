#include "vmm/sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool sandbox_enabled = true;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* What guest-driven work does: KVM ioctls, eventfds and the console, locks,
 * memory (the message window is remapped page by page, balloon pages are
 * punched out), the event loop's epoll, timers and control socket, thread
 * affinity (the CPU scheduler), and signals (vCPU kicks). */
static const int allowed[] = {
	SCMP_SYS(ioctl), SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev), SCMP_SYS(readv),
	SCMP_SYS(futex), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(tgkill), SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(sigaltstack), SCMP_SYS(restart_syscall), SCMP_SYS(sched_yield),
	SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(brk),
	SCMP_SYS(mremap), SCMP_SYS(fallocate), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek),
	SCMP_SYS(close), SCMP_SYS(getrandom), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
	SCMP_SYS(epoll_ctl), SCMP_SYS(timerfd_settime), SCMP_SYS(accept4), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
	SCMP_SYS(sched_setaffinity), SCMP_SYS(sched_getaffinity), SCMP_SYS(exit), SCMP_SYS(exit_group),
};

/* A forbidden call lands here: say which, and stop everything. Only
 * async-signal-safe calls, all of them allowed above. */
static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
	(void)sig;
	(void)ctx;
	char msg[160];
	int n = snprintf(msg, sizeof(msg),
			 "ferry: seccomp: a sandboxed thread made system call %d, which it may not; stopping "
			 "(run with --no-seccomp to debug)\n", info->si_syscall);
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		_exit(70);
	_exit(70);
}

static void install_sigsys_handler(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSYS, &sa, NULL);
}

int sandbox_thread(const char *who, char *err, size_t errlen)
{
	if (!sandbox_enabled || SANITIZED)
		return 0;
	/* vCPU threads start concurrently; install the handler once. */
	static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
	pthread_once(&handler_once, install_sigsys_handler);
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		snprintf(err, errlen, "%s: seccomp_init failed", who);
		return -1;
	}
	int rc = 0;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot load its seccomp filter: %s", who, strerror(-rc));
		return -1;
	}
	return 0;
}
