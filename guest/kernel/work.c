/* Deferred work and preemption points: see include/work.h.
 *
 * The queue is a flag per item and a list of every item ever initialised,
 * so queuing takes no lock (interrupt handlers queue, and on kvm_pvm every
 * instruction they run is emulated). Work runs on the BSP only: it takes
 * the devices' interrupts and is never parked, and one runner needs no
 * locking between items.
 *
 * Pausing ring-3 code from an interrupt (work_interrupt_exit) copies the
 * interrupt frame onto the interrupted code's stack, below its stack pointer,
 * and returns from the interrupt to work_preempt_entry (work_entry.S) in
 * ring 3 instead; that calls work_preempted() and then executes a ud2 at
 * work_preempt_exit, which the #UD entry (native_entry.S) recognises: it
 * restores the saved frame and returns to the interrupted code as the
 * interrupt would have. */
#include <stddef.h>
#include "interrupt.h"
#include "kernel.h"
#include "lapic.h"
#include "native.h"
#include "smp.h"
#include "spinlock.h"
#include "work.h"
#include "x86.h"

_Static_assert(offsetof(struct cpu, preempt_count) == CPU_PREEMPT_COUNT, "spinlock.h");
_Static_assert(offsetof(struct cpu, resched) == CPU_PREEMPT_COUNT + 1, "spinlock.h");
_Static_assert(sizeof(struct irq_frame) % 16 == 0, "frames keep the stack aligned");

/* Native stack that must be left below interrupted code for the work. */
#define PREEMPT_STACK_MIN 6144

extern const char work_preempt_entry[];

static struct work *registry;
static struct spinlock registry_lock = SPINLOCK_INIT;
static struct work_stats stats;

void work_init(struct work *w, work_fn fn)
{
	w->fn = fn;
	w->queued = false;
	spin_lock(&registry_lock);
	for (struct work *o = registry; o; o = o->next) {
		if (o == w) {
			spin_unlock(&registry_lock);
			return;
		}
	}
	w->next = registry;
	WRITE_ONCE(registry, w);
	spin_unlock(&registry_lock);
}

void work_queue(struct work *w)
{
	struct cpu *bsp = smp_cpu(0), *c = this_cpu();

	WRITE_ONCE(w->queued, true);
	WRITE_ONCE(bsp->resched, 1);
	if (c != bsp)
		lapic_send_ipi(bsp->apic_id, VECTOR_WAKE);
	else if (!c->irq_depth)
		preempt_point();  /* an interrupt handler's exit checks for itself */
}

/* Runs every queued item, until none is queued. */
static long run_all(void *unused)
{
	bool any;

	(void)unused;
	do {
		any = false;
		for (struct work *w = READ_ONCE(registry); w; w = w->next) {
			if (READ_ONCE(w->queued) && __atomic_exchange_n(&w->queued, false, __ATOMIC_ACQ_REL)) {
				w->fn(w);
				stats.runs++;
				any = true;
			}
		}
	} while (any);
	return 0;
}

/* A preemption point, interrupts enabled, c->in_work already set: park or
 * run work until nothing is waiting. Clears in_work. */
static void safe_point(struct cpu *c)
{
	for (;;) {
		WRITE_ONCE(c->resched, 0);
		mb();
		if (c->index && READ_ONCE(c->parked))
			smp_park_here(c);
		else if (c->index == 0)
			native_call(run_all, NULL);
		WRITE_ONCE(c->in_work, false);
		barrier();
		if (!READ_ONCE(c->resched))
			break;
		WRITE_ONCE(c->in_work, true);
	}
}

void preempt_point(void)
{
	struct cpu *c = this_cpu();

	if (!c->resched || c->irq_depth || c->in_work || c->preempt_count || !irqs_enabled())
		return;
	c->in_work = true;
	stats.unlock_runs++;
	safe_point(c);
}

void work_poll(void)
{
	if (this_cpu()->resched)
		preempt_point();
}

bool work_idle_wanted(void)
{
	struct cpu *c = this_cpu();

	return c->resched && !c->preempt_count && !c->in_work && !c->irq_depth;
}

void work_idle_run(void)
{
	struct cpu *c = this_cpu();

	c->in_work = true;
	stats.idle_runs++;
	irq_enable();
	safe_point(c);
	irq_disable();
}

void work_interrupt_exit(struct irq_frame *f)
{
	struct cpu *c = this_cpu();
	uintptr_t base = (uintptr_t)c->native_stack;
	struct irq_frame *saved;

	if (!c->resched || !(f->cs & 3) || c->irq_depth || c->preempt_count || c->in_work)
		return;
	/* Ring-3 code always runs on this CPU's native stack; leave it room. */
	if (f->rsp < base + PREEMPT_STACK_MIN || f->rsp > base + NATIVE_STACK_SIZE)
		return;
	saved = (struct irq_frame *)(ALIGN_DOWN(f->rsp, 16) - sizeof(*f));
	*saved = *f;
	f->rip = (uintptr_t)work_preempt_entry;
	f->rsp = (uintptr_t)saved;  /* 16-byte aligned: the call there is ABI-correct */
	c->in_work = true;
	c->preemptions++;
	stats.preemptions++;
}

/* work_preempt_entry calls this in ring 3, on the interrupted code's stack,
 * interrupts enabled. */
void work_preempted(void);
void work_preempted(void)
{
	safe_point(this_cpu());
}

void work_stats(struct work_stats *st)
{
	*st = stats;
}
