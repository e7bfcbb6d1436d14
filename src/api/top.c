#include "api/top.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sort_names[TOP_SORT_MAX] = {
	[TOP_BY_NAME] = "name", [TOP_BY_MEMORY] = "memory", [TOP_BY_RESIDENT] = "resident",
	[TOP_BY_MSGS] = "msg/s", [TOP_BY_FRAMES] = "frames/s", [TOP_BY_EXITS] = "exits/s",
};

const char *top_sort_name(enum top_sort s)
{
	return s < TOP_SORT_MAX ? sort_names[s] : "?";
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static const struct top_row *find(const struct top_row *rows, size_t n, const char *name, unsigned id)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].id == id && !strcmp(rows[i].name, name))
			return &rows[i];
	return NULL;
}

/* A counter's rate; a counter that went down (it cannot, unless the VM is
 * another one) counts as new. */
static double rate(double now, double before, double dt)
{
	return dt > 0 && now >= before ? (now - before) / dt : 0;
}

int top_update(struct top_model *m, const cJSON *status, double t)
{
	const cJSON *vms = cJSON_GetObjectItemCaseSensitive(status, "vms");
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(status, "ok")) || !cJSON_IsArray(vms))
		return -1;
	size_t n = (size_t)cJSON_GetArraySize(vms);
	struct top_row *rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows)
		return -1;
	double dt = m->t > 0 ? t - m->t : 0;
	m->msgs = m->remapped = m->frames = m->exits = 0;
	size_t i = 0;
	const cJSON *v;
	cJSON_ArrayForEach(v, vms) {
		struct top_row *r = &rows[i++];
		const cJSON *tot = cJSON_GetObjectItemCaseSensitive(v, "totals");
		const cJSON *mq = cJSON_GetObjectItemCaseSensitive(tot, "msgq");
		const cJSON *net = cJSON_GetObjectItemCaseSensitive(tot, "net");
		snprintf(r->name, sizeof(r->name), "%s", str(v, "name"));
		snprintf(r->state, sizeof(r->state), "%s", str(v, "state"));
		r->id = (unsigned)num(v, "id");
		r->vcpus = (unsigned)num(tot, "vcpus");
		r->parked = (unsigned)num(tot, "vcpus_parked");
		r->memory_mib = num(v, "memory_mib");
		r->target_mib = tot ? num(tot, "target_mib") : r->memory_mib;
		r->resident_mib = num(v, "resident_mib");
		r->c_msgs = num(mq, "sent") + num(mq, "received");
		r->c_remapped = num(mq, "pages_remapped");
		r->c_zero_copy = num(net, "frames_zero_copy");
		r->c_one_copy = num(net, "frames_one_copy");
		r->c_external = num(net, "frames_external");
		r->c_exits = num(tot, "exits");
		const struct top_row *p = find(m->rows, m->nr, r->name, r->id);
		if (p) {
			r->msgs = rate(r->c_msgs, p->c_msgs, dt);
			r->remapped = rate(r->c_remapped, p->c_remapped, dt);
			r->zero_copy = rate(r->c_zero_copy, p->c_zero_copy, dt);
			r->one_copy = rate(r->c_one_copy, p->c_one_copy, dt);
			r->external = rate(r->c_external, p->c_external, dt);
			r->exits = rate(r->c_exits, p->c_exits, dt);
		}
		m->msgs += r->msgs;
		m->remapped += r->remapped;
		m->frames += r->zero_copy + r->one_copy + r->external;
		m->exits += r->exits;
	}
	free(m->rows);
	m->rows = rows;
	m->nr = m->cap = n;
	m->t = t;
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(status, "host");
	m->budget_mib = num(h, "memory_budget_mib");
	m->vcpu_budget = (unsigned)num(h, "vcpu_budget");
	m->host_cpus = (unsigned)num(h, "host_cpus");
	m->vms = (unsigned)num(h, "vms");
	m->vms_running = (unsigned)num(h, "vms_running");
	m->memory_mib = num(h, "memory_mib");
	m->target_mib = num(h, "target_mib");
	m->resident_mib = num(h, "resident_mib");
	m->uptime_s = num(h, "uptime_s");
	m->vcpus = (unsigned)num(h, "vcpus");
	m->parked = (unsigned)num(h, "vcpus_parked");
	top_sort_rows(m);
	return 0;
}

static double key(const struct top_row *r, enum top_sort s)
{
	switch (s) {
	case TOP_BY_MEMORY:
		return r->memory_mib;
	case TOP_BY_RESIDENT:
		return r->resident_mib;
	case TOP_BY_MSGS:
		return r->msgs;
	case TOP_BY_FRAMES:
		return r->zero_copy + r->one_copy + r->external;
	case TOP_BY_EXITS:
		return r->exits;
	default:
		return 0;
	}
}

static enum top_sort sort_by;
static bool sort_reverse;

static int compare(const void *a, const void *b)
{
	const struct top_row *x = a, *y = b;
	int c = 0;
	if (sort_by != TOP_BY_NAME) {
		double kx = key(x, sort_by), ky = key(y, sort_by);
		c = kx > ky ? -1 : kx < ky ? 1 : 0; /* highest first */
	}
	if (!c)
		c = strcmp(x->name, y->name);
	return sort_reverse ? -c : c;
}

void top_sort_rows(struct top_model *m)
{
	sort_by = m->sort;
	sort_reverse = m->reverse;
	if (m->nr > 1)
		qsort(m->rows, m->nr, sizeof(*m->rows), compare);
}

void top_free(struct top_model *m)
{
	free(m->rows);
	m->rows = NULL;
	m->nr = m->cap = 0;
}

void top_header_line(const struct top_model *m, int line, char *buf, size_t len)
{
	char budget[32] = "none", vbudget[32] = "none";
	if (m->budget_mib > 0)
		snprintf(budget, sizeof(budget), "%.0f MiB", m->budget_mib);
	if (m->vcpu_budget)
		snprintf(vbudget, sizeof(vbudget), "%u", m->vcpu_budget);
	switch (line) {
	case 0:
		snprintf(buf, len, "ferry top: %u VMs, %u running, up %.0f s   sort: %s%s (s/r: sort, arrows: scroll, q: quit)",
			 m->vms, m->vms_running, m->uptime_s, top_sort_name(m->sort), m->reverse ? " reversed" : "");
		break;
	case 1:
		snprintf(buf, len, "memory: budget %s; configured %.0f MiB, target %.0f MiB, resident %.1f MiB", budget,
			 m->memory_mib, m->target_mib, m->resident_mib);
		break;
	case 2:
		snprintf(buf, len,
			 "vCPUs: %u online, %u parked; budget %s on %u host CPUs   per s: %.0f msgs, %.0f pages remapped, "
			 "%.0f frames, %.0f exits",
			 m->vcpus - (m->parked < m->vcpus ? m->parked : m->vcpus), m->parked, vbudget, m->host_cpus, m->msgs,
			 m->remapped, m->frames, m->exits);
		break;
	case 4:
		snprintf(buf, len, "%-16s %-12s %7s %7s %7s %8s %8s %8s %8s %8s %8s %9s", "NAME", "STATE", "ON/PARK", "MEM",
			 "TARGET", "RESIDENT", "MSG/s", "REMAP/s", "ZC/s", "1COPY/s", "EXT/s", "EXIT/s");
		break;
	default:
		if (len)
			buf[0] = '\0';
		break;
	}
}

void top_row_line(const struct top_row *r, char *buf, size_t len)
{
	char vcpus[16];
	unsigned parked = r->parked < r->vcpus ? r->parked : r->vcpus;
	snprintf(vcpus, sizeof(vcpus), "%u/%u", r->vcpus - parked, parked);
	snprintf(buf, len, "%-16.16s %-12.12s %7s %6.0fM %6.0fM %7.1fM %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f", r->name,
		 r->state, vcpus, r->memory_mib, r->target_mib, r->resident_mib, r->msgs, r->remapped, r->zero_copy,
		 r->one_copy, r->external, r->exits);
}
