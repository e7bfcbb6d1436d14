/* Test-and-test-and-set spinlocks on xchg (no cmpxchg16b, which the host's KVM
 * cannot emulate). The _irqsave variants also keep interrupt handlers on this
 * CPU out, for data that handlers touch too.
 *
 * Each CPU counts the spinlocks it holds (struct cpu's preempt_count, at
 * %gs:CPU_PREEMPT_COUNT): code holding one is never paused for deferred work
 * or parking (work.h). A lock must be released on the CPU that took it. When
 * the last one is released and work is waiting for this CPU (struct cpu's
 * resched, the next byte), spin_unlock() lets it run (preempt_point()). */
#ifndef GUEST_SPINLOCK_H
#define GUEST_SPINLOCK_H

#include <stdint.h>
#include "x86.h"

struct spinlock {
	volatile uint32_t locked;
};
#define SPINLOCK_INIT { 0 }

#define CPU_PREEMPT_COUNT 26   /* offsetof(struct cpu, preempt_count); resched follows */

/* kernel/work.c: runs waiting work or parks, if this CPU may here. */
void preempt_point(void);

static inline void preempt_disable(void)
{
	asm volatile("incb %%gs:%c0" :: "i"(CPU_PREEMPT_COUNT) : "memory", "cc");
}

static inline void preempt_enable(void)
{
	uint16_t state;

	asm volatile("decb %%gs:%c1\n\tmovw %%gs:%c1, %0"
		     : "=r"(state) : "i"(CPU_PREEMPT_COUNT) : "memory", "cc");
	/* Count 0 and resched set: one compare on the fast path. */
	if (__builtin_expect(state == 0x0100, 0))
		preempt_point();
}

static inline bool spin_trylock_raw(struct spinlock *l)
{
	return __atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE) == 0;
}

static inline bool spin_trylock(struct spinlock *l)
{
	preempt_disable();
	if (spin_trylock_raw(l))
		return true;
	asm volatile("decb %%gs:%c0" :: "i"(CPU_PREEMPT_COUNT) : "memory", "cc");
	return false;
}

static inline void spin_lock(struct spinlock *l)
{
	preempt_disable();
	while (!spin_trylock_raw(l)) {
		while (l->locked)
			cpu_relax();
	}
}

static inline void spin_unlock(struct spinlock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
	preempt_enable();
}

static inline uint64_t spin_lock_irqsave(struct spinlock *l)
{
	uint64_t flags = irq_save();

	spin_lock(l);
	return flags;
}

static inline void spin_unlock_irqrestore(struct spinlock *l, uint64_t flags)
{
	spin_unlock(l);
	irq_restore(flags);
}

#endif
