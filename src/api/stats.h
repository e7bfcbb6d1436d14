/* One VM's figures at a glance, as the control socket's status, `ferry
 * top` and the Prometheus metrics show them: state, vCPUs, memory, and the
 * counters that move (exits, messages, pages remapped, frames by path),
 * summed over the VM's vCPUs and devices. */
#ifndef FERRY_API_STATS_H
#define FERRY_API_STATS_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vmm;
struct cJSON;

struct vm_stats {
	char name[32];
	char state[24];              /* running, paused, or how it stopped */
	unsigned id;
	bool added;
	unsigned vcpus, vcpus_parked;
	double memory_mib;           /* configured */
	double target_mib;           /* what the balloon lets it use (configured without a balloon) */
	double resident_mib;         /* what the host holds for its RAM */
	bool balloon;
	uint64_t exits, io_exits, mmio_exits;
	double cpu_s;
	bool msgq;
	uint64_t msgs_sent, msgs_received, pages_remapped, msgq_bytes_copied, msgq_rejected;
	bool net;
	uint64_t frames_tx, frames_rx, frames_zero_copy, frames_one_copy, frames_external;
	uint64_t net_bytes_copied, crosstalk_detected, unbinds, frames_dropped;
	bool ivshmem;
	uint64_t doorbells_sent, doorbells_received, doorbells_rejected;
	uint64_t rejected;           /* guest requests refused, all devices */
};

/* Fills *s for a VM of the run (event loop, or the main thread). */
void vm_stats_collect(struct vm *vm, bool added, struct vm_stats *s);
/* {"state", "vcpus", "vcpus_parked", "memory_mib", "target_mib", ...} */
struct cJSON *vm_stats_json(const struct vm_stats *s);

/* The host's side: budgets and totals. */
struct host_stats {
	double memory_budget_mib;    /* 0: no memory scheduler */
	unsigned vcpu_budget;        /* 0: no CPU scheduler */
	unsigned host_cpus;
	unsigned vms, vms_running;
	unsigned long vms_added, vms_removed;
	unsigned long restarts;       /* VMs restarted after a failure ("restart": "on-failure") */
	double memory_mib, target_mib, resident_mib;
	unsigned vcpus, vcpus_parked;
	double uptime_s;
	uint64_t events;
};
void host_stats_collect(struct vmm *vmm, struct host_stats *h);
struct cJSON *host_stats_json(const struct host_stats *h);

#endif
