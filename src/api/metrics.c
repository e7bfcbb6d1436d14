#include "api/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* Device counter families: one sample per VM that has the device, one per
 * label value where a family has a label (a path, a direction). */
enum stats_device { DEV_STATS_MSGQ, DEV_STATS_NET, DEV_STATS_IVSHMEM };

struct labelled {
	const char *value;
	size_t off; /* of a uint64_t in struct vm_stats */
};

struct device_family {
	const char *name, *help, *label;
	enum stats_device device;
	struct labelled v[3]; /* without a label: v[0] alone, value NULL */
};

#define U64(field) offsetof(struct vm_stats, field)

static const struct device_family device_families[] = {
	{ "ferry_msgq_messages_sent_total", "Messages the VM sent through its msgq device.", NULL, DEV_STATS_MSGQ,
	  { { NULL, U64(msgs_sent) } } },
	{ "ferry_msgq_messages_received_total", "Messages the VM received.", NULL, DEV_STATS_MSGQ,
	  { { NULL, U64(msgs_received) } } },
	{ "ferry_msgq_pages_remapped_total", "Pages of the VM's messages moved by remapping.", NULL, DEV_STATS_MSGQ,
	  { { NULL, U64(pages_remapped) } } },
	{ "ferry_msgq_bytes_copied_total", "Bytes of the VM's messages moved by copying.", NULL, DEV_STATS_MSGQ,
	  { { NULL, U64(msgq_bytes_copied) } } },
	{ "ferry_msgq_rejected_total", "Sends refused (policy, bad address, receiver full, ...).", NULL,
	  DEV_STATS_MSGQ, { { NULL, U64(msgq_rejected) } } },
	{ "ferry_net_frames_sent_total",
	  "Frames the VM sent, by path: zero_copy (a bound channel, nobody copies), one_copy (ferry copies "
	  "into another VM), external (out through the TAP).",
	  "path", DEV_STATS_NET,
	  { { "zero_copy", U64(frames_zero_copy) }, { "one_copy", U64(frames_one_copy) },
	    { "external", U64(frames_external) } } },
	{ "ferry_net_frames_received_total", "Frames delivered to the VM by the switch.", NULL, DEV_STATS_NET,
	  { { NULL, U64(frames_rx) } } },
	{ "ferry_net_bytes_copied_total", "Bytes of the VM's frames the host copied.", NULL, DEV_STATS_NET,
	  { { NULL, U64(net_bytes_copied) } } },
	{ "ferry_net_crosstalk_detected_total", "Times the VM's sends to a co-resident VM led to a zero-copy binding.",
	  NULL, DEV_STATS_NET, { { NULL, U64(crosstalk_detected) } } },
	{ "ferry_net_unbinds_total", "Zero-copy bindings of the VM that ended.", NULL, DEV_STATS_NET,
	  { { NULL, U64(unbinds) } } },
	{ "ferry_net_frames_dropped_total", "Frames to or from the VM that were dropped.", NULL, DEV_STATS_NET,
	  { { NULL, U64(frames_dropped) } } },
	{ "ferry_ivshmem_doorbells_total", "Doorbells on the VM's static link: sent, received, or rejected (refused sends).",
	  "direction", DEV_STATS_IVSHMEM,
	  { { "sent", U64(doorbells_sent) }, { "received", U64(doorbells_received) },
	    { "rejected", U64(doorbells_rejected) } } },
};

static bool has_device(const struct vm_stats *s, enum stats_device d)
{
	return d == DEV_STATS_MSGQ ? s->msgq : d == DEV_STATS_NET ? s->net : s->ivshmem;
}

static void device_family(struct buf *b, const struct device_family *f, const struct vm_stats *vms, unsigned n)
{
	family(b, f->name, "counter", f->help);
	for (unsigned i = 0; i < n; i++) {
		if (!has_device(&vms[i], f->device))
			continue;
		for (unsigned k = 0; k < 3 && (k == 0 || f->v[k].value); k++) {
			uint64_t v;
			memcpy(&v, (const char *)&vms[i] + f->v[k].off, sizeof(v));
			if (f->label)
				put(b, "%s{vm=\"%s\",%s=\"%s\"} %llu\n", f->name, vms[i].name, f->label, f->v[k].value,
				    (unsigned long long)v);
			else
				put(b, "%s{vm=\"%s\"} %llu\n", f->name, vms[i].name, (unsigned long long)v);
		}
	}
}

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

	for (size_t f = 0; f < sizeof(device_families) / sizeof(device_families[0]); f++)
		device_family(&b, &device_families[f], vms, n);
	free(vms);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p ? b.p : strdup("");
}
