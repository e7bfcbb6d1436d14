/* ferry top: a live view of a running ferry, through its control socket. */
#include <cjson/cJSON.h>
#include <curses.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/control_client.h"
#include "api/top.h"
#include "cli/cli.h"

static const char top_help[] =
	"usage: ferry top [--socket PATH] [--interval SECONDS] [--sort KEY] [--batch N]\n"
	"\n"
	"Shows a running ferry (started with 'ferry run --control PATH') live, one\n"
	"refresh a second: a header with the host's memory and vCPU budgets and\n"
	"totals, and one row per VM: its state, vCPUs online/parked, memory\n"
	"configured, target (what its balloon lets it use) and resident, and per\n"
	"second: messages sent and received, message pages remapped, frames sent on\n"
	"the zero-copy path, copied once by ferry, and out through a TAP, and exits.\n"
	"\n"
	"keys: s sorts by the next column (name, memory, resident, msg/s, frames/s,\n"
	"exits/s), r reverses, arrows / PgUp / PgDn / Home / End scroll, q or Ctrl-C\n"
	"quits (the terminal is restored).\n"
	"\n"
	"options:\n"
	"  --socket PATH      the control socket (default: $FERRY_SOCKET)\n"
	"  --interval SECONDS between refreshes (default 1)\n"
	"  --sort KEY         name, memory, resident, msgs, frames or exits (default name)\n"
	"  --batch N          no screen: print N refreshes as text to stdout, then exit\n";

static volatile sig_atomic_t quit_signal;

static void on_signal(int sig)
{
	quit_signal = sig;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One status answer into the model; false (and why) if ferry did not answer. */
static bool poll_ferry(const char *sock, int *fd, struct top_model *m, char *why, size_t len)
{
	if (*fd < 0 && (*fd = control_connect(sock)) < 0) {
		snprintf(why, len, "cannot connect to %s: %s", sock, strerror(errno));
		return false;
	}
	cJSON *ans = control_call(*fd, "{\"cmd\": \"status\"}");
	double t = now_s();
	if (!ans || top_update(m, ans, t) < 0) {
		snprintf(why, len, "no answer from %s (has ferry exited?)", sock);
		cJSON_Delete(ans);
		close(*fd);
		*fd = -1;
		return false;
	}
	cJSON_Delete(ans);
	return true;
}

static int batch(const char *sock, struct top_model *m, long frames, double interval)
{
	int fd = -1;
	char why[256], line[512];
	for (long f = 0; f < frames; f++) {
		if (f)
			usleep((useconds_t)(interval * 1e6));
		if (!poll_ferry(sock, &fd, m, why, sizeof(why))) {
			fprintf(stderr, "ferry top: %s\n", why);
			return 1;
		}
		if (f == 0 && frames > 1)
			continue; /* rates need two answers */
		for (int i = 0; i < TOP_HEADER_LINES; i++) {
			top_header_line(m, i, line, sizeof(line));
			printf("%s\n", line);
		}
		for (size_t i = 0; i < m->nr; i++) {
			top_row_line(&m->rows[i], line, sizeof(line));
			printf("%s\n", line);
		}
		printf("\n");
		fflush(stdout);
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

static void draw(const struct top_model *m, size_t top_row, const char *status)
{
	char line[512];
	erase();
	int rows = LINES, cols = COLS;
	for (int i = 0; i < TOP_HEADER_LINES && i < rows; i++) {
		top_header_line(m, i, line, sizeof(line));
		if (i == 4)
			attron(A_REVERSE);
		else if (i == 0)
			attron(A_BOLD);
		mvaddnstr(i, 0, line, cols);
		if (i == 4) {
			for (int x = (int)strlen(line); x < cols; x++)
				mvaddch(i, x, ' ');
			attroff(A_REVERSE);
		} else if (i == 0) {
			attroff(A_BOLD);
		}
	}
	int body = rows - TOP_HEADER_LINES - 1;
	for (int i = 0; i < body && top_row + (size_t)i < m->nr; i++) {
		top_row_line(&m->rows[top_row + (size_t)i], line, sizeof(line));
		mvaddnstr(TOP_HEADER_LINES + i, 0, line, cols);
	}
	if (rows > TOP_HEADER_LINES) {
		if (status[0])
			snprintf(line, sizeof(line), "%s", status);
		else if (m->nr)
			snprintf(line, sizeof(line), "VMs %zu-%zu of %zu", top_row + 1,
				 top_row + (size_t)(body > 0 ? body : 0) < m->nr ? top_row + (size_t)body : m->nr, m->nr);
		else
			snprintf(line, sizeof(line), "no VMs");
		mvaddnstr(rows - 1, 0, line, cols);
	}
	refresh();
}

static int interactive(const char *sock, struct top_model *m, double interval)
{
	int fd = -1;
	char status[256] = "";
	if (!poll_ferry(sock, &fd, m, status, sizeof(status))) {
		fprintf(stderr, "ferry top: %s\n", status);
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	if (!initscr()) {
		fprintf(stderr, "ferry top: cannot use the terminal (TERM=%s)\n", getenv("TERM") ? getenv("TERM") : "");
		return 1;
	}
	cbreak(); /* Ctrl-C stays a signal: it ends us through on_signal */
	noecho();
	keypad(stdscr, TRUE);
	curs_set(0);
	timeout(100);
	size_t top_row = 0;
	double next = now_s() + interval;
	draw(m, top_row, status);
	while (!quit_signal) {
		int ch = getch();
		int body = LINES - TOP_HEADER_LINES - 1;
		size_t page = body > 1 ? (size_t)body : 1, last = m->nr > page ? m->nr - page : 0;
		bool redraw = true;
		switch (ch) {
		case 'q':
		case 'Q':
			quit_signal = -1;
			continue;
		case 's':
			m->sort = (enum top_sort)((m->sort + 1) % TOP_SORT_MAX);
			top_sort_rows(m);
			break;
		case 'r':
			m->reverse = !m->reverse;
			top_sort_rows(m);
			break;
		case KEY_DOWN:
			top_row += top_row < last;
			break;
		case KEY_UP:
			top_row -= top_row > 0;
			break;
		case KEY_NPAGE:
			top_row = top_row + page < last ? top_row + page : last;
			break;
		case KEY_PPAGE:
			top_row = top_row > page ? top_row - page : 0;
			break;
		case KEY_HOME:
			top_row = 0;
			break;
		case KEY_END:
			top_row = last;
			break;
		case KEY_RESIZE:
			break;
		default:
			redraw = false;
			break;
		}
		if (now_s() >= next) {
			next = now_s() + interval;
			status[0] = '\0';
			poll_ferry(sock, &fd, m, status, sizeof(status));
			redraw = true;
		}
		if (top_row > (m->nr ? m->nr - 1 : 0))
			top_row = m->nr ? m->nr - 1 : 0;
		if (redraw)
			draw(m, top_row, status);
	}
	endwin();
	if (fd >= 0)
		close(fd);
	return 0;
}

int cmd_top(int argc, char **argv)
{
	const char *sock = getenv("FERRY_SOCKET");
	double interval = 1.0;
	uint64_t frames = 0;
	struct top_model m = { 0 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(top_help, stdout);
			return 0;
		} else if (!strcmp(a, "--socket") && has) {
			sock = argv[++i];
		} else if (!strcmp(a, "--interval") && has) {
			if (!parse_seconds(argv[++i], &interval) || interval < 0.1)
				return usage_error("top", "--interval: expected at least 0.1 seconds, got '%s'", argv[i]);
		} else if (!strcmp(a, "--batch") && has) {
			if (!parse_uint(argv[++i], 1, 1000000, &frames))
				return usage_error("top", "--batch: expected a number of refreshes, got '%s'", argv[i]);
		} else if (!strcmp(a, "--sort") && has) {
			const char *k = argv[++i];
			static const char *const keys[TOP_SORT_MAX] = { "name", "memory", "resident", "msgs", "frames", "exits" };
			int found = -1;
			for (int s = 0; s < TOP_SORT_MAX; s++)
				if (!strcmp(k, keys[s]))
					found = s;
			if (found < 0)
				return usage_error("top", "--sort: expected name, memory, resident, msgs, frames or exits, got '%s'", k);
			m.sort = (enum top_sort)found;
		} else {
			return usage_error("top", "unknown option '%s'", a);
		}
	}
	if (!sock || !sock[0])
		return usage_error("top", "--socket PATH is required (or FERRY_SOCKET)");
	int r = frames ? batch(sock, &m, (long)frames, interval) : interactive(sock, &m, interval);
	top_free(&m);
	return r;
}
