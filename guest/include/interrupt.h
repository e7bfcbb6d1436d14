/* IDT, exceptions and interrupt dispatch (kernel/interrupt.c). */
#ifndef GUEST_INTERRUPT_H
#define GUEST_INTERRUPT_H

#include <stdbool.h>
#include <stdint.h>

/* Vector map. 0-31 are exceptions. The 8259s are remapped to 0x20-0x2f and
 * masked; the dynamic range is handed out by irq_alloc_vector(). */
#define VECTOR_PIC_BASE      0x20
#define VECTOR_DYNAMIC_FIRST 0x30
#define VECTOR_DYNAMIC_LAST  0xdf
#define VECTOR_TIMER         0xf0  /* LAPIC timer, every CPU */
#define VECTOR_WAKE          0xf1  /* IPI that only wakes a halted CPU (smp.c) */
#define VECTOR_APIC_ERROR    0xfe
#define VECTOR_SPURIOUS      0xff

/* Saved state on the interrupt stack, as kernel/interrupt_stubs.S lays it out. */
struct irq_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error_code;
	uint64_t rip, cs, rflags, rsp, ss;  /* pushed by the CPU */
};

/* Handlers run with interrupts disabled; dispatch sends the LAPIC EOI after. */
typedef void (*irq_handler_fn)(void *arg);

/* BSP: loads the IDT with only the two gates native_call() needs (#UD, #GP);
 * interrupts_init() then fills in all of it, in ring 3, where 256 gates cost
 * microseconds instead of milliseconds. */
void interrupts_init_early(void);
void interrupts_init(void);
void interrupts_init_cpu(void);  /* loads the IDT (APs) */

void irq_register(unsigned vector, irq_handler_fn fn, void *arg);
void irq_unregister(unsigned vector);
/* Picks a free vector in the dynamic range and registers fn on it; -1 if none. */
int irq_alloc_vector(irq_handler_fn fn, void *arg);
/* Lets ring 3 reach vector with INT n (a trap gate keeps interrupts
 * enabled); its handler then gets no EOI. */
void idt_set_user_gate(unsigned vector, bool trap_gate);
/* Times vector was dispatched, on any CPU. */
uint64_t irq_count(unsigned vector);

/* Expected exceptions. An instruction that may fault is given a resume address
 * in the exception table; if it faults, the handler records the fault in this
 * CPU's fault record and continues at the resume address:
 *     fault_clear();
 *     asm volatile("1: ud2\n2:\n" EXTABLE(1b, 2b));
 *     if (fault_last()->vector == 6) ...
 */
#define EXTABLE(fault, resume) \
	".pushsection .extable, \"a\"\n.balign 8\n.quad " #fault ", " #resume "\n.popsection\n"

/* Called first for every exception (vectors 0-31); returns true if it
 * handled it (the frame, possibly changed, is then resumed). For tests. */
typedef bool (*exception_hook_fn)(struct irq_frame *f);
void exception_set_hook(exception_hook_fn fn);

struct fault_record {
	int vector;          /* -1: none since fault_clear() */
	uint64_t error_code;
	uint64_t rip, cr2;
};
void fault_clear(void);
const struct fault_record *fault_last(void);

#endif
