#include "host/mem_scheduler.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_balloon.h"
#include "host/eventloop.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define HEADROOM_MIB 8.0           /* room to allocate before the next tick */
#define HEADROOM_FRACTION 0.10
#define DRIVER_GRACE_NS (3000ull * 1000000ull)
#define STALL_NS (5000ull * 1000000ull)  /* a balloon that does not move for this long ignores us */
#define SAMPLE_EVERY 2                    /* ticks between time-series samples */
#define FOLLOW_SLACK_MIB 32.0             /* resident may exceed the target by this much */
#define FOLLOW_GRACE_NS (5000ull * 1000000ull)
#define MAX_SAMPLES 4096

static double clamp(double x, double lo, double hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

/* Gives `amount` to VMs in proportion to shares, none beyond cap[i]
 * (weighted max-min fairness); returns what could not be placed. */
static double fill_by_shares(struct memsched_vm *v, unsigned n, const bool *eligible, double *give,
			     const double *cap, double amount)
{
	bool open[64];
	for (unsigned i = 0; i < n; i++)
		open[i] = eligible[i] && give[i] < cap[i];
	while (amount > 1e-6) {
		double shares = 0;
		for (unsigned i = 0; i < n; i++)
			if (open[i])
				shares += (double)v[i].shares;
		if (shares == 0)
			break;
		double used = 0;
		bool capped = false;
		for (unsigned i = 0; i < n; i++) {
			if (!open[i])
				continue;
			double part = amount * (double)v[i].shares / shares;
			if (give[i] + part >= cap[i]) {
				part = cap[i] - give[i];
				open[i] = false;
				capped = true;
			}
			give[i] += part;
			used += part;
		}
		amount -= used;
		if (!capped)
			break;
	}
	return amount;
}

void memsched_divide(struct memsched_vm *v, unsigned n, double budget)
{
	bool coop[64] = { false };
	double give[64] = { 0 }, need[64] = { 0 }, cap[64] = { 0 };
	if (n > 64)
		n = 64;
	double left = budget;
	for (unsigned i = 0; i < n; i++) {
		coop[i] = v[i].cooperative;
		if (!coop[i]) {
			/* We cannot take it back: it counts against the budget as is. */
			v[i].new_alloc_mib = fmax(v[i].resident_mib, v[i].alloc_mib);
			left -= v[i].new_alloc_mib;
			continue;
		}
		give[i] = (double)v[i].min_mib;
		left -= give[i];
		/* Active memory, a headroom, and the untaxed share of idle memory. */
		double used = v[i].have_stats ? v[i].used_mib : v[i].alloc_mib;
		double idle = fmax(0, v[i].alloc_mib - used);
		double want = used + fmax(HEADROOM_MIB, used * HEADROOM_FRACTION) + (1 - MEMSCHED_IDLE_TAX) * idle;
		need[i] = clamp(want, (double)v[i].min_mib, (double)v[i].max_mib);
		cap[i] = (double)v[i].max_mib;
	}
	if (left < 0)
		left = 0; /* mins above the budget were refused at start-up; only uncooperative VMs get here */
	left = fill_by_shares(v, n, coop, give, need, left);
	fill_by_shares(v, n, coop, give, cap, left);
	for (unsigned i = 0; i < n; i++)
		if (coop[i])
			v[i].new_alloc_mib = give[i];
}

struct sample {
	uint32_t t_ms;
	float target_mib[64], resident_mib[64];
};

struct mem_scheduler {
	struct vmm *vmm;
	/* One slot per VM name ever scheduled (up to 64 in a run); a removed
	 * VM's slot keeps its name and figures for the report, until a VM of
	 * that name joins again. */
	struct vm *vms[64];
	char names[64][32];
	bool gone[64];
	unsigned nr;
	double budget_mib;
	struct evl_handler *timer;
	pthread_mutex_t lock;
	uint64_t t0;
	unsigned ticks;
	struct memsched_vm state[64];
	const char *why_not[64];        /* why a VM is not cooperating, once known */
	/* Does the host's real usage follow the targets? */
	double max_excess_mib[64];      /* resident above target, at its worst */
	uint64_t over_since_ns[64];     /* resident above target + slack since */
	uint64_t lagging_ms[64];        /* time spent there beyond the grace period */
	bool lag_reported[64];
	double peak_resident_mib;
	struct sample *samples;
	unsigned nr_samples;
	uint64_t over_budget_ticks;
};

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

static void tick(void *arg, uint32_t events)
{
	struct mem_scheduler *s = arg;
	(void)events;
	pthread_mutex_lock(&s->lock);
	uint64_t now = clock_ns();
	double total_resident = 0;
	for (unsigned i = 0; i < s->nr; i++) {
		struct vm *vm = s->vms[i];
		struct memsched_vm *v = &s->state[i];
		struct balloon_status b;
		v->resident_mib = vm ? mib(gm_resident_bytes(&vm->mem)) : 0;
		total_resident += v->resident_mib;
		if (!vm || vm_is_stopped(vm)) {
			v->cooperative = false;
			v->alloc_mib = v->resident_mib = 0;
			continue;
		}
		bool has = balloon_get_status(vm, &b);
		const char *why = NULL;
		if (!has)
			why = "no balloon device";
		else if (!b.driver_ok && now - vm->t_create_ns > DRIVER_GRACE_NS)
			why = "no balloon driver";
		else if (b.driver_ok && b.target_pages > b.held_pages + 2048 && b.last_change_ns &&
			 now - b.last_change_ns > STALL_NS && now - b.last_change_ns < now - vm->t_create_ns)
			why = "ignores memory requests";
		else if (b.driver_ok && !b.last_change_ns && b.target_pages > 2048 && now - vm->t_create_ns > STALL_NS)
			why = "ignores memory requests";
		if (why && s->why_not[i] != why) {
			log_warn(vm->name, "memory scheduler: not cooperating (%s); scheduling the other VMs around it", why);
			s->why_not[i] = why;
		} else if (!why && s->why_not[i] && has && b.driver_ok) {
			log_info(vm->name, "memory scheduler: cooperating again");
			s->why_not[i] = NULL;
		}
		v->cooperative = has && b.driver_ok && !why;
		v->have_stats = has && b.have_stats && b.mem_total;
		v->used_mib = v->have_stats ? mib(b.mem_total - b.mem_free) : 0;
		v->alloc_mib = has ? (double)v->ram_mib - (double)b.target_pages * 4096 / (1 << 20) : v->ram_mib;
	}
	/* The host's view must follow what the guests say they did: a balloon
	 * at its target while the memfd still holds more is memory the
	 * scheduler counted on and did not get. */
	for (unsigned i = 0; i < s->nr; i++) {
		struct memsched_vm *v = &s->state[i];
		double excess = v->cooperative ? v->resident_mib - v->alloc_mib : 0;
		if (excess > s->max_excess_mib[i])
			s->max_excess_mib[i] = excess;
		if (excess <= FOLLOW_SLACK_MIB) {
			s->over_since_ns[i] = 0;
			continue;
		}
		if (!s->over_since_ns[i])
			s->over_since_ns[i] = now;
		if (now - s->over_since_ns[i] > FOLLOW_GRACE_NS) {
			s->lagging_ms[i] += MEMSCHED_TICK_MS;
			if (!s->lag_reported[i]) {
				log_warn(s->vms[i]->name, "memory scheduler: the host still holds %.0f MiB for a %.0f MiB target",
					 v->resident_mib, v->alloc_mib);
				s->lag_reported[i] = true;
			}
		}
	}
	if (total_resident > s->peak_resident_mib)
		s->peak_resident_mib = total_resident;
	if (total_resident > s->budget_mib)
		s->over_budget_ticks++;

	memsched_divide(s->state, s->nr, s->budget_mib);
	for (unsigned i = 0; i < s->nr; i++) {
		struct memsched_vm *v = &s->state[i];
		if (!v->cooperative)
			continue;
		/* Hysteresis: small changes are not worth a guest's attention. */
		if (fabs(v->new_alloc_mib - v->alloc_mib) < 2.0)
			continue;
		uint64_t balloon_pages = (uint64_t)((v->ram_mib - v->new_alloc_mib) * 256.0 + 0.5);
		balloon_set_target(s->vms[i], balloon_pages);
		v->alloc_mib = v->new_alloc_mib;
	}
	if (s->ticks++ % SAMPLE_EVERY == 0 && s->nr_samples < MAX_SAMPLES) {
		struct sample *smp = &s->samples[s->nr_samples++];
		smp->t_ms = (uint32_t)((now - s->t0) / 1000000);
		for (unsigned i = 0; i < s->nr && i < 64; i++) {
			smp->target_mib[i] = (float)s->state[i].alloc_mib;
			smp->resident_mib[i] = (float)s->state[i].resident_mib;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

struct mem_scheduler *mem_scheduler_create(struct vmm *vmm, uint64_t budget_mib)
{
	struct mem_scheduler *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->samples = calloc(MAX_SAMPLES, sizeof(*s->samples));
	if (!s->samples) {
		free(s);
		return NULL;
	}
	s->vmm = vmm;
	s->budget_mib = (double)budget_mib;
	s->t0 = clock_ns();
	pthread_mutex_init(&s->lock, NULL);
	s->timer = evl_add_timer(vmm->evl, MEMSCHED_TICK_MS * 1000000ull, tick, s);
	if (!s->timer) {
		mem_scheduler_destroy(s);
		return NULL;
	}
	return s;
}

/* Lock held. The slot of a VM called name that has left, or s->nr. */
static unsigned gone_slot(const struct mem_scheduler *s, const char *name)
{
	for (unsigned i = 0; i < s->nr; i++)
		if (s->gone[i] && !strcmp(s->names[i], name))
			return i;
	return s->nr;
}

int mem_scheduler_add(struct mem_scheduler *s, struct vm *vm)
{
	pthread_mutex_lock(&s->lock);
	/* A VM that left and comes back under its name (restarted after a
	 * failure, or removed and added again) takes its old slot: the report
	 * has one entry per name, and a VM that comes and goes does not use
	 * the slots up. */
	unsigned i = gone_slot(s, vm->name);
	if (i == s->nr && s->nr == 64) {
		pthread_mutex_unlock(&s->lock);
		return -1;
	}
	if (i == s->nr)
		s->nr++;
	s->gone[i] = false;
	s->why_not[i] = NULL;
	s->over_since_ns[i] = 0;
	s->lag_reported[i] = false;
	const struct vm_config *c = vm->cfg;
	struct memsched_vm *v = &s->state[i];
	memset(v, 0, sizeof(*v));
	v->ram_mib = c->memory_mib;
	v->min_mib = c->memory.min_mib;
	v->max_mib = c->memory.max_mib;
	v->shares = c->memory.shares;
	v->alloc_mib = (double)c->memory_mib;
	s->vms[i] = vm;
	snprintf(s->names[i], sizeof(s->names[i]), "%s", vm->name);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void mem_scheduler_remove(struct mem_scheduler *s, struct vm *vm)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nr; i++)
		if (s->vms[i] == vm) {
			s->vms[i] = NULL;
			s->gone[i] = true;
		}
	pthread_mutex_unlock(&s->lock);
}

bool mem_scheduler_full(struct mem_scheduler *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	bool full = s->nr == 64 && gone_slot(s, name) == s->nr;
	pthread_mutex_unlock(&s->lock);
	return full;
}

void mem_scheduler_set_budget(struct mem_scheduler *s, uint64_t budget_mib)
{
	pthread_mutex_lock(&s->lock);
	s->budget_mib = (double)budget_mib;
	pthread_mutex_unlock(&s->lock);
}

uint64_t mem_scheduler_budget(struct mem_scheduler *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t b = (uint64_t)s->budget_mib;
	pthread_mutex_unlock(&s->lock);
	return b;
}

void mem_scheduler_stop(struct mem_scheduler *s)
{
	if (s && s->timer) {
		evl_del(s->vmm->evl, s->timer);
		s->timer = NULL;
	}
}

cJSON *mem_scheduler_report(struct mem_scheduler *s)
{
	pthread_mutex_lock(&s->lock);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "budget_mib", s->budget_mib);
	cJSON_AddNumberToObject(o, "peak_resident_mib", s->peak_resident_mib);
	cJSON_AddNumberToObject(o, "ticks_over_budget", (double)s->over_budget_ticks);
	cJSON_AddNumberToObject(o, "idle_tax", MEMSCHED_IDLE_TAX);
	cJSON *vms = cJSON_AddObjectToObject(o, "vms");
	for (unsigned i = 0; i < s->nr; i++) {
		cJSON *v = cJSON_AddObjectToObject(vms, s->names[i]);
		if (s->gone[i])
			cJSON_AddBoolToObject(v, "removed", true);
		cJSON_AddBoolToObject(v, "cooperative", !s->why_not[i]);
		if (s->why_not[i])
			cJSON_AddStringToObject(v, "why_not", s->why_not[i]);
		cJSON_AddNumberToObject(v, "min_mib", (double)s->state[i].min_mib);
		cJSON_AddNumberToObject(v, "max_mib", (double)s->state[i].max_mib);
		cJSON_AddNumberToObject(v, "shares", (double)s->state[i].shares);
		cJSON_AddNumberToObject(v, "max_resident_over_target_mib", round(s->max_excess_mib[i] * 10) / 10);
		cJSON_AddNumberToObject(v, "host_lagged_target_ms", (double)s->lagging_ms[i]);
	}
	cJSON *series = cJSON_AddArrayToObject(o, "series");
	for (unsigned k = 0; k < s->nr_samples; k++) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddNumberToObject(p, "t_ms", s->samples[k].t_ms);
		cJSON *per = cJSON_AddObjectToObject(p, "vms");
		for (unsigned i = 0; i < s->nr; i++) {
			cJSON *v = cJSON_AddObjectToObject(per, s->names[i]);
			cJSON_AddNumberToObject(v, "target_mib", round(s->samples[k].target_mib[i] * 10) / 10);
			cJSON_AddNumberToObject(v, "resident_mib", round(s->samples[k].resident_mib[i] * 10) / 10);
		}
		cJSON_AddItemToArray(series, p);
	}
	pthread_mutex_unlock(&s->lock);
	return o;
}

void mem_scheduler_destroy(struct mem_scheduler *s)
{
	if (!s)
		return;
	mem_scheduler_stop(s);
	pthread_mutex_destroy(&s->lock);
	free(s->samples);
	free(s);
}
