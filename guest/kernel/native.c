/* Running kernel code in ring 3, which kvm_pvm hosts run natively while they
 * emulate ring 0 (see include/native.h and guest/README.md).
 *
 * native_call() IRETQs to the function in ring 3 on this CPU's native stack;
 * a ud2 at a known address brings the result back (native_entry.S). In
 * between, the code may move between the rings any number of times on the
 * same stack: a privileged instruction in ring 3 raises #GP(0), and the #GP
 * handler resumes the code at that instruction in ring 0 ("demotion"); the
 * next irq_restore() that enables interrupts, or native_resume(), returns it
 * to ring 3 ("promotion"). SYSCALL and INT n cannot be used instead of the
 * exceptions: on kvm_pvm, SYSCALL stays in ring 3 and INT n raises #UD.
 *
 * The code keeps its interrupt state across the rings. Ring 3 runs with IF
 * as the native_call() caller had it (kvm_pvm holds interrupts back from
 * ring 3 with IF=0, as the CPU does), but pushf there reads IF=1 on kvm_pvm:
 * struct cpu's native_irqs holds the real value for irq_save() and
 * irqs_enabled() (x86.h) to use in ring 3. */
#include <stddef.h>
#include "kernel.h"
#include "native.h"
#include "page_alloc.h"
#include "smp.h"
#include "x86.h"

_Static_assert(offsetof(struct cpu, native_kernel_rsp) == 8, "native_entry.S");
_Static_assert(offsetof(struct cpu, native_demotions) == 16, "native_entry.S");
_Static_assert(offsetof(struct cpu, native_depth) == CPU_NATIVE_DEPTH, "x86.h");
_Static_assert((NATIVE_STACK_SIZE & (NATIVE_STACK_SIZE - 1)) == 0, "power of two");

long native_enter(void *rip, void *rsp, long a0, long a1, void *rsp0, uint64_t rflags);
void native_promote(uint64_t rflags);
extern const char native_user_entry[];

bool native_enabled;
/* The BSP's native stack, usable before the page allocator is. */
static uint8_t bsp_native_stack[NATIVE_STACK_SIZE] __attribute__((aligned(16)));

void native_init_cpu(void)
{
	struct cpu *c = this_cpu();

	if (!c->native_stack && c->index == 0)
		c->native_stack = bsp_native_stack;
	if (!c->native_stack) {
		c->native_stack = alloc_pages(__builtin_ctz(NATIVE_STACK_SIZE / PAGE_SIZE));
		if (!c->native_stack)
			panic("native: no memory for the native stack of CPU %u", c->index);
	}
	native_enabled = true;
}

bool native_active(void)
{
	uint16_t cs;

	asm volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}

void native_demote(void)
{
	/* Privileged, harmless: in ring 3 it raises #GP(0) and is executed
	 * again in ring 0. */
	(void)read_cr2();
}

/* Ring 3 runs with IOPL 0, so that cli, sti, in and out fault there and are
 * demoted on every host. With IOPL 3 a CPU that honours it would run cli and
 * sti in ring 3, behind the back of the interrupt-state tracking above;
 * kvm_pvm does not honour it anyway (modeprobe shows). */
static uint64_t ring3_rflags(bool irqs)
{
	return (irqs ? RFLAGS_IF : 0) | 2;
}

static inline uintptr_t stack_pointer(void)
{
	uintptr_t sp;

	asm volatile("mov %%rsp, %0" : "=r"(sp));
	return sp;
}

/* Ring 0 code may go (back) to ring 3 if it is the body of this CPU's
 * native_call(): on the native stack, not an interrupt handler that
 * interrupted it. Every instruction here is emulated on kvm_pvm: keep it
 * short. */
static bool may_promote(const struct cpu *c)
{
	return c->native_depth && !c->irq_depth &&
	       stack_pointer() - (uintptr_t)c->native_stack < NATIVE_STACK_SIZE;
}

static void promote(struct cpu *c, uint64_t irq_flag)
{
	c->native_irqs = irq_flag;
	c->native_promotions++;
	native_promote(ring3_rflags(irq_flag));
}

/* The x86.h hooks, used while this CPU is in a native_call(). */

uint64_t native_irq_save(void)
{
	uint64_t flags;

	asm volatile("pushfq; pop %0" : "=r"(flags));
	if (native_active())
		flags = (flags & ~(uint64_t)RFLAGS_IF) | IRQ_FLAGS_RING3 |
			(this_cpu()->native_irqs ? RFLAGS_IF : 0);
	irq_disable();  /* demotes, in ring 3 */
	return flags;
}

void native_irq_restore(uint64_t flags)
{
	struct cpu *c = this_cpu();

	if (native_active()) {
		if (!(flags & RFLAGS_IF) || c->native_irqs)
			return;
		irq_enable();  /* demotes, then enables */
	}
	if ((flags & IRQ_FLAGS_RING3) && may_promote(c))
		promote(c, flags & RFLAGS_IF);
	else if (flags & RFLAGS_IF)
		irq_enable();
}

bool native_irqs_enabled(void)
{
	uint64_t flags;

	if (native_active())
		return this_cpu()->native_irqs;
	asm volatile("pushfq; pop %0" : "=r"(flags));
	return flags & RFLAGS_IF;
}

bool native_resume(void)
{
	struct cpu *c;
	uint64_t flags;

	if (!native_enabled || native_active())
		return native_enabled;
	c = this_cpu();
	if (!may_promote(c))
		return false;
	asm volatile("pushfq; pop %0" : "=r"(flags));  /* ring 0: the real IF */
	promote(c, flags & RFLAGS_IF);
	return true;
}

long native_call(long (*fn)(void *arg), void *arg)
{
	struct cpu *c;
	long ret;

	if (!native_enabled)
		return fn(arg);
	c = this_cpu();
	if (c->native_depth) {
		/* Inside a native_call() already: run fn in ring 3 if this code
		 * can go there, and come back to the ring it was called in. */
		bool ring3 = native_active();

		if (!ring3 && !native_resume())
			return fn(arg);  /* an interrupt handler: stay in ring 0 */
		ret = fn(arg);
		if (ring3)
			native_resume();
		else
			native_demote();
		return ret;
	}
	if (!c->native_stack || c->irq_depth) {
		c->native_fallbacks++;
		return fn(arg);
	}
	c->native_irqs = irqs_enabled();
	c->native_calls++;
	c->native_depth = 1;
	ret = native_enter((void *)native_user_entry, (char *)c->native_stack + NATIVE_STACK_SIZE,
			   (long)fn, (long)arg, (char *)&c->tss + offsetof(struct tss, rsp0),
			   ring3_rflags(c->native_irqs));
	c->native_depth = 0;
	return ret;
}

void native_stats(struct native_stats *st)
{
	struct cpu *c = this_cpu();

	st->calls = c->native_calls;
	st->fallbacks = c->native_fallbacks;
	st->demotions = c->native_demotions;
	st->promotions = c->native_promotions;
}
