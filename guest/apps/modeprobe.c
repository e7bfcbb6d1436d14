/* modeprobe: measures where the host runs this guest's code natively and
 * where it emulates it, and what moving between the two costs. It is the
 * evidence behind native.h and the README section "Running at native speed
 * on software KVM hosts"; run it on a new kind of host before relying on
 * either.
 *
 * Each context runs the same compute loop (iters iterations of a multiply,
 * shift, xor and a store) in CHUNKS chunks timed with rdtsc. A chunk is slow
 * if it took more than 8 times the median chunk of the ring-3 run: the count
 * tells whether a context is emulated (all), native (none) or switches
 * part-way (and which chunks). Also shown: CS and RFLAGS.IF as the code in
 * that context reads them. Then the costs of single operations in both
 * rings, and checks of how SYSCALL, INT n, IOPL, CPUID and IF behave in
 * ring 3. Runs in ring 0 (APP_RING0). Command line: iters=N (default 100000).
 */
#include <stddef.h>
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "interrupt.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "native.h"
#include "page_alloc.h"
#include "smp.h"
#include "spinlock.h"
#include "timer.h"
#include "virtio_rng.h"
#include "virtqueue.h"
#include "x86.h"

#define CHUNKS 50
#define VECTOR_PROBE 0xe0   /* a DPL-3 trap gate, for the INT n check */
#define UNUSED_PORT 0x80

/* A privileged operation done before the loop. */
enum op { OP_NONE, OP_CLI, OP_STI, OP_CR3, OP_RDMSR, OP_LAPIC, OP_OUTB, OP_HLT, OP_COUNT };
static const char *const op_names[OP_COUNT] = {
	"", " + cli", " + sti", " + mov %cr3", " + rdmsr", " + LAPIC load", " + outb",
	" + sti;hlt (timer)",
};

struct run {
	uint64_t chunk[CHUNKS];
	uint64_t total, cs, rflags;
};

static struct {
	uint64_t iters;
	uint64_t native_chunk;        /* median chunk in ring 3 */
	enum op op;
	struct run *run;              /* set: the #UD hook runs the loop */
	volatile bool flag;
	volatile unsigned ticks;
	struct timer timer;
	int int_vector_seen;          /* where INT n ended up */
} P;

static volatile uint64_t sink[8];
static struct spinlock probe_lock = SPINLOCK_INIT;

static inline uint64_t read_cs(void)
{
	uint64_t v;
	asm volatile("mov %%cs, %0" : "=r"(v));
	return v;
}

/* RFLAGS as the CPU shows them (irqs_enabled() corrects IF in ring 3). */
static inline uint64_t read_rflags(void)
{
	uint64_t v;
	asm volatile("pushfq; pop %0" : "=r"(v));
	return v;
}

/* The compute loop; the same code in every context. */
static __attribute__((noinline)) void work(struct run *r)
{
	uint64_t x = 1, per = P.iters / CHUNKS, t0, t;

	r->cs = read_cs();
	r->rflags = read_rflags();
	t0 = t = rdtsc();
	for (unsigned c = 0; c < CHUNKS; c++) {
		for (uint64_t i = 0; i < per; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			x ^= x >> 17;
			sink[i & 7] = x;
		}
		uint64_t now = rdtsc();
		r->chunk[c] = now - t;
		t = now;
	}
	r->total = t - t0;
}

static long work_thunk(void *r)
{
	work(r);
	return 0;
}

static void timer_noop(void *unused)
{
	(void)unused;
}

static void do_op(enum op op)
{
	switch (op) {
	case OP_NONE: case OP_COUNT: break;
	case OP_CLI: asm volatile("cli" ::: "memory"); break;
	case OP_STI: asm volatile("sti" ::: "memory"); break;
	case OP_CR3: (void)read_cr3(); break;
	case OP_RDMSR: (void)rdmsr(MSR_APIC_BASE); break;
	case OP_LAPIC: (void)mmio_read32(lapic_base() + 0x20); break;
	case OP_OUTB: outb(UNUSED_PORT, 0); break;
	case OP_HLT: asm volatile("sti; hlt" ::: "memory"); break;  /* timer armed by the caller */
	}
}

/* Ring 0 (a trap handler): the operation, then the loop; leaves IF as it
 * found it. */
static void op_then_work(struct run *r)
{
	bool had_if = irqs_enabled();

	do_op(P.op);
	work(r);
	if (had_if)
		irq_enable();
	else
		irq_disable();
}

/* Ring 3 executes these to reach the #UD handler and, for the checks, to try
 * INT n and SYSCALL. */
void probe_ud2(void);
void probe_int(void);
void probe_lstar(void);
void probe_lstar_ud2(void);
uint64_t probe_syscall_cs;  /* written by probe_lstar */
asm(".pushsection .text\n"
    "probe_ud2: ud2\n ret\n"
    "probe_int: int $0xe0\n ret\n"
    /* SYSCALL lands here: note CS, then trap back with ud2. */
    "probe_lstar: mov %cs, %rax\n mov %rax, probe_syscall_cs(%rip)\n"
    "probe_lstar_ud2: ud2\n"
    ".popsection\n");

static bool probe_hook(struct irq_frame *f)
{
	if (f->vector != 6)
		return false;
	if (f->rip == (uintptr_t)probe_lstar_ud2) {
		/* Back to ring 3 after the SYSCALL, as SYSRET would. */
		f->rip = f->rcx;
		f->rflags = f->r11;
		f->cs = USER_CS;
		f->ss = USER_DS;
		return true;
	}
	if (f->rip == (uintptr_t)probe_int) {
		P.int_vector_seen = 6;
		f->rip += 2;
		return true;
	}
	if (f->rip == (uintptr_t)probe_ud2) {
		if (P.run)
			op_then_work(P.run);
		f->rip += 2;
		return true;
	}
	return false;
}

static void int_handler(void *unused)
{
	(void)unused;
	P.int_vector_seen = VECTOR_PROBE;
}

/* --- ring-3 sides --- */

static long r3_call(void *fn)
{
	((void (*)(void))fn)();
	return 0;
}

static long r3_nothing(void *unused)
{
	(void)unused;
	return 0;
}

/* P.op (demotes), then the loop. */
static long r3_op_then_work(void *r)
{
	do_op(P.op);
	work(r);
	if (!irqs_enabled())
		irq_enable();
	return 0;
}

static long r3_op_resume_work(void *r)
{
	do_op(P.op);
	native_resume();
	work(r);
	return 0;
}

static long r3_lock_then_work(void *r)
{
	uint64_t flags = spin_lock_irqsave(&probe_lock);

	spin_unlock_irqrestore(&probe_lock, flags);
	work(r);
	return 0;
}

static long r3_wait_flag(void *unused)
{
	(void)unused;
	while (!P.flag)
		cpu_relax();
	return 0;
}

static long r3_syscall(void *unused)
{
	(void)unused;
	asm volatile("syscall" ::: "rax", "rcx", "r11", "memory");
	return 0;
}

/* native_entry.S internals, for the IOPL check only. */
long native_enter(void *rip, void *rsp, long a0, long a1, void *rsp0, uint64_t rflags);
extern const char native_user_entry[];

static long r3_iopl(void *unused)
{
	uint64_t fl = read_rflags();

	(void)unused;
	outb(UNUSED_PORT, 0);  /* demoted if it faults: counted */
	return (long)fl;
}

static long r3_cpuid(void *regs)
{
	cpuid(0x40000010, 0, regs);
	cpuid(1, 0, (uint32_t *)regs + 4);
	return 0;
}

/* Spins 5 ms reading TSC; returns the raw RFLAGS it saw. */
static long r3_spin(void *unused)
{
	uint64_t t = rdtsc();

	(void)unused;
	while (rdtsc() - t < tsc_khz() * 5)
		cpu_relax();
	return (long)read_rflags();
}

static void timer_work(void *r)
{
	work(r);
	P.flag = true;
}

static void timer_tick(void *unused)
{
	(void)unused;
	P.ticks++;
}

/* --- output --- */

static uint64_t ns(uint64_t tsc)
{
	return tsc * 1000000 / tsc_khz();
}

static uint64_t median_chunk(const struct run *r)
{
	uint64_t c[CHUNKS];

	for (unsigned i = 0; i < CHUNKS; i++) {
		unsigned j = i;
		for (; j > 0 && c[j - 1] > r->chunk[i]; j--)
			c[j] = c[j - 1];
		c[j] = r->chunk[i];
	}
	return c[CHUNKS / 2];
}

static void report(const char *context, const char *op, const struct run *r)
{
	unsigned slow = 0, first = 0, last = 0;
	char name[72], where[24] = "";

	for (unsigned i = 0; i < CHUNKS; i++) {
		if (r->chunk[i] > 8 * P.native_chunk) {
			if (!slow++)
				first = i;
			last = i;
		}
	}
	if (slow && slow < CHUNKS)
		ksnprintf(where, sizeof(where), " #%u-#%u", first, last);
	ksnprintf(name, sizeof(name), "%s%s", context, op);
	kprintf("modeprobe: %-46s %10lu %8lu %3u%-10s cs %#lx if %lu\n",
		name, ns(r->total) / 1000, ns(r->total) / P.iters, slow, where,
		r->cs, (r->rflags >> 9) & 1);
}

/* Mean cost in TSC ticks of fn(arg) called n times from ring 0. */
static uint64_t cost0(long (*fn)(void *), void *arg, unsigned n)
{
	uint64_t t = rdtsc();

	for (unsigned i = 0; i < n; i++)
		fn(arg);
	return (rdtsc() - t) / n;
}

struct repeat {
	long (*fn)(void *);
	void *arg;
	unsigned n;
	uint64_t ticks;
};

static long r3_repeat(void *p)
{
	struct repeat *rp = p;
	uint64_t t = rdtsc();

	for (unsigned i = 0; i < rp->n; i++)
		rp->fn(rp->arg);
	rp->ticks = (rdtsc() - t) / rp->n;
	return 0;
}

/* Mean cost in TSC ticks of fn(arg) called n times in ring 3. */
static uint64_t cost3(long (*fn)(void *), void *arg, unsigned n)
{
	struct repeat rp = { fn, arg, n, 0 };

	native_call(r3_repeat, &rp);
	return rp.ticks;
}

static long op_rdtsc(void *unused) { (void)unused; return (long)rdtsc(); }
static long op_sti(void *unused) { (void)unused; asm volatile("sti" ::: "memory"); return 0; }
static long op_native_call(void *unused) { return native_call(r3_nothing, unused); }
static long op_ud2(void *unused) { (void)unused; probe_ud2(); return 0; }
static long op_demote_resume(void *unused) { (void)unused; native_demote(); return native_resume(); }
static long op_lock(void *unused)
{
	(void)unused;
	spin_unlock_irqrestore(&probe_lock, spin_lock_irqsave(&probe_lock));
	return 0;
}
static long op_kprintf(void *unused) { (void)unused; return kprintf("%s", ""); }
static long op_page(void *unused) { (void)unused; free_page(alloc_page()); return 0; }
static long op_kmalloc(void *unused) { (void)unused; kfree(kmalloc(64)); return 0; }
static long op_copy(void *buf) { memcpy(buf, (char *)buf + 4096, 4096); return 0; }
static long op_outb(void *unused) { (void)unused; outb(UNUSED_PORT, 0); return 0; }
static long op_outb_resume(void *unused) { op_outb(unused); return native_resume(); }
static long op_lapic(void *unused) { (void)unused; return mmio_read32(lapic_base() + 0x20); }
static long op_mmio_store(void *addr) { mmio_write16((uintptr_t)addr, 0); return 0; }

static void cost_line(const char *what, uint64_t ring0, uint64_t ring3)
{
	char a[16] = "-", b[16] = "-";

	if (ring0)
		ksnprintf(a, sizeof(a), "%lu ns", ns(ring0));
	if (ring3)
		ksnprintf(b, sizeof(b), "%lu ns", ns(ring3));
	kprintf("modeprobe:   %-50s %14s %14s\n", what, a, b);
}

static void measure_contexts(void)
{
	static struct run r, ring0;

	/* 1. Ring 0 as the app starts; 2. ring 3, the reference for native. */
	work(&ring0);
	native_call(work_thunk, &r);
	P.native_chunk = median_chunk(&r);
	kprintf("modeprobe: %-46s %10s %8s %13s\n", "context", "total us", "ns/iter", "slow chunks");
	report("ring 0, app start", "", &ring0);
	report("ring 3 (native_call)", "", &r);

	/* 3, 4. Ring 0 in an exception handler entered from ring 3, bare and
	 * after one privileged operation. */
	P.run = &r;
	for (enum op op = OP_NONE; op < OP_COUNT; op++) {
		P.op = op;
		if (op == OP_HLT)
			timer_start(&P.timer, 2000000, timer_noop, NULL);
		native_call(r3_call, (void *)probe_ud2);
		timer_cancel(&P.timer);
		report("ring 0 in #UD from ring 3", op_names[op], &r);
	}
	P.run = NULL;

	/* Ring 3 code that executes a privileged instruction is demoted: it
	 * goes on in ring 0 until irq_restore() or native_resume(). */
	for (enum op op = OP_CLI; op <= OP_OUTB; op++) {
		if (op == OP_STI)
			continue;
		P.op = op;
		native_call(r3_op_then_work, &r);
		report("ring 3, demoted by", op_names[op], &r);
	}
	P.op = OP_OUTB;
	native_call(r3_op_resume_work, &r);
	report("ring 3, demoted by + outb", ", native_resume()", &r);
	native_call(r3_lock_then_work, &r);
	report("ring 3, after spin_lock_irqsave/unlock", "", &r);
	P.op = OP_NONE;

	/* Interrupt handlers: a timer callback runs the loop. */
	P.flag = false;
	timer_start(&P.timer, 1000000, timer_work, &r);
	native_call(r3_wait_flag, NULL);
	report("ring 0 in timer IRQ taken in ring 3", "", &r);
	P.flag = false;
	timer_start(&P.timer, 1000000, timer_work, &r);
	while (!P.flag)
		cpu_relax();
	report("ring 0 in timer IRQ taken in ring 0", "", &r);

	/* 5. Ring 0 right after a round trip to ring 3. */
	native_call(r3_nothing, NULL);
	work(&r);
	report("ring 0 after native_call returns", "", &r);
	native_call(r3_nothing, NULL);
	sleep_ms(1);
	work(&r);
	report("ring 0 after native_call returns", " + sleep 1 ms", &r);
}

static void measure_costs(void)
{
	struct virtqueue *vq = virtio_rng_queue();
	void *buf = alloc_pages(1);

	kprintf("modeprobe: costs (means)%*s%14s %14s\n", 40, "", "ring 0", "ring 3");
	cost_line("rdtsc", cost0(op_rdtsc, NULL, 100), cost3(op_rdtsc, NULL, 1000));
	cost_line("sti (IF already 1)", cost0(op_sti, NULL, 100), 0);
	cost_line("native_call(empty fn): ring 0 -> 3 -> 0", cost0(op_native_call, NULL, 200), 0);
	cost_line("ud2 -> generic #UD handler -> IRETQ back", 0, cost3(op_ud2, NULL, 100));
	cost_line("native_demote() + native_resume()", 0, cost3(op_demote_resume, NULL, 200));
	cost_line("spin_lock_irqsave + unlock (free lock)", cost0(op_lock, NULL, 100),
		  cost3(op_lock, NULL, 200));
	cost_line("kprintf(\"%s\", \"\") (no output)", cost0(op_kprintf, NULL, 100),
		  cost3(op_kprintf, NULL, 200));
	cost_line("alloc_page + free_page", cost0(op_page, NULL, 100), cost3(op_page, NULL, 1000));
	cost_line("kmalloc(64) + kfree", cost0(op_kmalloc, NULL, 100), cost3(op_kmalloc, NULL, 1000));
	if (buf) {
		cost_line("memcpy 4 KiB (rep movsq)", cost0(op_copy, buf, 20), cost3(op_copy, buf, 200));
		free_pages(buf, 1);
	}
	cost_line("outb (ring 3: + native_resume)", cost0(op_outb, NULL, 100),
		  cost3(op_outb_resume, NULL, 100));
	cost_line("LAPIC MMIO load (ID register)", cost0(op_lapic, NULL, 100), cost3(op_lapic, NULL, 200));
	if (vq)
		cost_line("MMIO store, virtio-rng notify register",
			  cost0(op_mmio_store, (void *)vq->notify_addr, 100),
			  cost3(op_mmio_store, (void *)vq->notify_addr, 200));
	else
		kprintf("modeprobe:   (no virtio-rng device: no BAR to store to)\n");
}

static void behaviour_checks(void)
{
	uint64_t efer = rdmsr(MSR_EFER);
	uint32_t r0[8], r3[8];
	long fl;

	/* SYSCALL with EFER.SCE and LSTAR set: which ring does LSTAR run in? */
	wrmsr(MSR_STAR, (uint64_t)(GDT_USER_CODE32 | 3) << 48 | (uint64_t)GDT_CODE64 << 32);
	wrmsr(MSR_LSTAR, (uintptr_t)probe_lstar);
	wrmsr(MSR_FMASK, 0);
	wrmsr(MSR_EFER, efer | EFER_SCE);
	native_call(r3_syscall, NULL);
	wrmsr(MSR_EFER, efer);
	kprintf("modeprobe: SYSCALL from ring 3 reaches LSTAR with CS %#lx (%s)\n", probe_syscall_cs,
		probe_syscall_cs & 3 ? "still ring 3: no way into the kernel" : "ring 0");

	/* INT n through a DPL-3 gate. */
	irq_register(VECTOR_PROBE, int_handler, NULL);
	idt_set_user_gate(VECTOR_PROBE, true);
	native_call(r3_call, (void *)probe_int);
	irq_unregister(VECTOR_PROBE);
	kprintf("modeprobe: INT $%#x (DPL-3 gate) from ring 3 arrives as vector %d%s\n",
		VECTOR_PROBE, P.int_vector_seen,
		P.int_vector_seen == VECTOR_PROBE ? "" : " (#UD): no way into the kernel");

	/* native_call() enters ring 3 with IOPL 0; to see whether this host
	 * would honour IOPL 3, enter with it directly (bypassing native_call's
	 * bookkeeping, which r3_iopl does not need). */
	{
		struct cpu *c = this_cpu();
		struct native_stats before, after;

		native_stats(&before);
		fl = native_enter((void *)native_user_entry, (char *)c->native_stack + NATIVE_STACK_SIZE,
				  (long)r3_iopl, 0, (char *)&c->tss + offsetof(struct tss, rsp0),
				  RFLAGS_IF | RFLAGS_IOPL3 | 2);
		native_stats(&after);
		kprintf("modeprobe: ring 3 entered with IOPL 3 reads RFLAGS %#lx (IOPL %ld); outb there %s\n",
			fl, (fl >> 12) & 3, after.demotions > before.demotions ?
			"faults (#GP): IOPL not honoured" : "works");
	}

	cpuid(0x40000010, 0, r0);
	cpuid(1, 0, r0 + 4);
	native_call(r3_cpuid, r3);
	kprintf("modeprobe: CPUID 0x40000010 and 1 in ring 3 %s ring 0\n",
		memcmp(r0, r3, 16) || r0[5] != r3[5] || r0[6] != r3[6] ? "DIFFER from" : "match");

	/* Ring 3 entered with interrupts disabled: are they held back, and
	 * what does pushf show there? */
	P.ticks = 0;
	timer_start(&P.timer, 1000000, timer_tick, NULL);
	irq_disable();
	fl = native_call(r3_spin, NULL);
	kprintf("modeprobe: ring 3 entered with IF=0: %u timer interrupts in 5 ms, pushf reads IF %ld\n",
		P.ticks, (fl >> 9) & 1);
	irq_enable();
	sleep_ms(1);
}

static int modeprobe_main(void)
{
	P.iters = MAX(cmdline_get_u64("iters", 100000), (uint64_t)CHUNKS);
	exception_set_hook(probe_hook);
	kprintf("modeprobe: %lu iterations in %u chunks; tsc %lu kHz; cpu %u\n",
		P.iters, CHUNKS, tsc_khz(), this_cpu()->index);
	measure_contexts();
	measure_costs();
	behaviour_checks();
	exception_set_hook(NULL);
	return 0;
}

APP_RING0("modeprobe", "measure where this host runs guest code natively (iters=N)", modeprobe_main);
