/* CPUs: per-CPU data, AP start-up, running work on a given CPU, parking. */
#ifndef GUEST_SMP_H
#define GUEST_SMP_H

#include <stdbool.h>
#include <stdint.h>
#include "interrupt.h"
#include "spinlock.h"

#define MAX_CPUS 64

struct timer;

/* 64-bit task-state segment: only the ring-0 stack pointer is used. */
struct tss {
	uint32_t reserved0;
	uint64_t rsp0;               /* stack for interrupts taken in ring 3 */
	uint64_t rsp1, rsp2, reserved1, ist[7], reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;         /* past the limit: no I/O bitmap, IOPL decides */
} __attribute__((packed));

#define GDT_ENTRIES 10               /* the boot GDT's 7, a spare, the TSS (2) */

struct cpu {
	struct cpu *self;            /* offset 0: this_cpu() reads %gs:0 */
	/* Offsets 8-28 are used by kernel/native_entry.S and x86.h. */
	uint64_t native_kernel_rsp;  /* saved by native_enter() */
	uint64_t native_demotions;   /* ring 3 -> 0 on a privileged instruction */
	volatile uint8_t native_depth;  /* in a native_call(): 0 or 1 */
	bool native_irqs;            /* interrupts enabled in that native code */
	/* Offsets 26 and 27 are used by spinlock.h (CPU_PREEMPT_COUNT). */
	volatile uint8_t preempt_count;  /* spinlocks held: no preemption point */
	volatile uint8_t resched;    /* work.h: deferred work or parking is waiting */
	unsigned index;              /* 0 is the BSP */
	uint32_t apic_id;
	volatile bool online;
	volatile bool parked;        /* asked to park: halts with interrupts on, takes no work */

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

	/* kernel/gdt.c: this CPU's GDT (TSS descriptor at GDT_TSS) and TSS. */
	uint64_t gdt[GDT_ENTRIES] __attribute__((aligned(16)));
	struct tss tss __attribute__((aligned(16)));
	unsigned irq_depth;          /* interrupt handlers running (interrupt.c) */
	/* kernel/native.c */
	void *native_stack;          /* ring-3 stack, NATIVE_STACK_SIZE bytes */
	uint64_t native_calls, native_fallbacks, native_promotions;
	/* kernel/work.c and parking */
	volatile bool in_work;       /* running deferred work or parked: no preemption */
	volatile bool park_acked;    /* parked: halting at a preemption point */
	volatile bool call_async;    /* the call in the mailbox came from smp_call_async() */
	uint32_t park_waiter_apic_id;
	volatile uint64_t parked_ns;     /* total time spent parked */
	volatile uint64_t park_since_ns; /* when the current parking began, 0: not parked */
	uint64_t preemptions;        /* interrupted ring-3 code paused for work or parking */
};

static inline struct cpu *this_cpu(void)
{
	struct cpu *c;

	asm volatile("mov %%gs:0, %0" : "=r"(c));
	return c;
}

/* True while an interrupt or exception handler runs on this CPU. */
static inline bool in_interrupt(void)
{
	return this_cpu()->irq_depth != 0;
}

/* Sets up CPU 0 (this one) as the BSP; called first thing in kernel_main. */
void smp_init_bsp(void);
/* Starts every enabled AP that the MADT lists; returns how many came up. */
unsigned smp_start_aps(void);

unsigned smp_cpu_count(void);            /* online CPUs, indices 0..count-1 */
struct cpu *smp_cpu(unsigned index);

/* Runs fn(arg) on CPU index and waits for it to return (directly if index is
 * this CPU). On an AP, fn runs under native_call() (native.h) with interrupts
 * enabled. Returns 0, or -1 if the CPU is offline, parked or still running
 * an smp_call_async() function. */
int smp_call(unsigned index, void (*fn)(void *), void *arg);

/* Starts fn(arg) on CPU index (not this one) and returns at once; a parked
 * CPU runs it once unparked. Returns 0, or -1 if the CPU is offline or has a
 * call in progress. smp_call_wait() (on the same CPU) waits for it to return;
 * smp_call_done() tells whether it has. */
int smp_call_async(unsigned index, void (*fn)(void *), void *arg);
void smp_call_wait(unsigned index);
bool smp_call_done(unsigned index);

/* Parking. A parked CPU halts with interrupts enabled and runs nothing: work
 * it was doing (even in the middle of an smp_call() function) stops at its
 * next preemption point (work.h: an interrupt taken in ring 3, or a halt or
 * spin_unlock with no spinlock held) and resumes when it is unparked;
 * smp_call() to it fails. The BSP cannot be parked, nor can a CPU park
 * itself.
 * smp_park() asks, interrupts the CPU and waits up to 100 ms for it to halt:
 * returns 0 when it has, 1 if it has not yet (it will at its next preemption
 * point), -1 for the BSP, this CPU or an offline one. smp_unpark() releases
 * it and waits for it to run again: 0, or -1 as above. */
int smp_park(unsigned index);
int smp_unpark(unsigned index);
bool smp_is_parked(unsigned index);       /* halted in parking now */
/* Total time CPU index has spent parked, including a parking in progress. */
uint64_t smp_parked_ns(unsigned index);
/* Called at a preemption point by a CPU whose parked flag is set (work.c):
 * halts until it is unparked. */
void smp_park_here(struct cpu *c);

#endif
