/* What `ferry top` shows, computed from two `status` answers a moment
 * apart: per VM its state, vCPUs online and parked, memory configured,
 * target and resident, and rates (messages, pages remapped, frames by path,
 * exits per second); a header with the host's budgets and totals. Kept
 * apart from the screen (cli/top.c) so it can be tested without one. */
#ifndef FERRY_API_TOP_H
#define FERRY_API_TOP_H

#include <stdbool.h>
#include <stddef.h>

struct cJSON;

struct top_row {
	char name[32];
	char state[24];
	unsigned id;
	unsigned vcpus, parked;
	double memory_mib, target_mib, resident_mib;
	/* per second, since the previous answer (0 for a VM first seen now) */
	double msgs, remapped, zero_copy, one_copy, external, exits;
	/* the counters the rates come from */
	double c_msgs, c_remapped, c_zero_copy, c_one_copy, c_external, c_exits;
};

enum top_sort { TOP_BY_NAME, TOP_BY_MEMORY, TOP_BY_RESIDENT, TOP_BY_MSGS, TOP_BY_FRAMES, TOP_BY_EXITS,
		TOP_SORT_MAX };

struct top_model {
	struct top_row *rows;
	size_t nr, cap;
	double t;                     /* when the latest answer came (s) */
	/* the header */
	double budget_mib;            /* 0: none */
	unsigned vcpu_budget, host_cpus;
	unsigned vms, vms_running;
	double memory_mib, target_mib, resident_mib, uptime_s;
	unsigned vcpus, parked;
	double msgs, remapped, frames, exits;   /* totals per second */
	enum top_sort sort;
	bool reverse;
};

/* Takes a status answer received at time t (seconds, monotonic): rows for
 * its VMs, with rates against the previous answer (a VM is the same VM if
 * its name and id are). 0, or -1 if the answer is not a status answer. */
int top_update(struct top_model *m, const struct cJSON *status, double t);
/* Orders the rows by m->sort (numbers: highest first; m->reverse flips). */
void top_sort_rows(struct top_model *m);
const char *top_sort_name(enum top_sort s);
void top_free(struct top_model *m);

/* The screen as text lines, for a terminal of `width` columns: the header
 * (lines 0 .. TOP_HEADER_LINES - 1: host, memory, vCPUs and rates, a blank
 * line, the column titles), then one line per row. Each into buf (len). */
#define TOP_HEADER_LINES 5
void top_header_line(const struct top_model *m, int line, char *buf, size_t len);
void top_row_line(const struct top_row *r, char *buf, size_t len);

#endif
