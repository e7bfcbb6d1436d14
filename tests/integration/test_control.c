/* The control socket under abuse: clients that hang up before their answer,
 * idle clients holding every slot, over-long requests, and connect/disconnect
 * churn while ferry starts and stops. ferry and its VMs must not notice:
 * each test ends with a VM that powers off normally. The same tests run
 * against the ASan+UBSan build (scripts/run-tests.sh), where a use-after-free
 * in the socket's teardown would abort ferry. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/control_client.h"

#define tmp test_dir

/* The ferry a test started, killed by the teardown if the test failed
 * before stopping it (so no VM outlives its test). */
static int ferry_pid = -1;

static int teardown(void **state)
{
	if (ferry_pid > 0)
		wait_background(ferry_pid, 0);
	ferry_pid = -1;
	return test_dir_teardown(state);
}

/* Starts one VM with a control socket; returns ferry's pid once the socket
 * answers. */
static int start_ferry(const char *sock, const char *cmdline)
{
	char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline", (char *)cmdline,
			 "--control", (char *)sock, "--log-dir", tmp, "--name", "vm0", NULL };
	int pid = spawn_background(argv);
	ferry_pid = pid;
	for (int i = 0; i < 200; i++) {
		int fd = control_connect(sock);
		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(20000);
	}
	fail_msg("the control socket %s never answered", sock);
	return -1;
}

/* One request on a fresh connection; the parsed answer (caller frees). */
static cJSON *call(const char *sock, const char *req)
{
	int fd = control_connect(sock);
	if (fd < 0)
		return NULL;
	cJSON *ans = control_call(fd, req);
	close(fd);
	return ans;
}

static bool answer_ok(cJSON *ans)
{
	return ans && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "ok"));
}

static void stop_vm_and_wait(const char *sock, int pid)
{
	cJSON *ans = call(sock, "{\"cmd\": \"stop\", \"vm\": \"vm0\"}");
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	/* 1: the VM was stopped, not powered off; a signal would be 128 + n. */
	assert_int_equal(wait_background(pid, 30), 1);
	ferry_pid = -1;
}

struct churn {
	const char *sock;
	atomic_bool stop;
	atomic_ulong connects;
};

/* Connects, asks for status, and hangs up: half the time without reading
 * the answer, sometimes before the request is complete. */
static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	unsigned seed = (unsigned)(uintptr_t)pthread_self();
	while (!atomic_load(&c->stop)) {
		int fd = control_connect(c->sock);
		if (fd < 0) {
			usleep(1000);
			continue;
		}
		atomic_fetch_add(&c->connects, 1);
		int how = rand_r(&seed) % 4;
		const char *req = how == 0 ? "{\"cmd\": \"sta" : "{\"cmd\": \"status\"}\n";
		if (send(fd, req, strlen(req), MSG_NOSIGNAL) > 0 && how == 3) {
			char buf[256];
			if (read(fd, buf, sizeof(buf)) < 0)
				buf[0] = 0;
		}
		close(fd);
	}
	return NULL;
}

static void run_churn(struct churn *c, pthread_t *threads, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, churn_thread, c), 0);
}

static void end_churn(struct churn *c, pthread_t *threads, unsigned n)
{
	atomic_store(&c->stop, true);
	for (unsigned i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
}

/* Five clients that send and hang up without reading: each write to a gone
 * client used to raise SIGPIPE, which killed ferry and every VM. */
static void clients_that_hang_up(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	struct churn c = { .sock = sock };
	pthread_t threads[5];
	run_churn(&c, threads, 5);
	usleep(1500000);
	end_churn(&c, threads, 5);
	assert_true(atomic_load(&c.connects) > 50);
	cJSON *ans = call(sock, "{\"cmd\": \"status\"}");
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

/* More idle connections than there are client slots: a new client is still
 * served (the idlest connection makes room). */
static void idle_clients_cannot_lock_others_out(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	enum { IDLE = 40 };
	int fds[IDLE];
	for (int i = 0; i < IDLE; i++) {
		fds[i] = control_connect(sock);
		assert_true(fds[i] >= 0);
	}
	usleep(1200000); /* long enough to count as idle */
	cJSON *ans = call(sock, "{\"cmd\": \"status\"}");
	if (!answer_ok(ans))
		fail_msg("a new client was not served with %d idle connections open", IDLE);
	cJSON_Delete(ans);
	for (int i = 0; i < IDLE; i++)
		close(fds[i]);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

/* Errors are answers, and the connection stays usable after them. */
static void bad_requests_are_answered(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	int pid = start_ferry(sock, "app=idle");
	int fd = control_connect(sock);
	assert_true(fd >= 0);
	size_t big = 10000;
	char *line = malloc(big + 2);
	memset(line, 'x', big);
	line[big] = '\0';
	const char *reqs[] = { line, "not json", "[1, 2]", "{\"cmd\": 5}", "{\"cmd\": \"nope\"}",
			       "{\"cmd\": \"stop\", \"vm\": \"nobody\"}", NULL };
	for (const char **r = reqs; *r; r++) {
		cJSON *ans = control_call(fd, *r);
		if (!ans || answer_ok(ans) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ans, "error")))
			fail_msg("request \"%.40s\" was not answered with an error", *r);
		cJSON_Delete(ans);
	}
	cJSON *ans = control_call(fd, "{\"cmd\": \"status\"}");
	assert_true(answer_ok(ans));
	cJSON_Delete(ans);
	close(fd);
	free(line);
	stop_vm_and_wait(sock, pid);
	free(sock);
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static const char *vm_state(int fd)
{
	static char state[32];
	cJSON *ans = control_call(fd, "{\"cmd\": \"status\"}");
	cJSON *vm = ans ? cJSON_GetArrayItem(cJSON_GetObjectItem(ans, "vms"), 0) : NULL;
	cJSON *st = vm ? cJSON_GetObjectItem(vm, "state") : NULL;
	snprintf(state, sizeof(state), "%s", cJSON_IsString(st) ? st->valuestring : "?");
	cJSON_Delete(ans);
	return state;
}

static bool call_ok(int fd, const char *req)
{
	cJSON *ans = control_call(fd, req);
	bool ok = ans && answer_ok(ans);
	cJSON_Delete(ans);
	return ok;
}

/* A paused VM runs no guest code (a guest printing all the time prints
 * nothing), says so in its status, and runs again once resumed; pausing
 * twice or resuming a running VM is an error. */
static void pause_and_resume(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp), *log = xasprintf("%s/vm0.log", tmp);
	int pid = start_ferry(sock, "app=chatter lines=100000000");
	int fd = control_connect(sock);
	assert_true(fd >= 0);
	assert_string_equal(vm_state(fd), "running");
	assert_true(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"vm0\"}"));
	assert_string_equal(vm_state(fd), "paused");
	assert_false(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"vm0\"}"));
	long before = file_size(log);
	usleep(300000);
	assert_int_equal(file_size(log), before);
	assert_true(call_ok(fd, "{\"cmd\": \"resume\", \"vm\": \"vm0\"}"));
	assert_false(call_ok(fd, "{\"cmd\": \"resume\", \"vm\": \"vm0\"}"));
	assert_string_equal(vm_state(fd), "running");
	for (int i = 0; i < 100 && file_size(log) == before; i++)
		usleep(20000);
	assert_true(file_size(log) > before);
	/* Stopping a paused VM works too. */
	assert_true(call_ok(fd, "{\"cmd\": \"pause\", \"vm\": \"vm0\"}"));
	close(fd);
	stop_vm_and_wait(sock, pid);
	free(sock);
	free(log);
}

/* Clients connect and hang up all through start-up, the run and shutdown
 * (the VM powers off on its own while they churn). Under ASan this found a
 * use-after-free in the socket's teardown. */
static void churn_through_start_and_shutdown(void **state)
{
	(void)state;
	require_kvm();
	char *sock = xasprintf("%s/ctl.sock", tmp);
	struct churn c = { .sock = sock };
	pthread_t threads[4];
	run_churn(&c, threads, 4);
	for (int round = 0; round < 3; round++) {
		char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline",
				 "app=idle ms=300", "--control", sock, "--log-dir", tmp, NULL };
		int pid = spawn_background(argv);
		assert_int_equal(wait_background(pid, 30), 0);
	}
	end_churn(&c, threads, 4);
	assert_true(atomic_load(&c.connects) > 0);
	free(sock);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_dir_setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(clients_that_hang_up),
		T(idle_clients_cannot_lock_others_out),
		T(bad_requests_are_answered),
		T(pause_and_resume),
		T(churn_through_start_and_shutdown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
