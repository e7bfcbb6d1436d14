#include "api/stats.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "api/summary.h"
#include "devices/cpu_reserve.h"
#include "devices/virtio_balloon.h"
#include "host/mem_scheduler.h"
#include "host/cpu_scheduler.h"
#include "vmm/clock.h"
#include "vmm/events.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

static uint64_t num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

void vm_stats_collect(struct vm *vm, bool added, struct vm_stats *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", vm->name);
	s->id = vm->id;
	s->added = added;
	bool stopped = vm_is_stopped(vm);
	snprintf(s->state, sizeof(s->state), "%s",
		 stopped ? vm_exit_reason_name(vm->exit_reason) : vm->user_paused ? "paused" : "running");
	s->vcpus = vm->nr_vcpus;
	s->memory_mib = (double)vm->cfg->memory_mib;
	s->target_mib = s->memory_mib;
	s->resident_mib = (double)gm_resident_bytes(&vm->mem) / (1 << 20);
	struct balloon_status b;
	if (balloon_get_status(vm, &b)) {
		s->balloon = true;
		s->target_mib = s->memory_mib - (double)b.target_pages / 256;
	}
	struct cpu_reserve_status r;
	if (!stopped && cpu_reserve_get_status(vm, &r) && r.driver_ok)
		s->vcpus_parked = r.parked;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		s->exits += atomic_load(&v->ctr.exits);
		s->io_exits += atomic_load(&v->ctr.io_exits);
		s->mmio_exits += atomic_load(&v->ctr.mmio_exits);
		s->cpu_s += (double)vcpu_cpu_time_ns(v) / 1e9;
	}
	/* Device counters as the summary has them: each device says what it
	 * counts, under its name. */
	cJSON *sum = summary_vm(vm, vm->cfg, NULL);
	const cJSON *counters = cJSON_GetObjectItemCaseSensitive(sum, "counters"), *d;
	cJSON_ArrayForEach(d, counters) {
		if (!cJSON_IsObject(d))
			continue;
		s->rejected += num(d, "rejected");
		if (!strcmp(d->string, "msgq")) {
			s->msgq = true;
			s->msgs_sent += num(d, "sent");
			s->msgs_received += num(d, "received");
			s->pages_remapped += num(d, "pages_remapped");
			s->msgq_bytes_copied += num(d, "bytes_copied");
			s->msgq_rejected += num(d, "rejected");
		} else if (!strncmp(d->string, "net", 3) && cJSON_GetObjectItemCaseSensitive(d, "frames_tx")) {
			s->net = true;
			s->frames_tx += num(d, "frames_tx");
			s->frames_rx += num(d, "frames_rx");
			s->frames_zero_copy += num(d, "frames_zero_copy");
			s->frames_one_copy += num(d, "frames_one_copy");
			s->frames_external += num(d, "frames_external");
			s->net_bytes_copied += num(d, "bytes_copied_by_host");
			s->crosstalk_detected += num(d, "crosstalk_detected");
			s->unbinds += num(d, "unbinds");
			s->frames_dropped += num(cJSON_GetObjectItemCaseSensitive(d, "dropped"), "total");
		} else if (!strcmp(d->string, "ivshmem")) {
			s->ivshmem = true;
			s->doorbells_sent += num(d, "doorbells_sent");
			s->doorbells_received += num(d, "doorbells_received");
			s->doorbells_rejected += num(d, "doorbells_rejected");
		}
	}
	cJSON_Delete(sum);
}

cJSON *vm_stats_json(const struct vm_stats *s)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "vcpus", s->vcpus);
	cJSON_AddNumberToObject(o, "vcpus_parked", s->vcpus_parked);
	cJSON_AddNumberToObject(o, "memory_mib", s->memory_mib);
	cJSON_AddNumberToObject(o, "target_mib", s->target_mib);
	cJSON_AddNumberToObject(o, "resident_mib", s->resident_mib);
	cJSON_AddNumberToObject(o, "exits", (double)s->exits);
	cJSON_AddNumberToObject(o, "io_exits", (double)s->io_exits);
	cJSON_AddNumberToObject(o, "mmio_exits", (double)s->mmio_exits);
	cJSON_AddNumberToObject(o, "cpu_s", s->cpu_s);
	cJSON_AddNumberToObject(o, "rejected", (double)s->rejected);
	if (s->msgq) {
		cJSON *m = cJSON_AddObjectToObject(o, "msgq");
		cJSON_AddNumberToObject(m, "sent", (double)s->msgs_sent);
		cJSON_AddNumberToObject(m, "received", (double)s->msgs_received);
		cJSON_AddNumberToObject(m, "pages_remapped", (double)s->pages_remapped);
		cJSON_AddNumberToObject(m, "bytes_copied", (double)s->msgq_bytes_copied);
		cJSON_AddNumberToObject(m, "rejected", (double)s->msgq_rejected);
	}
	if (s->net) {
		cJSON *n = cJSON_AddObjectToObject(o, "net");
		cJSON_AddNumberToObject(n, "frames_tx", (double)s->frames_tx);
		cJSON_AddNumberToObject(n, "frames_rx", (double)s->frames_rx);
		cJSON_AddNumberToObject(n, "frames_zero_copy", (double)s->frames_zero_copy);
		cJSON_AddNumberToObject(n, "frames_one_copy", (double)s->frames_one_copy);
		cJSON_AddNumberToObject(n, "frames_external", (double)s->frames_external);
		cJSON_AddNumberToObject(n, "bytes_copied_by_host", (double)s->net_bytes_copied);
		cJSON_AddNumberToObject(n, "crosstalk_detected", (double)s->crosstalk_detected);
		cJSON_AddNumberToObject(n, "unbinds", (double)s->unbinds);
		cJSON_AddNumberToObject(n, "dropped", (double)s->frames_dropped);
	}
	if (s->ivshmem) {
		cJSON *l = cJSON_AddObjectToObject(o, "ivshmem");
		cJSON_AddNumberToObject(l, "doorbells_sent", (double)s->doorbells_sent);
		cJSON_AddNumberToObject(l, "doorbells_received", (double)s->doorbells_received);
		cJSON_AddNumberToObject(l, "doorbells_rejected", (double)s->doorbells_rejected);
	}
	return o;
}

void host_stats_collect(struct vmm *vmm, struct host_stats *h)
{
	memset(h, 0, sizeof(*h));
	h->memory_budget_mib = vmm->memsched ? (double)mem_scheduler_budget(vmm->memsched) : 0;
	h->vcpu_budget = vmm->cpusched ? cpu_scheduler_budget(vmm->cpusched) : 0;
	h->host_cpus = vmm->nr_host_cpus;
	h->vms_added = vmm->vms_added;
	h->vms_removed = vmm->vms_removed;
	h->restarts = vmm->restarts;
	h->uptime_s = vmm->t_start_ns ? (double)(clock_ns() - vmm->t_start_ns) / 1e9 : 0;
	h->events = events_total();
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (e->removed || e->building || !e->vm)
			continue;
		struct vm *vm = e->vm;
		h->vms++;
		h->memory_mib += (double)vm->cfg->memory_mib;
		h->resident_mib += (double)gm_resident_bytes(&vm->mem) / (1 << 20);
		struct balloon_status b;
		h->target_mib += (double)vm->cfg->memory_mib -
				 (balloon_get_status(vm, &b) ? (double)b.target_pages / 256 : 0);
		if (vm_is_stopped(vm))
			continue;
		h->vms_running++;
		h->vcpus += vm->nr_vcpus;
		struct cpu_reserve_status r;
		if (cpu_reserve_get_status(vm, &r) && r.driver_ok)
			h->vcpus_parked += r.parked;
	}
}

cJSON *host_stats_json(const struct host_stats *h)
{
	cJSON *o = cJSON_CreateObject();
	if (h->memory_budget_mib)
		cJSON_AddNumberToObject(o, "memory_budget_mib", h->memory_budget_mib);
	else
		cJSON_AddNullToObject(o, "memory_budget_mib");
	if (h->vcpu_budget)
		cJSON_AddNumberToObject(o, "vcpu_budget", h->vcpu_budget);
	else
		cJSON_AddNullToObject(o, "vcpu_budget");
	cJSON_AddNumberToObject(o, "host_cpus", h->host_cpus);
	cJSON_AddNumberToObject(o, "vms", h->vms);
	cJSON_AddNumberToObject(o, "vms_running", h->vms_running);
	cJSON_AddNumberToObject(o, "vms_added", (double)h->vms_added);
	cJSON_AddNumberToObject(o, "vms_removed", (double)h->vms_removed);
	cJSON_AddNumberToObject(o, "restarts", (double)h->restarts);
	cJSON_AddNumberToObject(o, "memory_mib", h->memory_mib);
	cJSON_AddNumberToObject(o, "target_mib", h->target_mib);
	cJSON_AddNumberToObject(o, "resident_mib", h->resident_mib);
	cJSON_AddNumberToObject(o, "vcpus", h->vcpus);
	cJSON_AddNumberToObject(o, "vcpus_parked", h->vcpus_parked);
	cJSON_AddNumberToObject(o, "uptime_s", h->uptime_s);
	cJSON_AddNumberToObject(o, "events", (double)h->events);
	return o;
}
