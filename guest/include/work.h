/* Deferred work and preemption points (kernel/work.c, kernel/work_entry.S).
 *
 * Interrupt handlers may neither allocate nor wait, and this kernel has no
 * threads: drivers that must act on an interrupt or a timer (the balloon,
 * processor reservation) queue a struct work instead. Queued work runs on
 * the BSP, one item at a time, with interrupts enabled, in ring 3 (natively
 * on hosts that emulate ring 0), at the BSP's next preemption point:
 *   - an interrupt that returns to ring-3 code holding no spinlock: the
 *     interrupted code (an app, a driver, an AP's smp_call function) is
 *     paused, the work runs on its stack, and it resumes where it was, as
 *     a signal handler would;
 *   - halt_until() (so sleep_ms, vq_wait, idle CPUs) with no spinlock held;
 *   - spin_unlock() of the last spinlock held, with interrupts enabled;
 *   - work_poll(), for long loops that want to let it in early.
 * So the BSP's app keeps running while work is waiting, and the work gets
 * in within one interrupt of the app leaving its locks. It does not run in
 * ring 0 code that holds no lock and never halts (APP_RING0 apps).
 *
 * Work functions may allocate, take spinlocks, wait (halt_until, vq_wait,
 * sleep_ms) and queue work. They must not wait for something the code they
 * interrupted may be doing, and must keep their stack use small (they run on
 * the interrupted code's 16 KiB native stack).
 *
 * Parking (smp.h) uses the same points on every CPU: a CPU asked to park
 * halts at its next one. */
#ifndef GUEST_WORK_H
#define GUEST_WORK_H

#include <stdbool.h>
#include <stdint.h>

struct work;
typedef void (*work_fn)(struct work *w);

struct work {
	work_fn fn;
	struct work *next;           /* every item work_init() has seen */
	volatile bool queued;
};

/* Once per item, before it is first queued (not from interrupt handlers). */
void work_init(struct work *w, work_fn fn);
/* Queues w to run once (queuing it again before it runs does nothing; while
 * it runs, it may be queued again). Any context, interrupt handlers too; no
 * lock, no ring change. */
void work_queue(struct work *w);
/* Runs queued work now if this CPU may (see above); cheap when there is none. */
void work_poll(void);

/* For the kernel's preemption points. */
struct irq_frame;
struct cpu;
/* interrupt_dispatch(): on the way back to ring 3, pauses the interrupted
 * code for waiting work or parking, if it may be. */
void work_interrupt_exit(struct irq_frame *f);
/* halt_until(): whether this CPU should run work or park before halting,
 * and doing it (called with interrupts disabled; returns so too). */
bool work_idle_wanted(void);
void work_idle_run(void);
/* Counters: items run, and ring-3 code paused for them (all CPUs). */
struct work_stats {
	uint64_t runs, preemptions, idle_runs, unlock_runs;
};
void work_stats(struct work_stats *st);

#endif
