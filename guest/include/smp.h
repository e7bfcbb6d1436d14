/* CPUs: per-CPU data, AP start-up, running work on a given CPU, parking. */
#ifndef GUEST_SMP_H
#define GUEST_SMP_H

#include <stdbool.h>
#include <stdint.h>
#include "interrupt.h"
#include "spinlock.h"

#define MAX_CPUS 64

struct timer;

struct cpu {
	struct cpu *self;            /* offset 0: this_cpu() reads %gs:0 */
	unsigned index;              /* 0 is the BSP */
	uint32_t apic_id;
	volatile bool online;
	volatile bool parked;        /* halts with interrupts on, takes no work */

	/* smp_call() mailbox: one call at a time, guarded by call_lock. */
	struct spinlock call_lock;
	void (*volatile call_fn)(void *);
	void *call_arg;
	volatile bool call_done;
	uint32_t caller_apic_id;

	struct timer *timers;        /* pending timers, by deadline (timer.c) */
	struct fault_record fault;   /* last expected exception (interrupt.c) */
	unsigned exception_depth;
	void *stack;                 /* AP stack base, from the page allocator */
};

static inline struct cpu *this_cpu(void)
{
	struct cpu *c;

	asm volatile("mov %%gs:0, %0" : "=r"(c));
	return c;
}

/* Sets up CPU 0 (this one) as the BSP; called first thing in kernel_main. */
void smp_init_bsp(void);
/* Starts every enabled AP that the MADT lists; returns how many came up. */
unsigned smp_start_aps(void);

unsigned smp_cpu_count(void);            /* online CPUs, indices 0..count-1 */
struct cpu *smp_cpu(unsigned index);

/* Runs fn(arg) on CPU index and waits for it to return (directly if index is
 * this CPU). Returns 0, or -1 if the CPU is offline or parked. */
int smp_call(unsigned index, void (*fn)(void *), void *arg);

/* A parked CPU halts with interrupts enabled and runs nothing; smp_call() to it
 * fails until it is unparked. The BSP cannot be parked. Return 0 or -1. */
int smp_park(unsigned index);
int smp_unpark(unsigned index);

#endif
