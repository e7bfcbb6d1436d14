/* ferry top in a real terminal: tmux runs it in a shell, the test reads
 * the screen (capture-pane) and types keys. The header and one row per VM
 * appear with live rates, the sort key changes, and q or Ctrl-C give the
 * shell back its terminal as it was. Also --batch, and the rates against a
 * fixed pair of answers (no ferry needed). */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/control_client.h"
#include "api/top.h"

#define tmp test_dir

static char kernel[PATH_MAX], ferry[PATH_MAX];
static int ferry_pid = -1;
static char tmux_server[64];

static int setup(void **state)
{
	test_dir_setup(state);
	if (!realpath(guest_image(), kernel))
		snprintf(kernel, sizeof(kernel), "%s", guest_image());
	if (!realpath(ferry_bin(), ferry))
		snprintf(ferry, sizeof(ferry), "%s", ferry_bin());
	snprintf(tmux_server, sizeof(tmux_server), "ferry-test-top-%d", (int)getpid());
	return 0;
}

static struct cmd_result tmux(const char *a, const char *b, const char *c, const char *d, const char *e)
{
	char *argv[] = { "tmux", "-L", tmux_server, (char *)a, (char *)b, (char *)c, (char *)d, (char *)e, NULL };
	return run_cmd(argv, 10);
}

static int teardown(void **state)
{
	struct cmd_result r = tmux("kill-server", NULL, NULL, NULL, NULL); /* only this test's server */
	cmd_result_free(&r);
	if (ferry_pid > 0)
		wait_background(ferry_pid, 0);
	ferry_pid = -1;
	return test_dir_teardown(state);
}

static char *screen(void)
{
	struct cmd_result r = tmux("capture-pane", "-p", "-t", "top", NULL);
	char *s = r.out;
	r.out = NULL;
	cmd_result_free(&r);
	return s ? s : strdup("");
}

/* Waits up to 20 s for text on the screen; the screen then (caller frees). */
static char *wait_screen(const char *text, bool present)
{
	char *s = NULL;
	for (int i = 0; i < 200; i++) {
		free(s);
		s = screen();
		if ((strstr(s, text) != NULL) == present)
			return s;
		usleep(100000);
	}
	fail_msg("the screen %s \"%s\":\n%s", present ? "never showed" : "still shows", text, s);
	return s;
}

static void type(const char *keys)
{
	struct cmd_result r = tmux("send-keys", "-t", "top", keys, NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
}

static void type_line(const char *line)
{
	struct cmd_result r = tmux("send-keys", "-t", "top", line, "Enter");
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
}

/* A column (from 0, blank-separated) of the row of VM name on the screen. */
static double column(const char *s, const char *name, int col)
{
	char *prefix = xasprintf("\n%s ", name);
	const char *row = strstr(s, prefix);
	free(prefix);
	if (!row)
		return -1;
	double v = -1;
	char buf[512];
	snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(row + 1, "\n"), row + 1);
	char *save = NULL, *tok = strtok_r(buf, " ", &save);
	for (int i = 0; tok && i < col; i++)
		tok = strtok_r(NULL, " ", &save);
	if (tok)
		v = strtod(tok, NULL);
	return v;
}

#define CONFIG                                                                                                   \
	"{ \"vms\": ["                                                                                           \
	" { \"name\": \"tx\", \"memory_mib\": 64, \"kernel\": \"%s\","                                            \
	"   \"cmdline\": \"app=msgbulk role=send peer=rx sizes=4K count=1000000\","                               \
	"   \"devices\": [ { \"type\": \"msgq\", \"peers\": [\"rx\"] } ] },"                                      \
	" { \"name\": \"rx\", \"memory_mib\": 64, \"kernel\": \"%s\", \"cmdline\": \"app=msgbulk role=recv\","     \
	"   \"devices\": [ { \"type\": \"msgq\" } ] },"                                                           \
	" { \"name\": \"web\", \"memory_mib\": 128, \"vcpus\": 2, \"kernel\": \"%s\", \"cmdline\": \"app=idle\","  \
	"   \"devices\": [ { \"type\": \"virtio-balloon\" }, { \"type\": \"cpu-reserve\" } ] } ] }"

static char *start_ferry(void)
{
	char *cfg = xasprintf("%s/config.json", tmp), *sock = xasprintf("%s/ctl.sock", tmp),
	     *logs = xasprintf("%s/logs", tmp), *json = xasprintf(CONFIG, kernel, kernel, kernel);
	write_file(cfg, json);
	char *argv[] = { ferry, "run", cfg, "--control", sock, "--log-dir", logs, NULL };
	ferry_pid = spawn_background(argv);
	for (int i = 0; i < 250; i++) {
		int fd = control_connect(sock);
		if (fd >= 0) {
			close(fd);
			break;
		}
		usleep(20000);
	}
	free(cfg);
	free(logs);
	free(json);
	return sock;
}

static void top_in_tmux(void **state)
{
	(void)state;
	require_kvm();
	char *sock = start_ferry();
	/* A shell in a 160x30 terminal; top runs in it, as a user would. */
	char *argv[] = { "tmux", "-L", tmux_server, "new-session", "-d", "-s", "top", "-x", "160", "-y", "30", "sh",
			 NULL };
	/* Not run_cmd: the tmux server it starts would hold its pipes open. */
	if (wait_background(spawn_background(argv), 10) != 0)
		fail_msg("tmux new-session failed");
	char *cmd = xasprintf("%s top --socket %s; echo TOP-EXIT=$?", ferry, sock);
	type_line(cmd);

	/* The header, the column titles and every VM; tx's messages flow. */
	char *s = wait_screen("ferry top: 3 VMs", true);
	free(s);
	s = wait_screen("MSG/s", true);
	expect_contains(s, "memory: budget none; configured 256 MiB");
	free(s);
	double rate = -1;
	for (int i = 0; i < 100 && rate <= 0; i++) {
		s = screen();
		rate = column(s, "tx", 6);
		if (rate <= 0)
			usleep(100000);
		if (rate > 0 || i == 99) {
			assert_true(column(s, "rx", 6) > 0);   /* its messages in */
			assert_int_equal(column(s, "web", 3), 128); /* MiB configured */
			assert_true(strstr(s, "\nweb ") && strstr(s, "\nrx "));
			if (rate <= 0)
				fail_msg("tx's messages per second never showed:\n%s", s);
		}
		free(s);
	}
	/* Sorted by name: rx, tx, web; then by the next key, memory: web first. */
	s = screen();
	assert_true(strstr(s, "\nrx ") < strstr(s, "\ntx ") && strstr(s, "\ntx ") < strstr(s, "\nweb "));
	free(s);
	type("s");
	s = wait_screen("sort: memory", true);
	assert_true(strstr(s, "\nweb ") < strstr(s, "\nrx "));
	free(s);
	type("r");
	free(wait_screen("sort: memory reversed", true));

	/* q: top ends, the shell's screen comes back. */
	type("q");
	s = wait_screen("TOP-EXIT=0", true);
	if (strstr(s, "ferry top: 3 VMs"))
		fail_msg("top's screen is still there after q:\n%s", s);
	free(s);
	/* Ctrl-C does the same. */
	char *cmd2 = xasprintf("%s top --socket %s; echo TOP2-EXIT=$?", ferry, sock);
	type_line(cmd2);
	free(wait_screen("MSG/s", true));
	type("C-c");
	s = wait_screen("TOP2-EXIT=0", true);
	if (strstr(s, "MSG/s"))
		fail_msg("top's screen is still there after Ctrl-C:\n%s", s);
	free(s);
	free(cmd2);
	/* And the terminal is as the shell left it: canonical mode, echo on. */
	type_line("clear; echo MODE=$(stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo')");
	s = wait_screen("MODE=", true);
	if (!strstr(s, "MODE=icanon echo")) {
		free(s);
		s = wait_screen("MODE=icanon echo", true); /* the output may follow the command line */
	}
	free(s);
	free(cmd);

	struct cmd_result stop = run_cmd((char *[]){ ferry, "ctl", "--socket", sock, "stop", "--all", NULL }, 30);
	cmd_result_free(&stop);
	wait_background(ferry_pid, 30);
	ferry_pid = -1;
	free(sock);
}

/* --batch prints refreshes as text, for scripts. */
static void top_batch(void **state)
{
	(void)state;
	require_kvm();
	char *sock = start_ferry();
	char *argv[] = { ferry, "top", "--socket", sock, "--batch", "2", "--interval", "0.5", "--sort", "memory", NULL };
	struct cmd_result r = run_cmd(argv, 30);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "sort: memory");
	assert_true(strstr(r.out, "\nweb ") < strstr(r.out, "\ntx "));
	cmd_result_free(&r);
	char *bad[] = { ferry, "top", "--socket", "/nonexistent.sock", "--batch", "1", NULL };
	r = run_cmd(bad, 30);
	assert_int_equal(r.status, 1);
	expect_contains(r.err, "cannot connect to /nonexistent.sock");
	cmd_result_free(&r);
	struct cmd_result stop = run_cmd((char *[]){ ferry, "ctl", "--socket", sock, "stop", "--all", NULL }, 30);
	cmd_result_free(&stop);
	wait_background(ferry_pid, 30);
	ferry_pid = -1;
	free(sock);
}

/* Rates from two answers 2 s apart; a VM that is new has none yet. */
static void rates(void **state)
{
	(void)state;
	struct top_model m = { 0 };
	cJSON *a = cJSON_Parse("{\"ok\": true, \"host\": {\"vms\": 1}, \"vms\": [{\"name\": \"a\", \"id\": 0, \"state\": \"running\","
			       " \"memory_mib\": 64, \"resident_mib\": 10, \"totals\": {\"vcpus\": 2, \"vcpus_parked\": 1,"
			       " \"target_mib\": 48, \"exits\": 100, \"msgq\": {\"sent\": 10, \"received\": 5, \"pages_remapped\": 4},"
			       " \"net\": {\"frames_zero_copy\": 1, \"frames_one_copy\": 2, \"frames_external\": 3}}}]}");
	cJSON *b = cJSON_Parse("{\"ok\": true, \"host\": {\"vms\": 2}, \"vms\": [{\"name\": \"a\", \"id\": 0, \"state\": \"running\","
			       " \"memory_mib\": 64, \"resident_mib\": 10, \"totals\": {\"vcpus\": 2, \"vcpus_parked\": 1,"
			       " \"target_mib\": 48, \"exits\": 300, \"msgq\": {\"sent\": 30, \"received\": 5, \"pages_remapped\": 44},"
			       " \"net\": {\"frames_zero_copy\": 201, \"frames_one_copy\": 2, \"frames_external\": 3}}},"
			       " {\"name\": \"b\", \"id\": 1, \"state\": \"paused\", \"memory_mib\": 128, \"resident_mib\": 1,"
			       " \"totals\": {\"vcpus\": 1, \"exits\": 1000}}]}");
	assert_int_equal(top_update(&m, a, 10.0), 0);
	assert_int_equal(top_update(&m, b, 12.0), 0);
	assert_int_equal(m.nr, 2);
	assert_string_equal(m.rows[0].name, "a"); /* by name */
	assert_true(m.rows[0].msgs == 10 && m.rows[0].remapped == 20 && m.rows[0].zero_copy == 100);
	assert_true(m.rows[0].exits == 100 && m.rows[0].one_copy == 0);
	assert_true(m.rows[1].exits == 0); /* b is new */
	char line[512];
	top_row_line(&m.rows[0], line, sizeof(line));
	expect_contains(line, "1/1"); /* online/parked */
	m.sort = TOP_BY_MEMORY;
	top_sort_rows(&m);
	assert_string_equal(m.rows[0].name, "b");
	assert_int_equal(top_update(&m, cJSON_GetObjectItem(b, "vms"), 13.0), -1); /* not an answer */
	top_free(&m);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rates),
		T(top_in_tmux),
		T(top_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
