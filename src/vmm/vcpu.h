/* A vCPU thread: runs KVM_RUN and dispatches exits to the VM's buses. */
#ifndef FERRY_VCPU_H
#define FERRY_VCPU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct vm;
struct kvm_run;

struct vcpu_counters {
	atomic_ulong exits;
	atomic_ulong io_exits;
	atomic_ulong mmio_exits;
};

struct vcpu {
	struct vm *vm;
	unsigned index;         /* also its APIC ID */
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	struct vcpu_counters ctr;
	clockid_t cpu_clock;    /* the thread's CPU-time clock, once it runs */
	atomic_bool clock_ready;
	uint64_t cpu_time_ns;   /* thread CPU time, sampled when it exits */
	/* Kept by the CPU scheduler while the guest has this vCPU parked. */
	atomic_ullong parked_ns, cpu_ns_while_parked;
	/* FERRY_PROFILE: guest RIPs sampled every millisecond (see vcpu.c). */
	uint64_t *samples;
	size_t nr_samples, max_samples;
	bool profiling;
	timer_t profile_timer;
};

struct vcpu *vcpu_create(struct vm *vm, unsigned index, char *err, size_t errlen);
/* The boot vCPU enters the kernel at entry in 32-bit protected mode, paging
 * off, with EBX pointing at the PVH start info. */
int vcpu_set_pvh_entry(struct vcpu *vcpu, uint32_t entry, uint32_t start_info, char *err, size_t errlen);
int vcpu_start(struct vcpu *vcpu);
/* Makes KVM_RUN return promptly (immediate_exit plus a signal). */
void vcpu_kick(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
/* CPU time the vCPU's thread has used so far (after it ends: in total). */
uint64_t vcpu_cpu_time_ns(struct vcpu *vcpu);
/* Pins the vCPU's thread to host CPU `cpu` (-1: any CPU ferry may use).
 * 0 or -1. Safe in sandboxed threads: it opens no file. */
int vcpu_pin(struct vcpu *vcpu, int cpu);
void vcpu_destroy(struct vcpu *vcpu);

/* Installs the no-op signal handler used to kick vCPU threads. */
void vcpu_signals_init(void);

#endif
