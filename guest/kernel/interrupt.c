/* IDT setup, exception reporting with an exception table for expected faults,
 * and dispatch of vectors 32-255 to registered handlers. */
#include <ferry/debug_exit.h>
#include "interrupt.h"
#include "kernel.h"
#include "lapic.h"
#include "smp.h"
#include "spinlock.h"
#include "work.h"
#include "x86.h"

struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t ist;
	uint8_t type;        /* 0x8e: present, DPL 0, 64-bit interrupt gate; 0xef: DPL 3 trap gate */
	uint16_t offset_mid;
	uint32_t offset_hi;
	uint32_t reserved;
};

struct extable_entry {
	uint64_t fault_rip, resume_rip;
};

extern const char interrupt_stubs[], native_ud_entry[], native_gp_entry[];
extern const struct extable_entry __extable_start[], __extable_end[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static struct {
	irq_handler_fn fn;
	void *arg;
	uint64_t count;
	bool software;   /* reached by INT n from ring 3: no EOI */
} handlers[256];
static exception_hook_fn exception_hook;
static struct spinlock handlers_lock = SPINLOCK_INIT;

static const char *const exception_names[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound range", "#UD invalid opcode", "#NM device not available",
	"#DF double fault", "coprocessor overrun", "#TS invalid TSS",
	"#NP segment not present", "#SS stack fault", "#GP general protection",
	"#PF page fault", "reserved", "#MF x87 error", "#AC alignment check",
	"#MC machine check", "#XM SIMD error", "#VE virtualization",
	"#CP control protection", [28] = "#HV hypervisor injection",
	[29] = "#VC VMM communication", [30] = "#SX security",
};

void interrupts_init_cpu(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = { sizeof(idt) - 1, (uintptr_t)idt };

	asm volatile("lidt %0" :: "m"(desc));
}

static void set_gate(unsigned v)
{
	uint64_t a = (uintptr_t)interrupt_stubs + 16 * v;

	/* #UD and #GP first check for code run by native_call() (native_entry.S). */
	if (v == 6)
		a = (uintptr_t)native_ud_entry;
	else if (v == 13)
		a = (uintptr_t)native_gp_entry;
	idt[v] = (struct idt_gate){
		.offset_lo = (uint16_t)a, .selector = GDT_CODE64, .type = 0x8e,
		.offset_mid = (uint16_t)(a >> 16), .offset_hi = (uint32_t)(a >> 32),
	};
}

void interrupts_init_early(void)
{
	set_gate(6);
	set_gate(13);
	interrupts_init_cpu();
}

void interrupts_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v);
}

void irq_register(unsigned vector, irq_handler_fn fn, void *arg)
{
	uint64_t flags = spin_lock_irqsave(&handlers_lock);

	handlers[vector].arg = arg;
	handlers[vector].fn = fn;
	spin_unlock_irqrestore(&handlers_lock, flags);
}

void irq_unregister(unsigned vector)
{
	irq_register(vector, NULL, NULL);
}

int irq_alloc_vector(irq_handler_fn fn, void *arg)
{
	uint64_t flags = spin_lock_irqsave(&handlers_lock);
	int vector = -1;

	for (unsigned v = VECTOR_DYNAMIC_FIRST; v <= VECTOR_DYNAMIC_LAST; v++) {
		if (!handlers[v].fn) {
			handlers[v].arg = arg;
			handlers[v].fn = fn;
			vector = (int)v;
			break;
		}
	}
	spin_unlock_irqrestore(&handlers_lock, flags);
	return vector;
}

void idt_set_user_gate(unsigned vector, bool trap_gate)
{
	idt[vector].type = trap_gate ? 0xef : 0xee;  /* present, DPL 3 */
	handlers[vector].software = true;
}

void exception_set_hook(exception_hook_fn fn)
{
	exception_hook = fn;
}

uint64_t irq_count(unsigned vector)
{
	return READ_ONCE(handlers[vector & 255].count);
}

void fault_clear(void)
{
	this_cpu()->fault = (struct fault_record){ .vector = -1 };
}

const struct fault_record *fault_last(void)
{
	return &this_cpu()->fault;
}

static const struct extable_entry *extable_find(uint64_t rip)
{
	for (const struct extable_entry *e = __extable_start; e < __extable_end; e++) {
		if (e->fault_rip == rip)
			return e;
	}
	return NULL;
}

static void dump_frame(const struct irq_frame *f, uint64_t cr2)
{
	const char *name = exception_names[f->vector] ? exception_names[f->vector] : "reserved";

	kprintf("EXCEPTION %lu (%s) on cpu %u in ring %lu, error code %#lx\n",
		f->vector, name, this_cpu()->index, f->cs & 3, f->error_code);
	kprintf("RIP %016lx CS %lx RFLAGS %lx CR2 %016lx\n", f->rip, f->cs, f->rflags, cr2);
	kprintf("RSP %016lx RBP %016lx SS %lx\n", f->rsp, f->rbp, f->ss);
	kprintf("RAX %016lx RBX %016lx RCX %016lx RDX %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
	kprintf("RSI %016lx RDI %016lx R8  %016lx R9  %016lx\n", f->rsi, f->rdi, f->r8, f->r9);
	kprintf("R10 %016lx R11 %016lx R12 %016lx R13 %016lx\n", f->r10, f->r11, f->r12, f->r13);
	kprintf("R14 %016lx R15 %016lx\n", f->r14, f->r15);
	if (f->rip >= (uintptr_t)_kernel_start && f->rip + 8 <= (uintptr_t)_kernel_end) {
		const uint8_t *code = (const uint8_t *)f->rip;
		kprintf("code at RIP: %02x %02x %02x %02x %02x %02x %02x %02x\n",
			code[0], code[1], code[2], code[3], code[4], code[5], code[6], code[7]);
	}
	print_backtrace(f->rbp);
}

static void exception(struct irq_frame *f)
{
	struct cpu *cpu = this_cpu();
	uint64_t cr2 = f->vector == 14 ? read_cr2() : 0;
	const struct extable_entry *fixup;

	if (exception_hook && exception_hook(f))
		return;
	fixup = extable_find(f->rip);
	if (fixup) {
		cpu->fault = (struct fault_record){
			.vector = (int)f->vector, .error_code = f->error_code,
			.rip = f->rip, .cr2 = cr2,
		};
		f->rip = fixup->resume_rip;
		return;
	}
	/* A fault while reporting a fault: the report itself is broken. */
	if (cpu->exception_depth++)
		poweroff(FERRY_EXIT_PANIC);
	dump_frame(f, cr2);
	poweroff(FERRY_EXIT_PANIC);
}

void interrupt_dispatch(struct irq_frame *f);
void interrupt_dispatch(struct irq_frame *f)
{
	struct cpu *cpu = this_cpu();
	unsigned v = (unsigned)f->vector;

	cpu->irq_depth++;
	if (v < 32) {
		exception(f);
	} else {
		__atomic_fetch_add(&handlers[v].count, 1, __ATOMIC_RELAXED);
		if (handlers[v].fn)
			handlers[v].fn(handlers[v].arg);
		else if (v >= VECTOR_PIC_BASE + 16 && v != VECTOR_SPURIOUS)
			kprintf("interrupt: no handler for vector %#x on cpu %u\n", v, cpu->index);
		/* A spurious interrupt is not in service: no EOI. */
		if (!handlers[v].software && v != VECTOR_SPURIOUS)
			lapic_eoi();
	}
	cpu->irq_depth--;
	/* Deferred work or parking waiting for this CPU (work.h). */
	if (cpu->resched && v >= 32)
		work_interrupt_exit(f);
}
