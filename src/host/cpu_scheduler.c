#include "host/cpu_scheduler.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/cpu_reserve.h"
#include "host/eventloop.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define MAX_VMS 64
#define PARKED_CPU_LIMIT 0.10   /* a parked vCPU may use this share of a tick (the wake-ups) */

void cpusched_divide(const unsigned *vcpus, const uint64_t *shares, const bool *cooperative, unsigned n,
		     unsigned budget, unsigned *running)
{
	unsigned left = budget;
	for (unsigned i = 0; i < n; i++) {
		running[i] = cooperative[i] ? (vcpus[i] ? 1 : 0) : vcpus[i];
		left = left > running[i] ? left - running[i] : 0;
	}
	/* One vCPU at a time to the VM with the most shares per running vCPU. */
	while (left) {
		int best = -1;
		double best_ratio = 0;
		for (unsigned i = 0; i < n; i++) {
			if (!cooperative[i] || running[i] >= vcpus[i])
				continue;
			double ratio = (double)shares[i] / (double)(running[i] + 1);
			if (best < 0 || ratio > best_ratio) {
				best = (int)i;
				best_ratio = ratio;
			}
		}
		if (best < 0)
			break;
		running[best]++;
		left--;
	}
}

struct cpu_scheduler {
	struct vmm *vmm;
	struct vm *vms[MAX_VMS];      /* slots; NULL: free (a removed VM's slot is reused) */
	unsigned nr, budget;          /* nr: slots ever used */
	unsigned host_cpus;
	struct evl_handler *timer;
	pthread_mutex_t lock;
	uint64_t last_tick_ns;
	uint64_t last_cpu_ns[MAX_VMS][64];
	uint64_t violations;
	int pinned[MAX_VMS][64];      /* host CPU each vCPU thread is pinned to, -1: none */
	uint64_t pin_changes;
	struct log_limit log;
};

static void tick(void *arg, uint32_t events)
{
	struct cpu_scheduler *s = arg;
	(void)events;
	pthread_mutex_lock(&s->lock);
	uint64_t now = clock_ns(), dt = s->last_tick_ns ? now - s->last_tick_ns : 0;
	s->last_tick_ns = now;

	unsigned vcpus[MAX_VMS], running[MAX_VMS];
	uint64_t shares[MAX_VMS];
	bool coop[MAX_VMS];
	struct cpu_reserve_status st[MAX_VMS];
	for (unsigned i = 0; i < s->nr; i++) {
		struct vm *vm = s->vms[i];
		bool alive = vm && !vm_is_stopped(vm);
		vcpus[i] = alive ? vm->nr_vcpus : 0;
		shares[i] = vm ? vm->cfg->cpu_shares : 1;
		memset(&st[i], 0, sizeof(st[i]));
		coop[i] = alive && cpu_reserve_get_status(vm, &st[i]) && st[i].driver_ok;
	}
	cpusched_divide(vcpus, shares, coop, s->nr, s->budget, running);

	unsigned active = 0;
	for (unsigned i = 0; i < s->nr; i++) {
		struct vm *vm = s->vms[i];
		if (!vcpus[i])
			continue;
		if (coop[i])
			cpu_reserve_request(vm, vcpus[i] - running[i]);
		/* What the guest says it parked, once it has carried the request out. */
		uint64_t parked = coop[i] && st[i].acked ? st[i].parked_mask : 0;
		for (unsigned k = 0; k < vm->nr_vcpus && k < 64; k++) {
			struct vcpu *v = vm->vcpus[k];
			uint64_t cpu = vcpu_cpu_time_ns(v), used = s->last_cpu_ns[i][k] ? cpu - s->last_cpu_ns[i][k] : 0;
			s->last_cpu_ns[i][k] = cpu;
			if (!(parked & (1ull << k))) {
				active++;
				continue;
			}
			atomic_fetch_add(&v->parked_ns, dt);
			atomic_fetch_add(&v->cpu_ns_while_parked, used);
			if (dt && (double)used > PARKED_CPU_LIMIT * (double)dt) {
				s->violations++;
				if (log_limit_ok(&s->log))
					log_warn(vm->name, "vCPU %u is parked but used %.1f ms of CPU in %.1f ms", k,
						 ns_to_ms(used), ns_to_ms(dt));
			}
		}
	}

	/* Running vCPUs get host CPUs of their own when there are enough;
	 * parked ones may float (they do not run). */
	int next = 0;
	for (unsigned i = 0; i < s->nr; i++) {
		struct vm *vm = s->vms[i];
		uint64_t parked = vcpus[i] && coop[i] && st[i].acked ? st[i].parked_mask : 0;
		for (unsigned k = 0; vcpus[i] && k < vm->nr_vcpus && k < 64; k++) {
			int want = (parked & (1ull << k)) || active > s->host_cpus ? -1 : vmm_host_cpu(s->vmm, next++);
			if (s->pinned[i][k] != want && vcpu_pin(vm->vcpus[k], want) == 0) {
				s->pinned[i][k] = want;
				s->pin_changes++;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
}

struct cpu_scheduler *cpu_scheduler_create(struct vmm *vmm, unsigned budget)
{
	struct cpu_scheduler *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->vmm = vmm;
	s->budget = budget;
	s->host_cpus = vmm->nr_host_cpus;
	pthread_mutex_init(&s->lock, NULL);
	for (unsigned i = 0; i < MAX_VMS; i++)
		for (unsigned k = 0; k < 64; k++)
			s->pinned[i][k] = -1;
	s->timer = evl_add_timer(vmm->evl, CPUSCHED_TICK_MS * 1000000ull, tick, s);
	if (!s->timer) {
		cpu_scheduler_destroy(s);
		return NULL;
	}
	return s;
}

int cpu_scheduler_add(struct cpu_scheduler *s, struct vm *vm)
{
	pthread_mutex_lock(&s->lock);
	unsigned i = 0;
	while (i < s->nr && s->vms[i])
		i++;
	if (i == MAX_VMS) {
		pthread_mutex_unlock(&s->lock);
		return -1;
	}
	s->vms[i] = vm;
	for (unsigned k = 0; k < 64; k++) {
		s->pinned[i][k] = -1;
		s->last_cpu_ns[i][k] = 0;
	}
	if (i == s->nr)
		s->nr++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void cpu_scheduler_remove(struct cpu_scheduler *s, struct vm *vm)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nr; i++)
		if (s->vms[i] == vm)
			s->vms[i] = NULL;
	pthread_mutex_unlock(&s->lock);
}

unsigned cpu_scheduler_budget(struct cpu_scheduler *s)
{
	return s->budget;
}

void cpu_scheduler_stop(struct cpu_scheduler *s)
{
	if (s && s->timer) {
		evl_del(s->vmm->evl, s->timer);
		s->timer = NULL;
	}
}

cJSON *cpu_scheduler_report(struct cpu_scheduler *s)
{
	pthread_mutex_lock(&s->lock);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "vcpu_budget", s->budget);
	cJSON_AddNumberToObject(o, "host_cpus", (double)s->host_cpus);
	cJSON_AddNumberToObject(o, "parked_vcpus_that_ran", (double)s->violations);
	cJSON_AddNumberToObject(o, "affinity_changes", (double)s->pin_changes);
	pthread_mutex_unlock(&s->lock);
	return o;
}

void cpu_scheduler_destroy(struct cpu_scheduler *s)
{
	if (!s)
		return;
	cpu_scheduler_stop(s);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
