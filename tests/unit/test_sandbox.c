/* The seccomp allow-lists (vmm/sandbox.c): a thread of each kind, once
 * confined, may make the calls of its list and no other; a forbidden call
 * is refused (the call never runs), reported on stderr naming the thread,
 * its kind and the call, and stops the process with status 70. Each case
 * runs in a child process. The lists also match docs/SECURITY.md, which
 * documents every allowed call. (Sanitizer builds run unconfined, so this
 * test checks only the table there.) */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm/sandbox.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

struct child_result {
	int status;    /* exit status, or 128 + signal */
	char err[2048];
};

struct attempt {
	enum sandbox_kind kind;
	int forbidden;   /* 0: openat, 1: socket, 2: execve, 3: fork, 4: prctl(PR_SET_DUMPABLE) */
};

/* What the last kind a thread of a builder made loads, and that it ran. */
static void *vcpu_like(void *arg)
{
	(void)arg;
	char why[256];
	if (pthread_setname_np(pthread_self(), "vcpu0/t") != 0 || sandbox_thread(SANDBOX_VCPU, "vcpu0/t", why, sizeof(why)) < 0)
		return (void *)1;
	return (void *)2;
}

static void *confined(void *arg)
{
	struct attempt *a = arg;
	char why[256];
	if (sandbox_thread(a->kind, "tester", why, sizeof(why)) < 0) {
		fprintf(stderr, "sandbox: %s\n", why);
		_exit(3);
	}
	/* Calls every list allows still work. */
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || write(2, "alive\n", 6) != 6)
		_exit(4);
	void *p = malloc(1 << 20);
	free(p);
	switch (a->forbidden) {
	case 0:
		(void)syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
		break;
	case 1:
		(void)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		break;
	case 3:
		if (fork() == 0)
			_exit(0);
		break;
	case 4:
		(void)syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
		break;
	case 5: {
		/* Allowed to the builder: a thread, named, that stacks its own
		 * filter (what an added VM's vCPU thread does). */
		pthread_t t;
		void *ret = NULL;
		if (pthread_create(&t, NULL, vcpu_like, NULL) != 0 || pthread_join(t, &ret) != 0 || ret != (void *)2)
			_exit(7);
		_exit(8);
	}
	default: {
		char *argv[] = { "/bin/true", NULL };
		execve("/bin/true", argv, NULL);
		break;
	}
	}
	_exit(0); /* reached only if the call was let through */
}

/* In a child: a thread confined to kind makes a forbidden call. */
static struct child_result run_attempt(enum sandbox_kind kind, int forbidden)
{
	struct child_result r = { .status = -1 };
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		struct attempt a = { kind, forbidden };
		pthread_t t;
		if (pthread_create(&t, NULL, confined, &a) != 0)
			_exit(5);
		pthread_join(t, NULL);
		_exit(6);
	}
	close(pipefd[1]);
	size_t n = 0;
	ssize_t got;
	while ((got = read(pipefd[0], r.err + n, sizeof(r.err) - 1 - n)) > 0)
		n += (size_t)got;
	r.err[n] = 0;
	close(pipefd[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return r;
}

static void forbidden_calls_are_refused_and_reported(void **state)
{
	(void)state;
	if (SANITIZED || !sandbox_enabled)
		skip();
	static const char *const call[] = { "openat", "socket", "execve", "clone", "prctl" };
	for (int k = 0; k < SANDBOX_KINDS; k++) {
		for (int f = 0; f < 5; f++) {
			if ((k == SANDBOX_MAIN || k == SANDBOX_BUILDER) && f == 0)
				continue; /* main may open: it writes the summary */
			struct child_result r = run_attempt((enum sandbox_kind)k, f);
			char *want = xasprintf("ferry: seccomp: %s thread tester made system call", sandbox_kind_name((enum sandbox_kind)k));
			char *name = xasprintf("(%s)", call[f]);
			if (r.status != SANDBOX_EXIT_STATUS || !strstr(r.err, "alive") || !strstr(r.err, want) ||
			    !strstr(r.err, name))
				fail_msg("%s thread, %s: status %d (want %d), stderr:\n%s", sandbox_kind_name((enum sandbox_kind)k),
					 call[f], r.status, SANDBOX_EXIT_STATUS, r.err);
			free(want);
			free(name);
		}
	}
}

/* The builder (main with a control socket) makes vCPU threads that load
 * their own filter; the forbidden test shows it cannot fork. */
static void builder_makes_threads(void **state)
{
	(void)state;
	if (SANITIZED || !sandbox_enabled)
		skip();
	struct child_result r = run_attempt(SANDBOX_BUILDER, 5);
	if (r.status != 8)
		fail_msg("a builder's thread could not start a confined thread: status %d, stderr:\n%s", r.status, r.err);
}

/* What no thread may do, whatever the list: start programs, make sockets
 * or threads, trace, change credentials or mounts, load modules or BPF. */
static void lists_exclude_dangerous_calls(void **state)
{
	(void)state;
	static const char *const never[] = { "execve", "execveat", "fork", "vfork", "clone", "clone3", "socket",
					     "connect", "bind", "listen", "ptrace", "setuid", "setgid", "mount", "umount2",
					     "init_module", "finit_module", "bpf", "process_vm_writev", "kill", "chmod",
					     "prctl", "seccomp", "unshare", "setns", "memfd_create", "pipe2", NULL };
	/* Except what the builder needs to build a VM, each only with the
	 * arguments that do that: its memory (memfd_create) and its vCPU
	 * threads (clone with CLONE_THREAD, prctl naming them, seccomp stacking
	 * their filter). */
	static const char *const builder_may[] = { "memfd_create", "clone", "prctl", "seccomp", NULL };
	for (int k = 0; k < SANDBOX_KINDS; k++)
		for (int i = 0; never[i]; i++) {
			int nr = seccomp_syscall_resolve_name(never[i]);
			if (!sandbox_allows((enum sandbox_kind)k, nr))
				continue;
			bool excepted = false;
			for (int j = 0; k == SANDBOX_BUILDER && builder_may[j]; j++)
				excepted |= !strcmp(builder_may[j], never[i]);
			if (!excepted)
				fail_msg("the %s list allows %s", sandbox_kind_name((enum sandbox_kind)k), never[i]);
			if (strcmp(never[i], "memfd_create") && !sandbox_condition((enum sandbox_kind)k, nr))
				fail_msg("the %s list allows %s whatever its arguments", sandbox_kind_name((enum sandbox_kind)k), never[i]);
		}
	/* Only main opens files, and only once the run is set up. */
	for (int k = 0; k < SANDBOX_KINDS; k++)
		assert_int_equal(sandbox_allows((enum sandbox_kind)k, seccomp_syscall_resolve_name("openat")),
				 k == SANDBOX_MAIN || k == SANDBOX_BUILDER);
}

/* docs/SECURITY.md has a table row per allowed call: `| \`name\` | x | x |  | x | x | why |`
 * (columns vCPU, event loop, control, main, builder; a call allowed only
 * with some arguments says so in its why: "only ..."). It must match the
 * lists. */
static void security_doc_matches_the_lists(void **state)
{
	(void)state;
	char *doc = read_file("docs/SECURITY.md");
	if (!doc)
		fail_msg("cannot read docs/SECURITY.md (run from the repository's top)");
	bool seen[SANDBOX_KINDS][512] = { { false } };
	unsigned rows = 0;
	const char *table = strstr(doc, "| call | vCPU | event loop | control | main | builder | why |");
	if (!table)
		fail_msg("docs/SECURITY.md has no table of allowed calls");
	for (char *line = strtok((char *)table, "\n"); line && line[0] == '|'; line = strtok(NULL, "\n")) {
		char name[64];
		if (sscanf(line, "| `%63[a-z0-9_]` |", name) != 1)
			continue;
		int nr = seccomp_syscall_resolve_name(name);
		if (nr < 0 || nr >= 512)
			fail_msg("docs/SECURITY.md names %s, which is not a system call here", name);
		const char *p = strchr(line + 1, '|');
		for (int k = 0; k < SANDBOX_KINDS; k++) {
			const char *cell = p + 1, *end = strchr(cell, '|');
			if (!end)
				fail_msg("docs/SECURITY.md: short row: %s", line);
			bool x = memchr(cell, 'x', (size_t)(end - cell)) != NULL;
			if (x != sandbox_allows((enum sandbox_kind)k, nr))
				fail_msg("docs/SECURITY.md says the %s list %s %s; the code says otherwise",
					 sandbox_kind_name((enum sandbox_kind)k), x ? "allows" : "does not allow", name);
			seen[k][nr] = true;
			if (x && sandbox_condition((enum sandbox_kind)k, nr) && !strstr(end, "only "))
				fail_msg("docs/SECURITY.md: %s is allowed to %s only with some arguments; its row does not say which",
					 name, sandbox_kind_name((enum sandbox_kind)k));
			p = end;
		}
		rows++;
	}
	for (int k = 0; k < SANDBOX_KINDS; k++)
		for (int nr = 0; nr < 512; nr++)
			if (sandbox_allows((enum sandbox_kind)k, nr) && !seen[k][nr])
				fail_msg("the %s list allows %s, which docs/SECURITY.md does not document",
					 sandbox_kind_name((enum sandbox_kind)k), seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr));
	assert_true(rows > 10);
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(forbidden_calls_are_refused_and_reported),
		cmocka_unit_test(builder_makes_threads),
		cmocka_unit_test(lists_exclude_dangerous_calls),
		cmocka_unit_test(security_doc_matches_the_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
