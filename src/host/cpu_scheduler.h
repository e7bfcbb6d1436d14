/* The host's CPU scheduler: keeps the vCPUs that may run at once within a
 * budget by asking VMs (through their cpu-reserve devices) to park vCPUs,
 * split by cpu_shares; checks that parked vCPU threads really stop using
 * CPU time; pins running vCPU threads to host CPUs of their own; and
 * releases parked vCPUs when VMs stop and room frees up. */
#ifndef FERRY_CPU_SCHEDULER_H
#define FERRY_CPU_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vmm;
struct cJSON;

#define CPUSCHED_TICK_MS 100

/* How many vCPUs each VM keeps running: at least 1, at most its vCPUs,
 * the rest of the budget by shares. Uncooperative VMs keep all theirs.
 * Pure, for testing. */
void cpusched_divide(const unsigned *vcpus, const uint64_t *shares, const bool *cooperative, unsigned n,
		     unsigned budget, unsigned *running);

struct cpu_scheduler;
/* A scheduler with no VMs yet (its timer is a new file descriptor: not
 * from a sandboxed thread). VMs join and leave while it runs, up to 64 at
 * once; add is -1 when full. */
struct cpu_scheduler *cpu_scheduler_create(struct vmm *vmm, unsigned budget);
int cpu_scheduler_add(struct cpu_scheduler *s, struct vm *vm);
void cpu_scheduler_remove(struct cpu_scheduler *s, struct vm *vm);
unsigned cpu_scheduler_budget(struct cpu_scheduler *s);
void cpu_scheduler_stop(struct cpu_scheduler *s);
struct cJSON *cpu_scheduler_report(struct cpu_scheduler *s);
void cpu_scheduler_destroy(struct cpu_scheduler *s);

#endif
