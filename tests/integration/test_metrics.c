/* Metrics and logs: the Prometheus text that `ferry ctl metrics` prints and
 * that --metrics-addr serves over HTTP passes `promtool check metrics`
 * (Debian's prometheus package), for a run where every family has samples
 * (messages, frames on the zero-copy path, a link, budgets, parking); the
 * endpoint answers only GET /metrics and only on loopback; --log and
 * --log-level write one line per event with time, level and VM. */
#include "helpers.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/control_client.h"

#define tmp test_dir

static char kernel[PATH_MAX];
static int ferry_pid = -1;

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	return 0;
}

static int teardown(void **state)
{
	if (ferry_pid > 0)
		wait_background(ferry_pid, 0);
	ferry_pid = -1;
	return test_dir_teardown(state);
}

static void require_promtool(void)
{
	char *argv[] = { "promtool", "--version", NULL };
	struct cmd_result r = run_cmd(argv, 30);
	if (r.status != 0)
		fail_msg("promtool is not installed (Debian package prometheus; make deps installs it)");
	cmd_result_free(&r);
}

/* promtool check metrics on text: its verdict, with what it said. */
static void expect_promtool_ok(const char *text, const char *what)
{
	char *path = xasprintf("%s/metrics.txt", tmp);
	write_file(path, text);
	char *cmd = xasprintf("promtool check metrics < %s", path);
	char *argv[] = { "sh", "-c", cmd, NULL };
	struct cmd_result r = run_cmd(argv, 30);
	if (r.status != 0)
		fail_msg("promtool check metrics refused %s (%d):\n%s%s", what, r.status, r.out, r.err);
	cmd_result_free(&r);
	free(cmd);
	free(path);
}

/* One HTTP request to 127.0.0.1:port; the whole response (caller frees). */
static char *http(int port, const char *request)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail_msg("cannot connect to 127.0.0.1:%d", port);
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0)
		fail_msg("cannot send to 127.0.0.1:%d", port);
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static double status_at(int fd, const char *vm, const char *k1, const char *k2)
{
	cJSON *ans = control_call(fd, "{\"cmd\": \"status\"}");
	double v = -1;
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(ans, "vms"))
		if (!strcmp(cJSON_GetObjectItem(e, "name")->valuestring, vm)) {
			const cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "totals"), k1), k2);
			v = cJSON_IsNumber(o) ? o->valuedouble : -1;
		}
	cJSON_Delete(ans);
	return v;
}

static void wait_for(int fd, const char *vm, const char *k1, const char *k2, double want)
{
	double v = -1;
	for (int i = 0; i < 600 && v < want; i++) {
		v = status_at(fd, vm, k1, k2);
		if (v < want)
			usleep(50000);
	}
	if (v < want)
		fail_msg("%s's %s.%s never reached %g (%g)", vm, k1, k2, want, v);
}

/* The value of a sample line "name{labels} value" in text, or -1. */
static double sample(const char *text, const char *series)
{
	char *needle = xasprintf("\n%s ", series);
	const char *p = strstr(text, needle);
	double v = p ? strtod(p + strlen(needle), NULL) : -1;
	free(needle);
	return v;
}

#define EVERY_FAMILY                                                                                              \
	"{ \"networks\": { \"lan\": {} }, \"host\": { \"memory_budget_mib\": 1024, \"vcpu_budget\": 8 },"          \
	"  \"links\": [ { \"vms\": [\"l1\", \"l2\"], \"size_mib\": 2 } ], \"vms\": ["                             \
	" { \"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\","                                             \
	"   \"cmdline\": \"app=msgbulk role=send peer=rx sizes=4K count=10000000\","                               \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"rx\"] } ] },"                                       \
	" { \"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","      \
	"   \"devices\": [ { \"type\": \"msgq\" } ] },"                                                            \
	" { \"name\": \"e\", \"memory_mib\": 64, \"kernel\": \"%s\","                                              \
	"   \"cmdline\": \"app=udpbulk role=send ip=10.0.0.1/24 peer=10.0.0.2 count=100000000\","                  \
	"   \"nics\": [ { \"network\": \"lan\" } ] },"                                                             \
	" { \"name\": \"f\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=udpbulk role=recv ip=10.0.0.2/24\"," \
	"   \"devices\": [ { \"type\": \"virtio-balloon\" } ], \"nics\": [ { \"network\": \"lan\" } ] },"         \
	" { \"name\": \"l1\", \"memory_mib\": 64, \"vcpus\": 2, \"kernel\": \"%s\", \"cmdline\": \"app=idle\","    \
	"   \"devices\": [ { \"type\": \"cpu-reserve\" } ] },"                                                     \
	" { \"name\": \"l2\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=idle\" } ] }"

static void promtool_and_http(void **state)
{
	(void)state;
	require_kvm();
	require_promtool();
	char *cfg = xasprintf("%s/config.json", tmp), *sock = xasprintf("%s/ctl.sock", tmp),
	     *logs = xasprintf("%s/logs", tmp), *log = xasprintf("%s/ferry.log", tmp),
	     *json = xasprintf(EVERY_FAMILY, kernel, kernel, kernel, kernel, kernel, kernel);
	write_file(cfg, json);
	char *argv[] = { (char *)ferry_bin(), "run", cfg, "--control", sock, "--metrics-addr", "127.0.0.1:0",
			 "--log", log, "--log-dir", logs, NULL };
	ferry_pid = spawn_background(argv);
	int fd = -1;
	for (int i = 0; i < 250 && fd < 0; i++)
		if ((fd = control_connect(sock)) < 0)
			usleep(20000);
	assert_true(fd >= 0);
	/* Every family with samples: messages, zero-copy frames. */
	wait_for(fd, "rx", "msgq", "received", 100);
	wait_for(fd, "e", "net", "frames_zero_copy", 100);

	cJSON *ans = control_call(fd, "{\"cmd\": \"metrics\"}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ans, "ok")));
	const char *text = cJSON_GetObjectItem(ans, "text")->valuestring;
	expect_promtool_ok(text, "ferry ctl metrics");
	assert_true(sample(text, "ferry_msgq_messages_received_total{vm=\"rx\"}") >= 100);
	assert_true(sample(text, "ferry_net_frames_sent_total{vm=\"e\",path=\"zero_copy\"}") >= 100);
	assert_true(sample(text, "ferry_vm_memory_bytes{vm=\"l1\"}") == 64.0 * 1048576);
	assert_true(sample(text, "ferry_ivshmem_doorbells_total{vm=\"l2\",direction=\"sent\"}") == 0);
	assert_true(sample(text, "ferry_memory_budget_bytes") == 1024.0 * 1048576);
	assert_true(sample(text, "ferry_vcpu_budget") == 8);
	assert_true(sample(text, "ferry_vms{state=\"running\"}") == 6);
	cJSON_Delete(ans);

	/* The same over HTTP: the port ferry took is in its log. */
	char *text_log = read_file(log);
	const char *url = text_log ? strstr(text_log, "http://127.0.0.1:") : NULL;
	if (!url)
		fail_msg("the log does not say where the metrics are:\n%s", text_log ? text_log : "");
	int port = atoi(url + strlen("http://127.0.0.1:"));
	free(text_log);
	char *resp = http(port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
	if (strncmp(resp, "HTTP/1.0 200 OK\r\n", 17))
		fail_msg("GET /metrics: %.200s", resp);
	expect_contains(resp, "Content-Type: text/plain; version=0.0.4");
	char *body = strstr(resp, "\r\n\r\n");
	assert_non_null(body);
	expect_promtool_ok(body + 4, "the HTTP endpoint's answer");
	body += 3; /* from the newline before the first line, as sample() wants */
	assert_true(sample(body, "ferry_up") == 1);
	assert_true(sample(body, "ferry_net_frames_sent_total{vm=\"e\",path=\"zero_copy\"}") >= 100);
	free(resp);
	resp = http(port, "GET /other HTTP/1.1\r\n\r\n");
	expect_contains(resp, "HTTP/1.0 404 Not Found");
	free(resp);
	resp = http(port, "POST /metrics HTTP/1.1\r\n\r\n");
	expect_contains(resp, "HTTP/1.0 405");
	free(resp);
	resp = http(port, "garbage\r\n\r\n");
	expect_contains(resp, "HTTP/1.0 400");
	free(resp);

	ans = control_call(fd, "{\"cmd\": \"stop\", \"all\": true}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ans, "ok")));
	cJSON_Delete(ans);
	close(fd);
	wait_background(ferry_pid, 60);
	ferry_pid = -1;
	free(cfg);
	free(sock);
	free(logs);
	free(log);
	free(json);
}

static void metrics_addr_is_loopback_only(void **state)
{
	(void)state;
	const char *bad[][2] = { { "0.0.0.0:9100", "not a loopback address" }, { "10.1.2.3:80", "not a loopback address" },
				 { "127.0.0.1", "expected 127.0.0.1:PORT" }, { "127.0.0.1:99999", "is not a port" },
				 { "example.com:80", "is not an IPv4 address" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--metrics-addr",
				 (char *)bad[i][0], NULL };
		struct cmd_result r = run_cmd(argv, 30);
		assert_int_equal(r.status, 2);
		expect_contains(r.err, bad[i][1]);
		cmd_result_free(&r);
	}
}

/* Every line: UTC time to the millisecond, a level, the VM (or "-"). */
static void check_lines(const char *text, bool want_debug)
{
	regex_t re;
	assert_int_equal(regcomp(&re,
				 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z (error|warn |info |debug) "
				 "[A-Za-z0-9._-]+: .+$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	char *copy = strdup(text), *save = NULL;
	bool debug = false;
	int n = 0;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		if (regexec(&re, line, 0, NULL, 0))
			fail_msg("log line not in the format: %s", line);
		debug |= strstr(line, "Z debug ") != NULL;
	}
	assert_true(n > 0);
	assert_int_equal(debug, want_debug);
	free(copy);
	regfree(&re);
}

static void log_file_and_level(void **state)
{
	(void)state;
	require_kvm();
	char *log = xasprintf("%s/ferry.log", tmp);
	char *argv[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--cmdline", "app=hello",
			 "--name", "greeter", "--log", log, "--log-level", "debug", "--log-dir", tmp, NULL };
	struct cmd_result r = run_cmd(argv, 60);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, ""); /* everything went to the file */
	cmd_result_free(&r);
	char *text = read_file(log);
	check_lines(text, true);
	expect_contains(text, " info  greeter: powered off with status 0");
	expect_contains(text, " info  greeter: event vm-started");
	free(text);
	/* error: nothing below it (this run has no errors: an empty log). */
	unlink(log);
	argv[11] = "error";
	r = run_cmd(argv, 60);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	text = read_file(log);
	assert_string_equal(text ? text : "", "");
	free(text);
	/* A guest that fails: its error line is there at every level but debug's noise is not. */
	unlink(log);
	argv[5] = "app=crash mode=ud";
	argv[11] = "warn";
	r = run_cmd(argv, 60);
	assert_int_equal(r.status, 1);
	cmd_result_free(&r);
	text = read_file(log);
	check_lines(text, false);
	expect_contains(text, " error greeter: ");
	free(text);
	char *bad[] = { (char *)ferry_bin(), "run", "--kernel", (char *)guest_image(), "--log-level", "loud", NULL };
	r = run_cmd(bad, 30);
	assert_int_equal(r.status, 2);
	expect_contains(r.err, "--log-level: expected error, warn, info or debug");
	cmd_result_free(&r);
	free(log);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(promtool_and_http),
		T(metrics_addr_is_loopback_only),
		T(log_file_and_level),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
