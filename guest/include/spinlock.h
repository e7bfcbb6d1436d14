/* Test-and-test-and-set spinlocks on xchg (no cmpxchg16b, which the host's KVM
 * cannot emulate). The _irqsave variants also keep interrupt handlers on this
 * CPU out, for data that handlers touch too. */
#ifndef GUEST_SPINLOCK_H
#define GUEST_SPINLOCK_H

#include <stdint.h>
#include "x86.h"

struct spinlock {
	volatile uint32_t locked;
};
#define SPINLOCK_INIT { 0 }

static inline bool spin_trylock(struct spinlock *l)
{
	return __atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE) == 0;
}

static inline void spin_lock(struct spinlock *l)
{
	while (!spin_trylock(l)) {
		while (l->locked)
			cpu_relax();
	}
}

static inline void spin_unlock(struct spinlock *l)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
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
