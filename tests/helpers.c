#include "helpers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_read(struct buf *b, int fd, bool *open)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));
	if (n <= 0) {
		*open = false;
		return;
	}
	if (b->len + (size_t)n + 1 > b->cap) {
		b->cap = (b->len + (size_t)n + 1) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, tmp, (size_t)n);
	b->len += (size_t)n;
	b->p[b->len] = '\0';
}

struct cmd_result run_cmd(char *const argv[], double timeout_s)
{
	struct cmd_result r = { .status = -1 };
	int out[2], err[2];
	if (pipe(out) < 0 || pipe(err) < 0)
		fail_msg("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		setpgid(0, 0); /* so a timeout can kill the whole group */
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	struct buf bo = { 0 }, be = { 0 };
	bool oo = true, eo = true, timed_out = false;
	double deadline = now_s() + timeout_s;
	while (oo || eo) {
		double left = deadline - now_s();
		if (left <= 0) {
			timed_out = true;
			kill(-pid, SIGKILL);
			break;
		}
		struct pollfd p[2] = { { oo ? out[0] : -1, POLLIN, 0 }, { eo ? err[0] : -1, POLLIN, 0 } };
		if (poll(p, 2, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			buf_read(&bo, out[0], &oo);
		if (p[1].revents)
			buf_read(&be, err[0], &eo);
	}
	close(out[0]);
	close(err[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!timed_out)
		r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r.out = bo.p ? bo.p : strdup("");
	r.err = be.p ? be.p : strdup("");
	return r;
}

void cmd_result_free(struct cmd_result *r)
{
	free(r->out);
	free(r->err);
}

/* Reads to the end rather than trusting the size: /proc files say 0. */
char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, len = 0, got;
	char *p = malloc(cap);
	while (p && (got = fread(p + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (cap - len - 1 == 0) {
			char *q = realloc(p, cap * 2);
			if (!q) {
				free(p);
				p = NULL;
				break;
			}
			p = q;
			cap *= 2;
		}
	}
	fclose(f);
	if (p)
		p[len] = '\0';
	return p;
}

void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

cJSON *load_json(const char *path)
{
	char *text = read_file(path);
	if (!text)
		return NULL;
	cJSON *j = cJSON_Parse(text);
	free(text);
	return j;
}

char *make_temp_dir(void)
{
	char *dir = strdup("/tmp/ferry-test-XXXXXX");
	if (!mkdtemp(dir))
		fail_msg("mkdtemp: %s", strerror(errno));
	return dir;
}

void remove_tree(const char *dir)
{
	char *argv[] = { "rm", "-rf", (char *)dir, NULL };
	struct cmd_result r = run_cmd(argv, 30);
	cmd_result_free(&r);
}

void require_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR);
	if (fd >= 0) {
		close(fd);
		return;
	}
	const char *allow = getenv("FERRY_ALLOW_NO_KVM");
	if (allow && !strcmp(allow, "1"))
		skip();
	fail_msg("/dev/kvm is not usable (%s); set FERRY_ALLOW_NO_KVM=1 to skip tests that need it", strerror(errno));
}

bool have_qemu(void)
{
	return access("/usr/bin/qemu-system-x86_64", X_OK) == 0;
}

const char *ferry_bin(void)
{
	const char *p = getenv("FERRY_BIN");
	return p && *p ? p : "build/ferry";
}

const char *guest_image(void)
{
	const char *p = getenv("FERRY_GUEST");
	return p && *p ? p : "build/guest/ferry-guest.elf";
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

cJSON *summary_find_vm(const char *summary_path, const char *name)
{
	static cJSON *keep;
	cJSON *root = load_json(summary_path);
	if (!root)
		fail_msg("no summary at %s", summary_path);
	cJSON_Delete(keep);
	keep = root;
	cJSON *vm;
	cJSON_ArrayForEach(vm, cJSON_GetObjectItem(root, "vms"))
		if (!strcmp(cJSON_GetObjectItem(vm, "name")->valuestring, name))
			return vm;
	fail_msg("VM %s missing from the summary", name);
	return NULL;
}

double json_num(cJSON *obj, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	cJSON *cur = obj;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save)) {
		cur = cJSON_GetObjectItem(cur, tok);
		if (!cur)
			fail_msg("summary lacks %s", path);
	}
	if (!cJSON_IsNumber(cur))
		fail_msg("summary %s is not a number", path);
	return cur->valuedouble;
}

void json_expect_unique_keys(cJSON *obj, const char *where)
{
	cJSON *a, *b;
	cJSON_ArrayForEach(a, obj) {
		if (cJSON_IsObject(obj))
			for (b = a->next; b; b = b->next)
				if (a->string && b->string && !strcmp(a->string, b->string))
					fail_msg("%s: key \"%s\" appears twice in one object", where, a->string);
		json_expect_unique_keys(a, where);
	}
}

void expect_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, haystack);
}

struct cmd_result ferry_run_in(const char *dir, const char *const *args, double timeout)
{
	char *argv[48];
	int n = 0;
	argv[n++] = (char *)ferry_bin();
	argv[n++] = "run";
	for (; *args && n < 40; args++)
		argv[n++] = (char *)*args;
	char *summary = xasprintf("%s/summary.json", dir), *logs = xasprintf("%s/logs", dir);
	argv[n++] = "--summary";
	argv[n++] = summary;
	argv[n++] = "--log-dir";
	argv[n++] = logs;
	argv[n] = NULL;
	struct cmd_result r = run_cmd(argv, timeout);
	free(summary);
	free(logs);
	return r;
}

int spawn_background(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		setpgid(0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	return (int)pid;
}

int wait_background(int pid, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	int st;
	while (now_s() < deadline) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	kill(-pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

char *test_dir;

int test_dir_setup(void **state)
{
	(void)state;
	test_dir = make_temp_dir();
	return 0;
}

int test_dir_teardown(void **state)
{
	(void)state;
	remove_tree(test_dir);
	free(test_dir);
	test_dir = NULL;
	return 0;
}

cJSON *test_summary_vm(const char *name)
{
	char *path = xasprintf("%s/summary.json", test_dir);
	cJSON *vm = summary_find_vm(path, name);
	free(path);
	return vm;
}

char *test_console_log(const char *name)
{
	char *path = xasprintf("%s/logs/%s.log", test_dir, name);
	char *text = read_file(path);
	free(path);
	if (!text)
		fail_msg("no console log for %s", name);
	return text;
}

/* FERRY_TEST_FILTER=pattern runs only the tests whose names match (cmocka's
 * filter: '*' and '?' wildcards), in every test binary. */
__attribute__((constructor)) static void apply_test_filter(void)
{
	const char *f = getenv("FERRY_TEST_FILTER");
	if (f && *f)
		cmocka_set_test_filter(f);
}

void require_qemu(void)
{
	require_kvm();
	if (!have_qemu())
		fail_msg("qemu-system-x86_64 is not installed (make test installs it)");
}

void qemu_stop(struct qemu *q)
{
	if (q->qmp >= 0)
		close(q->qmp);
	q->qmp = -1;
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
		q->pid = 0;
	}
}

cJSON *qmp_read(struct qemu *q, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			*nl = '\0';
			cJSON *j = cJSON_Parse(q->buf);
			size_t used = (size_t)(nl + 1 - q->buf);
			memmove(q->buf, nl + 1, q->len - used);
			q->len -= used;
			if (j)
				return j;
			continue;
		}
		if (now_s() > deadline || q->len == sizeof(q->buf))
			return NULL;
		struct timeval tv = { 0, 100000 };
		setsockopt(q->qmp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t n = recv(q->qmp, q->buf + q->len, sizeof(q->buf) - q->len, 0);
		if (n > 0)
			q->len += (size_t)n;
		else if (n == 0)
			return NULL;
	}
}

/* What went wrong with QEMU, for a failure message: how it ended (if it
 * has), what it said (its log, if kept), and the guest's console. */
static char *qemu_diagnosis(struct qemu *q)
{
	int st = 0;
	char how[64] = "still running";
	if (q->pid > 0 && waitpid(q->pid, &st, WNOHANG) == q->pid) {
		q->pid = 0;
		if (WIFEXITED(st))
			snprintf(how, sizeof(how), "exited with %d", WEXITSTATUS(st));
		else
			snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(st));
	}
	char *err = q->log ? read_file(q->log) : NULL, *con = q->console ? read_file(q->console) : NULL;
	char *d = xasprintf("QEMU %s; its output:\n%s\nconsole:\n%s", how, err ? err : "", con ? con : "");
	free(err);
	free(con);
	return d;
}

cJSON *qmp(struct qemu *q, const char *cmd, cJSON **root)
{
	/* One send with the newline: QEMU acts on a complete object at once,
	 * so after "quit" a second send could find the socket closed. */
	char *line = xasprintf("%s\n", cmd);
	size_t len = strlen(line);
	if (send(q->qmp, line, len, MSG_NOSIGNAL) != (ssize_t)len)
		fail_msg("QMP send of %s failed: %s\n%s", cmd, strerror(errno), qemu_diagnosis(q));
	free(line);
	for (;;) {
		cJSON *j = qmp_read(q, 20);
		if (!j)
			fail_msg("no QMP reply to %s\n%s", cmd, qemu_diagnosis(q));
		cJSON *ret = cJSON_GetObjectItem(j, "return");
		if (ret) {
			*root = j;
			return ret;
		}
		cJSON *err = cJSON_GetObjectItem(j, "error");
		if (err) {
			char *text = cJSON_PrintUnformatted(err);
			fail_msg("QMP %s failed: %s", cmd, text);
		}
		cJSON_Delete(j); /* an event */
	}
}

void qmp_do(struct qemu *q, const char *cmd)
{
	cJSON *root;
	qmp(q, cmd, &root);
	cJSON_Delete(root);
}

void qemu_start_qmp(struct qemu *q, char *const argv[], const char *qmp_sock)
{
	q->qmp = -1;
	q->len = 0;
	q->pid = fork();
	if (q->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int out = q->log ? open(q->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : null;
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (q->pid < 0)
		fail_msg("fork: %s", strerror(errno));

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", qmp_sock);
	for (double deadline = now_s() + 30; q->qmp < 0; usleep(50000)) {
		if (now_s() > deadline || waitpid(q->pid, NULL, WNOHANG) == q->pid) {
			q->pid = 0;
			fail_msg("QEMU did not open its QMP socket");
		}
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			q->qmp = fd;
		else
			close(fd);
	}
	cJSON *greeting = qmp_read(q, 20);
	if (!greeting || !cJSON_GetObjectItem(greeting, "QMP"))
		fail_msg("no QMP greeting");
	cJSON_Delete(greeting);
	qmp_do(q, "{\"execute\":\"qmp_capabilities\"}");
}

int spawn_background_log(char *const argv[], const char *out_path)
{
	pid_t pid = fork();
	if (pid == 0) {
		int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDONLY);
		if (out < 0 || null < 0)
			_exit(127);
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		setpgid(0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	return (int)pid;
}

const char *linux_kernel(void)
{
	const char *p = getenv("FERRY_LINUX");
	p = p && *p ? p : "build/linux/vmlinux";
	if (access(p, R_OK) != 0)
		fail_msg("%s: %s (make linux-guest builds it; make test does)", p, strerror(errno));
	return p;
}

void watch_start(struct guest_watch *w, int pid, const char *console, double t0)
{
	memset(w, 0, sizeof(*w));
	w->pid = pid;
	w->console = console;
	w->t0 = t0;
	w->t_first = w->t_user = w->t_end = -1;
	w->status = -1;
}

/* Notes what the console shows by now; true once the VMM has exited. */
static bool watch_poll(struct guest_watch *w, char **text)
{
	double t = now_s();
	char *c = read_file(w->console);
	if (c && *c && w->t_first < 0)
		w->t_first = t - w->t0;
	if (c && w->t_user < 0 && strstr(c, "linux-init: "))
		w->t_user = t - w->t0;
	*text = c;
	if (!w->exited && w->vmm_log) {
		/* QEMU stays up, paused, after an emulation failure: fail now. */
		char *log = read_file(w->vmm_log);
		if (log && strstr(log, "KVM internal error")) {
			kill(w->pid, SIGKILL);
			waitpid(w->pid, NULL, 0);
			w->exited = true;
			w->t_end = t - w->t0;
			w->status = -2;
		}
		free(log);
	}
	if (!w->exited) {
		int st;
		if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
			w->exited = true;
			w->t_end = t - w->t0;
			w->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
	}
	return w->exited;
}

bool watch_for(struct guest_watch *w, const char *text, double timeout_s)
{
	for (double deadline = now_s() + timeout_s;; usleep(20000)) {
		char *c;
		bool exited = watch_poll(w, &c);
		bool found = c && strstr(c, text);
		free(c);
		if (found)
			return true;
		if (exited || now_s() > deadline)
			return false;
	}
}

int watch_exit(struct guest_watch *w, double timeout_s)
{
	for (double deadline = now_s() + timeout_s;; usleep(20000)) {
		char *c;
		bool exited = watch_poll(w, &c);
		free(c);
		if (exited)
			return w->status;
		if (now_s() > deadline) {
			kill(-w->pid, SIGKILL);
			kill(w->pid, SIGKILL);
			waitpid(w->pid, NULL, 0);
			w->exited = true;
			return -1;
		}
	}
}
