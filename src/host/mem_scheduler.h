/* The host's memory scheduler: divides a memory budget among VMs and sends
 * each VM, through its balloon, a memory quantity request. It sees guests
 * only through their balloon drivers (statistics in, targets out) and the
 * host's own accounting of their memfds; the guest OS is unaware of it. */
#ifndef FERRY_MEM_SCHEDULER_H
#define FERRY_MEM_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vmm;
struct cJSON;

#define MEMSCHED_TICK_MS 100
#define MEMSCHED_IDLE_TAX 0.75   /* share of idle memory reclaimable before active memory */

/* What the scheduler decides for one VM, from what it observes. Pure, so the
 * policy can be tested without VMs. */
struct memsched_vm {
	/* inputs */
	uint64_t ram_mib, min_mib, max_mib, shares;
	bool cooperative;          /* has a working balloon driver */
	bool have_stats;
	double used_mib;           /* guest's own view: total - free */
	double resident_mib;       /* host pages its memfd holds */
	double alloc_mib;          /* what it is allowed now */
	/* output */
	double new_alloc_mib;
};

/* Divides budget_mib: uncooperative VMs keep what they hold; the others get
 * at least min, their active memory (plus a headroom and the untaxed part of
 * their idle memory) next, split by shares when it does not all fit, and any
 * surplus by shares up to max. */
void memsched_divide(struct memsched_vm *v, unsigned n, double budget_mib);

struct mem_scheduler;
/* A scheduler with no VMs yet; its timer runs on the event loop (make it
 * outside the sandboxed threads: a timer is a new file descriptor). */
struct mem_scheduler *mem_scheduler_create(struct vmm *vmm, uint64_t budget_mib);
/* VMs join and leave while it runs. Up to 64 VM names in a run (a slot per
 * name, kept for the report after its VM leaves, and taken again by a VM of
 * that name: a restart, or a remove and add); -1 when full. */
int mem_scheduler_add(struct mem_scheduler *s, struct vm *vm);
void mem_scheduler_remove(struct mem_scheduler *s, struct vm *vm);
/* Whether a VM called name would find no slot. */
bool mem_scheduler_full(struct mem_scheduler *s, const char *name);
/* The budget it divides from the next tick on. */
void mem_scheduler_set_budget(struct mem_scheduler *s, uint64_t budget_mib);
uint64_t mem_scheduler_budget(struct mem_scheduler *s);
/* Stops the timer; the report stays readable. */
void mem_scheduler_stop(struct mem_scheduler *s);
/* {"budget_mib", "peak_resident_mib", "vms": {...}, "series": [...]} */
struct cJSON *mem_scheduler_report(struct mem_scheduler *s);
void mem_scheduler_destroy(struct mem_scheduler *s);

#endif
