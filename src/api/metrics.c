#include "api/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/stats.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	for (;;) {
		if (b->failed)
			return;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 8192;
		while (cap <= b->len + (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One metric family with a sample per VM. */
#define PER_VM(b, vms, n, NAME, TYPE, HELP, FMT, EXPR)                    \
	do {                                                              \
		family(b, NAME, TYPE, HELP);                              \
		for (unsigned i_ = 0; i_ < (n); i_++) {                   \
			const struct vm_stats *s = &(vms)[i_];            \
			put(b, NAME "{vm=\"%s\"} " FMT "\n", s->name, EXPR); \
		}                                                         \
	} while (0)

char *metrics_text(struct vmm *vmm)
{
	struct buf b = { 0 };
	struct host_stats h;
	host_stats_collect(vmm, &h);
	unsigned n = 0;
	struct vm_stats *vms = calloc(vmm->nr_entries ? vmm->nr_entries : 1, sizeof(*vms));
	if (!vms)
		return NULL;
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!e->removed && !e->building && e->vm)
			vm_stats_collect(e->vm, e->added, &vms[n++]);
	}

	family(&b, "ferry_up", "gauge", "Whether ferry answers (always 1).");
	put(&b, "ferry_up 1\n");
	family(&b, "ferry_uptime_seconds", "gauge", "Seconds since the run started.");
	put(&b, "ferry_uptime_seconds %.3f\n", h.uptime_s);
	family(&b, "ferry_host_cpus", "gauge", "Host CPUs ferry may run on.");
	put(&b, "ferry_host_cpus %u\n", h.host_cpus);
	if (h.memory_budget_mib) {
		family(&b, "ferry_memory_budget_bytes", "gauge", "Host memory the memory scheduler divides among the VMs.");
		put(&b, "ferry_memory_budget_bytes %.0f\n", h.memory_budget_mib * 1048576.0);
	}
	if (h.vcpu_budget) {
		family(&b, "ferry_vcpu_budget", "gauge", "vCPUs that may run at once (the CPU scheduler's budget).");
		put(&b, "ferry_vcpu_budget %u\n", h.vcpu_budget);
	}
	family(&b, "ferry_vms", "gauge", "VMs in the run, by whether they run.");
	put(&b, "ferry_vms{state=\"running\"} %u\nferry_vms{state=\"stopped\"} %u\n", h.vms_running,
	    h.vms - h.vms_running);
	family(&b, "ferry_vms_added_total", "counter", "VMs added while ferry ran.");
	put(&b, "ferry_vms_added_total %lu\n", h.vms_added);
	family(&b, "ferry_vms_removed_total", "counter", "VMs removed while ferry ran.");
	put(&b, "ferry_vms_removed_total %lu\n", h.vms_removed);
	family(&b, "ferry_vm_restarts_total", "counter", "VMs restarted after a failure (\"restart\": \"on-failure\").");
	put(&b, "ferry_vm_restarts_total %lu\n", h.restarts);
	family(&b, "ferry_events_total", "counter", "Events emitted (see the control socket's events).");
	put(&b, "ferry_events_total %llu\n", (unsigned long long)h.events);

	PER_VM(&b, vms, n, "ferry_vm_running", "gauge", "1 if the VM runs (paused counts), 0 once it stopped.", "%d",
	       strcmp(s->state, "running") && strcmp(s->state, "paused") ? 0 : 1);
	PER_VM(&b, vms, n, "ferry_vm_paused", "gauge", "1 if the VM is paused through the control socket.", "%d",
	       !strcmp(s->state, "paused"));
	PER_VM(&b, vms, n, "ferry_vm_vcpus", "gauge", "vCPUs the VM has.", "%u", s->vcpus);
	PER_VM(&b, vms, n, "ferry_vm_vcpus_parked", "gauge", "vCPUs the guest has parked (cpu-reserve).", "%u",
	       s->vcpus_parked);
	PER_VM(&b, vms, n, "ferry_vm_memory_bytes", "gauge", "Guest RAM as configured.", "%.0f",
	       s->memory_mib * 1048576.0);
	PER_VM(&b, vms, n, "ferry_vm_memory_target_bytes", "gauge",
	       "Guest RAM the balloon lets the guest use (configured, without a balloon).", "%.0f",
	       s->target_mib * 1048576.0);
	PER_VM(&b, vms, n, "ferry_vm_memory_resident_bytes", "gauge", "Guest RAM the host holds now.", "%.0f",
	       s->resident_mib * 1048576.0);
	PER_VM(&b, vms, n, "ferry_vm_exits_total", "counter", "Exits of the VM's vCPUs to ferry.", "%llu",
	       (unsigned long long)s->exits);
	PER_VM(&b, vms, n, "ferry_vm_io_exits_total", "counter", "Port I/O exits.", "%llu",
	       (unsigned long long)s->io_exits);
	PER_VM(&b, vms, n, "ferry_vm_mmio_exits_total", "counter", "MMIO exits.", "%llu",
	       (unsigned long long)s->mmio_exits);
	PER_VM(&b, vms, n, "ferry_vm_cpu_seconds_total", "counter", "CPU time of the VM's vCPU threads.", "%.3f",
	       s->cpu_s);
	PER_VM(&b, vms, n, "ferry_vm_rejected_requests_total", "counter",
	       "Guest requests its devices refused (bad addresses, lengths, indices).", "%llu",
	       (unsigned long long)s->rejected);

	family(&b, "ferry_msgq_messages_sent_total", "counter", "Messages the VM sent through its msgq device.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].msgq)
			put(&b, "ferry_msgq_messages_sent_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].msgs_sent);
	family(&b, "ferry_msgq_messages_received_total", "counter", "Messages the VM received.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].msgq)
			put(&b, "ferry_msgq_messages_received_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].msgs_received);
	family(&b, "ferry_msgq_pages_remapped_total", "counter", "Pages of the VM's messages moved by remapping.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].msgq)
			put(&b, "ferry_msgq_pages_remapped_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].pages_remapped);
	family(&b, "ferry_msgq_bytes_copied_total", "counter", "Bytes of the VM's messages moved by copying.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].msgq)
			put(&b, "ferry_msgq_bytes_copied_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].msgq_bytes_copied);
	family(&b, "ferry_msgq_rejected_total", "counter", "Sends refused (policy, bad address, receiver full, ...).");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].msgq)
			put(&b, "ferry_msgq_rejected_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].msgq_rejected);

	family(&b, "ferry_net_frames_sent_total", "counter",
	       "Frames the VM sent, by path: zero_copy (a bound channel, nobody copies), one_copy (ferry copies "
	       "into another VM), external (out through the TAP).");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b,
			    "ferry_net_frames_sent_total{vm=\"%s\",path=\"zero_copy\"} %llu\n"
			    "ferry_net_frames_sent_total{vm=\"%s\",path=\"one_copy\"} %llu\n"
			    "ferry_net_frames_sent_total{vm=\"%s\",path=\"external\"} %llu\n",
			    vms[i].name, (unsigned long long)vms[i].frames_zero_copy, vms[i].name,
			    (unsigned long long)vms[i].frames_one_copy, vms[i].name,
			    (unsigned long long)vms[i].frames_external);
	family(&b, "ferry_net_frames_received_total", "counter", "Frames delivered to the VM by the switch.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b, "ferry_net_frames_received_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].frames_rx);
	family(&b, "ferry_net_bytes_copied_total", "counter", "Bytes of the VM's frames the host copied.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b, "ferry_net_bytes_copied_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].net_bytes_copied);
	family(&b, "ferry_net_crosstalk_detected_total", "counter",
	       "Times the VM's sends to a co-resident VM led to a zero-copy binding.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b, "ferry_net_crosstalk_detected_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].crosstalk_detected);
	family(&b, "ferry_net_unbinds_total", "counter", "Zero-copy bindings of the VM that ended.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b, "ferry_net_unbinds_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].unbinds);
	family(&b, "ferry_net_frames_dropped_total", "counter", "Frames to or from the VM that were dropped.");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].net)
			put(&b, "ferry_net_frames_dropped_total{vm=\"%s\"} %llu\n", vms[i].name,
			    (unsigned long long)vms[i].frames_dropped);

	family(&b, "ferry_ivshmem_doorbells_total", "counter",
	       "Doorbells on the VM's static link: sent, received, or rejected (refused sends).");
	for (unsigned i = 0; i < n; i++)
		if (vms[i].ivshmem)
			put(&b,
			    "ferry_ivshmem_doorbells_total{vm=\"%s\",direction=\"sent\"} %llu\n"
			    "ferry_ivshmem_doorbells_total{vm=\"%s\",direction=\"received\"} %llu\n"
			    "ferry_ivshmem_doorbells_total{vm=\"%s\",direction=\"rejected\"} %llu\n",
			    vms[i].name, (unsigned long long)vms[i].doorbells_sent, vms[i].name,
			    (unsigned long long)vms[i].doorbells_received, vms[i].name,
			    (unsigned long long)vms[i].doorbells_rejected);
	free(vms);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p ? b.p : strdup("");
}
